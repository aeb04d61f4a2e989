//! Where a run reports: the console (a bar or plain lines) and the text log.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{FormattedDuration, ProgressBar};

use crate::{EpochRecord, TrainerSettings};
use nnunet_core::error::{Error, Result};

/// Where a run reports its progress: a bar on a terminal (stderr) with the epoch lines above it,
/// or, when stdout or stderr is not a terminal, one plain line per epoch on stdout.
pub(super) struct Console {
    pub(super) bar: ProgressBar,
    /// Report at all.
    enabled: bool,
    /// Print the epoch lines on stdout instead of above the bar.
    plain: bool,
}

impl Console {
    /// The reporting of a run of `settings` that starts after `epochs_done` epochs.
    pub(super) fn new(enabled: bool, settings: &TrainerSettings, epochs_done: usize) -> Self {
        let steps_per_epoch =
            (settings.num_iterations_per_epoch + settings.num_val_iterations_per_epoch) as u64;
        let on_terminal = std::io::stderr().is_terminal();
        let bar = if enabled && on_terminal {
            let bar = nnunet_core::progress::bar(
                (steps_per_epoch * settings.num_epochs as u64) as usize,
                "epoch",
                "iterations",
            );
            bar.set_position(steps_per_epoch * epochs_done as u64);
            bar.reset_eta();
            bar
        } else {
            ProgressBar::hidden()
        };
        Console {
            bar,
            enabled,
            plain: !(on_terminal && std::io::stdout().is_terminal()),
        }
    }

    /// Reports a finished epoch (counted from 1, as the bar counts) with the time left.
    pub(super) fn epoch_line(&self, record: &EpochRecord, num_epochs: usize, left: Duration) {
        if !self.enabled {
            return;
        }
        let line = format!(
            "epoch {}/{num_epochs}: train loss {:.4}, val loss {:.4}{}, pseudo Dice [{}], EMA \
             {:.4}, {:.1} s, ETA {}",
            record.epoch + 1,
            record.train_loss,
            record.val_loss,
            record
                .logged
                .iter()
                .map(|(name, value)| format!(", {} {value:.4}", name.replace('_', " ")))
                .collect::<String>(),
            record
                .pseudo_dice
                .iter()
                .map(|d| format!("{d:.4}"))
                .collect::<Vec<_>>()
                .join(", "),
            record.ema_fg_dice,
            record.duration(),
            FormattedDuration(left)
        );
        if self.plain {
            // A closed stdout (`| head`) must not stop the training.
            self.bar
                .suspend(|| drop(writeln!(std::io::stdout().lock(), "{line}")));
        } else {
            self.bar.println(line);
        }
    }
}

/// nnU-Net's `training_log_Y_M_D_HH_MM_SS.txt`: timestamped lines, appended as they come.
pub(super) struct TrainingLog {
    file: std::fs::File,
    path: PathBuf,
}

impl TrainingLog {
    /// Creates the log file in `folder`, named by the local time.
    pub(super) fn create(folder: &Path) -> Result<Self> {
        let t = chrono::Local::now();
        let name = format!(
            "training_log_{}_{}_{}_{}.txt",
            t.format("%Y"),
            t.format("%-m"),
            t.format("%-d"),
            t.format("%H_%M_%S")
        );
        let path = folder.join(name);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Self { file, path })
    }

    /// Appends `text` with a timestamp.
    pub(super) fn line(&mut self, text: &str) -> Result<()> {
        let stamp = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.6f");
        writeln!(self.file, "{stamp}: {text}").map_err(|e| Error::io(&self.path, e))
    }
}

/// Logs the record of a finished epoch: losses, logged values, pseudo Dice and duration.
pub(super) fn log_epoch(log: &mut TrainingLog, record: &EpochRecord) -> Result<()> {
    log.line(&format!("train_loss {:.4}", record.train_loss))?;
    log.line(&format!("val_loss {:.4}", record.val_loss))?;
    for (name, value) in &record.logged {
        log.line(&format!("{name} {value:.4}"))?;
    }
    log.line(&format!(
        "Pseudo dice [{}]",
        record
            .pseudo_dice
            .iter()
            .map(|d| format!("{d:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))?;
    log.line(&format!("Epoch time: {:.2} s", record.duration()))
}
