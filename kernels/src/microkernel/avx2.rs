//! fp32 micro-kernels with AVX2 + FMA (8 lanes, 16 vector registers).

use std::arch::x86_64::*;

/// Rows of the direct kernel's tile.
pub(crate) const DIRECT_MR: usize = 6;
/// Vectors of 8 positions per direct tile.
pub(crate) const DIRECT_NV: usize = 2;

/// As [`super::avx512::direct`], with a 6 × 16 tile.
///
/// # Safety
/// AVX2 and FMA present; bounds as [`super::avx512::direct`] for a 6 × 16 tile.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn direct(
    k: usize,
    a: *const f32,
    src: *const f32,
    koff: *const isize,
    c: *mut f32,
    ldc: usize,
) {
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); DIRECT_NV]; DIRECT_MR];
        for kk in 0..k {
            let b = src.offset(*koff.add(kk));
            let bv = [_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8))];
            let ar = a.add(kk * DIRECT_MR);
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_ps(*ar.add(r));
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm256_fmadd_ps(av, bv[v], *x);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                _mm256_storeu_ps(c.add(r * ldc + v * 8), *x);
            }
        }
    }
}

/// As [`super::avx512::weight_grad`], with 8-lane vectors.
///
/// # Safety
/// AVX2 and FMA present; bounds as [`super::avx512::weight_grad`] with `8·NV` columns.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn weight_grad<const MR: usize, const NV: usize>(
    len: usize,
    rows: &[*const f32; MR],
    bt: *const f32,
    ldb: usize,
    acc_out: *mut f32,
    ldacc: usize,
) {
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); NV]; MR];
        for q in 0..len {
            let b = bt.add(q * ldb);
            let mut bv = [_mm256_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(b.add(8 * v));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_ps(*rows[r].add(q));
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm256_fmadd_ps(av, bv[v], *x);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                let p = acc_out.add(r * ldacc + v * 8);
                _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), *x));
            }
        }
    }
}
