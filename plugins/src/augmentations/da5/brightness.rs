//! Additive brightness: a random offset added to randomly chosen channels.

use nnunet_core::Result;
use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use super::super::apply::{ChannelTransform, Run};
use super::super::uniform;
use super::image_channels;

/// Adds a random offset to randomly chosen channels.
#[derive(Clone, Debug)]
pub struct BrightnessAdditiveTransform {
    /// Probability that the transform runs.
    pub p: f64,
    /// Mean of the offset.
    pub mu: f64,
    /// Standard deviation of the offset.
    pub sigma: f64,
    /// One offset for all channels. As in the reference, the shared offset is drawn uniformly
    /// in `[mu, sigma)` (`sample_scalar((mu, sigma))`); per-channel offsets are `N(mu, sigma)`.
    pub synchronize_channels: bool,
    /// Probability that a channel gets an offset.
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

impl ChannelTransform for BrightnessAdditiveTransform {
    fn transform(&self, run: Run<'_>, channels: Vec<usize>) -> Result<()> {
        let c = run.channels;
        let shifts: Vec<f64> = if self.synchronize_channels {
            vec![uniform(run.rng, self.mu, self.sigma); c]
        } else {
            (0..c)
                .map(|_| self.mu + self.sigma * run.rng.sample::<f64, _>(StandardNormal))
                .collect()
        };
        for (i, ch) in image_channels(&mut run.sample.image)?.enumerate() {
            if channels.contains(&i) {
                let s = shifts[i] as f32;
                ch.par_iter_mut().for_each(|v| *v += s);
            }
        }
        Ok(())
    }
}
