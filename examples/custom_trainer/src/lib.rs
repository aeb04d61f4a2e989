//! An nnunet-rs plugin as a researcher writes it: a trainer variant derived from nnU-Net's
//! default trainer with a lower learning rate and fewer epochs.
//!
//! Build it with `cargo build --release -p custom_trainer`, then use it:
//!
//! ```text
//! nnunet --plugin target/release/libcustom_trainer.so list trainers
//! nnunet --plugin target/release/libcustom_trainer.so train 4 3d_fullres 0 -tr MyTrainer_lr3e-3_300epochs
//! ```

use nnunet_core::plugin::PluginRegistrar;
use nnunet_core::training::TrainerVariant;

fn register(registrar: &mut PluginRegistrar<'_>) -> nnunet_core::Result<()> {
    registrar.trainer(
        "MyTrainer_lr3e-3_300epochs",
        "nnUNetTrainer with initial learning rate 3e-3 and 300 epochs (example plugin)",
        || {
            Box::new(TrainerVariant::new(
                nnunet_trainers::nnunet_trainer(),
                |s| {
                    s.initial_lr = 3e-3;
                    s.num_epochs = 300;
                },
            ))
        },
    )
}

nnunet_core::export_plugin!(register);
