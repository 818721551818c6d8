//! The optimizer settings: which optimizer, and its own table of settings.

use serde::{Deserialize, Serialize};

pub use crate::model::OptimizerKind;
use crate::model::{AdamWConfig, LrSchedule, Optimizer, RmsPropConfig};
use crate::{config_err, Result};

/// The `[optimizer]` table: `kind = "rmsprop"` (keys `lr`, `decay`, `rho`, `eps`, `weight_decay`;
/// see [`RmsPropConfig`]) or `kind = "adamw"` (keys `lr`, `beta1`, `beta2`, `eps`,
/// `weight_decay`, `warmup_fraction`, `schedule`, `final_lr_fraction`; see [`AdamWConfig`]). A
/// table without `kind` is RMSProp's, as every configuration and checkpoint written before AdamW
/// existed; missing keys take that optimizer's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum OptimizerConfig {
    #[serde(rename = "rmsprop")]
    RmsProp(RmsPropConfig),
    #[serde(rename = "adamw")]
    AdamW(AdamWConfig),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::RmsProp(RmsPropConfig::default())
    }
}

impl<'de> Deserialize<'de> for OptimizerConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut table = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let kind = match table.remove("kind") {
            None => OptimizerKind::RmsProp,
            Some(k) => OptimizerKind::deserialize(k)
                .map_err(|_| D::Error::custom("optimizer kind must be \"rmsprop\" or \"adamw\""))?,
        };
        let table = serde_json::Value::Object(table);
        let named = |e: serde_json::Error| D::Error::custom(format!("optimizer ({kind}): {e}"));
        match kind {
            OptimizerKind::RmsProp => RmsPropConfig::deserialize(table)
                .map(OptimizerConfig::RmsProp)
                .map_err(named),
            OptimizerKind::AdamW => AdamWConfig::deserialize(table)
                .map(OptimizerConfig::AdamW)
                .map_err(named),
        }
    }
}

impl OptimizerConfig {
    /// The recipe's optimizer: AdamW at 0.002 with decoupled weight decay 0.01, no warm-up, and
    /// half a cosine down to 0 at the last step.
    pub fn recipe() -> Self {
        OptimizerConfig::AdamW(AdamWConfig {
            lr: 0.002,
            weight_decay: 0.01,
            warmup_fraction: 0.0,
            schedule: LrSchedule::Cosine,
            final_lr_fraction: 0.0,
            ..AdamWConfig::default()
        })
    }

    /// The defaults of optimizer `kind`.
    pub fn defaults(kind: OptimizerKind) -> Self {
        match kind {
            OptimizerKind::RmsProp => OptimizerConfig::RmsProp(RmsPropConfig::default()),
            OptimizerKind::AdamW => OptimizerConfig::AdamW(AdamWConfig::default()),
        }
    }

    pub fn kind(&self) -> OptimizerKind {
        match self {
            OptimizerConfig::RmsProp(_) => OptimizerKind::RmsProp,
            OptimizerConfig::AdamW(_) => OptimizerKind::AdamW,
        }
    }

    /// The base learning rate (RMSProp's α, AdamW's peak rate).
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::RmsProp(o) => o.lr,
            OptimizerConfig::AdamW(o) => o.lr,
        }
    }

    /// The learning rate of update `step` (0-based) of a run of `total_steps`.
    pub fn lr_at(&self, step: u64, total_steps: u64) -> f64 {
        match self {
            OptimizerConfig::RmsProp(o) => o.lr_at(step),
            OptimizerConfig::AdamW(o) => o.lr_at(step, total_steps),
        }
    }

    /// What the network applies in a run of `total_steps` updates.
    pub fn for_run(&self, total_steps: u64) -> Optimizer {
        match *self {
            OptimizerConfig::RmsProp(cfg) => Optimizer::RmsProp(cfg),
            OptimizerConfig::AdamW(cfg) => Optimizer::AdamW { cfg, total_steps },
        }
    }

    /// One line for the reports.
    pub fn describe(&self) -> String {
        match self {
            OptimizerConfig::RmsProp(o) => format!("RMSProp lr {} decay {}", o.lr, o.decay),
            OptimizerConfig::AdamW(o) => format!(
                "AdamW lr {} (β1 {}, β2 {}, decoupled weight decay {}), linear warm-up over {} % \
                 of the steps, then {} to {} × lr",
                o.lr,
                o.beta1,
                o.beta2,
                o.weight_decay,
                100.0 * o.warmup_fraction,
                match o.schedule {
                    LrSchedule::Constant => "constant",
                    LrSchedule::Cosine => "cosine",
                    LrSchedule::OneCycle => "one-cycle",
                },
                o.final_lr_fraction
            ),
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        match self {
            OptimizerConfig::RmsProp(o) => {
                if !(o.lr > 0.0 && o.lr.is_finite())
                    || o.decay < 0.0
                    || !(0.0..1.0).contains(&o.rho)
                {
                    return Err(config_err!(
                        "optimizer: need lr > 0, decay ≥ 0 and 0 ≤ rho < 1 (got lr {}, decay {}, rho {})",
                        o.lr,
                        o.decay,
                        o.rho
                    ));
                }
                Ok(())
            }
            OptimizerConfig::AdamW(o) => o.validate().map_err(|e| config_err!("optimizer: {e}")),
        }
    }
}
