//! The additional transforms of nnU-Net's stronger `nnUNetTrainerDA5` pipeline
//! (batchgeneratorsv2): 90° rotations and axis transposes of equal-length axes, median filter,
//! additive brightness, blank rectangles, local brightness gradients, local gamma, Laplacian
//! sharpening, and the `OneOf` combinator.
//!
//! Samples are `[c, z, y, x]`; 2D data (`context.is_2d`) is treated as `[c, y, x]`, so nothing
//! is drawn or filtered along its singleton z axis.

use std::fmt;

use ndarray::{Array4, Axis};
use nnunet_core::augmentation::{AugmentationContext, Sample};
use nnunet_core::{Augmentation, Error, Result};
use rand::{Rng, RngCore};
use rayon::prelude::*;

use super::{RandomScalar, chance, uniform};

// ---------------------------------------------------------------------------------------------
// helpers

fn spatial_shape<T>(a: &Array4<T>) -> [usize; 3] {
    let s = a.shape();
    [s[1], s[2], s[3]]
}

/// The spatial axes (0 = z, 1 = y, 2 = x) the data has: y, x for 2D, all three for 3D.
fn data_axes(context: &AugmentationContext) -> Vec<usize> {
    if context.is_2d {
        vec![1, 2]
    } else {
        vec![0, 1, 2]
    }
}

/// `np.random.randint(lo, hi)`: uniform integer in `[lo, hi)`; `lo` when the range is empty.
fn randint(rng: &mut dyn RngCore, lo: usize, hi: usize) -> usize {
    if hi <= lo + 1 {
        lo
    } else {
        rng.random_range(lo..hi)
    }
}

/// One standard normal draw (Box-Muller).
fn standard_normal(rng: &mut dyn RngCore) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The image as contiguous per-channel slices of `z * y * x` values.
fn image_channels(image: &mut Array4<f32>) -> Result<std::slice::ChunksMut<'_, f32>> {
    if !image.is_standard_layout() {
        *image = image.as_standard_layout().into_owned();
    }
    let n: usize = image.shape()[1..].iter().product();
    let data = image
        .as_slice_mut()
        .ok_or_else(|| Error::Invalid("image is not contiguous".into()))?;
    Ok(data.chunks_mut(n.max(1)))
}

/// Axes of `shape` (restricted to `axes`) whose length is shared by the most axes; the DA5 rule
/// for the axes Rot90 and Transpose may act on. Empty when no two axes have equal length.
pub fn equal_length_axes(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    let counts: Vec<usize> = axes
        .iter()
        .map(|&a| axes.iter().filter(|&&b| shape[b] == shape[a]).count())
        .collect();
    let max = counts.iter().copied().max().unwrap_or(0);
    if max < 2 {
        return Vec::new();
    }
    axes.iter()
        .zip(&counts)
        .filter(|(_, c)| **c == max)
        .map(|(a, _)| *a)
        .collect()
}

fn check_axes(name: &str, axes: &[usize]) -> Result<()> {
    if let Some(a) = axes.iter().find(|&&a| a > 2) {
        return Err(Error::Invalid(format!(
            "{name}: spatial axis {a} does not exist (0 = z, 1 = y, 2 = x)"
        )));
    }
    Ok(())
}

fn check_same_shape(name: &str, sample: &Sample) -> Result<()> {
    if spatial_shape(&sample.image) != spatial_shape(&sample.segmentation) {
        return Err(Error::Invalid(format!(
            "{name}: image spatial shape {:?} differs from segmentation {:?}",
            spatial_shape(&sample.image),
            spatial_shape(&sample.segmentation)
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rot90

/// Random multiples of 90° rotations in random planes spanned by two of the allowed axes,
/// applied to image and segmentation alike (`torch.rot90`).
#[derive(Clone, Debug)]
pub struct Rot90Transform {
    pub p: f64,
    /// Number of (plane, rotation) pairs, rounded.
    pub num_axis_combinations: RandomScalar,
    /// Quarter turns to choose from (uniformly) for each pair.
    pub num_rot_per_combination: Vec<u8>,
    /// Spatial axes (0 = z, 1 = y, 2 = x) the planes are drawn from; `None` uses the axes of
    /// the sample with the most frequent common length (y, x only for 2D), as DA5 does with the
    /// patch size.
    pub allowed_axes: Option<Vec<usize>>,
}

impl Rot90Transform {
    /// DA5: p 0.5, one plane, 0-3 quarter turns.
    pub fn da5(allowed_axes: Option<Vec<usize>>) -> Self {
        Self {
            p: 0.5,
            num_axis_combinations: RandomScalar::Fixed(1.0),
            num_rot_per_combination: vec![0, 1, 2, 3],
            allowed_axes,
        }
    }

    /// Rotates image and segmentation by `k` quarter turns in the plane of spatial axes
    /// `(a, b)`, `a < b`, from `a` towards `b` (no randomness).
    pub fn rotate(sample: &mut Sample, k: u8, a: usize, b: usize) -> Result<()> {
        check_axes("Rot90Transform", &[a, b])?;
        if a == b {
            return Err(Error::Invalid(format!(
                "Rot90Transform: rotation plane needs two distinct axes, got ({a}, {b})"
            )));
        }
        fn rot<T: Clone>(arr: &mut Array4<T>, k: u8, a: usize, b: usize) {
            let (a, b) = (Axis(a + 1), Axis(b + 1));
            match k % 4 {
                1 => {
                    arr.invert_axis(b);
                    arr.swap_axes(a.index(), b.index());
                }
                2 => {
                    arr.invert_axis(a);
                    arr.invert_axis(b);
                }
                3 => {
                    arr.swap_axes(a.index(), b.index());
                    arr.invert_axis(b);
                }
                _ => return,
            }
            *arr = arr.as_standard_layout().into_owned();
        }
        rot(&mut sample.image, k, a, b);
        rot(&mut sample.segmentation, k, a, b);
        Ok(())
    }
}

impl Augmentation for Rot90Transform {
    fn apply(
        &self,
        sample: &mut Sample,
        context: &AugmentationContext,
        rng: &mut dyn RngCore,
    ) -> Result<()> {
        if !chance(rng, self.p) {
            return Ok(());
        }
        check_same_shape("Rot90Transform", sample)?;
        let axes = match &self.allowed_axes {
            Some(a) => a.clone(),
            None => equal_length_axes(&spatial_shape(&sample.image), &data_axes(context)),
        };
        check_axes("Rot90Transform", &axes)?;
        let n = self
            .num_axis_combinations
            .sample(rng)
            .round_ties_even()
            .max(0.0) as usize;
        if axes.len() < 2 || self.num_rot_per_combination.is_empty() {
            return Ok(());
        }
        for _ in 0..n {
            let k = self.num_rot_per_combination
                [rng.random_range(0..self.num_rot_per_combination.len())];
            let i = rng.random_range(0..axes.len());
            let mut j = rng.random_range(0..axes.len() - 1);
            if j >= i {
                j += 1;
            }
            let (a, b) = (axes[i].min(axes[j]), axes[i].max(axes[j]));
            Self::rotate(sample, k, a, b)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Transpose

/// A random permutation of the allowed (equal-length) spatial axes, applied to image and
/// segmentation alike.
#[derive(Clone, Debug)]
pub struct TransposeAxesTransform {
    pub p: f64,
    /// Spatial axes (0 = z, 1 = y, 2 = x) to permute; they must have equal length. `None`
    /// uses the axes of the sample with the most frequent common length (y, x only for 2D).
    pub allowed_axes: Option<Vec<usize>>,
}

impl TransposeAxesTransform {
    /// DA5: p 0.5.
    pub fn da5(allowed_axes: Option<Vec<usize>>) -> Self {
        Self {
            p: 0.5,
            allowed_axes,
        }
    }

    /// Puts input spatial axis `order[i]` at position `allowed[i]`, where `allowed` is sorted
    /// and `order` a permutation of it (no randomness).
    pub fn permute(sample: &mut Sample, allowed: &[usize], order: &[usize]) -> Result<()> {
        check_axes("TransposeAxesTransform", allowed)?;
        check_axes("TransposeAxesTransform", order)?;
        let mut perm = [0usize, 1, 2, 3];
        for (&pos, &src) in allowed.iter().zip(order) {
            perm[pos + 1] = src + 1;
        }
        let mut seen = [false; 4];
        for &p in &perm {
            seen[p] = true;
        }
        if seen.iter().any(|s| !s) {
            return Err(Error::Invalid(format!(
                "TransposeAxesTransform: {order:?} is not a permutation of {allowed:?}"
            )));
        }
        sample.image = sample
            .image
            .view()
            .permuted_axes(perm)
            .as_standard_layout()
            .into_owned();
        sample.segmentation = sample
            .segmentation
            .view()
            .permuted_axes(perm)
            .as_standard_layout()
            .into_owned();
        Ok(())
    }
}

impl Augmentation for TransposeAxesTransform {
    fn apply(
        &self,
        sample: &mut Sample,
        context: &AugmentationContext,
        rng: &mut dyn RngCore,
    ) -> Result<()> {
        if !chance(rng, self.p) {
            return Ok(());
        }
        check_same_shape("TransposeAxesTransform", sample)?;
        let shape = spatial_shape(&sample.image);
        let mut axes = match &self.allowed_axes {
            Some(a) => a.clone(),
            None => equal_length_axes(&shape, &data_axes(context)),
        };
        check_axes("TransposeAxesTransform", &axes)?;
        axes.sort_unstable();
        axes.dedup();
        if axes.len() < 2 {
            return Ok(());
        }
        if axes.iter().any(|&a| shape[a] != shape[axes[0]]) {
            return Err(Error::Invalid(format!(
                "TransposeAxesTransform: axes {axes:?} of shape {shape:?} differ in length"
            )));
        }
        let mut order = axes.clone();
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        Self::permute(sample, &axes, &order)
    }
}

// ---------------------------------------------------------------------------------------------
// Median filter

/// `scipy.ndimage` `reflect` boundary (edge value repeated: `d c b a | a b c d | d c b a`).
#[inline]
fn reflect_edge(i: isize, len: usize) -> usize {
    let n = len as isize;
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m >= n { period - 1 - m } else { m }) as usize
}

/// Median filter of a `[z, y, x]` volume with a cubic window of `size` along `axes` (size 1
/// elsewhere), scipy's window placement and `reflect` boundary; for even windows the upper
/// median (`rank = n // 2`).
pub(crate) fn median_filter(data: &mut [f32], shape: [usize; 3], size: usize, axes: &[usize]) {
    if size <= 1 {
        return;
    }
    let sizes: [usize; 3] = std::array::from_fn(|d| if axes.contains(&d) { size } else { 1 });
    let lo: [isize; 3] = std::array::from_fn(|d| -((sizes[d] / 2) as isize));
    let src = data.to_vec();
    let plane = shape[1] * shape[2];
    let window = sizes.iter().product::<usize>();
    let rank = window / 2;
    data.par_chunks_mut(shape[2].max(1))
        .enumerate()
        .for_each_init(
            || Vec::with_capacity(window),
            |buf, (row, out)| {
                let z = (row / shape[1]) as isize;
                let y = (row % shape[1]) as isize;
                for (x, v) in out.iter_mut().enumerate() {
                    buf.clear();
                    for dz in 0..sizes[0] as isize {
                        let zz = reflect_edge(z + lo[0] + dz, shape[0]);
                        for dy in 0..sizes[1] as isize {
                            let yy = reflect_edge(y + lo[1] + dy, shape[1]);
                            let base = zz * plane + yy * shape[2];
                            for dx in 0..sizes[2] as isize {
                                let xx = reflect_edge(x as isize + lo[2] + dx, shape[2]);
                                buf.push(src[base + xx]);
                            }
                        }
                    }
                    let (_, m, _) = buf.select_nth_unstable_by(rank, |a, b| a.total_cmp(b));
                    *v = *m;
                }
            },
        );
}

/// Median filter of randomly chosen channels with a random integer window size.
#[derive(Clone, Debug)]
pub struct MedianFilterTransform {
    pub p: f64,
    /// Window size: uniform integer in `[lo, hi)` (`np.random.randint`); `lo` if `hi <= lo + 1`.
    pub filter_size: (usize, usize),
    pub p_same_for_each_channel: f64,
    pub p_per_channel: f64,
}

impl MedianFilterTransform {
    /// DA5: p 0.2, size in [2, 8), drawn per channel, p per channel 0.5.
    pub fn da5() -> Self {
        Self {
            p: 0.2,
            filter_size: (2, 8),
            p_same_for_each_channel: 0.0,
            p_per_channel: 0.5,
        }
    }
}

impl Augmentation for MedianFilterTransform {
    fn apply(
        &self,
        sample: &mut Sample,
        context: &AugmentationContext,
        rng: &mut dyn RngCore,
    ) -> Result<()> {
        if !chance(rng, self.p) {
            return Ok(());
        }
        let c = sample.image.shape()[0];
        let (lo, hi) = self.filter_size;
        let same = chance(rng, self.p_same_for_each_channel);
        let sizes: Vec<usize> = if same {
            vec![randint(rng, lo, hi); c]
        } else {
            (0..c).map(|_| randint(rng, lo, hi)).collect()
        };
        let apply: Vec<bool> = (0..c).map(|_| chance(rng, self.p_per_channel)).collect();
        let shape = spatial_shape(&sample.image);
        let axes = data_axes(context);
        for (i, ch) in image_channels(&mut sample.image)?.enumerate() {
            if apply[i] {
                median_filter(ch, shape, sizes[i], &axes);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Additive brightness

/// Adds a random offset to randomly chosen channels.
#[derive(Clone, Debug)]
pub struct BrightnessAdditiveTransform {
    pub p: f64,
    pub mu: f64,
    pub sigma: f64,
    /// One offset for all channels. As in the reference, the shared offset is drawn uniformly
    /// in `[mu, sigma)` (`sample_scalar((mu, sigma))`); per-channel offsets are `N(mu, sigma)`.
    pub synchronize_channels: bool,
    pub p_per_channel: f64,
}

impl BrightnessAdditiveTransform {
    /// DA5: p 0.1, N(0, 0.5) per channel, p per channel 0.5.
    pub fn da5() -> Self {
        Self {
            p: 0.1,
            mu: 0.0,
            sigma: 0.5,
            synchronize_channels: false,
            p_per_channel: 0.5,
        }
    }
}

impl Augmentation for BrightnessAdditiveTransform {
    fn apply(
        &self,
        sample: &mut Sample,
        _: &AugmentationContext,
        rng: &mut dyn RngCore,
    ) -> Result<()> {
        if !chance(rng, self.p) {
            return Ok(());
        }
        let c = sample.image.shape()[0];
        let apply: Vec<bool> = (0..c).map(|_| chance(rng, self.p_per_channel)).collect();
        if !apply.iter().any(|&a| a) {
            return Ok(());
        }
        let shifts: Vec<f64> = if self.synchronize_channels {
            vec![uniform(rng, self.mu, self.sigma); c]
        } else {
            (0..c)
                .map(|_| self.mu + self.sigma * standard_normal(rng))
                .collect()
        };
        for (i, ch) in image_channels(&mut sample.image)?.enumerate() {
            if apply[i] {
                let s = shifts[i] as f32;
                ch.par_iter_mut().for_each(|v| *v += s);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Blank rectangles

/// The value a blank rectangle is filled with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RectangleValue {
    /// The mean of the channel inside the rectangle (`torch.mean`, DA5).
    Mean,
    Fixed(f64),
    /// Uniform in `[lo, hi)`, per rectangle.
    Uniform(f64, f64),
}

/// Fills random axis-aligned boxes of randomly chosen channels with a value.
#[derive(Clone, Debug)]
pub struct BlankRectangleTransform {
    pub p: f64,
    /// Side length range `[lo, hi)` per spatial axis of the data (2 entries, y/x, for 2D; 3
    /// for 3D). `None` uses DA5's rule `[max(1, s / 10), s / 3)` on the sample's shape.
    pub rectangle_size: Option<Vec<(usize, usize)>>,
    pub rectangle_value: RectangleValue,
    /// Number of rectangles per channel, uniform integer in `[lo, hi)`.
    pub num_rectangles: (usize, usize),
    /// One side length (drawn from the first range) for all axes.
    pub force_square: bool,
    pub p_per_channel: f64,
}

/// DA5's rectangle sizes for a patch: `[max(1, s / 10), s / 3)` per axis.
pub fn da5_rectangle_size(patch_size: &[usize]) -> Vec<(usize, usize)> {
    patch_size
        .iter()
        .map(|&s| ((s / 10).max(1), s / 3))
        .collect()
}

impl BlankRectangleTransform {
    /// DA5: p 0.4, 1-4 rectangles filled with their mean, p per channel 0.5. `patch_size` as
    /// in the plans (2 or 3 entries); `None` derives the sizes from each sample.
    pub fn da5(patch_size: Option<&[usize]>) -> Self {
        Self {
            p: 0.4,
            rectangle_size: patch_size.map(da5_rectangle_size),
            rectangle_value: RectangleValue::Mean,
            num_rectangles: (1, 5),
            force_square: false,
            p_per_channel: 0.5,
        }
    }
}

impl Augmentation for BlankRectangleTransform {
    fn apply(
        &self,
        sample: &mut Sample,
        context: &AugmentationContext,
        rng: &mut dyn RngCore,
    ) -> Result<()> {
        if !chance(rng, self.p) {
            return Ok(());
        }
        let shape = spatial_shape(&sample.image);
        let axes = data_axes(context);
        let ranges = match &self.rectangle_size {
            Some(r) => r.clone(),
            None => da5_rectangle_size(&axes.iter().map(|&a| shape[a]).collect::<Vec<_>>()),
        };
        if ranges.len() != axes.len() {
            return Err(Error::Invalid(format!(
                "BlankRectangleTransform: {} rectangle size ranges for {}D data",
                ranges.len(),
                axes.len()
            )));
        }
        let c = sample.image.shape()[0];
        let apply: Vec<bool> = (0..c).map(|_| chance(rng, self.p_per_channel)).collect();
        let counts: Vec<usize> = (0..c)
            .map(|_| randint(rng, self.num_rectangles.0, self.num_rectangles.1))
            .collect();
        // boxes per channel as [lo, hi) per sample axis (z, y, x)
        let mut boxes: Vec<Vec<([usize; 3], [usize; 3])>> = vec![Vec::new(); c];
        for ch in 0..c {
            if !apply[ch] {
                continue;
            }
            for _ in 0..counts[ch] {
                let sizes: Vec<usize> = if self.force_square {
                    vec![randint(rng, ranges[0].0, ranges[0].1); axes.len()]
                } else {
                    ranges.iter().map(|r| randint(rng, r.0, r.1)).collect()
                };
                let mut lb = [0usize; 3];
                let mut ub = shape;
                for (k, &a) in axes.iter().enumerate() {
                    let size = sizes[k].min(shape[a]);
                    lb[a] = randint(rng, 0, shape[a] - size + 1);
                    ub[a] = lb[a] + size;
                }
                boxes[ch].push((lb, ub));
            }
        }
        let value = self.rectangle_value;
        for (ch, data) in image_channels(&mut sample.image)?.enumerate() {
            for &(lb, ub) in &boxes[ch] {
                let idx = |z: usize, y: usize, x: usize| (z * shape[1] + y) * shape[2] + x;
                let fill = match value {
                    RectangleValue::Fixed(v) => v as f32,
                    RectangleValue::Uniform(lo, hi) => uniform(rng, lo, hi) as f32,
                    RectangleValue::Mean => {
                        let (mut sum, mut n) = (0.0f64, 0usize);
                        for z in lb[0]..ub[0] {
                            for y in lb[1]..ub[1] {
                                for x in lb[2]..ub[2] {
                                    sum += data[idx(z, y, x)] as f64;
                                    n += 1;
                                }
                            }
                        }
                        if n == 0 {
                            continue;
                        }
                        (sum / n as f64) as f32
                    }
                };
                for z in lb[0]..ub[0] {
                    for y in lb[1]..ub[1] {
                        data[idx(z, y, lb[2])..idx(z, y, ub[2].max(lb[2]))].fill(fill);
                    }
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// local transforms

/// A scalar drawn as [`RandomScalar`] or, with probability 0.5 each, from one of two uniform
/// ranges (DA5's `max_strength` and local `gamma`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SplitScalar {
    Scalar(RandomScalar),
    /// `U(a.0, a.1)` if `uniform() < 0.5`, else `U(b.0, b.1)`.
    EitherUniform((f64, f64), (f64, f64)),
}

impl SplitScalar {
    pub fn sample(&self, rng: &mut dyn RngCore) -> f64 {
        match *self {
            SplitScalar::Scalar(s) => s.sample(rng),
            SplitScalar::EitherUniform(a, b) => {
                if rng.random::<f64>() < 0.5 {
                    uniform(rng, a.0, a.1)
                } else {
                    uniform(rng, b.0, b.1)
                }
            }
        }
    }
}

/// The width (standard deviation, voxels) of a local transform's Gaussian along one axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LocalScale {
    Scalar(RandomScalar),
    /// DA5: `exp(U(log(s / 6), log(s)))` for an axis of length `s` (`s / 6` floored, at
    /// least 1).
    LogUniformSixth,
}

impl LocalScale {
    fn sample(&self, rng: &mut dyn RngCore, len: usize) -> f64 {
        match *self {
            LocalScale::Scalar(s) => s.sample(rng),
            LocalScale::LogUniformSixth => {
                let lo = ((len / 6).max(1) as f64).ln();
                let hi = (len.max(1) as f64).ln();
                uniform(rng, lo, hi).exp()
            }
        }
    }
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

fn norm_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// A smooth bump in `[0, 1]` over the sample's grid (`LocalTransform._generate_kernel`): per
/// data axis a Gaussian (centre `loc · s`, width from `scale`) integrated over each voxel, the
/// outer product min-max normalised. Axes not in `axes` are constant.
fn local_kernel(
    rng: &mut dyn RngCore,
    shape: [usize; 3],
    axes: &[usize],
    loc: &RandomScalar,
    scale: &LocalScale,
) -> Vec<f32> {
    let mut k1d: [Vec<f64>; 3] = std::array::from_fn(|d| vec![1.0; shape[d]]);
    for &d in axes {
        let centre = loc.sample(rng) * shape[d] as f64;
        let sigma = scale.sample(rng, shape[d]);
        k1d[d] = (0..shape[d])
            .map(|i| {
                let x = i as f64 - centre;
                if sigma > 0.0 {
                    norm_cdf((x + 0.5) / sigma) - norm_cdf((x - 0.5) / sigma)
                } else {
                    f64::from(u8::from((-0.5..0.5).contains(&x)))
                }
            })
            .collect();
    }
    let plane = shape[1] * shape[2];
    let mut kernel = vec![0.0f32; shape.iter().product()];
    kernel
        .par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(z, out)| {
            for (i, v) in out.iter_mut().enumerate() {
                *v = (k1d[0][z] * k1d[1][i / shape[2]] * k1d[2][i % shape[2]]) as f32;
            }
        });
    let (mn, mx) = kernel
        .par_iter()
        .fold(
            || (f32::INFINITY, f32::NEG_INFINITY),
            |(a, b), &v| (a.min(v), b.max(v)),
        )
        .reduce(
            || (f32::INFINITY, f32::NEG_INFINITY),
            |x, y| (x.0.min(y.0), x.1.max(y.1)),
        );
    let range = mx - mn;
    kernel.par_iter_mut().for_each(|v| {
        *v -= mn;
        if range > 0.0 {
            *v /= range;
        }
    });
    kernel
}

/// Adds a smooth Gaussian-shaped brightness change, scaled to a random peak strength, to
/// randomly chosen channels.
#[derive(Clone, Debug)]
pub struct BrightnessGradientAdditiveTransform {
    pub p: f64,
    pub scale: LocalScale,
    /// Centre of the Gaussian as a fraction of the axis length.
    pub loc: RandomScalar,
    pub max_strength: SplitScalar,
    pub same_for_all_channels: bool,
    pub mean_centered: bool,
    /// Clamp the image to its original range afterwards.
    pub clip_intensities: bool,
    pub p_per_channel: f64,
}

impl BrightnessGradientAdditiveTransform {
    /// DA5: p 0.3, loc U(-0.5, 1.5), strength U(-5, -1) or U(1, 5), not mean-centred, one
    /// kernel per channel, p per channel 0.5.
    pub fn da5() -> Self {
        Self {
            p: 0.3,
            scale: LocalScale::LogUniformSixth,
            loc: RandomScalar::Uniform(-0.5, 1.5),
            max_strength: SplitScalar::EitherUniform((-5.0, -1.0), (1.0, 5.0)),
            same_for_all_channels: false,
            mean_centered: false,
            clip_intensities: false,
            p_per_channel: 0.5,
        }
    }

    /// One scaled kernel, or `None` when it is flat or the strength is 0.
    fn kernel(&self, rng: &mut dyn RngCore, shape: [usize; 3], axes: &[usize]) -> Option<Vec<f32>> {
        let mut k = local_kernel(rng, shape, axes, &self.loc, &self.scale);
        if self.mean_centered {
            let mean = k.par_iter().map(|&v| v as f64).sum::<f64>() / k.len().max(1) as f64;
            k.par_iter_mut().for_each(|v| *v -= mean as f32);
        }
        let max_abs = k.par_iter().map(|v| v.abs()).reduce(|| 0.0, f32::max);
        if max_abs < 1e-8 {
            return None;
        }
        let strength = self.max_strength.sample(rng);
        if strength == 0.0 {
            return None;
        }
        let f = strength as f32 / max_abs;
        k.par_iter_mut().for_each(|v| *v *= f);
        Some(k)
    }
}

/// Per-channel parameters for the channels marked in `apply` (others `None`): one draw shared by
/// all of them when `shared`, else one draw per marked channel, in channel order.
fn per_channel<T: Clone>(
    apply: &[bool],
    shared: bool,
    rng: &mut dyn RngCore,
    mut draw: impl FnMut(&mut dyn RngCore) -> T,
) -> Vec<Option<T>> {
    if shared {
        let value = draw(rng);
        apply.iter().map(|&a| a.then(|| value.clone())).collect()
    } else {
        apply.iter().map(|&a| a.then(|| draw(rng))).collect()
    }
}

impl Augmentation for BrightnessGradientAdditiveTransform {
    fn apply(
        &self,
        sample: &mut Sample,
        context: &AugmentationContext,
        rng: &mut dyn RngCore,
    ) -> Result<()> {
        if !chance(rng, self.p) {
            return Ok(());
        }
        let c = sample.image.shape()[0];
        let apply: Vec<bool> = (0..c).map(|_| chance(rng, self.p_per_channel)).collect();
        if !apply.iter().any(|&a| a) {
            return Ok(());
        }
        let shape = spatial_shape(&sample.image);
        let axes = data_axes(context);
        let kernels: Vec<Option<std::sync::Arc<Vec<f32>>>> =
            per_channel(&apply, self.same_for_all_channels, rng, |rng| {
                self.kernel(rng, shape, &axes).map(std::sync::Arc::new)
            })
            .into_iter()
            .map(Option::flatten)
            .collect();
        let range = if self.clip_intensities {
            let mn = sample.image.iter().copied().fold(f32::INFINITY, f32::min);
            let mx = sample
                .image
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            Some((mn, mx))
        } else {
            None
        };
        for (i, ch) in image_channels(&mut sample.image)?.enumerate() {
            if let Some(k) = &kernels[i] {
                ch.par_iter_mut().zip(k.par_iter()).for_each(|(v, &a)| {
                    *v += a;
                });
            }
        }
        if let Some((mn, mx)) = range {
            sample.image.mapv_inplace(|v| v.clamp(mn, mx));
        }
        Ok(())
    }
}

/// Gamma correction (on the channel's min-max normalised values) blended in through a smooth
/// Gaussian-shaped weight map, for randomly chosen channels.
#[derive(Clone, Debug)]
pub struct LocalGammaTransform {
    pub p: f64,
    pub scale: LocalScale,
    /// Centre of the Gaussian as a fraction of the axis length.
    pub loc: RandomScalar,
    pub gamma: SplitScalar,
    pub same_for_all_channels: bool,
    pub p_per_channel: f64,
}

impl LocalGammaTransform {
    /// DA5: p 0.3, loc U(-0.5, 1.5), gamma U(0.01, 0.8) or U(1.5, 4), one kernel per channel,
    /// p per channel 0.5.
    pub fn da5() -> Self {
        Self {
            p: 0.3,
            scale: LocalScale::LogUniformSixth,
            loc: RandomScalar::Uniform(-0.5, 1.5),
            gamma: SplitScalar::EitherUniform((0.01, 0.8), (1.5, 4.0)),
            same_for_all_channels: false,
            p_per_channel: 0.5,
        }
    }
}

impl Augmentation for LocalGammaTransform {
    fn apply(
        &self,
        sample: &mut Sample,
        context: &AugmentationContext,
        rng: &mut dyn RngCore,
    ) -> Result<()> {
        if !chance(rng, self.p) {
            return Ok(());
        }
        let c = sample.image.shape()[0];
        let apply: Vec<bool> = (0..c).map(|_| chance(rng, self.p_per_channel)).collect();
        if !apply.iter().any(|&a| a) {
            return Ok(());
        }
        let shape = spatial_shape(&sample.image);
        let axes = data_axes(context);
        let params: Vec<Option<(std::sync::Arc<Vec<f32>>, f64)>> =
            per_channel(&apply, self.same_for_all_channels, rng, |rng| {
                let k = local_kernel(rng, shape, &axes, &self.loc, &self.scale);
                (std::sync::Arc::new(k), self.gamma.sample(rng))
            });
        for (i, ch) in image_channels(&mut sample.image)?.enumerate() {
            let Some((k, gamma)) = &params[i] else {
                continue;
            };
            let (mn, mx) = ch
                .par_iter()
                .fold(
                    || (f32::INFINITY, f32::NEG_INFINITY),
                    |(a, b), &v| (a.min(v), b.max(v)),
                )
                .reduce(
                    || (f32::INFINITY, f32::NEG_INFINITY),
                    |x, y| (x.0.min(y.0), x.1.max(y.1)),
                );
            let denom = (mx - mn).max(1e-8);
            let gamma = *gamma as f32;
            ch.par_iter_mut().zip(k.par_iter()).for_each(|(v, &w)| {
                let norm = (*v - mn) / denom;
                let g = norm.powf(gamma);
                let blended = norm * (1.0 - w) + g * w;
                *v = blended * denom + mn;
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Sharpening

/// Laplacian sharpening `x + strength · (2d · x − Σ neighbours)` (replicate padding) of randomly
/// chosen channels; 4-neighbourhood for 2D data, 6-neighbourhood for 3D.
#[derive(Clone, Debug)]
pub struct SharpeningTransform {
    pub p: f64,
    pub strength: RandomScalar,
    pub p_same_for_each_channel: f64,
    pub p_per_channel: f64,
    /// Probability to clamp a sharpened channel to its original range.
    pub p_clamp_intensities: f64,
}

impl SharpeningTransform {
    /// DA5: p 0.2, strength U(0.1, 1) per channel, p per channel 0.5, no clamping.
    pub fn da5() -> Self {
        Self {
            p: 0.2,
            strength: RandomScalar::Uniform(0.1, 1.0),
            p_same_for_each_channel: 0.0,
            p_per_channel: 0.5,
            p_clamp_intensities: 0.0,
        }
    }
}

fn sharpen(data: &mut [f32], shape: [usize; 3], axes: &[usize], strength: f32, clamp: bool) {
    let src = data.to_vec();
    let (mn, mx) = if clamp {
        src.iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            })
    } else {
        (f32::NEG_INFINITY, f32::INFINITY)
    };
    let strides = [shape[1] * shape[2], shape[2], 1];
    let n_axes = axes.len() as f32;
    data.par_chunks_mut(shape[2].max(1))
        .enumerate()
        .for_each(|(row, out)| {
            let pos0 = [row / shape[1], row % shape[1]];
            for (x, v) in out.iter_mut().enumerate() {
                let pos = [pos0[0], pos0[1], x];
                let i = row * shape[2] + x;
                let centre = src[i];
                let mut lap = 2.0 * n_axes * centre;
                for &a in axes {
                    let prev = if pos[a] > 0 { i - strides[a] } else { i };
                    let next = if pos[a] + 1 < shape[a] {
                        i + strides[a]
                    } else {
                        i
                    };
                    lap -= src[prev] + src[next];
                }
                *v = (lap * strength + centre).clamp(mn, mx);
            }
        });
}

impl Augmentation for SharpeningTransform {
    fn apply(
        &self,
        sample: &mut Sample,
        context: &AugmentationContext,
        rng: &mut dyn RngCore,
    ) -> Result<()> {
        if !chance(rng, self.p) {
            return Ok(());
        }
        let c = sample.image.shape()[0];
        let (strengths, clamps): (Vec<f64>, Vec<bool>) =
            if chance(rng, self.p_same_for_each_channel) {
                let s = self.strength.sample(rng);
                let cl = chance(rng, self.p_clamp_intensities);
                (vec![s; c], vec![cl; c])
            } else {
                let s = (0..c).map(|_| self.strength.sample(rng)).collect();
                let cl = (0..c)
                    .map(|_| chance(rng, self.p_clamp_intensities))
                    .collect();
                (s, cl)
            };
        let apply: Vec<bool> = (0..c).map(|_| chance(rng, self.p_per_channel)).collect();
        let shape = spatial_shape(&sample.image);
        let axes = data_axes(context);
        for (i, ch) in image_channels(&mut sample.image)?.enumerate() {
            if apply[i] {
                sharpen(ch, shape, &axes, strengths[i] as f32, clamps[i]);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// OneOf

/// Applies one of `transforms`, chosen uniformly (`OneOfTransform`); each keeps its own `p`.
pub struct OneOfTransform {
    /// Probability that a transform is chosen and applied at all (1 in the reference, which
    /// has no such parameter).
    pub p: f64,
    pub transforms: Vec<Box<dyn Augmentation>>,
}

impl fmt::Debug for OneOfTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneOfTransform")
            .field("p", &self.p)
            .field("transforms", &self.transforms.len())
            .finish()
    }
}

impl OneOfTransform {
    pub fn new(transforms: Vec<Box<dyn Augmentation>>) -> Self {
        Self { p: 1.0, transforms }
    }

    /// DA5 row 5: median filter (p 0.2) or Gaussian blur sigma U(0.3, 1.5), synchronised axes
    /// (p 0.2, p per channel 0.5).
    pub fn da5_filter() -> Self {
        let blur = super::intensity::GaussianBlurTransform {
            p: 0.2,
            blur_sigma: RandomScalar::Uniform(0.3, 1.5),
            synchronize_channels: false,
            synchronize_axes: true,
            p_per_channel: 0.5,
        };
        Self::new(vec![Box::new(MedianFilterTransform::da5()), Box::new(blur)])
    }

    /// DA5 row 8: contrast BGContrast(0.5, 2) (p 0.2, p per channel 0.5), range preserved or
    /// not.
    pub fn da5_contrast() -> Self {
        let contrast = |preserve_range| super::intensity::ContrastTransform {
            p: 0.2,
            contrast_range: RandomScalar::BgContrast(0.5, 2.0),
            preserve_range,
            synchronize_channels: false,
            p_per_channel: 0.5,
        };
        Self::new(vec![Box::new(contrast(true)), Box::new(contrast(false))])
    }
}

impl Augmentation for OneOfTransform {
    fn apply(
        &self,
        sample: &mut Sample,
        context: &AugmentationContext,
        rng: &mut dyn RngCore,
    ) -> Result<()> {
        if !chance(rng, self.p) || self.transforms.is_empty() {
            return Ok(());
        }
        let i = rng.random_range(0..self.transforms.len());
        self.transforms[i].apply(sample, context, rng)
    }
}
