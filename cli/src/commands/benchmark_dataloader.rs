//! `nnunet benchmark-dataloader -d ID -c CONFIG [-tr TRAINER] [-p PLANS] [-n BATCHES]`: how fast
//! the trainer's training data pipeline (patch sampling, augmentation, deep-supervision targets)
//! makes batches on this machine, so that a user can tell whether data loading limits training.
//! The last line is `X batches/s, Y ms/batch`. `--debug-png DIR` also writes the first batches'
//! samples as PNG images (middle slice of every channel beside its label map) to look at.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ndarray::{Array2, Axis};
use nnunet_dataset::DatasetJson;
use nnunet_pipeline::setup::{pipeline_context, trainer_parts};
use nnunet_plugins::augmentations::geometry::configure_rotation_dummy_da_mirroring_and_initial_patch_size;
use nnunet_preprocessing::plans::Configuration;
use nnunet_preprocessing::storage::stored_cases;
use nnunet_training::data_loading::{
    Batch, DataLoader, LoaderConfig, Oversampling, PatchSampler, SamplerConfig,
    deep_supervision_scales,
};
use nnunet_training::settings_of;

use crate::Context;
use crate::commands::read_plans_file;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Dataset ID or name.
    #[arg(short = 'd', long = "dataset")]
    dataset: String,
    /// Configuration (2d, 3d_fullres, 3d_lowres, …).
    #[arg(short = 'c', long = "configuration")]
    configuration: String,
    /// Trainer whose pipeline and oversampling are used.
    #[arg(long = "trainer", default_value = "nnUNetTrainer")]
    trainer: String,
    /// Plans identifier.
    #[arg(short = 'p', long = "plans", default_value = "nnUNetPlans")]
    plans: String,
    /// Batches to time (after 3 warm-up batches).
    #[arg(short = 'n', long = "batches", default_value_t = 50)]
    batches: usize,
    /// Worker threads (default: the number of CPU cores).
    #[arg(long = "workers")]
    workers: Option<usize>,
    /// Random seed of the batch stream.
    #[arg(long = "seed", default_value_t = 12345)]
    seed: u64,
    /// Write the samples of the first 2 batches as PNG images into this folder.
    #[arg(long = "debug-png", value_name = "DIR")]
    debug_png: Option<PathBuf>,
}

/// The preprocessed data a benchmark samples from.
struct Stored {
    /// The dataset's folder name.
    name: String,
    /// The configuration benchmarked.
    configuration: Configuration,
    /// The configuration's preprocessed folder.
    folder: PathBuf,
    /// The preprocessed cases in it.
    cases: Vec<String>,
    /// The dataset's `dataset.json` (from nnUNet_preprocessed).
    dataset_json: DatasetJson,
}

/// Finds the preprocessed cases of the configuration and plans in `args`; a missing plans file or
/// folder, no cases or a cascade configuration is an error saying what to run first.
fn stored_data(ctx: &Context, args: &Args) -> anyhow::Result<Stored> {
    let name = ctx.paths.dataset_name(&args.dataset)?;
    let preprocessed = ctx.paths.preprocessed()?.join(&name);
    let plans = read_plans_file(
        &preprocessed.join(format!("{}.json", args.plans)),
        format_args!("run `nnunet plan-and-preprocess -d {}` first", args.dataset),
    )?;
    let configuration = plans.configuration(&args.configuration)?;
    let folder = preprocessed.join(configuration.data_identifier()?);
    if !folder.is_dir() {
        anyhow::bail!(
            "{}: not preprocessed yet; run `nnunet preprocess -d {} -plans_name {} -c {}`",
            folder.display(),
            args.dataset,
            args.plans,
            args.configuration
        );
    }
    if let Some(previous) = configuration.previous_stage() {
        anyhow::bail!(
            "benchmark-dataloader needs the previous stage's predictions for a cascade \
             configuration, which come with training; benchmark '{previous}' instead"
        );
    }
    let cases = stored_cases(&folder)?;
    if cases.is_empty() {
        anyhow::bail!("{}: holds no preprocessed cases", folder.display());
    }
    let dataset_json = DatasetJson::from_file(&preprocessed.join("dataset.json"))?;
    Ok(Stored {
        name,
        configuration,
        folder,
        cases,
        dataset_json,
    })
}

/// A data loader as the trainer's training uses it, and what its batches look like.
struct Benchmarked {
    /// The loader.
    loader: DataLoader,
    /// The configuration's patch size.
    patch_size: Vec<usize>,
    /// The patch size sampled before augmentation.
    initial_patch_size: Vec<usize>,
    /// Samples per batch.
    batch_size: usize,
    /// Worker threads.
    workers: usize,
}

/// Builds the data loader of `args.trainer` over the `stored` cases.
fn trainer_loader(ctx: &Context, args: &Args, stored: Stored) -> anyhow::Result<Benchmarked> {
    let configuration = &stored.configuration;
    let trainer = ctx.registries.trainers.create(&args.trainer)?;
    let settings = settings_of(trainer.as_ref());
    let patch_size = configuration.patch_size()?;
    let batch_size = configuration.batch_size()?;
    let geometry = configure_rotation_dummy_da_mirroring_and_initial_patch_size(
        &patch_size,
        &settings.augmentation,
    )?;
    let labels = &stored.dataset_json.labels;
    let pipeline_context =
        pipeline_context(configuration, labels, &patch_size, geometry.clone(), None)?;
    let pipeline = trainer_parts(
        &ctx.registries,
        trainer.as_ref(),
        &settings,
        &pipeline_context,
        labels.is_region_based(),
    )?
    .training_transforms;
    let sampler = PatchSampler::new(SamplerConfig {
        folder: stored.folder.clone(),
        cases: stored.cases,
        patch_size: geometry.initial_patch_size.clone(),
        final_patch_size: patch_size.clone(),
        oversampling: Oversampling::from_settings(&settings, batch_size),
        has_ignore_label: labels.ignore_label().is_some(),
        previous_stage_folder: None,
    })?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let loader = DataLoader::new(
        Arc::new(sampler),
        LoaderConfig {
            batch_size,
            num_workers: workers,
            queue_length: (2 * workers).max(6),
            seed: args.seed,
            deep_supervision_scales: settings
                .enable_deep_supervision
                .then(|| deep_supervision_scales(configuration))
                .transpose()?,
            augmentations: pipeline.into(),
            context: pipeline_context.augmentation_context(),
        },
    )?;
    Ok(Benchmarked {
        loader,
        patch_size,
        initial_patch_size: geometry.initial_patch_size,
        batch_size,
        workers,
    })
}

/// Runs `nnunet benchmark-dataloader`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let stored = stored_data(ctx, &args)?;
    let name = stored.name.clone();
    let Benchmarked {
        mut loader,
        patch_size,
        initial_patch_size,
        batch_size,
        workers,
    } = trainer_loader(ctx, &args, stored)?;

    let mut out = std::io::stdout().lock();
    crate::output::line(
        &mut out,
        format_args!(
            "{name} {}: trainer {}, batch {batch_size}, patch {patch_size:?} (sampled {:?}), \
             {workers} workers",
            args.configuration, args.trainer, initial_patch_size
        ),
    )?;
    for i in 0..3 {
        let batch = loader.next_batch()?;
        if let Some(dir) = &args.debug_png
            && i < 2
        {
            write_debug_pngs(dir, &batch)?;
        }
        loader.recycle(batch);
    }
    if let Some(dir) = &args.debug_png {
        crate::output::line(
            &mut out,
            format_args!("augmented samples written to {}", dir.display()),
        )?;
    }
    let bar = crate::progress::bar(args.batches, "batches");
    let start = Instant::now();
    for _ in 0..args.batches {
        let batch = loader.next_batch()?;
        loader.recycle(batch);
        bar.inc(1);
    }
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let n = args.batches.max(1) as f64;
    crate::output::line(
        &mut out,
        format_args!(
            "{:.2} batches/s, {:.1} ms/batch",
            n / elapsed,
            1000.0 * elapsed / n
        ),
    )
}

/// Writes every sample of `batch` as one PNG: the middle z slice of each image channel (scaled to
/// its own range) and of the full-resolution target (labels spread over 0..255), side by side.
fn write_debug_pngs(dir: &Path, batch: &Batch) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let target = &batch.targets[0];
    for (b, key) in batch.keys.iter().enumerate() {
        let image = batch.data.index_axis(Axis(0), b);
        let seg = target.index_axis(Axis(0), b);
        let z = image.shape()[1] / 2;
        let mut panels: Vec<Array2<u8>> = Vec::new();
        for c in 0..image.shape()[0] {
            let slice = image.index_axis(Axis(0), c);
            panels.push(scale_to_u8(
                slice.index_axis(Axis(0), z).mapv(f64::from).view(),
            ));
        }
        let label = seg.index_axis(Axis(0), 0);
        let label = label.index_axis(Axis(0), z);
        let max = label.iter().copied().max().unwrap_or(0).max(1);
        panels.push(label.mapv(|v| (i32::from(v.max(0)) * 255 / i32::from(max)) as u8));
        let (h, w) = panels[0].dim();
        let mut png = image::GrayImage::new((w * panels.len()) as u32, h as u32);
        for (p, panel) in panels.iter().enumerate() {
            for ((y, x), v) in panel.indexed_iter() {
                png.put_pixel((p * w + x) as u32, y as u32, image::Luma([*v]));
            }
        }
        let file = dir.join(format!("batch{:03}_{b}_{key}.png", batch.index));
        png.save(&file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    }
    Ok(())
}

/// `a` scaled linearly from its own range to 0..=255.
fn scale_to_u8(a: ndarray::ArrayView2<'_, f64>) -> Array2<u8> {
    let (lo, hi) = a
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let range = (hi - lo).max(1e-12);
    a.mapv(|v| ((v - lo) / range * 255.0).round() as u8)
}
