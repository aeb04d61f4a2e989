//! The experiment planner: from a dataset fingerprint to nnU-Net's plans JSON (nnU-Net's
//! `ExperimentPlanner.plan_experiment`), for any [`PlannerPreset`].

use nnunet_core::planning::{Planner, PlanningInput};
use nnunet_core::{Error, Result};
use nnunet_preprocessing::normalization::Scheme;
use serde_json::{Map, Value, json};

use crate::configuration::{MedianKind, Planned, Shared, plan_configuration};
use crate::numeric::{median, per_axis, prod};
use crate::spacing::{fullres_target_spacing, resampled_shape, transpose};

/// Blocks per encoder stage of nnU-Net's default `PlainConvUNet` (two convolutions per stage).
const PLAIN_BLOCKS_ENCODER: &[i64] = &[2; 14];
/// Convolutions per decoder stage of nnU-Net's default `PlainConvUNet`.
const PLAIN_BLOCKS_DECODER: &[i64] = &[2; 13];

/// A 3d_lowres configuration is searched for when the fullres patch covers less than this
/// fraction of the median image.
const LOWRES_CREATION_THRESHOLD: f64 = 0.25;
/// Factor by which the lowres spacing grows per search step.
const LOWRES_SPACING_INCREASE: f64 = 1.03;
/// Safety net for the lowres search (it normally ends after a few dozen steps).
const LOWRES_MAX_STEPS: usize = 100_000;

/// The network family a planner sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkFamily {
    /// `dynamic_network_architectures…PlainConvUNet`; the patch shrinks while
    /// `estimate / reference_bs * 2 > reference`.
    PlainConvUNet,
    /// `dynamic_network_architectures…ResidualEncoderUNet`; the patch shrinks while
    /// `estimate > reference`, and the encoder counts are residual blocks (`n_blocks_per_stage`).
    ResidualEncoderUNet,
}

impl NetworkFamily {
    /// The class path written to `architecture.network_class_name`.
    pub fn class_path(self) -> &'static str {
        match self {
            NetworkFamily::PlainConvUNet => {
                "dynamic_network_architectures.architectures.unet.PlainConvUNet"
            }
            NetworkFamily::ResidualEncoderUNet => {
                "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
            }
        }
    }
}

/// The numbers that distinguish nnU-Net's planner classes.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannerPreset {
    /// nnU-Net class name, written as `experiment_planner_used` and registered for `-pl`.
    pub class_name: &'static str,
    /// Default plans name (`nnUNetPlans`, …).
    pub plans_name: &'static str,
    /// The network the planner sizes.
    pub family: NetworkFamily,
    /// Feature-map budget of a 3-D network at `reference_val_corresp_gb` (`UNet_reference_val_3d`).
    pub reference_val_3d: f64,
    /// Feature-map budget of a 2-D network at `reference_val_corresp_gb` (`UNet_reference_val_2d`).
    pub reference_val_2d: f64,
    /// GPU memory the reference values correspond to, in GB.
    pub reference_val_corresp_gb: f64,
    /// GPU memory target when `-gpu_memory_target` is not given, in GB.
    pub default_gpu_memory_gb: f64,
    /// Largest fraction of the dataset's voxels one batch may cover (0.05 by default).
    pub max_dataset_covered: f64,
    /// Convolutions (plain) or residual blocks (ResEnc) per encoder stage.
    pub blocks_per_stage_encoder: &'static [i64],
    /// Convolutions per decoder stage.
    pub blocks_per_stage_decoder: &'static [i64],
    /// Whether `2d` and `3d_fullres` use the default data identifiers `nnUNetPlans_2d` /
    /// `nnUNetPlans_3d_fullres` (ResEnc planners share the default preprocessed data).
    pub shares_default_data_identifiers: bool,
}

/// nnU-Net's default `ExperimentPlanner`: `PlainConvUNet`, 8 GB, batches cover at most 5 % of the
/// dataset.
pub const DEFAULT_PRESET: PlannerPreset = PlannerPreset {
    class_name: "ExperimentPlanner",
    plans_name: "nnUNetPlans",
    family: NetworkFamily::PlainConvUNet,
    reference_val_3d: 560_000_000.0,
    reference_val_2d: 85_000_000.0,
    reference_val_corresp_gb: 8.0,
    default_gpu_memory_gb: 8.0,
    max_dataset_covered: 0.05,
    blocks_per_stage_encoder: PLAIN_BLOCKS_ENCODER,
    blocks_per_stage_decoder: PLAIN_BLOCKS_DECODER,
    shares_default_data_identifiers: false,
};

/// A planner running nnU-Net's planning algorithm with one [`PlannerPreset`].
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentPlanner {
    preset: PlannerPreset,
}

impl ExperimentPlanner {
    /// A planner with the given preset ([`DEFAULT_PRESET`], [`crate::RESENC_M`], …).
    pub fn new(preset: PlannerPreset) -> Self {
        Self { preset }
    }

    /// The preset this planner runs with.
    pub fn preset(&self) -> &PlannerPreset {
        &self.preset
    }
}

impl Default for ExperimentPlanner {
    fn default() -> Self {
        Self::new(DEFAULT_PRESET)
    }
}

impl Planner for ExperimentPlanner {
    fn default_plans_name(&self) -> &str {
        self.preset.plans_name
    }

    fn plan(&self, input: &PlanningInput<'_>) -> Result<Value> {
        plan_experiment(&self.preset, input)
    }
}

// ---- Inputs ------------------------------------------------------------------------------------

/// An invalid-input error about the file `what`.
fn invalid(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::plans(format!("{what}: {reason}"))
}

/// The fingerprint file, as named in errors.
const FINGERPRINT: &str = "dataset_fingerprint.json";
/// The dataset description, as named in errors.
const DATASET_JSON: &str = "dataset.json";

/// The parts of the fingerprint the planner reads.
struct Fingerprint {
    /// `spacings`: each case's spacing.
    spacings: Vec<[f64; 3]>,
    /// `shapes_after_crop`: each case's shape after cropping.
    shapes: Vec<[f64; 3]>,
    /// `median_relative_size_after_cropping`.
    median_relative_size: f64,
}

/// The list `key` of the fingerprint, each entry three finite numbers.
fn triples(fingerprint: &Value, key: &str) -> Result<Vec<[f64; 3]>> {
    let list = fingerprint
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(FINGERPRINT, format!("'{key}' is missing or not a list")))?;
    list.iter()
        .enumerate()
        .map(|(case, entry)| {
            let values: Option<Vec<f64>> = entry
                .as_array()
                .map(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                .unwrap_or(None);
            match values.as_deref() {
                Some(&[a, b, c]) if [a, b, c].iter().all(|v| v.is_finite()) => Ok([a, b, c]),
                _ => Err(invalid(
                    FINGERPRINT,
                    format!("'{key}'[{case}] is not a list of three numbers: {entry}"),
                )),
            }
        })
        .collect()
}

/// Reads and checks the parts of the fingerprint the planner uses.
fn read_fingerprint(fingerprint: &Value) -> Result<Fingerprint> {
    let spacings = triples(fingerprint, "spacings")?;
    let shapes = triples(fingerprint, "shapes_after_crop")?;
    if spacings.is_empty() {
        return Err(invalid(
            FINGERPRINT,
            "'spacings' is empty (no training cases)",
        ));
    }
    if spacings.len() != shapes.len() {
        return Err(invalid(
            FINGERPRINT,
            format!(
                "{} spacings but {} shapes_after_crop",
                spacings.len(),
                shapes.len()
            ),
        ));
    }
    if let Some(bad) = spacings.iter().find(|s| s.iter().any(|&v| v <= 0.0)) {
        return Err(invalid(
            FINGERPRINT,
            format!("spacing must be > 0, got {bad:?}"),
        ));
    }
    if let Some(bad) = shapes.iter().find(|s| s.iter().any(|&v| v < 1.0)) {
        return Err(invalid(
            FINGERPRINT,
            format!("shapes_after_crop must be >= 1, got {bad:?}"),
        ));
    }
    let median_relative_size = fingerprint
        .get("median_relative_size_after_cropping")
        .and_then(Value::as_f64)
        .ok_or_else(|| {
            invalid(
                FINGERPRINT,
                "'median_relative_size_after_cropping' is missing or not a number",
            )
        })?;
    if fingerprint
        .get("foreground_intensity_properties_per_channel")
        .is_none()
    {
        return Err(invalid(
            FINGERPRINT,
            "'foreground_intensity_properties_per_channel' is missing",
        ));
    }
    Ok(Fingerprint {
        spacings,
        shapes,
        median_relative_size,
    })
}

/// The normalization class for a channel name (matched case-insensitively; ZScore otherwise) and
/// whether it leaves pixels outside the mask at zero when the mask is used.
fn normalization_scheme(channel_name: &str) -> (&'static str, bool) {
    let scheme = Scheme::for_channel_name(channel_name);
    (scheme.plans_name(), scheme.keeps_outside_of_mask_at_zero())
}

// ---- Planning ----------------------------------------------------------------------------------

/// `values` as a JSON list of floats.
fn floats(values: &[f64]) -> Value {
    Value::Array(values.iter().map(|&v| Value::from(v)).collect())
}

/// Runs nnU-Net's `plan_experiment` with `preset` and returns the plans JSON, keys in nnU-Net's
/// order. Writing the file (and merging with an existing one) is the caller's business.
pub fn plan_experiment(preset: &PlannerPreset, input: &PlanningInput<'_>) -> Result<Value> {
    let fingerprint = read_fingerprint(input.fingerprint)?;
    let dataset = read_dataset(input.dataset_json)?;
    let use_mask: Vec<bool> = if fingerprint.median_relative_size < 0.75 {
        dataset.mask_capable.clone()
    } else {
        vec![false; dataset.schemes.len()]
    };
    let gpu_memory_gb = gpu_memory_target(preset, input)?;
    let plans_name = if input.plans_name.is_empty() {
        preset.plans_name
    } else {
        input.plans_name
    };
    let data_identifier = |configuration: &str| {
        if preset.shares_default_data_identifiers
            && (configuration == "2d" || configuration == "3d_fullres")
        {
            format!("nnUNetPlans_{configuration}")
        } else {
            format!("{plans_name}_{configuration}")
        }
    };

    let target = target_spacing(input, &fingerprint)?;
    let (forward, backward) = transpose(&target);
    let fullres_spacing: Vec<f64> = forward.iter().map(|&a| target[a]).collect();
    let new_shapes: Vec<[f64; 3]> = fingerprint
        .shapes
        .iter()
        .zip(&fingerprint.spacings)
        .map(|(shape, spacing)| resampled_shape(shape, spacing, &target))
        .collect();
    let new_median = per_axis(&new_shapes, median);
    let median_shape: Vec<f64> = forward.iter().map(|&a| new_median[a]).collect();
    let approx_n_voxels = prod(&median_shape) * dataset.n_training;

    let shared = Shared {
        preset,
        gpu_memory_gb,
        n_classes: dataset.n_classes,
        normalization_schemes: &dataset.schemes,
        use_mask_for_norm: &use_mask,
        preprocessor_name: input.preprocessor_name,
    };
    let (fullres, lowres) = if median_shape[0] != 1.0 {
        plan_3d(
            &shared,
            &fullres_spacing,
            &median_shape,
            &data_identifier,
            dataset.n_training,
        )?
    } else {
        (None, None)
    };
    let mut plan_2d = plan_configuration(
        &shared,
        &fullres_spacing[1..],
        &median_shape[1..],
        MedianKind::Float,
        &data_identifier("2d"),
        approx_n_voxels,
    )?;
    plan_2d.json.insert("batch_dice".into(), json!(true));
    let configurations = configurations_json(plan_2d, fullres, lowres);
    Ok(plans_json(
        preset,
        input,
        plans_name,
        &fingerprint,
        (&forward, &backward),
        configurations,
    ))
}

/// The GPU memory target in GB: the one given to the planner, or the preset's default.
fn gpu_memory_target(preset: &PlannerPreset, input: &PlanningInput<'_>) -> Result<f64> {
    let gpu_memory_gb = input
        .gpu_memory_target_gb
        .unwrap_or(preset.default_gpu_memory_gb);
    if !(gpu_memory_gb > 0.0 && gpu_memory_gb.is_finite()) {
        return Err(Error::plans(format!(
            "the GPU memory target must be a positive number of GB, got {gpu_memory_gb}"
        )));
    }
    Ok(gpu_memory_gb)
}

/// The parts of `dataset.json` the planner reads.
struct DatasetInfo {
    /// `numTraining`.
    n_training: f64,
    /// The number of entries of `labels`.
    n_classes: i64,
    /// The normalization class of each channel.
    schemes: Vec<&'static str>,
    /// Whether each channel's scheme keeps pixels outside the mask at zero.
    mask_capable: Vec<bool>,
}

/// Reads `numTraining`, `channel_names` (or `modality`) and `labels` of `dataset.json`.
fn read_dataset(dataset: &Value) -> Result<DatasetInfo> {
    let n_training = dataset
        .get("numTraining")
        .and_then(Value::as_f64)
        .ok_or_else(|| invalid(DATASET_JSON, "'numTraining' is missing or not a number"))?;
    let channels = dataset
        .get("channel_names")
        .or_else(|| dataset.get("modality"))
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(DATASET_JSON, "'channel_names' is missing or not an object"))?;
    let n_classes = dataset
        .get("labels")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(DATASET_JSON, "'labels' is missing or not an object"))?
        .len() as i64;

    let mut schemes = Vec::with_capacity(channels.len());
    let mut mask_capable = Vec::with_capacity(channels.len());
    for (key, name) in channels {
        let name = name.as_str().ok_or_else(|| {
            invalid(
                DATASET_JSON,
                format!("channel_names['{key}'] is not a string"),
            )
        })?;
        let (scheme, keeps_zero) = normalization_scheme(name);
        schemes.push(scheme);
        mask_capable.push(keeps_zero);
    }
    Ok(DatasetInfo {
        n_training,
        n_classes,
        schemes,
        mask_capable,
    })
}

/// The fullres target spacing: the one given to the planner, or nnU-Net's choice from the
/// fingerprint.
fn target_spacing(input: &PlanningInput<'_>, fingerprint: &Fingerprint) -> Result<[f64; 3]> {
    match input.overwrite_target_spacing {
        Some(t) => {
            if t.iter().any(|&v| !(v > 0.0 && v.is_finite())) {
                return Err(Error::plans(format!(
                    "overwrite_target_spacing must be positive numbers, got {t:?}"
                )));
            }
            Ok(t)
        }
        None => Ok(fullres_target_spacing(
            &fingerprint.spacings,
            &fingerprint.shapes,
        )),
    }
}

/// The product of a patch size, as a float.
fn patch_voxels(patch_size: &[i64]) -> f64 {
    prod(&patch_size.iter().map(|&v| v as f64).collect::<Vec<_>>())
}

/// `3d_fullres` and, when its patch covers too little of the median image, `3d_lowres` (kept
/// only when it halves the voxels at least), with their `batch_dice`.
fn plan_3d(
    shared: &Shared<'_>,
    fullres_spacing: &[f64],
    median_shape: &[f64],
    data_identifier: &dyn Fn(&str) -> String,
    n_training: f64,
) -> Result<(Option<Planned>, Option<Planned>)> {
    let median_voxels_fullres = prod(median_shape);
    let mut full = plan_configuration(
        shared,
        fullres_spacing,
        median_shape,
        MedianKind::Float,
        &data_identifier("3d_fullres"),
        median_voxels_fullres * n_training,
    )?;
    let (mut lowres, median_voxels) = search_lowres(
        shared,
        fullres_spacing,
        median_shape,
        &data_identifier("3d_lowres"),
        n_training,
        patch_voxels(&full.patch_size),
    )?;
    if median_voxels_fullres / median_voxels < 2.0 {
        lowres = None;
    }
    full.json
        .insert("batch_dice".into(), json!(lowres.is_some()));
    if let Some(low) = lowres.as_mut() {
        low.json.insert("batch_dice".into(), json!(false));
    }
    Ok((Some(full), lowres))
}

/// nnU-Net's search for `3d_lowres`: while the patch covers less than
/// [`LOWRES_CREATION_THRESHOLD`] of the median image, the spacing grows (the coarse axes only,
/// while some are coarse) and the configuration is planned again. Returns the last configuration
/// planned (`None` if none was needed) and its median voxel count.
fn search_lowres(
    shared: &Shared<'_>,
    fullres_spacing: &[f64],
    median_shape: &[f64],
    data_identifier: &str,
    n_training: f64,
    fullres_patch_voxels: f64,
) -> Result<(Option<Planned>, f64)> {
    let mut median_voxels = prod(median_shape);
    let mut patch_voxels = fullres_patch_voxels;
    let mut lowres_spacing = fullres_spacing.to_vec();
    let mut lowres = None;
    let mut steps = 0;
    while patch_voxels / median_voxels < LOWRES_CREATION_THRESHOLD {
        steps += 1;
        if steps > LOWRES_MAX_STEPS {
            return Err(Error::plans(
                "the search for a 3d_lowres configuration does not end",
            ));
        }
        let max_spacing = lowres_spacing
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let coarse: Vec<bool> = lowres_spacing
            .iter()
            .map(|&s| max_spacing / s > 2.0)
            .collect();
        let any_coarse = coarse.iter().any(|&c| c);
        for (s, &c) in lowres_spacing.iter_mut().zip(&coarse) {
            if c || !any_coarse {
                *s *= LOWRES_SPACING_INCREASE;
            }
        }
        let lowres_median: Vec<f64> = (0..3)
            .map(|i| fullres_spacing[i] / lowres_spacing[i] * median_shape[i])
            .collect();
        median_voxels = prod(&lowres_median);
        let rounded: Vec<f64> = lowres_median.iter().map(|v| v.round_ties_even()).collect();
        let planned = plan_configuration(
            shared,
            &lowres_spacing,
            &rounded,
            MedianKind::Int,
            data_identifier,
            median_voxels * n_training,
        )?;
        patch_voxels = planned
            .patch_size
            .iter()
            .map(|&v| v as f64)
            .product::<f64>();
        lowres = Some(planned);
    }
    Ok((lowres, median_voxels))
}

/// The `configurations` entry: `2d`, then `3d_lowres` (with `next_stage` when there is a
/// fullres), `3d_fullres` and `3d_cascade_fullres` (when there is a lowres).
fn configurations_json(
    plan_2d: Planned,
    fullres: Option<Planned>,
    lowres: Option<Planned>,
) -> Map<String, Value> {
    let mut configurations = Map::new();
    configurations.insert("2d".into(), Value::Object(plan_2d.json));
    let has_lowres = lowres.is_some();
    if let Some(mut low) = lowres {
        if fullres.is_some() {
            low.json
                .insert("next_stage".into(), json!("3d_cascade_fullres"));
        }
        configurations.insert("3d_lowres".into(), Value::Object(low.json));
    }
    if let Some(full) = fullres {
        configurations.insert("3d_fullres".into(), Value::Object(full.json));
        if has_lowres {
            configurations.insert(
                "3d_cascade_fullres".into(),
                json!({"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}),
            );
        }
    }
    configurations
}

/// The plans JSON around `configurations`, keys in nnU-Net's order; `transpose` is
/// (forward, backward).
fn plans_json(
    preset: &PlannerPreset,
    input: &PlanningInput<'_>,
    plans_name: &str,
    fingerprint: &Fingerprint,
    transpose: (&[usize], &[usize]),
    configurations: Map<String, Value>,
) -> Value {
    let (forward, backward) = transpose;
    let median_spacing = per_axis(&fingerprint.spacings, median);
    let median_crop_shape = per_axis(&fingerprint.shapes, median);
    let original_spacing: Vec<f64> = forward.iter().map(|&a| median_spacing[a]).collect();
    let original_shape: Vec<i64> = forward
        .iter()
        .map(|&a| median_crop_shape[a].round_ties_even() as i64)
        .collect();

    let mut plans = Map::new();
    plans.insert("dataset_name".into(), json!(input.dataset_name));
    plans.insert("plans_name".into(), json!(plans_name));
    plans.insert(
        "original_median_spacing_after_transp".into(),
        floats(&original_spacing),
    );
    plans.insert(
        "original_median_shape_after_transp".into(),
        json!(original_shape),
    );
    plans.insert("image_reader_writer".into(), json!(input.reader_name));
    plans.insert("transpose_forward".into(), json!(forward));
    plans.insert("transpose_backward".into(), json!(backward));
    plans.insert("configurations".into(), Value::Object(configurations));
    plans.insert("experiment_planner_used".into(), json!(preset.class_name));
    plans.insert("label_manager".into(), json!("LabelManager"));
    plans.insert(
        "foreground_intensity_properties_per_channel".into(),
        input.fingerprint["foreground_intensity_properties_per_channel"].clone(),
    );
    Value::Object(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_names_are_case_insensitive() {
        assert_eq!(normalization_scheme("noNorm").0, "NoNormalization");
        assert_eq!(normalization_scheme("CT").0, "CTNormalization");
        assert_eq!(normalization_scheme("T2"), ("ZScoreNormalization", true));
        assert_eq!(
            normalization_scheme("rescale_to_0_1"),
            ("RescaleTo01Normalization", false)
        );
    }

    #[test]
    fn missing_fingerprint_field_is_an_error() {
        let dataset =
            json!({"channel_names": {"0": "CT"}, "labels": {"background": 0}, "numTraining": 1});
        let fingerprint = json!({"spacings": [[1.0, 1.0, 1.0]]});
        let input = PlanningInput {
            dataset_name: "Dataset001_X",
            dataset_json: &dataset,
            fingerprint: &fingerprint,
            plans_name: "nnUNetPlans",
            gpu_memory_target_gb: None,
            overwrite_target_spacing: None,
            reader_name: "SimpleITKIO",
            preprocessor_name: "DefaultPreprocessor",
        };
        let err = ExperimentPlanner::default().plan(&input).unwrap_err();
        assert!(err.to_string().contains("shapes_after_crop"), "{err}");
    }
}
