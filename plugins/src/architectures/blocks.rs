//! Building blocks of the U-Nets, laid out so that burn's parameter paths equal the PyTorch
//! reference's `state_dict` keys: convolutions (`weight`, `bias`), normalisation (`weight`,
//! `bias`, and for batch norm `running_mean`, `running_var`), conv-norm-nonlin units (`conv`,
//! `norm`), stacked units (`convs.N`), residual blocks (`conv1`, `conv2`, `skip.N`), the decoder
//! (`stages`, `transpconvs`, `seg_layers`).
//!
//! Feature maps are always 5D `[b, c, z, y, x]`. A 2D layer holds 2D weights (`[out, in, k, k]`)
//! and runs burn's 2D kernels on `[b, c, y, x]`, so its input must have `z = 1` (the networks fold
//! z into the batch before the first layer).

// burn, as nnunet-core re-exports it (the plugins crate has no direct burn dependency).
use burn::module::{
    Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor,
    Param, ParamId,
};
use std::sync::{Arc, Mutex};

use burn::tensor::module::{conv_transpose2d, conv_transpose3d, conv2d, conv3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{DType, Device, Distribution, FloatDType, Tensor, activation};
use nnunet_core::burn;

use super::kwargs::{Activation, NormKind, NormSpec};

/// `InitWeights_He(1e-2)`: kaiming normal, `std = sqrt(2 / (1 + a^2)) / sqrt(fan_in)`.
fn he_normal<const D: usize>(shape: [usize; D], fan_in: usize, device: &Device) -> Tensor<D> {
    let a: f64 = 1e-2;
    let std = (2.0 / (1.0 + a * a)).sqrt() / (fan_in as f64).sqrt();
    Tensor::random(shape, Distribution::Normal(0.0, std), device)
}

/// A convolution kernel: rank 4 for 2D layers, rank 5 for 3D layers. It is visited as a plain
/// parameter (no path component of its own), so a layer's kernel is `<layer>.weight` either way.
#[derive(Clone, Debug)]
pub enum KernelParam {
    Planar(Param<Tensor<4>>),
    Volumetric(Param<Tensor<5>>),
}

impl KernelParam {
    /// The kernel's shape.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            KernelParam::Planar(p) => p.dims().to_vec(),
            KernelParam::Volumetric(p) => p.dims().to_vec(),
        }
    }
}

impl Module for KernelParam {
    fn collect_devices(&self, devices: Devices) -> Devices {
        match self {
            KernelParam::Planar(p) => Module::collect_devices(p, devices),
            KernelParam::Volumetric(p) => Module::collect_devices(p, devices),
        }
    }

    fn fork(self, device: &Device) -> Self {
        match self {
            KernelParam::Planar(p) => KernelParam::Planar(Module::fork(p, device)),
            KernelParam::Volumetric(p) => KernelParam::Volumetric(Module::fork(p, device)),
        }
    }

    fn to_device(self, device: &Device) -> Self {
        match self {
            KernelParam::Planar(p) => KernelParam::Planar(Module::to_device(p, device)),
            KernelParam::Volumetric(p) => KernelParam::Volumetric(Module::to_device(p, device)),
        }
    }

    fn train(self) -> Self {
        match self {
            KernelParam::Planar(p) => KernelParam::Planar(Module::train(p)),
            KernelParam::Volumetric(p) => KernelParam::Volumetric(Module::train(p)),
        }
    }

    fn valid(&self) -> Self {
        match self {
            KernelParam::Planar(p) => KernelParam::Planar(Module::valid(p)),
            KernelParam::Volumetric(p) => KernelParam::Volumetric(Module::valid(p)),
        }
    }

    fn materialize(self) -> Self {
        match self {
            KernelParam::Planar(p) => KernelParam::Planar(Module::materialize(p)),
            KernelParam::Volumetric(p) => KernelParam::Volumetric(Module::materialize(p)),
        }
    }

    fn num_params(&self) -> usize {
        match self {
            KernelParam::Planar(p) => Module::num_params(p),
            KernelParam::Volumetric(p) => Module::num_params(p),
        }
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        match self {
            KernelParam::Planar(p) => Module::visit(p, visitor),
            KernelParam::Volumetric(p) => Module::visit(p, visitor),
        }
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        match self {
            KernelParam::Planar(p) => KernelParam::Planar(Module::map(p, mapper)),
            KernelParam::Volumetric(p) => KernelParam::Volumetric(Module::map(p, mapper)),
        }
    }
}

impl ModuleDisplayDefault for KernelParam {
    fn content(&self, content: Content) -> Option<Content> {
        match self {
            KernelParam::Planar(p) => p.content(content),
            KernelParam::Volumetric(p) => p.content(content),
        }
    }

    fn num_params(&self) -> usize {
        Module::num_params(self)
    }
}

impl ModuleDisplay for KernelParam {}

/// A normalisation layer's running statistic (`running_mean` / `running_var`): a buffer that the
/// forward pass (which only borrows the module) updates in training mode.
///
/// Unlike burn's `RunningState`, an update is visible at once (no per-thread pending values),
/// and a clone is an independent copy, so `Network::boxed_clone` shares nothing mutable.
#[derive(Debug)]
pub struct RunningStat {
    cell: Arc<Mutex<Param<Tensor<1>>>>,
}

impl RunningStat {
    fn new(value: Tensor<1>) -> Self {
        Self::from_param(Param::initialized(ParamId::new(), value))
    }

    fn from_param(param: Param<Tensor<1>>) -> Self {
        RunningStat {
            cell: Arc::new(Mutex::new(param)),
        }
    }

    fn param(&self) -> Param<Tensor<1>> {
        self.cell.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current value.
    pub fn value(&self) -> Tensor<1> {
        self.param().val()
    }

    fn replace(&self, value: Tensor<1>) {
        let mut param = self.cell.lock().unwrap_or_else(|e| e.into_inner());
        *param = Param::initialized(param.id, value);
    }

    fn with_value(&self, f: impl FnOnce(Tensor<1>) -> Tensor<1>) -> Self {
        let param = self.param();
        Self::from_param(Param::initialized(param.id, f(param.val())))
    }
}

impl Clone for RunningStat {
    fn clone(&self) -> Self {
        Self::from_param(self.param())
    }
}

impl Module for RunningStat {
    fn collect_devices(&self, mut devices: Devices) -> Devices {
        let device = self.value().device();
        if !devices.contains(&device) {
            devices.push(device);
        }
        devices
    }

    fn fork(self, device: &Device) -> Self {
        self.with_value(|t| t.to_device(device).detach())
    }

    fn to_device(self, device: &Device) -> Self {
        self.with_value(|t| t.to_device(device))
    }

    fn train(self) -> Self {
        self.with_value(Tensor::from_inner)
    }

    fn valid(&self) -> Self {
        self.with_value(|t| t.without_autodiff())
    }

    fn materialize(self) -> Self {
        self
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        visitor.visit_float(&self.param());
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        let (id, tensor, _) = mapper.map_float(self.param()).consume();
        // A buffer, never an optimiser target.
        Self::from_param(Param::initialized(id, tensor.detach()))
    }
}

impl ModuleDisplayDefault for RunningStat {
    fn content(&self, content: Content) -> Option<Content> {
        content.add_formatted(&"RunningStat").optional()
    }
}

impl ModuleDisplay for RunningStat {}

/// Stride and padding of a convolution, one entry per spatial axis of the layer.
#[derive(Clone, Debug)]
pub struct ConvGeometry {
    stride: Vec<usize>,
    padding: Vec<usize>,
    transposed: bool,
}

/// `nn.Conv2d/3d` (padding `(k - 1) / 2`) or `nn.ConvTranspose2d/3d` (kernel = stride).
#[derive(Module, Debug)]
pub struct ConvLayer {
    /// `[out, in, k...]`, or `[in, out, k...]` when transposed (torch's layouts).
    pub weight: KernelParam,
    pub bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    geometry: ConvGeometry,
}

fn planar<T: Copy>(v: &[T]) -> [T; 2] {
    [v[0], v[1]]
}

fn volumetric<T: Copy>(v: &[T]) -> [T; 3] {
    [v[0], v[1], v[2]]
}

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

fn zero_bias(channels: usize, device: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::zeros([channels], device))
}

impl ConvLayer {
    /// A convolution with `kernel.len()` (2 or 3) spatial axes, "same" padding `(k - 1) / 2`.
    pub fn conv(
        channels_in: usize,
        channels_out: usize,
        kernel: &[usize],
        stride: &[usize],
        bias: bool,
        device: &Device,
    ) -> Self {
        let mut shape = vec![channels_out, channels_in];
        shape.extend_from_slice(kernel);
        let fan_in = channels_in * kernel.iter().product::<usize>();
        ConvLayer {
            weight: kernel_param(&shape, fan_in, device),
            bias: bias.then(|| zero_bias(channels_out, device)),
            geometry: ConvGeometry {
                stride: stride.to_vec(),
                padding: kernel.iter().map(|k| (k - 1) / 2).collect(),
                transposed: false,
            },
        }
    }

    /// A transposed convolution with kernel = stride (the decoder's upsampling).
    pub fn transposed(
        channels_in: usize,
        channels_out: usize,
        stride: &[usize],
        bias: bool,
        device: &Device,
    ) -> Self {
        let mut shape = vec![channels_in, channels_out];
        shape.extend_from_slice(stride);
        // torch computes a weight's fan-in from its dimension 1, here the output channels.
        let fan_in = channels_out * stride.iter().product::<usize>();
        ConvLayer {
            weight: kernel_param(&shape, fan_in, device),
            bias: bias.then(|| zero_bias(channels_out, device)),
            geometry: ConvGeometry {
                stride: stride.to_vec(),
                padding: vec![0; stride.len()],
                transposed: true,
            },
        }
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

/// Instance or batch normalisation with torch's parameter names (`weight`, `bias`,
/// `running_mean`, `running_var`; torch's `num_batches_tracked` counter is not kept).
///
/// Batch norm normalises with the batch statistics and updates the running statistics (with the
/// unbiased batch variance, as torch) when its input is on an autodiff device (training), and
/// uses the running statistics otherwise (evaluation).
#[derive(Module, Debug)]
pub struct Norm {
    pub weight: Option<Param<Tensor<1>>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub running_mean: Option<RunningStat>,
    pub running_var: Option<RunningStat>,
    #[module(skip)]
    spec: NormSpec,
}

impl Norm {
    pub fn new(channels: usize, spec: NormSpec, device: &Device) -> Self {
        let batch = spec.kind == NormKind::Batch;
        Norm {
            weight: spec
                .affine
                .then(|| Param::from_tensor(Tensor::ones([channels], device))),
            bias: spec
                .affine
                .then(|| Param::from_tensor(Tensor::zeros([channels], device))),
            running_mean: batch.then(|| RunningStat::new(Tensor::zeros([channels], device))),
            running_var: batch.then(|| RunningStat::new(Tensor::ones([channels], device))),
            spec,
        }
    }

    /// Sets the affine weight and bias to zero (ResEnc's last norm before the residual add).
    pub fn zero_affine(&mut self) {
        for p in [&mut self.weight, &mut self.bias].into_iter().flatten() {
            let t = p.val();
            *p = Param::from_tensor(t.zeros_like());
        }
    }

    fn affine_or_identity(&self, channels: usize, device: &Device) -> (Tensor<1>, Tensor<1>) {
        let w = match &self.weight {
            Some(w) => w.val(),
            None => Tensor::ones([channels], device),
        };
        let b = match &self.bias {
            Some(b) => b.val(),
            None => Tensor::zeros([channels], device),
        };
        (w, b)
    }

    /// Normalises `x`; statistics and affine are computed in fp32 and the result has `x`'s float
    /// type (a half-precision variance overflows on large feature maps).
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let dtype = x.dtype();
        let x = x.cast(FloatDType::F32);
        let y = match self.spec.kind {
            NormKind::Instance => self.forward_instance(x),
            NormKind::Batch => self.forward_batch(x),
        };
        y.cast(FloatDType::from(dtype))
    }

    /// `nonlin(self.forward(x))`, fused into one operation for instance norm on the CPU.
    pub fn forward_activated(&self, x: Tensor<5>, nonlin: Option<Activation>) -> Tensor<5> {
        if self.spec.kind != NormKind::Instance || !nnunet_core::fused::supported(&x) {
            return activate(nonlin, self.forward(x));
        }
        let slope = match nonlin {
            None => 1.0,
            Some(Activation::LeakyRelu(slope)) => slope as f32,
            Some(Activation::Relu) => 0.0,
        };
        let c = x.dims()[1];
        let (gamma, beta) = self.affine_or_identity(c, &x.device());
        nnunet_core::fused::instance_norm_act(x, gamma, beta, self.spec.eps, slope)
    }

    fn forward_instance(&self, x: Tensor<5>) -> Tensor<5> {
        let dims = x.dims();
        let [b, c, z, h, w] = dims;
        let flat: Tensor<3> = x.reshape([b, c, z * h * w]);
        let (var, mean) = flat.clone().var_mean_bias(2);
        let normalised = flat.sub(mean).div(var.add_scalar(self.spec.eps).sqrt());
        let normalised = match (&self.weight, &self.bias) {
            (Some(wt), Some(bs)) => normalised
                .mul(wt.val().reshape([1, c, 1]))
                .add(bs.val().reshape([1, c, 1])),
            _ => normalised,
        };
        normalised.reshape(dims)
    }

    fn forward_batch(&self, x: Tensor<5>) -> Tensor<5> {
        let device = x.device();
        let [b, c, z, h, w] = x.dims();
        let (gamma, beta) = self.affine_or_identity(c, &device);
        let (Some(running_mean), Some(running_var)) = (&self.running_mean, &self.running_var)
        else {
            unreachable!("batch norm always has running statistics")
        };
        if device.is_autodiff() {
            let out = burn::tensor::module::batch_norm_train(x, gamma, beta, self.spec.eps);
            let n = (b * z * h * w) as f64;
            let unbiased = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
            let m = self.spec.momentum;
            let mean = running_mean
                .value()
                .to_device(&device)
                .mul_scalar(1.0 - m)
                .add(out.mean.detach().mul_scalar(m));
            let var = running_var
                .value()
                .to_device(&device)
                .mul_scalar(1.0 - m)
                .add(out.variance.detach().mul_scalar(m * unbiased));
            running_mean.replace(mean.detach());
            running_var.replace(var.detach());
            out.output
        } else {
            burn::tensor::module::batch_norm(
                x,
                gamma,
                beta,
                running_mean.value().to_device(&device),
                running_var.value().to_device(&device),
                self.spec.eps,
            )
        }
    }
}

/// Applies the non-linearity, if any.
pub fn activate(nonlin: Option<Activation>, x: Tensor<5>) -> Tensor<5> {
    match nonlin {
        None => x,
        Some(Activation::LeakyRelu(slope)) => activation::leaky_relu(x, slope),
        Some(Activation::Relu) => activation::relu(x),
    }
}

/// What every convolution unit of a network shares.
#[derive(Clone, Debug)]
pub struct LayerSettings {
    pub conv_bias: bool,
    pub norm: Option<NormSpec>,
    pub nonlin: Option<Activation>,
    pub nonlin_first: bool,
}

/// `ConvDropoutNormReLU`: conv, then norm and non-linearity (swapped with `nonlin_first`).
#[derive(Module, Debug)]
pub struct ConvNormAct {
    pub conv: ConvLayer,
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
    pub convs: Vec<ConvNormAct>,
}

impl StackedConvBlocks {
    pub fn new(
        n: usize,
        channels_in: usize,
        channels_out: usize,
        kernel: &[usize],
        first_stride: &[usize],
        settings: &LayerSettings,
        device: &Device,
    ) -> Self {
        let ones = vec![1; kernel.len()];
        let convs = (0..n.max(1))
            .map(|i| {
                let (cin, stride) = if i == 0 {
                    (channels_in, first_stride)
                } else {
                    (channels_out, ones.as_slice())
                };
                ConvNormAct::new(
                    cin,
                    channels_out,
                    kernel,
                    stride,
                    settings.conv_bias,
                    settings,
                    true,
                    device,
                )
            })
            .collect();
        StackedConvBlocks { convs }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.convs.iter().fold(x, |x, unit| unit.forward(x))
    }
}

/// Average pooling with kernel = stride (floor), `factors` per axis `[z, y, x]`.
pub fn avg_pool(x: Tensor<5>, factors: [usize; 3]) -> Tensor<5> {
    let mut x = x;
    for (axis, &f) in factors.iter().enumerate() {
        if f == 1 {
            continue;
        }
        let dims = x.dims();
        let keep = dims[2 + axis] / f;
        if keep * f != dims[2 + axis] {
            x = x.narrow(2 + axis, 0, keep * f);
        }
        let before: usize = dims[..2 + axis].iter().product();
        let after: usize = dims[3 + axis..].iter().product();
        let grouped: Tensor<4> = x.reshape([before, keep, f, after]);
        let pooled = grouped.mean_dim(2);
        let mut out = dims;
        out[2 + axis] = keep;
        x = pooled.reshape(out);
    }
    x
}

/// `BasicBlockD`: two units and a residual path (average pooling when strided, then a 1x1 unit
/// without bias when the channels change), then the non-linearity.
///
/// `skip` mirrors torch's `nn.Sequential`: index 0 is the pooling (no parameters, `None`) when
/// the block is strided, so the projection is `skip.1` after pooling and `skip.0` without.
#[derive(Module, Debug)]
pub struct BasicBlockD {
    pub conv1: ConvNormAct,
    pub conv2: ConvNormAct,
    pub skip: Vec<Option<ConvNormAct>>,
    #[module(skip)]
    pool: Option<[usize; 3]>,
    #[module(skip)]
    nonlin: Option<Activation>,
}

/// Strides of a 2D (`[y, x]`) or 3D layer as `[z, y, x]`.
pub fn as_zyx(v: &[usize]) -> [usize; 3] {
    match v.len() {
        2 => [1, v[0], v[1]],
        _ => [v[0], v[1], v[2]],
    }
}

impl BasicBlockD {
    pub fn new(
        channels_in: usize,
        channels_out: usize,
        kernel: &[usize],
        stride: &[usize],
        settings: &LayerSettings,
        device: &Device,
    ) -> Self {
        let ones = vec![1; kernel.len()];
        let conv1 = ConvNormAct::new(
            channels_in,
            channels_out,
            kernel,
            stride,
            settings.conv_bias,
            settings,
            true,
            device,
        );
        let mut conv2 = ConvNormAct::new(
            channels_out,
            channels_out,
            kernel,
            &ones,
            settings.conv_bias,
            settings,
            false,
            device,
        );
        // init_last_bn_before_add_to_0
        if let Some(norm) = conv2.norm.as_mut() {
            norm.zero_affine();
        }
        let strided = stride.iter().any(|&s| s != 1);
        let mut skip = Vec::new();
        if strided {
            skip.push(None);
        }
        if channels_in != channels_out {
            skip.push(Some(ConvNormAct::new(
                channels_in,
                channels_out,
                &ones,
                &ones,
                false,
                settings,
                false,
                device,
            )));
        }
        BasicBlockD {
            conv1,
            conv2,
            skip,
            pool: strided.then(|| as_zyx(stride)),
            nonlin: settings.nonlin,
        }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let mut residual = match self.pool {
            Some(f) => avg_pool(x.clone(), f),
            None => x.clone(),
        };
        if let Some(Some(projection)) = self.skip.last() {
            residual = projection.forward(residual);
        }
        let out = self.conv2.forward(self.conv1.forward(x));
        activate(self.nonlin, out.add(residual))
    }
}

/// `StackedResidualBlocks`: `n` blocks, the first one strided.
#[derive(Module, Debug)]
pub struct StackedResidualBlocks {
    pub blocks: Vec<BasicBlockD>,
}

impl StackedResidualBlocks {
    pub fn new(
        n: usize,
        channels_in: usize,
        channels_out: usize,
        kernel: &[usize],
        first_stride: &[usize],
        settings: &LayerSettings,
        device: &Device,
    ) -> Self {
        let ones = vec![1; kernel.len()];
        let blocks = (0..n.max(1))
            .map(|i| {
                if i == 0 {
                    BasicBlockD::new(
                        channels_in,
                        channels_out,
                        kernel,
                        first_stride,
                        settings,
                        device,
                    )
                } else {
                    BasicBlockD::new(channels_out, channels_out, kernel, &ones, settings, device)
                }
            })
            .collect();
        StackedResidualBlocks { blocks }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.blocks.iter().fold(x, |x, block| block.forward(x))
    }
}

/// `UNetDecoder`: per stage (lowest resolution first) a transposed convolution up to the skip's
/// resolution, concatenation with the skip, a stack of units, and a 1x1 segmentation head.
#[derive(Module, Debug)]
pub struct UNetDecoder {
    pub stages: Vec<StackedConvBlocks>,
    pub transpconvs: Vec<ConvLayer>,
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
            stages.push(StackedConvBlocks::new(
                n_conv_per_stage[s - 1],
                2 * skip,
                skip,
                &kernels[n - s - 1],
                &ones,
                settings,
                device,
            ));
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
