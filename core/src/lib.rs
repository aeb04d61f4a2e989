//! nnunet-core: the pipeline of nnunet-rs (dataset format, fingerprint, plans, preprocessing,
//! data loading, training loop, sliding-window inference, evaluation) and the dynamic plugin
//! loader.
//!
//! The extension points ([`Reader`], [`Planner`], [`Trainer`], [`Loss`], [`Augmentation`],
//! [`Architecture`]), their registries and [`register!`] / [`export_plugin!`] come from
//! `nnunet-api` and are re-exported here under their usual paths; plugins depend on `nnunet-api`
//! alone and are loaded with [`plugin::load`].

pub mod augmentation;
pub mod data_loading;
pub mod dataset;
pub mod device;
pub mod ensembling;
pub mod error;
pub mod evaluation;
pub mod fingerprint;
pub mod fused;
pub mod inference;
pub mod integrity;
pub mod io;
pub mod json;
pub mod loss;
pub mod model_selection;
pub mod model_sharing;
pub mod network;
pub mod numpy_random;
pub mod paths;
pub mod planning;
pub mod plans;
pub mod plugin;
pub mod postprocessing;
pub mod preprocessing;
pub mod progress;
pub mod registry;
pub mod statistics;
pub mod torch_import;
pub mod training;

pub use augmentation::Augmentation;
pub use dataset::DatasetJson;
pub use error::{Error, Result};
pub use io::Reader;
pub use loss::Loss;
pub use network::Architecture;
pub use planning::Planner;
pub use registry::Registries;
pub use training::{Trainer, TrainerSettings};

/// The burn version nnunet-rs is built on.
pub use burn;
pub use nnunet_api::{export_plugin, register};
