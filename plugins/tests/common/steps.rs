//! A tiny reference network (see networks.rs) run two ways and compared: its logits, and three
//! SGD steps (losses and weights). Shared by the tests of the wgpu backend and of half precision.

use nnunet_core::burn::tensor::{Device, Tensor, TensorData};
use nnunet_core::network::NamedTensor;
use nnunet_training::OptimizerKind;
use nnunet_training::optimizer::Optimizer;
use serde_json::Value;

use super::networks::{as_5d, floats, max_abs_diff, shape_of, tiny_on};

/// The fixture's input on `device`.
pub(crate) fn input(fx: &Value, device: &Device) -> Tensor<5> {
    let values = floats(&fx["input"]["values"]);
    Tensor::from_data(
        TensorData::new(values, as_5d(&shape_of(&fx["input"]["shape"]))),
        device,
    )
}

/// A tensor's values as fp32.
pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// The largest magnitude of `v`.
pub(crate) fn largest(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// The logits of network `name` on `device` (each output with its shape).
pub(crate) fn logits(name: &str, device: &Device) -> Vec<(Vec<usize>, Vec<f32>)> {
    let (fx, net) = tiny_on(name, device);
    net.forward(input(&fx, device))
        .into_iter()
        .map(|o| (o.dims().to_vec(), values(o)))
        .collect()
}

/// Asserts that two runs' logits agree within `tolerance` of the largest logit (at least 1).
pub(crate) fn assert_close_logits(
    what: &str,
    ours: &[(Vec<usize>, Vec<f32>)],
    theirs: &[(Vec<usize>, Vec<f32>)],
    tolerance: f32,
) {
    assert_eq!(ours.len(), theirs.len(), "{what}: outputs");
    for (i, ((da, a), (db, b))) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(da, db, "{what}: output {i} shape");
        let diff = max_abs_diff(a, b);
        assert!(
            diff <= tolerance * largest(a).max(1.0),
            "{what}: output {i} differs by {diff} (largest logit {})",
            largest(a)
        );
    }
}

/// Three SGD steps on the sum of the outputs' mean squares: the loss before each step, and the
/// weights after the last.
pub(crate) fn train(name: &str, device: &Device) -> (Vec<f64>, Vec<NamedTensor>) {
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

/// Asserts that two runs of [`train`] agree: losses within `loss_tolerance` relative, weights
/// within `weight_tolerance` of each tensor's largest weight; and that the loss went down.
pub(crate) fn assert_close_training(
    what: &str,
    (our_losses, our_weights): &(Vec<f64>, Vec<NamedTensor>),
    (their_losses, their_weights): &(Vec<f64>, Vec<NamedTensor>),
    (loss_tolerance, weight_tolerance): (f64, f32),
) {
    for (a, b) in our_losses.iter().zip(their_losses) {
        assert!(
            (a - b).abs() <= loss_tolerance * a.abs(),
            "{what}: losses {our_losses:?} against {their_losses:?}"
        );
    }
    assert!(our_losses[2] < our_losses[0], "{what}: {our_losses:?}");
    assert!(
        their_losses[2] < their_losses[0],
        "{what}: {their_losses:?}"
    );
    for (a, b) in our_weights.iter().zip(their_weights) {
        assert_eq!(a.name, b.name);
        let diff = max_abs_diff(&a.values, &b.values);
        assert!(
            diff <= weight_tolerance * largest(&a.values).max(1e-3),
            "{what}: {} differs by {diff} after 3 steps",
            a.name
        );
    }
}
