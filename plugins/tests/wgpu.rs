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

// Tests report what they measured.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use nnunet_core::burn::tensor::{Device, Tensor};
use nnunet_core::device::device_from_name;

#[path = "common/networks.rs"]
mod networks;
#[path = "common/steps.rs"]
mod steps;
use steps::{assert_close_logits, assert_close_training, logits, train};

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
    let (cpu, gpu) = (logits(name, &Device::flex()), logits(name, &gpu));
    assert_close_logits(&format!("{name} on wgpu"), &cpu, &gpu, 1e-4);
}

fn assert_same_training(name: &str) {
    let Some(gpu) = gpu() else { return };
    let (cpu, gpu) = (train(name, &Device::flex()), train(name, &gpu));
    assert_close_training(&format!("{name} on wgpu"), &cpu, &gpu, (1e-4, 1e-3));
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
