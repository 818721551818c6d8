//! Ensembles: K members (the same recipe from K seeds, or a network and the prosody classifier)
//! evaluated on the same utterances, their class probabilities averaged. The report gives the
//! ensemble's result and each member's, with the members' mean ± standard deviation, so a reader
//! sees both what averaging bought and how much one seed's result varies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::metrics::{mean_std, EvalReport, Evaluator};
use super::predict::{argmax, Predictions};
use crate::data::Corpus;
use crate::{config_err, Result};

/// The ensemble's and its members' evaluations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnsembleReport {
    pub ensemble: EvalReport,
    pub members: Vec<EvalReport>,
    /// Mean and sample standard deviation of the members' WA and UAR.
    pub member_wa: (f64, f64),
    pub member_uar: (f64, f64),
}

/// What an ensemble of networks trained from several seeds adds to a fold's or a run's result:
/// the ensemble's and each member's test evaluation, with the selected weights and the last.
/// In a run's result the members' evaluations are pooled over the folds (member k of every fold).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnsembleResult {
    /// The members' seeds, in member order.
    pub seeds: Vec<u64>,
    /// Each member's selected weights (its own best validation), their probabilities averaged.
    pub selected: EnsembleReport,
    /// Each member's last weights, their probabilities averaged.
    pub last: EnsembleReport,
}

/// Evaluate predictions against the corpus labels (`label_map` maps corpus labels to the model's
/// classes, identity when `None`).
pub fn evaluate_predictions(
    predictions: &Predictions,
    corpus: &Corpus,
    classes: usize,
    label_map: Option<&[usize]>,
) -> EvalReport {
    let mut ev = Evaluator::new(classes);
    for (u, p) in predictions {
        let utt = &corpus.utterances[*u];
        let truth = label_map.map_or(utt.label, |m| m[utt.label]);
        ev.add(truth, argmax(p), &utt.speaker, -p[truth].max(1e-300).ln());
    }
    ev.finish()
}

/// The mean of the members' probabilities per utterance, weighted by `weights` (equal when
/// `None`); every member must cover the same utterances. The result is in the first member's
/// utterance order.
pub fn average(members: &[Predictions], weights: Option<&[f64]>) -> Result<Predictions> {
    let Some(first) = members.first() else {
        return Err(config_err!("an ensemble needs at least one member"));
    };
    let w: Vec<f64> = match weights {
        Some(w) if w.len() == members.len() && w.iter().all(|&x| x >= 0.0) => {
            let s: f64 = w.iter().sum();
            if s <= 0.0 {
                return Err(config_err!("ensemble weights sum to zero"));
            }
            w.iter().map(|x| x / s).collect()
        }
        Some(w) => {
            return Err(config_err!(
                "{} ensemble weights (non-negative) for {} members",
                w.len(),
                members.len()
            ))
        }
        None => vec![1.0 / members.len() as f64; members.len()],
    };
    let index: Vec<BTreeMap<usize, &Vec<f64>>> = members
        .iter()
        .map(|m| m.iter().map(|(u, p)| (*u, p)).collect())
        .collect();
    let mut out = Vec::with_capacity(first.len());
    for (u, p0) in first {
        let mut sum = vec![0.0; p0.len()];
        for (k, m) in index.iter().enumerate() {
            let p = m.get(u).ok_or_else(|| {
                config_err!("ensemble member {k} has no prediction for utterance {u}")
            })?;
            if p.len() != sum.len() {
                return Err(config_err!(
                    "ensemble member {k} has {} classes, member 0 has {}",
                    p.len(),
                    sum.len()
                ));
            }
            sum.iter_mut()
                .zip(p.iter())
                .for_each(|(s, &v)| *s += w[k] * v);
        }
        out.push((*u, sum));
    }
    if index.iter().any(|m| m.len() != first.len()) {
        return Err(config_err!(
            "ensemble members were evaluated on different utterances"
        ));
    }
    Ok(out)
}

/// The ensemble (equal weights) and member evaluations of `members`.
pub fn report(
    members: &[Predictions],
    corpus: &Corpus,
    classes: usize,
    label_map: Option<&[usize]>,
) -> Result<EnsembleReport> {
    let combined = average(members, None)?;
    let reports: Vec<EvalReport> = members
        .iter()
        .map(|m| evaluate_predictions(m, corpus, classes, label_map))
        .collect();
    let wa: Vec<f64> = reports.iter().map(|r| r.wa).collect();
    let uar: Vec<f64> = reports.iter().map(|r| r.uar).collect();
    Ok(EnsembleReport {
        ensemble: evaluate_predictions(&combined, corpus, classes, label_map),
        members: reports,
        member_wa: mean_std(&wa),
        member_uar: mean_std(&uar),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Source, Utterance};
    use std::sync::Arc;

    fn corpus(labels: &[usize]) -> Corpus {
        Corpus {
            name: "test".into(),
            classes: vec!["a".into(), "b".into()],
            utterances: labels
                .iter()
                .enumerate()
                .map(|(i, &l)| Utterance {
                    id: format!("u{i}"),
                    source: Source::Samples {
                        samples: Arc::new(vec![0.0]),
                        rate: 16_000,
                    },
                    label: l,
                    speaker: "s".into(),
                    duration_s: 0.0,
                })
                .collect(),
        }
    }

    /// Two members that are each wrong on a different utterance, confidently right elsewhere:
    /// each has WA 2/3, their average is right on all three (0.9 and 0.4 average to 0.65 > ½).
    #[test]
    fn averaging_corrects_disagreeing_members() {
        let c = corpus(&[0, 1, 0]);
        let m1: Predictions = vec![
            (0, vec![0.9, 0.1]),
            (1, vec![0.4, 0.6]),
            (2, vec![0.4, 0.6]),
        ];
        let m2: Predictions = vec![
            (2, vec![0.9, 0.1]),
            (0, vec![0.4, 0.6]),
            (1, vec![0.1, 0.9]),
        ];
        let r = report(&[m1.clone(), m2], &c, 2, None).unwrap();
        assert!((r.members[0].wa - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.members[1].wa - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.ensemble.wa, 1.0);
        assert_eq!(r.member_wa, (2.0 / 3.0, 0.0));
        let avg = average(&[m1.clone(), m1.clone()], Some(&[3.0, 1.0])).unwrap();
        for ((u, p), (v, q)) in avg.iter().zip(&m1) {
            assert_eq!(u, v);
            // Tolerance: 0.75·p + 0.25·p rounds to p within an ulp or two.
            assert!(p.iter().zip(q).all(|(a, b)| (a - b).abs() < 1e-15));
        }
        assert!(average(&[m1.clone(), vec![(0, vec![1.0, 0.0])]], None).is_err());
        assert!(average(&[], None).is_err());
    }
}
