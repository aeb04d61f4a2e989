//! Parameter containers that burn's derive does not provide: a convolution kernel of either
//! rank, and the running statistics of batch norm.

use std::sync::{Arc, Mutex};

// burn, as nnunet-core re-exports it (the plugins crate has no direct burn dependency).
use burn::module::{
    Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor,
    Param, ParamId,
};
use burn::tensor::{Device, Tensor};
use nnunet_core::burn;

/// A convolution kernel: rank 4 for 2D layers, rank 5 for 3D layers. It is visited as a plain
/// parameter (no path component of its own), so a layer's kernel is `<layer>.weight` either way.
#[derive(Clone, Debug)]
pub enum KernelParam {
    /// A 2D layer's `[out, in, ky, kx]` kernel.
    Planar(Param<Tensor<4>>),
    /// A 3D layer's `[out, in, kz, ky, kx]` kernel.
    Volumetric(Param<Tensor<5>>),
}

/// `$body` with `$p` bound to the kernel, whatever its rank.
macro_rules! on_kernel {
    ($kernel:expr, $p:ident => $body:expr) => {
        match $kernel {
            KernelParam::Planar($p) => $body,
            KernelParam::Volumetric($p) => $body,
        }
    };
}

/// A kernel of the same rank holding `$body`, with `$p` bound to the kernel.
macro_rules! map_kernel {
    ($kernel:expr, $p:ident => $body:expr) => {
        match $kernel {
            KernelParam::Planar($p) => KernelParam::Planar($body),
            KernelParam::Volumetric($p) => KernelParam::Volumetric($body),
        }
    };
}

impl KernelParam {
    /// The kernel's shape.
    pub fn dims(&self) -> Vec<usize> {
        on_kernel!(self, p => p.dims().to_vec())
    }
}

impl Module for KernelParam {
    fn collect_devices(&self, devices: Devices) -> Devices {
        on_kernel!(self, p => Module::collect_devices(p, devices))
    }

    fn fork(self, device: &Device) -> Self {
        map_kernel!(self, p => Module::fork(p, device))
    }

    fn to_device(self, device: &Device) -> Self {
        map_kernel!(self, p => Module::to_device(p, device))
    }

    fn train(self) -> Self {
        map_kernel!(self, p => Module::train(p))
    }

    fn valid(&self) -> Self {
        map_kernel!(self, p => Module::valid(p))
    }

    fn materialize(self) -> Self {
        map_kernel!(self, p => Module::materialize(p))
    }

    fn num_params(&self) -> usize {
        on_kernel!(self, p => Module::num_params(p))
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        on_kernel!(self, p => Module::visit(p, visitor))
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        map_kernel!(self, p => Module::map(p, mapper))
    }
}

impl ModuleDisplayDefault for KernelParam {
    fn content(&self, content: Content) -> Option<Content> {
        on_kernel!(self, p => p.content(content))
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
    /// A new buffer holding `value`.
    pub(super) fn new(value: Tensor<1>) -> Self {
        Self::from_param(Param::initialized(ParamId::new(), value))
    }

    /// A buffer holding a copy of `param`.
    fn from_param(param: Param<Tensor<1>>) -> Self {
        RunningStat {
            cell: Arc::new(Mutex::new(param)),
        }
    }

    /// A copy of the held parameter.
    fn param(&self) -> Param<Tensor<1>> {
        self.cell.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current value.
    pub fn value(&self) -> Tensor<1> {
        self.param().val()
    }

    /// Replaces the value, keeping the parameter id.
    pub(super) fn replace(&self, value: Tensor<1>) {
        let mut param = self.cell.lock().unwrap_or_else(|e| e.into_inner());
        *param = Param::initialized(param.id, value);
    }

    /// A new buffer with the same id and `f` of the current value.
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
