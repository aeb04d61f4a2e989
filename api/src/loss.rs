//! Training losses: the [`Loss`] extension trait, registered under nnU-Net's names
//! (`DC_and_CE_loss`, …) and chosen by the trainer.

use burn::tensor::{Int, Tensor};

use crate::Result;

/// The training target of a batch.
#[derive(Clone, Debug)]
pub enum Target {
    /// Integer labels `[b, 1, z, y, x]`.
    Labels(Tensor<5, Int>),
    /// Region masks `[b, regions, z, y, x]` of zeros and ones (region-based training). With an
    /// ignore label, one more channel comes last: 1 where the voxel is ignored (nnU-Net converts
    /// the ignore label into a final region).
    Regions(Tensor<5>),
}

/// Settings a loss is built with, from the plans, `dataset.json` and the trainer.
/// [`Default`] is nnU-Net's default (`nnUNetTrainer._build_loss`).
#[derive(Clone, Debug, PartialEq)]
pub struct LossSettings {
    /// Dice computed over the whole batch as one volume (the plans' `batch_dice`).
    pub batch_dice: bool,
    /// Include the background class (channel 0) in the Dice term of label targets. Region targets
    /// have no background channel: all their channels always count, as in nnU-Net.
    pub do_bg: bool,
    /// Smoothing term of the soft Dice.
    pub smooth: f64,
    /// Voxels with this label contribute nothing (for region targets: the last target channel is
    /// the ignore mask when this is set).
    pub ignore_label: Option<i64>,
    /// Weight of the cross-entropy (or BCE) term.
    pub weight_ce: f64,
    /// Weight of the Dice term.
    pub weight_dice: f64,
    /// Share, in percent, of the hardest voxels that the top-k cross-entropy averages.
    pub topk_percent: f64,
    /// Label smoothing of the cross-entropy terms (0 = none).
    pub label_smoothing: f64,
}

impl Default for LossSettings {
    fn default() -> Self {
        Self {
            batch_dice: false,
            do_bg: false,
            smooth: 1e-5,
            ignore_label: None,
            weight_ce: 1.0,
            weight_dice: 1.0,
            topk_percent: 10.0,
            label_smoothing: 0.0,
        }
    }
}

/// A loss between the network's logits `[b, c, z, y, x]` and a target, reduced to one value.
/// Deep supervision is applied by the training loop, which calls the loss once per output.
pub trait Loss: Send + Sync {
    /// The loss value (shape `[1]`), differentiable with respect to `logits`. A target that does
    /// not fit the logits or the loss (shapes, label values, kind) is an
    /// [`Error::Invalid`](crate::Error::Invalid).
    fn forward(
        &self,
        logits: Tensor<5>,
        target: &Target,
        settings: &LossSettings,
    ) -> Result<Tensor<1>>;
}
