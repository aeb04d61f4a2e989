//! Training losses: the [`Loss`] extension trait, registered under nnU-Net's names
//! (`DC_and_CE_loss`, …) and chosen by the trainer.

use burn::tensor::{Int, Tensor};

/// The training target of a batch.
#[derive(Clone, Debug)]
pub enum Target {
    /// Integer labels `[b, 1, z, y, x]`.
    Labels(Tensor<5, Int>),
    /// Region masks `[b, regions, z, y, x]` of zeros and ones (region-based training).
    Regions(Tensor<5>),
}

/// Settings a loss is built with, from the plans and `dataset.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct LossSettings {
    /// Dice computed over the whole batch as one volume (the plans' `batch_dice`).
    pub batch_dice: bool,
    /// Include the background class in the Dice term.
    pub do_bg: bool,
    /// Smoothing term of the soft Dice.
    pub smooth: f64,
    /// Voxels with this label contribute nothing.
    pub ignore_label: Option<i64>,
    /// Weight of the cross-entropy (or BCE) term.
    pub weight_ce: f64,
    /// Weight of the Dice term.
    pub weight_dice: f64,
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
        }
    }
}

/// A loss between the network's logits `[b, c, z, y, x]` and a target, reduced to one value.
/// Deep supervision is applied by the training loop, which calls the loss once per output.
pub trait Loss: Send + Sync {
    /// The loss value (shape `[1]`), differentiable with respect to `logits`.
    fn forward(&self, logits: Tensor<5>, target: &Target, settings: &LossSettings) -> Tensor<1>;
}
