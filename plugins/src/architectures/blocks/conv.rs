//! Convolutions and transposed convolutions with torch's weight layouts and initialisation.

// burn, as nnunet-core re-exports it (the plugins crate has no direct burn dependency).
use burn::module::{Module, Param};
use burn::tensor::module::{conv_transpose2d, conv_transpose3d, conv2d, conv3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{DType, Device, Distribution, FloatDType, Tensor};
use nnunet_core::burn;

use super::KernelParam;

/// `InitWeights_He(1e-2)`: kaiming normal, `std = sqrt(2 / (1 + a^2)) / sqrt(fan_in)`.
fn he_normal<const D: usize>(shape: [usize; D], fan_in: usize, device: &Device) -> Tensor<D> {
    let a: f64 = 1e-2;
    let std = (2.0 / (1.0 + a * a)).sqrt() / (fan_in as f64).sqrt();
    Tensor::random(shape, Distribution::Normal(0.0, std), device)
}

/// Stride and padding of a convolution, one entry per spatial axis of the layer.
#[derive(Clone, Debug)]
pub(crate) struct ConvGeometry {
    stride: Vec<usize>,
    padding: Vec<usize>,
    transposed: bool,
}

/// `nn.Conv2d/3d` (padding `(k - 1) / 2`) or `nn.ConvTranspose2d/3d` (kernel = stride).
#[derive(Module, Debug)]
pub struct ConvLayer {
    /// `[out, in, k...]`, or `[in, out, k...]` when transposed (torch's layouts).
    pub weight: KernelParam,
    /// Per-output-channel bias, if the layer has one.
    pub bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    geometry: ConvGeometry,
}

/// The first two entries as an array.
fn planar<T: Copy>(v: &[T]) -> [T; 2] {
    [v[0], v[1]]
}

/// The first three entries as an array.
fn volumetric<T: Copy>(v: &[T]) -> [T; 3] {
    [v[0], v[1], v[2]]
}

/// A He-initialised kernel of `shape` (rank 4 or 5).
fn kernel_param(shape: &[usize], fan_in: usize, device: &Device) -> KernelParam {
    match shape.len() {
        4 => KernelParam::Planar(Param::from_tensor(he_normal(
            [shape[0], shape[1], shape[2], shape[3]],
            fan_in,
            device,
        ))),
        _ => KernelParam::Volumetric(Param::from_tensor(he_normal(
            [shape[0], shape[1], shape[2], shape[3], shape[4]],
            fan_in,
            device,
        ))),
    }
}

/// A zero bias of `channels` entries.
fn zero_bias(channels: usize, device: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::zeros([channels], device))
}

impl ConvLayer {
    /// A layer with a He-initialised kernel of `shape` (`[out, in, …]`, transposed
    /// `[in, out, …]`), then a zero bias of one entry per output channel when `bias`. The fan-in
    /// is torch's: dimension 1 times the spatial size (for a transposed kernel the output
    /// channels).
    fn build(
        shape: &[usize],
        bias: bool,
        stride: &[usize],
        padding: Vec<usize>,
        transposed: bool,
        device: &Device,
    ) -> Self {
        let fan_in = shape[1..].iter().product();
        let channels_out = shape[usize::from(transposed)];
        ConvLayer {
            weight: kernel_param(shape, fan_in, device),
            bias: bias.then(|| zero_bias(channels_out, device)),
            geometry: ConvGeometry {
                stride: stride.to_vec(),
                padding,
                transposed,
            },
        }
    }

    /// A convolution with `kernel.len()` (2 or 3) spatial axes, "same" padding `(k - 1) / 2`.
    pub fn conv(
        channels_in: usize,
        channels_out: usize,
        kernel: &[usize],
        stride: &[usize],
        bias: bool,
        device: &Device,
    ) -> Self {
        let padding = kernel.iter().map(|k| (k - 1) / 2).collect();
        let shape = [&[channels_out, channels_in], kernel].concat();
        Self::build(&shape, bias, stride, padding, false, device)
    }

    /// A transposed convolution with kernel = stride (the decoder's upsampling).
    pub fn transposed(
        channels_in: usize,
        channels_out: usize,
        stride: &[usize],
        bias: bool,
        device: &Device,
    ) -> Self {
        let shape = [&[channels_in, channels_out], stride].concat();
        Self::build(&shape, bias, stride, vec![0; stride.len()], true, device)
    }

    /// Applies the layer to `[b, c, z, y, x]` (`z = 1` for a 2D layer), in `x`'s float type: the
    /// fp32 weights are cast to it (mixed precision). Transposed convolutions of half-precision
    /// input compute in fp32 (GPU kernels accumulate them in the tensor's own type) and return
    /// the input's type.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let dtype = x.dtype();
        if self.geometry.transposed && dtype != DType::F32 {
            return self
                .forward_typed(x.cast(FloatDType::F32))
                .cast(FloatDType::from(dtype));
        }
        self.forward_typed(x)
    }

    /// [`Self::forward`] in `x`'s float type.
    fn forward_typed(&self, x: Tensor<5>) -> Tensor<5> {
        let dtype = FloatDType::from(x.dtype());
        let bias = self.bias.as_ref().map(|b| b.val().cast(dtype));
        let g = &self.geometry;
        match &self.weight {
            KernelParam::Planar(w) => {
                let w = w.val().cast(dtype);
                let [b, c, z, h, wd] = x.dims();
                debug_assert_eq!(z, 1, "2D layers take z = 1");
                let x4: Tensor<4> = x.reshape([b * z, c, h, wd]);
                let y = if g.transposed {
                    let options =
                        ConvTransposeOptions::new(planar(&g.stride), [0, 0], [0, 0], [1, 1], 1);
                    conv_transpose2d(x4, w, bias, options)
                } else {
                    let options =
                        ConvOptions::new(planar(&g.stride), planar(&g.padding), [1, 1], 1);
                    conv2d(x4, w, bias, options)
                };
                let [n, o, h2, w2] = y.dims();
                y.reshape([n, o, 1, h2, w2])
            }
            KernelParam::Volumetric(w) => {
                let w = w.val().cast(dtype);
                if g.transposed {
                    let options = ConvTransposeOptions::new(
                        volumetric(&g.stride),
                        [0, 0, 0],
                        [0, 0, 0],
                        [1, 1, 1],
                        1,
                    );
                    conv_transpose3d(x, w, bias, options)
                } else {
                    let options = ConvOptions::new(
                        volumetric(&g.stride),
                        volumetric(&g.padding),
                        [1, 1, 1],
                        1,
                    );
                    conv3d(x, w, bias, options)
                }
            }
        }
    }
}
