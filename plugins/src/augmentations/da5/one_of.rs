//! `OneOfTransform`: one of several transforms, chosen uniformly.

use std::fmt;

use nnunet_core::{Augmentation, Result};
use rand::Rng;

use super::super::RandomScalar;
use super::super::apply::{RandomTransform, Run};
use super::super::intensity::{ContrastTransform, GaussianBlurTransform};
use super::MedianFilterTransform;

/// Applies one of `transforms`, chosen uniformly (`OneOfTransform`); each keeps its own `p`.
pub struct OneOfTransform {
    /// Probability that a transform is chosen and applied at all (1 in the reference, which
    /// has no such parameter).
    pub p: f64,
    /// The transforms to choose from.
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
    /// Chooses among `transforms`, always (`p` 1).
    pub fn new(transforms: Vec<Box<dyn Augmentation>>) -> Self {
        Self { p: 1.0, transforms }
    }

    /// DA5 row 5: median filter (p 0.2) or Gaussian blur sigma U(0.3, 1.5), synchronised axes
    /// (p 0.2, p per channel 0.5).
    pub fn da5_filter() -> Self {
        let blur = GaussianBlurTransform {
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
        let contrast = |preserve_range| ContrastTransform {
            p: 0.2,
            contrast_range: RandomScalar::BgContrast(0.5, 2.0),
            preserve_range,
            synchronize_channels: false,
            p_per_channel: 0.5,
        };
        Self::new(vec![Box::new(contrast(true)), Box::new(contrast(false))])
    }
}

impl RandomTransform for OneOfTransform {
    fn transform(&self, run: Run<'_>) -> Result<()> {
        if self.transforms.is_empty() {
            return Ok(());
        }
        let i = run.rng.random_range(0..self.transforms.len());
        self.transforms[i].apply(run.sample, run.context, run.rng)
    }
}
