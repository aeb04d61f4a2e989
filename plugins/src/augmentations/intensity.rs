//! Intensity transforms: Gaussian noise, Gaussian blur, multiplicative brightness, contrast,
//! simulated low resolution and gamma, with nnU-Net's default parameters.

use ndarray::{Array4, ArrayViewMut3, Axis};
use nnunet_core::{Error, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;

use super::apply::{ChannelTransform, RandomTransform, Run};
use super::{RandomScalar, chance, sync_draw};

/// The contiguous data of one image channel.
fn channel_mut(image: &mut Array4<f32>, c: usize) -> Result<ArrayViewMut3<'_, f32>> {
    if !image.is_standard_layout() {
        *image = image.as_standard_layout().into_owned();
    }
    if c >= image.shape()[0] {
        return Err(Error::training(format!(
            "image has {} channels, channel {c} requested",
            image.shape()[0]
        )));
    }
    Ok(image.index_axis_mut(Axis(0), c))
}

/// The values of a channel from [`channel_mut`] as one slice.
fn slice_of<'a>(v: &'a mut ArrayViewMut3<'_, f32>) -> Result<&'a mut [f32]> {
    v.as_slice_mut()
        .ok_or_else(|| Error::training("image channel is not contiguous"))
}

/// Additive Gaussian noise with standard deviation drawn from `noise_variance` (the reference's
/// name; the value is used as the standard deviation).
#[derive(Clone, Debug)]
pub struct GaussianNoiseTransform {
    /// Probability that the transform runs.
    pub p: f64,
    /// Standard deviation of the noise.
    pub noise_variance: RandomScalar,
    /// Probability that a channel gets noise.
    pub p_per_channel: f64,
    /// One standard deviation for all channels.
    pub synchronize_channels: bool,
}

impl GaussianNoiseTransform {
    /// p 0.1, sigma U(0, 0.1), all channels, one sigma for all.
    pub fn nnunet_default() -> Self {
        Self {
            p: 0.1,
            noise_variance: RandomScalar::Uniform(0.0, 0.1),
            p_per_channel: 1.0,
            synchronize_channels: true,
        }
    }
}

/// Adds `sigma * N(0, 1)` to every value of `out`, deterministically from `seed`, in parallel.
fn add_gaussian(out: &mut [f32], sigma: f64, seed: u64) {
    const CHUNK: usize = 1 << 14;
    let sigma = sigma as f32;
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| {
            let mut r =
                SmallRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for v in chunk {
                *v += sigma * r.sample::<f32, _>(StandardNormal);
            }
        });
}

impl ChannelTransform for GaussianNoiseTransform {
    fn transform(&self, run: Run<'_>, channels: Vec<usize>) -> Result<()> {
        // drawn even when every channel draws its own, as in the reference
        let shared = self.noise_variance.sample(run.rng);
        for &c in &channels {
            let sigma = if self.synchronize_channels {
                shared
            } else {
                self.noise_variance.sample(run.rng)
            };
            let seed = run.rng.next_u64();
            let mut ch = channel_mut(&mut run.sample.image, c)?;
            add_gaussian(slice_of(&mut ch)?, sigma, seed);
        }
        Ok(())
    }
}

/// Python's `round` to the nearest odd integer, as `_round_to_nearest_odd`.
fn round_to_nearest_odd(n: f64) -> i64 {
    let r = n.round_ties_even() as i64;
    if r.rem_euclid(2) == 1 {
        r
    } else if n - r as f64 >= 0.0 {
        r + 1
    } else {
        r - 1
    }
}

/// The normalised 1D Gaussian kernel of `blur_dimension` (truncate 6).
pub(crate) fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let k = round_to_nearest_odd(sigma * 6.0 + 0.5).max(1) as usize;
    let half = (k as f64 - 1.0) * 0.5;
    let pdf: Vec<f64> = (0..k)
        .map(|i| {
            let x = if k == 1 {
                0.0
            } else {
                -half + i as f64 * (2.0 * half) / (k as f64 - 1.0)
            };
            (-0.5 * (x / sigma).powi(2)).exp()
        })
        .collect();
    let s: f64 = pdf.iter().sum();
    pdf.into_iter().map(|v| v / s).collect()
}

/// Reflect index (no edge repetition) into `0..len`.
#[inline]
fn reflect(i: isize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len as isize - 1);
    let m = i.rem_euclid(period);
    (if m >= len as isize { period - m } else { m }) as usize
}

/// Convolves `data` (shape `[z, y, x]`, contiguous) along `axis` with `kernel`, reflect padding.
pub(crate) fn convolve_axis(data: &mut [f32], shape: [usize; 3], axis: usize, kernel: &[f64]) {
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let h = (kernel.len() / 2) as isize;
    if inner == 1 {
        data.par_chunks_mut(len).for_each(|line| {
            let src = line.to_vec();
            for (i, v) in line.iter_mut().enumerate() {
                let mut acc = 0.0f64;
                for (k, w) in kernel.iter().enumerate() {
                    acc += w * src[reflect(i as isize + k as isize - h, len)] as f64;
                }
                *v = acc as f32;
            }
        });
        return;
    }
    let src = data.to_vec();
    data.par_chunks_mut(inner)
        .enumerate()
        .for_each(|(row, out)| {
            let o = row / len;
            let i = (row % len) as isize;
            let mut acc = vec![0.0f64; inner];
            for (k, w) in kernel.iter().enumerate() {
                let r = reflect(i + k as isize - h, len);
                let base = (o * len + r) * inner;
                for (a, s) in acc.iter_mut().zip(&src[base..base + inner]) {
                    *a += w * *s as f64;
                }
            }
            for (v, a) in out.iter_mut().zip(acc) {
                *v = a as f32;
            }
        });
}

/// A transform that changes randomly chosen channels with one drawn value per data axis each
/// (blur sigmas, low-resolution scales); [`per_axis`] opens its `apply`.
pub(crate) trait AxisTransform {
    /// Changes one channel's `data` (spatial `shape`) with `values`, one per axis in `axes`.
    fn change(&self, data: &mut [f32], shape: [usize; 3], axes: &[usize], values: &[f64]);
}

/// The opening of an [`AxisTransform`]: draws the channels (`p_per_channel` each) and, for
/// each, one value of `scalar` per data axis (one set for all channels when
/// `synchronize_channels`, one value for all axes of a channel when `synchronize_axes`), then
/// changes the drawn channels.
pub(crate) fn per_axis<T: AxisTransform>(
    t: &T,
    scalar: RandomScalar,
    p_per_channel: f64,
    synchronize_channels: bool,
    synchronize_axes: bool,
    mut run: Run<'_>,
) -> Result<()> {
    let axes = run.axes();
    let channels = run.pick_channels(p_per_channel);
    let values = sync_draw(channels.len(), synchronize_channels, run.rng, |rng| {
        scalar.sample_per_axis(rng, axes.len(), synchronize_axes)
    });
    for (&c, v) in channels.iter().zip(&values) {
        let mut ch = channel_mut(&mut run.sample.image, c)?;
        t.change(slice_of(&mut ch)?, run.shape, &axes, v);
    }
    Ok(())
}

/// Separable Gaussian blur with sigma drawn per channel and axis.
#[derive(Clone, Debug)]
pub struct GaussianBlurTransform {
    /// Probability that the transform runs.
    pub p: f64,
    /// Standard deviation of the Gaussian (voxels); 0 leaves an axis as it is.
    pub blur_sigma: RandomScalar,
    /// One set of sigmas for all channels.
    pub synchronize_channels: bool,
    /// One sigma for all axes of a channel.
    pub synchronize_axes: bool,
    /// Probability that a channel is blurred.
    pub p_per_channel: f64,
}

impl GaussianBlurTransform {
    /// p 0.2, sigma U(0.5, 1), independent per channel and axis, p per channel 0.5.
    pub fn nnunet_default() -> Self {
        Self {
            p: 0.2,
            blur_sigma: RandomScalar::Uniform(0.5, 1.0),
            synchronize_channels: false,
            synchronize_axes: false,
            p_per_channel: 0.5,
        }
    }
}

impl AxisTransform for GaussianBlurTransform {
    fn change(&self, data: &mut [f32], shape: [usize; 3], axes: &[usize], sigmas: &[f64]) {
        for (&axis, &sigma) in axes.iter().zip(sigmas) {
            if sigma > 0.0 && shape[axis] > 1 {
                convolve_axis(data, shape, axis, &gaussian_kernel(sigma));
            }
        }
    }
}

/// Multiplies each selected channel by a random factor.
#[derive(Clone, Debug)]
pub struct MultiplicativeBrightnessTransform {
    /// Probability that the transform runs.
    pub p: f64,
    /// The factor.
    pub multiplier_range: RandomScalar,
    /// One factor for all channels.
    pub synchronize_channels: bool,
    /// Probability that a channel is scaled.
    pub p_per_channel: f64,
}

impl MultiplicativeBrightnessTransform {
    /// p 0.15, BGContrast(0.75, 1.25) per channel.
    pub fn nnunet_default() -> Self {
        Self {
            p: 0.15,
            multiplier_range: RandomScalar::BgContrast(0.75, 1.25),
            synchronize_channels: false,
            p_per_channel: 1.0,
        }
    }
}

impl RandomTransform for MultiplicativeBrightnessTransform {
    fn transform(&self, mut run: Run<'_>) -> Result<()> {
        let channels = run.pick_channels(self.p_per_channel);
        let factors = sync_draw(channels.len(), self.synchronize_channels, run.rng, |rng| {
            self.multiplier_range.sample(rng)
        });
        for (&c, &m) in channels.iter().zip(&factors) {
            let m = m as f32;
            let mut ch = channel_mut(&mut run.sample.image, c)?;
            slice_of(&mut ch)?.par_iter_mut().for_each(|v| *v *= m);
        }
        Ok(())
    }
}

/// Mean, minimum and maximum of `data`.
fn mean_min_max(data: &[f32]) -> (f64, f32, f32) {
    let (sum, mn, mx) = data
        .par_iter()
        .fold(
            || (0.0f64, f32::INFINITY, f32::NEG_INFINITY),
            |(s, a, b), &v| (s + v as f64, a.min(v), b.max(v)),
        )
        .reduce(
            || (0.0, f32::INFINITY, f32::NEG_INFINITY),
            |x, y| (x.0 + y.0, x.1.min(y.1), x.2.max(y.2)),
        );
    (sum / data.len().max(1) as f64, mn, mx)
}

/// `x -> (x - mean) * factor + mean` per channel, optionally clipped to the channel's range.
#[derive(Clone, Debug)]
pub struct ContrastTransform {
    /// Probability that the transform runs.
    pub p: f64,
    /// The contrast factor.
    pub contrast_range: RandomScalar,
    /// Clamp the result to the channel's original range.
    pub preserve_range: bool,
    /// One factor for all channels.
    pub synchronize_channels: bool,
    /// Probability that a channel is changed.
    pub p_per_channel: f64,
}

impl ContrastTransform {
    /// p 0.15, BGContrast(0.75, 1.25) per channel, range preserved.
    pub fn nnunet_default() -> Self {
        Self {
            p: 0.15,
            contrast_range: RandomScalar::BgContrast(0.75, 1.25),
            preserve_range: true,
            synchronize_channels: false,
            p_per_channel: 1.0,
        }
    }
}

impl ChannelTransform for ContrastTransform {
    fn transform(&self, run: Run<'_>, channels: Vec<usize>) -> Result<()> {
        let factors = sync_draw(channels.len(), self.synchronize_channels, run.rng, |rng| {
            self.contrast_range.sample(rng)
        });
        for (&c, &m) in channels.iter().zip(&factors) {
            let mut ch = channel_mut(&mut run.sample.image, c)?;
            let data = slice_of(&mut ch)?;
            let (mean, mn, mx) = mean_min_max(data);
            let preserve = self.preserve_range;
            data.par_iter_mut().for_each(|v| {
                let mut y = ((*v as f64 - mean) * m + mean) as f32;
                if preserve {
                    y = y.clamp(mn, mx);
                }
                *v = y;
            });
        }
        Ok(())
    }
}

/// Resizes `data` (`[z, y, x]`) along `axis` to `new_len`: nearest-exact or linear
/// (`align_corners=False`), as torch's `interpolate`.
fn resize_axis(
    data: &[f32],
    shape: [usize; 3],
    axis: usize,
    new_len: usize,
    linear: bool,
) -> Vec<f32> {
    let len = shape[axis];
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let scale = len as f64 / new_len as f64;
    // per output index: (i0, i1, lambda)
    let taps: Vec<(usize, usize, f32)> = (0..new_len)
        .map(|d| {
            if linear {
                let src = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(len - 1);
                let i1 = (i0 + 1).min(len - 1);
                (i0, i1, (src - i0 as f64).clamp(0.0, 1.0) as f32)
            } else {
                let i = (((d as f64 + 0.5) * scale).floor() as usize).min(len - 1);
                (i, i, 0.0)
            }
        })
        .collect();
    let mut out = vec![0.0f32; outer * new_len * inner];
    if inner == 1 {
        out.par_chunks_mut(new_len)
            .zip(data.par_chunks(len))
            .for_each(|(o, line)| {
                for (v, &(i0, i1, l)) in o.iter_mut().zip(&taps) {
                    *v = line[i0] * (1.0 - l) + line[i1] * l;
                }
            });
        return out;
    }
    out.par_chunks_mut(inner).enumerate().for_each(|(row, o)| {
        let ob = row / new_len;
        let (i0, i1, l) = taps[row % new_len];
        let a = &data[(ob * len + i0) * inner..(ob * len + i0 + 1) * inner];
        let b = &data[(ob * len + i1) * inner..(ob * len + i1 + 1) * inner];
        for ((v, &x0), &x1) in o.iter_mut().zip(a).zip(b) {
            *v = x0 * (1.0 - l) + x1 * l;
        }
    });
    out
}

/// Downsamples a channel (nearest) by a random factor and upsamples it back (linear).
#[derive(Clone, Debug)]
pub struct SimulateLowResolutionTransform {
    /// Probability that the transform runs.
    pub p: f64,
    /// Size factor of the low resolution, per axis.
    pub scale: RandomScalar,
    /// One set of factors for all channels.
    pub synchronize_channels: bool,
    /// One factor for all axes of a channel.
    pub synchronize_axes: bool,
    /// Spatial axes (0 = z, 1 = y, 2 = x) left at full resolution.
    pub ignore_axes: Vec<usize>,
    /// Probability that a channel is changed.
    pub p_per_channel: f64,
}

impl SimulateLowResolutionTransform {
    /// p 0.25, scale U(0.5, 1) shared by the axes, p per channel 0.5; z is ignored for dummy 2D.
    pub fn nnunet_default(dummy_2d: bool) -> Self {
        Self {
            p: 0.25,
            scale: RandomScalar::Uniform(0.5, 1.0),
            synchronize_channels: false,
            synchronize_axes: true,
            ignore_axes: if dummy_2d { vec![0] } else { Vec::new() },
            p_per_channel: 0.5,
        }
    }
}

impl AxisTransform for SimulateLowResolutionTransform {
    fn change(&self, data: &mut [f32], shape: [usize; 3], axes: &[usize], scales: &[f64]) {
        let mut new_shape = shape;
        for (&axis, &s) in axes.iter().zip(scales) {
            if !self.ignore_axes.contains(&axis) {
                new_shape[axis] = ((shape[axis] as f64 * s).round_ties_even() as usize).max(1);
            }
        }
        if new_shape != shape {
            down_and_up(data, shape, new_shape);
        }
    }
}

/// Resamples `data` (`[z, y, x]` of `shape`) to `low` (nearest) and back (linear), axis by axis.
fn down_and_up(data: &mut [f32], shape: [usize; 3], low: [usize; 3]) {
    let mut cur = data.to_vec();
    let mut cur_shape = shape;
    for axis in 0..3 {
        if low[axis] != shape[axis] {
            cur = resize_axis(&cur, cur_shape, axis, low[axis], false);
            cur_shape[axis] = low[axis];
        }
    }
    for axis in 0..3 {
        if cur_shape[axis] != shape[axis] {
            cur = resize_axis(&cur, cur_shape, axis, shape[axis], true);
            cur_shape[axis] = shape[axis];
        }
    }
    data.copy_from_slice(&cur);
}

/// Gamma correction on the channel's range, optionally of the inverted image and with the
/// channel's mean and standard deviation restored.
#[derive(Clone, Debug)]
pub struct GammaTransform {
    /// Probability that the transform runs.
    pub p: f64,
    /// The exponent.
    pub gamma: RandomScalar,
    /// Probability that a channel is inverted before and after the correction.
    pub p_invert_image: f64,
    /// One exponent for all channels.
    pub synchronize_channels: bool,
    /// Probability that a channel is corrected.
    pub p_per_channel: f64,
    /// Probability that a channel's mean and standard deviation are restored.
    pub p_retain_stats: f64,
}

impl GammaTransform {
    /// BGContrast(0.7, 1.5), retained stats; inverted with p 0.1, else p 0.3.
    pub fn nnunet_default(invert: bool) -> Self {
        Self {
            p: if invert { 0.1 } else { 0.3 },
            gamma: RandomScalar::BgContrast(0.7, 1.5),
            p_invert_image: if invert { 1.0 } else { 0.0 },
            synchronize_channels: false,
            p_per_channel: 1.0,
            p_retain_stats: 1.0,
        }
    }
}

/// Mean and unbiased standard deviation (one pass, f64 accumulators).
fn mean_std(data: &[f32]) -> (f64, f64) {
    let n = data.len().max(1) as f64;
    let (s, ss) = data
        .par_chunks(1 << 14)
        .map(|c| {
            c.iter().fold((0.0f64, 0.0f64), |(a, b), &v| {
                let v = v as f64;
                (a + v, b + v * v)
            })
        })
        .reduce(|| (0.0, 0.0), |x, y| (x.0 + y.0, x.1 + y.1));
    let mean = s / n;
    let var = ((ss - n * mean * mean) / (n - 1.0).max(1.0)).max(0.0);
    (mean, var.sqrt())
}

impl ChannelTransform for GammaTransform {
    fn transform(&self, run: Run<'_>, channels: Vec<usize>) -> Result<()> {
        let retain: Vec<bool> = channels
            .iter()
            .map(|_| chance(run.rng, self.p_retain_stats))
            .collect();
        let invert: Vec<bool> = channels
            .iter()
            .map(|_| chance(run.rng, self.p_invert_image))
            .collect();
        let gammas = sync_draw(channels.len(), self.synchronize_channels, run.rng, |rng| {
            self.gamma.sample(rng)
        });
        for (k, &c) in channels.iter().enumerate() {
            let mut ch = channel_mut(&mut run.sample.image, c)?;
            gamma_channel(slice_of(&mut ch)?, gammas[k], invert[k], retain[k]);
        }
        Ok(())
    }
}

/// Gamma correction of one channel on its range, of the negated values when `invert`, with the
/// mean and standard deviation restored when `retain_stats`.
fn gamma_channel(data: &mut [f32], gamma: f64, invert: bool, retain_stats: bool) {
    const EPS: f64 = 1e-7;
    if invert {
        data.par_iter_mut().for_each(|v| *v = -*v);
    }
    let stats = retain_stats.then(|| mean_std(data));
    let (_, mn, mx) = mean_min_max(data);
    let (mn, mx) = (mn as f64, mx as f64);
    let range = mx - mn;
    let denom = range.max(EPS);
    let (mn32, inv, range32, g32) = (mn as f32, (1.0 / denom) as f32, range as f32, gamma as f32);
    data.par_iter_mut().for_each(|v| {
        let x = ((*v - mn32) * inv).max(0.0);
        *v = x.powf(g32) * range32 + mn32;
    });
    if let Some((mean, std)) = stats {
        let (m2, s2) = mean_std(data);
        let f = std / s2.max(EPS);
        data.par_iter_mut()
            .for_each(|v| *v = ((*v as f64 - m2) * f + mean) as f32);
    }
    if invert {
        data.par_iter_mut().for_each(|v| *v = -*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_sizes() {
        // sigma 1 -> round_to_nearest_odd(6.5) = 7 (6 rounds half-even, 6.5 - 6 >= 0 -> 7)
        assert_eq!(gaussian_kernel(1.0).len(), 7);
        assert_eq!(gaussian_kernel(0.5).len(), 3);
        let s: f64 = gaussian_kernel(0.7).iter().sum();
        assert!((s - 1.0).abs() < 1e-12);
    }

    #[test]
    fn reflect_indices() {
        assert_eq!(reflect(-1, 5), 1);
        assert_eq!(reflect(5, 5), 3);
        assert_eq!(reflect(-7, 5), 1);
        assert_eq!(reflect(3, 1), 0);
    }

    #[test]
    fn resize_roundtrip_identity() {
        let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let out = resize_axis(&data, [2, 3, 4], 2, 4, true);
        assert_eq!(out, data);
        let out = resize_axis(&data, [2, 3, 4], 1, 3, false);
        assert_eq!(out, data);
    }
}
