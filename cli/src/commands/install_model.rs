//! `nnunet install-model FILE.zip [--force]`: installs a model ZIP file (from `nnunet
//! export-model` or nnU-Net's `nnUNetv2_export_model_to_zip`) into nnUNet_results, as nnU-Net's
//! `nnUNetv2_install_pretrained_model_from_zip`, but checking every entry first (see
//! `nnunet_inference::model_sharing::install_model`).

use std::path::PathBuf;

use nnunet_inference::model_sharing::install_model;

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The model ZIP file.
    #[arg(value_name = "FILE.zip")]
    zip: PathBuf,
    /// Replace files that already exist in nnUNet_results.
    #[arg(long)]
    force: bool,
}

/// Runs `nnunet install-model`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let results = ctx.paths.results()?;
    std::fs::create_dir_all(results)
        .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", results.display()))?;
    let written = install_model(&args.zip, results, args.force)?;
    println!(
        "installed {} files from {} into {}",
        written.len(),
        args.zip.display(),
        results.display()
    );
    Ok(())
}
