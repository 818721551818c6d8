//! The network on the CPU reference: an end-to-end gradient check through the loss (with shortcuts
//! between convolutions and just before the dense layers), f32 against f64 on the `paper` net, a short
//! training run on a separable problem, checkpoint export/import, and the API's errors.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rescnn::backends::cpu::CpuBackend;
use rescnn::backends::{
    Backend, BatchNormOp, BatchNormTrainIo, Conv2dOp, ConvForwardIo, DenseForwardIo, DenseOp,
};
use rescnn::model::{ArchSpec, InputShape, NamedTensor, Network, PlannedOp, RmsPropConfig};

type Cpu = CpuBackend<f64>;

fn uniform<T: rescnn::Real>(r: &mut ChaCha8Rng, len: usize, lo: f64, hi: f64) -> Vec<T> {
    (0..len)
        .map(|_| T::from_f64(lo + (hi - lo) * r.random::<f64>()))
        .collect()
}

/// The smallest distance from zero of any ReLU pre-activation, and the smallest gap between the
/// largest and second-largest value of any max-pool window whose maximum is positive, in the last
/// forward pass: how far the network is from a kink.
fn kink_margin(cpu: &Cpu, net: &Network<Cpu>) -> f64 {
    let acts = net.export_activations(cpu).unwrap();
    let params = net.export_params(cpu).unwrap();
    let param = |name: &str| &params.iter().find(|p| p.name == name).unwrap().data;
    let n = acts[0].dims[0];
    let mut margin = f64::INFINITY;
    for layer in &net.plan().layers {
        match layer.op {
            PlannedOp::Conv { geom, input, .. } => {
                let g = rescnn::backends::ConvGeom {
                    relu: 0,
                    ..geom.with_batch(n)
                };
                let mut z = vec![0.0; g.output().len()];
                let (w, b) = (
                    param(&format!("{}.weight", layer.name)),
                    param(&format!("{}.bias", layer.name)),
                );
                cpu.conv2d_forward(
                    &g,
                    ConvForwardIo {
                        x: &acts[input].data,
                        w,
                        b,
                        y: &mut z,
                    },
                )
                .unwrap();
                margin = z.iter().fold(margin, |m, v| m.min(v.abs()));
            }
            PlannedOp::Dense { geom, input, .. } if geom.relu != 0 => {
                let g = rescnn::backends::DenseGeom {
                    relu: 0,
                    ..geom.with_batch(n)
                };
                let mut z = vec![0.0; n * g.out_features as usize];
                let (w, b) = (
                    param(&format!("{}.weight", layer.name)),
                    param(&format!("{}.bias", layer.name)),
                );
                cpu.dense_forward(
                    &g,
                    DenseForwardIo {
                        x: &acts[input].data,
                        w,
                        b,
                        y: &mut z,
                    },
                )
                .unwrap();
                margin = z.iter().fold(margin, |m, v| m.min(v.abs()));
            }
            PlannedOp::Pool { geom, input, .. } => {
                let (i, o, k, s) = (
                    geom.with_batch(n).input(),
                    geom.with_batch(n).output(),
                    geom.k as usize,
                    geom.stride as usize,
                );
                let x = &acts[input].data;
                for p in 0..o.n * o.c {
                    for oh in 0..o.h {
                        for ow in 0..o.w {
                            let mut v: Vec<f64> = (0..k * k)
                                .map(|j| x[p * i.h * i.w + (oh * s + j / k) * i.w + ow * s + j % k])
                                .collect();
                            v.sort_by(|a, b| b.total_cmp(a));
                            if v[0] > 0.0 {
                                margin = margin.min(v[0] - v[1]);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    margin
}

/// Gradient check of a whole network through the mean softmax cross-entropy, in f64, for every
/// parameter. Metric and tolerance as in tests/gradcheck.rs: err = |a − b| / max(|a| + |b|,
/// 1e-3 · max_j |b_j|) ≤ 1e-6 per tensor. Step h = 1e-5; the inputs and seed are chosen so that
/// every ReLU pre-activation and every max-pool winner's lead is at least 1e-4 (the first seed that
/// qualifies is used), ten times a step, so a central difference crosses a kink only where a value
/// depends on one parameter with a slope above 10; the max errors this test prints (about 1e-8)
/// show none did.
#[test]
fn whole_network_gradient_check_with_shortcuts() {
    // Shortcuts from the input into every pool output; from pool 1 into pool 2 (between convs); from
    // pool 2 and the input into pool 3, just before the dense layers.
    let spec = ArchSpec::parse("c3k3 p2 +0 c4k4 p2 +1 +0 c4k5 p2 +2 +0 fc6 fc5").unwrap();
    let input = InputShape::new(3, 16, 24);
    let (n, classes) = (3, 4);
    let cpu = Cpu::new();
    let labels: Vec<u32> = vec![0, 3, 1];
    let (mut net, images, seed) = (0..200u64)
        .find_map(|seed| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            let images: Vec<f64> = uniform(&mut r, n * input.len(), 0.0, 1.0);
            let mut net = Network::new(&cpu, &spec, input, classes, n, seed).unwrap();
            net.forward(&cpu, &images, n).unwrap();
            (kink_margin(&cpu, &net) >= 1e-4).then_some((net, images, seed))
        })
        .expect("no seed below 200 keeps every kink 1e-4 away");
    net.loss(&cpu, &labels).unwrap();
    net.backward(&cpu).unwrap();
    let grads = net.export_grads(&cpu).unwrap();
    let params = net.export_params(&cpu).unwrap();
    assert_eq!(grads.len(), 12, "6 layers with weight and bias");

    let h = 1e-5;
    let mut loss_at = |ps: &[NamedTensor<f64>]| {
        net.import_params(&cpu, ps).unwrap();
        net.evaluate(&cpu, &images, &labels).unwrap().mean_loss
    };
    for (t, grad) in grads.iter().enumerate() {
        let mut ps = params.clone();
        let numeric: Vec<f64> = (0..grad.data.len())
            .map(|i| {
                let orig = ps[t].data[i];
                ps[t].data[i] = orig + h;
                let up = loss_at(&ps);
                ps[t].data[i] = orig - h;
                let down = loss_at(&ps);
                ps[t].data[i] = orig;
                (up - down) / (2.0 * h)
            })
            .collect();
        assert_matches_numeric(&grad.name, &grad.data, &numeric, seed);
    }
}

/// Same seed, same weights on f32 and f64; the forward passes of the `paper` net agree to f32
/// precision at 64×64.
#[test]
fn paper_net_f32_agrees_with_f64() {
    let spec = ArchSpec::from_name_or_spec("paper").unwrap();
    let input = InputShape::new(3, 64, 64);
    let (c32, c64) = (CpuBackend::<f32>::new(), Cpu::new());
    let mut n32 = Network::new(&c32, &spec, input, 7, 4, 11).unwrap();
    let mut n64 = Network::new(&c64, &spec, input, 7, 4, 11).unwrap();
    for (a, b) in n32
        .export_params(&c32)
        .unwrap()
        .iter()
        .zip(n64.export_params(&c64).unwrap())
    {
        assert_eq!(a.name, b.name);
        assert!(
            a.data.iter().zip(&b.data).all(|(x, y)| *x == *y as f32),
            "{}: initial weights differ",
            a.name
        );
    }
    let mut r = ChaCha8Rng::seed_from_u64(3);
    let images: Vec<f64> = uniform(&mut r, 4 * input.len(), 0.0, 1.0);
    let images32: Vec<f32> = images.iter().map(|&v| v as f32).collect();
    let l64 = n64.forward_logits(&c64, &images, 4).unwrap();
    let l32 = n32.forward_logits(&c32, &images32, 4).unwrap();
    assert_eq!(l32.len(), 4 * 7);
    let scale = l64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = l32
        .iter()
        .zip(&l64)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    // Each logit sums ~10⁵ products through five layers; f32's 6e-8 unit roundoff grows to ~1e-6 of
    // the scale in such sums. 1e-4 leaves room and still catches any real difference in the math.
    assert!(scale > 0.1, "degenerate logits");
    assert!(
        worst <= 1e-4 * scale,
        "max |f32 − f64| {worst:.3e}, logit scale {scale:.3e}"
    );
}

/// Four classes of 1×16×16 images: a bright 4×4 blob in one of the four quadrants (position
/// jittered) on uniform noise.
fn blobs(r: &mut ChaCha8Rng, n: usize) -> (Vec<f32>, Vec<u32>) {
    let mut images = Vec::with_capacity(n * 256);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let class = (r.random::<f64>() * 4.0) as usize % 4;
        let (top, left) = (
            (class / 2) * 8 + (r.random::<f64>() * 4.0) as usize,
            (class % 2) * 8 + (r.random::<f64>() * 4.0) as usize,
        );
        for h in 0..16 {
            for w in 0..16 {
                let blob = (top..top + 4).contains(&h) && (left..left + 4).contains(&w);
                images.push(0.5 * r.random::<f32>() + if blob { 0.5 } else { 0.0 });
            }
        }
        labels.push(class as u32);
    }
    (images, labels)
}

/// A short CPU training run on a separable problem: the mean loss of the last 10 steps is at most
/// a tenth of the first step's, and held-out accuracy reaches 95 % (chance: 25 %).
#[test]
fn training_learns_a_separable_problem() {
    let cpu = CpuBackend::<f32>::new();
    let spec = ArchSpec::parse("c8k3 p2 +0 c8k3 p2 +0 fc32").unwrap();
    let mut net = Network::new(&cpu, &spec, InputShape::new(1, 16, 16), 4, 16, 5).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(9);
    let cfg = RmsPropConfig::default();
    let mut losses = Vec::new();
    for _ in 0..120 {
        let (x, y) = blobs(&mut r, 16);
        losses.push(net.train_step(&cpu, &x, &y, &cfg).unwrap().mean_loss);
    }
    assert_eq!(net.step(), 120);
    let last: f64 = losses[110..].iter().sum::<f64>() / 10.0;
    let (x, y) = blobs(&mut r, 16 * 4);
    let correct: usize = (0..4)
        .map(|b| {
            net.evaluate(&cpu, &x[b * 16 * 256..][..16 * 256], &y[b * 16..][..16])
                .unwrap()
                .correct
        })
        .sum();
    eprintln!(
        "first loss {:.4}, last-10 mean {last:.4}, held-out {correct}/64",
        losses[0]
    );
    assert!(
        last <= losses[0] / 10.0,
        "loss {:.4} → {last:.4}: not down by 10×",
        losses[0]
    );
    assert!(correct >= 61, "held-out accuracy {correct}/64 below 95 %");
}

/// Parameters, RMSProp state and step count leave and re-enter a network bit for bit: a fresh
/// network (other seed) given a checkpoint continues training exactly like the original.
#[test]
fn checkpoint_round_trip_is_bit_exact() {
    let cpu = CpuBackend::<f32>::new();
    let spec = ArchSpec::parse("c4k3 p2 +0 fc8").unwrap();
    let input = InputShape::new(1, 8, 10);
    let mut a = Network::new(&cpu, &spec, input, 3, 4, 1).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(2);
    let cfg = RmsPropConfig {
        lr: 0.01,
        decay: 0.1,
        ..Default::default()
    };
    let batch = |r: &mut ChaCha8Rng| (uniform::<f32>(r, 4 * 80, 0.0, 1.0), vec![0u32, 1, 2, 1]);
    for _ in 0..3 {
        let (x, y) = batch(&mut r);
        a.train_step(&cpu, &x, &y, &cfg).unwrap();
    }
    let (params, opt) = (
        a.export_params(&cpu).unwrap(),
        a.export_optimizer_state(&cpu).unwrap(),
    );
    assert_eq!(opt.step, 3);
    assert_eq!(
        params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        [
            "conv1.weight",
            "conv1.bias",
            "fc1.weight",
            "fc1.bias",
            "classifier.weight",
            "classifier.bias"
        ]
    );
    assert_eq!(params[0].dims, [4, 1, 3, 3]);
    assert!(
        opt.mean_square
            .iter()
            .all(|t| t.data.iter().any(|&v| v > 0.0)),
        "optimizer state is empty"
    );
    let mut b = Network::new(&cpu, &spec, input, 3, 4, 99).unwrap();
    assert_ne!(b.export_params(&cpu).unwrap(), params);
    b.import_params(&cpu, &params).unwrap();
    b.import_optimizer_state(&cpu, &opt).unwrap();
    assert_eq!(b.export_params(&cpu).unwrap(), params);
    assert_eq!(b.export_optimizer_state(&cpu).unwrap(), opt);
    for _ in 0..2 {
        let (x, y) = batch(&mut r);
        assert_eq!(
            a.train_step(&cpu, &x, &y, &cfg).unwrap(),
            b.train_step(&cpu, &x, &y, &cfg).unwrap()
        );
    }
    assert_eq!(
        a.export_params(&cpu).unwrap(),
        b.export_params(&cpu).unwrap()
    );
    assert_eq!(b.step(), 5);

    // Mismatches are errors naming the tensor.
    let mut wrong = params.clone();
    wrong[2].dims = vec![8, 40];
    let e = b.import_params(&cpu, &wrong).unwrap_err().to_string();
    assert!(e.contains("fc1.weight") && e.contains("[8, 40]"), "{e}");
    let e = b.import_params(&cpu, &params[1..]).unwrap_err().to_string();
    assert!(e.contains("conv1.weight") && e.contains("missing"), "{e}");
    let mut extra = params.clone();
    extra.push(NamedTensor {
        name: "conv9.weight".into(),
        dims: vec![1],
        data: vec![0.0],
    });
    let e = b.import_params(&cpu, &extra).unwrap_err().to_string();
    assert!(e.contains("unexpected tensor `conv9.weight`"), "{e}");
}

/// AdamW through the network, in f64: three updates of a small network, every parameter against
/// the formulas evaluated here from the step's exported gradients (moments kept here too), at the
/// rates of a 4-step run with one warm-up step then half a cosine (worked out by hand below), with
/// decoupled weight decay and the bias correction of update t. Tolerance 1e-12 absolute: the same
/// f64 formulas, in the kernel's order except that the bias corrections are divisions here, not
/// products with their reciprocals (weights and steps are below 1). Then the state (both moments,
/// the step) moves to a fresh network, which continues bit for bit, and RMSProp is refused on it.
#[test]
fn adamw_updates_through_the_network_follow_the_formulas() {
    use rescnn::model::{AdamWConfig, Optimizer};
    let cpu = Cpu::new();
    let spec = ArchSpec::parse("c4k3 p2 +0 fc8").unwrap();
    let input = InputShape::new(1, 8, 10);
    let mut net = Network::new(&cpu, &spec, input, 3, 4, 1).unwrap();
    let cfg = AdamWConfig {
        lr: 0.01,
        weight_decay: 0.1,
        warmup_fraction: 0.25,
        ..AdamWConfig::default()
    };
    let opt = Optimizer::AdamW {
        cfg,
        total_steps: 4,
    };
    let end = cfg.final_lr_fraction;
    // Step 0 is the warm-up's only step (lr); steps 1-3 follow the cosine over progress 0, ½, 1.
    let rates = [
        cfg.lr,
        cfg.lr,
        cfg.lr * (end + (1.0 - end) * 0.5),
        cfg.lr * end,
    ];
    let mut r = ChaCha8Rng::seed_from_u64(4);
    let batch = |r: &mut ChaCha8Rng| (uniform::<f64>(r, 4 * 80, 0.0, 1.0), vec![0u32, 1, 2, 1]);
    let n_params = net.export_grads(&cpu).unwrap().len();
    let sizes: Vec<usize> = net
        .export_grads(&cpu)
        .unwrap()
        .iter()
        .map(|t| t.data.len())
        .collect();
    let mut m: Vec<Vec<f64>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
    let mut v = m.clone();
    let mut worst = 0.0f64;
    for (step, &lr) in rates.iter().enumerate().take(3) {
        let (x, y) = batch(&mut r);
        let before = net.export_params(&cpu).unwrap();
        net.forward(&cpu, &x, 4).unwrap();
        net.loss(&cpu, &y).unwrap();
        net.backward(&cpu).unwrap();
        let grads = net.export_grads(&cpu).unwrap();
        net.apply_update(&cpu, opt).unwrap();
        let after = net.export_params(&cpu).unwrap();
        let t = step as i32 + 1;
        for k in 0..n_params {
            for i in 0..sizes[k] {
                let g = grads[k].data[i];
                m[k][i] = cfg.beta1 * m[k][i] + (1.0 - cfg.beta1) * g;
                v[k][i] = cfg.beta2 * v[k][i] + (1.0 - cfg.beta2) * g * g;
                let m_hat = m[k][i] / (1.0 - cfg.beta1.powi(t));
                let v_hat = v[k][i] / (1.0 - cfg.beta2.powi(t));
                let mut w = before[k].data[i];
                w -= lr * cfg.weight_decay * w;
                w -= lr * m_hat / (v_hat.sqrt() + cfg.eps);
                let err = (after[k].data[i] - w).abs();
                worst = worst.max(err);
                assert!(
                    err <= 1e-12,
                    "step {step}, {}[{i}]: network {} vs formula {w}",
                    after[k].name,
                    after[k].data[i]
                );
            }
        }
    }
    eprintln!("AdamW through the network: max |network − formula| = {worst:.2e}");

    let state = net.export_optimizer_state(&cpu).unwrap();
    assert_eq!((state.step, state.first_moment.len()), (3, n_params));
    let mut fresh = Network::new(&cpu, &spec, input, 3, 4, 7).unwrap();
    fresh
        .import_params(&cpu, &net.export_params(&cpu).unwrap())
        .unwrap();
    fresh.import_optimizer_state(&cpu, &state).unwrap();
    assert_eq!(fresh.export_optimizer_state(&cpu).unwrap(), state);
    let (x, y) = batch(&mut r);
    assert_eq!(
        net.train_step(&cpu, &x, &y, opt).unwrap(),
        fresh.train_step(&cpu, &x, &y, opt).unwrap()
    );
    assert_eq!(
        net.export_params(&cpu).unwrap(),
        fresh.export_params(&cpu).unwrap()
    );
    let e = fresh
        .train_step(&cpu, &x, &y, &RmsPropConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("AdamW") && e.contains("RMSProp"), "{e}");
}

/// Any batch up to the maximum runs on the buffers allocated for the maximum; each sample's logits
/// do not depend on the batch around it; the same seed gives the same network.
#[test]
fn batches_smaller_than_the_maximum_and_seeding() {
    let cpu = Cpu::new();
    let spec = ArchSpec::parse("c4k3 p2 +0 c5k4 p2 +1 fc8").unwrap();
    let input = InputShape::new(3, 12, 8);
    let mut net = Network::new(&cpu, &spec, input, 5, 6, 3).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(4);
    let images: Vec<f64> = uniform(&mut r, 6 * input.len(), 0.0, 1.0);
    let full = net.forward_logits(&cpu, &images, 6).unwrap();
    let part = net
        .forward_logits(&cpu, &images[2 * input.len()..5 * input.len()], 3)
        .unwrap();
    assert_eq!(part.len(), 15);
    for (a, b) in part.iter().zip(&full[10..25]) {
        assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
    }
    let mut same = Network::new(&cpu, &spec, input, 5, 2, 3).unwrap();
    assert_eq!(
        same.forward_logits(&cpu, &images[..2 * input.len()], 2)
            .unwrap()[..],
        full[..10]
    );
    let mut other = Network::new(&cpu, &spec, input, 5, 2, 4).unwrap();
    assert_ne!(
        other
            .forward_logits(&cpu, &images[..2 * input.len()], 2)
            .unwrap()[..],
        full[..10]
    );
}

#[test]
fn api_errors_are_clear() {
    let cpu = Cpu::new();
    let spec = ArchSpec::parse("c4k3 p2 fc8").unwrap();
    let input = InputShape::new(1, 8, 8);
    let mut net = Network::new(&cpu, &spec, input, 3, 2, 0).unwrap();
    let x = vec![0.5; 2 * 64];
    let cfg = RmsPropConfig::default();
    let e = net
        .forward(&cpu, &vec![0.5; 3 * 64], 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("batch of 3") && e.contains("1 to 2"), "{e}");
    let e = net.forward(&cpu, &x[..100], 2).unwrap_err().to_string();
    assert!(e.contains("need 128 values, got 100"), "{e}");
    let e = net
        .train_step(&cpu, &x, &[0, 3], &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("label 3 of sample 1") && e.contains("3 classes"),
        "{e}"
    );
    let e = net
        .train_step(&cpu, &x, &[0], &cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("need 64 values, got 128"), "{e}");
    let mut fresh = Network::new(&cpu, &spec, input, 3, 2, 0).unwrap();
    assert!(fresh
        .backward(&cpu)
        .unwrap_err()
        .to_string()
        .contains("forward and loss first"));
    fresh.forward(&cpu, &x, 2).unwrap();
    assert!(
        fresh.backward(&cpu).is_err(),
        "backward without a loss must fail"
    );
    assert!(
        fresh.apply_update(&cpu, &cfg).is_err(),
        "update without gradients must fail"
    );
    assert_eq!(fresh.step(), 0);
    let e = Network::new(
        &cpu,
        &ArchSpec::parse("c4k3 p2 p2 p2 p2").unwrap(),
        input,
        3,
        2,
        0,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("token 5 `p2`") && e.contains("too small"), "{e}");
    assert!(Network::new(&cpu, &spec, input, 3, 0, 0).is_err());
    let _ = cpu.name();
}

// ---- batch norm, statistics pooling, dropout ------------------------------------------------------

/// The spec of the tests below: conv → BN → ReLU twice, a shortcut, statistics pooling (so any
/// width), dropout before and after a dense layer.
const MODERN: &str = "c4k3 bn p2 +0 c6k3 bn stats drop0.3 fc8 drop0.2";

/// The smallest |pre-activation| of every ReLU (batch norm's γ·x̂ + β, the dense layers' xW + b) and
/// max-pool lead of the last forward pass (training mode), like `kink_margin` for these layers.
fn modern_kink_margin(cpu: &Cpu, net: &Network<Cpu>) -> f64 {
    let acts = net.export_activations(cpu).unwrap();
    let params = net.export_params(cpu).unwrap();
    let param = |name: &str| &params.iter().find(|p| p.name == name).unwrap().data;
    let n = acts[0].dims[0];
    let mut margin = f64::INFINITY;
    for layer in &net.plan().layers {
        match layer.op {
            PlannedOp::BatchNorm { geom, input, .. } => {
                let g = rescnn::backends::BatchNormGeom {
                    relu: 0,
                    ..geom.with_batch(n)
                };
                let c = g.c as usize;
                let mut z = vec![0.0; g.shape().len()];
                let (mut saved, mut rm, mut rv) = (vec![0.0; 2 * c], vec![0.0; c], vec![1.0; c]);
                cpu.batchnorm_forward_train(
                    &g,
                    BatchNormTrainIo {
                        x: &acts[input].data,
                        gamma: param(&format!("{}.gamma", layer.name)),
                        beta: param(&format!("{}.beta", layer.name)),
                        y: &mut z,
                        saved: &mut saved,
                        running_mean: &mut rm,
                        running_var: &mut rv,
                    },
                )
                .unwrap();
                margin = z.iter().fold(margin, |m, v| m.min(v.abs()));
            }
            PlannedOp::Conv { .. } => {} // no ReLU of its own: the batch norm applies it
            _ => {}
        }
    }
    // Dense ReLUs and pools: as in the classic networks.
    margin.min(kink_margin_without_convs(cpu, net))
}

fn kink_margin_without_convs(cpu: &Cpu, net: &Network<Cpu>) -> f64 {
    // As kink_margin for the dense layers; its conv branch does not apply (these convs have no ReLU).
    let acts = net.export_activations(cpu).unwrap();
    let params = net.export_params(cpu).unwrap();
    let param = |name: &str| &params.iter().find(|p| p.name == name).unwrap().data;
    let n = acts[0].dims[0];
    let mut margin = f64::INFINITY;
    for layer in &net.plan().layers {
        if let PlannedOp::Dense { geom, input, .. } = layer.op {
            if geom.relu == 0 {
                continue;
            }
            let g = rescnn::backends::DenseGeom {
                relu: 0,
                ..geom.with_batch(n)
            };
            let mut z = vec![0.0; n * g.out_features as usize];
            cpu.dense_forward(
                &g,
                DenseForwardIo {
                    x: &acts[input].data,
                    w: param(&format!("{}.weight", layer.name)),
                    b: param(&format!("{}.bias", layer.name)),
                    y: &mut z,
                },
            )
            .unwrap();
            margin = z.iter().fold(margin, |m, v| m.min(v.abs()));
        }
    }
    margin
}

/// The whole-network gradient check of `whole_network_gradient_check_with_shortcuts` (same metric,
/// tolerance 1e-6, h = 1e-5) on a network with batch norm, statistics pooling and dropout, in
/// training mode: the loss is a function of the parameters through the batch's statistics (the
/// running averages do not enter it) and through fixed dropout masks (the step does not move
/// between the forward passes). Max-pool leads are not screened: the pool follows a batch norm whose
/// outputs are spread over the whole batch, and the printed errors show no crossing.
#[test]
fn whole_network_gradient_check_with_batch_norm_stats_and_dropout() {
    let spec = ArchSpec::parse(MODERN).unwrap();
    let input = InputShape::new(2, 8, 12);
    let (n, classes) = (4, 3);
    let cpu = Cpu::new();
    let labels: Vec<u32> = vec![0, 2, 1, 2];
    let (mut net, images, seed) = (0..200u64)
        .find_map(|seed| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            let images: Vec<f64> = uniform(&mut r, n * input.len(), 0.0, 1.0);
            let mut net = Network::new(&cpu, &spec, input, classes, n, seed).unwrap();
            net.forward(&cpu, &images, n).unwrap();
            (modern_kink_margin(&cpu, &net) >= 1e-4).then_some((net, images, seed))
        })
        .expect("no seed below 200 keeps every kink 1e-4 away");
    // A dropout mask that keeps everything would make this a check without dropout.
    let acts = net.export_activations(&cpu).unwrap();
    let dropped = acts
        .iter()
        .find(|a| a.name == "dropout1")
        .unwrap()
        .data
        .iter()
        .filter(|&&v| v == 0.0)
        .count();
    assert!(dropped > 0, "dropout1 dropped nothing");
    net.loss(&cpu, &labels).unwrap();
    net.backward(&cpu).unwrap();
    let grads = net.export_grads(&cpu).unwrap();
    let params = net.export_params(&cpu).unwrap();
    let names: Vec<&str> = grads.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv1.weight",
            "conv1.bias",
            "bn1.gamma",
            "bn1.beta",
            "conv2.weight",
            "conv2.bias",
            "bn2.gamma",
            "bn2.beta",
            "fc1.weight",
            "fc1.bias",
            "classifier.weight",
            "classifier.bias"
        ]
    );

    let h = 1e-5;
    let mut loss_at = |ps: &[NamedTensor<f64>]| {
        net.import_params(&cpu, ps).unwrap();
        net.forward(&cpu, &images, n).unwrap();
        net.loss(&cpu, &labels).unwrap().mean_loss
    };
    for (t, grad) in grads.iter().enumerate() {
        let mut ps = params.clone();
        let numeric: Vec<f64> = (0..grad.data.len())
            .map(|i| {
                let orig = ps[t].data[i];
                ps[t].data[i] = orig + h;
                let up = loss_at(&ps);
                ps[t].data[i] = orig - h;
                let down = loss_at(&ps);
                ps[t].data[i] = orig;
                (up - down) / (2.0 * h)
            })
            .collect();
        let scale = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        // A conv bias before a batch norm has no effect at all (the batch mean removes it): its
        // gradient must be zero, analytically and numerically.
        if grad.name.starts_with("conv") && grad.name.ends_with(".bias") {
            assert!(scale < 1e-9, "{}: numerical gradient {scale:e}", grad.name);
            let worst = grad.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(worst < 1e-12, "{}: analytic gradient {worst:e}", grad.name);
            continue;
        }
        assert_matches_numeric(&grad.name, &grad.data, &numeric, seed);
    }
}

/// Four classes told apart by local texture, wherever it is: horizontal stripes, vertical stripes,
/// a checkerboard, plain noise; random phase, on noise. 1×8×`width` images.
fn textures(r: &mut ChaCha8Rng, n: usize, width: usize) -> (Vec<f32>, Vec<u32>) {
    let mut images = Vec::with_capacity(n * 8 * width);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let class = (r.random::<f64>() * 4.0) as usize % 4;
        let (ph, pw) = (r.random::<f64>() < 0.5, r.random::<f64>() < 0.5);
        for h in 0..8 {
            for w in 0..width {
                let (a, b) = ((h % 2 == 0) ^ ph, (w % 2 == 0) ^ pw);
                let on = match class {
                    0 => a,
                    1 => b,
                    2 => a ^ b,
                    _ => false,
                };
                images.push(0.6 * r.random::<f32>() + if on { 0.6 } else { 0.0 });
            }
        }
        labels.push(class as u32);
    }
    (images, labels)
}

/// A short CPU training run of the batch norm + stats + dropout network on 16-column images; then
/// evaluation of single images 24 and 10 columns wide (batch 1, the width set per image): the training
/// loss halves (it stays well above zero: dropout of 30 % and 20 % before and after an 8-unit layer
/// keeps it noisy) and held-out accuracy, in evaluation mode, reaches 90 % at both other widths (chance 25 %).
#[test]
fn batch_norm_stats_dropout_network_learns_and_evaluates_any_width() {
    let cpu = CpuBackend::<f32>::new();
    let spec = ArchSpec::parse(MODERN).unwrap();
    let mut net = Network::new(&cpu, &spec, InputShape::new(1, 8, 16), 4, 16, 5).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(9);
    let cfg = RmsPropConfig {
        lr: 3e-3,
        ..Default::default()
    };
    let mut losses = Vec::new();
    for _ in 0..150 {
        let (x, y) = textures(&mut r, 16, 16);
        losses.push(net.train_step(&cpu, &x, &y, &cfg).unwrap().mean_loss);
    }
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[140..].iter().sum::<f64>() / 10.0;
    let mut correct = Vec::new();
    for width in [24, 10] {
        net.set_input_width(&cpu, width).unwrap();
        let (x, y) = textures(&mut r, 40, width);
        let c: usize = (0..40)
            .map(|i| {
                net.evaluate(&cpu, &x[i * 8 * width..][..8 * width], &y[i..][..1])
                    .unwrap()
                    .correct
            })
            .sum();
        correct.push(c);
    }
    eprintln!(
        "first-5 loss {first:.4}, last-10 {last:.4}, held-out at widths 24, 10: {correct:?}/40"
    );
    assert!(
        last <= first / 2.0,
        "loss {first:.4} → {last:.4}: not down by 2×"
    );
    assert!(
        correct.iter().all(|&c| c >= 36),
        "held-out {correct:?}/40 below 90 %"
    );
}

/// Evaluation mode: batch norm uses the running statistics (so a sample's logits do not depend on
/// the batch around it) and dropout is the identity; training mode draws a new mask each step. A
/// width change keeps the parameters: the logits equal those of a network built for that width
/// with the same parameters, and going back reproduces the earlier logits bit for bit.
#[test]
fn evaluation_mode_and_input_width() {
    let cpu = Cpu::new();
    let spec = ArchSpec::parse(MODERN).unwrap();
    let input = InputShape::new(1, 8, 16);
    let mut net = Network::new(&cpu, &spec, input, 3, 4, 2).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(3);
    let cfg = RmsPropConfig::default();
    for _ in 0..3 {
        let x: Vec<f64> = uniform(&mut r, 4 * input.len(), 0.0, 1.0);
        net.train_step(&cpu, &x, &[0, 1, 2, 0], &cfg).unwrap();
    }
    let params = net.export_params(&cpu).unwrap();
    let rm = &params
        .iter()
        .find(|p| p.name == "bn1.running_mean")
        .unwrap()
        .data;
    assert!(
        rm.iter().all(|&v| v != 0.0),
        "running mean never updated: {rm:?}"
    );

    let x: Vec<f64> = uniform(&mut r, 4 * input.len(), 0.0, 1.0);
    let all = net.forward_logits(&cpu, &x, 4).unwrap();
    let one = net
        .forward_logits(&cpu, &x[input.len()..2 * input.len()], 1)
        .unwrap();
    assert_eq!(one[..], all[3..6], "evaluation depends on the batch");
    assert_eq!(
        net.forward_logits(&cpu, &x, 4).unwrap(),
        all,
        "evaluation is not deterministic"
    );

    // Another width: the same logits as a network built for it with these parameters.
    let wide = InputShape::new(1, 8, 40);
    let xw: Vec<f64> = uniform(&mut r, 2 * wide.len(), 0.0, 1.0);
    net.set_input_width(&cpu, 40).unwrap();
    let got = net.forward_logits(&cpu, &xw, 2).unwrap();
    let mut built = Network::new(&cpu, &spec, wide, 3, 4, 77).unwrap();
    built.import_params(&cpu, &params).unwrap();
    assert_eq!(got, built.forward_logits(&cpu, &xw, 2).unwrap());
    net.set_input_width(&cpu, 16).unwrap();
    assert_eq!(net.forward_logits(&cpu, &x, 4).unwrap(), all);

    // Training mode (batch statistics, dropout; it also moves the running statistics) gives other
    // logits, and a backward after an evaluation forward is refused.
    net.forward(&cpu, &x, 4).unwrap();
    let acts = net.export_activations(&cpu).unwrap();
    assert_ne!(acts.last().unwrap().data[..12], all[..]);
    net.evaluate(&cpu, &x, &[0, 1, 2, 0]).unwrap();
    net.forward_logits(&cpu, &x, 4).unwrap();
    net.loss(&cpu, &[0, 1, 2, 0]).unwrap();
    let e = net.backward(&cpu).unwrap_err().to_string();
    assert!(e.contains("training-mode forward"), "{e}");

    // A network whose dense layer reads the flattened maps cannot change width.
    let mut fixed = Network::new(
        &cpu,
        &ArchSpec::parse("c4k3 bn p2 fc8").unwrap(),
        input,
        3,
        2,
        0,
    )
    .unwrap();
    let e = fixed.set_input_width(&cpu, 20).unwrap_err().to_string();
    assert!(
        e.contains("16 columns wide only") && e.contains("stats"),
        "{e}"
    );
}

/// Checkpoint round trip with batch norm and dropout: the running statistics are exported with the
/// parameters, and a fresh network (same seed, so the same dropout masks) given the checkpoint
/// continues training bit for bit like the original, running statistics included.
#[test]
fn checkpoint_round_trip_with_batch_norm_and_dropout_is_bit_exact() {
    let cpu = CpuBackend::<f32>::new();
    let spec = ArchSpec::parse(MODERN).unwrap();
    let input = InputShape::new(1, 8, 10);
    let mut a = Network::new(&cpu, &spec, input, 3, 4, 1).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(2);
    let cfg = RmsPropConfig::default();
    let batch = |r: &mut ChaCha8Rng| (uniform::<f32>(r, 4 * 80, 0.0, 1.0), vec![0u32, 1, 2, 1]);
    for _ in 0..3 {
        let (x, y) = batch(&mut r);
        a.train_step(&cpu, &x, &y, &cfg).unwrap();
    }
    let (params, opt) = (
        a.export_params(&cpu).unwrap(),
        a.export_optimizer_state(&cpu).unwrap(),
    );
    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    for want in [
        "bn1.running_mean",
        "bn1.running_var",
        "bn2.running_mean",
        "bn2.running_var",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert_eq!(
        opt.mean_square.len(),
        12,
        "state tensors have no optimizer state"
    );
    let mut b = Network::new(&cpu, &spec, input, 3, 4, 1).unwrap();
    assert_ne!(b.export_params(&cpu).unwrap(), params);
    b.import_params(&cpu, &params).unwrap();
    b.import_optimizer_state(&cpu, &opt).unwrap();
    let (x, _) = batch(&mut r);
    assert_eq!(
        a.forward_logits(&cpu, &x, 4).unwrap(),
        b.forward_logits(&cpu, &x, 4).unwrap()
    );
    for _ in 0..2 {
        let (x, y) = batch(&mut r);
        assert_eq!(
            a.train_step(&cpu, &x, &y, &cfg).unwrap(),
            b.train_step(&cpu, &x, &y, &cfg).unwrap()
        );
    }
    assert_eq!(
        a.export_params(&cpu).unwrap(),
        b.export_params(&cpu).unwrap()
    );
    // A checkpoint without the running statistics is refused, naming them.
    let without: Vec<_> = params
        .iter()
        .filter(|p| !p.name.contains("running"))
        .cloned()
        .collect();
    let e = b.import_params(&cpu, &without).unwrap_err().to_string();
    assert!(
        e.contains("bn1.running_mean") && e.contains("missing"),
        "{e}"
    );
}

/// The soft-target loss through a whole network: one-hot targets give exactly the hard-label loss
/// and gradients; smoothed, weighted targets give the gradient of their loss (f64 central
/// differences on the classifier, which the loss reaches without kinks); bad targets are refused.
#[test]
fn soft_target_loss_through_the_network() {
    let cpu = Cpu::new();
    let spec = ArchSpec::parse("c4k3 bn stats fc6").unwrap();
    let input = InputShape::new(1, 6, 8);
    let (n, k) = (3, 4);
    let mut net = Network::new(&cpu, &spec, input, k, n, 1).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(5);
    let x: Vec<f64> = uniform(&mut r, n * input.len(), 0.0, 1.0);
    let labels = [2u32, 0, 3];
    net.forward(&cpu, &x, n).unwrap();
    let hard = net.loss(&cpu, &labels).unwrap();
    net.backward(&cpu).unwrap();
    let hard_grads = net.export_grads(&cpu).unwrap();
    let mut onehot = vec![0.0; n * k];
    for (i, &l) in labels.iter().enumerate() {
        onehot[i * k + l as usize] = 1.0;
    }
    net.forward(&cpu, &x, n).unwrap();
    assert_eq!(net.loss_soft(&cpu, &onehot, None).unwrap(), hard);
    net.backward(&cpu).unwrap();
    assert_eq!(net.export_grads(&cpu).unwrap(), hard_grads);

    // Label smoothing 0.1 and class weights.
    let smooth: Vec<f64> = onehot.iter().map(|&t| 0.9 * t + 0.1 / k as f64).collect();
    let weights = [1.0, 2.0, 0.5, 1.5];
    net.forward(&cpu, &x, n).unwrap();
    net.loss_soft(&cpu, &smooth, Some(&weights)).unwrap();
    net.backward(&cpu).unwrap();
    let grads = net.export_grads(&cpu).unwrap();
    let params = net.export_params(&cpu).unwrap();
    let t = params
        .iter()
        .position(|p| p.name == "classifier.weight")
        .unwrap();
    let h = 1e-5;
    let mut loss_at = |ps: &[NamedTensor<f64>]| {
        net.import_params(&cpu, ps).unwrap();
        net.forward(&cpu, &x, n).unwrap();
        net.loss_soft(&cpu, &smooth, Some(&weights))
            .unwrap()
            .mean_loss
    };
    let mut ps = params.clone();
    for i in 0..ps[t].data.len() {
        let orig = ps[t].data[i];
        ps[t].data[i] = orig + h;
        let up = loss_at(&ps);
        ps[t].data[i] = orig - h;
        let down = loss_at(&ps);
        ps[t].data[i] = orig;
        let numeric = (up - down) / (2.0 * h);
        let a = grads[t].data[i];
        // Smooth in these parameters: truncation ~h², rounding ~1e-11.
        assert!(
            (a - numeric).abs() <= 1e-7 * (1.0 + a.abs()),
            "classifier.weight[{i}]: {a} vs {numeric}"
        );
    }
    net.forward(&cpu, &x, n).unwrap();
    let mut bad = smooth.clone();
    bad[0] = 0.5;
    let e = net.loss_soft(&cpu, &bad, None).unwrap_err().to_string();
    assert!(e.contains("sample 0") && e.contains("summing to 1"), "{e}");
    let e = net
        .loss_soft(&cpu, &smooth, Some(&[1.0, 0.0, 1.0, 1.0]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("class weights"), "{e}");
    let e = net
        .loss_soft(&cpu, &smooth[..8], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("need 12 values, got 8"), "{e}");
}

/// The per-tensor rule of the gradient checks above: the numerical gradient is not vacuous, and
/// |a − b| / max(|a| + |b|, 1e-3 · max |b|) ≤ 1e-6 everywhere (reasons in the first check's doc).
fn assert_matches_numeric(name: &str, analytic: &[f64], numeric: &[f64], seed: u64) {
    let scale = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        scale > 1e-8,
        "{name}: zero gradient, the check would be vacuous"
    );
    let floor = 1e-3 * scale;
    let (worst, at) = analytic
        .iter()
        .zip(numeric)
        .map(|(a, b)| (a - b).abs() / (a.abs() + b.abs()).max(floor))
        .enumerate()
        .fold(
            (0.0, 0),
            |(w, wi), (i, e)| if e > w { (e, i) } else { (w, wi) },
        );
    eprintln!(
        "{name}: max error {worst:.2e} over {} entries (seed {seed})",
        numeric.len()
    );
    assert!(
        worst <= 1e-6,
        "{name}: max error {worst:.3e} at [{at}]: analytic {:.9e}, numeric {:.9e} (seed {seed})",
        analytic[at],
        numeric[at]
    );
}

/// A network that appends a projected side input, dropped out per entry and per whole vector, to
/// its pooled statistics.
const JOINT: &str = "c4k3 bn p2 +0 c6k3 bn stats vec0.3w0.4fc5 fc8 drop0.2";

/// Per sample, whether the whole-vector dropout after `net`'s side input kept its row: a kept row
/// is the input row unscaled, a dropped one all zeros (the test's inputs have no zeros).
fn whole_rows_kept(acts: &[NamedTensor<f64>], net: &Network<Cpu>, side: &[f64]) -> Vec<bool> {
    let node = net.plan().side_input.unwrap() + 1;
    let side_len = net.plan().input.side;
    acts[node]
        .data
        .chunks(side_len)
        .zip(side.chunks(side_len))
        .map(|(row, given)| {
            let kept = row == given;
            assert!(
                kept || row.iter().all(|&v| v == 0.0),
                "{row:?} from {given:?}"
            );
            kept
        })
        .collect()
}

/// The whole-network gradient check (same metric, tolerance 1e-6, h = 1e-5) through the `vec`
/// layer: the concatenation hands the pooled statistics' part of the gradient back into the
/// convolutions and the side part into the projection, through a dropout mask on the vector. Every
/// parameter is checked; the projection's weight gradient is zero unless the side input reaches it.
#[test]
fn whole_network_gradient_check_with_a_side_input() {
    let spec = ArchSpec::parse(JOINT).unwrap();
    let side_len = 7;
    let input = InputShape::new(2, 8, 12).with_side(side_len);
    let (n, classes) = (4, 3);
    let cpu = Cpu::new();
    let labels: Vec<u32> = vec![0, 2, 1, 2];
    let (mut net, images, side, seed) = (0..200u64)
        .find_map(|seed| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            let images: Vec<f64> = uniform(&mut r, n * input.len(), 0.0, 1.0);
            let side: Vec<f64> = uniform(&mut r, n * side_len, -1.5, 1.5);
            let mut net = Network::new(&cpu, &spec, input, classes, n, seed).unwrap();
            // A dropped vector gives the projection's ReLU its bias alone: a zero bias (the
            // initialisation) would sit on the kink, so it starts away from 0.
            let mut params = net.export_params(&cpu).unwrap();
            let bias = params.iter_mut().find(|p| p.name == "vec.fc.bias").unwrap();
            bias.data = uniform(&mut r, bias.data.len(), 0.05, 0.2);
            net.import_params(&cpu, &params).unwrap();
            net.forward_with_side(&cpu, &images, Some(&side), n)
                .unwrap();
            // Whole-vector dropout (the node after the side input) keeps some rows and drops others.
            let kept = whole_rows_kept(&net.export_activations(&cpu).unwrap(), &net, &side);
            let both = kept.contains(&true) && kept.contains(&false);
            (both && modern_kink_margin(&cpu, &net) >= 1e-4).then_some((net, images, side, seed))
        })
        .expect("no seed below 200 keeps every kink 1e-4 away and drops some vectors whole");
    let acts = net.export_activations(&cpu).unwrap();
    let side_node = net.plan().side_input.unwrap();
    assert_eq!(
        acts[side_node].data, side,
        "the side input node holds the rows given"
    );
    let dropped = acts[side_node + 2]
        .data
        .chunks(side_len)
        .filter(|row| row.iter().any(|&v| v != 0.0))
        .flatten()
        .filter(|&&v| v == 0.0)
        .count();
    assert!(
        dropped > 0,
        "the entries' dropout dropped nothing in the kept rows"
    );
    net.loss(&cpu, &labels).unwrap();
    net.backward(&cpu).unwrap();
    let grads = net.export_grads(&cpu).unwrap();
    let params = net.export_params(&cpu).unwrap();
    let names: Vec<&str> = grads.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv1.weight",
            "conv1.bias",
            "bn1.gamma",
            "bn1.beta",
            "conv2.weight",
            "conv2.bias",
            "bn2.gamma",
            "bn2.beta",
            "vec.fc.weight",
            "vec.fc.bias",
            "fc1.weight",
            "fc1.bias",
            "classifier.weight",
            "classifier.bias"
        ]
    );
    let h = 1e-5;
    let mut loss_at = |ps: &[NamedTensor<f64>]| {
        net.import_params(&cpu, ps).unwrap();
        net.forward_with_side(&cpu, &images, Some(&side), n)
            .unwrap();
        net.loss(&cpu, &labels).unwrap().mean_loss
    };
    for (t, grad) in grads.iter().enumerate() {
        if grad.name.starts_with("conv") && grad.name.ends_with(".bias") {
            continue; // removed by the batch norm that follows (see the check above)
        }
        let mut ps = params.clone();
        let numeric: Vec<f64> = (0..grad.data.len())
            .map(|i| {
                let orig = ps[t].data[i];
                ps[t].data[i] = orig + h;
                let up = loss_at(&ps);
                ps[t].data[i] = orig - h;
                let down = loss_at(&ps);
                ps[t].data[i] = orig;
                (up - down) / (2.0 * h)
            })
            .collect();
        assert_matches_numeric(&grad.name, &grad.data, &numeric, seed);
    }
}

/// In evaluation (batch norm on running statistics, no dropout) sample k's logits depend on row
/// k of the side input and on no other row, and the layer table shows the concatenation.
#[test]
fn each_sample_reads_its_own_side_input_row() {
    let spec = ArchSpec::parse("c4k3 bn p2 stats vec fc6").unwrap();
    let side_len = 5;
    let input = InputShape::new(1, 8, 10).with_side(side_len);
    let (n, classes) = (3, 4);
    let cpu = CpuBackend::<f32>::new();
    let mut r = ChaCha8Rng::seed_from_u64(3);
    let images: Vec<f32> = uniform(&mut r, n * input.len(), 0.0, 1.0);
    let side: Vec<f32> = uniform(&mut r, n * side_len, -1.0, 1.0);
    let mut net = Network::new(&cpu, &spec, input, classes, n, 1).unwrap();
    let base = net
        .forward_logits_with_side(&cpu, &images, Some(&side), n)
        .unwrap();
    let mut changed = side.clone();
    changed[side_len + 2] += 1.0; // row 1 only
    let after = net
        .forward_logits_with_side(&cpu, &images, Some(&changed), n)
        .unwrap();
    for k in 0..n {
        let (a, b) = (
            &base[k * classes..][..classes],
            &after[k * classes..][..classes],
        );
        assert_eq!(a == b, k != 1, "sample {k}: {a:?} vs {b:?}");
    }
    let summary = net.summary();
    assert!(
        summary.contains("vec") && summary.contains("8 features + 5 from the utterance vector"),
        "{summary}"
    );
}

#[test]
fn side_input_errors_are_clear() {
    let cpu = CpuBackend::<f32>::new();
    let spec = ArchSpec::parse("c4k3 stats vec0.5 fc6").unwrap();
    let e = Network::new(&cpu, &spec, InputShape::new(1, 8, 10), 3, 2, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("token 3 `vec0.5`") && e.contains("needs a side input"),
        "{e}"
    );
    let input = InputShape::new(1, 8, 10).with_side(4);
    let mut net = Network::new(&cpu, &spec, input, 3, 2, 1).unwrap();
    let images = vec![0.5f32; 2 * input.len()];
    let e = net.forward(&cpu, &images, 2).unwrap_err().to_string();
    assert!(
        e.contains("appends the utterance vector") && e.contains("2 × 4 values"),
        "{e}"
    );
    let e = net
        .forward_with_side(&cpu, &images, Some(&[0.0; 7]), 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("need 8 values, got 7"), "{e}");
    let plain = ArchSpec::parse("c4k3 stats fc6").unwrap();
    let mut net = Network::new(&cpu, &plain, input, 3, 2, 1).unwrap();
    let e = net
        .forward_with_side(&cpu, &images, Some(&[0.0; 8]), 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("takes no side input"), "{e}");
}
