//! `nnunet determine-postprocessing -i PRED -ref GT` and
//! `nnunet apply-postprocessing -i IN -o OUT -pp_pkl_file postprocessing.json`: nnU-Net's
//! `nnUNetv2_determine_postprocessing` and `nnUNetv2_apply_postprocessing`. The postprocessing
//! file is nnU-Net's `postprocessing.json` (nnunet reads no pickles).

use std::path::{Path, PathBuf};

use nnunet_core::io::Reader;
use nnunet_dataset::DatasetJson;
use nnunet_evaluation::model_selection::reader_for;
use nnunet_evaluation::postprocessing::{
    DeterminePostprocessing, Postprocessing, apply_postprocessing_to_folder,
    determine_postprocessing,
};

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct DetermineArgs {
    /// Folder with the predicted segmentations (postprocessing.json is written here).
    #[arg(short = 'i', value_name = "PRED_FOLDER")]
    input: PathBuf,
    /// Folder with the reference segmentations.
    #[arg(long = "ref", value_name = "GT_FOLDER")]
    reference: PathBuf,
    #[command(flatten)]
    files: FolderFiles,
    /// Worker threads (default: the number of CPU cores).
    #[arg(long = "num-processes", value_name = "N")]
    num_processes: Option<usize>,
    /// Do not keep PRED_FOLDER/postprocessed (the postprocessed predictions).
    #[arg(long = "remove-postprocessed")]
    remove_postprocessed: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ApplyArgs {
    /// Folder with the segmentations to postprocess.
    #[arg(short = 'i', value_name = "IN_FOLDER")]
    input: PathBuf,
    /// Output folder.
    #[arg(short = 'o', value_name = "OUT_FOLDER")]
    output: PathBuf,
    /// The postprocessing.json written by determine-postprocessing or find-best-config.
    #[arg(long = "pp-pkl-file", visible_alias = "pp-file", value_name = "FILE")]
    pp_file: PathBuf,
    /// Worker threads (default: the number of CPU cores).
    #[arg(long = "num-processes", value_name = "N")]
    num_processes: Option<usize>,
    #[command(flatten)]
    files: FolderFiles,
}

/// The files describing a folder of segmentations, if not the folder's own.
#[derive(clap::Args, Debug)]
struct FolderFiles {
    /// Plans file (default: plans.json in the input folder, if present; selects the reader).
    #[arg(long = "plans-json", value_name = "FILE")]
    plans_json: Option<PathBuf>,
    /// dataset.json (default: dataset.json in the input folder).
    #[arg(long = "dataset-json", value_name = "FILE")]
    dataset_json: Option<PathBuf>,
}

/// Worker threads: the value given (at least 1) or one per core.
pub(crate) fn threads(n: Option<usize>) -> anyhow::Result<usize> {
    match n {
        Some(0) => anyhow::bail!("-np must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// dataset.json and the reader for a folder of predictions: the files given, else those in the
/// folder (the plans are optional: without them, dataset.json selects the reader).
fn dataset_and_reader(
    ctx: &Context,
    folder: &Path,
    files: &FolderFiles,
) -> anyhow::Result<(DatasetJson, Box<dyn Reader>)> {
    let (dataset_json, plans_json) = (files.dataset_json.as_deref(), files.plans_json.as_deref());
    let dj_path = dataset_json
        .map(Path::to_path_buf)
        .unwrap_or_else(|| folder.join("dataset.json"));
    if !dj_path.is_file() {
        anyhow::bail!(
            "{}: missing; nnunet writes dataset.json next to predictions, or pass -dataset_json",
            dj_path.display()
        );
    }
    let dataset_json = DatasetJson::from_file(&dj_path)?;
    let plans = plans_json
        .map(Path::to_path_buf)
        .unwrap_or_else(|| folder.join("plans.json"));
    let reader = if plans_json.is_some() || plans.is_file() {
        reader_for(&ctx.registries, &plans, &dataset_json)?
    } else {
        nnunet_dataset::choose_reader(&ctx.registries, &dataset_json, None)?.create()
    };
    Ok((dataset_json, reader))
}

/// `nnunet determine-postprocessing`.
pub(crate) fn run_determine(ctx: &Context, args: DetermineArgs) -> anyhow::Result<()> {
    let (dataset_json, reader) = dataset_and_reader(ctx, &args.input, &args.files)?;
    let result = determine_postprocessing(&DeterminePostprocessing {
        predictions: &args.input,
        reference: &args.reference,
        dataset_json: &dataset_json,
        reader: reader.as_ref(),
        num_processes: threads(args.num_processes)?,
        keep_postprocessed_files: !args.remove_postprocessed,
    })?;
    let mut out = std::io::stdout().lock();
    for m in &result.messages {
        crate::output::line(&mut out, format_args!("{m}"))?;
    }
    crate::output::line(
        &mut out,
        format_args!(
            "{} postprocessing step(s) chosen; mean foreground Dice {:.5} -> {:.5}; written to {}",
            result.postprocessing.steps.len(),
            result.before.foreground_mean.dice,
            result.after.foreground_mean.dice,
            result.json_file.display()
        ),
    )
}

/// `nnunet apply-postprocessing`.
pub(crate) fn run_apply(ctx: &Context, args: ApplyArgs) -> anyhow::Result<()> {
    let postprocessing = Postprocessing::read(&args.pp_file)?;
    let (dataset_json, reader) = dataset_and_reader(ctx, &args.input, &args.files)?;
    let n = apply_postprocessing_to_folder(
        &args.input,
        &args.output,
        &postprocessing,
        reader.as_ref(),
        &dataset_json.file_ending,
        threads(args.num_processes)?,
    )?;
    crate::output::say(format_args!(
        "{n} segmentation(s) postprocessed ({} step(s)) into {}",
        postprocessing.steps.len(),
        args.output.display()
    ))
}
