//! bf16 micro-kernels with AVX512-BF16 (`vdpbf16ps`: 16 fp32 lanes, each += the dot product of a
//! pair of bf16 values). Operands come in pairs along the reduction: channel pairs for the
//! direct kernel, position pairs for the weight gradient. A pair is one `u32` (low half first).

use std::arch::x86_64::*;

#[inline(always)]
unsafe fn pairs(p: *const u32) -> __m512bh {
    // SAFETY (caller): 16 readable u32.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p.cast())) }
}

#[inline(always)]
fn splat(v: u32) -> __m512bh {
    // SAFETY: same size, any bits are a valid vector.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(v as i32)) }
}

fma_kernels! {
    lanes: 16, direct_tile: (8, 3), scalar: u32, grad_rows: u16,
    zero: _mm512_setzero_ps(), operand_zero: splat(0),
    load: |p| pairs(p), splat: |s| splat(s), fma: |acc, a, b| _mm512_dpbf16_ps(acc, a, b),
    load_f32: |p| _mm512_loadu_ps(p), store_f32: |p, v| _mm512_storeu_ps(p, v),
    add_f32: |x, y| _mm512_add_ps(x, y),
    /// `C[r][j] = Σ_k a[k][r] · src[koff[k] + j]` over channel pairs `k`, `r < 8`, `j < 48`.
    ///
    /// # Safety
    /// AVX512-BF16 present; `a` holds `k · 8` pairs; every `src + koff[k] .. + 48` readable; `c`
    /// has 8 rows of 48 writable values, `ldc` apart.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    direct,
    /// `acc[r][j] += Σ_{p < steps} rows[r][2p..2p+2] · bt[p][j]` for `r < MR`, `j < 16·NV`: the
    /// weight gradient over position pairs (`bt` holds the output gradient's pairs per channel).
    ///
    /// # Safety
    /// AVX512-BF16 present; every `rows[r] .. + 2·steps` readable (bf16), `bt` has `steps` rows
    /// of `16·NV` pairs `ldb` apart, `acc` has `MR` rows of `16·NV` values `ldacc` apart.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    weight_grad,
}
