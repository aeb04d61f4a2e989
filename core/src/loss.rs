//! Re-exported from [`nnunet_api::loss`], where the plugin API keeps it.

pub use nnunet_api::loss::*;
