//! The checks of a configuration that need no data.

use super::TrainConfig;
use crate::{config_err, Result};

impl TrainConfig {
    /// Check everything that can be checked without data.
    pub fn validate(&self) -> Result<()> {
        self.protocol_choice()?;
        self.corpus
            .parse::<crate::data::CorpusSpec>()
            .map_err(|e| config_err!("corpus: {e}"))?;
        crate::model::ArchSpec::from_name_or_spec(&self.arch)?;
        self.spectrogram.validate()?;
        self.augment.validate()?;
        if self.batch == 0 {
            return Err(config_err!("batch must be at least 1"));
        }
        match (self.iterations, self.epochs) {
            (Some(0), _) => return Err(config_err!("iterations must be at least 1")),
            (_, Some(e)) if !(e > 0.0 && e.is_finite()) => {
                return Err(config_err!("epochs must be a positive number, got {e}"))
            }
            (Some(_), Some(_)) => {
                return Err(config_err!(
                    "give either iterations or epochs, not both (iterations = {}, epochs = {})",
                    self.iterations.unwrap_or(0),
                    self.epochs.unwrap_or(0.0)
                ))
            }
            (None, None) => return Err(config_err!("give iterations or epochs")),
            _ => {}
        }
        if self.eval_every == 0 {
            return Err(config_err!("eval_every must be at least 1"));
        }
        self.optimizer.validate()?;
        for v in &self.waveform_variants {
            v.validate()?;
        }
        if !(self.mixup_alpha >= 0.0 && self.mixup_alpha.is_finite()) {
            return Err(config_err!(
                "mixup_alpha must be ≥ 0 (0 = off), got {}",
                self.mixup_alpha
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(config_err!(
                "label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            ));
        }
        if self.ensemble == 0 {
            return Err(config_err!(
                "ensemble must be at least 1 (the members per fold; 1 = one network)"
            ));
        }
        if !(0.0..=1.0).contains(&self.prosody_weight) {
            return Err(config_err!(
                "prosody_weight must be in [0, 1] (0 = no prosody branch), got {}",
                self.prosody_weight
            ));
        }
        if self.eval_time != crate::data::EvalTime::First
            && self.spectrogram.image.time_axis != crate::features::TimeAxis::Fixed
        {
            return Err(config_err!(
                "eval_time = \"{}\" needs time_axis = \"fixed\" (--fixed-time): with \"whole\" the \
                 utterance is already stretched into one image",
                self.eval_time
            ));
        }
        if self.eval_time == crate::data::EvalTime::Whole {
            let spec = crate::model::ArchSpec::from_name_or_spec(&self.arch)?;
            if !spec.layers().contains(&crate::model::LayerSpec::StatsPool) {
                return Err(config_err!(
                    "eval_time = \"whole\" needs an architecture with `stats` (statistics pooling \
                     makes the network accept any width); `{}` has none: add `stats` before its fc \
                     layers, or use eval_time = \"first\" or \"crops\"",
                    self.arch
                ));
            }
        }
        Ok(())
    }
}
