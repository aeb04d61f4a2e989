//! `nnunet verify -d DATASET`: checks a raw dataset as nnU-Net's `verify_dataset_integrity` does,
//! and lists every problem found. `nnunet verify --dicom DIR` checks that every DICOM image
//! series under a folder reads as one regular volume.

use std::io::Write;
use std::time::{Duration, Instant};

use nnunet_dataset::integrity::verify_dataset;

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Dataset ID or name (e.g. 4 or Dataset004_Hippocampus), in nnUNet_raw.
    #[arg(short = 'd', long = "dataset", required_unless_present = "dicom")]
    dataset: Option<String>,
    /// A folder of DICOM files to check instead of a dataset.
    #[arg(long = "dicom", value_name = "DIR", conflicts_with = "dataset")]
    dicom: Option<std::path::PathBuf>,
}

/// A progress line on stderr, shown once checking takes more than a second.
struct Progress {
    start: Instant,
    shown: bool,
}

impl Progress {
    fn update(&mut self, done: usize, total: usize) {
        let elapsed = self.start.elapsed();
        if elapsed < Duration::from_secs(1) && !self.shown {
            return;
        }
        self.shown = true;
        let remaining = elapsed.as_secs_f64() / done as f64 * (total - done) as f64;
        let eta = remaining.round() as u64;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\rchecking case {done}/{total}, about {}:{:02} left   ",
            eta / 60,
            eta % 60
        );
        if done == total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

/// Runs `nnunet verify`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let (dataset, dicom) = (args.dataset, args.dicom);
    let Some(dataset) = dataset else {
        let dir = dicom.ok_or_else(|| anyhow::anyhow!("give -d DATASET or --dicom DIR"))?;
        return crate::commands::convert_dicom::verify(&dir);
    };
    let name = ctx.paths.dataset_name(&dataset)?;
    let folder = ctx.paths.raw()?.join(&name);
    if !folder.is_dir() {
        anyhow::bail!(
            "{}: no such raw dataset folder (the dataset is not in nnUNet_raw)",
            folder.display()
        );
    }
    let mut progress = Progress {
        start: Instant::now(),
        shown: false,
    };
    let report = verify_dataset(&folder, &ctx.registries, &mut |done, total| {
        progress.update(done, total)
    });
    let mut out = std::io::stdout().lock();
    for finding in &report.problems {
        crate::output::line(&mut out, format_args!("{finding}"))?;
    }
    for finding in &report.warnings {
        crate::output::line(&mut out, format_args!("warning: {finding}"))?;
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let reader = report
        .reader
        .as_deref()
        .map(|r| format!(", read with {r}"))
        .unwrap_or_default();
    crate::output::line(
        &mut out,
        format_args!(
            "{name}: {}, {} in {}{reader}",
            plural(report.problems.len(), "problem"),
            plural(report.warnings.len(), "warning"),
            plural(report.cases, "case"),
        ),
    )?;
    if report.is_ok() {
        crate::output::line(&mut out, format_args!("{name} is OK"))
    } else {
        anyhow::bail!(
            "{name} has {} (listed above, one per line)",
            plural(report.problems.len(), "problem")
        )
    }
}
