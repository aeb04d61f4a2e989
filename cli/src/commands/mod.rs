//! One module per subcommand.

pub mod benchmark_dataloader;
pub mod convert_folder;
pub mod convert_msd;
pub mod describe;
pub mod evaluate;
pub mod extract_fingerprint;
pub mod info;
pub mod link_commands;
pub mod list;
pub mod make_example_dataset;
pub mod move_plans;
pub mod paths;
pub mod plan;
pub mod plan_and_preprocess;
pub mod plugin_info;
pub mod preprocess;
pub mod train;
pub mod verify;
