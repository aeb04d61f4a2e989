//! CPU compute kernels of nnunet-rs, on plain slices (no tensor library): 2D/3D convolution
//! forward, input gradient and weight gradient read straight from padded grids (no im2col), in
//! fp32 (AVX-512, AVX2 + FMA, portable) or with bf16 products (AMX, AVX512-BF16); the fused
//! instance norm + affine + leaky ReLU forward and backward; the fused Dice + cross-entropy loss.
//! The instruction set is chosen at run time ([`isa`]), so one binary runs on every x86-64 CPU
//! and elsewhere.
//!
//! The patched flex backend (`third_party/burn-flex`) calls [`conv`]; the networks call [`norm`]
//! and the losses [`loss`] through a backend extension.

pub mod conv;
pub mod isa;
pub mod loss;
pub(crate) mod microkernel;
pub mod norm;
pub mod precision;
pub mod shared;

pub use conv::ConvShape;
pub use isa::{Bf16Isa, Isa};
pub use precision::{
    ActivationFloat, Precision, activation_float, precision, set_activation_float, set_precision,
};

/// A raw pointer shared by tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);

// SAFETY: every user writes a part of the buffer no other task touches.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

/// A vector of `n` default values, written by all threads (a large `vec![0; n]` is one
/// thread's memset, a serial step between parallel kernels).
pub(crate) fn zeroed<T: Copy + Default + Send + Sync>(n: usize) -> Vec<T> {
    use rayon::prelude::*;
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(T::default(), n));
    v
}
