//! Experiment planners of nnunet-rs, registered under nnU-Net's class names: the default
//! `ExperimentPlanner` and the residual-encoder presets `nnUNetPlannerResEncM`/`L`/`XL`.
//!
//! Every planner is one [`ExperimentPlanner`] running nnU-Net v2.8.1's planning algorithm with a
//! [`PlannerPreset`]: target spacing and transpose from the fingerprint, then `2d`, `3d_fullres`
//! and possibly `3d_lowres` + `3d_cascade_fullres`, each with a patch size shrunk until a feature
//! map estimate fits the GPU memory target. The result is the plans JSON, field for field (key order
//! and int/float types included) as the reference writes it.
//!
//! ```ignore
//! use nnunet_core::Planner;
//! let plans = nnunet_planners::ExperimentPlanner::new(nnunet_planners::RESENC_M).plan(&input)?;
//! ```

mod configuration;
mod experiment_planner;
mod memory_estimate;
mod numeric;
mod resenc;
mod spacing;
mod topology;

pub use experiment_planner::{
    DEFAULT_PRESET, ExperimentPlanner, NetworkFamily, PlannerPreset, plan_experiment,
};
pub use resenc::{RESENC_L, RESENC_M, RESENC_XL};

use nnunet_core::register;

/// The built-in presets, in the order nnU-Net documents them.
pub const PRESETS: [PlannerPreset; 4] = [DEFAULT_PRESET, RESENC_M, RESENC_L, RESENC_XL];

/// Registers an [`ExperimentPlanner`] for each preset, under the preset's class name.
macro_rules! planners {
    ($($preset:expr => $description:literal;)*) => {$(
        register!(Planner, $preset.class_name, $description, || {
            Box::new(ExperimentPlanner::new($preset))
        });
    )*};
}

planners! {
    DEFAULT_PRESET => "nnU-Net's default planner: PlainConvUNet for an 8 GB GPU (plans nnUNetPlans)";
    RESENC_M => "Residual encoder U-Net for a 9-11 GB GPU (plans nnUNetResEncUNetMPlans)";
    RESENC_L => "Residual encoder U-Net for a 24 GB GPU (plans nnUNetResEncUNetLPlans)";
    RESENC_XL => "Residual encoder U-Net for a 40 GB GPU (plans nnUNetResEncUNetXLPlans)";
}
