//! The start every transform's `apply` shares. [`augmentation!`] implements
//! [`Augmentation`](nnunet_core::Augmentation) for a transform: it bundles what `apply` is given
//! into a [`Run`], draws whether the transform runs at all (probability `p`, nnU-Net's
//! `RandomTransform`) where it has one, and hands the run to one of the openings below, which
//! draws what the transform draws before its work proper and calls its [`RandomTransform`],
//! [`ChannelTransform`] or [`SampleTransform`] implementation:
//! - [`transform`]: the transform makes all its draws itself;
//! - [`channels`]: first draws the channels it changes (`p_per_channel` each) and stops when
//!   none is drawn;
//! - `intensity::per_axis`: first draws the channels and, for each, values per data axis;
//! - [`sample_only`]: draws nothing and needs only the sample.

use nnunet_core::Result;
use nnunet_core::augmentation::{AugmentationContext, Sample};
use rand::RngCore;

use super::{chance, data_axes, spatial_shape};

/// What a transform's `apply` was given, with the image's channel count and spatial shape.
pub(crate) struct Run<'a> {
    /// The sample to transform.
    pub(crate) sample: &'a mut Sample,
    /// What `apply` was told about the data.
    pub(crate) context: &'a AugmentationContext,
    /// The source of every random draw.
    pub(crate) rng: &'a mut dyn RngCore,
    /// Number of image channels.
    pub(crate) channels: usize,
    /// Spatial shape `[z, y, x]` of the image.
    pub(crate) shape: [usize; 3],
}

impl<'a> Run<'a> {
    /// Bundles the arguments of `apply` (draws nothing).
    pub(crate) fn new(
        sample: &'a mut Sample,
        context: &'a AugmentationContext,
        rng: &'a mut dyn RngCore,
    ) -> Self {
        Run {
            channels: sample.image.shape()[0],
            shape: spatial_shape(&sample.image),
            sample,
            context,
            rng,
        }
    }

    /// Draws whether a transform of probability `p` runs at all; `None` means the sample stays
    /// as it is.
    pub(crate) fn drawn(self, p: f64) -> Option<Self> {
        chance(self.rng, p).then_some(self)
    }

    /// The spatial axes (0 = z, 1 = y, 2 = x) the data has: y, x for 2D, all three for 3D.
    pub(crate) fn axes(&self) -> Vec<usize> {
        data_axes(self.context)
    }

    /// Draws for every image channel, in order, whether it is transformed (`p_per_channel`).
    pub(crate) fn channel_mask(&mut self, p_per_channel: f64) -> Vec<bool> {
        (0..self.channels)
            .map(|_| chance(self.rng, p_per_channel))
            .collect()
    }

    /// The channels [`Self::channel_mask`] draws, ascending (`torch.rand(c) < p`).
    pub(crate) fn pick_channels(&mut self, p_per_channel: f64) -> Vec<usize> {
        let mask = self.channel_mask(p_per_channel);
        (0..self.channels).filter(|&c| mask[c]).collect()
    }
}

/// A transform that draws from `run.rng` (opened by [`transform`]).
pub(crate) trait RandomTransform {
    /// Transforms the sample.
    fn transform(&self, run: Run<'_>) -> Result<()>;
}

/// A random transform that first draws the channels it changes (opened by [`channels`]).
pub(crate) trait ChannelTransform {
    /// Transforms the drawn `channels` (ascending, at least one) of the sample.
    fn transform(&self, run: Run<'_>, channels: Vec<usize>) -> Result<()>;
}

/// A transform without randomness that needs only the sample (opened by [`sample_only`]).
pub(crate) trait SampleTransform {
    /// Transforms the sample.
    fn transform(&self, sample: &mut Sample) -> Result<()>;
}

/// Runs `t`.
pub(crate) fn transform<T: RandomTransform>(t: &T, run: Run<'_>) -> Result<()> {
    t.transform(run)
}

/// Draws the channels of `t` (`p_per_channel` each, in channel order) and runs it on them;
/// nothing more happens when none is drawn.
pub(crate) fn channels<T: ChannelTransform>(
    t: &T,
    p_per_channel: f64,
    mut run: Run<'_>,
) -> Result<()> {
    let channels = run.pick_channels(p_per_channel);
    if channels.is_empty() {
        return Ok(());
    }
    t.transform(run, channels)
}

/// Runs `t` on the sample alone.
pub(crate) fn sample_only<T: SampleTransform>(t: &T, run: Run<'_>) -> Result<()> {
    t.transform(run.sample)
}

/// `augmentation!(opening(fields) for Types)` implements
/// [`Augmentation`](nnunet_core::Augmentation) for each type: `apply` calls the opening function
/// at path `opening` with the transform, the named fields of the transform and the [`Run`].
/// `augmentation!(p => opening(fields) for Types)` first draws whether the transform runs at all,
/// with probability `self.p` (nnU-Net's `RandomTransform`).
macro_rules! augmentation {
    (@one [$($p:ident)?] [$($opening:tt)*] [$($field:ident),*] $t:ty) => {
        impl nnunet_core::Augmentation for $t {
            fn apply(
                &self,
                sample: &mut nnunet_core::augmentation::Sample,
                context: &nnunet_core::augmentation::AugmentationContext,
                rng: &mut dyn rand::RngCore,
            ) -> nnunet_core::Result<()> {
                let run = $crate::augmentations::apply::Run::new(sample, context, rng);
                $(let Some(run) = run.drawn(self.$p) else {
                    return Ok(());
                };)?
                $($opening)*(self, $(self.$field,)* run)
            }
        }
    };
    (@each $p:tt $opening:tt $fields:tt $($t:ty),+) => {$(
        $crate::augmentations::apply::augmentation!(@one $p $opening $fields $t);
    )+};
    ($p:ident => $($opening:ident)::+ ($($field:ident),*) for $($t:ty),+ $(,)?) => {
        $crate::augmentations::apply::augmentation!(
            @each [$p] [$($opening)::+] [$($field),*] $($t),+
        );
    };
    ($($opening:ident)::+ ($($field:ident),*) for $($t:ty),+ $(,)?) => {
        $crate::augmentations::apply::augmentation!(
            @each [] [$($opening)::+] [$($field),*] $($t),+
        );
    };
}
pub(crate) use augmentation;
