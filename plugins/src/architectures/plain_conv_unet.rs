//! `PlainConvUNet`: an encoder of stacked conv-norm-nonlin units (the first of each stage
//! strided) and nnU-Net's U-Net decoder.

// burn, as nnunet-core re-exports it (the plugins crate has no direct burn dependency).
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use nnunet_core::Result;
use nnunet_core::burn;
use nnunet_core::network::{NetworkSpec, SegmentationModule};

use super::blocks::{StackedConvBlocks, UNetDecoder};
use super::kwargs::UNetFamily;
use super::{InputLayout, UNetSetup, define_unet, encoder_stages};

/// `PlainConvEncoder`. Each stage is torch's `nn.Sequential` holding one `StackedConvBlocks`,
/// hence the inner one-element `Vec` (paths `stages.S.0.convs.I`).
#[derive(Module, Debug)]
pub struct PlainConvEncoder {
    /// The stages, highest resolution first.
    pub stages: Vec<Vec<StackedConvBlocks>>,
}

impl PlainConvEncoder {
    /// An encoder for `setup`'s topology taking `input_channels` channels.
    fn new(setup: &UNetSetup, input_channels: usize, device: &Device) -> Self {
        let (kw, settings) = (&setup.kw, &setup.settings);
        let stages = encoder_stages(kw, input_channels, |shape| {
            vec![StackedConvBlocks::new(shape, settings, device)]
        });
        PlainConvEncoder { stages }
    }

    /// The output of every stage, highest resolution first.
    pub fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        let mut outputs = Vec::with_capacity(self.stages.len());
        let mut x = x;
        for stage in &self.stages {
            x = stage.iter().fold(x, |x, blocks| blocks.forward(x));
            outputs.push(x.clone());
        }
        outputs
    }
}

define_unet!(
    /// dynamic_network_architectures' `PlainConvUNet`, with torch's parameter names
    /// (`encoder.stages.S.0.convs.I.{conv,norm}.{weight,bias}`,
    /// `decoder.{stages.S.convs.I…,transpconvs.S…,seg_layers.S…}`).
    PlainConvUNet,
    /// The encoder.
    PlainConvEncoder,
    UNetFamily::Plain,
    "`InitWeights_He(1e-2)` (kaiming-normal kernels, zero biases, unit norm weights)"
);
