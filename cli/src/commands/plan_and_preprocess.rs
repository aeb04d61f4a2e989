//! `nnunet plan-and-preprocess -d ID [--verify_dataset_integrity] [-pl PLANNER] [-c …] [-np …]`:
//! fingerprint, experiment planning and preprocessing in one go, as nnU-Net's
//! `nnUNetv2_plan_and_preprocess`, with the same flags.

use crate::Context;
use crate::commands::{extract_fingerprint, plan, preprocess};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Dataset IDs or names.
    #[arg(short = 'd', long = "dataset", num_args = 1.., required = true)]
    datasets: Vec<String>,
    /// Worker threads for the fingerprint (default: the number of CPU cores).
    #[arg(long = "npfp", value_name = "N")]
    num_processes_fingerprint: Option<usize>,
    /// Plan only; do not preprocess.
    #[arg(long = "no-pp")]
    no_preprocessing: bool,
    #[command(flatten)]
    fingerprint: extract_fingerprint::FingerprintOptions,
    #[command(flatten)]
    plan: plan::PlanOptions,
    #[command(flatten)]
    preprocess: preprocess::PreprocessOptions,
}

/// Runs `nnunet plan-and-preprocess`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    for dataset in &args.datasets {
        extract_fingerprint::fingerprint_dataset(
            ctx,
            dataset,
            args.num_processes_fingerprint,
            &args.fingerprint,
        )?;
        let plans_name = plan::plan_dataset(ctx, dataset, &args.plan)?;
        if !args.no_preprocessing {
            preprocess::preprocess(ctx, dataset, &plans_name, &args.preprocess)?;
        }
    }
    Ok(())
}
