//! The validation iterations of an epoch and their pseudo Dice.

use burn::tensor::Tensor;
use indicatif::ProgressBar;
use ndarray::{Array5, Axis};

use super::step::Logged;
use super::{RunStep, TrainingRun};
use nnunet_core::compat::statistics::np_mean as mean;
use nnunet_core::error::Result;

impl TrainingRun {
    /// The validation iterations of one epoch through [`Trainer::validation_step`]: mean loss and
    /// pseudo Dice per foreground class.
    pub(super) fn validation_epoch(
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
