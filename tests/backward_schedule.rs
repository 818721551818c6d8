//! The backward pass's schedule a plan carries (`rescnn::model::BackwardSchedule`), checked from
//! architectures alone, without a backend: which convolutions write their input gradient and which
//! add into it, which max-pools take the fused ReLU mask, which gradients are written.

use rescnn::model::{ArchSpec, InputShape, Plan, PlannedOp};

fn layer(plan: &Plan, name: &str) -> usize {
    plan.layers.iter().position(|l| l.name == name).unwrap()
}

fn input_of(plan: &Plan, name: &str) -> usize {
    plan.layers[layer(plan, name)].inputs()[0]
}

#[test]
fn shortcut_sources_make_convolutions_accumulate_and_batch_norm_unfuses_the_pool() {
    // conv1 reads the image; pool1's output feeds conv2 AND is the source of `+1`, so conv2
    // must add into its gradient; pool2's output feeds conv3 only (`+1` adds INTO it, earlier
    // in the reverse pass), so conv3 writes. bn takes conv3's ReLU, so pool3 is not fused.
    let spec = ArchSpec::parse("c8k3 p2 +0 c8k3 p2 +1 c8k3 bn p2 fc5").unwrap();
    let plan = Plan::new(&spec, InputShape::new(1, 16, 16), 4).unwrap();
    let s = plan.schedule();
    let writes: Vec<(&str, bool)> = plan
        .layers
        .iter()
        .zip(&s.conv_writes_dx)
        .filter(|(l, _)| matches!(l.op, PlannedOp::Conv { .. }))
        .map(|(l, &w)| (l.name.as_str(), w))
        .collect();
    assert_eq!(
        writes,
        [("conv1", false), ("conv2", false), ("conv3", true)]
    );
    let (conv1, conv2, conv3) = (
        layer(&plan, "conv1"),
        layer(&plan, "conv2"),
        layer(&plan, "conv3"),
    );
    let (pool1, pool2, pool3) = (
        layer(&plan, "pool1"),
        layer(&plan, "pool2"),
        layer(&plan, "pool3"),
    );
    for (li, want) in [
        (conv1, Some(conv1)),
        (pool1, Some(conv1)),
        (conv2, Some(conv2)),
        (pool2, Some(conv2)),
        (conv3, None),
        (pool3, None),
    ] {
        assert_eq!(s.fused_relu_pool[li], want, "{}", plan.layers[li].name);
    }
    let fused = s.fused_relu_pool.iter().filter(|f| f.is_some()).count();
    assert_eq!(fused, 4, "only the two conv-pool pairs fuse: {s:?}");
    // Written gradients: the logits, the fused pools' inputs (conv1's and conv2's outputs) and
    // conv3's input; conv2's input (pool1's output) is accumulated by conv2 and `+1`.
    let written: Vec<usize> = (0..plan.nodes.len()).filter(|&n| s.written[n]).collect();
    let mut want = vec![
        input_of(&plan, "pool1"),
        input_of(&plan, "pool2"),
        input_of(&plan, "conv3"),
        plan.logits_node(),
    ];
    want.sort();
    assert_eq!(written, want);
    assert!(!s.written[input_of(&plan, "conv2")]);
    assert!(plan.needs_gradient(input_of(&plan, "conv2")));
    assert!(!plan.needs_gradient(input_of(&plan, "conv1")));
}

#[test]
fn the_side_input_needs_no_gradient_and_a_dropout_between_conv_and_pool_unfuses_it() {
    let spec = ArchSpec::parse("c8k3 drop0.2 p2 c8k3 stats vec fc5").unwrap();
    let input = InputShape::new(1, 8, 8).with_side(3);
    let plan = Plan::new(&spec, input, 4).unwrap();
    let s = plan.schedule();
    assert!(s.fused_relu_pool.iter().all(Option::is_none), "{s:?}");
    // conv2 is the only reader of pool1's output.
    assert!(s.conv_writes_dx[layer(&plan, "conv2")]);
    let side = plan.side_input.unwrap();
    assert!(!plan.needs_gradient(side) && !s.written[side]);
}
