//! Reads the DICOM fixtures (`fixtures/dicom/make_fixtures.py`: a series SimpleITK wrote from an
//! oblique volume, a real scanner CT slice from pydicom's test files, non-image objects, and
//! series with gantry tilt and a missing slice) and compares with SimpleITK's
//! `ImageSeriesReader` (`fixtures/dicom/expected.json`).

use std::path::PathBuf;

use nnunet_core::io::Reader;
use nnunet_plugins::readers::dicom::{convert_series, find_series, read_series};
use nnunet_plugins::readers::simpleitk::SimpleItkIO;
use serde_json::Value;

#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{assert_close, floats};

/// The folder of the DICOM fixtures.
fn fixtures() -> PathBuf {
    fixtures::dir("dicom")
}

/// The fixtures' expected values, one case per series.
fn expected() -> Vec<Value> {
    fixtures::expected_cases("dicom")
}

#[test]
fn series_are_found_at_any_depth_and_non_images_skipped() {
    let found = find_series(&fixtures().join("series")).unwrap();
    let mut uids: Vec<&str> = found.series.iter().map(|s| s.uid.as_str()).collect();
    uids.sort();
    let mut want: Vec<String> = expected()
        .iter()
        .map(|e| e["series_uid"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(uids, want);
    let skipped: Vec<String> = found
        .skipped
        .iter()
        .map(|(f, _)| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(skipped, ["notes.txt", "rtplan.dcm"]);
    assert!(found.skipped[1].1.contains("not a cross-sectional image"));
    let names: Vec<&str> = found.series.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"PAT1_7_oblique_test_series"), "{names:?}");
}

#[test]
fn volumes_equal_simpleitk_series_reading() {
    let found = find_series(&fixtures().join("series")).unwrap();
    for want in expected() {
        let uid = want["series_uid"].as_str().unwrap();
        let series = found.series.iter().find(|s| s.uid == uid).unwrap();
        assert_eq!(series.files.len() as u64, want["slices"].as_u64().unwrap());
        assert_eq!(series.modality, want["modality"].as_str().unwrap());
        assert_eq!(series.description, want["description"].as_str().unwrap());
        let image = read_series(series).unwrap();
        let size = floats(&want["size"]);
        let shape: Vec<usize> = [1.0, size[2], size[1], size[0]]
            .iter()
            .map(|&v| v as usize)
            .collect();
        assert_eq!(image.data.shape(), &shape[..], "{uid}");
        let p = &image.properties;
        let spacing = floats(&want["spacing"]);
        assert_close(uid, &p.spacing, &[spacing[2], spacing[1], spacing[0]], 1e-9);
        assert_close(uid, &p.origin, &floats(&want["origin"]), 1e-9);
        assert_close(uid, &p.direction, &floats(&want["direction"]), 1e-9);
        let values = floats(&want["values"]);
        let got: Vec<f64> = image.data.iter().map(|&v| v as f64).collect();
        assert_eq!(got, values, "{uid}");
    }
}

#[test]
fn conversion_writes_nifti_with_the_geometry_and_a_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let found = find_series(&fixtures().join("series")).unwrap();
    for series in &found.series {
        let file = convert_series(series, dir.path()).unwrap();
        assert_eq!(file, dir.path().join(format!("{}.nii.gz", series.name)));
        let image = read_series(series).unwrap();
        let back = SimpleItkIO.read_images(&[&file]).unwrap();
        assert_eq!(back.data, image.data);
        // NIfTI-1 keeps its geometry in single precision
        assert_close(
            &series.name,
            &back.properties.spacing,
            &image.properties.spacing,
            1e-5,
        );
        assert_close(
            &series.name,
            &back.properties.origin,
            &image.properties.origin,
            1e-4,
        );
        assert_close(
            &series.name,
            &back.properties.direction,
            &image.properties.direction,
            1e-6,
        );
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("{}.json", series.name))).unwrap(),
        )
        .unwrap();
        assert_eq!(json["SeriesInstanceUID"], series.uid.as_str());
        assert_eq!(json["Modality"], series.modality.as_str());
        assert_eq!(json["slices"], series.files.len());
    }
}

#[test]
fn tilt_and_missing_slices_are_errors_naming_the_series() {
    for (folder, want) in [
        ("tilt", "gantry tilt"),
        ("irregular", "irregular slice spacing"),
    ] {
        let found = find_series(&fixtures().join("bad").join(folder)).unwrap();
        assert_eq!(found.series.len(), 1);
        let err = read_series(&found.series[0]).unwrap_err().to_string();
        assert!(
            err.contains(want) && err.contains("PAT1_7"),
            "{folder}: {err}"
        );
        assert!(err.contains(folder), "{err}");
    }
    let err = find_series(&fixtures().join("missing")).unwrap_err();
    assert!(err.to_string().contains("no such folder"), "{err}");
}
