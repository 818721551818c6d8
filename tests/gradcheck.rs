//! Every op of the CPU reference, in f64: the forward pass against its definition (plain loops
//! written here), and the backward pass against central finite differences of the forward pass, on
//! awkward shapes (batch 1 and 3; odd, even and non-square maps; kernels 1, 3, 4, 5, 8, 10, and
//! non-square ones; stride 1 and 2; SAME, VALID and explicit padding; shortcut sources of 1 and 3
//! channels into 8 or more). Also the op contract's conventions: data gradients ACCUMULATE, parameter
//! gradients are WRITTEN, a fused ReLU masks dy in place, and ops touch only the prefix of a buffer
//! that their geometry describes.
//!
//! # Metric
//! For each gradient entry, analytic a and numerical b:
//!
//! ```text
//! err = |a − b| / max(|a| + |b|, 1e-3 · max_j |b_j|)        pass: err ≤ 1e-6
//! ```
//!
//! A plain relative error, except that entries smaller than a thousandth of the gradient's largest
//! entry are judged against that floor: the central difference carries an absolute rounding error of
//! about ε·|L|/h (≈ 1e-11 here), which no entry much smaller than 1e-5 could be held to 1e-6 against.
//! A wrong backward formula gives errors of order 1 on large entries, far above the tolerance.
//!
//! Step size h = 1e-4 (RMSProp and softmax excepted, below). Every op here is piecewise linear in
//! each input, so central differences are exact up to rounding unless a step crosses a kink: inputs
//! are drawn so that every ReLU pre-activation is at least 1e-3 from zero (10× the largest change a
//! step of 1e-4 can cause with |x|, |w| ≤ 1), and max-pool inputs are distinct values at least 1e-2
//! apart.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rescnn::backends::cpu::CpuBackend;
use rescnn::backends::ops::maxpool::ARGMAX_POSITIVE;
use rescnn::backends::{
    AdamWIo, AdamWOp, BatchNormBackwardIo, BatchNormEvalIo, BatchNormGeom, BatchNormOp,
    BatchNormTrainIo, ConcatBackwardIo, ConcatForwardIo, ConcatGeom, ConcatOp, Conv2dOp,
    ConvBackwardIo, ConvForwardIo, ConvGeom, DenseBackwardIo, DenseForwardIo, DenseGeom, DenseOp,
    DropoutOp, DropoutParams, InputGrad, MaxPoolOp, Padding, PoolGeom, RmsPropIo, RmsPropOp,
    ShortcutGeom, ShortcutOp, SoftXentIo, SoftmaxXentOp, StatsPoolBackwardIo, StatsPoolGeom,
    StatsPoolOp, XentGeom, XentIo,
};
use rescnn::model::{AdamWConfig, LrSchedule, RmsPropConfig};
use rescnn::Shape;

type Cpu = CpuBackend<f64>;

const REL_TOL: f64 = 1e-6;
const FLOOR_FRACTION: f64 = 1e-3;
const H: f64 = 1e-4;
const RELU_MARGIN: f64 = 1e-3;
/// Extra elements after the prefix a geometry describes: NaN in inputs (reading them would poison
/// the result), SENTINEL in outputs (writing them would change it).
const TAIL: usize = 5;
const SENTINEL: f64 = 12345.0;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn uniform(r: &mut ChaCha8Rng, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..len)
        .map(|_| lo + (hi - lo) * r.random::<f64>())
        .collect()
}

fn with_tail(v: &[f64], fill: f64) -> Vec<f64> {
    let mut out = v.to_vec();
    out.extend(std::iter::repeat_n(fill, TAIL));
    out
}

fn assert_tail(what: &str, v: &[f64], prefix: usize) {
    assert_eq!(v.len(), prefix + TAIL, "{what}: buffer length changed");
    assert!(
        v[prefix..].iter().all(|&x| x == SENTINEL),
        "{what}: an op wrote past its prefix"
    );
}

/// Indices to check numerically: all of them, or a fixed random subset of large tensors.
fn pick(len: usize, max: usize, seed: u64) -> Vec<usize> {
    if len <= max {
        return (0..len).collect();
    }
    let mut r = rng(seed);
    (0..max)
        .map(|_| (r.random::<f64>() * len as f64) as usize % len)
        .collect()
}

/// Central differences of `loss` at `at` for the entries `idx`.
fn numeric(at: &[f64], idx: &[usize], h: f64, mut loss: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut v = at.to_vec();
    idx.iter()
        .map(|&i| {
            let orig = v[i];
            v[i] = orig + h;
            let up = loss(&v);
            v[i] = orig - h;
            let down = loss(&v);
            v[i] = orig;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// The metric of the module docs; panics with the worst entries when it exceeds REL_TOL.
fn compare(what: &str, analytic: &[f64], numerical: &[f64]) {
    assert_eq!(analytic.len(), numerical.len());
    let scale = numerical.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        scale > 1e-6,
        "{what}: the numerical gradient is all zero, the check would be vacuous"
    );
    let floor = FLOOR_FRACTION * scale;
    let errs: Vec<f64> = analytic
        .iter()
        .zip(numerical)
        .map(|(a, b)| (a - b).abs() / (a.abs() + b.abs()).max(floor))
        .collect();
    let worst = errs.iter().cloned().fold(0.0, f64::max);
    eprintln!("{what}: max error {worst:.2e} over {} entries", errs.len());
    if worst > REL_TOL {
        let bad: Vec<String> = errs
            .iter()
            .enumerate()
            .filter(|(_, &e)| e > REL_TOL)
            .take(6)
            .map(|(i, e)| {
                format!(
                    "[{i}] analytic {:.9e} numeric {:.9e} err {e:.2e}",
                    analytic[i], numerical[i]
                )
            })
            .collect();
        panic!(
            "{what}: max error {worst:.3e} > {REL_TOL:e} (max |Δ| {:.3e}); first mismatches:\n  {}",
            analytic
                .iter()
                .zip(numerical)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max),
            bad.join("\n  ")
        );
    }
}

/// Forward results against a definition: both are the same sums in possibly different orders.
fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
            "{what}[{i}]: got {a}, want {b}"
        );
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

// ---- definitions ---------------------------------------------------------------------------------

fn conv_definition(g: &ConvGeom, x: &[f64], w: &[f64], b: &[f64], relu: bool) -> Vec<f64> {
    let (i, o) = (g.input(), g.output());
    let (kh, kw, s) = (g.k_h as usize, g.k_w as usize, g.stride as isize);
    let mut y = vec![0.0; o.len()];
    for n in 0..o.n {
        for co in 0..o.c {
            for oh in 0..o.h {
                for ow in 0..o.w {
                    let mut sum = b[co];
                    for ci in 0..i.c {
                        for a in 0..kh {
                            for c in 0..kw {
                                let ih = oh as isize * s + a as isize - g.pad_top as isize;
                                let iw = ow as isize * s + c as isize - g.pad_left as isize;
                                if ih >= 0 && iw >= 0 && (ih as usize) < i.h && (iw as usize) < i.w
                                {
                                    sum += w[((co * i.c + ci) * kh + a) * kw + c]
                                        * x[i.offset(n, ci, ih as usize, iw as usize)];
                                }
                            }
                        }
                    }
                    y[o.offset(n, co, oh, ow)] = if relu { sum.max(0.0) } else { sum };
                }
            }
        }
    }
    y
}

fn pool_definition(g: &PoolGeom, x: &[f64]) -> (Vec<f64>, Vec<u32>) {
    let (i, o, k, s) = (g.input(), g.output(), g.k as usize, g.stride as usize);
    let (mut y, mut am) = (vec![0.0; o.len()], vec![0u32; o.len()]);
    for n in 0..o.n {
        for c in 0..o.c {
            for oh in 0..o.h {
                for ow in 0..o.w {
                    let mut best = (f64::NEG_INFINITY, 0);
                    for a in 0..k {
                        for b in 0..k {
                            let (h, w) = (oh * s + a, ow * s + b);
                            let v = x[i.offset(n, c, h, w)];
                            if v > best.0 {
                                best = (v, h * i.w + w);
                            }
                        }
                    }
                    y[o.offset(n, c, oh, ow)] = best.0;
                    // The index, and the winner's ReLU mask in the top bit.
                    let positive = if best.0 > 0.0 { ARGMAX_POSITIVE } else { 0 };
                    am[o.offset(n, c, oh, ow)] = best.1 as u32 | positive;
                }
            }
        }
    }
    (y, am)
}

fn shortcut_definition(g: &ShortcutGeom, src: &[f64], dst: &[f64]) -> Vec<f64> {
    let (s, d, r) = (g.source(), g.target(), g.ratio as usize);
    let mut out = dst[..d.len()].to_vec();
    for n in 0..d.n {
        for c in 0..d.c {
            for h in 0..d.h {
                for w in 0..d.w {
                    let mut sum = 0.0;
                    for a in 0..r {
                        for b in 0..r {
                            sum += src[s.offset(n, c % s.c, h * r + a, w * r + b)];
                        }
                    }
                    out[d.offset(n, c, h, w)] += sum / (r * r) as f64;
                }
            }
        }
    }
    out
}

fn dense_definition(g: &DenseGeom, x: &[f64], w: &[f64], b: &[f64], relu: bool) -> Vec<f64> {
    let (n, fin, fout) = (
        g.n as usize,
        g.in_features as usize,
        g.out_features as usize,
    );
    let mut y = vec![0.0; n * fout];
    for i in 0..n {
        for o in 0..fout {
            let s = b[o]
                + (0..fin)
                    .map(|k| x[i * fin + k] * w[o * fin + k])
                    .sum::<f64>();
            y[i * fout + o] = if relu { s.max(0.0) } else { s };
        }
    }
    y
}

// ---- convolution ---------------------------------------------------------------------------------

struct ConvCase {
    n: usize,
    c_in: usize,
    hw: (usize, usize),
    c_out: usize,
    k: (usize, usize),
    stride: usize,
    pad: Padding,
    relu: bool,
    /// false: the first-layer path (no input gradient).
    with_dx: bool,
}

fn check_conv(case: &ConvCase, seed: u64) {
    let cpu = Cpu::new();
    let shape = Shape::new(case.n, case.c_in, case.hw.0, case.hw.1);
    let g = ConvGeom::new(shape, case.c_out, case.k, case.stride, case.pad, case.relu).unwrap();
    let label = format!(
        "conv {shape} → {} k{:?} s{} {:?} relu={}",
        g.output(),
        case.k,
        case.stride,
        case.pad,
        case.relu
    );
    let (in_len, out_len, w_len) = (shape.len(), g.output().len(), g.weight_len());
    // Draw until every ReLU pre-activation is at least RELU_MARGIN from zero.
    let mut r = rng(seed);
    let (x, w, b) = loop {
        let (x, w, b) = (
            uniform(&mut r, in_len, -1.0, 1.0),
            uniform(&mut r, w_len, -1.0, 1.0),
            uniform(&mut r, case.c_out, -1.0, 1.0),
        );
        let z = conv_definition(&g, &x, &w, &b, false);
        if !case.relu || z.iter().all(|v| v.abs() >= RELU_MARGIN) {
            break (x, w, b);
        }
    };
    let run = |x: &[f64], w: &[f64], b: &[f64]| {
        let mut y = vec![SENTINEL; out_len + TAIL];
        cpu.conv2d_forward(
            &g,
            ConvForwardIo {
                x: &with_tail(x, f64::NAN),
                w: &with_tail(w, f64::NAN),
                b: &with_tail(b, f64::NAN),
                y: &mut y,
            },
        )
        .unwrap();
        assert_tail("conv y", &y, out_len);
        y.truncate(out_len);
        y
    };
    let y = run(&x, &w, &b);
    assert_close(
        &format!("{label}: forward"),
        &y,
        &conv_definition(&g, &x, &w, &b, case.relu),
    );

    // L = Σ probe·y; its gradient with respect to y is the probe.
    let probe = uniform(&mut r, out_len, -1.0, 1.0);
    let prefill = uniform(&mut r, in_len, -2.0, 2.0);
    let mut dy = with_tail(&probe, SENTINEL);
    let mut dx = with_tail(&prefill, SENTINEL);
    let (mut dw, mut db) = (vec![1e3; w_len + TAIL], vec![-1e3; case.c_out + TAIL]);
    dw[w_len..].fill(SENTINEL);
    db[case.c_out..].fill(SENTINEL);
    cpu.conv2d_backward(
        &g,
        ConvBackwardIo {
            x: &with_tail(&x, f64::NAN),
            w: &with_tail(&w, f64::NAN),
            y: &with_tail(&y, f64::NAN),
            dy: &mut dy,
            dx: if case.with_dx {
                InputGrad::Add(&mut dx)
            } else {
                InputGrad::None
            },
            dw: &mut dw,
            db: Some(&mut db),
        },
    )
    .unwrap();
    for (what, v, len) in [
        ("dy", &dy, out_len),
        ("dx", &dx, in_len),
        ("dw", &dw, w_len),
        ("db", &db, case.c_out),
    ] {
        assert_tail(&format!("{label}: {what}"), v, len);
    }
    // The fused ReLU turned dy into the pre-activation gradient, in place.
    let masked: Vec<f64> = probe
        .iter()
        .zip(&y)
        .map(|(p, &v)| if case.relu && v <= 0.0 { 0.0 } else { *p })
        .collect();
    assert_eq!(
        dy[..out_len],
        masked[..],
        "{label}: dy was not masked in place by y > 0"
    );

    let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&probe, &run(x, w, b));
    let iw = pick(w_len, 400, seed + 1);
    let num_w = numeric(&w, &iw, H, |w| loss(&x, w, &b));
    compare(
        &format!("{label}: dw"),
        &iw.iter().map(|&i| dw[i]).collect::<Vec<_>>(),
        &num_w,
    );
    let num_b = numeric(&b, &(0..case.c_out).collect::<Vec<_>>(), H, |b| {
        loss(&x, &w, b)
    });
    compare(&format!("{label}: db"), &db[..case.c_out], &num_b);
    if case.with_dx {
        let ix = pick(in_len, 400, seed + 2);
        let num_x = numeric(&x, &ix, H, |x| loss(x, &w, &b));
        // dx ACCUMULATES: what was added is the gradient.
        compare(
            &format!("{label}: dx"),
            &ix.iter().map(|&i| dx[i] - prefill[i]).collect::<Vec<_>>(),
            &num_x,
        );
    } else {
        assert_eq!(
            dx[..in_len],
            prefill[..],
            "{label}: dx was touched although not requested"
        );
    }

    // Conventions, exactly: a second backward from zeroed dx and zeroed dw/db (instead of garbage).
    let mut dy2 = with_tail(&probe, SENTINEL);
    let mut dx2 = vec![0.0; in_len];
    let (mut dw2, mut db2) = (vec![0.0; w_len], vec![0.0; case.c_out]);
    cpu.conv2d_backward(
        &g,
        ConvBackwardIo {
            x: &x,
            w: &w,
            y: &y,
            dy: &mut dy2,
            dx: if case.with_dx {
                InputGrad::Add(&mut dx2)
            } else {
                InputGrad::None
            },
            dw: &mut dw2,
            db: Some(&mut db2),
        },
    )
    .unwrap();
    assert_eq!(
        dw2[..],
        dw[..w_len],
        "{label}: dw must be WRITTEN (independent of its old contents)"
    );
    assert_eq!(db2[..], db[..case.c_out], "{label}: db must be WRITTEN");
    if case.with_dx {
        for i in 0..in_len {
            let want = prefill[i] + dx2[i];
            assert!(
                (dx[i] - want).abs() <= 1e-12 * (1.0 + want.abs()),
                "{label}: dx must ACCUMULATE: [{i}] {} vs {} + {}",
                dx[i],
                prefill[i],
                dx2[i]
            );
        }
        // InputGrad::Write: dx from garbage (its tail must survive) is the gradient itself, the
        // same bits as accumulating into zeros.
        let mut dy3 = with_tail(&probe, SENTINEL);
        let mut dx3 = with_tail(&vec![f64::NAN; in_len], SENTINEL);
        cpu.conv2d_backward(
            &g,
            ConvBackwardIo {
                x: &x,
                w: &w,
                y: &y,
                dy: &mut dy3,
                dx: InputGrad::Write(&mut dx3),
                dw: &mut dw2,
                db: Some(&mut db2),
            },
        )
        .unwrap();
        assert_tail("conv dx written", &dx3, in_len);
        assert_eq!(dx3[..in_len], dx2[..], "{label}: dx must be WRITTEN");
    }
}

#[test]
fn conv2d_gradients() {
    let e = |top, bottom, left, right| Padding::Explicit {
        top,
        bottom,
        left,
        right,
    };
    let cases = [
        ConvCase {
            n: 1,
            c_in: 2,
            hw: (7, 6),
            c_out: 3,
            k: (1, 1),
            stride: 1,
            pad: Padding::Same,
            relu: true,
            with_dx: true,
        },
        ConvCase {
            n: 3,
            c_in: 3,
            hw: (9, 8),
            c_out: 4,
            k: (3, 3),
            stride: 2,
            pad: Padding::Same,
            relu: false,
            with_dx: true,
        },
        ConvCase {
            n: 3,
            c_in: 2,
            hw: (10, 7),
            c_out: 3,
            k: (4, 4),
            stride: 1,
            pad: Padding::Same,
            relu: true,
            with_dx: true,
        },
        ConvCase {
            n: 1,
            c_in: 3,
            hw: (11, 12),
            c_out: 2,
            k: (5, 5),
            stride: 2,
            pad: Padding::Valid,
            relu: false,
            with_dx: true,
        },
        ConvCase {
            n: 3,
            c_in: 1,
            hw: (13, 10),
            c_out: 2,
            k: (8, 8),
            stride: 1,
            pad: Padding::Same,
            relu: true,
            with_dx: false,
        },
        ConvCase {
            n: 1,
            c_in: 2,
            hw: (12, 11),
            c_out: 3,
            k: (10, 10),
            stride: 2,
            pad: Padding::Same,
            relu: false,
            with_dx: true,
        },
        ConvCase {
            n: 3,
            c_in: 2,
            hw: (12, 11),
            c_out: 2,
            k: (10, 10),
            stride: 1,
            pad: Padding::Valid,
            relu: true,
            with_dx: true,
        },
        ConvCase {
            n: 1,
            c_in: 3,
            hw: (9, 8),
            c_out: 4,
            k: (4, 4),
            stride: 2,
            pad: Padding::Same,
            relu: true,
            with_dx: true,
        },
        ConvCase {
            n: 3,
            c_in: 2,
            hw: (6, 9),
            c_out: 3,
            k: (3, 5),
            stride: 2,
            pad: e(2, 0, 1, 3),
            relu: true,
            with_dx: true,
        },
        ConvCase {
            n: 1,
            c_in: 4,
            hw: (15, 9),
            c_out: 2,
            k: (4, 3),
            stride: 1,
            pad: e(0, 3, 2, 0),
            relu: false,
            with_dx: true,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        check_conv(case, 100 + i as u64);
    }
}

/// A convolution big enough that the backend cuts each image into several im2col row chunks and
/// splits the weight gradient over threads; checked on a random subset of entries.
#[test]
fn conv2d_gradients_across_chunks() {
    let case = ConvCase {
        n: 2,
        c_in: 8,
        hw: (181, 17),
        c_out: 2,
        k: (10, 10),
        stride: 2,
        pad: Padding::Same,
        relu: true,
        with_dx: true,
    };
    let g = ConvGeom::new(
        Shape::new(2, 8, 181, 17),
        2,
        (10, 10),
        2,
        Padding::Same,
        true,
    )
    .unwrap();
    let rows = rescnn::backends::ops::conv2d::cpu_chunk_rows(&g).unwrap();
    assert!(
        g.h_out as usize > 2 * rows,
        "the case must span at least 3 chunks ({rows} rows each, {} rows)",
        g.h_out
    );
    check_conv(&case, 7);
}

// ---- max-pool ------------------------------------------------------------------------------------

#[test]
fn maxpool_gradients() {
    let cpu = Cpu::new();
    // (batch, channels, H, W, window, stride): floor mode drops edges; stride < window overlaps.
    for (seed, &(n, c, h, w, k, s)) in [
        (1, 2, 7, 6, 2, 2),
        (3, 2, 9, 8, 3, 2),
        (3, 1, 6, 7, 2, 1),
        (1, 3, 10, 5, 3, 3),
    ]
    .iter()
    .enumerate()
    {
        let g = PoolGeom::new(Shape::new(n, c, h, w), k, s).unwrap();
        let label = format!("max-pool {} k{k} s{s}", g.input());
        let (in_len, out_len) = (g.input().len(), g.output().len());
        // Distinct values 0.01 apart, shuffled: no ties, and no step of H changes a window's winner.
        let mut r = rng(seed as u64);
        let mut x: Vec<f64> = (0..in_len).map(|i| i as f64 * 0.01 - 1.0).collect();
        for i in (1..in_len).rev() {
            x.swap(i, (r.random::<f64>() * (i + 1) as f64) as usize % (i + 1));
        }
        let run = |x: &[f64]| {
            let (mut y, mut am) = (vec![SENTINEL; out_len + TAIL], vec![7u32; out_len + TAIL]);
            cpu.maxpool_forward(&g, &with_tail(x, f64::NAN), &mut y, &mut am)
                .unwrap();
            assert_tail("pool y", &y, out_len);
            assert!(
                am[out_len..].iter().all(|&a| a == 7),
                "{label}: argmax written past its prefix"
            );
            (y[..out_len].to_vec(), am[..out_len].to_vec())
        };
        let (y, am) = run(&x);
        let (want_y, want_am) = pool_definition(&g, &x);
        assert_close(&label, &y, &want_y);
        assert_eq!(am, want_am, "{label}: argmax");

        let probe = uniform(&mut r, out_len, -1.0, 1.0);
        let prefill = uniform(&mut r, in_len, -2.0, 2.0);
        let mut dx = with_tail(&prefill, SENTINEL);
        let mut am_buf = am.clone();
        am_buf.extend([u32::MAX; TAIL]); // garbage past the prefix must not be followed
        cpu.maxpool_backward(&g, &with_tail(&probe, f64::NAN), &am_buf, &mut dx)
            .unwrap();
        assert_tail(&label, &dx, in_len);
        let num = numeric(&x, &(0..in_len).collect::<Vec<_>>(), H, |x| {
            dot(&probe, &run(x).0)
        });
        compare(
            &format!("{label}: dx"),
            &dx[..in_len]
                .iter()
                .zip(&prefill)
                .map(|(a, p)| a - p)
                .collect::<Vec<_>>(),
            &num,
        );
    }
}

// ---- shortcut ------------------------------------------------------------------------------------

#[test]
fn shortcut_gradients() {
    let cpu = Cpu::new();
    // (source, target): 1 and 3 source channels into 8 or more, ratios 1 to 3, odd and non-square,
    // and a target with fewer channels than its source (it reads only the first ones).
    let cases = [
        (Shape::new(3, 1, 8, 6), Shape::new(3, 8, 4, 3)),
        (Shape::new(1, 3, 9, 12), Shape::new(1, 10, 3, 4)),
        (Shape::new(3, 3, 5, 7), Shape::new(3, 8, 5, 7)),
        (Shape::new(1, 1, 6, 10), Shape::new(1, 9, 3, 5)),
        (Shape::new(3, 12, 4, 6), Shape::new(3, 8, 2, 3)),
    ];
    for (seed, &(src_shape, dst_shape)) in cases.iter().enumerate() {
        let g = ShortcutGeom::new(src_shape, dst_shape).unwrap();
        let label = format!("shortcut {src_shape} → {dst_shape}");
        let mut r = rng(seed as u64 + 50);
        let src = uniform(&mut r, src_shape.len(), -1.0, 1.0);
        let base = uniform(&mut r, dst_shape.len(), -1.0, 1.0);
        let run = |src: &[f64]| {
            let mut dst = with_tail(&base, SENTINEL);
            cpu.shortcut_forward(&g, &with_tail(src, f64::NAN), &mut dst)
                .unwrap();
            assert_tail(&label, &dst, dst_shape.len());
            dst.truncate(dst_shape.len());
            dst
        };
        // Forward ACCUMULATES into the target: base + the map.
        assert_close(&label, &run(&src), &shortcut_definition(&g, &src, &base));

        let probe = uniform(&mut r, dst_shape.len(), -1.0, 1.0);
        let prefill = uniform(&mut r, src_shape.len(), -2.0, 2.0);
        let mut d_src = with_tail(&prefill, SENTINEL);
        cpu.shortcut_backward(&g, &with_tail(&probe, f64::NAN), &mut d_src)
            .unwrap();
        assert_tail(&label, &d_src, src_shape.len());
        let num = numeric(&src, &(0..src_shape.len()).collect::<Vec<_>>(), H, |s| {
            dot(&probe, &run(s))
        });
        compare(
            &format!("{label}: d_src"),
            &d_src[..src_shape.len()]
                .iter()
                .zip(&prefill)
                .map(|(a, p)| a - p)
                .collect::<Vec<_>>(),
            &num,
        );
    }
}

// ---- dense ---------------------------------------------------------------------------------------

#[test]
fn dense_gradients() {
    let cpu = Cpu::new();
    for (seed, &(n, fin, fout, relu, with_dx)) in [
        (1, 13, 7, true, true),
        (3, 13, 7, false, true),
        (3, 20, 9, true, false),
        (3, 1, 4, true, true),
    ]
    .iter()
    .enumerate()
    {
        let g = DenseGeom::new(n, fin, fout, relu).unwrap();
        let label = format!("dense {n}×{fin} → {fout} relu={relu}");
        let mut r = rng(seed as u64 + 70);
        let (x, w, b) = loop {
            let (x, w, b) = (
                uniform(&mut r, n * fin, -1.0, 1.0),
                uniform(&mut r, fout * fin, -1.0, 1.0),
                uniform(&mut r, fout, -1.0, 1.0),
            );
            if !relu
                || dense_definition(&g, &x, &w, &b, false)
                    .iter()
                    .all(|v| v.abs() >= RELU_MARGIN)
            {
                break (x, w, b);
            }
        };
        let run = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![SENTINEL; n * fout + TAIL];
            cpu.dense_forward(
                &g,
                DenseForwardIo {
                    x: &with_tail(x, f64::NAN),
                    w: &with_tail(w, f64::NAN),
                    b: &with_tail(b, f64::NAN),
                    y: &mut y,
                },
            )
            .unwrap();
            assert_tail(&label, &y, n * fout);
            y.truncate(n * fout);
            y
        };
        let y = run(&x, &w, &b);
        assert_close(&label, &y, &dense_definition(&g, &x, &w, &b, relu));

        let probe = uniform(&mut r, n * fout, -1.0, 1.0);
        let prefill = uniform(&mut r, n * fin, -2.0, 2.0);
        let mut dy = with_tail(&probe, SENTINEL);
        let mut dx = with_tail(&prefill, SENTINEL);
        let (mut dw, mut db) = (
            with_tail(&vec![1e3; fout * fin], SENTINEL),
            with_tail(&vec![1e3; fout], SENTINEL),
        );
        cpu.dense_backward(
            &g,
            DenseBackwardIo {
                x: &with_tail(&x, f64::NAN),
                w: &with_tail(&w, f64::NAN),
                y: &with_tail(&y, f64::NAN),
                dy: &mut dy,
                dx: with_dx.then_some(&mut dx),
                dw: &mut dw,
                db: &mut db,
            },
        )
        .unwrap();
        for (what, v, len) in [
            ("dy", &dy, n * fout),
            ("dx", &dx, n * fin),
            ("dw", &dw, fout * fin),
            ("db", &db, fout),
        ] {
            assert_tail(&format!("{label}: {what}"), v, len);
        }
        let masked: Vec<f64> = probe
            .iter()
            .zip(&y)
            .map(|(p, &v)| if relu && v <= 0.0 { 0.0 } else { *p })
            .collect();
        assert_eq!(
            dy[..n * fout],
            masked[..],
            "{label}: dy was not masked in place"
        );
        let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&probe, &run(x, w, b));
        compare(
            &format!("{label}: dw"),
            &dw[..fout * fin],
            &numeric(&w, &(0..fout * fin).collect::<Vec<_>>(), H, |w| {
                loss(&x, w, &b)
            }),
        );
        compare(
            &format!("{label}: db"),
            &db[..fout],
            &numeric(&b, &(0..fout).collect::<Vec<_>>(), H, |b| loss(&x, &w, b)),
        );
        if with_dx {
            let num = numeric(&x, &(0..n * fin).collect::<Vec<_>>(), H, |x| {
                loss(x, &w, &b)
            });
            compare(
                &format!("{label}: dx"),
                &dx[..n * fin]
                    .iter()
                    .zip(&prefill)
                    .map(|(a, p)| a - p)
                    .collect::<Vec<_>>(),
                &num,
            );
        } else {
            assert_eq!(
                dx[..n * fin],
                prefill[..],
                "{label}: dx touched although not requested"
            );
        }
    }
}

// ---- softmax cross-entropy -----------------------------------------------------------------------

#[test]
fn softmax_xent_values_and_gradient() {
    let cpu = Cpu::new();
    for (seed, &(n, k)) in [(3usize, 7usize), (1, 2), (3, 4)].iter().enumerate() {
        let g = XentGeom::new(n, k).unwrap();
        let mut r = rng(seed as u64 + 90);
        let logits = uniform(&mut r, n * k, -3.0, 3.0);
        let labels: Vec<u32> = (0..n).map(|i| ((i * 5 + seed) % k) as u32).collect();
        let run = |z: &[f64]| {
            let (mut losses, mut d) = (vec![SENTINEL; n + TAIL], vec![SENTINEL; n * k + TAIL]);
            let mut lab = labels.clone();
            lab.extend([u32::MAX; TAIL]);
            let stats = cpu
                .softmax_xent(
                    &g,
                    XentIo {
                        logits: &with_tail(z, f64::NAN),
                        labels: &lab,
                        losses: &mut losses,
                        d_logits: &mut d,
                    },
                )
                .unwrap();
            assert_tail("losses", &losses, n);
            assert_tail("d_logits", &d, n * k);
            (stats, losses[..n].to_vec(), d[..n * k].to_vec())
        };
        let (stats, losses, d) = run(&logits);
        let mut correct = 0;
        for i in 0..n {
            let z = &logits[i * k..][..k];
            let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
            let want = lse - z[labels[i] as usize];
            assert!(
                (losses[i] - want).abs() < 1e-13,
                "loss row {i}: {} vs {want}",
                losses[i]
            );
            let argmax = (0..k).fold(0, |b, j| if z[j] > z[b] { j } else { b });
            correct += usize::from(argmax == labels[i] as usize);
        }
        assert!((stats.mean_loss - losses.iter().sum::<f64>() / n as f64).abs() < 1e-14);
        assert_eq!(stats.correct, correct);
        // Smooth, so the step is limited by truncation (~h²) instead of kinks: h = 1e-5.
        let num = numeric(&logits, &(0..n * k).collect::<Vec<_>>(), 1e-5, |z| {
            run(z).0.mean_loss
        });
        compare(&format!("softmax xent {n}×{k}: d_logits"), &d, &num);
    }
}

#[test]
fn softmax_xent_is_stable_for_huge_logits_and_counts_first_maximum() {
    fn check<T: rescnn::Real>() {
        let cpu = CpuBackend::<T>::new();
        let g = XentGeom::new(3, 3).unwrap();
        let z: Vec<T> = [1e4, 0.0, -1e4, -1e4, 1e4, 1e4, 5.0, 5.0, 1.0]
            .iter()
            .map(|&v| T::from_f64(v))
            .collect();
        let labels = vec![2u32, 2, 1];
        let (mut losses, mut d) = (vec![T::ZERO; 3], vec![T::ZERO; 9]);
        let stats = cpu
            .softmax_xent(
                &g,
                XentIo {
                    logits: &z,
                    labels: &labels,
                    losses: &mut losses,
                    d_logits: &mut d,
                },
            )
            .unwrap();
        let l: Vec<f64> = losses.iter().map(|v| v.to_f64()).collect();
        // Row 0: label two 2e4 below the max. Row 1: tie of two maxima, label one of them: ln 2.
        // Row 2: tie of 5s, label the second: ln(2 + e⁻⁴).
        assert!(
            (l[0] - 2e4).abs() <= 1e-3,
            "{} row 0 loss {}",
            T::NAME,
            l[0]
        );
        assert!(
            (l[1] - 2f64.ln()).abs() <= 1e-6,
            "{} row 1 loss {}",
            T::NAME,
            l[1]
        );
        assert!(
            (l[2] - (2.0 + (-4f64).exp()).ln()).abs() <= 1e-6,
            "{} row 2 loss {}",
            T::NAME,
            l[2]
        );
        assert!(d.iter().all(|v| v.is_finite()));
        // Row 0's gradient: softmax is (1, 0, 0) to working precision, minus the one-hot of label 2, / 3.
        assert!(
            (d[0].to_f64() - 1.0 / 3.0).abs() < 1e-6 && (d[2].to_f64() + 1.0 / 3.0).abs() < 1e-6
        );
        // First-maximum argmax: row 1 picks class 1 (label 2 is not counted), row 2 picks class 0.
        assert_eq!(stats.correct, 0, "{}", T::NAME);
    }
    check::<f64>();
    check::<f32>();
}

#[test]
fn softmax_xent_rejects_labels_out_of_range() {
    let cpu = Cpu::new();
    let g = XentGeom::new(2, 3).unwrap();
    let err = cpu
        .softmax_xent(
            &g,
            XentIo {
                logits: &vec![0.0; 6],
                labels: &vec![0, 3],
                losses: &mut vec![0.0; 2],
                d_logits: &mut vec![0.0; 6],
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("label 3 of row 1"), "{err}");
}

#[test]
fn softmax_xent_soft_values_gradient_and_hard_equivalence() {
    let cpu = Cpu::new();
    for (seed, &(n, k, weighted)) in [(3usize, 7usize, false), (1, 2, true), (4, 5, true)]
        .iter()
        .enumerate()
    {
        let g = XentGeom::new(n, k).unwrap();
        let mut r = rng(seed as u64 + 600);
        let logits = uniform(&mut r, n * k, -3.0, 3.0);
        let mut targets = uniform(&mut r, n * k, 0.0, 1.0);
        for row in targets.chunks_mut(k) {
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= s);
        }
        let weights = weighted.then(|| uniform(&mut r, k, 0.5, 2.0));
        let run = |z: &[f64]| {
            let (mut losses, mut d) = (vec![SENTINEL; n + TAIL], vec![SENTINEL; n * k + TAIL]);
            let w = weights.as_ref().map(|w| with_tail(w, f64::NAN));
            let stats = cpu
                .softmax_xent_soft(
                    &g,
                    SoftXentIo {
                        logits: &with_tail(z, f64::NAN),
                        targets: &with_tail(&targets, f64::NAN),
                        class_weights: w.as_ref(),
                        losses: &mut losses,
                        d_logits: &mut d,
                    },
                )
                .unwrap();
            assert_tail("losses", &losses, n);
            assert_tail("d_logits", &d, n * k);
            (stats, losses[..n].to_vec(), d[..n * k].to_vec())
        };
        let (stats, losses, d) = run(&logits);
        for i in 0..n {
            let z = &logits[i * k..][..k];
            let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
            let want: f64 = (0..k)
                .map(|j| {
                    -weights.as_ref().map_or(1.0, |w| w[j]) * targets[i * k + j] * (z[j] - lse)
                })
                .sum();
            assert!(
                (losses[i] - want).abs() < 1e-13,
                "row {i}: {} vs {want}",
                losses[i]
            );
        }
        assert!((stats.mean_loss - losses.iter().sum::<f64>() / n as f64).abs() < 1e-14);
        let num = numeric(&logits, &(0..n * k).collect::<Vec<_>>(), 1e-5, |z| {
            run(z).0.mean_loss
        });
        compare(
            &format!("soft softmax xent {n}×{k} weighted {weighted}: d_logits"),
            &d,
            &num,
        );
    }
    // One-hot targets without weights: exactly the hard-label path.
    let (n, k) = (4, 6);
    let g = XentGeom::new(n, k).unwrap();
    let logits = uniform(&mut rng(700), n * k, -3.0, 3.0);
    let labels = vec![0u32, 5, 2, 2];
    let mut onehot = vec![0.0; n * k];
    for (i, &l) in labels.iter().enumerate() {
        onehot[i * k + l as usize] = 1.0;
    }
    let (mut l1, mut d1, mut l2, mut d2) = (
        vec![0.0; n],
        vec![0.0; n * k],
        vec![0.0; n],
        vec![0.0; n * k],
    );
    let hard = cpu
        .softmax_xent(
            &g,
            XentIo {
                logits: &logits,
                labels: &labels,
                losses: &mut l1,
                d_logits: &mut d1,
            },
        )
        .unwrap();
    let soft = cpu
        .softmax_xent_soft(
            &g,
            SoftXentIo {
                logits: &logits,
                targets: &onehot,
                class_weights: None,
                losses: &mut l2,
                d_logits: &mut d2,
            },
        )
        .unwrap();
    assert_eq!(
        (l1, d1, hard),
        (l2, d2, soft),
        "one-hot soft targets differ from hard labels"
    );
}

// ---- RMSProp -------------------------------------------------------------------------------------

/// The paper's formulas (3), (4) with the time decay, against values worked out by hand.
#[test]
fn rmsprop_matches_hand_computed_steps() {
    let cpu = Cpu::new();
    let cfg = RmsPropConfig {
        lr: 0.01,
        decay: 0.5,
        rho: 0.9,
        eps: 1e-7,
        weight_decay: 0.0,
    };
    let mut w = vec![0.5, -1.0, 2.0, 7.0];
    let mut r = vec![0.0; 4];
    let grads = [
        [0.2, -0.4, 0.0, 1.0],
        [0.1, 0.3, -0.5, 1.0],
        [-0.3, 0.2, 0.5, 1.0],
    ];
    for (step, g) in grads.iter().enumerate() {
        cpu.rmsprop_update(
            &cfg.step(step as u64),
            RmsPropIo {
                w: &mut w,
                g: &g.to_vec(),
                r: &mut r,
            },
        )
        .unwrap();
    }
    // By hand, element 0 (g = 0.2, 0.1, −0.3; lr_t = 0.01, 0.01/1.5, 0.01/2):
    //   r1 = 0.1·0.04 = 0.004;            w1 = 0.5 − 0.01·0.2/√(0.004+1e-7)        = 0.468378...
    //   r2 = 0.9·0.004 + 0.1·0.01 = 0.0046; w2 = w1 − (0.01/1.5)·0.1/√(0.0046+1e-7) = 0.458549...
    //   r3 = 0.9·0.0046 + 0.1·0.09 = 0.01314; w3 = w2 − 0.005·(−0.3)/√(0.01314+1e-7) = 0.471634...
    let hand_w0 = {
        let w1 = 0.5 - 0.01 * 0.2 / (0.004f64 + 1e-7).sqrt();
        let w2 = w1 - (0.01 / 1.5) * 0.1 / (0.0046f64 + 1e-7).sqrt();
        w2 - 0.005 * -0.3 / (0.01314f64 + 1e-7).sqrt()
    };
    assert!(
        (hand_w0 - 0.471634).abs() < 1e-6,
        "hand computation itself: {hand_w0}"
    );
    assert!((r[0] - 0.01314).abs() < 1e-15, "r0 {}", r[0]);
    assert!((w[0] - hand_w0).abs() < 1e-14, "w0 {} vs {hand_w0}", w[0]);
    // Element 2: zero gradient first, so r stays 0 and w must not move (0/√ε, not NaN).
    //   r2 = 0.1·0.25 = 0.025, w2 = 2 + (0.01/1.5)·0.5/√(0.025+1e-7); r3 = 0.0225 + 0.025 = 0.0475,
    //   w3 = w2 − 0.005·0.5/√(0.0475+1e-7).
    let hand_w2 = 2.0 + (0.01 / 1.5) * 0.5 / (0.025f64 + 1e-7).sqrt()
        - 0.005 * 0.5 / (0.0475f64 + 1e-7).sqrt();
    assert!(
        (w[2] - hand_w2).abs() < 1e-14 && (r[2] - 0.0475).abs() < 1e-15,
        "w2 {} r2 {}",
        w[2],
        r[2]
    );
    // Element 3 (constant gradient 1): r = 0.1, 0.19, 0.271; steps lr_t/√r.
    let hand_w3 = 7.0
        - 0.01 / (0.1f64 + 1e-7).sqrt()
        - (0.01 / 1.5) / (0.19f64 + 1e-7).sqrt()
        - 0.005 / (0.271f64 + 1e-7).sqrt();
    assert!(
        (w[3] - hand_w3).abs() < 1e-14 && (r[3] - 0.271).abs() < 1e-15,
        "w3 {} r3 {}",
        w[3],
        r[3]
    );

    // Weight decay adds wd·w to the gradient: one step from w = 2, g = 0.5, wd = 0.1 → g' = 0.7.
    let cfg = RmsPropConfig {
        weight_decay: 0.1,
        ..cfg
    };
    let (mut w, mut r) = (vec![2.0], vec![0.0]);
    cpu.rmsprop_update(
        &cfg.step(0),
        RmsPropIo {
            w: &mut w,
            g: &vec![0.5],
            r: &mut r,
        },
    )
    .unwrap();
    assert!((r[0] - 0.1 * 0.49).abs() < 1e-15);
    assert!(
        (w[0] - (2.0 - 0.01 * 0.7 / (0.049f64 + 1e-7).sqrt())).abs() < 1e-14,
        "{}",
        w[0]
    );
}

// ---- AdamW ---------------------------------------------------------------------------------------

/// Three AdamW steps at a constant rate, against Adam's formulas worked out by hand: moments, bias
/// correction with β^t (t = 1, 2, 3) and the decoupled weight decay w ← w − lr·wd·w.
#[test]
fn adamw_matches_hand_computed_steps() {
    let cpu = Cpu::new();
    let cfg = AdamWConfig {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.1,
        warmup_fraction: 0.0,
        schedule: LrSchedule::Constant,
        final_lr_fraction: 1.0,
    };
    let mut w = vec![1.0, -2.0];
    let (mut m, mut v) = (vec![0.0; 2], vec![0.0; 2]);
    let grads = [[0.5, 0.0], [-0.2, 0.0], [0.4, 0.0]];
    for (step, g) in grads.iter().enumerate() {
        let s = cfg.step(step as u64, 3);
        assert_eq!((s.lr, s.t), (0.1, step as u64 + 1));
        cpu.adamw_update(
            &s,
            AdamWIo {
                w: &mut w,
                g: &g.to_vec(),
                m: &mut m,
                v: &mut v,
            },
        )
        .unwrap();
    }
    // By hand, element 0 (g = 0.5, −0.2, 0.4):
    //   t=1: m = 0.05, v = 0.0025; m̂ = 0.05/0.1 = 0.5, v̂ = 0.0025/0.01 = 0.25;
    //        w = 1·(1 − 0.01) − 0.1·0.5/(0.5 + 1e-8) ≈ 0.89 (Adam's first step is lr·sign g)
    //   t=2: m = 0.045 − 0.02 = 0.025, v = 0.002475 + 0.0004 = 0.002875; 1 − β^2 = 0.19, 0.0199
    //   t=3: m = 0.0225 + 0.04 = 0.0625, v = 0.00284625 + 0.0016 = 0.00444625; 1 − β^3 = 0.271, 0.029701
    let w1: f64 = 1.0 * (1.0 - 0.01) - 0.1 * 0.5 / (0.5 + 1e-8);
    assert!((w1 - 0.89).abs() < 1e-8, "hand computation itself: {w1}");
    let w2 = w1 * (1.0 - 0.01) - 0.1 * (0.025 / 0.19) / ((0.002875f64 / 0.0199).sqrt() + 1e-8);
    let w3 =
        w2 * (1.0 - 0.01) - 0.1 * (0.0625 / 0.271) / ((0.00444625f64 / 0.029701).sqrt() + 1e-8);
    assert!((m[0] - 0.0625).abs() < 1e-15, "m0 {}", m[0]);
    assert!((v[0] - 0.00444625).abs() < 1e-15, "v0 {}", v[0]);
    assert!((w[0] - w3).abs() < 1e-13, "w0 {} vs {w3}", w[0]);
    // Element 1: zero gradient, so m = v = 0 and only the weight decay moves w: −2·0.99³.
    assert_eq!((m[1], v[1]), (0.0, 0.0));
    assert!((w[1] - -2.0 * 0.99f64.powi(3)).abs() < 1e-14, "w1 {}", w[1]);

    // The update uses the scheduled rate: one-cycle over 4 steps with a 1-step warm-up, step 3 is the
    // last, at lr·final_lr_fraction = 0.01; t = 4 for the bias correction.
    let cfg = AdamWConfig {
        schedule: LrSchedule::OneCycle,
        final_lr_fraction: 0.1,
        ..cfg
    };
    let s = cfg.step(3, 4);
    assert!((s.lr - 0.01).abs() < 1e-17 && s.t == 4, "{s:?}");
    let (mut w, mut m, mut v) = (vec![1.0], vec![0.0], vec![0.0]);
    cpu.adamw_update(
        &s,
        AdamWIo {
            w: &mut w,
            g: &vec![0.5],
            m: &mut m,
            v: &mut v,
        },
    )
    .unwrap();
    let (b1, b2) = (1.0 - 0.9f64.powi(4), 1.0 - 0.99f64.powi(4));
    let hand = 1.0 * (1.0 - 0.01 * 0.1) - 0.01 * (0.05 / b1) / ((0.0025f64 / b2).sqrt() + 1e-8);
    assert!((w[0] - hand).abs() < 1e-14, "{} vs {hand}", w[0]);
}

/// The learning-rate schedule at hand-checked points: lr 1, 11 steps, 20 % warm-up (round(2.2) = 2
/// steps), final fraction 0.1, so after the warm-up progress = (step − 2)/8.
#[test]
fn adamw_schedule_matches_hand_values() {
    let base = AdamWConfig {
        lr: 1.0,
        warmup_fraction: 0.2,
        final_lr_fraction: 0.1,
        ..Default::default()
    };
    let at = |schedule, step| AdamWConfig { schedule, ..base }.lr_at(step, 11);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    for schedule in [
        LrSchedule::Constant,
        LrSchedule::Cosine,
        LrSchedule::OneCycle,
    ] {
        // Linear warm-up from lr/2 to lr, then lr at the first step after it.
        assert!(
            close(at(schedule, 0), 0.5) && close(at(schedule, 1), 1.0),
            "{schedule:?}"
        );
        assert!(close(at(schedule, 2), 1.0), "{schedule:?}");
    }
    // Constant stays at lr to the end.
    assert!(close(at(LrSchedule::Constant, 10), 1.0));
    // Cosine: 0.1 + 0.9·(1 + cos(π·p))/2; p = 1/4 → 0.1 + 0.45·1.7071068 = 0.8681981, p = 1/2 → 0.55.
    assert!(close(
        at(LrSchedule::Cosine, 4),
        0.1 + 0.45 * (1.0 + 0.5f64.sqrt())
    ));
    assert!((at(LrSchedule::Cosine, 4) - 0.8681981).abs() < 1e-7);
    assert!(close(at(LrSchedule::Cosine, 6), 0.55));
    assert!(close(at(LrSchedule::Cosine, 10), 0.1));
    // One-cycle falls linearly: 1 − 0.9·p; p = 1/4 → 0.775, p = 1/2 → 0.55, p = 1 → 0.1.
    assert!(close(at(LrSchedule::OneCycle, 4), 0.775));
    assert!(close(at(LrSchedule::OneCycle, 6), 0.55));
    assert!(close(at(LrSchedule::OneCycle, 10), 0.1));
    // Past the end the final rate holds.
    assert!(close(at(LrSchedule::Cosine, 50), 0.1) && close(at(LrSchedule::OneCycle, 50), 0.1));
    // Without a warm-up the first step is lr (constant, cosine); one-cycle keeps a 1-step rise to lr.
    let none = AdamWConfig {
        warmup_fraction: 0.0,
        ..base
    };
    assert_eq!(none.warmup_steps(11), 0);
    assert!(close(none.lr_at(0, 11), 1.0));
    let one_cycle = AdamWConfig {
        schedule: LrSchedule::OneCycle,
        ..none
    };
    assert_eq!(one_cycle.warmup_steps(11), 1);
    assert!(close(one_cycle.lr_at(0, 11), 1.0) && close(one_cycle.lr_at(10, 11), 0.1));
    // Bad settings name themselves.
    let err = AdamWConfig { beta2: 1.0, ..base }
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("beta2") && err.contains("[0, 1)"), "{err}");
    base.validate().unwrap();
}

// ---- batch normalisation -------------------------------------------------------------------------

/// Batch norm by its definition (biased batch variance), before the optional ReLU.
fn batchnorm_definition(
    s: Shape,
    eps: f64,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let hw = s.h * s.w;
    let m = (s.n * hw) as f64;
    let mut pre = vec![0.0; x.len()];
    let (mut means, mut vars) = (vec![0.0; s.c], vec![0.0; s.c]);
    for c in 0..s.c {
        let idx: Vec<usize> = (0..s.n)
            .flat_map(|n| (0..hw).map(move |i| (n * s.c + c) * hw + i))
            .collect();
        let mean = idx.iter().map(|&i| x[i]).sum::<f64>() / m;
        let var = idx.iter().map(|&i| (x[i] - mean).powi(2)).sum::<f64>() / m;
        for &i in &idx {
            pre[i] = gamma[c] * (x[i] - mean) / (var + eps).sqrt() + beta[c];
        }
        (means[c], vars[c]) = (mean, var);
    }
    (pre, means, vars)
}

#[test]
fn batchnorm_gradients_and_running_statistics() {
    let cpu = Cpu::new();
    let (eps, momentum) = (1e-5, 0.1);
    for (seed, &(n, c, h, w, relu, with_dx)) in [
        (1, 3, 4, 5, false, true),
        (3, 2, 3, 3, true, true),
        (2, 4, 1, 1, false, true),
        (3, 2, 2, 5, true, false),
    ]
    .iter()
    .enumerate()
    {
        let s = Shape::new(n, c, h, w);
        let g = BatchNormGeom::new(s, relu, eps, momentum).unwrap();
        // The geometry carries them as f32 (what the kernels read): the definition uses those values.
        let (eps, momentum) = (g.eps as f64, g.momentum as f64);
        let label = format!("batch norm {s} relu={relu}");
        let len = s.len();
        let mut r = rng(seed as u64 + 300);
        // Redraw until every pre-activation is RELU_MARGIN from the kink (relu only): a step of H
        // moves a pre-activation by at most a few H (through x̂ and the batch statistics).
        let (x, gamma, beta) = loop {
            let x = uniform(&mut r, len, -1.0, 1.0);
            let gamma = uniform(&mut r, c, 0.5, 1.5);
            let beta = uniform(&mut r, c, -0.5, 0.5);
            let (pre, ..) = batchnorm_definition(s, eps, &x, &gamma, &beta);
            if !relu || pre.iter().all(|v| v.abs() > RELU_MARGIN) {
                break (x, gamma, beta);
            }
        };
        let running0 = uniform(&mut r, 2 * c, 0.5, 1.5);
        let run = |x: &[f64], gamma: &[f64], beta: &[f64]| {
            let mut y = vec![SENTINEL; len + TAIL];
            let mut saved = vec![SENTINEL; 2 * c + TAIL];
            let mut rm = with_tail(&running0[..c], SENTINEL);
            let mut rv = with_tail(&running0[c..], SENTINEL);
            cpu.batchnorm_forward_train(
                &g,
                BatchNormTrainIo {
                    x: &with_tail(x, f64::NAN),
                    gamma: &with_tail(gamma, f64::NAN),
                    beta: &with_tail(beta, f64::NAN),
                    y: &mut y,
                    saved: &mut saved,
                    running_mean: &mut rm,
                    running_var: &mut rv,
                },
            )
            .unwrap();
            for (what, v, prefix) in [
                ("y", &y, len),
                ("saved", &saved, 2 * c),
                ("running mean", &rm, c),
                ("running var", &rv, c),
            ] {
                assert_tail(&format!("{label}: {what}"), v, prefix);
            }
            (y, saved, rm, rv)
        };
        let (y, saved, rm, rv) = run(&x, &gamma, &beta);
        let (pre, means, vars) = batchnorm_definition(s, eps, &x, &gamma, &beta);
        let want_y: Vec<f64> = pre
            .iter()
            .map(|&v| if relu { v.max(0.0) } else { v })
            .collect();
        assert_close(&format!("{label}: y"), &y[..len], &want_y);
        let m = (n * h * w) as f64;
        let unbias = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
        for ch in 0..c {
            let want_rm = (1.0 - momentum) * running0[ch] + momentum * means[ch];
            let want_rv = (1.0 - momentum) * running0[c + ch] + momentum * vars[ch] * unbias;
            assert!(
                (rm[ch] - want_rm).abs() < 1e-12,
                "{label}: running mean {ch}"
            );
            assert!(
                (rv[ch] - want_rv).abs() < 1e-12,
                "{label}: running var {ch}"
            );
            assert!((saved[ch] - means[ch]).abs() < 1e-12, "{label}: saved mean");
        }
        // Evaluation uses the running statistics instead of the batch's.
        let mut y_eval = vec![SENTINEL; len + TAIL];
        cpu.batchnorm_forward_eval(
            &g,
            BatchNormEvalIo {
                x: &with_tail(&x, f64::NAN),
                gamma: &gamma,
                beta: &beta,
                running_mean: &rm,
                running_var: &rv,
                y: &mut y_eval,
            },
        )
        .unwrap();
        assert_tail(&format!("{label}: y (evaluation)"), &y_eval, len);
        let hw = h * w;
        let want_eval: Vec<f64> = (0..len)
            .map(|i| {
                let ch = (i / hw) % c;
                let v = gamma[ch] * (x[i] - rm[ch]) / (rv[ch] + eps).sqrt() + beta[ch];
                if relu {
                    v.max(0.0)
                } else {
                    v
                }
            })
            .collect();
        assert_close(
            &format!("{label}: y (evaluation)"),
            &y_eval[..len],
            &want_eval,
        );

        let probe = uniform(&mut r, len, -1.0, 1.0);
        let prefill = uniform(&mut r, len, -2.0, 2.0);
        let mut dy = with_tail(&probe, f64::NAN);
        let mut dx = with_tail(&prefill, SENTINEL);
        let (mut dgamma, mut dbeta) = (vec![SENTINEL; c + TAIL], vec![SENTINEL; c + TAIL]);
        dgamma[..c].fill(7.0); // WRITTEN, not accumulated
        cpu.batchnorm_backward(
            &g,
            BatchNormBackwardIo {
                x: &with_tail(&x, f64::NAN),
                gamma: &with_tail(&gamma, f64::NAN),
                y: &y,
                saved: &saved,
                dy: &mut dy,
                dx: with_dx.then_some(&mut dx),
                dgamma: &mut dgamma,
                dbeta: &mut dbeta,
            },
        )
        .unwrap();
        assert_tail(&format!("{label}: dgamma"), &dgamma, c);
        assert_tail(&format!("{label}: dbeta"), &dbeta, c);
        let loss = |x: &[f64], gm: &[f64], bt: &[f64]| dot(&probe, &run(x, gm, bt).0[..len]);
        let all = |k: usize| (0..k).collect::<Vec<_>>();
        // Smooth away from the ReLU kink but curved through the statistics (strongly so for M = 2,
        // where x̂ is ±1 up to eps): h = 1e-5 keeps the h² truncation below the tolerance.
        const H_BN: f64 = 1e-5;
        let num_g = numeric(&gamma, &all(c), H_BN, |gm| loss(&x, gm, &beta));
        compare(&format!("{label}: dgamma"), &dgamma[..c], &num_g);
        let num_b = numeric(&beta, &all(c), H_BN, |bt| loss(&x, &gamma, bt));
        compare(&format!("{label}: dbeta"), &dbeta[..c], &num_b);
        if with_dx {
            assert_tail(&format!("{label}: dx"), &dx, len);
            let num_x = numeric(&x, &all(len), H_BN, |x| loss(x, &gamma, &beta));
            let got: Vec<f64> = dx[..len].iter().zip(&prefill).map(|(a, p)| a - p).collect();
            compare(&format!("{label}: dx"), &got, &num_x);
        } else {
            assert_eq!(
                dx[..len],
                prefill[..],
                "{label}: dx touched although not requested"
            );
        }
    }
}

// ---- statistics pooling --------------------------------------------------------------------------

#[test]
fn statspool_values_and_gradients() {
    let cpu = Cpu::new();
    let eps = 1e-5;
    // W = 1 (zero variance: the std is sqrt(eps) and its gradient 0), H = 1, odd sizes, and a
    // constant plane (zero variance with W > 1).
    for (seed, &(n, c, h, w)) in [(1, 3, 4, 7), (3, 2, 5, 1), (2, 3, 1, 9), (3, 4, 3, 33)]
        .iter()
        .enumerate()
    {
        let s = Shape::new(n, c, h, w);
        let g = StatsPoolGeom::new(s, eps).unwrap();
        let eps = g.eps as f64; // as the kernels read it (f32)
        let label = format!("statistics pooling {s}");
        let (in_len, out_len) = (s.len(), 2 * n * c);
        let mut r = rng(seed as u64 + 400);
        let mut x = uniform(&mut r, in_len, -1.0, 1.0);
        x[..h * w].fill(0.3);
        let run = |x: &[f64]| {
            let mut y = vec![SENTINEL; out_len + TAIL];
            cpu.statspool_forward(&g, &with_tail(x, f64::NAN), &mut y)
                .unwrap();
            assert_tail(&label, &y, out_len);
            y.truncate(out_len);
            y
        };
        let y = run(&x);
        let mut want = vec![0.0; out_len];
        for img in 0..n {
            for ch in 0..c {
                let plane = &x[(img * c + ch) * h * w..][..h * w];
                let m: Vec<f64> = (0..w)
                    .map(|col| (0..h).map(|row| plane[row * w + col]).sum::<f64>() / h as f64)
                    .collect();
                let mean = m.iter().sum::<f64>() / w as f64;
                let var = m.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / w as f64;
                want[img * 2 * c + ch] = mean;
                want[img * 2 * c + c + ch] = (var + eps).sqrt();
            }
        }
        assert_close(&format!("{label}: y"), &y, &want);

        let probe = uniform(&mut r, out_len, -1.0, 1.0);
        let prefill = uniform(&mut r, in_len, -2.0, 2.0);
        let mut dx = with_tail(&prefill, SENTINEL);
        cpu.statspool_backward(
            &g,
            StatsPoolBackwardIo {
                x: &with_tail(&x, f64::NAN),
                y: &with_tail(&y, f64::NAN),
                dy: &with_tail(&probe, f64::NAN),
                dx: &mut dx,
            },
        )
        .unwrap();
        assert_tail(&label, &dx, in_len);
        // Smooth (eps > 0 keeps the sqrt away from 0): h = 1e-5, truncation ~h².
        let num = numeric(&x, &(0..in_len).collect::<Vec<_>>(), 1e-5, |x| {
            dot(&probe, &run(x))
        });
        let got: Vec<f64> = dx[..in_len]
            .iter()
            .zip(&prefill)
            .map(|(a, p)| a - p)
            .collect();
        compare(&format!("{label}: dx"), &got, &num);
    }
}

// ---- concatenation -------------------------------------------------------------------------------

#[test]
fn concat_values_and_gradients() {
    let cpu = Cpu::new();
    // One feature on either side, batch 1 and 3, a side part wider than the first.
    for (seed, &(n, a, b)) in [(1, 5, 3), (3, 1, 4), (2, 7, 1), (3, 6, 11)]
        .iter()
        .enumerate()
    {
        let g = ConcatGeom::new(n, a, b).unwrap();
        let label = format!("concat {n}×({a} + {b})");
        let (la, lb, ly) = (n * a, n * b, n * (a + b));
        let mut r = rng(seed as u64 + 600);
        let xa = uniform(&mut r, la, -1.0, 1.0);
        let xb = uniform(&mut r, lb, -1.0, 1.0);
        let run = |xa: &[f64], xb: &[f64]| {
            let mut y = vec![SENTINEL; ly + TAIL];
            cpu.concat_forward(
                &g,
                ConcatForwardIo {
                    a: &with_tail(xa, f64::NAN),
                    b: &with_tail(xb, f64::NAN),
                    y: &mut y,
                },
            )
            .unwrap();
            assert_tail(&label, &y, ly);
            y.truncate(ly);
            y
        };
        let y = run(&xa, &xb);
        let mut want = Vec::with_capacity(ly);
        for row in 0..n {
            want.extend_from_slice(&xa[row * a..][..a]);
            want.extend_from_slice(&xb[row * b..][..b]);
        }
        assert_close(&format!("{label}: y"), &y, &want);

        let probe = uniform(&mut r, ly, -1.0, 1.0);
        let (pre_a, pre_b) = (
            uniform(&mut r, la, -2.0, 2.0),
            uniform(&mut r, lb, -2.0, 2.0),
        );
        let (mut da, mut db) = (with_tail(&pre_a, SENTINEL), with_tail(&pre_b, SENTINEL));
        cpu.concat_backward(
            &g,
            ConcatBackwardIo {
                dy: &with_tail(&probe, f64::NAN),
                da: Some(&mut da),
                db: Some(&mut db),
            },
        )
        .unwrap();
        assert_tail(&format!("{label}: da"), &da, la);
        assert_tail(&format!("{label}: db"), &db, lb);
        let added = |d: &[f64], pre: &[f64]| -> Vec<f64> {
            d.iter().zip(pre).map(|(d, p)| d - p).collect()
        };
        let num_a = numeric(&xa, &(0..la).collect::<Vec<_>>(), H, |xa| {
            dot(&probe, &run(xa, &xb))
        });
        compare(&format!("{label}: da"), &added(&da[..la], &pre_a), &num_a);
        let num_b = numeric(&xb, &(0..lb).collect::<Vec<_>>(), H, |xb| {
            dot(&probe, &run(&xa, xb))
        });
        compare(&format!("{label}: db"), &added(&db[..lb], &pre_b), &num_b);

        // Either part may be left out; the other gets the same gradient.
        let mut da_only = pre_a.clone();
        cpu.concat_backward(
            &g,
            ConcatBackwardIo {
                dy: &probe,
                da: Some(&mut da_only),
                db: None,
            },
        )
        .unwrap();
        assert_eq!(da_only, da[..la].to_vec(), "{label}: da without db");
        let mut db_only = pre_b.clone();
        cpu.concat_backward(
            &g,
            ConcatBackwardIo {
                dy: &probe,
                da: None,
                db: Some(&mut db_only),
            },
        )
        .unwrap();
        assert_eq!(db_only, db[..lb].to_vec(), "{label}: db without da");
    }
    assert!(ConcatGeom::new(2, 0, 3).is_err());
    assert!(ConcatGeom::new(0, 2, 3).is_err());
    // A buffer shorter than the geometry says is refused, not read past.
    let g = ConcatGeom::new(2, 3, 2).unwrap();
    let mut y = vec![0.0; 10];
    let e = cpu
        .concat_forward(
            &g,
            ConcatForwardIo {
                a: &vec![0.0; 6],
                b: &vec![0.0; 3],
                y: &mut y,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("concat b"), "{e}");
}

// ---- dropout -------------------------------------------------------------------------------------

#[test]
fn dropout_gradient_rate_and_determinism() {
    let cpu = Cpu::new();
    let len = 200_000;
    let x: Vec<f64> = vec![1.0; len];
    let forward = |p: &DropoutParams| {
        let mut y = vec![SENTINEL; len + TAIL];
        cpu.dropout_forward(p, &with_tail(&x, f64::NAN), &mut y)
            .unwrap();
        assert_tail("dropout y", &y, len);
        y.truncate(len);
        y
    };
    for rate in [0.1, 0.5, 0.9] {
        let p = DropoutParams::new(len, rate, 3, 10, 2).unwrap();
        let y = forward(&p);
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / len as f64;
        // Binomial: std of the fraction is sqrt(p(1−p)/len) ≤ 0.0012; allow 5 of them.
        assert!(
            (dropped - rate).abs() < 0.006,
            "rate {rate}: dropped {dropped}"
        );
        // Kept values are scaled by 1/(1−p): the expectation of y is x.
        let scale = 1.0 / (1.0 - rate);
        assert!(y.iter().all(|&v| v == 0.0 || (v - scale).abs() < 1e-6));
        // Same (seed, step, layer): same mask; any one changed: a different mask.
        assert_eq!(
            forward(&DropoutParams::new(len, rate, 3, 10, 2).unwrap()),
            y
        );
        for other in [
            DropoutParams::new(len, rate, 4, 10, 2).unwrap(),
            DropoutParams::new(len, rate, 3, 11, 2).unwrap(),
            DropoutParams::new(len, rate, 3, 10, 3).unwrap(),
        ] {
            let z = forward(&other);
            let differ = y
                .iter()
                .zip(&z)
                .filter(|(a, b)| (**a == 0.0) != (**b == 0.0))
                .count();
            // Independent masks disagree on 2p(1−p) of the elements.
            let want = 2.0 * rate * (1.0 - rate) * len as f64;
            assert!(
                (differ as f64 - want).abs() < 0.05 * want,
                "{other:?}: {differ} vs {want}"
            );
        }
    }
    // Evaluation: the identity, bit for bit.
    let mut r = rng(500);
    let v = uniform(&mut r, 1000, -1.0, 1.0);
    let id = DropoutParams::identity(1000).unwrap();
    let mut y = vec![0.0; 1000];
    cpu.dropout_forward(&id, &v, &mut y).unwrap();
    assert_eq!(y, v);
    assert!(DropoutParams::new(10, 1.0, 0, 0, 0).is_err());

    // Whole groups (samples) of 50 values: each kept or dropped together, at the rate.
    let p = DropoutParams::new(len, 0.3, 3, 10, 2)
        .and_then(|p| p.in_groups(50))
        .unwrap();
    let y = forward(&p);
    let groups: Vec<bool> = y.chunks(50).map(|g| g[0] == 0.0).collect();
    assert!(y
        .chunks(50)
        .all(|g| g.iter().all(|&v| (v == 0.0) == (g[0] == 0.0))));
    let dropped = groups.iter().filter(|&&d| d).count() as f64 / groups.len() as f64;
    // 4 000 groups: std of the fraction ≤ 0.008; allow 5 of them.
    assert!(
        (dropped - 0.3).abs() < 0.04,
        "whole groups dropped {dropped}"
    );
    assert!(DropoutParams::new(10, 0.5, 0, 0, 0)
        .and_then(|p| p.in_groups(3))
        .is_err());

    // Gradient: linear in x, so central differences are exact up to rounding.
    let n = 300;
    for group in [1, 10] {
        let p = DropoutParams::new(n, 0.4, 9, 1, 0)
            .and_then(|p| p.in_groups(group))
            .unwrap();
        let x = uniform(&mut r, n, -1.0, 1.0);
        let probe = uniform(&mut r, n, -1.0, 1.0);
        let prefill = uniform(&mut r, n, -2.0, 2.0);
        let mut dx = with_tail(&prefill, SENTINEL);
        cpu.dropout_backward(&p, &with_tail(&probe, f64::NAN), &mut dx)
            .unwrap();
        assert_tail("dropout dx", &dx, n);
        let num = numeric(&x, &(0..n).collect::<Vec<_>>(), H, |x| {
            let mut y = vec![0.0; n];
            cpu.dropout_forward(&p, &x.to_vec(), &mut y).unwrap();
            dot(&probe, &y)
        });
        let got: Vec<f64> = dx[..n].iter().zip(&prefill).map(|(a, b)| a - b).collect();
        compare(&format!("dropout dx, groups of {group}"), &got, &num);
    }
}

// ---- f32 against f64 -----------------------------------------------------------------------------

/// The f32 instantiation computes the same thing: every backward op of a conv + pool + shortcut +
/// dense chain agrees with f64 to f32 precision.
#[test]
fn f32_ops_agree_with_f64() {
    let (c32, c64) = (CpuBackend::<f32>::new(), Cpu::new());
    let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let close = |what: &str, a: &[f32], b: &[f64]| {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - y).abs())
            .fold(0.0, f64::max);
        // f32 sums of ≤ 300 terms of size ≤ 1: a few ulps of the scale.
        assert!(
            worst <= 1e-5 * scale.max(1.0),
            "{what}: f32 differs from f64 by {worst} (scale {scale})"
        );
    };
    let mut r = rng(5);
    let g = ConvGeom::new(Shape::new(3, 3, 12, 10), 4, (5, 5), 1, Padding::Same, true).unwrap();
    let (x, w, b) = (
        uniform(&mut r, g.input().len(), -1.0, 1.0),
        uniform(&mut r, g.weight_len(), -1.0, 1.0),
        uniform(&mut r, 4, -1.0, 1.0),
    );
    let (mut y64, mut y32) = (vec![0.0; g.output().len()], vec![0.0f32; g.output().len()]);
    c64.conv2d_forward(
        &g,
        ConvForwardIo {
            x: &x,
            w: &w,
            b: &b,
            y: &mut y64,
        },
    )
    .unwrap();
    c32.conv2d_forward(
        &g,
        ConvForwardIo {
            x: &to32(&x),
            w: &to32(&w),
            b: &to32(&b),
            y: &mut y32,
        },
    )
    .unwrap();
    close("conv y", &y32, &y64);
    let probe = uniform(&mut r, g.output().len(), -1.0, 1.0);
    let (mut dy64, mut dy32) = (probe.clone(), to32(&probe));
    let (mut dx64, mut dw64, mut db64) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; 4]);
    let (mut dx32, mut dw32, mut db32) = (
        vec![0.0f32; x.len()],
        vec![0.0f32; w.len()],
        vec![0.0f32; 4],
    );
    c64.conv2d_backward(
        &g,
        ConvBackwardIo {
            x: &x,
            w: &w,
            y: &y64,
            dy: &mut dy64,
            dx: InputGrad::Add(&mut dx64),
            dw: &mut dw64,
            db: Some(&mut db64),
        },
    )
    .unwrap();
    c32.conv2d_backward(
        &g,
        ConvBackwardIo {
            x: &to32(&x),
            w: &to32(&w),
            y: &y32,
            dy: &mut dy32,
            dx: InputGrad::Add(&mut dx32),
            dw: &mut dw32,
            db: Some(&mut db32),
        },
    )
    .unwrap();
    close("conv dx", &dx32, &dx64);
    close("conv dw", &dw32, &dw64);
    close("conv db", &db32, &db64);

    let pg = PoolGeom::new(g.output(), 2, 2).unwrap();
    let (mut p64, mut p32, mut a64, mut a32) = (
        vec![0.0; pg.output().len()],
        vec![0.0f32; pg.output().len()],
        vec![0; pg.output().len()],
        vec![0; pg.output().len()],
    );
    c64.maxpool_forward(&pg, &y64, &mut p64, &mut a64).unwrap();
    c32.maxpool_forward(&pg, &y32, &mut p32, &mut a32).unwrap();
    close("pool y", &p32, &p64);
    let sg = ShortcutGeom::new(g.input(), pg.output()).unwrap();
    c64.shortcut_forward(&sg, &x, &mut p64).unwrap();
    c32.shortcut_forward(&sg, &to32(&x), &mut p32).unwrap();
    close("shortcut", &p32, &p64);
    let dg = DenseGeom::new(3, pg.output().per_sample(), 5, false).unwrap();
    let (dw_, db_) = (
        uniform(&mut r, dg.weight_len(), -0.1, 0.1),
        uniform(&mut r, 5, -0.1, 0.1),
    );
    let (mut o64, mut o32) = (vec![0.0; 15], vec![0.0f32; 15]);
    c64.dense_forward(
        &dg,
        DenseForwardIo {
            x: &p64,
            w: &dw_,
            b: &db_,
            y: &mut o64,
        },
    )
    .unwrap();
    c32.dense_forward(
        &dg,
        DenseForwardIo {
            x: &p32,
            w: &to32(&dw_),
            b: &to32(&db_),
            y: &mut o32,
        },
    )
    .unwrap();
    close("dense y", &o32, &o64);
}
