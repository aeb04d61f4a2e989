//! `nnunet list KIND`: the registered extensions of one kind with description and origin.

use clap::ValueEnum;
use nnunet_core::registry::{Entry, Registry};

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Which extensions to list.
    kind: Kind,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Kind {
    Trainers,
    Planners,
    Losses,
    Augmentations,
    Readers,
    Architectures,
}

/// Name, description and origin of every entry of `registry`.
fn rows<T: ?Sized>(registry: &Registry<T>) -> Vec<[String; 3]> {
    registry
        .entries()
        .map(|e: &Entry<T>| [e.name.clone(), e.description.clone(), e.origin.to_string()])
        .collect()
}

/// Runs `nnunet list`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let r = &ctx.registries;
    let (kind, rows) = match args.kind {
        Kind::Trainers => (r.trainers.kind(), rows(&r.trainers)),
        Kind::Planners => (r.planners.kind(), rows(&r.planners)),
        Kind::Losses => (r.losses.kind(), rows(&r.losses)),
        Kind::Augmentations => (r.augmentations.kind(), rows(&r.augmentations)),
        Kind::Readers => (r.readers.kind(), rows(&r.readers)),
        Kind::Architectures => (r.architectures.kind(), rows(&r.architectures)),
    };
    let mut out = std::io::stdout().lock();
    if rows.is_empty() {
        return crate::output::line(&mut out, format_args!("no {kind} is registered"));
    }
    let name_width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    for [name, description, origin] in rows {
        crate::output::line(
            &mut out,
            format_args!("{name:<name_width$}  {description}  [{origin}]"),
        )?;
    }
    Ok(())
}
