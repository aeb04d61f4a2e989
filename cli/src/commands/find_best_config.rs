//! `nnunet find-best-config -d ID [-c …] [-tr …] [-p …] [-f …] [--disable_ensembling]`:
//! nnU-Net's `nnUNetv2_find_best_configuration`. Gathers each trained model's cross-validation,
//! ensembles pairs of models, picks the best mean foreground Dice, determines postprocessing and
//! writes `inference_information.json` and `inference_instructions.txt` into the dataset's
//! results folder.

use nnunet_core::paths::TrainedModel;
use nnunet_evaluation::model_selection::{FindBestSettings, find_best_configuration};

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Dataset ID or name (positional, as in nnU-Net, or with -d).
    #[arg(value_name = "DATASET", required_unless_present = "dataset_flag")]
    dataset: Option<String>,
    /// Dataset ID or name.
    #[arg(short = 'd', value_name = "DATASET", conflicts_with = "dataset")]
    dataset_flag: Option<String>,
    /// Configurations.
    #[arg(short = 'c', num_args = 1.., default_values_t = ["2d".to_string(), "3d_fullres".into(), "3d_lowres".into(), "3d_cascade_fullres".into()])]
    configurations: Vec<String>,
    /// Trainers.
    #[arg(long = "trainer", num_args = 1.., default_values_t = ["nnUNetTrainer".to_string()])]
    trainers: Vec<String>,
    /// Plans identifiers.
    #[arg(short = 'p', num_args = 1.., default_values_t = ["nnUNetPlans".to_string()])]
    plans: Vec<String>,
    /// Folds.
    #[arg(short = 'f', num_args = 1.., default_values_t = [0u32, 1, 2, 3, 4])]
    folds: Vec<u32>,
    /// Worker threads (default: the number of CPU cores).
    #[arg(long = "num-processes", value_name = "N")]
    num_processes: Option<usize>,
    /// Do not ensemble pairs of models.
    #[arg(long = "disable-ensembling")]
    disable_ensembling: bool,
    /// Keep gathered cross-validation results and ensembles that exist instead of redoing them.
    #[arg(long = "no-overwrite")]
    no_overwrite: bool,
}

/// `nnunet find-best-config`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let dataset = args
        .dataset
        .or(args.dataset_flag)
        .ok_or_else(|| anyhow::anyhow!("give the dataset (-d ID)"))?;
    let mut models = Vec::new();
    for t in &args.trainers {
        for c in &args.configurations {
            for p in &args.plans {
                models.push(TrainedModel {
                    trainer: t.clone(),
                    plans: p.clone(),
                    configuration: c.clone(),
                });
            }
        }
    }
    let np = super::postprocessing::threads(args.num_processes)?;
    let best = find_best_configuration(
        &ctx.paths,
        &ctx.registries,
        &FindBestSettings {
            dataset_name_or_id: dataset,
            models,
            allow_ensembling: !args.disable_ensembling,
            num_processes: np,
            overwrite: !args.no_overwrite,
            folds: args.folds,
            instructions_num_processes: np,
        },
    )?;
    let mut out = std::io::stdout().lock();
    for s in &best.skipped {
        crate::output::line(&mut out, format_args!("{s}"))?;
    }
    crate::output::line(&mut out, format_args!("***All results:***"))?;
    for (name, dice) in &best.all_results {
        crate::output::line(&mut out, format_args!("{name}: {dice}"))?;
    }
    let best_dice = best
        .all_results
        .iter()
        .find(|(n, _)| *n == best.best)
        .map_or(f64::NAN, |(_, d)| *d);
    crate::output::line(
        &mut out,
        format_args!("\n*Best*: {}: {best_dice}\n", best.best),
    )?;
    crate::output::line(
        &mut out,
        format_args!("***Determining postprocessing for best model/ensemble***"),
    )?;
    for m in &best.postprocessing_messages {
        crate::output::line(&mut out, format_args!("{m}"))?;
    }
    crate::output::line(&mut out, format_args!("\n{}", best.instructions))?;
    crate::output::line(
        &mut out,
        format_args!(
            "written: {} and {}",
            best.files[0].display(),
            best.files[1].display()
        ),
    )
}
