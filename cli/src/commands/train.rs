//! `nnunet train DATASET CONFIGURATION FOLD [-tr TRAINER] [-p PLANS] [--c] [--val] [--npz] …`:
//! nnU-Net's `nnUNetv2_train`. Trains one fold into
//! `nnUNet_results/DatasetXXX/Trainer__Plans__configuration/fold_N` (log, `progress.png`,
//! checkpoints), then predicts the fold's validation cases and scores them into
//! `validation/summary.json`. `--epochs`, `--iterations-per-epoch`, `--val-iterations-per-epoch`
//! and `--initial-lr` change the trainer's schedule for this run (validation iterations scale with
//! `--iterations-per-epoch` in nnU-Net's 250:50 ratio unless given); `--c` continues with the
//! schedule recorded in the checkpoint. A fold that holds a run already is only touched with `--c`
//! or `--val`.
//!
//! On a terminal a progress bar shows the iterations with an ETA and a line per epoch above it;
//! otherwise (a log file, `nohup`, a batch scheduler) one plain line per epoch goes to stdout.
//! `checkpoint_latest` is written every 50 epochs, as in nnU-Net, and also after every
//! `--checkpoint-minutes` (default 10) of training, so that a killed run continues with `--c`
//! from minutes ago.

use std::path::Path;

use nnunet_core::burn::tensor::Device;
use nnunet_core::device::{device_from_name, set_cpu_threads, set_precision};
use nnunet_pipeline::setup::{RunRequest, ScheduleOverrides, prepare_run};
use nnunet_pipeline::validation::validate_fold;
use nnunet_training::run::{RunState, TrainingRun, checkpoint_path};
use nnunet_training::splits::{Fold, read_splits};

use crate::Context;
use crate::output::say;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Dataset ID or name.
    dataset: String,
    /// Configuration (2d, 3d_fullres, 3d_lowres, …).
    configuration: String,
    /// Fold (0-4, or `all`).
    fold: String,
    /// Trainer (`-tr`).
    #[arg(long = "trainer", default_value = "nnUNetTrainer")]
    trainer: String,
    /// Plans identifier (`-p`).
    #[arg(short = 'p', long = "plans", default_value = "nnUNetPlans")]
    plans: String,
    /// Start from another model's checkpoint (fine-tuning); the segmentation heads are not loaded.
    #[arg(long = "pretrained-weights", value_name = "FILE")]
    pretrained_weights: Option<std::path::PathBuf>,
    /// Continue from the latest checkpoint (`--c`).
    #[arg(long = "continue")]
    continue_training: bool,
    /// Only run the final validation (the model must be trained).
    #[arg(long = "val")]
    validation_only: bool,
    /// Validate with checkpoint_best instead of checkpoint_final.
    #[arg(long = "val-best")]
    val_best: bool,
    /// Keep the validation probabilities (`.npz`), needed to find the best ensemble.
    #[arg(long = "npz")]
    npz: bool,
    /// Write no checkpoints.
    #[arg(long = "disable-checkpointing")]
    disable_checkpointing: bool,
    /// Device: cpu, cuda, cuda:N, wgpu (the default adapter), wgpu:N.
    #[arg(long = "device", default_value = "cpu")]
    device: String,
    /// Arithmetic of the network (`-precision`): auto, fp32, bf16, or on a GPU fp16. On the CPU
    /// `auto` computes in bf16 with fp32 accumulation where the CPU multiplies bf16 natively (AMX,
    /// AVX512-BF16); on a GPU it is fp16 with loss scaling where the GPU has tensor cores (as
    /// nnU-Net on CUDA); fp32 otherwise. Weights and checkpoints stay fp32.
    #[arg(long = "precision", default_value = "auto")]
    precision: String,
    /// Number of GPUs (only 1 is supported).
    #[arg(long = "num-gpus", default_value_t = 1)]
    num_gpus: usize,
    /// Number of epochs for this run (overrides the trainer's).
    #[arg(long = "epochs")]
    epochs: Option<usize>,
    /// Training iterations per epoch for this run.
    #[arg(long = "iterations-per-epoch")]
    iterations_per_epoch: Option<usize>,
    /// Validation iterations per epoch for this run.
    #[arg(long = "val-iterations-per-epoch")]
    val_iterations_per_epoch: Option<usize>,
    /// Initial learning rate for this run.
    #[arg(long = "initial-lr")]
    initial_lr: Option<f64>,
    /// Seed of the data streams and of the network initialisation.
    #[arg(long = "seed", default_value_t = 12345)]
    seed: u64,
    /// CPU threads for the network (default: all cores).
    #[arg(long = "threads")]
    threads: Option<usize>,
    /// Stop after this many epochs (counted from the start of the run), writing
    /// checkpoint_latest; continue later with --c.
    #[arg(long = "stop-after", value_name = "EPOCHS")]
    stop_after: Option<usize>,
    /// Data-loading worker threads (default: 1).
    #[arg(long = "workers", default_value_t = 1)]
    workers: usize,
    /// Also write checkpoint_latest when this many minutes of training have passed since the
    /// last one (0: after every epoch).
    #[arg(
        long = "checkpoint-minutes",
        default_value_t = 10.0,
        value_name = "MINUTES"
    )]
    checkpoint_minutes: f64,
}

/// The schedule line: epochs, training and validation iterations, and where they come from.
fn schedule_text(settings: &nnunet_core::TrainerSettings, args: &Args, continued: bool) -> String {
    let overrides = overrides(args);
    let origin = if continued && !overrides.any() {
        " (as recorded in the checkpoint)"
    } else if overrides.scales_validation() {
        " (validation scaled from --iterations-per-epoch in nnU-Net's 250:50 ratio; set it with \
         --val-iterations-per-epoch)"
    } else {
        ""
    };
    format!(
        "schedule: {} epochs of {} training and {} validation iterations, initial learning rate \
         {}{origin}",
        settings.num_epochs,
        settings.num_iterations_per_epoch,
        settings.num_val_iterations_per_epoch,
        settings.initial_lr
    )
}

/// The schedule changes of `args` (`--epochs`, `--iterations-per-epoch`, …).
fn overrides(args: &Args) -> ScheduleOverrides {
    ScheduleOverrides {
        epochs: args.epochs,
        iterations_per_epoch: args.iterations_per_epoch,
        val_iterations_per_epoch: args.val_iterations_per_epoch,
        initial_lr: args.initial_lr,
    }
}

/// The note for a fold beyond the folds of `splits_final.json`: nnU-Net trains it on a random
/// 80:20 split.
fn random_split_note(splits_file: &std::path::Path, fold: Fold) -> anyhow::Result<Option<String>> {
    let Fold::Index(index) = fold else {
        return Ok(None);
    };
    let folds = read_splits(splits_file)?.len();
    Ok((index >= folds).then(|| {
        format!(
            "note: {} has {folds} folds, so fold {index} trains and validates on a random 80:20 \
             split of the cases (seeded with 12345 + {index}, as nnU-Net does); `nnunet \
             make-splits` writes other folds",
            splits_file.display()
        )
    }))
}

/// The training run that `args` asks for, of the dataset `name`.
fn run_request(
    ctx: &Context,
    args: &Args,
    name: &str,
    fold: Fold,
    device: Device,
) -> anyhow::Result<RunRequest> {
    Ok(RunRequest {
        preprocessed_folder: ctx.paths.preprocessed()?.join(name),
        results_folder: ctx.paths.results()?.join(name),
        configuration: args.configuration.clone(),
        fold,
        trainer: args.trainer.clone(),
        plans_identifier: args.plans.clone(),
        overrides: overrides(args),
        continue_training: args.continue_training || args.validation_only,
        pretrained_weights: args.pretrained_weights.clone(),
        device,
        seed: args.seed,
        num_workers: args.workers,
        show_progress: true,
        checkpoint_interval: Some(std::time::Duration::from_secs_f64(
            args.checkpoint_minutes * 60.0,
        )),
    })
}

/// Runs `nnunet train`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    if args.num_gpus != 1 {
        anyhow::bail!(
            "-num_gpus {}: training on several GPUs is not supported; train with one",
            args.num_gpus
        );
    }
    if !(args.checkpoint_minutes >= 0.0 && args.checkpoint_minutes.is_finite()) {
        anyhow::bail!(
            "--checkpoint-minutes must be a number of minutes, 0 or more (got {})",
            args.checkpoint_minutes
        );
    }
    if let Some(threads) = args.threads {
        set_cpu_threads(threads)?;
    }
    let device = device_from_name(&args.device)?;
    let precision = set_precision(&args.precision, &device)?;
    let name = ctx.paths.dataset_name(&args.dataset)?;
    let fold = Fold::parse(&args.fold)?;
    let request = run_request(ctx, &args, &name, fold, device)?;
    if args.continue_training && args.pretrained_weights.is_some() {
        anyhow::bail!(
            "--c and -pretrained_weights exclude each other: a continued run has its own weights"
        );
    }
    let (mut run, state) = prepare_run(&ctx.registries, &request)?;
    if args.disable_checkpointing {
        run.settings.disable_checkpointing = true;
    }
    let output = run.output_folder.clone();
    say(format_args!(
        "{name} {} fold {}: trainer {}, output {}",
        args.configuration,
        fold,
        args.trainer,
        output.display()
    ))?;
    say(format_args!("computing in {precision}"))?;
    if let Some(note) =
        random_split_note(&request.preprocessed_folder.join("splits_final.json"), fold)?
    {
        say(format_args!("{note}"))?;
    }
    if !args.validation_only && !train(&mut run, state, &args)? {
        return Ok(());
    }
    validate(ctx, &request, &output, &args)
}

/// Trains the fold from `state`, saying how it goes; returns whether the fold is to be validated
/// (not after a stop, a benchmark or a run without checkpoints).
fn train(run: &mut TrainingRun, state: RunState, args: &Args) -> anyhow::Result<bool> {
    say(format_args!(
        "{}",
        schedule_text(&run.settings, args, state.epoch > 0)
    ))?;
    if state.epoch > 0 {
        say(format_args!("continuing from epoch {}", state.epoch))?;
    }
    let summary = run.train(state, args.stop_after)?;
    if !summary.finished {
        say(format_args!(
            "stopped after epoch {} of {}; continue with --c",
            summary.epochs_completed, run.settings.num_epochs
        ))?;
        return Ok(false);
    }
    if let Some(best) = summary.best_ema {
        say(format_args!(
            "training done: {} epochs, best EMA pseudo Dice {best:.4}, {:.2} iterations/s",
            summary.epochs_completed, summary.iterations_per_second
        ))?;
    }
    Ok(!(run.settings.benchmark.is_some() || run.settings.disable_checkpointing))
}

/// Validates the fold in `output` with checkpoint_final (or checkpoint_best with `--val-best`).
fn validate(ctx: &Context, request: &RunRequest, output: &Path, args: &Args) -> anyhow::Result<()> {
    let which = if args.val_best {
        "checkpoint_best"
    } else {
        "checkpoint_final"
    };
    let checkpoint = checkpoint_path(output, which);
    if !checkpoint.is_file() {
        anyhow::bail!(
            "{}: not found; train the fold to the end first (or use --val_best)",
            checkpoint.display()
        );
    }
    let result = validate_fold(&ctx.registries, request, &checkpoint, args.npz)?;
    say(format_args!(
        "validation of {} cases: mean foreground Dice {:.4} ({})",
        result.cases,
        result.foreground_mean_dice,
        result.summary_file.display()
    ))?;
    Ok(())
}
