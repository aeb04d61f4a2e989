//! `ResidualEncoderUNet` (nnU-Net ResEnc M/L/XL): a stem unit, stages of `BasicBlockD`
//! residual blocks, and nnU-Net's U-Net decoder.

// burn, as nnunet-core re-exports it (the plugins crate has no direct burn dependency).
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use nnunet_core::Result;
use nnunet_core::burn;
use nnunet_core::network::{NetworkSpec, SegmentationModule};

use super::blocks::{StackShape, StackedConvBlocks, StackedResidualBlocks, UNetDecoder};
use super::kwargs::UNetFamily;
use super::{InputLayout, UNetSetup, define_unet, encoder_stages};

/// `ResidualEncoder`: `stem.convs.0`, then `stages.S.blocks.B`.
#[derive(Module, Debug)]
pub struct ResidualEncoder {
    /// One conv unit at full resolution before the first stage.
    pub stem: StackedConvBlocks,
    /// The stages of residual blocks, highest resolution first.
    pub stages: Vec<StackedResidualBlocks>,
}

impl ResidualEncoder {
    /// An encoder for `setup`'s topology taking `input_channels` channels.
    fn new(setup: &UNetSetup, input_channels: usize, device: &Device) -> Self {
        let (kw, settings) = (&setup.kw, &setup.settings);
        let stem_channels = kw.stem_channels.unwrap_or(kw.features_per_stage[0]);
        let ones = vec![1; kw.dims];
        let stem = StackShape {
            n: 1,
            channels_in: input_channels,
            channels_out: stem_channels,
            kernel: &kw.kernel_sizes[0],
            first_stride: &ones,
        };
        let stem = StackedConvBlocks::new(stem, settings, device);
        let stages = encoder_stages(kw, stem_channels, |shape| {
            StackedResidualBlocks::new(shape, settings, device)
        });
        ResidualEncoder { stem, stages }
    }

    /// The output of every stage, highest resolution first.
    pub fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        let mut x = self.stem.forward(x);
        let mut outputs = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            x = stage.forward(x);
            outputs.push(x.clone());
        }
        outputs
    }
}

define_unet!(
    /// dynamic_network_architectures' `ResidualEncoderUNet` (BasicBlockD blocks), with torch's
    /// parameter names (`encoder.stem.convs.0…`,
    /// `encoder.stages.S.blocks.B.{conv1,conv2,skip.N}.{conv,norm}.{weight,bias}`, `decoder.…`).
    ResidualEncoderUNet,
    /// The residual encoder.
    ResidualEncoder,
    UNetFamily::ResidualEncoder,
    "`InitWeights_He(1e-2)`, then `init_last_bn_before_add_to_0` (zero `conv2.norm` per block)"
);
