//! Filters of DA5: a median filter with a random window and Laplacian sharpening.

use nnunet_core::Result;
use rayon::prelude::*;

use super::super::apply::{RandomTransform, Run};
use super::super::{RandomScalar, chance, sync_draw};
use super::{image_channels, randint};

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
    /// Probability that the transform runs.
    pub p: f64,
    /// Window size: uniform integer in `[lo, hi)` (`np.random.randint`); `lo` if `hi <= lo + 1`.
    pub filter_size: (usize, usize),
    /// Probability that one window size serves all channels.
    pub p_same_for_each_channel: f64,
    /// Probability that a channel is filtered.
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

impl RandomTransform for MedianFilterTransform {
    fn transform(&self, mut run: Run<'_>) -> Result<()> {
        let (lo, hi) = self.filter_size;
        let same = chance(run.rng, self.p_same_for_each_channel);
        let sizes = sync_draw(run.channels, same, run.rng, |rng| randint(rng, lo, hi));
        let apply = run.channel_mask(self.p_per_channel);
        let axes = run.axes();
        for (i, ch) in image_channels(&mut run.sample.image)?.enumerate() {
            if apply[i] {
                median_filter(ch, run.shape, sizes[i], &axes);
            }
        }
        Ok(())
    }
}

/// Laplacian sharpening `x + strength · (2d · x − Σ neighbours)` (replicate padding) of randomly
/// chosen channels; 4-neighbourhood for 2D data, 6-neighbourhood for 3D.
#[derive(Clone, Debug)]
pub struct SharpeningTransform {
    /// Probability that the transform runs.
    pub p: f64,
    /// Strength of the sharpening.
    pub strength: RandomScalar,
    /// Probability that one strength (and clamping choice) serves all channels.
    pub p_same_for_each_channel: f64,
    /// Probability that a channel is sharpened.
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

/// Sharpens one `[z, y, x]` channel along `axes` in place, clamped to its original range when
/// `clamp`.
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

impl RandomTransform for SharpeningTransform {
    fn transform(&self, mut run: Run<'_>) -> Result<()> {
        let c = run.channels;
        let same = chance(run.rng, self.p_same_for_each_channel);
        // all strengths, then all clamping choices
        let strengths = sync_draw(c, same, run.rng, |rng| self.strength.sample(rng));
        let clamps = sync_draw(c, same, run.rng, |rng| {
            chance(rng, self.p_clamp_intensities)
        });
        let apply = run.channel_mask(self.p_per_channel);
        let axes = run.axes();
        for (i, ch) in image_channels(&mut run.sample.image)?.enumerate() {
            if apply[i] {
                sharpen(ch, run.shape, &axes, strengths[i] as f32, clamps[i]);
            }
        }
        Ok(())
    }
}
