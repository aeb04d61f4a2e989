//! Building a run: resuming or refusing, the trainer's network, loss, optimiser and transforms,
//! the data loaders, and the files copied next to the folds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nnunet_core::network::NamedTensor;
use nnunet_core::{Augmentation, Error, Loss, Registries, Result};
use nnunet_dataset::Labels;
use nnunet_plugins::augmentations::geometry::{
    DaGeometry, configure_rotation_dummy_da_mirroring_and_initial_patch_size,
};
use nnunet_plugins::augmentations::pipeline::{
    PipelineContext, training_pipeline, validation_pipeline,
};
use nnunet_preprocessing::plans::Configuration;
use nnunet_training::checkpoint::Checkpoint;
use nnunet_training::data_loading::{
    DataLoader, LoaderConfig, Oversampling, PatchSampler, SamplerConfig, deep_supervision_scales,
};
use nnunet_training::optimizer::Optimizer as DefaultOptimizer;
use nnunet_training::run::{RunState, TrainingRun};
use nnunet_training::{
    Defaults, NetworkContext, Optimizer, SetupContext, Trainer, TrainerSettings,
};

use super::{
    RunContext, RunRequest, deep_supervision_weights, existing_checkpoint, refuse_existing_run,
    run_context,
};

/// The checkpoint a run starts from, with its path: with `continue_training` the fold's
/// existing checkpoint (none: a new run, with a warning); otherwise none, and a fold folder that
/// holds a run already is refused.
#[expect(
    clippy::print_stderr,
    reason = "a warning for the user, as nnU-Net prints it; the library has no other channel to the terminal"
)]
fn resume_checkpoint(
    request: &RunRequest,
    output_folder: &Path,
) -> Result<Option<(PathBuf, Checkpoint)>> {
    let resume = if request.continue_training {
        existing_checkpoint(output_folder)
    } else {
        refuse_existing_run(request, output_folder)?;
        None
    };
    let checkpoint = match resume {
        Some(path) => {
            let checkpoint = Checkpoint::load(&path)?;
            Some((path, checkpoint))
        }
        None => None,
    };
    if request.continue_training && checkpoint.is_none() {
        eprintln!(
            "no checkpoint in {} to continue from; starting a new run",
            output_folder.display()
        );
    }
    Ok(checkpoint)
}

/// What the augmentation pipelines know about a configuration's data: the patch, its geometry,
/// the normalisation masks, the previous stage's foreground labels (a cascade), regions and
/// ignore label. Training runs and `nnunet benchmark_dataloader` build it here.
pub fn pipeline_context(
    configuration: &Configuration,
    labels: &Labels,
    patch_size: &[usize],
    geometry: DaGeometry,
    cascade_foreground_labels: Option<Vec<i16>>,
) -> Result<PipelineContext> {
    let to_i16 = |v: i64| i16::try_from(v).ok();
    Ok(PipelineContext {
        patch_size: patch_size.to_vec(),
        is_2d: configuration.is_2d()?,
        geometry,
        use_mask_for_norm: configuration.use_mask_for_norm()?,
        cascade_foreground_labels,
        regions: labels.is_region_based().then(|| {
            labels
                .regions()
                .into_iter()
                .map(|r| r.into_iter().filter_map(to_i16).collect())
                .collect()
        }),
        ignore_label: labels.ignore_label().and_then(to_i16),
    })
}

/// A trainer's transforms of one data stream, applied in order.
type Transforms = Vec<Box<dyn Augmentation>>;

/// Where a run's data streams start: their seed and the batches drawn so far.
struct StreamStart {
    seed: u64,
    train: u64,
    val: u64,
}

/// The training and validation loaders of a run: patches of the fold's cases (training ones at
/// the pipeline's initial patch size), through the trainer's `transforms` (training,
/// validation), from `start`.
fn data_loaders(
    ctx: &RunContext,
    request: &RunRequest,
    pipeline: &PipelineContext,
    batch_size: usize,
    ds_scales: &Option<Vec<Vec<f64>>>,
    transforms: (Transforms, Transforms),
    start: StreamStart,
) -> Result<(DataLoader, DataLoader)> {
    let sampler = |cases: &[String], initial_patch: Vec<usize>| {
        PatchSampler::new(SamplerConfig {
            folder: ctx.data_folder.clone(),
            cases: cases.to_vec(),
            patch_size: initial_patch,
            final_patch_size: pipeline.patch_size.clone(),
            oversampling: Oversampling::from_settings(&ctx.settings, batch_size),
            has_ignore_label: ctx.dataset_json.labels.ignore_label().is_some(),
            previous_stage_folder: ctx.previous_stage_folder.clone(),
        })
        .map(Arc::new)
    };
    let workers = request.num_workers.max(1);
    let loader_config = |seed: u64, augmentations: Vec<Box<dyn Augmentation>>| LoaderConfig {
        batch_size,
        num_workers: workers,
        queue_length: (2 * workers).max(4),
        seed,
        deep_supervision_scales: ds_scales.clone(),
        augmentations: augmentations.into(),
        context: pipeline.augmentation_context(),
    };
    let train_loader = DataLoader::starting_at(
        sampler(
            &ctx.split.train,
            pipeline.geometry.initial_patch_size.clone(),
        )?,
        loader_config(start.seed, transforms.0),
        start.train,
    )?;
    let val_loader = DataLoader::starting_at(
        sampler(&ctx.split.val, pipeline.patch_size.clone())?,
        loader_config(start.seed.wrapping_add(1), transforms.1),
        start.val,
    )?;
    Ok((train_loader, val_loader))
}

/// Builds the run for `request`; with `continue_training`, restored from its checkpoint with the
/// settings recorded there (changed by the request's overrides, which must then agree with them).
pub fn prepare_run(
    registries: &Registries,
    request: &RunRequest,
) -> Result<(TrainingRun, RunState)> {
    let mut ctx = run_context(registries, request)?;
    let device = request.device.clone().autodiff();
    device.seed(request.seed);

    let checkpoint = resume_checkpoint(request, &ctx.output_folder)?;
    if let Some((_, c)) = &checkpoint {
        ctx.settings = c.meta.settings.clone();
        request.overrides.apply(&mut ctx.settings);
    }
    let seed = checkpoint
        .as_ref()
        .map_or(request.seed, |(_, c)| c.meta.seed);
    let streams = checkpoint.as_ref().map_or((0, 0), |(_, c)| {
        (c.meta.train_batches_drawn, c.meta.val_batches_drawn)
    });
    let (mut run, optimizer) = build_run(
        registries,
        request,
        &ctx,
        device,
        StreamStart {
            seed,
            train: streams.0,
            val: streams.1,
        },
    )?;
    let state = match &checkpoint {
        Some((path, c)) => run.restore(c, path, optimizer)?,
        None => {
            if let Some(path) = &request.pretrained_weights {
                load_pretrained(run.network.as_mut(), path)?;
            }
            run.new_state(optimizer)
        }
    };
    copy_run_files(&request.preprocessed_folder, &ctx)?;
    Ok((run, state))
}

/// The augmentation context of the run of `ctx`: its patch size, augmentation geometry, labels
/// and cascade inputs.
fn run_pipeline_context(ctx: &RunContext) -> Result<PipelineContext> {
    let patch_size = ctx.configuration.patch_size()?;
    let geometry = configure_rotation_dummy_da_mirroring_and_initial_patch_size(
        &patch_size,
        &ctx.settings.augmentation,
    )?;
    pipeline_context(
        &ctx.configuration,
        &ctx.dataset_json.labels,
        &patch_size,
        geometry,
        ctx.cascade_labels.clone(),
    )
}

/// Builds the run of `ctx` on `device` (the trainer's network, loss, transforms and data loaders
/// from `start`) and the trainer's optimiser, still without state.
fn build_run(
    registries: &Registries,
    request: &RunRequest,
    ctx: &RunContext,
    device: burn::tensor::Device,
    start: StreamStart,
) -> Result<(TrainingRun, Box<dyn Optimizer>)> {
    let trainer = registries.trainers.create(&request.trainer)?;
    let network = trainer.build_network(&NetworkContext {
        registries,
        settings: &ctx.settings,
        architecture: &ctx.network_class_name,
        spec: &ctx.spec,
        device: &device,
    })?;

    let configuration = &ctx.configuration;
    let batch_size = configuration.batch_size()?;
    let pipeline_context = run_pipeline_context(ctx)?;
    let ds_scales = ctx
        .settings
        .enable_deep_supervision
        .then(|| deep_supervision_scales(configuration))
        .transpose()?;
    let parts = trainer_parts(
        registries,
        trainer.as_ref(),
        &ctx.settings,
        &pipeline_context,
        ctx.regions,
    )?;
    let seed = start.seed;
    let (train_loader, val_loader) = data_loaders(
        ctx,
        request,
        &pipeline_context,
        batch_size,
        &ds_scales,
        (parts.training_transforms, parts.validation_transforms),
        start,
    )?;
    let n_outputs = ds_scales.as_ref().map_or(1, Vec::len);

    let run = TrainingRun {
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
        loss_settings: loss_settings(ctx),
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
    Ok((run, parts.optimizer))
}

/// What the loss of a run is computed with: the configuration's batch Dice, background for
/// regions, the settings' smoothing, top-k share and label smoothing, the ignore label.
fn loss_settings(ctx: &RunContext) -> nnunet_core::loss::LossSettings {
    nnunet_core::loss::LossSettings {
        batch_dice: ctx.configuration.batch_dice(),
        do_bg: ctx.regions,
        smooth: ctx.settings.dice_smooth,
        ignore_label: ctx.ignore_label,
        topk_percent: ctx.settings.topk_percent,
        label_smoothing: ctx.settings.label_smoothing,
        ..Default::default()
    }
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
            Error::training_file(
                path,
                format!(
                    "has no parameter '{}': it was trained with another architecture",
                    t.name
                ),
            )
        })?;
        if s.shape != t.shape {
            return Err(Error::training_file(
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
        .ok_or_else(|| Error::training("results folder has no parent"))?;
    std::fs::create_dir_all(&ctx.output_folder).map_err(|e| Error::io(&ctx.output_folder, e))?;
    nnunet_core::compat::json::write_json(
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
