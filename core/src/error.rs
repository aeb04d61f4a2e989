//! Re-exported from [`nnunet_api::error`], where the plugin API keeps it.

pub use nnunet_api::error::*;
