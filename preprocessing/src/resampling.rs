//! Resampling of images and segmentations to a target spacing, as nnU-Net does it.
//!
//! This reproduces `resample_data_or_seg_to_shape` of nnU-Net v2.8.1
//! (`nnunetv2.preprocessing.resampling.default_resampling`) with what it calls underneath:
//! scikit-image `resize(order, mode="edge", anti_aliasing=False)`, which is
//! `scipy.ndimage.zoom(order, mode="nearest", grid_mode=True)` followed by a clip to the input's
//! range, and batchgenerators 0.25.5 `resize_segmentation` (per-label indicator interpolation with
//! an argmax, exact ties settled by the nearest-neighbour label).
//!
//! How scipy evaluates it, and how this module does the same:
//! * Output voxel `k` of an axis with `n` input and `m` output voxels samples the input at
//!   `cc = (k + 0.5) * (n / m) - 0.5` (pixel-area aligned). The spline of order `p` uses the taps
//!   `floor(cc) - p/2 ..` (odd `p`) or `floor(cc + 0.5) - p/2 ..` (even `p`), with scipy's
//!   B-spline weights; taps outside the array are clamped to the edge (mode "nearest").
//! * For `p > 1` scipy first pads the array by 12 edge copies on every side, runs the B-spline
//!   prefilter on the padded array with the half-sample-symmetric ("reflect") boundary
//!   initialisation, and samples at `cc + 12`. The prefilter and the interpolation are separable,
//!   so here each axis is padded, filtered and interpolated in turn (1-D passes, in parallel over
//!   lines); the result equals scipy's up to floating-point rounding (~1e-15 relative).
//!   Axes whose size does not change are left alone (scipy's result there is the identity up to
//!   rounding).
//! * Everything is computed in `f64` and written back as `f32` (or `i16` for label maps).
//! * Label maps with order 1 are evaluated per voxel exactly as scipy sums the indicator
//!   interpolation (same products, same summation order), so exact ties, which decide the
//!   nearest-neighbour tie-break, are found bit for bit.

use ndarray::{Array3, Array4, ArrayView2, ArrayView3, ArrayView4, ArrayViewMut2, Axis, s};
use rayon::prelude::*;

use nnunet_core::error::{Error, Result};

/// The anisotropy ratio above which nnU-Net resamples the coarse axis separately
/// (`nnunetv2.configuration.ANISO_THRESHOLD`).
pub const ANISOTROPY_THRESHOLD: f64 = 3.0;

/// scipy pads this many edge copies on every side before the spline prefilter (mode "nearest").
const SPLINE_PAD: usize = 12;

/// Columns handled together in one 1-D pass along a non-last axis.
const BLOCK_WIDTH: usize = 128;

/// The resampling arguments of a plans configuration (`resampling_fn_data_kwargs` or
/// `resampling_fn_seg_kwargs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResamplingSettings {
    /// Spline order in 3-D, or in the plane when the coarse axis is resampled separately
    /// (3 for images, 1 for label maps and probabilities). 0 to 5.
    pub order: usize,
    /// Spline order along the separately resampled axis (0 in nnU-Net's plans). 0 to 5.
    pub order_z: usize,
    /// `Some(true)` forces separate resampling of the coarsest axis of the current spacing,
    /// `Some(false)` forbids it, `None` decides from the spacings.
    pub force_separate_z: Option<bool>,
}

impl Default for ResamplingSettings {
    /// The image settings of nnU-Net's default plans (order 3, order_z 0, decide from spacing).
    fn default() -> Self {
        ResamplingSettings {
            order: 3,
            order_z: 0,
            force_separate_z: None,
        }
    }
}

/// The new shape for resampling `old_shape` from `old_spacing` to `new_spacing`:
/// `round(old_spacing / new_spacing * old_shape)` per axis, rounding half to even like Python.
pub fn compute_new_shape(
    old_shape: [usize; 3],
    old_spacing: [f64; 3],
    new_spacing: [f64; 3],
) -> [usize; 3] {
    std::array::from_fn(|i| {
        let v = old_spacing[i] / new_spacing[i] * old_shape[i] as f64;
        if v.is_finite() && v > 0.0 {
            v.round_ties_even() as usize
        } else {
            0
        }
    })
}

/// Whether the spacing is anisotropic enough for separate resampling (`max / min > 3`).
fn is_anisotropic(spacing: [f64; 3]) -> bool {
    let max = spacing.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = spacing.iter().copied().fold(f64::INFINITY, f64::min);
    max / min > ANISOTROPY_THRESHOLD
}

/// The axes with the largest spacing (`max(spacing) / spacing == 1`).
fn lowres_axes(spacing: [f64; 3]) -> Vec<usize> {
    let max = spacing.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (0..3).filter(|&i| max / spacing[i] == 1.0).collect()
}

/// nnU-Net's `determine_do_sep_z_and_axis`: the axis to resample separately, or `None`.
///
/// With `force_separate_z` unset, the current spacing is tested first (`max / min > 3`), then
/// the target spacing; the axis is the one with the largest spacing of the spacing that passed.
/// When two or three axes share the largest spacing there is no separate axis.
pub fn separate_z_axis(
    force_separate_z: Option<bool>,
    current_spacing: [f64; 3],
    target_spacing: [f64; 3],
) -> Option<usize> {
    let axes = match force_separate_z {
        Some(true) => lowres_axes(current_spacing),
        Some(false) => return None,
        None => {
            if is_anisotropic(current_spacing) {
                lowres_axes(current_spacing)
            } else if is_anisotropic(target_spacing) {
                lowres_axes(target_spacing)
            } else {
                return None;
            }
        }
    };
    if axes.len() == 1 { Some(axes[0]) } else { None }
}

fn check_order(order: usize, what: &str) -> Result<()> {
    if order > 5 {
        return Err(Error::Invalid(format!(
            "resampling: {what} {order} is not supported (0 to 5)"
        )));
    }
    Ok(())
}

/// Resamples image data `[c, z, y, x]` to `new_shape` as nnU-Net does for images (and, with
/// order 1, for probabilities): per channel (in parallel), in `f64`, written back as `f32`.
///
/// An unchanged shape returns a copy of the input. Without a separate axis each channel goes
/// through [`resize_volume`] (clipped to the channel's range); with one, each slice across the
/// separate axis is resized in the plane with `order` (clipped to the slice's range) and the
/// separate axis is then interpolated with `order_z` (not clipped).
pub fn resample_data(
    data: ArrayView4<f32>,
    new_shape: [usize; 3],
    current_spacing: [f64; 3],
    target_spacing: [f64; 3],
    settings: &ResamplingSettings,
) -> Result<Array4<f32>> {
    check_order(settings.order, "order")?;
    check_order(settings.order_z, "order_z")?;
    let (channels, d0, d1, d2) = data.dim();
    let shape = [d0, d1, d2];
    if shape == new_shape {
        return Ok(data.to_owned());
    }
    let out_shape = (channels, new_shape[0], new_shape[1], new_shape[2]);
    if new_shape.contains(&0) || channels == 0 {
        return Ok(Array4::zeros(out_shape));
    }
    if shape.contains(&0) {
        return Err(Error::Invalid(format!(
            "resampling: cannot resample an empty image of shape {shape:?} to {new_shape:?}"
        )));
    }
    let axis = separate_z_axis(settings.force_separate_z, current_spacing, target_spacing);
    let results: Vec<Array3<f32>> = (0..channels)
        .into_par_iter()
        .map(|c| {
            let vol = data.index_axis(Axis(0), c).mapv(f64::from);
            let out = match axis {
                None => resize_volume(vol.view(), new_shape, settings.order),
                Some(a) => {
                    resize_separate(vol.view(), new_shape, a, settings.order, settings.order_z)
                }
            };
            out.mapv(|v| v as f32)
        })
        .collect();
    let mut out = Array4::zeros(out_shape);
    for (c, r) in results.into_iter().enumerate() {
        out.index_axis_mut(Axis(0), c).assign(&r);
    }
    Ok(out)
}

/// Resamples a label map `[c, z, y, x]` (values such as -1, 0, 1, …) to `new_shape` as nnU-Net
/// does (`is_seg=True`): `resize_segmentation` of batchgenerators 0.25.5 in 3-D or per slice,
/// and with a separate axis nearest neighbour (`order_z` 0) along it.
pub fn resample_segmentation(
    seg: ArrayView4<i16>,
    new_shape: [usize; 3],
    current_spacing: [f64; 3],
    target_spacing: [f64; 3],
    settings: &ResamplingSettings,
) -> Result<Array4<i16>> {
    check_order(settings.order, "order")?;
    check_order(settings.order_z, "order_z")?;
    let (channels, d0, d1, d2) = seg.dim();
    let shape = [d0, d1, d2];
    if shape == new_shape {
        return Ok(seg.to_owned());
    }
    let out_shape = (channels, new_shape[0], new_shape[1], new_shape[2]);
    if new_shape.contains(&0) || channels == 0 || shape.contains(&0) {
        // batchgenerators returns zeros for an empty input
        return Ok(Array4::zeros(out_shape));
    }
    let axis = separate_z_axis(settings.force_separate_z, current_spacing, target_spacing);
    let mut out = Array4::zeros(out_shape);
    for c in 0..channels {
        let vol = seg.index_axis(Axis(0), c);
        let r = match axis {
            None => resize_segmentation(vol, new_shape, settings.order),
            Some(a) => {
                let mut plane_shape = new_shape;
                plane_shape[a] = shape[a];
                // a 3-D resize that keeps axis `a` is the per-slice 2-D resize, bit for bit
                let here = resize_segmentation(vol, plane_shape, settings.order);
                if shape[a] == new_shape[a] {
                    here
                } else if settings.order_z == 0 {
                    nearest_resize(here.view(), new_shape)
                } else {
                    threshold_labels_along_axis(here.view(), a, new_shape[a], settings.order_z)
                }
            }
        };
        out.index_axis_mut(Axis(0), c).assign(&r);
    }
    Ok(out)
}

/// skimage `resize(vol, new_shape, order, mode="edge", anti_aliasing=False)` of one volume:
/// spline interpolation of `order` (0 to 5) at pixel-area-aligned coordinates with edge
/// extension, clipped to the input's `[min, max]` (NaN ignored for the range).
/// Orders above 5 are treated as 5. An empty input gives zeros.
pub fn resize_volume(vol: ArrayView3<f64>, new_shape: [usize; 3], order: usize) -> Array3<f64> {
    let (lo, hi) = min_max(vol.iter().copied());
    let mut out = interpolate(vol, new_shape, order.min(5));
    clip(out.iter_mut(), lo, hi);
    out
}

/// Separate-axis resampling of one volume: in-plane `order` with a per-slice clip, then `order_z`
/// along `axis` (no clip).
fn resize_separate(
    vol: ArrayView3<f64>,
    new_shape: [usize; 3],
    axis: usize,
    order: usize,
    order_z: usize,
) -> Array3<f64> {
    let shape = vol.dim();
    let shape = [shape.0, shape.1, shape.2];
    let mut plane_shape = new_shape;
    plane_shape[axis] = shape[axis];
    let ranges: Vec<(f64, f64)> = vol
        .axis_iter(Axis(axis))
        .map(|s| min_max(s.iter().copied()))
        .collect();
    let mut here = interpolate(vol, plane_shape, order);
    for (mut s, &(lo, hi)) in here.axis_iter_mut(Axis(axis)).zip(&ranges) {
        clip(s.iter_mut(), lo, hi);
    }
    if shape[axis] == new_shape[axis] {
        here
    } else {
        resample_axis(here.view(), axis, new_shape[axis], order_z)
    }
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

fn clip<'a>(values: impl Iterator<Item = &'a mut f64>, lo: f64, hi: f64) {
    if lo > hi {
        return; // empty or all NaN
    }
    for v in values {
        if *v < lo {
            *v = lo;
        } else if *v > hi {
            *v = hi;
        }
    }
}

/// Spline interpolation (no clip) of every axis whose size changes, one axis after the other,
/// the most shrinking axis first (least work; the result does not depend on the order beyond
/// rounding).
fn interpolate(vol: ArrayView3<f64>, new_shape: [usize; 3], order: usize) -> Array3<f64> {
    let shape = vol.dim();
    let shape = [shape.0, shape.1, shape.2];
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

// ------------------------------------------------------------------------------------------------
// 1-D spline machinery (scipy.ndimage semantics)

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
struct Taps {
    order: usize,
    pad: usize,
    idx: Vec<usize>,
    w: Vec<[f64; 6]>,
}

impl Taps {
    /// Taps for zooming `n` samples to `m` (grid mode, mode "nearest"), with the spline padding
    /// scipy uses for `order > 1`.
    fn new(n: usize, m: usize, order: usize) -> Taps {
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
fn resample_axis(input: ArrayView3<f64>, axis: usize, m: usize, order: usize) -> Array3<f64> {
    let shape = input.dim();
    let shape = [shape.0, shape.1, shape.2];
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

// ------------------------------------------------------------------------------------------------
// label maps

/// Nearest-neighbour indices of one axis (scipy order 0: `floor(cc + 0.5)`, clamped).
fn nearest_indices(n: usize, m: usize) -> Vec<usize> {
    let scale = n as f64 / m as f64;
    (0..m)
        .map(|k| {
            let cc = (k as f64 + 0.5) * scale - 0.5;
            ((cc + 0.5).floor() as isize).clamp(0, n as isize - 1) as usize
        })
        .collect()
}

/// Order-0 resize (nearest neighbour, scipy semantics) of any copyable volume.
fn nearest_resize<T: Copy + Default + Send + Sync>(
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

/// The sorted distinct values of a label map.
fn unique_labels(vol: ArrayView3<i16>) -> Vec<i16> {
    let mut seen = vec![false; 1 << 16];
    for &v in vol.iter() {
        seen[(v as i32 + 32768) as usize] = true;
    }
    seen.iter()
        .enumerate()
        .filter(|(_, s)| **s)
        .map(|(i, _)| (i as i32 - 32768) as i16)
        .collect()
}

/// batchgenerators 0.25.5 `resize_segmentation(seg, new_shape, order)` of one volume: order 0 is
/// nearest neighbour; otherwise each label's indicator is resized (clipped) and each voxel takes
/// the label with the highest score, exact ties going to the nearest-neighbour label if it is
/// among them, else to the smallest tied label.
///
/// Order 1 is evaluated per voxel with scipy's exact products and summation order; higher orders
/// go through [`resize_volume`] per label (ties there are only as exact as the spline).
pub fn resize_segmentation(
    seg: ArrayView3<i16>,
    new_shape: [usize; 3],
    order: usize,
) -> Array3<i16> {
    let (d0, d1, d2) = seg.dim();
    if d0 == 0 || d1 == 0 || d2 == 0 || new_shape.contains(&0) {
        return Array3::zeros(new_shape);
    }
    if order == 0 {
        return nearest_resize(seg, new_shape);
    }
    let labels = unique_labels(seg);
    if labels.len() == 1 {
        return Array3::from_elem(new_shape, labels[0]);
    }
    if order == 1 {
        linear_label_argmax(seg, new_shape)
    } else {
        spline_label_argmax(seg, new_shape, order, &labels)
    }
}

/// Order-1 label resize, per output voxel over the 2^3 corner taps.
fn linear_label_argmax(seg: ArrayView3<i16>, new_shape: [usize; 3]) -> Array3<i16> {
    let seg = seg.as_standard_layout();
    let (d0, d1, d2) = seg.dim();
    let dims = [d0, d1, d2];
    let taps: [Taps; 3] = std::array::from_fn(|a| Taps::new(dims[a], new_shape[a], 1));
    let nn: [Vec<usize>; 3] = std::array::from_fn(|a| nearest_indices(dims[a], new_shape[a]));
    let mut out = Array3::<i16>::zeros(new_shape);
    let plane = new_shape[1] * new_shape[2];
    let (Some(src), Some(dst)) = (seg.as_slice(), out.as_slice_mut()) else {
        unreachable!("standard layout");
    };
    dst.par_chunks_mut(plane).enumerate().for_each(|(z, p)| {
        for (y, row) in p.chunks_mut(new_shape[2]).enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                let k = [z, y, x];
                let mut labels = [0i16; 8];
                let mut scores = [0f64; 8];
                let mut count = 0;
                // corners in scipy's order (last axis fastest); product w0 * w1 * w2
                for c in 0..8 {
                    let f = [(c >> 2) & 1, (c >> 1) & 1, c & 1];
                    let i = taps[0].idx[k[0] * 2 + f[0]];
                    let j = taps[1].idx[k[1] * 2 + f[1]];
                    let l = taps[2].idx[k[2] * 2 + f[2]];
                    let p = taps[0].w[k[0]][f[0]] * taps[1].w[k[1]][f[1]] * taps[2].w[k[2]][f[2]];
                    let label = src[(i * d1 + j) * d2 + l];
                    match labels[..count].iter().position(|&q| q == label) {
                        Some(s) => scores[s] += p,
                        None => {
                            labels[count] = label;
                            scores[count] = p;
                            count += 1;
                        }
                    }
                }
                let nn_label = src[(nn[0][z] * d1 + nn[1][y]) * d2 + nn[2][x]];
                *v = pick_label(&labels[..count], &mut scores[..count], nn_label);
            }
        }
    });
    out
}

/// The argmax with batchgenerators' tie rule over the candidate labels of one voxel (scores are
/// clipped to 1 first, as skimage clips each indicator).
fn pick_label(labels: &[i16], scores: &mut [f64], nn_label: i16) -> i16 {
    let mut best = f64::NEG_INFINITY;
    for s in scores.iter_mut() {
        if *s > 1.0 {
            *s = 1.0;
        }
        if *s > best {
            best = *s;
        }
    }
    let mut winner = i16::MAX;
    for (&l, &s) in labels.iter().zip(scores.iter()) {
        if s == best {
            if l == nn_label && s > 0.0 {
                return l;
            }
            winner = winner.min(l);
        }
    }
    winner
}

/// Label resize for spline orders above 1: each indicator through [`resize_volume`].
fn spline_label_argmax(
    seg: ArrayView3<i16>,
    new_shape: [usize; 3],
    order: usize,
    labels: &[i16],
) -> Array3<i16> {
    let nn = nearest_resize(seg, new_shape);
    let mut best = Array3::<f64>::from_elem(new_shape, f64::NEG_INFINITY);
    let mut win = Array3::<i16>::zeros(new_shape);
    let mut nn_top = Array3::<bool>::from_elem(new_shape, false);
    for &label in labels {
        let indicator = seg.mapv(|v| if v == label { 1.0 } else { 0.0 });
        let score = resize_volume(indicator.view(), new_shape, order);
        ndarray::Zip::from(&score)
            .and(&mut best)
            .and(&mut win)
            .and(&mut nn_top)
            .and(&nn)
            .for_each(|&s, b, w, t, &n| {
                let is_nn = n == label;
                if s > *b {
                    *b = s;
                    *w = label;
                    *t = is_nn && s > 0.0;
                } else if s == *b && is_nn && s > 0.0 {
                    *t = true;
                }
            });
    }
    ndarray::Zip::from(&mut win)
        .and(&nn_top)
        .and(&nn)
        .for_each(|w, &t, &n| {
            if t {
                *w = n;
            }
        });
    win
}

/// Separate-axis label interpolation with `order_z > 0` (nnU-Net: per label, the indicator is
/// interpolated along `axis` and the label written where it exceeds 0.5, ascending labels, on a
/// zero background).
fn threshold_labels_along_axis(
    seg: ArrayView3<i16>,
    axis: usize,
    m: usize,
    order_z: usize,
) -> Array3<i16> {
    let labels = unique_labels(seg);
    let mut out_shape = [seg.dim().0, seg.dim().1, seg.dim().2];
    out_shape[axis] = m;
    let mut out = Array3::<i16>::zeros(out_shape);
    for label in labels {
        let indicator = seg.mapv(|v| if v == label { 1.0 } else { 0.0 });
        let score = resample_axis(indicator.view(), axis, m, order_z);
        ndarray::Zip::from(&mut out).and(&score).for_each(|o, &s| {
            if s > 0.5 {
                *o = label;
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_shape_rounds_half_to_even() {
        assert_eq!(
            compute_new_shape([5, 3, 7], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]),
            [2, 2, 4]
        );
        assert_eq!(
            compute_new_shape([46, 384, 384], [3.0, 0.7, 0.7], [1.3, 1.0, 1.0]),
            [106, 269, 269]
        );
    }

    #[test]
    fn separate_axis_decision() {
        assert_eq!(
            separate_z_axis(None, [3.5, 1.0, 1.0], [1.0, 1.0, 1.0]),
            Some(0)
        );
        assert_eq!(
            separate_z_axis(None, [1.0, 1.0, 1.0], [1.0, 4.0, 1.0]),
            Some(1)
        );
        assert_eq!(
            separate_z_axis(None, [4.0, 4.0, 1.0], [1.0, 1.0, 1.0]),
            None
        );
        assert_eq!(
            separate_z_axis(None, [3.0, 1.0, 1.0], [1.0, 1.0, 1.0]),
            None
        );
        assert_eq!(
            separate_z_axis(Some(true), [1.0, 2.0, 1.0], [1.0, 1.0, 1.0]),
            Some(1)
        );
        assert_eq!(
            separate_z_axis(Some(false), [5.0, 1.0, 1.0], [1.0, 1.0, 1.0]),
            None
        );
    }

    #[test]
    fn spline_filter_keeps_constants_and_interpolates_samples() {
        let vol = Array3::from_shape_fn((4, 5, 6), |(z, y, x)| (z * 31 + y * 7 + x * x) as f64);
        // same size along an axis resampled explicitly: scipy gives the input back
        for axis in 0..3 {
            let n = vol.dim();
            let n = [n.0, n.1, n.2][axis];
            let r = resample_axis(vol.view(), axis, n, 3);
            let d = (&r - &vol).iter().fold(0.0f64, |a, v| a.max(v.abs()));
            assert!(d < 1e-9, "axis {axis}: {d}");
        }
        let c = Array3::from_elem((3, 4, 5), 2.5);
        let r = resize_volume(c.view(), [7, 2, 9], 3);
        assert!(r.iter().all(|v| (v - 2.5).abs() < 1e-12));
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        let s = ResamplingSettings::default();
        let d = Array4::<f32>::zeros((1, 1, 1, 1));
        let r = resample_data(d.view(), [3, 1, 2], [1.0; 3], [1.0; 3], &s).unwrap();
        assert_eq!(r.dim(), (1, 3, 1, 2));
        let e = Array4::<f32>::zeros((1, 0, 2, 2));
        assert!(resample_data(e.view(), [1, 2, 2], [1.0; 3], [1.0; 3], &s).is_err());
        let seg = Array4::<i16>::zeros((1, 0, 2, 2));
        let r = resample_segmentation(seg.view(), [1, 2, 2], [1.0; 3], [1.0; 3], &s).unwrap();
        assert_eq!(r.dim(), (1, 1, 2, 2));
        let seg = Array4::<i16>::from_elem((1, 2, 2, 2), 3);
        let r = resample_segmentation(seg.view(), [0, 5, 2], [1.0; 3], [1.0; 3], &s).unwrap();
        assert_eq!(r.dim(), (1, 0, 5, 2));
        let bad = ResamplingSettings { order: 7, ..s };
        assert!(resample_data(d.view(), [2, 1, 1], [1.0; 3], [1.0; 3], &bad).is_err());
    }
}
