//! Micro-kernels: the innermost loops, one module per instruction set.

/// Generates a module's `direct` and `weight_grad` micro-kernels, and the constants of their
/// vectors (`LANES` positions) and direct tile (`DIRECT_MR` rows × `DIRECT_NV` vectors), from the
/// module's vector operations. Each operation is a closure-like `|names| expression` pasted into
/// the kernels' loops: intrinsics stay inside the kernels' `#[target_feature]` bodies, and run in
/// their `unsafe` blocks under the kernels' safety contracts.
///
/// - `zero`: accumulator zeros; `operand_zero`: operand zeros (array filler).
/// - `load(p)`: the `LANES` operands at `p`; `splat(s)`: operand scalar `s` in every lane;
///   `fma(acc, a, b)`: `acc` plus the lanes' products of `a` and `b`.
/// - `load_f32(p)`, `store_f32(p, v)`, `add_f32(x, y)`: accumulator vectors in memory and sums.
///
/// `scalar` is the operand type (packed weights, grid, transposed gradient; one scalar a lane),
/// `grad_rows` the element type of the weight gradient's grid rows, read one scalar a step. The
/// attributes before `direct` and `weight_grad` (docs, target features) go to those functions.
///
/// The `fp32` form takes an fp32 instruction set's target features, lanes, direct tile and
/// intrinsics: setzero, loadu, set1, fmadd, storeu, add.
macro_rules! fma_kernels {
    (
        fp32 $features:literal, $lanes:literal lanes, tile $tile:tt:
            $zero:ident, $load:ident, $set1:ident, $fmadd:ident, $store:ident, $add:ident;
        $(#[$direct_attr:meta])*
        direct,
        $(#[$grad_attr:meta])*
        weight_grad,
    ) => {
        fma_kernels! {
            lanes: $lanes, direct_tile: $tile, scalar: f32, grad_rows: f32,
            zero: $zero(), operand_zero: $zero(),
            load: |p| $load(p), splat: |s| $set1(s), fma: |acc, a, b| $fmadd(a, b, acc),
            load_f32: |p| $load(p), store_f32: |p, v| $store(p, v), add_f32: |x, y| $add(x, y),
            $(#[$direct_attr])*
            #[target_feature(enable = $features)]
            direct,
            $(#[$grad_attr])*
            #[target_feature(enable = $features)]
            weight_grad,
        }
    };
    (
        lanes: $lanes:literal,
        direct_tile: ($mr:literal, $nv:literal),
        scalar: $s:ty,
        grad_rows: $row:ty,
        zero: $zero:expr,
        operand_zero: $ozero:expr,
        load: |$lp:ident| $load:expr,
        splat: |$ss:ident| $splat:expr,
        fma: |$acc:ident, $fa:ident, $fb:ident| $fma:expr,
        load_f32: |$fp:ident| $load_f32:expr,
        store_f32: |$sp:ident, $sv:ident| $store_f32:expr,
        add_f32: |$ax:ident, $ay:ident| $add_f32:expr,
        $(#[$direct_attr:meta])*
        direct,
        $(#[$grad_attr:meta])*
        weight_grad,
    ) => {
        /// Lanes of a vector.
        pub(crate) const LANES: usize = $lanes;
        /// Rows of the direct kernel's tile (output channels, broadcast from the packed weights).
        pub(crate) const DIRECT_MR: usize = $mr;
        /// Vectors of `LANES` positions per direct tile.
        pub(crate) const DIRECT_NV: usize = $nv;

        $(#[$direct_attr])*
        pub(crate) unsafe fn direct(
            k: usize,
            a: *const $s,
            src: *const $s,
            koff: *const isize,
            c: *mut f32,
            ldc: usize,
        ) {
            unsafe {
                let mut acc = [[$zero; DIRECT_NV]; DIRECT_MR];
                for kk in 0..k {
                    let b = src.offset(*koff.add(kk));
                    let mut bv = [$ozero; DIRECT_NV];
                    for (v, x) in bv.iter_mut().enumerate() {
                        let $lp = b.add(LANES * v);
                        *x = $load;
                    }
                    let ar = a.add(kk * DIRECT_MR);
                    for (r, row) in acc.iter_mut().enumerate() {
                        let $ss = *ar.add(r);
                        let av = $splat;
                        for (v, x) in row.iter_mut().enumerate() {
                            let ($acc, $fa, $fb) = (*x, av, bv[v]);
                            *x = $fma;
                        }
                    }
                }
                for (r, row) in acc.iter().enumerate() {
                    for (v, x) in row.iter().enumerate() {
                        let ($sp, $sv) = (c.add(r * ldc + v * LANES), *x);
                        $store_f32;
                    }
                }
            }
        }

        $(#[$grad_attr])*
        pub(crate) unsafe fn weight_grad<const MR: usize, const NV: usize>(
            steps: usize,
            rows: &[*const $row; MR],
            bt: *const $s,
            ldb: usize,
            acc_out: *mut f32,
            ldacc: usize,
        ) {
            unsafe {
                let mut acc = [[$zero; NV]; MR];
                for q in 0..steps {
                    let b = bt.add(q * ldb);
                    let mut bv = [$ozero; NV];
                    for (v, x) in bv.iter_mut().enumerate() {
                        let $lp = b.add(LANES * v);
                        *x = $load;
                    }
                    for (r, row) in acc.iter_mut().enumerate() {
                        let $ss = rows[r].cast::<$s>().add(q).read_unaligned();
                        let av = $splat;
                        for (v, x) in row.iter_mut().enumerate() {
                            let ($acc, $fa, $fb) = (*x, av, bv[v]);
                            *x = $fma;
                        }
                    }
                }
                for (r, row) in acc.iter().enumerate() {
                    for (v, x) in row.iter().enumerate() {
                        let $fp = acc_out.add(r * ldacc + v * LANES);
                        let ($ax, $ay) = ($load_f32, *x);
                        let ($sp, $sv) = ($fp, $add_f32);
                        $store_f32;
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod amx;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512bf16;
pub(crate) mod portable;
