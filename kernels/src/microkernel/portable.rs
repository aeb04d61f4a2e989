//! fp32 micro-kernels in plain Rust (any CPU; the compiler vectorises what it can).

/// Rows of the direct kernel's tile.
pub(crate) const DIRECT_MR: usize = 4;
/// Positions per direct tile.
pub(crate) const DIRECT_NR: usize = 16;

/// As [`super::avx512::direct`], with a 4 × 16 tile.
///
/// # Safety
/// Bounds as [`super::avx512::direct`] for a 4 × 16 tile.
pub(crate) unsafe fn direct(
    k: usize,
    a: *const f32,
    src: *const f32,
    koff: *const isize,
    c: *mut f32,
    ldc: usize,
) {
    let mut acc = [[0f32; DIRECT_NR]; DIRECT_MR];
    for kk in 0..k {
        let (b, ar) = unsafe {
            (
                std::slice::from_raw_parts(src.offset(*koff.add(kk)), DIRECT_NR),
                std::slice::from_raw_parts(a.add(kk * DIRECT_MR), DIRECT_MR),
            )
        };
        for (row, &av) in acc.iter_mut().zip(ar) {
            for (x, &bv) in row.iter_mut().zip(b) {
                *x += av * bv;
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), c.add(r * ldc), DIRECT_NR) };
    }
}

/// Columns of the weight-gradient tile.
pub(crate) const GRAD_NR: usize = 16;

/// As [`super::avx512::weight_grad`], with `MR` rows and 16 columns.
///
/// # Safety
/// Bounds as [`super::avx512::weight_grad`] with 16 columns.
pub(crate) unsafe fn weight_grad<const MR: usize>(
    len: usize,
    rows: &[*const f32; MR],
    bt: *const f32,
    ldb: usize,
    acc_out: *mut f32,
    ldacc: usize,
) {
    let mut acc = [[0f32; GRAD_NR]; MR];
    for q in 0..len {
        let b = unsafe { std::slice::from_raw_parts(bt.add(q * ldb), GRAD_NR) };
        for (r, row) in acc.iter_mut().enumerate() {
            let av = unsafe { *rows[r].add(q) };
            for (x, &bv) in row.iter_mut().zip(b) {
                *x += av * bv;
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let out = unsafe { std::slice::from_raw_parts_mut(acc_out.add(r * ldacc), GRAD_NR) };
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}
