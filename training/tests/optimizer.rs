//! The optimisers against PyTorch: three steps of SGD (Nesterov), Adam and AdamW (AMSGrad) with
//! nnU-Net's global gradient clipping at 12, from `tests/fixtures/optimizer/optimizer.json`
//! (made by `make_fixtures.py` with torch).

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use nnunet_core::network::{Network, SegmentationModule};
use nnunet_training::OptimizerKind;
use nnunet_training::optimizer::Optimizer;
use nnunet_training::{Optimizer as OptimizerApi, ParameterGroup};
use serde_json::Value;

#[derive(Module, Debug)]
struct Weights {
    w: Param<Tensor<2>>,
}

impl SegmentationModule for Weights {
    fn segment(&self, input: Tensor<5>) -> Vec<Tensor<5>> {
        vec![input]
    }

    fn set_deep_supervision(&mut self, _enabled: bool) {}
}

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/optimizer/optimizer.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn trajectory(kind: OptimizerKind, f: &Value) -> Vec<Vec<f32>> {
    let device = Device::flex().autodiff();
    let p0 = floats(&f["p0"]);
    let mut net = Weights {
        w: Param::from_tensor(Tensor::from_data(TensorData::new(p0, [2, 3]), &device)),
    };
    let mut optimizer = Optimizer::new(kind, 3e-5);
    let mut out = Vec::new();
    for g in f["grads"].as_array().unwrap() {
        let g = Tensor::<2>::from_data(TensorData::new(floats(g), [2, 3]), &device);
        let loss = (net.w.val() * g).sum();
        let grads = Network::gradients(&net, loss.backward());
        optimizer.step(&mut net, &grads, 0.01, Some(12.0));
        out.push(
            net.w
                .val()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap(),
        );
    }
    out
}

fn check(name: &str, kind: OptimizerKind) {
    let f = fixture();
    let ours = trajectory(kind, &f);
    for (step, (a, b)) in ours
        .iter()
        .zip(f["steps"][name].as_array().unwrap())
        .enumerate()
    {
        for (x, y) in a.iter().zip(floats(b)) {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "{name} step {step}: {x} vs torch {y}"
            );
        }
    }
}

#[test]
fn sgd_nesterov_matches_torch() {
    check(
        "sgd",
        OptimizerKind::Sgd {
            momentum: 0.99,
            nesterov: true,
        },
    );
}

#[test]
fn adam_matches_torch() {
    check(
        "adam",
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        },
    );
}

#[test]
fn adamw_amsgrad_matches_torch() {
    check(
        "adamw_amsgrad",
        OptimizerKind::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            amsgrad: true,
        },
    );
}

#[test]
fn state_round_trips() {
    let f = fixture();
    let kind = OptimizerKind::Sgd {
        momentum: 0.99,
        nesterov: true,
    };
    let device = Device::flex().autodiff();
    let mut net = Weights {
        w: Param::from_tensor(Tensor::from_data(
            TensorData::new(floats(&f["p0"]), [2, 3]),
            &device,
        )),
    };
    let mut optimizer = Optimizer::new(kind.clone(), 3e-5);
    let g = Tensor::<2>::from_data(TensorData::new(floats(&f["grads"][0]), [2, 3]), &device);
    let grads = Network::gradients(&net, (net.w.val() * g).sum().backward());
    optimizer.step(&mut net, &grads, 0.01, None);
    let saved = optimizer.export_state();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].name, "w/momentum_buffer");
    let mut restored = Optimizer::new(kind, 3e-5);
    restored
        .import_state(optimizer.steps(), &saved, &device)
        .unwrap();
    assert_eq!(restored.export_state()[0].values, saved[0].values);
    let wrong = Optimizer::new(
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        },
        3e-5,
    )
    .import_state(1, &saved, &device);
    assert!(wrong.is_err());
}

#[test]
fn adan_matches_adan_pytorch() {
    check(
        "adan",
        OptimizerKind::Adan {
            beta1: 0.02,
            beta2: 0.08,
            beta3: 0.01,
            epsilon: 1e-8,
        },
    );
}

#[derive(Module, Debug)]
struct TwoParts {
    encoder: Weights,
    decoder: Weights,
}

impl SegmentationModule for TwoParts {
    fn segment(&self, input: Tensor<5>) -> Vec<Tensor<5>> {
        vec![input]
    }

    fn set_deep_supervision(&mut self, _enabled: bool) {}
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Two SGD steps on a two-part network with `groups`: the encoder's and decoder's new values.
fn grouped_steps(groups: &[ParameterGroup]) -> (Vec<f32>, Vec<f32>, Vec<String>) {
    let device = Device::flex().autodiff();
    let init = |v: f32| Weights {
        w: Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![v; 6], [2, 3]),
            &device,
        )),
    };
    let mut net = TwoParts {
        encoder: init(1.0),
        decoder: init(2.0),
    };
    let kind = OptimizerKind::Sgd {
        momentum: 0.99,
        nesterov: true,
    };
    let mut optimizer = Optimizer::new(kind, 3e-5).with_max_norm(12.0);
    for _ in 0..2 {
        let loss = (net.encoder.w.val() * 3.0).sum() + (net.decoder.w.val() * 5.0).sum();
        let grads = Network::gradients(&net, loss.backward());
        OptimizerApi::step(&mut optimizer, &mut net, &grads, 0.01, groups).unwrap();
    }
    let state = OptimizerApi::export_state(&optimizer)
        .into_iter()
        .map(|t| t.name)
        .collect();
    (
        values(net.encoder.w.val()),
        values(net.decoder.w.val()),
        state,
    )
}

#[test]
fn frozen_groups_stay_bit_identical_and_scaled_groups_move_less() {
    let (encoder, decoder, state) = grouped_steps(&[ParameterGroup::frozen("encoder.")]);
    assert!(encoder.iter().all(|v| v.to_bits() == 1.0f32.to_bits()));
    assert!(decoder.iter().all(|v| *v < 2.0));
    assert_eq!(state, ["decoder.w/momentum_buffer"]);
    // Freezing takes the encoder's gradient out of the clipped norm: the decoder moves as if
    // alone, unlike with both parts trained.
    let (all_encoder, all_decoder, _) = grouped_steps(&[]);
    assert!(all_encoder.iter().all(|v| *v < 1.0));
    assert!(all_decoder[0] > decoder[0]);
    let (scaled, _, _) = grouped_steps(&[ParameterGroup::scaled("encoder.", 0.1)]);
    let moved = |v: &[f32]| 1.0 - v[0];
    let ratio = moved(&scaled) / moved(&all_encoder);
    assert!((ratio - 0.1).abs() < 1e-3, "{ratio}");
}
