//! Fused softmax cross-entropy on the CPU, one row at a time. The row maximum is subtracted before
//! exponentiating, so logits of any finite size give finite results.

use super::check_len;
use crate::backends::geometry::{XentGeom, XentStats};
use crate::tensor::Real;
use crate::{shape_err, Result};

/// WRITES losses (N) and d_logits (N, CLASSES) = (softmax − onehot) / N; returns the mean loss and
/// the number of rows whose first maximum is the label.
pub(super) fn softmax_xent<T: Real>(
    g: &XentGeom,
    logits: &[T],
    labels: &[u32],
    losses: &mut [T],
    d_logits: &mut [T],
) -> Result<XentStats> {
    if g.n <= 0 || g.classes < 2 {
        return Err(shape_err!("invalid softmax cross-entropy geometry {g:?}"));
    }
    let (n, k) = (g.n as usize, g.classes as usize);
    check_len("softmax_xent logits", logits.len(), n * k)?;
    check_len("softmax_xent labels", labels.len(), n)?;
    check_len("softmax_xent losses", losses.len(), n)?;
    check_len("softmax_xent d_logits", d_logits.len(), n * k)?;
    if let Some((row, &label)) = labels[..n]
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= k)
    {
        return Err(shape_err!(
            "label {label} of row {row} is not one of the {k} classes"
        ));
    }
    let inv_n = T::from_f64(1.0 / n as f64);
    let (mut total, mut correct) = (0.0f64, 0usize);
    for row in 0..n {
        let z = &logits[row * k..][..k];
        let label = labels[row] as usize;
        let (mut max, mut argmax) = (z[0], 0);
        for (j, &v) in z.iter().enumerate().skip(1) {
            if v > max {
                (max, argmax) = (v, j);
            }
        }
        let sum: T = z.iter().map(|&v| (v - max).exp()).sum();
        let loss = sum.ln() - (z[label] - max);
        losses[row] = loss;
        total += loss.to_f64();
        correct += usize::from(argmax == label);
        for (j, (d, &v)) in d_logits[row * k..][..k].iter_mut().zip(z).enumerate() {
            let p = (v - max).exp() / sum;
            *d = (if j == label { p - T::ONE } else { p }) * inv_n;
        }
    }
    Ok(XentStats {
        mean_loss: total / n as f64,
        correct,
    })
}
