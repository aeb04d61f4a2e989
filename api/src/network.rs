//! Network architectures: the [`Architecture`] extension trait, registered under
//! dynamic_network_architectures' class names (`PlainConvUNet`, `ResidualEncoderUNet`) as they
//! appear in the plans' `network_class_name`.
//!
//! All tensors are 5D `[b, c, z, y, x]`; a 2D network sees `z = 1`, so one data pipeline serves
//! both.
//!
//! An architecture plugin writes a burn [`Module`] and implements [`SegmentationModule`] for it
//! (a forward pass and a deep-supervision switch). Everything else the pipeline needs (parameter
//! listing by name, loading and saving weights, optimiser steps) comes from the blanket
//! [`Network`] implementation, so the training loop and the predictor work on any architecture
//! through `Box<dyn Network>`.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, FloatDType, Gradients, Tensor, TensorData};
use nnunet_kernels::ActivationFloat;

use crate::error::{Error, Result};

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
    /// Replace instance normalisation by batch normalisation (`nnUNetTrainerBN`).
    pub batch_norm: bool,
}

/// A burn module that segments: what an architecture plugin implements.
///
/// Parameter paths (the module's field names joined by `.`) should follow the PyTorch
/// reference's `state_dict` keys so that weights trained with nnU-Net can be imported by name.
pub trait SegmentationModule: Module + 'static {
    /// Segmentation logits `[b, classes, z, y, x]`, highest resolution first; one output per
    /// decoder resolution when deep supervision is on, otherwise one.
    fn segment(&self, input: Tensor<5>) -> Vec<Tensor<5>>;

    /// Switches deep supervision on (training) or off (inference).
    fn set_deep_supervision(&mut self, enabled: bool);

    /// Whether [`segment`](Self::segment) computes in the input's float type when that is half
    /// precision (its layers cast their fp32 weights to the activations' type, as the built-in
    /// architectures' blocks do). Only then does a network run in the reduced precision that
    /// [`activation_dtype`] asks for; otherwise it gets fp32 input, as by default.
    fn reduced_precision(&self) -> bool {
        false
    }
}

/// The float type network activations are computed in: fp32, or half precision where GPU mixed
/// precision (`-precision fp16|bf16|auto` on a GPU) is on. Parameters, gradients and checkpoints
/// stay fp32; a network's outputs are fp32 again.
pub fn activation_dtype() -> FloatDType {
    match nnunet_kernels::activation_float() {
        ActivationFloat::F32 => FloatDType::F32,
        ActivationFloat::F16 => FloatDType::F16,
        ActivationFloat::Bf16 => FloatDType::BF16,
    }
}

/// One named parameter tensor's values (checkpoints, imports).
#[derive(Clone, Debug)]
pub struct NamedTensor {
    /// Parameter path, e.g. `encoder.stages.0.0.convs.0.conv.weight`.
    pub name: String,
    /// Shape of the tensor.
    pub shape: Vec<usize>,
    /// Values in row-major order, as many as the product of `shape`.
    pub values: Vec<f32>,
}

/// A built segmentation network, as the pipeline sees it.
pub trait Network: Send {
    /// Segmentation logits, highest resolution first; one output unless deep supervision is on.
    fn forward(&self, input: Tensor<5>) -> Vec<Tensor<5>>;

    /// Switches deep supervision on (training) or off (inference).
    fn set_deep_supervision(&mut self, enabled: bool);

    /// Shape of every trainable parameter, by parameter path, in definition order.
    fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)>;

    /// Number of trainable parameters of every layer, by parameter path, in definition order.
    fn parameter_counts(&self) -> Vec<(String, usize)> {
        self.parameter_shapes()
            .into_iter()
            .map(|(name, shape)| (name, shape.iter().product()))
            .collect()
    }

    /// All parameter values, by path.
    fn export_parameters(&self) -> Vec<NamedTensor>;

    /// Replaces parameter values by path. Every parameter must be given, with its shape;
    /// otherwise an error names the first offending parameter.
    fn import_parameters(&mut self, tensors: &[NamedTensor]) -> Result<()>;

    /// Applies `update` to every parameter (the optimiser's step).
    fn update_parameters(&mut self, update: &mut dyn ParameterUpdate);

    /// The gradients of this network's parameters, from a backward pass.
    fn gradients(&self, grads: Gradients) -> GradientsParams;

    /// Adds the gradients `more` to `sum`, parameter by parameter (gradient accumulation).
    fn add_gradients(&self, sum: &mut GradientsParams, more: GradientsParams);

    /// Multiplies every gradient of `grads` by `factor` (a loss scaler's unscaling) and returns
    /// whether all of them are finite (no inf or NaN), with one read of the device.
    fn scale_gradients(&self, grads: &mut GradientsParams, factor: f64) -> bool;

    /// Stops gradient computation for the parameters whose path `frozen` accepts and resumes it
    /// for the others (PyTorch's `requires_grad_`): backward passes compute no gradient for
    /// frozen parameters. Only parameters on an autodiff device change.
    fn set_frozen(&mut self, frozen: &dyn Fn(&str) -> bool);

    /// Moves the network to `device` (also how autodiff is switched on or off: pass a device with
    /// or without `.autodiff()`).
    fn to_device(&mut self, device: &Device);

    /// A copy sharing nothing mutable with `self`.
    fn boxed_clone(&self) -> Box<dyn Network>;
}

/// Per-parameter update, called with the parameter's path, its id (to look up gradients) and its
/// value without autodiff; the returned value (also without autodiff) replaces it, keeping the
/// parameter's autodiff and gradient settings.
pub trait ParameterUpdate {
    /// The new value of parameter `path`, or `None` to keep it.
    fn update(
        &mut self,
        path: &str,
        id: burn::module::ParamId,
        value: &ErasedTensor,
    ) -> Option<ErasedTensor>;
}

/// A float tensor of rank 1 to 5 with its rank erased, so object-safe code can handle every
/// parameter.
#[derive(Clone, Debug)]
pub enum ErasedTensor {
    /// A rank-1 tensor.
    R1(Tensor<1>),
    /// A rank-2 tensor.
    R2(Tensor<2>),
    /// A rank-3 tensor.
    R3(Tensor<3>),
    /// A rank-4 tensor.
    R4(Tensor<4>),
    /// A rank-5 tensor.
    R5(Tensor<5>),
}

macro_rules! erased_dispatch {
    ($self:expr, $t:ident => $body:expr) => {
        match $self {
            ErasedTensor::R1($t) => $body,
            ErasedTensor::R2($t) => $body,
            ErasedTensor::R3($t) => $body,
            ErasedTensor::R4($t) => $body,
            ErasedTensor::R5($t) => $body,
        }
    };
}

impl ErasedTensor {
    fn from_tensor<const D: usize>(tensor: Tensor<D>) -> Self {
        let flat_shape: [usize; 1] = [tensor.shape().num_elements()];
        let dims = tensor.dims();
        match D {
            1 => ErasedTensor::R1(tensor.reshape(flat_shape)),
            2 => ErasedTensor::R2(tensor.reshape([dims[0], dims[1]])),
            3 => ErasedTensor::R3(tensor.reshape([dims[0], dims[1], dims[2]])),
            4 => ErasedTensor::R4(tensor.reshape([dims[0], dims[1], dims[2], dims[3]])),
            5 => ErasedTensor::R5(tensor.reshape([dims[0], dims[1], dims[2], dims[3], dims[4]])),
            _ => unreachable!("parameters have rank 1 to 5"),
        }
    }

    fn into_tensor<const D: usize>(self) -> Tensor<D> {
        let dims = self.dims();
        let mut shape = [0usize; D];
        shape.copy_from_slice(&dims);
        erased_dispatch!(self, t => t.reshape(shape))
    }

    /// The tensor's shape.
    pub fn dims(&self) -> Vec<usize> {
        erased_dispatch!(self, t => t.dims().to_vec())
    }

    /// The tensor flattened to rank 1.
    pub fn flatten(&self) -> Tensor<1> {
        erased_dispatch!(self, t => t.clone().flatten(0, t.dims().len() - 1))
    }

    /// A flat tensor reshaped back to `dims` (rank 1 to 5).
    pub fn from_flat(flat: Tensor<1>, dims: &[usize]) -> Self {
        match dims.len() {
            1 => ErasedTensor::R1(flat),
            2 => ErasedTensor::R2(flat.reshape([dims[0], dims[1]])),
            3 => ErasedTensor::R3(flat.reshape([dims[0], dims[1], dims[2]])),
            4 => ErasedTensor::R4(flat.reshape([dims[0], dims[1], dims[2], dims[3]])),
            5 => ErasedTensor::R5(flat.reshape([dims[0], dims[1], dims[2], dims[3], dims[4]])),
            r => panic!("parameters have rank 1 to 5, not {r}"),
        }
    }
}

/// Builds networks of one architecture family.
pub trait Architecture: Send + Sync {
    /// A freshly initialised network on `device`; invalid `arch_kwargs` are an error naming the
    /// field.
    fn build(&self, spec: &NetworkSpec, device: &Device) -> Result<Box<dyn Network>>;
}

/// Visits a module's float parameters with their paths.
struct PathVisitor<F: FnMut(&str, burn::module::ParamId, ErasedTensor)> {
    path: Vec<String>,
    f: F,
}

impl<F: FnMut(&str, burn::module::ParamId, ErasedTensor)> ModuleVisitor for PathVisitor<F> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.path.join(".");
        (self.f)(
            &path,
            param.id,
            ErasedTensor::from_tensor(param.val().inner()),
        );
    }
}

/// What a [`PathMapper`] does to each float parameter, given its path.
trait MapAtPath {
    /// The new parameter at `path`.
    fn map<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>>;
}

/// Maps a module's float parameters with their paths through `M`.
struct PathMapper<M: MapAtPath> {
    path: Vec<String>,
    map: M,
}

impl<M: MapAtPath> PathMapper<M> {
    /// `module` with each float parameter mapped by `map`.
    fn apply<T: Module>(module: T, map: M) -> T {
        module.map(&mut PathMapper {
            path: Vec::new(),
            map,
        })
    }
}

impl<M: MapAtPath> ModuleMapper for PathMapper<M> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.map.map(&self.path.join("."), param)
    }
}

/// Replaces parameters through a [`ParameterUpdate`], keeping their autodiff state.
struct Updater<'a>(&'a mut dyn ParameterUpdate);

impl MapAtPath for Updater<'_> {
    fn map<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let was_autodiff = tensor.is_autodiff();
        let require_grad = tensor.is_require_grad();
        let strategy = tensor.gradient_checkpointing_strategy();
        let erased = ErasedTensor::from_tensor(tensor.clone().inner());
        match self.0.update(path, id, &erased) {
            Some(new) => {
                let mut value = new.into_tensor::<D>();
                if was_autodiff {
                    value = value.autodiff();
                    if let Some(strategy) = strategy {
                        value = value.with_gradient_checkpointing_strategy(strategy);
                    }
                }
                if require_grad {
                    value = value.require_grad();
                }
                Param::from_mapped_value(id, value, mapper)
            }
            None => Param::from_mapped_value(id, tensor, mapper),
        }
    }
}

/// Adds the gradients of `more` to those of `sum`, visiting the module for parameter ids and
/// ranks.
struct GradientAdder<'a> {
    sum: &'a mut GradientsParams,
    more: &'a mut GradientsParams,
}

impl ModuleVisitor for GradientAdder<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(more) = self.more.remove::<D>(param.id) {
            let total = match self.sum.remove::<D>(param.id) {
                Some(sum) => sum + more,
                None => more,
            };
            self.sum.register(param.id, total);
        }
    }
}

/// Multiplies each gradient by `factor`, keeping per gradient a one-element probe that is NaN where
/// the gradient has an inf or a NaN.
struct GradientScaler<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
    probes: Vec<Tensor<1>>,
}

impl ModuleVisitor for GradientScaler<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            self.probes.push(grad.clone().mul_scalar(0.0).sum());
            self.grads.register(param.id, grad.mul_scalar(self.factor));
        }
    }
}

/// Sets whether each float parameter on autodiff requires a gradient: not where `frozen(path)`.
struct Freezer<'a>(&'a dyn Fn(&str) -> bool);

impl MapAtPath for Freezer<'_> {
    fn map<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let trainable = !(self.0)(path);
        let (id, tensor, mapper) = param.consume();
        if !tensor.is_autodiff() || tensor.is_require_grad() == trainable {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        Param::from_mapped_value(id, tensor.detach().set_require_grad(trainable), mapper)
    }
}

/// Walks every float parameter of `module` with its path.
pub fn visit_parameters<M: Module>(
    module: &M,
    f: impl FnMut(&str, burn::module::ParamId, ErasedTensor),
) {
    module.visit(&mut PathVisitor {
        path: Vec::new(),
        f,
    });
}

/// Replaces `module`'s parameters through `update`.
pub fn map_parameters<M: Module>(module: M, update: &mut dyn ParameterUpdate) -> M {
    PathMapper::apply(module, Updater(update))
}

fn tensor_values(t: &ErasedTensor) -> Vec<f32> {
    let data: TensorData = t.flatten().into_data();
    data.convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// Loads parameter values by name, checking names and shapes.
struct Importer<'a> {
    by_name: std::collections::HashMap<&'a str, &'a NamedTensor>,
    used: usize,
    error: Option<Error>,
}

impl ParameterUpdate for Importer<'_> {
    fn update(
        &mut self,
        path: &str,
        _id: burn::module::ParamId,
        value: &ErasedTensor,
    ) -> Option<ErasedTensor> {
        if self.error.is_some() {
            return None;
        }
        let dims = value.dims();
        let Some(source) = self.by_name.get(path) else {
            self.error = Some(Error::Invalid(format!(
                "the weights have no parameter `{path}` (shape {dims:?}); they were made for another architecture"
            )));
            return None;
        };
        if source.shape != dims {
            self.error = Some(Error::Invalid(format!(
                "parameter `{path}` has shape {:?} in the weights but {dims:?} in the network; \
                 the weights were made for another topology (plans, channels or classes differ)",
                source.shape
            )));
            return None;
        }
        self.used += 1;
        let device = match value {
            ErasedTensor::R1(t) => t.device(),
            ErasedTensor::R2(t) => t.device(),
            ErasedTensor::R3(t) => t.device(),
            ErasedTensor::R4(t) => t.device(),
            ErasedTensor::R5(t) => t.device(),
        };
        let flat = Tensor::<1>::from_data(
            TensorData::new(source.values.clone(), [source.values.len()]),
            &device,
        );
        Some(ErasedTensor::from_flat(flat, &dims))
    }
}

impl<M: SegmentationModule> Network for M {
    fn forward(&self, input: Tensor<5>) -> Vec<Tensor<5>> {
        let dtype = activation_dtype();
        if dtype == FloatDType::F32 || !self.reduced_precision() {
            return self.segment(input);
        }
        self.segment(input.cast(dtype))
            .into_iter()
            .map(|output| output.cast(FloatDType::F32))
            .collect()
    }

    fn set_deep_supervision(&mut self, enabled: bool) {
        SegmentationModule::set_deep_supervision(self, enabled)
    }

    fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        visit_parameters(self, |path, _, t| out.push((path.to_string(), t.dims())));
        out
    }

    fn export_parameters(&self) -> Vec<NamedTensor> {
        let mut out = Vec::new();
        visit_parameters(self, |path, _, t| {
            out.push(NamedTensor {
                name: path.to_string(),
                shape: t.dims(),
                values: tensor_values(&t),
            })
        });
        out
    }

    fn import_parameters(&mut self, tensors: &[NamedTensor]) -> Result<()> {
        let mut importer = Importer {
            by_name: tensors.iter().map(|t| (t.name.as_str(), t)).collect(),
            used: 0,
            error: None,
        };
        let updated = map_parameters(self.clone(), &mut importer);
        if let Some(error) = importer.error {
            return Err(error);
        }
        if importer.used != tensors.len() {
            let known: std::collections::HashSet<String> = self
                .parameter_shapes()
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            let extra = tensors
                .iter()
                .find(|t| !known.contains(&t.name))
                .map(|t| t.name.clone())
                .unwrap_or_default();
            return Err(Error::Invalid(format!(
                "the weights have a parameter `{extra}` the network does not have; they were made for another architecture"
            )));
        }
        *self = updated;
        Ok(())
    }

    fn update_parameters(&mut self, update: &mut dyn ParameterUpdate) {
        *self = map_parameters(self.clone(), update);
    }

    fn gradients(&self, grads: Gradients) -> GradientsParams {
        GradientsParams::from_grads(grads, self)
    }

    fn add_gradients(&self, sum: &mut GradientsParams, mut more: GradientsParams) {
        self.visit(&mut GradientAdder {
            sum,
            more: &mut more,
        });
    }

    fn scale_gradients(&self, grads: &mut GradientsParams, factor: f64) -> bool {
        let mut scaler = GradientScaler {
            grads,
            factor,
            probes: Vec::new(),
        };
        self.visit(&mut scaler);
        if scaler.probes.is_empty() {
            return true;
        }
        // inf × 0 and NaN × 0 are NaN, finite × 0 is 0: the sum is finite only if all are.
        let probe: f32 = Tensor::cat(scaler.probes, 0).sum().into_scalar();
        probe.is_finite()
    }

    fn set_frozen(&mut self, frozen: &dyn Fn(&str) -> bool) {
        *self = PathMapper::apply(self.clone(), Freezer(frozen));
    }

    fn to_device(&mut self, device: &Device) {
        // Parameters keep their gradient tracking through `fork`; off autodiff it must stop, or
        // every forward pass records a graph that no backward pass ever frees.
        let module = if device.is_autodiff() {
            self.clone()
        } else {
            self.clone().no_grad()
        };
        *self = module.fork(device);
    }

    fn boxed_clone(&self) -> Box<dyn Network> {
        Box::new(self.clone())
    }
}
