//! Reads the NIfTI fixtures written by nibabel (`fixtures/nifti/make_fixtures.py`) and compares
//! with what SimpleITK and nibabel report for them (`fixtures/nifti/expected.json`).

use std::path::{Path, PathBuf};

use nnunet_core::io::Reader;
use nnunet_plugins::readers::nifti::{NibabelIO, SimpleItkIO};
use serde_json::Value;

#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{
    assert_close, assert_geometry, assert_shape_and_spacing, assert_values, floats, matrix,
};

/// The folder of the NIfTI fixtures.
fn fixtures() -> PathBuf {
    fixtures::dir("nifti")
}

/// The fixtures' expected values, one case per file.
fn cases() -> Vec<Value> {
    fixtures::expected_cases("nifti")
}

/// `reader` reads `file` with the shape, spacing and values of `expected`.
fn check(reader: &dyn Reader, file: &Path, expected: &Value, label: &str) {
    let image = reader
        .read_images(&[file])
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let spacing = &image.properties.spacing;
    assert_shape_and_spacing(label, image.data.shape(), spacing, expected, 1e-5);
    assert_values(label, image.data.iter().copied(), &expected["values"]);
}

#[test]
fn simpleitkio_matches_simpleitk() {
    for case in cases() {
        let file = fixtures().join(case["file"].as_str().unwrap());
        let sitk = &case["sitk"];
        let label = format!("SimpleITKIO {}", file.display());
        check(&SimpleItkIO, &file, sitk, &label);
        let props = SimpleItkIO.read_images(&[&file]).unwrap().properties;
        assert_geometry(&label, &props.spacing, &props, sitk, [1e-5; 3]);
        assert_close(
            &format!("{label} ITK spacing"),
            &floats(&props.extra["sitk_spacing"]),
            &floats(&sitk["itk_spacing"]),
            1e-5,
        );
    }
}

#[test]
fn nibabelio_matches_nibabel() {
    let mut checked = 0;
    for case in cases() {
        let file = fixtures().join(case["file"].as_str().unwrap());
        let label = format!("NibabelIO {}", file.display());
        match case.get("nibabel") {
            Some(nib) => {
                check(&NibabelIO, &file, nib, &label);
                let props = NibabelIO.read_images(&[&file]).unwrap().properties;
                let affine = matrix(&props.extra["original_affine"]);
                let want = matrix(&nib["affine"]);
                assert_close(&format!("{label} affine"), &affine, &want, 1e-5);
                checked += 1;
            }
            None => assert!(NibabelIO.read_images(&[&file]).is_err(), "{label}"),
        }
    }
    assert!(checked >= 4);
}

/// Fixtures read as label maps and written back.
const LABEL_FIXTURES: [&str; 4] = [
    "labels_u8.nii",
    "ct_int16.nii.gz",
    "q_vs_s.nii.gz",
    "slice_2d.nii.gz",
];

#[test]
fn fixture_label_maps_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for name in LABEL_FIXTURES {
        let file = fixtures().join(name);
        for (reader, nibabel) in [(&SimpleItkIO as &dyn Reader, false), (&NibabelIO, true)] {
            if nibabel && name.starts_with("slice") {
                continue;
            }
            let seg = match reader.read_segmentation(&file) {
                Ok(s) => s,
                // float fixtures are not label maps
                Err(e) => {
                    assert!(e.to_string().contains("not an integer"), "{e}");
                    continue;
                }
            };
            let out = dir.path().join(format!("out_{nibabel}_{name}"));
            let data = seg.data.index_axis(ndarray::Axis(0), 0);
            reader
                .write_segmentation(data, &out, &seg.properties)
                .unwrap();
            let back = reader.read_segmentation(&out).unwrap();
            assert_eq!(back.data, seg.data, "{name}");
            assert_eq!(back.properties.spacing, seg.properties.spacing, "{name}");
            assert_eq!(back.properties.origin, seg.properties.origin, "{name}");
            assert_eq!(
                back.properties.direction, seg.properties.direction,
                "{name}"
            );
        }
    }
}

#[test]
fn readers_are_chosen_by_ending_as_in_nnunet() {
    let gz = fixtures().join("ct_int16.nii.gz");
    let nii = fixtures().join("labels_u8.nii");
    assert!(SimpleItkIO.can_read(&gz));
    assert!(!SimpleItkIO.can_read(&nii));
    assert!(NibabelIO.can_read(&gz));
    assert!(NibabelIO.can_read(&nii));
}
