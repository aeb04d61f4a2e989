//! `nnunet plan -d ID [-pl PLANNER] [-gpu_memory_target GB] [-overwrite_plans_name NAME]
//! [-overwrite_target_spacing Z Y X]`: experiment planning from the dataset fingerprint, as
//! nnU-Net's `nnUNetv2_plan_experiment`. Writes `nnUNet_preprocessed/<dataset>/<plans>.json` and a
//! copy of `dataset.json` (and of `splits_final.json` if the raw dataset has one).

use std::path::Path;

use nnunet_core::planning::PlanningInput;
use nnunet_dataset::DatasetJson;
use nnunet_dataset::{choose_reader, training_cases};
use nnunet_preprocessing::plans::{Plans, write_plans_merged};
use serde_json::Value;

use crate::Context;

/// Planning options, shared with `plan-and-preprocess`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct PlanOptions {
    /// Experiment planner (`nnunet list planners`): ExperimentPlanner, nnUNetPlannerResEncM, …
    #[arg(long = "planner", default_value = "ExperimentPlanner")]
    pub planner: String,
    /// GPU memory to plan for, in GB (default: the planner's, 8 for ExperimentPlanner).
    #[arg(long = "gpu-memory-target", value_name = "GB")]
    pub gpu_memory_target: Option<f64>,
    /// Preprocessor written into the plans.
    #[arg(long = "preprocessor-name", default_value = "DefaultPreprocessor")]
    pub preprocessor_name: String,
    /// Fixed target spacing for 3d_fullres, in the image array's axis order (z y x for NIfTI);
    /// also changes 2d and the transpose, as in nnU-Net.
    #[arg(
        long = "overwrite-target-spacing",
        num_args = 3,
        value_name = "SPACING"
    )]
    pub overwrite_target_spacing: Option<Vec<f64>>,
    /// Name of the plans to write instead of the planner's (`nnUNetPlans`, …).
    #[arg(long = "overwrite-plans-name", value_name = "NAME")]
    pub overwrite_plans_name: Option<String>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Dataset IDs or names (e.g. 4 or Dataset004_Hippocampus).
    #[arg(short = 'd', long = "dataset", num_args = 1.., required = true)]
    datasets: Vec<String>,
    #[command(flatten)]
    options: PlanOptions,
}

/// Runs `nnunet plan` for every dataset given.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    for dataset in &args.datasets {
        plan_dataset(ctx, dataset, &args.options)?;
    }
    Ok(())
}

/// Plans one dataset; returns the plans name written.
pub(crate) fn plan_dataset(
    ctx: &Context,
    dataset: &str,
    options: &PlanOptions,
) -> anyhow::Result<String> {
    let name = ctx.paths.dataset_name(dataset)?;
    let raw = ctx.paths.raw()?.join(&name);
    let preprocessed = ctx.paths.preprocessed()?.join(&name);
    let fingerprint_file = preprocessed.join("dataset_fingerprint.json");
    if !fingerprint_file.is_file() {
        anyhow::bail!(
            "{}: no fingerprint yet; run `nnunet extract-fingerprint -d {dataset}` first (or \
             `nnunet plan-and-preprocess -d {dataset}`)",
            fingerprint_file.display()
        );
    }
    let fingerprint = read_json(&fingerprint_file)?;
    let dataset_json_file = raw.join("dataset.json");
    let dataset_json = DatasetJson::from_file(&dataset_json_file)?;
    let dataset_json_value = read_json(&dataset_json_file)?;
    let planner = ctx.registries.planners.create(&options.planner)?;
    if options.planner == "ExperimentPlanner" {
        eprintln!(
            "note: nnU-Net recommends the residual-encoder planners for new work \
             (-pl nnUNetPlannerResEncM, L or XL); planning with the default ExperimentPlanner"
        );
    }
    let plans_name = options
        .overwrite_plans_name
        .clone()
        .unwrap_or_else(|| planner.default_plans_name().to_string());
    let cases = training_cases(&raw, &dataset_json)?;
    let example = cases.first().and_then(|c| c.images.first());
    let reader = choose_reader(&ctx.registries, &dataset_json, example.map(|p| p.as_path()))?;
    let overwrite_target_spacing = match &options.overwrite_target_spacing {
        Some(v) if v.len() == 3 && v.iter().all(|x| *x > 0.0) => Some([v[0], v[1], v[2]]),
        Some(v) => anyhow::bail!("-overwrite_target_spacing needs 3 positive numbers, got {v:?}"),
        None => None,
    };
    let input = PlanningInput {
        dataset_name: &name,
        dataset_json: &dataset_json_value,
        fingerprint: &fingerprint,
        plans_name: &plans_name,
        gpu_memory_target_gb: options.gpu_memory_target,
        overwrite_target_spacing,
        reader_name: &reader.name,
        preprocessor_name: &options.preprocessor_name,
    };
    let plans = planner.plan(&input)?;
    let plans_file = preprocessed.join(format!("{plans_name}.json"));
    write_plans_merged(&plans_file, plans)?;
    copy(&dataset_json_file, &preprocessed.join("dataset.json"))?;
    let splits = raw.join("splits_final.json");
    if splits.is_file() {
        copy(&splits, &preprocessed.join("splits_final.json"))?;
    }

    let plans = Plans::from_file(&plans_file)?;
    let mut out = std::io::stdout().lock();
    crate::output::line(
        &mut out,
        format_args!("{name}: plans written to {}", plans_file.display()),
    )?;
    for config in plans.configuration_names() {
        let c = plans.configuration(&config)?;
        let describe = |key: &str| c.json.get(key).map(|v| v.to_string()).unwrap_or("-".into());
        crate::output::line(
            &mut out,
            format_args!(
                "  {config}: patch {}, batch {}, spacing {}",
                describe("patch_size"),
                describe("batch_size"),
                describe("spacing")
            ),
        )?;
    }
    Ok(plans_name)
}

/// Reads a JSON file.
fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not valid JSON: {e}", path.display()))
}

/// Copies `from` to `to`, creating the folder of `to`.
fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("{}: {e}", parent.display()))?;
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("copying {} to {}: {e}", from.display(), to.display()))
}
