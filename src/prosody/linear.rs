//! A multinomial logistic-regression classifier on fixed-length utterance vectors (the prosody
//! vector), in f64 on the host: the prosody branch's classifier when it is used on its own or
//! fused late with a network (class probabilities averaged), and the cheap baseline row beside the
//! linear SVM baselines (openSMILE functionals + SVM).
//!
//! Training minimises the class-balanced mean cross-entropy (each class weighted by
//! `n / (classes · n_class)`, as scikit-learn's `class_weight="balanced"`, so the UAR is not
//! sacrificed to the large classes) plus `l2/2 · ‖W‖²` (the biases are not penalised), by
//! Nesterov-accelerated gradient descent with the step `1/L` for the loss's smoothness bound
//! `L = ½ · max_w · mean(‖x‖² + 1) + l2`: convex, so the result depends only on the data, `l2` and
//! the iteration count, not on a seed. `l2` is chosen by an inner leave-one-speaker-out over the
//! training speakers only ([`select_l2`]), as the linear SVM baselines choose their C.

use rayon::prelude::*;

use crate::config_err;
use crate::Result;

/// Weights (classes × (dims + 1), the last column the bias).
#[derive(Clone, Debug, PartialEq)]
pub struct SoftmaxRegression {
    classes: usize,
    dims: usize,
    w: Vec<f64>,
}

/// Iterations of the optimiser (enough for the gradient norm to fall by several orders of
/// magnitude on z-normalised inputs of a few dozen dimensions).
pub const ITERATIONS: usize = 1500;

impl SoftmaxRegression {
    /// Fit on rows `x[i]` (all of one length) with labels `y[i] < classes`.
    ///
    /// With more dimensions than rows (a large functional set) and `l2 > 0`, the fit runs in the
    /// span of the training rows ([`RowSpan`]): the optimum lies in that span, so the model is the
    /// same, at a cost per iteration of rows² instead of rows · dims.
    pub fn fit(x: &[&[f32]], y: &[usize], classes: usize, l2: f64) -> Result<Self> {
        let dims = x.first().map_or(0, |r| r.len());
        if l2 > 0.0 && dims > x.len() && x.iter().all(|r| r.len() == dims) {
            let span = RowSpan::new(x);
            let coords: Vec<&[f32]> = span.coords.iter().map(|c| c.as_slice()).collect();
            let reduced = Self::fit_direct(&coords, y, classes, l2)?;
            return Ok(span.lift(&reduced, x));
        }
        Self::fit_direct(x, y, classes, l2)
    }

    fn fit_direct(x: &[&[f32]], y: &[usize], classes: usize, l2: f64) -> Result<Self> {
        if x.is_empty() || x.len() != y.len() {
            return Err(config_err!(
                "logistic regression: {} rows for {} labels",
                x.len(),
                y.len()
            ));
        }
        let dims = x[0].len();
        if x.iter().any(|r| r.len() != dims) || y.iter().any(|&c| c >= classes) || l2 < 0.0 {
            return Err(config_err!(
                "logistic regression: rows of unequal length, a label ≥ {classes}, or l2 < 0"
            ));
        }
        let n = x.len();
        let mut count = vec![0usize; classes];
        y.iter().for_each(|&c| count[c] += 1);
        let present = count.iter().filter(|&&c| c > 0).count().max(1);
        let weight: Vec<f64> = count
            .iter()
            .map(|&c| {
                if c == 0 {
                    0.0
                } else {
                    n as f64 / (present * c) as f64
                }
            })
            .collect();
        let max_w = weight.iter().cloned().fold(0.0, f64::max);
        let mean_sq = x
            .iter()
            .map(|r| 1.0 + r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>())
            .sum::<f64>()
            / n as f64;
        let step = 1.0 / (0.5 * max_w * mean_sq + l2);
        let stride = dims + 1;
        let mut model = SoftmaxRegression {
            classes,
            dims,
            w: vec![0.0; classes * stride],
        };
        let mut previous = model.w.clone();
        let mut look = model.w.clone();
        let mut grad = vec![0.0; model.w.len()];
        let mut p = vec![0.0; classes];
        for it in 0..ITERATIONS {
            grad.iter_mut().for_each(|g| *g = 0.0);
            for (row, &label) in x.iter().zip(y) {
                probabilities(&look, classes, row, &mut p);
                let wi = weight[label] / n as f64;
                for c in 0..classes {
                    let e = wi * (p[c] - f64::from(u8::from(c == label)));
                    let g = &mut grad[c * stride..(c + 1) * stride];
                    for (gk, &v) in g.iter_mut().zip(row.iter()) {
                        *gk += e * v as f64;
                    }
                    g[dims] += e;
                }
            }
            for c in 0..classes {
                for k in 0..dims {
                    grad[c * stride + k] += l2 * look[c * stride + k];
                }
            }
            // Nesterov: w⁺ = look − step·∇f(look); look⁺ = w⁺ + β·(w⁺ − w), with the strongly
            // convex β = (1 − √(μ/L)) / (1 + √(μ/L)) for μ = l2 (linear convergence), else t/(t+3).
            let momentum = if l2 > 0.0 {
                let q = (l2 * step).sqrt();
                (1.0 - q) / (1.0 + q)
            } else {
                it as f64 / (it as f64 + 3.0)
            };
            for k in 0..model.w.len() {
                let next = look[k] - step * grad[k];
                look[k] = next + momentum * (next - previous[k]);
                previous[k] = next;
            }
        }
        model.w = previous;
        Ok(model)
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Input length.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// One row per class: its weights, then its bias (what [`SoftmaxRegression::from_rows`]
    /// reads back).
    pub fn rows(&self) -> Vec<Vec<f64>> {
        self.w
            .chunks_exact(self.dims + 1)
            .map(<[f64]>::to_vec)
            .collect()
    }

    /// The model of [`SoftmaxRegression::rows`]: at least two classes, every row of one length
    /// (inputs + 1 for the bias).
    pub fn from_rows(rows: &[Vec<f64>]) -> Result<Self> {
        let stride = rows.first().map_or(0, Vec::len);
        if rows.len() < 2 || stride < 1 || rows.iter().any(|r| r.len() != stride) {
            return Err(config_err!(
                "logistic regression: expected one row of weights and bias per class (at least two \
                 classes, rows of one length), got {} rows",
                rows.len()
            ));
        }
        if rows.iter().flatten().any(|v| !v.is_finite()) {
            return Err(config_err!("logistic regression: a weight is not finite"));
        }
        Ok(SoftmaxRegression {
            classes: rows.len(),
            dims: stride - 1,
            w: rows.concat(),
        })
    }

    /// Class probabilities of one row.
    pub fn predict(&self, row: &[f32]) -> Vec<f64> {
        assert_eq!(row.len(), self.dims, "row length");
        let mut p = vec![0.0; self.classes];
        probabilities(&self.w, self.classes, row, &mut p);
        p
    }

    /// The class-balanced mean cross-entropy plus the L2 term on `x`, `y` (what [`fit`] minimises;
    /// for tests and diagnostics).
    ///
    /// [`fit`]: SoftmaxRegression::fit
    pub fn objective(&self, x: &[&[f32]], y: &[usize], l2: f64) -> f64 {
        let n = x.len();
        let mut count = vec![0usize; self.classes];
        y.iter().for_each(|&c| count[c] += 1);
        let present = count.iter().filter(|&&c| c > 0).count().max(1);
        let mut loss = 0.0;
        for (row, &label) in x.iter().zip(y) {
            let w = n as f64 / (present * count[label]) as f64;
            loss -= w * self.predict(row)[label].max(1e-300).ln();
        }
        let stride = self.dims + 1;
        let penalty: f64 = (0..self.classes)
            .flat_map(|c| (0..self.dims).map(move |k| c * stride + k))
            .map(|k| self.w[k] * self.w[k])
            .sum();
        loss / n as f64 + 0.5 * l2 * penalty
    }
}

/// An orthonormal basis of the span of a set of rows, from the Cholesky factor of their Gram
/// matrix `G = X·Xᵀ = L·Lᵀ` (columns of `L` whose pivot falls below `1e-10 · max Gᵢᵢ` are
/// dependent and left out): basis vector `k` is `Σ_{p ∈ pivots} (L_PP⁻ᵀ)_{pk} · x_p`, and row
/// `i`'s coordinates in it are `L[i, pivots]`, so inner products, norms, and hence a linear
/// model's scores and its L2 penalty, are those of the original rows.
struct RowSpan {
    /// The independent rows, in order.
    pivots: Vec<usize>,
    /// `L` (rows × rows, row-major); only the pivot columns are used.
    l: Vec<f64>,
    /// Each row's coordinates (pivots.len() values).
    coords: Vec<Vec<f32>>,
}

impl RowSpan {
    fn new(x: &[&[f32]]) -> Self {
        let n = x.len();
        let mut g = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v: f64 = x[i]
                    .iter()
                    .zip(x[j])
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                g[i * n + j] = v;
                g[j * n + i] = v;
            }
        }
        let max_diag = (0..n).map(|i| g[i * n + i]).fold(0.0, f64::max);
        let mut l = vec![0f64; n * n];
        let mut pivots = Vec::new();
        for j in 0..n {
            let dot = |l: &[f64], a: usize, b: usize| -> f64 {
                pivots.iter().map(|&k| l[a * n + k] * l[b * n + k]).sum()
            };
            let d = g[j * n + j] - dot(&l, j, j);
            if d <= 1e-10 * max_diag {
                continue;
            }
            let root = d.sqrt();
            l[j * n + j] = root;
            for i in j + 1..n {
                l[i * n + j] = (g[i * n + j] - dot(&l, i, j)) / root;
            }
            pivots.push(j);
        }
        let coords = (0..n)
            .map(|i| pivots.iter().map(|&k| l[i * n + k] as f32).collect())
            .collect();
        RowSpan { pivots, l, coords }
    }

    /// The model on the original rows `x` whose scores equal `reduced`'s on the coordinates.
    fn lift(&self, reduced: &SoftmaxRegression, x: &[&[f32]]) -> SoftmaxRegression {
        let (n, r, dims) = (x.len(), self.pivots.len(), x[0].len());
        let rs = r + 1;
        let stride = dims + 1;
        let mut w = vec![0f64; reduced.classes * stride];
        for c in 0..reduced.classes {
            // α = L_PP⁻ᵀ · v: back substitution on the pivots' lower-triangular block.
            let v = &reduced.w[c * rs..c * rs + r];
            let mut alpha = vec![0f64; r];
            for a in (0..r).rev() {
                let pa = self.pivots[a];
                let mut acc = v[a];
                for (&pb, &ab) in self.pivots[a + 1..].iter().zip(&alpha[a + 1..]) {
                    acc -= self.l[pb * n + pa] * ab;
                }
                alpha[a] = acc / self.l[pa * n + pa];
            }
            let wc = &mut w[c * stride..(c + 1) * stride];
            for (a, &p) in alpha.iter().zip(&self.pivots) {
                for (wk, &xk) in wc[..dims].iter_mut().zip(x[p]) {
                    *wk += a * xk as f64;
                }
            }
            wc[dims] = reduced.w[c * rs + r];
        }
        SoftmaxRegression {
            classes: reduced.classes,
            dims,
            w,
        }
    }
}

fn probabilities(w: &[f64], classes: usize, row: &[f32], out: &mut [f64]) {
    let stride = row.len() + 1;
    for (c, o) in out.iter_mut().enumerate().take(classes) {
        let wc = &w[c * stride..(c + 1) * stride];
        *o = wc[row.len()]
            + wc[..row.len()]
                .iter()
                .zip(row)
                .map(|(&a, &b)| a * b as f64)
                .sum::<f64>();
    }
    let max = out.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    out.iter_mut().for_each(|v| {
        *v = (*v - max).exp();
        sum += *v;
    });
    out.iter_mut().for_each(|v| *v /= sum);
}

/// The candidate L2 strengths [`select_l2`] tries.
pub const L2_GRID: [f64; 6] = [1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3];

/// The `l2` of `grid` with the best pooled UAR over an inner leave-one-speaker-out on `train`
/// (indices into `x`, `y`, `speakers`): only training speakers are ever held out, so the test
/// speaker plays no part in the choice. Ties go to the stronger penalty.
pub fn select_l2<S: AsRef<str> + PartialEq + Sync>(
    x: &[Vec<f32>],
    y: &[usize],
    speakers: &[S],
    train: &[usize],
    classes: usize,
    grid: &[f64],
) -> Result<f64> {
    let mut inner: Vec<&str> = train.iter().map(|&i| speakers[i].as_ref()).collect();
    inner.sort();
    inner.dedup();
    if inner.len() < 2 {
        return Err(config_err!(
            "choosing the L2 strength needs at least two training speakers"
        ));
    }
    // Every (l2, held-out speaker) fit is independent: in parallel, merged in a fixed order.
    let jobs: Vec<(f64, &str)> = grid
        .iter()
        .rev()
        .flat_map(|&l2| inner.iter().map(move |&h| (l2, h)))
        .collect();
    let outcomes: Vec<Result<Vec<(usize, usize)>>> = jobs
        .par_iter()
        .map(|&(l2, held)| {
            let fit_on: Vec<usize> = train
                .iter()
                .copied()
                .filter(|&i| speakers[i].as_ref() != held)
                .collect();
            let rows: Vec<&[f32]> = fit_on.iter().map(|&i| x[i].as_slice()).collect();
            let labels: Vec<usize> = fit_on.iter().map(|&i| y[i]).collect();
            let m = SoftmaxRegression::fit(&rows, &labels, classes, l2)?;
            Ok(train
                .iter()
                .filter(|&&i| speakers[i].as_ref() == held)
                .map(|&i| (y[i], argmax(&m.predict(&x[i]))))
                .collect())
        })
        .collect();
    let mut best: Option<(f64, f64)> = None;
    let mut outcomes = outcomes.into_iter();
    for &l2 in grid.iter().rev() {
        let mut pooled = Vec::new();
        for _ in &inner {
            pooled.extend(outcomes.next().expect("one outcome per job")?);
        }
        let uar = unweighted_average_recall(&pooled, classes);
        if best.is_none_or(|(b, _)| uar > b) {
            best = Some((uar, l2));
        }
    }
    Ok(best.expect("non-empty grid").1)
}

/// The first index of the largest value (a class prediction from probabilities).
fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// The mean of the per-class recalls of `(truth, predicted)` pairs over the classes that occur
/// as a truth: the score [`select_l2`] maximises, as the evaluation reports it.
fn unweighted_average_recall(pairs: &[(usize, usize)], classes: usize) -> f64 {
    let (mut hits, mut support) = (vec![0u64; classes], vec![0u64; classes]);
    for &(truth, predicted) in pairs {
        support[truth] += 1;
        hits[truth] += u64::from(truth == predicted);
    }
    let (mut sum, mut n) = (0.0, 0usize);
    for (h, s) in hits.iter().zip(&support).filter(|(_, &s)| s > 0) {
        sum += *h as f64 / *s as f64;
        n += 1;
    }
    if n > 0 {
        sum / n as f64
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// Three Gaussian classes in 4-D with different means: the fit separates them (training
    /// accuracy above 90 %), its gradient is near zero (it is at the minimum: moving any weight
    /// by ±1e-3 does not lower the objective), and probabilities sum to 1.
    #[test]
    fn fits_separable_classes_to_the_minimum() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let means = [
            [2.0, 0.0, 0.0, 1.0],
            [0.0, 2.0, 0.0, -1.0],
            [0.0, 0.0, 2.0, 0.0],
        ];
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (c, m) in means.iter().enumerate() {
            // Unbalanced: 60, 30, 15 samples.
            for _ in 0..(60 >> c) {
                x.push(
                    m.iter()
                        .map(|&v| v + rng.random_range(-1.0f32..1.0))
                        .collect::<Vec<f32>>(),
                );
                y.push(c);
            }
        }
        let rows: Vec<&[f32]> = x.iter().map(|r| r.as_slice()).collect();
        let l2 = 0.01;
        let m = SoftmaxRegression::fit(&rows, &y, 3, l2).unwrap();
        let correct = rows
            .iter()
            .zip(&y)
            .filter(|(r, &c)| argmax(&m.predict(r)) == c)
            .count();
        assert!(correct * 10 > rows.len() * 9, "{correct} of {}", rows.len());
        let p = m.predict(rows[0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let f0 = m.objective(&rows, &y, l2);
        for k in 0..m.w.len() {
            for delta in [-1e-3, 1e-3] {
                let mut other = m.clone();
                other.w[k] += delta;
                // Tolerance 1e-9: a quadratic rise of ~1e-7 or more at the minimum, against f64
                // rounding of ~1e-15.
                assert!(
                    other.objective(&rows, &y, l2) > f0 - 1e-9,
                    "weight {k}: moving by {delta} lowers the objective"
                );
            }
        }
    }

    /// Recall per class present as a truth, averaged: class 0 has 1 of 2, class 1 has 2 of 2,
    /// class 2 has 0 of 1, class 3 never occurs (left out, not counted as 0): (0.5 + 1 + 0) / 3.
    /// Predictions of the largest probability take the first of equal ones.
    #[test]
    fn unweighted_average_recall_and_argmax() {
        let pairs = [(0, 0), (0, 1), (1, 1), (1, 1), (2, 3)];
        assert_eq!(unweighted_average_recall(&pairs, 4), 1.5 / 3.0);
        assert_eq!(unweighted_average_recall(&[], 4), 0.0);
        assert_eq!(argmax(&[0.1, 0.4, 0.4, 0.1]), 1);
        assert_eq!(argmax(&[0.9, 0.1]), 0);
    }

    /// The inner leave-one-speaker-out never looks at a speaker outside `train`: changing the
    /// rows of a non-training speaker leaves the choice unchanged.
    #[test]
    fn l2_selection_ignores_speakers_outside_training() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let speakers: Vec<String> = (0..80).map(|i| format!("s{}", i % 4)).collect();
        let y: Vec<usize> = (0..80).map(|i| (i / 4) % 2).collect();
        let mut x: Vec<Vec<f32>> = y
            .iter()
            .map(|&c| vec![c as f32 + rng.random_range(-1.5f32..1.5), rng.random()])
            .collect();
        let train: Vec<usize> = (0..80).filter(|i| i % 4 != 3).collect();
        let a = select_l2(&x, &y, &speakers, &train, 2, &L2_GRID).unwrap();
        for i in (0..80).filter(|i| i % 4 == 3) {
            x[i] = vec![100.0, -100.0];
        }
        let b = select_l2(&x, &y, &speakers, &train, 2, &L2_GRID).unwrap();
        assert_eq!(a, b);
        assert!(select_l2(&x, &y, &speakers, &[0, 4], 2, &L2_GRID).is_err());
    }

    /// More dimensions than rows: the fit in the rows' span is the same model as the direct fit
    /// (same objective at the optimum, same probabilities on new rows), including rows that are
    /// linear combinations of others (each speaker's z-normalised rows sum to zero). Tolerances:
    /// both fits stop after the same number of iterations of a linearly convergent method, so
    /// they agree to ~1e-6 in probability; the objectives to 1e-8.
    #[test]
    fn the_row_span_fit_is_the_direct_fit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (n, dims) = (24, 60);
        let mut x: Vec<Vec<f32>> = (0..n)
            .map(|_| (0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect())
            .collect();
        // Row 23 = row 0 − row 1: a dependent row.
        x[23] = x[0].iter().zip(&x[1]).map(|(a, b)| a - b).collect();
        let y: Vec<usize> = (0..n).map(|i| (i * 7 + i / 5) % 3).collect();
        let rows: Vec<&[f32]> = x.iter().map(|r| r.as_slice()).collect();
        let l2 = 0.1;
        let span = RowSpan::new(&rows);
        assert_eq!(span.pivots.len(), n - 1, "the dependent row is not a pivot");
        let reduced = SoftmaxRegression::fit(&rows, &y, 3, l2).unwrap();
        let direct = SoftmaxRegression::fit_direct(&rows, &y, 3, l2).unwrap();
        let (a, b) = (
            reduced.objective(&rows, &y, l2),
            direct.objective(&rows, &y, l2),
        );
        assert!((a - b).abs() < 1e-8, "objectives {a} vs {b}");
        for _ in 0..5 {
            let new: Vec<f32> = (0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            for (p, q) in reduced.predict(&new).iter().zip(direct.predict(&new)) {
                assert!((p - q).abs() < 1e-6, "probabilities {p} vs {q}");
            }
        }
    }
}
