//! `nnUNetTrainer` and its variants, registered under nnU-Net v2.8.1's class names.
//!
//! Each variant is nnU-Net's default recipe ([`TrainerSettings::default`]) plus the changes the
//! reference's class of the same name makes; the families follow nnU-Net's `variants/` folders.
//! A variant of a variant applies its base's changes first, as the Python subclass does.

use crate::{
    BenchmarkMode, LrSchedule, MirrorAxes, NormKind, OptimizerKind, PipelineKind, TrainerSettings,
};
use nnunet_core::Trainer;
use nnunet_core::register;

/// A built-in trainer: the default recipe changed by one function.
pub(crate) struct Preset(
    /// Changes nnU-Net's default settings into the trainer's.
    pub fn(&mut TrainerSettings),
);

impl Trainer for Preset {
    fn configure(&self, settings: &mut TrainerSettings) {
        (self.0)(settings)
    }
}

/// Registers `$name` as a [`Preset`] with the given change.
macro_rules! trainer {
    ($name:literal, $description:expr, $change:expr) => {
        register!(Trainer, $name, $description, || Box::new(Preset($change)));
    };
}

trainer!(
    "nnUNetTrainer",
    "nnU-Net's default: SGD (Nesterov 0.99), lr 1e-2 poly decay, 1000 epochs x 250 iterations, Dice+CE with deep supervision",
    |_| {}
);

// ---- Training length ----------------------------------------------------------------------------

/// Registers each `$name` as the default trainer with `$n` epochs.
macro_rules! epochs {
    ($($name:literal => $n:literal),* $(,)?) => {$(
        trainer!($name, concat!("nnUNetTrainer with ", stringify!($n), " epochs"), |s| s.num_epochs = $n);
    )*};
}

epochs! {
    "nnUNetTrainer_1epoch" => 1,
    "nnUNetTrainer_5epochs" => 5,
    "nnUNetTrainer_10epochs" => 10,
    "nnUNetTrainer_20epochs" => 20,
    "nnUNetTrainer_50epochs" => 50,
    "nnUNetTrainer_100epochs" => 100,
    "nnUNetTrainer_250epochs" => 250,
    "nnUNetTrainer_500epochs" => 500,
    "nnUNetTrainer_750epochs" => 750,
    "nnUNetTrainer_2000epochs" => 2000,
    "nnUNetTrainer_4000epochs" => 4000,
    "nnUNetTrainer_8000epochs" => 8000,
}

/// Registers each `$name` as the default trainer with `$n` epochs and no mirroring.
macro_rules! epochs_no_mirroring {
    ($($name:literal => $n:literal),* $(,)?) => {$(
        trainer!($name, concat!("nnUNetTrainer with ", stringify!($n), " epochs, without mirroring (training and inference)"), |s| {
            s.num_epochs = $n;
            s.augmentation.mirror_axes = MirrorAxes::None;
        });
    )*};
}

epochs_no_mirroring! {
    "nnUNetTrainer_250epochs_NoMirroring" => 250,
    "nnUNetTrainer_2000epochs_NoMirroring" => 2000,
    "nnUNetTrainer_4000epochs_NoMirroring" => 4000,
    "nnUNetTrainer_8000epochs_NoMirroring" => 8000,
}

// ---- Optimiser ----------------------------------------------------------------------------------

/// AdamW with AMSGrad (`nnUNetTrainerAdam`).
fn adam(s: &mut TrainerSettings) {
    s.optimizer = OptimizerKind::AdamW {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
        amsgrad: true,
    };
}

/// Adam with L2 weight decay (`nnUNetTrainerVanillaAdam`).
fn vanilla_adam(s: &mut TrainerSettings) {
    s.optimizer = OptimizerKind::Adam {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
    };
}

/// Adan (`nnUNetTrainerAdan`).
fn adan(s: &mut TrainerSettings) {
    s.optimizer = OptimizerKind::Adan {
        beta1: 0.02,
        beta2: 0.08,
        beta3: 0.01,
        epsilon: 1e-8,
    };
}

/// Registers each `$name` as the optimiser change `$base`, at the initial learning rate `$lr`
/// when one is given.
macro_rules! optimizers {
    ($($name:literal, $description:literal => $base:ident $(, $lr:expr)?;)*) => {$(
        trainer!($name, $description, |s| {
            $base(s);
            $(s.initial_lr = $lr;)?
        });
    )*};
}

optimizers! {
    "nnUNetTrainerAdam", "AdamW (AMSGrad, weight decay 3e-5), lr 1e-2" => adam;
    "nnUNetTrainerAdam1en3", "AdamW (AMSGrad), lr 1e-3" => adam, 1e-3;
    "nnUNetTrainerAdam3en4", "AdamW (AMSGrad), lr 3e-4" => adam, 3e-4;
    "nnUNetTrainerVanillaAdam", "Adam with L2 weight decay 3e-5, lr 1e-2" => vanilla_adam;
    "nnUNetTrainerVanillaAdam1en3", "Adam with L2 weight decay, lr 1e-3" => vanilla_adam, 1e-3;
    "nnUNetTrainerVanillaAdam3en4", "Adam with L2 weight decay, lr 3e-4" => vanilla_adam, 3e-4;
    "nnUNetTrainerAdan", "Adan (betas 0.02/0.08/0.01, weight decay 3e-5), lr 1e-2" => adan;
    "nnUNetTrainerAdan1en3", "Adan, lr 1e-3" => adan, 1e-3;
    "nnUNetTrainerAdan3en4", "Adan, lr 3e-4" => adan, 3e-4;
    "nnUNetTrainerAdan1en1", "Adan, lr 1e-1 (diverges in nnU-Net's experience)" => adan, 1e-1;
}
trainer!(
    "nnUNetTrainerAdanCosAnneal",
    "Adan, lr 1e-2 with cosine annealing",
    |s| {
        adan(s);
        s.lr_schedule = LrSchedule::CosineAnnealing { min_lr: 0.0 };
    }
);

// ---- Learning-rate schedule ---------------------------------------------------------------------

trainer!(
    "nnUNetTrainerCosAnneal",
    "SGD with cosine annealing of the learning rate to 0",
    |s| { s.lr_schedule = LrSchedule::CosineAnnealing { min_lr: 0.0 } }
);
trainer!(
    "nnUNetTrainer_warmup",
    "50 epochs of linear learning-rate warm-up, then polynomial decay over the remaining 950",
    |s| {
        s.num_epochs = 1000;
        s.lr_schedule = LrSchedule::WarmupPoly {
            warmup_epochs: 50,
            exponent: 0.9,
        };
    }
);

// ---- Loss ---------------------------------------------------------------------------------------

/// Cross-entropy alone (`nnUNetTrainerCELoss`).
fn ce_loss(s: &mut TrainerSettings) {
    s.loss = "RobustCrossEntropyLoss".into();
}

/// Cross-entropy over the hardest 10% of voxels (`nnUNetTrainerTopk10Loss`).
fn topk10_loss(s: &mut TrainerSettings) {
    s.loss = "TopKLoss".into();
    s.topk_percent = 10.0;
}

trainer!(
    "nnUNetTrainerCELoss",
    "cross-entropy only (no Dice term)",
    ce_loss
);
trainer!(
    "nnUNetTrainerCELoss_5epochs",
    "cross-entropy only, 5 epochs",
    |s| {
        ce_loss(s);
        s.num_epochs = 5;
    }
);
trainer!(
    "nnUNetTrainerDiceLoss",
    "soft Dice only (no cross-entropy term)",
    |s| { s.loss = "MemoryEfficientSoftDiceLoss".into() }
);
trainer!(
    "nnUNetTrainerDiceCELoss_noSmooth",
    "Dice + cross-entropy with Dice smoothing 0",
    |s| { s.dice_smooth = 0.0 }
);
trainer!(
    "nnUNetTrainerTopk10Loss",
    "cross-entropy over the hardest 10% of voxels",
    topk10_loss
);
trainer!(
    "nnUNetTrainerTopk10LossLS01",
    "top-10% cross-entropy with label smoothing 0.1",
    |s| {
        topk10_loss(s);
        s.label_smoothing = 0.1;
    }
);
trainer!(
    "nnUNetTrainerDiceTopK10Loss",
    "soft Dice + top-10% cross-entropy",
    |s| {
        s.loss = "DC_and_topk_loss".into();
        s.topk_percent = 10.0;
    }
);

// ---- Network architecture -----------------------------------------------------------------------

trainer!(
    "nnUNetTrainerNoDeepSupervision",
    "a single output: no deep supervision",
    |s| { s.enable_deep_supervision = false }
);
trainer!(
    "nnUNetTrainerBN",
    "batch normalisation instead of instance normalisation",
    |s| { s.norm = NormKind::Batch }
);

// ---- Sampling -----------------------------------------------------------------------------------

trainer!(
    "nnUNetTrainer_probabilisticOversampling",
    "foreground forced per sample at random, at the rate the fixed rule gives for the batch size",
    |s| {
        s.probabilistic_oversampling = true;
        s.oversampling_matches_fixed_rule = true;
    }
);
/// Foreground forced per sample at random with probability `p`.
fn probabilistic_oversampling(s: &mut TrainerSettings, p: f64) {
    s.probabilistic_oversampling = true;
    s.oversample_foreground_percent = p;
}

trainer!(
    "nnUNetTrainer_probabilisticOversampling_033",
    "foreground forced per sample with probability 0.33",
    |s| probabilistic_oversampling(s, 0.33)
);
trainer!(
    "nnUNetTrainer_probabilisticOversampling_010",
    "foreground forced per sample with probability 0.1",
    |s| probabilistic_oversampling(s, 0.1)
);

// ---- Benchmarking -------------------------------------------------------------------------------

/// 5 epochs without checkpoints, timed as `mode` says.
fn benchmark_5epochs(s: &mut TrainerSettings, mode: BenchmarkMode) {
    s.num_epochs = 5;
    s.disable_checkpointing = true;
    s.benchmark = Some(mode);
}

trainer!(
    "nnUNetTrainerBenchmark_5epochs",
    "5 epochs without checkpoints, reporting epoch times and iterations per second",
    |s| benchmark_5epochs(s, BenchmarkMode::WithDataLoading)
);
trainer!(
    "nnUNetTrainerBenchmark_5epochs_noDataLoading",
    "as nnUNetTrainerBenchmark_5epochs on one fixed random batch: network speed alone",
    |s| benchmark_5epochs(s, BenchmarkMode::NoDataLoading)
);

// ---- Data augmentation --------------------------------------------------------------------------

/// Mirroring only along axis 0 (2D) or axes 0 and 1 (3D).
fn only_mirror_01(s: &mut TrainerSettings) {
    s.augmentation.mirror_axes = MirrorAxes::Only {
        axes_2d: vec![0],
        axes_3d: vec![0, 1],
    };
}

/// Nearest-neighbour label resampling in the spatial augmentation, cascade label transforms
/// with `p_per_label` 1 (`nnUNetTrainer_DASegOrd0`).
fn seg_order_0(s: &mut TrainerSettings) {
    s.augmentation.segmentation_nearest = true;
    s.augmentation.cascade_p_per_label = 1.0;
}

/// nnU-Net's DA5 augmentation pipeline, cascade label transforms with `p_per_label` 1.
fn da5(s: &mut TrainerSettings) {
    s.augmentation.pipeline = PipelineKind::DA5;
    s.augmentation.cascade_p_per_label = 1.0;
}

trainer!(
    "nnUNetTrainerNoDA",
    "no data augmentation and no mirroring",
    |s| {
        s.augmentation.pipeline = PipelineKind::None;
        s.augmentation.mirror_axes = MirrorAxes::None;
    }
);
trainer!(
    "nnUNetTrainerNoMirroring",
    "no mirroring in training or inference",
    |s| { s.augmentation.mirror_axes = MirrorAxes::None }
);
trainer!(
    "nnUNetTrainer_onlyMirror01",
    "mirroring only along axis 0 (2D) or axes 0 and 1 (3D)",
    only_mirror_01
);
trainer!(
    "nnUNetTrainer_onlyMirror01_1500ep",
    "mirroring only along axes 0(/1), 1500 epochs",
    |s| {
        only_mirror_01(s);
        s.num_epochs = 1500;
    }
);
trainer!(
    "nnUNetTrainer_onlyMirror01_DASegOrd0",
    "mirroring only along axes 0(/1); nearest-neighbour label resampling in augmentation",
    |s| {
        only_mirror_01(s);
        seg_order_0(s);
    }
);
trainer!(
    "nnUNetTrainer_DASegOrd0",
    "nearest-neighbour label resampling in the spatial augmentation",
    seg_order_0
);
trainer!(
    "nnUNetTrainer_DASegOrd0_NoMirroring",
    "nearest-neighbour label resampling, no mirroring",
    |s| {
        seg_order_0(s);
        s.augmentation.mirror_axes = MirrorAxes::None;
    }
);
trainer!(
    "nnUNetTrainer_noDummy2DDA",
    "never the pseudo-2D augmentation scheme, even for anisotropic patches",
    |s| s.augmentation.allow_dummy_2d = false
);
trainer!(
    "nnUNetTrainerDA5",
    "nnU-Net's stronger DA5 augmentation pipeline",
    da5
);
trainer!(
    "nnUNetTrainerDA5ord0",
    "DA5 with nearest-neighbour resampling of images and labels",
    |s| {
        da5(s);
        s.augmentation.segmentation_nearest = true;
        s.augmentation.image_nearest = true;
    }
);
trainer!(
    "nnUNetTrainerDA5Segord0",
    "DA5 with nearest-neighbour resampling of labels",
    |s| {
        da5(s);
        s.augmentation.segmentation_nearest = true;
    }
);
trainer!("nnUNetTrainerDA5_10epochs", "DA5, 10 epochs", |s| {
    da5(s);
    s.num_epochs = 10;
});
trainer!(
    "nnUNetTrainer_onlyMirror01_DA5",
    "DA5, mirroring only along axes 0(/1) (AortaSeg24)",
    |s| {
        da5(s);
        only_mirror_01(s);
    }
);

#[cfg(test)]
mod tests {
    use crate::settings_of;
    use nnunet_core::Registries;

    fn settings(name: &str) -> nnunet_core::TrainerSettings {
        let r = Registries::builtin().unwrap();
        settings_of(r.trainers.create(name).unwrap().as_ref())
    }

    #[test]
    fn defaults_are_nnunets() {
        let s = settings("nnUNetTrainer");
        assert_eq!(s, nnunet_core::TrainerSettings::default());
        assert_eq!(
            (s.num_epochs, s.initial_lr, s.weight_decay),
            (1000, 1e-2, 3e-5)
        );
    }

    #[test]
    fn variants_change_what_they_say() {
        assert_eq!(settings("nnUNetTrainer_50epochs").num_epochs, 50);
        assert_eq!(settings("nnUNetTrainer_1epoch").num_epochs, 1);
        let s = settings("nnUNetTrainerAdam3en4");
        assert_eq!(s.initial_lr, 3e-4);
        assert!(matches!(
            s.optimizer,
            super::OptimizerKind::AdamW { amsgrad: true, .. }
        ));
        assert!(!settings("nnUNetTrainerNoDeepSupervision").enable_deep_supervision);
        let s = settings("nnUNetTrainer_250epochs_NoMirroring");
        assert_eq!(s.num_epochs, 250);
        assert!(s.augmentation.mirror_axes.axes(3).is_empty());
        assert_eq!(
            settings("nnUNetTrainer_onlyMirror01")
                .augmentation
                .mirror_axes
                .axes(2),
            [0]
        );
    }

    /// One trainer of each family nnU-Net 2.8.1 ships.
    const NNUNET_TRAINERS: [&str; 18] = [
        "nnUNetTrainer",
        "nnUNetTrainer_1epoch",
        "nnUNetTrainer_8000epochs",
        "nnUNetTrainerAdam",
        "nnUNetTrainerVanillaAdam",
        "nnUNetTrainerAdan",
        "nnUNetTrainerCELoss",
        "nnUNetTrainerDiceLoss",
        "nnUNetTrainerTopk10Loss",
        "nnUNetTrainerDiceTopK10Loss",
        "nnUNetTrainerCosAnneal",
        "nnUNetTrainer_warmup",
        "nnUNetTrainerNoDeepSupervision",
        "nnUNetTrainerBN",
        "nnUNetTrainer_probabilisticOversampling_010",
        "nnUNetTrainerBenchmark_5epochs",
        "nnUNetTrainerNoDA",
        "nnUNetTrainerNoMirroring",
    ];

    #[test]
    fn all_nnunet_families_are_registered() {
        let r = Registries::builtin().unwrap();
        let missing: Vec<&str> = NNUNET_TRAINERS
            .into_iter()
            .filter(|name| !r.trainers.contains(name))
            .collect();
        assert!(missing.is_empty(), "not registered: {missing:?}");
        assert_eq!(r.trainers.len(), 57);
    }
}
