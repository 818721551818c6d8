//! One layer of a [`Plan`](super::Plan): what it does, the nodes it reads and writes, and the
//! names and shapes of its parameters and state.

use crate::backends::{
    BatchNormGeom, ConcatGeom, ConvGeom, DenseGeom, PoolGeom, ShortcutGeom, StatsPoolGeom,
};

/// What a planned layer does. Activations are numbered nodes: node 0 is the input, every conv, pool
/// and dense layer writes a new node, and a shortcut adds into an existing one. Geometries are for a
/// batch of one; the network rescales them with `with_batch`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PlannedOp {
    Conv {
        geom: ConvGeom,
        input: usize,
        output: usize,
    },
    Pool {
        geom: PoolGeom,
        input: usize,
        output: usize,
    },
    /// Adds node `source` (tap `tap`) into node `target` in place.
    Shortcut {
        geom: ShortcutGeom,
        tap: usize,
        source: usize,
        target: usize,
    },
    Dense {
        geom: DenseGeom,
        input: usize,
        output: usize,
    },
    /// Batch norm (with ReLU) of the convolution output `input`.
    BatchNorm {
        geom: BatchNormGeom,
        input: usize,
        output: usize,
    },
    StatsPool {
        geom: StatsPoolGeom,
        input: usize,
        output: usize,
    },
    /// Dropout of `rate` over the `per_sample` values of node `input` of each sample: each value
    /// drawn on its own (inverted dropout), or with `whole_samples` each sample's values all kept,
    /// unscaled, or all dropped.
    Dropout {
        rate: f64,
        per_sample: usize,
        whole_samples: bool,
        input: usize,
        output: usize,
    },
    /// Node `input` (N, A) followed by node `side` (N, B): the features with the side input
    /// (possibly dropped out and projected) appended.
    Concat {
        geom: ConcatGeom,
        input: usize,
        side: usize,
        output: usize,
    },
}

/// One layer of a [`Plan`](super::Plan).
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedLayer {
    /// e.g. "conv2", "pool1", "shortcut 0→pool3", "fc1", "classifier".
    pub name: String,
    pub op: PlannedOp,
    /// The spec token it came from (0-based; `None` for the implicit classifier).
    pub token: Option<usize>,
}

impl PlannedLayer {
    /// Names and shapes of this layer's parameters (weight, then bias), empty for parameter-free ops.
    pub fn params(&self) -> Vec<(String, Vec<usize>)> {
        if let PlannedOp::BatchNorm { geom, .. } = self.op {
            let c = vec![geom.c as usize];
            return vec![
                (format!("{}.gamma", self.name), c.clone()),
                (format!("{}.beta", self.name), c),
            ];
        }
        let (w, b) = match self.op {
            PlannedOp::Conv { geom: g, .. } => (
                vec![
                    g.c_out as usize,
                    g.c_in as usize,
                    g.k_h as usize,
                    g.k_w as usize,
                ],
                g.c_out as usize,
            ),
            PlannedOp::Dense { geom: g, .. } => (
                vec![g.out_features as usize, g.in_features as usize],
                g.out_features as usize,
            ),
            _ => return Vec::new(),
        };
        vec![
            (format!("{}.weight", self.name), w),
            (format!("{}.bias", self.name), vec![b]),
        ]
    }
    /// Names and shapes of this layer's non-trained state (batch norm's running mean and variance),
    /// saved in checkpoints beside the parameters.
    pub fn state(&self) -> Vec<(String, Vec<usize>)> {
        match self.op {
            PlannedOp::BatchNorm { geom, .. } => vec![
                (format!("{}.running_mean", self.name), vec![geom.c as usize]),
                (format!("{}.running_var", self.name), vec![geom.c as usize]),
            ],
            _ => Vec::new(),
        }
    }
    /// The nodes this layer reads (a shortcut: its source; a concatenation: its features, then its
    /// side part).
    pub fn inputs(&self) -> Vec<usize> {
        match self.op {
            PlannedOp::Conv { input, .. }
            | PlannedOp::Pool { input, .. }
            | PlannedOp::Dense { input, .. }
            | PlannedOp::BatchNorm { input, .. }
            | PlannedOp::StatsPool { input, .. }
            | PlannedOp::Dropout { input, .. } => vec![input],
            PlannedOp::Shortcut { source, .. } => vec![source],
            PlannedOp::Concat { input, side, .. } => vec![input, side],
        }
    }
    /// The node this layer writes (a shortcut: the node it adds into).
    pub fn output(&self) -> usize {
        match self.op {
            PlannedOp::Conv { output, .. }
            | PlannedOp::Pool { output, .. }
            | PlannedOp::Dense { output, .. }
            | PlannedOp::BatchNorm { output, .. }
            | PlannedOp::StatsPool { output, .. }
            | PlannedOp::Dropout { output, .. }
            | PlannedOp::Concat { output, .. } => output,
            PlannedOp::Shortcut { target, .. } => target,
        }
    }
    /// Fan-in of each output unit (the He initialisation's scale), for conv and dense layers.
    pub fn fan_in(&self) -> Option<usize> {
        match self.op {
            PlannedOp::Conv { geom: g, .. } => Some((g.c_in * g.k_h * g.k_w) as usize),
            PlannedOp::Dense { geom: g, .. } => Some(g.in_features as usize),
            _ => None,
        }
    }
}
