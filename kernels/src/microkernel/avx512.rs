//! fp32 micro-kernels with AVX-512F (16 lanes, 32 vector registers).

use std::arch::x86_64::*;

fma_kernels! {
    fp32 "avx512f", 16 lanes, tile (8, 3): _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps,
        _mm512_fmadd_ps, _mm512_storeu_ps, _mm512_add_ps;
    /// `C[r][j] = Σ_k a[k][r] · src[koff[k] + j]` for `r < 8`, `j < 48`; `c` rows `ldc` apart.
    ///
    /// # Safety
    /// AVX-512F present; `a` holds `k * 8` values; every `src + koff[k] .. + 48` is readable;
    /// `c` has 8 rows of 48 writable values.
    direct,
    /// `acc[r][j] += Σ_{q < steps} rows[r][q] · bt[q · ldb + j]` for `r < MR`, `j < 16·NV`; `acc`
    /// rows `ldacc` apart. The weight-gradient kernel: rows are im2col rows, `bt` the transposed
    /// output gradient.
    ///
    /// # Safety
    /// AVX-512F present; every `rows[r] .. + steps` readable, `bt` has `steps` rows of `16·NV`
    /// values, `acc` has `MR` rows of `16·NV` values.
    weight_grad,
}
