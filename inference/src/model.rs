//! A trained model's network, rebuilt from a checkpoint for inference.

use std::path::Path;

use burn::tensor::Device;

use nnunet_core::error::{Error, Result};
use nnunet_core::network::{Network, NetworkSpec};
use nnunet_core::registry::Registries;
use nnunet_training::NetworkContext;
use nnunet_training::checkpoint::Checkpoint;

/// Builds the network of `checkpoint` on `device` with deep supervision off, and loads the
/// checkpoint's weights. The network comes from the checkpoint's trainer
/// ([`Trainer::build_network`](nnunet_core::Trainer::build_network), so a plugin's own network is
/// rebuilt), or from its architecture in `registries` with `spec`'s layout when the trainer is
/// not registered (models imported from nnU-Net). `path` names the checkpoint in errors.
pub fn network_from_checkpoint(
    registries: &Registries,
    checkpoint: &Checkpoint,
    spec: &NetworkSpec,
    device: &Device,
    path: &Path,
) -> Result<Box<dyn Network>> {
    let mut spec = spec.clone();
    spec.deep_supervision = false;
    let meta = &checkpoint.meta;
    let ctx = NetworkContext {
        registries,
        settings: &meta.settings,
        architecture: &meta.network_class_name,
        spec: &spec,
        device,
    };
    let registered = registries.trainers.contains(&meta.trainer_name);
    let mut network = if registered {
        let trainer = registries.trainers.create(&meta.trainer_name)?;
        trainer.build_network(&ctx)?
    } else {
        ctx.plans_network()?
    };
    network.set_deep_supervision(false);
    network
        .import_parameters(&checkpoint.network)
        .map_err(|e| {
            let hint = if registered {
                String::new()
            } else {
                format!(
                    " (trainer '{}' is not registered: if it came from a plugin, load the plugin \
                 with --plugin)",
                    meta.trainer_name
                )
            };
            Error::inference_file(path, format!("{e}{hint}"))
        })?;
    Ok(network)
}
