//! What the pipeline hands a [`Trainer`](super::Trainer)'s methods: the contexts its build
//! methods, steps and hooks work with, and the batches they see. The pipeline implements them, so
//! a trainer reaches nnU-Net's defaults (the plans' network, the registered loss, SGD, the
//! augmentation pipelines) through them without depending on the pipeline's crates.

use std::path::Path;

use burn::tensor::{Device, Tensor};
use ndarray::Array5;

use crate::augmentation::{Augmentation, AugmentationContext};
use crate::error::Result;
use crate::loss::{Loss, Target};
use crate::network::{Network, NetworkSpec};
use crate::registry::Registries;
use crate::training::optimizer::Optimizer;
use crate::training::{EpochRecord, TrainerSettings};

/// One batch from a data loader.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The batch's index in the loader's stream.
    pub index: u64,
    /// Images `[b, c, z, y, x]` (`z = 1` for 2D).
    pub data: Array5<f32>,
    /// Segmentation targets `[b, c, z, y, x]`, one per deep-supervision scale, the first at full
    /// resolution; a single one without deep supervision.
    pub targets: Vec<Array5<i16>>,
    /// The case of every sample.
    pub keys: Vec<String>,
    /// Whether every sample was forced to contain foreground.
    pub forced_foreground: Vec<bool>,
}

/// What [`Trainer::build_network`](super::Trainer::build_network) builds from.
pub struct NetworkContext<'a> {
    /// Every registered extension (architectures included).
    pub registries: &'a Registries,
    /// The trainer's settings.
    pub settings: &'a TrainerSettings,
    /// The plans' architecture, as registered (`PlainConvUNet`, `ResidualEncoderUNet`, …).
    pub architecture: &'a str,
    /// Channels, classes, the plans' `arch_kwargs`, deep supervision.
    pub spec: &'a NetworkSpec,
    /// Where the network lives (with autodiff when training).
    pub device: &'a Device,
}

impl NetworkContext<'_> {
    /// nnU-Net's network: the plans' architecture built with the plans' arguments.
    pub fn plans_network(&self) -> Result<Box<dyn Network>> {
        self.registries
            .architectures
            .create(self.architecture)?
            .build(self.spec, self.device)
    }
}

/// nnU-Net's defaults for what a trainer builds, provided by the pipeline.
pub trait Defaults {
    /// The loss the settings name (`DC_and_CE_loss`, its region form for region datasets, …).
    fn loss(&self) -> Result<Box<dyn Loss>>;
    /// The settings' optimiser (SGD with Nesterov momentum by default) with gradient clipping.
    fn optimizer(&self) -> Result<Box<dyn Optimizer>>;
    /// nnU-Net's training transforms for the settings' augmentation, extra transforms included.
    fn training_transforms(&self) -> Result<Vec<Box<dyn Augmentation>>>;
    /// nnU-Net's validation transforms.
    fn validation_transforms(&self) -> Result<Vec<Box<dyn Augmentation>>>;
}

/// What a trainer's loss, optimiser and transforms are built from.
pub struct SetupContext<'a> {
    /// The trainer's settings.
    pub settings: &'a TrainerSettings,
    /// Every registered extension (losses and augmentations by name).
    pub registries: &'a Registries,
    /// What the transforms know about the data.
    pub augmentation: &'a AugmentationContext,
    /// nnU-Net's defaults.
    pub defaults: &'a dyn Defaults,
}

/// One training or validation step's access to the run: the network, the built loss with deep
/// supervision, the optimiser and the epoch's log. The pipeline implements it.
pub trait StepContext {
    /// Whether this is a training step (else a validation step, without autodiff).
    fn training(&self) -> bool;
    /// The device the step runs on.
    fn device(&self) -> Device;
    /// The batch's images as a tensor on [`StepContext::device`].
    fn input(&self, batch: &Batch) -> Tensor<5>;
    /// The batch's targets as tensors, one per deep-supervision output.
    fn targets(&self, batch: &Batch) -> Vec<Target>;
    /// The network's outputs, highest resolution first.
    fn forward(&mut self, input: Tensor<5>) -> Vec<Tensor<5>>;
    /// The trainer's loss over all outputs, weighted by nnU-Net's deep-supervision weights.
    fn loss(&self, outputs: Vec<Tensor<5>>, batch: &Batch) -> Result<Tensor<1>>;
    /// Back-propagates `loss` and adds its gradients to those kept since the last optimiser
    /// step (so several backward passes before a [`StepContext::step`] accumulate gradients).
    /// An error in a validation step.
    fn backward(&mut self, loss: Tensor<1>) -> Result<()>;
    /// One optimiser step at the epoch's learning rate and parameter groups with the gradients
    /// kept since the last step, which are then dropped. An error in a validation step or when
    /// no backward pass came before.
    fn step(&mut self) -> Result<()>;
    /// [`StepContext::backward`] then [`StepContext::step`]: nnU-Net's training step.
    fn backward_and_step(&mut self, loss: Tensor<1>) -> Result<()> {
        self.backward(loss)?;
        self.step()
    }
    /// Records a value for the log: averaged over the epoch's steps and written as
    /// `train_<name>` or `val_<name>`.
    fn log(&mut self, name: &str, value: f64);
}

/// What a validation step returns.
pub struct ValidationOutput {
    /// The batch's loss.
    pub loss: f64,
    /// The highest-resolution logits, from which the pipeline counts the pseudo Dice.
    pub logits: Tensor<5>,
}

/// Whether training goes on after an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochFlow {
    /// Train the next epoch.
    Continue,
    /// Stop now, as after the last epoch (`checkpoint_final`, then the final validation).
    Stop,
}

/// What the hooks at train start, epoch start, epoch end and train end see.
pub struct HookContext<'a> {
    /// The epoch about to start (train start, epoch start) or just finished (epoch end), 0-based;
    /// the number of epochs done at train end.
    pub epoch: usize,
    /// The trainer's settings.
    pub settings: &'a TrainerSettings,
    /// Every finished epoch's record, this one included at epoch end.
    pub logging: &'a [EpochRecord],
    /// The network being trained.
    pub network: &'a mut dyn Network,
    /// The fold's output folder.
    pub output_folder: &'a Path,
    lines: Vec<String>,
}

impl<'a> HookContext<'a> {
    /// The context of a hook call.
    pub fn new(
        epoch: usize,
        settings: &'a TrainerSettings,
        logging: &'a [EpochRecord],
        network: &'a mut dyn Network,
        output_folder: &'a Path,
    ) -> Self {
        Self {
            epoch,
            settings,
            logging,
            network,
            output_folder,
            lines: Vec::new(),
        }
    }

    /// Adds a line to the training log.
    pub fn log(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    /// The lines logged so far, for the pipeline to write.
    pub fn into_lines(self) -> Vec<String> {
        self.lines
    }
}

/// A loss value as a number.
pub fn scalar(loss: &Tensor<1>) -> f64 {
    f64::from(loss.clone().into_scalar::<f32>())
}
