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

pub use conv::{ConvGeometry, ConvLayer};
pub use decoder::UNetDecoder;
pub use norm::Norm;
pub use params::{KernelParam, RunningStat};
pub use residual::{BasicBlockD, StackedResidualBlocks, avg_pool};
pub use units::{ConvNormAct, StackedConvBlocks};

// burn, as nnunet-core re-exports it (the plugins crate has no direct burn dependency).
use burn::tensor::{Tensor, activation};
use nnunet_core::burn;

use super::kwargs::{Activation, NormSpec};

/// Applies the non-linearity, if any.
pub fn activate(nonlin: Option<Activation>, x: Tensor<5>) -> Tensor<5> {
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
pub fn as_zyx(v: &[usize]) -> [usize; 3] {
    match v.len() {
        2 => [1, v[0], v[1]],
        _ => [v[0], v[1], v[2]],
    }
}

/// `n.max(1)` layers built by `make(channels_in, stride)`: the first from `channels_in` with
/// `first_stride`, the others from `channels_out` with stride 1 (`kernel_dims` spatial axes).
fn stacked<T>(
    n: usize,
    channels_in: usize,
    channels_out: usize,
    kernel_dims: usize,
    first_stride: &[usize],
    mut make: impl FnMut(usize, &[usize]) -> T,
) -> Vec<T> {
    let ones = vec![1; kernel_dims];
    (0..n.max(1))
        .map(|i| {
            if i == 0 {
                make(channels_in, first_stride)
            } else {
                make(channels_out, &ones)
            }
        })
        .collect()
}
