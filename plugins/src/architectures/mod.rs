//! Network architectures, registered under dynamic_network_architectures' class names:
//! `PlainConvUNet` and `ResidualEncoderUNet` (BasicBlockD), built from a plans configuration's
//! `arch_kwargs` exactly as dynamic_network_architectures 0.4.4 builds them.
//!
//! Parameter paths are the reference's `state_dict` keys without its aliases: torch lists every
//! conv/norm of a `ConvDropoutNormReLU` a second time under `all_modules.N`, and the decoder's
//! reference to the encoder a second time under `decoder.encoder.`; batch norm's
//! `num_batches_tracked` counter is not kept. [`canonical_state_dict`] drops those keys from a
//! torch checkpoint so that it can be imported by name.
//!
//! Inputs and outputs are `[b, c, z, y, x]`. A 2D network holds 2D kernels and runs 2D
//! convolutions; it segments every z slice independently (z is folded into the batch), so the
//! usual 2D input has `z = 1`.

mod blocks;
mod kwargs;
mod plain_conv_unet;
mod residual_encoder_unet;

pub use kwargs::{Activation, NormKind, NormSpec, UNetFamily, UNetKwargs};
pub use plain_conv_unet::PlainConvUNet;
pub use residual_encoder_unet::ResidualEncoderUNet;

// burn, as nnunet-core re-exports it (the plugins crate has no direct burn dependency).
use burn::tensor::{Device, Tensor};
use nnunet_core::burn;
use nnunet_core::network::{Architecture, NamedTensor, Network, NetworkSpec};
use nnunet_core::{Error, Result};

use blocks::{LayerSettings, StackShape, UNetDecoder};

/// Whether a torch `state_dict` key is an alias of another key (or a counter we do not keep).
pub fn is_state_dict_alias(key: &str) -> bool {
    key.starts_with("decoder.encoder.")
        || key.contains(".all_modules.")
        || key.ends_with(".num_batches_tracked")
}

/// A torch `state_dict` of `PlainConvUNet` / `ResidualEncoderUNet` without its aliases (see
/// [`is_state_dict_alias`]), ready for [`Network::import_parameters`].
pub fn canonical_state_dict(tensors: Vec<NamedTensor>) -> Vec<NamedTensor> {
    tensors
        .into_iter()
        .filter(|t| !is_state_dict_alias(&t.name))
        .collect()
}

/// The layer settings a spec asks for (`batch_norm` swaps instance for batch normalisation).
fn settings_for(kw: &UNetKwargs, spec: &NetworkSpec) -> LayerSettings {
    let norm = kw.norm.map(|n| {
        if spec.batch_norm && n.kind == NormKind::Instance {
            NormSpec {
                kind: NormKind::Batch,
                momentum: 0.1,
                ..n
            }
        } else {
            n
        }
    });
    LayerSettings {
        conv_bias: kw.conv_bias,
        norm,
        nonlin: kw.nonlin,
        nonlin_first: kw.nonlin_first,
    }
}

/// What both U-Nets derive from a spec before building their layers.
struct UNetSetup {
    /// The validated `arch_kwargs`.
    kw: UNetKwargs,
    /// The inputs the network accepts.
    layout: InputLayout,
    /// The settings of every conv unit.
    settings: LayerSettings,
}

impl UNetSetup {
    /// Parses `spec.arch_kwargs` as `family` and checks them against the spec.
    fn new(spec: &NetworkSpec, family: UNetFamily) -> Result<Self> {
        let kw = UNetKwargs::parse(&spec.arch_kwargs, family)?;
        let layout = InputLayout::new(&kw, spec)?;
        let settings = settings_for(&kw, spec);
        Ok(UNetSetup {
            kw,
            layout,
            settings,
        })
    }

    /// nnU-Net's decoder for this topology (built after the encoder, whose weights are drawn
    /// first, as in the reference).
    fn decoder(&self, spec: &NetworkSpec, device: &Device) -> UNetDecoder {
        let kw = &self.kw;
        UNetDecoder::new(
            &kw.features_per_stage,
            &kw.strides,
            &kw.kernel_sizes,
            &kw.n_conv_per_stage_decoder,
            spec.output_channels,
            &self.settings,
            device,
        )
    }
}

/// One encoder stage per stage of `kw`, built by `make(n, channels_in, channels_out, kernel,
/// first_stride)`; each stage takes the previous one's output channels, the first
/// `input_channels`.
fn encoder_stages<T>(
    kw: &UNetKwargs,
    input_channels: usize,
    mut make: impl FnMut(StackShape) -> T,
) -> Vec<T> {
    let mut channels_in = input_channels;
    (0..kw.n_stages)
        .map(|s| {
            let channels_out = kw.features_per_stage[s];
            let stage = make(StackShape {
                n: kw.n_per_stage[s],
                channels_in,
                channels_out,
                kernel: &kw.kernel_sizes[s],
                first_stride: &kw.strides[s],
            });
            channels_in = channels_out;
            stage
        })
        .collect()
}

/// Defines a U-Net type: the struct with the fields `encoder` (of type `$encoder`, built for
/// `$family`, whose `forward` returns every stage's output, highest resolution first),
/// `decoder`, `layout` and `deep_supervision`, and its `new` (`$init` describes the
/// initialisation), `check_input` and
/// [`SegmentationModule`](nnunet_core::network::SegmentationModule).
macro_rules! define_unet {
    (
        $(#[$doc:meta])*
        $unet:ident, $(#[$encoder_doc:meta])* $encoder:ident, $family:expr, $init:literal
    ) => {
        $(#[$doc])*
        #[derive(Module, Debug)]
        pub struct $unet {
            $(#[$encoder_doc])*
            pub encoder: $encoder,
            /// The decoder with its segmentation heads.
            pub decoder: UNetDecoder,
            #[module(skip)]
            layout: InputLayout,
            #[module(skip)]
            deep_supervision: bool,
        }

        impl $unet {
            #[doc = concat!("A freshly initialised network: ", $init, ".")]
            pub fn new(spec: &NetworkSpec, device: &Device) -> Result<Self> {
                let setup = UNetSetup::new(spec, $family)?;
                Ok($unet {
                    encoder: $encoder::new(&setup, spec.input_channels, device),
                    decoder: setup.decoder(spec, device),
                    layout: setup.layout,
                    deep_supervision: spec.deep_supervision,
                })
            }

            /// Checks that `dims` (`[b, c, z, y, x]`) is an input this network can segment.
            pub fn check_input(&self, dims: [usize; 5]) -> Result<()> {
                self.layout.check(dims)
            }
        }

        impl SegmentationModule for $unet {
            /// # Panics
            /// When the input does not fit the network (see [`Self::check_input`]).
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
    };
}
use define_unet;

/// What inputs a network accepts, and how 2D networks see 5D tensors.
#[derive(Clone, Debug)]
struct InputLayout {
    /// Whether the network is 2D (z folded into the batch).
    planar: bool,
    /// Number of input channels.
    input_channels: usize,
    /// Cumulative stride per axis `[z, y, x]`.
    divisor: [usize; 3],
}

impl InputLayout {
    /// The layout of a network with `kw` for `spec` (whose dimensionality must match).
    fn new(kw: &UNetKwargs, spec: &NetworkSpec) -> Result<Self> {
        if spec.is_2d != (kw.dims == 2) {
            return Err(Error::training(format!(
                "arch_kwargs field `conv_op` is {}D but the configuration is {}",
                kw.dims,
                if spec.is_2d { "2D" } else { "3D" }
            )));
        }
        if spec.input_channels == 0 {
            return Err(Error::training(
                "a network needs at least one input channel (input_channels = 0)",
            ));
        }
        if spec.output_channels == 0 {
            return Err(Error::training(
                "a network needs at least one output channel (output_channels = 0)",
            ));
        }
        Ok(InputLayout {
            planar: kw.dims == 2,
            input_channels: spec.input_channels,
            divisor: blocks::as_zyx(&kw.total_strides()),
        })
    }

    /// Errors unless `dims` is an input of this layout.
    fn check(&self, dims: [usize; 5]) -> Result<()> {
        let [b, c, z, y, x] = dims;
        if b == 0 || z == 0 || y == 0 || x == 0 {
            return Err(Error::training(format!(
                "the network input {dims:?} is empty"
            )));
        }
        if c != self.input_channels {
            return Err(Error::training(format!(
                "the network takes {} input channels, got {c} (input shape {dims:?})",
                self.input_channels
            )));
        }
        let spatial = [z, y, x];
        for (axis, name) in ["z", "y", "x"].iter().enumerate() {
            if self.planar && axis == 0 {
                continue;
            }
            if spatial[axis] % self.divisor[axis] != 0 {
                return Err(Error::training(format!(
                    "the network input's {name} size {} is not a multiple of the network's total stride {} on that axis (input shape {dims:?})",
                    spatial[axis], self.divisor[axis]
                )));
            }
        }
        Ok(())
    }

    /// Runs `f` on the input, folding z into the batch for 2D networks.
    fn run(&self, input: Tensor<5>, f: impl Fn(Tensor<5>) -> Vec<Tensor<5>>) -> Vec<Tensor<5>> {
        let dims = input.dims();
        if let Err(e) = self.check(dims) {
            panic!("{e}");
        }
        let [b, c, z, y, x] = dims;
        if !self.planar || z == 1 {
            return f(input);
        }
        let folded = input.swap_dims(1, 2).reshape([b * z, c, 1, y, x]);
        f(folded)
            .into_iter()
            .map(|out| {
                let [_, k, _, oy, ox] = out.dims();
                out.reshape([b, z, k, oy, ox]).swap_dims(1, 2)
            })
            .collect()
    }
}

/// Builds [`PlainConvUNet`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainConvUNetArchitecture;

impl Architecture for PlainConvUNetArchitecture {
    fn build(&self, spec: &NetworkSpec, device: &Device) -> Result<Box<dyn Network>> {
        Ok(Box::new(PlainConvUNet::new(spec, device)?))
    }
}

/// Builds [`ResidualEncoderUNet`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResidualEncoderUNetArchitecture;

impl Architecture for ResidualEncoderUNetArchitecture {
    fn build(&self, spec: &NetworkSpec, device: &Device) -> Result<Box<dyn Network>> {
        Ok(Box::new(ResidualEncoderUNet::new(spec, device)?))
    }
}

nnunet_core::register!(
    Architecture,
    "PlainConvUNet",
    "nnU-Net's default U-Net: stacked conv-norm-LeakyReLU stages, strided-conv downsampling, transposed-conv upsampling",
    || Box::new(PlainConvUNetArchitecture)
);

nnunet_core::register!(
    Architecture,
    "ResidualEncoderUNet",
    "U-Net with a residual (BasicBlockD) encoder, as planned by nnUNetPlannerResEnc{M,L,XL}",
    || Box::new(ResidualEncoderUNetArchitecture)
);
