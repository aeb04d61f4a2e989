//! fp32 micro-kernels with AVX-512F (16 lanes, 32 vector registers).

use std::arch::x86_64::*;

/// Rows of the direct kernel's tile (output channels, broadcast from the packed weights).
pub(crate) const DIRECT_MR: usize = 8;
/// Vectors of 16 positions per direct tile.
pub(crate) const DIRECT_NV: usize = 3;

/// `C[r][j] = Σ_k a[k][r] · src[koff[k] + j]` for `r < 8`, `j < 48`; `c` rows `ldc` apart.
///
/// # Safety
/// AVX-512F present; `a` holds `k * 8` values; every `src + koff[k] .. + 48` is readable;
/// `c` has 8 rows of 48 writable values.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn direct(
    k: usize,
    a: *const f32,
    src: *const f32,
    koff: *const isize,
    c: *mut f32,
    ldc: usize,
) {
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); DIRECT_NV]; DIRECT_MR];
        for kk in 0..k {
            let b = src.offset(*koff.add(kk));
            let bv = [
                _mm512_loadu_ps(b),
                _mm512_loadu_ps(b.add(16)),
                _mm512_loadu_ps(b.add(32)),
            ];
            let ar = a.add(kk * DIRECT_MR);
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*ar.add(r));
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm512_fmadd_ps(av, bv[v], *x);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                _mm512_storeu_ps(c.add(r * ldc + v * 16), *x);
            }
        }
    }
}

/// `acc[r][j] += Σ_{q < len} rows[r][q] · bt[q · ldb + j]` for `r < MR`, `j < 16·NV`; `acc` rows
/// `ldacc` apart. The weight-gradient kernel: rows are im2col rows, `bt` the transposed output
/// gradient.
///
/// # Safety
/// AVX-512F present; every `rows[r] .. + len` readable, `bt` has `len` rows of `16·NV` values,
/// `acc` has `MR` rows of `16·NV` values.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn weight_grad<const MR: usize, const NV: usize>(
    len: usize,
    rows: &[*const f32; MR],
    bt: *const f32,
    ldb: usize,
    acc_out: *mut f32,
    ldacc: usize,
) {
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        for q in 0..len {
            let b = bt.add(q * ldb);
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(b.add(16 * v));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*rows[r].add(q));
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm512_fmadd_ps(av, bv[v], *x);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                let p = acc_out.add(r * ldacc + v * 16);
                _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), *x));
            }
        }
    }
}
