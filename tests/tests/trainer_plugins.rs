//! The example trainer plugins, each built as a `cdylib` on nnunet-api alone and trained through
//! `--plugin` on generated data: `cldice_trainer` (Dice + CE + soft clDice, logged per epoch) on
//! a 2D vessel dataset, and `custom_network_trainer` (its own residual U-Net) through training,
//! validation, checkpoints and `nnunet predict`; `finetune_trainer` (encoder frozen, then slower)
//! from `-pretrained_weights`.

use std::path::{Path, PathBuf};

use nnunet_tests::{
    Folders, checkpoint_tensors, io_args, plugin, read_json, train_args, write_json,
};

fn fold_dir(f: &Folders, dataset: &str, trainer: &str) -> PathBuf {
    f.results
        .join(dataset)
        .join(format!("{trainer}__nnUNetPlans__2d"))
        .join("fold_0")
}

/// Every training log of a fold (one per session), concatenated in name (start time) order.
fn training_log(fold: &Path) -> String {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(fold)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("training_log_")
        })
        .collect();
    logs.sort();
    assert!(!logs.is_empty(), "no training log in {}", fold.display());
    logs.iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// The values of log lines `<timestamp>: <name> <value>`, in order.
fn logged(log: &str, name: &str) -> Vec<f64> {
    let key = format!(": {name} ");
    log.lines()
        .filter_map(|l| l.split_once(&key).map(|(_, v)| v.trim().parse().unwrap()))
        .collect()
}

/// `--plugin LIB` followed by `args`.
fn with_plugin<'a>(lib: &'a str, args: Vec<&'a str>) -> Vec<&'a str> {
    [vec!["--plugin", lib], args].concat()
}

/// A small pseudo-random generator, so that the generated images are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `Dataset<id>_Vessels` in `raw`: `cases` 64x64 grey images of one or two thin winding vessels
/// (1-2 pixels wide) on a noisy background, with their masks.
fn vessel_dataset(raw: &Path, id: &str, cases: usize) {
    let dataset = raw.join(format!("Dataset{id}_Vessels"));
    for folder in ["imagesTr", "labelsTr"] {
        std::fs::create_dir_all(dataset.join(folder)).unwrap();
    }
    let mut rng = Lcg(7);
    for case in 0..cases {
        let (size, mut label) = (64u32, image::GrayImage::new(64, 64));
        let vessels = 1 + case % 2;
        for _ in 0..vessels {
            let (base, amplitude) = (12.0 + 40.0 * rng.next(), 4.0 + 8.0 * rng.next());
            let (frequency, phase) = (0.05 + 0.1 * rng.next(), 6.3 * rng.next());
            let vertical = rng.next() < 0.5;
            for t in 0..size {
                let c = base + amplitude * (frequency * f64::from(t) + phase).sin();
                for offset in [0.0, 0.8] {
                    let s = (c + offset).round().clamp(0.0, 63.0) as u32;
                    let (x, y) = if vertical { (s, t) } else { (t, s) };
                    label.put_pixel(x, y, image::Luma([1]));
                }
            }
        }
        let grey = image::GrayImage::from_fn(size, size, |x, y| {
            let foreground = f64::from(label.get_pixel(x, y)[0]);
            image::Luma([(60.0 + 110.0 * foreground + 40.0 * rng.next()) as u8])
        });
        let name = format!("vessel_{case:03}");
        grey.save(dataset.join("imagesTr").join(format!("{name}_0000.png")))
            .unwrap();
        label
            .save(dataset.join("labelsTr").join(format!("{name}.png")))
            .unwrap();
    }
    let json = serde_json::json!({
        "channel_names": {"0": "vessel image"},
        "labels": {"background": 0, "vessel": 1},
        "numTraining": cases,
        "file_ending": ".png",
        "name": "Vessels"
    });
    write_json(&dataset.join("dataset.json"), &json);
}

#[test]
fn cldice_trainer_trains_on_vessels_and_logs_the_cldice_term() {
    let f = Folders::new();
    vessel_dataset(&f.raw, "310", 8);
    f.plan_and_preprocess("310", "2d");
    let lib = plugin("cldice_trainer");
    let lib = lib.to_str().unwrap();
    let (_, listed) = f.exec(&["--plugin", lib, "list", "trainers"]);
    assert!(listed.contains("nnUNetTrainerClDice "), "{listed}");
    let options = ["-tr", "nnUNetTrainerClDice", "--epochs", "6"];
    let args = train_args(["310", "2d", "0"], &options, ["10", "2"]);
    let out = f.nnunet(&with_plugin(lib, args));
    assert!(out.contains("train cldice"), "{out}");
    let fold = fold_dir(&f, "Dataset310_Vessels", "nnUNetTrainerClDice");
    assert!(fold.join("checkpoint_final.safetensors").is_file());
    assert!(fold.join("validation").join("summary.json").is_file());
    let log = training_log(&fold);
    let (train_cldice, val_cldice) = (logged(&log, "train_cldice"), logged(&log, "val_cldice"));
    let train_loss = logged(&log, "train_loss");
    assert_eq!((train_cldice.len(), val_cldice.len()), (6, 6), "{log}");
    for v in train_cldice.iter().chain(&val_cldice) {
        assert!((0.0..=1.0).contains(v), "{log}");
    }
    // It trains: the loss and its clDice term fall.
    assert!(train_loss[5] < train_loss[0], "{log}");
    assert!(train_cldice[5] < train_cldice[0], "{log}");
    // The epoch records in the checkpoint hold the term too.
    let meta = std::fs::read(fold.join("checkpoint_final.safetensors")).unwrap();
    assert!(String::from_utf8_lossy(&meta).contains("train_cldice"));
}

#[test]
fn custom_network_trainer_trains_validates_and_predicts_with_its_own_network() {
    let f = Folders::new();
    f.example_dataset("311", &["--cases", "6"], &["48", "48"], "2d");
    let lib = plugin("custom_network_trainer");
    let lib = lib.to_str().unwrap();
    let trainer = "ResidualUNetTrainer";
    let options = ["-tr", trainer, "--epochs", "5"];
    let args = train_args(["311", "2d", "0"], &options, ["12", "3"]);
    f.nnunet(&with_plugin(lib, args));
    let fold = fold_dir(&f, "Dataset311_Synthetic2D", trainer);
    let shortcut = checkpoint_tensors(
        &fold.join("checkpoint_final.safetensors"),
        "network.encoder.1.shortcut.weight",
    );
    assert_eq!(
        shortcut.len(),
        1,
        "the checkpoint holds the plugin's network"
    );
    let summary = read_json(&fold.join("validation").join("summary.json"));
    let dice = summary["foreground_mean"]["Dice"].as_f64().unwrap();
    assert!(dice > 0.5, "validation Dice {dice}");

    let images = f.raw.join("Dataset311_Synthetic2D").join("imagesTs");
    let out = f.root.join("predicted");
    let options = ["-d", "311", "-c", "2d", "-tr", trainer, "-f", "0"];
    let predict = io_args("predict", &images, &out, &options);
    f.nnunet(&with_plugin(lib, predict.clone()));
    let pngs = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".png"))
            .map(|name| name.replace("_0000.png", ".png"))
            .collect();
        names.sort();
        names
    };
    assert!(!pngs(&images).is_empty());
    assert_eq!(pngs(&out), pngs(&images), "one prediction per test image");
    // Without the plugin, the network cannot be rebuilt, and the error says why.
    let err = f.nnunet_fails(&predict);
    assert!(err.contains("--plugin"), "{err}");
}

#[test]
fn finetune_trainer_keeps_the_frozen_encoder_bit_identical() {
    let f = Folders::new();
    f.example_dataset("312", &["--cases", "6"], &["32", "32"], "2d");
    let pretrain = train_args(["312", "2d", "0"], &["--epochs", "1"], ["3", "1"]);
    f.nnunet(&pretrain);
    let pretrained = fold_dir(&f, "Dataset312_Synthetic2D", "nnUNetTrainer")
        .join("checkpoint_final.safetensors");
    let lib = plugin("finetune_trainer");
    let finetune = |extra: &[&str]| {
        let options = ["-tr", "nnUNetTrainerFinetune", "--epochs", "3"];
        let mut args = train_args(["312", "2d", "1"], &options, ["3", "1"]);
        args.extend(extra);
        f.nnunet(&with_plugin(lib.to_str().unwrap(), args));
    };
    finetune(&[
        "-pretrained_weights",
        pretrained.to_str().unwrap(),
        "--stop-after",
        "2",
    ]);
    let fold = f
        .results
        .join("Dataset312_Synthetic2D")
        .join("nnUNetTrainerFinetune__nnUNetPlans__2d")
        .join("fold_1");
    let encoder = |path: &Path| checkpoint_tensors(path, "network.encoder.");
    let decoder = |path: &Path| checkpoint_tensors(path, "network.decoder.");
    let latest = fold.join("checkpoint_latest.safetensors");
    assert!(!encoder(&pretrained).is_empty());
    assert_eq!(
        encoder(&latest),
        encoder(&pretrained),
        "frozen encoder changed"
    );
    assert_ne!(decoder(&latest), decoder(&pretrained));
    assert!(checkpoint_tensors(&latest, "optimizer.encoder.").is_empty());
    assert!(!checkpoint_tensors(&latest, "optimizer.decoder.").is_empty());
    // The third epoch trains the encoder, more slowly.
    finetune(&["--c"]);
    let last = fold.join("checkpoint_final.safetensors");
    assert_ne!(encoder(&last), encoder(&pretrained));
    assert!(training_log(&fold).contains("Unfreezing the encoder"));
}
