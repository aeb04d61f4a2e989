//! nnU-Net's training and validation transform pipelines (`get_training_transforms`,
//! `get_validation_transforms`), without the deep-supervision downsampling the loader does.

use nnunet_api::training::{AugmentationSettings, PipelineKind};
use nnunet_core::augmentation::AugmentationContext;
use nnunet_core::{Augmentation, Error, Registries, Result};

use super::RandomScalar;
use super::cascade::{
    ApplyRandomBinaryOperatorTransform, ChannelSelection, RemoveRandomConnectedComponentTransform,
};
use super::da5::{
    BlankRectangleTransform, BrightnessAdditiveTransform, BrightnessGradientAdditiveTransform,
    LocalGammaTransform, OneOfTransform, Rot90Transform, SharpeningTransform,
    TransposeAxesTransform, equal_length_axes,
};
use super::geometry::DaGeometry;
use super::intensity::{
    ContrastTransform, GammaTransform, GaussianBlurTransform, GaussianNoiseTransform,
    MultiplicativeBrightnessTransform, SimulateLowResolutionTransform,
};
use super::spatial::SpatialTransform;
use super::utility::{
    ConvertSegmentationToRegionsTransform, MaskImageTransform, MirrorTransform,
    MoveSegAsOneHotToDataTransform, RemoveLabelTransform,
};

/// What the pipelines depend on besides the [`AugmentationSettings`].
#[derive(Clone, Debug)]
pub struct PipelineContext {
    /// Final patch size of the configuration (2 or 3 entries).
    pub patch_size: Vec<usize>,
    /// Whether the configuration is 2D.
    pub is_2d: bool,
    /// Rotation range, dummy-2D flag and mirror axes, from
    /// [`configure_rotation_dummy_da_mirroring_and_initial_patch_size`](super::geometry::configure_rotation_dummy_da_mirroring_and_initial_patch_size).
    pub geometry: DaGeometry,
    /// `use_mask_for_norm` per image channel (from the plans).
    pub use_mask_for_norm: Vec<bool>,
    /// Foreground labels of the previous stage, for a cascade configuration.
    pub cascade_foreground_labels: Option<Vec<i16>>,
    /// Regions (label sets), for region-based training.
    pub regions: Option<Vec<Vec<i16>>>,
    /// The dataset's ignore label, if any.
    pub ignore_label: Option<i16>,
}

impl PipelineContext {
    /// The final patch as `[z, y, x]` (`z = 1` for 2D).
    pub fn patch_zyx(&self) -> Result<[usize; 3]> {
        match (self.patch_size.as_slice(), self.is_2d) {
            ([y, x], true) => Ok([1, *y, *x]),
            ([z, y, x], false) => Ok([*z, *y, *x]),
            (ps, is_2d) => Err(Error::training(format!(
                "patch size {ps:?} does not fit a {} configuration",
                if is_2d { "2D" } else { "3D" }
            ))),
        }
    }

    /// The training mirror axes as sample axes (0 = z, 1 = y, 2 = x).
    pub fn sample_mirror_axes(&self) -> Vec<usize> {
        let offset = usize::from(self.is_2d);
        self.geometry
            .mirror_axes
            .iter()
            .map(|a| a + offset)
            .collect()
    }

    /// The [`AugmentationContext`] the pipelines expect at `apply`.
    pub fn augmentation_context(&self) -> AugmentationContext {
        AugmentationContext {
            is_2d: self.is_2d,
            mirror_axes: self.sample_mirror_axes(),
            ignore_label: self.ignore_label,
        }
    }

    fn region_list(&self) -> Option<Vec<Vec<i16>>> {
        self.regions.as_ref().map(|r| {
            let mut r = r.clone();
            if let Some(ignore) = self.ignore_label {
                r.push(vec![ignore]);
            }
            r
        })
    }
}

/// MaskImage on the `use_mask_for_norm` channels, if any.
fn push_mask(out: &mut Vec<Box<dyn Augmentation>>, ctx: &PipelineContext) {
    if ctx.use_mask_for_norm.iter().any(|&m| m) {
        let channels: Vec<usize> = ctx
            .use_mask_for_norm
            .iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(i, _)| i)
            .collect();
        out.push(Box::new(MaskImageTransform {
            apply_to_channels: Some(channels),
            channel_idx_in_seg: 0,
            set_outside_to: 0.0,
        }));
    }
}

/// RemoveLabel, cascade one-hot, regions: the tail every pipeline shares.
fn label_tail(
    out: &mut Vec<Box<dyn Augmentation>>,
    settings: &AugmentationSettings,
    ctx: &PipelineContext,
    with_cascade_da: bool,
) {
    label_tail_p(out, settings.cascade_p_per_label, ctx, with_cascade_da);
}

/// [`label_tail`] with the cascade transforms' probability per label.
fn label_tail_p(
    out: &mut Vec<Box<dyn Augmentation>>,
    cascade_p_per_label: f64,
    ctx: &PipelineContext,
    with_cascade_da: bool,
) {
    out.push(Box::new(RemoveLabelTransform::new(-1, 0)));
    if let Some(labels) = &ctx.cascade_foreground_labels {
        out.push(Box::new(MoveSegAsOneHotToDataTransform {
            source_channel_idx: 1,
            all_labels: Some(labels.clone()),
            remove_channel_from_source: true,
        }));
        if with_cascade_da && !labels.is_empty() {
            let p = cascade_p_per_label;
            out.push(Box::new(
                ApplyRandomBinaryOperatorTransform::nnunet_default(
                    ChannelSelection::Last(labels.len()),
                    p,
                ),
            ));
            out.push(Box::new(
                RemoveRandomConnectedComponentTransform::nnunet_default(
                    ChannelSelection::Last(labels.len()),
                    p,
                ),
            ));
        }
    }
    if let Some(regions) = ctx.region_list() {
        out.push(Box::new(ConvertSegmentationToRegionsTransform {
            regions,
            channel_in_seg: 0,
        }));
    }
}

/// `nnUNetTrainerDA5.get_training_transforms` (docs/reference/trainers.md 2.10), without the
/// deep-supervision downsampling.
fn da5_pipeline(
    out: &mut Vec<Box<dyn Augmentation>>,
    settings: &AugmentationSettings,
    ctx: &PipelineContext,
    patch: [usize; 3],
) {
    let dummy = ctx.geometry.do_dummy_2d && !ctx.is_2d;
    let mut spatial = SpatialTransform::new(Some(patch), ctx.geometry.rotation, dummy);
    spatial.p_rotation = 0.4;
    spatial.p_rot_per_axis = 0.5;
    spatial.p_scaling = 0.2;
    spatial.scaling = RandomScalar::Uniform(0.7, 1.43);
    spatial.p_synchronize_scaling_across_axes = 0.0;
    spatial.padding_value_seg = -1;
    spatial.segmentation_nearest = settings.segmentation_nearest;
    spatial.image_nearest = settings.image_nearest;
    out.push(Box::new(spatial));

    // rows 3-4: on the axes of the plans' patch size sharing the most frequent length
    let offset = usize::from(ctx.is_2d);
    let patch_axes: Vec<usize> = (0..ctx.patch_size.len()).collect();
    let valid: Vec<usize> = equal_length_axes(&ctx.patch_size, &patch_axes)
        .into_iter()
        .map(|a| a + offset)
        .collect();
    if !valid.is_empty() {
        out.push(Box::new(Rot90Transform::da5(Some(valid.clone()))));
        out.push(Box::new(TransposeAxesTransform::da5(Some(valid))));
    }

    out.push(Box::new(OneOfTransform::da5_filter()));
    out.push(Box::new(GaussianNoiseTransform::nnunet_default()));
    out.push(Box::new(BrightnessAdditiveTransform::da5()));
    out.push(Box::new(OneOfTransform::da5_contrast()));
    let mut lowres = SimulateLowResolutionTransform::nnunet_default(dummy);
    lowres.p = 0.15;
    lowres.scale = RandomScalar::Uniform(0.25, 1.0);
    out.push(Box::new(lowres));
    // rows 10 and 11 are identical (both inverted), as in the reference source
    out.push(Box::new(GammaTransform::nnunet_default(true)));
    out.push(Box::new(GammaTransform::nnunet_default(true)));
    let axes = ctx.sample_mirror_axes();
    if !axes.is_empty() {
        out.push(Box::new(MirrorTransform::new(Some(axes))));
    }
    out.push(Box::new(BlankRectangleTransform::da5(Some(
        &ctx.patch_size,
    ))));
    out.push(Box::new(BrightnessGradientAdditiveTransform::da5()));
    out.push(Box::new(LocalGammaTransform::da5()));
    out.push(Box::new(SharpeningTransform::da5()));
    push_mask(out, ctx);
    // the cascade transforms keep batchgeneratorsv2's default p_per_label 1
    label_tail_p(out, 1.0, ctx, true);
}

fn append_extra(
    out: &mut Vec<Box<dyn Augmentation>>,
    settings: &AugmentationSettings,
    registries: &Registries,
) -> Result<()> {
    for name in &settings.extra {
        out.push(registries.augmentations.create(name)?);
    }
    Ok(())
}

/// The training transforms of `settings.pipeline`, followed by the `extra` transforms looked
/// up by name in `registries`.
pub fn training_pipeline(
    settings: &AugmentationSettings,
    ctx: &PipelineContext,
    registries: &Registries,
) -> Result<Vec<Box<dyn Augmentation>>> {
    let patch = ctx.patch_zyx()?;
    let mut out: Vec<Box<dyn Augmentation>> = Vec::new();
    match settings.pipeline {
        PipelineKind::DA5 => da5_pipeline(&mut out, settings, ctx, patch),
        PipelineKind::None => label_tail(&mut out, settings, ctx, false),
        PipelineKind::Default => {
            let dummy = ctx.geometry.do_dummy_2d && !ctx.is_2d;
            let mut spatial = SpatialTransform::new(Some(patch), ctx.geometry.rotation, dummy);
            spatial.segmentation_nearest = settings.segmentation_nearest;
            spatial.image_nearest = settings.image_nearest;
            out.push(Box::new(spatial));
            out.push(Box::new(GaussianNoiseTransform::nnunet_default()));
            out.push(Box::new(GaussianBlurTransform::nnunet_default()));
            out.push(Box::new(MultiplicativeBrightnessTransform::nnunet_default()));
            out.push(Box::new(ContrastTransform::nnunet_default()));
            out.push(Box::new(SimulateLowResolutionTransform::nnunet_default(
                dummy,
            )));
            out.push(Box::new(GammaTransform::nnunet_default(true)));
            out.push(Box::new(GammaTransform::nnunet_default(false)));
            let axes = ctx.sample_mirror_axes();
            if !axes.is_empty() {
                out.push(Box::new(MirrorTransform::new(Some(axes))));
            }
            push_mask(&mut out, ctx);
            label_tail(&mut out, settings, ctx, true);
        }
    }
    append_extra(&mut out, settings, registries)?;
    Ok(out)
}

/// The validation transforms (RemoveLabel, cascade one-hot, regions). Extra transforms are not
/// applied to validation batches.
pub fn validation_pipeline(
    settings: &AugmentationSettings,
    ctx: &PipelineContext,
) -> Result<Vec<Box<dyn Augmentation>>> {
    ctx.patch_zyx()?;
    let mut out: Vec<Box<dyn Augmentation>> = Vec::new();
    label_tail(&mut out, settings, ctx, false);
    Ok(out)
}
