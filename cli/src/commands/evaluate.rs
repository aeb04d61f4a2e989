//! `nnunet evaluate GT PRED -djfile dataset.json -pfile plans.json` and
//! `nnunet evaluate-simple GT PRED -l 1 2 …`: nnU-Net's `nnUNetv2_evaluate_folder` and
//! `nnUNetv2_evaluate_simple`. Each writes nnU-Net's `summary.json` (default
//! `PRED/summary.json`) and prints the mean foreground Dice and the Dice of every label or region.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use nnunet_core::DatasetJson;
use nnunet_core::dataset::{choose_reader, choose_reader_for};
use nnunet_core::evaluation::{
    LabelOrRegion, Summary, evaluate_pairs, evaluation_targets, pair_files,
};
use nnunet_core::io::Reader;
use nnunet_core::plans::Plans;

use crate::Context;

/// Options both commands share.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// Folder with the reference (ground truth) segmentations.
    gt_folder: PathBuf,
    /// Folder with the predicted segmentations (matched to the reference by file name).
    pred_folder: PathBuf,
    /// Output file (must end with .json). Default: PRED_FOLDER/summary.json.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Worker threads (default: the number of CPU cores).
    #[arg(long = "num-processes", value_name = "N")]
    num_processes: Option<usize>,
    /// Evaluate only the cases that have a prediction instead of failing when some are missing.
    #[arg(long)]
    chill: bool,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// The dataset's dataset.json (labels, regions, ignore label, file ending, reader).
    #[arg(long = "djfile", value_name = "FILE")]
    djfile: PathBuf,
    /// The plans file the predictions were made with.
    #[arg(long = "pfile", value_name = "FILE")]
    pfile: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct SimpleArgs {
    #[command(flatten)]
    common: Common,
    /// Labels to evaluate.
    #[arg(short = 'l', long = "labels", num_args = 1.., required = true, allow_negative_numbers = true)]
    labels: Vec<i64>,
    /// Ignore label: voxels with it in the reference are not counted.
    #[arg(
        long = "il",
        visible_alias = "ignore-label",
        value_name = "LABEL",
        allow_negative_numbers = true
    )]
    ignore_label: Option<i64>,
}

/// The sorted names of the files in `folder` (those ending with `ending`, if given).
fn sorted_files(folder: &Path, ending: Option<&str>) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(folder)
        .with_context(|| format!("{}: cannot read the folder", folder.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry =
            entry.with_context(|| format!("{}: cannot read the folder", folder.display()))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_file() && ending.is_none_or(|e| name.ends_with(e)) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// `nnunet evaluate`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let dataset_json = DatasetJson::from_file(&args.djfile)?;
    // nnU-Net reads the plans only for the label manager; reading them checks they are plans.
    Plans::from_file(&args.pfile)?;
    let ending = dataset_json.file_ending.clone();
    let example = sorted_files(&args.common.gt_folder, Some(&ending))?
        .into_iter()
        .next()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no reference segmentations (files ending with '{ending}', the file_ending of {})",
                args.common.gt_folder.display(),
                args.djfile.display()
            )
        })?;
    let reader = choose_reader(&ctx.registries, &dataset_json, Some(&example))?.create();
    let targets = evaluation_targets(&dataset_json.labels);
    evaluate(
        &args.common,
        reader.as_ref(),
        &ending,
        &targets,
        dataset_json.labels.ignore_label(),
    )
}

/// The file ending of `file` for matching files: the longest ending a registered reader handles
/// (`.nii.gz`), or else its last extension.
fn file_ending_of(ctx: &Context, file: &Path) -> String {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match super::plot_overlay::known_ending(ctx, &name) {
        Some(e) => e,
        None => file
            .extension()
            .map(|x| format!(".{}", x.to_string_lossy()))
            .unwrap_or_default(),
    }
}

/// `nnunet evaluate-simple`.
pub fn run_simple(ctx: &Context, args: SimpleArgs) -> anyhow::Result<()> {
    let example = sorted_files(&args.common.gt_folder, None)?
        .into_iter()
        .next()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: the folder holds no files (the reference segmentations)",
                args.common.gt_folder.display()
            )
        })?;
    let ending = file_ending_of(ctx, &example);
    let reader = choose_reader_for(&ctx.registries, None, &ending, Some(&example))?.create();
    let targets: Vec<LabelOrRegion> = args
        .labels
        .iter()
        .map(|&l| LabelOrRegion::Label(l))
        .collect();
    evaluate(
        &args.common,
        reader.as_ref(),
        &ending,
        &targets,
        args.ignore_label,
    )
}

fn evaluate(
    common: &Common,
    reader: &dyn Reader,
    ending: &str,
    targets: &[LabelOrRegion],
    ignore_label: Option<i64>,
) -> anyhow::Result<()> {
    let output = common
        .output
        .clone()
        .unwrap_or_else(|| common.pred_folder.join("summary.json"));
    if !output.to_string_lossy().ends_with(".json") {
        anyhow::bail!("{}: the output file must end with .json", output.display());
    }
    let pairs = pair_files(&common.gt_folder, &common.pred_folder, ending, common.chill)?;
    let num_processes = common
        .num_processes
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if num_processes == 0 {
        anyhow::bail!("-np must be at least 1");
    }
    let bar = crate::progress::bar(pairs.len(), "evaluating");
    let summary = evaluate_pairs(
        &pairs,
        reader,
        targets,
        ignore_label,
        num_processes,
        &|| bar.inc(1),
    );
    bar.finish_and_clear();
    let summary = summary?;
    summary.write_json(&output)?;
    print_summary(&summary, &output)
}

fn print_summary(summary: &Summary, output: &Path) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let cases = summary.metric_per_case.len();
    crate::output::line(
        &mut out,
        format_args!(
            "{cases} case{} evaluated, summary written to {}",
            if cases == 1 { "" } else { "s" },
            output.display()
        ),
    )?;
    for (region, mean) in &summary.mean {
        crate::output::line(
            &mut out,
            format_args!(
                "Dice of {region}: {}",
                format_dice(mean.dice, "it is in no case's reference or prediction")
            ),
        )?;
    }
    crate::output::line(
        &mut out,
        format_args!(
            "mean foreground Dice: {}",
            format_dice(
                summary.foreground_mean.dice,
                "some label or region is in no case's reference or prediction"
            )
        ),
    )
}

fn format_dice(dice: f64, why_nan: &str) -> String {
    if dice.is_nan() {
        format!("NaN ({why_nan})")
    } else {
        format!("{dice:.4}")
    }
}
