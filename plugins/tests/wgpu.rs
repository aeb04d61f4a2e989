//! The wgpu backend against the CPU backend, on whatever adapter `-device wgpu` picks (in CI:
//! Mesa's software Vulkan driver, lavapipe, from the Debian package `mesa-vulkan-drivers`). The
//! tiny reference networks of the architecture fixtures (2D and 3D `PlainConvUNet`, reference
//! weights) give the same logits on both devices, and a few SGD steps give the same losses and
//! weights.
//!
//! Tolerances: logits within 1e-4 of the largest logit; losses within 1e-4 relative; weights
//! after the steps within 1e-3 of the largest weight of their tensor. Both backends compute in
//! fp32 (the GPU sums in a different order, so bit equality is not expected).
//!
//! Runs only in builds with the `wgpu` feature: `cargo test -p nnunet-plugins --features wgpu
//! --test wgpu`.

use std::path::PathBuf;

use nnunet_core::Registries;
use nnunet_core::burn::tensor::{Device, Tensor, TensorData};
use nnunet_core::device::device_from_name;
use nnunet_core::network::{NamedTensor, Network, NetworkSpec};
use nnunet_core::training::OptimizerKind;
use nnunet_core::training::optimizer::Optimizer;
use nnunet_plugins::architectures::canonical_state_dict;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/architectures")
        .join(format!("tiny_{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn shape_5d(v: &Value) -> [usize; 5] {
    let s: Vec<usize> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    match s.len() {
        4 => [s[0], s[1], 1, s[2], s[3]],
        _ => [s[0], s[1], s[2], s[3], s[4]],
    }
}

/// The fixture's network with the reference's weights, built on `device`.
fn network(fx: &Value, device: &Device) -> Box<dyn Network> {
    let spec = NetworkSpec {
        arch_kwargs: fx["arch_kwargs"].clone(),
        input_channels: fx["input_channels"].as_u64().unwrap() as usize,
        output_channels: fx["output_channels"].as_u64().unwrap() as usize,
        deep_supervision: true,
        is_2d: fx["is_2d"].as_bool().unwrap(),
        batch_norm: false,
    };
    let class = fx["network_class_name"].as_str().unwrap();
    let mut net = Registries::builtin()
        .unwrap()
        .architectures
        .create(class.rsplit('.').next().unwrap())
        .unwrap()
        .build(&spec, device)
        .unwrap();
    let weights: Vec<NamedTensor> = fx["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| NamedTensor {
            name: p["name"].as_str().unwrap().to_string(),
            shape: p["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect(),
            values: floats(&p["values"]),
        })
        .collect();
    net.import_parameters(&canonical_state_dict(weights))
        .unwrap();
    net
}

fn input(fx: &Value, device: &Device) -> Tensor<5> {
    let values = floats(&fx["input"]["values"]);
    Tensor::from_data(
        TensorData::new(values, shape_5d(&fx["input"]["shape"])),
        device,
    )
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn largest(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn gpu() -> Device {
    device_from_name("wgpu").expect("a wgpu build")
}

fn assert_same_logits(name: &str) {
    let fx = fixture(name);
    let (cpu, gpu) = (Device::flex(), gpu());
    let ours = network(&fx, &cpu).forward(input(&fx, &cpu));
    let theirs = network(&fx, &gpu).forward(input(&fx, &gpu));
    assert_eq!(ours.len(), theirs.len());
    for (i, (a, b)) in ours.into_iter().zip(theirs).enumerate() {
        assert_eq!(a.dims(), b.dims(), "{name}: output {i} shape");
        let (a, b) = (values(a), values(b));
        let diff = max_abs_diff(&a, &b);
        assert!(
            diff <= 1e-4 * largest(&a).max(1.0),
            "{name}: output {i}: wgpu differs from the CPU by {diff} (largest logit {})",
            largest(&a)
        );
    }
}

/// Three SGD steps on the sum of the outputs' mean squares: the loss before each step, and the
/// weights after the last.
fn train(fx: &Value, device: &Device) -> (Vec<f64>, Vec<NamedTensor>) {
    let device = device.clone().autodiff();
    let mut net = network(fx, &device);
    let mut optimizer = Optimizer::new(
        OptimizerKind::Sgd {
            momentum: 0.99,
            nesterov: true,
        },
        3e-5,
    );
    let mut losses = Vec::new();
    for _ in 0..3 {
        let loss = net
            .forward(input(fx, &device))
            .into_iter()
            .map(|o| o.powi_scalar(2).mean())
            .reduce(|a, b| a + b)
            .unwrap();
        losses.push(values(loss.clone().inner())[0] as f64);
        let grads = net.gradients(loss.backward());
        optimizer.step(net.as_mut(), &grads, 1e-2, Some(12.0));
    }
    (losses, net.export_parameters())
}

fn assert_same_training(name: &str) {
    let fx = fixture(name);
    let (cpu_losses, cpu_weights) = train(&fx, &Device::flex());
    let (gpu_losses, gpu_weights) = train(&fx, &gpu());
    for (a, b) in cpu_losses.iter().zip(&gpu_losses) {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs(),
            "{name}: losses cpu {cpu_losses:?} wgpu {gpu_losses:?}"
        );
    }
    assert!(cpu_losses[2] < cpu_losses[0], "{name}: {cpu_losses:?}");
    for (a, b) in cpu_weights.iter().zip(&gpu_weights) {
        assert_eq!(a.name, b.name);
        let diff = max_abs_diff(&a.values, &b.values);
        assert!(
            diff <= 1e-3 * largest(&a.values).max(1e-3),
            "{name}: {} differs by {diff} after 3 steps",
            a.name
        );
    }
}

#[test]
fn plain_2d_logits_equal_the_cpu() {
    assert_same_logits("plain_2d");
}

#[test]
fn plain_3d_logits_equal_the_cpu() {
    assert_same_logits("plain_3d");
}

#[test]
fn residual_encoder_3d_logits_equal_the_cpu() {
    assert_same_logits("resenc_3d");
}

#[test]
fn plain_2d_training_steps_equal_the_cpu() {
    assert_same_training("plain_2d");
}

#[test]
fn plain_3d_training_steps_equal_the_cpu() {
    assert_same_training("plain_3d");
}
