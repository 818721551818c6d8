//! Seeded He (Kaiming) initialisation, computed on the host in f64 so every backend and element type
//! starts from the same weights for the same seed.
//!
//! Weights of a ReLU layer are drawn from N(0, 2/fan_in) (He et al. 2015); the classifier, which has
//! no ReLU, from N(0, 1/fan_in) (the same rule with gain 1). Biases start at zero. Each parameter
//! tensor draws from its own ChaCha8 stream (stream = the tensor's index), so the values of one
//! tensor depend only on the seed and its position, never on how many numbers other tensors drew.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `len` samples of N(0, std²) from stream `stream` of the generator seeded with `seed`.
pub fn normal(seed: u64, stream: u64, len: usize, std: f64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut out = Vec::with_capacity(len + 1);
    while out.len() < len {
        // Box–Muller: u1 in (0, 1] keeps ln finite.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        out.push(std * radius * angle.cos());
        out.push(std * radius * angle.sin());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_has_the_requested_moments_and_is_seeded() {
        let v = normal(7, 3, 200_000, 0.5);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        // Standard errors: mean 0.5/√2e5 ≈ 1.1e-3, variance 0.25·√(2/2e5) ≈ 2.5e-3; allow ~4σ.
        assert!(mean.abs() < 5e-3, "mean {mean}");
        assert!((var - 0.25).abs() < 1e-2, "variance {var}");
        assert_eq!(v[..10], normal(7, 3, 10, 0.5)[..]);
        assert_ne!(v[..10], normal(7, 4, 10, 0.5)[..]);
        assert_ne!(v[..10], normal(8, 3, 10, 0.5)[..]);
    }
}
