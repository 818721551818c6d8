//! The cost model (src/backends/cost.rs, src/model/cost.rs): its launch list is the real step's, every
//! launch states its cost, and the GEMM FLOPs it counts add up to what the network's plan says a
//! training step computes.

use rescnn::backends::cost::{EventKind, Totals};
use rescnn::model::cost::train_step_events;
use rescnn::model::{ArchSpec, InputShape, Plan};

/// The paper net on 64 × 64 inputs, batch 5: every op family of the 512 × 512 step, at a size the
/// recording device prices in milliseconds.
fn paper_small() -> (ArchSpec, InputShape, usize, usize) {
    (
        ArchSpec::from_name_or_spec("paper").unwrap(),
        InputShape::new(3, 64, 64),
        7,
        5,
    )
}

#[test]
fn every_launch_of_a_step_states_its_cost() {
    let (spec, input, classes, batch) = paper_small();
    let (events, _) = train_step_events(&spec, input, classes, batch).unwrap();
    let uncosted: Vec<String> = events
        .iter()
        .filter(|e| e.cost.is_none())
        .map(|e| e.label())
        .collect();
    assert!(uncosted.is_empty(), "launches without a cost: {uncosted:?}");
    let launches = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Launch { .. }))
        .count();
    assert!(launches > 20, "only {launches} launches recorded");
}

#[test]
fn gemm_flops_of_a_step_match_the_plan() {
    let (spec, input, classes, batch) = paper_small();
    let (events, _) = train_step_events(&spec, input, classes, batch).unwrap();
    let t = Totals::of(&events);
    let plan = Plan::new(&spec, input, classes).unwrap();
    let want = batch as f64 * plan.train_flops();
    // Both are exact integer counts far below 2^53: only the f64 summation order differs.
    assert!(
        (t.gemm_useful_flops - want).abs() <= 1e-9 * want,
        "cost model {} FLOP, plan {want}",
        t.gemm_useful_flops
    );
    assert!(t.gemm_executed_flops >= t.gemm_useful_flops);
    assert!(t.bytes > 0.0);
}

#[test]
fn a_steady_state_step_allocates_nothing_on_the_device() {
    let (spec, input, classes, batch) = paper_small();
    let (_, allocations) = train_step_events(&spec, input, classes, batch).unwrap();
    assert_eq!(allocations, 0);
}
