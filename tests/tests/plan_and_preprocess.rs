//! `nnunet plan-and-preprocess` end to end on datasets made by `convert-folder` and `convert-msd`:
//! the fingerprint, plans and preprocessed cases are written where nnU-Net writes them, a re-run
//! keeps finished cases, an interrupted run finishes on the next run, a broken case stops with its
//! name, and `move-plans` carries plans to another dataset.

use std::path::Path;

use ndarray::ShapeBuilder;
use nnunet_tests::{
    Folders, convert_msd, copy_dir, msd_task, nifti_header, nifti_writer, run, run_fails, run_ok,
};
use serde_json::Value;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Four cells images (RGB PNG, 64x48) with 0/255 masks, converted with `convert-folder`.
fn png_dataset(f: &Folders) {
    let cases = f.root.join("cases");
    for i in 0..4u32 {
        let dir = cases.join(i.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([
                (x * 3 + i * 7) as u8,
                (y * 5) as u8,
                ((x * y + i) % 200) as u8,
            ])
        })
        .save(dir.join("image.png"))
        .unwrap();
        image::GrayImage::from_fn(64, 48, |x, y| {
            let inside = (x as i32 - 30).pow(2) + (y as i32 - 20 - i as i32).pow(2) < 100;
            image::Luma([if inside { 255 } else { 0 }])
        })
        .save(dir.join("label.png"))
        .unwrap();
    }
    let convert = ["-d", "601", "-n", "Cells"];
    run_ok(
        f.command()
            .args(["convert-folder", "-i"])
            .arg(&cases)
            .args(convert),
    );
}

/// A two-channel MSD task (4D NIfTI, 3 cases of 24x20x10), converted with `convert-msd`.
fn msd_dataset(f: &Folders) {
    let task = msd_task(&f.root, "Task07_Organ");
    let header = nifti_header([0.8, 0.8, 2.5], [0.0; 3]);
    let mut training = Vec::new();
    for case in 0..3usize {
        let name = format!("organ_{case:02}");
        let image = ndarray::Array4::from_shape_fn((24, 20, 10, 2).f(), |(x, y, z, c)| {
            let body = (x as f32 - 12.0).powi(2) + (y as f32 - 10.0).powi(2) < 64.0;
            if body {
                (100 + (x * 3 + y * 5 + z * 7 + case) % 13 + 40 * c) as f32
            } else {
                0.0
            }
        });
        let path = task.join(format!("imagesTr/{name}.nii.gz"));
        nifti_writer(&path, &header).write_nifti(&image).unwrap();
        let label = ndarray::Array3::from_shape_fn((24, 20, 10).f(), |(x, y, z)| {
            u8::from((x as i32 - 12).pow(2) + (y as i32 - 9).pow(2) < 10 && (2..8).contains(&z))
        });
        let path = task.join(format!("labelsTr/{name}.nii.gz"));
        nifti_writer(&path, &header).write_nifti(&label).unwrap();
        training.push(format!(
            r#"{{"image": "./imagesTr/{name}.nii.gz", "label": "./labelsTr/{name}.nii.gz"}}"#
        ));
    }
    std::fs::write(
        task.join("dataset.json"),
        format!(
            r#"{{"name": "ORGAN", "modality": {{"0": "T1", "1": "T2"}},
                "labels": {{"0": "background", "1": "organ"}}, "numTraining": 3,
                "training": [{}], "test": []}}"#,
            training.join(",")
        ),
    )
    .unwrap();
    run_ok(&mut convert_msd(&f.raw, &task));
}

/// Runs `nnunet plan-and-preprocess -d DATASET --verify_dataset_integrity -np 2` and `extra` on
/// `f`'s tree, which must succeed; returns stdout.
fn plan_and_preprocess(f: &Folders, dataset: &str, extra: &[&str]) -> String {
    run_ok(
        f.command()
            .args([
                "plan-and-preprocess",
                "-d",
                dataset,
                "--verify_dataset_integrity",
                "-np",
                "2",
            ])
            .args(extra),
    )
}

/// The cases stored in a preprocessed configuration folder, checked to be complete.
fn stored_cases(folder: &Path) -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    cases.sort();
    for case in &cases {
        for file in [format!("{case}.npy"), format!("{case}_seg.npy")] {
            let bytes = std::fs::read(folder.join(&file)).unwrap();
            assert!(bytes.starts_with(b"\x93NUMPY"), "{file} is not a .npy file");
        }
        let props = read_json(&folder.join(format!("{case}.json")));
        assert!(props["bbox_used_for_cropping"].is_array(), "{props}");
        assert!(props["class_locations"].is_object(), "{props}");
    }
    cases
}

#[test]
fn png_folder_dataset_is_planned_and_preprocessed() {
    let f = Folders::new();
    png_dataset(&f);
    let stdout = plan_and_preprocess(&f, "601", &[]);
    let ds = f.pre.join("Dataset601_Cells");
    let fingerprint = read_json(&ds.join("dataset_fingerprint.json"));
    assert_eq!(fingerprint["spacings"].as_array().unwrap().len(), 4);
    assert_eq!(
        fingerprint["shapes_after_crop"][0],
        serde_json::json!([1, 48, 64])
    );
    let plans = read_json(&ds.join("nnUNetPlans.json"));
    assert_eq!(plans["image_reader_writer"], "NaturalImage2DIO");
    let configs: Vec<&String> = plans["configurations"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(configs, ["2d"], "a 2D dataset gets only 2d");
    assert!(ds.join("dataset.json").is_file());
    assert_eq!(
        stored_cases(&ds.join("nnUNetPlans_2d")),
        ["0", "1", "2", "3"]
    );
    assert!(ds.join("gt_segmentations/0.png").is_file());
    assert!(stdout.contains("no configuration '3d_fullres'"), "{stdout}");

    // A second run keeps everything.
    let stdout = plan_and_preprocess(&f, "601", &[]);
    assert!(stdout.contains("fingerprint exists, kept"), "{stdout}");
    assert!(stdout.contains("0 cases preprocessed, 4 kept"), "{stdout}");

    // An interrupted run (a case without its properties) is finished by the next one.
    std::fs::remove_file(ds.join("nnUNetPlans_2d/2.json")).unwrap();
    std::fs::write(ds.join("nnUNetPlans_2d/3.npy.partial"), b"half").unwrap();
    let stdout = plan_and_preprocess(&f, "601", &[]);
    assert!(stdout.contains("1 cases preprocessed, 3 kept"), "{stdout}");
    assert!(!ds.join("nnUNetPlans_2d/3.npy.partial").exists());
    stored_cases(&ds.join("nnUNetPlans_2d"));

    // The training data pipeline runs on the preprocessed cases and reports its speed; the
    // augmented samples can be looked at.
    let pngs = f.root.join("augmented");
    let (out, stdout, stderr) = run(f
        .command()
        .args([
            "benchmark-dataloader",
            "-d",
            "601",
            "-c",
            "2d",
            "-n",
            "4",
            "--workers",
            "2",
        ])
        .arg("--debug-png")
        .arg(&pngs));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with("ms/batch") && last.contains(" batches/s, "),
        "{stdout}"
    );
    let written = std::fs::read_dir(&pngs).unwrap().count();
    assert!(written >= 4, "{written} debug images");
    let args = ["benchmark-dataloader", "-d", "601", "-c", "3d_fullres"];
    let stderr = run_fails(f.command().args(args));
    assert!(stderr.contains("no configuration '3d_fullres'"), "{stderr}");
}

#[test]
fn msd_dataset_is_planned_and_preprocessed_and_plans_move() {
    let f = Folders::new();
    msd_dataset(&f);
    plan_and_preprocess(&f, "7", &["-pl", "nnUNetPlannerResEncM"]);
    let (raw, pre) = (&f.raw, &f.pre);
    let ds = pre.join("Dataset007_Organ");
    let plans = read_json(&ds.join("nnUNetResEncUNetMPlans.json"));
    assert_eq!(plans["plans_name"], "nnUNetResEncUNetMPlans");
    assert_eq!(plans["experiment_planner_used"], "nnUNetPlannerResEncM");
    // The ResEnc plans reuse nnU-Net's default data identifiers.
    let cases = stored_cases(&ds.join("nnUNetPlans_3d_fullres"));
    assert_eq!(cases, ["organ_00", "organ_01", "organ_02"]);
    stored_cases(&ds.join("nnUNetPlans_2d"));
    let props = read_json(&ds.join("nnUNetPlans_3d_fullres/organ_00.json"));
    assert!(
        !props["class_locations"]["1"].as_array().unwrap().is_empty(),
        "{props}"
    );

    // Plans move to another dataset with the same channels, under a new name.
    std::fs::create_dir_all(raw.join("Dataset008_Other")).unwrap();
    copy_dir(&raw.join("Dataset007_Organ"), &raw.join("Dataset008_Other"));
    let (out, stdout, stderr) = run(f.command().args([
        "move-plans",
        "-s",
        "7",
        "-t",
        "8",
        "-sp",
        "nnUNetResEncUNetMPlans",
        "-tp",
        "FromOrgan",
    ]));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let moved = read_json(&pre.join("Dataset008_Other/FromOrgan.json"));
    assert_eq!(moved["dataset_name"], "Dataset008_Other");
    assert_eq!(moved["plans_name"], "FromOrgan");
    assert_eq!(
        moved["configurations"]["3d_fullres"]["data_identifier"],
        "FromOrgan_nnUNetPlans_3d_fullres"
    );
    assert_eq!(
        moved["configurations"]["3d_fullres"]["patch_size"],
        plans["configurations"]["3d_fullres"]["patch_size"]
    );
}

#[test]
fn a_broken_case_stops_preprocessing_with_its_name() {
    let f = Folders::new();
    png_dataset(&f);
    plan_and_preprocess(&f, "601", &["--no_pp"]);
    std::fs::write(
        f.raw.join("Dataset601_Cells/imagesTr/1_0000.png"),
        b"not a png",
    )
    .unwrap();
    let (out, _, stderr) = run(f.command().args(["preprocess", "-d", "601", "-c", "2d"]));
    assert!(!out.status.success());
    assert!(stderr.contains("1_0000.png"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
