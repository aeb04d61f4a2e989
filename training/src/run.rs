//! The training loop of `nnUNetTrainer`: epochs of training and validation iterations, the
//! learning-rate schedule, deep supervision, pseudo Dice and its moving average, the text log,
//! `progress.png` and the checkpoints, and an exact continuation from `checkpoint_latest`.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use burn::optim::GradientsParams;
use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};
use indicatif::{FormattedDuration, ProgressBar};
use ndarray::{Array5, Axis};

use crate::checkpoint::{CHECKPOINT_FORMAT, Checkpoint, CheckpointMeta};
use crate::data_loading::{Batch, DataLoader};
use crate::loss_scale::LossScaler;
use crate::optimizer_api::lr_factor;
use crate::{
    BenchmarkMode, EpochFlow, EpochRecord, HookContext, Optimizer, ParameterGroup, StepContext,
    Trainer, TrainerSettings,
};
use nnunet_core::error::{Error, Result};
use nnunet_core::loss::{Loss, LossSettings, Target};
use nnunet_core::network::Network;

/// Everything a training run needs, built by the trainer set-up from plans and dataset.
pub struct TrainingRun {
    /// `nnUNet_results/DatasetXXX/Trainer__Plans__config/fold_N`.
    pub output_folder: PathBuf,
    pub trainer_name: String,
    pub plans_identifier: String,
    pub configuration: String,
    pub fold: String,
    pub trainer: Box<dyn Trainer>,
    pub settings: TrainerSettings,
    pub network: Box<dyn Network>,
    pub network_class_name: String,
    pub input_channels: usize,
    pub output_channels: usize,
    pub loss: Box<dyn Loss>,
    pub loss_settings: LossSettings,
    /// Deep-supervision weights, one per network output (highest resolution first).
    pub ds_weights: Vec<f64>,
    /// Region-based training (sigmoid outputs, multi-channel 0/1 targets).
    pub regions: bool,
    pub ignore_label: Option<i64>,
    pub train_loader: DataLoader,
    pub val_loader: DataLoader,
    /// The device training runs on, with autodiff.
    pub device: Device,
    pub seed: u64,
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
    pub epoch: usize,
    pub logging: Vec<EpochRecord>,
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
    pub logging: Vec<EpochRecord>,
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
            return Err(Error::invalid_file(
                path,
                format!(
                    "was written by trainer {} but this run uses {}",
                    meta.trainer_name, self.trainer_name
                ),
            ));
        }
        let differences = schedule_differences(&meta.settings, &self.settings);
        if !differences.is_empty() {
            return Err(Error::invalid_file(
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
            .map_err(|e| Error::invalid_file(path, e.to_string()))?;
        optimizer
            .import_state(meta.optimizer_steps, &checkpoint.optimizer, &self.device)
            .map_err(|e| Error::invalid_file(path, e.to_string()))?;
        Ok(RunState {
            epoch: meta.current_epoch,
            logging: meta.logging.clone(),
            best_ema: meta.best_ema,
            optimizer,
            loss_scaler: fp16_training().then(|| meta.loss_scaler.clone().unwrap_or_default()),
        })
    }

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
        let s = self.settings.clone();
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
        let end = stop_after.map_or(s.num_epochs, |n| n.min(s.num_epochs));
        let console = Console::new(self.show_progress, &s, state.epoch);
        let bar = &console.bar;
        let session_start = Instant::now();
        let session_first_epoch = state.epoch;
        let mut last_latest = Instant::now();
        let fixed_batch = match s.benchmark {
            Some(BenchmarkMode::NoDataLoading) => Some(self.train_loader.next_batch()?),
            _ => None,
        };
        let mut train_seconds = 0.0;
        let mut train_iterations = 0usize;
        self.hook(&state, &mut log, state.epoch, |t, c| t.on_train_start(c))?;
        let mut stopped_early = false;
        // Gradients of backward passes not yet applied (a trainer accumulating gradients).
        let mut pending = None;
        while state.epoch < end {
            let epoch = state.epoch;
            let start_time = now();
            self.hook(&state, &mut log, epoch, |t, c| t.on_epoch_start(c))?;
            let lr = self.trainer.learning_rate(&s, epoch);
            let groups = self.trainer.parameter_groups(&s, epoch);
            self.network
                .set_frozen(&|path| lr_factor(&groups, path) == 0.0);
            let mut logged = Logged::default();
            bar.set_message(format!("epoch {}/{}", epoch + 1, s.num_epochs));
            log.line(&format!("Epoch {epoch}"))?;
            log.line(&format!("Current learning rate: {lr:.5}"))?;

            let train_start = Instant::now();
            let mut train_losses = Vec::with_capacity(s.num_iterations_per_epoch);
            for _ in 0..s.num_iterations_per_epoch {
                let batch = match &fixed_batch {
                    Some(b) => b.clone(),
                    None => self.train_loader.next_batch()?,
                };
                let schedule = (lr, groups.as_slice());
                let loss =
                    self.train_step(&batch, &mut state, &mut pending, schedule, &mut logged)?;
                if fixed_batch.is_none() {
                    self.train_loader.recycle(batch);
                }
                if !loss.is_finite() {
                    log.line(&format!("train loss is {loss}; stopping"))?;
                    return Err(Error::Invalid(format!(
                        "training diverged in epoch {epoch}: the loss is {loss}. Try a lower \
                         learning rate (--initial-lr)"
                    )));
                }
                train_losses.push(loss);
                bar.inc(1);
            }
            train_seconds += train_start.elapsed().as_secs_f64();
            train_iterations += s.num_iterations_per_epoch;

            let (val_loss, pseudo_dice) = self.validation_epoch(bar, &mut logged)?;
            let mean_fg_dice = nanmean(&pseudo_dice);
            let ema_fg_dice = match state.logging.last() {
                Some(prev) if !prev.ema_fg_dice.is_nan() => {
                    s.ema_pseudo_dice_factor * prev.ema_fg_dice
                        + (1.0 - s.ema_pseudo_dice_factor) * mean_fg_dice
                }
                _ => mean_fg_dice,
            };
            let record = EpochRecord {
                epoch,
                train_loss: mean(&train_losses),
                val_loss,
                pseudo_dice: pseudo_dice.clone(),
                mean_fg_dice,
                ema_fg_dice,
                learning_rate: lr,
                start_time,
                end_time: now(),
                logged: logged.means(),
            };
            log.line(&format!("train_loss {:.4}", record.train_loss))?;
            log.line(&format!("val_loss {:.4}", record.val_loss))?;
            for (name, value) in &record.logged {
                log.line(&format!("{name} {value:.4}"))?;
            }
            log.line(&format!(
                "Pseudo dice [{}]",
                pseudo_dice
                    .iter()
                    .map(|d| format!("{d:.4}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))?;
            log.line(&format!("Epoch time: {:.2} s", record.duration()))?;
            state.logging.push(record);
            state.epoch += 1;

            // nnU-Net's on_epoch_end: periodic latest, best by EMA, then the plot. Besides
            // nnU-Net's every `save_every` epochs, the latest is written when the interval has
            // passed, so that a killed run loses little.
            let periodic =
                state.epoch.is_multiple_of(s.save_every.max(1)) && epoch != s.num_epochs - 1;
            let timed = state.epoch < s.num_epochs
                && self
                    .checkpoint_interval
                    .is_some_and(|interval| last_latest.elapsed() >= interval);
            if periodic || timed {
                self.save(&state, "checkpoint_latest")?;
                last_latest = Instant::now();
            }
            if state.best_ema.is_none_or(|best| ema_fg_dice > best) {
                state.best_ema = Some(ema_fg_dice);
                log.line(&format!("Yayy! New best EMA pseudo Dice: {ema_fg_dice:.4}"))?;
                self.save(&state, "checkpoint_best")?;
            }
            crate::plot::draw_progress(&state.logging, &self.output_folder.join("progress.png"))?;
            let per_epoch =
                session_start.elapsed().as_secs_f64() / (state.epoch - session_first_epoch) as f64;
            console.epoch_line(
                &state.logging[epoch],
                s.num_epochs,
                Duration::from_secs_f64(per_epoch * (end - state.epoch) as f64),
            );
            let flow = self.hook(&state, &mut log, epoch, |t, c| t.on_epoch_end(c))?;
            if flow == EpochFlow::Stop && state.epoch < s.num_epochs {
                log.line(&format!(
                    "The trainer stopped training early after epoch {}",
                    state.epoch
                ))?;
                stopped_early = true;
                break;
            }
        }
        bar.finish_and_clear();
        let finished = state.epoch >= s.num_epochs || stopped_early;
        if finished {
            self.hook(&state, &mut log, state.epoch, |t, c| t.on_train_end(c))?;
            self.save(&state, "checkpoint_final")?;
            let latest = checkpoint_path(&self.output_folder, "checkpoint_latest");
            if latest.exists() {
                std::fs::remove_file(&latest).map_err(|e| Error::io(&latest, e))?;
            }
            log.line("Training done.")?;
        } else {
            self.save(&state, "checkpoint_latest")?;
            log.line(&format!("Stopped after epoch {}", state.epoch))?;
        }
        let iterations_per_second = if train_seconds > 0.0 {
            train_iterations as f64 / train_seconds
        } else {
            0.0
        };
        if s.benchmark.is_some() {
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
            nnunet_core::json::write_json(
                &self.output_folder.join("benchmark_result.json"),
                &report,
            )?;
        }
        Ok(RunSummary {
            epochs_completed: state.epoch,
            logging: state.logging,
            best_ema: state.best_ema,
            finished,
            iterations_per_second,
        })
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

    /// The validation iterations of one epoch through [`Trainer::validation_step`]: mean loss and
    /// pseudo Dice per foreground class.
    fn validation_epoch(
        &mut self,
        bar: &ProgressBar,
        logged: &mut Logged,
    ) -> Result<(f64, Vec<f64>)> {
        let inference_device = self.device.clone().inner();
        let mut network = self.network.boxed_clone();
        network.to_device(&inference_device);
        let mut losses = Vec::new();
        let mut counts: Vec<[f64; 3]> = Vec::new();
        for _ in 0..self.settings.num_val_iterations_per_epoch {
            let batch = self.val_loader.next_batch()?;
            let mut step = RunStep {
                network: network.as_mut(),
                loss: self.loss.as_ref(),
                loss_settings: &self.loss_settings,
                ds_weights: &self.ds_weights,
                regions: self.regions,
                device: inference_device.clone(),
                optimizer: None,
                pending: &mut None,
                loss_scaler: None,
                logged,
            };
            let output = self.trainer.validation_step(&mut step, &batch)?;
            losses.push(output.loss);
            let batch_counts = self.pseudo_dice_counts(output.logits, &batch.targets[0]);
            if counts.is_empty() {
                counts = batch_counts;
            } else {
                for (c, b) in counts.iter_mut().zip(batch_counts) {
                    for k in 0..3 {
                        c[k] += b[k];
                    }
                }
            }
            self.val_loader.recycle(batch);
            bar.inc(1);
        }
        let dice = counts
            .iter()
            .map(|[tp, fp, fn_]| 2.0 * tp / (2.0 * tp + fp + fn_))
            .collect();
        Ok((mean(&losses), dice))
    }

    /// True positives, false positives and false negatives per foreground class (or region) of
    /// one validation batch, pooled over the batch, ignoring ignore-label voxels.
    fn pseudo_dice_counts(&self, logits: Tensor<5>, target: &Array5<i16>) -> Vec<[f64; 3]> {
        let [b, c, z, y, x] = logits.dims();
        let voxels = z * y * x;
        if self.regions {
            let values: Vec<f32> = logits
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            let target_channels = target.shape()[1];
            let has_ignore = self.ignore_label.is_some() && target_channels > c;
            let mut counts = vec![[0.0; 3]; c];
            for n in 0..b {
                let t = target.index_axis(Axis(0), n);
                for (k, count) in counts.iter_mut().enumerate() {
                    let pred = &values[(n * c + k) * voxels..(n * c + k + 1) * voxels];
                    let truth = t.index_axis(Axis(0), k);
                    let ignore = has_ignore.then(|| t.index_axis(Axis(0), target_channels - 1));
                    for (i, (&p, &g)) in pred.iter().zip(truth.iter()).enumerate() {
                        if let Some(ig) = &ignore
                            && ig.as_slice().is_some_and(|s| s[i] != 0)
                        {
                            continue;
                        }
                        let (p, g) = (p > 0.0, g != 0);
                        count[0] += f64::from(u8::from(p && g));
                        count[1] += f64::from(u8::from(p && !g));
                        count[2] += f64::from(u8::from(!p && g));
                    }
                }
            }
            counts
        } else {
            let argmax: Vec<i64> = logits
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap_or_default();
            let mut counts = vec![[0.0; 3]; c.saturating_sub(1)];
            for (&p, &g) in argmax.iter().zip(target.iter()) {
                if self.ignore_label.is_some_and(|ig| i64::from(g) == ig) {
                    continue;
                }
                let g = i64::from(g);
                if p == g {
                    if p > 0 {
                        counts[(p - 1) as usize][0] += 1.0;
                    }
                } else {
                    if p > 0 {
                        counts[(p - 1) as usize][1] += 1.0;
                    }
                    if g > 0 && (g as usize) < c {
                        counts[(g - 1) as usize][2] += 1.0;
                    }
                }
            }
            counts
        }
    }
}

/// The values trainers record with [`StepContext::log`] during one epoch: sum and count by name.
#[derive(Default)]
struct Logged(BTreeMap<String, (f64, usize)>);

impl Logged {
    fn add(&mut self, name: String, value: f64) {
        let entry = self.0.entry(name).or_insert((0.0, 0));
        entry.0 += value;
        entry.1 += 1;
    }

    fn means(&self) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .map(|(name, (sum, n))| (name.clone(), sum / *n as f64))
            .collect()
    }
}

/// The pipeline's side of a training or validation step ([`StepContext`]).
struct RunStep<'a> {
    network: &'a mut dyn Network,
    loss: &'a dyn Loss,
    loss_settings: &'a LossSettings,
    /// Deep-supervision weights, one per network output (highest resolution first).
    ds_weights: &'a [f64],
    regions: bool,
    device: Device,
    /// The optimiser, learning rate and parameter groups of a training step; none in validation.
    optimizer: Option<(&'a mut dyn Optimizer, f64, &'a [ParameterGroup])>,
    /// Gradients of backward passes since the last optimiser step.
    pending: &'a mut Option<GradientsParams>,
    /// Scales losses before backward passes and gradients back before steps (fp16 training).
    loss_scaler: Option<&'a mut LossScaler>,
    logged: &'a mut Logged,
}

impl StepContext for RunStep<'_> {
    fn training(&self) -> bool {
        self.optimizer.is_some()
    }

    fn device(&self) -> Device {
        self.device.clone()
    }

    fn input(&self, batch: &Batch) -> Tensor<5> {
        array_to_tensor(&batch.data, &self.device)
    }

    fn targets(&self, batch: &Batch) -> Vec<Target> {
        batch
            .targets
            .iter()
            .map(|t| target_tensor(t, self.regions, &self.device))
            .collect()
    }

    fn forward(&mut self, input: Tensor<5>) -> Vec<Tensor<5>> {
        self.network.forward(input)
    }

    /// The weighted deep-supervision loss of `outputs` against the batch's targets.
    fn loss(&self, outputs: Vec<Tensor<5>>, batch: &Batch) -> Result<Tensor<1>> {
        let targets = &batch.targets;
        if outputs.len() > targets.len() {
            return Err(Error::Invalid(format!(
                "the network returns {} outputs but the data loader makes {} targets",
                outputs.len(),
                targets.len()
            )));
        }
        let mut total: Option<Tensor<1>> = None;
        for (i, output) in outputs.into_iter().enumerate() {
            let weight = if self.ds_weights.len() > 1 {
                self.ds_weights[i]
            } else {
                1.0
            };
            if weight == 0.0 {
                continue;
            }
            let target = target_tensor(&targets[i], self.regions, &output.device());
            let value = self.loss.forward(output, &target, self.loss_settings)? * weight;
            total = Some(match total {
                Some(t) => t + value,
                None => value,
            });
        }
        total.ok_or_else(|| Error::Invalid("every deep-supervision weight is zero".into()))
    }

    fn backward(&mut self, loss: Tensor<1>) -> Result<()> {
        if self.optimizer.is_none() {
            return Err(Error::Invalid(
                "a validation step has no backward pass".into(),
            ));
        }
        let loss = match &self.loss_scaler {
            Some(scaler) => loss.mul_scalar(scaler.scale),
            None => loss,
        };
        let grads = self.network.gradients(loss.backward());
        match self.pending.as_mut() {
            Some(sum) => self.network.add_gradients(sum, grads),
            None => *self.pending = Some(grads),
        }
        Ok(())
    }

    fn step(&mut self) -> Result<()> {
        let Some((optimizer, lr, groups)) = self.optimizer.as_mut() else {
            return Err(Error::Invalid(
                "a validation step cannot take an optimiser step".into(),
            ));
        };
        let mut grads = self.pending.take().ok_or_else(|| {
            Error::Invalid("an optimiser step needs a backward pass before it".into())
        })?;
        if let Some(scaler) = self.loss_scaler.as_deref_mut() {
            let finite = self.network.scale_gradients(&mut grads, 1.0 / scaler.scale);
            scaler.update(finite);
            if !finite {
                // An overflow of the scaled gradients: this step is skipped, as PyTorch's.
                return Ok(());
            }
        }
        optimizer.step(&mut *self.network, &grads, *lr, groups)
    }

    fn log(&mut self, name: &str, value: f64) {
        let stage = if self.training() { "train" } else { "val" };
        self.logged.add(format!("{stage}_{name}"), value);
    }
}

/// Whether training computes in fp16 and so scales its losses (GPU mixed precision).
fn fp16_training() -> bool {
    nnunet_core::network::activation_dtype() == FloatDType::F16
}

/// A `[b, c, z, y, x]` target as a tensor: labels, or 0/1 region masks.
fn target_tensor(target: &Array5<i16>, regions: bool, device: &Device) -> Target {
    let shape = target.shape().to_vec();
    if regions {
        let values: Vec<f32> = target.iter().map(|&v| f32::from(v)).collect();
        Target::Regions(Tensor::from_data(TensorData::new(values, shape), device))
    } else {
        let values: Vec<i64> = target.iter().map(|&v| i64::from(v)).collect();
        Target::Labels(Tensor::<5, Int>::from_data(
            TensorData::new(values, shape),
            device,
        ))
    }
}

/// Where a run reports its progress: a bar on a terminal (stderr) with the epoch lines above it,
/// or, when stdout or stderr is not a terminal, one plain line per epoch on stdout.
struct Console {
    bar: ProgressBar,
    /// Report at all.
    enabled: bool,
    /// Print the epoch lines on stdout instead of above the bar.
    plain: bool,
}

impl Console {
    /// The reporting of a run of `settings` that starts after `epochs_done` epochs.
    fn new(enabled: bool, settings: &TrainerSettings, epochs_done: usize) -> Self {
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
    fn epoch_line(&self, record: &EpochRecord, num_epochs: usize, left: Duration) {
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

/// Which schedule settings differ between a run's start and now.
fn schedule_differences(started: &TrainerSettings, now: &TrainerSettings) -> Vec<String> {
    let mut out = Vec::new();
    if started.num_epochs != now.num_epochs {
        out.push(format!(
            "epochs {} vs {}",
            started.num_epochs, now.num_epochs
        ));
    }
    if started.num_iterations_per_epoch != now.num_iterations_per_epoch {
        out.push(format!(
            "iterations per epoch {} vs {}",
            started.num_iterations_per_epoch, now.num_iterations_per_epoch
        ));
    }
    if started.num_val_iterations_per_epoch != now.num_val_iterations_per_epoch {
        out.push(format!(
            "validation iterations per epoch {} vs {}",
            started.num_val_iterations_per_epoch, now.num_val_iterations_per_epoch
        ));
    }
    if started.initial_lr != now.initial_lr {
        out.push(format!(
            "initial learning rate {} vs {}",
            started.initial_lr, now.initial_lr
        ));
    }
    if started != now && out.is_empty() {
        out.push("trainer settings".into());
    }
    out
}

/// A `[b, c, z, y, x]` array as a tensor on `device`.
pub fn array_to_tensor(array: &Array5<f32>, device: &Device) -> Tensor<5> {
    let shape = array.shape().to_vec();
    let values: Vec<f32> = match array.as_slice() {
        Some(s) => s.to_vec(),
        None => array.iter().copied().collect(),
    };
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

fn nanmean(values: &[f64]) -> f64 {
    let finite: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    mean(&finite)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// nnU-Net's `training_log_Y_M_D_HH_MM_SS.txt`: timestamped lines, appended as they come.
struct TrainingLog {
    file: std::fs::File,
    path: PathBuf,
}

impl TrainingLog {
    fn create(folder: &Path) -> Result<Self> {
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

    fn line(&mut self, text: &str) -> Result<()> {
        let stamp = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.6f");
        writeln!(self.file, "{stamp}: {text}").map_err(|e| Error::io(&self.path, e))
    }
}
