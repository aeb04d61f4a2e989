//! `nnunet evaluate GT PRED -djfile dataset.json -pfile plans.json` and
//! `nnunet evaluate-simple GT PRED -l 1 2 …`: nnU-Net's `nnUNetv2_evaluate_folder` and
//! `nnUNetv2_evaluate_simple`. Each writes nnU-Net's `summary.json` (default
//! `PRED/summary.json`) and prints the mean foreground Dice and the Dice of every label or region
//! (`evaluate` with the label names of `dataset.json`; `evaluate-simple` also per case).
//!
//! Values in a file that are not labels of `dataset.json` (for `evaluate-simple`: values that are
//! only the visible values of the `-l` labels, such as a 0/255 mask for `-l 1`) are an error naming
//! the file and the values; `--visible-labels` reads files written by `nnunet predict
//! --visible-labels` (and 0/255 masks) back as labels.
//! `--roi-dir DIR` scores only inside each case's region of interest (`DIR/CASE.ending`, nonzero
//! inside). `evaluate-simple --label-suffix _1stHO` pairs the prediction `CASE.png` with the
//! reference `CASE_1stHO.png`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use nnunet_core::io::Reader;
use nnunet_dataset::DatasetJson;
use nnunet_dataset::{choose_reader, choose_reader_for};
use nnunet_evaluation::metrics::{
    LabelOrRegion, Scoring, Summary, ValueCheck, evaluate_pairs, evaluation_targets, pair_files,
    with_rois,
};
use nnunet_preprocessing::plans::Plans;

use crate::Context;

/// Options both commands share.
#[derive(clap::Args, Debug)]
pub(crate) struct Common {
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
    /// Evaluate only the cases that have both a prediction and a reference instead of failing
    /// when some are missing (a test folder's image-only cases have no reference).
    #[arg(long)]
    chill: bool,
    /// Score only inside each case's region of interest: DIR/CASE.ending, nonzero inside (e.g.
    /// the roisTs folder `convert-folder --roi-name` writes).
    #[arg(long = "roi-dir", value_name = "DIR")]
    roi_dir: Option<PathBuf>,
    /// What a region of interest's name adds to the case name (CASE.png -> CASE_mask.png).
    #[arg(long = "roi-suffix", default_value = "", requires = "roi_dir")]
    roi_suffix: String,
    /// Read files holding the values `nnunet predict --visible-labels` writes (a binary mask as
    /// 0/255) back as labels.
    #[arg(long = "visible-labels")]
    visible_labels: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
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
pub(crate) struct SimpleArgs {
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
    /// What a reference's name adds to its prediction's name (prediction Image_01L.png, reference
    /// Image_01L_1stHO.png: --label-suffix _1stHO).
    #[arg(long = "label-suffix", default_value = "")]
    label_suffix: String,
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
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
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
    let labels = &dataset_json.labels;
    let scoring = Scoring {
        regions: evaluation_targets(labels),
        ignore_label: labels.ignore_label(),
        values: Some(ValueCheck {
            allowed: labels.expected_values(),
            labels_from: args.djfile.display().to_string(),
            highest: labels.all_labels().last().copied().unwrap_or(1),
            map_visible: args.common.visible_labels,
            strict: true,
        }),
    };
    let summary = evaluate(&args.common, reader.as_ref(), &ending, "", &scoring)?;
    let name = |region: &LabelOrRegion| match labels.name_of(region.labels()) {
        Some(name) => format!("{region} ({name})"),
        None => region.to_string(),
    };
    print_summary(&summary, &output_file(&args.common), &name, false)
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
pub(crate) fn run_simple(ctx: &Context, args: SimpleArgs) -> anyhow::Result<()> {
    let example = sorted_files(&args.common.pred_folder, None)?
        .into_iter()
        .find(|f| f.extension().is_some_and(|x| x != "json" && x != "npz"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: the folder holds no segmentation files (the predictions)",
                args.common.pred_folder.display()
            )
        })?;
    let ending = file_ending_of(ctx, &example);
    let reader = choose_reader_for(&ctx.registries, None, &ending, Some(&example))?.create();
    let mut allowed: Vec<i64> = std::iter::once(0)
        .chain(args.labels.iter().copied())
        .chain(args.ignore_label)
        .collect();
    allowed.sort_unstable();
    allowed.dedup();
    let scoring = Scoring {
        regions: args
            .labels
            .iter()
            .map(|&l| LabelOrRegion::Label(l))
            .collect(),
        ignore_label: args.ignore_label,
        values: Some(ValueCheck {
            allowed,
            labels_from: "-l".into(),
            highest: args.labels.iter().copied().max().unwrap_or(1),
            map_visible: args.common.visible_labels,
            strict: false,
        }),
    };
    let summary = evaluate(
        &args.common,
        reader.as_ref(),
        &ending,
        &args.label_suffix,
        &scoring,
    )?;
    print_summary(
        &summary,
        &output_file(&args.common),
        &LabelOrRegion::to_string,
        true,
    )
}

/// Where the summary goes: `-o`, or `PRED_FOLDER/summary.json`.
fn output_file(common: &Common) -> PathBuf {
    common
        .output
        .clone()
        .unwrap_or_else(|| common.pred_folder.join("summary.json"))
}

/// Scores the predictions against the references (pairs of files with `ending`, the
/// references with `reference_suffix`) and writes the summary file.
fn evaluate(
    common: &Common,
    reader: &dyn Reader,
    ending: &str,
    reference_suffix: &str,
    scoring: &Scoring,
) -> anyhow::Result<Summary> {
    let output = output_file(common);
    if !output.to_string_lossy().ends_with(".json") {
        anyhow::bail!("{}: the output file must end with .json", output.display());
    }
    let mut cases = pair_files(
        &common.gt_folder,
        &common.pred_folder,
        ending,
        reference_suffix,
        common.chill,
        common.chill,
    )?;
    let predictions = sorted_files(&common.pred_folder, Some(ending))?.len();
    if cases.len() < predictions {
        eprintln!(
            "note: {} of the {predictions} predictions have no reference in {} and are not scored",
            predictions - cases.len(),
            common.gt_folder.display()
        );
    }
    if let Some(roi_dir) = &common.roi_dir {
        cases = with_rois(cases, roi_dir, &common.roi_suffix, ending)?;
    }
    let num_processes = common
        .num_processes
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if num_processes == 0 {
        anyhow::bail!("-np must be at least 1");
    }
    let bar = crate::progress::bar(cases.len(), "evaluating");
    let summary = evaluate_pairs(&cases, reader, scoring, num_processes, &|| bar.inc(1));
    bar.finish_and_clear();
    let summary = summary?;
    summary.write_json(&output)?;
    Ok(summary)
}

/// Prints where the summary is, the mean Dice of every label or region (named by `name`) and the
/// foreground mean; with `per_case`, first each case's Dice.
fn print_summary(
    summary: &Summary,
    output: &Path,
    name: &dyn Fn(&LabelOrRegion) -> String,
    per_case: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if per_case {
        for case in &summary.metric_per_case {
            let dice: Vec<String> = case
                .metrics
                .iter()
                .map(|(region, m)| {
                    format!(
                        "Dice of {}: {}",
                        name(region),
                        format_dice(m.dice, "in neither file")
                    )
                })
                .collect();
            let file = case.prediction_file.file_name().unwrap_or_default();
            crate::output::line(
                &mut out,
                format_args!("{}: {}", file.to_string_lossy(), dice.join(", ")),
            )?;
        }
    }
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
                "{}Dice of {}: {}",
                if per_case { "mean " } else { "" },
                name(region),
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

/// A Dice value to print; NaN with the reason `why_nan`.
fn format_dice(dice: f64, why_nan: &str) -> String {
    if dice.is_nan() {
        format!("NaN ({why_nan})")
    } else {
        format!("{dice:.4}")
    }
}
