//! Fused softmax cross-entropy on the CPU, one row at a time. The row maximum is subtracted before
//! exponentiating, so logits of any finite size give finite results.

use super::{SoftXentIo, SoftmaxXentOp, XentGeom, XentIo, XentStats};
use crate::backends::cpu::{check_len, CpuBackend};
use crate::tensor::Real;
use crate::{shape_err, Result};

impl<T: Real> SoftmaxXentOp for CpuBackend<T> {
    /// WRITES losses (N) and d_logits (N, CLASSES) = (softmax − onehot) / N; returns the mean loss and
    /// the number of rows whose first maximum is the label.
    fn softmax_xent(
        &self,
        g: &XentGeom,
        io: XentIo<'_, Self::Buf, Self::Idx>,
    ) -> Result<XentStats> {
        let XentIo {
            logits,
            labels,
            losses,
            d_logits,
        } = io;
        g.validate()?;
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

    /// Soft-target softmax cross-entropy (see [`crate::backends::Backend::softmax_xent_soft`]): WRITES
    /// losses (N) = −Σ_j w_j t_j log p_j and d_logits = (p · Σ_j w_j t_j − w ⊙ t)/N.
    fn softmax_xent_soft(&self, g: &XentGeom, io: SoftXentIo<'_, Self::Buf>) -> Result<XentStats> {
        let SoftXentIo {
            logits,
            targets,
            class_weights: weights,
            losses,
            d_logits,
        } = io;
        let weights = weights.map(|w| w.as_slice());
        g.validate()?;
        let (n, k) = (g.n as usize, g.classes as usize);
        check_len("softmax_xent_soft logits", logits.len(), n * k)?;
        check_len("softmax_xent_soft targets", targets.len(), n * k)?;
        check_len("softmax_xent_soft losses", losses.len(), n)?;
        check_len("softmax_xent_soft d_logits", d_logits.len(), n * k)?;
        if let Some(w) = weights {
            check_len("softmax_xent_soft class weights", w.len(), k)?;
        }
        let weight = |j: usize| weights.map_or(T::ONE, |w| w[j]);
        let first_max = |v: &[T]| (1..v.len()).fold(0, |b, j| if v[j] > v[b] { j } else { b });
        let inv_n = T::from_f64(1.0 / n as f64);
        let (mut total, mut correct) = (0.0f64, 0usize);
        for row in 0..n {
            let z = &logits[row * k..][..k];
            let t = &targets[row * k..][..k];
            let argmax = first_max(z);
            let max = z[argmax];
            let sum: T = z.iter().map(|&v| (v - max).exp()).sum();
            let log_sum = sum.ln();
            let (mut wt, mut loss) = (T::ZERO, T::ZERO);
            for j in 0..k {
                wt += weight(j) * t[j];
                loss += weight(j) * t[j] * (log_sum - (z[j] - max));
            }
            losses[row] = loss;
            total += loss.to_f64();
            correct += usize::from(argmax == first_max(t));
            for (j, (d, &v)) in d_logits[row * k..][..k].iter_mut().zip(z).enumerate() {
                let p = (v - max).exp() / sum;
                *d = (p * wt - weight(j) * t[j]) * inv_n;
            }
        }
        Ok(XentStats {
            mean_loss: total / n as f64,
            correct,
        })
    }
}
