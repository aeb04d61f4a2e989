//! `nnunet predict -i IN -o OUT -d DATASET -c CONFIGURATION [-tr TRAINER] [-p PLANS] [-f FOLDS…]
//! [-chk CHECKPOINT] [--save_probabilities] [--disable_tta] [-step_size S] [-num_parts N -part_id K]
//! [--continue_prediction] …`: nnU-Net's `nnUNetv2_predict` (and, with `-m MODEL_FOLDER`,
//! `nnUNetv2_predict_from_modelfolder`).
//!
//! The input folder holds cases named as nnU-Net's (`CASE_0000.ending`, one file per channel);
//! each case's segmentation is written to `OUT/CASE.ending` in the input's geometry, with
//! `OUT/CASE.npz` and `OUT/CASE.json` under `--save_probabilities`; the model's `dataset.json` and
//! `plans.json` are copied into `OUT`, as the reference does. `--visible-labels` writes label
//! values spread over 0..255 (binary masks as 0/255) to look at.
//!
//! Grouping follows the reader: a colour image (`CASE_0000.png` in RGB) gives all three channels
//! of a model trained on colour images. `--roi-dir DIR` writes background outside each case's
//! region of interest `DIR/CASE.ending` (nonzero inside). Only `nnUNet_results` is needed.
//!
//! A cascade stage (`3d_cascade_fullres`) takes the previous stage's prediction of each case:
//! from `-prev_stage_predictions DIR` (`DIR/CASE.ending`, as the reference), or, without it, the
//! previous stage's model next to this one (`Trainer__Plans__3d_lowres`) predicts the cases first
//! into a temporary folder in `OUT`, with the same folds and settings.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nnunet_core::device::{device_from_name, set_cpu_threads, set_precision};
use nnunet_core::paths::TrainedModel;
use nnunet_inference::predictor::{
    FileOutputOptions, FolderCases, FolderSelection, Predictor, PredictorSettings,
};
use nnunet_preprocessing::plans::Plans;
use nnunet_training::splits::Fold;

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Input folder: CASE_0000.ending, CASE_0001.ending, … (one file per channel, the training
    /// dataset's file ending); with --dicom, a folder of DICOM series.
    #[arg(short = 'i', value_name = "DIR")]
    input: PathBuf,
    /// The input folder holds DICOM series (any folder structure): each series is one case,
    /// written as OUT/SERIES.nii.gz with a JSON side file (single-channel models).
    #[arg(long = "dicom")]
    dicom: bool,
    /// Output folder (created if needed): CASE.ending per case.
    #[arg(short = 'o', value_name = "DIR")]
    output: PathBuf,
    /// Dataset ID or name of the trained model.
    #[arg(short = 'd', value_name = "DATASET")]
    dataset: Option<String>,
    /// Configuration the model was trained on (2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres).
    #[arg(short = 'c', value_name = "CONFIGURATION")]
    configuration: Option<String>,
    /// Trainer the model was trained with (`-tr`; default nnUNetTrainer).
    #[arg(long = "trainer", value_name = "TRAINER")]
    trainer: Option<String>,
    /// Plans identifier (default nnUNetPlans).
    #[arg(short = 'p', long = "plans", value_name = "PLANS")]
    plans: Option<String>,
    /// The trained model's folder (Trainer__Plans__configuration), in place of -d, -c, -tr and -p.
    #[arg(short = 'm', long = "model-folder", value_name = "DIR")]
    model_folder: Option<PathBuf>,
    /// Folds whose predictions are averaged (0 1 2 3 4, or all).
    #[arg(short = 'f', long = "folds", num_args = 1.., default_values_t = ["0".to_string(), "1".to_string(), "2".to_string(), "3".to_string(), "4".to_string()])]
    folds: Vec<String>,
    /// Checkpoint (`-chk`): checkpoint_final, checkpoint_best or checkpoint_latest (nnU-Net's
    /// `.pth` names are accepted).
    #[arg(long = "checkpoint", default_value = "checkpoint_final.pth")]
    checkpoint: String,
    /// Sliding-window step as a fraction of the patch size (`-step_size`).
    #[arg(long = "step-size", default_value_t = 0.5)]
    step_size: f64,
    /// No test-time mirroring: faster, slightly less accurate.
    #[arg(long = "disable-tta")]
    disable_tta: bool,
    /// Also write the class probabilities (CASE.npz) and the case properties (CASE.json).
    #[arg(long = "save-probabilities")]
    save_probabilities: bool,
    /// Skip cases whose outputs exist (an interrupted prediction is run again with this flag).
    #[arg(long = "continue-prediction", alias = "continue")]
    continue_prediction: bool,
    /// Write labels spread over 0..255 (binary masks as 0/255) for looking at them.
    #[arg(long = "visible-labels")]
    visible_labels: bool,
    /// Regions of interest (DIR/CASE.ending, nonzero inside, e.g. the roisTs folder of
    /// convert-folder): everything outside a case's region is written as background.
    #[arg(long = "roi-dir", value_name = "DIR")]
    roi_dir: Option<PathBuf>,
    /// Number of separate predict calls sharing the cases (`-num_parts`).
    #[arg(long = "num-parts", default_value_t = 1)]
    num_parts: usize,
    /// Which of the -num_parts calls this is, from 0 (`-part_id`).
    #[arg(long = "part-id", default_value_t = 0)]
    part_id: usize,
    /// Cascade stage: folder with the previous stage's predictions (CASE.ending); without it, the
    /// previous stage's model next to this one predicts them first.
    #[arg(long = "prev-stage-predictions", value_name = "DIR")]
    prev_stage_predictions: Option<PathBuf>,
    /// Preprocessing processes (`-npp`; accepted for nnU-Net compatibility: one reading thread
    /// runs ahead of the network).
    #[arg(long = "npp", value_name = "N")]
    npp: Option<usize>,
    /// Export processes (`-nps`; accepted for nnU-Net compatibility: one writing thread runs
    /// behind the network).
    #[arg(long = "nps", value_name = "N")]
    nps: Option<usize>,
    /// Device: cpu, cuda, cuda:N, wgpu (the default adapter), wgpu:N.
    #[arg(long = "device", default_value = "cpu")]
    device: String,
    /// Accepted for nnU-Net compatibility (results are always gathered on the CPU).
    #[arg(long = "not-on-device")]
    not_on_device: bool,
    /// No progress bar.
    #[arg(long = "disable-progress-bar")]
    disable_progress_bar: bool,
    /// CPU threads for the network (default: all cores).
    #[arg(long = "threads")]
    threads: Option<usize>,
    /// Arithmetic of the network (`-precision`): auto, fp32, bf16, or on a GPU fp16. On the CPU
    /// `auto` computes in bf16 with fp32 accumulation where the CPU multiplies bf16 natively (AMX,
    /// AVX512-BF16); on a GPU it is fp16 where the GPU has tensor cores (as nnU-Net on CUDA); fp32
    /// otherwise. fp32 gives the reference's predictions.
    #[arg(long = "precision", default_value = "auto")]
    precision: String,
    /// Print each case as it is written.
    #[arg(long = "verbose")]
    verbose: bool,
}

/// The model folder named by `-m`, or by `-d`/`-c`/`-tr`/`-p` under nnUNet_results.
fn model_folder(ctx: &Context, args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(folder) = &args.model_folder {
        let mut extra = Vec::new();
        for (flag, given) in [
            ("-d", args.dataset.is_some()),
            ("-c", args.configuration.is_some()),
            ("-tr", args.trainer.is_some()),
            ("-p", args.plans.is_some()),
        ] {
            if given {
                extra.push(flag);
            }
        }
        if !extra.is_empty() {
            anyhow::bail!(
                "-m names the model folder; {} cannot be given with it",
                extra.join(", ")
            );
        }
        return Ok(folder.clone());
    }
    let (Some(dataset), Some(configuration)) = (&args.dataset, &args.configuration) else {
        anyhow::bail!(
            "name the model with -d DATASET -c CONFIGURATION [-tr TRAINER] [-p PLANS], or with \
             -m MODEL_FOLDER"
        );
    };
    let results = ctx.paths.results()?;
    let name = ctx.paths.results_only()?.dataset_name(dataset)?;
    let trainer = args.trainer.as_deref().unwrap_or("nnUNetTrainer");
    let plans = args.plans.as_deref().unwrap_or("nnUNetPlans");
    let dataset_folder = results.join(&name);
    let folder = dataset_folder.join(TrainedModel::new(trainer, plans, configuration).identifier());
    if !folder.is_dir() {
        let models = trained_models(&dataset_folder);
        if let Some(known) = configurations_of_plans(ctx, &dataset_folder, &name, trainer, plans)
            && !known.contains(configuration)
        {
            anyhow::bail!(
                "configuration '{configuration}' is not in the plans {plans} of {name}; its \
                 configurations are {}{}",
                known.join(", "),
                trained_models_text(&models)
            );
        }
        anyhow::bail!(
            "{}: no trained model there; train it with `nnunet train {dataset} {configuration} \
             FOLD -tr {trainer} -p {plans}`{}",
            folder.display(),
            trained_models_text(&models)
        );
    }
    Ok(folder)
}

/// The trained model folders (`Trainer__Plans__configuration`) of a dataset in nnUNet_results.
fn trained_models(dataset_folder: &Path) -> Vec<String> {
    let mut models: Vec<String> = std::fs::read_dir(dataset_folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("plans.json").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    models.sort();
    models
}

/// The trained models for an error message (nothing when there are none).
fn trained_models_text(models: &[String]) -> String {
    if models.is_empty() {
        String::new()
    } else {
        format!(" (trained models of this dataset: {})", models.join(", "))
    }
}

/// The configurations of the plans `plans`: from a model trained with them, or from
/// nnUNet_preprocessed when it is set.
fn configurations_of_plans(
    ctx: &Context,
    dataset_folder: &Path,
    name: &str,
    trainer: &str,
    plans: &str,
) -> Option<Vec<String>> {
    let trained = trained_models(dataset_folder)
        .into_iter()
        .find(|m| {
            TrainedModel::from_identifier(m)
                .is_some_and(|t| t.trainer == trainer && t.plans == plans)
        })
        .map(|m| dataset_folder.join(m).join("plans.json"));
    let preprocessed = ctx
        .paths
        .preprocessed()
        .ok()
        .map(|p| p.join(name).join(format!("{plans}.json")));
    [trained, preprocessed]
        .into_iter()
        .flatten()
        .find(|file| file.is_file())
        .and_then(|file| Plans::from_file(&file).ok())
        .map(|p| p.configuration_names())
}

/// What [`predict_folder`] predicts and how.
pub(crate) struct FolderJob<'a> {
    /// The input folder (`CASE_XXXX.ending`).
    pub input: &'a Path,
    /// The output folder.
    pub output: &'a Path,
    /// What is written besides the segmentations.
    pub options: FileOutputOptions,
    /// Which cases are predicted, and what comes with them.
    pub selection: FolderSelection<'a>,
    /// Show a progress bar (on a terminal).
    pub show_progress: bool,
    /// Print each case as it is written.
    pub verbose: bool,
}

/// What [`predict_folder`] did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FolderReport {
    /// Cases predicted (after -num_parts and --continue_prediction).
    pub cases: usize,
    /// Seconds per case, from reading the first to writing the last.
    pub seconds_per_case: f64,
}

/// Predicts the cases of `job.input` into `job.output` with `predictor`.
pub(crate) fn predict_folder(
    predictor: &Predictor,
    job: &FolderJob<'_>,
) -> anyhow::Result<FolderReport> {
    let (input, output, selection) = (job.input, job.output, &job.selection);
    let FolderCases {
        total,
        in_part,
        todo,
    } = predictor.folder_cases(input, output, selection, &job.options)?;
    eprintln!(
        "{total} case(s) in {}; part {} of {}: {in_part}; to predict: {}{}",
        input.display(),
        selection.part_id,
        selection.num_parts,
        todo.len(),
        if selection.continue_prediction && todo.len() < in_part {
            format!(" ({} already predicted)", in_part - todo.len())
        } else {
            String::new()
        }
    );
    if todo.is_empty() {
        return Ok(FolderReport::default());
    }
    let bar = nnunet_core::progress::bar(todo.len(), "predicting", "cases");
    if !job.show_progress {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let start = Instant::now();
    let result = predictor.predict_from_files(&todo, &job.options, &|case, path| {
        if job.verbose {
            bar.suspend(|| eprintln!("{}: {}", case.identifier, path.display()));
        }
        bar.inc(1);
    });
    bar.finish_and_clear();
    let written = result?;
    let seconds = start.elapsed().as_secs_f64();
    let report = FolderReport {
        cases: written.len(),
        seconds_per_case: seconds / written.len() as f64,
    };
    eprintln!(
        "predicted {} case(s) into {} in {seconds:.1} s ({:.2} s per case)",
        report.cases,
        output.display(),
        report.seconds_per_case
    );
    Ok(report)
}

/// Checks `-num_parts` and `-part_id`.
fn check_parts(args: &Args) -> anyhow::Result<()> {
    if args.num_parts == 0 {
        anyhow::bail!("-num_parts must be at least 1");
    }
    if args.part_id >= args.num_parts {
        anyhow::bail!(
            "-part_id {} must be smaller than -num_parts {} (part IDs count from 0)",
            args.part_id,
            args.num_parts
        );
    }
    Ok(())
}

/// What the model and its previous stage (for a cascade) are loaded with.
struct Loading<'a> {
    /// The folds to average.
    folds: &'a [Fold],
    /// The checkpoint name (`-chk`).
    checkpoint: &'a str,
    /// Where the networks live.
    device: &'a nnunet_core::burn::tensor::Device,
    /// Step size and mirroring.
    settings: &'a PredictorSettings,
}

impl Loading<'_> {
    /// Loads the predictor of `model`.
    fn predictor(&self, ctx: &Context, model: &Path) -> anyhow::Result<Predictor> {
        Ok(Predictor::from_model_folder(
            &ctx.registries,
            model,
            self.folds,
            self.checkpoint,
            self.device,
            self.settings,
        )?)
    }
}

/// Runs `nnunet predict`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    check_parts(&args)?;
    if let Some(threads) = args.threads {
        set_cpu_threads(threads)?;
    }
    let given_model = model_folder(ctx, &args)?;
    let (model, _converted) = usable_model_folder(ctx, &given_model)?;
    let folds = args
        .folds
        .iter()
        .map(|f| Fold::parse(f))
        .collect::<Result<Vec<_>, _>>()?;
    let device = device_from_name(&args.device)?;
    let precision = set_precision(&args.precision, &device)?;
    let settings = PredictorSettings {
        step_size: args.step_size,
        use_mirroring: !args.disable_tta,
        ..Default::default()
    };
    let loading = Loading {
        folds: &folds,
        checkpoint: &args.checkpoint,
        device: &device,
        settings: &settings,
    };
    let predictor = loading.predictor(ctx, &model)?;
    let _ = (args.npp, args.nps, args.not_on_device);
    eprintln!("computing in {precision}");
    if args.dicom {
        if predictor.previous_stage().is_some() {
            anyhow::bail!("--dicom predicts with single-stage models, not a cascade stage");
        }
        return crate::commands::convert_dicom::predict(&predictor, &args.input, &args.output);
    }
    let (previous_stage, _previous_stage_output) =
        previous_stage_input(ctx, &args, &predictor, &given_model, &loading)?;
    eprintln!(
        "model {} (configuration {}, folds {}), {}",
        model.display(),
        predictor.configuration().name,
        predictor
            .folds()
            .iter()
            .map(Fold::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        if settings.use_mirroring {
            "mirroring on"
        } else {
            "mirroring off"
        }
    );
    predict_folder(
        &predictor,
        &FolderJob {
            input: &args.input,
            output: &args.output,
            options: FileOutputOptions {
                save_probabilities: args.save_probabilities,
                visible_labels: args.visible_labels,
            },
            selection: FolderSelection {
                num_parts: args.num_parts,
                part_id: args.part_id,
                continue_prediction: args.continue_prediction,
                previous_stage: previous_stage.as_deref(),
                roi_folder: args.roi_dir.as_deref(),
            },
            show_progress: !args.disable_progress_bar,
            verbose: args.verbose,
        },
    )?;
    Ok(())
}

/// A cascade stage's input: the given previous-stage predictions, or those of the previous
/// stage's model, predicted now into a temporary folder in OUT (returned with the folder's guard).
/// `None` for a model that is not a cascade stage.
fn previous_stage_input(
    ctx: &Context,
    args: &Args,
    predictor: &Predictor,
    given_model: &Path,
    loading: &Loading<'_>,
) -> anyhow::Result<(Option<PathBuf>, Option<tempfile::TempDir>)> {
    match (predictor.previous_stage(), &args.prev_stage_predictions) {
        (None, given) => {
            if given.is_some() {
                eprintln!(
                    "note: -prev_stage_predictions is only used by cascade configurations; '{}' \
                     is not one, so it is ignored",
                    predictor.configuration().name
                );
            }
            Ok((None, None))
        }
        (Some(_), Some(folder)) => {
            if !folder.is_dir() {
                anyhow::bail!(
                    "{}: no such folder (-prev_stage_predictions: the previous stage's \
                     predictions of the input cases)",
                    folder.display()
                );
            }
            Ok((Some(folder.clone()), None))
        }
        (Some(previous), None) => {
            let dir = predict_previous_stage(ctx, args, given_model, previous, loading)?;
            Ok((Some(dir.path().to_path_buf()), Some(dir)))
        }
    }
}

/// Predicts the input cases with the cascade's previous stage `previous` (the model next to
/// `given_model`) into a new temporary folder in OUT.
fn predict_previous_stage(
    ctx: &Context,
    args: &Args,
    given_model: &Path,
    previous: &str,
    loading: &Loading<'_>,
) -> anyhow::Result<tempfile::TempDir> {
    let previous_model = previous_stage_model(given_model, previous)?;
    eprintln!(
        "cascade: predicting the previous stage '{previous}' first with {} (give \
         -prev_stage_predictions to use predictions you have)",
        previous_model.display()
    );
    let (previous_model, _converted_previous) = usable_model_folder(ctx, &previous_model)?;
    let previous_predictor = loading.predictor(ctx, &previous_model)?;
    std::fs::create_dir_all(&args.output)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.output.display()))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!(".prev_stage_{previous}_"))
        .tempdir_in(&args.output)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.output.display()))?;
    predict_folder(
        &previous_predictor,
        &FolderJob {
            input: &args.input,
            output: dir.path(),
            options: FileOutputOptions::default(),
            selection: FolderSelection {
                num_parts: args.num_parts,
                part_id: args.part_id,
                ..Default::default()
            },
            show_progress: !args.disable_progress_bar,
            verbose: args.verbose,
        },
    )?;
    Ok(dir)
}

/// `model` itself, or for an nnunetv2 model folder (checkpoint_*.pth) our conversion of it in a
/// temporary folder that lives as long as the returned guard.
fn usable_model_folder(
    ctx: &Context,
    model: &Path,
) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    if !nnunet_inference::torch_import::is_nnunetv2_model_folder(model) {
        return Ok((model.to_path_buf(), None));
    }
    let dir = tempfile::tempdir()?;
    let report =
        nnunet_inference::torch_import::import_nnunetv2_model(&ctx.registries, model, dir.path())?;
    eprintln!(
        "{}: nnU-Net v2 model, converted ({} checkpoints)",
        model.display(),
        report.checkpoints.len()
    );
    Ok((dir.path().to_path_buf(), Some(dir)))
}

/// The previous stage's model next to a cascade stage's `Trainer__Plans__configuration`
/// folder: `Trainer__Plans__<previous>`.
fn previous_stage_model(model: &Path, previous: &str) -> anyhow::Result<PathBuf> {
    let name = model
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let sibling = match (TrainedModel::from_identifier(name), model.parent()) {
        (Some(this), Some(parent)) => {
            Some(parent.join(this.with_configuration(previous).identifier()))
        }
        _ => None,
    };
    match sibling {
        Some(folder) if folder.is_dir() => Ok(folder),
        _ => anyhow::bail!(
            "{}: a cascade stage needs the previous stage's ('{previous}') prediction of every \
             case; give them with -prev_stage_predictions DIR (predict the cases with the \
             '{previous}' model first), or train '{previous}' with the same trainer and plans \
             next to this model{}",
            model.display(),
            sibling
                .map(|f| format!(" (no {})", f.display()))
                .unwrap_or_default()
        ),
    }
}
