//! The dataset fingerprint against nnU-Net v2.8.1's `dataset_fingerprint.json` for the synthetic
//! planning fixtures: each dataset is rebuilt from its formulas (checked against the fixture's
//! SHA-256 of every voxel array), written as a raw dataset, fingerprinted with the built-in
//! readers, and compared value for value with the golden file.

// Tests report what they measured.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::path::Path;
use std::time::Instant;

use common::synthetic::{self, Array, Kind, Values};
use nnunet_core::Error;
use nnunet_core::io::Reader;
use nnunet_dataset::DatasetJson;
use nnunet_dataset::training_cases;
use nnunet_plugins::readers::natural_image::NaturalImage2DIO;
use nnunet_plugins::readers::nifti::SimpleItkIO;
use nnunet_preprocessing::fingerprint::{
    Fingerprint, FingerprintOptions, FingerprintProgress, extract_fingerprint,
    extract_fingerprint_with,
};
use serde_json::Value;

/// Compares two JSON values: same structure and keys, numbers equal as f64.
fn assert_same(got: &Value, want: &Value, path: &str) {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!(g == w, "{path}: got {g:?}, want {w:?} (diff {:e})", g - w);
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{path}: lengths differ");
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                assert_same(a, b, &format!("{path}[{i}]"));
            }
        }
        (Value::Object(g), Value::Object(w)) => {
            let gk: Vec<&String> = g.keys().collect();
            let wk: Vec<&String> = w.keys().collect();
            assert_eq!(gk, wk, "{path}: keys (or their order) differ");
            for (k, v) in w {
                assert_same(&g[k], v, &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(got, want, "{path}"),
    }
}

fn reader_for(kind: Kind) -> Box<dyn Reader> {
    match kind {
        Kind::Png => Box::new(NaturalImage2DIO),
        Kind::Nifti => Box::new(SimpleItkIO),
    }
}

fn check_dataset(id: u32) {
    let ds = synthetic::dataset(id);
    let tmp = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let folder = ds.write_raw(tmp.path(), true);
    let written = t0.elapsed();
    let dataset_json = DatasetJson::from_file(&folder.join("dataset.json")).unwrap();
    let cases = training_cases(&folder, &dataset_json).unwrap();
    assert_eq!(cases.len(), ds.num_cases);
    let reader = reader_for(ds.kind);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let t1 = Instant::now();
    let fingerprint = extract_fingerprint(
        &cases,
        reader.as_ref(),
        dataset_json.num_channels(),
        2,
        &|| {
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        },
    )
    .unwrap();
    let took = t1.elapsed();
    eprintln!(
        "{}: data written in {written:.2?}, fingerprint in {took:.2?}",
        ds.name
    );
    assert_eq!(done.into_inner(), ds.num_cases);
    let golden = ds.golden_fingerprint();
    assert_same(&fingerprint.to_json(), &golden, ds.name);
    // The text form parses back to the same fingerprint and to the golden values.
    let text = fingerprint.to_json_string();
    let reparsed: Value = serde_json::from_str(&text).unwrap();
    assert_same(&reparsed, &golden, ds.name);
    assert_eq!(Fingerprint::from_json_str(&text).unwrap(), fingerprint);
    let from_golden =
        Fingerprint::load(&ds.fixture_dir().join("dataset_fingerprint.json")).unwrap();
    assert_eq!(from_golden, fingerprint);
}

#[test]
fn dataset_901_rgb_png() {
    check_dataset(901);
}

#[test]
fn dataset_902_mr_iso() {
    check_dataset(902);
}

#[test]
fn dataset_903_ct_aniso() {
    check_dataset(903);
}

#[test]
fn dataset_904_two_channels_masked() {
    check_dataset(904);
}

#[test]
fn dataset_905_nifti_2d() {
    check_dataset(905);
}

/// A small 3-D NIfTI image with its labels.
fn tiny(folder: &Path, id: &str, label_value: u8, channels: usize, label_shape: [usize; 3]) {
    let shape = vec![4, 5, 6];
    let n = 4 * 5 * 6;
    for ch in 0..channels {
        let img = Array {
            shape: shape.clone(),
            values: Values::F32((0..n).map(|i| (i % 7 + 1) as f32).collect()),
        };
        synthetic::write_nifti(
            &folder.join(format!("imagesTr/{id}_{ch:04}.nii.gz")),
            &img,
            &[1.0, 1.0, 1.0],
        );
    }
    let ln: usize = label_shape.iter().product();
    let lab = Array {
        shape: label_shape.to_vec(),
        values: Values::U8(
            (0..ln)
                .map(|i| if i % 3 == 0 { label_value } else { 0 })
                .collect(),
        ),
    };
    synthetic::write_nifti(
        &folder.join(format!("labelsTr/{id}.nii.gz")),
        &lab,
        &[1.0, 1.0, 1.0],
    );
}

fn tiny_dataset(root: &Path, channel_names: &[&str]) -> (std::path::PathBuf, DatasetJson) {
    let folder = root.join("Dataset999_Tiny");
    std::fs::create_dir_all(folder.join("imagesTr")).unwrap();
    std::fs::create_dir_all(folder.join("labelsTr")).unwrap();
    let channels: serde_json::Map<String, Value> = channel_names
        .iter()
        .enumerate()
        .map(|(i, n)| (i.to_string(), Value::from(*n)))
        .collect();
    let dj = serde_json::json!({
        "channel_names": channels,
        "labels": {"background": 0, "a": 1},
        "numTraining": 2,
        "file_ending": ".nii.gz",
    });
    std::fs::write(folder.join("dataset.json"), dj.to_string()).unwrap();
    let dataset_json = DatasetJson::from_file(&folder.join("dataset.json")).unwrap();
    (folder, dataset_json)
}

/// [`tiny_dataset`] with two one-channel cases `a` and `b` of shape `[4, 5, 6]` whose label maps
/// hold `label_value`.
fn two_case_dataset(
    root: &Path,
    channel_names: &[&str],
    label_value: u8,
) -> (std::path::PathBuf, DatasetJson) {
    let (folder, dj) = tiny_dataset(root, channel_names);
    for id in ["a", "b"] {
        tiny(&folder, id, label_value, 1, [4, 5, 6]);
    }
    (folder, dj)
}

fn run(folder: &Path, dataset_json: &DatasetJson) -> Result<Fingerprint, Error> {
    let cases = training_cases(folder, dataset_json).unwrap();
    let events = std::sync::Mutex::new(Vec::new());
    let progress = |p: FingerprintProgress| events.lock().unwrap().push(p);
    let options = FingerprintOptions {
        num_processes: 2,
        total_samples: 1000,
        progress: Some(&progress),
    };
    let result =
        extract_fingerprint_with(&cases, &SimpleItkIO, dataset_json.num_channels(), &options);
    if result.is_ok() {
        let events = events.into_inner().unwrap();
        assert!(events.contains(&FingerprintProgress::CaseDone { done: 2, total: 2 }));
        assert!(events.contains(&FingerprintProgress::Statistics {
            channel: 0,
            channels: dataset_json.num_channels()
        }));
    }
    result
}

#[test]
fn small_dataset_with_custom_sample_count() {
    let tmp = tempfile::tempdir().unwrap();
    let (folder, dj) = two_case_dataset(tmp.path(), &["CT"], 1);
    let fp = run(&folder, &dj).unwrap();
    assert_eq!(fp.shapes_after_crop, [[4, 5, 6], [4, 5, 6]]);
    assert_eq!(fp.spacings, [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]);
    assert_eq!(fp.median_relative_size_after_cropping, 1.0);
    let p = fp.foreground_intensity_properties_per_channel[0];
    assert!(p.min >= 1.0 && p.max <= 7.0 && p.min <= p.median && p.median <= p.max);
}

#[test]
fn errors_name_the_case_and_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    // No foreground in any case.
    let (folder, dj) = two_case_dataset(tmp.path(), &["CT"], 0);
    let e = run(&folder, &dj).unwrap_err().to_string();
    assert!(e.contains("channel 0 has no foreground"), "{e}");

    // Label map of another shape.
    tiny(&folder, "b", 1, 1, [4, 5, 7]);
    let e = run(&folder, &dj).unwrap_err().to_string();
    assert!(
        e.contains("labelsTr/b.nii.gz") && e.contains("shape"),
        "{e}"
    );

    // A missing label map.
    tiny(&folder, "b", 1, 1, [4, 5, 6]);
    std::fs::remove_file(folder.join("labelsTr/b.nii.gz")).unwrap();
    let e = run(&folder, &dj).unwrap_err().to_string();
    assert!(
        e.contains("case 'b'") && e.contains("labelsTr/b.nii.gz"),
        "{e}"
    );

    // More channels declared than the cases have.
    let tmp2 = tempfile::tempdir().unwrap();
    let (folder, dj) = two_case_dataset(tmp2.path(), &["CT", "T2"], 1);
    let e = run(&folder, &dj).unwrap_err().to_string();
    assert!(
        e.contains("1 image channel(s)") && e.contains("declares 2"),
        "{e}"
    );

    // A file that is not an image.
    std::fs::write(folder.join("imagesTr/a_0000.nii.gz"), b"not a nifti").unwrap();
    let e = run(&folder, &dj).unwrap_err().to_string();
    assert!(e.contains("case 'a'") && e.contains("a_0000.nii.gz"), "{e}");
}

/// Dataset905 with the label map of case_001 emptied: nnU-Net's `np.concatenate` of the float32
/// samples with that case's empty list gives float64, so mean, std and percentiles are float64.
/// Expected values from `nnUNetv2_extract_fingerprint` (nnU-Net 2.8.1) on the same data.
#[test]
fn case_without_foreground_gives_float64_statistics() {
    let ds = synthetic::dataset(905);
    let tmp = tempfile::tempdir().unwrap();
    let folder = ds.write_raw(tmp.path(), false);
    let mut empty = ds.case(1).label;
    empty.values = Values::U8(vec![0; empty.shape.iter().product()]);
    synthetic::write_nifti(
        &folder.join("labelsTr/case_001.nii.gz"),
        &empty,
        &ds.spacing_xyz(1),
    );
    let dataset_json = DatasetJson::from_file(&folder.join("dataset.json")).unwrap();
    let cases = training_cases(&folder, &dataset_json).unwrap();
    let fp = extract_fingerprint(&cases, &SimpleItkIO, 1, 2, &|| {}).unwrap();
    let p = fp.foreground_intensity_properties_per_channel[0];
    assert_eq!(p.max, 1510.0);
    assert_eq!(p.mean, 1400.8994560039946);
    assert_eq!(p.median, 1399.0);
    assert_eq!(p.min, 1300.0);
    assert_eq!(p.percentile_00_5, 1301.0);
    assert_eq!(p.percentile_99_5, 1509.0);
    assert_eq!(p.std, 59.57802129238076);
    assert_eq!(fp.median_relative_size_after_cropping, 1.0);
}
