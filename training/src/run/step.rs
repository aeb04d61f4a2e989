//! The pipeline's side of a training or validation step ([`StepContext`]), and arrays as
//! tensors.

use std::collections::BTreeMap;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ndarray::Array5;

use crate::data_loading::Batch;
use crate::loss_scale::LossScaler;
use crate::{Optimizer, ParameterGroup, StepContext};
use nnunet_core::error::{Error, Result};
use nnunet_core::loss::{Loss, LossSettings, Target};
use nnunet_core::network::Network;

/// The values trainers record with [`StepContext::log`] during one epoch: sum and count by name.
#[derive(Default)]
pub(super) struct Logged(BTreeMap<String, (f64, usize)>);

impl Logged {
    /// Records one value of `name`.
    fn add(&mut self, name: String, value: f64) {
        let entry = self.0.entry(name).or_insert((0.0, 0));
        entry.0 += value;
        entry.1 += 1;
    }

    /// The mean of each name's values.
    pub(super) fn means(&self) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .map(|(name, (sum, n))| (name.clone(), sum / *n as f64))
            .collect()
    }
}

/// The pipeline's side of a training or validation step ([`StepContext`]).
pub(super) struct RunStep<'a> {
    pub(super) network: &'a mut dyn Network,
    pub(super) loss: &'a dyn Loss,
    pub(super) loss_settings: &'a LossSettings,
    /// Deep-supervision weights, one per network output (highest resolution first).
    pub(super) ds_weights: &'a [f64],
    pub(super) regions: bool,
    pub(super) device: Device,
    /// The optimiser, learning rate and parameter groups of a training step; none in validation.
    pub(super) optimizer: Option<(&'a mut dyn Optimizer, f64, &'a [ParameterGroup])>,
    /// Gradients of backward passes since the last optimiser step.
    pub(super) pending: &'a mut Option<GradientsParams>,
    /// Scales losses before backward passes and gradients back before steps (fp16 training).
    pub(super) loss_scaler: Option<&'a mut LossScaler>,
    pub(super) logged: &'a mut Logged,
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
            return Err(Error::training(format!(
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
        total.ok_or_else(|| Error::training("every deep-supervision weight is zero"))
    }

    fn backward(&mut self, loss: Tensor<1>) -> Result<()> {
        if self.optimizer.is_none() {
            return Err(Error::training("a validation step has no backward pass"));
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
            return Err(Error::training(
                "a validation step cannot take an optimiser step",
            ));
        };
        let mut grads = self
            .pending
            .take()
            .ok_or_else(|| Error::training("an optimiser step needs a backward pass before it"))?;
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

/// A `[b, c, z, y, x]` array as a tensor on `device`.
pub fn array_to_tensor(array: &Array5<f32>, device: &Device) -> Tensor<5> {
    let shape = array.shape().to_vec();
    let values: Vec<f32> = match array.as_slice() {
        Some(s) => s.to_vec(),
        None => array.iter().copied().collect(),
    };
    Tensor::from_data(TensorData::new(values, shape), device)
}
