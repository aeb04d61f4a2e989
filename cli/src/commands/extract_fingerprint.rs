//! `nnunet extract-fingerprint -d ID [-np N] [--verify_dataset_integrity] [--clean]`: the dataset
//! fingerprint (shapes after cropping, spacings, foreground intensity statistics), as nnU-Net's
//! `nnUNetv2_extract_fingerprint`, written to `nnUNet_preprocessed/<dataset>/dataset_fingerprint.json`.

use nnunet_core::compat::json::write_json;
use nnunet_dataset::DatasetJson;
use nnunet_dataset::integrity::verify_dataset;
use nnunet_dataset::{choose_reader, training_cases};
use nnunet_preprocessing::fingerprint::extract_fingerprint;

use crate::Context;

/// Fingerprint options, shared with `plan-and-preprocess`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct FingerprintOptions {
    /// Check the raw dataset first (as `nnunet verify`) and stop if it has problems.
    #[arg(long = "verify-dataset-integrity")]
    pub verify_dataset_integrity: bool,
    /// Extract the fingerprint again even if the file exists.
    #[arg(long = "clean")]
    pub clean: bool,
    /// Fingerprint extractor (only nnU-Net's DatasetFingerprintExtractor exists).
    #[arg(long = "fpe", default_value = "DatasetFingerprintExtractor")]
    pub extractor: String,
}

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Dataset IDs or names.
    #[arg(short = 'd', long = "dataset", num_args = 1.., required = true)]
    datasets: Vec<String>,
    /// Worker threads (default: the number of CPU cores).
    #[arg(long = "num-processes", value_name = "N")]
    num_processes: Option<usize>,
    #[command(flatten)]
    options: FingerprintOptions,
}

/// Runs `nnunet extract-fingerprint` for every dataset given.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    for dataset in &args.datasets {
        fingerprint_dataset(ctx, dataset, args.num_processes, &args.options)?;
    }
    Ok(())
}

/// Extracts (or reuses) one dataset's fingerprint.
pub(crate) fn fingerprint_dataset(
    ctx: &Context,
    dataset: &str,
    num_processes: Option<usize>,
    options: &FingerprintOptions,
) -> anyhow::Result<()> {
    if options.extractor != "DatasetFingerprintExtractor" {
        anyhow::bail!(
            "unknown fingerprint extractor '{}'; the only one is DatasetFingerprintExtractor",
            options.extractor
        );
    }
    let name = ctx.paths.dataset_name(dataset)?;
    let raw = ctx.paths.raw()?.join(&name);
    if !raw.is_dir() {
        anyhow::bail!("{}: no such raw dataset folder", raw.display());
    }
    let mut out = std::io::stdout().lock();
    if options.verify_dataset_integrity {
        let bar = crate::progress::bar(0, &format!("{name} verify"));
        let report = verify_dataset(&raw, &ctx.registries, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        });
        bar.finish_and_clear();
        for problem in &report.problems {
            crate::output::line(&mut out, format_args!("{problem}"))?;
        }
        for warning in &report.warnings {
            crate::output::line(&mut out, format_args!("warning: {warning}"))?;
        }
        if !report.is_ok() {
            anyhow::bail!(
                "{name} failed the integrity check ({} problems, listed above)",
                report.problems.len()
            );
        }
        crate::output::line(&mut out, format_args!("{name}: integrity check passed"))?;
    }
    let target = ctx
        .paths
        .preprocessed()?
        .join(&name)
        .join("dataset_fingerprint.json");
    if target.is_file() && !options.clean {
        crate::output::line(
            &mut out,
            format_args!(
                "{name}: fingerprint exists, kept ({}); use --clean to extract it again",
                target.display()
            ),
        )?;
        return Ok(());
    }
    let dataset_json = DatasetJson::from_file(&raw.join("dataset.json"))?;
    let cases = training_cases(&raw, &dataset_json)?;
    let example = cases.first().and_then(|c| c.images.first());
    let reader = choose_reader(&ctx.registries, &dataset_json, example.map(|p| p.as_path()))?;
    let num_processes = num_processes
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bar = crate::progress::bar(cases.len(), &format!("{name} fingerprint"));
    let fingerprint = extract_fingerprint(
        &cases,
        reader.create().as_ref(),
        dataset_json.num_channels(),
        num_processes,
        &|| bar.inc(1),
    );
    bar.finish_and_clear();
    let fingerprint = fingerprint?;
    write_json(&target, &fingerprint.to_json())?;
    crate::output::line(
        &mut out,
        format_args!(
            "{name}: fingerprint of {} cases written to {}",
            cases.len(),
            target.display()
        ),
    )
}
