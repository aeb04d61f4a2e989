//! `nnunet`: nnU-Net v2 in one binary.

// The command-line layer is where output is printed (the libraries return it).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod allocator;
mod args;
mod commands;
mod output;
mod progress;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use nnunet_core::Registries;
use nnunet_core::paths::NnunetPaths;

// Link the built-in extension crates so that their registrations are part of this binary.
use nnunet_planners as _;
use nnunet_plugins as _;
use nnunet_training as _;

/// `nnunet --version`: the version and the compute backends compiled in.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (backends: {})",
        env!("CARGO_PKG_VERSION"),
        nnunet_core::device::compiled_backends().join(", ")
    )
});

/// nnU-Net v2 rebuilt in Rust: self-configuring biomedical image segmentation.
///
/// nnU-Net's flag spellings work as in nnU-Net (-tr, -pl, -p, -device, -chk, -np, --c, --npz,
/// underscores in long flags), besides GNU-style long options.
#[derive(Parser, Debug)]
#[command(name = "nnunet", version = VERSION.as_str(), about, long_about = None)]
struct Cli {
    /// Load a plugin (a cdylib built against this nnunet); repeatable. NNUNET_PLUGINS
    /// (`:`-separated) adds more.
    #[arg(long = "plugin", global = true, value_name = "LIBRARY")]
    plugins: Vec<PathBuf>,
    /// Raw datasets folder (default: $nnUNet_raw).
    #[arg(long, global = true, value_name = "DIR")]
    nnunet_raw: Option<PathBuf>,
    /// Preprocessed data folder (default: $nnUNet_preprocessed).
    #[arg(long, global = true, value_name = "DIR")]
    nnunet_preprocessed: Option<PathBuf>,
    /// Results folder (default: $nnUNet_results).
    #[arg(long, global = true, value_name = "DIR")]
    nnunet_results: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the registered trainers, planners, losses, augmentations, readers or architectures.
    List(commands::list::Args),
    /// Describe one registered extension; for a trainer, print the hyperparameters it uses.
    Describe(commands::describe::Args),
    /// Show what nnU-Net sees in an image: reader, shape, spacing, geometry, intensities (for a
    /// folder of DICOM files: its series).
    Info(commands::info::Args),
    /// Show the nnU-Net folders in use and, with -d, where a dataset is.
    Paths(commands::paths::Args),
    /// Show a plugin's descriptor and whether this nnunet can load it.
    PluginInfo(commands::plugin_info::Args),
    /// Create links named like nnU-Net's commands (nnUNetv2_train, …) to this binary.
    LinkCommands(commands::link_commands::Args),
    /// Check a raw dataset (dataset.json, files, labels, shapes, geometry) and list every problem;
    /// with --dicom, check that every DICOM series under a folder reads as a volume.
    Verify(commands::verify::Args),
    /// Convert a Medical Segmentation Decathlon task (TaskXX_Name) into a v2 dataset.
    ConvertMsd(commands::convert_msd::Args),
    /// Convert a folder of images and masks (one folder per case, or image and mask folders)
    /// into a v2 dataset with its dataset.json.
    ConvertFolder(commands::convert_folder::Args),
    /// Turn new images (any naming, colour or not) into a prediction input folder
    /// (CASE_0000.png per image).
    ConvertImages(commands::convert_images::Args),
    /// Convert every DICOM image series under a folder into NIfTI (SERIES.nii.gz) with a JSON
    /// side file (series UID, modality, description).
    ConvertDicom(commands::convert_dicom::Args),
    /// Write a generated example dataset (2D PNG or 3D NIfTI) into nnUNet_raw.
    MakeExampleDataset(commands::make_example_dataset::Args),
    /// Extract the dataset fingerprint (shapes, spacings, intensities) from a raw dataset.
    ExtractFingerprint(commands::extract_fingerprint::Args),
    /// Plan the experiment (configurations, patch and batch sizes, networks) from the fingerprint.
    Plan(commands::plan::Args),
    /// Preprocess the training cases for the configurations of a plans file.
    Preprocess(commands::preprocess::Args),
    /// Fingerprint, plan and preprocess a dataset in one go.
    PlanAndPreprocess(commands::plan_and_preprocess::Args),
    /// Copy a dataset's plans to another dataset (same topology, e.g. for fine-tuning).
    MovePlans(commands::move_plans::Args),
    /// Measure how fast a trainer's training data pipeline makes batches (batches/s).
    BenchmarkDataloader(commands::benchmark_dataloader::Args),
    /// Write the cross-validation folds (splits_final.json), over groups of cases with --group-by.
    MakeSplits(commands::make_splits::Args),
    /// Train one fold of a configuration (nnUNetv2_train), then validate it.
    Train(commands::train::Args),
    /// Predict new images with a trained model (nnUNetv2_predict), in the input's geometry.
    Predict(commands::predict::Args),
    /// Run nnU-Net end to end on a small generated dataset: data, plans, training, prediction,
    /// Dice.
    Demo(commands::demo::Args),
    /// Evaluate predicted segmentations against the reference with a dataset's labels, regions
    /// and ignore label; writes nnU-Net's summary.json (Dice, IoU, TP/FP/FN/TN per case and mean).
    Evaluate(commands::evaluate::Args),
    /// Evaluate predicted segmentations against the reference for the labels given with -l.
    EvaluateSimple(commands::evaluate::SimpleArgs),
    /// Pick the best configuration (or ensemble of two) from the cross-validation, determine its
    /// postprocessing and write the inference instructions.
    FindBestConfig(commands::find_best_config::Args),
    /// Average the probabilities (.npz) of several folders of predictions into segmentations.
    Ensemble(commands::ensemble::Args),
    /// Decide whether keeping only the largest connected component improves the Dice; writes
    /// postprocessing.json.
    DeterminePostprocessing(commands::postprocessing::DetermineArgs),
    /// Apply a postprocessing.json to a folder of segmentations.
    ApplyPostprocessing(commands::postprocessing::ApplyArgs),
    /// Write PNG overlays of segmentations on their images, one per case.
    PlotOverlay(commands::plot_overlay::Args),
    /// Convert a model trained with nnU-Net v2 (PyTorch .pth checkpoints) into an nnunet-rs model
    /// folder, reading the checkpoints without running code from them.
    ImportTorchCheckpoint(commands::import_torch_checkpoint::Args),
    /// Pack trained models into a ZIP file to share (nnUNetv2_export_model_to_zip).
    ExportModel(commands::export_model::Args),
    /// Install a model ZIP file into nnUNet_results, checking every entry first
    /// (nnUNetv2_install_pretrained_model_from_zip).
    InstallModel(commands::install_model::Args),
}

/// Shared state of a run: the folders and the registries with the plugins loaded.
pub struct Context {
    /// The nnU-Net folders (raw, preprocessed, results).
    pub paths: NnunetPaths,
    /// The registered extensions, plugins included.
    pub registries: Registries,
}

/// Parses `argv` (nnU-Net spellings and command links included), loads the plugins and runs
/// the command.
fn run(argv: Vec<OsString>) -> anyhow::Result<()> {
    let mut argv = argv;
    let argv0 = argv.first().cloned().unwrap_or_else(|| "nnunet".into());
    if let args::Invocation::Subcommand(sub) = args::invocation(argv0.as_ref()) {
        let exists = Cli::command()
            .get_subcommands()
            .any(|c| c.get_name() == sub);
        if !exists {
            anyhow::bail!(
                "{} is nnU-Net's command for `nnunet {sub}`, which this version of nnunet-rs does \
                 not have yet (see `nnunet --help` for the commands it has)",
                PathBuf::from(&argv0).display()
            );
        }
        argv.insert(1, sub.into());
    }
    let cli = Cli::parse_from(args::normalize(argv));
    if matches!(
        cli.command,
        Command::Train(_) | Command::Predict(_) | Command::Demo(_)
    ) {
        allocator::keep_freed_memory();
    }
    let mut registries = Registries::builtin()?;
    let mut plugin_paths = nnunet_core::plugin::paths_from_env();
    plugin_paths.extend(cli.plugins.iter().cloned());
    for path in &plugin_paths {
        nnunet_core::plugin::load(path, &mut registries)?;
    }
    let ctx = Context {
        paths: NnunetPaths::new(cli.nnunet_raw, cli.nnunet_preprocessed, cli.nnunet_results),
        registries,
    };
    match cli.command {
        Command::List(a) => commands::list::run(&ctx, a),
        Command::Describe(a) => commands::describe::run(&ctx, a),
        Command::Info(a) => commands::info::run(&ctx, a),
        Command::Paths(a) => commands::paths::run(&ctx, a),
        Command::PluginInfo(a) => commands::plugin_info::run(a),
        Command::LinkCommands(a) => commands::link_commands::run(a, &Cli::command()),
        Command::Verify(a) => commands::verify::run(&ctx, a),
        Command::ConvertMsd(a) => commands::convert_msd::run(&ctx, a),
        Command::ConvertFolder(a) => commands::convert_folder::run(&ctx, a),
        Command::ConvertImages(a) => commands::convert_images::run(a),
        Command::ConvertDicom(a) => commands::convert_dicom::run(&ctx, a),
        Command::MakeExampleDataset(a) => commands::make_example_dataset::run(&ctx, a),
        Command::ExtractFingerprint(a) => commands::extract_fingerprint::run(&ctx, a),
        Command::Plan(a) => commands::plan::run(&ctx, a),
        Command::Preprocess(a) => commands::preprocess::run(&ctx, a),
        Command::PlanAndPreprocess(a) => commands::plan_and_preprocess::run(&ctx, a),
        Command::MovePlans(a) => commands::move_plans::run(&ctx, a),
        Command::BenchmarkDataloader(a) => commands::benchmark_dataloader::run(&ctx, a),
        Command::MakeSplits(a) => commands::make_splits::run(&ctx, a),
        Command::Train(a) => commands::train::run(&ctx, a),
        Command::Predict(a) => commands::predict::run(&ctx, a),
        Command::Demo(a) => commands::demo::run(&ctx, a),
        Command::Evaluate(a) => commands::evaluate::run(&ctx, a),
        Command::EvaluateSimple(a) => commands::evaluate::run_simple(&ctx, a),
        Command::FindBestConfig(a) => commands::find_best_config::run(&ctx, a),
        Command::Ensemble(a) => commands::ensemble::run(&ctx, a),
        Command::DeterminePostprocessing(a) => commands::postprocessing::run_determine(&ctx, a),
        Command::ApplyPostprocessing(a) => commands::postprocessing::run_apply(&ctx, a),
        Command::PlotOverlay(a) => commands::plot_overlay::run(&ctx, a),
        Command::ImportTorchCheckpoint(a) => commands::import_torch_checkpoint::run(&ctx, a),
        Command::ExportModel(a) => commands::export_model::run(&ctx, a),
        Command::InstallModel(a) => commands::install_model::run(&ctx, a),
    }
}

/// The error and its causes as one line, each part once: a cause whose text its message already
/// holds (an I/O error named in the message of the error it caused) is not repeated.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

/// Runs the command line and prints an error with its causes.
fn main() -> ExitCode {
    match run(std::env::args_os().collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_os_error_is_printed_once() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let error = anyhow::Error::from(nnunet_core::Error::io("/data/x.png", source));
        assert_eq!(error_text(&error), "/data/x.png: No such file or directory");
        let error = error.context("cannot read the images");
        assert_eq!(
            error_text(&error),
            "cannot read the images: /data/x.png: No such file or directory"
        );
    }
}
