//! The metrics speech emotion recognition papers report: weighted accuracy (WA, plain accuracy),
//! unweighted average recall (UAR, the mean of per-class recalls, insensitive to class imbalance),
//! macro-F1, per-class recall, the confusion matrix, and per-speaker accuracy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Confusion counts: row = true class, column = predicted class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    classes: usize,
    counts: Vec<u64>,
}

impl ConfusionMatrix {
    pub fn new(classes: usize) -> Self {
        ConfusionMatrix {
            classes,
            counts: vec![0; classes * classes],
        }
    }
    pub fn classes(&self) -> usize {
        self.classes
    }
    /// Record one prediction. Panics on a class index out of range (a programming error).
    pub fn add(&mut self, truth: usize, predicted: usize) {
        assert!(
            truth < self.classes && predicted < self.classes,
            "class index out of range"
        );
        self.counts[truth * self.classes + predicted] += 1;
    }
    /// Add all counts of `other` (same class count) into `self`, e.g. to pool LOSO folds.
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        assert_eq!(
            self.classes, other.classes,
            "merging confusion matrices of different sizes"
        );
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }
    pub fn count(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }
    /// Number of samples whose true class is `class`.
    pub fn support(&self, class: usize) -> u64 {
        (0..self.classes).map(|p| self.count(class, p)).sum()
    }
    fn predicted_as(&self, class: usize) -> u64 {
        (0..self.classes).map(|t| self.count(t, class)).sum()
    }
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
    pub fn correct(&self) -> u64 {
        (0..self.classes).map(|c| self.count(c, c)).sum()
    }
    /// Weighted accuracy: correct / total (0 for an empty matrix).
    pub fn weighted_accuracy(&self) -> f64 {
        ratio(self.correct(), self.total()).unwrap_or(0.0)
    }
    /// Recall of `class`; None when the class has no samples.
    pub fn recall(&self, class: usize) -> Option<f64> {
        ratio(self.count(class, class), self.support(class))
    }
    /// Precision of `class`; None when nothing was predicted as it.
    pub fn precision(&self, class: usize) -> Option<f64> {
        ratio(self.count(class, class), self.predicted_as(class))
    }
    /// F1 of `class` (0 when precision or recall is 0 or undefined).
    pub fn f1(&self, class: usize) -> f64 {
        match (self.precision(class), self.recall(class)) {
            (Some(p), Some(r)) if p + r > 0.0 => 2.0 * p * r / (p + r),
            _ => 0.0,
        }
    }
    /// Unweighted average recall over the classes present in the data (support > 0).
    pub fn unweighted_average_recall(&self) -> f64 {
        mean((0..self.classes).filter_map(|c| self.recall(c))).unwrap_or(0.0)
    }
    /// Macro-averaged F1 over the classes present in the data (support > 0).
    pub fn macro_f1(&self) -> f64 {
        mean(
            (0..self.classes)
                .filter(|&c| self.support(c) > 0)
                .map(|c| self.f1(c)),
        )
        .unwrap_or(0.0)
    }
    /// Row-normalised percentages (each true class's row sums to 100, empty rows stay 0), as in the paper's Fig. 8.
    pub fn row_percentages(&self) -> Vec<Vec<f64>> {
        (0..self.classes)
            .map(|t| {
                let support = self.support(t);
                (0..self.classes)
                    .map(|p| ratio(self.count(t, p), support).map_or(0.0, |r| 100.0 * r))
                    .collect()
            })
            .collect()
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Mean and sample standard deviation (n − 1 in the denominator; 0 for fewer than two values).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let m = mean(values.iter().copied()).unwrap_or(0.0);
    if values.len() < 2 {
        return (m, 0.0);
    }
    let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (values.len() - 1) as f64;
    (m, var.sqrt())
}

/// Everything one evaluation reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Weighted accuracy (plain accuracy), in [0, 1].
    pub wa: f64,
    /// Unweighted average recall, in [0, 1].
    pub uar: f64,
    pub macro_f1: f64,
    /// Mean cross-entropy loss over the evaluated utterances.
    pub loss: f64,
    /// Recall per class (None for a class absent from this set), in the project's class order.
    pub per_class_recall: Vec<Option<f64>>,
    pub confusion: ConfusionMatrix,
    /// Speaker → (correct, total).
    pub per_speaker: BTreeMap<String, (u64, u64)>,
}

/// Accumulates predictions during an evaluation pass.
#[derive(Clone, Debug)]
pub struct Evaluator {
    confusion: ConfusionMatrix,
    per_speaker: BTreeMap<String, (u64, u64)>,
    loss_sum: f64,
}

impl Evaluator {
    pub fn new(classes: usize) -> Self {
        Evaluator {
            confusion: ConfusionMatrix::new(classes),
            per_speaker: BTreeMap::new(),
            loss_sum: 0.0,
        }
    }
    /// Record one utterance: its true class, predicted class, speaker and loss.
    pub fn add(&mut self, truth: usize, predicted: usize, speaker: &str, loss: f64) {
        self.confusion.add(truth, predicted);
        let entry = self
            .per_speaker
            .entry(speaker.to_string())
            .or_insert((0, 0));
        entry.0 += u64::from(truth == predicted);
        entry.1 += 1;
        self.loss_sum += loss;
    }
    pub fn finish(self) -> EvalReport {
        let c = &self.confusion;
        let total = c.total();
        EvalReport {
            wa: c.weighted_accuracy(),
            uar: c.unweighted_average_recall(),
            macro_f1: c.macro_f1(),
            loss: if total > 0 {
                self.loss_sum / total as f64
            } else {
                0.0
            },
            per_class_recall: (0..c.classes()).map(|k| c.recall(k)).collect(),
            per_speaker: self.per_speaker,
            confusion: self.confusion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3-class example worked by hand:
    /// truth 0: predicted 0,0,0,1   (recall 3/4)
    /// truth 1: predicted 1,2       (recall 1/2)
    /// truth 2: predicted 2         (recall 1)
    fn example() -> ConfusionMatrix {
        let mut m = ConfusionMatrix::new(3);
        for (t, p) in [(0, 0), (0, 0), (0, 0), (0, 1), (1, 1), (1, 2), (2, 2)] {
            m.add(t, p);
        }
        m
    }

    #[test]
    fn accuracy_recall_and_uar_by_hand() {
        let m = example();
        assert_eq!((m.total(), m.correct()), (7, 5));
        assert!((m.weighted_accuracy() - 5.0 / 7.0).abs() < 1e-12);
        assert_eq!(m.recall(0), Some(0.75));
        assert_eq!(m.recall(1), Some(0.5));
        assert_eq!(m.recall(2), Some(1.0));
        assert!((m.unweighted_average_recall() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn f1_by_hand() {
        let m = example();
        // class 0: precision 3/3, recall 3/4 -> F1 = 2·1·0.75/1.75 = 6/7
        // class 1: precision 1/2, recall 1/2 -> 0.5
        // class 2: precision 1/2, recall 1   -> 2/3
        assert!((m.f1(0) - 6.0 / 7.0).abs() < 1e-12);
        assert!((m.f1(1) - 0.5).abs() < 1e-12);
        assert!((m.f1(2) - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.macro_f1() - (6.0 / 7.0 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn absent_classes_do_not_count_in_uar() {
        let mut m = ConfusionMatrix::new(4);
        m.add(0, 0);
        m.add(1, 0);
        assert_eq!(m.recall(3), None);
        assert!((m.unweighted_average_recall() - 0.5).abs() < 1e-12);
        let rows = m.row_percentages();
        assert_eq!(rows[1], vec![100.0, 0.0, 0.0, 0.0]);
        assert_eq!(rows[3], vec![0.0; 4]);
    }

    #[test]
    fn evaluator_tracks_speakers_and_loss() {
        let mut e = Evaluator::new(2);
        e.add(0, 0, "03", 0.5);
        e.add(1, 0, "03", 1.5);
        e.add(1, 1, "08", 1.0);
        let r = e.finish();
        assert_eq!(r.per_speaker["03"], (1, 2));
        assert_eq!(r.per_speaker["08"], (1, 1));
        assert!((r.loss - 1.0).abs() < 1e-12);
        assert!((r.wa - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn sample_standard_deviation() {
        let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!((m - 5.0).abs() < 1e-12);
        assert!((s - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[3.0]), (3.0, 0.0));
    }
}
