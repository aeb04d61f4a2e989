//! The residual-encoder presets (`nnUNetPlannerResEncM`, `…L`, `…XL`): a `ResidualEncoderUNet`
//! sized for a GPU memory budget of about 8, 24 and 40 GB, with no cap on the fraction of the
//! dataset a batch may cover.

use crate::{NetworkFamily, PlannerPreset};

/// Residual blocks per encoder stage of nnU-Net's ResEnc presets.
pub(crate) const RESENC_BLOCKS_ENCODER: &[i64] = &[1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6];
/// Convolutions per decoder stage of nnU-Net's ResEnc presets.
pub(crate) const RESENC_BLOCKS_DECODER: &[i64] = &[1; 12];

const fn resenc(
    class_name: &'static str,
    plans_name: &'static str,
    gpu_memory_gb: f64,
    reference_val_3d: f64,
    reference_val_2d: f64,
) -> PlannerPreset {
    PlannerPreset {
        class_name,
        plans_name,
        family: NetworkFamily::ResidualEncoderUNet,
        reference_val_3d,
        reference_val_2d,
        reference_val_corresp_gb: gpu_memory_gb,
        default_gpu_memory_gb: gpu_memory_gb,
        max_dataset_covered: 1.0,
        blocks_per_stage_encoder: RESENC_BLOCKS_ENCODER,
        blocks_per_stage_decoder: RESENC_BLOCKS_DECODER,
        shares_default_data_identifiers: true,
    }
}

/// `nnUNetPlannerResEncM`: about 9–11 GB of VRAM, plans `nnUNetResEncUNetMPlans`.
pub const RESENC_M: PlannerPreset = resenc(
    "nnUNetPlannerResEncM",
    "nnUNetResEncUNetMPlans",
    8.0,
    680_000_000.0,
    135_000_000.0,
);

/// `nnUNetPlannerResEncL`: about 24 GB of VRAM, plans `nnUNetResEncUNetLPlans`.
pub const RESENC_L: PlannerPreset = resenc(
    "nnUNetPlannerResEncL",
    "nnUNetResEncUNetLPlans",
    24.0,
    2_100_000_000.0,
    380_000_000.0,
);

/// `nnUNetPlannerResEncXL`: about 40 GB of VRAM, plans `nnUNetResEncUNetXLPlans`.
pub const RESENC_XL: PlannerPreset = resenc(
    "nnUNetPlannerResEncXL",
    "nnUNetResEncUNetXLPlans",
    40.0,
    3_600_000_000.0,
    560_000_000.0,
);
