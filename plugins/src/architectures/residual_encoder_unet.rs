//! `ResidualEncoderUNet` (nnU-Net ResEnc M/L/XL): a stem unit, stages of `BasicBlockD`
//! residual blocks, and nnU-Net's U-Net decoder.

// burn, as nnunet-core re-exports it (the plugins crate has no direct burn dependency).
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use nnunet_core::Result;
use nnunet_core::burn;
use nnunet_core::network::{NetworkSpec, SegmentationModule};

use super::blocks::{LayerSettings, StackedConvBlocks, StackedResidualBlocks, UNetDecoder};
use super::kwargs::{UNetFamily, UNetKwargs};
use super::{InputLayout, settings_for};

/// `ResidualEncoder`: `stem.convs.0`, then `stages.S.blocks.B`.
#[derive(Module, Debug)]
pub struct ResidualEncoder {
    pub stem: StackedConvBlocks,
    pub stages: Vec<StackedResidualBlocks>,
}

impl ResidualEncoder {
    fn new(
        kw: &UNetKwargs,
        input_channels: usize,
        settings: &LayerSettings,
        device: &Device,
    ) -> Self {
        let stem_channels = kw.stem_channels.unwrap_or(kw.features_per_stage[0]);
        let ones = vec![1; kw.dims];
        let stem = StackedConvBlocks::new(
            1,
            input_channels,
            stem_channels,
            &kw.kernel_sizes[0],
            &ones,
            settings,
            device,
        );
        let mut channels_in = stem_channels;
        let stages = (0..kw.n_stages)
            .map(|s| {
                let stage = StackedResidualBlocks::new(
                    kw.n_per_stage[s],
                    channels_in,
                    kw.features_per_stage[s],
                    &kw.kernel_sizes[s],
                    &kw.strides[s],
                    settings,
                    device,
                );
                channels_in = kw.features_per_stage[s];
                stage
            })
            .collect();
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

/// dynamic_network_architectures' `ResidualEncoderUNet` (BasicBlockD blocks), with torch's
/// parameter names (`encoder.stem.convs.0…`,
/// `encoder.stages.S.blocks.B.{conv1,conv2,skip.N}.{conv,norm}.{weight,bias}`, `decoder.…`).
#[derive(Module, Debug)]
pub struct ResidualEncoderUNet {
    pub encoder: ResidualEncoder,
    pub decoder: UNetDecoder,
    #[module(skip)]
    layout: InputLayout,
    #[module(skip)]
    deep_supervision: bool,
}

impl ResidualEncoderUNet {
    /// A freshly initialised network: `InitWeights_He(1e-2)` and, as the reference,
    /// `init_last_bn_before_add_to_0` (each block's `conv2.norm` weight and bias are zero).
    pub fn new(spec: &NetworkSpec, device: &Device) -> Result<Self> {
        let kw = UNetKwargs::parse(&spec.arch_kwargs, UNetFamily::ResidualEncoder)?;
        let layout = InputLayout::new(&kw, spec)?;
        let settings = settings_for(&kw, spec);
        let encoder = ResidualEncoder::new(&kw, spec.input_channels, &settings, device);
        let decoder = UNetDecoder::new(
            &kw.features_per_stage,
            &kw.strides,
            &kw.kernel_sizes,
            &kw.n_conv_per_stage_decoder,
            spec.output_channels,
            &settings,
            device,
        );
        Ok(ResidualEncoderUNet {
            encoder,
            decoder,
            layout,
            deep_supervision: spec.deep_supervision,
        })
    }

    /// Checks that `dims` (`[b, c, z, y, x]`) is an input this network can segment.
    pub fn check_input(&self, dims: [usize; 5]) -> Result<()> {
        self.layout.check(dims)
    }
}

impl SegmentationModule for ResidualEncoderUNet {
    /// # Panics
    /// When the input does not fit the network (see [`ResidualEncoderUNet::check_input`]).
    fn segment(&self, input: Tensor<5>) -> Vec<Tensor<5>> {
        self.layout.run(input, |x| {
            self.decoder
                .forward(self.encoder.forward(x), self.deep_supervision)
        })
    }

    fn set_deep_supervision(&mut self, enabled: bool) {
        self.deep_supervision = enabled;
    }

    /// Its blocks cast their weights to the input's float type (GPU mixed precision).
    fn reduced_precision(&self) -> bool {
        true
    }
}
