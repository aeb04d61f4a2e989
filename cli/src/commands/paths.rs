//! `nnunet paths [-d DATASET]`: the nnU-Net folders in use and where a dataset lives.

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Dataset ID or name (e.g. 4 or Dataset004_Hippocampus).
    #[arg(short = 'd', long = "dataset")]
    dataset: Option<String>,
}

/// Runs `nnunet paths`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let Some(dataset) = args.dataset else {
        for (var, path) in ctx.paths.all() {
            match path {
                Some(p) => println!("{var} = {}", p.display()),
                None => println!("{var} is not set"),
            }
        }
        return Ok(());
    };
    let name = ctx.paths.dataset_name(&dataset)?;
    println!("{name}");
    for (var, root) in ctx.paths.all() {
        if let Some(root) = root {
            let folder = root.join(&name);
            let state = if folder.is_dir() {
                ""
            } else {
                " (not created yet)"
            };
            println!("  {var}: {}{state}", folder.display());
        }
    }
    Ok(())
}
