//! Instance and batch normalisation with torch's parameter names.

// burn, as nnunet-core re-exports it (the plugins crate has no direct burn dependency).
use burn::module::{Module, Param};
use burn::tensor::{Device, FloatDType, Tensor};
use nnunet_core::burn;

use super::super::kwargs::{Activation, NormKind, NormSpec};
use super::{RunningStat, activate};

/// Instance or batch normalisation with torch's parameter names (`weight`, `bias`,
/// `running_mean`, `running_var`; torch's `num_batches_tracked` counter is not kept).
///
/// Batch norm normalises with the batch statistics and updates the running statistics (with the
/// unbiased batch variance, as torch) when its input is on an autodiff device (training), and
/// uses the running statistics otherwise (evaluation).
#[derive(Module, Debug)]
pub struct Norm {
    /// Per-channel scale (affine norms only).
    pub weight: Option<Param<Tensor<1>>>,
    /// Per-channel shift (affine norms only).
    pub bias: Option<Param<Tensor<1>>>,
    /// Running mean (batch norm only).
    pub running_mean: Option<RunningStat>,
    /// Running variance (batch norm only).
    pub running_var: Option<RunningStat>,
    #[module(skip)]
    spec: NormSpec,
}

impl Norm {
    /// A norm over `channels` channels: unit weight, zero bias, zero mean and unit variance.
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

    /// The affine weight and bias, or ones and zeros without affine parameters.
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

    /// Instance norm: per sample and channel over the spatial axes (fp32 input).
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

    /// Batch norm with batch statistics (updating the running ones) on an autodiff device, else
    /// with the running statistics (fp32 input).
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
