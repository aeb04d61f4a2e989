//! Data augmentation: the [`Augmentation`] extension trait. A transform works on one training
//! sample on the CPU, before it is batched; a trainer composes transforms into its pipeline.

use ndarray::Array4;
use rand::RngCore;

use crate::error::Result;

/// One training sample: image `[c, z, y, x]` and label map `[1, z, y, x]` of the same spatial
/// shape (`z = 1` for 2D). Transforms change both consistently.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Image intensities, `[c, z, y, x]`.
    pub image: Array4<f32>,
    /// Label map, `[1, z, y, x]`.
    pub segmentation: Array4<i16>,
}

/// Facts about the data a transform may need.
#[derive(Clone, Debug, Default)]
pub struct AugmentationContext {
    /// Whether the data is 2D (`z = 1`).
    pub is_2d: bool,
    /// Spatial axes (0 = z, 1 = y, 2 = x) along which mirroring is allowed.
    pub mirror_axes: Vec<usize>,
    /// Label used for "ignore", if the dataset has one.
    pub ignore_label: Option<i16>,
}

/// A random transform of a training sample.
pub trait Augmentation: Send + Sync {
    /// Applies the transform in place, drawing randomness from `rng` only, so that a seeded run
    /// is reproducible.
    fn apply(
        &self,
        sample: &mut Sample,
        context: &AugmentationContext,
        rng: &mut dyn RngCore,
    ) -> Result<()>;
}
