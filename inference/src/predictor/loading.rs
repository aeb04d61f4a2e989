//! Loading a trained model folder into a [`Predictor`]: its JSON files, the networks of the
//! chosen folds and the sliding-window settings.

use std::path::Path;

use burn::tensor::Device;

use super::folds::{checkpoint_file_name, select_folds};
use super::pipeline::CasePipeline;
use super::{Predictor, PredictorSettings};
use crate::cascade::network_input_channels;
use crate::export::LabelHandling;
use crate::model::network_from_checkpoint;
use crate::sliding_window::SlidingWindowSettings;
use nnunet_core::error::{Error, Result};
use nnunet_core::network::{Network, NetworkSpec};
use nnunet_core::registry::Registries;
use nnunet_dataset::DatasetJson;
use nnunet_preprocessing::plans::{Configuration, Plans};
use nnunet_training::NormKind;
use nnunet_training::checkpoint::{Checkpoint, CheckpointMeta};
use nnunet_training::splits::Fold;

impl Predictor {
    /// Loads the model in `model_folder` (`plans.json`, `dataset.json`) with the checkpoint
    /// `checkpoint_name` of each of `folds` (all folds that have it when `folds` is empty), its
    /// networks on `device`. A fold without the checkpoint is an error naming it and the folds
    /// that have one. A cascade stage (`3d_cascade_fullres`) predicts cases that come with the
    /// previous stage's prediction ([`CaseInput::previous_stage`](super::CaseInput::previous_stage)).
    pub fn from_model_folder(
        registries: &Registries,
        model_folder: &Path,
        folds: &[Fold],
        checkpoint_name: &str,
        device: &Device,
        settings: &PredictorSettings,
    ) -> Result<Self> {
        let (checkpoint_file, plans, dataset_json) =
            read_model_folder(model_folder, checkpoint_name)?;
        let folds = select_folds(model_folder, folds, checkpoint_name, &checkpoint_file)?;
        let labels = LabelHandling::from_labels(&dataset_json.labels)?;
        let model = FoldModel {
            registries,
            plans: &plans,
            dataset_json: &dataset_json,
            labels: &labels,
            device,
        };
        let loaded = model.load_folds(model_folder, &folds, &checkpoint_file)?;
        let configuration = loaded
            .configuration
            .ok_or_else(|| Error::inference("no folds to predict with"))?;
        let mirror_axes = if settings.use_mirroring {
            loaded.mirror_axes.unwrap_or_default()
        } else {
            Vec::new()
        };
        let window = window_settings(&configuration, mirror_axes, settings)?;
        let pipeline =
            CasePipeline::new(registries, &plans, &configuration, &dataset_json, &labels)?;
        Ok(Predictor {
            model_folder: model_folder.to_path_buf(),
            plans,
            configuration,
            dataset_json,
            folds,
            networks: loaded.networks,
            window,
            pipeline,
            device: device.clone(),
        })
    }
}

/// Checks that `model_folder` is a trained model folder and reads its plans and `dataset.json`;
/// returns them with the file name of the checkpoint `checkpoint_name`.
fn read_model_folder(
    model_folder: &Path,
    checkpoint_name: &str,
) -> Result<(String, Plans, DatasetJson)> {
    if !model_folder.is_dir() {
        return Err(Error::inference_file(
            model_folder,
            "no such model folder (a trained model: Trainer__Plans__configuration with \
             plans.json, dataset.json and fold_N folders)",
        ));
    }
    let checkpoint_file = checkpoint_file_name(checkpoint_name)?;
    for name in ["plans.json", "dataset.json"] {
        let file = model_folder.join(name);
        if !file.is_file() {
            return Err(Error::inference_file(
                &file,
                "missing; a trained model folder has the plans.json and dataset.json of its \
                 training",
            ));
        }
    }
    let plans = Plans::from_file(&model_folder.join("plans.json"))?;
    let dataset_json = DatasetJson::from_file(&model_folder.join("dataset.json"))?;
    Ok((checkpoint_file, plans, dataset_json))
}

/// The sliding-window settings of `configuration` with the predictor's `settings`; a step size
/// outside `(0, 1]` is an error.
fn window_settings(
    configuration: &Configuration,
    mirror_axes: Vec<usize>,
    settings: &PredictorSettings,
) -> Result<SlidingWindowSettings> {
    let mut window = SlidingWindowSettings::from_configuration(configuration, mirror_axes)?;
    window.step_size = settings.step_size;
    window.use_gaussian = settings.use_gaussian;
    if let Some(n) = settings.tiles_per_batch {
        window.tiles_per_batch = n;
    }
    if !(window.step_size > 0.0 && window.step_size <= 1.0) {
        return Err(Error::inference(format!(
            "the step size must be in (0, 1], not {}",
            window.step_size
        )));
    }
    Ok(window)
}

/// What the folds' networks are built from: the model's plans, labels and device.
struct FoldModel<'a> {
    /// The architectures.
    registries: &'a Registries,
    /// The model's plans.
    plans: &'a Plans,
    /// The model's `dataset.json`.
    dataset_json: &'a DatasetJson,
    /// How the model's outputs become labels.
    labels: &'a LabelHandling,
    /// Where the networks live.
    device: &'a Device,
}

/// The networks of the chosen folds and what their checkpoints say.
struct LoadedFolds {
    /// The configuration every fold was trained on (`None` without folds).
    configuration: Option<Configuration>,
    /// One network per fold, in fold order.
    networks: Vec<Box<dyn Network>>,
    /// The first fold's `inference_allowed_mirroring_axes`.
    mirror_axes: Option<Vec<usize>>,
}

impl FoldModel<'_> {
    /// Loads the checkpoint `checkpoint_file` of every fold of `folds` into a network; every fold
    /// must have been trained on the same configuration.
    fn load_folds(
        &self,
        model_folder: &Path,
        folds: &[Fold],
        checkpoint_file: &str,
    ) -> Result<LoadedFolds> {
        let mut configuration: Option<Configuration> = None;
        let mut networks = Vec::with_capacity(folds.len());
        let mut mirror_axes: Option<Vec<usize>> = None;
        for fold in folds {
            let path = model_folder.join(fold.folder_name()).join(checkpoint_file);
            let checkpoint = Checkpoint::load(&path)?;
            let meta = &checkpoint.meta;
            let config = match &configuration {
                Some(c) if c.name != meta.configuration => {
                    return Err(Error::inference_file(
                        &path,
                        format!(
                            "was trained on configuration '{}', the other folds on '{}'",
                            meta.configuration, c.name
                        ),
                    ));
                }
                Some(c) => c.clone(),
                None => {
                    let c = self.plans.configuration(&meta.configuration)?;
                    configuration = Some(c.clone());
                    c
                }
            };
            let spec = self.network_spec(&config, meta, &path)?;
            networks.push(network_from_checkpoint(
                self.registries,
                &checkpoint,
                &spec,
                self.device,
                &path,
            )?);
            if mirror_axes.is_none() {
                mirror_axes = Some(meta.inference_allowed_mirroring_axes.clone());
            }
        }
        Ok(LoadedFolds {
            configuration,
            networks,
            mirror_axes,
        })
    }

    /// The network layout of `config` for the checkpoint `path` with `meta`, whose input and
    /// output channels must be those of `dataset.json` and the plans.
    fn network_spec(
        &self,
        config: &Configuration,
        meta: &CheckpointMeta,
        path: &Path,
    ) -> Result<NetworkSpec> {
        let heads = self.labels.num_heads();
        let network_channels = network_input_channels(config, self.dataset_json)?;
        if meta.input_channels != network_channels || meta.output_channels != heads {
            return Err(Error::inference_file(
                path,
                format!(
                    "has {} input and {} output channels, but dataset.json and the plans \
                     need {} and {}",
                    meta.input_channels, meta.output_channels, network_channels, heads
                ),
            ));
        }
        let arch_kwargs = config
            .json
            .get("architecture")
            .and_then(|a| a.get("arch_kwargs"))
            .cloned()
            .ok_or_else(|| {
                Error::inference_file(
                    self.plans.path(),
                    format!(
                        "configuration '{}' has no architecture.arch_kwargs",
                        config.name
                    ),
                )
            })?;
        Ok(NetworkSpec {
            arch_kwargs,
            input_channels: network_channels,
            output_channels: heads,
            deep_supervision: false,
            is_2d: config.is_2d()?,
            batch_norm: meta.settings.norm == NormKind::Batch,
        })
    }
}
