//! A spec laid out for one input size: every layer's geometry, the activation it reads and writes,
//! and its parameters. Backend-free, so `summary`, parameter counts and FLOP counts are available
//! without building a network.

use std::fmt::Write as _;

use super::layer::{PlannedLayer, PlannedOp};
use super::schedule::BackwardSchedule;
use super::spec::{ArchSpec, LayerSpec};
use crate::backends::{
    BatchNormGeom, ConcatGeom, ConvGeom, DenseGeom, Padding, PoolGeom, ShortcutGeom, StatsPoolGeom,
};
use crate::tensor::Shape;
use crate::{config_err, Result};

/// Batch norm's eps (added to the variance under the square root), as in PyTorch and Keras.
pub const BATCHNORM_EPS: f64 = 1e-5;
/// Batch norm's running-average momentum: running ← 0.9 · running + 0.1 · batch statistic.
pub const BATCHNORM_MOMENTUM: f64 = 0.1;
/// Statistics pooling's eps under the standard deviation's square root: keeps its gradient finite
/// for a channel that is constant over time, and is far below the variance of any live feature.
pub const STATSPOOL_EPS: f64 = 1e-5;

/// The network input: one spectrogram image, C×H×W (C = 1 gray or 3 RGB), and the length of the
/// side input per sample (the utterance vector a `vec` layer appends; 0 when there is none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub side: usize,
}

impl InputShape {
    pub const fn new(channels: usize, height: usize, width: usize) -> Self {
        InputShape {
            channels,
            height,
            width,
            side: 0,
        }
    }
    /// The same image with a side input of `side` values per sample.
    pub const fn with_side(self, side: usize) -> Self {
        InputShape { side, ..self }
    }
    /// Values of one image (the side input not counted).
    pub const fn len(&self) -> usize {
        self.channels * self.height * self.width
    }
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A spec laid out for an input size and a number of classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub spec: ArchSpec,
    pub input: InputShape,
    pub classes: usize,
    /// Per-sample shape (n = 1) of every activation node; node 0 is the input, the last the logits.
    pub nodes: Vec<Shape>,
    pub layers: Vec<PlannedLayer>,
    /// The node the side input (N, `input.side`) is written into, for a spec with `vec`.
    pub side_input: Option<usize>,
    /// Derived from the fields above once, when the plan is built.
    schedule: BackwardSchedule,
}

impl Plan {
    /// Lay `spec` out for `input` images and `classes` classes. Errors name the spec token whose
    /// shapes do not work: a pool whose window is larger than what reaches it, a shortcut whose
    /// source and target sizes do not divide.
    pub fn new(spec: &ArchSpec, input: InputShape, classes: usize) -> Result<Self> {
        if input.is_empty() {
            return Err(config_err!("the network input {input:?} is empty"));
        }
        if classes < 2 {
            return Err(config_err!(
                "a classifier needs at least 2 classes, got {classes}"
            ));
        }
        let mut nodes = vec![Shape::new(1, input.channels, input.height, input.width)];
        let mut taps = vec![0usize];
        let mut layers = Vec::new();
        let mut side_input = None;
        let (mut convs, mut pools, mut fcs, mut bns, mut drops) = (0, 0, 0, 0, 0);
        let describe = |s: Shape| format!("{}×{}×{}", s.c, s.h, s.w);
        for (i, &l) in spec.layers().iter().enumerate() {
            let cur = nodes.len() - 1;
            let shape = nodes[cur];
            let (name, op) = match l {
                LayerSpec::Conv {
                    filters,
                    kernel,
                    stride,
                } => {
                    // A batch norm after the convolution applies the ReLU instead.
                    let relu = spec.layers().get(i + 1) != Some(&LayerSpec::BatchNorm);
                    let geom = ConvGeom::new(
                        shape,
                        filters,
                        (kernel, kernel),
                        stride,
                        Padding::Same,
                        relu,
                    )
                    .map_err(|e| spec.layer_error(i, &e.to_string()))?;
                    nodes.push(geom.output());
                    convs += 1;
                    (
                        format!("conv{convs}"),
                        PlannedOp::Conv {
                            geom,
                            input: cur,
                            output: cur + 1,
                        },
                    )
                }
                LayerSpec::Pool { window, stride } => {
                    if shape.h < window || shape.w < window {
                        return Err(spec.layer_error(
                            i,
                            &format!(
                                "pool {} gets a {}×{} map, smaller than its {window}×{window} window: the input {}×{} is too small for this network",
                                pools + 1,
                                shape.h,
                                shape.w,
                                input.height,
                                input.width
                            ),
                        ));
                    }
                    let geom = PoolGeom::new(shape, window, stride)
                        .map_err(|e| spec.layer_error(i, &e.to_string()))?;
                    nodes.push(geom.output());
                    pools += 1;
                    taps.push(cur + 1);
                    (
                        format!("pool{pools}"),
                        PlannedOp::Pool {
                            geom,
                            input: cur,
                            output: cur + 1,
                        },
                    )
                }
                LayerSpec::Shortcut { tap } => {
                    // The parser guarantees the tap exists and the shortcut follows a pool.
                    let source = taps[tap];
                    let src = nodes[source];
                    let geom = ShortcutGeom::new(src, shape).map_err(|_| {
                        spec.layer_error(
                            i,
                            &format!(
                                "the shortcut from tap {tap} ({}) into the output of pool {pools} ({}) needs the source's height and width to be the same whole multiple of the target's",
                                describe(src),
                                describe(shape)
                            ),
                        )
                    })?;
                    (
                        format!("shortcut {tap}→pool{pools}"),
                        PlannedOp::Shortcut {
                            geom,
                            tap,
                            source,
                            target: cur,
                        },
                    )
                }
                LayerSpec::BatchNorm => {
                    let geom = BatchNormGeom::new(shape, true, BATCHNORM_EPS, BATCHNORM_MOMENTUM)
                        .map_err(|e| spec.layer_error(i, &e.to_string()))?;
                    nodes.push(shape);
                    bns += 1;
                    (
                        format!("bn{bns}"),
                        PlannedOp::BatchNorm {
                            geom,
                            input: cur,
                            output: cur + 1,
                        },
                    )
                }
                LayerSpec::StatsPool => {
                    let geom = StatsPoolGeom::new(shape, STATSPOOL_EPS)
                        .map_err(|e| spec.layer_error(i, &e.to_string()))?;
                    nodes.push(Shape::flat(1, 2 * shape.c));
                    (
                        "stats".to_string(),
                        PlannedOp::StatsPool {
                            geom,
                            input: cur,
                            output: cur + 1,
                        },
                    )
                }
                LayerSpec::Dropout { rate } => {
                    nodes.push(shape);
                    drops += 1;
                    (
                        format!("dropout{drops}"),
                        PlannedOp::Dropout {
                            rate,
                            per_sample: shape.per_sample(),
                            whole_samples: false,
                            input: cur,
                            output: cur + 1,
                        },
                    )
                }
                LayerSpec::SideInput {
                    rate,
                    whole,
                    project,
                } => {
                    if input.side == 0 {
                        return Err(spec.layer_error(
                            i,
                            "this network appends the utterance vector, so it needs a side input: lay it out for one (InputShape::with_side; the trainer does from --prosody-set)",
                        ));
                    }
                    let node = nodes.len();
                    nodes.push(Shape::flat(1, input.side));
                    side_input = Some(node);
                    let mut side = node;
                    let vector_drops = [
                        ("vec.whole_dropout", whole, true),
                        ("vec.dropout", rate, false),
                    ];
                    for (name, rate, whole_samples) in
                        vector_drops.into_iter().filter(|d| d.1 > 0.0)
                    {
                        nodes.push(Shape::flat(1, input.side));
                        layers.push(PlannedLayer {
                            name: name.into(),
                            op: PlannedOp::Dropout {
                                rate,
                                per_sample: input.side,
                                whole_samples,
                                input: side,
                                output: side + 1,
                            },
                            token: Some(i),
                        });
                        side += 1;
                    }
                    if let Some(units) = project {
                        let geom = DenseGeom::new(1, input.side, units, true)
                            .map_err(|e| spec.layer_error(i, &e.to_string()))?;
                        nodes.push(Shape::flat(1, units));
                        layers.push(PlannedLayer {
                            name: "vec.fc".into(),
                            op: PlannedOp::Dense {
                                geom,
                                input: side,
                                output: side + 1,
                            },
                            token: Some(i),
                        });
                        side += 1;
                    }
                    let geom = ConcatGeom::new(1, shape.per_sample(), nodes[side].per_sample())
                        .map_err(|e| spec.layer_error(i, &e.to_string()))?;
                    nodes.push(Shape::flat(1, geom.row()));
                    (
                        "vec".to_string(),
                        PlannedOp::Concat {
                            geom,
                            input: cur,
                            side,
                            output: nodes.len() - 1,
                        },
                    )
                }
                LayerSpec::Dense { units } => {
                    let geom = DenseGeom::new(1, shape.per_sample(), units, true)
                        .map_err(|e| spec.layer_error(i, &e.to_string()))?;
                    nodes.push(Shape::flat(1, units));
                    fcs += 1;
                    (
                        format!("fc{fcs}"),
                        PlannedOp::Dense {
                            geom,
                            input: cur,
                            output: cur + 1,
                        },
                    )
                }
            };
            layers.push(PlannedLayer {
                name,
                op,
                token: Some(i),
            });
        }
        let cur = nodes.len() - 1;
        let geom = DenseGeom::new(1, nodes[cur].per_sample(), classes, false)?;
        nodes.push(Shape::flat(1, classes));
        layers.push(PlannedLayer {
            name: "classifier".into(),
            op: PlannedOp::Dense {
                geom,
                input: cur,
                output: cur + 1,
            },
            token: None,
        });
        let schedule = BackwardSchedule::new(&layers, nodes.len());
        Ok(Plan {
            spec: spec.clone(),
            input,
            classes,
            nodes,
            layers,
            side_input,
            schedule,
        })
    }

    /// The backward pass's schedule: fused pools, written gradients (see [`BackwardSchedule`]).
    pub fn schedule(&self) -> &BackwardSchedule {
        &self.schedule
    }

    /// Number of trainable parameters.
    pub fn param_count(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| l.params())
            .map(|(_, d)| d.iter().product::<usize>())
            .sum()
    }

    /// Whether the backward pass computes node `node`'s gradient: not for the network's inputs (the
    /// image, node 0, and the side input a `vec` layer appends), which nothing upstream needs.
    pub fn needs_gradient(&self, node: usize) -> bool {
        node != 0 && Some(node) != self.side_input
    }

    /// Node holding the logits.
    pub fn logits_node(&self) -> usize {
        self.nodes.len() - 1
    }

    /// FLOPs of one forward pass of one image (convolutions and dense layers; 2 per multiply-add).
    pub fn forward_flops(&self) -> f64 {
        self.layers
            .iter()
            .map(|l| match l.op {
                PlannedOp::Conv { geom, .. } => geom.forward_flops(),
                PlannedOp::Dense { geom, .. } => 2.0 * geom.weight_len() as f64,
                _ => 0.0,
            })
            .sum()
    }

    /// FLOPs of one training step per image: forward, the weight gradient (same count), and the
    /// input gradient (same count) for every layer except one reading the network input.
    pub fn train_flops(&self) -> f64 {
        self.layers
            .iter()
            .map(|l| {
                let (f, input) = match l.op {
                    PlannedOp::Conv { geom, input, .. } => (geom.forward_flops(), input),
                    PlannedOp::Dense { geom, input, .. } => (2.0 * geom.weight_len() as f64, input),
                    _ => return 0.0,
                };
                f * if input == 0 { 2.0 } else { 3.0 }
            })
            .sum()
    }

    /// A human-readable table: layer, output shape (C×H×W per image), parameters.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let shape = |s: Shape| {
            if s.h == 1 && s.w == 1 {
                format!("{}", s.c)
            } else {
                format!("{}×{}×{}", s.c, s.h, s.w)
            }
        };
        let tokens: Vec<&str> = self.spec.text().split_whitespace().collect();
        let _ = writeln!(
            out,
            "{:<22} {:<8} {:>14} {:>12}",
            "layer", "spec", "output", "params"
        );
        let _ = writeln!(
            out,
            "{:<22} {:<8} {:>14} {:>12}",
            "input",
            "",
            shape(self.nodes[0]),
            0
        );
        for l in &self.layers {
            let tok = l.token.map_or("", |t| tokens[t]);
            let params: usize = l
                .params()
                .iter()
                .map(|(_, d)| d.iter().product::<usize>())
                .sum();
            let (node, extra) = match l.op {
                PlannedOp::Conv { output, .. }
                | PlannedOp::Pool { output, .. }
                | PlannedOp::Dense { output, .. }
                | PlannedOp::BatchNorm { output, .. }
                | PlannedOp::StatsPool { output, .. }
                | PlannedOp::Dropout { output, .. } => (output, String::new()),
                PlannedOp::Concat { geom, output, .. } => (
                    output,
                    format!(
                        "  ({} features + {} from the utterance vector)",
                        geom.a, geom.b
                    ),
                ),
                PlannedOp::Shortcut {
                    geom, tap, target, ..
                } => (
                    target,
                    format!(
                        "  (adds tap {tap} {}: {r}×{r} mean, channels tiled)",
                        shape(geom.source()),
                        r = geom.ratio
                    ),
                ),
            };
            let _ = writeln!(
                out,
                "{:<22} {:<8} {:>14} {:>12}{extra}",
                l.name,
                tok,
                shape(self.nodes[node]),
                group_digits(params)
            );
        }
        let _ = writeln!(
            out,
            "total parameters: {}",
            group_digits(self.param_count())
        );
        let _ = write!(
            out,
            "forward: {:.3} GFLOP per image, training step: {:.3} GFLOP per image",
            self.forward_flops() / 1e9,
            self.train_flops() / 1e9
        );
        out
    }
}

fn group_digits(v: usize) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(spec: &str, input: InputShape) -> Result<Plan> {
        Plan::new(&ArchSpec::parse(spec)?, input, 7)
    }

    #[test]
    fn paper_net_shapes_and_parameter_count() {
        let p = plan(
            "c32k4 p2 +0 c64k8 p2 +0 c64k10 p2 +0 c64k10 p2 fc716 fc716",
            InputShape::new(3, 512, 512),
        )
        .unwrap();
        // conv 3→32 (4×4), 32→64 (8×8), 64→64 (10×10) twice; 512 / 2⁴ = 32; fc 64·32·32 → 716 → 716 → 7.
        let want = (32 * 3 * 16 + 32)
            + (64 * 32 * 64 + 64)
            + 2 * (64 * 64 * 100 + 64)
            + (716 * 65536 + 716)
            + (716 * 716 + 716)
            + (7 * 716 + 7);
        assert_eq!(p.param_count(), want);
        assert_eq!(p.nodes[p.logits_node()], Shape::flat(1, 7));
        let shortcut = p
            .layers
            .iter()
            .find(|l| l.name == "shortcut 0→pool3")
            .unwrap();
        match shortcut.op {
            PlannedOp::Shortcut { geom, source, .. } => {
                assert_eq!((geom.ratio, geom.c_src, geom.c_dst, source), (8, 3, 64, 0));
            }
            _ => panic!("not a shortcut"),
        }
        let s = p.summary();
        assert!(
            s.contains("conv1") && s.contains("32×512×512") && s.contains("classifier"),
            "{s}"
        );
        assert!(s.contains(&group_digits(want)), "{s}");
    }

    #[test]
    fn stats_pooling_makes_the_dense_input_2c_at_any_width() {
        for width in [16, 40, 200] {
            let p = plan(
                "c8k3 bn p2 +0 c12k3 bn stats drop0.3 fc5",
                InputShape::new(1, 8, width),
            )
            .unwrap();
            let conv1 = &p.layers[0];
            match (conv1.op, p.layers[1].op) {
                (PlannedOp::Conv { geom, .. }, PlannedOp::BatchNorm { geom: bn, .. }) => {
                    assert_eq!(
                        (geom.relu, bn.relu, bn.c),
                        (0, 1, 8),
                        "conv leaves the ReLU to bn"
                    );
                }
                other => panic!("{other:?}"),
            }
            let fc = p.layers.iter().find(|l| l.name == "fc1").unwrap();
            assert!(
                matches!(fc.op, PlannedOp::Dense { geom, .. } if geom.in_features == 24),
                "{width}: {:?}",
                fc.op
            );
            assert_eq!(
                fc.params(),
                vec![
                    ("fc1.weight".into(), vec![5, 24]),
                    ("fc1.bias".into(), vec![5])
                ]
            );
            assert_eq!(
                p.layers[1].state(),
                vec![
                    ("bn1.running_mean".into(), vec![8]),
                    ("bn1.running_var".into(), vec![8])
                ]
            );
        }
        let s = plan("c8k3 bn stats fc5", InputShape::new(1, 8, 16))
            .unwrap()
            .summary();
        assert!(
            s.contains("bn1") && s.contains("stats") && s.contains(" 16 "),
            "{s}"
        );
    }

    #[test]
    fn vec_appends_the_side_input_after_its_dropout_and_projection() {
        let input = InputShape::new(1, 8, 16).with_side(30);
        let p = plan("c8k3 bn stats drop0.3 vec0.5fc6 fc5", input).unwrap();
        // Nodes: input, conv, bn, stats (16), dropout, side (30), its dropout, its projection (6),
        // the concatenation (16 + 6), fc1, logits.
        let side = p.side_input.unwrap();
        assert_eq!(p.nodes[side], Shape::flat(1, 30));
        let names: Vec<&str> = p.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv1",
                "bn1",
                "stats",
                "dropout1",
                "vec.dropout",
                "vec.fc",
                "vec",
                "fc1",
                "classifier"
            ]
        );
        match (p.layers[4].op, p.layers[5].op, p.layers[6].op) {
            (
                PlannedOp::Dropout {
                    rate,
                    per_sample: 30,
                    whole_samples: false,
                    input: d_in,
                    output: d_out,
                },
                PlannedOp::Dense {
                    geom,
                    input: f_in,
                    output: f_out,
                },
                PlannedOp::Concat {
                    geom: cat,
                    input: features,
                    side: appended,
                    output,
                },
            ) => {
                assert_eq!((rate, d_in, f_in), (0.5, side, d_out));
                assert_eq!((geom.in_features, geom.out_features, geom.relu), (30, 6, 1));
                assert_eq!((cat.a, cat.b, appended), (16, 6, f_out));
                assert_eq!(features, 4, "the features are the dropout after stats");
                assert_eq!(p.nodes[output], Shape::flat(1, 22));
            }
            other => panic!("{other:?}"),
        }
        let fc1 = &p.layers[7];
        assert_eq!(fc1.params()[0].1, vec![5, 22]);
        assert_eq!(
            p.layers[5].params(),
            vec![
                ("vec.fc.weight".into(), vec![6, 30]),
                ("vec.fc.bias".into(), vec![6])
            ]
        );
        // Without dropout or projection the raw side input is appended.
        let p = plan("c8k3 p2 vec fc5", input).unwrap();
        match p.layers.iter().find(|l| l.name == "vec").unwrap().op {
            PlannedOp::Concat { geom, side, .. } => {
                assert_eq!((geom.a, geom.b, Some(side)), (8 * 4 * 8, 30, p.side_input));
            }
            other => panic!("{other:?}"),
        }
        let s = p.summary();
        assert!(
            s.contains("256 features + 30 from the utterance vector"),
            "{s}"
        );
        // A spec without vec ignores the side width; one with vec needs it.
        assert_eq!(plan("c8k3 stats fc5", input).unwrap().side_input, None);
        let e = plan("c8k3 stats vec fc5", InputShape::new(1, 8, 16))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("token 3 `vec`") && e.contains("side input"),
            "{e}"
        );
    }

    #[test]
    fn shape_errors_point_at_the_token() {
        let e = plan("c8k3 p2 c8k3 p2 c8k3 p2", InputShape::new(1, 6, 6))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("token 6 `p2`") && e.contains("pool 3 gets a 1×1 map"),
            "{e}"
        );
        let e = plan("c8k3 p3 +0 fc4", InputShape::new(3, 10, 10))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("token 3 `+0`") && e.contains("(3×10×10)") && e.contains("(8×3×3)"),
            "{e}"
        );
        // 30×20 → 15×10 → 7×5 (floor): 30/7 is not whole.
        let e = plan("c4k3 p2 c4k3 p2 +0", InputShape::new(1, 30, 20))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("token 5 `+0`") && e.contains("(1×30×20)") && e.contains("(4×7×5)"),
            "{e}"
        );
    }
}
