//! Row concatenation on the CPU: y (N, A + B) = [a (N, A), b (N, B)], and its backward, which hands
//! each part its columns of dy.

use super::{ConcatBackwardIo, ConcatForwardIo, ConcatGeom, ConcatOp};
use crate::backends::cpu::{check_len, CpuBackend};
use crate::tensor::Real;
use crate::Result;

impl<T: Real> ConcatOp for CpuBackend<T> {
    /// WRITES y (N, A + B): row n is a's row n followed by b's row n.
    fn concat_forward(&self, g: &ConcatGeom, io: ConcatForwardIo<'_, Self::Buf>) -> Result<()> {
        let ConcatForwardIo { a, b, y } = io;
        g.validate()?;
        let (wa, wb) = (g.a as usize, g.b as usize);
        let (la, lb, ly) = g.lens();
        check_len("concat a", a.len(), la)?;
        check_len("concat b", b.len(), lb)?;
        check_len("concat y", y.len(), ly)?;
        for ((row, ra), rb) in y[..ly]
            .chunks_exact_mut(wa + wb)
            .zip(a[..la].chunks_exact(wa))
            .zip(b[..lb].chunks_exact(wb))
        {
            row[..wa].copy_from_slice(ra);
            row[wa..].copy_from_slice(rb);
        }
        Ok(())
    }

    /// ACCUMULATES da (N, A) += dy[:, ..A] and db (N, B) += dy[:, A..], each when given.
    fn concat_backward(&self, g: &ConcatGeom, io: ConcatBackwardIo<'_, Self::Buf>) -> Result<()> {
        let ConcatBackwardIo { dy, da, db } = io;
        let da = da.map(|v| v.as_mut_slice());
        let db = db.map(|v| v.as_mut_slice());
        g.validate()?;
        let (wa, wb) = (g.a as usize, g.b as usize);
        let (la, lb, ly) = g.lens();
        check_len("concat dy", dy.len(), ly)?;
        let rows = dy[..ly].chunks_exact(wa + wb);
        if let Some(da) = da {
            check_len("concat da", da.len(), la)?;
            for (d, row) in da[..la].chunks_exact_mut(wa).zip(rows.clone()) {
                for (d, &v) in d.iter_mut().zip(&row[..wa]) {
                    *d += v;
                }
            }
        }
        if let Some(db) = db {
            check_len("concat db", db.len(), lb)?;
            for (d, row) in db[..lb].chunks_exact_mut(wb).zip(rows) {
                for (d, &v) in d.iter_mut().zip(&row[wa..]) {
                    *d += v;
                }
            }
        }
        Ok(())
    }
}
