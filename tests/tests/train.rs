//! `nnunet train` end to end on small generated datasets: a 2D and a 3D dataset are learned to a
//! high validation Dice with the run's log, `progress.png`, checkpoints and `summary.json` where
//! nnU-Net writes them; a run stopped with `--stop-after` and continued with `--c` ends with the
//! same weights as an uninterrupted run; a changed schedule on `--c` is refused.

use std::path::{Path, PathBuf};

use nnunet_tests::{Folders, checkpoint_tensors, io_args, read_json, train_args};

fn fold_dir(f: &Folders, dataset: &str, trainer: &str, config: &str, fold: &str) -> PathBuf {
    f.results
        .join(dataset)
        .join(format!("{trainer}__nnUNetPlans__{config}"))
        .join(format!("fold_{fold}"))
}

fn check_run_files(fold: &Path) {
    for file in [
        "checkpoint_final.safetensors",
        "checkpoint_best.safetensors",
        "progress.png",
    ] {
        assert!(fold.join(file).is_file(), "{} missing", file);
    }
    assert!(!fold.join("checkpoint_latest.safetensors").exists());
    let text = training_log(fold);
    assert!(
        text.contains("Epoch 0") && text.contains("Pseudo dice"),
        "{text}"
    );
    let png = image::open(fold.join("progress.png")).expect("progress.png decodes");
    assert!(png.width() > 400 && png.height() > 400);
    let parent = fold.parent().unwrap();
    for file in ["plans.json", "dataset.json", "dataset_fingerprint.json"] {
        assert!(
            parent.join(file).is_file(),
            "{file} missing next to the folds"
        );
    }
}

/// The text of a fold's `training_log_*.txt`.
fn training_log(fold: &Path) -> String {
    let log = std::fs::read_dir(fold)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("training_log_"))
        .expect("training log");
    std::fs::read_to_string(log.path()).unwrap()
}

fn validation_dice(fold: &Path) -> f64 {
    let summary = read_json(&fold.join("validation").join("summary.json"));
    summary["foreground_mean"]["Dice"]
        .as_f64()
        .expect("foreground Dice")
}

/// Trains fold 0 of `configuration` of example dataset `id` (planned, 6 cases of `shape`) with
/// five epochs of `iterations` = `[training, validation]` iterations; checks the run's files and
/// that the validation Dice is above `min_dice`. Returns the fold's folder.
fn train_5_epochs(
    f: &Folders,
    id: &str,
    shape: &[&str],
    configuration: &str,
    iterations: [&str; 2],
    min_dice: f64,
) -> PathBuf {
    f.example_dataset(id, &["--cases", "6"], shape, configuration);
    let trainer = "nnUNetTrainer_5epochs";
    let args = train_args([id, configuration, "0"], &["-tr", trainer], iterations);
    f.nnunet(&args);
    let dataset = format!("Dataset{id}_Synthetic{}D", shape.len());
    let fold = fold_dir(f, &dataset, trainer, configuration, "0");
    check_run_files(&fold);
    let dice = validation_dice(&fold);
    assert!(dice > min_dice, "validation Dice {dice}");
    fold
}

#[test]
fn trains_2d_to_high_dice() {
    let f = Folders::new();
    let fold = train_5_epochs(&f, "301", &["48", "48"], "2d", ["12", "3"], 0.8);
    // The fold's split was written on first use, 5 folds over the 6 cases.
    let splits_path = f
        .pre
        .join("Dataset301_Synthetic2D")
        .join("splits_final.json");
    let splits = read_json(&splits_path);
    assert_eq!(splits.as_array().unwrap().len(), 5);
    // --val alone re-validates the trained fold.
    let run = ["301", "2d", "0"];
    let mut args = train_args(run, &["-tr", "nnUNetTrainer_5epochs"], ["12", "3"]);
    args.push("--val");
    let out = f.nnunet(&args);
    assert!(out.contains("validation of"), "{out}");
    // The example trainer plugin trains too, fine-tuning from the fold-0 model.
    let weights = fold.join("checkpoint_final.safetensors");
    let plugin = nnunet_tests::plugin("custom_trainer");
    let options = ["-tr", "MyTrainer_lr3e-3_300epochs", "--epochs", "1"];
    let mut args = vec!["--plugin", plugin.to_str().unwrap()];
    args.extend(train_args(["301", "2d", "1"], &options, ["2", "1"]));
    args.extend(["-pretrained_weights", weights.to_str().unwrap()]);
    f.nnunet(&args);
    let plugin_fold = fold_dir(
        &f,
        "Dataset301_Synthetic2D",
        "MyTrainer_lr3e-3_300epochs",
        "2d",
        "1",
    );
    assert!(
        plugin_fold
            .join("validation")
            .join("summary.json")
            .is_file()
    );
    // Weights that are not a checkpoint are refused by name.
    let err = f.nnunet_fails(&[
        "train",
        "301",
        "2d",
        "2",
        "--epochs",
        "1",
        "-pretrained_weights",
        splits_path.to_str().unwrap(),
    ]);
    assert!(err.contains("splits_final.json"), "{err}");
}

#[test]
fn trains_3d_to_high_dice() {
    let f = Folders::new();
    let shape = ["16", "24", "24"];
    train_5_epochs(&f, "302", &shape, "3d_fullres", ["8", "2"], 0.7);
}

#[test]
fn continued_run_equals_uninterrupted_run() {
    let f = Folders::new();
    f.example_dataset("303", &["--cases", "6"], &["32", "32"], "2d");
    let train = |fold: &str, extra: &[&str]| {
        let mut args = train_args(["303", "2d", fold], &["--epochs", "4"], ["3", "1"]);
        args.extend(["--threads", "2"]);
        args.extend_from_slice(extra);
        f.nnunet(&args)
    };
    // First uninterrupted; then, after moving that run aside, stopped after 2 epochs and continued.
    train("1", &[]);
    let full = fold_dir(&f, "Dataset303_Synthetic2D", "nnUNetTrainer", "2d", "1");
    let uninterrupted = checkpoint_tensors(&full.join("checkpoint_final.safetensors"), "network.");
    std::fs::rename(&full, full.with_file_name("fold_1_uninterrupted")).unwrap();

    let out = train("1", &["--stop-after", "2"]);
    assert!(out.contains("stopped after epoch 2"), "{out}");
    assert!(full.join("checkpoint_latest.safetensors").is_file());
    assert!(!full.join("checkpoint_final.safetensors").exists());
    // A changed schedule is refused on --c.
    let mut args = train_args(["303", "2d", "1"], &["--epochs", "6"], ["3", "1"]);
    args.push("--c");
    let err = f.nnunet_fails(&args);
    assert!(err.contains("epochs 4 vs 6"), "{err}");
    train("1", &["--c"]);
    let continued = checkpoint_tensors(&full.join("checkpoint_final.safetensors"), "network.");
    assert_eq!(uninterrupted.len(), continued.len());
    for ((name_a, a), (name_b, b)) in uninterrupted.iter().zip(&continued) {
        assert_eq!(name_a, name_b);
        assert!(
            a == b,
            "{name_a} differs between the continued and the uninterrupted run"
        );
    }
}

#[test]
fn trains_regions_with_sigmoid_outputs() {
    let f = Folders::new();
    f.example_dataset("304", &["--cases", "6", "--regions"], &["32", "32"], "2d");
    let args = train_args(["304", "2d", "0"], &["--epochs", "4"], ["10", "2"]);
    f.nnunet(&args);
    let fold = fold_dir(&f, "Dataset304_Synthetic2D", "nnUNetTrainer", "2d", "0");
    let summary = read_json(&fold.join("validation").join("summary.json"));
    let mean = summary["mean"].as_object().unwrap();
    // Regions are evaluated as regions: the union (1, 2) and the box, declared as label 2.
    assert!(
        mean.contains_key("(1, 2)") && mean.contains_key("2"),
        "{mean:?}"
    );
    let dice = validation_dice(&fold);
    assert!(dice > 0.6, "validation Dice {dice}");
}

/// The `train_loss` lines of a fold's training log.
fn logged_train_losses(fold: &Path) -> Vec<f64> {
    training_log(fold)
        .lines()
        .filter_map(|l| l.split_once(": train_loss "))
        .map(|(_, v)| v.trim().parse().unwrap())
        .collect()
}

/// The dtype of every tensor of a safetensors checkpoint.
fn checkpoint_dtypes(path: &Path) -> Vec<String> {
    let data = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&data[8..8 + n]).unwrap();
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, v)| v["dtype"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn precision_is_printed_logged_and_checkpoints_stay_fp32() {
    let f = Folders::new();
    f.example_dataset("305", &["--cases", "6"], &["32", "32"], "2d");
    let train = |fold: &str, precision: &str| {
        let mut args = train_args(["305", "2d", fold], &["--epochs", "2"], ["4", "1"]);
        args.extend(["-precision", precision]);
        f.nnunet(&args)
    };
    // The same fold twice (same cases, seed and batches), the fp32 run moved aside first.
    let fold = fold_dir(&f, "Dataset305_Synthetic2D", "nnUNetTrainer", "2d", "0");
    let fp32_fold = fold.with_file_name("fold_0_fp32");
    let out = train("0", "fp32");
    assert!(out.contains("computing in fp32 ("), "{out}");
    std::fs::rename(&fold, &fp32_fold).unwrap();
    let out = train("0", "bf16");
    assert!(out.contains("computing in bf16 ("), "{out}");
    let err = f.nnunet_fails(&["train", "305", "2d", "2", "-precision", "fp16"]);
    assert!(err.contains("-precision 'fp16'"), "{err}");

    let folds = [fp32_fold, fold];
    for (fold, name) in folds.iter().zip(["fp32", "bf16"]) {
        let log = training_log(fold);
        assert!(log.contains(&format!("Computing in {name} (")), "{log}");
        let dtypes = checkpoint_dtypes(&fold.join("checkpoint_final.safetensors"));
        assert!(
            !dtypes.is_empty() && dtypes.iter().all(|d| d == "F32"),
            "{dtypes:?}"
        );
    }
    // Same seed, same batches: bf16 products with fp32 accumulation follow the fp32 losses.
    let (fp32, bf16) = (
        logged_train_losses(&folds[0]),
        logged_train_losses(&folds[1]),
    );
    assert_eq!(fp32.len(), 2);
    for (a, b) in fp32.iter().zip(&bf16) {
        assert!(
            (a - b).abs() <= 0.05 * a.abs(),
            "train losses fp32 {fp32:?} bf16 {bf16:?}"
        );
    }
    // The bf16-trained checkpoint predicts in fp32 (checkpoints are interchangeable).
    let output = f.root.join("pred");
    let images = f.raw.join("Dataset305_Synthetic2D/imagesTr");
    let options = ["-d", "305", "-c", "2d", "-f", "0", "-precision", "fp32"];
    let mut args = io_args("predict", &images, &output, &options);
    args.push("--disable-progress-bar");
    let (ok, text) = f.exec(&args);
    assert!(ok, "{text}");
    assert!(text.contains("computing in fp32 ("), "{text}");
}
