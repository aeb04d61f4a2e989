//! `nnunet predict` end to end: a small 2D model is trained, then the test cases are predicted
//! with `-d/-c/-f` and with `-m`, scored against `labelsTs`, with probabilities, with visible
//! labels, in parts, continued, and with bad input (a missing fold, a missing channel); a 3D NIfTI
//! case keeps the input's header geometry.

use std::collections::BTreeSet;
use std::path::Path;

use nnunet_tests::{Folders, dice, io_args, train_args};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// File names in `folder` ending with `ending`, sorted.
fn files(folder: &Path, ending: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(ending) && !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn gray(path: &Path) -> image::GrayImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_luma8()
}

/// The trained 2D model of `predicts_2d_cases_like_nnunet`, by dataset, configuration, trainer
/// and fold.
const MODEL_2D: [&str; 8] = [
    "-d",
    "401",
    "-c",
    "2d",
    "-tr",
    "nnUNetTrainer_5epochs",
    "-f",
    "0",
];

#[test]
fn predicts_2d_cases_like_nnunet() {
    let f = Folders::new();
    let cases = ["--cases", "6", "--test-cases", "4"];
    f.example_dataset("401", &cases, &["48", "48"], "2d");
    let trainer = ["-tr", "nnUNetTrainer_5epochs"];
    f.nnunet(&train_args(["401", "2d", "0"], &trainer, ["12", "2"]));
    let dataset = f.raw.join("Dataset401_Synthetic2D");
    let images_ts = dataset.join("imagesTs");
    let labels_ts = dataset.join("labelsTs");
    let model = f
        .results
        .join("Dataset401_Synthetic2D")
        .join("nnUNetTrainer_5epochs__nnUNetPlans__2d");
    let m = s(&model);
    let inputs = files(&images_ts, ".png");
    assert_eq!(inputs.len(), 4);
    let cases: Vec<String> = inputs
        .iter()
        .map(|n| n.trim_end_matches("_0000.png").to_string())
        .collect();

    // -d/-c/-tr/-f: every case, in the input's size, scored against labelsTs.
    let out1 = f.root.join("out1");
    f.nnunet(&io_args("predict", &images_ts, &out1, &MODEL_2D));
    assert!(out1.join("dataset.json").is_file() && out1.join("plans.json").is_file());
    let mut dices = Vec::new();
    for case in &cases {
        let prediction = gray(&out1.join(format!("{case}.png")));
        let input = gray(&images_ts.join(format!("{case}_0000.png")));
        let reference = gray(&labels_ts.join(format!("{case}.png")));
        assert_eq!(prediction.dimensions(), input.dimensions(), "{case}");
        assert!(prediction.pixels().all(|p| p.0[0] <= 2), "{case}");
        let (prediction, reference) = (prediction.as_raw(), reference.as_raw());
        dices.push((dice(prediction, reference, 1) + dice(prediction, reference, 2)) / 2.0);
    }
    let mean = dices.iter().sum::<f64>() / dices.len() as f64;
    assert!(mean > 0.7, "mean foreground Dice {mean} ({dices:?})");

    // -m with --save_probabilities: the same segmentations, plus probabilities and properties.
    let out2 = f.root.join("out2");
    let options = ["-m", m, "-f", "0", "-chk", "checkpoint_final.pth"];
    let options = [&options[..], &["--save_probabilities"]].concat();
    f.nnunet(&io_args("predict", &images_ts, &out2, &options));
    for case in &cases {
        assert_eq!(
            gray(&out1.join(format!("{case}.png"))),
            gray(&out2.join(format!("{case}.png"))),
            "{case}: -m and -d/-c give different predictions"
        );
        let npz = std::fs::read(out2.join(format!("{case}.npz"))).unwrap();
        assert_eq!(&npz[..2], b"PK", "{case}.npz is not a zip archive");
        assert!(
            npz.windows(17).any(|w| w == b"probabilities.npy"),
            "{case}.npz has no probabilities array"
        );
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out2.join(format!("{case}.json"))).unwrap(),
        )
        .unwrap();
        assert!(json.get("bbox_used_for_cropping").is_some(), "{json}");
    }

    // --visible-labels: labels 0, 1, 2 become 0, 128, 255.
    let out3 = f.root.join("out3");
    let options = ["-m", m, "-f", "0", "--visible-labels"];
    f.nnunet(&io_args("predict", &images_ts, &out3, &options));
    for case in &cases {
        let labels = gray(&out1.join(format!("{case}.png")));
        let visible = gray(&out3.join(format!("{case}.png")));
        for (l, v) in labels.pixels().zip(visible.pixels()) {
            assert_eq!(v.0[0], [0, 128, 255][l.0[0] as usize], "{case}");
        }
    }

    // -num_parts 2 -part_id 1: every second case from the second, as nnU-Net's [1::2].
    let out4 = f.root.join("out4");
    let predict4 = |extra: &[&str]| {
        let mut args = io_args("predict", &images_ts, &out4, &MODEL_2D);
        args.push("--disable_tta");
        args.extend_from_slice(extra);
        f.nnunet(&args)
    };
    predict4(&["-num_parts", "2", "-part_id", "1"]);
    let expected: Vec<String> = [&cases[1], &cases[3]]
        .iter()
        .map(|c| format!("{c}.png"))
        .collect();
    assert_eq!(files(&out4, ".png"), expected);
    // --continue_prediction: only the missing cases are predicted, the others are left alone.
    let kept = out4.join(&expected[0]);
    let before = std::fs::metadata(&kept).unwrap().modified().unwrap();
    let log = predict4(&["--continue_prediction"]);
    assert!(log.contains("to predict: 2 (2 already predicted)"), "{log}");
    assert_eq!(files(&out4, ".png").len(), 4);
    assert_eq!(
        std::fs::metadata(&kept).unwrap().modified().unwrap(),
        before
    );
    let log = predict4(&["--continue_prediction"]);
    assert!(log.contains("to predict: 0"), "{log}");

    // A fold that was not trained: the error names it and the folds there are.
    let out5 = f.root.join("out5");
    let options = ["-m", m, "-f", "0", "1"];
    let err = f.nnunet_fails(&io_args("predict", &images_ts, &out5, &options));
    assert!(
        err.contains("fold(s) 1 have no checkpoint_final.safetensors")
            && err.contains("folds with checkpoint_final.safetensors: 0"),
        "{err}"
    );
    // A case without its first channel: the error names the missing file.
    let bad = f.root.join("bad_input");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(images_ts.join(&inputs[0]), bad.join("lonely_0001.png")).unwrap();
    let out6 = f.root.join("out6");
    let err = f.nnunet_fails(&io_args("predict", &bad, &out6, &["-m", m, "-f", "0"]));
    assert!(
        err.contains("lonely_0000.png") && err.contains("missing"),
        "{err}"
    );
    // A configuration the plans do not have: the error names those they have; one of the plans
    // that was not trained with this trainer: the error names the trained models.
    let out7 = f.root.join("out7");
    for (configuration, expected) in [
        ("3d_fullres", "'3d_fullres' is not in the plans nnUNetPlans"),
        ("2d", "no trained model there"),
    ] {
        let options = ["-d", "401", "-c", configuration];
        let err = f.nnunet_fails(&io_args("predict", &images_ts, &out7, &options));
        assert!(
            err.contains(expected) && err.contains("nnUNetTrainer_5epochs__nnUNetPlans__2d"),
            "{err}"
        );
    }
}

fn nifti_header(path: &Path) -> nifti::NiftiHeader {
    use nifti::NiftiObject;
    nifti::ReaderOptions::new()
        .read_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .header()
        .clone()
}

#[test]
fn predicts_3d_nifti_in_the_input_geometry() {
    let f = Folders::new();
    let cases = ["--cases", "5", "--test-cases", "1"];
    f.example_dataset("402", &cases, &["16", "24", "24"], "3d_fullres");
    let run = ["402", "3d_fullres", "0"];
    f.nnunet(&train_args(run, &["--epochs", "1"], ["2", "1"]));
    let images_ts = f.raw.join("Dataset402_Synthetic3D").join("imagesTs");
    let out = f.root.join("out");
    let options = ["-d", "402", "-c", "3d_fullres", "-f", "0", "--disable_tta"];
    f.nnunet(&io_args("predict", &images_ts, &out, &options));
    let inputs = files(&images_ts, ".nii.gz");
    assert_eq!(inputs.len(), 1);
    let case = inputs[0].trim_end_matches("_0000.nii.gz");
    let input = nifti_header(&images_ts.join(&inputs[0]));
    let output = nifti_header(&out.join(format!("{case}.nii.gz")));
    assert_eq!(input.dim, output.dim);
    assert_eq!(input.pixdim[1..4], output.pixdim[1..4]);
    assert_eq!(input.pixdim[1..4], [1.0, 1.0, 1.5]);
    assert_eq!(
        (input.qform_code, input.sform_code),
        (output.qform_code, output.sform_code)
    );
    assert_eq!(
        [input.srow_x, input.srow_y, input.srow_z],
        [output.srow_x, output.srow_y, output.srow_z]
    );
    let values: BTreeSet<i64> = {
        use nifti::{IntoNdArray, NiftiObject};
        let object = nifti::ReaderOptions::new()
            .read_file(out.join(format!("{case}.nii.gz")))
            .unwrap();
        let volume = object.into_volume().into_ndarray::<f64>().unwrap();
        volume.iter().map(|v| *v as i64).collect()
    };
    assert!(values.iter().all(|v| (0..=2).contains(v)), "{values:?}");
}
