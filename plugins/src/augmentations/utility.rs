//! Mirroring and the label bookkeeping transforms of nnU-Net's pipelines.

use ndarray::{Array4, ArrayView3, Axis, Zip, s};
use nnunet_core::augmentation::Sample;
use nnunet_core::{Error, Result};

use super::apply::{RandomTransform, Run, SampleTransform};
use super::chance;

/// Errors unless image and segmentation have the same spatial shape (`name` starts the
/// message).
fn check_same_shape(name: &str, sample: &Sample) -> Result<()> {
    if sample.image.shape()[1..] != sample.segmentation.shape()[1..] {
        return Err(Error::training(format!(
            "{name}: image and segmentation shapes differ"
        )));
    }
    Ok(())
}

/// Segmentation channel `c` of `seg`; errors (`name` starts the message) when there is none.
fn seg_channel<'a>(name: &str, seg: &'a Array4<i16>, c: usize) -> Result<ArrayView3<'a, i16>> {
    if c >= seg.shape()[0] {
        return Err(Error::training(format!(
            "{name}: segmentation has no channel {c}"
        )));
    }
    Ok(seg.index_axis(Axis(0), c))
}

/// The positive labels present in `seg`, ascending.
fn positive_labels(seg: &ArrayView3<i16>) -> Vec<i16> {
    let mut l: Vec<i16> = seg.iter().copied().filter(|&v| v > 0).collect();
    l.sort_unstable();
    l.dedup();
    l
}

/// Flips each allowed spatial axis independently with probability 0.5.
#[derive(Clone, Debug)]
pub struct MirrorTransform {
    /// Spatial axes of the sample (0 = z, 1 = y, 2 = x); `None` uses `context.mirror_axes`.
    pub allowed_axes: Option<Vec<usize>>,
}

impl MirrorTransform {
    /// Mirrors along `allowed_axes`, or the context's mirror axes when `None`.
    pub fn new(allowed_axes: Option<Vec<usize>>) -> Self {
        Self { allowed_axes }
    }

    /// Flips `axes` of image and segmentation (no randomness).
    pub fn flip(sample: &mut Sample, axes: &[usize]) -> Result<()> {
        for &a in axes {
            if a > 2 {
                return Err(Error::training(format!(
                    "MirrorTransform: spatial axis {a} does not exist (0 = z, 1 = y, 2 = x)"
                )));
            }
            sample.image.invert_axis(Axis(a + 1));
            sample.segmentation.invert_axis(Axis(a + 1));
        }
        if !axes.is_empty() {
            sample.image = sample.image.as_standard_layout().into_owned();
            sample.segmentation = sample.segmentation.as_standard_layout().into_owned();
        }
        Ok(())
    }
}

impl RandomTransform for MirrorTransform {
    fn transform(&self, run: Run<'_>) -> Result<()> {
        let allowed = self
            .allowed_axes
            .as_ref()
            .unwrap_or(&run.context.mirror_axes);
        let axes: Vec<usize> = allowed
            .iter()
            .copied()
            .filter(|_| chance(run.rng, 0.5))
            .collect();
        Self::flip(run.sample, &axes)
    }
}

/// Sets image channels to `set_outside_to` where segmentation channel `channel_idx_in_seg` is
/// negative (outside the nonzero region).
#[derive(Clone, Debug)]
pub struct MaskImageTransform {
    /// Image channels to mask; `None` masks all.
    pub apply_to_channels: Option<Vec<usize>>,
    /// Segmentation channel whose negative values mark the outside.
    pub channel_idx_in_seg: usize,
    /// Value of masked image voxels.
    pub set_outside_to: f32,
}

impl SampleTransform for MaskImageTransform {
    fn transform(&self, sample: &mut Sample) -> Result<()> {
        let nc = sample.image.shape()[0];
        let channels: Vec<usize> = match &self.apply_to_channels {
            Some(c) => c.clone(),
            None => (0..nc).collect(),
        };
        if channels.is_empty() {
            return Ok(());
        }
        let name = "MaskImageTransform";
        let seg = seg_channel(name, &sample.segmentation, self.channel_idx_in_seg)?;
        check_same_shape(name, sample)?;
        for c in channels {
            if c >= nc {
                return Err(Error::training(format!(
                    "MaskImageTransform: image has no channel {c}"
                )));
            }
            let v = self.set_outside_to;
            Zip::from(sample.image.index_axis_mut(Axis(0), c))
                .and(&seg)
                .for_each(|x, &l| {
                    if l < 0 {
                        *x = v;
                    }
                });
        }
        Ok(())
    }
}

/// Replaces `label_value` by `set_to` in every segmentation channel.
#[derive(Clone, Debug)]
pub struct RemoveLabelTransform {
    /// The label to replace.
    pub label_value: i16,
    /// Its replacement.
    pub set_to: i16,
}

impl RemoveLabelTransform {
    /// Replaces `label_value` by `set_to`.
    pub fn new(label_value: i16, set_to: i16) -> Self {
        Self {
            label_value,
            set_to,
        }
    }
}

impl SampleTransform for RemoveLabelTransform {
    fn transform(&self, sample: &mut Sample) -> Result<()> {
        let (from, to) = (self.label_value, self.set_to);
        sample
            .segmentation
            .mapv_inplace(|v| if v == from { to } else { v });
        Ok(())
    }
}

/// Appends segmentation channel `source_channel_idx` to the image as one binary channel per
/// label in `all_labels` (the cascade's previous-stage prediction), and optionally removes it
/// from the segmentation.
#[derive(Clone, Debug)]
pub struct MoveSegAsOneHotToDataTransform {
    /// Segmentation channel to move.
    pub source_channel_idx: usize,
    /// Labels to encode; `None` encodes the positive labels present in the channel.
    pub all_labels: Option<Vec<i16>>,
    /// Remove the channel from the segmentation afterwards.
    pub remove_channel_from_source: bool,
}

impl SampleTransform for MoveSegAsOneHotToDataTransform {
    fn transform(&self, sample: &mut Sample) -> Result<()> {
        let ns = sample.segmentation.shape()[0];
        if self.source_channel_idx >= ns {
            return Err(Error::training(format!(
                "MoveSegAsOneHotToDataTransform: segmentation has {ns} channel(s), no channel {} \
                 with the previous stage's segmentation",
                self.source_channel_idx
            )));
        }
        check_same_shape("MoveSegAsOneHotToDataTransform", sample)?;
        let src = sample
            .segmentation
            .index_axis(Axis(0), self.source_channel_idx);
        let labels = match &self.all_labels {
            Some(l) => l.clone(),
            None => positive_labels(&src),
        };
        let c = sample.image.shape()[0];
        let sh = sample.image.shape();
        let mut out = Array4::<f32>::zeros((c + labels.len(), sh[1], sh[2], sh[3]));
        out.slice_mut(s![..c, .., .., ..]).assign(&sample.image);
        for (i, &l) in labels.iter().enumerate() {
            Zip::from(out.index_axis_mut(Axis(0), c + i))
                .and(&src)
                .for_each(|o, &v| {
                    if v == l {
                        *o = 1.0;
                    }
                });
        }
        sample.image = out;
        if self.remove_channel_from_source {
            let keep: Vec<usize> = (0..ns).filter(|&i| i != self.source_channel_idx).collect();
            sample.segmentation = sample.segmentation.select(Axis(0), &keep);
        }
        Ok(())
    }
}

/// Segmentation channel `channel_in_seg` to one binary channel per region (a region is a set of
/// labels).
#[derive(Clone, Debug)]
pub struct ConvertSegmentationToRegionsTransform {
    /// The regions; empty means one region per positive label present.
    pub regions: Vec<Vec<i16>>,
    /// The segmentation channel to convert.
    pub channel_in_seg: usize,
}

impl SampleTransform for ConvertSegmentationToRegionsTransform {
    fn transform(&self, sample: &mut Sample) -> Result<()> {
        let name = "ConvertSegmentationToRegionsTransform";
        let src = seg_channel(name, &sample.segmentation, self.channel_in_seg)?;
        let regions = if self.regions.is_empty() {
            positive_labels(&src).into_iter().map(|v| vec![v]).collect()
        } else {
            self.regions.clone()
        };
        let sh = src.shape();
        let mut out = Array4::<i16>::zeros((regions.len(), sh[0], sh[1], sh[2]));
        for (r, labels) in regions.iter().enumerate() {
            Zip::from(out.index_axis_mut(Axis(0), r))
                .and(&src)
                .for_each(|o, v| *o = labels.contains(v) as i16);
        }
        sample.segmentation = out;
        Ok(())
    }
}
