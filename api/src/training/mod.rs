//! Training: the [`Trainer`] extension trait and the hyperparameters it controls.
//!
//! A trainer is nnU-Net's default recipe ([`TrainerSettings::default`]) plus the changes a variant
//! makes in [`Trainer::configure`], and optionally hooks that replace a piece of behaviour. A
//! variant is therefore a few lines:
//!
//! ```
//! use nnunet_api::{Trainer, TrainerSettings};
//! struct Epochs50;
//! impl Trainer for Epochs50 {
//!     fn configure(&self, s: &mut TrainerSettings) {
//!         s.num_epochs = 50;
//!     }
//! }
//! assert_eq!(nnunet_api::training::settings_of(&Epochs50).num_epochs, 50);
//! ```

mod context;
mod log;
pub mod optimizer;

pub use context::{
    Batch, Defaults, EpochFlow, HookContext, NetworkContext, SetupContext, StepContext,
    ValidationOutput, scalar,
};
pub use log::EpochRecord;
pub use optimizer::{Optimizer, ParameterGroup};

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::augmentation::Augmentation;
use crate::error::Result;
use crate::loss::Loss;
use crate::network::Network;

/// The optimiser and its arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name")]
pub enum OptimizerKind {
    /// Stochastic gradient descent with momentum (no dampening, as PyTorch).
    Sgd {
        /// Momentum factor.
        momentum: f64,
        /// Whether the momentum is Nesterov's.
        nesterov: bool,
    },
    /// Adam with decoupled weight decay (PyTorch's AdamW; `nnUNetTrainerAdam` uses AMSGrad).
    AdamW {
        /// Decay rate of the running mean of gradients.
        beta1: f64,
        /// Decay rate of the running mean of squared gradients.
        beta2: f64,
        /// Term added to the denominator for numerical stability.
        epsilon: f64,
        /// Divide by the largest running mean of squared gradients so far (AMSGrad).
        amsgrad: bool,
    },
    /// Adam with L2 weight decay added to the gradient (PyTorch's Adam).
    Adam {
        /// Decay rate of the running mean of gradients.
        beta1: f64,
        /// Decay rate of the running mean of squared gradients.
        beta2: f64,
        /// Term added to the denominator for numerical stability.
        epsilon: f64,
    },
    /// Adan (Xie et al. 2022), with the `adan-pytorch` package's coefficients.
    Adan {
        /// Weight of the new gradient in its running mean (the paper's `β1`, e.g. 0.02).
        beta1: f64,
        /// Weight of the new gradient difference in its running mean (the paper's `β2`).
        beta2: f64,
        /// Weight of the new squared term in its running mean (the paper's `β3`).
        beta3: f64,
        /// Term added to the denominator for numerical stability.
        epsilon: f64,
    },
}

/// How the learning rate changes over the epochs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name")]
pub enum LrSchedule {
    /// `initial * (1 - epoch / num_epochs) ^ exponent`, nnU-Net's `PolyLRScheduler`.
    Poly {
        /// Exponent of the decay.
        exponent: f64,
    },
    /// Cosine annealing from the initial learning rate to `min_lr` over all epochs.
    CosineAnnealing {
        /// Learning rate the schedule anneals to.
        min_lr: f64,
    },
    /// Linear warm-up over `warmup_epochs` epochs (`initial * (epoch + 1) / warmup_epochs`), then
    /// polynomial decay over the remaining epochs (`nnUNetTrainer_warmup`).
    WarmupPoly {
        /// Number of warm-up epochs.
        warmup_epochs: usize,
        /// Exponent of the decay after the warm-up.
        exponent: f64,
    },
    /// The initial learning rate throughout.
    Constant,
}

impl LrSchedule {
    /// The learning rate for `epoch` (0-based) of `num_epochs`.
    pub fn learning_rate(&self, initial: f64, epoch: usize, num_epochs: usize) -> f64 {
        let n = num_epochs.max(1) as f64;
        let e = epoch as f64;
        match *self {
            LrSchedule::Poly { exponent } => initial * (1.0 - e / n).max(0.0).powf(exponent),
            LrSchedule::CosineAnnealing { min_lr } => {
                min_lr + (initial - min_lr) * (1.0 + (std::f64::consts::PI * e / n).cos()) / 2.0
            }
            LrSchedule::WarmupPoly {
                warmup_epochs,
                exponent,
            } => {
                let w = warmup_epochs as f64;
                if epoch < warmup_epochs {
                    initial * (e + 1.0) / w
                } else {
                    let rest = (n - w).max(1.0);
                    initial * (1.0 - (e - w) / rest).max(0.0).powf(exponent)
                }
            }
            LrSchedule::Constant => initial,
        }
    }
}

/// Which family of augmentation pipeline a trainer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipelineKind {
    /// nnU-Net's default training transforms.
    Default,
    /// No augmentation: training batches are prepared like validation batches (`nnUNetTrainerNoDA`).
    None,
    /// The stronger `nnUNetTrainerDA5` pipeline.
    DA5,
}

/// Along which spatial axes to mirror (training and test-time augmentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MirrorAxes {
    /// All spatial axes (nnU-Net's default).
    All,
    /// No mirroring.
    None,
    /// These axes for 2D and for 3D data.
    Only {
        /// Spatial axes to mirror along for 2D data.
        axes_2d: Vec<usize>,
        /// Spatial axes to mirror along for 3D data.
        axes_3d: Vec<usize>,
    },
}

impl MirrorAxes {
    /// The axes for data with `spatial_dims` (2 or 3) dimensions.
    pub fn axes(&self, spatial_dims: usize) -> Vec<usize> {
        match self {
            MirrorAxes::All => (0..spatial_dims).collect(),
            MirrorAxes::None => Vec::new(),
            MirrorAxes::Only { axes_2d, axes_3d } => {
                if spatial_dims == 2 {
                    axes_2d.clone()
                } else {
                    axes_3d.clone()
                }
            }
        }
    }
}

/// The augmentation pipeline a trainer trains with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AugmentationSettings {
    /// Which family of training transforms to use.
    pub pipeline: PipelineKind,
    /// Spatial axes to mirror along.
    pub mirror_axes: MirrorAxes,
    /// Resample label maps with nearest neighbour in the spatial transform (`DASegOrd0`), instead
    /// of per-label linear interpolation.
    pub segmentation_nearest: bool,
    /// Resample images with nearest neighbour in the spatial transform (`DA5ord0`).
    pub image_nearest: bool,
    /// Probability per label of the cascade's morphological transforms.
    pub cascade_p_per_label: f64,
    /// Allow the pseudo-2D scheme for anisotropic 3D patches.
    pub allow_dummy_2d: bool,
    /// Extra transforms by registry name, applied after the pipeline.
    pub extra: Vec<String>,
}

impl Default for AugmentationSettings {
    fn default() -> Self {
        Self {
            pipeline: PipelineKind::Default,
            mirror_axes: MirrorAxes::All,
            segmentation_nearest: false,
            image_nearest: false,
            cascade_p_per_label: 0.5,
            allow_dummy_2d: true,
            extra: Vec::new(),
        }
    }
}

/// Normalisation layer of the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NormKind {
    /// Instance normalisation (nnU-Net's default).
    Instance,
    /// Batch normalisation (`nnUNetTrainerBN`).
    Batch,
}

/// What a benchmarking trainer measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BenchmarkMode {
    /// Epoch times with the real data pipeline.
    WithDataLoading,
    /// Epoch times on one fixed random batch, without data loading.
    NoDataLoading,
}

/// Every hyperparameter a trainer controls. [`Default`] is nnU-Net v2's `nnUNetTrainer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerSettings {
    /// Base learning rate, which [`lr_schedule`](Self::lr_schedule) scales per epoch.
    pub initial_lr: f64,
    /// Weight decay: L2 added to the gradient (SGD, Adam) or decoupled (AdamW, Adan).
    pub weight_decay: f64,
    /// The optimiser and its arguments.
    pub optimizer: OptimizerKind,
    /// How the learning rate changes over the epochs.
    pub lr_schedule: LrSchedule,
    /// Number of training epochs.
    pub num_epochs: usize,
    /// Training iterations (batches) per epoch.
    pub num_iterations_per_epoch: usize,
    /// Validation iterations (batches) per epoch.
    pub num_val_iterations_per_epoch: usize,
    /// Fraction of each batch forced to contain foreground.
    pub oversample_foreground_percent: f64,
    /// Force foreground per sample with probability `oversample_foreground_percent` rather than
    /// for a fixed part of the batch.
    pub probabilistic_oversampling: bool,
    /// With probabilistic oversampling, replace the fraction by the share of samples the fixed
    /// rule would force for the batch size (`nnUNetTrainer_probabilisticOversampling`).
    pub oversampling_matches_fixed_rule: bool,
    /// Train with a loss on every decoder resolution (deep supervision).
    pub enable_deep_supervision: bool,
    /// Global gradient norm clipping threshold.
    pub grad_clip_norm: f64,
    /// Name of the loss in the loss registry (region datasets switch `DC_and_CE_loss` to its
    /// sigmoid form).
    pub loss: String,
    /// Smoothing term of the soft Dice.
    pub dice_smooth: f64,
    /// Share of the hardest voxels, in percent, that the top-k cross-entropy averages.
    pub topk_percent: f64,
    /// Label smoothing of the cross-entropy terms.
    pub label_smoothing: f64,
    /// Normalisation layers of the network.
    pub norm: NormKind,
    /// The augmentation pipeline.
    pub augmentation: AugmentationSettings,
    /// Write `checkpoint_latest` every this many epochs.
    pub save_every: usize,
    /// Write no checkpoints (benchmarks).
    pub disable_checkpointing: bool,
    /// Smoothing of the moving-average pseudo Dice: `ema = a * ema + (1 - a) * dice`.
    pub ema_pseudo_dice_factor: f64,
    /// Measure and report epoch times (the benchmark trainers).
    pub benchmark: Option<BenchmarkMode>,
}

impl Default for TrainerSettings {
    fn default() -> Self {
        Self {
            initial_lr: 1e-2,
            weight_decay: 3e-5,
            optimizer: OptimizerKind::Sgd {
                momentum: 0.99,
                nesterov: true,
            },
            lr_schedule: LrSchedule::Poly { exponent: 0.9 },
            num_epochs: 1000,
            num_iterations_per_epoch: 250,
            num_val_iterations_per_epoch: 50,
            oversample_foreground_percent: 0.33,
            probabilistic_oversampling: false,
            oversampling_matches_fixed_rule: false,
            enable_deep_supervision: true,
            grad_clip_norm: 12.0,
            loss: "DC_and_CE_loss".into(),
            dice_smooth: 1e-5,
            topk_percent: 10.0,
            label_smoothing: 0.0,
            norm: NormKind::Instance,
            augmentation: AugmentationSettings::default(),
            save_every: 50,
            disable_checkpointing: false,
            ema_pseudo_dice_factor: 0.9,
            benchmark: None,
        }
    }
}

/// A training recipe: nnU-Net's `nnUNetTrainer`. Every method has nnU-Net's default behaviour; a
/// variant overrides what it changes, as an `nnUNetTrainer` subclass overrides methods.
///
/// | nnU-Net | here |
/// |---|---|
/// | `__init__` hyperparameters | [`Trainer::configure`] |
/// | `lr_scheduler` | [`Trainer::learning_rate`] |
/// | parameter groups, `requires_grad=False` | [`Trainer::parameter_groups`] |
/// | `build_network_architecture` | [`Trainer::build_network`] |
/// | `_build_loss` | [`Trainer::build_loss`], [`Trainer::loss`] |
/// | `configure_optimizers` | [`Trainer::configure_optimizer`] |
/// | `get_training_transforms` / `get_validation_transforms` | [`Trainer::training_transforms`] / [`Trainer::validation_transforms`] |
/// | `train_step` / `validation_step` | [`Trainer::train_step`] / [`Trainer::validation_step`] |
/// | `on_train_start`, `on_epoch_start`, `on_epoch_end`, `on_train_end` | the hooks of the same names |
pub trait Trainer: Send + Sync {
    /// Changes the default hyperparameters.
    fn configure(&self, _settings: &mut TrainerSettings) {}

    /// The learning rate of `epoch`; by default from [`TrainerSettings::lr_schedule`].
    fn learning_rate(&self, settings: &TrainerSettings, epoch: usize) -> f64 {
        settings
            .lr_schedule
            .learning_rate(settings.initial_lr, epoch, settings.num_epochs)
    }

    /// Learning-rate factors and frozen parts of the network during `epoch`; by default none
    /// (every parameter at the epoch's learning rate).
    fn parameter_groups(&self, _settings: &TrainerSettings, _epoch: usize) -> Vec<ParameterGroup> {
        Vec::new()
    }

    /// The network; by default the plans' architecture. Any burn module implementing
    /// [`SegmentationModule`](crate::network::SegmentationModule) can be returned boxed.
    /// Prediction rebuilds the network the same way.
    fn build_network(&self, ctx: &NetworkContext<'_>) -> Result<Box<dyn Network>> {
        ctx.plans_network()
    }

    /// The loss applied to every deep-supervision output; by default the settings' loss.
    fn build_loss(&self, ctx: &SetupContext<'_>) -> Result<Box<dyn Loss>> {
        ctx.defaults.loss()
    }

    /// The optimiser; by default the settings' optimiser with gradient clipping.
    fn configure_optimizer(&self, ctx: &SetupContext<'_>) -> Result<Box<dyn Optimizer>> {
        ctx.defaults.optimizer()
    }

    /// The transforms of training samples; by default nnU-Net's for the settings.
    fn training_transforms(&self, ctx: &SetupContext<'_>) -> Result<Vec<Box<dyn Augmentation>>> {
        ctx.defaults.training_transforms()
    }

    /// The transforms of validation samples; by default nnU-Net's.
    fn validation_transforms(&self, ctx: &SetupContext<'_>) -> Result<Vec<Box<dyn Augmentation>>> {
        ctx.defaults.validation_transforms()
    }

    /// The loss of a batch's outputs in both steps; by default the built loss with
    /// deep-supervision weights. Auxiliary terms go here (and into [`StepContext::log`]).
    fn loss(
        &mut self,
        step: &mut dyn StepContext,
        outputs: Vec<Tensor<5>>,
        batch: &Batch,
    ) -> Result<Tensor<1>> {
        step.loss(outputs, batch)
    }

    /// One training iteration: forward, [`Trainer::loss`], backward and optimiser step. Returns
    /// the loss value.
    fn train_step(&mut self, step: &mut dyn StepContext, batch: &Batch) -> Result<f64> {
        let outputs = step.forward(step.input(batch));
        let loss = self.loss(step, outputs, batch)?;
        let value = scalar(&loss);
        step.backward_and_step(loss)?;
        Ok(value)
    }

    /// One validation iteration: forward and [`Trainer::loss`].
    fn validation_step(
        &mut self,
        step: &mut dyn StepContext,
        batch: &Batch,
    ) -> Result<ValidationOutput> {
        let outputs = step.forward(step.input(batch));
        let logits = outputs
            .first()
            .cloned()
            .ok_or_else(|| crate::Error::Invalid("the network returned no output".into()))?;
        let loss = scalar(&self.loss(step, outputs, batch)?);
        Ok(ValidationOutput { loss, logits })
    }

    /// Called once before the first epoch of this session.
    fn on_train_start(&mut self, _ctx: &mut HookContext<'_>) -> Result<()> {
        Ok(())
    }

    /// Called before each epoch.
    fn on_epoch_start(&mut self, _ctx: &mut HookContext<'_>) -> Result<()> {
        Ok(())
    }

    /// Called after each epoch, once its record is logged; [`EpochFlow::Stop`] ends training
    /// early.
    fn on_epoch_end(&mut self, _ctx: &mut HookContext<'_>) -> Result<EpochFlow> {
        Ok(EpochFlow::Continue)
    }

    /// Called once after the last epoch, before the final checkpoint is written.
    fn on_train_end(&mut self, _ctx: &mut HookContext<'_>) -> Result<()> {
        Ok(())
    }
}

/// The settings a trainer trains with: the defaults after [`Trainer::configure`].
pub fn settings_of(trainer: &dyn Trainer) -> TrainerSettings {
    let mut settings = TrainerSettings::default();
    trainer.configure(&mut settings);
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poly_schedule_matches_nnunet() {
        let s = LrSchedule::Poly { exponent: 0.9 };
        assert_eq!(s.learning_rate(0.01, 0, 1000), 0.01);
        let expected = 0.01 * (1.0f64 - 500.0 / 1000.0).powf(0.9);
        assert!((s.learning_rate(0.01, 500, 1000) - expected).abs() < 1e-15);
        assert!(s.learning_rate(0.01, 999, 1000) > 0.0);
    }

    #[test]
    fn warmup_and_cosine() {
        let w = LrSchedule::WarmupPoly {
            warmup_epochs: 50,
            exponent: 0.9,
        };
        assert!((w.learning_rate(0.01, 0, 1000) - 2e-4).abs() < 1e-15);
        assert!((w.learning_rate(0.01, 49, 1000) - 0.01).abs() < 1e-15);
        assert!((w.learning_rate(0.01, 50, 1000) - 0.01).abs() < 1e-15);
        let c = LrSchedule::CosineAnnealing { min_lr: 0.0 };
        assert!((c.learning_rate(0.01, 500, 1000) - 0.005).abs() < 1e-12);
    }
}
