//! The local transforms of DA5: a smooth Gaussian-shaped brightness gradient and gamma
//! correction blended in through a smooth Gaussian-shaped weight map.

use std::sync::Arc;

use nnunet_core::Result;
use rand::{Rng, RngCore};
use rayon::prelude::*;

use super::super::apply::{ChannelTransform, Run};
use super::super::{RandomScalar, sync_draw, uniform};
use super::image_channels;

/// A scalar drawn as [`RandomScalar`] or, with probability 0.5 each, from one of two uniform
/// ranges (DA5's `max_strength` and local `gamma`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SplitScalar {
    /// Drawn as this [`RandomScalar`].
    Scalar(RandomScalar),
    /// `U(a.0, a.1)` if `uniform() < 0.5`, else `U(b.0, b.1)`.
    EitherUniform((f64, f64), (f64, f64)),
}

impl SplitScalar {
    /// Draws one value.
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
    /// Drawn as this [`RandomScalar`], whatever the axis length.
    Scalar(RandomScalar),
    /// DA5: `exp(U(log(s / 6), log(s)))` for an axis of length `s` (`s / 6` floored, at
    /// least 1).
    LogUniformSixth,
}

impl LocalScale {
    /// Draws the width for an axis of length `len`.
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

/// The standard normal distribution function.
fn norm_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Minimum and maximum of `data` (infinities when empty).
fn min_max(data: &[f32]) -> (f32, f32) {
    data.par_iter()
        .fold(
            || (f32::INFINITY, f32::NEG_INFINITY),
            |(a, b), &v| (a.min(v), b.max(v)),
        )
        .reduce(
            || (f32::INFINITY, f32::NEG_INFINITY),
            |x, y| (x.0.min(y.0), x.1.max(y.1)),
        )
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
    let (mn, mx) = min_max(&kernel);
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
    /// Probability that the transform runs.
    pub p: f64,
    /// Width of the Gaussian per axis.
    pub scale: LocalScale,
    /// Centre of the Gaussian as a fraction of the axis length.
    pub loc: RandomScalar,
    /// Peak value of the added gradient (the kernel's largest magnitude).
    pub max_strength: SplitScalar,
    /// One gradient for all channels.
    pub same_for_all_channels: bool,
    /// Subtract the kernel's mean before scaling it.
    pub mean_centered: bool,
    /// Clamp the image to its original range afterwards.
    pub clip_intensities: bool,
    /// Probability that a channel is changed.
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

/// Per-channel parameters of `run`'s image for `channels` (ascending; others `None`): one draw
/// shared by all of them when `shared`, else one draw per channel, in channel order.
fn per_channel<T: Clone>(
    run: &mut Run<'_>,
    channels: &[usize],
    shared: bool,
    draw: impl FnMut(&mut dyn RngCore) -> T,
) -> Vec<Option<T>> {
    let mut values = sync_draw(channels.len(), shared, run.rng, draw).into_iter();
    (0..run.channels)
        .map(|c| channels.contains(&c).then(|| values.next()).flatten())
        .collect()
}

impl ChannelTransform for BrightnessGradientAdditiveTransform {
    fn transform(&self, mut run: Run<'_>, channels: Vec<usize>) -> Result<()> {
        let (axes, shape) = (run.axes(), run.shape);
        let kernels: Vec<Option<Arc<Vec<f32>>>> =
            per_channel(&mut run, &channels, self.same_for_all_channels, |rng| {
                self.kernel(rng, shape, &axes).map(Arc::new)
            })
            .into_iter()
            .map(Option::flatten)
            .collect();
        let sample = run.sample;
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
    /// Probability that the transform runs.
    pub p: f64,
    /// Width of the Gaussian per axis.
    pub scale: LocalScale,
    /// Centre of the Gaussian as a fraction of the axis length.
    pub loc: RandomScalar,
    /// The exponent.
    pub gamma: SplitScalar,
    /// One weight map and exponent for all channels.
    pub same_for_all_channels: bool,
    /// Probability that a channel is changed.
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

impl ChannelTransform for LocalGammaTransform {
    fn transform(&self, mut run: Run<'_>, channels: Vec<usize>) -> Result<()> {
        let (axes, shape) = (run.axes(), run.shape);
        let params: Vec<Option<(Arc<Vec<f32>>, f64)>> =
            per_channel(&mut run, &channels, self.same_for_all_channels, |rng| {
                let k = local_kernel(rng, shape, &axes, &self.loc, &self.scale);
                (Arc::new(k), self.gamma.sample(rng))
            });
        for (i, ch) in image_channels(&mut run.sample.image)?.enumerate() {
            let Some((k, gamma)) = &params[i] else {
                continue;
            };
            let (mn, mx) = min_max(ch);
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
