//! Reads the images under `tests/fixtures/images` (written by Pillow and tifffile) with our
//! `NaturalImage2DIO` and `Tiff3DIO` and compares with what nnU-Net v2.8.1's readers returned for
//! the same files (`expected.json`, made by `make_fixtures.py` there). JPEG cases are compared
//! within the tolerance stored per case, because JPEG decoders round differently.

// Tests report what they measured.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};

use nnunet_core::io::Reader;
use nnunet_plugins::readers::natural_image::NaturalImage2DIO;
use nnunet_plugins::readers::tiff3d::Tiff3DIO;
use serde_json::Value;

#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::floats;

/// The folder of the image fixtures.
fn fixtures() -> PathBuf {
    fixtures::dir("images")
}

/// The cases of `expected.json`: what nnU-Net's readers returned per file (or group of files).
fn expected_cases() -> Vec<Value> {
    fixtures::expected("images")["cases"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn readers_match_nnunet_on_fixtures() {
    let cases = expected_cases();
    assert!(
        cases.len() >= 20,
        "expected.json holds {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let reader: Box<dyn Reader> = match case["reader"].as_str().unwrap() {
            "NaturalImage2DIO" => Box::new(NaturalImage2DIO),
            "Tiff3DIO" => Box::new(Tiff3DIO),
            other => panic!("unknown reader {other}"),
        };
        let files: Vec<PathBuf> = case["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| fixtures().join(f.as_str().unwrap()))
            .collect();
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let result = match case["method"].as_str().unwrap() {
            "read_images" => reader.read_images(&refs).map(|i| {
                (
                    i.data.shape().to_vec(),
                    i.data.iter().map(|v| f64::from(*v)).collect::<Vec<_>>(),
                    i.properties.spacing,
                )
            }),
            "read_seg" => reader.read_segmentation(refs[0]).map(|s| {
                (
                    s.data.shape().to_vec(),
                    s.data.iter().map(|v| f64::from(*v)).collect(),
                    s.properties.spacing,
                )
            }),
            other => panic!("unknown method {other}"),
        };
        if case.get("error").is_some() || case.get("deviation").is_some() {
            match result {
                Err(e) => {
                    let msg = e.to_string();
                    let last = files.last().unwrap().file_name().unwrap().to_string_lossy();
                    let first = files[0].file_name().unwrap().to_string_lossy();
                    if !(msg.contains(&*last) || msg.contains(&*first)) {
                        failures.push(format!("{name}: error does not name the file: {msg}"));
                    }
                }
                Ok(_) => failures.push(format!("{name}: expected an error, got an image")),
            }
            continue;
        }
        let (shape, data, spacing) = match result {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let want_shape: Vec<usize> = floats(&case["shape"]).iter().map(|v| *v as usize).collect();
        if shape != want_shape {
            failures.push(format!("{name}: shape {shape:?}, nnU-Net {want_shape:?}"));
            continue;
        }
        if spacing.to_vec() != floats(&case["spacing"]) {
            failures.push(format!(
                "{name}: spacing {spacing:?}, nnU-Net {}",
                case["spacing"]
            ));
        }
        let tolerance = case["tolerance"].as_f64().unwrap();
        // nnU-Net's values are float32; JSON parsing may be off by an f64 ulp, so round to f32.
        let want: Vec<f64> = floats(&case["data"])
            .iter()
            .map(|v| f64::from(*v as f32))
            .collect();
        let worst = data
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        if tolerance > 0.0 {
            eprintln!("{name}: largest difference {worst} (tolerance {tolerance})");
        }
        if worst > tolerance {
            let at = data
                .iter()
                .zip(&want)
                .position(|(a, b)| (a - b).abs() == worst)
                .unwrap();
            failures.push(format!(
                "{name}: largest difference {worst} (tolerance {tolerance}) at flat index {at}: \
                 ours {}, nnU-Net {}",
                data[at], want[at]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn both_readers_are_registered_under_nnunet_names() {
    let registries = nnunet_core::Registries::builtin().unwrap();
    for (name, endings) in [
        (
            "NaturalImage2DIO",
            &[".png", ".bmp", ".tif", ".jpg", ".jpeg"][..],
        ),
        ("Tiff3DIO", &[".tif", ".tiff"][..]),
    ] {
        let reader = registries.readers.create(name).unwrap();
        assert_eq!(reader.file_endings(), endings);
    }
    // Reader selection as nnU-Net does it with an example file: a 3D stack (of other than 3 or 4
    // slices) is not a natural image, so the `.tif` ending falls through to Tiff3DIO; a 2D page
    // is not a 3D stack.
    let natural = registries.readers.create("NaturalImage2DIO").unwrap();
    let tiff = registries.readers.create("Tiff3DIO").unwrap();
    let stack = fixtures().join("stack5.tif");
    let flat = fixtures().join("gray2d.tif");
    assert!(!natural.can_read(&stack) && tiff.can_read(&stack));
    assert!(natural.can_read(&flat) && !tiff.can_read(&flat));
}

#[test]
fn nnunet_written_stack_round_trips_through_our_writer() {
    let dir = tempfile::tempdir().unwrap();
    let seg = Tiff3DIO
        .read_segmentation(&fixtures().join("vol.tif"))
        .unwrap();
    let out = dir.path().join("vol.tif");
    Tiff3DIO
        .write_segmentation(
            seg.data.index_axis(ndarray::Axis(0), 0),
            &out,
            &seg.properties,
        )
        .unwrap();
    let back = Tiff3DIO.read_segmentation(&out).unwrap();
    assert_eq!(back.data, seg.data);
    assert_eq!(back.properties.spacing, [2.5, 0.75, 0.5]);
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("vol.json")).unwrap())
            .unwrap();
    assert_eq!(json, serde_json::json!({"spacing": [2.5, 0.75, 0.5]}));
}

/// Writes files with our writers into `$NNUNET_INTEROP_DIR`, with `ours.json` describing them, so
/// that `make_fixtures.py --check DIR` can read them with nnU-Net's readers and tifffile.
#[test]
#[ignore = "writes files for a check by nnU-Net; run with NNUNET_INTEROP_DIR set"]
fn write_files_for_nnunet_check() {
    use ndarray::{Array3, Array4};
    use nnunet_core::io::ImageProperties;
    let dir = PathBuf::from(std::env::var("NNUNET_INTEROP_DIR").expect("NNUNET_INTEROP_DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let props = |spacing| ImageProperties {
        spacing,
        ..Default::default()
    };
    let mut manifest = Vec::new();
    let mut seg = |reader: &dyn Reader, name: &str, data: Array3<i16>, spacing: [f64; 3]| {
        let file = dir.join(name);
        reader
            .write_segmentation(data.view(), &file, &props(spacing))
            .unwrap();
        manifest.push(serde_json::json!({
            "file": name,
            "kind": "seg",
            "shape": [1, data.shape()[0], data.shape()[1], data.shape()[2]],
            "spacing": spacing,
            "data": data.iter().map(|v| *v as f64).collect::<Vec<_>>(),
        }));
    };
    let vol = Array3::from_shape_fn((3, 4, 5), |(z, y, x)| ((z + 2 * y + x) % 4) as i16);
    seg(&Tiff3DIO, "seg3d.tif", vol.clone(), [2.5, 0.75, 0.5]);
    seg(
        &Tiff3DIO,
        "seg3d16.tif",
        vol.mapv(|v| v * 300),
        [1.0, 2.0, 3.0],
    );
    seg(
        &Tiff3DIO,
        "seg1z.tif",
        vol.slice(ndarray::s![..1, .., ..]).to_owned(),
        [4.0, 1.0, 1.0],
    );
    let flat = Array3::from_shape_fn((1, 4, 6), |(_, y, x)| ((y * 6 + x) % 5) as i16);
    let nat = [999.0, 1.0, 1.0];
    seg(&NaturalImage2DIO, "seg2d.png", flat.clone(), nat);
    seg(
        &NaturalImage2DIO,
        "seg2d16.png",
        flat.mapv(|v| v * 1000),
        nat,
    );
    seg(&NaturalImage2DIO, "seg2d.bmp", flat.clone(), nat);
    seg(&NaturalImage2DIO, "seg2d.tif", flat.mapv(|v| v * 100), nat);
    let mut probs = |reader: &dyn Reader, name: &str, data: Array4<f32>| {
        reader
            .write_probabilities(data.view(), &dir.join(name), &props([1.0, 1.0, 1.0]))
            .unwrap();
        manifest.push(serde_json::json!({
            "file": name,
            "kind": "probabilities",
            "shape": data.shape(),
            "data": data.iter().map(|v| *v as f64).collect::<Vec<_>>(),
        }));
    };
    let p = |c, z| {
        Array4::from_shape_fn((c, z, 3, 4), |(c, z, y, x)| {
            (c + 1) as f32 / (z + y + x + 3) as f32
        })
    };
    probs(&Tiff3DIO, "probs3d.tif", p(2, 3));
    probs(&NaturalImage2DIO, "probs2d.tif", p(3, 1));
    std::fs::write(
        dir.join("ours.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

/// Found by `cargo fuzz` (target `readers`): a 66-byte BMP whose header declares a 624 GB image
/// made the decoder abort the process on allocation. It must be a reported problem.
#[test]
fn a_bmp_declaring_a_huge_image_is_an_error_not_an_abort() {
    let file = fixtures().join("huge_header.bmp");
    let err = NaturalImage2DIO
        .read_images(&[file.as_path()])
        .expect_err("a corrupt BMP must not read");
    let text = err.to_string();
    assert!(text.contains("huge_header.bmp"), "{text}");
    assert!(NaturalImage2DIO.read_segmentation(&file).is_err());
}
