//! Re-exported from [`nnunet_api::network`], where the plugin API keeps it.

pub use nnunet_api::network::*;
