//! Other input widths for one trained network. A network with statistics pooling (`stats`) before
//! its dense layers has the same parameters at every input width, so it can classify a whole
//! utterance in one image as wide as the utterance. Its shortcuts still constrain the width: a
//! shortcut into pool level k needs a width its pooling factor divides, so an utterance's image is
//! the first accepted width of at least its frames, the extra columns being padding.

use super::plan::{InputShape, Plan};
use super::spec::LayerSpec;
use crate::{config_err, Result};

/// How many columns past an utterance's frames [`Plan::whole_width`] looks for an accepted width:
/// enough for any pooling factor up to 64.
const WIDTH_SEARCH: usize = 64;

impl Plan {
    /// This plan laid out for inputs `width` columns wide; refused unless every layer keeps its
    /// parameters (the network is width-independent) and every layer accepts that width.
    pub fn with_width(&self, width: usize) -> Result<Plan> {
        let input = InputShape {
            width,
            ..self.input
        };
        let plan = Plan::new(&self.spec, input, self.classes)?;
        let same_params = plan.layers.len() == self.layers.len()
            && plan
                .layers
                .iter()
                .zip(&self.layers)
                .all(|(a, b)| a.params() == b.params());
        if !same_params {
            return Err(config_err!(
                "architecture `{}` takes inputs {} columns wide only (its dense layers' input size depends on the width; put `stats` before the fc layers to make it width-independent); {width} columns were asked for",
                self.spec,
                self.input.width
            ));
        }
        Ok(plan)
    }

    /// The narrowest width of at least `frames` columns that [`Plan::with_width`] accepts: the
    /// width a whole utterance is classified at, `frames` being its frames or the training width,
    /// whichever is more. (Not this plan's own width: a network laid out for one utterance is
    /// asked for the next one's.)
    pub fn whole_width(&self, frames: usize) -> Result<usize> {
        let mut refused = None;
        for width in frames..frames + WIDTH_SEARCH {
            match self.with_width(width) {
                Ok(_) => return Ok(width),
                Err(e) => refused = Some(e),
            }
        }
        Err(refused.expect("the search tries at least one width"))
    }

    /// Whether every operator of this plan works the same at any accepted width, so that an
    /// exported graph can take the width as a symbolic dimension: statistics pooling before the
    /// dense layers (whose input is then 2C at every width, where a flattened map's size follows
    /// the width) and no strided convolution (TensorFlow SAME pads a strided convolution by an
    /// amount that depends on the input's size; with stride 1 it pads k − 1 whatever the size).
    pub fn any_width(&self) -> bool {
        let layers = self.spec.layers();
        let strided = layers
            .iter()
            .any(|l| matches!(l, LayerSpec::Conv { stride, .. } if *stride > 1));
        layers.contains(&LayerSpec::StatsPool) && !strided
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ArchSpec;

    fn plan(spec: &str, width: usize) -> Plan {
        Plan::new(
            &ArchSpec::parse(spec).unwrap(),
            InputShape::new(1, 64, width),
            7,
        )
        .unwrap()
    }

    #[test]
    fn a_whole_utterance_is_as_wide_as_its_frames_rounded_up_to_what_the_shortcuts_take() {
        // Shortcuts from the input into pools 1-3 need a width divisible by 8.
        let p = plan("c4k3 p2 +0 c4k3 p2 +0 c4k3 p2 +0 stats fc8", 160);
        assert_eq!(p.whole_width(198).unwrap(), 200);
        assert_eq!(p.whole_width(200).unwrap(), 200);
        // Whatever width the plan was laid out for.
        assert_eq!(p.whole_width(100).unwrap(), 104);
        assert_eq!(p.with_width(200).unwrap().whole_width(161).unwrap(), 168);
        assert!(p.any_width());
    }

    #[test]
    fn only_width_independent_unstrided_networks_take_any_width() {
        let flat = plan("c4k3 p2 fc8", 32);
        assert!(flat.with_width(40).is_err());
        assert!(flat.whole_width(40).is_err());
        assert!(!flat.any_width());
        // SAME padding of a strided convolution depends on the width.
        let strided = plan("c4k3s2 p2 stats fc8", 32);
        assert!(strided.whole_width(40).is_ok());
        assert!(!strided.any_width());
    }
}
