//! Host tensors: NCHW, contiguous, row-major. Deliberately not a general tensor library: the network
//! only ever needs 4-D activations (a dense layer's (N, F) is (N, F, 1, 1)) and flat parameter vectors.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// The shape of an NCHW tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub const fn new(n: usize, c: usize, h: usize, w: usize) -> Self {
        Shape { n, c, h, w }
    }
    /// A batch of `n` feature vectors of length `f`, stored as (N, F, 1, 1).
    pub const fn flat(n: usize, f: usize) -> Self {
        Shape {
            n,
            c: f,
            h: 1,
            w: 1,
        }
    }
    /// Number of elements.
    pub const fn len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Elements per sample (C·H·W).
    pub const fn per_sample(&self) -> usize {
        self.c * self.h * self.w
    }
    /// The same shape with another batch size.
    pub const fn with_n(self, n: usize) -> Self {
        Shape { n, ..self }
    }
    /// Flat offset of element (n, c, h, w).
    #[inline]
    pub const fn offset(&self, n: usize, c: usize, h: usize, w: usize) -> usize {
        ((n * self.c + c) * self.h + h) * self.w + w
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}, {}, {})", self.n, self.c, self.h, self.w)
    }
}

/// A host tensor: a shape and its contiguous NCHW data.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    pub shape: Shape,
    pub data: Vec<T>,
}

impl<T: Real> Tensor<T> {
    pub fn zeros(shape: Shape) -> Self {
        Tensor {
            shape,
            data: vec![T::ZERO; shape.len()],
        }
    }
    pub fn from_vec(shape: Shape, data: Vec<T>) -> crate::Result<Self> {
        if data.len() != shape.len() {
            return Err(crate::shape_err!(
                "tensor of shape {shape} needs {} elements, got {}",
                shape.len(),
                data.len()
            ));
        }
        Ok(Tensor { shape, data })
    }
}

/// The floating-point types the CPU reference is generic over: f32 (what the devices compute in) and
/// f64 (what the gradient checks run in).
pub trait Real:
    Copy
    + Send
    + Sync
    + Default
    + fmt::Debug
    + fmt::Display
    + PartialOrd
    + 'static
    + bytemuck::Pod
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
{
    const ZERO: Self;
    const ONE: Self;
    /// Short name for messages and benchmark labels.
    const NAME: &'static str;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn is_finite(self) -> bool;
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NAME: &'static str = stringify!($t);
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_is_row_major_nchw() {
        let s = Shape::new(2, 3, 4, 5);
        assert_eq!(s.len(), 120);
        assert_eq!(s.offset(0, 0, 0, 1), 1);
        assert_eq!(s.offset(0, 0, 1, 0), 5);
        assert_eq!(s.offset(0, 1, 0, 0), 20);
        assert_eq!(s.offset(1, 0, 0, 0), 60);
        assert_eq!(s.offset(1, 2, 3, 4), 119);
    }

    #[test]
    fn from_vec_rejects_wrong_length() {
        let err = Tensor::<f32>::from_vec(Shape::new(1, 2, 2, 2), vec![0.0; 7]).unwrap_err();
        assert!(err.to_string().contains("(1, 2, 2, 2)"), "{err}");
    }
}
