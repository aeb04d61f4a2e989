//! Experiment planning: the [`Planner`] extension trait. A planner turns a dataset fingerprint into
//! nnU-Net's plans JSON (configurations, patch and batch sizes, network topology, normalisation and
//! resampling). Plans are kept as JSON because their schema is nnU-Net's and must round-trip
//! field for field.

use crate::error::Result;

/// What a planner works from.
pub struct PlanningInput<'a> {
    /// `DatasetXXX_Name`.
    pub dataset_name: &'a str,
    /// The dataset's `dataset.json`.
    pub dataset_json: &'a serde_json::Value,
    /// The dataset's `dataset_fingerprint.json`.
    pub fingerprint: &'a serde_json::Value,
    /// Name of the plans to write (`nnUNetPlans` unless overridden with `-overwrite_plans_name`).
    pub plans_name: &'a str,
    /// Memory budget of the target GPU in GB (`-gpu_memory_target`), if given.
    pub gpu_memory_target_gb: Option<f64>,
    /// Target spacing forced by `-overwrite_target_spacing`, if given (untransposed array order).
    pub overwrite_target_spacing: Option<[f64; 3]>,
    /// Name of the reader that reads the dataset (`SimpleITKIO`, `NaturalImage2DIO`, …), written to
    /// the plans as `image_reader_writer`.
    pub reader_name: &'a str,
    /// Preprocessor written into every configuration (`-preprocessor_name`; `DefaultPreprocessor`).
    pub preprocessor_name: &'a str,
}

/// Makes plans for a dataset. Registered under nnU-Net's planner class names
/// (`ExperimentPlanner`, `nnUNetPlannerResEncM`, …) so that `-pl` works as in nnU-Net.
pub trait Planner: Send + Sync {
    /// The plans name this planner writes by default (`nnUNetPlans`, `nnUNetResEncUNetMPlans`, …).
    fn default_plans_name(&self) -> &str;

    /// The plans JSON for the dataset.
    fn plan(&self, input: &PlanningInput<'_>) -> Result<serde_json::Value>;
}
