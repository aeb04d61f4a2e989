//! The training losses: parity with nnU-Net 2.8.1 (values and gradients recorded by
//! tests/fixtures/losses/make_fixtures.py), the Dice gradient against finite differences, the
//! minimum at a perfect prediction, the ignore label, and errors for bad input.

use nnunet_core::Registries;
use nnunet_core::burn::tensor::{Device, Int, Tensor, TensorData};
use nnunet_core::loss::{Loss, LossSettings, Target};
use serde_json::Value;

use nnunet_plugins::losses::{NAMES as LOSSES, create};

#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{floats, usizes};

/// The loss from the registry (built-ins are linked through the direct constructor).
fn loss(name: &str) -> Box<dyn Loss> {
    assert!(create(name).is_some(), "{name} is defined");
    Registries::builtin().unwrap().losses.create(name).unwrap()
}

fn float5(values: Vec<f32>, shape: [usize; 5], device: &Device) -> Tensor<5> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn int5(values: Vec<i64>, shape: [usize; 5], device: &Device) -> Tensor<5, Int> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().unwrap()
}

fn scalar(t: Tensor<1>) -> f64 {
    let v = to_vec(t);
    assert_eq!(v.len(), 1, "a loss is one value");
    v[0] as f64
}

/// The loss value and its gradient with respect to the logits.
fn value_and_grad(
    loss: &dyn Loss,
    logits: &[f32],
    shape: [usize; 5],
    target: &Target,
    settings: &LossSettings,
) -> (f64, Vec<f32>) {
    let device = Device::flex().autodiff();
    let x = float5(logits.to_vec(), shape, &device).require_grad();
    let value = loss.forward(x.clone(), target, settings).unwrap();
    assert_eq!(value.dims(), [1]);
    let grads = value.backward();
    let g = to_vec(x.grad(&grads).expect("the logits get a gradient"));
    (scalar(value), g)
}

fn loss_value(
    loss: &dyn Loss,
    logits: &[f32],
    shape: [usize; 5],
    target: &Target,
    s: &LossSettings,
) -> f64 {
    let device = Device::flex();
    scalar(
        loss.forward(float5(logits.to_vec(), shape, &device), target, s)
            .unwrap(),
    )
}

fn shape5(v: &Value) -> [usize; 5] {
    usizes(v).try_into().unwrap()
}

fn settings_of(v: &Value) -> LossSettings {
    LossSettings {
        batch_dice: v["batch_dice"].as_bool().unwrap(),
        do_bg: v["do_bg"].as_bool().unwrap(),
        smooth: v["smooth"].as_f64().unwrap(),
        ignore_label: v["ignore_label"].as_i64(),
        weight_ce: v["weight_ce"].as_f64().unwrap(),
        weight_dice: v["weight_dice"].as_f64().unwrap(),
        topk_percent: v["topk_percent"].as_f64().unwrap(),
        label_smoothing: v["label_smoothing"].as_f64().unwrap(),
    }
}

#[test]
fn all_losses_are_registered() {
    let registries = Registries::builtin().unwrap();
    for name in LOSSES {
        assert!(registries.losses.contains(name), "{name} is not registered");
    }
    assert!(create("DC_and_XY_loss").is_none());
}

#[test]
fn values_and_gradients_match_nnunet() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/losses/losses.json"
    );
    let fixtures: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixtures["cases"].as_array().unwrap();
    assert!(cases.len() >= 18);
    let device = Device::flex().autodiff();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let settings = settings_of(&case["settings"]);
        let shape = shape5(&case["logits_shape"]);
        let logits: Vec<f32> = floats(&case["logits"]).iter().map(|&v| v as f32).collect();
        let tshape = shape5(&case["target_shape"]);
        let tvalues = case["target"].as_array().unwrap();
        let target = match case["target_kind"].as_str().unwrap() {
            "labels" => Target::Labels(int5(
                tvalues.iter().map(|v| v.as_i64().unwrap()).collect(),
                tshape,
                &device,
            )),
            _ => Target::Regions(float5(
                tvalues.iter().map(|v| v.as_f64().unwrap() as f32).collect(),
                tshape,
                &device,
            )),
        };
        let loss = loss(case["loss"].as_str().unwrap());
        let (value, grad) = value_and_grad(loss.as_ref(), &logits, shape, &target, &settings);
        let expected = case["value"].as_f64().unwrap();
        assert!(
            (value - expected).abs() <= 1e-5 * expected.abs().max(1e-3),
            "{name}: loss {value} != reference {expected}"
        );
        let expected_grad = floats(&case["grad"]);
        assert_eq!(grad.len(), expected_grad.len(), "{name}");
        let scale = expected_grad.iter().fold(0f64, |m, g| m.max(g.abs()));
        let worst = grad
            .iter()
            .zip(&expected_grad)
            .map(|(&g, &e)| (g as f64 - e).abs())
            .fold(0f64, f64::max);
        assert!(
            worst <= 1e-5 * scale.max(1e-3),
            "{name}: gradient differs by up to {worst} (largest reference entry {scale})"
        );
    }
}

/// A small deterministic pseudo-random sequence (no dependency on a generator's stream).
fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// The soft Dice gradient from autodiff equals central finite differences of the loss value.
#[test]
fn dice_gradient_matches_finite_differences() {
    let device = Device::flex();
    let dice = loss("MemoryEfficientSoftDiceLoss");
    let shape = [2, 3, 1, 3, 3];
    let n = shape.iter().product::<usize>();
    let logits = pseudo_random(n, 7);
    let labels: Vec<i64> = (0..18).map(|i| [0, 1, 2, 2, 1, 3][i % 6]).collect();
    let labels_target = Target::Labels(int5(labels, [2, 1, 1, 3, 3], &device));
    let regions: Vec<f32> = pseudo_random(2 * 4 * 9, 11)
        .iter()
        .map(|v| f32::from(*v > 0.3))
        .collect();
    let regions_target = Target::Regions(float5(regions, [2, 4, 1, 3, 3], &device));
    let cases = [
        (
            "labels, ignore label 3",
            labels_target,
            LossSettings {
                ignore_label: Some(3),
                ..LossSettings::default()
            },
        ),
        (
            "regions with ignore channel, batch Dice",
            regions_target,
            LossSettings {
                ignore_label: Some(9),
                batch_dice: true,
                ..LossSettings::default()
            },
        ),
    ];
    let eps = 1e-2f32;
    for (what, target, settings) in cases {
        let (_, grad) = value_and_grad(dice.as_ref(), &logits, shape, &target, &settings);
        let scale = grad.iter().fold(0f32, |m, g| m.max(g.abs()));
        assert!(scale > 1e-3, "{what}: the gradient is not trivially zero");
        for i in [0, 4, 9, 13, 22, 31, 40, 53] {
            let mut plus = logits.clone();
            plus[i] += eps;
            let mut minus = logits.clone();
            minus[i] -= eps;
            let fd = (loss_value(dice.as_ref(), &plus, shape, &target, &settings)
                - loss_value(dice.as_ref(), &minus, shape, &target, &settings))
                / (2.0 * eps as f64);
            assert!(
                (fd - grad[i] as f64).abs() <= 2e-3 * scale as f64 + 1e-2 * fd.abs(),
                "{what}: entry {i}: autodiff {} vs finite difference {fd}",
                grad[i]
            );
        }
    }
}

/// Large logits on the right class: the Dice terms reach -1 and the cross-entropies 0, and any
/// random prediction scores worse.
#[test]
fn perfect_prediction_is_the_minimum() {
    let device = Device::flex();
    let shape = [2, 3, 2, 4, 4];
    let voxels = 2 * 2 * 4 * 4;
    let labels: Vec<i64> = (0..voxels as i64).map(|i| (i * 7 / 5) % 3).collect();
    let mut perfect = vec![-15f32; 3 * voxels];
    let per_sample = 2 * 4 * 4;
    for (i, &l) in labels.iter().enumerate() {
        let (b, v) = (i / per_sample, i % per_sample);
        perfect[(b * 3 + l as usize) * per_sample + v] = 15.0;
    }
    let random = pseudo_random(3 * voxels, 3);
    let labels_target = Target::Labels(int5(labels.clone(), [2, 1, 2, 4, 4], &device));
    // Regions: region r is "label > r" (nnU-Net's nested regions), two regions.
    let mut region_values = vec![0f32; 2 * voxels];
    let mut region_perfect = vec![-15f32; 2 * voxels];
    for (i, &l) in labels.iter().enumerate() {
        let (b, v) = (i / per_sample, i % per_sample);
        for r in 0..2 {
            if l > r as i64 {
                region_values[(b * 2 + r) * per_sample + v] = 1.0;
                region_perfect[(b * 2 + r) * per_sample + v] = 15.0;
            }
        }
    }
    let regions_target = Target::Regions(float5(region_values, [2, 2, 2, 4, 4], &device));
    let region_shape = [2, 2, 2, 4, 4];
    let region_random = pseudo_random(2 * voxels, 5);
    let s = LossSettings::default();
    // (perfect logits, random logits, their shape, the target, what the messages add)
    let on_labels = (&perfect, &random, shape, &labels_target, "");
    let on_regions = (
        &region_perfect,
        &region_random,
        region_shape,
        &regions_target,
        " (regions)",
    );
    for (name, minimum, (best_x, other_x, shape, target, kind)) in [
        ("DC_and_CE_loss", -1.0, on_labels),
        ("RobustCrossEntropyLoss", 0.0, on_labels),
        ("MemoryEfficientSoftDiceLoss", -1.0, on_labels),
        ("TopKLoss", 0.0, on_labels),
        ("DC_and_topk_loss", -1.0, on_labels),
        ("DC_and_BCE_loss", -1.0, on_regions),
        ("MemoryEfficientSoftDiceLoss", -1.0, on_regions),
    ] {
        let l = loss(name);
        let best = loss_value(l.as_ref(), best_x, shape, target, &s);
        let other = loss_value(l.as_ref(), other_x, shape, target, &s);
        assert!(
            (best - minimum).abs() < 1e-4,
            "{name}{kind}: perfect prediction gives {best}"
        );
        assert!(
            other > best + 0.05,
            "{name}{kind}: random {other} vs perfect {best}"
        );
    }
}

/// Ignored voxels contribute nothing: their logits do not change the loss and get no gradient.
#[test]
fn ignored_voxels_do_not_matter() {
    let device = Device::flex();
    let shape = [2, 3, 1, 4, 4];
    let per_sample = 16;
    let labels: Vec<i64> = (0..32)
        .map(|i| if i % 5 == 0 { 3 } else { i % 3 })
        .collect();
    let target = Target::Labels(int5(labels.clone(), [2, 1, 1, 4, 4], &device));
    let mut regions = vec![0f32; 2 * 3 * per_sample];
    for (i, &l) in labels.iter().enumerate() {
        let (b, v) = (i / per_sample, i % per_sample);
        regions[(b * 3 + 2) * per_sample + v] = f32::from(l == 3);
        for r in 0..2 {
            regions[(b * 3 + r) * per_sample + v] = f32::from(l != 3 && l > r as i64);
        }
    }
    let region_target = Target::Regions(float5(regions, [2, 3, 1, 4, 4], &device));
    let s = LossSettings {
        ignore_label: Some(3),
        ..LossSettings::default()
    };
    let logits = pseudo_random(3 * 32, 9);
    let region_logits = pseudo_random(2 * 32, 13);
    let ignored: Vec<usize> = (0..32).filter(|i| labels[*i] == 3).collect();
    let cases: [(&str, &Target, &Vec<f32>, usize); 6] = [
        ("DC_and_CE_loss", &target, &logits, 3),
        ("RobustCrossEntropyLoss", &target, &logits, 3),
        ("MemoryEfficientSoftDiceLoss", &target, &logits, 3),
        ("DC_and_topk_loss", &target, &logits, 3),
        ("DC_and_BCE_loss", &region_target, &region_logits, 2),
        (
            "MemoryEfficientSoftDiceLoss",
            &region_target,
            &region_logits,
            2,
        ),
    ];
    for (name, target, x, c) in cases {
        let l = loss(name);
        let shape = [shape[0], c, shape[2], shape[3], shape[4]];
        let (value, grad) = value_and_grad(l.as_ref(), x, shape, target, &s);
        let mut changed = x.to_vec();
        for &i in &ignored {
            let (b, v) = (i / per_sample, i % per_sample);
            for k in 0..c {
                let j = (b * c + k) * per_sample + v;
                changed[j] += 5.0;
                assert_eq!(grad[j], 0.0, "{name}: ignored voxel {i} gets a gradient");
            }
        }
        let after = loss_value(l.as_ref(), &changed, shape, target, &s);
        assert!((after - value).abs() < 1e-6, "{name}: {value} -> {after}");
    }
}

#[test]
fn bad_input_is_an_error() {
    let device = Device::flex();
    let logits = || float5(pseudo_random(2 * 3 * 8, 1), [2, 3, 1, 2, 4], &device);
    let labels = |v: i64| Target::Labels(int5(vec![v; 16], [2, 1, 1, 2, 4], &device));
    let s = LossSettings::default();
    for name in LOSSES {
        let l = loss(name);
        // Wrong spatial shape.
        let wrong = Target::Labels(int5(vec![0; 12], [2, 1, 1, 2, 3], &device));
        assert!(
            l.forward(logits(), &wrong, &s).is_err(),
            "{name}: wrong shape"
        );
        let wrong = Target::Regions(float5(vec![0.0; 36], [2, 3, 1, 2, 3], &device));
        assert!(
            l.forward(logits(), &wrong, &s).is_err(),
            "{name}: wrong region shape"
        );
        // Bad settings.
        let bad = LossSettings {
            smooth: -1.0,
            ..LossSettings::default()
        };
        assert!(
            l.forward(logits(), &labels(1), &bad).is_err(),
            "{name}: smooth < 0"
        );
    }
    for name in [
        "DC_and_CE_loss",
        "RobustCrossEntropyLoss",
        "TopKLoss",
        "DC_and_topk_loss",
    ] {
        let l = loss(name);
        assert!(
            l.forward(logits(), &labels(1), &s).is_ok(),
            "{name}: valid input"
        );
        for bad in [3, -1, 7] {
            let err = l.forward(logits(), &labels(bad), &s).unwrap_err();
            assert!(err.to_string().contains("outside"), "{name}: {err}");
        }
        // The ignore label is allowed only when it is the ignore label.
        let with_ignore = LossSettings {
            ignore_label: Some(7),
            ..LossSettings::default()
        };
        assert!(
            l.forward(logits(), &labels(7), &with_ignore).is_ok(),
            "{name}"
        );
        let regions = Target::Regions(float5(vec![0.0; 48], [2, 3, 1, 2, 4], &device));
        assert!(
            l.forward(logits(), &regions, &s).is_err(),
            "{name}: regions"
        );
    }
    // Region losses: label targets are refused by the BCE form, the ignore channel is required.
    let regions = Target::Regions(float5(vec![0.0; 48], [2, 3, 1, 2, 4], &device));
    let bce = loss("DC_and_BCE_loss");
    assert!(bce.forward(logits(), &regions, &s).is_ok());
    assert!(bce.forward(logits(), &labels(0), &s).is_err());
    let with_ignore = LossSettings {
        ignore_label: Some(3),
        ..LossSettings::default()
    };
    assert!(bce.forward(logits(), &regions, &with_ignore).is_err());
    // Top-k that selects no voxel, and no term at all.
    let tiny = LossSettings {
        topk_percent: 1.0,
        ..LossSettings::default()
    };
    let nothing = LossSettings {
        weight_ce: 0.0,
        weight_dice: 0.0,
        ..LossSettings::default()
    };
    for (name, bad) in [("TopKLoss", tiny), ("DC_and_CE_loss", nothing)] {
        let result = loss(name).forward(logits(), &labels(0), &bad);
        assert!(result.is_err(), "{name}");
    }
    // The Dice without background needs a foreground class.
    let one_class = float5(vec![0.5; 16], [2, 1, 1, 2, 4], &device);
    assert!(
        loss("MemoryEfficientSoftDiceLoss")
            .forward(one_class, &labels(0), &s)
            .is_err()
    );
}

/// Weights scale the terms: DC_and_CE with (w_ce, w_dice) equals the weighted sum of the parts.
#[test]
fn weights_combine_the_terms() {
    let device = Device::flex();
    let shape = [1, 3, 2, 3, 3];
    let x = pseudo_random(54, 21);
    let target = Target::Labels(int5(
        (0..18).map(|i| i % 3).collect(),
        [1, 1, 2, 3, 3],
        &device,
    ));
    let value =
        |name: &str, s: &LossSettings| loss_value(loss(name).as_ref(), &x, shape, &target, s);
    let s = LossSettings::default();
    let ce = value("RobustCrossEntropyLoss", &s);
    let dice = value("MemoryEfficientSoftDiceLoss", &s);
    let weighted = LossSettings {
        weight_ce: 0.3,
        weight_dice: 2.0,
        ..LossSettings::default()
    };
    let both = value("DC_and_CE_loss", &weighted);
    assert!(
        (both - (0.3 * ce + 2.0 * dice)).abs() < 1e-5,
        "{both} vs {ce}, {dice}"
    );
}
