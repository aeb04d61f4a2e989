//! A trained model's network, rebuilt from a checkpoint for inference.

use std::path::Path;

use burn::tensor::Device;

use crate::error::{Error, Result};
use crate::network::{Network, NetworkSpec};
use crate::registry::Registries;
use crate::training::checkpoint::Checkpoint;

/// Builds the network of `checkpoint` (its architecture, looked up in `registries`, with `spec`'s
/// layout) on `device` with deep supervision off, and loads the checkpoint's weights. `path` names
/// the checkpoint in errors.
pub fn network_from_checkpoint(
    registries: &Registries,
    checkpoint: &Checkpoint,
    spec: &NetworkSpec,
    device: &Device,
    path: &Path,
) -> Result<Box<dyn Network>> {
    let mut spec = spec.clone();
    spec.deep_supervision = false;
    let architecture = registries
        .architectures
        .create(&checkpoint.meta.network_class_name)?;
    let mut network = architecture.build(&spec, device)?;
    network
        .import_parameters(&checkpoint.network)
        .map_err(|e| Error::invalid_file(path, e.to_string()))?;
    Ok(network)
}
