//! `nnunet describe -tr NAME` (or `-pl`, `--loss`, `--reader`, `--augmentation`,
//! `--architecture`): what a registered extension is and where it comes from; for a trainer, the
//! full set of hyperparameters it trains with, so a variant can be checked before a long run.

use crate::Context;

#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub(crate) struct Args {
    /// A trainer (-tr).
    #[arg(long)]
    trainer: Option<String>,
    /// A planner (-pl).
    #[arg(long)]
    planner: Option<String>,
    /// A loss.
    #[arg(long)]
    loss: Option<String>,
    /// An augmentation.
    #[arg(long)]
    augmentation: Option<String>,
    /// A reader/writer.
    #[arg(long)]
    reader: Option<String>,
    /// A network architecture.
    #[arg(long)]
    architecture: Option<String>,
}

/// Runs `nnunet describe`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let r = &ctx.registries;
    let (name, description, origin) = if let Some(name) = &args.trainer {
        let entry = r.trainers.get(name)?;
        let settings = nnunet_training::settings_of(entry.create().as_ref());
        println!("{}", serde_json::to_string_pretty(&settings)?);
        (&entry.name, &entry.description, entry.origin.to_string())
    } else {
        let entry = match (
            &args.planner,
            &args.loss,
            &args.augmentation,
            &args.reader,
            &args.architecture,
        ) {
            (Some(n), ..) => r
                .planners
                .get(n)
                .map(|e| (&e.name, &e.description, &e.origin)),
            (_, Some(n), ..) => r
                .losses
                .get(n)
                .map(|e| (&e.name, &e.description, &e.origin)),
            (_, _, Some(n), ..) => r
                .augmentations
                .get(n)
                .map(|e| (&e.name, &e.description, &e.origin)),
            (.., Some(n), _) => r
                .readers
                .get(n)
                .map(|e| (&e.name, &e.description, &e.origin)),
            (.., Some(n)) => r
                .architectures
                .get(n)
                .map(|e| (&e.name, &e.description, &e.origin)),
            _ => unreachable!("clap requires exactly one"),
        }?;
        (entry.0, entry.1, entry.2.to_string())
    };
    eprintln!("{name}: {description} [{origin}]");
    Ok(())
}
