//! Dense layers on the CPU: three GEMMs, multi-threaded inside the GEMM (the batch is too small to
//! split across cores).

use rayon::prelude::*;

use super::{DenseBackwardIo, DenseForwardIo, DenseGeom, DenseOp};
use crate::backends::cpu::gemm::{gemm, Threads, View};
use crate::backends::cpu::{check_len, CpuBackend};
use crate::tensor::Real;
use crate::Result;

fn dims(g: &DenseGeom) -> Result<(usize, usize, usize)> {
    g.validate()?;
    Ok((
        g.n as usize,
        g.in_features as usize,
        g.out_features as usize,
    ))
}

impl<T: Real> DenseOp for CpuBackend<T> {
    /// WRITES y (N, OUT) = [ReLU](x (N, IN) · wᵀ + b).
    fn dense_forward(&self, g: &DenseGeom, io: DenseForwardIo<'_, Self::Buf>) -> Result<()> {
        let DenseForwardIo { x, w, b, y } = io;
        let (n, fin, fout) = dims(g)?;
        check_len("dense x", x.len(), n * fin)?;
        check_len("dense w", w.len(), fout * fin)?;
        check_len("dense b", b.len(), fout)?;
        check_len("dense y", y.len(), n * fout)?;
        let y = &mut y[..n * fout];
        for row in y.chunks_mut(fout) {
            row.copy_from_slice(&b[..fout]);
        }
        gemm(
            n,
            fout,
            fin,
            y,
            (fout, 1),
            true,
            View::rows(x, fin),
            View::transposed(w, fin),
            Threads::All,
        );
        if g.relu != 0 {
            y.par_iter_mut().for_each(|v| *v = v.max(T::ZERO));
        }
        Ok(())
    }

    /// With ReLU first masks dy in place; WRITES dw = dyᵀ·x and db = Σ_rows dy; ACCUMULATES dx += dy·w.
    fn dense_backward(&self, g: &DenseGeom, io: DenseBackwardIo<'_, Self::Buf>) -> Result<()> {
        let DenseBackwardIo {
            x,
            w,
            y,
            dy,
            dx,
            dw,
            db,
        } = io;
        let dx = dx.map(|v| v.as_mut_slice());
        let (n, fin, fout) = dims(g)?;
        check_len("dense x", x.len(), n * fin)?;
        check_len("dense w", w.len(), fout * fin)?;
        check_len("dense y", y.len(), n * fout)?;
        check_len("dense dy", dy.len(), n * fout)?;
        check_len("dense dw", dw.len(), fout * fin)?;
        check_len("dense db", db.len(), fout)?;
        if g.relu != 0 {
            crate::backends::cpu::relu_mask(&mut dy[..n * fout], &y[..n * fout]);
        }
        let dy = &dy[..n * fout];
        for (o, db) in db[..fout].iter_mut().enumerate() {
            *db = T::from_f64((0..n).map(|i| dy[i * fout + o].to_f64()).sum());
        }
        if n == 0 {
            dw[..fout * fin].fill(T::ZERO);
        } else {
            gemm(
                fout,
                fin,
                n,
                dw,
                (fin, 1),
                false,
                View::transposed(dy, fout),
                View::rows(x, fin),
                Threads::All,
            );
        }
        if let Some(dx) = dx {
            check_len("dense dx", dx.len(), n * fin)?;
            gemm(
                n,
                fin,
                fout,
                dx,
                (fin, 1),
                true,
                View::rows(dy, fout),
                View::rows(w, fin),
                Threads::All,
            );
        }
        Ok(())
    }
}
