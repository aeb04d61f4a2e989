//! `nnunet export-model -d DATASET -o FILE.zip [-c CONFIGURATION…] [-tr TRAINER] [-p PLANS]
//! [-f FOLD…] [-chk CHECKPOINT…] [--not_strict]`: packs trained models into a ZIP file to share,
//! as nnU-Net's `nnUNetv2_export_model_to_zip` (see `nnunet_inference::model_sharing`).

use std::path::PathBuf;

use nnunet_inference::model_sharing::{ExportRequest, export_model};

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Dataset ID or name.
    #[arg(short = 'd', value_name = "DATASET")]
    dataset: String,
    /// The ZIP file to write.
    #[arg(short = 'o', value_name = "FILE.zip")]
    output: PathBuf,
    /// Configurations to export.
    #[arg(short = 'c', num_args = 1.., default_values_t = ["3d_lowres".to_string(), "3d_fullres".to_string(), "2d".to_string(), "3d_cascade_fullres".to_string()])]
    configurations: Vec<String>,
    /// Trainer the models were trained with (`-tr`).
    #[arg(long = "trainer", default_value = "nnUNetTrainer")]
    trainer: String,
    /// Plans identifier.
    #[arg(short = 'p', long = "plans", default_value = "nnUNetPlans")]
    plans: String,
    /// Folds to export (0 1 2 3 4, or all).
    #[arg(short = 'f', long = "folds", num_args = 1.., default_values_t = ["0".to_string(), "1".to_string(), "2".to_string(), "3".to_string(), "4".to_string()])]
    folds: Vec<String>,
    /// Checkpoints to export (`-chk`; nnU-Net's `.pth` names are accepted).
    #[arg(long = "checkpoint", num_args = 1.., default_values_t = ["checkpoint_final".to_string()])]
    checkpoints: Vec<String>,
    /// Skip configurations that are not trained instead of failing.
    #[arg(long = "not-strict")]
    not_strict: bool,
}

/// Runs `nnunet export-model`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let request = ExportRequest {
        results_folder: ctx.paths.results()?.to_path_buf(),
        dataset_name: ctx.paths.dataset_name(&args.dataset)?,
        configurations: args.configurations,
        trainer: args.trainer,
        plans_identifier: args.plans,
        folds: args.folds,
        checkpoints: args.checkpoints,
        strict: !args.not_strict,
    };
    let entries = export_model(&request, &args.output)?;
    println!("wrote {} ({} files)", args.output.display(), entries.len());
    Ok(())
}
