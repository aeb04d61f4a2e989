//! GPU mixed precision, exercised on the CPU backend (which computes in fp16 and bf16 as well):
//! with the activations' float type set to half precision, the reference networks compute in it
//! (logits close to fp32's but not equal) while parameters, gradients and the optimiser stay
//! fp32 (a mix of float types in one operation fails the backend's checks), and the loss
//! scaler's gradient check tells finite gradients from overflowed ones.
//!
//! Tolerances against fp32 (same weights and input): fp16 logits within 3e-2 of the largest
//! logit, losses of three SGD steps within 3e-2 relative, weights within 3e-2 of each tensor's
//! largest (the CPU backend's fp16 convolutions also accumulate in fp16, where GPU kernels
//! accumulate in fp32); bf16 (8 bits of mantissa) 5e-2 for all three.
//!
//! One test function: the activations' type is process-wide.

use nnunet_core::burn::tensor::Device;
use nnunet_kernels::{ActivationFloat, set_activation_float};

#[path = "common/networks.rs"]
mod networks;
#[path = "common/steps.rs"]
mod steps;
use networks::{max_abs_diff, tiny_on};
use steps::{assert_close_logits, assert_close_training, input, logits, train};

#[test]
fn half_precision_activations_keep_fp32_parameters() {
    let cpu = Device::flex();
    for name in ["plain_2d", "plain_3d", "resenc_3d"] {
        set_activation_float(ActivationFloat::F32);
        let (fp32_logits, fp32_training) = (logits(name, &cpu), train(name, &cpu));
        for (float, tolerance) in [(ActivationFloat::F16, 3e-2), (ActivationFloat::Bf16, 5e-2)] {
            set_activation_float(float);
            let what = format!("{name} in {float:?}");
            let half = logits(name, &cpu);
            assert_close_logits(&what, &fp32_logits, &half, tolerance);
            let rounded = half
                .iter()
                .zip(&fp32_logits)
                .any(|((_, a), (_, b))| max_abs_diff(a, b) > 0.0);
            assert!(rounded, "{what}: the logits are fp32's: no half precision");
            let training = train(name, &cpu);
            let tolerances = (tolerance as f64, tolerance);
            assert_close_training(&what, &fp32_training, &training, tolerances);
        }
    }
    scaled_gradients_tell_overflow();
    set_activation_float(ActivationFloat::F32);
}

/// The loss scaler's check: gradients of an ordinary loss are finite; those of a loss scaled past
/// fp16's range overflow in the half-precision activations and are reported.
fn scaled_gradients_tell_overflow() {
    set_activation_float(ActivationFloat::F16);
    let device = Device::flex().autodiff();
    let (fx, net) = tiny_on("plain_2d", &device);
    let loss = |scale: f64| {
        net.forward(input(&fx, &device))
            .into_iter()
            .map(|o| o.powi_scalar(2).mean())
            .reduce(|a, b| a + b)
            .unwrap()
            .mul_scalar(scale)
    };
    let mut grads = net.gradients(loss(1.0).backward());
    assert!(net.scale_gradients(&mut grads, 0.5), "finite gradients");
    let mut grads = net.gradients(loss(1e30).backward());
    assert!(
        !net.scale_gradients(&mut grads, 1e-30),
        "overflowed gradients"
    );
}
