//! Every image format through the `nnunet` binary: `info` and `verify` on NRRD, MetaImage, GIPL
//! and DICOM folders, `convert-dicom`, and a MetaImage dataset (`fixtures/formats`, written by
//! SimpleITK) that is fingerprinted and planned exactly as nnU-Net v2.8.1 plans it, trained,
//! and predicted with its outputs in `.mha` in the inputs' geometry, and from DICOM series.

use std::path::{Path, PathBuf};

use nnunet_core::io::{ImageProperties, Reader};
use nnunet_plugins::readers::dicom::{find_series, read_series};
use nnunet_plugins::readers::simpleitk::SimpleItkIO;
use nnunet_tests::{Folders, assert_contains, copy_dir, io_args, read_json, train_args};
use serde_json::Value;

const DATASET: &str = "Dataset906_MhaCt";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn itk_fixture(name: &str) -> PathBuf {
    workspace().join("plugins/tests/fixtures/itk").join(name)
}

fn dicom_fixture(name: &str) -> PathBuf {
    workspace().join("plugins/tests/fixtures/dicom").join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn info_reads_every_format_and_lists_dicom_series() {
    let f = Folders::new();
    for name in [
        "oblique.nrrd",
        "ras_detached.nhdr",
        "oblique_zip.mha",
        "oblique.mhd",
        "axis_f32.gipl",
    ] {
        let out = f.nnunet(&["info", s(&itk_fixture(name))]);
        assert!(out.contains("reader:    SimpleITKIO"), "{name}: {out}");
        assert!(out.contains("shape:     [1, 7, 6, 5]"), "{name}: {out}");
    }
    let out = f.nnunet(&[
        "info",
        s(&itk_fixture("oblique.mha")),
        "--reader",
        "SimpleITKIOWithReorient",
    ]);
    assert!(out.contains("shape:     [1, 6, 5, 7]"), "{out}");
    let out = f.nnunet(&["info", s(&dicom_fixture("series"))]);
    assert_contains(
        &out,
        &[
            "2 DICOM image series",
            "PAT1_7_oblique_test_series: CT 'oblique test series', 6 file(s)",
            "skipped 2 file(s)",
        ],
    );
}

#[test]
fn dicom_folders_are_verified_and_converted() {
    let f = Folders::new();
    let out = f.nnunet(&["verify", "--dicom", s(&dicom_fixture("series"))]);
    assert!(out.contains("all 2 series are OK"), "{out}");
    let err = f.nnunet_fails(&["verify", "--dicom", s(&dicom_fixture("bad/tilt"))]);
    assert!(
        err.contains("gantry tilt") && err.contains("PAT1_7"),
        "{err}"
    );
    let converted = f.root.join("converted");
    let series = dicom_fixture("series");
    let out = f.nnunet(&io_args("convert-dicom", &series, &converted, &[]));
    assert!(out.contains("converted 2/2 series"), "{out}");
    let json = read_json(&converted.join("PAT1_7_oblique_test_series.json"));
    assert_eq!(
        json["SeriesInstanceUID"],
        "1.2.826.0.1.3680043.2.1125.20261206.1"
    );
    assert_eq!(json["SeriesDescription"], "oblique test series");
    assert!(
        converted
            .join("PAT1_7_oblique_test_series.nii.gz")
            .is_file()
    );
}

/// `v` with every float rounded to `digits` significant digits (floats computed in another
/// order differ in the last bits).
fn rounded(v: &Value, digits: i32) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(|x| rounded(x, digits)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), rounded(x, digits)))
                .collect(),
        ),
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap();
            let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
            serde_json::json!((x * scale).round() / scale)
        }
        other => other.clone(),
    }
}

fn geometry_close(what: &str, a: &ImageProperties, b: &ImageProperties, tol: f64) {
    let pairs = [
        (&a.spacing[..], &b.spacing[..]),
        (&a.origin[..], &b.origin[..]),
        (&a.direction[..], &b.direction[..]),
    ];
    for (x, y) in pairs {
        assert_eq!(x.len(), y.len(), "{what}");
        for (u, v) in x.iter().zip(y) {
            assert!((u - v).abs() <= tol, "{what}: {x:?} vs {y:?}");
        }
    }
}

#[test]
fn mha_dataset_plans_as_nnunet_trains_and_predicts_in_mha() {
    let f = Folders::new();
    let fixtures = workspace().join("tests/fixtures/formats");
    copy_dir(&fixtures.join(DATASET), &f.raw.join(DATASET));
    let out = f.nnunet(&["verify", "-d", "906"]);
    assert!(out.contains("read with SimpleITKIO"), "{out}");
    f.plan_and_preprocess("906", "3d_fullres");
    for name in ["dataset_fingerprint.json", "nnUNetPlans.json"] {
        let ours = read_json(&f.pre.join(DATASET).join(name));
        let golden = read_json(&fixtures.join("golden").join(name));
        assert_eq!(rounded(&ours, 9), rounded(&golden, 9), "{name}");
    }
    let run = ["906", "3d_fullres", "all"];
    f.nnunet(&train_args(run, &["--epochs", "1"], ["2", "1"]));
    let images_ts = f.raw.join(DATASET).join("imagesTs");
    let out = f.root.join("out");
    let common = [
        "-d",
        "906",
        "-c",
        "3d_fullres",
        "-f",
        "all",
        "--disable_tta",
    ];
    f.nnunet(&io_args("predict", &images_ts, &out, &common));
    let input = SimpleItkIO
        .read_images(&[&images_ts.join("ct_004_0000.mha")])
        .unwrap();
    let prediction = SimpleItkIO
        .read_segmentation(&out.join("ct_004.mha"))
        .unwrap();
    assert_eq!(prediction.data.shape(), input.data.shape());
    assert_eq!(prediction.properties.origin, input.properties.origin);
    assert_eq!(prediction.properties.direction, input.properties.direction);
    assert_eq!(prediction.properties.spacing, input.properties.spacing);
    assert!(prediction.data.iter().all(|v| (0..=2).contains(v)));

    // DICOM series in, NIfTI named by series out, in each series' geometry
    let dicom_out = f.root.join("dicom_out");
    let series_dir = dicom_fixture("series");
    let dicom = [&["--dicom"][..], &common].concat();
    f.nnunet(&io_args("predict", &series_dir, &dicom_out, &dicom));
    for series in find_series(&series_dir).unwrap().series {
        let written = dicom_out.join(format!("{}.nii.gz", series.name));
        let seg = SimpleItkIO.read_segmentation(&written).unwrap();
        let image = read_series(&series).unwrap();
        assert_eq!(seg.data.shape(), image.data.shape(), "{}", series.name);
        geometry_close(&series.name, &seg.properties, &image.properties, 1e-4);
        let json = read_json(&dicom_out.join(format!("{}.json", series.name)));
        assert_eq!(json["SeriesInstanceUID"], series.uid.as_str());
    }
}
