//! An nnunet-rs plugin whose trainer brings its own network, as an `nnUNetTrainer` subclass
//! overriding `build_network_architecture`: a small residual U-Net (two conv-norm-leaky-ReLU units
//! with an identity or 1x1 shortcut per block, three resolutions, transposed-convolution
//! upsampling) defined here rather than taken from the plans. Training, validation, checkpoints
//! and `nnunet predict` all use it; prediction rebuilds it through the same trainer, so the plugin
//! must be loaded there too.
//!
//! The network is 2D (the plans' `2d` configuration; its patch size must be divisible by 4):
//!
//! ```sh
//! cargo build --release -p custom_network_trainer
//! nnunet --plugin target/release/libcustom_network_trainer.so train 4 2d 0 -tr ResidualUNetTrainer
//! nnunet --plugin target/release/libcustom_network_trainer.so predict -i IN -o OUT -d 4 -c 2d -tr ResidualUNetTrainer
//! ```

use nnunet_api::burn::module::Module;
use nnunet_api::burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use nnunet_api::burn::nn::{InstanceNorm, InstanceNormConfig, PaddingConfig2d};
use nnunet_api::burn::tensor::activation::leaky_relu;
use nnunet_api::burn::tensor::{Device, Tensor};
use nnunet_api::network::{Network, SegmentationModule};
use nnunet_api::training::NetworkContext;
use nnunet_api::{Error, Result, Trainer, TrainerSettings, burn};

/// Feature maps per resolution, highest first.
const FEATURES: [usize; 3] = [16, 32, 64];
/// nnU-Net's leaky ReLU slope.
const SLOPE: f64 = 1e-2;

/// 3x3 convolution, instance norm, leaky ReLU.
#[derive(Module, Debug)]
struct Unit {
    conv: Conv2d,
    norm: InstanceNorm,
}

impl Unit {
    /// A unit from `channels[0]` to `channels[1]` feature maps with the given `stride`.
    fn new(channels: [usize; 2], stride: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new(channels, [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            norm: InstanceNormConfig::new(channels[1]).init(device),
        }
    }

    /// Convolution, normalisation and activation of `x` `[b, c, y, x]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        leaky_relu(self.norm.forward(self.conv.forward(x)), SLOPE)
    }
}

/// Two units with a shortcut: the identity, or a strided 1x1 convolution where the shape changes.
#[derive(Module, Debug)]
struct ResidualBlock {
    first: Unit,
    second: Unit,
    shortcut: Option<Conv2d>,
}

impl ResidualBlock {
    /// A block from `channels[0]` to `channels[1]` feature maps; the first unit has `stride`.
    fn new(channels: [usize; 2], stride: usize, device: &Device) -> Self {
        let shortcut = (stride != 1 || channels[0] != channels[1]).then(|| {
            Conv2dConfig::new(channels, [1, 1])
                .with_stride([stride, stride])
                .init(device)
        });
        Self {
            first: Unit::new(channels, stride, device),
            second: Unit::new([channels[1], channels[1]], 1, device),
            shortcut,
        }
    }

    /// Both units of `x` plus the shortcut, activated.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let skip = match &self.shortcut {
            Some(conv) => conv.forward(x.clone()),
            None => x.clone(),
        };
        leaky_relu(self.second.forward(self.first.forward(x)) + skip, SLOPE)
    }
}

/// The residual U-Net.
#[derive(Module, Debug)]
pub struct ResidualUNet {
    encoder: Vec<ResidualBlock>,
    upsampling: Vec<ConvTranspose2d>,
    decoder: Vec<ResidualBlock>,
    head: Conv2d,
}

impl ResidualUNet {
    /// A freshly initialised network from `input` channels to `classes` logits on `device`.
    pub fn new(input: usize, classes: usize, device: &Device) -> Self {
        let encoder = FEATURES
            .iter()
            .enumerate()
            .map(|(i, &f)| {
                let (from, stride) = if i == 0 {
                    (input, 1)
                } else {
                    (FEATURES[i - 1], 2)
                };
                ResidualBlock::new([from, f], stride, device)
            })
            .collect();
        let upsampling = (1..FEATURES.len())
            .rev()
            .map(|i| {
                ConvTranspose2dConfig::new([FEATURES[i], FEATURES[i - 1]], [2, 2])
                    .with_stride([2, 2])
                    .init(device)
            })
            .collect();
        let decoder = (1..FEATURES.len())
            .rev()
            .map(|i| ResidualBlock::new([2 * FEATURES[i - 1], FEATURES[i - 1]], 1, device))
            .collect();
        Self {
            encoder,
            upsampling,
            decoder,
            head: Conv2dConfig::new([FEATURES[0], classes], [1, 1]).init(device),
        }
    }

    /// Logits `[b, classes, y, x]` of a batch of 2D images `[b, input, y, x]`.
    fn forward_2d(&self, x: Tensor<4>) -> Tensor<4> {
        let mut skips = Vec::new();
        let mut x = x;
        for block in &self.encoder {
            x = block.forward(x);
            skips.push(x.clone());
        }
        skips.pop();
        for (up, block) in self.upsampling.iter().zip(&self.decoder) {
            let skip = skips.pop().expect("one skip per decoder block");
            x = block.forward(Tensor::cat(vec![up.forward(x), skip], 1));
        }
        self.head.forward(x)
    }
}

impl SegmentationModule for ResidualUNet {
    /// One output (this network has no deep supervision): `[b, c, 1, y, x]` in, logits out.
    fn segment(&self, input: Tensor<5>) -> Vec<Tensor<5>> {
        let [b, c, z, y, x] = input.dims();
        let planar = input.reshape([b * z, c, y, x]);
        let logits = self.forward_2d(planar);
        let classes = logits.dims()[1];
        vec![logits.reshape([b, classes, z, y, x])]
    }

    fn set_deep_supervision(&mut self, _enabled: bool) {}
}

/// `nnUNetTrainer` training [`ResidualUNet`] instead of the plans' network.
struct ResidualUNetTrainer;

impl Trainer for ResidualUNetTrainer {
    fn configure(&self, settings: &mut TrainerSettings) {
        settings.enable_deep_supervision = false;
    }

    fn build_network(&self, ctx: &NetworkContext<'_>) -> Result<Box<dyn Network>> {
        if !ctx.spec.is_2d {
            return Err(Error::Invalid(
                "ResidualUNetTrainer's network is 2D: train the plans' 2d configuration".into(),
            ));
        }
        let network = ResidualUNet::new(
            ctx.spec.input_channels,
            ctx.spec.output_channels,
            ctx.device,
        );
        Ok(Box::new(network))
    }
}

// What the plugin registers with the host, and the entry point that does it.
nnunet_api::export_plugin! {
    trainer "ResidualUNetTrainer",
        "nnUNetTrainer with the plugin's own small residual 2D U-Net instead of the plans' network, without deep supervision (example plugin)",
        || Box::new(ResidualUNetTrainer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_input_size_and_gives_one_logit_map_per_class() {
        let device = Device::flex();
        let network = ResidualUNet::new(2, 3, &device);
        let input = Tensor::<5>::zeros([2, 2, 1, 16, 20], &device);
        let outputs = network.segment(input);
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].dims(), [2, 3, 1, 16, 20]);
        let names: Vec<String> = Network::parameter_shapes(&network)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("encoder.1.shortcut")),
            "{names:?}"
        );
        assert!(
            names.iter().any(|n| n.starts_with("upsampling.0.")),
            "{names:?}"
        );
    }
}
