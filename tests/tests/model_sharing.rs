//! Sharing models: a model trained with nnU-Net v2.8.1 (PyTorch, `tests/fixtures/torch_model`,
//! made by its `make_fixture.py`) is imported with `nnunet import-torch-checkpoint` and predicts
//! what the reference predicted; a checkpoint whose pickle would run code, and one whose weights
//! do not fit the plans, are refused; `export-model` then `install-model` into a fresh results
//! folder reproduces the model byte for byte; a ZIP file with an unsafe entry installs nothing.

// Tests report what they measured.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nnunet_tests::{copy_dir, dice, io_args, nnunet, run_fails, run_ok, write_json};

const MODEL: &str = "nnUNetTrainer__nnUNetPlansTiny__2d";
const DATASET: &str = "Dataset001_Shapes";
const CASES: [&str; 2] = ["case_100", "case_101"];
/// Largest difference allowed between our probabilities and the reference's.
const MAX_PROBABILITY_DIFFERENCE: f32 = 2e-3;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/torch_model")
}

/// Runs `nnunet args` with `nnUNet_results` set to `results`, which must succeed; returns stdout.
fn nnunet_ok(results: &Path, args: &[&str]) -> String {
    run_ok(nnunet().env("nnUNet_results", results).args(args))
}

/// Runs `nnunet args` with `nnUNet_results` set to `results`, which must fail; returns stderr.
fn nnunet_fails(results: &Path, args: &[&str]) -> String {
    run_fails(nnunet().env("nnUNet_results", results).args(args))
}

/// Imports the fixture into `results/Dataset001_Shapes/<MODEL>`; returns the model folder.
fn import_fixture(results: &Path) -> PathBuf {
    let target = results.join(DATASET).join(MODEL);
    let source = fixture().join(MODEL);
    nnunet_ok(results, &import_args(&source, &target));
    target
}

/// The arguments of `nnunet import-torch-checkpoint` from `source` into `target`.
fn import_args<'a>(source: &'a Path, target: &'a Path) -> Vec<&'a str> {
    io_args("import-torch-checkpoint", source, target, &[])
}

/// Predicts the fixture's test images into `output` with fold 0 of `model` (and `extra`), in
/// fp32, with `nnUNet_results` set to `results`.
fn predict_fixture(results: &Path, model: &Path, output: &Path, extra: &[&str]) {
    let images = fixture().join("imagesTs");
    let model = ["-m", model.to_str().unwrap(), "-f", "0"];
    let mut args = io_args("predict", &images, output, &model);
    args.extend_from_slice(extra);
    args.extend(["--disable-progress-bar", "-precision", "fp32"]);
    nnunet_ok(results, &args);
}

/// Every file below `root`, by relative path, with its bytes.
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    if root.is_dir() {
        walk(root, root, &mut out);
    }
    out
}

/// A little-endian float32 `.npy` array (C order) found at the start of `bytes` or, for an
/// uncompressed `.npz`, after its ZIP header: shape and values.
fn read_npy_f32(bytes: &[u8], what: &str) -> (Vec<usize>, Vec<f32>) {
    let start = bytes
        .windows(6)
        .position(|w| w == b"\x93NUMPY")
        .unwrap_or_else(|| panic!("{what}: no .npy array"));
    let b = &bytes[start..];
    let (header_len, header_start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        _ => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
    };
    let header = std::str::from_utf8(&b[header_start..header_start + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{what}: {header}");
    assert!(
        header.contains("'fortran_order': False"),
        "{what}: {header}"
    );
    let shape_text = header.split("'shape': (").nth(1).unwrap();
    let shape: Vec<usize> = shape_text[..shape_text.find(')').unwrap()]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let n: usize = shape.iter().product();
    let data = &b[header_start + header_len..];
    let values = data[..4 * n]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, values)
}

fn read_labels(path: &Path) -> (u32, u32, Vec<u8>) {
    let image = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_luma8();
    (image.width(), image.height(), image.into_raw())
}

#[test]
fn imported_torch_model_predicts_as_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let model = import_fixture(&results);
    for name in ["plans.json", "dataset.json", "dataset_fingerprint.json"] {
        assert_eq!(
            std::fs::read(model.join(name)).unwrap(),
            std::fs::read(fixture().join(MODEL).join(name)).unwrap(),
            "{name} is not copied as it is"
        );
    }
    assert!(model.join("fold_0/checkpoint_final.safetensors").is_file());

    let output = tmp.path().join("prediction");
    predict_fixture(&results, &model, &output, &["--save_probabilities"]);
    let mut worst = 0.0f32;
    for case in CASES {
        let (w, h, ours) = read_labels(&output.join(format!("{case}.png")));
        let (rw, rh, reference) = read_labels(&fixture().join(format!("reference/{case}.png")));
        assert_eq!((w, h), (rw, rh), "{case}: segmentation size");
        for label in [1u8, 2] {
            assert!(
                reference.contains(&label),
                "{case}: the reference segments no label {label}; regenerate the fixture"
            );
            let d = dice(&ours, &reference, label);
            assert!(d >= 0.99, "{case}: Dice of label {label} is {d}");
        }
        let (shape, ours) = read_npy_f32(
            &std::fs::read(output.join(format!("{case}.npz"))).unwrap(),
            case,
        );
        let (ref_shape, reference) = read_npy_f32(
            &std::fs::read(fixture().join(format!("reference/{case}_probabilities.npy"))).unwrap(),
            case,
        );
        assert_eq!(shape, ref_shape, "{case}: probabilities shape");
        let difference = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        worst = worst.max(difference);
    }
    eprintln!("largest probability difference to the reference: {worst:e}");
    // `predict -m` on the nnunetv2 folder itself converts it on the fly: same segmentations.
    let direct = tmp.path().join("prediction_direct");
    predict_fixture(&results, &fixture().join(MODEL), &direct, &[]);
    for case in CASES {
        assert_eq!(
            read_labels(&direct.join(format!("{case}.png"))),
            read_labels(&output.join(format!("{case}.png"))),
            "{case}: predicting from the nnunetv2 folder differs from the imported model"
        );
    }
    assert!(
        worst <= MAX_PROBABILITY_DIFFERENCE,
        "probabilities differ from the reference by up to {worst}"
    );
}

#[test]
fn a_checkpoint_that_would_run_code_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("torch").join(MODEL);
    copy_dir(&fixture().join(MODEL), &source);
    std::fs::copy(
        fixture().join("malicious/checkpoint_final.pth"),
        source.join("fold_0/checkpoint_final.pth"),
    )
    .unwrap();
    let target = tmp.path().join("imported");
    let stderr = nnunet_fails(tmp.path(), &import_args(&source, &target));
    assert!(
        stderr.contains("checkpoint_final.pth") && stderr.contains("system"),
        "{stderr}"
    );
    assert!(
        !target.exists(),
        "a refused import wrote {}",
        target.display()
    );
}

#[test]
fn weights_that_do_not_fit_the_plans_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("torch").join(MODEL);
    copy_dir(&fixture().join(MODEL), &source);
    let plans_path = source.join("plans.json");
    let mut plans: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&plans_path).unwrap()).unwrap();
    let features =
        &mut plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["features_per_stage"];
    let doubled: Vec<u64> = features
        .as_array()
        .unwrap()
        .iter()
        .map(|f| 2 * f.as_u64().unwrap())
        .collect();
    *features = serde_json::json!(doubled);
    write_json(&plans_path, &plans);
    let target = tmp.path().join("imported");
    let stderr = nnunet_fails(tmp.path(), &import_args(&source, &target));
    assert!(
        stderr.contains("checkpoint_final.pth") && stderr.contains("shape"),
        "{stderr}"
    );
    assert!(!target.exists());
}

#[test]
fn export_then_install_reproduces_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let model = import_fixture(&results);
    std::fs::create_dir_all(model.join("fold_0/validation")).unwrap();
    std::fs::write(
        model.join("fold_0/validation/summary.json"),
        b"{\"foreground_mean\": {\"Dice\": 0.9}}\n",
    )
    .unwrap();
    std::fs::write(
        model.join("fold_0/validation/case_000.png"),
        b"not exported",
    )
    .unwrap();
    let zip = tmp.path().join("model.zip");
    nnunet_ok(
        &results,
        &[
            "export-model",
            "-d",
            "1",
            "-c",
            "2d",
            "-tr",
            "nnUNetTrainer",
            "-p",
            "nnUNetPlansTiny",
            "-f",
            "0",
            "-chk",
            "checkpoint_final",
            "-o",
            zip.to_str().unwrap(),
        ],
    );
    let fresh = tmp.path().join("fresh");
    nnunet_ok(&fresh, &["install-model", zip.to_str().unwrap()]);
    let mut expected = tree(&results);
    expected.remove(&PathBuf::from(format!(
        "{DATASET}/{MODEL}/fold_0/validation/case_000.png"
    )));
    let installed = tree(&fresh);
    assert_eq!(
        installed.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert!(
        installed == expected,
        "installed files differ from the exported ones"
    );

    // Installing again: refused without --force, and nothing changes; replaced with it.
    let summary = fresh.join(format!("{DATASET}/{MODEL}/fold_0/validation/summary.json"));
    std::fs::write(&summary, b"changed").unwrap();
    let stderr = nnunet_fails(&fresh, &["install-model", zip.to_str().unwrap()]);
    assert!(
        stderr.contains("exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&summary).unwrap(), b"changed");
    nnunet_ok(&fresh, &["install-model", zip.to_str().unwrap(), "--force"]);
    assert!(tree(&fresh) == expected);
}

/// The CRC-32 of `data`, as ZIP stores it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

/// A ZIP file of stored entries `(name, data, unix mode)`, written by hand so that any name can
/// be put in it.
fn zip_file(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data, mode) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed
            v.extend_from_slice(&0u16.to_le_bytes()); // flags
            v.extend_from_slice(&0u16.to_le_bytes()); // stored
            v.extend_from_slice(&0u16.to_le_bytes()); // time
            v.extend_from_slice(&33u16.to_le_bytes()); // date 1980-01-01
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: unix
        common(&mut central);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&(mode << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

#[test]
fn unsafe_zip_entries_install_nothing() {
    const FILE: u32 = 0o100644;
    const LINK: u32 = 0o120777;
    for (bad_name, bad_mode, why) in [
        ("../evil", FILE, "'..'"),
        ("Dataset001_X/../../evil", FILE, "'..'"),
        ("/tmp/nnunet_rs_install_model_evil", FILE, "absolute"),
        ("Dataset001_X/link", LINK, "symbolic link"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let results = tmp.path().join("results");
        let zip = tmp.path().join("model.zip");
        std::fs::write(
            &zip,
            zip_file(&[
                ("Dataset001_X/ok.json", b"{}", FILE),
                (bad_name, b"/etc/passwd", bad_mode),
            ]),
        )
        .unwrap();
        let stderr = nnunet_fails(&results, &["install-model", zip.to_str().unwrap()]);
        assert!(
            stderr.contains(bad_name) && stderr.contains(why),
            "{bad_name}: {stderr}"
        );
        assert!(
            tree(&results).is_empty(),
            "{bad_name}: something was installed"
        );
        assert!(!tmp.path().join("evil").exists());
        assert!(!Path::new("/tmp/nnunet_rs_install_model_evil").exists());
    }
    // The same writer's well-formed file installs.
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let zip = tmp.path().join("model.zip");
    std::fs::write(&zip, zip_file(&[("Dataset001_X/ok.json", b"{}", 0o100644)])).unwrap();
    nnunet_ok(&results, &["install-model", zip.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(results.join("Dataset001_X/ok.json")).unwrap(),
        b"{}"
    );
}
