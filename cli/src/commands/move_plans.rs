//! `nnunet move-plans -s SOURCE -t TARGET -sp PLANS [-tp NEW_PLANS]`: copies a dataset's plans to
//! another dataset, so that a model with the same topology and preprocessing can be trained (or
//! fine-tuned) there. As nnU-Net's `nnUNetv2_move_plans_between_datasets`.

use nnunet_core::compat::json::write_json;
use nnunet_dataset::DatasetJson;
use nnunet_dataset::{choose_reader, training_cases};
use nnunet_preprocessing::plans::Plans;
use serde_json::{Map, Value};

use crate::Context;
use crate::commands::read_plans_file;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Source dataset ID or name (its plans are in nnUNet_preprocessed).
    #[arg(short = 's', long = "source")]
    source: String,
    /// Target dataset ID or name (in nnUNet_raw).
    #[arg(short = 't', long = "target")]
    target: String,
    /// Source plans identifier (`nnUNetPlans` for nnUNetPlans.json).
    #[arg(long = "sp", alias = "source-plans")]
    source_plans: String,
    /// Target plans identifier (default: the source's; better pick a new one such as
    /// nnUNetPlansFrom2, so the target's own plans are not replaced).
    #[arg(long = "tp", alias = "target-plans")]
    target_plans: Option<String>,
}

/// The plans JSON of `plans` (named `source_plans`) moved to the dataset `target_name` as
/// `target_plans`, read with the reader `reader_name`; a new plans name renames the data
/// identifiers.
fn moved_plans(
    plans: &Plans,
    target_name: &str,
    source_plans: &str,
    target_plans: &str,
    reader_name: &str,
) -> Map<String, Value> {
    let mut json = plans.json().clone();
    json.insert(
        "dataset_name".into(),
        Value::String(target_name.to_string()),
    );
    if target_plans != source_plans
        && let Some(Value::Object(configs)) = json.get_mut("configurations")
    {
        for config in configs.values_mut() {
            if let Some(Value::String(id)) = config.get_mut("data_identifier") {
                *id = match id.strip_prefix(source_plans) {
                    Some(rest) => format!("{target_plans}{rest}"),
                    None => format!("{target_plans}_{id}"),
                };
            }
        }
    }
    json.insert(
        "image_reader_writer".into(),
        Value::String(reader_name.to_string()),
    );
    json.insert("plans_name".into(), Value::String(target_plans.to_string()));
    json
}

/// Runs `nnunet move-plans`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let source_name = ctx.paths.dataset_name(&args.source)?;
    let target_name = ctx.paths.dataset_name(&args.target)?;
    let source_file = ctx
        .paths
        .preprocessed()?
        .join(&source_name)
        .join(format!("{}.json", args.source_plans));
    let plans = read_plans_file(
        &source_file,
        format_args!(
            "plan the source dataset first (`nnunet plan -d {}`)",
            args.source
        ),
    )?;
    let target_plans = args
        .target_plans
        .clone()
        .unwrap_or_else(|| args.source_plans.clone());

    let target_raw = ctx.paths.raw()?.join(&target_name);
    let dataset_json = DatasetJson::from_file(&target_raw.join("dataset.json"))?;
    let source_channels = plans
        .json()
        .get("foreground_intensity_properties_per_channel")
        .and_then(Value::as_object)
        .map(|m| m.len());
    if let Some(n) = source_channels
        && n != dataset_json.num_channels()
    {
        anyhow::bail!(
            "{source_name} has {n} input channels but {target_name} has {}; plans can only move \
             between datasets with the same channels",
            dataset_json.num_channels()
        );
    }
    let cases = training_cases(&target_raw, &dataset_json)?;
    let example = cases.first().and_then(|c| c.images.first());
    let reader = choose_reader(&ctx.registries, &dataset_json, example.map(|p| p.as_path()))?;

    let json = moved_plans(
        &plans,
        &target_name,
        &args.source_plans,
        &target_plans,
        &reader.name,
    );
    let out = ctx
        .paths
        .preprocessed()?
        .join(&target_name)
        .join(format!("{target_plans}.json"));
    write_json(&out, &Value::Object(json))?;
    crate::output::say(format_args!(
        "plans {} of {source_name} written for {target_name} to {}",
        args.source_plans,
        out.display()
    ))?;
    crate::output::say(format_args!(
        "next: nnunet preprocess -d {} -plans_name {target_plans}",
        args.target
    ))
}
