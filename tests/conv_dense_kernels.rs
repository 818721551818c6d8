//! The conv2d and dense kernels (kernels/conv2d.cu, kernels/dense.cu) through the op contract, against
//! the CPU reference computing in f64 (so the named tolerances cover the device's f32 error alone). Each
//! body is written once and run on every kernel-running device by `backend_tests!` (tests/common): the
//! emulated device in both thread orders, and the CUDA device where there is one.
//!
//! Shapes are the awkward ones of the gradient checks (batch 1 and 3, odd and even non-square maps,
//! kernels 1, 3, 4, 5, 8, 10, stride 1 and 2, SAME / VALID / explicit asymmetric padding) plus sizes
//! that are not multiples of the 64 x 128 x 8 GEMM tile, channel counts that need two row tiles, and
//! problems big enough to take the split-K paths. Every gradient that ACCUMULATES starts from random
//! values, so a kernel that writes instead of adding fails.

#[macro_use]
mod common;

use common::check::{assert_close, Tolerance};
use common::Rng;
use rescnn::backends::cpu::CpuBackend;
use rescnn::backends::ops::conv2d::TOLERANCE as CONV2D;
use rescnn::backends::ops::dense::TOLERANCE as DENSE;
use rescnn::backends::{
    Backend, Conv2dOp, ConvBackwardIo, ConvForwardIo, ConvGeom, DenseBackwardIo, DenseForwardIo,
    DenseGeom, DenseOp, InputGrad, Padding,
};
use rescnn::model::RmsPropConfig;
use rescnn::model::{ArchSpec, InputShape, Network};
use rescnn::Shape;

backend_tests!(
    conv2d_matches_reference_stride_1,
    conv2d_matches_reference_stride_2,
    conv2d_matches_reference_with_multiple_tiles,
    gemms_match_reference_on_both_block_tiles,
    conv2d_matches_reference_with_cached_gather_tables,
    dense_matches_reference,
    dense_matches_reference_on_split_k_paths,
    training_steps_of_a_net_with_shortcuts_match_reference,
);

/// The convolution contract (accumulate dx, write dw and db, the `None` forms) on the CPU reference in
/// f32 too: the network's fused pool path runs its backward without db there as well.
#[test]
fn conv2d_contract_holds_on_the_cpu_reference() {
    conv2d_matches_reference_stride_1(&common::reference());
}

fn random(rng: &mut Rng, len: usize) -> Vec<f32> {
    rng.vec(len, -1.0, 1.0)
}

/// Weights with variance 1/fan_in, as a trained or He-initialised layer has: outputs stay O(1), so the
/// f32 rounding of a K-term dot product stays near √K·ε, which is what the named tolerances allow for
/// (unit-variance weights would make the partial sums, and so their rounding, √K times larger than
/// the result).
fn weights(rng: &mut Rng, len: usize, fan_in: usize) -> Vec<f32> {
    let scale = (3.0 / fan_in as f32).sqrt();
    rng.vec(len, -scale, scale)
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn check(tol: &Tolerance, what: String, got: &[f32], reference: &[f64]) {
    assert_close(tol, &what, got, reference);
}

/// Forward and backward of one convolution on `dev` and on the f64 reference; every output compared.
fn conv_case<B: Backend<Elem = f32>>(
    dev: &B,
    input: Shape,
    c_out: usize,
    k: (usize, usize),
    stride: usize,
    pad: Padding,
    relu: bool,
) {
    let g = ConvGeom::new(input, c_out, k, stride, pad, relu).unwrap();
    let what = format!(
        "conv {input} -> {c_out}x{}x{} s{stride} {pad:?} relu={relu} on {}",
        k.0,
        k.1,
        dev.name()
    );
    let reference = CpuBackend::<f64>::new();
    let mut rng = Rng::new(input.len() as u64 * 31 + c_out as u64);
    let x = random(&mut rng, g.input().len());
    let w = weights(&mut rng, g.weight_len(), g.weight_len() / c_out);
    let b = random(&mut rng, c_out);

    // Forward.
    let (dx_, dw_, db_) = (
        dev.upload(&x).unwrap(),
        dev.upload(&w).unwrap(),
        dev.upload(&b).unwrap(),
    );
    let mut y = dev.zeros(g.output().len()).unwrap();
    dev.conv2d_forward(
        &g,
        ConvForwardIo {
            x: &dx_,
            w: &dw_,
            b: &db_,
            y: &mut y,
        },
    )
    .unwrap();
    let (rx, rw, rb) = (widen(&x), widen(&w), widen(&b));
    let mut ry = reference.zeros(g.output().len()).unwrap();
    reference
        .conv2d_forward(
            &g,
            ConvForwardIo {
                x: &rx,
                w: &rw,
                b: &rb,
                y: &mut ry,
            },
        )
        .unwrap();
    let y_host = dev.download(&y).unwrap();
    check(&CONV2D, format!("{what}: y"), &y_host, &ry);

    // Backward from the device's own y on both sides, so both apply the same ReLU mask.
    let dy0 = random(&mut rng, g.output().len());
    let dx0 = random(&mut rng, g.input().len());
    let mut dy = dev.upload(&dy0).unwrap();
    let mut dx = dev.upload(&dx0).unwrap();
    let mut dw = dev.upload(&random(&mut rng, g.weight_len())).unwrap(); // written: garbage must vanish
    let mut db = dev.upload(&random(&mut rng, c_out)).unwrap();
    dev.conv2d_backward(
        &g,
        ConvBackwardIo {
            x: &dx_,
            w: &dw_,
            y: &y,
            dy: &mut dy,
            dx: InputGrad::Add(&mut dx),
            dw: &mut dw,
            db: Some(&mut db),
        },
    )
    .unwrap();

    let ry_dev = widen(&y_host);
    let mut rdy = widen(&dy0);
    let mut rdx = widen(&dx0);
    let mut rdw = reference.zeros(g.weight_len()).unwrap();
    let mut rdb = reference.zeros(c_out).unwrap();
    reference
        .conv2d_backward(
            &g,
            ConvBackwardIo {
                x: &rx,
                w: &rw,
                y: &ry_dev,
                dy: &mut rdy,
                dx: InputGrad::Add(&mut rdx),
                dw: &mut rdw,
                db: Some(&mut rdb),
            },
        )
        .unwrap();
    check(
        &CONV2D,
        format!("{what}: masked dy"),
        &dev.download(&dy).unwrap(),
        &rdy,
    );
    check(
        &CONV2D,
        format!("{what}: dx (accumulated)"),
        &dev.download(&dx).unwrap(),
        &rdx,
    );
    check(
        &CONV2D,
        format!("{what}: dw"),
        &dev.download(&dw).unwrap(),
        &rdw,
    );
    check(
        &CONV2D,
        format!("{what}: db"),
        &dev.download(&db).unwrap(),
        &rdb,
    );

    // The first layer passes no dx: the other gradients are the same.
    let mut dy = dev.upload(&dy0).unwrap();
    dev.conv2d_backward(
        &g,
        ConvBackwardIo {
            x: &dx_,
            w: &dw_,
            y: &y,
            dy: &mut dy,
            dx: InputGrad::None,
            dw: &mut dw,
            db: Some(&mut db),
        },
    )
    .unwrap();
    check(
        &CONV2D,
        format!("{what}: dw without dx"),
        &dev.download(&dw).unwrap(),
        &rdw,
    );

    // Without db, as after a fused pool backward (which wrote db and masked dy), and with dx
    // WRITTEN, as where the convolution is its input's only consumer: from the pre-activation
    // gradient with the ReLU off, dx (NaN garbage before) is the gradient alone, dw the same, db
    // untouched. With the ReLU on, no db is refused: the bias pass is what applies the mask.
    let masked: Vec<f32> = rdy.iter().map(|&v| v as f32).collect();
    let no_relu = ConvGeom { relu: 0, ..g };
    let garbage = vec![f32::NAN; g.input().len()];
    let (mut dy, mut dx) = (dev.upload(&masked).unwrap(), dev.upload(&garbage).unwrap());
    let db_before = dev.download(&db).unwrap();
    dev.conv2d_backward(
        &no_relu,
        ConvBackwardIo {
            x: &dx_,
            w: &dw_,
            y: &y,
            dy: &mut dy,
            dx: InputGrad::Write(&mut dx),
            dw: &mut dw,
            db: None,
        },
    )
    .unwrap();
    let (mut rdy, mut rdx) = (widen(&masked), widen(&garbage));
    reference
        .conv2d_backward(
            &no_relu,
            ConvBackwardIo {
                x: &rx,
                w: &rw,
                y: &ry_dev,
                dy: &mut rdy,
                dx: InputGrad::Write(&mut rdx),
                dw: &mut rdw,
                db: None,
            },
        )
        .unwrap();
    let (dx_h, dw_h) = (dev.download(&dx).unwrap(), dev.download(&dw).unwrap());
    check(
        &CONV2D,
        format!("{what}: dx written, without db"),
        &dx_h,
        &rdx,
    );
    check(&CONV2D, format!("{what}: dw without db"), &dw_h, &rdw);
    assert_eq!(
        dev.download(&db).unwrap(),
        db_before,
        "{what}: db was written"
    );
    if relu {
        let err = dev
            .conv2d_backward(
                &g,
                ConvBackwardIo {
                    x: &dx_,
                    w: &dw_,
                    y: &y,
                    dy: &mut dy,
                    dx: InputGrad::None,
                    dw: &mut dw,
                    db: None,
                },
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("ReLU must be off"), "{what}: {err}");
    }
}

fn explicit(top: usize, bottom: usize, left: usize, right: usize) -> Padding {
    Padding::Explicit {
        top,
        bottom,
        left,
        right,
    }
}

fn conv2d_matches_reference_stride_1<B: Backend<Elem = f32>>(dev: &B) {
    // odd non-square map, 3x3 SAME, batch 1
    conv_case(
        dev,
        Shape::new(1, 3, 9, 7),
        5,
        (3, 3),
        1,
        Padding::Same,
        true,
    );
    // the paper's 10x10 (SAME pads 4 before, 5 after), single channel, odd width
    conv_case(
        dev,
        Shape::new(1, 1, 12, 11),
        3,
        (10, 10),
        1,
        Padding::Same,
        false,
    );
    // 1x1 VALID
    conv_case(
        dev,
        Shape::new(2, 5, 6, 6),
        8,
        (1, 1),
        1,
        Padding::Valid,
        false,
    );
    // even 8x8 kernel larger than the map's width
    conv_case(
        dev,
        Shape::new(3, 2, 5, 4),
        3,
        (8, 8),
        1,
        Padding::Same,
        true,
    );
}

fn conv2d_matches_reference_stride_2<B: Backend<Elem = f32>>(dev: &B) {
    // even kernel with stride 2: SAME pads 1 before, 2 after
    conv_case(
        dev,
        Shape::new(3, 2, 8, 10),
        4,
        (4, 4),
        2,
        Padding::Same,
        true,
    );
    // 5x5, asymmetric explicit padding, odd map
    conv_case(
        dev,
        Shape::new(1, 3, 7, 9),
        4,
        (5, 5),
        2,
        explicit(1, 2, 0, 2),
        true,
    );
    // 3x3 VALID on an odd map: the last row and column are never read
    conv_case(
        dev,
        Shape::new(3, 2, 9, 7),
        2,
        (3, 3),
        2,
        Padding::Valid,
        false,
    );
}

/// Every GEMM kernel on both block tiles (gemm_tile.cuh's Rows<64> and Rows<32>, picked by
/// `Tile::for_rows` from M): M = 40 and 50 take the 64-row entry points, M = 20 and 24 the `_m32`
/// ones, with two row tiles each where M allows, at stride 1 and 2 (the strided backward-data kernel).
fn gemms_match_reference_on_both_block_tiles<B: Backend<Elem = f32>>(dev: &B) {
    use rescnn::backends::kernels::gemm::Tile;
    for (m, tile) in [
        (40, Tile::Rows64),
        (50, Tile::Rows64),
        (20, Tile::Rows32),
        (24, Tile::Rows32),
        (70, Tile::Rows32),
    ] {
        assert_eq!(
            Tile::for_rows(m),
            tile,
            "the shapes below are chosen for this rule: M = {m}"
        );
    }
    for (c_in, c_out) in [(40, 40), (24, 20)] {
        for stride in [1, 2] {
            conv_case(
                dev,
                Shape::new(2, c_in, 7, 6),
                c_out,
                (3, 3),
                stride,
                Padding::Same,
                true,
            );
        }
    }
    // forward and dx: M = N (batch); dw: M = OUT
    dense_case(dev, 50, 36, 40, true);
    dense_case(dev, 20, 36, 24, true);
    // ... and on the split-K paths
    dense_case(dev, 24, 700, 20, false);
}

fn conv2d_matches_reference_with_multiple_tiles<B: Backend<Elem = f32>>(dev: &B) {
    // 70 filters = three 32-row tiles of the forward and filter GEMMs
    conv_case(
        dev,
        Shape::new(1, 3, 6, 5),
        70,
        (3, 3),
        1,
        Padding::Same,
        true,
    );
    // 65 input channels = two 64-row tiles of the backward-data GEMM; 65·16 filter columns = 9 tiles
    conv_case(
        dev,
        Shape::new(1, 65, 5, 4),
        3,
        (4, 4),
        1,
        Padding::Same,
        true,
    );
    // non-square kernel, VALID, 3 x 20 x 18 = 1080 pixels: 9 column tiles (not a multiple of 128)
    // and a filter gradient split over 4 pixel chunks
    conv_case(
        dev,
        Shape::new(3, 4, 20, 18),
        6,
        (3, 2),
        1,
        Padding::Valid,
        true,
    );
    // the paper's conv3/conv4 layer (64 -> 64, 10x10, K = 6400: 800 K steps) on a small odd map
    conv_case(
        dev,
        Shape::new(2, 64, 9, 11),
        64,
        (10, 10),
        1,
        Padding::Same,
        true,
    );
}

/// Forward and backward of one dense layer on `dev` and on the f64 reference.
fn dense_case<B: Backend<Elem = f32>>(dev: &B, n: usize, inp: usize, out: usize, relu: bool) {
    let g = DenseGeom::new(n, inp, out, relu).unwrap();
    let what = format!("dense {n} x {inp} -> {out} relu={relu} on {}", dev.name());
    let reference = CpuBackend::<f64>::new();
    let mut rng = Rng::new((n * 1000 + inp * 10 + out) as u64);
    let x = random(&mut rng, n * inp);
    let w = weights(&mut rng, inp * out, inp);
    let b = random(&mut rng, out);
    let (dx_, dw_, db_) = (
        dev.upload(&x).unwrap(),
        dev.upload(&w).unwrap(),
        dev.upload(&b).unwrap(),
    );
    let mut y = dev.zeros(n * out).unwrap();
    dev.dense_forward(
        &g,
        DenseForwardIo {
            x: &dx_,
            w: &dw_,
            b: &db_,
            y: &mut y,
        },
    )
    .unwrap();
    let (rx, rw, rb) = (widen(&x), widen(&w), widen(&b));
    let mut ry = reference.zeros(n * out).unwrap();
    reference
        .dense_forward(
            &g,
            DenseForwardIo {
                x: &rx,
                w: &rw,
                b: &rb,
                y: &mut ry,
            },
        )
        .unwrap();
    let y_host = dev.download(&y).unwrap();
    check(&DENSE, format!("{what}: y"), &y_host, &ry);

    let dy0 = random(&mut rng, n * out);
    let dx0 = random(&mut rng, n * inp);
    let mut dy = dev.upload(&dy0).unwrap();
    let mut dx = dev.upload(&dx0).unwrap();
    let mut dw = dev.upload(&random(&mut rng, inp * out)).unwrap();
    let mut db = dev.upload(&random(&mut rng, out)).unwrap();
    dev.dense_backward(
        &g,
        DenseBackwardIo {
            x: &dx_,
            w: &dw_,
            y: &y,
            dy: &mut dy,
            dx: Some(&mut dx),
            dw: &mut dw,
            db: &mut db,
        },
    )
    .unwrap();
    let ry_dev = widen(&y_host);
    let mut rdy = widen(&dy0);
    let mut rdx = widen(&dx0);
    let mut rdw = reference.zeros(inp * out).unwrap();
    let mut rdb = reference.zeros(out).unwrap();
    reference
        .dense_backward(
            &g,
            DenseBackwardIo {
                x: &rx,
                w: &rw,
                y: &ry_dev,
                dy: &mut rdy,
                dx: Some(&mut rdx),
                dw: &mut rdw,
                db: &mut rdb,
            },
        )
        .unwrap();
    check(
        &DENSE,
        format!("{what}: masked dy"),
        &dev.download(&dy).unwrap(),
        &rdy,
    );
    check(
        &DENSE,
        format!("{what}: dx (accumulated)"),
        &dev.download(&dx).unwrap(),
        &rdx,
    );
    check(
        &DENSE,
        format!("{what}: dw"),
        &dev.download(&dw).unwrap(),
        &rdw,
    );
    check(
        &DENSE,
        format!("{what}: db"),
        &dev.download(&db).unwrap(),
        &rdb,
    );
}

fn dense_matches_reference<B: Backend<Elem = f32>>(dev: &B) {
    dense_case(dev, 1, 5, 3, true); // smaller than every tile; scalar loads (5, 3 not multiples of 4)
    dense_case(dev, 3, 13, 7, false);
    dense_case(dev, 67, 64, 36, true); // float4 loads, two row tiles
}

/// The kernel backends cache the gathers' K tables per shape and direction (not per batch): one
/// backend runs shapes that share channels and window but differ in plane size, and a shape again at
/// another batch, so a table reused where it does not belong shows as a wrong y or dx.
fn conv2d_matches_reference_with_cached_gather_tables<B: Backend<Elem = f32>>(dev: &B) {
    let same = Padding::Same;
    conv_case(dev, Shape::new(3, 4, 9, 12), 5, (3, 3), 1, same, true);
    conv_case(dev, Shape::new(3, 4, 9, 13), 5, (3, 3), 1, same, true); // wider plane
    conv_case(dev, Shape::new(3, 4, 10, 12), 5, (3, 3), 1, same, true); // taller plane
    conv_case(dev, Shape::new(1, 4, 9, 12), 5, (3, 3), 1, same, true); // the first, batch 1
    conv_case(dev, Shape::new(3, 5, 9, 12), 4, (3, 3), 1, same, true); // channels swapped
    conv_case(dev, Shape::new(3, 4, 9, 12), 5, (3, 3), 2, same, false); // strided: other out plane
    conv_case(dev, Shape::new(3, 4, 9, 12), 5, (3, 3), 1, same, true); // the first again
}

fn dense_matches_reference_on_split_k_paths<B: Backend<Elem = f32>>(dev: &B) {
    dense_case(dev, 50, 300, 130, true); // forward split-K (2 chunks), float4 along IN only
    dense_case(dev, 4, 10, 600, true); // dx split-K (3 chunks, accumulating reduction)
    dense_case(dev, 600, 6, 5, false); // dw split-K over the batch (3 chunks), 10 row tiles
    dense_case(dev, 5, 2100, 40, true); // FC1-like: tiny batch, long K (forward in 9 chunks)
}

/// A whole training step compounds every op's rounding; RMSProp's update lr·g/√(r + ε) has slope at
/// most lr/√ε ≈ 3.2 in g, so a gradient difference δ moves a weight by at most about 3δ.
const TRAIN_STEP: Tolerance = Tolerance {
    name: "train_step",
    atol: 2e-5,
    rtol: 1e-4,
    reason: "f32 rounding of every conv/dense/pool/shortcut/softmax op (sums in another order) compounded through forward, backward and RMSProp updates whose slope in the gradient is ≤ lr/√ε ≈ 3",
};

/// Two training steps (forward, loss, backward, RMSProp) of a small net with shortcuts into every
/// level, on `dev` and on the CPU reference (f32, the same initial weights): losses and updated
/// weights agree.
fn training_steps_of_a_net_with_shortcuts_match_reference<B: Backend<Elem = f32>>(dev: &B) {
    let spec = ArchSpec::parse("c3k3 p2 +0 c4k4 p2 +1 +0 c4k5 p2 +2 +0 fc6 fc5").unwrap();
    let input = InputShape::new(3, 16, 24);
    let (n, classes) = (3, 4);
    let cpu = CpuBackend::<f32>::new();
    let mut rng = Rng::new(7);
    let mut on_dev = Network::new(dev, &spec, input, classes, n, 3).unwrap();
    let mut on_cpu = Network::new(&cpu, &spec, input, classes, n, 3).unwrap();
    let cfg = RmsPropConfig::default();
    for step in 0..2 {
        let images = rng.vec(n * input.len(), 0.0, 1.0);
        let labels: Vec<u32> = (0..n as u32).map(|i| (i + step) % classes as u32).collect();
        let got = on_dev.train_step(dev, &images, &labels, &cfg).unwrap();
        let want = on_cpu.train_step(&cpu, &images, &labels, &cfg).unwrap();
        assert_close(
            &TRAIN_STEP,
            &format!("step {step} mean loss on {}", dev.name()),
            &[got.mean_loss],
            &[want.mean_loss],
        );
        assert_eq!(got.correct, want.correct, "step {step}: correct count");
    }
    let got = on_dev.export_params(dev).unwrap();
    let want = on_cpu.export_params(&cpu).unwrap();
    assert_eq!(got.len(), 12, "6 layers with weight and bias");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.name, w.name);
        let reference: Vec<f64> = w.data.iter().map(|&v| v as f64).collect();
        assert_close(
            &TRAIN_STEP,
            &format!("{} after 2 steps on {}", g.name, dev.name()),
            &g.data,
            &reference,
        );
    }
}
