//! nnunet-api: what a plugin of nnunet-rs sees, and all it needs to depend on.
//!
//! Extension points, each with a registry keyed by the name users type:
//! [`Reader`] (file formats), [`Planner`] (`-pl`), [`Trainer`] (`-tr`), [`Loss`],
//! [`Augmentation`] and [`Architecture`]. Built-ins register at link time with [`register!`];
//! plugins are `cdylib`s that call [`export_plugin!`] and are loaded by the `nnunet` binary.
//!
//! The pipeline behind these traits (data loading, the training loop, inference) lives in
//! `nnunet-core` and is reached at run time through the contexts handed to the traits' methods,
//! so a plugin builds against this crate alone, and the build fingerprint a plugin is checked
//! against covers this crate's sources only (see [`plugin`]).

pub mod augmentation;
pub mod error;
pub mod io;
pub mod loss;
pub mod network;
pub mod planning;
pub mod plugin;
pub mod registry;
pub mod training;

pub use augmentation::Augmentation;
pub use error::{
    DatasetError, Error, EvaluationError, InferenceError, PlansError, PluginError, ReaderError,
    Result, TrainingError,
};
pub use io::Reader;
pub use loss::Loss;
pub use network::Architecture;
pub use planning::Planner;
pub use registry::Registries;
pub use training::{Trainer, TrainerSettings};

/// The burn version nnunet-rs is built on: tensors, modules and devices of every extension.
pub use burn;
#[doc(hidden)]
pub use inventory;
/// The ndarray version of images, samples and batches.
pub use ndarray;
/// The rand version of the augmentations' random number generators.
pub use rand;
/// The serde_json version of plans and architecture arguments.
pub use serde_json;
