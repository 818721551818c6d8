//! The optimizers: their settings (RMSProp, AdamW and its learning-rate schedule), the update a
//! training step applies ([`Optimizer`]; the network applies it) and which kind's state a network's
//! moments hold. The settings are also the trainer's `[optimizer]` table; the kernels take the
//! per-update values they derive ([`RmsPropStep`], [`AdamWStep`], which make the kernels'
//! parameters).

use crate::backends::{AdamWStep, RmsPropStep};
use crate::{shape_err, Result};

/// Which optimizer trains (`--optimizer`, the `kind` key of the `[optimizer]` table).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
pub enum OptimizerKind {
    /// RMSProp with time-decayed learning rate (the paper's Table III; the default).
    #[serde(rename = "rmsprop")]
    #[value(name = "rmsprop")]
    RmsProp,
    /// AdamW: bias-corrected moments, decoupled weight decay, linear warm-up then a schedule.
    #[serde(rename = "adamw")]
    #[value(name = "adamw")]
    AdamW,
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OptimizerKind::RmsProp => "rmsprop",
            OptimizerKind::AdamW => "adamw",
        })
    }
}

impl OptimizerKind {
    /// The name errors show.
    pub fn label(self) -> &'static str {
        match self {
            OptimizerKind::RmsProp => "RMSProp",
            OptimizerKind::AdamW => "AdamW",
        }
    }
}

/// The update a training step applies: RMSProp, or AdamW with the run's length (its learning-rate
/// schedule is a function of the step and the total).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    RmsProp(RmsPropConfig),
    AdamW { cfg: AdamWConfig, total_steps: u64 },
}

impl From<&RmsPropConfig> for Optimizer {
    fn from(cfg: &RmsPropConfig) -> Self {
        Optimizer::RmsProp(*cfg)
    }
}

impl Optimizer {
    pub fn kind(&self) -> OptimizerKind {
        match self {
            Optimizer::RmsProp(_) => OptimizerKind::RmsProp,
            Optimizer::AdamW { .. } => OptimizerKind::AdamW,
        }
    }
}

/// RMSProp settings; defaults are the paper's Table III (α = 0.001, decay 1e-6) with η = 0.9, ε = 1e-7.
/// Also the trainer's `[optimizer]` configuration table (a file needs only the keys it changes).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RmsPropConfig {
    pub lr: f64,
    pub decay: f64,
    pub rho: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            lr: 1e-3,
            decay: 1e-6,
            rho: 0.9,
            eps: 1e-7,
            weight_decay: 0.0,
        }
    }
}

impl RmsPropConfig {
    /// The time-decayed learning rate α_t = α / (1 + decay · t).
    pub fn lr_at(&self, step: u64) -> f64 {
        self.lr / (1.0 + self.decay * step as f64)
    }
    /// The host-side values of update number `step` (0-based).
    pub fn step(&self, step: u64) -> RmsPropStep {
        RmsPropStep {
            lr: self.lr_at(step),
            rho: self.rho,
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }
}

/// The learning-rate curve of AdamW after its linear warm-up (also the trainer's `--schedule`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// lr throughout (after the warm-up).
    Constant,
    /// Half a cosine from lr down to lr · final_lr_fraction at the last step.
    Cosine,
    /// One cycle: the warm-up rises to lr (its length is at least one step), then a linear fall
    /// to lr · final_lr_fraction at the last step.
    OneCycle,
}

/// AdamW settings with its learning-rate schedule (defaults: PyTorch's AdamW, 5 % linear warm-up,
/// cosine to 1 % of lr). Also the trainer's `[optimizer]` table when `kind = "adamw"`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled: w ← w − lr_t · weight_decay · w, separate from the gradient's moments.
    pub weight_decay: f64,
    /// Share of the total steps spent rising linearly from lr/warm-up-steps to lr (0 ≤ f < 1).
    pub warmup_fraction: f64,
    pub schedule: LrSchedule,
    /// Where cosine and one-cycle end, as a fraction of lr (0 ≤ f ≤ 1).
    pub final_lr_fraction: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
            warmup_fraction: 0.05,
            schedule: LrSchedule::Cosine,
            final_lr_fraction: 0.01,
        }
    }
}

impl AdamWConfig {
    /// Checks the ranges the formulas need; the message names the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64, want: &str| {
            Err(shape_err!("AdamW {what} must be {want}, got {v}"))
        };
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", self.lr, "a positive number");
        }
        for (what, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(what, b, "in [0, 1)");
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad("eps", self.eps, "a positive number");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", self.weight_decay, "≥ 0");
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            return bad("warmup_fraction", self.warmup_fraction, "in [0, 1)");
        }
        if !(0.0..=1.0).contains(&self.final_lr_fraction) {
            return bad("final_lr_fraction", self.final_lr_fraction, "in [0, 1]");
        }
        Ok(())
    }

    /// Steps of linear warm-up in a run of `total_steps` (at least one for one-cycle).
    pub fn warmup_steps(&self, total_steps: u64) -> u64 {
        let w = (self.warmup_fraction * total_steps as f64).round() as u64;
        match self.schedule {
            LrSchedule::OneCycle => w.max(1),
            _ => w,
        }
        .min(total_steps)
    }

    /// The learning rate of update `step` (0-based) of `total_steps`: during the warm-up
    /// lr · (step + 1) / warm-up steps, so it starts near 0 and its last warm-up step is lr; then the
    /// schedule over the remaining steps, from lr at the first to lr · final_lr_fraction at the last.
    /// Steps past the end keep the final rate.
    pub fn lr_at(&self, step: u64, total_steps: u64) -> f64 {
        let warmup = self.warmup_steps(total_steps);
        if step < warmup {
            return self.lr * (step + 1) as f64 / warmup as f64;
        }
        let rest = total_steps.saturating_sub(warmup);
        // Progress 0 at the first step after the warm-up, 1 at the last step.
        let progress = if rest <= 1 {
            0.0
        } else {
            ((step - warmup) as f64 / (rest - 1) as f64).min(1.0)
        };
        let end = self.final_lr_fraction;
        let factor = match self.schedule {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine => {
                end + (1.0 - end) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            LrSchedule::OneCycle => 1.0 - (1.0 - end) * progress,
        };
        self.lr * factor
    }

    /// Host values of update `step` (0-based, so t = step + 1) of a run of `total_steps`.
    pub fn step(&self, step: u64, total_steps: u64) -> AdamWStep {
        AdamWStep {
            lr: self.lr_at(step, total_steps),
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            t: step + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmsprop_time_decay() {
        let c = RmsPropConfig {
            decay: 0.5,
            ..Default::default()
        };
        assert_eq!(c.lr_at(0), 1e-3);
        assert!((c.lr_at(2) - 0.5e-3).abs() < 1e-18);
    }
}
