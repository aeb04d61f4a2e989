//! `nnunet ensemble -i DIR1 DIR2 … -o OUT [--save_npz]`: nnU-Net's `nnUNetv2_ensemble`. Averages
//! the `.npz` probabilities of the same cases in every folder and writes the segmentations with
//! the inputs' geometry; dataset.json and plans.json come from the first folder.

use std::path::PathBuf;

use nnunet_dataset::DatasetJson;
use nnunet_evaluation::ensembling::{cases_from_folders, merge_cases};
use nnunet_evaluation::model_selection::reader_for;
use nnunet_inference::LabelHandling;

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Folders of predictions with probabilities (.npz and the .json of each case).
    #[arg(short = 'i', num_args = 1.., required = true, value_name = "FOLDER")]
    inputs: Vec<PathBuf>,
    /// Output folder.
    #[arg(short = 'o', value_name = "FOLDER")]
    output: PathBuf,
    /// Worker threads (default: the number of CPU cores).
    #[arg(long = "num-processes", value_name = "N")]
    num_processes: Option<usize>,
    /// Also write the averaged probabilities (.npz) and the case properties (.json).
    #[arg(long = "save-npz")]
    save_npz: bool,
}

/// `nnunet ensemble`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let first = &args.inputs[0];
    let dj_path = first.join("dataset.json");
    if !dj_path.is_file() {
        anyhow::bail!(
            "{}: missing (the first input folder must hold the dataset.json written with the \
             predictions)",
            dj_path.display()
        );
    }
    let dataset_json = DatasetJson::from_file(&dj_path)?;
    let plans = first.join("plans.json");
    let reader = if plans.is_file() {
        reader_for(&ctx.registries, &plans, &dataset_json)?
    } else {
        nnunet_dataset::choose_reader(&ctx.registries, &dataset_json, None)?.create()
    };
    let labels = LabelHandling::from_labels(&dataset_json.labels)?;
    let cases = cases_from_folders(&args.inputs, &args.output)?;
    std::fs::create_dir_all(&args.output).map_err(|e| nnunet_core::Error::io(&args.output, e))?;
    let np = super::postprocessing::threads(args.num_processes)?;
    let bar = crate::progress::bar(cases.len(), "ensembling");
    let result = merge_cases(
        &cases,
        &labels,
        reader.as_ref(),
        &dataset_json.file_ending,
        args.save_npz,
        np,
        &|| bar.inc(1),
    );
    bar.finish_and_clear();
    result?;
    for (file, name) in [(&dj_path, "dataset.json"), (&plans, "plans.json")] {
        if file.is_file() {
            let to = args.output.join(name);
            std::fs::copy(file, &to).map_err(|e| nnunet_core::Error::io(&to, e))?;
        }
    }
    crate::output::say(format_args!(
        "{} case(s) ensembled from {} folders into {}",
        cases.len(),
        args.inputs.len(),
        args.output.display()
    ))
}
