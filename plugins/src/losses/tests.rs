//! The fused CPU `DC_and_CE_loss` against the composition of burn operations: values and
//! gradients on inputs larger than one parallel task, in every setting the fused path takes.

use nnunet_core::burn::tensor::{Device, Int, Tensor, TensorData};
use nnunet_core::loss::{LossSettings, Target};

use super::{composed_dice_ce, fused_dice_ce, fused_settings};

/// Deterministic values in [-3, 3) and labels in `0..classes` (with some `extra` labels).
fn inputs(n: usize, classes: usize, extra: i64) -> (Vec<f32>, Vec<i64>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let logits = (0..n * classes)
        .map(|_| (next() % 6000) as f32 / 1000.0 - 3.0)
        .collect();
    let labels = (0..n)
        .map(|_| (next() % (classes as u64 + extra as u64)) as i64)
        .collect();
    (logits, labels)
}

/// Loss value and logits gradient of one of the two implementations.
fn run(fused: bool, shape: [usize; 5], s: &LossSettings, extra: i64) -> (f32, Vec<f32>) {
    let device = Device::flex().autodiff();
    let [b, c, z, y, x] = shape;
    let (logits, labels) = inputs(b * z * y * x, c, extra);
    let logits = Tensor::<5>::from_data(TensorData::new(logits, shape), &device).require_grad();
    let labels = Tensor::<5, Int>::from_data(TensorData::new(labels, [b, 1, z, y, x]), &device);
    let target = Target::Labels(labels);
    let loss = if fused {
        let settings = fused_settings(&logits, s).expect("the fused path takes these settings");
        fused_dice_ce(logits.clone(), &target, s, settings)
    } else {
        composed_dice_ce(logits.clone(), &target, s)
    }
    .unwrap();
    let grads = loss.backward();
    let grad = logits
        .grad(&grads)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap();
    (loss.try_into_vec_as::<f32>().unwrap()[0], grad)
}

#[test]
fn fused_loss_matches_the_composition() {
    let base = LossSettings::default();
    let cases = [
        ("2d", [2, 3, 1, 64, 80], base.clone(), 0),
        (
            "3d batch Dice",
            [2, 4, 12, 20, 24],
            LossSettings {
                batch_dice: true,
                ..base.clone()
            },
            0,
        ),
        (
            "ignore label",
            [3, 3, 1, 48, 96],
            LossSettings {
                ignore_label: Some(3),
                ..base.clone()
            },
            1,
        ),
        (
            "background, weights",
            [2, 2, 8, 16, 40],
            LossSettings {
                do_bg: true,
                weight_ce: 2.0,
                weight_dice: 0.5,
                ..base.clone()
            },
            0,
        ),
        (
            "label smoothing, no smooth",
            [2, 5, 1, 70, 70],
            LossSettings {
                label_smoothing: 0.1,
                smooth: 0.0,
                ..base.clone()
            },
            0,
        ),
    ];
    for (what, shape, s, extra) in cases {
        let (v_fused, g_fused) = run(true, shape, &s, extra);
        let (v_ref, g_ref) = run(false, shape, &s, extra);
        assert!(
            (v_fused - v_ref).abs() <= 1e-5 * v_ref.abs().max(1.0),
            "{what}: {v_fused} vs {v_ref}"
        );
        let scale = g_ref.iter().fold(0f32, |m, g| m.max(g.abs()));
        let worst = g_fused
            .iter()
            .zip(&g_ref)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-4 * scale,
            "{what}: gradients differ by {worst} (largest {scale})"
        );
    }
}

#[test]
fn fused_loss_rejects_bad_labels_as_the_composition_does() {
    let s = LossSettings::default();
    let device = Device::flex();
    let logits = Tensor::<5>::zeros([1, 3, 1, 2, 2], &device);
    let labels = Tensor::<5, Int>::from_data(
        TensorData::new(vec![0i64, 1, 5, -1], [1, 1, 1, 2, 2]),
        &device,
    );
    let target = Target::Labels(labels);
    let settings = fused_settings(&logits, &s).unwrap();
    let fused = fused_dice_ce(logits.clone(), &target, &s, settings)
        .unwrap_err()
        .to_string();
    let composed = composed_dice_ce(logits, &target, &s)
        .unwrap_err()
        .to_string();
    assert_eq!(fused, composed);
    assert!(
        fused.contains("2 target voxels have labels outside 0..3"),
        "{fused}"
    );
}
