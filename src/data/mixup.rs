//! Soft training targets: label smoothing and mixup (Zhang et al., "mixup: Beyond Empirical Risk
//! Minimization", ICLR 2018), for the soft-target softmax cross-entropy.
//!
//! - Label smoothing `ε`: the target of class `y` is `(1 − ε)·onehot(y) + ε/K` over `K` classes.
//! - Mixup `α`: for every sample `i` its own `λ_i ~ Beta(α, α)` and a random partner `π(i)` (a
//!   permutation of the batch); input `i` becomes `λ_i·x_i + (1 − λ_i)·x_π(i)` and its target
//!   `λ_i·t_i + (1 − λ_i)·t_π(i)`. Every per-sample array of the batch (the image, the prosody side
//!   input) is mixed with the same weights and partners ([`MixPlan::mix`]). One `λ` per sample
//!   rather than per batch keeps a batch from being mostly one image on some steps and an even
//!   blend on others, which would swing the batch-norm statistics from step to step.
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

/// One batch's mixing: for sample `i`, the weight `lambda[i]` of the sample itself and its
/// partner `partner[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct MixPlan {
    pub lambda: Vec<f32>,
    pub partner: Vec<usize>,
}

impl MixPlan {
    /// Draw a random permutation of `n` samples, then `λ_i ~ Beta(alpha, alpha)` for each sample.
    pub fn draw(n: usize, alpha: f32, rng: &mut ChaCha8Rng) -> Result<Self> {
        if !(alpha > 0.0 && alpha.is_finite()) {
            return Err(config_err!("mixup alpha must be positive, got {alpha}"));
        }
        let mut partner: Vec<usize> = (0..n).collect();
        partner.shuffle(rng);
        let lambda = (0..n)
            .map(|_| beta(alpha as f64, alpha as f64, rng) as f32)
            .collect();
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
        for (i, row) in data.chunks_exact_mut(per_sample).enumerate() {
            let p = self.partner[i];
            let (a, b) = (self.lambda[i], 1.0 - self.lambda[i]);
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

    /// Mixing is the convex combination with the partner at the sample's own λ, the same for
    /// every array of the batch, and mixed one-hot targets stay distributions whose weights are
    /// λ_i and 1 − λ_i. Tolerance 1e-5: one f32 multiply-add of values below 12.
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
        for i in 0..4 {
            let l = plan.lambda[i];
            for k in 0..3 {
                let want = l * x[i * 3 + k] + (1.0 - l) * x[plan.partner[i] * 3 + k];
                assert!((mixed[i * 3 + k] - want).abs() < 1e-5);
            }
        }
        let mut t = smoothed_targets(&[0, 1, 2, 3], 4, 0.0).unwrap();
        plan.mix(&mut t, 4);
        for (i, row) in t.chunks_exact(4).enumerate() {
            let l = plan.lambda[i];
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            if plan.partner[i] != i {
                assert!(
                    (row[i] - l).abs() < 1e-6 && (row[plan.partner[i]] - (1.0 - l)).abs() < 1e-6
                );
            }
        }
        assert!(MixPlan::draw(4, 0.0, &mut rng).is_err());
    }

    /// Every sample draws its own λ: over a batch of 64 at α = 0.4 (Beta(0.4, 0.4) puts most of its
    /// mass near 0 and 1) the weights are not all one value, and their spread is that of
    /// Beta(0.4, 0.4) (variance 1/7.2 ≈ 0.139; a batch of 64 estimates it to within about ±0.05, so
    /// the bound 0.07 is over four standard errors away, while one λ per batch gives 0).
    #[test]
    fn each_sample_draws_its_own_lambda() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let plan = MixPlan::draw(64, 0.4, &mut rng).unwrap();
        assert_eq!(plan.lambda.len(), 64);
        let m = plan.lambda.iter().map(|&l| l as f64).sum::<f64>() / 64.0;
        let var = plan
            .lambda
            .iter()
            .map(|&l| (l as f64 - m).powi(2))
            .sum::<f64>()
            / 64.0;
        assert!(
            var > 0.07,
            "λ variance {var} over the batch: {:?}",
            plan.lambda
        );
        // The mix of sample i uses λ_i: two samples with different λ mixed with the same partner
        // values come out different.
        let mut data: Vec<f32> = (0..64)
            .map(|i| if i % 2 == 0 { 1.0 } else { 0.0 })
            .collect();
        let original = data.clone();
        plan.mix(&mut data, 1);
        for i in 0..64 {
            let p = plan.partner[i];
            let want = plan.lambda[i] * original[i] + (1.0 - plan.lambda[i]) * original[p];
            assert!((data[i] - want).abs() < 1e-6, "sample {i}");
        }
    }
}
