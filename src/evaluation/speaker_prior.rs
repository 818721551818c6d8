//! A new speaker's normalisation statistics from a few utterances, shrunk toward the training
//! speakers': the prior a speaker-normalised model keeps in `model.json` ([`EnrollmentPrior`],
//! fitted on its training utterances by [`fit_prior`]) and the shrinkage ([`shrink`]). Statistics
//! of one or three utterances are mostly those utterances' content (their emotion), not the
//! speaker's voice; the prior's weight says how many utterances it is worth.

use super::model_file::{EnrollmentPrior, Prior};
use crate::data::{FeatureStore, SpeakerNorm};
use crate::features::ImageConfig;
use crate::prosody::stats::mean_std as population_mean_std;
use crate::prosody::ProsodyStore;
use crate::{config_err, Result};

/// Per-entry (mean, population variance) of the vectors of `members`.
pub fn raw_moments(store: &ProsodyStore, members: &[usize]) -> (Vec<f64>, Vec<f64>) {
    (0..store.config().vector_len())
        .map(|j| {
            let v: Vec<f64> = members.iter().map(|&i| store.vector(i)[j] as f64).collect();
            let (m, s) = population_mean_std(&v);
            (m, s * s)
        })
        .unzip()
}

/// `(k · own + weight · prior) / (k + weight)` for the mean and the variance, per entry.
pub fn shrink(
    own_mean: &[f64],
    own_var: &[f64],
    k: f64,
    prior: &Prior<f64>,
) -> (Vec<f64>, Vec<f64>) {
    (0..own_mean.len())
        .map(|j| {
            let w = prior.weight[j];
            (
                (k * own_mean[j] + w * prior.mean[j]) / (k + w),
                (k * own_var[j] + w * prior.var[j]) / (k + w),
            )
        })
        .unzip()
}

/// The largest prior weight, in utterances: for entries whose speaker means do not vary at all.
const MAX_PRIOR_WEIGHT: f64 = 1e6;

/// The group of utterances outside the training set when grouping the store for a prior (no
/// speaker or utterance index is named so).
const OUTSIDE: &str = "\u{0}outside";

/// The enrollment prior of a speaker-normalised model from its training utterances `train` (of a
/// store whose utterance `i` is spoken by `speakers[i]`): per entry, the training speakers' mean
/// speaker mean and variance, and the weight = within-speaker variance of utterance means over the
/// between-speaker variance of speaker means. Needs two training speakers.
pub fn fit_prior<S: AsRef<str>>(
    store: &FeatureStore,
    image: &ImageConfig,
    vectors: Option<&ProsodyStore>,
    speakers: &[S],
    train: &[usize],
) -> Result<EnrollmentPrior> {
    let mut names: Vec<&str> = train.iter().map(|&i| speakers[i].as_ref()).collect();
    names.sort();
    names.dedup();
    if names.len() < 2 {
        return Err(config_err!(
            "an enrollment prior needs at least two training speakers, there are {}",
            names.len()
        ));
    }
    let members: Vec<Vec<usize>> = names
        .iter()
        .map(|n| {
            train
                .iter()
                .copied()
                .filter(|&i| speakers[i].as_ref() == *n)
                .collect()
        })
        .collect();
    let mut by_speaker = vec![OUTSIDE.to_string(); store.len()];
    let mut by_utterance = by_speaker.clone();
    for &i in train {
        by_speaker[i] = speakers[i].as_ref().to_string();
        by_utterance[i] = i.to_string();
    }
    let [speaker_norm, utterance_norm]: [SpeakerNorm; 2] =
        SpeakerNorm::from_store_groupings(store, image, &[&by_speaker, &by_utterance])?
            .try_into()
            .map_err(|_| config_err!("two groupings give two normalisations"))?;
    let entries = image.channels() * image.height;
    let (mut means, mut vars, mut within) = (Vec::new(), Vec::new(), Vec::new());
    for (name, members) in names.iter().zip(&members) {
        let (m, s) = speaker_norm.stats(name).expect("a training speaker");
        means.push(m.iter().map(|&v| v as f64).collect::<Vec<f64>>());
        vars.push(
            s.iter()
                .map(|&v| (v as f64) * (v as f64))
                .collect::<Vec<f64>>(),
        );
        let utterance_means: Vec<&[f32]> = members
            .iter()
            .map(|i| {
                utterance_norm
                    .stats(&i.to_string())
                    .expect("a training utterance")
                    .0
            })
            .collect();
        within.push(
            (0..entries)
                .map(|j| {
                    let v: Vec<f64> = utterance_means.iter().map(|m| m[j] as f64).collect();
                    let (_, sd) = population_mean_std(&v);
                    sd * sd
                })
                .collect::<Vec<f64>>(),
        );
    }
    let image_prior = prior_of(&means, &vars, &within);
    let vector = vectors.map(|store| {
        let moments: Vec<(Vec<f64>, Vec<f64>)> =
            members.iter().map(|m| raw_moments(store, m)).collect();
        let means: Vec<Vec<f64>> = moments.iter().map(|m| m.0.clone()).collect();
        let vars: Vec<Vec<f64>> = moments.iter().map(|m| m.1.clone()).collect();
        // An utterance's "mean" is its vector, so the within-speaker variance of utterance means
        // is the speaker's variance.
        prior_of(&means, &vars, &vars)
    });
    Ok(EnrollmentPrior {
        image: Prior {
            mean: image_prior.mean.iter().map(|&v| v as f32).collect(),
            var: image_prior.var.iter().map(|&v| v as f32).collect(),
            weight: image_prior.weight.iter().map(|&v| v as f32).collect(),
        },
        vector,
    })
}

/// The prior of per-speaker `means` and `vars` and within-speaker variances of utterance means
/// (`within`), one row per speaker.
fn prior_of(means: &[Vec<f64>], vars: &[Vec<f64>], within: &[Vec<f64>]) -> Prior<f64> {
    let speakers = means.len() as f64;
    let average = |rows: &[Vec<f64>], j: usize| rows.iter().map(|r| r[j]).sum::<f64>() / speakers;
    let entries = means.first().map_or(0, Vec::len);
    let mut prior = Prior {
        mean: Vec::with_capacity(entries),
        var: Vec::with_capacity(entries),
        weight: Vec::with_capacity(entries),
    };
    for j in 0..entries {
        let column: Vec<f64> = means.iter().map(|r| r[j]).collect();
        let (mean, between_sd) = population_mean_std(&column);
        let between = between_sd * between_sd;
        let w = average(within, j);
        prior.mean.push(mean);
        prior.var.push(average(vars, j));
        prior.weight.push(if between > 0.0 {
            (w / between).min(MAX_PRIOR_WEIGHT)
        } else {
            MAX_PRIOR_WEIGHT
        });
    }
    prior
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two speakers whose means are 0 and 2 (between-speaker variance 1) and whose utterance means
    /// vary by variance 1 and 3 within them (average 2): the prior is worth 2 utterances, centred
    /// on 1, with the speakers' average variance.
    #[test]
    fn the_prior_weighs_within_against_between_speaker_variance() {
        let p = prior_of(
            &[vec![0.0], vec![2.0]],
            &[vec![4.0], vec![6.0]],
            &[vec![1.0], vec![3.0]],
        );
        assert_eq!(p.mean, vec![1.0]);
        assert_eq!(p.var, vec![5.0]);
        assert_eq!(p.weight, vec![2.0]);
        // Speakers with one mean: nothing to learn from a speaker's own mean.
        let flat = prior_of(
            &[vec![1.0], vec![1.0]],
            &[vec![1.0], vec![1.0]],
            &[vec![1.0], vec![1.0]],
        );
        assert_eq!(flat.weight, vec![MAX_PRIOR_WEIGHT]);
    }

    /// k utterances against a prior worth w: (k · own + w · prior) / (k + w), for mean and variance.
    #[test]
    fn few_utterances_stay_near_the_prior_and_many_near_their_own() {
        let prior = Prior {
            mean: vec![1.0],
            var: vec![5.0],
            weight: vec![2.0],
        };
        let (m, v) = shrink(&[3.0], &[1.0], 2.0, &prior);
        assert_eq!((m[0], v[0]), (2.0, 3.0));
        let (m, v) = shrink(&[3.0], &[1.0], 1e9, &prior);
        assert!((m[0] - 3.0).abs() < 1e-8 && (v[0] - 1.0).abs() < 1e-8);
    }
}
