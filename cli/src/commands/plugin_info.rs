//! `nnunet plugin-info LIBRARY`: a plugin's descriptor, read without running its code, and whether
//! this nnunet can load it.

use std::path::PathBuf;

use nnunet_core::plugin::{self, DescriptorInfo};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Path of the plugin library (`.so`, `.dylib`, `.dll`).
    library: PathBuf,
}

/// Runs `nnunet plugin-info`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let info = plugin::inspect(&args.library)?;
    let host = DescriptorInfo::host();
    println!("plugin:            {}", info.plugin_name);
    println!(
        "nnunet-api:        {} (this nnunet: {})",
        info.api_version, host.api_version
    );
    println!(
        "compiler:          {} (this nnunet: {})",
        info.rustc_version, host.rustc_version
    );
    println!(
        "build fingerprint: {} (this nnunet: {})",
        info.build_fingerprint, host.build_fingerprint
    );
    match info.mismatch() {
        None => {
            println!("compatible: yes");
            Ok(())
        }
        Some(reason) => anyhow::bail!("{}: {reason}", args.library.display()),
    }
}
