//! Rot90 and axis transposes: random quarter turns and permutations of the equal-length
//! spatial axes, applied to image and segmentation alike.

use ndarray::{Array4, Axis};
use nnunet_core::augmentation::Sample;
use nnunet_core::{Error, Result};
use rand::Rng;

use super::super::apply::{RandomTransform, Run};
use super::super::{RandomScalar, shuffle, spatial_shape};

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

/// Errors unless every axis is a spatial axis (0, 1 or 2); `name` starts the message.
fn check_axes(name: &str, axes: &[usize]) -> Result<()> {
    if let Some(a) = axes.iter().find(|&&a| a > 2) {
        return Err(Error::training(format!(
            "{name}: spatial axis {a} does not exist (0 = z, 1 = y, 2 = x)"
        )));
    }
    Ok(())
}

/// Errors unless image and segmentation have the same spatial shape; `name` starts the message.
fn check_same_shape(name: &str, sample: &Sample) -> Result<()> {
    if spatial_shape(&sample.image) != spatial_shape(&sample.segmentation) {
        return Err(Error::training(format!(
            "{name}: image spatial shape {:?} differs from segmentation {:?}",
            spatial_shape(&sample.image),
            spatial_shape(&sample.segmentation)
        )));
    }
    Ok(())
}

/// The axes a transform named `name` acts on: `allowed`, or those of the sample with the most
/// frequent common length; errors unless image and segmentation have the same spatial shape
/// and every axis is a spatial axis.
fn transform_axes(name: &str, allowed: Option<&[usize]>, run: &Run<'_>) -> Result<Vec<usize>> {
    check_same_shape(name, run.sample)?;
    let axes = match allowed {
        Some(a) => a.to_vec(),
        None => equal_length_axes(&run.shape, &run.axes()),
    };
    check_axes(name, &axes)?;
    Ok(axes)
}

/// Random multiples of 90° rotations in random planes spanned by two of the allowed axes,
/// applied to image and segmentation alike (`torch.rot90`).
#[derive(Clone, Debug)]
pub struct Rot90Transform {
    /// Probability that the transform runs.
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
            return Err(Error::training(format!(
                "Rot90Transform: rotation plane needs two distinct axes, got ({a}, {b})"
            )));
        }
        /// `arr` turned by `k` quarter turns in the plane of spatial axes `a`, `b`.
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

impl RandomTransform for Rot90Transform {
    fn transform(&self, run: Run<'_>) -> Result<()> {
        let axes = transform_axes("Rot90Transform", self.allowed_axes.as_deref(), &run)?;
        let (sample, rng) = (run.sample, run.rng);
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

/// A random permutation of the allowed (equal-length) spatial axes, applied to image and
/// segmentation alike.
#[derive(Clone, Debug)]
pub struct TransposeAxesTransform {
    /// Probability that the transform runs.
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
            return Err(Error::training(format!(
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

impl RandomTransform for TransposeAxesTransform {
    fn transform(&self, run: Run<'_>) -> Result<()> {
        let name = "TransposeAxesTransform";
        let mut axes = transform_axes(name, self.allowed_axes.as_deref(), &run)?;
        let shape = run.shape;
        axes.sort_unstable();
        axes.dedup();
        if axes.len() < 2 {
            return Ok(());
        }
        if axes.iter().any(|&a| shape[a] != shape[axes[0]]) {
            return Err(Error::training(format!(
                "TransposeAxesTransform: axes {axes:?} of shape {shape:?} differ in length"
            )));
        }
        let mut order = axes.clone();
        shuffle(&mut order, run.rng);
        Self::permute(run.sample, &axes, &order)
    }
}
