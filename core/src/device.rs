//! Choosing the compute device from nnU-Net's `-device` flag: `cpu` (the pure-Rust `flex`
//! backend), `cuda` (feature `cuda`) or `wgpu` (feature `wgpu`: Vulkan, Metal, DirectX 12),
//! optionally with an index (`cuda:1`, `wgpu:1`).

use burn::backend::DispatchDevice;
use burn::tensor::Device;
use nnunet_kernels::Precision;

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

/// Sets the arithmetic of the convolutions from nnU-Net-style `-precision` (`auto`, `fp32`,
/// `bf16`) for work on `device`, and returns what they compute in, e.g. `bf16 (amx)`.
///
/// `auto` is bf16 products with fp32 accumulation where the CPU multiplies bf16 natively (AMX or
/// AVX512-BF16) and fp32 elsewhere. Weights, gradients and checkpoints stay fp32 in every case.
/// On GPU backends this build computes in fp32: `auto` and `fp32` are accepted there, the rest
/// refused.
pub fn set_precision(name: &str, device: &Device) -> Result<String> {
    let precision = Precision::parse(name).ok_or_else(|| {
        Error::Invalid(format!(
            "-precision '{name}': use auto, fp32 or bf16 (fp16 is a GPU format; the CPU computes \
             in bf16)"
        ))
    })?;
    if !is_cpu(device) {
        if name != "auto" && precision != Precision::Fp32 {
            return Err(Error::Invalid(format!(
                "-precision {name}: mixed precision is implemented for the CPU only; use \
                 -precision fp32 on {device:?}"
            )));
        }
        nnunet_kernels::set_precision(Precision::Fp32);
        return Ok("fp32".into());
    }
    nnunet_kernels::set_precision(precision);
    Ok(compute_precision(device))
}

/// What convolutions on `device` compute in now, e.g. `fp32 (avx512)` or `bf16 (amx)`.
pub fn compute_precision(device: &Device) -> String {
    if is_cpu(device) {
        nnunet_kernels::precision().describe()
    } else {
        "fp32".into()
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
