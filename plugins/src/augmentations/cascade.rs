//! The cascade's transforms of the previous stage's one-hot segmentation (image channels):
//! random morphological operators and removal of a random connected component.

use ndarray::Axis;
use nnunet_core::augmentation::Sample;
use nnunet_core::{Error, Result};
use rand::Rng;
use rayon::prelude::*;

use super::apply::{RandomTransform, Run};
use super::{RandomScalar, chance, shuffle};

/// Which image channels hold the one-hot encoding.
#[derive(Clone, Debug, PartialEq)]
pub enum ChannelSelection {
    /// These channel indices.
    Explicit(Vec<usize>),
    /// The last `n` channels (nnU-Net's `range(-n, 0)`).
    Last(usize),
}

impl ChannelSelection {
    /// The channel indices for an image of `channels` channels (`what` starts an error).
    fn resolve(&self, channels: usize, what: &str) -> Result<Vec<usize>> {
        let out = match self {
            ChannelSelection::Explicit(v) => v.clone(),
            ChannelSelection::Last(n) => {
                if *n > channels {
                    return Err(Error::training(format!(
                        "{what}: needs the last {n} image channels, the image has {channels}"
                    )));
                }
                (channels - n..channels).collect()
            }
        };
        if let Some(bad) = out.iter().find(|&&c| c >= channels) {
            return Err(Error::training(format!(
                "{what}: image has {channels} channels, no channel {bad}"
            )));
        }
        Ok(out)
    }
}

/// Morphological operators of [`ApplyRandomBinaryOperatorTransform`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOperator {
    /// Grows the mask by the ball.
    Dilation,
    /// Shrinks the mask by the ball.
    Erosion,
    /// Dilation, then erosion: fills gaps narrower than the ball.
    Closing,
    /// Erosion, then dilation: removes parts narrower than the ball.
    Opening,
}

/// The squared distance standing for "no mask voxel on this line yet".
const BIG: f64 = 1e12;

/// One-dimensional squared distance transform (Felzenszwalb & Huttenlocher) of `f` in place.
fn edt_1d(f: &mut [f64], v: &mut [usize], z: &mut [f64], d: &mut [f64]) {
    let n = f.len();
    if n <= 1 {
        return;
    }
    let mut k = 0usize;
    v[0] = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        loop {
            let p = v[k];
            let s =
                ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64)) / (2.0 * (q as f64 - p as f64));
            if s <= z[k] && k > 0 {
                k -= 1;
                continue;
            }
            if s <= z[k] {
                // k == 0 and z[0] = -inf: unreachable, kept for clarity
                v[0] = q;
                z[1] = f64::INFINITY;
                break;
            }
            k += 1;
            v[k] = q;
            z[k] = s;
            z[k + 1] = f64::INFINITY;
            break;
        }
    }
    k = 0;
    for (q, dq) in d.iter_mut().enumerate().take(n) {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        *dq = (q as f64 - p as f64).powi(2) + f[p];
    }
    f.copy_from_slice(&d[..n]);
}

/// Squared Euclidean distance of every voxel to the nearest `true` voxel of `mask` (`[z, y, x]`).
fn squared_distance(mask: &[bool], shape: [usize; 3]) -> Vec<f64> {
    let mut f: Vec<f64> = mask.iter().map(|&m| if m { 0.0 } else { BIG }).collect();
    for axis in 0..3 {
        let len = shape[axis];
        if len <= 1 {
            continue;
        }
        let inner: usize = shape[axis + 1..].iter().product();
        f.par_chunks_mut(len * inner).for_each(|block| {
            let mut line = vec![0.0; len];
            let (mut v, mut z, mut d) = (vec![0usize; len], vec![0.0; len + 1], vec![0.0; len]);
            for j in 0..inner {
                for i in 0..len {
                    line[i] = block[i * inner + j];
                }
                edt_1d(&mut line, &mut v, &mut z, &mut d);
                for i in 0..len {
                    block[i * inner + j] = line[i];
                }
            }
        });
    }
    f
}

/// Dilation with a ball of radius `r`: voxels within distance `r` of the mask.
fn dilate(mask: &[bool], shape: [usize; 3], r: f64) -> Vec<bool> {
    if !mask.iter().any(|&m| m) {
        return vec![false; mask.len()];
    }
    let r2 = r * r;
    squared_distance(mask, shape)
        .into_iter()
        .map(|d| d <= r2)
        .collect()
}

/// Erosion with a ball of radius `r` (outside the array does not erode).
fn erode(mask: &[bool], shape: [usize; 3], r: f64) -> Vec<bool> {
    let inv: Vec<bool> = mask.iter().map(|&m| !m).collect();
    dilate(&inv, shape, r).into_iter().map(|m| !m).collect()
}

/// `op` applied to `mask` with a ball of radius `r`.
fn apply_operator(op: BinaryOperator, mask: &[bool], shape: [usize; 3], r: f64) -> Vec<bool> {
    match op {
        BinaryOperator::Dilation => dilate(mask, shape, r),
        BinaryOperator::Erosion => erode(mask, shape, r),
        BinaryOperator::Closing => erode(&dilate(mask, shape, r), shape, r),
        BinaryOperator::Opening => dilate(&erode(mask, shape, r), shape, r),
    }
}

/// Applies a random morphological operator (dilation, erosion, closing, opening) with a ball
/// of random radius to each one-hot channel with probability `p_per_label`; voxels a channel
/// gains are removed from the other channels.
#[derive(Clone, Debug)]
pub struct ApplyRandomBinaryOperatorTransform {
    /// Probability that the transform runs.
    pub p: f64,
    /// The one-hot channels.
    pub channels: ChannelSelection,
    /// Radius of the ball (voxels).
    pub strel_size: RandomScalar,
    /// Probability that a channel is changed.
    pub p_per_label: f64,
}

impl ApplyRandomBinaryOperatorTransform {
    /// p 0.4, radius U(1, 8).
    pub fn nnunet_default(channels: ChannelSelection, p_per_label: f64) -> Self {
        Self {
            p: 0.4,
            channels,
            strel_size: RandomScalar::Uniform(1.0, 8.0),
            p_per_label,
        }
    }
}

/// The operators to draw from, uniformly.
const OPERATORS: [BinaryOperator; 4] = [
    BinaryOperator::Dilation,
    BinaryOperator::Erosion,
    BinaryOperator::Closing,
    BinaryOperator::Opening,
];

/// The one-hot channels both cascade transforms start from, once drawn to run: those of
/// `selection` shuffled, and those drawn with probability `p_per_label` each to be changed;
/// `what` names the transform in errors.
fn one_hot_channels(
    run: &mut Run<'_>,
    selection: &ChannelSelection,
    p_per_label: f64,
    what: &str,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let mut all = selection.resolve(run.channels, what)?;
    shuffle(&mut all, run.rng);
    let apply = all
        .iter()
        .copied()
        .filter(|_| chance(run.rng, p_per_label))
        .collect();
    Ok((all, apply))
}

/// Image channel `c` as a mask (nonzero voxels).
fn channel_mask(sample: &Sample, c: usize) -> Vec<bool> {
    sample
        .image
        .index_axis(Axis(0), c)
        .iter()
        .map(|&v| v != 0.0)
        .collect()
}

impl RandomTransform for ApplyRandomBinaryOperatorTransform {
    fn transform(&self, mut run: Run<'_>) -> Result<()> {
        let what = "ApplyRandomBinaryOperatorTransform";
        let (all, apply) = one_hot_channels(&mut run, &self.channels, self.p_per_label, what)?;
        let ops: Vec<BinaryOperator> = apply
            .iter()
            .map(|_| OPERATORS[run.rng.random_range(0..4)])
            .collect();
        let radii: Vec<f64> = apply
            .iter()
            .map(|_| self.strel_size.sample(run.rng))
            .collect();
        for ((&a, &op), &r) in apply.iter().zip(&ops).zip(&radii) {
            let mask = channel_mask(run.sample, a);
            let result = apply_operator(op, &mask, run.shape, r);
            for &oc in all.iter().filter(|&&c| c != a) {
                let mut ch = run.sample.image.index_axis_mut(Axis(0), oc);
                for ((v, &res), &m) in ch.iter_mut().zip(&result).zip(&mask) {
                    if res && !m {
                        *v = 0.0;
                    }
                }
            }
            let mut ch = run.sample.image.index_axis_mut(Axis(0), a);
            for (v, &res) in ch.iter_mut().zip(&result) {
                *v = if res { 1.0 } else { 0.0 };
            }
        }
        Ok(())
    }
}

/// Sets the voxels of image channel `c` whose component in `labels` is `chosen` to `value`.
fn set_component(sample: &mut Sample, c: usize, labels: &[u32], chosen: u32, value: f32) {
    for (v, &l) in sample
        .image
        .index_axis_mut(Axis(0), c)
        .iter_mut()
        .zip(labels)
    {
        if l == chosen {
            *v = value;
        }
    }
}

/// Connected components of `mask` (`[z, y, x]`, full connectivity): labels (0 = background,
/// components from 1) and the size of each component (index 0 unused).
pub(crate) fn label_components(mask: &[bool], shape: [usize; 3]) -> (Vec<u32>, Vec<usize>) {
    let mut labels = vec![0u32; mask.len()];
    let mut sizes = vec![0usize];
    let mut stack = Vec::new();
    let [sz, sy, sx] = shape.map(|v| v as isize);
    for start in 0..mask.len() {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32;
        let mut size = 0;
        labels[start] = id;
        stack.push(start);
        while let Some(i) = stack.pop() {
            size += 1;
            let z = (i / (shape[1] * shape[2])) as isize;
            let y = ((i / shape[2]) % shape[1]) as isize;
            let x = (i % shape[2]) as isize;
            for dz in -1..=1 {
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        let (nz, ny, nx) = (z + dz, y + dy, x + dx);
                        if nz < 0 || ny < 0 || nx < 0 || nz >= sz || ny >= sy || nx >= sx {
                            continue;
                        }
                        let j = ((nz * sy + ny) * sx + nx) as usize;
                        if mask[j] && labels[j] == 0 {
                            labels[j] = id;
                            stack.push(j);
                        }
                    }
                }
            }
        }
        sizes.push(size);
    }
    (labels, sizes)
}

/// Removes one random connected component (smaller than a fraction of the patch) from each
/// one-hot channel with probability `p_per_label`, optionally giving it to another channel.
#[derive(Clone, Debug)]
pub struct RemoveRandomConnectedComponentTransform {
    /// Probability that the transform runs.
    pub p: f64,
    /// The one-hot channels.
    pub channels: ChannelSelection,
    /// Probability that the removed component is given to another (random) channel.
    pub fill_with_other_class_p: f64,
    /// Only components smaller than this fraction of the patch are removed.
    pub dont_do_if_covers_more_than_x_percent: f64,
    /// Probability that a channel is changed.
    pub p_per_label: f64,
}

impl RemoveRandomConnectedComponentTransform {
    /// p 0.2, no filling, components under 15 % of the patch.
    pub fn nnunet_default(channels: ChannelSelection, p_per_label: f64) -> Self {
        Self {
            p: 0.2,
            channels,
            fill_with_other_class_p: 0.0,
            dont_do_if_covers_more_than_x_percent: 0.15,
            p_per_label,
        }
    }
}

impl RandomTransform for RemoveRandomConnectedComponentTransform {
    fn transform(&self, mut run: Run<'_>) -> Result<()> {
        let what = "RemoveRandomConnectedComponentFromOneHotEncodingTransform";
        let (all, apply) = one_hot_channels(&mut run, &self.channels, self.p_per_label, what)?;
        let total = (run.shape[0] * run.shape[1] * run.shape[2]) as f64;
        for &a in &apply {
            let mask = channel_mask(run.sample, a);
            if !mask.iter().any(|&m| m) {
                continue;
            }
            let (lab, sizes) = label_components(&mask, run.shape);
            let valid: Vec<u32> = (1..sizes.len())
                .filter(|&i| (sizes[i] as f64) < total * self.dont_do_if_covers_more_than_x_percent)
                .map(|i| i as u32)
                .collect();
            if valid.is_empty() {
                continue;
            }
            let chosen = valid[run.rng.random_range(0..valid.len())];
            set_component(run.sample, a, &lab, chosen, 0.0);
            if chance(run.rng, self.fill_with_other_class_p) {
                let others: Vec<usize> = all.iter().copied().filter(|&c| c != a).collect();
                if !others.is_empty() {
                    let oc = others[run.rng.random_range(0..others.len())];
                    set_component(run.sample, oc, &lab, chosen, 1.0);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edt_and_morphology() {
        let shape = [1, 1, 9];
        let mut mask = vec![false; 9];
        mask[4] = true;
        let d = squared_distance(&mask, shape);
        assert_eq!(d, vec![16.0, 9.0, 4.0, 1.0, 0.0, 1.0, 4.0, 9.0, 16.0]);
        let dil = dilate(&mask, shape, 2.0);
        assert_eq!(dil.iter().filter(|&&m| m).count(), 5);
        assert_eq!(erode(&dil, shape, 2.0), mask);
        // 2D distance
        let shape = [1, 5, 5];
        let mut mask = vec![false; 25];
        mask[0] = true;
        let d = squared_distance(&mask, shape);
        assert_eq!(d[24], 32.0);
    }

    #[test]
    fn components() {
        let shape = [1, 3, 5];
        let mask = vec![
            true, false, false, false, true, //
            false, true, false, false, true, //
            false, false, false, false, false,
        ];
        let (lab, sizes) = label_components(&mask, shape);
        assert_eq!(sizes, vec![0, 2, 2]);
        assert_eq!(lab[0], lab[6]);
        assert_ne!(lab[0], lab[4]);
    }
}
