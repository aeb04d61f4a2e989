//! nnU-Net-rs patch: GEMM-based 2D/3D convolution forward and backward on NCDHW data.
//!
//! One formulation serves every case (see NNUNET_CHANGES.md):
//! - forward:        out[n][co, s]   = W[co, (ci,k)] @ col(x[n])[(ci,k), s]
//! - input grad:     col             = W^T @ gout[n];  dx[n] = col2im(col)
//! - weight grad:    dW             += gout[n] @ col(x[n])^T
//! - transposed conv forward is the input grad of the adjoint convolution, its weight grad is the
//!   weight grad of the adjoint convolution with the roles of x and gout swapped.
//!
//! `col` is built straight from NCDHW (no channels-last copy), one spatial chunk at a time, rows
//! filled in parallel; the GEMMs use the `gemm` crate's own rayon parallelism; col2im runs in
//! parallel over input channels (each thread owns whole dx planes, no races, no atomics).

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};

use burn_backend::{DType, Element};
use burn_std::{Bytes, Shape};

use crate::{FlexTensor, Layout};

static ENABLED: AtomicU8 = AtomicU8::new(2);

/// Whether the patched GEMM convolution path is used (default: yes; `BURN_FLEX_FAST_CONV=0` disables).
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        0 => false,
        1 => true,
        _ => {
            #[cfg(feature = "std")]
            let on = !matches!(std::env::var("BURN_FLEX_FAST_CONV").as_deref(), Ok("0"));
            #[cfg(not(feature = "std"))]
            let on = true;
            ENABLED.store(on as u8, Ordering::Relaxed);
            on
        }
    }
}

/// Switch the patched path on or off at run time (benchmarks and parity tests).
pub fn set_enabled(on: bool) {
    ENABLED.store(on as u8, Ordering::Relaxed);
}

pub(crate) trait Scalar:
    Copy + Send + Sync + 'static + bytemuck::Pod + Element + core::ops::Add<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
}
impl Scalar for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}
impl Scalar for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

/// Convolution geometry (2D is 3D with depth 1).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geo {
    pub n: usize,
    pub groups: usize,
    pub cin: usize,
    pub cout: usize,
    pub ins: [usize; 3],
    pub outs: [usize; 3],
    pub k: [usize; 3],
    pub s: [usize; 3],
    pub p: [usize; 3],
    pub d: [usize; 3],
}

impl Geo {
    fn cig(&self) -> usize {
        self.cin / self.groups
    }
    fn cog(&self) -> usize {
        self.cout / self.groups
    }
    fn kvol(&self) -> usize {
        self.k[0] * self.k[1] * self.k[2]
    }
    fn s_in(&self) -> usize {
        self.ins[0] * self.ins[1] * self.ins[2]
    }
    fn s_out(&self) -> usize {
        self.outs[0] * self.outs[1] * self.outs[2]
    }
    /// 1x1x1, stride 1, no padding: col(x) is x itself.
    fn is_pointwise(&self) -> bool {
        self.kvol() == 1 && self.s == [1, 1, 1] && self.p == [0, 0, 0] && self.ins == self.outs
    }
    /// Number of output positions per im2col chunk.
    fn chunk(&self) -> usize {
        let rows = self.cig() * self.kvol();
        let target = chunk_elems();
        (target / rows.max(1)).max(256).min(self.s_out().max(1))
    }
}

fn chunk_elems() -> usize {
    #[cfg(feature = "std")]
    {
        static C: once_cell_lite::Lazy = once_cell_lite::Lazy::new();
        C.get(|| {
            std::env::var("BURN_FLEX_CONV_CHUNK")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1 << 19)
        })
    }
    #[cfg(not(feature = "std"))]
    {
        1 << 19
    }
}

#[cfg(feature = "std")]
mod once_cell_lite {
    use core::sync::atomic::{AtomicUsize, Ordering};
    pub struct Lazy(AtomicUsize);
    impl Lazy {
        pub const fn new() -> Self {
            Self(AtomicUsize::new(0))
        }
        pub fn get(&self, f: impl FnOnce() -> usize) -> usize {
            let v = self.0.load(Ordering::Relaxed);
            if v != 0 {
                return v;
            }
            let v = f().max(1);
            self.0.store(v, Ordering::Relaxed);
            v
        }
    }
}

fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    #[cfg(feature = "rayon")]
    {
        if m.saturating_mul(n).saturating_mul(k) >= 48 * 48 * 48 {
            return gemm::Parallelism::Rayon(0);
        }
    }
    let _ = (m, n, k);
    gemm::Parallelism::None
}

/// dst[m,n] = (read_dst ? dst : 0) + lhs[m,k] @ rhs[k,n], all strides in elements (row, column).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_strided<T: Scalar>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: usize,
    dst_cs: usize,
    read_dst: bool,
    lhs: *const T,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const T,
    rhs_rs: usize,
    rhs_cs: usize,
    par: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !read_dst {
            for i in 0..m {
                for j in 0..n {
                    unsafe { *dst.add(i * dst_rs + j * dst_cs) = T::ZERO };
                }
            }
        }
        return;
    }
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            read_dst,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            if par { parallelism(m, n, k) } else { gemm::Parallelism::None },
        );
    }
}

/// Walk the output positions [s0, s1) of one im2col row (kernel offset `ko`) as runs along the
/// output width. For every run, `f(dst_offset_in_row, run_len, Some((src_row_offset, iw0)))`
/// where `iw0` is the (signed) input column of the first position, or `None` if the whole run
/// reads padding (input depth/height out of range).
#[inline(always)]
fn for_each_run(g: &Geo, ko: [usize; 3], s0: usize, s1: usize, mut f: impl FnMut(usize, usize, Option<(usize, isize)>)) {
    let [_, oh, ow] = g.outs;
    let [id_, ih_, _iw] = g.ins;
    let mut od_i = s0 / (oh * ow);
    let mut oh_i = (s0 / ow) % oh;
    let mut ow_i = s0 % ow;
    let mut pos = s0;
    while pos < s1 {
        let run = (ow - ow_i).min(s1 - pos);
        let id = (od_i * g.s[0] + ko[0] * g.d[0]) as isize - g.p[0] as isize;
        let ih = (oh_i * g.s[1] + ko[1] * g.d[1]) as isize - g.p[1] as isize;
        if id < 0 || id >= id_ as isize || ih < 0 || ih >= ih_ as isize {
            f(pos - s0, run, None);
        } else {
            let iw0 = (ow_i * g.s[2] + ko[2] * g.d[2]) as isize - g.p[2] as isize;
            f(pos - s0, run, Some(((id as usize * ih_ + ih as usize) * g.ins[2], iw0)));
        }
        pos += run;
        ow_i += run;
        if ow_i == ow {
            ow_i = 0;
            oh_i += 1;
            if oh_i == oh {
                oh_i = 0;
                od_i += 1;
            }
        }
    }
}

/// Valid sub-range [lo, hi) of j in 0..run with 0 <= iw0 + j*sw < in_w.
#[inline(always)]
fn valid_range(iw0: isize, sw: usize, run: usize, in_w: usize) -> (usize, usize) {
    let sw_i = sw as isize;
    let lo = if iw0 >= 0 { 0 } else { ((-iw0 + sw_i - 1) / sw_i) as usize };
    let hi = if iw0 >= in_w as isize {
        0
    } else {
        ((in_w as isize - iw0 + sw_i - 1) / sw_i) as usize
    };
    let hi = hi.min(run);
    (lo.min(hi), hi)
}

fn kernel_offset(g: &Geo, kk: usize) -> [usize; 3] {
    let [_, kh, kw] = g.k;
    [kk / (kh * kw), (kk / kw) % kh, kk % kw]
}

/// Fill `col` ([cig*K rows, len = s1-s0]) from one sample/group of x (`xs` = [cig, S_in]).
fn im2col<T: Scalar>(xs: &[T], g: &Geo, s0: usize, s1: usize, col: &mut [T], par: bool) {
    let len = s1 - s0;
    let kv = g.kvol();
    let s_in = g.s_in();
    let in_w = g.ins[2];
    let sw = g.s[2];
    let fill = |r: usize, row: &mut [T]| {
        let c = r / kv;
        let ko = kernel_offset(g, r % kv);
        let plane = &xs[c * s_in..(c + 1) * s_in];
        for_each_run(g, ko, s0, s1, |off, run, src| {
            let dst = &mut row[off..off + run];
            match src {
                None => dst.fill(T::ZERO),
                Some((base, iw0)) => {
                    let (lo, hi) = valid_range(iw0, sw, run, in_w);
                    dst[..lo].fill(T::ZERO);
                    dst[hi..].fill(T::ZERO);
                    if hi > lo {
                        let start = base as isize + iw0 + (lo * sw) as isize;
                        let start = start as usize;
                        if sw == 1 {
                            dst[lo..hi].copy_from_slice(&plane[start..start + (hi - lo)]);
                        } else {
                            for (j, d) in dst[lo..hi].iter_mut().enumerate() {
                                *d = plane[start + j * sw];
                            }
                        }
                    }
                }
            }
        });
    };
    #[cfg(feature = "rayon")]
    if par {
        use rayon::prelude::*;
        col.par_chunks_mut(len)
            .with_min_len(4)
            .enumerate()
            .for_each(|(r, row)| fill(r, row));
        return;
    }
    let _ = par;
    for (r, row) in col.chunks_mut(len).enumerate() {
        fill(r, row);
    }
}

/// Scatter-add `col` ([cig*K rows, len]) into one sample/group of dx (`dxs` = [cig, S_in]).
fn col2im<T: Scalar>(col: &[T], g: &Geo, s0: usize, s1: usize, dxs: &mut [T], par: bool) {
    let len = s1 - s0;
    let kv = g.kvol();
    let s_in = g.s_in();
    let in_w = g.ins[2];
    let sw = g.s[2];
    let add = |c: usize, plane: &mut [T]| {
        for kk in 0..kv {
            let row = &col[(c * kv + kk) * len..(c * kv + kk + 1) * len];
            let ko = kernel_offset(g, kk);
            for_each_run(g, ko, s0, s1, |off, run, src| {
                if let Some((base, iw0)) = src {
                    let (lo, hi) = valid_range(iw0, sw, run, in_w);
                    if hi > lo {
                        let start = (base as isize + iw0 + (lo * sw) as isize) as usize;
                        let srow = &row[off + lo..off + hi];
                        if sw == 1 {
                            for (d, &v) in plane[start..start + (hi - lo)].iter_mut().zip(srow) {
                                *d = *d + v;
                            }
                        } else {
                            for (j, &v) in srow.iter().enumerate() {
                                let d = &mut plane[start + j * sw];
                                *d = *d + v;
                            }
                        }
                    }
                }
            });
        }
    };
    #[cfg(feature = "rayon")]
    if par {
        use rayon::prelude::*;
        dxs.par_chunks_mut(s_in)
            .enumerate()
            .for_each(|(c, plane)| add(c, plane));
        return;
    }
    let _ = par;
    for (c, plane) in dxs.chunks_mut(s_in).enumerate() {
        add(c, plane);
    }
}

/// Forward: x [n, cin, S_in], w [cout, cig*K] -> [n, cout, S_out].
pub(crate) fn forward<T: Scalar>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Geo) -> Vec<T> {
    #[cfg(feature = "rayon")]
    if outer_parallel() {
        return forward_outer(x, w, bias, g);
    }
    let (cig, cog, kv, s_in, s_out) = (g.cig(), g.cog(), g.kvol(), g.s_in(), g.s_out());
    let rows = cig * kv;
    let mut out = vec![T::ZERO; g.n * g.cout * s_out];
    if let Some(b) = bias {
        for plane in out.chunks_mut(s_out.max(1)).enumerate() {
            let (i, p) = plane;
            p.fill(b[i % g.cout]);
        }
    }
    let read = bias.is_some();
    let chunk = g.chunk();
    let mut col = if g.is_pointwise() { Vec::new() } else { vec![T::ZERO; rows * chunk] };
    for n in 0..g.n {
        for gr in 0..g.groups {
            let xs = &x[(n * g.cin + gr * cig) * s_in..(n * g.cin + (gr + 1) * cig) * s_in];
            let ws = &w[gr * cog * rows..(gr + 1) * cog * rows];
            let dst_base = (n * g.cout + gr * cog) * s_out;
            if g.is_pointwise() {
                unsafe {
                    gemm_strided(
                        cog, s_out, rows,
                        out.as_mut_ptr().add(dst_base), s_out, 1, read,
                        ws.as_ptr(), rows, 1,
                        xs.as_ptr(), s_in, 1, true,
                    );
                }
                continue;
            }
            let mut s0 = 0;
            while s0 < s_out {
                let s1 = (s0 + chunk).min(s_out);
                let len = s1 - s0;
                let colc = &mut col[..rows * len];
                im2col(xs, g, s0, s1, colc, true);
                unsafe {
                    gemm_strided(
                        cog, len, rows,
                        out.as_mut_ptr().add(dst_base + s0), s_out, 1, read,
                        ws.as_ptr(), rows, 1,
                        colc.as_ptr(), len, 1, true,
                    );
                }
                s0 = s1;
            }
        }
    }
    out
}

/// Input gradient: w [cout, cig*K], gout [n, cout, S_out] -> dx [n, cin, S_in].
pub(crate) fn input_grad<T: Scalar>(w: &[T], gout: &[T], g: &Geo) -> Vec<T> {
    #[cfg(feature = "rayon")]
    if outer_parallel() && g.n >= 2 {
        return input_grad_outer(w, gout, g);
    }
    let (cig, cog, kv, s_in, s_out) = (g.cig(), g.cog(), g.kvol(), g.s_in(), g.s_out());
    let rows = cig * kv;
    let mut dx = vec![T::ZERO; g.n * g.cin * s_in];
    let chunk = g.chunk();
    let mut col = if g.is_pointwise() { Vec::new() } else { vec![T::ZERO; rows * chunk] };
    for n in 0..g.n {
        for gr in 0..g.groups {
            let ws = &w[gr * cog * rows..(gr + 1) * cog * rows];
            let go = &gout[(n * g.cout + gr * cog) * s_out..(n * g.cout + (gr + 1) * cog) * s_out];
            let dx_range = (n * g.cin + gr * cig) * s_in..(n * g.cin + (gr + 1) * cig) * s_in;
            if g.is_pointwise() {
                let dxs = &mut dx[dx_range];
                unsafe {
                    gemm_strided(
                        rows, s_out, cog,
                        dxs.as_mut_ptr(), s_in, 1, false,
                        ws.as_ptr(), 1, rows,
                        go.as_ptr(), s_out, 1, true,
                    );
                }
                continue;
            }
            let mut s0 = 0;
            while s0 < s_out {
                let s1 = (s0 + chunk).min(s_out);
                let len = s1 - s0;
                let colc = &mut col[..rows * len];
                unsafe {
                    gemm_strided(
                        rows, len, cog,
                        colc.as_mut_ptr(), len, 1, false,
                        ws.as_ptr(), 1, rows,
                        go.as_ptr().add(s0), s_out, 1, true,
                    );
                }
                col2im(colc, g, s0, s1, &mut dx[dx_range.clone()], true);
                s0 = s1;
            }
        }
    }
    dx
}

/// Weight gradient: x [n, cin, S_in], gout [n, cout, S_out] -> dW [cout, cig*K].
pub(crate) fn weight_grad<T: Scalar>(x: &[T], gout: &[T], g: &Geo) -> Vec<T> {
    #[cfg(feature = "rayon")]
    if outer_parallel() {
        return weight_grad_outer(x, gout, g);
    }
    let (cig, cog, kv, s_in, s_out) = (g.cig(), g.cog(), g.kvol(), g.s_in(), g.s_out());
    let rows = cig * kv;
    let mut dw = vec![T::ZERO; g.cout * rows];
    let chunk = g.chunk();
    let mut col = if g.is_pointwise() { Vec::new() } else { vec![T::ZERO; rows * chunk] };
    for gr in 0..g.groups {
        let dws = &mut dw[gr * cog * rows..(gr + 1) * cog * rows];
        let mut first = true;
        for n in 0..g.n {
            let xs = &x[(n * g.cin + gr * cig) * s_in..(n * g.cin + (gr + 1) * cig) * s_in];
            let go = &gout[(n * g.cout + gr * cog) * s_out..(n * g.cout + (gr + 1) * cog) * s_out];
            if g.is_pointwise() {
                unsafe {
                    gemm_strided(
                        cog, rows, s_out,
                        dws.as_mut_ptr(), rows, 1, !first,
                        go.as_ptr(), s_out, 1,
                        xs.as_ptr(), 1, s_in, true,
                    );
                }
                first = false;
                continue;
            }
            let mut s0 = 0;
            while s0 < s_out {
                let s1 = (s0 + chunk).min(s_out);
                let len = s1 - s0;
                let colc = &mut col[..rows * len];
                im2col(xs, g, s0, s1, colc, true);
                unsafe {
                    gemm_strided(
                        cog, rows, len,
                        dws.as_mut_ptr(), rows, 1, !first,
                        go.as_ptr().add(s0), s_out, 1,
                        colc.as_ptr(), 1, len, true,
                    );
                }
                first = false;
                s0 = s1;
            }
        }
    }
    dw
}

/// Bias gradient: sum of gout [n, c, S] over n and S.
pub(crate) fn bias_grad<T: Scalar>(gout: &[T], n: usize, c: usize, s: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; c];
    for b in 0..n {
        for (ci, o) in out.iter_mut().enumerate() {
            let plane = &gout[(b * c + ci) * s..(b * c + ci + 1) * s];
            // pairwise-ish: 8 partial sums for accuracy and vectorisation
            let mut acc = [T::ZERO; 8];
            let mut it = plane.chunks_exact(8);
            for ch in &mut it {
                for l in 0..8 {
                    acc[l] = acc[l] + ch[l];
                }
            }
            let mut sum = T::ZERO;
            for v in it.remainder() {
                sum = sum + *v;
            }
            for a in acc {
                sum = sum + a;
            }
            *o = *o + sum;
        }
    }
    out
}

// ============================================================================
// Tensor-level entry points (dispatch on dtype; f16/bf16 go through f32)
// ============================================================================

/// Contiguous data of `t` as a slice of T (after to_contiguous).
fn data<T: Scalar>(t: &FlexTensor) -> &[T] {
    let off = t.layout().start_offset();
    let n = t.layout().num_elements();
    &t.storage::<T>()[off..off + n]
}

fn make<T: Scalar>(v: Vec<T>, shape: Vec<usize>, dtype: DType) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(v), Layout::contiguous(Shape::from(shape)), dtype)
}

fn spatial3(dims: &[usize]) -> [usize; 3] {
    match dims.len() {
        5 => [dims[2], dims[3], dims[4]],
        4 => [1, dims[2], dims[3]],
        3 => [1, 1, dims[2]],
        _ => panic!("conv: unsupported rank {}", dims.len()),
    }
}

fn lift<const N: usize>(a: [usize; N], fill: usize) -> [usize; 3] {
    let mut r = [fill; 3];
    r[3 - N..].copy_from_slice(&a);
    r
}

fn dims(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().iter().copied().collect()
}

fn out_shape(batch: usize, c: usize, sp: [usize; 3], rank: usize) -> Vec<usize> {
    let mut v = vec![batch, c];
    v.extend_from_slice(&sp[3 - (rank - 2)..]);
    v
}

/// Whether a float dtype can take the patched path.
pub(crate) fn supported(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

fn to_f32(t: FlexTensor) -> FlexTensor {
    use burn_backend::ops::FloatTensorOps;
    <crate::Flex as FloatTensorOps<crate::Flex>>::float_cast(t, burn_backend::FloatDType::F32)
}

fn from_f32(t: FlexTensor, dtype: DType) -> FlexTensor {
    use burn_backend::ops::FloatTensorOps;
    let fd = match dtype {
        DType::F16 => burn_backend::FloatDType::F16,
        DType::BF16 => burn_backend::FloatDType::BF16,
        DType::F64 => burn_backend::FloatDType::F64,
        _ => burn_backend::FloatDType::F32,
    };
    <crate::Flex as FloatTensorOps<crate::Flex>>::float_cast(t, fd)
}

macro_rules! by_dtype {
    ($dtype:expr, $T:ident => $body:expr, $tensors:ident => $recast:expr) => {
        match $dtype {
            DType::F32 => {
                type $T = f32;
                $body
            }
            DType::F64 => {
                type $T = f64;
                $body
            }
            _ => $recast,
        }
    };
}

/// Convolution forward (rank 4 or 5 tensors).
pub(crate) fn conv_forward<const N: usize>(
    x: FlexTensor,
    w: FlexTensor,
    bias: Option<FlexTensor>,
    options: &burn_backend::ops::ConvOptions<N>,
) -> FlexTensor {
    let dtype = x.dtype();
    if !matches!(dtype, DType::F32 | DType::F64) {
        let out = conv_forward(to_f32(x), to_f32(w), bias.map(to_f32), options);
        return from_f32(out, dtype);
    }
    let x = x.to_contiguous();
    let w = w.to_contiguous();
    let bias = bias.map(|b| b.to_contiguous());
    let xd = dims(&x);
    let wd = dims(&w);
    let ins = spatial3(&xd);
    let k = spatial3(&wd);
    let s = lift(options.stride, 1);
    let p = lift(options.padding_begin(), 0);
    let pe = lift(options.padding_end(), 0);
    let d = lift(options.dilation, 1);
    let mut outs = [0; 3];
    for i in 0..3 {
        outs[i] = (ins[i] + p[i] + pe[i] - d[i] * (k[i] - 1) - 1) / s[i] + 1;
    }
    let g = Geo { n: xd[0], groups: options.groups, cin: xd[1], cout: wd[0], ins, outs, k, s, p, d };
    let shape = out_shape(g.n, g.cout, outs, xd.len());
    by_dtype!(dtype, T => {
        let v = forward::<T>(data(&x), data(&w), bias.as_ref().map(|b| data::<T>(b)), &g);
        make(v, shape, dtype)
    }, t => unreachable!())
}

fn conv_geo<const N: usize>(xd: &[usize], wd: &[usize], god: &[usize], options: &burn_backend::ops::ConvOptions<N>) -> Geo {
    Geo {
        n: xd[0],
        groups: options.groups,
        cin: xd[1],
        cout: wd[0],
        ins: spatial3(xd),
        outs: spatial3(god),
        k: spatial3(wd),
        s: lift(options.stride, 1),
        p: lift(options.padding_begin(), 0),
        d: lift(options.dilation, 1),
    }
}

/// Convolution input gradient.
pub(crate) fn conv_x_backward<const N: usize>(
    x: FlexTensor,
    w: FlexTensor,
    gout: FlexTensor,
    options: &burn_backend::ops::ConvOptions<N>,
) -> FlexTensor {
    let dtype = gout.dtype();
    if !matches!(dtype, DType::F32 | DType::F64) {
        let out = conv_x_backward(x, to_f32(w), to_f32(gout), options);
        return from_f32(out, dtype);
    }
    let w = w.to_contiguous();
    let gout = gout.to_contiguous();
    let xd = dims(&x);
    let g = conv_geo(&xd, &dims(&w), &dims(&gout), options);
    by_dtype!(dtype, T => {
        let v = input_grad::<T>(data(&w), data(&gout), &g);
        make(v, xd, dtype)
    }, t => unreachable!())
}

/// Convolution weight gradient.
pub(crate) fn conv_weight_backward<const N: usize>(
    x: FlexTensor,
    w: FlexTensor,
    gout: FlexTensor,
    options: &burn_backend::ops::ConvOptions<N>,
) -> FlexTensor {
    let dtype = w.dtype();
    if !matches!(dtype, DType::F32 | DType::F64) || x.dtype() != dtype || gout.dtype() != dtype {
        let out = conv_weight_backward(to_f32(x), to_f32(w), to_f32(gout), options);
        return from_f32(out, dtype);
    }
    let x = x.to_contiguous();
    let gout = gout.to_contiguous();
    let wd = dims(&w);
    let g = conv_geo(&dims(&x), &wd, &dims(&gout), options);
    by_dtype!(dtype, T => {
        let v = weight_grad::<T>(data(&x), data(&gout), &g);
        make(v, wd, dtype)
    }, t => unreachable!())
}

/// Bias gradient for conv and transposed conv.
pub(crate) fn bias_backward(bias: FlexTensor, gout: FlexTensor) -> FlexTensor {
    let dtype = bias.dtype();
    if !matches!(dtype, DType::F32 | DType::F64) || gout.dtype() != dtype {
        let out = bias_backward(to_f32(bias), to_f32(gout));
        return from_f32(out, dtype);
    }
    let gout = gout.to_contiguous();
    let gd = dims(&gout);
    let s: usize = gd[2..].iter().product();
    let bd = dims(&bias);
    by_dtype!(dtype, T => {
        let v = bias_grad::<T>(data(&gout), gd[0], gd[1], s);
        make(v, bd, dtype)
    }, t => unreachable!())
}

/// Geometry of the convolution whose input gradient is the transposed convolution:
/// conv input = transposed-conv output (size `ys`), conv output = transposed-conv input.
fn tgeo<const N: usize>(xd: &[usize], wd: &[usize], ys: [usize; 3], options: &burn_backend::ops::ConvTransposeOptions<N>) -> Geo {
    Geo {
        n: xd[0],
        groups: options.groups,
        cin: wd[1] * options.groups,
        cout: xd[1],
        ins: ys,
        outs: spatial3(xd),
        k: spatial3(wd),
        s: lift(options.stride, 1),
        p: lift(options.padding, 0),
        d: lift(options.dilation, 1),
    }
}

/// Transposed convolution forward: x [n, ci, ...], w [ci, co/groups, k...].
pub(crate) fn conv_transpose_forward<const N: usize>(
    x: FlexTensor,
    w: FlexTensor,
    bias: Option<FlexTensor>,
    options: &burn_backend::ops::ConvTransposeOptions<N>,
) -> FlexTensor {
    let dtype = x.dtype();
    if !matches!(dtype, DType::F32 | DType::F64) {
        let out = conv_transpose_forward(to_f32(x), to_f32(w), bias.map(to_f32), options);
        return from_f32(out, dtype);
    }
    let x = x.to_contiguous();
    let w = w.to_contiguous();
    let xd = dims(&x);
    let wd = dims(&w);
    let xs = spatial3(&xd);
    let k = spatial3(&wd);
    let s = lift(options.stride, 1);
    let p = lift(options.padding, 0);
    let po = lift(options.padding_out, 0);
    let d = lift(options.dilation, 1);
    let mut ys = [0; 3];
    for i in 0..3 {
        ys[i] = (xs[i] - 1) * s[i] + d[i] * (k[i] - 1) + po[i] + 1 - 2 * p[i];
    }
    let g = tgeo(&xd, &wd, ys, options);
    let shape = out_shape(g.n, g.cin, ys, xd.len());
    by_dtype!(dtype, T => {
        let mut v = input_grad::<T>(data(&w), data(&x), &g);
        if let Some(b) = bias {
            let b = b.to_contiguous();
            let bd: &[T] = data(&b);
            let sy = g.s_in();
            for (i, plane) in v.chunks_mut(sy.max(1)).enumerate() {
                let bv = bd[i % g.cin];
                for e in plane {
                    *e = *e + bv;
                }
            }
        }
        make(v, shape, dtype)
    }, t => unreachable!())
}

/// Transposed convolution weight gradient.
pub(crate) fn conv_transpose_weight_backward<const N: usize>(
    x: FlexTensor,
    w: FlexTensor,
    gout: FlexTensor,
    options: &burn_backend::ops::ConvTransposeOptions<N>,
) -> FlexTensor {
    let dtype = w.dtype();
    if !matches!(dtype, DType::F32 | DType::F64) || x.dtype() != dtype || gout.dtype() != dtype {
        let out = conv_transpose_weight_backward(to_f32(x), to_f32(w), to_f32(gout), options);
        return from_f32(out, dtype);
    }
    let x = x.to_contiguous();
    let gout = gout.to_contiguous();
    let xd = dims(&x);
    let wd = dims(&w);
    let g = tgeo(&xd, &wd, spatial3(&dims(&gout)), options);
    by_dtype!(dtype, T => {
        // adjoint conv: input = gout (transposed output), output gradient = x
        let v = weight_grad::<T>(data(&gout), data(&x), &g);
        make(v, wd, dtype)
    }, t => unreachable!())
}

// ============================================================================
// Outer-parallel variants: independent (sample, chunk) tasks, each with its own im2col buffer
// and a single-threaded GEMM (better than splitting one small GEMM across threads).
// ============================================================================

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

fn task_chunk(g: &Geo) -> usize {
    let rows = g.cig() * g.kvol();
    ((1usize << 18) / rows.max(1)).max(128).min(g.s_out().max(1))
}

pub(crate) fn outer_parallel() -> bool {
    #[cfg(all(feature = "rayon", feature = "std"))]
    {
        static C: once_cell_lite::Lazy = once_cell_lite::Lazy::new();
        C.get(|| match std::env::var("BURN_FLEX_CONV_OUTER").as_deref() {
            Ok("0") => 1,
            _ => 2,
        }) == 2
    }
    #[cfg(not(all(feature = "rayon", feature = "std")))]
    {
        false
    }
}

/// Whether the forward convolution takes the patched path (`BURN_FLEX_FAST_CONV_FWD=0`: original).
pub fn forward_enabled() -> bool {
    #[cfg(feature = "std")]
    {
        static C: once_cell_lite::Lazy = once_cell_lite::Lazy::new();
        C.get(|| match std::env::var("BURN_FLEX_FAST_CONV_FWD").as_deref() {
            Ok("0") => 1,
            _ => 2,
        }) == 2
    }
    #[cfg(not(feature = "std"))]
    {
        true
    }
}

#[cfg(feature = "rayon")]
pub(crate) fn forward_outer<T: Scalar>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Geo) -> Vec<T> {
    use rayon::prelude::*;
    let (cig, cog, kv, s_in, s_out) = (g.cig(), g.cog(), g.kvol(), g.s_in(), g.s_out());
    let rows = cig * kv;
    let mut out = vec![T::ZERO; g.n * g.cout * s_out];
    if let Some(b) = bias {
        for (i, p) in out.chunks_mut(s_out.max(1)).enumerate() {
            p.fill(b[i % g.cout]);
        }
    }
    let read = bias.is_some();
    let pw = g.is_pointwise();
    let chunk = task_chunk(g);
    let nch = s_out.div_ceil(chunk);
    let ntask = g.n * g.groups * nch;
    let outp = SendPtr(out.as_mut_ptr());
    (0..ntask).into_par_iter().for_each_init(
        || if pw { Vec::new() } else { vec![T::ZERO; rows * chunk] },
        |col, t| {
            let outp = outp;
            let (n, gr, ci) = (t / (g.groups * nch), (t / nch) % g.groups, t % nch);
            let s0 = ci * chunk;
            let s1 = (s0 + chunk).min(s_out);
            let len = s1 - s0;
            let xs = &x[(n * g.cin + gr * cig) * s_in..(n * g.cin + (gr + 1) * cig) * s_in];
            let ws = &w[gr * cog * rows..(gr + 1) * cog * rows];
            let dst = unsafe { outp.0.add((n * g.cout + gr * cog) * s_out + s0) };
            if pw {
                unsafe {
                    gemm_strided(cog, len, rows, dst, s_out, 1, read, ws.as_ptr(), rows, 1, xs.as_ptr().add(s0), s_in, 1, false);
                }
                return;
            }
            let colc = &mut col[..rows * len];
            im2col(xs, g, s0, s1, colc, false);
            unsafe {
                gemm_strided(cog, len, rows, dst, s_out, 1, read, ws.as_ptr(), rows, 1, colc.as_ptr(), len, 1, false);
            }
        },
    );
    out
}

#[cfg(feature = "rayon")]
pub(crate) fn weight_grad_outer<T: Scalar>(x: &[T], gout: &[T], g: &Geo) -> Vec<T> {
    use rayon::prelude::*;
    let (cig, cog, kv, s_in, s_out) = (g.cig(), g.cog(), g.kvol(), g.s_in(), g.s_out());
    let rows = cig * kv;
    let pw = g.is_pointwise();
    let chunk = task_chunk(g);
    let nch = s_out.div_ceil(chunk);
    let ntask = g.n * g.groups * nch;
    let len_w = g.cout * rows;
    let (acc, _) = (0..ntask)
        .into_par_iter()
        .fold(
            || (vec![T::ZERO; len_w], Vec::<T>::new()),
            |(mut dw, mut col), t| {
                let (n, gr, ci) = (t / (g.groups * nch), (t / nch) % g.groups, t % nch);
                let s0 = ci * chunk;
                let s1 = (s0 + chunk).min(s_out);
                let len = s1 - s0;
                let xs = &x[(n * g.cin + gr * cig) * s_in..(n * g.cin + (gr + 1) * cig) * s_in];
                let go = &gout[(n * g.cout + gr * cog) * s_out..(n * g.cout + (gr + 1) * cog) * s_out];
                let dws = &mut dw[gr * cog * rows..(gr + 1) * cog * rows];
                if pw {
                    unsafe {
                        gemm_strided(cog, rows, len, dws.as_mut_ptr(), rows, 1, true, go.as_ptr().add(s0), s_out, 1, xs.as_ptr().add(s0), 1, s_in, false);
                    }
                } else {
                    if col.len() < rows * len {
                        col.resize(rows * chunk, T::ZERO);
                    }
                    let colc = &mut col[..rows * len];
                    im2col(xs, g, s0, s1, colc, false);
                    unsafe {
                        gemm_strided(cog, rows, len, dws.as_mut_ptr(), rows, 1, true, go.as_ptr().add(s0), s_out, 1, colc.as_ptr(), 1, len, false);
                    }
                }
                (dw, col)
            },
        )
        .reduce(
            || (Vec::new(), Vec::new()),
            |(a, _), (b, _)| {
                if a.is_empty() {
                    return (b, Vec::new());
                }
                if b.is_empty() {
                    return (a, Vec::new());
                }
                let mut a = a;
                for (x, y) in a.iter_mut().zip(&b) {
                    *x = *x + *y;
                }
                (a, Vec::new())
            },
        );
    if acc.is_empty() { vec![T::ZERO; len_w] } else { acc }
}

/// Input gradient with one task per sample (samples own disjoint dx).
#[cfg(feature = "rayon")]
pub(crate) fn input_grad_outer<T: Scalar>(w: &[T], gout: &[T], g: &Geo) -> Vec<T> {
    use rayon::prelude::*;
    let (cig, cog, kv, s_in, s_out) = (g.cig(), g.cog(), g.kvol(), g.s_in(), g.s_out());
    let rows = cig * kv;
    let mut dx = vec![T::ZERO; g.n * g.cin * s_in];
    let pw = g.is_pointwise();
    let chunk = task_chunk(g);
    dx.par_chunks_mut((g.cin * s_in).max(1)).enumerate().for_each(|(n, dxn)| {
        let mut col = if pw { Vec::new() } else { vec![T::ZERO; rows * chunk] };
        for gr in 0..g.groups {
            let ws = &w[gr * cog * rows..(gr + 1) * cog * rows];
            let go = &gout[(n * g.cout + gr * cog) * s_out..(n * g.cout + (gr + 1) * cog) * s_out];
            let dxs = &mut dxn[gr * cig * s_in..(gr + 1) * cig * s_in];
            if pw {
                unsafe {
                    gemm_strided(rows, s_out, cog, dxs.as_mut_ptr(), s_in, 1, false, ws.as_ptr(), 1, rows, go.as_ptr(), s_out, 1, false);
                }
                continue;
            }
            let mut s0 = 0;
            while s0 < s_out {
                let s1 = (s0 + chunk).min(s_out);
                let len = s1 - s0;
                let colc = &mut col[..rows * len];
                unsafe {
                    gemm_strided(rows, len, cog, colc.as_mut_ptr(), len, 1, false, ws.as_ptr(), 1, rows, go.as_ptr().add(s0), s_out, 1, false);
                }
                col2im(colc, g, s0, s1, dxs, false);
                s0 = s1;
            }
        }
    });
    dx
}
