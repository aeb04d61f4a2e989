//! Re-exported from [`nnunet_api::augmentation`], where the plugin API keeps it.

pub use nnunet_api::augmentation::*;
