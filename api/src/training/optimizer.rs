//! The optimiser a trainer trains with: the [`Optimizer`] trait (nnU-Net's SGD and the variants'
//! Adam, AdamW and Adan implement it in the pipeline; a plugin may bring its own) and the
//! [`ParameterGroup`]s that scale or freeze the learning rate of parts of the network.

use burn::optim::GradientsParams;
use burn::tensor::Device;

use crate::error::Result;
use crate::network::{NamedTensor, Network};

/// The learning rate of the parameters whose path starts with `prefix`, as a factor of the
/// epoch's learning rate. A factor of 0 freezes them: they get no update and no optimiser state,
/// and their gradients do not count towards gradient clipping (PyTorch's `requires_grad=False`).
#[derive(Clone, Debug, PartialEq)]
pub struct ParameterGroup {
    /// Parameter path prefix, e.g. `encoder.` (see [`Network::parameter_shapes`]).
    pub prefix: String,
    /// Factor of the epoch's learning rate.
    pub lr_factor: f64,
}

impl ParameterGroup {
    /// The parameters under `prefix`, frozen.
    pub fn frozen(prefix: impl Into<String>) -> Self {
        Self::scaled(prefix, 0.0)
    }

    /// The parameters under `prefix`, with `lr_factor` times the learning rate.
    pub fn scaled(prefix: impl Into<String>, lr_factor: f64) -> Self {
        Self {
            prefix: prefix.into(),
            lr_factor,
        }
    }
}

/// The learning-rate factor of parameter `path`: that of the first group whose prefix it has, 1
/// if none.
pub fn lr_factor(groups: &[ParameterGroup], path: &str) -> f64 {
    groups
        .iter()
        .find(|g| path.starts_with(&g.prefix))
        .map_or(1.0, |g| g.lr_factor)
}

/// Updates a network's parameters from their gradients. State is kept by parameter path, so that
/// it survives a checkpoint and a rebuilt network.
pub trait Optimizer: Send {
    /// One step with the gradients of a backward pass at learning rate `lr`, scaled or frozen per
    /// `groups`.
    fn step(
        &mut self,
        network: &mut dyn Network,
        grads: &GradientsParams,
        lr: f64,
        groups: &[ParameterGroup],
    ) -> Result<()>;

    /// Number of steps taken.
    fn steps(&self) -> u64;

    /// The state as named tensors, for checkpoints.
    fn export_state(&self) -> Vec<NamedTensor>;

    /// Restores the state of [`Optimizer::export_state`] after `steps` steps; state that does not
    /// belong to this optimiser is an error.
    fn import_state(&mut self, steps: u64, state: &[NamedTensor], device: &Device) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_group_decides() {
        let groups = [
            ParameterGroup::frozen("encoder.stem."),
            ParameterGroup::scaled("encoder.", 0.1),
        ];
        assert_eq!(lr_factor(&groups, "encoder.stem.conv.weight"), 0.0);
        assert_eq!(lr_factor(&groups, "encoder.stages.0.weight"), 0.1);
        assert_eq!(lr_factor(&groups, "decoder.seg_layers.0.weight"), 1.0);
        assert_eq!(lr_factor(&[], "anything"), 1.0);
    }
}
