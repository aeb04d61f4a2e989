//! Setting up a training run from the preprocessed dataset, its plans and a trainer: what
//! nnU-Net's `nnUNetTrainer.initialize` and `on_train_start` do (network, loss, folds, data
//! loaders, output folder), so that `nnunet train` and the library share one path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nnunet_core::network::{NamedTensor, NetworkSpec};
use nnunet_core::{Augmentation, Error, Loss, Registries, Result};
use nnunet_dataset::DatasetJson;
use nnunet_evaluation::model_selection::TrainedModel;
use nnunet_inference::cascade::{
    cascade_labels, network_input_channels, predicted_next_stage_folder,
};
use nnunet_plugins::augmentations::geometry::configure_rotation_dummy_da_mirroring_and_initial_patch_size;
use nnunet_plugins::augmentations::pipeline::{
    PipelineContext, training_pipeline, validation_pipeline,
};
use nnunet_preprocessing::plans::{Configuration, Plans};
use nnunet_preprocessing::storage::stored_cases;
use nnunet_training::checkpoint::Checkpoint;
use nnunet_training::data_loading::{
    DataLoader, LoaderConfig, Oversampling, PatchSampler, SamplerConfig, deep_supervision_scales,
};
use nnunet_training::optimizer::Optimizer as DefaultOptimizer;
use nnunet_training::run::{RunState, TrainingRun, checkpoint_path};
use nnunet_training::splits::{Fold, Split, fold_cases};
use nnunet_training::{
    Defaults, MirrorAxes, NetworkContext, NormKind, Optimizer, SetupContext, Trainer,
    TrainerSettings, settings_of,
};

/// Schedule values given on the command line for one run (`--epochs`, …).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScheduleOverrides {
    pub epochs: Option<usize>,
    pub iterations_per_epoch: Option<usize>,
    pub val_iterations_per_epoch: Option<usize>,
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
    pub configuration: String,
    pub fold: Fold,
    pub trainer: String,
    pub plans_identifier: String,
    pub overrides: ScheduleOverrides,
    /// Continue from `checkpoint_latest` (or `checkpoint_final`/`best` if that is all there is).
    pub continue_training: bool,
    /// Start from another model's weights (`-pretrained_weights`).
    pub pretrained_weights: Option<PathBuf>,
    /// Device to train on (autodiff is switched on here).
    pub device: burn::tensor::Device,
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
    pub plans: Plans,
    pub configuration: Configuration,
    pub dataset_json: DatasetJson,
    pub data_folder: PathBuf,
    pub split: Split,
    pub settings: TrainerSettings,
    pub output_folder: PathBuf,
    pub spec: NetworkSpec,
    pub network_class_name: String,
    pub regions: bool,
    pub ignore_label: Option<i64>,
    pub inference_mirror_axes: Vec<usize>,
    /// Cascade stage: the labels fed to the network as one-hot channels after the image.
    pub cascade_labels: Option<Vec<i16>>,
    /// Cascade stage: the previous stage's segmentations on this stage's grid (`<case>.npy`).
    pub previous_stage_folder: Option<PathBuf>,
}

fn read_plans(request: &RunRequest) -> Result<(Plans, Configuration, PathBuf)> {
    let plans_file = request
        .preprocessed_folder
        .join(format!("{}.json", request.plans_identifier));
    if !plans_file.is_file() {
        return Err(Error::invalid_file(
            &plans_file,
            "no such plans file; run `nnunet plan-and-preprocess -d ID` first (or pass -p with \
             the plans you made)",
        ));
    }
    let plans = Plans::from_file(&plans_file)?;
    let configuration = plans.configuration(&request.configuration)?;
    let data_folder = request
        .preprocessed_folder
        .join(configuration.data_identifier()?);
    Ok((plans, configuration, data_folder))
}

/// Network class name as registered: the last component of `network_class_name`.
pub fn architecture_name(configuration: &Configuration) -> Result<(String, serde_json::Value)> {
    let architecture = configuration.json.get("architecture").ok_or_else(|| {
        Error::Invalid("the plans configuration has no 'architecture' entry".into())
    })?;
    let class = architecture
        .get("network_class_name")
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            Error::Invalid("the plans configuration has no architecture.network_class_name".into())
        })?;
    let kwargs = architecture.get("arch_kwargs").cloned().ok_or_else(|| {
        Error::Invalid("the plans configuration has no architecture.arch_kwargs".into())
    })?;
    Ok((
        class.rsplit('.').next().unwrap_or(class).to_string(),
        kwargs,
    ))
}

/// Number of network outputs: classes (labels without the ignore label) or regions.
pub fn output_channels(dataset_json: &DatasetJson) -> usize {
    let labels = &dataset_json.labels;
    if labels.is_region_based() {
        labels.regions().len()
    } else {
        labels.all_labels().len()
    }
}

/// Reads plans, dataset and folds and resolves the trainer's settings for `request`.
pub fn run_context(registries: &Registries, request: &RunRequest) -> Result<RunContext> {
    let (plans, configuration, data_folder) = read_plans(request)?;
    if !data_folder.is_dir() {
        return Err(Error::invalid_file(
            &data_folder,
            format!(
                "not preprocessed yet; run `nnunet preprocess -d ID -plans_name {} -c {}`",
                request.plans_identifier, request.configuration
            ),
        ));
    }
    let dataset_json = DatasetJson::from_file(&request.preprocessed_folder.join("dataset.json"))?;
    let trainer = registries.trainers.create(&request.trainer)?;
    let mut settings = settings_of(trainer.as_ref());
    request.overrides.apply(&mut settings);
    if settings.num_epochs == 0 || settings.num_iterations_per_epoch == 0 {
        return Err(Error::Invalid(
            "the number of epochs and of iterations per epoch must be positive".into(),
        ));
    }
    let cases = stored_cases(&data_folder)?;
    if cases.is_empty() {
        return Err(Error::invalid_file(
            &data_folder,
            "holds no preprocessed cases",
        ));
    }
    let split = fold_cases(
        &request.preprocessed_folder.join("splits_final.json"),
        &cases,
        request.fold,
    )?;
    if split.val.is_empty() {
        return Err(Error::Invalid(format!(
            "fold {} has no validation cases",
            request.fold
        )));
    }
    let output_folder = fold_folder(
        &request.results_folder,
        &request.trainer,
        &request.plans_identifier,
        &request.configuration,
        request.fold,
    );
    let cascade_labels = cascade_labels(&configuration, &dataset_json)?;
    let previous_stage_folder = match configuration.previous_stage() {
        Some(previous) => Some(previous_stage_predictions(request, previous, &split)?),
        None => None,
    };
    let (network_class_name, arch_kwargs) = architecture_name(&configuration)?;
    let labels = &dataset_json.labels;
    let spec = NetworkSpec {
        arch_kwargs,
        input_channels: network_input_channels(&configuration, &dataset_json)?,
        output_channels: output_channels(&dataset_json),
        deep_supervision: settings.enable_deep_supervision,
        is_2d: configuration.is_2d()?,
        batch_norm: settings.norm == NormKind::Batch,
    };
    let geometry = configure_rotation_dummy_da_mirroring_and_initial_patch_size(
        &configuration.patch_size()?,
        &settings.augmentation,
    )?;
    let inference_mirror_axes = match settings.augmentation.mirror_axes {
        MirrorAxes::None => Vec::new(),
        _ => geometry.mirror_axes.clone(),
    };
    Ok(RunContext {
        regions: labels.is_region_based(),
        ignore_label: labels.ignore_label(),
        plans,
        configuration,
        dataset_json,
        data_folder,
        split,
        settings,
        output_folder,
        spec,
        network_class_name,
        inference_mirror_axes,
        cascade_labels,
        previous_stage_folder,
    })
}

/// The previous stage's segmentations for a cascade stage, checked to cover every case of the
/// fold: `Trainer__Plans__<previous>/predicted_next_stage/<configuration>`, written by the final
/// validation of the previous stage's folds.
fn previous_stage_predictions(
    request: &RunRequest,
    previous: &str,
    split: &Split,
) -> Result<PathBuf> {
    let previous_model = request.results_folder.join(
        TrainedModel::new(&request.trainer, &request.plans_identifier, previous).identifier(),
    );
    let folder = predicted_next_stage_folder(&previous_model, &request.configuration);
    let missing: Vec<&String> = split
        .train
        .iter()
        .chain(&split.val)
        .filter(|case| !folder.join(format!("{case}.npy")).is_file())
        .collect();
    if let Some(first) = missing.first() {
        return Err(Error::invalid_file(
            folder.join(format!("{first}.npy")),
            format!(
                "missing ({} of the fold's cases have no prediction of the previous stage): \
                 '{}' is a cascade stage and trains on the cross-validation predictions of \
                 '{previous}'. Train every fold of '{previous}' with the same trainer and plans \
                 first (`nnunet train DATASET {previous} FOLD -tr {} -p {}` for folds 0 to 4); \
                 each fold's final validation writes its cases there",
                missing.len(),
                request.configuration,
                request.trainer,
                request.plans_identifier
            ),
        ));
    }
    Ok(folder)
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
    Err(Error::Invalid(format!(
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

/// Builds the run for `request`; with `continue_training`, restored from its checkpoint with the
/// settings recorded there (changed by the request's overrides, which must then agree with them).
#[expect(
    clippy::print_stderr,
    reason = "a warning for the user, as nnU-Net prints it; the library has no other channel to the terminal"
)]
pub fn prepare_run(
    registries: &Registries,
    request: &RunRequest,
) -> Result<(TrainingRun, RunState)> {
    let mut ctx = run_context(registries, request)?;
    let device = request.device.clone().autodiff();
    device.seed(request.seed);

    let resume = if request.continue_training {
        existing_checkpoint(&ctx.output_folder)
    } else {
        refuse_existing_run(request, &ctx.output_folder)?;
        None
    };
    let checkpoint = match &resume {
        Some(path) => Some(Checkpoint::load(path)?),
        None => None,
    };
    if request.continue_training && checkpoint.is_none() {
        eprintln!(
            "no checkpoint in {} to continue from; starting a new run",
            ctx.output_folder.display()
        );
    }
    if let Some(c) = &checkpoint {
        ctx.settings = c.meta.settings.clone();
        request.overrides.apply(&mut ctx.settings);
    }
    let seed = checkpoint.as_ref().map_or(request.seed, |c| c.meta.seed);

    let trainer = registries.trainers.create(&request.trainer)?;
    let network = trainer.build_network(&NetworkContext {
        registries,
        settings: &ctx.settings,
        architecture: &ctx.network_class_name,
        spec: &ctx.spec,
        device: &device,
    })?;

    let configuration = &ctx.configuration;
    let labels = &ctx.dataset_json.labels;
    let patch_size = configuration.patch_size()?;
    let batch_size = configuration.batch_size()?;
    let geometry = configure_rotation_dummy_da_mirroring_and_initial_patch_size(
        &patch_size,
        &ctx.settings.augmentation,
    )?;
    let to_i16 = |v: i64| i16::try_from(v).ok();
    let pipeline_context = PipelineContext {
        patch_size: patch_size.clone(),
        is_2d: ctx.spec.is_2d,
        geometry: geometry.clone(),
        use_mask_for_norm: configuration.use_mask_for_norm()?,
        cascade_foreground_labels: ctx.cascade_labels.clone(),
        regions: labels.is_region_based().then(|| {
            labels
                .regions()
                .into_iter()
                .map(|r| r.into_iter().filter_map(to_i16).collect())
                .collect()
        }),
        ignore_label: labels.ignore_label().and_then(to_i16),
    };
    let ds_scales = ctx
        .settings
        .enable_deep_supervision
        .then(|| deep_supervision_scales(configuration))
        .transpose()?;
    let sampler = |cases: &[String], initial_patch: Vec<usize>| {
        PatchSampler::new(SamplerConfig {
            folder: ctx.data_folder.clone(),
            cases: cases.to_vec(),
            patch_size: initial_patch,
            final_patch_size: patch_size.clone(),
            oversampling: Oversampling::from_settings(&ctx.settings, batch_size),
            has_ignore_label: labels.ignore_label().is_some(),
            previous_stage_folder: ctx.previous_stage_folder.clone(),
        })
        .map(Arc::new)
    };
    let parts = trainer_parts(
        registries,
        trainer.as_ref(),
        &ctx.settings,
        &pipeline_context,
        ctx.regions,
    )?;
    let workers = request.num_workers.max(1);
    let loader_config =
        |seed: u64, augmentations: Vec<Box<dyn nnunet_core::Augmentation>>| LoaderConfig {
            batch_size,
            num_workers: workers,
            queue_length: (2 * workers).max(4),
            seed,
            deep_supervision_scales: ds_scales.clone(),
            augmentations: augmentations.into(),
            context: pipeline_context.augmentation_context(),
        };
    let (train_start, val_start) = checkpoint.as_ref().map_or((0, 0), |c| {
        (c.meta.train_batches_drawn, c.meta.val_batches_drawn)
    });
    let train_loader = DataLoader::starting_at(
        sampler(&ctx.split.train, geometry.initial_patch_size.clone())?,
        loader_config(seed, parts.training_transforms),
        train_start,
    )?;
    let val_loader = DataLoader::starting_at(
        sampler(&ctx.split.val, patch_size.clone())?,
        loader_config(seed.wrapping_add(1), parts.validation_transforms),
        val_start,
    )?;

    let loss_settings = nnunet_core::loss::LossSettings {
        batch_dice: configuration.batch_dice(),
        do_bg: ctx.regions,
        smooth: ctx.settings.dice_smooth,
        ignore_label: ctx.ignore_label,
        topk_percent: ctx.settings.topk_percent,
        label_smoothing: ctx.settings.label_smoothing,
        ..Default::default()
    };
    let n_outputs = ds_scales.as_ref().map_or(1, Vec::len);

    let mut run = TrainingRun {
        output_folder: ctx.output_folder.clone(),
        trainer_name: request.trainer.clone(),
        plans_identifier: request.plans_identifier.clone(),
        configuration: request.configuration.clone(),
        fold: request.fold.to_string(),
        trainer,
        settings: ctx.settings.clone(),
        network,
        network_class_name: ctx.network_class_name.clone(),
        input_channels: ctx.spec.input_channels,
        output_channels: ctx.spec.output_channels,
        loss: parts.loss,
        loss_settings,
        ds_weights: deep_supervision_weights(n_outputs),
        regions: ctx.regions,
        ignore_label: ctx.ignore_label,
        train_loader,
        val_loader,
        device,
        seed,
        inference_mirror_axes: ctx.inference_mirror_axes.clone(),
        show_progress: request.show_progress,
        checkpoint_interval: request.checkpoint_interval,
    };
    let state = match (&checkpoint, &resume) {
        (Some(c), Some(path)) => run.restore(c, path, parts.optimizer)?,
        _ => {
            if let Some(path) = &request.pretrained_weights {
                load_pretrained(run.network.as_mut(), path)?;
            }
            run.new_state(parts.optimizer)
        }
    };
    copy_run_files(&request.preprocessed_folder, &ctx)?;
    Ok((run, state))
}

/// What a trainer builds for a run besides its network.
pub struct TrainerParts {
    /// [`Trainer::training_transforms`].
    pub training_transforms: Vec<Box<dyn Augmentation>>,
    /// [`Trainer::validation_transforms`].
    pub validation_transforms: Vec<Box<dyn Augmentation>>,
    /// [`Trainer::build_loss`].
    pub loss: Box<dyn Loss>,
    /// [`Trainer::configure_optimizer`].
    pub optimizer: Box<dyn Optimizer>,
}

/// Builds `trainer`'s transforms, loss and optimiser for `settings` and the data of `pipeline`
/// (`regions`: a region-based dataset), with nnU-Net's defaults where it keeps them.
pub fn trainer_parts(
    registries: &Registries,
    trainer: &dyn Trainer,
    settings: &TrainerSettings,
    pipeline: &PipelineContext,
    regions: bool,
) -> Result<TrainerParts> {
    let defaults = PipelineDefaults {
        registries,
        settings,
        pipeline,
        regions,
    };
    let augmentation = pipeline.augmentation_context();
    let setup = SetupContext {
        settings,
        registries,
        augmentation: &augmentation,
        defaults: &defaults,
    };
    Ok(TrainerParts {
        training_transforms: trainer.training_transforms(&setup)?,
        validation_transforms: trainer.validation_transforms(&setup)?,
        loss: trainer.build_loss(&setup)?,
        optimizer: trainer.configure_optimizer(&setup)?,
    })
}

/// nnU-Net's defaults for what a trainer builds ([`Defaults`]): the settings' loss (its sigmoid
/// form for region datasets), optimiser and augmentation pipelines.
struct PipelineDefaults<'a> {
    registries: &'a Registries,
    settings: &'a TrainerSettings,
    pipeline: &'a PipelineContext,
    regions: bool,
}

impl Defaults for PipelineDefaults<'_> {
    fn loss(&self) -> Result<Box<dyn Loss>> {
        let name = match self.settings.loss.as_str() {
            "DC_and_CE_loss" if self.regions => "DC_and_BCE_loss",
            name => name,
        };
        self.registries.losses.create(name)
    }

    fn optimizer(&self) -> Result<Box<dyn Optimizer>> {
        let s = self.settings;
        let optimizer = DefaultOptimizer::new(s.optimizer.clone(), s.weight_decay);
        Ok(Box::new(optimizer.with_max_norm(s.grad_clip_norm)))
    }

    fn training_transforms(&self) -> Result<Vec<Box<dyn Augmentation>>> {
        training_pipeline(&self.settings.augmentation, self.pipeline, self.registries)
    }

    fn validation_transforms(&self) -> Result<Vec<Box<dyn Augmentation>>> {
        validation_pipeline(&self.settings.augmentation, self.pipeline)
    }
}

/// Loads another model's weights except the segmentation heads, as nnU-Net's
/// `load_pretrained_weights`: every other parameter must exist with the same shape.
pub fn load_pretrained(network: &mut dyn nnunet_core::network::Network, path: &Path) -> Result<()> {
    let checkpoint = Checkpoint::load(path)?;
    let source: std::collections::HashMap<&str, &NamedTensor> = checkpoint
        .network
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut merged = network.export_parameters();
    for t in merged.iter_mut() {
        if t.name.contains(".seg_layers.") {
            continue;
        }
        let s = source.get(t.name.as_str()).ok_or_else(|| {
            Error::invalid_file(
                path,
                format!(
                    "has no parameter '{}': it was trained with another architecture",
                    t.name
                ),
            )
        })?;
        if s.shape != t.shape {
            return Err(Error::invalid_file(
                path,
                format!(
                    "parameter '{}' has shape {:?} there but {:?} in this network: the \
                     pretrained model has another topology (plans, channels or patch size)",
                    t.name, s.shape, t.shape
                ),
            ));
        }
        t.values = s.values.clone();
    }
    network.import_parameters(&merged)
}

/// nnU-Net copies `plans.json`, `dataset.json` and `dataset_fingerprint.json` next to the folds.
fn copy_run_files(preprocessed: &Path, ctx: &RunContext) -> Result<()> {
    let base = ctx
        .output_folder
        .parent()
        .ok_or_else(|| Error::Invalid("results folder has no parent".into()))?;
    std::fs::create_dir_all(&ctx.output_folder).map_err(|e| Error::io(&ctx.output_folder, e))?;
    nnunet_core::json::write_json(
        &base.join("plans.json"),
        &serde_json::Value::Object(ctx.plans.json().clone()),
    )?;
    for name in ["dataset.json", "dataset_fingerprint.json"] {
        let from = preprocessed.join(name);
        if from.is_file() {
            std::fs::copy(&from, base.join(name)).map_err(|e| Error::io(&from, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_iterations_scale_with_training_iterations() {
        let mut settings = TrainerSettings::default();
        ScheduleOverrides {
            iterations_per_epoch: Some(20),
            ..Default::default()
        }
        .apply(&mut settings);
        assert_eq!(
            (
                settings.num_iterations_per_epoch,
                settings.num_val_iterations_per_epoch
            ),
            (20, 4)
        );
        assert_eq!(scaled_validation_iterations(2, 250, 50), 1);
        assert_eq!(scaled_validation_iterations(13, 250, 50), 3);
        let mut settings = TrainerSettings::default();
        ScheduleOverrides {
            iterations_per_epoch: Some(20),
            val_iterations_per_epoch: Some(7),
            ..Default::default()
        }
        .apply(&mut settings);
        assert_eq!(settings.num_val_iterations_per_epoch, 7);
    }

    #[test]
    fn ds_weights_as_nnunet() {
        let w = deep_supervision_weights(4);
        let raw = [1.0, 0.5, 0.25, 0.0];
        let sum: f64 = raw.iter().sum();
        for (a, b) in w.iter().zip(raw) {
            assert!((a - b / sum).abs() < 1e-15);
        }
        assert_eq!(deep_supervision_weights(1), vec![1.0]);
    }
}
