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

mod labels;
mod spline;

use ndarray::{Array3, Array4, ArrayView3, ArrayView4, Axis};
use rayon::prelude::*;

use labels::threshold_labels_along_axis;
pub use labels::{CornerVotes, resize_segmentation};
use nnunet_core::error::{Error, Result};
use spline::{interpolate, nearest_resize, resample_axis};

/// The anisotropy ratio above which nnU-Net resamples the coarse axis separately
/// (`nnunetv2.configuration.ANISO_THRESHOLD`).
pub const ANISOTROPY_THRESHOLD: f64 = 3.0;

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

/// An error unless `order` (named `what` in the message) is a spline order scipy supports.
fn check_order(order: usize, what: &str) -> Result<()> {
    if order > 5 {
        return Err(Error::dataset(format!(
            "resampling: {what} {order} is not supported (0 to 5)"
        )));
    }
    Ok(())
}

/// The channel count and spatial shape of a `[c, z, y, x]` array of dimensions `dim`, after
/// checking both spline orders of `settings`.
fn checked_dims(
    dim: (usize, usize, usize, usize),
    settings: &ResamplingSettings,
) -> Result<(usize, [usize; 3])> {
    check_order(settings.order, "order")?;
    check_order(settings.order_z, "order_z")?;
    let (channels, d0, d1, d2) = dim;
    Ok((channels, [d0, d1, d2]))
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
    let spacings = [current_spacing, target_spacing];
    resample_channels(data, new_shape, spacings, settings, false, |vol, axis| {
        let vol = vol.mapv(f64::from);
        let out = match axis {
            None => resize_volume(vol.view(), new_shape, settings.order),
            Some(a) => resize_separate(vol.view(), new_shape, a, settings.order, settings.order_z),
        };
        out.mapv(|v| v as f32)
    })
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
    let spacings = [current_spacing, target_spacing];
    // batchgenerators returns zeros for an empty input
    resample_channels(seg, new_shape, spacings, settings, true, |vol, axis| {
        let Some(a) = axis else {
            return resize_segmentation(vol, new_shape, settings.order);
        };
        let mut plane_shape = new_shape;
        plane_shape[a] = vol.shape()[a];
        // a 3-D resize that keeps axis `a` is the per-slice 2-D resize, bit for bit
        let here = resize_segmentation(vol, plane_shape, settings.order);
        if plane_shape == new_shape {
            here
        } else if settings.order_z == 0 {
            nearest_resize(here.view(), new_shape)
        } else {
            threshold_labels_along_axis(here.view(), a, new_shape[a], settings.order_z)
        }
    })
}

/// The frame both resamplers share: checks `settings` and the shape, returns a copy for an
/// unchanged shape and zeros for an empty output (or, with `empty_input_zeros`, an empty
/// input; otherwise that is an error), and else resizes each channel (in parallel) with
/// `resize(channel, separate_axis)`.
fn resample_channels<T, F>(
    data: ArrayView4<T>,
    new_shape: [usize; 3],
    [current_spacing, target_spacing]: [[f64; 3]; 2],
    settings: &ResamplingSettings,
    empty_input_zeros: bool,
    resize: F,
) -> Result<Array4<T>>
where
    T: Clone + Default + Send + Sync,
    F: Fn(ArrayView3<T>, Option<usize>) -> Array3<T> + Sync,
{
    let (channels, shape) = checked_dims(data.dim(), settings)?;
    if shape == new_shape {
        return Ok(data.to_owned());
    }
    let out_shape = (channels, new_shape[0], new_shape[1], new_shape[2]);
    if new_shape.contains(&0) || channels == 0 || (empty_input_zeros && shape.contains(&0)) {
        return Ok(Array4::default(out_shape));
    }
    if shape.contains(&0) {
        return Err(Error::dataset(format!(
            "resampling: cannot resample an empty image of shape {shape:?} to {new_shape:?}"
        )));
    }
    let axis = separate_z_axis(settings.force_separate_z, current_spacing, target_spacing);
    let results: Vec<Array3<T>> = (0..channels)
        .into_par_iter()
        .map(|c| resize(data.index_axis(Axis(0), c), axis))
        .collect();
    let mut out = Array4::default(out_shape);
    for (c, r) in results.into_iter().enumerate() {
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

/// The shape of a volume as an array.
fn shape3<T>(vol: &ArrayView3<T>) -> [usize; 3] {
    let (d0, d1, d2) = vol.dim();
    [d0, d1, d2]
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
    let shape = shape3(&vol);
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

/// The smallest and largest of `values` (NaN ignored; `(inf, -inf)` when there are none).
fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// Clips `values` to `[lo, hi]` (nothing to do for an empty range).
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
