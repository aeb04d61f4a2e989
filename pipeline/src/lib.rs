//! A training run end to end, over the stages: its set-up from the nnU-Net folders, plans and a
//! trainer ([`setup`]: network, loss, folds, data loaders, output folder), the training loop of
//! `nnunet-training`, and the final validation of the fold ([`validation`]), which predicts with
//! `nnunet-inference` and scores with `nnunet-evaluation`.
//!
//! This is the one crate above inference and evaluation: the trainers' settings and presets live
//! in `nnunet-training`, and the final validation needs the later stages, as nnU-Net's
//! `nnUNetTrainer` does.

pub mod setup;
pub mod validation;
