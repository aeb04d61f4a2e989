//! Postprocessing and ensembling: largest-component selection on small hand-checked arrays, and
//! `determine_postprocessing` against nnU-Net v2.8.1's decisions on three constructed cases
//! (`tests/fixtures/postprocessing/make_fixtures.py` ran the reference on the same PNG label
//! maps): the steps chosen, the mean Dice before and after, and the postprocessed pixels.

use std::path::{Path, PathBuf};

use ndarray::{Array3, Array4, ArrayView3, arr3};
use nnunet_core::io::{ImageProperties, Reader, Segmentation};
use nnunet_core::{Error, Result};
use nnunet_dataset::DatasetJson;
use nnunet_evaluation::ensembling::{EnsembleCase, cases_from_folders, merge_case};
use nnunet_evaluation::metrics::LabelOrRegion;
use nnunet_evaluation::postprocessing::{
    DeterminePostprocessing, Postprocessing, Selection, apply_postprocessing_to_folder,
    determine_postprocessing, keep_largest_component, label_components, largest_component_mask,
};
use nnunet_inference::export::read_probabilities_npz;
use nnunet_inference::{LabelHandling, write_probabilities_npz};
use serde_json::Value;

mod common;

use common::{LabelReader, copy_dir};

fn fixtures() -> PathBuf {
    common::fixtures("postprocessing")
}

/// 8-bit greyscale PNG label maps, `[1, 1, y, x]`, as nnU-Net's NaturalImage2DIO reads them.
const PNG_LABELS: LabelReader = LabelReader {
    endings: &[".png"],
    read: read_png_labels,
    write: Some(write_png_labels),
};

/// One PNG label map as a segmentation (spacing `[999, 1, 1]`).
fn read_png_labels(file: &Path) -> Result<Segmentation> {
    let img = image::open(file)
        .map_err(|e| Error::invalid_file(file, e.to_string()))?
        .to_luma8();
    let (w, h) = img.dimensions();
    let data = Array4::from_shape_vec(
        (1, 1, h as usize, w as usize),
        img.into_raw().into_iter().map(i16::from).collect(),
    )
    .unwrap();
    Ok(Segmentation {
        data,
        properties: ImageProperties {
            spacing: [999.0, 1.0, 1.0],
            ..Default::default()
        },
    })
}

/// Writes the one slice of `segmentation` as an 8-bit PNG.
fn write_png_labels(segmentation: ArrayView3<'_, i16>, file: &Path) -> Result<()> {
    let (_, h, w) = segmentation.dim();
    let bytes: Vec<u8> = segmentation.iter().map(|&v| v as u8).collect();
    image::GrayImage::from_raw(w as u32, h as u32, bytes)
        .unwrap()
        .save(file)
        .map_err(|e| Error::invalid_file(file, e.to_string()))
}

#[test]
fn components_use_full_connectivity() {
    // Diagonal neighbours join (8-connectivity in a slice), as scikit-image's default.
    let mask = arr3(&[[
        [true, false, false, false],
        [false, true, false, true],
        [false, false, false, true],
    ]]);
    let (labels, sizes) = label_components(mask.view());
    assert_eq!(sizes, vec![2, 2]);
    assert_eq!(labels, arr3(&[[[1, 0, 0, 0], [0, 1, 0, 2], [0, 0, 0, 2]]]));
    // Across slices, a corner neighbour (dz, dy, dx all 1) joins too: 26-connectivity.
    let mut m = Array3::from_elem((2, 3, 4), false);
    m[[0, 0, 0]] = true;
    m[[1, 1, 1]] = true;
    m[[1, 2, 2]] = true;
    m[[0, 0, 3]] = true; // two steps away along x from (1, 1, 1): separate
    let (_, sizes) = label_components(m.view());
    assert_eq!(sizes, vec![3, 1]);
    assert_eq!(
        largest_component_mask(m.view())
            .iter()
            .filter(|&&v| v)
            .count(),
        3
    );
}

#[test]
fn largest_component_keeps_ties_and_other_labels() {
    let seg = arr3(&[[
        [1i16, 1, 0, 0, 1, 1],
        [0, 0, 0, 0, 0, 0],
        [2, 0, 1, 0, 0, 3],
    ]]);
    // Label 1 alone: two components of size 2 (both kept), one of size 1 (removed).
    let one = keep_largest_component(seg.view(), &Selection::One(LabelOrRegion::Label(1)), 0);
    assert_eq!(
        one,
        arr3(&[[[1, 1, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 3]]])
    );
    // Labels 1 and 3 together: the 3 at the corner joins nothing; ties of size 2 stay.
    let both = keep_largest_component(
        seg.view(),
        &Selection::List(vec![LabelOrRegion::Label(1), LabelOrRegion::Label(3)]),
        0,
    );
    assert_eq!(
        both,
        arr3(&[[[1, 1, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 0]]])
    );
    // A region is the union of its labels: 1 and 2 with a bridge form one component.
    let seg = arr3(&[[[1i16, 0, 0], [2, 0, 1], [0, 0, 0]]]);
    let region = keep_largest_component(
        seg.view(),
        &Selection::One(LabelOrRegion::Region(vec![1, 2])),
        0,
    );
    assert_eq!(region, arr3(&[[[1, 0, 0], [2, 0, 0], [0, 0, 0]]]));
    // Nothing to select: unchanged.
    let empty = keep_largest_component(seg.view(), &Selection::One(LabelOrRegion::Label(7)), 0);
    assert_eq!(empty, seg);
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn close(a: f64, b: &Value) {
    let b = b.as_f64().unwrap();
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

fn check_scenario(name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let pred = tmp.path().join("pred");
    copy_dir(&fixtures().join(name).join("pred"), &pred);
    let dataset_json = DatasetJson::from_file(&fixtures().join("dataset.json")).unwrap();
    let result = determine_postprocessing(&DeterminePostprocessing {
        predictions: &pred,
        reference: &fixtures().join(name).join("gt"),
        dataset_json: &dataset_json,
        reader: &PNG_LABELS,
        num_processes: 2,
        keep_postprocessed_files: true,
    })
    .unwrap();
    let want = expected(name);

    // The decision: our postprocessing.json has the reference's functions and arguments.
    let ours: Value = serde_json::from_str(
        &std::fs::read_to_string(pred.join("postprocessing.json"))
            .unwrap()
            .replace("NaN", "null"),
    )
    .unwrap();
    assert_eq!(
        ours["postprocessing_fns"], want["postprocessing_fns"],
        "{name}"
    );
    assert_eq!(
        ours["postprocessing_kwargs"], want["postprocessing_kwargs"],
        "{name}"
    );
    assert_eq!(
        result.postprocessing,
        Postprocessing::read(&pred.join("postprocessing.json")).unwrap()
    );
    close(result.before.foreground_mean.dice, &want["dice_before"]);
    close(result.after.foreground_mean.dice, &want["dice_after"]);
    for (label, dice) in want["label_dice_after"].as_object().unwrap() {
        let region = LabelOrRegion::from_key(label).unwrap();
        close(result.after.mean_of(&region).unwrap().dice, dice);
        close(
            ours["postprocessed"]["mean"][label]["Dice"]
                .as_f64()
                .unwrap(),
            dice,
        );
    }
    for (label, dice) in want["label_dice_before"].as_object().unwrap() {
        let region = LabelOrRegion::from_key(label).unwrap();
        close(result.before.mean_of(&region).unwrap().dice, dice);
    }
    // The postprocessed predictions are the reference's, pixel for pixel.
    for (case, rows) in want["postprocessed"].as_object().unwrap() {
        let seg = PNG_LABELS
            .read_segmentation(&pred.join("postprocessed").join(case))
            .unwrap();
        let got: Vec<Vec<i64>> = seg
            .data
            .index_axis(ndarray::Axis(0), 0)
            .index_axis(ndarray::Axis(0), 0)
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|&v| v as i64).collect())
            .collect();
        let want_rows: Vec<Vec<i64>> = serde_json::from_value(rows.clone()).unwrap();
        assert_eq!(got, want_rows, "{name}/{case}");
    }
    assert!(pred.join("postprocessed").join("summary.json").is_file());
    assert!(!pred.join("postprocessed").join("temp").exists());

    // Applying the file to the raw predictions gives the same pixels.
    let out = tmp.path().join("applied");
    let n =
        apply_postprocessing_to_folder(&pred, &out, &result.postprocessing, &PNG_LABELS, ".png", 1)
            .unwrap();
    assert_eq!(n, 2);
    for case in want["postprocessed"].as_object().unwrap().keys() {
        let a = PNG_LABELS.read_segmentation(&out.join(case)).unwrap();
        let b = PNG_LABELS
            .read_segmentation(&pred.join("postprocessed").join(case))
            .unwrap();
        assert_eq!(a.data, b.data, "{case}");
    }
}

#[test]
fn removing_a_spurious_foreground_component_is_chosen() {
    check_scenario("fg_improves");
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("pp.json");
    std::fs::write(
        &f,
        r#"{"postprocessing_fns": ["remove_all_but_largest_component_from_segmentation"],
            "postprocessing_kwargs": [{"labels_or_regions": [1, [2, 3]]}], "x": NaN}"#,
    )
    .unwrap();
    let steps = Postprocessing::read(&f).unwrap();
    assert_eq!(
        steps.steps,
        vec![Selection::List(vec![
            LabelOrRegion::Label(1),
            LabelOrRegion::Region(vec![2, 3])
        ])]
    );
}

#[test]
fn nothing_is_chosen_when_nothing_helps() {
    check_scenario("nothing_helps");
}

#[test]
fn per_label_steps_are_chosen_when_the_foreground_step_hurts_a_label() {
    check_scenario("per_label");
}

#[test]
fn bad_postprocessing_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pkl = tmp.path().join("postprocessing.pkl");
    std::fs::write(&pkl, b"\x80\x04").unwrap();
    let err = Postprocessing::read(&pkl).unwrap_err().to_string();
    assert!(
        err.contains("postprocessing.pkl") && err.contains("json"),
        "{err}"
    );
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"postprocessing_fns": ["something_else"], "postprocessing_kwargs": [{}]}"#,
    )
    .unwrap();
    let err = Postprocessing::read(&bad).unwrap_err().to_string();
    assert!(
        err.contains("bad.json") && err.contains("something_else"),
        "{err}"
    );
    std::fs::write(&bad, r#"{"postprocessing_fns": []}"#).unwrap();
    let err = Postprocessing::read(&bad).unwrap_err().to_string();
    assert!(err.contains("postprocessing_kwargs"), "{err}");
}

#[test]
fn ensembling_averages_probabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    // Class 1 wins in a, class 2 in b; the average picks class 1 where a is more certain.
    let pa = Array4::from_shape_vec((3, 1, 1, 2), vec![0.1f32, 0.1, 0.8, 0.5, 0.1, 0.4]).unwrap();
    let pb = Array4::from_shape_vec((3, 1, 1, 2), vec![0.1f32, 0.1, 0.3, 0.2, 0.6, 0.7]).unwrap();
    write_probabilities_npz(&a.join("c1.npz"), pa.view()).unwrap();
    write_probabilities_npz(&b.join("c1.npz"), pb.view()).unwrap();
    assert_eq!(read_probabilities_npz(&a.join("c1.npz")).unwrap(), pa);
    // The properties (a preprocessed case's .json) sit next to the first member's .npz.
    let props = serde_json::json!({
        "image": {"spacing": [999.0, 1.0, 1.0]},
        "spacing": [999.0, 1.0, 1.0],
        "shape_before_cropping": [1, 1, 2],
        "bbox_used_for_cropping": [[0, 1], [0, 1], [0, 2]],
        "shape_after_cropping_and_before_resampling": [1, 1, 2],
        "class_locations": {}
    });
    std::fs::write(a.join("c1.json"), props.to_string()).unwrap();
    let out = tmp.path().join("out");
    let cases = cases_from_folders(&[a.clone(), b.clone()], &out).unwrap();
    assert_eq!(cases.len(), 1);
    let case: &EnsembleCase = &cases[0];
    let written = merge_case(
        case,
        &LabelHandling::Classes { num_classes: 3 },
        &PNG_LABELS,
        ".png",
        true,
    )
    .unwrap();
    let seg = PNG_LABELS.read_segmentation(&written).unwrap();
    // averages: pixel 0: [0.1, 0.55, 0.35] -> 1; pixel 1: [0.1, 0.35, 0.55] -> 2
    assert_eq!(seg.data.iter().copied().collect::<Vec<_>>(), vec![1, 2]);
    let avg = read_probabilities_npz(&out.join("c1.npz")).unwrap();
    assert!((avg[[1, 0, 0, 0]] - 0.55).abs() < 1e-6);
    assert!(out.join("c1.json").is_file());

    // A case missing in one folder is an error naming the folder and the case.
    write_probabilities_npz(&a.join("c2.npz"), pa.view()).unwrap();
    let err = cases_from_folders(&[a, b.clone()], &out)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&b.display().to_string()) && err.contains("c2.npz"),
        "{err}"
    );
    // Not an npz archive.
    std::fs::write(b.join("c2.npz"), b"not a zip").unwrap();
    let err = read_probabilities_npz(&b.join("c2.npz"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("c2.npz") && err.contains("zip"), "{err}");
}
