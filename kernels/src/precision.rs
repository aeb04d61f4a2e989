//! The arithmetic precision of the convolution kernels, process-wide.
//!
//! `Bf16` rounds the operands of every convolution product to bfloat16 and accumulates in fp32
//! (as PyTorch's autocast); tensors, master weights, gradients and checkpoints stay fp32.

use std::sync::atomic::Ordering;

use crate::isa::Bf16Isa;

/// Arithmetic of the convolution products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// fp32 products, fp32 accumulation.
    Fp32,
    /// bf16 products, fp32 accumulation.
    Bf16,
}

impl Precision {
    /// `auto`: bf16 where the CPU multiplies bf16 natively (AMX or AVX512-BF16), fp32 otherwise.
    pub fn auto() -> Precision {
        if Bf16Isa::native() {
            Precision::Bf16
        } else {
            Precision::Fp32
        }
    }

    /// Parses `auto`, `fp32` or `bf16`.
    pub fn parse(text: &str) -> Option<Precision> {
        match text {
            "auto" => Some(Precision::auto()),
            "fp32" | "float32" => Some(Precision::Fp32),
            "bf16" | "bfloat16" => Some(Precision::Bf16),
            _ => None,
        }
    }

    /// The name used in logs (`fp32`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// A description of how products are computed, e.g. `bf16 (amx)`.
    pub fn describe(self) -> String {
        match self {
            Precision::Fp32 => format!("fp32 ({})", crate::isa::Isa::detected().name()),
            Precision::Bf16 => format!("bf16 ({})", Bf16Isa::detected().name()),
        }
    }
}

/// Sets the precision of all later convolutions of this process.
pub fn set_precision(precision: Precision) {
    crate::shared::settings()
        .precision
        .store(precision as u8, Ordering::Relaxed);
}

/// The precision convolutions use now (fp32 unless set).
pub fn precision() -> Precision {
    match crate::shared::settings().precision.load(Ordering::Relaxed) {
        1 => Precision::Bf16,
        _ => Precision::Fp32,
    }
}

/// Rounds to the nearest bfloat16 (ties to even), as the bits of the bf16 value.
#[inline(always)]
pub fn to_bf16(v: f32) -> u16 {
    // Branch-free (a select), so that loops converting slices vectorise.
    let bits = v.to_bits();
    let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
    let quiet_nan = ((bits >> 16) | 0x40) as u16;
    if v.is_nan() { quiet_nan } else { rounded }
}

/// The fp32 value of bf16 bits.
#[inline(always)]
pub fn from_bf16(v: u16) -> f32 {
    f32::from_bits((v as u32) << 16)
}

/// `v` rounded to bf16 precision, as fp32.
#[inline(always)]
pub fn round_bf16(v: f32) -> f32 {
    from_bf16(to_bf16(v))
}

/// The float type networks keep their activations in: fp32, or half precision on GPUs (mixed
/// precision there casts activations; on the CPU, [`Precision`] acts inside the kernels instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationFloat {
    /// fp32 activations.
    F32,
    /// IEEE half precision (with a loss scaler in training).
    F16,
    /// bfloat16.
    Bf16,
}

/// Sets the float type of the activations of all later network passes of this process.
pub fn set_activation_float(float: ActivationFloat) {
    crate::shared::settings()
        .activations
        .store(float as u8, Ordering::Relaxed);
}

/// The float type of network activations now (fp32 unless set).
pub fn activation_float() -> ActivationFloat {
    match crate::shared::settings()
        .activations
        .load(Ordering::Relaxed)
    {
        1 => ActivationFloat::F16,
        2 => ActivationFloat::Bf16,
        _ => ActivationFloat::F32,
    }
}
