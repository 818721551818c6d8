//! Named host tensors: how a network's parameters, state and optimizer moments leave it and enter it
//! (checkpoints, gradient checks), checked by name and dimensions on the way in.

use super::init::{Param, Parameters};
use crate::backends::Backend;
use crate::{config_err, shape_err, Result};

/// A named host tensor: how parameters and optimizer state leave and enter a network (checkpoints).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor<T> {
    /// e.g. "conv1.weight", "fc2.bias", "classifier.weight".
    pub name: String,
    /// Row-major dimensions: conv weights (C_out, C_in, K_h, K_w), dense weights (OUT, IN), biases (C).
    pub dims: Vec<usize>,
    pub data: Vec<T>,
}

/// The optimizer's state, tensors named like their parameters: the number of updates applied so
/// far (which sets the learning rate, and AdamW's bias correction), the running mean square of
/// every parameter's gradient (RMSProp's r, AdamW's second moment v: the same recurrence with their
/// own rates) and, for AdamW only, the first moment m (empty for RMSProp).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState<T> {
    pub step: u64,
    pub mean_square: Vec<NamedTensor<T>>,
    pub first_moment: Vec<NamedTensor<T>>,
}

/// `params` downloaded through `pick` (the value, the gradient or a moment of each).
fn download<'a, B: Backend + 'a>(
    backend: &B,
    params: impl IntoIterator<Item = &'a Param<B>>,
    pick: impl Fn(&Param<B>) -> &B::Buf,
) -> Result<Vec<NamedTensor<B::Elem>>> {
    params
        .into_iter()
        .map(|p| {
            Ok(NamedTensor {
                name: p.name.clone(),
                dims: p.dims.clone(),
                data: backend.download(pick(p))?,
            })
        })
        .collect()
}

impl<B: Backend> Parameters<B> {
    /// Every trained parameter through `pick`.
    pub(super) fn export(
        &self,
        backend: &B,
        pick: impl Fn(&Param<B>) -> &B::Buf,
    ) -> Result<Vec<NamedTensor<B::Elem>>> {
        download(backend, &self.trained, pick)
    }

    /// The state tensors (batch norm's running statistics), exported with the parameters.
    pub(super) fn export_state(&self, backend: &B) -> Result<Vec<NamedTensor<B::Elem>>> {
        download(backend, &self.state, |p| &p.value)
    }

    /// Write `tensors` into the parameters (and, `with_state`, the state tensors) through `pick`.
    /// The set of names and their dimensions must match exactly; errors start with `what`.
    pub(super) fn import(
        &mut self,
        backend: &B,
        what: &str,
        tensors: &[NamedTensor<B::Elem>],
        with_state: bool,
        pick: impl Fn(&mut Param<B>) -> &mut B::Buf,
    ) -> Result<()> {
        let state_len = if with_state { self.state.len() } else { 0 };
        let targets: Vec<&Param<B>> = self
            .trained
            .iter()
            .chain(&self.state[..state_len])
            .collect();
        for t in tensors {
            if !targets.iter().any(|p| p.name == t.name) {
                return Err(config_err!(
                    "{what}: unexpected tensor `{}` (this network has {})",
                    t.name,
                    targets
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        for p in targets {
            let t = tensors.iter().find(|t| t.name == p.name);
            let Some(t) = t else {
                return Err(config_err!("{what}: tensor `{}` is missing", p.name));
            };
            if t.dims != p.dims || t.data.len() != p.dims.iter().product::<usize>() {
                return Err(shape_err!(
                    "{what}: tensor `{}` has dimensions {:?} ({} values) but the network needs {:?}",
                    t.name,
                    t.dims,
                    t.data.len(),
                    p.dims
                ));
            }
        }
        for p in self.trained.iter_mut().chain(&mut self.state[..state_len]) {
            let t = tensors
                .iter()
                .find(|t| t.name == p.name)
                .expect("checked above");
            backend.write(pick(p), &t.data)?;
        }
        Ok(())
    }
}
