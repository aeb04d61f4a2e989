//! Network architectures: the [`Architecture`] extension trait, registered under
//! dynamic_network_architectures' class names (`PlainConvUNet`, `ResidualEncoderUNet`) as they
//! appear in the plans' `network_class_name`.
//!
//! All tensors are 5D `[b, c, z, y, x]`; a 2D network sees `z = 1`, so one data pipeline serves
//! both.

use burn::tensor::{Device, Tensor};

use crate::error::Result;

/// What a network is built from: the plans configuration's `architecture` entry and the
/// dataset's channel and class counts.
#[derive(Clone, Debug)]
pub struct NetworkSpec {
    /// `arch_kwargs` of the plans configuration (stages, features, kernel sizes, strides, …).
    pub arch_kwargs: serde_json::Value,
    /// Number of input channels (image channels, plus one-hot previous-stage classes in a cascade).
    pub input_channels: usize,
    /// Number of output channels (classes, or regions).
    pub output_channels: usize,
    /// One segmentation output per decoder resolution (training) or only the highest.
    pub deep_supervision: bool,
    /// Whether the configuration is 2D.
    pub is_2d: bool,
}

/// A built segmentation network.
pub trait Network: Send {
    /// Segmentation logits, highest resolution first; one output unless deep supervision is on.
    fn forward(&self, input: Tensor<5>) -> Vec<Tensor<5>>;

    /// Number of trainable parameters of every layer, by parameter path, in definition order.
    fn parameter_counts(&self) -> Vec<(String, usize)>;
}

/// Builds networks of one architecture family.
pub trait Architecture: Send + Sync {
    /// A freshly initialised network on `device`; invalid `arch_kwargs` are an error naming the
    /// field.
    fn build(&self, spec: &NetworkSpec, device: &Device) -> Result<Box<dyn Network>>;
}
