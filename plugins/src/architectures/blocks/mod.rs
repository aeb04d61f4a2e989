//! Building blocks of the U-Nets, laid out so that burn's parameter paths equal the PyTorch
//! reference's `state_dict` keys: convolutions (`weight`, `bias`), normalisation (`weight`,
//! `bias`, and for batch norm `running_mean`, `running_var`), conv-norm-nonlin units (`conv`,
//! `norm`), stacked units (`convs.N`), residual blocks (`conv1`, `conv2`, `skip.N`), the decoder
//! (`stages`, `transpconvs`, `seg_layers`).
//!
//! Feature maps are always 5D `[b, c, z, y, x]`. A 2D layer holds 2D weights (`[out, in, k, k]`)
//! and runs burn's 2D kernels on `[b, c, y, x]`, so its input must have `z = 1` (the networks fold
//! z into the batch before the first layer).

mod conv;
mod decoder;
mod norm;
mod params;
mod residual;
mod units;

pub(super) use conv::ConvLayer;
pub(super) use decoder::UNetDecoder;
pub(super) use norm::Norm;
pub(super) use params::{KernelParam, RunningStat};
pub(super) use residual::StackedResidualBlocks;
pub(super) use units::{ConvNormAct, StackedConvBlocks};

// burn, as nnunet-core re-exports it (the plugins crate has no direct burn dependency).
use burn::tensor::{Tensor, activation};
use nnunet_core::burn;

use super::kwargs::{Activation, NormSpec};

/// Applies the non-linearity, if any.
pub(super) fn activate(nonlin: Option<Activation>, x: Tensor<5>) -> Tensor<5> {
    match nonlin {
        None => x,
        Some(Activation::LeakyRelu(slope)) => activation::leaky_relu(x, slope),
        Some(Activation::Relu) => activation::relu(x),
    }
}

/// What every convolution unit of a network shares.
#[derive(Clone, Debug)]
pub struct LayerSettings {
    /// Whether the units' convolutions have a bias.
    pub conv_bias: bool,
    /// The normalisation after each convolution, if any.
    pub norm: Option<NormSpec>,
    /// The non-linearity, if any.
    pub nonlin: Option<Activation>,
    /// conv -> nonlin -> norm instead of conv -> norm -> nonlin.
    pub nonlin_first: bool,
}

/// Strides of a 2D (`[y, x]`) or 3D layer as `[z, y, x]`.
pub(super) fn as_zyx(v: &[usize]) -> [usize; 3] {
    match v.len() {
        2 => [1, v[0], v[1]],
        _ => [v[0], v[1], v[2]],
    }
}

/// The shape of a stack of layers: `n` (at least 1) layers from `channels_in` to `channels_out`
/// channels with `kernel`, the first with stride `first_stride`, the others with stride 1.
#[derive(Clone, Copy, Debug)]
pub struct StackShape<'a> {
    /// How many layers (0 is taken as 1).
    pub n: usize,
    /// The first layer's input channels.
    pub channels_in: usize,
    /// Every layer's output channels (and the input channels of all but the first).
    pub channels_out: usize,
    /// The kernel size per spatial axis.
    pub kernel: &'a [usize],
    /// The first layer's stride.
    pub first_stride: &'a [usize],
}

impl StackShape<'_> {
    /// The layers built by `make(channels_in, stride)`, first to last.
    fn layers<T>(&self, mut make: impl FnMut(usize, &[usize]) -> T) -> Vec<T> {
        let ones = vec![1; self.kernel.len()];
        (0..self.n.max(1))
            .map(|i| {
                if i == 0 {
                    make(self.channels_in, self.first_stride)
                } else {
                    make(self.channels_out, &ones)
                }
            })
            .collect()
    }
}
