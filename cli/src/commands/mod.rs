//! One module per subcommand.

pub mod convert_folder;
pub mod convert_msd;
pub mod describe;
pub mod info;
pub mod link_commands;
pub mod list;
pub mod paths;
pub mod plugin_info;
pub mod verify;
