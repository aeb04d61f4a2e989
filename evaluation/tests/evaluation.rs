//! Evaluation against nnU-Net v2.8.1's `summary.json` files in `tests/fixtures/evaluation/`
//! (made by `make_fixtures.py` there): labels with NaN cases, an ignore label, regions and a 2D
//! set, each read from the `.npy` copies of the label maps (the same voxels as the NIfTI/PNG files
//! the reference read; the CLI tests in `tests/tests/evaluate.rs` read those). Also: the errors for
//! shapes that differ and for missing files name the files, and `Summary::read` reads NaN; a
//! region of interest limits what is counted, visible values (0/255) are refused or mapped back,
//! and references are paired by a suffix.

use std::path::{Path, PathBuf};

use ndarray::{Array3, Axis};
use nnunet_core::error::{Error, Result};
use nnunet_core::io::{ImageProperties, Segmentation};
use nnunet_dataset::DatasetJson;
use nnunet_evaluation::metrics::{
    CaseMetrics, EvaluationCase, FolderEvaluation, LabelOrRegion, Scoring, Summary, ValueCheck,
    evaluate_arrays, evaluate_case, evaluate_folders, evaluation_targets,
    labels_to_list_of_regions, pair_files, with_rois,
};
use serde_json::Value;

mod common;

use common::{LabelReader, copy_dir};

fn fixtures() -> PathBuf {
    common::fixtures("evaluation")
}

/// Reads the `.npy` label maps (int16 `[z, y, x]` or `[y, x]`) the fixture script stored.
const NPY_READER: LabelReader = LabelReader {
    endings: &[".npy"],
    read: read_npy_labels,
    write: None,
};

/// One `.npy` label map as a segmentation, `[1, z, y, x]`.
fn read_npy_labels(file: &Path) -> Result<Segmentation> {
    let array: ndarray::ArrayD<i16> = ndarray_npy::read_npy(file)
        .map_err(|e| Error::invalid_file(file, format!("not an int16 .npy: {e}")))?;
    let array = match array.ndim() {
        2 => array.insert_axis(Axis(0)),
        3 => array,
        n => return Err(Error::invalid_file(file, format!("{n} dimensions"))),
    };
    let array: Array3<i16> = array
        .into_dimensionality()
        .map_err(|e| Error::invalid_file(file, e.to_string()))?;
    Ok(Segmentation {
        data: array.insert_axis(Axis(0)),
        properties: ImageProperties::default(),
    })
}

/// Evaluates a fixture set from its `.npy` copies.
fn evaluate_set(set: &str, regions: &[LabelOrRegion], ignore: Option<i64>) -> Summary {
    let folder = fixtures().join(set);
    evaluate_folders(
        &FolderEvaluation {
            reference_folder: &folder.join("gt_npy"),
            prediction_folder: &folder.join("pred_npy"),
            file_ending: ".npy",
            regions,
            ignore_label: ignore,
            num_processes: 2,
            chill: false,
        },
        &NPY_READER,
    )
    .unwrap()
}

/// Puts the file names the reference wrote (`gt/case_000.nii.gz`) on our summary, whose cases
/// were read from `<set>/gt_npy/case_000.npy`.
fn with_reference_paths(mut summary: Summary, ending: &str) -> Summary {
    let rename = |p: &Path, sub: &str| {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        PathBuf::from(format!("{sub}/{stem}{ending}"))
    };
    for case in &mut summary.metric_per_case {
        case.reference_file = rename(&case.reference_file, "gt");
        case.prediction_file = rename(&case.prediction_file, "pred");
    }
    summary
}

/// Compares two JSON texts as parsed values: same keys in the same order, equal strings, counts
/// exactly equal, floats within 1e-12, NaN equal to NaN.
fn assert_same_json(ours: &str, golden: &str, name: &str) {
    let parse = |text: &str| -> Value {
        serde_json::from_str(&text.replace("NaN", "\"NaN\""))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    fn compare(a: &Value, b: &Value, at: &str) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let kx: Vec<&String> = x.keys().collect();
                let ky: Vec<&String> = y.keys().collect();
                assert_eq!(kx, ky, "keys at {at}");
                for (k, v) in x {
                    compare(v, &y[k], &format!("{at}/{k}"));
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.len(), y.len(), "length at {at}");
                for (i, (u, v)) in x.iter().zip(y).enumerate() {
                    compare(u, v, &format!("{at}[{i}]"));
                }
            }
            (Value::Number(x), Value::Number(y)) => {
                assert_eq!(x.is_f64(), y.is_f64(), "int vs float at {at}: {x} {y}");
                if x.is_f64() {
                    let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                    assert!((x - y).abs() <= 1e-12, "{at}: {x} != {y}");
                } else {
                    assert_eq!(x, y, "{at}");
                }
            }
            _ => assert_eq!(a, b, "{at}"),
        }
    }
    compare(&parse(ours), &parse(golden), name);
}

fn golden(set: &str, file: &str) -> String {
    std::fs::read_to_string(fixtures().join(set).join(file)).unwrap()
}

fn dataset_targets(set: &str) -> (Vec<LabelOrRegion>, Option<i64>) {
    let dj = DatasetJson::from_file(&fixtures().join(set).join("dataset.json")).unwrap();
    (evaluation_targets(&dj.labels), dj.labels.ignore_label())
}

/// Checks our summary against the golden file, as values and as text.
fn check(set: &str, file: &str, summary: Summary, ending: &str) {
    let summary = with_reference_paths(summary, ending);
    let ours = summary.to_json();
    let golden = golden(set, file);
    assert_same_json(&ours, &golden, file);
    assert_eq!(ours, golden, "{file}: not byte-identical");
    // And it reads back to the same summary (NaN compares unequal, so compare the text).
    let back = Summary::parse(&golden).unwrap();
    assert_eq!(back.to_json(), golden, "{file}: read and written again");
}

#[test]
fn labels_match_reference() {
    let (targets, ignore) = dataset_targets("labels");
    assert_eq!(
        targets,
        [1, 2, 3].map(LabelOrRegion::Label).to_vec(),
        "foreground labels"
    );
    assert_eq!(ignore, None);
    let summary = evaluate_set("labels", &targets, ignore);
    // case_001 has no label 3 at all: Dice and IoU NaN there, skipped by the mean.
    let m = &summary.metric_per_case[1].metrics[2].1;
    assert!(m.dice.is_nan() && m.iou.is_nan());
    assert!(!summary.mean[2].1.dice.is_nan());
    check("labels", "summary_labels.json", summary, ".nii.gz");
}

#[test]
fn absent_label_makes_the_foreground_mean_nan() {
    let targets = [1, 2, 3, 5].map(LabelOrRegion::Label).to_vec();
    let summary = evaluate_set("labels", &targets, None);
    assert!(
        summary
            .mean_of(&LabelOrRegion::Label(5))
            .unwrap()
            .dice
            .is_nan()
    );
    assert!(summary.foreground_mean.dice.is_nan());
    check("labels", "summary_simple.json", summary, ".nii.gz");
}

#[test]
fn ignore_label_matches_reference() {
    let (targets, ignore) = dataset_targets("ignore");
    assert_eq!(ignore, Some(3));
    let summary = evaluate_set("ignore", &targets, ignore);
    check("ignore", "summary_ignore.json", summary, ".nii.gz");
}

#[test]
fn regions_match_reference() {
    let (targets, ignore) = dataset_targets("regions");
    assert_eq!(
        targets,
        vec![
            LabelOrRegion::Region(vec![1, 2, 3]),
            LabelOrRegion::Region(vec![2, 3]),
            LabelOrRegion::Label(3),
            LabelOrRegion::Region(vec![1]),
        ]
    );
    let summary = evaluate_set("regions", &targets, ignore);
    check("regions", "summary_regions.json", summary, ".nii.gz");
}

#[test]
fn two_d_matches_reference() {
    let targets = [1, 2].map(LabelOrRegion::Label).to_vec();
    let summary = evaluate_set("png", &targets, None);
    check("png", "summary_png.json", summary, ".png");
}

#[test]
fn counts_and_nan_rule_on_arrays() {
    let reference = Array3::from_shape_vec((1, 2, 4), vec![0, 1, 1, 2, 9, 9, 0, 0]).unwrap();
    let prediction = Array3::from_shape_vec((1, 2, 4), vec![1, 1, 0, 2, 1, 2, 0, 0]).unwrap();
    let targets = vec![
        LabelOrRegion::Label(1),
        LabelOrRegion::Region(vec![1, 2]),
        LabelOrRegion::Label(4),
        LabelOrRegion::Label(1),
    ];
    let m = evaluate_arrays(reference.view(), prediction.view(), &targets, Some(9)).unwrap();
    assert_eq!(m.len(), 3, "a repeated label is evaluated once");
    let one = &m[0].1;
    assert_eq!((one.tp, one.fp, one.fn_, one.tn), (1, 1, 1, 3));
    assert_eq!((one.n_pred, one.n_ref), (2, 2));
    assert_eq!(one.dice, 0.5);
    assert_eq!(one.iou, 1.0 / 3.0);
    let region = &m[1].1;
    assert_eq!((region.tp, region.fp, region.fn_, region.tn), (2, 1, 1, 2));
    let absent = &m[2].1;
    assert!(absent.dice.is_nan() && absent.iou.is_nan());
    assert_eq!(absent.tn, 6, "the two ignored voxels are not counted");
    assert_eq!(
        labels_to_list_of_regions(&[1, 2]),
        vec![
            LabelOrRegion::Region(vec![1]),
            LabelOrRegion::Region(vec![2])
        ]
    );
}

/// Copies a fixture set's `.npy` folders into a temporary folder.
fn scratch_copy(set: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["gt_npy", "pred_npy"] {
        copy_dir(&fixtures().join(set).join(sub), &dir.path().join(sub));
    }
    dir
}

fn evaluate_dir(dir: &Path, chill: bool) -> Result<Summary> {
    evaluate_folders(
        &FolderEvaluation {
            reference_folder: &dir.join("gt_npy"),
            prediction_folder: &dir.join("pred_npy"),
            file_ending: ".npy",
            regions: &[LabelOrRegion::Label(1)],
            ignore_label: None,
            num_processes: 1,
            chill,
        },
        &NPY_READER,
    )
}

#[test]
fn shape_mismatch_names_both_files() {
    let dir = scratch_copy("labels");
    let bad = dir.path().join("pred_npy/case_002.npy");
    ndarray_npy::write_npy(&bad, &Array3::<i16>::zeros((8, 10, 11))).unwrap();
    let err = evaluate_dir(dir.path(), false).unwrap_err().to_string();
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(err.contains("gt_npy/case_002.npy"), "{err}");
    assert!(
        err.contains("[8, 10, 11]") && err.contains("[8, 10, 12]"),
        "{err}"
    );
}

#[test]
fn missing_prediction_is_an_error_unless_chill() {
    let dir = scratch_copy("labels");
    std::fs::remove_file(dir.path().join("pred_npy/case_001.npy")).unwrap();
    let err = evaluate_dir(dir.path(), false).unwrap_err().to_string();
    assert!(
        err.contains("case_001.npy") && err.contains("--chill"),
        "{err}"
    );
    let summary = evaluate_dir(dir.path(), true).unwrap();
    let cases: Vec<String> = summary
        .metric_per_case
        .iter()
        .map(|c: &CaseMetrics| {
            c.prediction_file
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into()
        })
        .collect();
    assert_eq!(cases, ["case_000.npy", "case_002.npy", "case_003.npy"]);
}

#[test]
fn prediction_without_reference_names_it() {
    let dir = scratch_copy("labels");
    std::fs::remove_file(dir.path().join("gt_npy/case_003.npy")).unwrap();
    let err = evaluate_dir(dir.path(), true).unwrap_err().to_string();
    assert!(err.contains("pred_npy/case_003.npy"), "{err}");
    assert!(err.contains("gt_npy/case_003.npy"), "{err}");
    std::fs::remove_dir_all(dir.path().join("pred_npy")).unwrap();
    std::fs::create_dir(dir.path().join("pred_npy")).unwrap();
    let err = evaluate_dir(dir.path(), true).unwrap_err().to_string();
    assert!(err.contains("no predictions"), "{err}");
}

#[test]
fn unreadable_file_is_named() {
    let dir = scratch_copy("labels");
    let bad = dir.path().join("gt_npy/case_000.npy");
    std::fs::write(&bad, b"not numpy").unwrap();
    let err = evaluate_dir(dir.path(), false).unwrap_err().to_string();
    assert!(err.contains(&bad.display().to_string()), "{err}");
}

#[test]
fn summary_read_reports_problems_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.json");
    std::fs::write(&path, r#"{"foreground_mean": {"Dice": NaN}}"#).unwrap();
    let err = Summary::read(&path).unwrap_err().to_string();
    assert!(err.contains("summary.json") && err.contains("IoU"), "{err}");
    let summary = Summary::read(&fixtures().join("labels/summary_simple.json")).unwrap();
    assert!(summary.foreground_mean.dice.is_nan());
    assert_eq!(summary.mean.len(), 4);
    assert_eq!(summary.metric_per_case.len(), 4);
    assert_eq!(
        summary.metric_per_case[0].reference_file,
        PathBuf::from("gt/case_000.nii.gz")
    );
}

/// Writes `values` (`[y, x]`) as an int16 `.npy` label map.
fn write_map(path: &Path, values: &[[i16; 4]; 2]) {
    let array = ndarray::Array2::from_shape_fn((2, 4), |(y, x)| values[y][x]);
    ndarray_npy::write_npy(path, &array).unwrap();
}

#[test]
fn roi_visible_values_and_suffix_pairing() {
    let dir = tempfile::tempdir().unwrap();
    let (gt, pred, rois) = (
        dir.path().join("gt"),
        dir.path().join("pred"),
        dir.path().join("rois"),
    );
    for d in [&gt, &pred, &rois] {
        std::fs::create_dir(d).unwrap();
    }
    write_map(&gt.join("a_1stHO.npy"), &[[1, 1, 0, 0], [1, 0, 0, 0]]);
    write_map(&gt.join("a_2ndHO.npy"), &[[0, 0, 0, 0], [0, 0, 0, 0]]);
    write_map(&pred.join("a.npy"), &[[255, 0, 0, 255], [255, 0, 0, 0]]);
    write_map(&rois.join("a_mask.npy"), &[[1, 1, 1, 0], [1, 1, 1, 0]]);
    let cases = pair_files(&gt, &pred, ".npy", "_1stHO", false, false).unwrap();
    assert_eq!(cases[0].reference, gt.join("a_1stHO.npy"));
    let cases = with_rois(cases, &rois, "_mask", ".npy").unwrap();
    let mut scoring = Scoring {
        values: Some(ValueCheck {
            allowed: vec![0, 1],
            labels_from: "dataset.json".into(),
            highest: 1,
            map_visible: false,
            strict: true,
        }),
        ..Scoring::new(&[LabelOrRegion::Label(1)], None)
    };
    let err = evaluate_case(&cases[0], &NPY_READER, &scoring)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pred/a.npy")
            && err.contains("value(s) 255")
            && err.contains("--visible-labels"),
        "{err}"
    );
    scoring.values.as_mut().unwrap().map_visible = true;
    let metrics = evaluate_case(&cases[0], &NPY_READER, &scoring)
        .unwrap()
        .metrics;
    // Inside the region (x < 3): 2 TP, no FP (the 255 at x = 3 is outside), 1 FN, 3 TN.
    let m = metrics[0].1;
    assert_eq!((m.tp, m.fp, m.fn_, m.tn), (2, 0, 1, 3));
    // A missing region of interest is named.
    std::fs::remove_file(rois.join("a_mask.npy")).unwrap();
    let cases = pair_files(&gt, &pred, ".npy", "_1stHO", false, false).unwrap();
    let err = with_rois(cases, &rois, "_mask", ".npy")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a_mask.npy") && err.contains("missing"),
        "{err}"
    );
    // Without a check the visible values are scored as they are (nnU-Net's behaviour).
    let case = EvaluationCase {
        reference: gt.join("a_1stHO.npy"),
        prediction: pred.join("a.npy"),
        roi: None,
    };
    let m = evaluate_case(
        &case,
        &NPY_READER,
        &Scoring::new(&[LabelOrRegion::Label(1)], None),
    )
    .unwrap()
    .metrics[0]
        .1;
    assert_eq!(m.tp, 0);
    // A prediction without a reference is left out only when asked.
    write_map(&pred.join("b.npy"), &[[0; 4]; 2]);
    assert!(pair_files(&gt, &pred, ".npy", "_1stHO", true, false).is_err());
    assert_eq!(
        pair_files(&gt, &pred, ".npy", "_1stHO", true, true)
            .unwrap()
            .len(),
        1
    );
}
