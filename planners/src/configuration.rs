//! One configuration (`2d`, `3d_fullres` or `3d_lowres`) of the plans: patch size, topology, batch
//! size and the configuration's JSON (nnU-Net's `get_plans_for_configuration`).

use nnunet_core::{Error, Result};
use serde_json::{Map, Value, json};

use crate::memory_estimate::{NetworkShape, feature_map_elements};
use crate::numeric::prod;
use crate::topology::{Topology, pool_and_conv_props};
use crate::{NetworkFamily, PlannerPreset};

const BASE_NUM_FEATURES: i64 = 32;
const MAX_FEATURES_2D: i64 = 512;
const MAX_FEATURES_3D: i64 = 320;
const REFERENCE_BATCH_SIZE_2D: f64 = 12.0;
const REFERENCE_BATCH_SIZE_3D: f64 = 2.0;
const FEATUREMAP_MIN_EDGE_LENGTH: f64 = 4.0;
const MAX_NUMPOOL: u32 = 999_999;
const MIN_BATCH_SIZE: f64 = 2.0;

/// What every configuration of one plans file shares.
pub(crate) struct Shared<'a> {
    /// The planner's preset.
    pub preset: &'a PlannerPreset,
    /// The GPU memory target, in GB.
    pub gpu_memory_gb: f64,
    /// The number of entries of `labels` (background included).
    pub n_classes: i64,
    /// The normalization class of each channel.
    pub normalization_schemes: &'a [&'static str],
    /// Whether each channel is normalised inside the nonzero mask only.
    pub use_mask_for_norm: &'a [bool],
    /// The `preprocessor_name` written to every configuration.
    pub preprocessor_name: &'a str,
}

/// A planned configuration: its JSON (without `batch_dice`/`next_stage`) and its patch size.
pub(crate) struct Planned {
    /// The configuration's JSON, keys in nnU-Net's order.
    pub json: Map<String, Value>,
    /// The patch size, in the transposed axis order.
    pub patch_size: Vec<i64>,
}

/// How `median_image_size_in_voxels` is written: floats (2d, 3d_fullres) or ints (3d_lowres).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum MedianKind {
    /// Written as floats.
    Float,
    /// Written as integers.
    Int,
}

/// Features per stage: 32 doubling per stage, capped at `max_features`.
fn features_per_stage(n_stages: usize, max_features: i64) -> Vec<i64> {
    (0..n_stages)
        .map(|i| (BASE_NUM_FEATURES << i.min(40)).min(max_features))
        .collect()
}

/// The first `n` entries of the preset's per-stage `counts` (`what` names them in the error).
fn stage_counts(counts: &[i64], n: usize, what: &str) -> Result<Vec<i64>> {
    counts.get(..n).map(<[i64]>::to_vec).ok_or_else(|| {
        Error::plans(format!(
            "the planner defines {} {what} but the network needs {n}",
            counts.len()
        ))
    })
}

/// Plans one configuration for the (transposed) `spacing` and `median_shape` (2 or 3 entries used).
pub(crate) fn plan_configuration(
    shared: &Shared<'_>,
    spacing: &[f64],
    median_shape: &[f64],
    median_kind: MedianKind,
    data_identifier: &str,
    approx_n_voxels_dataset: f64,
) -> Result<Planned> {
    check_configuration_inputs(spacing, median_shape, data_identifier)?;
    let dim = spacing.len();
    let median = &median_shape[..dim];
    let preset = shared.preset;
    let max_features = if dim == 2 {
        MAX_FEATURES_2D
    } else {
        MAX_FEATURES_3D
    };
    let budget = Budget::new(shared, dim);
    let (topology, vram) = shrink_until_fits(
        shared,
        spacing,
        median,
        max_features,
        &budget,
        data_identifier,
    )?;

    let batch_size = (budget.reference / vram * budget.reference_bs).round_ties_even();
    let patch_voxels = prod(
        &topology
            .patch_size
            .iter()
            .map(|&v| v as f64)
            .collect::<Vec<_>>(),
    );
    let batch_cap =
        (approx_n_voxels_dataset * preset.max_dataset_covered / patch_voxels).round_ties_even();
    let batch_size = batch_size.min(batch_cap).max(MIN_BATCH_SIZE) as i64;

    let architecture = architecture_json(preset, dim, &topology, max_features)?;
    let config = configuration_json(
        shared,
        spacing,
        median_json(median, median_kind),
        data_identifier,
        batch_size,
        &topology.patch_size,
        architecture,
    );
    Ok(Planned {
        json: config,
        patch_size: topology.patch_size,
    })
}

/// A 2-D or 3-D configuration needs as many median axes as spacings, and positive spacings.
fn check_configuration_inputs(
    spacing: &[f64],
    median_shape: &[f64],
    data_identifier: &str,
) -> Result<()> {
    let dim = spacing.len();
    if !(dim == 2 || dim == 3) || median_shape.len() < dim {
        return Err(Error::plans(format!(
            "cannot plan a {dim}-D configuration from a median shape of {} axes",
            median_shape.len()
        )));
    }
    if spacing.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
        return Err(Error::plans(format!(
            "spacing must be > 0, got {spacing:?} for {data_identifier}"
        )));
    }
    Ok(())
}

/// The memory budget of one configuration: the preset's reference value scaled to the GPU memory
/// target, and the reference batch size it was measured with.
struct Budget {
    /// The network family, which decides how the estimate is compared.
    family: NetworkFamily,
    /// The feature-map budget for the GPU memory target.
    reference: f64,
    /// The batch size the reference value corresponds to.
    reference_bs: f64,
}

impl Budget {
    /// The budget of a `dim`-D configuration.
    fn new(shared: &Shared<'_>, dim: usize) -> Self {
        let preset = shared.preset;
        let reference_val = if dim == 2 {
            preset.reference_val_2d
        } else {
            preset.reference_val_3d
        };
        Budget {
            family: preset.family,
            reference: reference_val * (shared.gpu_memory_gb / preset.reference_val_corresp_gb),
            reference_bs: if dim == 2 {
                REFERENCE_BATCH_SIZE_2D
            } else {
                REFERENCE_BATCH_SIZE_3D
            },
        }
    }

    /// Whether a network with feature-map estimate `e` does not fit.
    fn too_large(&self, e: f64) -> bool {
        match self.family {
            NetworkFamily::PlainConvUNet => e / self.reference_bs * 2.0 > self.reference,
            NetworkFamily::ResidualEncoderUNet => e > self.reference,
        }
    }
}

/// The feature-map estimate of the preset's network with topology `t`.
fn estimate(
    preset: &PlannerPreset,
    n_classes: i64,
    max_features: i64,
    t: &Topology,
) -> Result<i64> {
    let n = t.n_stages();
    let features = features_per_stage(n, max_features);
    let encoder = stage_counts(preset.blocks_per_stage_encoder, n, "encoder stages")?;
    let decoder = stage_counts(preset.blocks_per_stage_decoder, n - 1, "decoder stages")?;
    Ok(feature_map_elements(
        &NetworkShape {
            family: preset.family,
            features: &features,
            strides: &t.strides,
            blocks_encoder: &encoder,
            blocks_decoder: &decoder,
            n_classes,
        },
        &t.patch_size,
    ))
}

/// The topology and its estimate: starting from the spacing's aspect ratio scaled to 256^3 (3-D)
/// or 2048^2 (2-D) voxels and clipped to the median shape, the axis that is largest relative to
/// the median (the last one on ties) shrinks until the network fits the budget.
fn shrink_until_fits(
    shared: &Shared<'_>,
    spacing: &[f64],
    median: &[f64],
    max_features: i64,
    budget: &Budget,
    data_identifier: &str,
) -> Result<(Topology, f64)> {
    let dim = spacing.len();
    let inverse: Vec<f64> = spacing.iter().map(|s| 1.0 / s).collect();
    let scale = if dim == 3 {
        (16_777_216.0 / prod(&inverse)).powf(1.0 / 3.0)
    } else {
        (4_194_304.0 / prod(&inverse)).powf(1.0 / 2.0)
    };
    let initial: Vec<f64> = inverse
        .iter()
        .zip(median)
        .map(|(&t, &m)| (t * scale).round_ties_even().min(m))
        .collect();

    let estimate = |t: &Topology| estimate(shared.preset, shared.n_classes, max_features, t);
    let mut topology =
        pool_and_conv_props(spacing, &initial, FEATUREMAP_MIN_EDGE_LENGTH, MAX_NUMPOOL);
    let mut vram = estimate(&topology)? as f64;
    while budget.too_large(vram) {
        let mut axis = 0;
        let mut best = f64::NEG_INFINITY;
        for (i, (&p, &m)) in topology.patch_size.iter().zip(median).enumerate() {
            let ratio = p as f64 / m;
            if ratio >= best {
                best = ratio;
                axis = i;
            }
        }
        let mut trial = topology.patch_size.clone();
        trial[axis] -= topology.divisible_by[axis];
        let trial_f: Vec<f64> = trial.iter().map(|&v| v as f64).collect();
        let step = pool_and_conv_props(spacing, &trial_f, FEATUREMAP_MIN_EDGE_LENGTH, MAX_NUMPOOL)
            .divisible_by[axis];
        let mut patch = topology.patch_size.clone();
        patch[axis] -= step;
        if patch[axis] < 1 {
            return Err(Error::plans(format!(
                "no patch size fits the GPU memory target of {} GB for {data_identifier}",
                shared.gpu_memory_gb
            )));
        }
        let patch_f: Vec<f64> = patch.iter().map(|&v| v as f64).collect();
        topology = pool_and_conv_props(spacing, &patch_f, FEATUREMAP_MIN_EDGE_LENGTH, MAX_NUMPOOL);
        vram = estimate(&topology)? as f64;
    }
    Ok((topology, vram))
}

/// The `architecture` entry of a `dim`-D configuration with `topology`.
fn architecture_json(
    preset: &PlannerPreset,
    dim: usize,
    topology: &Topology,
    max_features: i64,
) -> Result<Map<String, Value>> {
    let n_stages = topology.n_stages();
    let conv_op = format!("torch.nn.modules.conv.Conv{dim}d");
    let norm_op = format!("torch.nn.modules.instancenorm.InstanceNorm{dim}d");
    let blocks_key = match preset.family {
        NetworkFamily::PlainConvUNet => "n_conv_per_stage",
        NetworkFamily::ResidualEncoderUNet => "n_blocks_per_stage",
    };
    let mut arch_kwargs = Map::new();
    arch_kwargs.insert("n_stages".into(), json!(n_stages));
    arch_kwargs.insert(
        "features_per_stage".into(),
        json!(features_per_stage(n_stages, max_features)),
    );
    arch_kwargs.insert("conv_op".into(), json!(conv_op));
    arch_kwargs.insert("kernel_sizes".into(), json!(topology.kernel_sizes));
    arch_kwargs.insert("strides".into(), json!(topology.strides));
    arch_kwargs.insert(
        blocks_key.into(),
        json!(stage_counts(
            preset.blocks_per_stage_encoder,
            n_stages,
            "encoder stages"
        )?),
    );
    arch_kwargs.insert(
        "n_conv_per_stage_decoder".into(),
        json!(stage_counts(
            preset.blocks_per_stage_decoder,
            n_stages - 1,
            "decoder stages"
        )?),
    );
    arch_kwargs.insert("conv_bias".into(), json!(true));
    arch_kwargs.insert("norm_op".into(), json!(norm_op));
    arch_kwargs.insert(
        "norm_op_kwargs".into(),
        json!({"eps": 1e-5, "affine": true}),
    );
    arch_kwargs.insert("dropout_op".into(), Value::Null);
    arch_kwargs.insert("dropout_op_kwargs".into(), Value::Null);
    arch_kwargs.insert("nonlin".into(), json!("torch.nn.LeakyReLU"));
    arch_kwargs.insert("nonlin_kwargs".into(), json!({"inplace": true}));

    let mut architecture = Map::new();
    architecture.insert(
        "network_class_name".into(),
        json!(preset.family.class_path()),
    );
    architecture.insert("arch_kwargs".into(), Value::Object(arch_kwargs));
    architecture.insert(
        "_kw_requires_import".into(),
        json!(["conv_op", "norm_op", "dropout_op", "nonlin"]),
    );
    Ok(architecture)
}

/// `median_image_size_in_voxels`: floats or ints as `median_kind` says.
fn median_json(median: &[f64], median_kind: MedianKind) -> Vec<Value> {
    median
        .iter()
        .map(|&m| match median_kind {
            MedianKind::Float => Value::from(m),
            MedianKind::Int => Value::from(m as i64),
        })
        .collect()
}

/// The configuration's JSON (without `batch_dice`/`next_stage`), keys in nnU-Net's order.
fn configuration_json(
    shared: &Shared<'_>,
    spacing: &[f64],
    median_json: Vec<Value>,
    data_identifier: &str,
    batch_size: i64,
    patch_size: &[i64],
    architecture: Map<String, Value>,
) -> Map<String, Value> {
    let resampling = |is_seg: bool, order: i64| json!({"is_seg": is_seg, "order": order, "order_z": 0, "force_separate_z": null});
    const RESAMPLING_FN: &str = "resample_data_or_seg_to_shape";

    let mut config = Map::new();
    config.insert("data_identifier".into(), json!(data_identifier));
    config.insert("preprocessor_name".into(), json!(shared.preprocessor_name));
    config.insert("batch_size".into(), json!(batch_size));
    config.insert("patch_size".into(), json!(patch_size));
    config.insert(
        "median_image_size_in_voxels".into(),
        Value::Array(median_json),
    );
    config.insert(
        "spacing".into(),
        Value::Array(spacing.iter().map(|&s| Value::from(s)).collect()),
    );
    config.insert(
        "normalization_schemes".into(),
        json!(shared.normalization_schemes),
    );
    config.insert("use_mask_for_norm".into(), json!(shared.use_mask_for_norm));
    config.insert("resampling_fn_data".into(), json!(RESAMPLING_FN));
    config.insert("resampling_fn_seg".into(), json!(RESAMPLING_FN));
    config.insert("resampling_fn_data_kwargs".into(), resampling(false, 3));
    config.insert("resampling_fn_seg_kwargs".into(), resampling(true, 1));
    config.insert("resampling_fn_probabilities".into(), json!(RESAMPLING_FN));
    config.insert(
        "resampling_fn_probabilities_kwargs".into(),
        resampling(false, 1),
    );
    config.insert("architecture".into(), Value::Object(architecture));
    config
}
