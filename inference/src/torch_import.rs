//! Import of a model trained with nnU-Net v2 (PyTorch): a folder
//! `Trainer__Plans__configuration` with `plans.json`, `dataset.json`,
//! `dataset_fingerprint.json` and `fold_N/checkpoint_{final,best}.pth` becomes an nnunet-rs model
//! folder with the same JSON files and `fold_N/checkpoint_{final,best}.safetensors`.
//!
//! A `.pth` file is a ZIP archive holding a pickle (Python's object serialisation) and the raw
//! tensor storages. Loading a pickle with Python runs whatever functions it names; here it is
//! parsed by `pytorch-reader`, which runs nothing, and in addition every object the pickle builds
//! must be one an nnU-Net checkpoint holds (containers, numbers, strings, tensors, numpy scalars,
//! a `torch.device`): anything else, such as a call of `os.system`, refuses the file.
//!
//! The network weights are `network_weights` (a PyTorch `state_dict`). Keys that torch lists twice
//! (the same tensor under a second path, as `decoder.encoder.*` and `*.all_modules.*` of
//! dynamic_network_architectures) and batch-norm step counters are dropped: a key that is not a
//! parameter of the network built from the plans is accepted only if it holds exactly the values
//! of a parameter of the same shape. The network is then built and loaded, so that an import that
//! succeeds is one that predicts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use pytorch_reader::{DType, PickleValue, PytorchReader};

use crate::export::LabelHandling;
use crate::model::network_from_checkpoint;
use nnunet_core::error::{Error, Result};
use nnunet_core::network::{NamedTensor, NetworkSpec};
use nnunet_core::registry::Registries;
use nnunet_dataset::DatasetJson;
use nnunet_preprocessing::plans::Plans;
use nnunet_training::checkpoint::{CHECKPOINT_FORMAT, Checkpoint, CheckpointMeta};
use nnunet_training::{NormKind, TrainerSettings, settings_of};

/// The checkpoints an nnU-Net v2 fold folder may hold, in the order they are imported.
pub const TORCH_CHECKPOINT_NAMES: [&str; 3] = [
    "checkpoint_final.pth",
    "checkpoint_best.pth",
    "checkpoint_latest.pth",
];

/// JSON files of a model folder that are copied as they are.
const MODEL_JSON_FILES: [&str; 3] = ["plans.json", "dataset.json", "dataset_fingerprint.json"];

/// Python types an nnU-Net checkpoint's pickle may build besides plain containers and scalars.
const ALLOWED_PYTHON_TYPES: [&str; 7] = [
    "torch.Tensor",
    "torch.TypedStorage",
    "torch.UntypedStorage",
    "torch.device",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.dtype",
];

/// What an nnU-Net v2 `.pth` checkpoint says, read without running code.
#[derive(Clone, Debug)]
pub struct TorchCheckpoint {
    /// The trainer class (`trainer_name`).
    pub trainer_name: String,
    /// `init_args.configuration`.
    pub configuration: String,
    /// `init_args.fold` (a number or `all`).
    pub fold: String,
    /// Epochs completed (`current_epoch`).
    pub current_epoch: usize,
    /// `inference_allowed_mirroring_axes` (`None` when absent or `None`).
    pub inference_allowed_mirroring_axes: Option<Vec<usize>>,
    /// `_best_ema`, when it is a plain number.
    pub best_ema: Option<f64>,
    /// `network_weights`, every key, in name order.
    pub network_weights: Vec<NamedTensor>,
}

/// What [`import_nnunetv2_model`] did.
#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    /// The safetensors checkpoints written.
    pub checkpoints: Vec<PathBuf>,
    /// The JSON files copied.
    pub json_files: Vec<PathBuf>,
    /// Keys of the torch `state_dict`s dropped as aliases of other keys (over all checkpoints).
    pub dropped_aliases: usize,
}

/// Whether `path` is a model folder written by nnU-Net v2: `plans.json`, `dataset.json` and at
/// least one `fold_*/checkpoint_*.pth`.
pub fn is_nnunetv2_model_folder(path: &Path) -> bool {
    if !path.join("plans.json").is_file() || !path.join("dataset.json").is_file() {
        return false;
    }
    !torch_checkpoints(path).unwrap_or_default().is_empty()
}

/// The `.pth` checkpoints of a model folder: `(fold folder name, file name, path)`, folds in
/// name order.
fn torch_checkpoints(folder: &Path) -> Result<Vec<(String, String, PathBuf)>> {
    let mut fold_folders = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(|e| Error::io(folder, e))? {
        let entry = entry.map_err(|e| Error::io(folder, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("fold_") && entry.path().is_dir() {
            fold_folders.push(name);
        }
    }
    fold_folders.sort();
    let mut found = Vec::new();
    for fold in fold_folders {
        for file in TORCH_CHECKPOINT_NAMES {
            let path = folder.join(&fold).join(file);
            if path.is_file() {
                found.push((fold.clone(), file.to_string(), path));
            }
        }
    }
    Ok(found)
}

/// Every Python type in `value` that is not a container, a scalar or an allowed type, with the
/// key path where it is.
fn disallowed_objects(value: &PickleValue, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        PickleValue::List(items) => {
            for (i, item) in items.iter().enumerate() {
                disallowed_objects(item, &format!("{at}[{i}]"), out);
            }
        }
        PickleValue::Dict(map) => {
            for (key, item) in map {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                disallowed_objects(item, &path, out);
            }
        }
        PickleValue::Unsupported(name) if !ALLOWED_PYTHON_TYPES.contains(&name.as_str()) => {
            out.push((at.to_string(), name.clone()));
        }
        _ => {}
    }
}

/// A non-negative pickled integer.
fn as_usize(value: &PickleValue) -> Option<usize> {
    match value {
        PickleValue::Int(i) if *i >= 0 => Some(*i as usize),
        _ => None,
    }
}

/// Reads an nnU-Net v2 checkpoint (`torch.save` of nnUNetTrainer's checkpoint dictionary)
/// without running any code from it. A pickle that builds any object other than containers,
/// numbers, strings, tensors, numpy scalars or a torch device is refused.
pub fn read_torch_checkpoint(path: &Path) -> Result<TorchCheckpoint> {
    let bad = |reason: String| Error::inference_file(path, reason);
    let root = PytorchReader::read_pickle_data(path, None)
        .map_err(|e| bad(format!("not a readable PyTorch checkpoint: {e}")))?;
    refuse_disallowed_objects(&root, path)?;
    let PickleValue::Dict(root) = root else {
        return Err(bad(
            "is not an nnU-Net checkpoint: its pickle is not a dictionary".into(),
        ));
    };
    let header = read_checkpoint_header(&root, path)?;
    let network_weights = read_network_weights(path)?;
    Ok(TorchCheckpoint {
        trainer_name: header.trainer_name,
        configuration: header.configuration,
        fold: header.fold,
        current_epoch: header.current_epoch,
        inference_allowed_mirroring_axes: header.inference_allowed_mirroring_axes,
        best_ema: header.best_ema,
        network_weights,
    })
}

/// Refuses a pickle that builds any object other than containers, scalars and the allowed types,
/// naming the first one and where it is.
fn refuse_disallowed_objects(root: &PickleValue, path: &Path) -> Result<()> {
    let bad = |reason: String| Error::inference_file(path, reason);
    let mut disallowed = Vec::new();
    disallowed_objects(root, "", &mut disallowed);
    if let Some((at, name)) = disallowed.first() {
        return Err(bad(format!(
            "its pickle builds a Python object of type {name} (at '{at}'{}); an nnU-Net \
             checkpoint holds only containers, numbers, strings and tensors, so this file is \
             refused rather than trusted",
            if disallowed.len() > 1 {
                format!(", and {} more such objects", disallowed.len() - 1)
            } else {
                String::new()
            }
        )));
    }
    Ok(())
}

/// The entries of a checkpoint's dictionary besides the network weights.
struct CheckpointHeader {
    /// `trainer_name`.
    trainer_name: String,
    /// `init_args.configuration`.
    configuration: String,
    /// `init_args.fold`.
    fold: String,
    /// `current_epoch`.
    current_epoch: usize,
    /// `inference_allowed_mirroring_axes`, if given.
    inference_allowed_mirroring_axes: Option<Vec<usize>>,
    /// `_best_ema`, if a number.
    best_ema: Option<f64>,
}

/// Reads the trainer, configuration, fold, epoch, mirroring axes and best EMA of a checkpoint's
/// dictionary `root`.
fn read_checkpoint_header(
    root: &HashMap<String, PickleValue>,
    path: &Path,
) -> Result<CheckpointHeader> {
    let bad = |reason: String| Error::inference_file(path, reason);
    let get = |key: &str| {
        root.get(key).ok_or_else(|| {
            bad(format!(
                "is not an nnU-Net v2 checkpoint: it has no '{key}' entry"
            ))
        })
    };
    let trainer_name = match get("trainer_name")? {
        PickleValue::String(s) => s.clone(),
        _ => return Err(bad("'trainer_name' is not a string".into())),
    };
    let current_epoch = as_usize(get("current_epoch")?)
        .ok_or_else(|| bad("'current_epoch' is not a non-negative integer".into()))?;
    let PickleValue::Dict(init_args) = get("init_args")? else {
        return Err(bad("'init_args' is not a dictionary".into()));
    };
    let configuration = match init_args.get("configuration") {
        Some(PickleValue::String(s)) => s.clone(),
        _ => {
            return Err(bad(
                "'init_args' has no string 'configuration' (the configuration trained)".into(),
            ));
        }
    };
    let fold = match init_args.get("fold") {
        Some(PickleValue::Int(i)) => i.to_string(),
        Some(PickleValue::String(s)) => s.clone(),
        _ => return Err(bad("'init_args' has no 'fold'".into())),
    };
    let inference_allowed_mirroring_axes = match root.get("inference_allowed_mirroring_axes") {
        None | Some(PickleValue::None) => None,
        Some(PickleValue::List(axes)) => Some(
            axes.iter()
                .map(|a| {
                    as_usize(a).ok_or_else(|| {
                        bad("'inference_allowed_mirroring_axes' holds a non-integer".into())
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(_) => {
            return Err(bad(
                "'inference_allowed_mirroring_axes' is not a tuple of axes".into(),
            ));
        }
    };
    let best_ema = match root.get("_best_ema") {
        Some(PickleValue::Float(f)) => Some(*f),
        _ => None,
    };
    Ok(CheckpointHeader {
        trainer_name,
        configuration,
        fold,
        current_epoch,
        inference_allowed_mirroring_axes,
        best_ema,
    })
}

/// Reads `network_weights` as float32 tensors in name order, skipping batch-norm step counters.
fn read_network_weights(path: &Path) -> Result<Vec<NamedTensor>> {
    let bad = |reason: String| Error::inference_file(path, reason);
    let reader = PytorchReader::with_top_level_key(path, "network_weights")
        .map_err(|e| bad(format!("cannot read the network weights: {e}")))?;
    let mut names: Vec<&String> = reader.tensors().keys().collect();
    names.sort();
    let mut network_weights = Vec::with_capacity(names.len());
    for name in names {
        let tensor = &reader.tensors()[name];
        let bytes = tensor
            .read()
            .map_err(|e| bad(format!("cannot read tensor {name}: {e}")))?;
        let values: Vec<f32> = match tensor.dtype() {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F64 => bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            DType::I64 if name.ends_with("num_batches_tracked") => continue,
            other => {
                return Err(bad(format!(
                    "network weight {name} is {other:?}; only float32/float64 weights are \
                     supported"
                )));
            }
        };
        if values.len() != tensor.num_elements() {
            return Err(bad(format!(
                "network weight {name} has {} values for shape {:?}",
                values.len(),
                tensor.shape()
            )));
        }
        network_weights.push(NamedTensor {
            name: name.clone(),
            shape: tensor.shape().to_vec(),
            values,
        });
    }
    if network_weights.is_empty() {
        return Err(bad("'network_weights' holds no tensors".into()));
    }
    Ok(network_weights)
}

/// Keeps the weights named like a parameter of the network (in the network's order) and checks
/// that every other weight is an alias (equal to a kept weight) or a batch-norm counter. Returns
/// the kept weights and the number dropped.
fn match_weights(
    weights: Vec<NamedTensor>,
    parameters: &[(String, Vec<usize>)],
    path: &Path,
) -> Result<(Vec<NamedTensor>, usize)> {
    let mut by_name: HashMap<String, NamedTensor> =
        weights.into_iter().map(|t| (t.name.clone(), t)).collect();
    let mut kept = Vec::with_capacity(parameters.len());
    let mut missing = Vec::new();
    for (name, shape) in parameters {
        match by_name.remove(name) {
            Some(t) if &t.shape == shape => kept.push(t),
            Some(t) => {
                return Err(Error::inference_file(
                    path,
                    format!(
                        "network weight {name} has shape {:?}, but the network built from \
                         plans.json needs {shape:?}",
                        t.shape
                    ),
                ));
            }
            None => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(Error::inference_file(
            path,
            format!(
                "the network built from plans.json has {} parameter(s) that the checkpoint lacks, \
                 first {}",
                missing.len(),
                missing[0]
            ),
        ));
    }
    let mut leftover: Vec<NamedTensor> = by_name.into_values().collect();
    leftover.sort_by(|a, b| a.name.cmp(&b.name));
    let dropped = leftover.len();
    for extra in leftover {
        let is_alias = kept
            .iter()
            .any(|k| k.shape == extra.shape && k.values == extra.values);
        if !is_alias {
            return Err(Error::inference_file(
                path,
                format!(
                    "network weight {} (shape {:?}) has no place in the network built from \
                     plans.json and is not a second name of another weight",
                    extra.name, extra.shape
                ),
            ));
        }
    }
    Ok((kept, dropped))
}

/// Network class and layout of `configuration` in `plans`.
fn network_spec(
    plans: &Plans,
    configuration: &str,
    dataset_json: &DatasetJson,
    settings: &TrainerSettings,
) -> Result<(String, NetworkSpec)> {
    let config = plans.configuration(configuration)?;
    let architecture = config.json.get("architecture").ok_or_else(|| {
        Error::inference_file(
            plans.path(),
            format!("configuration '{configuration}' has no 'architecture'"),
        )
    })?;
    let class = architecture
        .get("network_class_name")
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            Error::inference_file(
                plans.path(),
                format!("configuration '{configuration}' has no architecture.network_class_name"),
            )
        })?;
    let arch_kwargs = architecture.get("arch_kwargs").cloned().ok_or_else(|| {
        Error::inference_file(
            plans.path(),
            format!("configuration '{configuration}' has no architecture.arch_kwargs"),
        )
    })?;
    let labels = LabelHandling::from_labels(&dataset_json.labels)?;
    let spec = NetworkSpec {
        arch_kwargs,
        input_channels: crate::cascade::network_input_channels(&config, dataset_json)?,
        output_channels: labels.num_heads(),
        deep_supervision: false,
        is_2d: config.is_2d()?,
        batch_norm: settings.norm == NormKind::Batch,
    };
    Ok((class.rsplit('.').next().unwrap_or(class).to_string(), spec))
}

/// Imports the nnU-Net v2 model folder `src` into the nnunet-rs model folder `dst` (created;
/// existing files in it are replaced): copies `plans.json`, `dataset.json` and
/// `dataset_fingerprint.json` (if present), and converts every `fold_*/checkpoint_*.pth` into
/// `fold_*/checkpoint_*.safetensors`, after checking that its weights load into the network the
/// plans describe (architectures from `registries`). Nothing is written before every checkpoint
/// has been read and checked.
pub fn import_nnunetv2_model(
    registries: &Registries,
    src: &Path,
    dst: &Path,
) -> Result<ImportReport> {
    for name in ["plans.json", "dataset.json"] {
        let file = src.join(name);
        if !file.is_file() {
            return Err(Error::inference_file(
                &file,
                "missing; an nnU-Net v2 model folder (Trainer__Plans__configuration) holds the \
                 plans.json and dataset.json of its training",
            ));
        }
    }
    let plans = Plans::from_file(&src.join("plans.json"))?;
    let dataset_json = DatasetJson::from_file(&src.join("dataset.json"))?;
    let checkpoints = torch_checkpoints(src)?;
    if checkpoints.is_empty() {
        return Err(Error::inference_file(
            src,
            "has no fold_N/checkpoint_final.pth (or checkpoint_best.pth): not a trained nnU-Net \
             v2 model folder",
        ));
    }
    let plans_identifier = plans
        .json()
        .get("plans_name")
        .and_then(|v| v.as_str())
        .unwrap_or("nnUNetPlans")
        .to_string();
    let device = Device::flex();
    let mut converted: Vec<(PathBuf, Checkpoint)> = Vec::new();
    let mut report = ImportReport::default();
    for (fold_folder, file, path) in &checkpoints {
        let (checkpoint, dropped) = convert_checkpoint(
            registries,
            &plans,
            &plans_identifier,
            &dataset_json,
            &device,
            path,
        )?;
        report.dropped_aliases += dropped;
        let stem = file.trim_end_matches(".pth");
        converted.push((
            dst.join(fold_folder).join(format!("{stem}.safetensors")),
            checkpoint,
        ));
    }

    std::fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    for name in MODEL_JSON_FILES {
        let from = src.join(name);
        if from.is_file() {
            let to = dst.join(name);
            std::fs::copy(&from, &to).map_err(|e| Error::io(&to, e))?;
            report.json_files.push(to);
        }
    }
    for (target, checkpoint) in converted {
        checkpoint.save(&target)?;
        report.checkpoints.push(target);
    }
    Ok(report)
}

/// Converts the `.pth` checkpoint at `path` of a model with `plans` and `dataset_json`: reads it,
/// keeps the weights of the network the plans describe (see [`match_weights`]) and checks that
/// they load. Returns the checkpoint and the number of aliases dropped.
fn convert_checkpoint(
    registries: &Registries,
    plans: &Plans,
    plans_identifier: &str,
    dataset_json: &DatasetJson,
    device: &Device,
    path: &Path,
) -> Result<(Checkpoint, usize)> {
    let torch = read_torch_checkpoint(path)?;
    let settings = match registries.trainers.create(&torch.trainer_name) {
        Ok(trainer) => settings_of(trainer.as_ref()),
        Err(_) => TrainerSettings::default(),
    };
    let (class, spec) = network_spec(plans, &torch.configuration, dataset_json, &settings)?;
    let architecture = registries.architectures.create(&class).map_err(|e| {
        Error::inference_file(
            path,
            format!("its network class {class} (plans.json) is not available: {e}"),
        )
    })?;
    let shapes = architecture.build(&spec, device)?.parameter_shapes();
    let (network, dropped) = match_weights(torch.network_weights, &shapes, path)?;
    let mirroring = torch
        .inference_allowed_mirroring_axes
        .clone()
        .unwrap_or_else(|| (0..if spec.is_2d { 2 } else { 3 }).collect());
    let meta = CheckpointMeta {
        format: CHECKPOINT_FORMAT,
        trainer_name: torch.trainer_name.clone(),
        plans_identifier: plans_identifier.to_string(),
        configuration: torch.configuration.clone(),
        fold: torch.fold.clone(),
        current_epoch: torch.current_epoch,
        optimizer_steps: (torch.current_epoch * settings.num_iterations_per_epoch) as u64,
        best_ema: torch.best_ema,
        logging: Vec::new(),
        settings,
        inference_allowed_mirroring_axes: mirroring,
        seed: 0,
        train_batches_drawn: 0,
        val_batches_drawn: 0,
        network_class_name: class,
        input_channels: spec.input_channels,
        output_channels: spec.output_channels,
        loss_scaler: None,
    };
    let checkpoint = Checkpoint {
        meta,
        network,
        optimizer: Vec::new(),
    };
    // Build and load: every weight must fit.
    network_from_checkpoint(registries, &checkpoint, &spec, device, path)?;
    Ok((checkpoint, dropped))
}
