//! `nnunet preprocess -d ID [-plans_name NAME] [-c 2d 3d_fullres 3d_lowres] [-np N …]`: preprocesses
//! the training cases for each configuration of a plans file, as nnU-Net's `nnUNetv2_preprocess`,
//! into `nnUNet_preprocessed/<dataset>/<data_identifier>/`. A re-run keeps the cases an earlier
//! (possibly interrupted) run finished with the same inputs and settings.

use std::path::Path;

use nnunet_dataset::DatasetJson;
use nnunet_dataset::training_cases;
use nnunet_preprocessing::plans::Plans;
use nnunet_preprocessing::preprocess_dataset;

use crate::Context;
use crate::commands::read_plans_file;

/// Preprocessing options, shared with `plan-and-preprocess`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct PreprocessOptions {
    /// Configurations to preprocess (those missing from the plans are skipped).
    #[arg(short = 'c', long = "configurations", num_args = 1.., default_values_t = ["2d".to_string(), "3d_fullres".to_string(), "3d_lowres".to_string()])]
    pub configurations: Vec<String>,
    /// Worker threads: one number for all configurations, or one per configuration
    /// (default: the number of CPU cores).
    #[arg(long = "num-processes", num_args = 1.., value_name = "N")]
    pub num_processes: Vec<usize>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Dataset IDs or names.
    #[arg(short = 'd', long = "dataset", num_args = 1.., required = true)]
    datasets: Vec<String>,
    /// Plans identifier (nnUNetPlans for nnUNetPlans.json).
    #[arg(long = "plans-name", default_value = "nnUNetPlans")]
    plans_name: String,
    #[command(flatten)]
    options: PreprocessOptions,
}

/// Runs `nnunet preprocess` for every dataset given.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    for dataset in &args.datasets {
        preprocess(ctx, dataset, &args.plans_name, &args.options)?;
    }
    Ok(())
}

/// Preprocesses one dataset with the plans `plans_name`.
pub(crate) fn preprocess(
    ctx: &Context,
    dataset: &str,
    plans_name: &str,
    options: &PreprocessOptions,
) -> anyhow::Result<()> {
    let name = ctx.paths.dataset_name(dataset)?;
    let raw = ctx.paths.raw()?.join(&name);
    let preprocessed = ctx.paths.preprocessed()?.join(&name);
    let plans_file = preprocessed.join(format!("{plans_name}.json"));
    let plans = read_plans_file(
        &plans_file,
        format_args!(
            "run `nnunet plan -d {dataset}` first{}",
            if plans_name == "nnUNetPlans" {
                String::new()
            } else {
                format!(" (with the planner that writes {plans_name})")
            }
        ),
    )?;
    let dataset_json = DatasetJson::from_file(&raw.join("dataset.json"))?;
    let reader = ctx
        .registries
        .readers
        .create(plans.image_reader_writer()?)?;
    let n = &options.num_processes;
    if !(n.is_empty() || n.len() == 1 || n.len() == options.configurations.len()) {
        anyhow::bail!(
            "-np takes one number, or one per configuration ({} configurations, {} numbers)",
            options.configurations.len(),
            n.len()
        );
    }
    let default_np = std::thread::available_parallelism().map_or(1, |n| n.get());
    let known = plans.configuration_names();
    let data = Dataset {
        name: &name,
        raw: &raw,
        preprocessed: &preprocessed,
        dataset_json: &dataset_json,
        reader: reader.as_ref(),
        plans: &plans,
    };
    let mut out = std::io::stdout().lock();
    for (i, config_name) in options.configurations.iter().enumerate() {
        if !known.contains(config_name) {
            crate::output::line(
                &mut out,
                format_args!(
                    "{name}: no configuration '{config_name}' in {plans_name}, skipped (it has: {})",
                    known.join(", ")
                ),
            )?;
            continue;
        }
        let num_processes = match n.len() {
            0 => default_np,
            1 => n[0],
            _ => n[i],
        };
        preprocess_configuration(&data, config_name, num_processes, &mut out)?;
    }
    copy_ground_truth(&raw, &dataset_json, reader.as_ref(), &preprocessed)?;
    Ok(())
}

/// A dataset being preprocessed.
struct Dataset<'a> {
    /// The dataset's folder name.
    name: &'a str,
    /// Its raw folder.
    raw: &'a Path,
    /// Its preprocessed folder.
    preprocessed: &'a Path,
    /// Its `dataset.json`.
    dataset_json: &'a DatasetJson,
    /// The reader the plans name.
    reader: &'a dyn nnunet_core::Reader,
    /// The plans.
    plans: &'a Plans,
}

/// Preprocesses the training cases for the configuration `config_name` with `num_processes`
/// threads, with a progress bar, and says what was written.
fn preprocess_configuration(
    data: &Dataset<'_>,
    config_name: &str,
    num_processes: usize,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let name = data.name;
    let configuration = data.plans.configuration(config_name)?;
    let folder = data.preprocessed.join(configuration.data_identifier()?);
    let cases = training_cases(data.raw, data.dataset_json)?.len();
    let bar = crate::progress::bar(cases, &format!("{name} {config_name}"));
    let summary = preprocess_dataset(
        data.raw,
        data.dataset_json,
        data.reader,
        data.plans,
        &configuration,
        &folder,
        num_processes,
        &|| bar.inc(1),
    );
    bar.finish_and_clear();
    let summary = summary?;
    crate::output::line(
        out,
        format_args!(
            "{name} {config_name}: {} cases preprocessed{} into {}",
            summary.written,
            if summary.reused > 0 {
                format!(", {} kept from an earlier run", summary.reused)
            } else {
                String::new()
            },
            summary.folder.display()
        ),
    )
}

/// Copies the raw label maps (with the data files of detached headers) to `gt_segmentations/`
/// (where evaluation finds them), skipping files already there with the same size.
fn copy_ground_truth(
    raw: &std::path::Path,
    dataset_json: &DatasetJson,
    reader: &dyn nnunet_core::Reader,
    preprocessed: &std::path::Path,
) -> anyhow::Result<()> {
    let folder = preprocessed.join("gt_segmentations");
    std::fs::create_dir_all(&folder).map_err(|e| anyhow::anyhow!("{}: {e}", folder.display()))?;
    for case in training_cases(raw, dataset_json)? {
        let target = folder.join(format!("{}{}", case.id, dataset_json.file_ending));
        let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).ok();
        if size(&target).is_some() && size(&target) == size(&case.label) {
            continue;
        }
        nnunet_core::io::copy_image(reader, &case.label, &target).map_err(|e| {
            anyhow::anyhow!(
                "copying {} to {}: {e}",
                case.label.display(),
                target.display()
            )
        })?;
    }
    Ok(())
}
