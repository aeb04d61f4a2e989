//! The reference networks of tests/fixtures/architectures (made by its make_fixtures.py): JSON
//! fixtures, networks built from their arch_kwargs and loaded with nnU-Net's weights.

use std::path::PathBuf;

use nnunet_core::Registries;
use nnunet_core::burn::tensor::Device;
use nnunet_core::network::{NamedTensor, Network, NetworkSpec};
use nnunet_plugins::architectures::canonical_state_dict;
use serde_json::Value;

/// A fixture file of tests/fixtures/architectures, parsed.
pub(crate) fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/architectures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The class name of a dotted Python path.
pub(crate) fn class_leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap()
}

/// A registered architecture built on `device`.
pub(crate) fn build_on(
    class: &str,
    spec: &NetworkSpec,
    device: &Device,
) -> nnunet_core::Result<Box<dyn Network>> {
    let registries = Registries::builtin().unwrap();
    registries
        .architectures
        .create(class_leaf(class))?
        .build(spec, device)
}

/// The network spec of a fixture configuration.
pub(crate) fn spec_of(cfg: &Value, deep_supervision: bool) -> NetworkSpec {
    NetworkSpec {
        arch_kwargs: cfg["arch_kwargs"].clone(),
        input_channels: cfg["input_channels"].as_u64().unwrap() as usize,
        output_channels: cfg["output_channels"].as_u64().unwrap() as usize,
        deep_supervision,
        is_2d: cfg["is_2d"].as_bool().unwrap(),
        batch_norm: false,
    }
}

/// A JSON list of dimensions.
pub(crate) fn shape_of(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

/// A JSON list of numbers as f32.
pub(crate) fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A 4D (2D network) or 5D reference shape as our 5D shape.
pub(crate) fn as_5d(shape: &[usize]) -> [usize; 5] {
    match shape.len() {
        4 => [shape[0], shape[1], 1, shape[2], shape[3]],
        _ => [shape[0], shape[1], shape[2], shape[3], shape[4]],
    }
}

/// A tiny fixture network (`tiny_NAME.json`) with the reference's weights, built on `device`.
pub(crate) fn tiny_on(name: &str, device: &Device) -> (Value, Box<dyn Network>) {
    let fx = fixture(&format!("tiny_{name}.json"));
    let class = fx["network_class_name"].as_str().unwrap();
    let mut net = build_on(class, &spec_of(&fx, true), device).unwrap();
    net.import_parameters(&canonical_state_dict(reference_weights(&fx)))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (fx, net)
}

/// The reference's parameters of a fixture, under PyTorch's names.
pub(crate) fn reference_weights(fx: &Value) -> Vec<NamedTensor> {
    fx["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| NamedTensor {
            name: p["name"].as_str().unwrap().to_string(),
            shape: shape_of(&p["shape"]),
            values: floats(&p["values"]),
        })
        .collect()
}

/// The largest element-wise difference of two equally long slices.
pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
