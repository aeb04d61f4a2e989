//! Reads the NRRD, MetaImage and GIPL fixtures written by SimpleITK and pynrrd
//! (`fixtures/itk/make_fixtures.py`) and compares with what SimpleITK and nnU-Net v2.8.1's
//! readers return for them (`fixtures/itk/expected.json`); writes predictions back in each
//! format and checks that the header geometry survives.

use std::path::{Path, PathBuf};

use ndarray::{Array3, Axis};
use nnunet_core::io::{ImageProperties, Reader, Segmentation};
use nnunet_plugins::readers::nifti::{NibabelIO, NibabelIOWithReorient};
use nnunet_plugins::readers::simpleitk::{SimpleItkIO, SimpleItkIOWithReorient};
use serde_json::Value;

#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{
    assert_close, assert_geometry, assert_shape_and_spacing, assert_values, floats, matrix, usizes,
};

/// The folder of the ITK-format fixtures.
fn fixtures() -> PathBuf {
    fixtures::dir("itk")
}

/// The fixtures' expected values (`itk`: per file; `nibabel_reorient`: per NIfTI file).
fn expected() -> Value {
    fixtures::expected("itk")
}

/// The spacing in SimpleITK's axis order, as the reader keeps it.
fn sitk_spacing(p: &ImageProperties) -> Vec<f64> {
    floats(&p.extra["sitk_spacing"])
}

/// nnU-Net's array shape of an ITK image, components as channels.
fn channels_first_shape(sitk: &Value) -> Vec<usize> {
    let size = usizes(&sitk["size"]);
    let c = sitk["components"].as_u64().unwrap() as usize;
    match size.len() {
        2 => vec![c, 1, size[1], size[0]],
        3 => vec![c, size[2], size[1], size[0]],
        _ => vec![size[3], size[2], size[1], size[0]],
    }
}

#[test]
fn simpleitkio_reads_every_format_as_simpleitk() {
    for case in expected()["itk"].as_array().unwrap() {
        let name = case["file"].as_str().unwrap();
        let file = fixtures().join(name);
        let sitk = &case["sitk"];
        let image = SimpleItkIO
            .read_images(&[&file])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let p = &image.properties;
        assert_eq!(image.data.shape(), channels_first_shape(sitk), "{name}");
        assert_geometry(name, &sitk_spacing(p), p, sitk, [1e-12; 3]);
        assert_values(name, image.data.iter().copied(), &sitk["values"]);
        if sitk["components"] == 1 {
            // scalar images: exactly nnU-Net's SimpleITKIO (it misplaces vector components)
            let what = format!("{name} nnU-Net");
            assert_shape_and_spacing(&what, image.data.shape(), &p.spacing, &case["nnunet"], 1e-6);
        }
        assert!(SimpleItkIO.can_read(&file), "{name}");
    }
}

#[test]
fn simpleitkio_with_reorient_matches_nnunet() {
    let mut checked = 0;
    for case in expected()["itk"].as_array().unwrap() {
        let Some(want) = case.get("reoriented") else {
            continue;
        };
        let name = case["file"].as_str().unwrap();
        let file = fixtures().join(name);
        let image = SimpleItkIOWithReorient.read_images(&[&file]).unwrap();
        let p = &image.properties;
        assert_eq!(image.data.shape(), usizes(&want["shape"]), "{name}");
        assert_geometry(name, &p.spacing, p, want, [1e-6, 1e-9, 1e-12]);
        assert_eq!(
            p.extra["original_orientation"], want["orientation"],
            "{name}"
        );
        assert_values(name, image.data.iter().copied(), &want["values"]);
        checked += 1;
    }
    assert!(checked >= 10, "{checked}");
    let err = SimpleItkIOWithReorient
        .read_images(&[&fixtures().join("slice_2d.mha")])
        .unwrap_err();
    assert!(err.to_string().contains("3D images only"), "{err}");
}

#[test]
fn nibabelio_with_reorient_matches_nnunet() {
    for case in expected()["nibabel_reorient"].as_array().unwrap() {
        let name = case["file"].as_str().unwrap();
        let file = fixtures().join(name);
        let image = NibabelIOWithReorient.read_images(&[&file]).unwrap();
        let p = &image.properties;
        assert_shape_and_spacing(name, image.data.shape(), &p.spacing, case, 1e-6);
        let affine = matrix(&case["reoriented_affine"]);
        let got = matrix(&p.extra["reoriented_affine"]);
        assert_close(&format!("{name} affine"), &got, &affine, 1e-5);
        assert_values(name, image.data.iter().copied(), &case["values"]);
    }
}

/// Labels derived from an image's first channel.
fn labels_of(data: &ndarray::Array4<f32>) -> Array3<i16> {
    data.index_axis(Axis(0), 0)
        .mapv(|v| (v.abs() as i64 % 5) as i16)
}

#[test]
fn predictions_keep_format_and_header_geometry() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "oblique.mha",
        "oblique.mhd",
        "oblique.nrrd",
        "oblique.nhdr",
        "ras_gzip.nrrd",
        "las_big_endian.nrrd",
        "axis_f32.gipl",
        "slice_2d.mha",
    ] {
        let input = fixtures().join(name);
        let image = SimpleItkIO.read_images(&[&input]).unwrap();
        let seg = labels_of(&image.data);
        let out = dir.path().join(format!("pred_{name}"));
        SimpleItkIO
            .write_segmentation(seg.view(), &out, &image.properties)
            .unwrap();
        let back = SimpleItkIO.read_segmentation(&out).unwrap();
        assert_eq!(back.data.index_axis(Axis(0), 0), seg, "{name}");
        let (a, b) = (&image.properties, &back.properties);
        // NRRD stores spacing times direction: equal up to rounding
        assert_close(name, &sitk_spacing(b), &sitk_spacing(a), 1e-14);
        assert_close(name, &b.origin, &a.origin, 1e-14);
        assert_close(name, &b.direction, &a.direction, 1e-14);
        assert_close(name, &b.spacing, &a.spacing, 1e-14);
        assert_eq!(a.extra.get("nrrd"), b.extra.get("nrrd"), "{name}");
    }
    assert!(dir.path().join("pred_oblique.zraw").is_file());
    assert!(dir.path().join("pred_oblique.raw.gz").is_file());
    let ras = std::fs::read(dir.path().join("pred_ras_gzip.nrrd")).unwrap();
    assert!(String::from_utf8_lossy(&ras).contains("space: right-anterior-superior"));
}

/// Reads the label map `input` with `plain` and with `reorienting`, writes the reoriented one
/// with `reorienting` to `out` and reads that back with `plain`: `[original, reoriented, back]`.
fn reoriented_round_trip(
    plain: &dyn Reader,
    reorienting: &dyn Reader,
    input: &Path,
    out: &Path,
) -> [Segmentation; 3] {
    let original = plain.read_segmentation(input).unwrap();
    let reoriented = reorienting.read_segmentation(input).unwrap();
    reorienting
        .write_segmentation(
            reoriented.data.index_axis(Axis(0), 0),
            out,
            &reoriented.properties,
        )
        .unwrap();
    let back = plain.read_segmentation(out).unwrap();
    [original, reoriented, back]
}

#[test]
fn reoriented_predictions_are_written_in_the_input_orientation() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixtures().join("labels.mha");
    let out = dir.path().join("pred.mha");
    let [original, reoriented, back] =
        reoriented_round_trip(&SimpleItkIO, &SimpleItkIOWithReorient, &input, &out);
    assert_ne!(reoriented.data.shape(), original.data.shape());
    assert_eq!(back.data, original.data);
    assert_eq!(back.properties.origin, original.properties.origin);
    assert_eq!(back.properties.direction, original.properties.direction);
    assert_eq!(
        sitk_spacing(&back.properties),
        sitk_spacing(&original.properties)
    );

    let nifti = fixtures().join("../nifti/labels_u8.nii");
    let out = dir.path().join("pred.nii.gz");
    let [original, _, back] =
        reoriented_round_trip(&NibabelIO, &NibabelIOWithReorient, &nifti, &out);
    assert_eq!(back.data, original.data);
    assert_eq!(
        back.properties.extra["nifti"],
        original.properties.extra["nifti"]
    );
}

/// Writes a prediction of every fixture, in its own format, into `$NNUNET_INTEROP_DIR` with
/// `ours.json` (the labels and the geometry they were written with), so that
/// `make_fixtures.py --check DIR` reads them with SimpleITK.
#[test]
#[ignore = "writes files for a check by SimpleITK; run with NNUNET_INTEROP_DIR set"]
fn write_files_for_simpleitk_check() {
    let dir = PathBuf::from(std::env::var("NNUNET_INTEROP_DIR").expect("NNUNET_INTEROP_DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut manifest = Vec::new();
    for case in expected()["itk"].as_array().unwrap() {
        let name = case["file"].as_str().unwrap();
        let image = SimpleItkIO.read_images(&[&fixtures().join(name)]).unwrap();
        if image.data.shape()[0] != 1 {
            continue;
        }
        let seg = labels_of(&image.data).mapv(|v| v * 100 - 3);
        let out = format!("pred_{name}");
        SimpleItkIO
            .write_segmentation(seg.view(), &dir.join(&out), &image.properties)
            .unwrap();
        let p = &image.properties;
        manifest.push(serde_json::json!({
            "file": out,
            "spacing": p.extra["sitk_spacing"],
            "origin": p.origin,
            "direction": p.direction,
            "values": seg.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        }));
    }
    let text = serde_json::to_string(&manifest).unwrap();
    std::fs::write(dir.join("ours.json"), text).unwrap();
}

#[test]
fn detached_headers_are_copied_with_their_data() {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in [
        ("oblique.mhd", "oblique.zraw"),
        ("oblique.nhdr", "oblique.raw.gz"),
        ("ras_detached.nhdr", "ras_detached.raw"),
    ] {
        let from = fixtures().join(name);
        assert_eq!(
            SimpleItkIO.data_files(&from).unwrap(),
            [fixtures().join(data)]
        );
        let to = dir.path().join("copy").join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        nnunet_core::io::copy_image(&SimpleItkIO, &from, &to).unwrap();
        let a = SimpleItkIO.read_images(&[&from]).unwrap();
        let b = SimpleItkIO.read_images(&[&to]).unwrap();
        assert_eq!(a.data, b.data, "{name}");
    }
    for attached in ["oblique.mha", "oblique.nrrd", "axis_f32.gipl"] {
        assert!(
            SimpleItkIO
                .data_files(&fixtures().join(attached))
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn truncated_and_corrupted_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let readers: [&dyn Reader; 2] = [&SimpleItkIO, &SimpleItkIOWithReorient];
    let mut errors = 0;
    for case in expected()["itk"].as_array().unwrap() {
        let name = case["file"].as_str().unwrap();
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        let target = dir.path().join(name);
        let mut variants: Vec<Vec<u8>> = (0..bytes.len())
            .step_by(bytes.len() / 40 + 1)
            .map(|n| bytes[..n].to_vec())
            .collect();
        for at in (0..bytes.len()).step_by(bytes.len() / 60 + 1) {
            let mut v = bytes.clone();
            v[at] = v[at].wrapping_add(0x5a);
            variants.push(v);
        }
        for v in variants {
            std::fs::write(&target, &v).unwrap();
            for reader in readers {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    reader
                        .read_images(&[&target])
                        .map(|_| ())
                        .and(reader.read_segmentation(&target).map(|_| ()))
                }));
                match result {
                    Ok(Err(e)) => {
                        errors += 1;
                        assert!(e.to_string().contains(name), "{name}: {e}");
                    }
                    Ok(Ok(())) => {}
                    Err(_) => panic!("{name}: a reader panicked on a damaged file"),
                }
            }
        }
    }
    assert!(errors > 500, "{errors}");
}
