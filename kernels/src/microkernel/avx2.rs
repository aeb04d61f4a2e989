//! fp32 micro-kernels with AVX2 + FMA (8 lanes, 16 vector registers).

use std::arch::x86_64::*;

fma_kernels! {
    fp32 "avx2,fma", 8 lanes, tile (6, 2): _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps,
        _mm256_fmadd_ps, _mm256_storeu_ps, _mm256_add_ps;
    /// As [`super::avx512::direct`], with a 6 × 16 tile.
    ///
    /// # Safety
    /// AVX2 and FMA present; bounds as [`super::avx512::direct`] for a 6 × 16 tile.
    direct,
    /// As [`super::avx512::weight_grad`], with 8-lane vectors.
    ///
    /// # Safety
    /// AVX2 and FMA present; bounds as [`super::avx512::weight_grad`] with `8·NV` columns.
    weight_grad,
}
