//! nnU-Net's training data augmentation (batchgeneratorsv2 transforms as used by nnU-Net v2.8.1),
//! each an [`Augmentation`](nnunet_core::Augmentation) registered under its nnU-Net class name,
//! plus the geometry rules ([`geometry`]) and the composed pipelines ([`pipeline`]).
//!
//! Samples are `[c, z, y, x]`; 2D data has `z = 1`. Every transform carries its own apply
//! probability `p` (nnU-Net's `RandomTransform` wrapper) and draws all randomness from the `rng`
//! it is given, so a seeded run is reproducible.

pub mod cascade;
pub mod da5;
pub mod geometry;
pub mod intensity;
pub mod pipeline;
pub mod spatial;
pub mod utility;

pub use cascade::{ApplyRandomBinaryOperatorTransform, RemoveRandomConnectedComponentTransform};
pub use da5::{
    BlankRectangleTransform, BrightnessAdditiveTransform, BrightnessGradientAdditiveTransform,
    LocalGammaTransform, LocalScale, MedianFilterTransform, OneOfTransform, RectangleValue,
    Rot90Transform, SharpeningTransform, SplitScalar, TransposeAxesTransform,
};
pub use geometry::{DaGeometry, configure_rotation_dummy_da_mirroring_and_initial_patch_size};
pub use intensity::{
    ContrastTransform, GammaTransform, GaussianBlurTransform, GaussianNoiseTransform,
    MultiplicativeBrightnessTransform, SimulateLowResolutionTransform,
};
pub use pipeline::{PipelineContext, training_pipeline, validation_pipeline};
pub use spatial::SpatialTransform;
pub use utility::{
    ConvertSegmentationToRegionsTransform, MaskImageTransform, MirrorTransform,
    MoveSegAsOneHotToDataTransform, RemoveLabelTransform,
};

use rand::{Rng, RngCore};

/// A random scalar: a fixed value, a uniform range, or nnU-Net's `BGContrast` sampling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RandomScalar {
    /// Always this value.
    Fixed(f64),
    /// Uniform in `[lo, hi)` (the value itself when `lo == hi`).
    Uniform(f64, f64),
    /// `BGContrast((a, b))`: with probability 0.5, and only if `a < 1`, uniform in `[a, 1)`;
    /// otherwise uniform in `[max(a, 1), b)`.
    BgContrast(f64, f64),
}

impl RandomScalar {
    /// Draws one value.
    pub fn sample(&self, rng: &mut dyn RngCore) -> f64 {
        match *self {
            RandomScalar::Fixed(v) => v,
            RandomScalar::Uniform(lo, hi) => uniform(rng, lo, hi),
            RandomScalar::BgContrast(a, b) => {
                let coin: f64 = rng.random();
                if coin < 0.5 && a < 1.0 {
                    uniform(rng, a, 1.0)
                } else {
                    uniform(rng, a.max(1.0), b)
                }
            }
        }
    }

    /// One value per axis for `axes` axes: a single draw repeated when `synchronize_axes`, else
    /// one draw per axis.
    pub fn sample_per_axis(
        &self,
        rng: &mut dyn RngCore,
        axes: usize,
        synchronize_axes: bool,
    ) -> Vec<f64> {
        if synchronize_axes {
            vec![self.sample(rng); axes]
        } else {
            (0..axes).map(|_| self.sample(rng)).collect()
        }
    }
}

/// Uniform in `[lo, hi)`; `lo` itself when the range is empty (as `sample_scalar`).
pub(crate) fn uniform(rng: &mut dyn RngCore, lo: f64, hi: f64) -> f64 {
    if lo == hi {
        return lo;
    }
    lo + (hi - lo) * rng.random::<f64>()
}

/// Whether an event of probability `p` happens (`uniform() < p`).
pub(crate) fn chance(rng: &mut dyn RngCore, p: f64) -> bool {
    rng.random::<f64>() < p
}

nnunet_core::register!(
    Augmentation,
    "SpatialTransform",
    "rotation (p 0.2, ±30° 3D / ±180° 2D) and scaling (p 0.2, 0.7-1.4) of the sampled patch, \
     centre-cropped to its own size",
    || Box::new(SpatialTransform::nnunet_default(None, false))
);
nnunet_core::register!(
    Augmentation,
    "GaussianNoiseTransform",
    "additive Gaussian noise, sigma U(0, 0.1) (p 0.1)",
    || Box::new(GaussianNoiseTransform::nnunet_default())
);
nnunet_core::register!(
    Augmentation,
    "GaussianBlurTransform",
    "Gaussian blur, sigma U(0.5, 1) per axis and channel (p 0.2, p per channel 0.5)",
    || Box::new(GaussianBlurTransform::nnunet_default())
);
nnunet_core::register!(
    Augmentation,
    "MultiplicativeBrightnessTransform",
    "per-channel intensity multiplier BGContrast(0.75, 1.25) (p 0.15)",
    || Box::new(MultiplicativeBrightnessTransform::nnunet_default())
);
nnunet_core::register!(
    Augmentation,
    "ContrastTransform",
    "per-channel contrast BGContrast(0.75, 1.25), range preserved (p 0.15)",
    || Box::new(ContrastTransform::nnunet_default())
);
nnunet_core::register!(
    Augmentation,
    "SimulateLowResolutionTransform",
    "nearest downsampling by U(0.5, 1) and linear upsampling (p 0.25, p per channel 0.5)",
    || Box::new(SimulateLowResolutionTransform::nnunet_default(false))
);
nnunet_core::register!(
    Augmentation,
    "GammaTransform",
    "gamma BGContrast(0.7, 1.5) with retained statistics (p 0.3, not inverted)",
    || Box::new(GammaTransform::nnunet_default(false))
);
nnunet_core::register!(
    Augmentation,
    "MirrorTransform",
    "flips each allowed axis of the context with probability 0.5",
    || Box::new(MirrorTransform::new(None))
);
nnunet_core::register!(
    Augmentation,
    "MaskImageTransform",
    "sets every image channel to 0 outside the nonzero region (seg < 0)",
    || Box::new(MaskImageTransform::new(None, 0, 0.0))
);
nnunet_core::register!(
    Augmentation,
    "RemoveLabelTransform",
    "segmentation label -1 becomes 0",
    || Box::new(RemoveLabelTransform::new(-1, 0))
);
nnunet_core::register!(
    Augmentation,
    "MoveSegAsOneHotToDataTransform",
    "moves segmentation channel 1 (previous stage) to the image as one-hot channels of the \
     labels present in it",
    || Box::new(MoveSegAsOneHotToDataTransform::new(1, None, true))
);
nnunet_core::register!(
    Augmentation,
    "ApplyRandomBinaryOperatorTransform",
    "random dilation/erosion/opening/closing (ball radius U(1, 8)) of the last image channel \
     (p 0.4, p per label 0.5)",
    || Box::new(ApplyRandomBinaryOperatorTransform::nnunet_default(
        cascade::ChannelSelection::Last(1),
        0.5
    ))
);
nnunet_core::register!(
    Augmentation,
    "RemoveRandomConnectedComponentFromOneHotEncodingTransform",
    "removes a random small connected component from the last image channel (p 0.2, p per \
     label 0.5)",
    || Box::new(RemoveRandomConnectedComponentTransform::nnunet_default(
        cascade::ChannelSelection::Last(1),
        0.5
    ))
);
nnunet_core::register!(
    Augmentation,
    "ConvertSegmentationToRegionsTransform",
    "segmentation to one binary channel per label present (labels > 0)",
    || Box::new(ConvertSegmentationToRegionsTransform::new(Vec::new(), 0))
);
nnunet_core::register!(
    Augmentation,
    "Rot90Transform",
    "0-3 quarter turns of image and segmentation in a random plane of the equal-length axes \
     (p 0.5)",
    || Box::new(Rot90Transform::da5(None))
);
nnunet_core::register!(
    Augmentation,
    "TransposeAxesTransform",
    "random permutation of the equal-length axes of image and segmentation (p 0.5)",
    || Box::new(TransposeAxesTransform::da5(None))
);
nnunet_core::register!(
    Augmentation,
    "MedianFilterTransform",
    "median filter, window 2-7 per channel (p 0.2, p per channel 0.5)",
    || Box::new(MedianFilterTransform::da5())
);
nnunet_core::register!(
    Augmentation,
    "BrightnessAdditiveTransform",
    "per-channel additive offset N(0, 0.5) (p 0.1, p per channel 0.5)",
    || Box::new(BrightnessAdditiveTransform::da5())
);
nnunet_core::register!(
    Augmentation,
    "BlankRectangleTransform",
    "1-4 boxes of side [max(1, s/10), s/3) filled with their mean (p 0.4, p per channel 0.5)",
    || Box::new(BlankRectangleTransform::da5(None))
);
nnunet_core::register!(
    Augmentation,
    "BrightnessGradientAdditiveTransform",
    "additive smooth Gaussian brightness gradient of peak ±U(1, 5) (p 0.3, p per channel 0.5)",
    || Box::new(BrightnessGradientAdditiveTransform::da5())
);
nnunet_core::register!(
    Augmentation,
    "LocalGammaTransform",
    "gamma U(0.01, 0.8) or U(1.5, 4) blended in through a smooth Gaussian map (p 0.3, p per \
     channel 0.5)",
    || Box::new(LocalGammaTransform::da5())
);
nnunet_core::register!(
    Augmentation,
    "SharpeningTransform",
    "Laplacian sharpening, strength U(0.1, 1) (p 0.2, p per channel 0.5)",
    || Box::new(SharpeningTransform::da5())
);
nnunet_core::register!(
    Augmentation,
    "OneOfTransform",
    "one of median filter (p 0.2) or Gaussian blur sigma U(0.3, 1.5) (p 0.2), chosen uniformly \
     (DA5's filter choice)",
    || Box::new(OneOfTransform::da5_filter())
);
