//! What the training loop records per epoch: the figures of nnU-Net's `progress.png` and log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's iterations.
    pub train_loss: f64,
    /// Mean validation loss over the epoch's validation iterations.
    pub val_loss: f64,
    /// Pseudo Dice per foreground class (or region), from the validation iterations. `NaN` for a
    /// class absent from every validation batch and prediction.
    pub pseudo_dice: Vec<f64>,
    /// Mean of `pseudo_dice` over classes (nnU-Net's `mean_fg_dice`).
    pub mean_fg_dice: f64,
    /// Exponential moving average of `mean_fg_dice` (nnU-Net's `ema_fg_dice`).
    pub ema_fg_dice: f64,
    /// Learning rate used during the epoch.
    pub learning_rate: f64,
    /// Wall-clock start of the epoch, seconds since the Unix epoch.
    pub start_time: f64,
    /// Wall-clock end of the epoch, seconds since the Unix epoch.
    pub end_time: f64,
    /// The values a trainer recorded with
    /// [`StepContext::log`](crate::training::StepContext::log), averaged over the epoch, by
    /// `train_<name>` or `val_<name>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub logged: BTreeMap<String, f64>,
}

impl EpochRecord {
    /// Duration of the epoch in seconds.
    pub fn duration(&self) -> f64 {
        self.end_time - self.start_time
    }
}
