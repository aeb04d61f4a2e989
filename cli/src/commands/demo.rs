//! `nnunet demo [--3d] [--dataset-id 999] [--root DIR] [--keep]`: the whole of nnU-Net on a small
//! generated dataset in one command: make the dataset, fingerprint, plan and preprocess it, train
//! fold 0 on a short schedule and validate it (`fold_0/validation/`, as `nnunet train` does),
//! predict the test cases (`imagesTs`) and score them against `labelsTs`, printing the Dice per
//! label, one prediction time per case and where everything is.
//!
//! It works in a fresh folder (a new temporary folder, or `--root DIR`) with `nnUNet_raw`,
//! `nnUNet_preprocessed` and `nnUNet_results` under it, unless those folders are given with
//! `--nnunet-raw`/`--nnunet-preprocessed`/`--nnunet-results` (the environment variables are not
//! used, so that the demo never writes into a real set-up). A temporary folder is removed at the
//! end unless `--keep` is given; a `--root` folder is kept.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nnunet_core::Registries;
use nnunet_core::paths::NnunetPaths;
use nnunet_dataset::DatasetJson;
use nnunet_dataset::choose_reader;
use nnunet_evaluation::metrics::{FolderEvaluation, Summary, evaluate_folders, evaluation_targets};
use nnunet_inference::predictor::{
    FileOutputOptions, FolderSelection, Predictor, PredictorSettings,
};
use nnunet_pipeline::setup::{RunRequest, ScheduleOverrides, prepare_run};
use nnunet_pipeline::validation::{ValidationResult, validate_fold};
use nnunet_plugins::synthetic::{SyntheticSpec, write_synthetic_dataset};
use nnunet_training::run::checkpoint_path;
use nnunet_training::splits::Fold;

use crate::Context;
use crate::commands::{extract_fingerprint, plan, predict, preprocess};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A 3D NIfTI dataset and the 3d_fullres configuration (default: 2D PNG, 2d).
    #[arg(long = "3d")]
    three_d: bool,
    /// Dataset ID of the generated dataset.
    #[arg(long = "dataset-id", default_value_t = 999)]
    dataset_id: u32,
    /// Folder to work in (default: a new temporary folder).
    #[arg(long = "root", value_name = "DIR")]
    root: Option<PathBuf>,
    /// Keep the temporary folder (a --root folder is always kept).
    #[arg(long = "keep")]
    keep: bool,
    /// Training cases to generate (default 10).
    #[arg(long = "cases")]
    cases: Option<usize>,
    /// Test cases to generate, predict and score (default 4).
    #[arg(long = "test-cases")]
    test_cases: Option<usize>,
    /// Training epochs (default 8).
    #[arg(long = "epochs")]
    epochs: Option<usize>,
    /// Training iterations per epoch (default 15 in 2D, 10 in 3D).
    #[arg(long = "iterations-per-epoch")]
    iterations_per_epoch: Option<usize>,
    /// A shorter schedule (4 epochs of 8 iterations, 6 training cases): a quick check that
    /// everything works, with a lower Dice.
    #[arg(long = "quick")]
    quick: bool,
    /// CPU threads for the network (default: all cores).
    #[arg(long = "threads")]
    threads: Option<usize>,
}

/// A folder the user gave with a flag (set in the context but not taken from the environment).
fn given_by_flag(set: Option<&Path>, var: &str) -> Option<PathBuf> {
    let set = set?;
    match std::env::var_os(var) {
        Some(v) if Path::new(&v) == set => None,
        _ => Some(set.to_path_buf()),
    }
}

/// Creates a new folder `nnunet-demo-<pid>-<milliseconds>` in the temporary folder.
fn new_temporary_root() -> anyhow::Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let root = std::env::temp_dir().join(format!("nnunet-demo-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(|e| anyhow::anyhow!("{}: {e}", root.display()))?;
    Ok(root)
}

/// Prints the heading of step `number` of 5.
fn step(number: usize, text: &str) {
    eprintln!("\n[{number}/5] {text}");
}

/// Runs `nnunet demo`: sets up the folders, runs the steps, prints the report and removes a
/// temporary folder unless it is kept.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    if let Some(threads) = args.threads {
        nnunet_core::device::set_cpu_threads(threads)?;
    }
    let temporary = args.root.is_none();
    let root = match &args.root {
        Some(r) => {
            std::fs::create_dir_all(r).map_err(|e| anyhow::anyhow!("{}: {e}", r.display()))?;
            r.clone()
        }
        None => new_temporary_root()?,
    };
    let folder = |given: Option<PathBuf>, name: &str| given.unwrap_or_else(|| root.join(name));
    let raw = folder(
        given_by_flag(ctx.paths.raw().ok(), "nnUNet_raw"),
        "nnUNet_raw",
    );
    let preprocessed = folder(
        given_by_flag(ctx.paths.preprocessed().ok(), "nnUNet_preprocessed"),
        "nnUNet_preprocessed",
    );
    let results = folder(
        given_by_flag(ctx.paths.results().ok(), "nnUNet_results"),
        "nnUNet_results",
    );
    for dir in [&raw, &preprocessed, &results] {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    }
    let demo = Context {
        paths: NnunetPaths::new(
            Some(raw.clone()),
            Some(preprocessed.clone()),
            Some(results.clone()),
        ),
        registries: Registries::builtin()?,
    };
    let outcome = run_steps(&demo, &args, &root);
    let seconds = start.elapsed().as_secs_f64();
    match outcome {
        Ok(report) => {
            println!("{report}");
            println!("demo finished in {seconds:.0} s");
            if temporary && !args.keep {
                std::fs::remove_dir_all(&root)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", root.display()))?;
                println!(
                    "removed {} (run with --keep, or --root DIR, to keep the files)",
                    root.display()
                );
            } else {
                println!("everything is in {}", root.display());
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("the demo's files are in {}", root.display());
            Err(e)
        }
    }
}

/// What the demo does, from its arguments: the dataset to generate and the training schedule.
struct Plan {
    /// The generated dataset.
    spec: SyntheticSpec,
    /// `2d` or `3d_fullres`.
    configuration: &'static str,
    /// Training epochs.
    epochs: usize,
    /// Training iterations per epoch.
    iterations: usize,
    /// The dataset ID as text.
    id: String,
}

impl Plan {
    /// The demo's dataset and schedule from `args` (the defaults, `--quick` and the overrides);
    /// too few cases are an error.
    fn from_args(args: &Args) -> anyhow::Result<Self> {
        let mut spec = if args.three_d {
            SyntheticSpec::small_3d(args.dataset_id)
        } else {
            SyntheticSpec::small_2d(args.dataset_id)
        };
        spec.test_cases = 4;
        if args.quick {
            spec.cases = 6;
        }
        if let Some(n) = args.cases {
            spec.cases = n;
        }
        if let Some(n) = args.test_cases {
            spec.test_cases = n;
        }
        if spec.cases < 5 {
            anyhow::bail!("--cases must be at least 5 (fold 0 of a 5-fold split)");
        }
        if spec.test_cases < 1 {
            anyhow::bail!("--test-cases must be at least 1");
        }
        let (default_epochs, default_iterations) = match (args.quick, args.three_d) {
            (true, _) => (4, 8),
            (false, false) => (8, 15),
            (false, true) => (8, 10),
        };
        Ok(Plan {
            spec,
            configuration: if args.three_d { "3d_fullres" } else { "2d" },
            epochs: args.epochs.unwrap_or(default_epochs),
            iterations: args.iterations_per_epoch.unwrap_or(default_iterations),
            id: args.dataset_id.to_string(),
        })
    }
}

/// What training and validating fold 0 gave.
struct Trained {
    /// The dataset's folder name (`DatasetXXX_Name`).
    name: String,
    /// `…/fold_0`.
    fold_folder: PathBuf,
    /// The model folder (`Trainer__Plans__configuration`).
    model_folder: PathBuf,
    /// The validation of fold 0.
    validation: ValidationResult,
}

/// Runs the five steps of the demo in the folders of `ctx`, predictions going to
/// `root/predictions`; returns the report to print.
fn run_steps(ctx: &Context, args: &Args, root: &Path) -> anyhow::Result<String> {
    let plan = Plan::from_args(args)?;
    let raw_folder = write_dataset(ctx, &plan, args.three_d)?;
    let plans_name = plan_and_preprocess(ctx, &plan)?;
    let trained = train_fold_0(ctx, &plan, &plans_name)?;
    let predictions = root.join("predictions");
    let predicted = predict_test_cases(ctx, &plan, &raw_folder, &trained, &predictions)?;
    step(
        5,
        "scoring the predictions against labelsTs (nnunet evaluate), written to summary.json",
    );
    let dataset_json = DatasetJson::from_file(&raw_folder.join("dataset.json"))?;
    let scores = score(ctx, &dataset_json, &raw_folder, &predictions)?;
    let summary_file = predictions.join("summary.json");
    scores.write_json(&summary_file)?;
    let mut report = dice_report(&plan, &dataset_json, &scores, &trained, predicted.cases);
    report.push_str(&format!(
        "\nprediction: {:.2} s per case\nwhere everything is:\n  raw dataset       {}\n  \
         preprocessed      {}\n  trained model     {}\n  validation        {}\n  predictions       \
         {}\n  scores            {}",
        predicted.seconds_per_case,
        raw_folder.display(),
        ctx.paths.preprocessed()?.join(&trained.name).display(),
        trained.model_folder.display(),
        trained
            .validation
            .summary_file
            .parent()
            .unwrap_or(&trained.fold_folder)
            .display(),
        predictions.display(),
        summary_file.display()
    ));
    Ok(report)
}

/// Step 1: writes the generated dataset into the raw folder; returns its folder.
fn write_dataset(ctx: &Context, plan: &Plan, three_d: bool) -> anyhow::Result<PathBuf> {
    let t = Instant::now();
    step(
        1,
        &format!(
            "writing a generated dataset: {} training and {} test cases, {} (a bright ellipse, \
             label 1, and a dark box, label 2, in noise)",
            plan.spec.cases,
            plan.spec.test_cases,
            if three_d {
                "3D NIfTI volumes"
            } else {
                "2D PNG images"
            }
        ),
    );
    let raw_folder = write_synthetic_dataset(ctx.paths.raw()?, &plan.spec)?;
    eprintln!(
        "  {} ({:.1} s)",
        raw_folder.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(raw_folder)
}

/// Step 2: fingerprint, plans and preprocessing of the demo's configuration; returns the plans'
/// name.
fn plan_and_preprocess(ctx: &Context, plan: &Plan) -> anyhow::Result<String> {
    let t = Instant::now();
    let (id, configuration) = (&plan.id, plan.configuration);
    step(
        2,
        &format!(
            "fingerprint, plans and preprocessing of the {configuration} configuration \
             (nnunet plan-and-preprocess -d {id} -c {configuration})"
        ),
    );
    extract_fingerprint::fingerprint_dataset(
        ctx,
        id,
        None,
        &extract_fingerprint::FingerprintOptions {
            verify_dataset_integrity: false,
            clean: false,
            extractor: "DatasetFingerprintExtractor".into(),
        },
    )?;
    let plans_name = plan::plan_dataset(
        ctx,
        id,
        &plan::PlanOptions {
            planner: "ExperimentPlanner".into(),
            gpu_memory_target: None,
            preprocessor_name: "DefaultPreprocessor".into(),
            overwrite_target_spacing: None,
            overwrite_plans_name: None,
        },
    )?;
    preprocess::preprocess(
        ctx,
        id,
        &plans_name,
        &preprocess::PreprocessOptions {
            configurations: vec![configuration.into()],
            num_processes: Vec::new(),
        },
    )?;
    eprintln!("  done in {:.1} s", t.elapsed().as_secs_f64());
    Ok(plans_name)
}

/// Step 3: trains fold 0 with `nnUNetTrainer` on the demo's schedule and validates it.
fn train_fold_0(ctx: &Context, plan: &Plan, plans_name: &str) -> anyhow::Result<Trained> {
    let t = Instant::now();
    let (id, configuration, epochs, iterations) =
        (&plan.id, plan.configuration, plan.epochs, plan.iterations);
    step(
        3,
        &format!(
            "training fold 0 with nnUNetTrainer for {epochs} epochs of {iterations} iterations \
             (nnunet train {id} {configuration} 0 --epochs {epochs} --iterations-per-epoch \
             {iterations}; nnU-Net trains 1000 epochs of 250)"
        ),
    );
    let name = ctx.paths.dataset_name(id)?;
    let request = RunRequest {
        preprocessed_folder: ctx.paths.preprocessed()?.join(&name),
        results_folder: ctx.paths.results()?.join(&name),
        configuration: configuration.into(),
        fold: Fold::Index(0),
        trainer: "nnUNetTrainer".into(),
        plans_identifier: plans_name.to_string(),
        overrides: ScheduleOverrides {
            epochs: Some(epochs),
            iterations_per_epoch: Some(iterations),
            val_iterations_per_epoch: Some(2),
            initial_lr: None,
        },
        continue_training: false,
        pretrained_weights: None,
        device: nnunet_core::device::device_from_name("cpu")?,
        seed: 12345,
        num_workers: 1,
        show_progress: true,
        checkpoint_interval: None,
    };
    let (mut run, state) = prepare_run(&ctx.registries, &request)?;
    let fold_folder = run.output_folder.clone();
    let summary = run.train(state, None)?;
    drop(run);
    eprintln!(
        "  {} epochs in {:.0} s, best EMA pseudo Dice {}; validating fold 0 into {}",
        summary.epochs_completed,
        t.elapsed().as_secs_f64(),
        summary
            .best_ema
            .map_or_else(|| "-".to_string(), |d| format!("{d:.3}")),
        fold_folder.join("validation").display()
    );
    let validation = validate_fold(
        &ctx.registries,
        &request,
        &checkpoint_path(&fold_folder, "checkpoint_final"),
        false,
    )?;
    let model_folder = fold_folder
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{}: no model folder", fold_folder.display()))?
        .to_path_buf();
    Ok(Trained {
        name,
        fold_folder,
        model_folder,
        validation,
    })
}

/// Step 4: predicts the test cases (`imagesTs`) with fold 0 into `predictions`.
fn predict_test_cases(
    ctx: &Context,
    plan: &Plan,
    raw_folder: &Path,
    trained: &Trained,
    predictions: &Path,
) -> anyhow::Result<predict::FolderReport> {
    let t = Instant::now();
    step(
        4,
        &format!(
            "predicting the {} test cases (nnunet predict -i {} -o {} -d {} -c {} -f 0)",
            plan.spec.test_cases,
            raw_folder.join("imagesTs").display(),
            predictions.display(),
            plan.id,
            plan.configuration
        ),
    );
    let device = nnunet_core::device::device_from_name("cpu")?;
    let predictor = Predictor::from_model_folder(
        &ctx.registries,
        &trained.model_folder,
        &[Fold::Index(0)],
        "checkpoint_final",
        &device,
        &PredictorSettings::default(),
    )?;
    let predicted = predict::predict_folder(
        &predictor,
        &predict::FolderJob {
            input: &raw_folder.join("imagesTs"),
            output: predictions,
            options: FileOutputOptions::default(),
            selection: FolderSelection {
                num_parts: 1,
                ..Default::default()
            },
            show_progress: true,
            verbose: false,
        },
    )?;
    eprintln!(
        "  done in {:.1} s with loading the model",
        t.elapsed().as_secs_f64()
    );
    Ok(predicted)
}

/// Step 5: scores the predictions against `labelsTs`.
fn score(
    ctx: &Context,
    dataset_json: &DatasetJson,
    raw_folder: &Path,
    predictions: &Path,
) -> anyhow::Result<Summary> {
    let reader = choose_reader(&ctx.registries, dataset_json, None)?.create();
    let regions = evaluation_targets(&dataset_json.labels);
    Ok(evaluate_folders(
        &FolderEvaluation {
            reference_folder: &raw_folder.join("labelsTs"),
            prediction_folder: predictions,
            file_ending: &dataset_json.file_ending,
            regions: &regions,
            ignore_label: dataset_json.labels.ignore_label(),
            num_processes: 0,
            chill: false,
        },
        reader.as_ref(),
    )?)
}

/// The report's Dice lines: per label, the mean foreground Dice of the test cases and of fold 0's
/// validation.
fn dice_report(
    plan: &Plan,
    dataset_json: &DatasetJson,
    scores: &Summary,
    trained: &Trained,
    cases: usize,
) -> String {
    let mut report = String::new();
    report.push_str(&format!(
        "\nDice on the {cases} test cases ({}, fold 0, {} epochs of {} iterations):\n",
        plan.configuration, plan.epochs, plan.iterations
    ));
    for (region, metrics) in &scores.mean {
        let label_name = dataset_json.labels.name_of(region.labels()).unwrap_or("");
        report.push_str(&format!(
            "  label {region} ({label_name}): Dice {:.4}\n",
            metrics.dice
        ));
    }
    report.push_str(&format!(
        "  mean foreground Dice: {:.4}\n",
        scores.foreground_mean.dice
    ));
    report.push_str(&format!(
        "  fold 0's validation cases: mean foreground Dice {:.4}\n",
        trained.validation.foreground_mean_dice
    ));
    report
}
