//! Speakers at prediction time: a speaker's normalisation statistics from some of their utterances
//! ([`speaker_stats`], what `rescnn enroll` saves), and the enrollment evaluation of a finished run
//! ([`evaluate_enrollment`]): how much accuracy a speaker-normalised model keeps when a test
//! speaker's statistics come from k enrollment utterances instead of all of them.
//!
//! Protocol of the evaluation: for every fold and every test speaker of that fold, k of the
//! speaker's utterances are drawn at random (a seeded generator per fold, speaker, k and draw), the
//! statistics are computed from them alone, and the speaker's other utterances are classified with
//! them; the enrollment utterances are never scored. Each draw is pooled over all test speakers;
//! the table gives the mean and standard deviation over draws. Beside it: every test utterance
//! classified with the statistics of all of its speaker's utterances (what training and the
//! report do, transductive) and with the training speakers' statistics (no enrollment at all).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::ensemble::Ensemble;
use super::model_dir::{ModelPredictions, SpeakerSource, TrainedModel};
use crate::data::{Corpus, FeatureStore, InputNormMode, SpeakerNorm};
use crate::evaluation::metrics::{mean_std, EvalReport};
use crate::evaluation::model_file::{self, EnrollmentPrior, Prior, SpeakerStats, Stats};
use crate::evaluation::predict::score;
use crate::evaluation::predict::Predictions;
use crate::evaluation::speaker_prior::{fit_prior, raw_moments, shrink};
use crate::prosody::store::vector_stats;
use crate::prosody::ProsodyStore;
use crate::training::config::DeviceChoice;
use crate::training::trainer::derive_seed;
use crate::{config_err, Result};

/// The statistics of `speaker` from the utterances `indices` of a corpus (its spectrograms in
/// `store`, its vectors in `vectors` when the model has an utterance-vector path), as `model`
/// normalises: per (channel, image row) of the image, per entry of the vector. With a `prior`, the
/// means and variances are shrunk toward the training speakers' (see [`Prior`]): statistics of a
/// few utterances are mostly those utterances' content (their emotion), not the speaker.
pub fn speaker_stats(
    model: &TrainedModel,
    prior: Option<&EnrollmentPrior>,
    speaker: &str,
    store: &FeatureStore,
    vectors: Option<&ProsodyStore>,
    indices: &[usize],
) -> Result<SpeakerStats> {
    if indices.is_empty() {
        return Err(config_err!(
            "statistics of speaker '{speaker}' need at least one utterance"
        ));
    }
    let k = indices.len() as f64;
    let mut group = vec!["other"; store.len()];
    for &i in indices {
        group[i] = "enrolled";
    }
    let norm = SpeakerNorm::from_store(store, &model.config.spectrogram.image, &group)?;
    let (mean, std) = norm
        .stats("enrolled")
        .expect("at least one enrolled utterance");
    let image = match prior {
        // Both variances are at least the per-channel floor, so their mix is too.
        Some(p) => {
            let own_var: Vec<f64> = std.iter().map(|&s| (s as f64) * (s as f64)).collect();
            let own_mean: Vec<f64> = mean.iter().map(|&m| m as f64).collect();
            let to_f64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
            let image_prior = Prior {
                mean: to_f64(&p.image.mean),
                var: to_f64(&p.image.var),
                weight: to_f64(&p.image.weight),
            };
            let (m, v) = shrink(&own_mean, &own_var, k, &image_prior);
            Stats {
                mean: m.iter().map(|&x| x as f32).collect(),
                std: v.iter().map(|&x| x.sqrt() as f32).collect(),
            }
        }
        None => Stats {
            mean: mean.to_vec(),
            std: std.to_vec(),
        },
    };
    let vector = match (model.utterance(), vectors) {
        (Some(_), Some(v)) => Some(match prior.and_then(|p| p.vector.as_ref()) {
            Some(p) => {
                let (own_mean, own_var) = raw_moments(v, indices);
                let (mean, var) = shrink(&own_mean, &own_var, k, p);
                let std = mean
                    .iter()
                    .zip(&var)
                    .map(|(&m, &v)| {
                        let s = v.sqrt();
                        // The floor of `vector_stats`: a constant entry is divided by 1.
                        if s > 1e-6 * m.abs().max(1.0) {
                            s
                        } else {
                            1.0
                        }
                    })
                    .collect();
                Stats { mean, std }
            }
            None => {
                let (mean, std) = vector_stats(v, indices);
                Stats { mean, std }
            }
        }),
        (Some(_), None) => {
            return Err(config_err!(
                "the model takes an utterance vector: its statistics need the vectors"
            ))
        }
        (None, _) => None,
    };
    Ok(SpeakerStats {
        format: model_file::SPEAKER_FORMAT.into(),
        speaker: speaker.to_string(),
        utterances: indices.len(),
        image,
        vector,
    })
}

/// One fold of a finished run: its model (an ensemble fold's members averaged) and its test
/// utterances (corpus indices).
pub struct FoldModel {
    pub name: String,
    pub model: Ensemble,
    pub test: Vec<usize>,
    /// The fold's training utterances (corpus indices), for the enrollment prior of a model whose
    /// `model.json` has none.
    pub train: Vec<usize>,
}

/// What the enrollment evaluation does.
#[derive(Clone, Debug)]
pub struct EnrollmentSettings {
    /// Enrollment utterances per test speaker.
    pub ks: Vec<usize>,
    /// Random draws per k.
    pub draws: usize,
    pub seed: u64,
    pub device: DeviceChoice,
}

/// WA and UAR of one row and one source, as (mean, std) over draws (std 0 for one evaluation).
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    pub wa: (f64, f64),
    pub uar: (f64, f64),
}

/// One row of the enrollment table.
#[derive(Clone, Debug, PartialEq)]
pub struct EnrollmentRow {
    pub setting: String,
    /// Utterances scored per draw.
    pub scored: usize,
    /// Test speakers left out of this row (fewer than k + 1 utterances).
    pub speakers_skipped: usize,
    pub network: Scores,
    pub branch: Option<Scores>,
    pub fusion: Option<Scores>,
}

/// Pooled predictions of one evaluation (one draw) per source.
#[derive(Default)]
struct Pooled {
    network: Predictions,
    branch: Option<Predictions>,
    fused: Predictions,
}

impl Pooled {
    fn add(&mut self, p: ModelPredictions, to_corpus: &[usize]) {
        let map = |v: Predictions| -> Predictions {
            v.into_iter().map(|(i, p)| (to_corpus[i], p)).collect()
        };
        self.network.extend(map(p.network));
        self.fused.extend(map(p.fused));
        if let Some(b) = p.branch {
            self.branch.get_or_insert_with(Vec::new).extend(map(b));
        }
    }
}

/// The enrollment table of `folds` (see the module documentation); `label_map` maps `corpus`
/// labels to the models' classes.
pub fn evaluate_enrollment(
    folds: &[FoldModel],
    corpus: &Corpus,
    label_map: &[usize],
    settings: &EnrollmentSettings,
) -> Result<Vec<EnrollmentRow>> {
    if settings.draws == 0 || settings.ks.contains(&0) {
        return Err(config_err!(
            "--enroll needs k ≥ 1 utterances and --draws ≥ 1"
        ));
    }
    // A prior for every fold, or the shrunk rows are left out.
    let priors: Vec<Option<EnrollmentPrior>> = folds
        .iter()
        .map(|fold| prior_of_fold(fold, corpus))
        .collect::<Result<_>>()?;
    let shrunk = priors.iter().all(Option::is_some);
    // Evaluations: 0 = all utterances, 1 = training statistics, then per k its draws with the
    // speaker's own statistics and, with priors, the same draws shrunk toward the prior.
    let per_k = if shrunk { 2 } else { 1 };
    let mut evaluations: Vec<Vec<Pooled>> = vec![vec![Pooled::default()], vec![Pooled::default()]];
    for _ in 0..settings.ks.len() * per_k {
        evaluations.push((0..settings.draws).map(|_| Pooled::default()).collect());
    }
    let mut skipped = vec![0usize; settings.ks.len()];
    for (f, fold) in folds.iter().enumerate() {
        // The members read the same inputs, so the first member's features and statistics serve
        // them all.
        let model = fold.model.first();
        let prior = priors[f].as_ref().filter(|_| shrunk);
        let mut speakers: Vec<&str> = fold
            .test
            .iter()
            .map(|&i| corpus.utterances[i].speaker.as_str())
            .collect();
        speakers.sort();
        speakers.dedup();
        for (s, speaker) in speakers.iter().enumerate() {
            // The speaker's test utterances as a corpus of their own: "all of the speaker's
            // utterances" is then this corpus, as in training.
            let to_corpus: Vec<usize> = fold
                .test
                .iter()
                .copied()
                .filter(|&i| corpus.utterances[i].speaker == *speaker)
                .collect();
            let own = Corpus {
                name: format!("{} speaker {speaker}", corpus.name),
                classes: corpus.classes.clone(),
                utterances: to_corpus
                    .iter()
                    .map(|&i| corpus.utterances[i].clone())
                    .collect(),
            };
            let store = model.features(&own)?;
            let vectors = model.vectors(&own)?;
            let all: Vec<usize> = (0..own.len()).collect();
            let run = |source: SpeakerSource<'_>, indices: &[usize]| -> Result<ModelPredictions> {
                (fold.model).predict(
                    settings.device,
                    &own,
                    &store,
                    vectors.as_ref(),
                    source,
                    indices,
                )
            };
            evaluations[0][0].add(run(SpeakerSource::Corpus, &all)?, &to_corpus);
            evaluations[1][0].add(run(SpeakerSource::Training, &all)?, &to_corpus);
            for (n, &k) in settings.ks.iter().enumerate() {
                if own.len() <= k {
                    skipped[n] += 1;
                    continue;
                }
                for d in 0..settings.draws {
                    let stream = ((f as u64) << 40) | ((s as u64) << 20) | d as u64;
                    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
                        settings.seed,
                        100 + k as u64,
                        stream,
                    ));
                    let mut order = all.clone();
                    order.shuffle(&mut rng);
                    let (enrolled, rest) = order.split_at(k);
                    let mut rest = rest.to_vec();
                    rest.sort_unstable();
                    let methods = std::iter::once(None).chain(prior.map(Some));
                    for (m, method_prior) in methods.enumerate() {
                        let stats = speaker_stats(
                            model,
                            method_prior,
                            speaker,
                            &store,
                            vectors.as_ref(),
                            enrolled,
                        )?;
                        let p = run(SpeakerSource::Given(std::slice::from_ref(&stats)), &rest)?;
                        evaluations[2 + n * per_k + m]
                            .get_mut(d)
                            .expect("one pool per draw")
                            .add(p, &to_corpus);
                    }
                }
            }
        }
    }
    let classes = folds
        .first()
        .ok_or_else(|| config_err!("no folds to evaluate"))?
        .model
        .classes()
        .len();
    let report =
        |p: &Predictions| -> EvalReport { score(classes, p.clone(), corpus, Some(label_map)) };
    let summarise = |pooled: &[Pooled], pick: &dyn Fn(&Pooled) -> Option<&Predictions>| {
        let reports: Option<Vec<EvalReport>> =
            pooled.iter().map(|p| pick(p).map(&report)).collect();
        reports.map(|r| {
            let pct = |v: Vec<f64>| {
                let (m, s) = mean_std(&v);
                (100.0 * m, if v.len() > 1 { 100.0 * s } else { 0.0 })
            };
            Scores {
                wa: pct(r.iter().map(|r| r.wa).collect()),
                uar: pct(r.iter().map(|r| r.uar).collect()),
            }
        })
    };
    let mut rows = Vec::new();
    for (n, pooled) in evaluations.iter().enumerate() {
        let setting = match n {
            0 => "all of the speaker's utterances (transductive)".to_string(),
            1 => "training-set statistics (no enrollment)".to_string(),
            _ => {
                let k = settings.ks[(n - 2) / per_k];
                format!(
                    "k = {k} enrollment utterance{}{} ({} draws)",
                    if k == 1 { "" } else { "s" },
                    if (n - 2) % per_k == 1 {
                        ", shrunk toward the training speakers"
                    } else {
                        ""
                    },
                    settings.draws
                )
            }
        };
        let has_branch = pooled[0].branch.is_some();
        rows.push(EnrollmentRow {
            setting,
            scored: pooled[0].network.len(),
            speakers_skipped: if n >= 2 { skipped[(n - 2) / per_k] } else { 0 },
            network: summarise(pooled, &|p| Some(&p.network)).expect("always there"),
            branch: summarise(pooled, &|p| p.branch.as_ref()),
            fusion: has_branch
                .then(|| summarise(pooled, &|p| Some(&p.fused)))
                .flatten(),
        });
    }
    Ok(rows)
}

/// The enrollment prior of `fold`: its model's (`model.json`), else fitted on the fold's training
/// utterances of `corpus`; `None` for a model that is not speaker-normalised or a fold without
/// training utterances in `corpus`.
fn prior_of_fold(fold: &FoldModel, corpus: &Corpus) -> Result<Option<EnrollmentPrior>> {
    let model = fold.model.first();
    if model.input_norm_mode() != InputNormMode::Speaker {
        return Ok(None);
    }
    if let Some(p) = &model.parts.enrollment_prior {
        return Ok(Some(p.clone()));
    }
    if fold.train.is_empty() {
        return Ok(None);
    }
    let store = model.features(corpus)?;
    let vectors = model.vectors(corpus)?;
    let speakers: Vec<&str> = corpus
        .utterances
        .iter()
        .map(|u| u.speaker.as_str())
        .collect();
    fit_prior(
        &store,
        &model.config.spectrogram.image,
        vectors.as_ref(),
        &speakers,
        &fold.train,
    )
    .map(Some)
}

/// The enrollment table as markdown.
pub fn enrollment_markdown(rows: &[EnrollmentRow]) -> String {
    let cell = |s: &Option<Scores>| match s {
        Some(s) if s.wa.1 > 0.0 || s.uar.1 > 0.0 => format!(
            "{:.2} ± {:.2} / {:.2} ± {:.2}",
            s.wa.0, s.wa.1, s.uar.0, s.uar.1
        ),
        Some(s) => format!("{:.2} / {:.2}", s.wa.0, s.uar.0),
        None => "–".into(),
    };
    let mut out = String::from(
        "| test speakers' statistics from | utterances scored | network WA / UAR (%) | branch WA / UAR (%) | fusion WA / UAR (%) |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        let skipped = if r.speakers_skipped > 0 {
            format!(
                " ({} speakers with ≤ k utterances left out)",
                r.speakers_skipped
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {}{skipped} | {} | {} | {} | {} |\n",
            r.setting,
            r.scored,
            cell(&Some(r.network.clone())),
            cell(&r.branch),
            cell(&r.fusion)
        ));
    }
    out
}
