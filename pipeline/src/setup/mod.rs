//! Setting up a training run from the preprocessed dataset, its plans and a trainer: what
//! nnU-Net's `nnUNetTrainer.initialize` and `on_train_start` do (network, loss, folds, data
//! loaders, output folder), so that `nnunet train` and the library share one path.

mod build;
mod context;

pub use build::{TrainerParts, load_pretrained, pipeline_context, prepare_run, trainer_parts};
pub use context::{architecture_name, output_channels, run_context};

use std::path::{Path, PathBuf};

use nnunet_core::network::NetworkSpec;
use nnunet_core::paths::TrainedModel;
use nnunet_core::{Error, Result};
use nnunet_dataset::DatasetJson;
use nnunet_preprocessing::plans::{Configuration, Plans};
use nnunet_training::TrainerSettings;
use nnunet_training::run::checkpoint_path;
use nnunet_training::splits::{Fold, Split};

/// Schedule values given on the command line for one run (`--epochs`, …).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScheduleOverrides {
    /// Epochs to train (`--epochs`).
    pub epochs: Option<usize>,
    /// Training iterations per epoch.
    pub iterations_per_epoch: Option<usize>,
    /// Validation iterations per epoch.
    pub val_iterations_per_epoch: Option<usize>,
    /// The initial learning rate (`--initial-lr`).
    pub initial_lr: Option<f64>,
}

impl ScheduleOverrides {
    /// Applies the overrides to `settings`. Training iterations given without validation
    /// iterations scale the validation iterations by the settings' ratio (nnU-Net's 250:50),
    /// rounded, at least 1.
    pub fn apply(&self, settings: &mut TrainerSettings) {
        if let Some(n) = self.epochs {
            settings.num_epochs = n;
        }
        if let Some(n) = self.iterations_per_epoch {
            if self.val_iterations_per_epoch.is_none() {
                settings.num_val_iterations_per_epoch = scaled_validation_iterations(
                    n,
                    settings.num_iterations_per_epoch,
                    settings.num_val_iterations_per_epoch,
                );
            }
            settings.num_iterations_per_epoch = n;
        }
        if let Some(n) = self.val_iterations_per_epoch {
            settings.num_val_iterations_per_epoch = n;
        }
        if let Some(lr) = self.initial_lr {
            settings.initial_lr = lr;
        }
    }

    /// Whether any value is given.
    pub fn any(&self) -> bool {
        *self != ScheduleOverrides::default()
    }

    /// Whether the validation iterations are scaled from the training iterations.
    pub fn scales_validation(&self) -> bool {
        self.iterations_per_epoch.is_some() && self.val_iterations_per_epoch.is_none()
    }
}

/// `iterations` training iterations with validation in the ratio `train:val`: `iterations * val /
/// train`, rounded, at least 1.
pub fn scaled_validation_iterations(iterations: usize, train: usize, val: usize) -> usize {
    let scaled = (iterations as f64 * val as f64 / train.max(1) as f64).round() as usize;
    scaled.max(1)
}

/// What to train.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// `nnUNet_preprocessed/DatasetXXX_Name`.
    pub preprocessed_folder: PathBuf,
    /// `nnUNet_results/DatasetXXX_Name`.
    pub results_folder: PathBuf,
    /// The configuration to train (`3d_fullres`, …).
    pub configuration: String,
    /// The fold to train.
    pub fold: Fold,
    /// The trainer's registered name (`-tr`).
    pub trainer: String,
    /// The plans identifier (`-p`).
    pub plans_identifier: String,
    /// Schedule values given on the command line.
    pub overrides: ScheduleOverrides,
    /// Continue from `checkpoint_latest` (or `checkpoint_final`/`best` if that is all there is).
    pub continue_training: bool,
    /// Start from another model's weights (`-pretrained_weights`).
    pub pretrained_weights: Option<PathBuf>,
    /// Device to train on (autodiff is switched on here).
    pub device: burn::tensor::Device,
    /// Seed of the network's initialisation and the data streams.
    pub seed: u64,
    /// Data-loading worker threads.
    pub num_workers: usize,
    /// Report progress (a bar on a terminal, one line per epoch otherwise).
    pub show_progress: bool,
    /// Also write `checkpoint_latest` after this much training time (`--checkpoint-minutes`).
    pub checkpoint_interval: Option<std::time::Duration>,
}

/// The fold's output folder: `results/Trainer__Plans__config/fold_N`.
pub fn fold_folder(
    results_folder: &Path,
    trainer: &str,
    plans: &str,
    configuration: &str,
    fold: Fold,
) -> PathBuf {
    results_folder
        .join(TrainedModel::new(trainer, plans, configuration).identifier())
        .join(fold.folder_name())
}

/// Everything about the dataset and configuration a run, a validation or a prediction needs.
pub struct RunContext {
    /// The plans.
    pub plans: Plans,
    /// The requested configuration of the plans.
    pub configuration: Configuration,
    /// The preprocessed dataset's `dataset.json`.
    pub dataset_json: DatasetJson,
    /// The configuration's preprocessed data folder.
    pub data_folder: PathBuf,
    /// The fold's training and validation cases.
    pub split: Split,
    /// The trainer's settings, with the request's overrides.
    pub settings: TrainerSettings,
    /// The fold's output folder ([`fold_folder`]).
    pub output_folder: PathBuf,
    /// What the network is built from (architecture arguments, channels, options).
    pub spec: NetworkSpec,
    /// The network's registered architecture name ([`architecture_name`]).
    pub network_class_name: String,
    /// Whether the labels are region-based.
    pub regions: bool,
    /// The dataset's ignore label.
    pub ignore_label: Option<i64>,
    /// Spatial axes mirrored at inference.
    pub inference_mirror_axes: Vec<usize>,
    /// Cascade stage: the labels fed to the network as one-hot channels after the image.
    pub cascade_labels: Option<Vec<i16>>,
    /// Cascade stage: the previous stage's segmentations on this stage's grid (`<case>.npy`).
    pub previous_stage_folder: Option<PathBuf>,
}

/// Deep-supervision loss weights for `n` outputs: `1/2^i`, the last set to 0, normalised.
pub fn deep_supervision_weights(n: usize) -> Vec<f64> {
    if n <= 1 {
        return vec![1.0; n];
    }
    let mut w: Vec<f64> = (0..n).map(|i| 1.0 / 2f64.powi(i as i32)).collect();
    w[n - 1] = 0.0;
    let sum: f64 = w.iter().sum();
    w.iter().map(|v| v / sum).collect()
}

/// The checkpoint a continued run starts from: `checkpoint_latest`, else `checkpoint_final`,
/// else `checkpoint_best`.
pub fn existing_checkpoint(fold_folder: &Path) -> Option<PathBuf> {
    ["checkpoint_latest", "checkpoint_final", "checkpoint_best"]
        .iter()
        .map(|w| checkpoint_path(fold_folder, w))
        .find(|p| p.is_file())
}

/// A new run in a fold folder that holds a run already is refused, so that nothing trained is
/// overwritten silently: the error says what is there and how to go on.
fn refuse_existing_run(request: &RunRequest, fold_folder: &Path) -> Result<()> {
    let Some(found) = existing_checkpoint(fold_folder) else {
        return Ok(());
    };
    let finished = checkpoint_path(fold_folder, "checkpoint_final").is_file();
    let what = if finished {
        format!(
            "fold {} is trained already ({} exists)",
            request.fold,
            checkpoint_path(fold_folder, "checkpoint_final").display()
        )
    } else {
        format!(
            "fold {} has an unfinished run ({} exists)",
            request.fold,
            found.display()
        )
    };
    Err(Error::training(format!(
        "{what}. Pass --c to continue it{}, --val to validate it again, or train into a new \
         output (another -tr, -p or nnUNet_results, or move {} away); nothing was changed",
        if finished {
            " (a finished run is only validated again)"
        } else {
            " from its last checkpoint"
        },
        fold_folder.display()
    )))
}

#[cfg(test)]
mod tests;
