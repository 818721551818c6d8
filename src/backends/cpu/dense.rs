//! Dense layers on the CPU: three GEMMs, multi-threaded inside the GEMM (the batch is too small to
//! split across cores).

use rayon::prelude::*;

use super::check_len;
use super::gemm::{gemm, Threads, View};
use crate::backends::geometry::DenseGeom;
use crate::tensor::Real;
use crate::{shape_err, Result};

fn dims(g: &DenseGeom) -> Result<(usize, usize, usize)> {
    if g.n < 0 || g.in_features <= 0 || g.out_features <= 0 {
        return Err(shape_err!("invalid dense geometry {g:?}"));
    }
    Ok((
        g.n as usize,
        g.in_features as usize,
        g.out_features as usize,
    ))
}

/// WRITES y (N, OUT) = [ReLU](x (N, IN) · wᵀ + b).
pub(super) fn forward<T: Real>(
    g: &DenseGeom,
    x: &[T],
    w: &[T],
    b: &[T],
    y: &mut [T],
) -> Result<()> {
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
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Real>(
    g: &DenseGeom,
    x: &[T],
    w: &[T],
    y: &[T],
    dy: &mut [T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: &mut [T],
) -> Result<()> {
    let (n, fin, fout) = dims(g)?;
    check_len("dense x", x.len(), n * fin)?;
    check_len("dense w", w.len(), fout * fin)?;
    check_len("dense y", y.len(), n * fout)?;
    check_len("dense dy", dy.len(), n * fout)?;
    check_len("dense dw", dw.len(), fout * fin)?;
    check_len("dense db", db.len(), fout)?;
    if g.relu != 0 {
        super::relu_mask(&mut dy[..n * fout], &y[..n * fout]);
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
