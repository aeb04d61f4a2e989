//! `nnunet convert-msd -i TaskXX_Name [-overwrite_id N]`: a Medical Segmentation Decathlon task
//! into an nnU-Net v2 raw dataset in `nnUNet_raw`.

use std::path::PathBuf;

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The MSD task folder (TaskXX_Name, with imagesTr, labelsTr, imagesTs, dataset.json).
    #[arg(short = 'i', long = "input")]
    input: PathBuf,
    /// Dataset ID to use instead of the task's number (-overwrite_id).
    #[arg(long = "overwrite-id")]
    overwrite_id: Option<u32>,
}

/// Runs `nnunet convert-msd`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let source = args.input.components().collect::<PathBuf>(); // drops a trailing slash
    let target =
        nnunet_plugins::conversion::msd::convert_msd(&source, &ctx.paths, args.overwrite_id)?;
    println!("converted {} into {}", source.display(), target.display());
    Ok(())
}
