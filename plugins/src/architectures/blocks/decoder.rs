//! nnU-Net's U-Net decoder.

// burn, as nnunet-core re-exports it (the plugins crate has no direct burn dependency).
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use nnunet_core::burn;

use super::{ConvLayer, LayerSettings, StackShape, StackedConvBlocks};

/// `UNetDecoder`: per stage (lowest resolution first) a transposed convolution up to the skip's
/// resolution, concatenation with the skip, a stack of units, and a 1x1 segmentation head.
#[derive(Module, Debug)]
pub struct UNetDecoder {
    /// The conv stacks after each concatenation.
    pub stages: Vec<StackedConvBlocks>,
    /// The upsampling transposed convolutions.
    pub transpconvs: Vec<ConvLayer>,
    /// The 1x1 segmentation heads.
    pub seg_layers: Vec<ConvLayer>,
}

impl UNetDecoder {
    /// A decoder for an encoder with `features` / `strides` / `kernels` per stage.
    pub fn new(
        features: &[usize],
        strides: &[Vec<usize>],
        kernels: &[Vec<usize>],
        n_conv_per_stage: &[usize],
        num_classes: usize,
        settings: &LayerSettings,
        device: &Device,
    ) -> Self {
        let n = features.len();
        let ones = vec![1; kernels[0].len()];
        let mut stages = Vec::with_capacity(n - 1);
        let mut transpconvs = Vec::with_capacity(n - 1);
        let mut seg_layers = Vec::with_capacity(n - 1);
        for s in 1..n {
            let below = features[n - s];
            let skip = features[n - s - 1];
            transpconvs.push(ConvLayer::transposed(
                below,
                skip,
                &strides[n - s],
                settings.conv_bias,
                device,
            ));
            let shape = StackShape {
                n: n_conv_per_stage[s - 1],
                channels_in: 2 * skip,
                channels_out: skip,
                kernel: &kernels[n - s - 1],
                first_stride: &ones,
            };
            stages.push(StackedConvBlocks::new(shape, settings, device));
            seg_layers.push(ConvLayer::conv(
                skip,
                num_classes,
                &ones,
                &ones,
                true,
                device,
            ));
        }
        UNetDecoder {
            stages,
            transpconvs,
            seg_layers,
        }
    }

    /// Segmentation logits from the encoder's outputs (highest resolution first, bottleneck
    /// last); returns the highest resolution first, one output per stage with deep supervision.
    pub fn forward(&self, mut skips: Vec<Tensor<5>>, deep_supervision: bool) -> Vec<Tensor<5>> {
        let mut x = skips
            .pop()
            .expect("the encoder returns one output per stage");
        let last = self.stages.len() - 1;
        let mut outputs = Vec::with_capacity(if deep_supervision { last + 1 } else { 1 });
        for (s, stage) in self.stages.iter().enumerate() {
            let skip = skips.pop().expect("one skip per decoder stage");
            let up = self.transpconvs[s].forward(x);
            x = stage.forward(Tensor::cat(vec![up, skip], 1));
            if deep_supervision || s == last {
                outputs.push(self.seg_layers[s].forward(x.clone()));
            }
        }
        outputs.reverse();
        outputs
    }
}
