//! `nnunet import-torch-checkpoint -i NNUNETV2_MODEL_FOLDER -o MODEL_FOLDER`: converts a model
//! trained with nnU-Net v2 (PyTorch `.pth` checkpoints) into an nnunet-rs model folder
//! (safetensors checkpoints), reading the `.pth` files without running code from them (see
//! `nnunet_inference::torch_import`).

use std::path::PathBuf;

use nnunet_inference::torch_import::import_nnunetv2_model;

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The nnU-Net v2 model folder (Trainer__Plans__configuration with plans.json, dataset.json
    /// and fold_N/checkpoint_final.pth).
    #[arg(short = 'i', value_name = "DIR")]
    input: PathBuf,
    /// The nnunet-rs model folder to write (e.g.
    /// $nnUNet_results/DatasetXXX_Name/Trainer__Plans__configuration).
    #[arg(short = 'o', value_name = "DIR")]
    output: PathBuf,
}

/// Runs `nnunet import-torch-checkpoint`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    if args.input.canonicalize().ok() == args.output.canonicalize().ok() && args.output.exists() {
        anyhow::bail!(
            "{}: the output folder must differ from the input folder",
            args.output.display()
        );
    }
    let report = import_nnunetv2_model(&ctx.registries, &args.input, &args.output)?;
    for checkpoint in &report.checkpoints {
        println!("wrote {}", checkpoint.display());
    }
    println!(
        "imported {} checkpoint(s) into {} ({} duplicate state_dict keys dropped)",
        report.checkpoints.len(),
        args.output.display(),
        report.dropped_aliases
    );
    Ok(())
}
