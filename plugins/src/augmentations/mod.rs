//! nnU-Net's training data augmentation (batchgeneratorsv2 transforms as used by nnU-Net v2.8.1),
//! each an [`Augmentation`](nnunet_core::Augmentation) registered under its nnU-Net class name,
//! plus the geometry rules ([`geometry`]) and the composed pipelines ([`pipeline`]).
//!
//! Samples are `[c, z, y, x]`; 2D data has `z = 1`. Every transform carries its own apply
//! probability `p` (nnU-Net's `RandomTransform` wrapper) and draws all randomness from the `rng`
//! it is given, so a seeded run is reproducible.

mod apply;
pub mod cascade;
pub mod da5;
pub mod geometry;
mod intensity;
pub mod pipeline;
mod spatial;
mod utility;

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

use ndarray::Array4;
use nnunet_core::augmentation::AugmentationContext;
use rand::{Rng, RngCore};

// How each transform's `apply` opens: what it draws before the transform proper.
apply::augmentation!(p => apply::transform() for
    MultiplicativeBrightnessTransform,
    Rot90Transform,
    TransposeAxesTransform,
    MedianFilterTransform,
    SharpeningTransform,
    BlankRectangleTransform,
    OneOfTransform,
    ApplyRandomBinaryOperatorTransform,
    RemoveRandomConnectedComponentTransform,
);
apply::augmentation!(p => apply::channels(p_per_channel) for
    GaussianNoiseTransform,
    ContrastTransform,
    GammaTransform,
    BrightnessAdditiveTransform,
    BrightnessGradientAdditiveTransform,
    LocalGammaTransform,
);
apply::augmentation!(p => intensity::per_axis(
    blur_sigma, p_per_channel, synchronize_channels, synchronize_axes
) for GaussianBlurTransform);
apply::augmentation!(p => intensity::per_axis(
    scale, p_per_channel, synchronize_channels, synchronize_axes
) for SimulateLowResolutionTransform);
apply::augmentation!(apply::transform() for SpatialTransform, MirrorTransform);
apply::augmentation!(apply::sample_only() for
    MaskImageTransform,
    RemoveLabelTransform,
    MoveSegAsOneHotToDataTransform,
    ConvertSegmentationToRegionsTransform,
);

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

/// The spatial shape `[z, y, x]` of a `[c, z, y, x]` array.
pub(crate) fn spatial_shape<T>(a: &Array4<T>) -> [usize; 3] {
    let s = a.shape();
    [s[1], s[2], s[3]]
}

/// The spatial axes (0 = z, 1 = y, 2 = x) the data has: y, x for 2D, all three for 3D.
pub(crate) fn data_axes(context: &AugmentationContext) -> Vec<usize> {
    if context.is_2d {
        vec![1, 2]
    } else {
        vec![0, 1, 2]
    }
}

/// `n` values from `draw`: one draw repeated when `synchronize` (drawn even for `n = 0`), else
/// `n` draws in order.
pub(crate) fn sync_draw<T: Clone>(
    n: usize,
    synchronize: bool,
    rng: &mut dyn RngCore,
    mut draw: impl FnMut(&mut dyn RngCore) -> T,
) -> Vec<T> {
    if synchronize {
        vec![draw(rng); n]
    } else {
        (0..n).map(|_| draw(rng)).collect()
    }
}

/// Shuffles `v` in place (Fisher-Yates, from the last element down).
pub(crate) fn shuffle(v: &mut [usize], rng: &mut dyn RngCore) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

/// Registers each transform under its nnU-Net class name, with a description, built by the
/// given expression.
macro_rules! register_augmentations {
    ($($name:literal, $description:expr => $make:expr;)*) => {$(
        nnunet_core::register!(Augmentation, $name, $description, || Box::new($make));
    )*};
}

register_augmentations! {
    "SpatialTransform",
    "rotation (p 0.2, ±30° 3D / ±180° 2D) and scaling (p 0.2, 0.7-1.4) of the sampled patch, \
     centre-cropped to its own size"
        => SpatialTransform::nnunet_default(None, false);
    "GaussianNoiseTransform",
    "additive Gaussian noise, sigma U(0, 0.1) (p 0.1)"
        => GaussianNoiseTransform::nnunet_default();
    "GaussianBlurTransform",
    "Gaussian blur, sigma U(0.5, 1) per axis and channel (p 0.2, p per channel 0.5)"
        => GaussianBlurTransform::nnunet_default();
    "MultiplicativeBrightnessTransform",
    "per-channel intensity multiplier BGContrast(0.75, 1.25) (p 0.15)"
        => MultiplicativeBrightnessTransform::nnunet_default();
    "ContrastTransform",
    "per-channel contrast BGContrast(0.75, 1.25), range preserved (p 0.15)"
        => ContrastTransform::nnunet_default();
    "SimulateLowResolutionTransform",
    "nearest downsampling by U(0.5, 1) and linear upsampling (p 0.25, p per channel 0.5)"
        => SimulateLowResolutionTransform::nnunet_default(false);
    "GammaTransform",
    "gamma BGContrast(0.7, 1.5) with retained statistics (p 0.3, not inverted)"
        => GammaTransform::nnunet_default(false);
    "MirrorTransform",
    "flips each allowed axis of the context with probability 0.5"
        => MirrorTransform::new(None);
    "MaskImageTransform",
    "sets every image channel to 0 outside the nonzero region (seg < 0)"
        => MaskImageTransform {
            apply_to_channels: None,
            channel_idx_in_seg: 0,
            set_outside_to: 0.0,
        };
    "RemoveLabelTransform",
    "segmentation label -1 becomes 0"
        => RemoveLabelTransform::new(-1, 0);
    "MoveSegAsOneHotToDataTransform",
    "moves segmentation channel 1 (previous stage) to the image as one-hot channels of the \
     labels present in it"
        => MoveSegAsOneHotToDataTransform {
            source_channel_idx: 1,
            all_labels: None,
            remove_channel_from_source: true,
        };
    "ApplyRandomBinaryOperatorTransform",
    "random dilation/erosion/opening/closing (ball radius U(1, 8)) of the last image channel \
     (p 0.4, p per label 0.5)"
        => ApplyRandomBinaryOperatorTransform::nnunet_default(
            cascade::ChannelSelection::Last(1),
            0.5,
        );
    "RemoveRandomConnectedComponentFromOneHotEncodingTransform",
    "removes a random small connected component from the last image channel (p 0.2, p per \
     label 0.5)"
        => RemoveRandomConnectedComponentTransform::nnunet_default(
            cascade::ChannelSelection::Last(1),
            0.5,
        );
    "ConvertSegmentationToRegionsTransform",
    "segmentation to one binary channel per label present (labels > 0)"
        => ConvertSegmentationToRegionsTransform {
            regions: Vec::new(),
            channel_in_seg: 0,
        };
    "Rot90Transform",
    "0-3 quarter turns of image and segmentation in a random plane of the equal-length axes \
     (p 0.5)"
        => Rot90Transform::da5(None);
    "TransposeAxesTransform",
    "random permutation of the equal-length axes of image and segmentation (p 0.5)"
        => TransposeAxesTransform::da5(None);
    "MedianFilterTransform",
    "median filter, window 2-7 per channel (p 0.2, p per channel 0.5)"
        => MedianFilterTransform::da5();
    "BrightnessAdditiveTransform",
    "per-channel additive offset N(0, 0.5) (p 0.1, p per channel 0.5)"
        => BrightnessAdditiveTransform::da5();
    "BlankRectangleTransform",
    "1-4 boxes of side [max(1, s/10), s/3) filled with their mean (p 0.4, p per channel 0.5)"
        => BlankRectangleTransform::da5(None);
    "BrightnessGradientAdditiveTransform",
    "additive smooth Gaussian brightness gradient of peak ±U(1, 5) (p 0.3, p per channel 0.5)"
        => BrightnessGradientAdditiveTransform::da5();
    "LocalGammaTransform",
    "gamma U(0.01, 0.8) or U(1.5, 4) blended in through a smooth Gaussian map (p 0.3, p per \
     channel 0.5)"
        => LocalGammaTransform::da5();
    "SharpeningTransform",
    "Laplacian sharpening, strength U(0.1, 1) (p 0.2, p per channel 0.5)"
        => SharpeningTransform::da5();
    "OneOfTransform",
    "one of median filter (p 0.2) or Gaussian blur sigma U(0.3, 1.5) (p 0.2), chosen uniformly \
     (DA5's filter choice)"
        => OneOfTransform::da5_filter();
}
