//! Checkpoints: `checkpoint_{best,latest,final}.safetensors`.
//!
//! One safetensors file (a safe format: a JSON header and raw little-endian arrays, no code runs
//! on load) holds the network weights under `network.<parameter path>` (the PyTorch reference's
//! `state_dict` keys), the optimiser state under `optimizer.<parameter path>/<buffer>`, and
//! everything else nnU-Net's `.pth` checkpoint holds (epoch, logs, best EMA, trainer, settings,
//! mirroring axes, the data streams' positions) as JSON in the header's `__metadata__`.
//! Files are written to a temporary name and renamed, so a kill at any moment leaves the previous
//! checkpoint intact.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::loss_scale::LossScaler;
use crate::{EpochRecord, TrainerSettings};
use nnunet_core::error::{Error, Result};
use nnunet_core::network::NamedTensor;

/// Version of the checkpoint layout.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// What a checkpoint says besides its tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Version of the layout ([`CHECKPOINT_FORMAT`]).
    pub format: u32,
    /// The trainer's registered name.
    pub trainer_name: String,
    /// The plans the run trains with (`nnUNetPlans`).
    pub plans_identifier: String,
    /// The configuration (`3d_fullres`, …).
    pub configuration: String,
    /// The fold, as its folder names it (`0`, `all`).
    pub fold: String,
    /// Epochs completed (nnU-Net's stored `current_epoch`).
    pub current_epoch: usize,
    /// Optimiser steps taken.
    pub optimizer_steps: u64,
    /// The best EMA pseudo Dice so far.
    pub best_ema: Option<f64>,
    /// One record per completed epoch.
    pub logging: Vec<EpochRecord>,
    /// The settings the run trains with (after command-line overrides).
    pub settings: TrainerSettings,
    /// Spatial axes (0-based, of the patch) mirrored at inference.
    pub inference_allowed_mirroring_axes: Vec<usize>,
    /// Seed of the run's data streams and positions in them, for an exact continuation.
    pub seed: u64,
    /// Training batches drawn so far.
    pub train_batches_drawn: u64,
    /// Validation batches drawn so far.
    pub val_batches_drawn: u64,
    /// Network class and channel counts, to rebuild the network for inference.
    pub network_class_name: String,
    /// Input channels of the network.
    pub input_channels: usize,
    /// Output channels of the network (classes or regions).
    pub output_channels: usize,
    /// The fp16 loss scaler of a run in GPU mixed precision (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scaler: Option<LossScaler>,
}

/// A loaded or to-be-written checkpoint.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Everything besides the tensors.
    pub meta: CheckpointMeta,
    /// The network's parameters.
    pub network: Vec<NamedTensor>,
    /// The optimiser's state buffers.
    pub optimizer: Vec<NamedTensor>,
}

const META_KEY: &str = "nnunet_rs";

impl Checkpoint {
    /// Writes the checkpoint atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let meta = serde_json::to_string(&self.meta)
            .map_err(|e| Error::training(format!("cannot encode checkpoint metadata: {e}")))?;
        let mut bytes: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
        for (prefix, tensors) in [("network.", &self.network), ("optimizer.", &self.optimizer)] {
            for t in tensors {
                let raw: Vec<u8> = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
                bytes.push((format!("{prefix}{}", t.name), raw, t.shape.clone()));
            }
        }
        let views = bytes
            .iter()
            .map(|(name, raw, shape)| {
                TensorView::new(Dtype::F32, shape.clone(), raw)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| Error::training(format!("tensor {name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let header = HashMap::from([(META_KEY.to_string(), meta)]);
        let data = safetensors::serialize(views, Some(header))
            .map_err(|e| Error::training_file(path, format!("cannot encode checkpoint: {e}")))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        nnunet_core::io::write_atomically(path, |out| out.write_all(&data))
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |reason: String| Error::training_file(path, reason);
        let (_, metadata) = SafeTensors::read_metadata(&data)
            .map_err(|e| bad(format!("not a safetensors checkpoint: {e}")))?;
        let meta_text = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| bad("not an nnunet-rs checkpoint (no nnunet_rs metadata)".into()))?;
        let meta: CheckpointMeta = serde_json::from_str(meta_text)
            .map_err(|e| bad(format!("unreadable checkpoint metadata: {e}")))?;
        if meta.format != CHECKPOINT_FORMAT {
            return Err(bad(format!(
                "checkpoint format {} is not supported (this build reads {CHECKPOINT_FORMAT})",
                meta.format
            )));
        }
        let tensors = SafeTensors::deserialize(&data)
            .map_err(|e| bad(format!("not a safetensors checkpoint: {e}")))?;
        let mut network = Vec::new();
        let mut optimizer = Vec::new();
        // Keep the header's order for the network (the definition order).
        let mut entries = tensors.tensors();
        let order: HashMap<String, usize> = metadata
            .offset_keys()
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, i))
            .collect();
        entries.sort_by_key(|(name, _)| order.get(name).copied().unwrap_or(usize::MAX));
        for (name, view) in entries {
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!("tensor {name} is {:?}, not F32", view.dtype())));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let tensor = |n: &str| NamedTensor {
                name: n.to_string(),
                shape: view.shape().to_vec(),
                values,
            };
            if let Some(n) = name.strip_prefix("network.") {
                network.push(tensor(n));
            } else if let Some(n) = name.strip_prefix("optimizer.") {
                optimizer.push(tensor(n));
            } else {
                return Err(bad(format!("unexpected tensor {name}")));
            }
        }
        Ok(Self {
            meta,
            network,
            optimizer,
        })
    }
}
