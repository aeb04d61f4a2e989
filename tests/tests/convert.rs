//! Conversion end to end: an MSD task and folders of images and masks become nnU-Net v2 datasets
//! that `nnunet verify` accepts; called through nnU-Net's command name too.

use std::path::{Path, PathBuf};

use ndarray::ShapeBuilder;
use nnunet_tests::{
    convert_msd, msd_task, nifti_header, nifti_writer, nnunet, nnunet_bin, run, run_fails, run_ok,
};

/// Runs `nnunet verify -d ID` on `raw`, which must accept the converted dataset.
fn verify(raw: &Path, id: &str) {
    run_ok(nnunet().env("nnUNet_raw", raw).args(["verify", "-d", id]));
}

/// A tiny MSD task: two 4D two-channel cases, labels 0..2, one test image.
fn make_msd_task(root: &Path) -> PathBuf {
    let task = msd_task(root, "Task05_Prostate");
    let header = nifti_header([0.6, 0.6, 3.6], [5.0, -3.0, 1.0]);
    for (dir, case) in [
        ("imagesTr", "prostate_00"),
        ("imagesTr", "prostate_01"),
        ("imagesTs", "prostate_02"),
    ] {
        let image = ndarray::Array4::from_shape_fn((8, 7, 5, 2).f(), |(x, y, z, c)| {
            (x + y + z + 50 * c) as f32
        });
        let path = task.join(dir).join(format!("{case}.nii.gz"));
        nifti_writer(&path, &header).write_nifti(&image).unwrap();
        if dir == "imagesTr" {
            let label = ndarray::Array3::from_shape_fn((8, 7, 5).f(), |(x, _, _)| (x / 3) as u8);
            let path = task.join("labelsTr").join(format!("{case}.nii.gz"));
            nifti_writer(&path, &header).write_nifti(&label).unwrap();
        }
    }
    std::fs::write(
        task.join("dataset.json"),
        r#"{"name": "PROSTATE", "description": "Prostate transitional zone and peripheral zone",
            "tensorImageSize": "4D", "modality": {"0": "T2", "1": "ADC"},
            "labels": {"0": "background", "1": "PZ", "2": "TZ"},
            "numTraining": 2, "numTest": 1,
            "training": [{"image": "./imagesTr/prostate_00.nii.gz", "label": "./labelsTr/prostate_00.nii.gz"},
                         {"image": "./imagesTr/prostate_01.nii.gz", "label": "./labelsTr/prostate_01.nii.gz"}],
            "test": ["./imagesTs/prostate_02.nii.gz"]}"#,
    )
    .unwrap();
    task
}

#[test]
fn msd_task_converts_to_a_verified_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let task = make_msd_task(tmp.path());
    let raw = tmp.path().join("raw");
    let stdout = run_ok(&mut convert_msd(&raw, &task));
    assert!(stdout.contains("Dataset005_Prostate"), "{stdout}");
    let ds = raw.join("Dataset005_Prostate");
    for f in [
        "imagesTr/prostate_00_0000.nii.gz",
        "imagesTr/prostate_00_0001.nii.gz",
        "imagesTr/prostate_01_0001.nii.gz",
        "imagesTs/prostate_02_0001.nii.gz",
        "labelsTr/prostate_01.nii.gz",
    ] {
        assert!(ds.join(f).is_file(), "{f} missing");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ds.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(
        json["channel_names"],
        serde_json::json!({"0": "T2", "1": "ADC"})
    );
    assert_eq!(json["labels"]["TZ"], 2);
    assert_eq!(json["file_ending"], ".nii.gz");

    verify(&raw, "5");

    // A second conversion to the same ID is refused and leaves the first intact.
    let stderr = run_fails(&mut convert_msd(&raw, &task));
    assert!(
        stderr.contains("already taken by Dataset005_Prostate"),
        "{stderr}"
    );
    assert!(ds.join("imagesTr/prostate_00_0000.nii.gz").is_file());
}

#[test]
fn nnunet_command_name_runs_the_matching_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let task = make_msd_task(tmp.path());
    let link = tmp.path().join("nnUNetv2_convert_MSD_dataset");
    std::os::unix::fs::symlink(nnunet_bin(), &link).unwrap();
    let raw = tmp.path().join("raw");
    let mut cmd = std::process::Command::new(&link);
    let (out, _, stderr) = run(cmd
        .env("nnUNet_raw", &raw)
        .arg("-i")
        .arg(&task)
        .args(["-overwrite_id", "123"]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        raw.join("Dataset123_Prostate/imagesTr/prostate_01_0000.nii.gz")
            .is_file()
    );
}

#[test]
fn folders_of_pngs_convert_to_a_verified_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = tmp.path().join("cases");
    for i in 0..4 {
        let dir = cases.join(i.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        image::RgbImage::from_fn(16, 12, |x, y| image::Rgb([x as u8 * 9, y as u8 * 7, 100]))
            .save(dir.join("image.png"))
            .unwrap();
        image::GrayImage::from_fn(16, 12, |x, y| {
            image::Luma([if x + y > 12 { 255 } else { 0 }])
        })
        .save(dir.join("label.png"))
        .unwrap();
    }
    let raw = tmp.path().join("raw");
    let (out, stdout, stderr) = run(nnunet()
        .env("nnUNet_raw", &raw)
        .args(["convert-folder", "-i"])
        .arg(&cases)
        .args(["-d", "501", "-n", "Cells", "--test-cases", "3"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("only 0 and 255"), "{stderr}");
    assert!(
        stdout.contains("3 training case(s), 1 test case(s)"),
        "{stdout}"
    );
    verify(&raw, "501");
}
