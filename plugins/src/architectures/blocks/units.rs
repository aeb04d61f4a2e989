//! Conv-norm-nonlin units and stacks of them.

// burn, as nnunet-core re-exports it (the plugins crate has no direct burn dependency).
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use nnunet_core::burn;

use super::super::kwargs::Activation;
use super::{ConvLayer, LayerSettings, Norm, StackShape, activate};

/// `ConvDropoutNormReLU`: conv, then norm and non-linearity (swapped with `nonlin_first`).
#[derive(Module, Debug)]
pub struct ConvNormAct {
    /// The convolution.
    pub conv: ConvLayer,
    /// The normalisation, if the network has one.
    pub norm: Option<Norm>,
    #[module(skip)]
    nonlin: Option<Activation>,
    #[module(skip)]
    nonlin_first: bool,
}

impl ConvNormAct {
    /// A unit; `with_nonlin = false` leaves out the non-linearity (ResEnc's `conv2` and skip).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        channels_in: usize,
        channels_out: usize,
        kernel: &[usize],
        stride: &[usize],
        conv_bias: bool,
        settings: &LayerSettings,
        with_nonlin: bool,
        device: &Device,
    ) -> Self {
        ConvNormAct {
            conv: ConvLayer::conv(channels_in, channels_out, kernel, stride, conv_bias, device),
            norm: settings
                .norm
                .map(|spec| Norm::new(channels_out, spec, device)),
            nonlin: if with_nonlin { settings.nonlin } else { None },
            nonlin_first: settings.nonlin_first,
        }
    }

    /// Applies the unit to `[b, c, z, y, x]`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let x = self.conv.forward(x);
        match &self.norm {
            Some(norm) if self.nonlin_first && self.nonlin.is_some() => {
                norm.forward(activate(self.nonlin, x))
            }
            Some(norm) => norm.forward_activated(x, self.nonlin),
            None => activate(self.nonlin, x),
        }
    }
}

/// `StackedConvBlocks`: `n` units, the first one strided.
#[derive(Module, Debug)]
pub struct StackedConvBlocks {
    /// The units, in order.
    pub convs: Vec<ConvNormAct>,
}

impl StackedConvBlocks {
    /// The units of `shape`.
    pub fn new(shape: StackShape, settings: &LayerSettings, device: &Device) -> Self {
        let convs = shape.layers(|cin, stride| {
            ConvNormAct::new(
                cin,
                shape.channels_out,
                shape.kernel,
                stride,
                settings.conv_bias,
                settings,
                true,
                device,
            )
        });
        StackedConvBlocks { convs }
    }

    /// Applies the units in order.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.convs.iter().fold(x, |x, unit| unit.forward(x))
    }
}
