//! Soft training targets: label smoothing and mixup (Zhang et al., "mixup: Beyond Empirical Risk
//! Minimization", ICLR 2018), for the soft-target softmax cross-entropy.
//!
//! - Label smoothing `ε`: the target of class `y` is `(1 − ε)·onehot(y) + ε/K` over `K` classes.
//! - Mixup `α`: one `λ ~ Beta(α, α)` per batch and a random partner `π(i)` for every sample (a
//!   permutation of the batch); input `i` becomes `λ·x_i + (1 − λ)·x_π(i)` and its target
//!   `λ·t_i + (1 − λ)·t_π(i)`. Every per-sample array of the batch (the image, the prosody side
//!   input) is mixed with the same `λ` and partners ([`MixPlan::mix`]).
//!
//! Both are pure functions of their generator, which the trainer seeds from (seed, fold, step), so
//! a resumed run mixes exactly as the uninterrupted one.

use rand::seq::SliceRandom;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::{config_err, Result};

/// Soft targets (N × `classes`, row-major) of hard `labels` with label smoothing `epsilon`
/// (0 = one-hot).
pub fn smoothed_targets(labels: &[u32], classes: usize, epsilon: f32) -> Result<Vec<f32>> {
    if !(0.0..1.0).contains(&epsilon) {
        return Err(config_err!(
            "label smoothing must be in [0, 1), got {epsilon}"
        ));
    }
    let mut t = vec![epsilon / classes as f32; labels.len() * classes];
    for (row, &y) in t.chunks_exact_mut(classes).zip(labels) {
        let y = y as usize;
        if y >= classes {
            return Err(config_err!("label {y} is not below the {classes} classes"));
        }
        row[y] += 1.0 - epsilon;
    }
    Ok(t)
}

/// One batch's mixing: the weight `lambda` of each sample itself and its partner.
#[derive(Clone, Debug, PartialEq)]
pub struct MixPlan {
    pub lambda: f32,
    pub partner: Vec<usize>,
}

impl MixPlan {
    /// Draw `λ ~ Beta(alpha, alpha)` and a random permutation of `n` samples.
    pub fn draw(n: usize, alpha: f32, rng: &mut ChaCha8Rng) -> Result<Self> {
        if !(alpha > 0.0 && alpha.is_finite()) {
            return Err(config_err!("mixup alpha must be positive, got {alpha}"));
        }
        let lambda = beta(alpha as f64, alpha as f64, rng) as f32;
        let mut partner: Vec<usize> = (0..n).collect();
        partner.shuffle(rng);
        Ok(MixPlan { lambda, partner })
    }

    /// Mix `data` (N samples of `per_sample` values each) in place.
    pub fn mix(&self, data: &mut [f32], per_sample: usize) {
        assert_eq!(
            data.len(),
            self.partner.len() * per_sample,
            "mixup: data does not hold one row per sample"
        );
        let original = data.to_vec();
        let (a, b) = (self.lambda, 1.0 - self.lambda);
        for (i, row) in data.chunks_exact_mut(per_sample).enumerate() {
            let p = self.partner[i];
            let other = &original[p * per_sample..(p + 1) * per_sample];
            row.iter_mut()
                .zip(other)
                .for_each(|(x, &y)| *x = a * *x + b * y);
        }
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// A Gamma(shape, 1) draw: Marsaglia and Tsang's squeeze method for shape ≥ 1, and for shape < 1
/// the boost `Gamma(shape + 1) · U^(1/shape)`.
fn gamma(shape: f64, rng: &mut ChaCha8Rng) -> f64 {
    if shape < 1.0 {
        let u: f64 = 1.0 - rng.random::<f64>();
        return gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Beta(a, b) draw as `X / (X + Y)` of two Gamma draws.
pub fn beta(a: f64, b: f64, rng: &mut ChaCha8Rng) -> f64 {
    let x = gamma(a, rng);
    let y = gamma(b, rng);
    if x + y > 0.0 {
        x / (x + y)
    } else {
        0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn smoothing_keeps_rows_distributions() {
        let t = smoothed_targets(&[2, 0], 4, 0.1).unwrap();
        let want = [0.025, 0.025, 0.925, 0.025, 0.925, 0.025, 0.025, 0.025];
        // Tolerance 1e-7: 0.9 + 0.025 rounded in f32.
        assert!(
            t.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-7),
            "{t:?}"
        );
        for row in t.chunks_exact(4) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert_eq!(smoothed_targets(&[1], 3, 0.0).unwrap(), vec![0.0, 1.0, 0.0]);
        assert!(smoothed_targets(&[3], 3, 0.1).is_err());
        assert!(smoothed_targets(&[0], 3, 1.0).is_err());
    }

    /// Beta(a, a) has mean ½ and variance 1/(4(2a + 1)); 40 000 draws give the mean to about
    /// ±0.003 and the variance to a few per cent (tolerances are about four standard errors).
    #[test]
    fn beta_draws_have_the_right_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for a in [0.2, 0.4, 1.0, 2.5] {
            let n = 40_000;
            let v: Vec<f64> = (0..n).map(|_| beta(a, a, &mut rng)).collect();
            assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
            let m = v.iter().sum::<f64>() / n as f64;
            let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n as f64;
            let want = 1.0 / (4.0 * (2.0 * a + 1.0));
            assert!((m - 0.5).abs() < 0.01, "a={a}: mean {m}");
            assert!(
                (var - want).abs() < 0.05 * want,
                "a={a}: var {var} vs {want}"
            );
        }
    }

    /// Mixing is the convex combination with the partner, the same for every array of the batch,
    /// and mixed one-hot targets stay distributions whose weights are λ and 1 − λ.
    #[test]
    fn mixing_is_a_convex_combination_with_the_partner() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let plan = MixPlan::draw(4, 0.4, &mut rng).unwrap();
        let mut sorted = plan.partner.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3]);
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut mixed = x.clone();
        plan.mix(&mut mixed, 3);
        let l = plan.lambda;
        for i in 0..4 {
            for k in 0..3 {
                let want = l * x[i * 3 + k] + (1.0 - l) * x[plan.partner[i] * 3 + k];
                assert!((mixed[i * 3 + k] - want).abs() < 1e-5);
            }
        }
        let mut t = smoothed_targets(&[0, 1, 2, 3], 4, 0.0).unwrap();
        plan.mix(&mut t, 4);
        for (i, row) in t.chunks_exact(4).enumerate() {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            if plan.partner[i] != i {
                assert!(
                    (row[i] - l).abs() < 1e-6 && (row[plan.partner[i]] - (1.0 - l)).abs() < 1e-6
                );
            }
        }
        assert!(MixPlan::draw(4, 0.0, &mut rng).is_err());
    }
}
