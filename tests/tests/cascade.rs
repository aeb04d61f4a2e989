//! The cascade end to end: `3d_lowres` is trained and its final validation writes its
//! predictions on the full-resolution grid to `predicted_next_stage/3d_cascade_fullres/`;
//! `3d_cascade_fullres` trains on them (image + one-hot channels) and predicts test cases from the
//! previous stage's predictions, given with `-prev_stage_predictions` or made on the fly by the
//! `3d_lowres` model next to it (both give the same files).

use std::path::{Path, PathBuf};

use nnunet_tests::{Folders, io_args, read_json, train_args, write_json};
use serde_json::json;

const DATASET: &str = "Dataset303_Synthetic3D";
const TRAINER: &str = "nnUNetTrainer_5epochs";

fn model(f: &Folders, config: &str) -> PathBuf {
    f.results
        .join(DATASET)
        .join(format!("{TRAINER}__nnUNetPlans__{config}"))
}

/// `.npy` header shape.
fn npy_shape(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    let header = String::from_utf8_lossy(&bytes[10..128.min(bytes.len())]).to_string();
    let start = header.find("'shape': (").unwrap() + 10;
    let end = start + header[start..].find(')').unwrap();
    header[start..end]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect()
}

/// Adds `3d_lowres` (half the resolution, feeding the cascade) and `3d_cascade_fullres` to the
/// planned `3d_fullres`, as the planner does for large images.
fn add_cascade_to_plans(plans_file: &Path) {
    let mut plans = read_json(plans_file);
    let configurations = plans["configurations"].as_object_mut().unwrap();
    let mut low = configurations["3d_fullres"].clone();
    let spacing: Vec<f64> = low["spacing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() * 2.0)
        .collect();
    low["spacing"] = json!(spacing);
    low["data_identifier"] = json!("nnUNetPlans_3d_lowres");
    low["next_stage"] = json!("3d_cascade_fullres");
    configurations.insert("3d_lowres".into(), low);
    configurations.insert(
        "3d_cascade_fullres".into(),
        json!({"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}),
    );
    write_json(plans_file, &plans);
}

/// Runs `nnunet predict` of `images` into `out` with the fold-`all` model of `config` (and the
/// previous stage's predictions, if given); it must succeed or, with `fails`, fail. Returns the
/// output.
fn predict(
    f: &Folders,
    images: &Path,
    out: &Path,
    config: &str,
    previous: Option<&Path>,
    fails: bool,
) -> String {
    let options = ["-d", "303", "-c", config, "-tr", TRAINER, "-f", "all"];
    let mut args = io_args("predict", images, out, &options);
    if let Some(previous) = previous {
        args.extend(["-prev_stage_predictions", previous.to_str().unwrap()]);
    }
    if fails {
        f.nnunet_fails(&args)
    } else {
        f.nnunet(&args)
    }
}

fn train(f: &Folders, config: &str) -> String {
    let args = train_args(["303", config, "all"], &["-tr", TRAINER], ["8", "2"]);
    f.nnunet(&args)
}

#[test]
fn lowres_predictions_feed_the_cascade_in_training_and_prediction() {
    let f = Folders::new();
    let cases = ["--cases", "6", "--test-cases", "2"];
    f.example_dataset("303", &cases, &["16", "24", "24"], "3d_fullres");
    let pre = f.pre.join(DATASET);
    add_cascade_to_plans(&pre.join("nnUNetPlans.json"));
    f.nnunet(&["preprocess", "-d", "303", "-c", "3d_lowres", "-np", "2"]);

    // Without the previous stage's cross-validation predictions the cascade cannot train.
    let err = f.nnunet_fails(&["train", "303", "3d_cascade_fullres", "all", "-tr", TRAINER]);
    assert!(
        err.contains("predicted_next_stage") && err.contains("3d_lowres"),
        "{err}"
    );

    train(&f, "3d_lowres");
    let next = model(&f, "3d_lowres").join("predicted_next_stage/3d_cascade_fullres");
    let full = pre.join("nnUNetPlans_3d_fullres");
    let low = pre.join("nnUNetPlans_3d_lowres");
    for i in 0..6 {
        let case = format!("synthetic3d_{i:03}");
        let shape = npy_shape(&next.join(format!("{case}.npy")));
        let full_shape = npy_shape(&full.join(format!("{case}.npy")));
        assert_eq!(shape[1..], full_shape[1..], "{case}");
        assert_eq!(shape[0], 1);
        // The lowres grid really is coarser: the prediction was resampled.
        let low_shape = npy_shape(&low.join(format!("{case}.npy")));
        assert!(low_shape[1..] != full_shape[1..], "{low_shape:?}");
    }

    train(&f, "3d_cascade_fullres");
    let cascade = model(&f, "3d_cascade_fullres");
    let summary = read_json(&cascade.join("fold_all/validation/summary.json"));
    let dice = summary["foreground_mean"]["Dice"].as_f64().unwrap();
    assert!(dice > 0.7, "cascade validation Dice {dice}");

    // Prediction: the previous stage first, then the cascade from its files.
    let raw = f.raw.join(DATASET);
    let images = raw.join("imagesTs");
    let low_out = f.root.join("pred_low");
    let explicit = f.root.join("pred_cascade");
    let auto = f.root.join("pred_cascade_auto");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    predict(&f, &images, &low_out, "3d_lowres", None, false);
    predict(
        &f,
        &images,
        &explicit,
        "3d_cascade_fullres",
        Some(&low_out),
        false,
    );
    let text = predict(&f, &images, &auto, "3d_cascade_fullres", None, false);
    assert!(text.contains("previous stage '3d_lowres'"), "{text}");
    for case in ["synthetic3d_006", "synthetic3d_007"] {
        let a = std::fs::read(explicit.join(format!("{case}.nii.gz"))).unwrap();
        let b = std::fs::read(auto.join(format!("{case}.nii.gz"))).unwrap();
        assert_eq!(a, b, "{case}: both ways give the same prediction");
    }
    // The temporary previous-stage folder is gone.
    assert_eq!(std::fs::read_dir(&auto).unwrap().count(), 4);

    let summary_file = f.root.join("cascade_summary.json");
    f.nnunet(&[
        "evaluate-simple",
        &path(&raw.join("labelsTs")),
        &path(&explicit),
        "-l",
        "1",
        "2",
        "-o",
        &path(&summary_file),
    ]);
    let dice = read_json(&summary_file)["foreground_mean"]["Dice"]
        .as_f64()
        .unwrap();
    assert!(dice > 0.7, "cascade test Dice {dice}");

    // A missing previous-stage file is named.
    std::fs::remove_file(low_out.join("synthetic3d_007.nii.gz")).unwrap();
    let out = f.root.join("pred_x");
    let err = predict(
        &f,
        &images,
        &out,
        "3d_cascade_fullres",
        Some(&low_out),
        true,
    );
    assert!(err.contains("synthetic3d_007.nii.gz"), "{err}");
}
