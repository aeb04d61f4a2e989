//! Parity of `nnunet_inference` with nnU-Net v2.8.1: the Gaussian importance map, the
//! sliding-window steps, sliding-window logits of a tiny fixed convolution (with and without
//! mirroring, smaller and larger than the patch, 3D and 2D), and the export of logits to a
//! segmentation and probabilities in the input's geometry, and the cascade's next-stage
//! segmentation (nnU-Net's `resample_and_save`).
//!
//! The reference outputs are made by `tests/fixtures/inference/make_fixtures.py` and
//! `make_next_stage_fixture.py` (at the workspace root). The sliding-window reference runs nnU-Net's own padding, slicers, Gaussian
//! and mirroring with a float64 convolution and float64 accumulation; we run in f32, so logits
//! agree to about 1e-5.

// Tests report what they measured.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fs::File;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::PaddingConfig3d;
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::tensor::{Device, Tensor};
use ndarray::{Array1, Array3, Array4, ArrayD, Axis};
use ndarray_npy::{ReadNpyExt, ReadableElement};
use nnunet_core::io::{Image, ImageProperties, Reader, Segmentation};
use nnunet_core::network::{NamedTensor, Network, SegmentationModule};
use nnunet_dataset::{LabelValue, Labels};
use nnunet_inference::{
    ExportSettings, ExportedPrediction, LabelHandling, SlidingWindowSettings, compute_gaussian,
    compute_steps, logits_to_segmentation_in_input_geometry, predict_sliding_window,
    restrict_to_roi, visible_labels, write_prediction,
};
use nnunet_preprocessing::plans::Plans;
use nnunet_preprocessing::storage::CaseProperties;
use serde_json::Value;

/// The folder of the reference outputs.
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/inference")
}

/// A fixture array of any shape.
fn read_npy<T: ReadableElement>(name: &str) -> ArrayD<T> {
    let path = fixture_dir().join(name);
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ArrayD::<T>::read_npy(file).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A `[c, z, y, x]` fixture array.
fn read_npy4(name: &str) -> Array4<f32> {
    read_npy::<f32>(name)
        .into_dimensionality::<ndarray::Ix4>()
        .unwrap()
}

/// The logits of the export fixture `name`.
fn export_logits(name: &str) -> Array4<f32> {
    read_npy4(&format!("export_{name}_logits.npy"))
}

/// A fixture JSON file.
fn read_json(name: &str) -> Value {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

/// A JSON list of sizes.
fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|x| x.as_u64().expect("an integer") as usize)
        .collect()
}

/// Largest |a - b| / max(|b|, floor) over all elements; shapes must match.
fn max_rel_diff(a: &ArrayD<f32>, b: &ArrayD<f32>, floor: f64) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(&x, &y)| (x as f64 - y as f64).abs() / (y as f64).abs().max(floor))
        .fold(0.0, f64::max)
}

#[test]
fn gaussian_equals_reference() {
    let spec = read_json("steps.json");
    for case in spec["gaussians"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let tile = usizes(&case["tile"]);
        let sigma_scale = case["sigma_scale"].as_f64().unwrap();
        let ours = compute_gaussian(&tile, sigma_scale, 10.0).unwrap();
        let reference = read_npy::<f32>(&format!("gaussian_{name}.npy"));
        let diff = max_rel_diff(&ours, &reference, 0.0);
        println!("gaussian {name} {tile:?}: max relative difference {diff:e}");
        assert!(diff < 1e-6, "gaussian {name}: {diff:e}");
        let max = ours.iter().copied().fold(f32::MIN, f32::max);
        assert!((max - 10.0).abs() < 1e-6);
    }
}

#[test]
fn steps_equal_reference() {
    let spec = read_json("steps.json");
    let cases = spec["steps"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let image = usizes(&case["image"]);
        let tile = usizes(&case["tile"]);
        let step = case["step"].as_f64().unwrap();
        let expected: Vec<Vec<usize>> = case["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(usizes)
            .collect();
        let ours = compute_steps(&image, &tile, step).unwrap();
        assert_eq!(ours, expected, "image {image:?} tile {tile:?} step {step}");
    }
    assert!(compute_steps(&[10, 3], &[4, 4], 0.5).is_err());
    assert!(compute_steps(&[10], &[4], 1.5).is_err());
    assert!(compute_steps(&[10], &[4, 4], 0.5).is_err());
}

/// One 3x3x3 (or 1x3x3 for 2D) convolution with bias: a stand-in network with the reference's
/// weights.
#[derive(Module, Debug)]
struct TinyConv {
    conv: Conv3d,
}

impl SegmentationModule for TinyConv {
    fn segment(&self, input: Tensor<5>) -> Vec<Tensor<5>> {
        vec![self.conv.forward(input)]
    }

    fn set_deep_supervision(&mut self, _enabled: bool) {}
}

/// A [`TinyConv`] with the given weight `[out, in, kz, ky, kx]` and bias, `same` padding.
fn tiny_conv(weight: ArrayD<f32>, bias: ArrayD<f32>, device: &Device) -> TinyConv {
    let shape = weight.shape().to_vec();
    let kernel = [shape[2], shape[3], shape[4]];
    let padding = PaddingConfig3d::Explicit(kernel[0] / 2, kernel[1] / 2, kernel[2] / 2);
    let mut net = TinyConv {
        conv: Conv3dConfig::new([shape[1], shape[0]], kernel)
            .with_padding(padding)
            .with_bias(true)
            .init(device),
    };
    Network::import_parameters(
        &mut net,
        &[
            NamedTensor {
                name: "conv.weight".into(),
                shape,
                values: weight.iter().copied().collect(),
            },
            NamedTensor {
                name: "conv.bias".into(),
                shape: bias.shape().to_vec(),
                values: bias.iter().copied().collect(),
            },
        ],
    )
    .unwrap();
    net
}

/// The sliding-window fixture `name`: its input, the reference logits and the network.
fn sliding_window_case(name: &str, device: &Device) -> (Array4<f32>, ArrayD<f32>, TinyConv) {
    let input = read_npy4(&format!("sw_{name}_input.npy"));
    let reference = read_npy::<f32>(&format!("sw_{name}_logits.npy"));
    let net = tiny_conv(
        read_npy(&format!("sw_{name}_weight.npy")),
        read_npy(&format!("sw_{name}_bias.npy")),
        device,
    );
    (input, reference, net)
}

#[test]
fn sliding_window_logits_equal_reference() {
    let device = Device::flex();
    let cases = read_json("sw_cases.json");
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (input, reference, net) = sliding_window_case(name, &device);
        let patch_size = usizes(&case["patch_size"]);
        for tiles_per_batch in [1, 3] {
            let settings = SlidingWindowSettings {
                patch_size: patch_size.clone(),
                step_size: case["step_size"].as_f64().unwrap(),
                use_gaussian: case["use_gaussian"].as_bool().unwrap(),
                mirror_axes: usizes(&case["mirror_axes"]),
                tiles_per_batch,
            };
            let calls = std::cell::RefCell::new(Vec::new());
            let ours =
                predict_sliding_window(&net, input.view(), &settings, &device, &|done, total| {
                    calls.borrow_mut().push((done, total))
                })
                .unwrap();
            let calls = calls.into_inner();
            let (_, total) = *calls.last().unwrap();
            assert_eq!(
                calls.last().unwrap().0,
                total,
                "{name}: progress ends at the total"
            );
            assert_eq!(calls.len(), total.div_ceil(tiles_per_batch));
            let diff = max_rel_diff(&ours.into_dyn(), &reference, 1.0);
            println!(
                "sliding window {name} (patch {patch_size:?}, {total} tiles, {tiles_per_batch} per batch): \
                 max difference {diff:e}"
            );
            assert!(diff < 1e-5, "{name}: {diff:e}");
        }
    }
}

#[test]
fn mirroring_and_gaussian_change_the_result() {
    // Guards against settings that are silently ignored: the overlap case predicts differently
    // without mirroring and without the Gaussian.
    let device = Device::flex();
    let name = "overlap3d";
    let (input, reference, net) = sliding_window_case(name, &device);
    let base = SlidingWindowSettings {
        patch_size: vec![6, 8, 8],
        step_size: 0.5,
        use_gaussian: true,
        mirror_axes: vec![0, 1, 2],
        tiles_per_batch: 2,
    };
    for changed in [
        SlidingWindowSettings {
            mirror_axes: vec![],
            ..base.clone()
        },
        SlidingWindowSettings {
            use_gaussian: false,
            ..base.clone()
        },
    ] {
        let ours = predict_sliding_window(&net, input.view(), &changed, &device, &|_, _| {})
            .unwrap()
            .into_dyn();
        assert!(max_rel_diff(&ours, &reference, 1.0) > 1e-3);
    }
}

#[test]
fn bad_networks_and_inputs_are_errors() {
    let device = Device::flex();
    let net = tiny_conv(
        ArrayD::zeros(ndarray::IxDyn(&[3, 2, 3, 3, 3])),
        ArrayD::zeros(ndarray::IxDyn(&[3])),
        &device,
    );
    let settings = SlidingWindowSettings::new(vec![4, 4, 4]);
    // an empty case
    let empty = Array4::<f32>::zeros((2, 0, 4, 4));
    assert!(predict_sliding_window(&net, empty.view(), &settings, &device, &|_, _| {}).is_err());
    let bad = SlidingWindowSettings {
        mirror_axes: vec![3],
        ..settings.clone()
    };
    let data = Array4::<f32>::zeros((2, 4, 4, 4));
    assert!(predict_sliding_window(&net, data.view(), &bad, &device, &|_, _| {}).is_err());
    // a network that changes the spatial size (a convolution without padding)
    let shrinks = TinyConv {
        conv: Conv3dConfig::new([2, 3], [3, 3, 3]).init(&device),
    };
    let e = predict_sliding_window(&shrinks, data.view(), &settings, &device, &|_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("spatial"), "{e}");
}

/// One export fixture.
struct ExportCase {
    name: String,
    settings: ExportSettings,
    properties: CaseProperties,
}

/// The export fixtures: plans, labels and case properties.
fn export_cases() -> Vec<ExportCase> {
    let cases = read_json("export_cases.json");
    cases
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let plans = Plans::from_value(case["plans"].clone(), Path::new("plans.json")).unwrap();
            let configuration = plans
                .configuration(case["configuration"].as_str().unwrap())
                .unwrap();
            let dataset = &case["dataset"];
            let entries = dataset["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::Array(a) => {
                            LabelValue::Region(a.iter().map(|x| x.as_i64().unwrap()).collect())
                        }
                        other => LabelValue::Label(other.as_i64().unwrap()),
                    };
                    (k.clone(), value)
                })
                .collect();
            let order = dataset.get("regions_class_order").map(|o| {
                o.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect()
            });
            let labels = Labels::new(entries, order).unwrap();
            ExportCase {
                name: case["name"].as_str().unwrap().to_string(),
                settings: ExportSettings::new(&plans, &configuration, &labels).unwrap(),
                properties: serde_json::from_value(case["properties"].clone()).unwrap(),
            }
        })
        .collect()
}

#[test]
fn export_equals_reference() {
    let cases = export_cases();
    assert_eq!(cases.len(), 3);
    for case in &cases {
        let name = &case.name;
        let logits = export_logits(name);
        let seg_ref = read_npy::<i16>(&format!("export_{name}_seg.npy"));
        let seg_p_ref = read_npy::<i16>(&format!("export_{name}_seg_from_probabilities.npy"));
        let prob_ref = read_npy::<f32>(&format!("export_{name}_probabilities.npy"));

        let plain = logits_to_segmentation_in_input_geometry(
            logits.view(),
            &case.properties,
            &case.settings,
            false,
        )
        .unwrap();
        assert!(plain.probabilities.is_none());
        assert_eq!(plain.segmentation.clone().into_dyn(), seg_ref, "{name}");

        let with = logits_to_segmentation_in_input_geometry(
            logits.view(),
            &case.properties,
            &case.settings,
            true,
        )
        .unwrap();
        assert_eq!(with.segmentation.clone().into_dyn(), seg_p_ref, "{name}");
        let probabilities = with.probabilities.unwrap().into_dyn();
        let diff = max_rel_diff(&probabilities, &prob_ref, 1.0);
        println!("export {name}: probabilities max difference {diff:e}");
        assert!(diff < 1e-5, "{name}: {diff:e}");
    }
}

#[test]
fn export_rejects_inconsistent_inputs() {
    let cases = export_cases();
    let case = &cases[0];
    let logits = export_logits(&case.name);
    // wrong number of channels
    let two = logits.slice(ndarray::s![0..2, .., .., ..]);
    assert!(
        logits_to_segmentation_in_input_geometry(two, &case.properties, &case.settings, false)
            .is_err()
    );
    // a crop that does not fit the shape before cropping
    let mut props = case.properties.clone();
    props.bbox_used_for_cropping[0][1] += 10;
    assert!(
        logits_to_segmentation_in_input_geometry(logits.view(), &props, &case.settings, false)
            .is_err()
    );
    assert_eq!(
        case.settings.labels,
        LabelHandling::Classes { num_classes: 3 }
    );
}

/// A reader that keeps what it is asked to write.
#[derive(Default)]
struct RecordingReader {
    written: std::sync::Mutex<Vec<(PathBuf, Array3<i16>, ImageProperties)>>,
}

impl Reader for RecordingReader {
    fn file_endings(&self) -> &[&str] {
        &[".rec"]
    }
    fn read_images(&self, _files: &[&Path]) -> nnunet_core::Result<Image> {
        Err(nnunet_core::Error::Invalid("not readable".into()))
    }
    fn read_segmentation(&self, _file: &Path) -> nnunet_core::Result<Segmentation> {
        Err(nnunet_core::Error::Invalid("not readable".into()))
    }
    fn write_segmentation(
        &self,
        segmentation: ndarray::ArrayView3<'_, i16>,
        file: &Path,
        properties: &ImageProperties,
    ) -> nnunet_core::Result<()> {
        self.written.lock().unwrap().push((
            file.to_path_buf(),
            segmentation.to_owned(),
            properties.clone(),
        ));
        Ok(())
    }
}

/// The stored (uncompressed) zip entries of a file: name and bytes, checked against the CRC.
fn stored_zip_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
    let end = bytes.len() - 22;
    assert_eq!(u32_at(end), 0x0605_4b50, "end of central directory");
    let entries = u16_at(end + 10);
    let mut at = u32_at(end + 16);
    let mut out = Vec::new();
    for _ in 0..entries {
        assert_eq!(u32_at(at), 0x0201_4b50, "central directory entry");
        assert_eq!(u16_at(at + 10), 0, "stored");
        let crc = u32_at(at + 16) as u32;
        let size = u32_at(at + 24);
        let (name_len, extra_len, comment_len) =
            (u16_at(at + 28), u16_at(at + 30), u16_at(at + 32));
        let local = u32_at(at + 42);
        let name = String::from_utf8(bytes[at + 46..at + 46 + name_len].to_vec()).unwrap();
        assert_eq!(u32_at(local), 0x0403_4b50, "local header");
        let data_start = local + 30 + u16_at(local + 26) + u16_at(local + 28);
        let data = bytes[data_start..data_start + size].to_vec();
        // CRC-32, bitwise
        let mut c = !0u32;
        for &b in &data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        assert_eq!(!c, crc, "checksum of {name}");
        out.push((name, data));
        at += 46 + name_len + extra_len + comment_len;
    }
    out
}

#[test]
fn prediction_is_written_with_geometry_and_probabilities() {
    let cases = export_cases();
    let case = &cases[1];
    let logits = export_logits(&case.name);
    let prediction: ExportedPrediction = logits_to_segmentation_in_input_geometry(
        logits.view(),
        &case.properties,
        &case.settings,
        true,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reader = RecordingReader::default();
    let mut properties = case.properties.clone();
    properties.image.origin = vec![1.0, 2.0, 3.0];
    let out = dir.path().join("sub/case_007");
    let seg_path = write_prediction(&prediction, &properties, &reader, &out, ".rec").unwrap();
    assert_eq!(seg_path, dir.path().join("sub/case_007.rec"));
    let written = reader.written.into_inner().unwrap();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].0, seg_path);
    assert_eq!(written[0].1, prediction.segmentation);
    assert_eq!(written[0].2, properties.image);

    let npz = std::fs::read(dir.path().join("sub/case_007.npz")).unwrap();
    let entries = stored_zip_entries(&npz);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, "probabilities.npy");
    let stored = Array4::<f32>::read_npy(entries[0].1.as_slice()).unwrap();
    assert_eq!(Some(stored), prediction.probabilities);
    let json = std::fs::read_to_string(dir.path().join("sub/case_007.json")).unwrap();
    let back: CaseProperties = serde_json::from_str(&json).unwrap();
    assert_eq!(back, properties);

    // without probabilities only the segmentation is written
    let plain = ExportedPrediction {
        probabilities: None,
        ..prediction
    };
    let reader = RecordingReader::default();
    write_prediction(
        &plain,
        &properties,
        &reader,
        &dir.path().join("case_008"),
        ".rec",
    )
    .unwrap();
    assert!(!dir.path().join("case_008.npz").exists());
    assert!(!dir.path().join("case_008.json").exists());
    assert_eq!(reader.written.into_inner().unwrap().len(), 1);
}

#[test]
fn visible_labels_map_binary_to_255() {
    let seg = Array3::from_shape_vec((1, 2, 2), vec![0i16, 1, 1, 0]).unwrap();
    let v = visible_labels(seg.view(), 1).unwrap();
    assert_eq!(v.iter().copied().collect::<Vec<_>>(), vec![0, 255, 255, 0]);
    let labels = Array1::from(vec![0i16, 1, 2, 3, 4])
        .into_shape_with_order((1, 1, 5))
        .unwrap();
    let v = visible_labels(labels.view(), 4).unwrap();
    assert_eq!(
        v.index_axis(Axis(0), 0).row(0).to_vec(),
        vec![0, 64, 128, 191, 255]
    );
}

#[test]
fn outside_the_region_of_interest_is_background() {
    let roi = Array3::from_shape_vec((1, 1, 3), vec![1i16, 0, 5]).unwrap();
    let mut prediction = ExportedPrediction {
        segmentation: Array3::from_shape_vec((1, 1, 3), vec![2i16, 1, 1]).unwrap(),
        probabilities: Some(Array4::from_elem((3, 1, 1, 3), 0.3)),
    };
    let classes = LabelHandling::Classes { num_classes: 3 };
    restrict_to_roi(&mut prediction, roi.view(), &classes).unwrap();
    assert_eq!(prediction.segmentation.as_slice().unwrap(), &[2, 0, 1]);
    let p = prediction.probabilities.as_ref().unwrap();
    assert_eq!(
        (p[[0, 0, 0, 1]], p[[1, 0, 0, 1]], p[[2, 0, 0, 1]]),
        (1.0, 0.0, 0.0)
    );
    assert_eq!(p[[1, 0, 0, 0]], 0.3);
    let regions = LabelHandling::Regions {
        regions_class_order: vec![1, 2, 3],
    };
    restrict_to_roi(&mut prediction, roi.view(), &regions).unwrap();
    assert_eq!(
        prediction.probabilities.as_ref().unwrap()[[0, 0, 0, 1]],
        0.0
    );
    let small = Array3::<i16>::zeros((1, 1, 2));
    let err = restrict_to_roi(&mut prediction, small.view(), &classes)
        .unwrap_err()
        .to_string();
    assert!(err.contains("same shape"), "{err}");
}

/// What a `3d_lowres` validation stores for the cascade: the logits on the next stage's grid,
/// as nnU-Net's `resample_and_save` (make_next_stage_fixture.py).
#[test]
fn next_stage_segmentation_equals_reference() {
    let cases = export_cases();
    let targets = read_json("next_stage_cases.json");
    let targets = targets.as_array().unwrap();
    assert_eq!(targets.len(), cases.len());
    for (case, target) in cases.iter().zip(targets) {
        let name = &case.name;
        assert_eq!(target["name"].as_str().unwrap(), name);
        let shape: Vec<usize> = target["target_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let logits = export_logits(name);
        let tf = case.settings.transpose_forward;
        let spacing_transposed = tf.map(|i| case.properties.spacing[i]);
        let seg = nnunet_inference::cascade::segmentation_for_next_stage(
            logits.view(),
            [shape[0], shape[1], shape[2]],
            spacing_transposed,
            &case.settings,
        )
        .unwrap();
        let expected = read_npy::<i16>(&format!("next_stage_{name}.npy"));
        assert_eq!(seg.into_dyn(), expected, "{name}");
    }
}
