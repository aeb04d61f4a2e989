//! Parity of `nnunet_preprocessing::resampling` with nnU-Net v2.8.1's
//! `resample_data_or_seg_to_shape` (skimage 0.26 / scipy 1.17 / batchgenerators 0.25.5).
//!
//! The reference outputs are made by `fixtures/resampling/make_fixtures.py`. Label maps must be
//! identical; image data must agree to `DATA_TOLERANCE` times the value range of the reference
//! output (the computation is the same in f64, so the differences are rounding, usually one f32
//! ulp at most). Run with `--nocapture` to see the measured differences per case.

// Tests report what they measured.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fs::File;
use std::path::{Path, PathBuf};

use ndarray::{Array4, Zip};
use ndarray_npy::ReadNpyExt;
use nnunet_preprocessing::resampling::{
    ResamplingSettings, compute_new_shape, resample_data, resample_segmentation,
};
use serde_json::Value;

/// Largest allowed |ours - reference|, relative to the range of the reference output.
const DATA_TOLERANCE: f64 = 1e-5;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resampling")
}

fn read<T: ndarray_npy::ReadableElement>(name: &str) -> Array4<T> {
    let path = fixture_dir().join(name);
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Array4::<T>::read_npy(file).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn arr3(v: &Value) -> [f64; 3] {
    let a = v.as_array().expect("3 numbers");
    [0, 1, 2].map(|i| a[i].as_f64().expect("number"))
}

fn cases() -> Vec<Value> {
    let path = fixture_dir().join("cases.json");
    let text = std::fs::read_to_string(&path).expect("cases.json");
    serde_json::from_str::<Value>(&text)
        .expect("valid JSON")
        .as_array()
        .expect("a list")
        .clone()
}

struct Case {
    name: String,
    new_shape: [usize; 3],
    current: [f64; 3],
    target: [f64; 3],
    settings: ResamplingSettings,
}

fn parse(case: &Value) -> Case {
    let new_shape = arr3(&case["new_shape"]).map(|v| v as usize);
    Case {
        name: case["name"].as_str().expect("name").to_string(),
        new_shape,
        current: arr3(&case["current_spacing"]),
        target: arr3(&case["target_spacing"]),
        settings: ResamplingSettings {
            order: case["order"].as_u64().expect("order") as usize,
            order_z: case["order_z"].as_u64().expect("order_z") as usize,
            force_separate_z: case["force_separate_z"].as_bool(),
        },
    }
}

/// Runs `check` on every case of `kind` (`data` or `seg`) with its input and the reference's
/// output; `check` names what failed, if anything. There must be ten cases at least, none failing.
fn check_cases<T: ndarray_npy::ReadableElement>(
    kind: &str,
    mut check: impl FnMut(&Case, Array4<T>, Array4<T>) -> Option<String>,
) {
    let mut failures = Vec::new();
    let mut n = 0;
    for case in cases().iter().filter(|c| c["kind"] == kind) {
        let c = parse(case);
        let input = read::<T>(&format!("{}_in.npy", c.name));
        let expected = read::<T>(&format!("{}_out.npy", c.name));
        failures.extend(check(&c, input, expected));
        n += 1;
    }
    assert!(n >= 10, "only {n} {kind} cases");
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn data_matches_reference() {
    check_cases::<f32>("data", |c, input, expected| {
        let shape = input.shape();
        assert_eq!(
            compute_new_shape([shape[1], shape[2], shape[3]], c.current, c.target),
            c.new_shape,
            "{}: new shape",
            c.name
        );
        let ours = resample_data(input.view(), c.new_shape, c.current, c.target, &c.settings)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(ours.shape(), expected.shape(), "{}: shape", c.name);
        let (lo, hi) = expected
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v as f64), hi.max(v as f64))
            });
        let range = (hi - lo).max(1e-12);
        let mut max_abs = 0.0f64;
        let mut sum_abs = 0.0f64;
        Zip::from(&ours).and(&expected).for_each(|&a, &b| {
            let d = (a as f64 - b as f64).abs();
            max_abs = max_abs.max(d);
            sum_abs += d;
        });
        let mean_abs = sum_abs / expected.len().max(1) as f64;
        println!(
            "{:<28} {:?} -> {:?} order {} order_z {}: max |d| {:.3e} ({:.3e} of range {:.3e}), mean |d| {:.3e}",
            c.name,
            &shape[1..],
            c.new_shape,
            c.settings.order,
            c.settings.order_z,
            max_abs,
            max_abs / range,
            range,
            mean_abs
        );
        (max_abs / range > DATA_TOLERANCE).then(|| format!("{}: max |d| {max_abs:.3e}", c.name))
    });
}

#[test]
fn segmentations_match_reference() {
    check_cases::<i16>("seg", |c, input, expected| {
        let ours =
            resample_segmentation(input.view(), c.new_shape, c.current, c.target, &c.settings)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(ours.shape(), expected.shape(), "{}: shape", c.name);
        let differing = Zip::from(&ours)
            .and(&expected)
            .fold(0usize, |acc, a, b| acc + usize::from(a != b));
        println!(
            "{:<28} {:?} -> {:?} order {} order_z {}: {differing} of {} voxels differ",
            c.name,
            &input.shape()[1..],
            c.new_shape,
            c.settings.order,
            c.settings.order_z,
            expected.len()
        );
        (differing > 0).then(|| format!("{}: {differing} voxels", c.name))
    });
}

/// Timing of typical volumes (not a parity test): `cargo test --release -p nnunet-core --test
/// resampling -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing() {
    use std::time::Instant;
    let shape = (1, 46, 384, 384);
    let data = Array4::from_shape_fn(shape, |(_, z, y, x)| {
        ((z * 7 + y * 3 + x) % 101) as f32 * 0.37 + (y as f32 * 0.05).sin()
    });
    let seg = Array4::from_shape_fn(shape, |(_, z, y, x)| {
        (((z / 5) + (y / 40) + (x / 30)) % 4) as i16 - 1
    });
    let image = ResamplingSettings::default();
    let labels = ResamplingSettings { order: 1, ..image };
    // Each target spacing, resampled along z separately and in 3-D.
    let current = [3.0, 0.7, 0.7];
    let targets = [
        ("z 46->105", [1.3143, 0.7, 0.7]),
        ("plane 384->269", [3.0, 1.0, 1.0]),
    ];
    let modes = [("separate z", None), ("3-D order 3", Some(false))];
    let runs = targets
        .into_iter()
        .flat_map(|target| modes.map(|mode| (target, mode)));
    for ((geometry, target), (mode, force)) in runs {
        let what = format!("{geometry}, {mode}");
        let new_shape = compute_new_shape([46, 384, 384], current, target);
        let d = ResamplingSettings {
            force_separate_z: force,
            ..image
        };
        let s = ResamplingSettings {
            force_separate_z: force,
            ..labels
        };
        let t = Instant::now();
        let out = resample_data(data.view(), new_shape, current, target, &d).unwrap();
        let td = t.elapsed();
        let t = Instant::now();
        let out_seg = resample_segmentation(seg.view(), new_shape, current, target, &s).unwrap();
        let ts = t.elapsed();
        println!(
            "{what}: {:?} -> {:?}: data {:.3} s, seg {:.3} s",
            &shape,
            out.shape(),
            td.as_secs_f64(),
            ts.as_secs_f64()
        );
        assert_eq!(out_seg.shape(), out.shape());
    }
}
