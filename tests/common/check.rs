//! THE tolerance rule for comparing a backend with the CPU reference:
//!
//! ```text
//! |a − b| ≤ atol + rtol · |ref|
//! ```
//!
//! with one named [`Tolerance`] per op (in its folder, `rescnn::backends::ops::<op>`), each with the
//! reason for its size. A failure reports the largest absolute and relative errors and the first
//! mismatching elements.

use std::fmt::Write as _;

pub use rescnn::backends::ops::Tolerance;
use rescnn::tensor::Real;

/// Compare `got` with `reference` element by element under `tol`. `what` names the tensor in the
/// message (e.g. "maxpool dx, batch 3, k=3 s=2").
pub fn compare<A: Real, B: Real>(
    tol: &Tolerance,
    what: &str,
    got: &[A],
    reference: &[B],
) -> Result<(), String> {
    if got.len() != reference.len() {
        return Err(format!(
            "{what}: {} values, but the reference has {}",
            got.len(),
            reference.len()
        ));
    }
    let mut max_abs = 0.0f64;
    let mut max_rel = 0.0f64;
    let mut bad: Vec<usize> = Vec::new();
    for (i, (a, b)) in got.iter().zip(reference).enumerate() {
        let (a, b) = (a.to_f64(), b.to_f64());
        let err = (a - b).abs();
        let ok = if a.is_nan() || b.is_nan() {
            a.is_nan() && b.is_nan()
        } else if a == b {
            true // equal infinities
        } else {
            err <= tol.atol + tol.rtol * b.abs()
        };
        if err.is_finite() {
            max_abs = max_abs.max(err);
            if b != 0.0 {
                max_rel = max_rel.max(err / b.abs());
            }
        }
        if !ok {
            bad.push(i);
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "{what}: {} of {} values outside |a − b| ≤ {} + {}·|ref| ({} tolerance: {}); max abs error {max_abs:.3e}, max rel error {max_rel:.3e}; first mismatches:",
        bad.len(),
        got.len(),
        tol.atol,
        tol.rtol,
        tol.name,
        tol.reason
    );
    for &i in bad.iter().take(8) {
        let (a, b) = (got[i].to_f64(), reference[i].to_f64());
        write!(
            msg,
            "\n  [{i}] got {a:.9e}, reference {b:.9e}, |diff| {:.3e}",
            (a - b).abs()
        )
        .unwrap();
    }
    Err(msg)
}

/// [`compare`], panicking with its message (for tests).
#[track_caller]
pub fn assert_close<A: Real, B: Real>(tol: &Tolerance, what: &str, got: &[A], reference: &[B]) {
    if let Err(msg) = compare(tol, what, got, reference) {
        panic!("{msg}");
    }
}

/// Exact comparison of index tensors (argmax), with the same style of report.
#[track_caller]
pub fn assert_same_indices(what: &str, got: &[u32], reference: &[u32]) {
    assert_eq!(got.len(), reference.len(), "{what}: lengths differ");
    let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i] != reference[i]).collect();
    if !bad.is_empty() {
        let first: Vec<String> = bad
            .iter()
            .take(8)
            .map(|&i| format!("[{i}] got {}, reference {}", got[i], reference[i]))
            .collect();
        panic!(
            "{what}: {} of {} indices differ (must be exact); first: {}",
            bad.len(),
            got.len(),
            first.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tolerance = Tolerance {
        name: "test",
        atol: 1e-3,
        rtol: 1e-2,
        reason: "test",
    };

    #[test]
    fn the_rule_is_atol_plus_rtol_times_the_reference() {
        // 1e-3 + 1e-2·100 = 1.001 allowed.
        assert!(compare(&T, "x", &[101.0f32], &[100.0f32]).is_ok());
        assert!(compare(&T, "x", &[101.01f64], &[100.0f64]).is_err());
        // Near zero only atol is left.
        assert!(compare(&T, "x", &[0.0009f64], &[0.0f64]).is_ok());
        assert!(compare(&T, "x", &[0.0011f64], &[0.0f64]).is_err());
        // NaN matches only NaN; infinities only themselves.
        assert!(compare(&T, "x", &[f32::NAN], &[f32::NAN]).is_ok());
        assert!(compare(&T, "x", &[f32::NAN], &[1.0f32]).is_err());
        assert!(compare(&T, "x", &[f32::INFINITY], &[f32::INFINITY]).is_ok());
        assert!(compare(&T, "x", &[f32::INFINITY], &[1e30f32]).is_err());
    }

    #[test]
    fn a_failure_reports_max_errors_and_first_mismatches() {
        let got = [1.0f32, 2.5, 3.0, 10.0];
        let reference = [1.0f32, 2.0, 3.0, 4.0];
        let msg = compare(&T, "dx", &got, &reference).unwrap_err();
        assert!(msg.starts_with("dx: 2 of 4 values outside"), "{msg}");
        assert!(msg.contains("max abs error 6.000e0"), "{msg}");
        assert!(msg.contains("max rel error 1.500e0"), "{msg}");
        assert!(
            msg.contains("[1] got 2.5") && msg.contains("[3] got 1.0"),
            "{msg}"
        );
    }
}
