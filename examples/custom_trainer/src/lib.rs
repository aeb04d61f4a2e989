//! An nnunet-rs plugin as a researcher writes it: a trainer variant of nnU-Net's default trainer
//! with a lower learning rate and fewer epochs. Every method of [`Trainer`] not written here keeps
//! nnU-Net's default, as an `nnUNetTrainer` subclass inherits it.
//!
//! Build it with `cargo build --release -p custom_trainer`, then use it:
//!
//! ```text
//! nnunet --plugin target/release/libcustom_trainer.so list trainers
//! nnunet --plugin target/release/libcustom_trainer.so train 4 3d_fullres 0 -tr MyTrainer_lr3e-3_300epochs
//! ```

use nnunet_api::{Trainer, TrainerSettings};

/// `nnUNetTrainer` with `initial_lr = 3e-3` and `num_epochs = 300`.
struct MyTrainer;

impl Trainer for MyTrainer {
    fn configure(&self, settings: &mut TrainerSettings) {
        settings.initial_lr = 3e-3;
        settings.num_epochs = 300;
    }
}

// What the plugin registers with the host, and the entry point that does it.
nnunet_api::export_plugin! {
    trainer "MyTrainer_lr3e-3_300epochs",
        "nnUNetTrainer with initial learning rate 3e-3 and 300 epochs (example plugin)",
        || Box::new(MyTrainer);
}
