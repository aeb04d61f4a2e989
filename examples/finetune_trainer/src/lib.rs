//! An nnunet-rs plugin for fine-tuning a pretrained model (`-pretrained_weights`): the encoder is
//! frozen for the first epochs (no update, no optimiser state, left out of gradient clipping), so
//! the new decoder and segmentation heads adapt to it first; afterwards the encoder trains at a
//! tenth of the learning rate. As an `nnUNetTrainer` subclass, this overrides the optimiser's
//! parameter groups per epoch.
//!
//! ```sh
//! cargo build --release -p finetune_trainer
//! nnunet --plugin target/release/libfinetune_trainer.so train 4 3d_fullres 0 \
//!     -tr nnUNetTrainerFinetune -pretrained_weights PRETRAINED/checkpoint_final.safetensors
//! ```

use nnunet_api::training::{HookContext, ParameterGroup};
use nnunet_api::{Result, Trainer, TrainerSettings};

/// Epochs with the encoder frozen.
const FROZEN_EPOCHS: usize = 2;
/// The encoder's learning rate after the frozen epochs, as a factor of the schedule's.
const ENCODER_LR_FACTOR: f64 = 0.1;
/// Parameter path prefix of the plans' networks' encoder.
const ENCODER: &str = "encoder.";

/// `nnUNetTrainer` freezing the encoder, then training it more slowly.
struct FinetuneTrainer;

impl Trainer for FinetuneTrainer {
    fn parameter_groups(&self, _settings: &TrainerSettings, epoch: usize) -> Vec<ParameterGroup> {
        if epoch < FROZEN_EPOCHS {
            vec![ParameterGroup::frozen(ENCODER)]
        } else {
            vec![ParameterGroup::scaled(ENCODER, ENCODER_LR_FACTOR)]
        }
    }

    fn on_epoch_start(&mut self, ctx: &mut HookContext<'_>) -> Result<()> {
        if ctx.epoch == FROZEN_EPOCHS {
            ctx.log(format!(
                "Unfreezing the encoder at {ENCODER_LR_FACTOR} times the learning rate"
            ));
        }
        Ok(())
    }
}

// What the plugin registers with the host, and the entry point that does it.
nnunet_api::export_plugin! {
    trainer "nnUNetTrainerFinetune",
        "nnUNetTrainer for fine-tuning: encoder frozen for 2 epochs, then at 0.1x the learning rate (example plugin)",
        || Box::new(FinetuneTrainer);
}
