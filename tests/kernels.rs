//! Every kernel family against the CPU reference (f32), on awkward shapes: batch 1 and 3, odd and even
//! non-square maps, sizes that are multiples of no block or tile size. Each body is written once and
//! run on every kernel-running device (see `backend_tests!` in tests/common).

#[macro_use]
mod common;

use common::check::{assert_close, assert_same_indices};
use common::{reference, Rng};
use rescnn::backends::ops::maxpool::ARGMAX_INDEX;
use rescnn::backends::ops::{
    adamw, batchnorm, concat, conv2d, dropout, maxpool, rmsprop, shortcut, softmax_xent, statspool,
};
use rescnn::backends::{
    AdamWIo, Backend, BatchNormBackwardIo, BatchNormEvalIo, BatchNormGeom, BatchNormTrainIo,
    ConcatBackwardIo, ConcatForwardIo, ConcatGeom, ConvForwardIo, ConvGeom, DenseForwardIo,
    DenseGeom, DropoutParams, MaxPoolReluBackwardIo, Padding, PoolGeom, RmsPropIo, ShortcutGeom,
    SoftXentIo, StatsPoolBackwardIo, StatsPoolGeom, XentGeom, XentIo,
};
use rescnn::model::{AdamWConfig, LrSchedule, RmsPropConfig};
use rescnn::Shape;

backend_tests!(
    maxpool_matches_reference,
    maxpool_with_ties_takes_the_first_maximum,
    maxpool_refuses_a_geometry_its_constructor_would_not_build,
    every_op_refuses_the_geometries_its_validity_rule_refuses,
    maxpool_relu_backward_writes_the_masked_gradient,
    shortcut_matches_reference,
    softmax_xent_matches_reference,
    softmax_xent_rejects_a_label_outside_the_classes,
    softmax_xent_soft_matches_reference,
    rmsprop_matches_reference_over_several_steps,
    adamw_matches_reference_over_several_steps,
    batchnorm_matches_reference,
    statspool_matches_reference,
    dropout_matches_reference_with_the_same_mask,
    concat_matches_reference,
);

/// Forward then backward of one max-pool on `b`; dx starts from `dx0` (the op accumulates).
fn run_maxpool<B: Backend<Elem = f32>>(
    b: &B,
    g: &PoolGeom,
    x: &[f32],
    dy: &[f32],
    dx0: &[f32],
) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let xb = b.upload(x).unwrap();
    let mut y = b.zeros(g.output().len()).unwrap();
    let mut am = b.zeros_idx(g.output().len()).unwrap();
    b.maxpool_forward(g, &xb, &mut y, &mut am).unwrap();
    let dyb = b.upload(dy).unwrap();
    let mut dx = b.upload(dx0).unwrap();
    b.maxpool_backward(g, &dyb, &am, &mut dx).unwrap();
    (
        b.download(&y).unwrap(),
        b.download_idx(&am).unwrap(),
        b.download(&dx).unwrap(),
    )
}

fn check_maxpool<B: Backend<Elem = f32>>(dev: &B, g: &PoolGeom, x: &[f32], rng: &mut Rng) {
    let dy = rng.vec(g.output().len(), -1.0, 1.0);
    let dx0 = rng.vec(g.input().len(), -1.0, 1.0);
    let (y, am, dx) = run_maxpool(dev, g, x, &dy, &dx0);
    let (y_ref, am_ref, dx_ref) = run_maxpool(&reference(), g, x, &dy, &dx0);
    let what = format!(
        "maxpool {} k={} s={} on {}",
        g.input(),
        g.k,
        g.stride,
        dev.name()
    );
    assert_close(
        &maxpool::FORWARD_TOLERANCE,
        &format!("{what}: y"),
        &y,
        &y_ref,
    );
    assert_same_indices(&format!("{what}: argmax"), &am, &am_ref);
    assert_close(
        &maxpool::BACKWARD_TOLERANCE,
        &format!("{what}: dx"),
        &dx,
        &dx_ref,
    );
}

/// The fused backward of a pool over a ReLU output x: dx and db are WRITTEN (they start as NaN
/// garbage); dx holds [x > 0] · (dy routed to each window's argmax), which is the unfused path the
/// network used before (accumulate into zeros, then the convolution's ReLU mask), and db (C) the
/// channel sums of that dx, the bias gradient the convolution's backward computed from it. ReLU-like
/// inputs: many zeros, whole zero windows, overlapping windows (k 3, s 2), stride 1, the paper's 2×2,
/// and a map large enough (3 × 40 × 40 per channel) that a channel's sum is split into two chunks
/// (kernels/channel_sum.cuh), the second starting inside the second image's plane, so a misplaced
/// partial or chunk offset shows in db.
fn maxpool_relu_backward_writes_the_masked_gradient<B: Backend<Elem = f32>>(dev: &B) {
    let mut rng = Rng::new(11);
    for (shape, k, s) in [
        (Shape::new(2, 3, 8, 6), 2, 2),
        (Shape::new(1, 2, 9, 7), 3, 2),
        (Shape::new(3, 1, 5, 5), 2, 1),
        (Shape::new(3, 2, 40, 40), 2, 2),
    ] {
        let g = PoolGeom::new(shape, k, s).unwrap();
        let what = format!(
            "maxpool_relu_backward {shape} k={k} s={s} on {}",
            dev.name()
        );
        let x: Vec<f32> = rng
            .vec(g.input().len(), -1.0, 1.0)
            .into_iter()
            .map(|v| v.max(0.0))
            .collect();
        let dy = rng.vec(g.output().len(), -1.0, 1.0);
        let xb = dev.upload(&x).unwrap();
        let mut y = dev.zeros(g.output().len()).unwrap();
        let mut am = dev.zeros_idx(g.output().len()).unwrap();
        dev.maxpool_forward(&g, &xb, &mut y, &mut am).unwrap();
        let dyb = dev.upload(&dy).unwrap();
        let mut dx = dev.upload(&vec![f32::NAN; g.input().len()]).unwrap();
        let mut db = dev.upload(&vec![f32::NAN; g.c as usize]).unwrap();
        dev.maxpool_relu_backward(
            &g,
            MaxPoolReluBackwardIo {
                dy: &dyb,
                argmax: &am,
                dx: &mut dx,
                db: &mut db,
            },
        )
        .unwrap();
        let (dx, db) = (dev.download(&dx).unwrap(), dev.download(&db).unwrap());

        // The oracle, on the host: route dy to the argmax, keep it where x > 0, sum each channel.
        let am_h = dev.download_idx(&am).unwrap();
        let (ip, op) = ((g.h_in * g.w_in) as usize, (g.h_out * g.w_out) as usize);
        let mut want = vec![0.0f32; g.input().len()];
        for o in 0..g.output().len() {
            want[(o / op) * ip + (am_h[o] & ARGMAX_INDEX) as usize] += dy[o];
        }
        for (w, &v) in want.iter_mut().zip(&x) {
            if v <= 0.0 {
                *w = 0.0;
            }
        }
        let mut want_db = vec![0.0f64; g.c as usize];
        for (plane, values) in want.chunks(ip).enumerate() {
            want_db[plane % g.c as usize] += values.iter().map(|&v| v as f64).sum::<f64>();
        }
        let want_db: Vec<f32> = want_db.into_iter().map(|v| v as f32).collect();
        assert!(want.iter().any(|&v| v != 0.0) && x.contains(&0.0));
        assert_close(
            &maxpool::BACKWARD_TOLERANCE,
            &format!("{what}: dx"),
            &dx,
            &want,
        );
        // db is the bias gradient of the convolution that produced x: its tolerance.
        assert_close(&conv2d::TOLERANCE, &format!("{what}: db"), &db, &want_db);
    }
}

/// The same contract on the CPU reference, which the network's gradient checks use.
#[test]
fn maxpool_relu_backward_writes_the_masked_gradient_on_the_cpu() {
    maxpool_relu_backward_writes_the_masked_gradient(&reference());
}

/// The geometry's fields are public; a hand-built one whose output runs past the input (floor mode
/// says 4 rows, not 5) or whose window is empty must be refused before any kernel reads out of bounds.
fn maxpool_refuses_a_geometry_its_constructor_would_not_build<B: Backend<Elem = f32>>(dev: &B) {
    let good = PoolGeom::new(Shape::new(1, 2, 8, 8), 2, 2).unwrap();
    for bad in [
        PoolGeom { h_out: 5, ..good },
        PoolGeom { k: 0, ..good },
        PoolGeom { stride: -2, ..good },
    ] {
        let x = dev.zeros(bad.input().len()).unwrap();
        let out_len = 2 * 5 * 4; // the largest output above
        let mut y = dev.zeros(out_len).unwrap();
        let mut am = dev.zeros_idx(out_len).unwrap();
        let err = dev.maxpool_forward(&bad, &x, &mut y, &mut am).unwrap_err();
        assert!(err.to_string().contains("max-pool"), "{bad:?}: {err}");
        let mut dx = dev.zeros(bad.input().len()).unwrap();
        assert!(
            dev.maxpool_backward(&bad, &y, &am, &mut dx).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn every_op_refuses_the_geometries_its_validity_rule_refuses_on_the_cpu() {
    every_op_refuses_the_geometries_its_validity_rule_refuses(&reference());
}

/// Each op has one validity rule for its public parameter struct, which the CPU reference and the
/// kernel wrapper both apply: a hand-made geometry breaking it is refused by every backend, with
/// buffers large enough that only the rule can refuse it. The cases are the ones the two sides once
/// judged differently (padding as wide as the kernel, an empty batch or target, eps 0).
fn every_op_refuses_the_geometries_its_validity_rule_refuses<B: Backend<Elem = f32>>(dev: &B) {
    let big = || dev.zeros(4096).unwrap();
    let conv = ConvGeom::new(Shape::new(1, 1, 8, 8), 2, (3, 3), 1, Padding::Same, false).unwrap();
    for bad in [ConvGeom { pad_top: 3, ..conv }, ConvGeom { n: 0, ..conv }] {
        let err = dev.conv2d_forward(
            &bad,
            ConvForwardIo {
                x: &big(),
                w: &big(),
                b: &big(),
                y: &mut big(),
            },
        );
        assert!(err.is_err(), "conv2d accepted {bad:?}");
    }
    let dense = DenseGeom::new(2, 3, 4, false).unwrap();
    let bad = DenseGeom { n: 0, ..dense };
    let err = dev.dense_forward(
        &bad,
        DenseForwardIo {
            x: &big(),
            w: &big(),
            b: &big(),
            y: &mut big(),
        },
    );
    assert!(err.is_err(), "dense accepted {bad:?}");
    let shortcut = ShortcutGeom::new(Shape::new(1, 1, 8, 8), Shape::new(1, 2, 4, 4)).unwrap();
    for bad in [
        ShortcutGeom {
            c_dst: 0,
            ..shortcut
        },
        ShortcutGeom { n: 0, ..shortcut },
    ] {
        let err = dev.shortcut_forward(&bad, &big(), &mut big());
        assert!(err.is_err(), "shortcut accepted {bad:?}");
    }
    let pool = PoolGeom::new(Shape::new(1, 2, 8, 8), 2, 2).unwrap();
    let bad = PoolGeom { n: 0, ..pool };
    let err = dev.maxpool_forward(&bad, &big(), &mut big(), &mut dev.zeros_idx(4096).unwrap());
    assert!(err.is_err(), "max-pool accepted {bad:?}");
    let stats = StatsPoolGeom::new(Shape::new(1, 2, 4, 4), 1e-5).unwrap();
    let bad = StatsPoolGeom { eps: 0.0, ..stats };
    let err = dev.statspool_forward(&bad, &big(), &mut big());
    assert!(err.is_err(), "statistics pooling accepted {bad:?}");
}

const POOL_CASES: [(Shape, usize, usize); 6] = [
    (Shape::new(1, 3, 7, 6), 2, 2),
    (Shape::new(3, 2, 9, 8), 3, 2),
    (Shape::new(3, 5, 33, 17), 2, 2),
    (Shape::new(1, 1, 64, 64), 3, 2),
    // stride < k: every input sits in up to four windows
    (Shape::new(2, 4, 11, 13), 3, 1),
    (Shape::new(3, 3, 2, 2), 2, 2),
];

fn maxpool_matches_reference<B: Backend<Elem = f32>>(dev: &B) {
    let mut rng = Rng::new(1);
    for (shape, k, s) in POOL_CASES {
        let g = PoolGeom::new(shape, k, s).unwrap();
        let x = rng.vec(shape.len(), -2.0, 2.0);
        check_maxpool(dev, &g, &x, &mut rng);
    }
}

fn maxpool_with_ties_takes_the_first_maximum<B: Backend<Elem = f32>>(dev: &B) {
    // Three distinct values only: most windows hold several maxima, and overlapping windows (s < k)
    // route several gradients onto the same input.
    let mut rng = Rng::new(2);
    for (shape, k, s) in POOL_CASES {
        let g = PoolGeom::new(shape, k, s).unwrap();
        let x: Vec<f32> = (0..shape.len()).map(|_| rng.below(3) as f32).collect();
        check_maxpool(dev, &g, &x, &mut rng);
    }
}

fn run_shortcut<B: Backend<Elem = f32>>(
    b: &B,
    g: &ShortcutGeom,
    src: &[f32],
    dst0: &[f32],
    d_dst: &[f32],
    d_src0: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let srcb = b.upload(src).unwrap();
    let mut dst = b.upload(dst0).unwrap();
    b.shortcut_forward(g, &srcb, &mut dst).unwrap();
    let d_dstb = b.upload(d_dst).unwrap();
    let mut d_src = b.upload(d_src0).unwrap();
    b.shortcut_backward(g, &d_dstb, &mut d_src).unwrap();
    (b.download(&dst).unwrap(), b.download(&d_src).unwrap())
}

fn shortcut_matches_reference<B: Backend<Elem = f32>>(dev: &B) {
    let cases = [
        (Shape::new(1, 1, 16, 12), Shape::new(1, 8, 4, 3)),
        (Shape::new(3, 3, 18, 10), Shape::new(3, 9, 9, 5)),
        // C_dst not a multiple of C_src: source channels get different numbers of readers
        (Shape::new(3, 3, 10, 14), Shape::new(3, 8, 5, 7)),
        (Shape::new(2, 1, 7, 5), Shape::new(2, 16, 7, 5)),
        (Shape::new(1, 3, 64, 48), Shape::new(1, 32, 8, 6)),
        // more source than target channels: the surplus source channels feed nothing
        (Shape::new(2, 8, 8, 6), Shape::new(2, 3, 4, 3)),
    ];
    let mut rng = Rng::new(3);
    for (src_shape, dst_shape) in cases {
        let g = ShortcutGeom::new(src_shape, dst_shape).unwrap();
        let src = rng.vec(src_shape.len(), -1.0, 1.0);
        let dst0 = rng.vec(dst_shape.len(), -1.0, 1.0);
        let d_dst = rng.vec(dst_shape.len(), -1.0, 1.0);
        let d_src0 = rng.vec(src_shape.len(), -1.0, 1.0);
        let (dst, d_src) = run_shortcut(dev, &g, &src, &dst0, &d_dst, &d_src0);
        let (dst_ref, d_src_ref) = run_shortcut(&reference(), &g, &src, &dst0, &d_dst, &d_src0);
        let what = format!("shortcut {src_shape} -> {dst_shape} on {}", dev.name());
        assert_close(
            &shortcut::TOLERANCE,
            &format!("{what}: dst"),
            &dst,
            &dst_ref,
        );
        assert_close(
            &shortcut::TOLERANCE,
            &format!("{what}: d_src"),
            &d_src,
            &d_src_ref,
        );
    }
}

fn run_xent<B: Backend<Elem = f32>>(
    b: &B,
    g: &XentGeom,
    logits: &[f32],
    labels: &[u32],
) -> rescnn::Result<(Vec<f32>, Vec<f32>, f64, usize)> {
    let lb = b.upload(logits)?;
    let mut labb = b.zeros_idx(labels.len())?;
    b.write_idx(&mut labb, labels)?;
    let mut losses = b.zeros(g.n as usize)?;
    let mut d = b.zeros(logits.len())?;
    let stats = b.softmax_xent(
        g,
        XentIo {
            logits: &lb,
            labels: &labb,
            losses: &mut losses,
            d_logits: &mut d,
        },
    )?;
    Ok((
        b.download(&losses)?,
        b.download(&d)?,
        stats.mean_loss,
        stats.correct,
    ))
}

fn softmax_xent_matches_reference<B: Backend<Elem = f32>>(dev: &B) {
    let mut rng = Rng::new(4);
    // (rows, classes, logit scale)
    let cases = [
        (1, 7, 3.0),
        (3, 7, 3.0),
        (50, 7, 3.0),
        (5, 40, 2.0), // more classes than lanes: each lane scans several
        (6, 2, 1.0),
        (3, 7, 1e4), // logits of ±1e4: only the max-subtracted form stays finite
        (33, 97, 1e4),
    ];
    for (n, k, scale) in cases {
        let g = XentGeom::new(n, k).unwrap();
        let mut logits = rng.vec(n * k, -scale, scale);
        let labels: Vec<u32> = (0..n).map(|_| rng.below(k as u32)).collect();
        // Make some rows correct and give row 0 a tie, which the first maximum must break.
        for row in (0..n).step_by(2) {
            logits[row * k + labels[row] as usize] = 2.0 * scale;
        }
        logits[k - 1] = 2.0 * scale;
        let (losses, d, mean, correct) = run_xent(dev, &g, &logits, &labels).unwrap();
        let (losses_ref, d_ref, mean_ref, correct_ref) =
            run_xent(&reference(), &g, &logits, &labels).unwrap();
        let what = format!("softmax_xent {n}×{k}, logits ±{scale} on {}", dev.name());
        assert!(
            losses.iter().all(|l| l.is_finite()),
            "{what}: non-finite loss {losses:?}"
        );
        assert_close(
            &softmax_xent::TOLERANCE,
            &format!("{what}: losses"),
            &losses,
            &losses_ref,
        );
        assert_close(
            &softmax_xent::TOLERANCE,
            &format!("{what}: d_logits"),
            &d,
            &d_ref,
        );
        assert_close(
            &softmax_xent::TOLERANCE,
            &format!("{what}: mean loss"),
            &[mean],
            &[mean_ref],
        );
        assert_eq!(correct, correct_ref, "{what}: correct rows");
    }
}

fn softmax_xent_rejects_a_label_outside_the_classes<B: Backend<Elem = f32>>(dev: &B) {
    let g = XentGeom::new(3, 7).unwrap();
    let logits = Rng::new(5).vec(21, -1.0, 1.0);
    let err = run_xent(dev, &g, &logits, &[1, 7, 2])
        .unwrap_err()
        .to_string();
    assert!(err.contains("not one of the 7 classes"), "{err}");
}

fn run_adamw<B: Backend<Elem = f32>>(
    b: &B,
    cfg: &AdamWConfig,
    w0: &[f32],
    grads: &[Vec<f32>],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut w = b.upload(w0).unwrap();
    let mut m = b.zeros(w0.len()).unwrap();
    let mut v = b.zeros(w0.len()).unwrap();
    for (step, g) in grads.iter().enumerate() {
        let gb = b.upload(g).unwrap();
        let s = cfg.step(step as u64, grads.len() as u64);
        b.adamw_update(
            &s,
            AdamWIo {
                w: &mut w,
                g: &gb,
                m: &mut m,
                v: &mut v,
            },
        )
        .unwrap();
    }
    (
        b.download(&w).unwrap(),
        b.download(&m).unwrap(),
        b.download(&v).unwrap(),
    )
}

fn adamw_matches_reference_over_several_steps<B: Backend<Elem = f32>>(dev: &B) {
    let mut rng = Rng::new(16);
    let configs = [
        AdamWConfig::default(),
        // Large weight decay and rate, a one-cycle schedule with a long warm-up: every term visible.
        AdamWConfig {
            lr: 0.05,
            weight_decay: 0.5,
            warmup_fraction: 0.4,
            schedule: LrSchedule::OneCycle,
            final_lr_fraction: 0.0,
            ..Default::default()
        },
    ];
    for cfg in configs {
        for len in [1, 3, 4, 7, 1000, 4099] {
            let w0 = rng.vec(len, -1.0, 1.0);
            let grads: Vec<Vec<f32>> = (0..6).map(|_| rng.vec(len, -0.5, 0.5)).collect();
            let (w, m, v) = run_adamw(dev, &cfg, &w0, &grads);
            let (w_ref, m_ref, v_ref) = run_adamw(&reference(), &cfg, &w0, &grads);
            let what = format!("adamw len {len}, {:?} on {}", cfg.schedule, dev.name());
            assert_close(&adamw::TOLERANCE, &format!("{what}: w"), &w, &w_ref);
            assert_close(&adamw::TOLERANCE, &format!("{what}: m"), &m, &m_ref);
            assert_close(&adamw::TOLERANCE, &format!("{what}: v"), &v, &v_ref);
        }
    }
}

fn run_rmsprop<B: Backend<Elem = f32>>(
    b: &B,
    cfg: &RmsPropConfig,
    w0: &[f32],
    grads: &[Vec<f32>],
) -> (Vec<f32>, Vec<f32>) {
    let mut w = b.upload(w0).unwrap();
    let mut r = b.zeros(w0.len()).unwrap();
    for (step, g) in grads.iter().enumerate() {
        let gb = b.upload(g).unwrap();
        b.rmsprop_update(
            &cfg.step(step as u64),
            RmsPropIo {
                w: &mut w,
                g: &gb,
                r: &mut r,
            },
        )
        .unwrap();
    }
    (b.download(&w).unwrap(), b.download(&r).unwrap())
}

fn rmsprop_matches_reference_over_several_steps<B: Backend<Elem = f32>>(dev: &B) {
    let mut rng = Rng::new(6);
    let configs = [
        RmsPropConfig::default(),
        // A strong decay so the time-decayed rate visibly changes from step to step, and weight decay.
        RmsPropConfig {
            lr: 0.01,
            decay: 0.2,
            weight_decay: 1e-3,
            ..Default::default()
        },
    ];
    for cfg in configs {
        for len in [1, 3, 4, 7, 1000, 4099] {
            let w0 = rng.vec(len, -1.0, 1.0);
            let grads: Vec<Vec<f32>> = (0..5).map(|_| rng.vec(len, -0.5, 0.5)).collect();
            let (w, r) = run_rmsprop(dev, &cfg, &w0, &grads);
            let (w_ref, r_ref) = run_rmsprop(&reference(), &cfg, &w0, &grads);
            let what = format!("rmsprop len {len}, decay {} on {}", cfg.decay, dev.name());
            assert_close(&rmsprop::TOLERANCE, &format!("{what}: w"), &w, &w_ref);
            assert_close(&rmsprop::TOLERANCE, &format!("{what}: r"), &r, &r_ref);
        }
    }
}

/// Everything one batch-norm training step produces on `b`: y, saved, running mean and variance,
/// the masked dy, dx (accumulated onto dx0), dγ, dβ; then the evaluation forward with the updated
/// running statistics.
fn run_batchnorm<B: Backend<Elem = f32>>(
    b: &B,
    g: &BatchNormGeom,
    host: &[Vec<f32>; 6],
    with_dx: bool,
) -> Vec<(&'static str, Vec<f32>)> {
    let [x, gamma, beta, dy, dx0, running] = host;
    let c = g.c as usize;
    let (xb, gb, bb) = (
        b.upload(x).unwrap(),
        b.upload(gamma).unwrap(),
        b.upload(beta).unwrap(),
    );
    let mut y = b.zeros(x.len()).unwrap();
    let mut saved = b.zeros(2 * c).unwrap();
    let mut rm = b.upload(&running[..c]).unwrap();
    let mut rv = b.upload(&running[c..]).unwrap();
    b.batchnorm_forward_train(
        g,
        BatchNormTrainIo {
            x: &xb,
            gamma: &gb,
            beta: &bb,
            y: &mut y,
            saved: &mut saved,
            running_mean: &mut rm,
            running_var: &mut rv,
        },
    )
    .unwrap();
    let mut dyb = b.upload(dy).unwrap();
    let mut dx = b.upload(dx0).unwrap();
    let (mut dgamma, mut dbeta) = (b.zeros(c).unwrap(), b.zeros(c).unwrap());
    b.batchnorm_backward(
        g,
        BatchNormBackwardIo {
            x: &xb,
            gamma: &gb,
            y: &y,
            saved: &saved,
            dy: &mut dyb,
            dx: with_dx.then_some(&mut dx),
            dgamma: &mut dgamma,
            dbeta: &mut dbeta,
        },
    )
    .unwrap();
    let mut y_eval = b.zeros(x.len()).unwrap();
    b.batchnorm_forward_eval(
        g,
        BatchNormEvalIo {
            x: &xb,
            gamma: &gb,
            beta: &bb,
            running_mean: &rm,
            running_var: &rv,
            y: &mut y_eval,
        },
    )
    .unwrap();
    let d = |v: &B::Buf| b.download(v).unwrap();
    vec![
        ("y", d(&y)),
        ("saved", d(&saved)),
        ("running mean", d(&rm)),
        ("running var", d(&rv)),
        ("dy (masked)", d(&dyb)),
        ("dx", d(&dx)),
        ("dgamma", d(&dgamma)),
        ("dbeta", d(&dbeta)),
        ("y (evaluation)", d(&y_eval)),
    ]
}

fn batchnorm_matches_reference<B: Backend<Elem = f32>>(dev: &B) {
    let mut rng = Rng::new(7);
    // (shape, relu, with dx): batch 1 and 3, odd maps, a channel of M = 1 (N = H = W = 1), more values
    // per channel than the block's 256 threads, and more channels than one warp.
    let cases = [
        (Shape::new(1, 3, 5, 7), true, true),
        (Shape::new(3, 2, 9, 8), false, true),
        (Shape::new(1, 4, 1, 1), false, true),
        (Shape::new(3, 5, 17, 13), true, false),
        (Shape::new(2, 40, 3, 2), true, true),
    ];
    for (shape, relu, with_dx) in cases {
        let g = BatchNormGeom::new(shape, relu, 1e-5, 0.1).unwrap();
        let (len, c) = (shape.len(), shape.c);
        // A channel offset and scale different per channel, so the statistics matter.
        let mut x = rng.vec(len, -1.0, 1.0);
        for (i, v) in x.iter_mut().enumerate() {
            let ch = (i / (shape.h * shape.w)) % c;
            *v = *v * (1.0 + ch as f32 * 0.3) + ch as f32 * 0.5 - 1.0;
        }
        let mut running = rng.vec(c, -0.5, 0.5);
        running.extend(rng.vec(c, 0.5, 2.0));
        let host = [
            x,
            rng.vec(c, 0.5, 1.5),
            rng.vec(c, -0.5, 0.5),
            rng.vec(len, -1.0, 1.0),
            rng.vec(len, -1.0, 1.0),
            running,
        ];
        let got = run_batchnorm(dev, &g, &host, with_dx);
        let want = run_batchnorm(&reference(), &g, &host, with_dx);
        for ((name, got), (_, want)) in got.iter().zip(&want) {
            let what = format!("batchnorm {shape} relu={relu} on {}: {name}", dev.name());
            assert_close(&batchnorm::TOLERANCE, &what, got, want);
        }
    }
}

fn run_statspool<B: Backend<Elem = f32>>(
    b: &B,
    g: &StatsPoolGeom,
    x: &[f32],
    dy: &[f32],
    dx0: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let xb = b.upload(x).unwrap();
    let mut y = b.zeros(g.output().len()).unwrap();
    b.statspool_forward(g, &xb, &mut y).unwrap();
    let dyb = b.upload(dy).unwrap();
    let mut dx = b.upload(dx0).unwrap();
    b.statspool_backward(
        g,
        StatsPoolBackwardIo {
            x: &xb,
            y: &y,
            dy: &dyb,
            dx: &mut dx,
        },
    )
    .unwrap();
    (b.download(&y).unwrap(), b.download(&dx).unwrap())
}

fn statspool_matches_reference<B: Backend<Elem = f32>>(dev: &B) {
    let mut rng = Rng::new(8);
    // Widths below, at and above a warp (lanes owning several columns), W = 1 (variance 0: the std is
    // sqrt(eps)), H = 1, and a constant plane.
    let cases = [
        Shape::new(1, 3, 4, 7),
        Shape::new(3, 5, 8, 32),
        Shape::new(2, 4, 3, 101),
        Shape::new(3, 2, 6, 1),
        Shape::new(1, 6, 1, 40),
    ];
    for shape in cases {
        let g = StatsPoolGeom::new(shape, 1e-5).unwrap();
        let mut x = rng.vec(shape.len(), -1.0, 1.0);
        x[..shape.h * shape.w].fill(0.25);
        let dy = rng.vec(g.output().len(), -1.0, 1.0);
        let dx0 = rng.vec(shape.len(), -1.0, 1.0);
        let (y, dx) = run_statspool(dev, &g, &x, &dy, &dx0);
        let (y_ref, dx_ref) = run_statspool(&reference(), &g, &x, &dy, &dx0);
        let what = format!("statspool {shape} on {}", dev.name());
        assert_close(&statspool::TOLERANCE, &format!("{what}: y"), &y, &y_ref);
        assert_close(&statspool::TOLERANCE, &format!("{what}: dx"), &dx, &dx_ref);
    }
}

fn run_dropout<B: Backend<Elem = f32>>(
    b: &B,
    p: &DropoutParams,
    x: &[f32],
    dy: &[f32],
    dx0: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let xb = b.upload(x).unwrap();
    let mut y = b.zeros(x.len()).unwrap();
    b.dropout_forward(p, &xb, &mut y).unwrap();
    let dyb = b.upload(dy).unwrap();
    let mut dx = b.upload(dx0).unwrap();
    b.dropout_backward(p, &dyb, &mut dx).unwrap();
    (b.download(&y).unwrap(), b.download(&dx).unwrap())
}

fn dropout_matches_reference_with_the_same_mask<B: Backend<Elem = f32>>(dev: &B) {
    let mut rng = Rng::new(9);
    // (length, rate, step, layer, values per draw): elements, then whole samples of 37 or 1981.
    for (len, p, step, layer, group) in [
        (1, 0.5, 0, 0, 1),
        (1000, 0.3, 7, 2, 1),
        (4099, 0.9, 123, 5, 1),
        (37 * 50, 0.5, 3, 1, 37),
        (1981 * 8, 0.4, 11, 4, 1981),
    ] {
        let params = DropoutParams::new(len, p, 42, step, layer)
            .and_then(|d| d.in_groups(group))
            .unwrap();
        // No zeros in x or dy, so a zero in y is exactly a dropped element.
        let x = rng.vec(len, 0.5, 1.5);
        let dy = rng.vec(len, 0.5, 1.5);
        let dx0 = rng.vec(len, -1.0, 1.0);
        let (y, dx) = run_dropout(dev, &params, &x, &dy, &dx0);
        let (y_ref, dx_ref) = run_dropout(&reference(), &params, &x, &dy, &dx0);
        let what = format!("dropout len {len} p {p} on {}", dev.name());
        let dropped: Vec<bool> = y.iter().map(|&v| v == 0.0).collect();
        let dropped_ref: Vec<bool> = y_ref.iter().map(|&v| v == 0.0).collect();
        assert_eq!(dropped, dropped_ref, "{what}: masks differ");
        for sample in dropped.chunks(group) {
            assert!(
                sample.iter().all(|&d| d == sample[0]),
                "{what}: a group split"
            );
        }
        if group > 1 {
            let whole: Vec<bool> = dropped.chunks(group).map(|s| s[0]).collect();
            assert!(
                whole.contains(&true) && whole.contains(&false),
                "{what}: {whole:?}"
            );
        }
        assert_close(&dropout::TOLERANCE, &format!("{what}: y"), &y, &y_ref);
        assert_close(&dropout::TOLERANCE, &format!("{what}: dx"), &dx, &dx_ref);
    }
}

/// Forward, then backward into da and db (pre-filled with `da0` and `db0`: the op accumulates).
fn run_concat<B: Backend<Elem = f32>>(
    be: &B,
    g: &ConcatGeom,
    a: &[f32],
    b: &[f32],
    dy: &[f32],
    (da0, db0): (&[f32], &[f32]),
) -> [Vec<f32>; 3] {
    let (ab, bb) = (be.upload(a).unwrap(), be.upload(b).unwrap());
    let mut y = be.zeros(g.lens().2).unwrap();
    be.concat_forward(
        g,
        ConcatForwardIo {
            a: &ab,
            b: &bb,
            y: &mut y,
        },
    )
    .unwrap();
    let dyb = be.upload(dy).unwrap();
    let (mut da, mut db) = (be.upload(da0).unwrap(), be.upload(db0).unwrap());
    be.concat_backward(
        g,
        ConcatBackwardIo {
            dy: &dyb,
            da: Some(&mut da),
            db: Some(&mut db),
        },
    )
    .unwrap();
    [y, da, db].map(|v| be.download(&v).unwrap())
}

fn concat_matches_reference<B: Backend<Elem = f32>>(dev: &B) {
    let mut rng = Rng::new(10);
    // One feature on a side, batch 1 and 3, rows that are no multiple of a block, and the network's
    // shape (256 pooled statistics and a 1981-entry utterance vector) over more than one grid-stride.
    for (n, a, b) in [
        (1, 1, 1),
        (3, 5, 7),
        (2, 1, 300),
        (3, 256, 1981),
        (70, 130, 9),
    ] {
        let g = ConcatGeom::new(n, a, b).unwrap();
        let (la, lb, ly) = g.lens();
        let xa = rng.vec(la, -1.0, 1.0);
        let xb = rng.vec(lb, -1.0, 1.0);
        let dy = rng.vec(ly, -1.0, 1.0);
        let pre = (rng.vec(la, -1.0, 1.0), rng.vec(lb, -1.0, 1.0));
        let got = run_concat(dev, &g, &xa, &xb, &dy, (&pre.0, &pre.1));
        let want = run_concat(&reference(), &g, &xa, &xb, &dy, (&pre.0, &pre.1));
        for (name, (got, want)) in ["y", "da", "db"].iter().zip(got.iter().zip(&want)) {
            let what = format!("concat {n}×({a} + {b}) on {}: {name}", dev.name());
            assert_close(&concat::TOLERANCE, &what, got, want);
        }
    }
}

fn run_xent_soft<B: Backend<Elem = f32>>(
    b: &B,
    g: &XentGeom,
    logits: &[f32],
    targets: &[f32],
    weights: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>, f64, usize) {
    let lb = b.upload(logits).unwrap();
    let tb = b.upload(targets).unwrap();
    let wb = weights.map(|w| b.upload(w).unwrap());
    let mut losses = b.zeros(g.n as usize).unwrap();
    let mut d = b.zeros(logits.len()).unwrap();
    let stats = b
        .softmax_xent_soft(
            g,
            SoftXentIo {
                logits: &lb,
                targets: &tb,
                class_weights: wb.as_ref(),
                losses: &mut losses,
                d_logits: &mut d,
            },
        )
        .unwrap();
    (
        b.download(&losses).unwrap(),
        b.download(&d).unwrap(),
        stats.mean_loss,
        stats.correct,
    )
}

fn softmax_xent_soft_matches_reference<B: Backend<Elem = f32>>(dev: &B) {
    let mut rng = Rng::new(10);
    for (n, k, scale, weighted) in [
        (1, 7, 3.0, false),
        (3, 7, 3.0, true),
        (50, 7, 3.0, false),
        (5, 40, 2.0, true), // more classes than lanes
        (3, 7, 1e4, true),  // logits of ±1e4
    ] {
        let g = XentGeom::new(n, k).unwrap();
        let logits = rng.vec(n * k, -scale, scale);
        // Mixup-like rows: two classes mixed by λ, smoothed by 0.1 over all classes.
        let mut targets = vec![0.1 / k as f32; n * k];
        for row in 0..n {
            let lambda = rng.uniform(0.0, 1.0);
            targets[row * k + rng.below(k as u32) as usize] += 0.9 * lambda;
            targets[row * k + rng.below(k as u32) as usize] += 0.9 * (1.0 - lambda);
        }
        let weights = weighted.then(|| rng.vec(k, 0.5, 2.0));
        let got = run_xent_soft(dev, &g, &logits, &targets, weights.as_deref());
        let want = run_xent_soft(&reference(), &g, &logits, &targets, weights.as_deref());
        let what = format!(
            "softmax_xent_soft {n}×{k}, ±{scale}, weighted {weighted} on {}",
            dev.name()
        );
        assert!(
            got.0.iter().all(|l| l.is_finite()),
            "{what}: non-finite loss"
        );
        assert_close(
            &softmax_xent::TOLERANCE,
            &format!("{what}: losses"),
            &got.0,
            &want.0,
        );
        assert_close(
            &softmax_xent::TOLERANCE,
            &format!("{what}: d_logits"),
            &got.1,
            &want.1,
        );
        assert_close(
            &softmax_xent::TOLERANCE,
            &format!("{what}: mean"),
            &[got.2],
            &[want.2],
        );
        assert_eq!(got.3, want.3, "{what}: correct rows");
    }
}
