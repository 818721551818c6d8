//! The optimizer update: every parameter from its gradient, with the moments of the optimizer that
//! made them (the other optimizer would misread them).

use super::{Network, Stage};
use crate::backends::{AdamWIo, Backend, RmsPropIo};
use crate::model::optimizer::Optimizer;
use crate::{config_err, Result};

impl<B: Backend> Network<B> {
    /// One optimizer update of every parameter from the gradients of the last backward pass, at the
    /// current step count (which then goes up by one): RMSProp at its time-decayed rate, or AdamW
    /// with the scheduled rate and the bias correction of update number step + 1.
    pub fn apply_update(&mut self, backend: &B, optimizer: impl Into<Optimizer>) -> Result<()> {
        let optimizer = optimizer.into();
        if self.stage != Stage::Gradients {
            return Err(config_err!("apply_update needs a backward pass first"));
        }
        let kind = optimizer.kind();
        if let Some(held) = self.moments_of.filter(|&held| held != kind) {
            return Err(config_err!(
                "the optimizer state is {}'s; a {} update cannot continue it",
                held.label(),
                kind.label()
            ));
        }
        match optimizer {
            Optimizer::RmsProp(cfg) => {
                let step = cfg.step(self.step);
                for p in &mut self.params.trained {
                    backend.rmsprop_update(
                        &step,
                        RmsPropIo {
                            w: &mut p.value,
                            g: &p.grad,
                            r: &mut p.mean_square,
                        },
                    )?;
                }
            }
            Optimizer::AdamW { cfg, total_steps } => {
                let step = cfg.step(self.step, total_steps);
                self.allocate_first_moments(backend)?;
                for p in &mut self.params.trained {
                    backend.adamw_update(
                        &step,
                        AdamWIo {
                            w: &mut p.value,
                            g: &p.grad,
                            m: &mut p.first_moment,
                            v: &mut p.mean_square,
                        },
                    )?;
                }
            }
        }
        self.moments_of = Some(kind);
        self.step += 1;
        self.stage = Stage::Idle;
        Ok(())
    }

    /// AdamW's first moments, zero, where not allocated yet (the first AdamW update or an import of
    /// AdamW's state allocates them).
    pub(super) fn allocate_first_moments(&mut self, backend: &B) -> Result<()> {
        for p in &mut self.params.trained {
            let len = backend.len(&p.value);
            if backend.len(&p.first_moment) < len {
                p.first_moment = backend.zeros(len)?;
            }
        }
        Ok(())
    }
}
