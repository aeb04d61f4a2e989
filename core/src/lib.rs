//! nnunet-core: what every stage of the pipeline shares: errors, paths, image input/output,
//! devices and precision, progress, the dynamic plugin loader, and the numpy/Python-parity code
//! ([`compat`]: numpy's random generator, numpy-style statistics, Python-style JSON).
//!
//! The stages are crates of their own: `nnunet-dataset` (dataset format and integrity checks),
//! `nnunet-preprocessing` (fingerprint, plans, preprocessing), `nnunet-training` (training loop
//! and data loading), `nnunet-inference` (prediction, export, model import) and
//! `nnunet-evaluation` (evaluation, postprocessing, ensembling, model selection and sharing).
//!
//! The extension points ([`Reader`], [`Planner`], [`Trainer`], [`Loss`], [`Augmentation`],
//! [`Architecture`]), their registries and [`register!`] / [`export_plugin!`] come from
//! `nnunet-api` and are re-exported here under their usual paths; plugins depend on `nnunet-api`
//! alone and are loaded with [`plugin::load`].

pub mod augmentation;
pub mod compat;
pub mod device;
pub mod error;
pub mod fused;
pub mod io;
pub mod loss;
pub mod network;
pub mod parallel;
pub mod paths;
pub mod planning;
pub mod plugin;
pub mod progress;
pub mod registry;

pub use augmentation::Augmentation;
pub use error::{Error, Result};
pub use io::Reader;
pub use loss::Loss;
pub use network::Architecture;
pub use nnunet_api::training::{Trainer, TrainerSettings};
pub use planning::Planner;
pub use registry::Registries;

/// The burn version nnunet-rs is built on.
pub use burn;
pub use nnunet_api::{export_plugin, register};
