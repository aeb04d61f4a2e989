//! Choosing the compute device from nnU-Net's `-device` flag: `cpu` (the pure-Rust `flex`
//! backend), `cuda` (feature `cuda`) or `wgpu` (feature `wgpu`), optionally with an index
//! (`cuda:1`).

use burn::tensor::Device;

use crate::error::{Error, Result};

/// The device named `name` (`cpu`, `cuda`, `cuda:N`, `wgpu`, `wgpu:N`).
pub fn device_from_name(name: &str) -> Result<Device> {
    let (kind, index) = match name.split_once(':') {
        Some((k, i)) => (
            k,
            i.parse::<usize>().map_err(|_| {
                Error::Invalid(format!("device '{name}': '{i}' is not a device index"))
            })?,
        ),
        None => (name, 0),
    };
    match kind {
        "cpu" => Ok(Device::flex()),
        "cuda" => cuda(index),
        "wgpu" | "gpu" => wgpu(index),
        "mps" => Err(Error::Invalid(
            "device 'mps': use -device wgpu (built with the `wgpu` feature), which runs on Metal"
                .into(),
        )),
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
        "this nnunet was built without CUDA support; rebuild with `cargo build --release \
         --features cuda` (needs the CUDA toolkit), or use -device cpu"
            .into(),
    ))
}

#[cfg(feature = "wgpu")]
fn wgpu(index: usize) -> Result<Device> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(index)))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_index: usize) -> Result<Device> {
    Err(Error::Invalid(
        "this nnunet was built without wgpu support; rebuild with `cargo build --release \
         --features wgpu`, or use -device cpu"
            .into(),
    ))
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
}
