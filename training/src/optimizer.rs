//! The optimisers of nnU-Net's trainers, with PyTorch's update rules: SGD with (Nesterov)
//! momentum and no dampening, Adam with L2 weight decay, AdamW (optionally AMSGrad), and Adan.
//!
//! State is kept per parameter path (not per burn `ParamId`), so it survives saving and loading a
//! checkpoint into a freshly built network. Gradient clipping is over the global L2 norm of all
//! gradients, as `torch.nn.utils.clip_grad_norm_`.

use std::collections::{BTreeMap, HashMap};

use burn::module::ParamId;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use crate::optimizer_api::{ParameterGroup, lr_factor};
use crate::{OptimizerKind, optimizer_api};
use nnunet_core::error::{Error, Result};
use nnunet_core::network::{ErasedTensor, NamedTensor, Network, ParameterUpdate};

/// An optimiser over a network's parameters.
pub struct Optimizer {
    kind: OptimizerKind,
    weight_decay: f64,
    /// Global gradient norm to clip to in [`optimizer_api::Optimizer::step`].
    max_norm: Option<f64>,
    /// Number of steps taken.
    steps: u64,
    /// Per parameter path, the state buffers (flat), in the order [`buffer_names`] gives.
    state: BTreeMap<String, Vec<Tensor<1>>>,
}

/// The state buffers an optimiser keeps per parameter.
fn buffer_names(kind: &OptimizerKind) -> &'static [&'static str] {
    match kind {
        OptimizerKind::Sgd { .. } => &["momentum_buffer"],
        OptimizerKind::Adam { .. } => &["exp_avg", "exp_avg_sq"],
        OptimizerKind::AdamW { amsgrad: true, .. } => &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
        OptimizerKind::AdamW { amsgrad: false, .. } => &["exp_avg", "exp_avg_sq"],
        OptimizerKind::Adan { .. } => &["m", "v", "n", "prev_grad"],
    }
}

fn flat_gradient(grads: &GradientsParams, id: ParamId, rank: usize) -> Option<Tensor<1>> {
    let flat = match rank {
        1 => grads.get::<1>(id),
        2 => grads.get::<2>(id).map(|g| g.flatten(0, 1)),
        3 => grads.get::<3>(id).map(|g| g.flatten(0, 2)),
        4 => grads.get::<4>(id).map(|g| g.flatten(0, 3)),
        5 => grads.get::<5>(id).map(|g| g.flatten(0, 4)),
        _ => None,
    };
    flat.map(|g| g.inner())
}

/// The global L2 norm of all gradients (one pass without temporaries on the CPU).
fn global_norm(grads: &HashMap<String, Tensor<1>>) -> f64 {
    if grads.values().all(nnunet_core::fused::supported) {
        let squares: f64 = grads
            .values()
            .map(|g| nnunet_core::fused::sum_of_squares(g.clone()))
            .sum();
        return squares.sqrt();
    }
    let squares: Vec<Tensor<1>> = grads
        .values()
        .map(|g| (g.clone() * g.clone()).sum())
        .collect();
    if squares.is_empty() {
        return 0.0;
    }
    f64::from(Tensor::cat(squares, 0).sum().into_scalar::<f32>()).sqrt()
}

/// `g · scale` (`g` itself for 1).
fn scaled(g: Tensor<1>, scale: f64) -> Tensor<1> {
    if scale != 1.0 { g * scale } else { g }
}

/// Collects the flat gradient of every parameter that is not frozen, by path.
struct GradientCollector<'a> {
    grads: &'a GradientsParams,
    groups: &'a [ParameterGroup],
    out: HashMap<String, Tensor<1>>,
}

impl ParameterUpdate for GradientCollector<'_> {
    fn update(&mut self, path: &str, id: ParamId, value: &ErasedTensor) -> Option<ErasedTensor> {
        if lr_factor(self.groups, path) == 0.0 {
            return None;
        }
        if let Some(g) = flat_gradient(self.grads, id, value.dims().len()) {
            self.out.insert(path.to_string(), g);
        }
        None
    }
}

/// Applies one optimiser step with gradients already collected, scaled by `scale` (clipping).
struct Step<'a> {
    optimizer: &'a mut Optimizer,
    grads: HashMap<String, Tensor<1>>,
    lr: f64,
    scale: f64,
    groups: &'a [ParameterGroup],
}

impl ParameterUpdate for Step<'_> {
    fn update(&mut self, path: &str, _id: ParamId, value: &ErasedTensor) -> Option<ErasedTensor> {
        let grad = self.grads.remove(path)?;
        let param = value.flatten();
        let lr = self.lr * lr_factor(self.groups, path);
        let new = self.optimizer.update_one(path, param, grad, lr, self.scale);
        Some(ErasedTensor::from_flat(new, &value.dims()))
    }
}

/// PyTorch's SGD step with (Nesterov) momentum, no dampening and L2 weight decay.
#[derive(Clone, Copy, Debug)]
struct SgdRule {
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    nesterov: bool,
    /// The first step (PyTorch starts the momentum buffer at the first gradient).
    first: bool,
}

impl SgdRule {
    /// The step as burn tensor operations (any backend): new parameter and momentum buffer.
    fn composed(self, p: Tensor<1>, g: Tensor<1>, buf: Tensor<1>) -> (Tensor<1>, Tensor<1>) {
        let g = if self.weight_decay != 0.0 {
            g + p.clone() * self.weight_decay
        } else {
            g
        };
        let buf = if self.first {
            g.clone()
        } else {
            buf * self.momentum + g.clone()
        };
        let d = if self.nesterov {
            g + buf.clone() * self.momentum
        } else {
            buf.clone()
        };
        (p - d * self.lr, buf)
    }

    /// The same step in one pass over the values (f32 tensors on the CPU), instead of the eight
    /// passes and temporaries of [`composed`](Self::composed); every element goes through the
    /// same f32 operations in the same order, so the results are identical.
    fn fused(
        self,
        p: Tensor<1>,
        g: Tensor<1>,
        buf: Tensor<1>,
        scale: f32,
    ) -> (Tensor<1>, Tensor<1>) {
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 15;
        let device = p.device();
        let (mut p, g, mut buf) = (p.into_data(), g.into_data(), buf.into_data());
        let g = g.as_slice::<f32>().expect("an f32 tensor");
        let (ps, bs) = (
            p.as_mut_slice::<f32>().expect("an f32 tensor"),
            buf.as_mut_slice::<f32>().expect("an f32 tensor"),
        );
        ps.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(bs.par_chunks_mut(CHUNK))
            .for_each(|((p, g), b)| self.apply(p, g, b, scale));
        (
            Tensor::from_data(p, &device),
            Tensor::from_data(buf, &device),
        )
    }

    /// [`fused`](Self::fused) on one chunk, the gradient scaled by `scale` first (as the
    /// clipping product `g · scale` would).
    fn apply(self, p: &mut [f32], g: &[f32], b: &mut [f32], scale: f32) {
        let (lr, momentum, wd) = (
            self.lr as f32,
            self.momentum as f32,
            self.weight_decay as f32,
        );
        for ((p, &g), b) in p.iter_mut().zip(g).zip(b) {
            let g = if scale != 1.0 { g * scale } else { g };
            let g = if self.weight_decay != 0.0 {
                g + *p * wd
            } else {
                g
            };
            *b = if self.first { g } else { *b * momentum + g };
            let d = if self.nesterov { g + *b * momentum } else { *b };
            *p -= d * lr;
        }
    }
}

impl Optimizer {
    /// A fresh optimiser (no state yet).
    pub fn new(kind: OptimizerKind, weight_decay: f64) -> Self {
        Self {
            kind,
            weight_decay,
            max_norm: None,
            steps: 0,
            state: BTreeMap::new(),
        }
    }

    /// This optimiser clipping the global gradient norm to `max_norm` in its
    /// [`optimizer_api::Optimizer::step`].
    pub fn with_max_norm(mut self, max_norm: f64) -> Self {
        self.max_norm = Some(max_norm);
        self
    }

    /// Number of steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One step on `network` with the gradients of a backward pass and learning rate `lr`,
    /// clipping the gradients' global L2 norm to `max_norm` first if given. Returns the norm
    /// before clipping.
    pub fn step(
        &mut self,
        network: &mut dyn Network,
        grads: &GradientsParams,
        lr: f64,
        max_norm: Option<f64>,
    ) -> f64 {
        self.step_groups(network, grads, lr, max_norm, &[])
    }

    /// [`Optimizer::step`] with the learning rate scaled per parameter group; frozen parameters
    /// are neither updated nor counted in the gradient norm, and get no state.
    pub fn step_groups(
        &mut self,
        network: &mut dyn Network,
        grads: &GradientsParams,
        lr: f64,
        max_norm: Option<f64>,
        groups: &[ParameterGroup],
    ) -> f64 {
        let mut collector = GradientCollector {
            grads,
            groups,
            out: HashMap::new(),
        };
        network.update_parameters(&mut collector);
        let grads = collector.out;
        let norm = global_norm(&grads);
        // As clip_grad_norm_: gradients scaled by max_norm / (norm + 1e-6) where that is < 1.
        let scale = max_norm
            .map(|m| m / (norm + 1e-6))
            .filter(|&c| c < 1.0)
            .unwrap_or(1.0);
        self.steps += 1;
        let mut step = Step {
            optimizer: self,
            grads,
            lr,
            scale,
            groups,
        };
        network.update_parameters(&mut step);
        norm
    }

    /// The update of one parameter `p` with gradient `scale · g` (both flat).
    fn update_one(
        &mut self,
        path: &str,
        p: Tensor<1>,
        g: Tensor<1>,
        lr: f64,
        scale: f64,
    ) -> Tensor<1> {
        // The fused SGD step scales inside its one pass; the other rules take the product.
        let (g, scale) = match self.kind {
            OptimizerKind::Sgd { .. } => (g, scale),
            _ => (scaled(g, scale), 1.0),
        };
        let wd = self.weight_decay;
        let t = self.steps as i32;
        let names = buffer_names(&self.kind);
        let state = self
            .state
            .entry(path.to_string())
            .or_insert_with(|| names.iter().map(|_| p.zeros_like()).collect());
        match self.kind {
            OptimizerKind::Sgd { momentum, nesterov } => {
                let rule = SgdRule {
                    lr,
                    momentum,
                    weight_decay: wd,
                    nesterov,
                    first: t == 1,
                };
                let buf = state.pop().expect("SGD keeps one buffer");
                let (p, buf) = if nnunet_core::fused::supported(&p) {
                    rule.fused(p, g, buf, scale as f32)
                } else {
                    rule.composed(p, scaled(g, scale), buf)
                };
                state.push(buf);
                p
            }
            OptimizerKind::Adam {
                beta1,
                beta2,
                epsilon,
            } => {
                let g = if wd != 0.0 { g + p.clone() * wd } else { g };
                adam_update(state, p, g, lr, beta1, beta2, epsilon, t, false)
            }
            OptimizerKind::AdamW {
                beta1,
                beta2,
                epsilon,
                amsgrad,
            } => {
                let p = p * (1.0 - lr * wd);
                adam_update(state, p, g, lr, beta1, beta2, epsilon, t, amsgrad)
            }
            OptimizerKind::Adan {
                beta1,
                beta2,
                beta3,
                epsilon,
            } => {
                // adan-pytorch: moments start at zero and are first updated on the second step
                // (which has a previous gradient); bias corrections use the step count.
                if t > 1 {
                    let diff = g.clone() - state[3].clone();
                    state[0] = state[0].clone() * (1.0 - beta1) + g.clone() * beta1;
                    state[1] = state[1].clone() * (1.0 - beta2) + diff.clone() * beta2;
                    let next_n = (g.clone() + diff * (1.0 - beta2)).powi_scalar(2);
                    state[2] = state[2].clone() * (1.0 - beta3) + next_n * beta3;
                }
                let correct = |b: f64| 1.0 / (1.0 - (1.0 - b).powi(t));
                let (cm, cv, cn) = (correct(beta1), correct(beta2), correct(beta3));
                let step_size = (state[2].clone() * cn).sqrt().add_scalar(epsilon).recip() * lr;
                let direction = state[0].clone() * cm + state[1].clone() * ((1.0 - beta2) * cv);
                state[3] = g;
                (p - step_size * direction) / (1.0 + wd * lr)
            }
        }
    }

    /// The state buffers as named tensors (`<parameter path>/<buffer>`), for checkpoints.
    pub fn export_state(&self) -> Vec<NamedTensor> {
        let names = buffer_names(&self.kind);
        let mut out = Vec::new();
        for (path, buffers) in &self.state {
            for (name, buffer) in names.iter().zip(buffers) {
                let data: TensorData = buffer.clone().into_data();
                out.push(NamedTensor {
                    name: format!("{path}/{name}"),
                    shape: vec![buffer.dims()[0]],
                    values: data
                        .convert::<f32>()
                        .try_to_vec::<f32>()
                        .unwrap_or_default(),
                });
            }
        }
        out
    }

    /// Restores the state saved by [`Optimizer::export_state`] after `steps` steps.
    pub fn import_state(
        &mut self,
        steps: u64,
        tensors: &[NamedTensor],
        device: &Device,
    ) -> Result<()> {
        let names = buffer_names(&self.kind);
        let mut state: BTreeMap<String, Vec<Option<Tensor<1>>>> = BTreeMap::new();
        for t in tensors {
            let (path, buffer) = t.name.rsplit_once('/').ok_or_else(|| {
                Error::training(format!(
                    "optimiser state entry '{}' has no buffer name",
                    t.name
                ))
            })?;
            let index = names.iter().position(|n| *n == buffer).ok_or_else(|| {
                Error::training(format!(
                    "optimiser state entry '{}' does not belong to this optimiser ({:?}); was the \
                     run started with another trainer?",
                    t.name, self.kind
                ))
            })?;
            let tensor =
                Tensor::<1>::from_data(TensorData::new(t.values.clone(), [t.values.len()]), device);
            state
                .entry(path.to_string())
                .or_insert_with(|| vec![None; names.len()])[index] = Some(tensor);
        }
        let mut complete = BTreeMap::new();
        for (path, buffers) in state {
            let buffers: Option<Vec<Tensor<1>>> = buffers.into_iter().collect();
            let buffers = buffers.ok_or_else(|| {
                Error::training(format!("optimiser state of '{path}' is incomplete"))
            })?;
            complete.insert(path, buffers);
        }
        self.state = complete;
        self.steps = steps;
        Ok(())
    }
}

impl optimizer_api::Optimizer for Optimizer {
    fn step(
        &mut self,
        network: &mut dyn Network,
        grads: &GradientsParams,
        lr: f64,
        groups: &[ParameterGroup],
    ) -> Result<()> {
        self.step_groups(network, grads, lr, self.max_norm, groups);
        Ok(())
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn export_state(&self) -> Vec<NamedTensor> {
        Optimizer::export_state(self)
    }

    fn import_state(&mut self, steps: u64, state: &[NamedTensor], device: &Device) -> Result<()> {
        Optimizer::import_state(self, steps, state, device)
    }
}

#[allow(clippy::too_many_arguments)]
fn adam_update(
    state: &mut [Tensor<1>],
    p: Tensor<1>,
    g: Tensor<1>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    t: i32,
    amsgrad: bool,
) -> Tensor<1> {
    state[0] = state[0].clone() * beta1 + g.clone() * (1.0 - beta1);
    state[1] = state[1].clone() * beta2 + (g.clone() * g) * (1.0 - beta2);
    let bias1 = 1.0 - beta1.powi(t);
    let bias2 = 1.0 - beta2.powi(t);
    let second = if amsgrad {
        state[2] = state[2].clone().max_pair(state[1].clone());
        state[2].clone()
    } else {
        state[1].clone()
    };
    let denom = (second.sqrt() / bias2.sqrt()).add_scalar(epsilon);
    p - state[0].clone() / denom * (lr / bias1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flex(values: Vec<f32>) -> Tensor<1> {
        let n = values.len();
        Tensor::from_data(TensorData::new(values, [n]), &Device::flex())
    }

    fn values(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn fused_sgd_equals_the_composed_step_bit_for_bit() {
        // A clipping scale is applied inside the fused step, as a product before the composed one.
        let n = 70_001;
        let wave = |k: f32| (0..n).map(|i| ((i as f32) * k).sin()).collect::<Vec<f32>>();
        for (nesterov, first, weight_decay, scale) in [
            (true, true, 3e-5, 1.0),
            (true, false, 3e-5, 0.37),
            (false, false, 0.0, 1.0),
        ] {
            let rule = SgdRule {
                lr: 0.01,
                momentum: 0.99,
                weight_decay,
                nesterov,
                first,
            };
            let (p, g, b) = (wave(0.37), wave(1.13), wave(0.71));
            let (fp, fb) = rule.fused(flex(p.clone()), flex(g.clone()), flex(b.clone()), scale);
            let (cp, cb) = rule.composed(flex(p), scaled(flex(g), f64::from(scale)), flex(b));
            assert_eq!(values(fp), values(cp), "{rule:?}: parameters");
            assert_eq!(values(fb), values(cb), "{rule:?}: momentum buffer");
        }
    }
}
