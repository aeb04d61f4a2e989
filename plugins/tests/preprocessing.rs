//! Preprocessing parity with nnU-Net v2.8.1: the synthetic datasets of
//! `tests/fixtures/planning` are rebuilt from their formulas, preprocessed with the reference's
//! golden plans, and compared with what `nnUNetv2_preprocess` produced for them
//! (`tests/fixtures/preprocessing/<dataset>.json`, made by `make_fixtures.py` there): shapes, crop
//! boxes and properties exactly; segmentations bit for bit (SHA-256) where nothing is resampled and
//! by label counts and sampled voxels where they are; intensities at 1000 fixed voxels per case
//! within the tolerances below; foreground locations exactly where the segmentation is identical.

// Tests report what they measured.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};

use ndarray::Axis;
use nnunet_core::Registries;
use nnunet_dataset::DatasetJson;
use nnunet_dataset::training_cases;
use nnunet_plugins as _;
use nnunet_preprocessing::plans::Plans;
use nnunet_preprocessing::{CaseSettings, preprocess_case};
use serde_json::Value;
use sha2::{Digest, Sha256};

use common::fixtures::usizes;

/// Largest accepted absolute difference of an intensity where nothing is resampled. Measured: 0
/// (float32 values equal; the JSON round trip adds below 1e-15).
const TOL_NOT_RESAMPLED: f64 = 1e-6;
/// Largest accepted absolute difference of a resampled intensity (normalised units). Measured:
/// below 1e-15 on every fixture (the same float64 spline arithmetic as scipy).
const TOL_RESAMPLED: f64 = 1e-5;
/// Largest accepted fraction of differing voxels of a resampled segmentation (ties between labels
/// at the same interpolated score can go either way with float rounding).
const TOL_SEG_RESAMPLED: f64 = 0.002;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sha256_i16(values: impl Iterator<Item = i16>) -> String {
    let mut h = Sha256::new();
    for v in values {
        h.update(v.to_le_bytes());
    }
    format!("{:x}", h.finalize())
}

fn sha256_zyx(locations: &[[u32; 3]]) -> String {
    let mut h = Sha256::new();
    for l in locations {
        for v in l {
            h.update(i64::from(*v).to_le_bytes());
        }
    }
    format!("{:x}", h.finalize())
}

fn check_dataset(name: &str) {
    let golden = read_json(&repo().join(format!("tests/fixtures/preprocessing/{name}.json")));
    let tmp = tempfile::tempdir().unwrap();
    let id: u32 = name[7..10].parse().unwrap();
    let raw = common::synthetic::dataset(id).write_raw(tmp.path(), false);
    let plans =
        Plans::from_file(&repo().join(format!("tests/fixtures/planning/{name}/nnUNetPlans.json")))
            .unwrap();
    let dataset_json = DatasetJson::from_file(&raw.join("dataset.json")).unwrap();
    let registries = Registries::builtin().unwrap();
    let reader = registries
        .readers
        .create(plans.image_reader_writer().unwrap())
        .unwrap();
    let cases = training_cases(&raw, &dataset_json).unwrap();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (config_name, golden_cases) in golden["configurations"].as_object().unwrap() {
        let configuration = plans.configuration(config_name).unwrap();
        let settings = CaseSettings::new(
            &plans,
            &configuration,
            &dataset_json.labels,
            dataset_json.num_channels(),
        )
        .unwrap();
        for case in &cases {
            let g = &golden_cases[&case.id];
            let files: Vec<&Path> = case.images.iter().map(PathBuf::as_path).collect();
            let image = reader.read_images(&files).unwrap();
            let seg = reader.read_segmentation(&case.label).unwrap();
            let out = preprocess_case(image, Some(seg), &settings, &case.id).unwrap();
            let p = &out.properties;
            let what = format!("{name} {config_name} {}", case.id);

            let shapes: [(&str, &[usize]); 4] = [
                ("data_shape", out.data.shape()),
                ("seg_shape", out.seg.shape()),
                ("shape_before_cropping", &p.shape_before_cropping),
                (
                    "shape_after_cropping_and_before_resampling",
                    &p.shape_after_cropping_and_before_resampling,
                ),
            ];
            for (key, shape) in shapes {
                assert_eq!(shape, usizes(&g[key]), "{what}: {key}");
            }
            let bbox: Vec<Vec<usize>> = g["bbox_used_for_cropping"]
                .as_array()
                .unwrap()
                .iter()
                .map(usizes)
                .collect();
            assert_eq!(
                p.bbox_used_for_cropping
                    .iter()
                    .map(|b| b.to_vec())
                    .collect::<Vec<_>>(),
                bbox,
                "{what}: crop box"
            );
            for (a, b) in p.spacing.iter().zip(g["spacing"].as_array().unwrap()) {
                assert!((a - b.as_f64().unwrap()).abs() < 1e-12, "{what}: spacing");
            }

            let resampled =
                out.data.shape()[1..] != p.shape_after_cropping_and_before_resampling[..];
            // Segmentation.
            let seg_same = sha256_i16(out.seg.iter().copied()) == g["seg_sha256"];
            let seg_flat: Vec<i16> = out.seg.iter().copied().collect();
            let idx = usizes(&g["seg_sample_index"]);
            let mismatches = idx
                .iter()
                .zip(g["seg_sample_values"].as_array().unwrap())
                .filter(|(i, v)| i64::from(seg_flat[**i]) != v.as_i64().unwrap())
                .count();
            let seg_mismatch = mismatches as f64 / idx.len() as f64;
            if !resampled && !seg_same {
                failures.push(format!(
                    "{what}: segmentation differs ({mismatches} of 1000 sampled voxels)"
                ));
            }
            if resampled && seg_mismatch > TOL_SEG_RESAMPLED {
                failures.push(format!(
                    "{what}: {seg_mismatch} of the sampled segmentation voxels differ"
                ));
            }
            // Intensities.
            let data_flat: Vec<f32> = out.data.iter().copied().collect();
            let idx = usizes(&g["sample_index"]);
            let (mut max_diff, mut sum_diff) = (0.0f64, 0.0f64);
            for (i, v) in idx.iter().zip(g["sample_values"].as_array().unwrap()) {
                let d = (f64::from(data_flat[*i]) - v.as_f64().unwrap()).abs();
                max_diff = max_diff.max(d);
                sum_diff += d;
            }
            let mean_diff = sum_diff / idx.len() as f64;
            let tol = if resampled {
                TOL_RESAMPLED
            } else {
                TOL_NOT_RESAMPLED
            };
            if max_diff > tol {
                failures.push(format!(
                    "{what}: intensities differ by up to {max_diff:e} (tolerance {tol:e})"
                ));
            }
            for (c, gc) in g["channels"].as_array().unwrap().iter().enumerate() {
                let channel = out.data.index_axis(Axis(0), c);
                let n = channel.len() as f64;
                let mean = channel.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
                let gmean = gc["mean"].as_f64().unwrap();
                if (mean - gmean).abs() > tol {
                    failures.push(format!("{what}: channel {c} mean {mean} vs {gmean}"));
                }
            }
            // Foreground locations: identical draws where the segmentation is identical.
            for (key, gl) in g["class_locations"].as_object().unwrap() {
                let ours = p.class_locations.get(key).map(Vec::as_slice).unwrap_or(&[]);
                let count = gl["count"].as_u64().unwrap() as usize;
                if seg_same {
                    if sha256_zyx(ours) != gl["zyx_sha256"] {
                        failures.push(format!("{what}: class {key} locations differ"));
                    }
                } else if ours.len().abs_diff(count) > count / 50 + 1 {
                    failures.push(format!(
                        "{what}: class {key}: {} locations vs {count}",
                        ours.len()
                    ));
                }
            }
            report.push(format!(
                "{what}: resampled {resampled}, seg identical {seg_same} (sampled mismatch \
                 {seg_mismatch}), intensity max |diff| {max_diff:.3e}, mean |diff| {mean_diff:.3e}"
            ));
        }
    }
    println!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rgb_png_2d() {
    check_dataset("Dataset901_Rgb2D");
}

#[test]
fn mr_isotropic_with_one_resampled_case() {
    check_dataset("Dataset902_MrIso");
}

#[test]
fn ct_anisotropic_with_lowres() {
    check_dataset("Dataset903_CtAniso");
}

#[test]
fn two_channels_with_mask_for_norm_and_transpose() {
    check_dataset("Dataset904_TwoChanMasked");
}

#[test]
fn nifti_2d() {
    check_dataset("Dataset905_Nifti2D");
}
