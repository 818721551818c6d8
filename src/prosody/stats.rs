//! Statistics of a contour shared by the basic prosody set ([`super::basic`]) and the functionals
//! of the full set ([`super::functionals`]): pitch in semitones, mean and standard deviation,
//! interpolated quantiles, the least-squares slope, and run lengths. A statistic of an empty set
//! is 0.

/// Semitones of `hz` above 27.5 Hz (A0), as eGeMAPS reports F0.
pub fn semitones(hz: f32) -> f64 {
    12.0 * (hz as f64 / 27.5).log2()
}

/// Mean and (population) standard deviation; (0, 0) for an empty slice.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

/// The `q`-quantile (0 ≤ q ≤ 1) with linear interpolation between order statistics; 0 for an
/// empty slice.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    quantile_sorted(&s, q)
}

/// [`quantile`] of an already sorted, non-empty slice (several quantiles of one sort).
pub fn quantile_sorted(s: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Least-squares slope of `y` against `x`; 0 with fewer than two distinct `x`.
pub fn slope(x: &[f64], y: &[f64]) -> f64 {
    let (mx, _) = mean_std(x);
    let (my, _) = mean_std(y);
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    if sxx <= 0.0 {
        return 0.0;
    }
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    sxy / sxx
}

/// Lengths of the runs of `true` and of `false` in `flags`.
pub fn runs(flags: &[bool]) -> (Vec<usize>, Vec<usize>) {
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < flags.len() {
        let v = flags[i];
        let start = i;
        while i < flags.len() && flags[i] == v {
            i += 1;
        }
        if v { &mut on } else { &mut off }.push(i - start);
    }
    (on, off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_helpers() {
        let v = [4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.1), 1.4); // position 0.4 between 1 and 2
        assert_eq!(quantile(&[], 0.5), 0.0);
        let (m, s) = mean_std(&[2.0, 4.0]);
        assert_eq!((m, s), (3.0, 1.0));
        assert!((slope(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0]) - 2.0).abs() < 1e-12);
        assert_eq!(
            runs(&[true, true, false, true, false, false]),
            (vec![2, 1], vec![1, 2])
        );
    }
}
