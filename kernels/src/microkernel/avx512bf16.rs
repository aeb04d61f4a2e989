//! bf16 micro-kernels with AVX512-BF16 (`vdpbf16ps`: 16 fp32 lanes, each += the dot product of a
//! pair of bf16 values). Operands come in pairs along the reduction: channel pairs for the
//! direct kernel, position pairs for the weight gradient. A pair is one `u32` (low half first).

use std::arch::x86_64::*;

/// Rows of the direct kernel's tile.
pub(crate) const DIRECT_MR: usize = 8;
/// Vectors of 16 positions per direct tile.
pub(crate) const DIRECT_NV: usize = 3;

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

/// `C[r][j] = Σ_k a[k][r] · src[koff[k] + j]` over channel pairs `k`, `r < 8`, `j < 48`.
///
/// # Safety
/// AVX512-BF16 present; `a` holds `k · 8` pairs; every `src + koff[k] .. + 48` readable; `c` has
/// 8 rows of 48 writable values, `ldc` apart.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(crate) unsafe fn direct(
    k: usize,
    a: *const u32,
    src: *const u32,
    koff: *const isize,
    c: *mut f32,
    ldc: usize,
) {
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); DIRECT_NV]; DIRECT_MR];
        for kk in 0..k {
            let b = src.offset(*koff.add(kk));
            let bv = [pairs(b), pairs(b.add(16)), pairs(b.add(32))];
            let ar = a.add(kk * DIRECT_MR);
            for (r, row) in acc.iter_mut().enumerate() {
                let av = splat(*ar.add(r));
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm512_dpbf16_ps(*x, av, bv[v]);
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

/// `acc[r][j] += Σ_{p < pairs} rows[r][2p..2p+2] · bt[p][j]` for `r < MR`, `j < 16·NV`: the
/// weight gradient over position pairs (`bt` holds the output gradient's pairs per channel).
///
/// # Safety
/// AVX512-BF16 present; every `rows[r] .. + 2·pairs` readable (bf16), `bt` has `pairs` rows of
/// `16·NV` pairs `ldb` apart, `acc` has `MR` rows of `16·NV` values `ldacc` apart.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(crate) unsafe fn weight_grad<const MR: usize, const NV: usize>(
    npairs: usize,
    rows: &[*const u16; MR],
    bt: *const u32,
    ldb: usize,
    acc_out: *mut f32,
    ldacc: usize,
) {
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        for p in 0..npairs {
            let b = bt.add(p * ldb);
            let mut bv = [splat(0); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = pairs(b.add(16 * v));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = splat(rows[r].add(2 * p).cast::<u32>().read_unaligned());
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm512_dpbf16_ps(*x, av, bv[v]);
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
