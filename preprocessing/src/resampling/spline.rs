//! The 1-D passes of `scipy.ndimage.zoom` (grid mode, mode "nearest"): B-spline weights and
//! prefilter, the taps of an axis, spline and nearest-neighbour resizing.

use ndarray::{Array3, ArrayView2, ArrayView3, ArrayViewMut2, Axis, s};
use rayon::prelude::*;

use super::shape3;

/// scipy pads this many edge copies on every side before the spline prefilter (mode "nearest").
const SPLINE_PAD: usize = 12;

/// Columns handled together in one 1-D pass along a non-last axis.
const BLOCK_WIDTH: usize = 128;

/// Spline interpolation (no clip) of every axis whose size changes, one axis after the other,
/// the most shrinking axis first (least work; the result does not depend on the order beyond
/// rounding).
pub(super) fn interpolate(
    vol: ArrayView3<f64>,
    new_shape: [usize; 3],
    order: usize,
) -> Array3<f64> {
    let shape = shape3(&vol);
    if shape.contains(&0) || new_shape.contains(&0) {
        return Array3::zeros(new_shape);
    }
    let mut axes: Vec<usize> = (0..3).filter(|&a| shape[a] != new_shape[a]).collect();
    axes.sort_by(|&a, &b| {
        let ra = new_shape[a] as f64 / shape[a] as f64;
        let rb = new_shape[b] as f64 / shape[b] as f64;
        ra.total_cmp(&rb)
    });
    let mut current: Option<Array3<f64>> = None;
    for a in axes {
        let next = match &current {
            None => resample_axis(vol, a, new_shape[a], order),
            Some(c) => resample_axis(c.view(), a, new_shape[a], order),
        };
        current = Some(next);
    }
    current.unwrap_or_else(|| vol.to_owned())
}

/// B-spline interpolation weights of `order` at coordinate `x`, as scipy computes them
/// (`get_spline_interpolation_weights`): the last weight is one minus the others.
fn spline_weights(x: f64, order: usize) -> [f64; 6] {
    let mut w = [0.0; 6];
    let x = x - if order & 1 == 1 {
        x.floor()
    } else {
        (x + 0.5).floor()
    };
    let z = 1.0 - x;
    match order {
        0 => {}
        1 => w[0] = 1.0 - x,
        2 => {
            w[1] = 0.75 - x * x;
            let y = 0.5 - x;
            w[0] = 0.5 * y * y;
        }
        3 => {
            let y = x;
            w[1] = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0;
            w[2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
            w[0] = z * z * z / 6.0;
        }
        4 => {
            let t = x * x;
            w[2] = t * (t * 0.25 - 0.625) + 115.0 / 192.0;
            let y = 1.0 + x;
            w[1] = y * (y * (y * (5.0 - y) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0;
            w[3] = z * (z * (z * (5.0 - z) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0;
            let y = 0.5 - x;
            let t = y * y;
            w[0] = t * t / 24.0;
        }
        _ => {
            let y = x;
            let t = y * y;
            w[2] = t * (t * (0.25 - y / 12.0) - 0.5) + 0.55;
            let t = z * z;
            w[3] = t * (t * (0.25 - z / 12.0) - 0.5) + 0.55;
            let y = y + 1.0;
            w[1] = y * (y * (y * (y * (y / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425;
            let z = z + 1.0;
            w[4] = z * (z * (z * (z * (z / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425;
            let y = 1.0 - x;
            let t = y * y;
            w[0] = y * t * t / 120.0;
        }
    }
    let order = order.min(5);
    w[order] = 1.0;
    for i in 0..order {
        w[order] -= w[i];
    }
    w
}

/// The poles of the B-spline prefilter of `order` (none for orders 0 and 1).
fn spline_poles(order: usize) -> &'static [f64] {
    match order {
        2 => &[-0.171_572_875_253_809_9],
        3 => &[-0.267_949_192_431_122_7],
        4 => &[-0.361_341_225_900_220_2, -0.013_725_429_297_339_121],
        5 => &[-0.430_575_347_099_973_8, -0.043_096_288_203_264_65],
        _ => &[],
    }
}

/// The taps of one axis: for output voxel `k`, input (padded) indices `idx[k * (order + 1) + t]`
/// with weights `w[k][t]`.
pub(super) struct Taps {
    /// The spline order (`order + 1` taps per output voxel).
    order: usize,
    /// The edge padding of the input (scipy's 12 for `order > 1`, else 0).
    pad: usize,
    /// Padded input indices, `order + 1` per output voxel.
    pub(super) idx: Vec<usize>,
    /// The spline weights of each output voxel (the first `order + 1` are used).
    pub(super) w: Vec<[f64; 6]>,
}

impl Taps {
    /// Taps for zooming `n` samples to `m` (grid mode, mode "nearest"), with the spline padding
    /// scipy uses for `order > 1`.
    pub(super) fn new(n: usize, m: usize, order: usize) -> Taps {
        let pad = if order > 1 { SPLINE_PAD } else { 0 };
        let len = (n + 2 * pad) as isize;
        let scale = n as f64 / m as f64;
        let mut idx = Vec::with_capacity(m * (order + 1));
        let mut w = Vec::with_capacity(m);
        for k in 0..m {
            let cc = (k as f64 + 0.5) * scale - 0.5 + pad as f64;
            let start = if order & 1 == 1 {
                cc.floor()
            } else {
                (cc + 0.5).floor()
            } as isize
                - (order / 2) as isize;
            for t in 0..=order as isize {
                idx.push((start + t).clamp(0, len - 1) as usize);
            }
            w.push(if order > 0 {
                spline_weights(cc, order)
            } else {
                [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
            });
        }
        Taps { order, pad, idx, w }
    }
}

/// In-place B-spline prefilter of `width` interleaved lines of length `len` (`buf[i * width + j]`
/// is sample `i` of line `j`), with scipy's "reflect" boundary initialisation (the one it uses
/// for mode "nearest").
fn spline_filter_lines(
    buf: &mut [f64],
    len: usize,
    width: usize,
    order: usize,
    sum: &mut Vec<f64>,
) {
    let poles = spline_poles(order);
    if poles.is_empty() || len < 2 {
        return;
    }
    let gain: f64 = poles.iter().map(|&z| (1.0 - z) * (1.0 - 1.0 / z)).product();
    for v in buf.iter_mut() {
        *v *= gain;
    }
    sum.resize(width, 0.0);
    for &z in poles {
        // causal initialisation (half-sample symmetric extension)
        let z_n = z.powi(len as i32);
        let last = (len - 1) * width;
        for j in 0..width {
            sum[j] = buf[j] + z_n * buf[last + j];
        }
        let mut z_i = z;
        for i in 1..len {
            let a = i * width;
            let b = (len - 1 - i) * width;
            for j in 0..width {
                sum[j] += z_i * (buf[a + j] + z_n * buf[b + j]);
            }
            z_i *= z;
        }
        let f = z / (1.0 - z_n * z_n);
        for j in 0..width {
            buf[j] += sum[j] * f;
        }
        // causal pass
        for i in 1..len {
            let (prev, cur) = buf.split_at_mut(i * width);
            let prev = &prev[(i - 1) * width..];
            for (c, p) in cur[..width].iter_mut().zip(prev) {
                *c += z * *p;
            }
        }
        // anticausal initialisation and pass
        let f = z / (z - 1.0);
        for v in &mut buf[last..last + width] {
            *v *= f;
        }
        for i in (0..len - 1).rev() {
            let (cur, next) = buf.split_at_mut((i + 1) * width);
            let cur = &mut cur[i * width..];
            for (c, n) in cur.iter_mut().zip(&next[..width]) {
                *c = z * (*n - *c);
            }
        }
    }
}

/// Resamples `input` along `axis` to `m` samples with spline `order`, mode "nearest", grid mode
/// (scipy `zoom` along one axis, including its padded prefilter). Other axes are untouched.
pub(super) fn resample_axis(
    input: ArrayView3<f64>,
    axis: usize,
    m: usize,
    order: usize,
) -> Array3<f64> {
    let shape = shape3(&input);
    let n = shape[axis];
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out_shape = shape;
    out_shape[axis] = m;
    if outer == 0 || inner == 0 || n == 0 || m == 0 {
        return Array3::zeros(out_shape);
    }
    let taps = Taps::new(n, m, order);
    let input = input.as_standard_layout();
    let src = match input.view().into_shape_with_order((outer, n, inner)) {
        Ok(v) => v,
        Err(_) => unreachable!("a standard-layout array can be reshaped"),
    };
    let mut out = Array3::<f64>::zeros((outer, m, inner));
    {
        let width = inner.min(BLOCK_WIDTH);
        let mut blocks: Vec<(ArrayView2<f64>, ArrayViewMut2<f64>)> = Vec::new();
        for (o, d) in out.outer_iter_mut().enumerate() {
            for (c, db) in d.into_axis_chunks_iter_mut(Axis(1), width).enumerate() {
                let c0 = c * width;
                let sb = src.slice_move(s![o, .., c0..c0 + db.ncols()]);
                blocks.push((sb, db));
            }
        }
        let min_len = (4096 / (n + m) / width).max(1);
        blocks.into_par_iter().with_min_len(min_len).for_each_init(
            || (Vec::new(), Vec::new()),
            |(buf, sum), (sb, db)| process_block(sb, db, &taps, buf, sum),
        );
    }
    match out.into_shape_with_order(out_shape) {
        Ok(o) => o,
        Err(_) => unreachable!("sizes match"),
    }
}

/// One block of `w` lines along the axis: gather (with edge padding), prefilter, interpolate.
fn process_block(
    src: ArrayView2<f64>,
    mut dst: ArrayViewMut2<f64>,
    taps: &Taps,
    buf: &mut Vec<f64>,
    sum: &mut Vec<f64>,
) {
    let (n, w) = src.dim();
    let pad = taps.pad;
    let len = n + 2 * pad;
    buf.clear();
    buf.resize(len * w, 0.0);
    for (i, row) in src.outer_iter().enumerate() {
        for (b, v) in buf[(pad + i) * w..(pad + i + 1) * w]
            .iter_mut()
            .zip(row.iter())
        {
            *b = *v;
        }
    }
    for i in 0..pad {
        buf.copy_within(pad * w..(pad + 1) * w, i * w);
        buf.copy_within((pad + n - 1) * w..(pad + n) * w, (pad + n + i) * w);
    }
    spline_filter_lines(buf, len, w, taps.order, sum);
    let k_taps = taps.order + 1;
    for (k, mut row) in dst.outer_iter_mut().enumerate() {
        let idx = &taps.idx[k * k_taps..(k + 1) * k_taps];
        let wk = &taps.w[k];
        if taps.order == 0 {
            let s = &buf[idx[0] * w..(idx[0] + 1) * w];
            for (d, v) in row.iter_mut().zip(s) {
                *d = *v;
            }
            continue;
        }
        let s0 = &buf[idx[0] * w..(idx[0] + 1) * w];
        for (d, v) in row.iter_mut().zip(s0) {
            *d = *v * wk[0];
        }
        for t in 1..k_taps {
            let s = &buf[idx[t] * w..(idx[t] + 1) * w];
            let wt = wk[t];
            for (d, v) in row.iter_mut().zip(s) {
                *d += *v * wt;
            }
        }
    }
}

/// Nearest-neighbour indices of one axis (scipy order 0: `floor(cc + 0.5)`, clamped).
pub(super) fn nearest_indices(n: usize, m: usize) -> Vec<usize> {
    let scale = n as f64 / m as f64;
    (0..m)
        .map(|k| {
            let cc = (k as f64 + 0.5) * scale - 0.5;
            ((cc + 0.5).floor() as isize).clamp(0, n as isize - 1) as usize
        })
        .collect()
}

/// Order-0 resize (nearest neighbour, scipy semantics) of any copyable volume.
pub(super) fn nearest_resize<T: Copy + Default + Send + Sync>(
    vol: ArrayView3<T>,
    new_shape: [usize; 3],
) -> Array3<T> {
    let (d0, d1, d2) = vol.dim();
    if d0 == 0 || d1 == 0 || d2 == 0 {
        return Array3::from_elem(new_shape, T::default());
    }
    let i0 = nearest_indices(d0, new_shape[0]);
    let i1 = nearest_indices(d1, new_shape[1]);
    let i2 = nearest_indices(d2, new_shape[2]);
    let mut out = Array3::from_elem(new_shape, T::default());
    let plane = new_shape[1] * new_shape[2];
    if plane == 0 {
        return out;
    }
    if let Some(o) = out.as_slice_mut() {
        o.par_chunks_mut(plane).enumerate().for_each(|(z, p)| {
            let sz = vol.index_axis(Axis(0), i0[z]);
            for (y, row) in p.chunks_mut(new_shape[2]).enumerate() {
                let sy = sz.index_axis(Axis(0), i1[y]);
                for (x, v) in row.iter_mut().enumerate() {
                    *v = sy[i2[x]];
                }
            }
        });
    }
    out
}
