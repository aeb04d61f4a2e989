//! One module per subcommand.

pub mod describe;
pub mod link_commands;
pub mod list;
pub mod paths;
pub mod plugin_info;
