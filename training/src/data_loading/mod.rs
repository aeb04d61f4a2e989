//! Training data loading as nnU-Net v2 does it (`nnUNetDataLoader` plus its augmenter workers).
//!
//! * [`PatchSampler`] draws training samples from a preprocessed folder: a case chosen uniformly,
//!   a patch box chosen by nnU-Net's `get_bbox` (random, or centred on a voxel of a randomly
//!   chosen foreground class when the sample is forced to contain foreground), and only that box
//!   read from the memory-mapped arrays. Outside the case, data is padded with `0` and the
//!   segmentation with `-1`. A `2d` configuration samples `[c, 1, y, x]` slabs out of the 3D
//!   cases (nnU-Net's patch size `(1, y, x)`). A cascade's previous-stage segmentation is
//!   appended as a second segmentation channel.
//! * [`DataLoader`] turns samples into [`Batch`]es: sample, augment (the trainer's list of
//!   [`Augmentation`](nnunet_core::Augmentation)s, in order), collate, and downsample the targets for
//!   deep supervision (nearest-exact, as batchgeneratorsv2's `DownsampleSegForDSTransform`).
//!   Worker threads fill a bounded queue; batch `i` depends only on the loader seed and `i`, never
//!   on the number of workers or their scheduling. A trainer that hands finished batches back with
//!   [`DataLoader::recycle`] spares the loader fresh allocations (whose page faults otherwise take
//!   most of its time).
//!
//! Randomness is drawn from a per-batch [`rand::rngs::StdRng`], not numpy's generator, so the
//! patches are nnU-Net's in distribution, not bit for bit.

mod loader;
mod sampler;

pub use loader::{
    Batch, DataLoader, LoaderConfig, batch_rng, deep_supervision_scales,
    deep_supervision_scales_from_strides, downsample_seg_nearest_exact,
};
pub use sampler::{CasePatch, Oversampling, PatchSampler, SamplerConfig, choose_bbox};
