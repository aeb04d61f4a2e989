//! The training loop of `nnUNetTrainer`: epochs of training and validation iterations, the
//! learning-rate schedule, deep supervision, pseudo Dice and its moving average, the text log,
//! `progress.png` and the checkpoints, and an exact continuation from `checkpoint_latest`.

mod report;
mod step;
mod validation;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use burn::optim::GradientsParams;
use burn::tensor::{Device, FloatDType};
use indicatif::ProgressBar;

use crate::checkpoint::{CHECKPOINT_FORMAT, Checkpoint, CheckpointMeta};
use crate::data_loading::{Batch, DataLoader};
use crate::loss_scale::LossScaler;
use crate::optimizer_api::lr_factor;
use crate::{
    BenchmarkMode, EpochFlow, EpochRecord, HookContext, Optimizer, ParameterGroup, Trainer,
    TrainerSettings,
};
use nnunet_core::compat::statistics::{nanmean, np_mean as mean};
use nnunet_core::error::{Error, Result};
use nnunet_core::loss::{Loss, LossSettings};
use nnunet_core::network::Network;
use report::{Console, TrainingLog, log_epoch};
use step::{Logged, RunStep};

pub use step::array_to_tensor;

/// Everything a training run needs, built by the trainer set-up from plans and dataset.
pub struct TrainingRun {
    /// `nnUNet_results/DatasetXXX/Trainer__Plans__config/fold_N`.
    pub output_folder: PathBuf,
    /// The trainer's registered name.
    pub trainer_name: String,
    /// The plans identifier (`nnUNetPlans`).
    pub plans_identifier: String,
    /// The configuration (`3d_fullres`, …).
    pub configuration: String,
    /// The fold, as its folder names it (`0`, `all`).
    pub fold: String,
    /// The trainer whose hooks and steps the loop calls.
    pub trainer: Box<dyn Trainer>,
    /// The settings the run trains with (after command-line overrides).
    pub settings: TrainerSettings,
    /// The network being trained.
    pub network: Box<dyn Network>,
    /// The network's registered architecture name (stored in checkpoints).
    pub network_class_name: String,
    /// Input channels of the network.
    pub input_channels: usize,
    /// Output channels of the network (classes or regions).
    pub output_channels: usize,
    /// The loss applied to every deep-supervision output.
    pub loss: Box<dyn Loss>,
    /// What the loss is computed with (batch Dice, background, smoothing, ignore label).
    pub loss_settings: LossSettings,
    /// Deep-supervision weights, one per network output (highest resolution first).
    pub ds_weights: Vec<f64>,
    /// Region-based training (sigmoid outputs, multi-channel 0/1 targets).
    pub regions: bool,
    /// The label whose voxels count in neither loss nor pseudo Dice.
    pub ignore_label: Option<i64>,
    /// The stream of training batches.
    pub train_loader: DataLoader,
    /// The stream of validation batches.
    pub val_loader: DataLoader,
    /// The device training runs on, with autodiff.
    pub device: Device,
    /// The seed of the run's data streams.
    pub seed: u64,
    /// Spatial axes mirrored at inference (stored in checkpoints).
    pub inference_mirror_axes: Vec<usize>,
    /// Report progress: a bar with the epoch lines above it on a terminal, one plain line per
    /// epoch on stdout otherwise (a log file, a batch scheduler).
    pub show_progress: bool,
    /// Also write `checkpoint_latest` when this much training time has passed since the last one
    /// (besides nnU-Net's every `save_every` epochs).
    pub checkpoint_interval: Option<Duration>,
}

/// Where a run continues from: the state restored from a checkpoint.
pub struct RunState {
    /// Epochs completed.
    pub epoch: usize,
    /// One record per completed epoch.
    pub logging: Vec<EpochRecord>,
    /// The best EMA pseudo Dice so far.
    pub best_ema: Option<f64>,
    /// The trainer's optimiser ([`Trainer::configure_optimizer`]).
    pub optimizer: Box<dyn Optimizer>,
    /// The loss scaler of fp16 training (GPU mixed precision); none otherwise.
    pub loss_scaler: Option<LossScaler>,
}

/// What a finished (or stopped) run reports.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// Epochs completed in total.
    pub epochs_completed: usize,
    /// One record per completed epoch.
    pub logging: Vec<EpochRecord>,
    /// The best EMA pseudo Dice.
    pub best_ema: Option<f64>,
    /// Whether all epochs are done (`checkpoint_final` written).
    pub finished: bool,
    /// Mean training iterations per second over this session's epochs.
    pub iterations_per_second: f64,
}

/// Checkpoint file names in a fold folder.
pub fn checkpoint_path(fold_folder: &Path, which: &str) -> PathBuf {
    fold_folder.join(format!("{which}.safetensors"))
}

impl TrainingRun {
    /// The state of a new run with a fresh `optimizer`.
    pub fn new_state(&self, optimizer: Box<dyn Optimizer>) -> RunState {
        RunState {
            epoch: 0,
            logging: Vec::new(),
            best_ema: None,
            optimizer,
            loss_scaler: fp16_training().then(LossScaler::default),
        }
    }

    /// Restores weights, `optimizer` state, epoch and logs from `checkpoint`, checking that it
    /// belongs to this run (same trainer and schedule).
    pub fn restore(
        &mut self,
        checkpoint: &Checkpoint,
        path: &Path,
        mut optimizer: Box<dyn Optimizer>,
    ) -> Result<RunState> {
        let meta = &checkpoint.meta;
        if meta.trainer_name != self.trainer_name {
            return Err(Error::training_file(
                path,
                format!(
                    "was written by trainer {} but this run uses {}",
                    meta.trainer_name, self.trainer_name
                ),
            ));
        }
        let differences = schedule_differences(&meta.settings, &self.settings);
        if !differences.is_empty() {
            return Err(Error::training_file(
                path,
                format!(
                    "the run was started with different settings ({}); continue it with the \
                     original values or start a new run in another results folder",
                    differences.join(", ")
                ),
            ));
        }
        self.network
            .import_parameters(&checkpoint.network)
            .map_err(|e| Error::training_file(path, e.to_string()))?;
        optimizer
            .import_state(meta.optimizer_steps, &checkpoint.optimizer, &self.device)
            .map_err(|e| Error::training_file(path, e.to_string()))?;
        Ok(RunState {
            epoch: meta.current_epoch,
            logging: meta.logging.clone(),
            best_ema: meta.best_ema,
            optimizer,
            loss_scaler: fp16_training().then(|| meta.loss_scaler.clone().unwrap_or_default()),
        })
    }

    /// The checkpoint of the run at `state`.
    fn checkpoint(&self, state: &RunState) -> Checkpoint {
        Checkpoint {
            meta: CheckpointMeta {
                format: CHECKPOINT_FORMAT,
                trainer_name: self.trainer_name.clone(),
                plans_identifier: self.plans_identifier.clone(),
                configuration: self.configuration.clone(),
                fold: self.fold.clone(),
                current_epoch: state.epoch,
                optimizer_steps: state.optimizer.steps(),
                best_ema: state.best_ema,
                logging: state.logging.clone(),
                settings: self.settings.clone(),
                inference_allowed_mirroring_axes: self.inference_mirror_axes.clone(),
                seed: self.seed,
                train_batches_drawn: self.train_loader.next_index(),
                val_batches_drawn: self.val_loader.next_index(),
                network_class_name: self.network_class_name.clone(),
                input_channels: self.input_channels,
                output_channels: self.output_channels,
                loss_scaler: state.loss_scaler.clone(),
            },
            network: self.network.export_parameters(),
            optimizer: state.optimizer.export_state(),
        }
    }

    /// Writes the checkpoint `which` (`checkpoint_latest`, …) unless checkpointing is disabled.
    fn save(&self, state: &RunState, which: &str) -> Result<()> {
        if self.settings.disable_checkpointing {
            return Ok(());
        }
        self.checkpoint(state)
            .save(&checkpoint_path(&self.output_folder, which))
    }

    /// Trains from `state` until all epochs are done, or until `stop_after` epochs are complete
    /// (then `checkpoint_latest` is written so that `--c` continues exactly).
    pub fn train(&mut self, mut state: RunState, stop_after: Option<usize>) -> Result<RunSummary> {
        std::fs::create_dir_all(&self.output_folder)
            .map_err(|e| Error::io(&self.output_folder, e))?;
        let mut log = TrainingLog::create(&self.output_folder)?;
        self.log_start(&mut log, &state)?;
        let num_epochs = self.settings.num_epochs;
        let end = stop_after.map_or(num_epochs, |n| n.min(num_epochs));
        let console = Console::new(self.show_progress, &self.settings, state.epoch);
        let bar = &console.bar;
        let mut session = Session {
            start: Instant::now(),
            first_epoch: state.epoch,
            last_latest: Instant::now(),
            fixed_batch: match self.settings.benchmark {
                Some(BenchmarkMode::NoDataLoading) => Some(self.train_loader.next_batch()?),
                _ => None,
            },
            train_seconds: 0.0,
            train_iterations: 0,
            pending: None,
        };
        self.hook(&state, &mut log, state.epoch, |t, c| t.on_train_start(c))?;
        let mut stopped_early = false;
        while state.epoch < end {
            let epoch = state.epoch;
            self.train_epoch(&mut state, &mut session, &mut log, bar)?;
            self.save_epoch_checkpoints(&mut state, &mut session, &mut log, epoch)?;
            let per_epoch =
                session.start.elapsed().as_secs_f64() / (state.epoch - session.first_epoch) as f64;
            console.epoch_line(
                &state.logging[epoch],
                num_epochs,
                Duration::from_secs_f64(per_epoch * (end - state.epoch) as f64),
            );
            let flow = self.hook(&state, &mut log, epoch, |t, c| t.on_epoch_end(c))?;
            if flow == EpochFlow::Stop && state.epoch < num_epochs {
                log.line(&format!(
                    "The trainer stopped training early after epoch {}",
                    state.epoch
                ))?;
                stopped_early = true;
                break;
            }
        }
        bar.finish_and_clear();
        let finished = state.epoch >= num_epochs || stopped_early;
        self.finish(&state, &mut log, finished)?;
        let iterations_per_second = if session.train_seconds > 0.0 {
            session.train_iterations as f64 / session.train_seconds
        } else {
            0.0
        };
        if self.settings.benchmark.is_some() {
            self.write_benchmark(&state, &mut log, iterations_per_second)?;
        }
        Ok(RunSummary {
            epochs_completed: state.epoch,
            logging: state.logging,
            best_ema: state.best_ema,
            finished,
            iterations_per_second,
        })
    }

    /// Writes the run's first log lines: what it trains, how it computes, where it continues.
    fn log_start(&self, log: &mut TrainingLog, state: &RunState) -> Result<()> {
        let s = &self.settings;
        log.line(&format!(
            "{} {} fold {}: {} epochs x {} training + {} validation iterations, initial lr {}, \
             optimiser {:?}, seed {}",
            self.trainer_name,
            self.configuration,
            self.fold,
            s.num_epochs,
            s.num_iterations_per_epoch,
            s.num_val_iterations_per_epoch,
            s.initial_lr,
            s.optimizer,
            self.seed
        ))?;
        log.line(&format!(
            "Computing in {}",
            nnunet_core::device::compute_precision(&self.device)
        ))?;
        if state.epoch > 0 {
            log.line(&format!("Continuing from epoch {}", state.epoch))?;
        }
        Ok(())
    }

    /// One epoch: its training and validation iterations, then its record logged and appended
    /// to `state` (whose epoch advances).
    fn train_epoch(
        &mut self,
        state: &mut RunState,
        session: &mut Session,
        log: &mut TrainingLog,
        bar: &ProgressBar,
    ) -> Result<()> {
        let epoch = state.epoch;
        let start_time = now();
        self.hook(state, log, epoch, |t, c| t.on_epoch_start(c))?;
        let lr = self.trainer.learning_rate(&self.settings, epoch);
        let groups = self.trainer.parameter_groups(&self.settings, epoch);
        self.network
            .set_frozen(&|path| lr_factor(&groups, path) == 0.0);
        let mut logged = Logged::default();
        bar.set_message(format!("epoch {}/{}", epoch + 1, self.settings.num_epochs));
        log.line(&format!("Epoch {epoch}"))?;
        log.line(&format!("Current learning rate: {lr:.5}"))?;
        let train_losses =
            self.train_iterations(state, session, (lr, &groups), &mut logged, log, bar)?;
        let (val_loss, pseudo_dice) = self.validation_epoch(bar, &mut logged)?;
        let mean_fg_dice = nanmean(&pseudo_dice);
        let ema_fg_dice = match state.logging.last() {
            Some(prev) if !prev.ema_fg_dice.is_nan() => {
                self.settings.ema_pseudo_dice_factor * prev.ema_fg_dice
                    + (1.0 - self.settings.ema_pseudo_dice_factor) * mean_fg_dice
            }
            _ => mean_fg_dice,
        };
        let record = EpochRecord {
            epoch,
            train_loss: mean(&train_losses),
            val_loss,
            pseudo_dice,
            mean_fg_dice,
            ema_fg_dice,
            learning_rate: lr,
            start_time,
            end_time: now(),
            logged: logged.means(),
        };
        log_epoch(log, &record)?;
        state.logging.push(record);
        state.epoch += 1;
        Ok(())
    }

    /// The training iterations of one epoch at learning rate and parameter groups `schedule`;
    /// returns their losses. A loss that is not finite stops the training with an error.
    fn train_iterations(
        &mut self,
        state: &mut RunState,
        session: &mut Session,
        schedule: (f64, &[ParameterGroup]),
        logged: &mut Logged,
        log: &mut TrainingLog,
        bar: &ProgressBar,
    ) -> Result<Vec<f64>> {
        let epoch = state.epoch;
        let iterations = self.settings.num_iterations_per_epoch;
        let train_start = Instant::now();
        let mut train_losses = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let batch = match &session.fixed_batch {
                Some(b) => b.clone(),
                None => self.train_loader.next_batch()?,
            };
            let loss = self.train_step(&batch, state, &mut session.pending, schedule, logged)?;
            if session.fixed_batch.is_none() {
                self.train_loader.recycle(batch);
            }
            if !loss.is_finite() {
                log.line(&format!("train loss is {loss}; stopping"))?;
                return Err(Error::training(format!(
                    "training diverged in epoch {epoch}: the loss is {loss}. Try a lower \
                     learning rate (--initial-lr)"
                )));
            }
            train_losses.push(loss);
            bar.inc(1);
        }
        session.train_seconds += train_start.elapsed().as_secs_f64();
        session.train_iterations += iterations;
        Ok(train_losses)
    }

    /// nnU-Net's `on_epoch_end` after epoch `epoch`: the periodic `checkpoint_latest`, the best
    /// checkpoint by EMA pseudo Dice, then the plot. Besides nnU-Net's every `save_every` epochs,
    /// the latest is written when the checkpoint interval has passed, so that a killed run loses
    /// little.
    fn save_epoch_checkpoints(
        &self,
        state: &mut RunState,
        session: &mut Session,
        log: &mut TrainingLog,
        epoch: usize,
    ) -> Result<()> {
        let s = &self.settings;
        let ema_fg_dice = state.logging[epoch].ema_fg_dice;
        let periodic = state.epoch.is_multiple_of(s.save_every.max(1)) && epoch != s.num_epochs - 1;
        let timed = state.epoch < s.num_epochs
            && self
                .checkpoint_interval
                .is_some_and(|interval| session.last_latest.elapsed() >= interval);
        if periodic || timed {
            self.save(state, "checkpoint_latest")?;
            session.last_latest = Instant::now();
        }
        if state.best_ema.is_none_or(|best| ema_fg_dice > best) {
            state.best_ema = Some(ema_fg_dice);
            log.line(&format!("Yayy! New best EMA pseudo Dice: {ema_fg_dice:.4}"))?;
            self.save(state, "checkpoint_best")?;
        }
        crate::plot::draw_progress(&state.logging, &self.output_folder.join("progress.png"))
    }

    /// Ends the session: a `finished` run gets its `on_train_end` hook and `checkpoint_final`
    /// (and loses `checkpoint_latest`); a stopped one writes `checkpoint_latest`.
    fn finish(&mut self, state: &RunState, log: &mut TrainingLog, finished: bool) -> Result<()> {
        if finished {
            self.hook(state, log, state.epoch, |t, c| t.on_train_end(c))?;
            self.save(state, "checkpoint_final")?;
            let latest = checkpoint_path(&self.output_folder, "checkpoint_latest");
            if latest.exists() {
                std::fs::remove_file(&latest).map_err(|e| Error::io(&latest, e))?;
            }
            log.line("Training done.")
        } else {
            self.save(state, "checkpoint_latest")?;
            log.line(&format!("Stopped after epoch {}", state.epoch))
        }
    }

    /// A benchmark trainer's report: a log line and `benchmark_result.json` with the epoch
    /// times and the training iterations per second.
    fn write_benchmark(
        &self,
        state: &RunState,
        log: &mut TrainingLog,
        iterations_per_second: f64,
    ) -> Result<()> {
        let s = &self.settings;
        let durations: Vec<f64> = state.logging.iter().map(EpochRecord::duration).collect();
        let fastest = durations.iter().copied().fold(f64::INFINITY, f64::min);
        log.line(&format!(
            "Benchmark: fastest epoch {fastest:.2} s, mean epoch {:.2} s, {iterations_per_second:.2} training iterations/s",
            mean(&durations)
        ))?;
        let report = serde_json::json!({
            "epoch_times_s": durations,
            "fastest_epoch_s": fastest,
            "train_iterations_per_second": iterations_per_second,
            "num_iterations_per_epoch": s.num_iterations_per_epoch,
            "num_val_iterations_per_epoch": s.num_val_iterations_per_epoch,
            "threads": rayon::current_num_threads(),
        });
        nnunet_core::compat::json::write_json(
            &self.output_folder.join("benchmark_result.json"),
            &report,
        )
    }

    /// Calls a hook of the trainer with a [`HookContext`] of `epoch` and writes the lines it logs.
    fn hook<T>(
        &mut self,
        state: &RunState,
        log: &mut TrainingLog,
        epoch: usize,
        call: impl FnOnce(&mut dyn Trainer, &mut HookContext<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut ctx = HookContext::new(
            epoch,
            &self.settings,
            &state.logging,
            self.network.as_mut(),
            &self.output_folder,
        );
        let out = call(self.trainer.as_mut(), &mut ctx)?;
        for line in ctx.into_lines() {
            log.line(&line)?;
        }
        Ok(out)
    }

    /// One training iteration through [`Trainer::train_step`] at learning rate and parameter
    /// groups `schedule`, with the optimiser and the gradients not yet applied.
    fn train_step(
        &mut self,
        batch: &Batch,
        state: &mut RunState,
        pending: &mut Option<GradientsParams>,
        schedule: (f64, &[ParameterGroup]),
        logged: &mut Logged,
    ) -> Result<f64> {
        let mut step = RunStep {
            network: self.network.as_mut(),
            loss: self.loss.as_ref(),
            loss_settings: &self.loss_settings,
            ds_weights: &self.ds_weights,
            regions: self.regions,
            device: self.device.clone(),
            optimizer: Some((state.optimizer.as_mut(), schedule.0, schedule.1)),
            pending,
            loss_scaler: state.loss_scaler.as_mut(),
            logged,
        };
        self.trainer.train_step(&mut step, batch)
    }
}

/// What one call of [`TrainingRun::train`] keeps across its epochs.
struct Session {
    /// When the session started.
    start: Instant,
    /// The epoch the session started at.
    first_epoch: usize,
    /// When `checkpoint_latest` was last written (or the session started).
    last_latest: Instant,
    /// The one batch every iteration trains on in the benchmark without data loading.
    fixed_batch: Option<Batch>,
    /// Time spent in training iterations, in seconds.
    train_seconds: f64,
    /// Training iterations done.
    train_iterations: usize,
    /// Gradients of backward passes not yet applied (a trainer accumulating gradients).
    pending: Option<GradientsParams>,
}

/// Whether training computes in fp16 and so scales its losses (GPU mixed precision).
fn fp16_training() -> bool {
    nnunet_core::network::activation_dtype() == FloatDType::F16
}

/// Which schedule settings differ between a run's start and now.
fn schedule_differences(started: &TrainerSettings, now: &TrainerSettings) -> Vec<String> {
    let mut out = Vec::new();
    note_difference(&mut out, "epochs", started.num_epochs, now.num_epochs);
    note_difference(
        &mut out,
        "iterations per epoch",
        started.num_iterations_per_epoch,
        now.num_iterations_per_epoch,
    );
    note_difference(
        &mut out,
        "validation iterations per epoch",
        started.num_val_iterations_per_epoch,
        now.num_val_iterations_per_epoch,
    );
    note_difference(
        &mut out,
        "initial learning rate",
        started.initial_lr,
        now.initial_lr,
    );
    if started != now && out.is_empty() {
        out.push("trainer settings".into());
    }
    out
}

/// Appends `"{what} {started} vs {now}"` to `out` when the two values differ.
fn note_difference<T: PartialEq + std::fmt::Display>(
    out: &mut Vec<String>,
    what: &str,
    started: T,
    now: T,
) {
    if started != now {
        out.push(format!("{what} {started} vs {now}"));
    }
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
