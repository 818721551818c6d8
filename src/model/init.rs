//! A network's parameters and their set-up: seeded He (Kaiming) initialisation, computed on the host
//! in f64 so every backend and element type starts from the same weights for the same seed.
//!
//! Weights of a ReLU layer are drawn from N(0, 2/fan_in) (He et al. 2015); the classifier, which has
//! no ReLU, from N(0, 1/fan_in) (the same rule with gain 1). Biases start at zero. Each parameter
//! tensor draws from its own ChaCha8 stream (stream = the tensor's index), so the values of one
//! tensor depend only on the seed and its position, never on how many numbers other tensors drew.
//! Batch norm starts as a plain normalisation: γ = 1, β = 0, running mean 0 and running variance 1.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::layer::PlannedOp;
use super::plan::Plan;
use crate::backends::Backend;
use crate::tensor::Real;
use crate::Result;

/// One parameter (or state) tensor on a backend, with its gradient and optimizer moments.
pub(super) struct Param<B: Backend> {
    pub(super) name: String,
    pub(super) dims: Vec<usize>,
    pub(super) value: B::Buf,
    pub(super) grad: B::Buf,
    /// RMSProp's r, AdamW's second moment v.
    pub(super) mean_square: B::Buf,
    /// AdamW's first moment: empty until the first AdamW update or an import of AdamW's state
    /// allocates it (RMSProp never needs it).
    pub(super) first_moment: B::Buf,
}

/// Every trained parameter of a network and its non-trained state, in plan order.
pub(super) struct Parameters<B: Backend> {
    pub(super) trained: Vec<Param<B>>,
    /// For each planned layer with parameters, the index of its weight in `trained` (bias follows;
    /// batch norm: γ, then β).
    pub(super) of_layer: Vec<Option<usize>>,
    /// Non-trained state (batch norm's running mean, then variance); `grad` and the moments are
    /// empty.
    pub(super) state: Vec<Param<B>>,
    /// For each batch norm layer, the index of its running mean in `state`.
    pub(super) state_of_layer: Vec<Option<usize>>,
}

impl<B: Backend> Parameters<B> {
    /// The parameters and state of `plan` on `backend`, initialised from `seed` (see the module
    /// docs), with zero gradients and mean squares.
    pub(super) fn new(backend: &B, plan: &Plan, seed: u64) -> Result<Self> {
        let logits = plan.logits_node();
        let mut params = Vec::new();
        let mut layer_params = Vec::with_capacity(plan.layers.len());
        let mut state = Vec::new();
        let mut layer_state = Vec::with_capacity(plan.layers.len());
        for layer in &plan.layers {
            let named = layer.state();
            layer_state.push((!named.is_empty()).then_some(state.len()));
            for (name, dims) in named {
                // Running mean 0, running variance 1: evaluation before any training step is the
                // identity normalisation.
                let start = if name.ends_with(".running_var") {
                    B::Elem::ONE
                } else {
                    B::Elem::ZERO
                };
                let len: usize = dims.iter().product();
                state.push(Param {
                    name,
                    dims,
                    value: backend.upload(&vec![start; len])?,
                    grad: backend.zeros(0)?,
                    mean_square: backend.zeros(0)?,
                    first_moment: backend.zeros(0)?,
                });
            }
            let named = layer.params();
            if named.is_empty() {
                layer_params.push(None);
                continue;
            }
            layer_params.push(Some(params.len()));
            if let PlannedOp::BatchNorm { .. } = layer.op {
                // γ = 1, β = 0: the layer starts as a plain normalisation.
                for (k, (name, dims)) in named.into_iter().enumerate() {
                    let len: usize = dims.iter().product();
                    let v = if k == 0 { B::Elem::ONE } else { B::Elem::ZERO };
                    params.push(Param {
                        name,
                        dims,
                        value: backend.upload(&vec![v; len])?,
                        grad: backend.zeros(len)?,
                        mean_square: backend.zeros(len)?,
                        first_moment: backend.zeros(0)?,
                    });
                }
                continue;
            }
            let is_classifier =
                matches!(layer.op, PlannedOp::Dense { output, .. } if output == logits);
            let fan_in = layer
                .fan_in()
                .expect("layers with parameters have a fan-in") as f64;
            let std = if is_classifier {
                (1.0 / fan_in).sqrt()
            } else {
                (2.0 / fan_in).sqrt()
            };
            for (k, (name, dims)) in named.into_iter().enumerate() {
                let len: usize = dims.iter().product();
                let host: Vec<B::Elem> = if k == 0 {
                    normal(seed, params.len() as u64, len, std)
                        .into_iter()
                        .map(B::Elem::from_f64)
                        .collect()
                } else {
                    vec![B::Elem::ZERO; len]
                };
                params.push(Param {
                    name,
                    dims,
                    value: backend.upload(&host)?,
                    grad: backend.zeros(len)?,
                    mean_square: backend.zeros(len)?,
                    first_moment: backend.zeros(0)?,
                });
            }
        }
        Ok(Parameters {
            trained: params,
            of_layer: layer_params,
            state,
            state_of_layer: layer_state,
        })
    }
}

/// `len` samples of N(0, std²) from stream `stream` of the generator seeded with `seed`.
pub fn normal(seed: u64, stream: u64, len: usize, std: f64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut out = Vec::with_capacity(len + 1);
    while out.len() < len {
        // Box–Muller: u1 in (0, 1] keeps ln finite.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        out.push(std * radius * angle.cos());
        out.push(std * radius * angle.sin());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_has_the_requested_moments_and_is_seeded() {
        let v = normal(7, 3, 200_000, 0.5);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        // Standard errors: mean 0.5/√2e5 ≈ 1.1e-3, variance 0.25·√(2/2e5) ≈ 2.5e-3; allow ~4σ.
        assert!(mean.abs() < 5e-3, "mean {mean}");
        assert!((var - 0.25).abs() < 1e-2, "variance {var}");
        assert_eq!(v[..10], normal(7, 3, 10, 0.5)[..]);
        assert_ne!(v[..10], normal(7, 4, 10, 0.5)[..]);
        assert_ne!(v[..10], normal(8, 3, 10, 0.5)[..]);
    }
}
