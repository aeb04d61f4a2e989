//! `nnunet link-commands DIR`: symbolic links named like nnU-Net's commands (`nnUNetv2_train`,
//! …) to this binary, for every nnU-Net command whose subcommand exists, so that nnU-Net's
//! command lines work unchanged.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::args::NNUNET_COMMANDS;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Folder to create the links in (e.g. ~/.local/bin).
    dir: PathBuf,
    /// Replace existing links or files of the same names.
    #[arg(long)]
    force: bool,
}

/// Runs `nnunet link-commands`.
pub(crate) fn run(args: Args, cli: &clap::Command) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the path of this nnunet binary")?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut made = 0;
    for (command, sub) in NNUNET_COMMANDS {
        if !cli.get_subcommands().any(|c| c.get_name() == *sub) {
            continue;
        }
        let link = args.dir.join(command);
        if link.symlink_metadata().is_ok() {
            if !args.force {
                anyhow::bail!(
                    "{} exists; pass --force to replace it (nothing was changed for it)",
                    link.display()
                );
            }
            std::fs::remove_file(&link)
                .with_context(|| format!("cannot replace {}", link.display()))?;
        }
        make_link(&exe, &link)?;
        println!("{} -> {}", link.display(), exe.display());
        made += 1;
    }
    if made == 0 {
        println!("none of nnU-Net's commands has a counterpart in this version yet");
    }
    Ok(())
}

#[cfg(unix)]
fn make_link(exe: &std::path::Path, link: &std::path::Path) -> anyhow::Result<()> {
    std::os::unix::fs::symlink(exe, link)
        .with_context(|| format!("cannot create the link {}", link.display()))
}

#[cfg(not(unix))]
fn make_link(exe: &std::path::Path, link: &std::path::Path) -> anyhow::Result<()> {
    std::fs::copy(exe, link)
        .map(|_| ())
        .with_context(|| format!("cannot copy {} to {}", exe.display(), link.display()))
}
