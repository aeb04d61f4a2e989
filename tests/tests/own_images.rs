//! Researchers' own folders end to end, with the commands of the README's "Your own images": the
//! three common layouts go through `convert-folder` → `verify` → `plan-and-preprocess` → a tiny
//! training → `predict` → `evaluate`, with regions of interest, a separate test folder, a second
//! annotator, patient-level folds and colour JPEGs; training reports one plain line per epoch when
//! its output is not a terminal, and a run killed with SIGKILL continues with `--c`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use image::{GrayImage, Luma, Rgb, RgbImage};
use nnunet_tests::{Folders, io_args, nnunet, read_json, run};

const SIZE: u32 = 40;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A deterministic pseudo-random value in 0..1 for pixel (x, y) of case `seed`.
fn noise(x: u32, y: u32, seed: u32) -> f64 {
    let mut h =
        x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ seed.wrapping_mul(83_492_791);
    h ^= h >> 13;
    h = h.wrapping_mul(0x5bd1_e995);
    h ^= h >> 15;
    f64::from(h % 1000) / 1000.0
}

/// One case: the field of view (a disk, the region of interest) and in it a bright round object
/// (the label), both as 0/255 masks, and the gray intensity of every pixel.
struct Drawing {
    roi: GrayImage,
    label: GrayImage,
    intensity: Vec<f64>,
}

fn draw(seed: u32) -> Drawing {
    let c = f64::from(SIZE) / 2.0;
    let (ox, oy) = (
        c - 6.0 + f64::from(seed % 5) * 3.0,
        c - 5.0 + f64::from(seed % 3) * 4.0,
    );
    let radius = 5.0 + f64::from(seed % 3);
    let inside = |x: u32, y: u32, cx: f64, cy: f64, r: f64| {
        (f64::from(x) - cx).powi(2) + (f64::from(y) - cy).powi(2) <= r * r
    };
    let roi = GrayImage::from_fn(SIZE, SIZE, |x, y| {
        Luma([if inside(x, y, c, c, 17.0) { 255 } else { 0 }])
    });
    let label = GrayImage::from_fn(SIZE, SIZE, |x, y| {
        Luma([if inside(x, y, ox, oy, radius) { 255 } else { 0 }])
    });
    let intensity = (0..SIZE * SIZE)
        .map(|i| {
            let (x, y) = (i % SIZE, i / SIZE);
            if roi.get_pixel(x, y)[0] == 0 {
                0.0
            } else if label.get_pixel(x, y)[0] != 0 {
                190.0 + 40.0 * noise(x, y, seed)
            } else {
                50.0 + 40.0 * noise(x, y, seed)
            }
        })
        .collect();
    Drawing {
        roi,
        label,
        intensity,
    }
}

fn gray_image(d: &Drawing) -> GrayImage {
    GrayImage::from_fn(SIZE, SIZE, |x, y| {
        Luma([d.intensity[(y * SIZE + x) as usize] as u8])
    })
}

/// A colour version: the object reddish, the background greenish.
fn colour_image(d: &Drawing) -> RgbImage {
    RgbImage::from_fn(SIZE, SIZE, |x, y| {
        let v = d.intensity[(y * SIZE + x) as usize];
        let object = d.label.get_pixel(x, y)[0] != 0;
        Rgb(if object {
            [v as u8, (v / 3.0) as u8, 40]
        } else {
            [(v / 2.0) as u8, v as u8, 30]
        })
    })
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn gray(path: &Path) -> GrayImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_luma8()
}

fn files(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".png") && !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// Every pixel outside the region of interest is background in each prediction of `folder`.
fn background_outside_rois(predictions: &Path, rois: &Path, roi_suffix: &str) {
    let cases = files(predictions);
    assert!(!cases.is_empty());
    for name in cases {
        let stem = name.trim_end_matches(".png");
        let prediction = gray(&predictions.join(&name));
        let roi = gray(&rois.join(format!("{stem}{roi_suffix}.png")));
        for (p, r) in prediction.pixels().zip(roi.pixels()) {
            if r[0] == 0 {
                assert_eq!(p[0], 0, "{name}: foreground outside the region of interest");
            }
        }
    }
}

/// `predict -i INPUT -o OUTPUT -d ID -c CONFIGURATION -f 0` and `extra`.
fn predict<'a>(
    input: &'a Path,
    output: &'a Path,
    id: &'a str,
    configuration: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let options = ["-d", id, "-c", configuration, "-f", "0"];
    let mut args = io_args("predict", input, output, &options);
    args.extend_from_slice(extra);
    args
}

/// Runs `convert-folder OPTIONS… -d ID -n NAME`, which must report `counts` ("N training case(s),
/// M test case(s)"); returns the dataset's folder in `nnUNet_raw`.
fn convert_folder(f: &Folders, options: &[&str], id: &str, name: &str, counts: &str) -> PathBuf {
    let mut args = vec!["convert-folder"];
    args.extend_from_slice(options);
    args.extend(["-d", id, "-n", name]);
    let out = f.nnunet(&args);
    assert!(out.contains(counts), "{out}");
    f.raw.join(format!("Dataset{id}_{name}"))
}

/// `evaluate LABELS PRED -djfile PRED/dataset.json -pfile PRED/plans.json` and `extra` (the
/// model's files `predict` copies next to the predictions).
fn evaluate(labels: &Path, pred: &Path, extra: &[&str]) -> Vec<String> {
    let (dataset_json, plans_json) = (pred.join("dataset.json"), pred.join("plans.json"));
    let mut args = vec![
        "evaluate",
        s(labels),
        s(pred),
        "-djfile",
        s(&dataset_json),
        "-pfile",
        s(&plans_json),
    ];
    args.extend_from_slice(extra);
    args.iter().map(|a| a.to_string()).collect()
}

/// New folders under the test's root.
fn new_folders<const N: usize>(f: &Folders, names: [&str; N]) -> [PathBuf; N] {
    names.map(|name| {
        let dir = f.root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// The lines `train` wrote per epoch ("epoch k/N: …").
fn epoch_lines(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| l.starts_with("epoch ")).collect()
}

/// A tiny training of fold 0: 2 epochs of 2 iterations, validation iterations scaled from them.
fn tiny_training(f: &Folders, id: &str) -> String {
    let out = f.nnunet(&[
        "train",
        id,
        "2d",
        "0",
        "--epochs",
        "2",
        "--iterations-per-epoch",
        "2",
        "--threads",
        "2",
    ]);
    assert!(
        out.contains("2 epochs of 2 training and 1 validation iterations")
            && out.contains("250:50"),
        "{out}"
    );
    out
}

fn prepare(f: &Folders, id: &str) {
    f.nnunet(&["verify", "-d", id]);
    f.nnunet(&["plan-and-preprocess", "-d", id, "-c", "2d", "-np", "1"]);
}

/// The current epoch recorded in a checkpoint's metadata.
fn checkpoint_epoch(path: &Path) -> u64 {
    let data = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&data[8..8 + n]).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(header["__metadata__"]["nnunet_rs"].as_str().unwrap()).unwrap();
    meta["current_epoch"].as_u64().unwrap()
}

/// Layout 1: `crop_train/<case>/{image,label,mask}.png` and a separate `crop_test/` (one test case
/// without a label); the regions of interest become the ignore label for training.
#[test]
fn case_folders_with_rois_and_a_separate_test_folder() {
    let f = Folders::new();
    let (train, test) = (f.root.join("crop_train"), f.root.join("crop_test"));
    for (root, first, count) in [(&train, 0, 6), (&test, 10, 3)] {
        for i in first..first + count {
            let dir = root.join(format!("cell_{i:02}"));
            std::fs::create_dir_all(&dir).unwrap();
            let d = draw(i);
            gray_image(&d).save(dir.join("image.png")).unwrap();
            d.roi.save(dir.join("mask.png")).unwrap();
            if i != 12 {
                d.label.save(dir.join("label.png")).unwrap();
            }
        }
    }
    let options = [
        "-i",
        s(&train),
        "--test-input",
        s(&test),
        "--roi-name",
        "mask.png",
        "--roi-as-ignore",
        "--label-names",
        "background,cell",
    ];
    let counts = "6 training case(s), 3 test case(s)";
    let dataset = convert_folder(&f, &options, "601", "Cells", counts);
    let json = read_json(&dataset.join("dataset.json"));
    assert_eq!(json["labels"]["ignore"], 2, "{json}");
    assert_eq!(files(&dataset.join("roisTs")).len(), 3);
    assert_eq!(files(&dataset.join("labelsTs")).len(), 2);
    prepare(&f, "601");
    let first = tiny_training(&f, "601");
    // Output is a pipe here: one plain line per epoch, counted from 1 as the progress bar does.
    let lines = epoch_lines(&first);
    assert_eq!(lines.len(), 2, "{first}");
    assert!(lines[0].starts_with("epoch 1/2: train loss"), "{first}");
    assert!(
        lines[1].contains("pseudo Dice [") && lines[1].contains("ETA"),
        "{first}"
    );

    // Prediction needs only nnUNet_results; outside each region of interest it is background.
    let pred = f.root.join("pred");
    let images_ts = dataset.join("imagesTs");
    let rois_ts = dataset.join("roisTs");
    let (o, stdout, stderr) = run(nnunet().env("nnUNet_results", &f.results).args(predict(
        &images_ts,
        &pred,
        "601",
        "2d",
        &["--roi-dir", s(&rois_ts)],
    )));
    assert!(o.status.success(), "{stdout}\n{stderr}");
    background_outside_rois(&pred, &rois_ts, "");
    // Scored inside the regions only; the image-only test case has no reference.
    let labels_ts = dataset.join("labelsTs");
    let extra = ["--roi-dir", s(&rois_ts), "--chill"];
    let out = f.nnunet(&strs(&evaluate(&labels_ts, &pred, &extra)));
    assert!(out.contains("2 cases evaluated"), "{out}");
    assert!(out.contains("Dice of 1 (cell): "), "{out}");
    assert!(
        out.contains("1 of the 3 predictions have no reference"),
        "{out}"
    );
    let summary = read_json(&pred.join("summary.json"));
    let roi_pixels = gray(&rois_ts.join("cell_10.png"))
        .pixels()
        .filter(|p| p[0] != 0)
        .count() as u64;
    let m = &summary["metric_per_case"][0]["metrics"]["1"];
    let counted = ["TP", "FP", "FN", "TN"]
        .iter()
        .map(|k| m[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(counted, roi_pixels, "only the region of interest is scored");

    // A missing region of interest is named.
    let partial_rois = f.root.join("partial_rois");
    std::fs::create_dir_all(&partial_rois).unwrap();
    std::fs::copy(
        rois_ts.join("cell_10.png"),
        partial_rois.join("cell_10.png"),
    )
    .unwrap();
    let pred_missing = f.root.join("pred_missing");
    let roi_dir = ["--roi-dir", s(&partial_rois)];
    let err = f.nnunet_fails(&predict(&images_ts, &pred_missing, "601", "2d", &roi_dir));
    assert!(
        err.contains("cell_11.png") && err.contains("missing"),
        "{err}"
    );

    // A finished fold is not trained again without --c; --c alone keeps the recorded schedule.
    let err = f.nnunet_fails(&["train", "601", "2d", "0"]);
    assert!(
        err.contains("trained already") && err.contains("--c"),
        "{err}"
    );
    let out = f.nnunet(&["train", "601", "2d", "0", "--c"]);
    assert!(out.contains("(as recorded in the checkpoint)"), "{out}");
    assert!(out.contains("validation of "), "{out}");
    // A missing checkpoint_final points to checkpoint_best; an unknown configuration lists the
    // planned ones.
    let fold0 = f
        .results
        .join("Dataset601_Cells/nnUNetTrainer__nnUNetPlans__2d/fold_0");
    let final_checkpoint = fold0.join("checkpoint_final.safetensors");
    std::fs::rename(&final_checkpoint, fold0.join("final.bak")).unwrap();
    let pred_x = f.root.join("pred_x");
    let err = f.nnunet_fails(&predict(&images_ts, &pred_x, "601", "2d", &[]));
    assert!(err.contains("-chk checkpoint_best"), "{err}");
    std::fs::rename(fold0.join("final.bak"), &final_checkpoint).unwrap();
    let err = f.nnunet_fails(&predict(&images_ts, &pred_x, "601", "3d_lowres", &[]));
    assert!(
        err.contains("'3d_lowres' is not in the plans") && err.contains("2d"),
        "{err}"
    );

    // Fold 5 is beyond splits_final.json: nnU-Net's random 80:20 split, said so.
    let out = f.nnunet_fails(&["train", "601", "2d", "5", "--val"]);
    assert!(out.contains("random 80:20 split"), "{out}");

    killed_run_continues(&f);
}

/// A run killed with SIGKILL continues with `--c` from the checkpoint written after the last
/// `--checkpoint-minutes` (0: every epoch), one plain line per epoch, epochs counted on.
fn killed_run_continues(f: &Folders) {
    let fold = f
        .results
        .join("Dataset601_Cells/nnUNetTrainer__nnUNetPlans__2d/fold_1");
    let latest = fold.join("checkpoint_latest.safetensors");
    let mut child = f
        .command()
        .args([
            "train",
            "601",
            "2d",
            "1",
            "--epochs",
            "40",
            "--iterations-per-epoch",
            "1",
            "--threads",
            "2",
            "--checkpoint-minutes",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !latest.is_file() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no checkpoint_latest after 5 minutes"
        );
        assert!(child.try_wait().unwrap().is_none(), "training ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = checkpoint_epoch(&latest);
    assert!((1..40).contains(&done), "{done}");
    let stop = (done + 2).to_string();
    let out = f.nnunet(&["train", "601", "2d", "1", "--c", "--stop-after", &stop]);
    assert!(
        out.contains("40 epochs of 1 training and 1 validation iterations")
            && out.contains(&format!("continuing from epoch {done}")),
        "{out}"
    );
    let lines = epoch_lines(&out);
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!("epoch {}/40:", done + 1)),
        "{out}"
    );
    assert_eq!(checkpoint_epoch(&latest), done + 2);
}

/// Layout 2: `images/Image_XXL.png`, `masks/Image_XXL_1stHO.png` and a second annotator's
/// `_2ndHO.png` next to them, `rois/Image_XXL_mask.png`; test cases and folds drawn by patient.
#[test]
fn image_and_mask_folders_with_a_second_annotator() {
    let f = Folders::new();
    let [images, masks, rois] = new_folders(&f, ["images", "masks", "rois"]);
    for patient in 1..=8u32 {
        for (eye, seed) in [("L", 2 * patient), ("R", 2 * patient + 1)] {
            let name = format!("Image_{patient:02}{eye}");
            let d = draw(seed);
            gray_image(&d)
                .save(images.join(format!("{name}.png")))
                .unwrap();
            d.label
                .save(masks.join(format!("{name}_1stHO.png")))
                .unwrap();
            let second = GrayImage::from_fn(SIZE, SIZE, |x, y| {
                let near = (x.saturating_sub(1)..=x + 1)
                    .any(|xx| xx < SIZE && d.label.get_pixel(xx, y)[0] != 0);
                Luma([if near { 255 } else { 0 }])
            });
            second
                .save(masks.join(format!("{name}_2ndHO.png")))
                .unwrap();
            d.roi.save(rois.join(format!("{name}_mask.png"))).unwrap();
        }
    }
    let group = r"^(Image_\d+)";
    let options = [
        "--images",
        s(&images),
        "--labels",
        s(&masks),
        "--label-suffix",
        "_1stHO",
        "--rois",
        s(&rois),
        "--roi-suffix",
        "_mask",
        "--test-fraction",
        "0.25",
        "--group-by",
        group,
    ];
    let counts = "12 training case(s), 4 test case(s)";
    let dataset = convert_folder(&f, &options, "602", "Retina", counts);
    let test_cases = files(&dataset.join("imagesTs"));
    for name in &test_cases {
        let other = if name.contains("L_0000") {
            name.replace("L_0000", "R_0000")
        } else {
            name.replace("R_0000", "L_0000")
        };
        assert!(test_cases.contains(&other), "{name} without {other}");
    }
    prepare(&f, "602");
    let out = f.nnunet(&["make-splits", "-d", "602", "--group-by", group]);
    assert!(out.contains("fold 4:"), "{out}");
    let splits = read_json(&f.pre.join("Dataset602_Retina/splits_final.json"));
    for fold in splits.as_array().unwrap() {
        let val: Vec<&str> = fold["val"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for case in &val {
            let (patient, _) = case.split_at(case.len() - 1);
            assert!(
                val.contains(&format!("{patient}L").as_str())
                    && val.contains(&format!("{patient}R").as_str()),
                "{case}: the other eye is in another fold"
            );
        }
    }
    let err = f.nnunet_fails(&["make-splits", "-d", "602", "--group-by", group]);
    assert!(err.contains("--overwrite"), "{err}");
    tiny_training(&f, "602");

    // Visible predictions (0/255) inside the regions of interest, scored against the original
    // masks of both annotators.
    let pred = f.root.join("pred");
    let (images_ts, rois_ts) = (dataset.join("imagesTs"), dataset.join("roisTs"));
    let extra = ["--roi-dir", s(&rois_ts), "--visible-labels"];
    f.nnunet(&predict(&images_ts, &pred, "602", "2d", &extra));
    background_outside_rois(&pred, &rois_ts, "");
    let simple = |extra: &[&str]| {
        let mut args = vec![
            "evaluate-simple",
            s(&masks),
            s(&pred),
            "-l",
            "1",
            "--roi-dir",
            s(&rois),
            "--roi-suffix",
            "_mask",
            "--chill",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let args = simple(&["--label-suffix", "_1stHO"]);
    let err = f.nnunet_fails(&strs(&args));
    assert!(
        err.contains("255") && err.contains("--visible-labels") && err.contains("_1stHO.png"),
        "{err}"
    );
    let args = simple(&["--label-suffix", "_1stHO", "--visible-labels"]);
    let first = f.nnunet(&strs(&args));
    assert!(first.contains("4 cases evaluated"), "{first}");
    let per_case = first
        .lines()
        .filter(|l| l.starts_with("Image_") && l.contains(": Dice of 1: "))
        .count();
    assert_eq!(per_case, 4, "{first}");
    assert!(first.contains("mean Dice of 1: "), "{first}");
    let args = simple(&["--label-suffix", "_2ndHO", "--visible-labels"]);
    let second = f.nnunet(&strs(&args));
    assert!(second.contains("4 cases evaluated"), "{second}");

    // evaluate with dataset.json: the visible values are an error naming the file, mapped back
    // with --visible-labels to the scores of the plain labels.
    let labels_ts = dataset.join("labelsTs");
    let err = f.nnunet_fails(&strs(&evaluate(&labels_ts, &pred, &[])));
    assert!(
        err.contains("holds the value(s) 255")
            && err.contains("--visible-labels")
            && err.contains(&pred.to_string_lossy().to_string()),
        "{err}"
    );
    let out = f.nnunet(&strs(&evaluate(&labels_ts, &pred, &["--visible-labels"])));
    assert!(out.contains("Dice of 1 (label_1): "), "{out}");
}

/// Layout 3: colour JPEGs with PNG masks of the same names; the RGB images are predicted (one
/// file gives the three channels), and new JPEGs are made a prediction input with
/// `convert-images`.
#[test]
fn colour_jpeg_images() {
    let f = Folders::new();
    let [images, masks, new] = new_folders(&f, ["images", "masks", "new_photos"]);
    for i in 0..8 {
        let d = draw(40 + i);
        colour_image(&d)
            .save(images.join(format!("photo{i}.jpg")))
            .unwrap();
        d.label.save(masks.join(format!("photo{i}.png"))).unwrap();
    }
    colour_image(&draw(60))
        .save(new.join("Patient A.jpeg"))
        .unwrap();
    let options = ["--images", s(&images), "--labels", s(&masks)];
    let options = [&options[..], &["--test-cases", "photo6,photo7"]].concat();
    let counts = "6 training case(s), 2 test case(s)";
    let dataset = convert_folder(&f, &options, "603", "Photos", counts);
    assert_eq!(
        read_json(&dataset.join("dataset.json"))["channel_names"]["2"],
        "B"
    );
    prepare(&f, "603");
    tiny_training(&f, "603");
    let pred = f.root.join("pred");
    let images_ts = dataset.join("imagesTs");
    let out = f.nnunet(&predict(&images_ts, &pred, "603", "2d", &[]));
    assert!(out.contains("predicted 2 case(s)"), "{out}");
    let out = f.nnunet(&strs(&evaluate(&dataset.join("labelsTs"), &pred, &[])));
    assert!(out.contains("2 cases evaluated"), "{out}");

    // An OS error is said once.
    let missing = f.root.join("no_such_folder");
    let err = f.nnunet_fails(&io_args("convert-images", &missing, &new, &[]));
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");

    // New photos, any name, into a prediction input; gray ones are refused with the way out.
    let input: PathBuf = f.root.join("new_input");
    f.nnunet(&io_args("convert-images", &new, &input, &[]));
    assert!(input.join("Patient A_0000.png").is_file());
    let new_pred = f.root.join("new_pred");
    let out = f.nnunet(&predict(&input, &new_pred, "603", "2d", &[]));
    assert!(out.contains("predicted 1 case(s)"), "{out}");
    let gray_input = f.root.join("gray_input");
    f.nnunet(&io_args(
        "convert-images",
        &new,
        &gray_input,
        &["--grayscale"],
    ));
    let gray_pred = f.root.join("gray_pred");
    let err = f.nnunet_fails(&predict(&gray_input, &gray_pred, "603", "2d", &[]));
    assert!(
        err.contains("Patient A_0001.png")
            && err.contains("convert-images")
            && err.contains("--rgb"),
        "{err}"
    );
}
