//! Re-exported from [`nnunet_api::planning`], where the plugin API keeps it.

pub use nnunet_api::planning::*;
