//! nnunet-core: the extension traits of nnunet-rs, their registries, the dynamic plugin loader,
//! and the pipeline they plug into.
//!
//! Extension points, each with a registry keyed by the name users type:
//! [`Reader`] (file formats), [`Planner`] (`-pl`), [`Trainer`] (`-tr`), [`Loss`],
//! [`Augmentation`] and [`Architecture`]. Built-ins register at link time with [`register!`];
//! plugins are `cdylib`s that call [`export_plugin!`] and are loaded with [`plugin::load`].

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

/// The burn version nnunet-rs is built on, for plugins (architectures, losses) to use the same.
pub use burn;
#[doc(hidden)]
pub use inventory;
