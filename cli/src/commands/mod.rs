//! One module per subcommand.

pub(crate) mod benchmark_dataloader;
pub(crate) mod convert_dicom;
pub(crate) mod convert_folder;
pub(crate) mod convert_images;
pub(crate) mod convert_msd;
pub(crate) mod demo;
pub(crate) mod describe;
pub(crate) mod ensemble;
pub(crate) mod evaluate;
pub(crate) mod export_model;
pub(crate) mod extract_fingerprint;
pub(crate) mod find_best_config;
pub(crate) mod import_torch_checkpoint;
pub(crate) mod info;
pub(crate) mod install_model;
pub(crate) mod link_commands;
pub(crate) mod list;
pub(crate) mod make_example_dataset;
pub(crate) mod make_splits;
pub(crate) mod move_plans;
pub(crate) mod paths;
pub(crate) mod plan;
pub(crate) mod plan_and_preprocess;
pub(crate) mod plot_overlay;
pub(crate) mod plugin_info;
pub(crate) mod postprocessing;
pub(crate) mod predict;
pub(crate) mod preprocess;
pub(crate) mod train;
pub(crate) mod verify;

use std::path::Path;

use nnunet_preprocessing::plans::Plans;

/// Reads the plans file `file`; a missing one is the error `<file>: no such plans file; <hint>`.
pub(crate) fn read_plans_file(file: &Path, hint: std::fmt::Arguments<'_>) -> anyhow::Result<Plans> {
    if !file.is_file() {
        anyhow::bail!("{}: no such plans file; {hint}", file.display());
    }
    Ok(Plans::from_file(file)?)
}
