//! Choosing the compute device from nnU-Net's `-device` flag: `cpu` (the pure-Rust `flex`
//! backend), `cuda` (feature `cuda`) or `wgpu` (feature `wgpu`: Vulkan, Metal, DirectX 12),
//! optionally with an index (`cuda:1`, `wgpu:1`).

use burn::backend::{Backend, DTypeUsage, Dispatch, DispatchDevice};
use burn::tensor::{DType, Device};
use nnunet_kernels::{ActivationFloat, Precision};

use crate::error::{Error, Result};

/// The compute backends compiled into this build, e.g. `["cpu (flex)", "wgpu"]`.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut backends = vec!["cpu (flex)"];
    if cfg!(feature = "cuda") {
        backends.push("cuda");
    }
    if cfg!(feature = "wgpu") {
        backends.push("wgpu");
    }
    backends
}

/// The device named `name`: `cpu`; `cuda` or `cuda:N`; `wgpu` (the default adapter: a discrete,
/// integrated or software GPU, as wgpu ranks them; `CUBECL_WGPU_DEFAULT_DEVICE` overrides it),
/// `wgpu:N` (the N-th discrete GPU), `wgpu:integrated` or `wgpu:cpu` (a software driver).
pub fn device_from_name(name: &str) -> Result<Device> {
    let (kind, detail) = match name.split_once(':') {
        Some((k, d)) => (k, Some(d)),
        None => (name, None),
    };
    let index = || -> Result<usize> {
        detail.map_or(Ok(0), |d| {
            d.parse::<usize>().map_err(|_| {
                Error::Invalid(format!("device '{name}': '{d}' is not a device index"))
            })
        })
    };
    match kind {
        "cpu" => Ok(Device::flex()),
        "cuda" => cuda(index()?),
        "wgpu" | "gpu" => wgpu(name, detail),
        "mps" => Err(Error::Invalid(format!(
            "device 'mps': Apple GPUs run through wgpu (Metal): use -device wgpu{}",
            if cfg!(feature = "wgpu") {
                ""
            } else {
                ", in a build with `cargo install --path cli --features wgpu`"
            }
        ))),
        other => Err(Error::Invalid(format!(
            "unknown device '{other}'; use cpu, cuda or wgpu"
        ))),
    }
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Result<Device> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Result<Device> {
    Err(Error::Invalid(
        "this nnunet was built without CUDA support; rebuild with `cargo install --path cli \
         --features cuda` (needs the CUDA toolkit), or use -device cpu"
            .into(),
    ))
}

#[cfg(feature = "wgpu")]
fn wgpu(name: &str, detail: Option<&str>) -> Result<Device> {
    use burn::tensor::DeviceKind;
    let kind = match detail {
        None => DeviceKind::DefaultDevice,
        Some("integrated") => DeviceKind::IntegratedGpu(0),
        Some("cpu") => DeviceKind::Cpu,
        Some(d) => DeviceKind::DiscreteGpu(d.parse::<usize>().map_err(|_| {
            Error::Invalid(format!(
                "device '{name}': use wgpu, wgpu:N (the N-th discrete GPU), wgpu:integrated or \
                 wgpu:cpu"
            ))
        })?),
    };
    Ok(Device::wgpu(kind))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_name: &str, _detail: Option<&str>) -> Result<Device> {
    Err(Error::Invalid(
        "this nnunet was built without wgpu support; rebuild with `cargo install --path cli \
         --features wgpu`, or use -device cpu"
            .into(),
    ))
}

/// Whether `device` computes on the CPU (the flex backend), with or without autodiff.
pub fn is_cpu(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// Sets the arithmetic of work on `device` from nnU-Net-style `-precision`, and returns what it
/// computes in, e.g. `bf16 (amx)` or `fp16 (loss scaling in training)`.
///
/// On the CPU (`auto`, `fp32`, `bf16`): `auto` is bf16 products with fp32 accumulation where the
/// CPU multiplies bf16 natively (AMX or AVX512-BF16) and fp32 elsewhere; tensors stay fp32. On a
/// GPU (`auto`, `fp32`, `fp16`, `bf16`): the networks' activations are cast to the half type
/// (PyTorch's autocast); `auto` is fp16 where the GPU has fp16 matrix units (CUDA tensor cores),
/// as nnU-Net's automatic mixed precision on CUDA, and fp32 elsewhere. Weights, gradients and
/// checkpoints stay fp32 in every case.
pub fn set_precision(name: &str, device: &Device) -> Result<String> {
    if !is_cpu(device) {
        nnunet_kernels::set_precision(Precision::Fp32);
        nnunet_kernels::set_activation_float(gpu_activations(name, device)?);
        return Ok(compute_precision(device));
    }
    let precision = Precision::parse(name).ok_or_else(|| {
        Error::Invalid(format!(
            "-precision '{name}': use auto, fp32 or bf16 (fp16 is a GPU format; the CPU computes \
             in bf16)"
        ))
    })?;
    nnunet_kernels::set_activation_float(ActivationFloat::F32);
    nnunet_kernels::set_precision(precision);
    Ok(compute_precision(device))
}

/// The activations' float type on a GPU for `-precision name`, checked against what `device`
/// computes in.
fn gpu_activations(name: &str, device: &Device) -> Result<ActivationFloat> {
    let float = match name {
        "auto" if supports_half(device, DType::F16) && fp16_accelerated(device) => {
            ActivationFloat::F16
        }
        "auto" | "fp32" | "float32" => ActivationFloat::F32,
        "fp16" | "half" | "float16" => ActivationFloat::F16,
        "bf16" | "bfloat16" => ActivationFloat::Bf16,
        _ => {
            return Err(Error::Invalid(format!(
                "-precision '{name}': use auto, fp32, fp16 or bf16"
            )));
        }
    };
    let dtype = match float {
        ActivationFloat::F32 => return Ok(float),
        ActivationFloat::F16 => DType::F16,
        ActivationFloat::Bf16 => DType::BF16,
    };
    if !supports_half(device, dtype) {
        return Err(Error::Invalid(format!(
            "-precision {name}: {device:?} does not compute in {dtype:?}; use -precision fp32{}",
            if float == ActivationFloat::Bf16 {
                " or fp16"
            } else {
                ""
            }
        )));
    }
    Ok(float)
}

fn supports_half(device: &Device, dtype: DType) -> bool {
    device.clone().inner().supports_dtype(dtype)
}

/// Whether `device` multiplies fp16 in dedicated matrix units (tensor cores).
fn fp16_accelerated(device: &Device) -> bool {
    let inner = device.clone().inner();
    <Dispatch as Backend>::dtype_usage(inner.as_dispatch(), DType::F16)
        .contains(DTypeUsage::Accelerated)
}

/// What work on `device` computes in now, e.g. `fp32 (avx512)`, `bf16 (amx)` or
/// `fp16 (loss scaling in training)`.
pub fn compute_precision(device: &Device) -> String {
    if is_cpu(device) {
        return nnunet_kernels::precision().describe();
    }
    match nnunet_kernels::activation_float() {
        ActivationFloat::F32 => "fp32".into(),
        ActivationFloat::F16 => "fp16 (loss scaling in training)".into(),
        ActivationFloat::Bf16 => "bf16".into(),
    }
}

/// Sets the number of CPU threads the compute backend uses (before any work starts).
pub fn set_cpu_threads(threads: usize) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| Error::Invalid(format!("cannot set {threads} threads: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(device_from_name("cpu").is_ok());
        assert!(device_from_name("tpu").is_err());
        assert!(device_from_name("cuda:x").is_err());
    }

    #[test]
    fn precision_names() {
        // Only fp32 here: the precision is process-wide and other tests run beside this one.
        let cpu = Device::flex();
        assert!(set_precision("fp16", &cpu).is_err());
        assert!(set_precision("half", &cpu).is_err());
        let fp32 = set_precision("fp32", &cpu.autodiff()).unwrap();
        assert!(fp32.starts_with("fp32 ("), "{fp32}");
    }
}
