//! `PlainConvUNet`: an encoder of stacked conv-norm-nonlin units (the first of each stage
//! strided) and nnU-Net's U-Net decoder.

// burn, as nnunet-core re-exports it (the plugins crate has no direct burn dependency).
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use nnunet_core::Result;
use nnunet_core::burn;
use nnunet_core::network::{NetworkSpec, SegmentationModule};

use super::blocks::{LayerSettings, StackedConvBlocks, UNetDecoder};
use super::kwargs::{UNetFamily, UNetKwargs};
use super::{InputLayout, settings_for};

/// `PlainConvEncoder`. Each stage is torch's `nn.Sequential` holding one `StackedConvBlocks`,
/// hence the inner one-element `Vec` (paths `stages.S.0.convs.I`).
#[derive(Module, Debug)]
pub struct PlainConvEncoder {
    pub stages: Vec<Vec<StackedConvBlocks>>,
}

impl PlainConvEncoder {
    fn new(
        kw: &UNetKwargs,
        input_channels: usize,
        settings: &LayerSettings,
        device: &Device,
    ) -> Self {
        let mut channels_in = input_channels;
        let stages = (0..kw.n_stages)
            .map(|s| {
                let stage = StackedConvBlocks::new(
                    kw.n_per_stage[s],
                    channels_in,
                    kw.features_per_stage[s],
                    &kw.kernel_sizes[s],
                    &kw.strides[s],
                    settings,
                    device,
                );
                channels_in = kw.features_per_stage[s];
                vec![stage]
            })
            .collect();
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

/// dynamic_network_architectures' `PlainConvUNet`, with torch's parameter names
/// (`encoder.stages.S.0.convs.I.{conv,norm}.{weight,bias}`,
/// `decoder.{stages.S.convs.I…,transpconvs.S…,seg_layers.S…}`).
#[derive(Module, Debug)]
pub struct PlainConvUNet {
    pub encoder: PlainConvEncoder,
    pub decoder: UNetDecoder,
    #[module(skip)]
    layout: InputLayout,
    #[module(skip)]
    deep_supervision: bool,
}

impl PlainConvUNet {
    /// A freshly initialised network (`InitWeights_He(1e-2)`: kaiming-normal kernels, zero
    /// biases, unit norm weights).
    pub fn new(spec: &NetworkSpec, device: &Device) -> Result<Self> {
        let kw = UNetKwargs::parse(&spec.arch_kwargs, UNetFamily::Plain)?;
        let layout = InputLayout::new(&kw, spec)?;
        let settings = settings_for(&kw, spec);
        let encoder = PlainConvEncoder::new(&kw, spec.input_channels, &settings, device);
        let decoder = UNetDecoder::new(
            &kw.features_per_stage,
            &kw.strides,
            &kw.kernel_sizes,
            &kw.n_conv_per_stage_decoder,
            spec.output_channels,
            &settings,
            device,
        );
        Ok(PlainConvUNet {
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

impl SegmentationModule for PlainConvUNet {
    /// # Panics
    /// When the input does not fit the network (see [`PlainConvUNet::check_input`]).
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
