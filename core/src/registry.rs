//! Re-exported from [`nnunet_api::registry`], where the plugin API keeps it.

pub use nnunet_api::registry::*;
