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
//! Runs in builds with the `wgpu` feature, which the workspace's tests enable (`nnunet-tests`
//! takes `nnunet-plugins` with it), so `cargo test --workspace` runs it. A machine without any
//! Vulkan driver skips these tests with a message, unless `NNUNET_REQUIRE_WGPU=1` (set by
//! `.ci/run`) makes a missing adapter a failure.

use nnunet_core::burn::tensor::{Device, Tensor, TensorData};
use nnunet_core::device::device_from_name;
use nnunet_core::network::NamedTensor;
use nnunet_core::training::OptimizerKind;
use nnunet_core::training::optimizer::Optimizer;
use serde_json::Value;

#[path = "common/networks.rs"]
mod networks;
use networks::{as_5d, floats, max_abs_diff, shape_of, tiny_on};

fn input(fx: &Value, device: &Device) -> Tensor<5> {
    let values = floats(&fx["input"]["values"]);
    Tensor::from_data(
        TensorData::new(values, as_5d(&shape_of(&fx["input"]["shape"]))),
        device,
    )
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn largest(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// The wgpu device, or `None` (with a message) where no adapter exists and the tests are not
/// required to run.
fn gpu() -> Option<Device> {
    let device = device_from_name("wgpu").expect("a wgpu build");
    let probe = device.clone();
    let found = std::panic::catch_unwind(move || {
        Tensor::<1>::zeros([1], &probe).into_data();
    })
    .is_ok();
    if found {
        return Some(device);
    }
    let required = std::env::var("NNUNET_REQUIRE_WGPU").is_ok_and(|v| v == "1");
    assert!(!required, "no wgpu adapter, and NNUNET_REQUIRE_WGPU=1");
    eprintln!("skipped: no wgpu adapter (install a Vulkan driver, e.g. mesa-vulkan-drivers)");
    None
}

fn assert_same_logits(name: &str) {
    let Some(gpu) = gpu() else { return };
    let cpu = Device::flex();
    let (fx, on_cpu) = tiny_on(name, &cpu);
    let ours = on_cpu.forward(input(&fx, &cpu));
    let theirs = tiny_on(name, &gpu).1.forward(input(&fx, &gpu));
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
fn train(name: &str, device: &Device) -> (Vec<f64>, Vec<NamedTensor>) {
    let device = device.clone().autodiff();
    let (fx, mut net) = tiny_on(name, &device);
    let fx = &fx;
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
    let Some(gpu) = gpu() else { return };
    let (cpu_losses, cpu_weights) = train(name, &Device::flex());
    let (gpu_losses, gpu_weights) = train(name, &gpu);
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
