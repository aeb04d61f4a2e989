use std::path::{Path, PathBuf};

use super::*;

const GOOD: &str = r#"{
        "channel_names": {"1": "T2", "0": "ADC"},
        "labels": {"background": 0, "peripheral": 1, "transition": 2},
        "numTraining": 32,
        "file_ending": ".nii.gz",
        "name": "Prostate"
    }"#;

fn parse(text: &str) -> std::result::Result<DatasetJson, Vec<String>> {
    DatasetJson::parse(Path::new("/data/Dataset005/dataset.json"), text)
        .map_err(|e| e.into_iter().map(|e| e.to_string()).collect())
}

/// The single error of `text`, which must name the file and `field`.
fn error(text: &str, field: &str) -> String {
    let errors = parse(text).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = errors.into_iter().next().unwrap();
    assert!(e.starts_with("/data/Dataset005/dataset.json: "), "{e}");
    assert!(e.contains(&format!("'{field}'")), "{e}");
    e
}

fn with(field: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    v[field] = serde_json::from_str(value).unwrap();
    v.to_string()
}

fn without(field: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    v.as_object_mut().unwrap().remove(field);
    v.to_string()
}

#[test]
fn good_file_keeps_channel_order() {
    let dj = parse(GOOD).unwrap();
    assert_eq!(
        dj.channel_names,
        vec![("1".into(), "T2".into()), ("0".into(), "ADC".into())]
    );
    assert_eq!(dj.num_channels(), 2);
    assert_eq!(dj.num_training, 32);
    assert_eq!(dj.file_ending, ".nii.gz");
    assert_eq!(dj.labels.all_labels(), vec![0, 1, 2]);
    assert!(!dj.labels.is_region_based());
    assert_eq!(dj.labels.ignore_label(), None);
    assert_eq!(
        dj.other,
        vec![("name".into(), serde_json::json!("Prostate"))]
    );
    assert!(!dj.uses_legacy_modality());
    // Written back with the order kept.
    let text = serde_json::to_string(&dj).unwrap();
    assert!(
        text.starts_with(r#"{"channel_names":{"1":"T2","0":"ADC"},"labels":{"background":0,"#),
        "{text}"
    );
    assert_eq!(parse(&text).unwrap(), dj);
}

#[test]
fn legacy_modality_is_accepted() {
    let text = GOOD.replace("channel_names", "modality");
    let dj = parse(&text).unwrap();
    assert!(dj.uses_legacy_modality());
    assert_eq!(dj.channel_names[0], ("1".into(), "T2".into()));
}

#[test]
fn each_missing_field_has_its_own_error() {
    for field in ["channel_names", "labels", "numTraining", "file_ending"] {
        let e = error(&without(field), field);
        assert!(e.contains("missing required field"), "{e}");
    }
    let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    v.as_object_mut().unwrap().remove("labels");
    v.as_object_mut().unwrap().remove("numTraining");
    let errors = parse(&v.to_string()).unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn each_malformed_field_has_its_own_error() {
    let e = error(&with("numTraining", "\"ten\""), "numTraining");
    assert!(e.contains("non-negative integer"), "{e}");
    error(&with("numTraining", "-3"), "numTraining");
    error(&with("numTraining", "2.5"), "numTraining");
    assert_eq!(parse(&with("numTraining", "4.0")).unwrap().num_training, 4);
    let e = error(&with("file_ending", "3"), "file_ending");
    assert!(e.contains("leading dot"), "{e}");
    error(&with("file_ending", "\"nii.gz\""), "file_ending");
    error(&with("channel_names", "[\"CT\"]"), "channel_names");
    error(&with("channel_names", "{}"), "channel_names");
    let e = error(&with("channel_names", "{\"0\": 5}"), "channel_names");
    assert!(e.contains("channel '0'"), "{e}");
    error(&with("labels", "[0, 1]"), "labels");
    let e = error(
        &with("labels", r#"{"background": 0, "a": "one"}"#),
        "labels",
    );
    assert!(e.contains("label 'a'"), "{e}");
    error(
        &with("overwrite_image_reader_writer", "7"),
        "overwrite_image_reader_writer",
    );
    error(
        &with("regions_class_order", "\"1,2\""),
        "regions_class_order",
    );
    error(&with("dataset", "[1]"), "dataset");
    let e = error(
        &with("dataset", r#"{"c1": {"images": ["a.png"]}}"#),
        "dataset",
    );
    assert!(e.contains("case 'c1'") && e.contains("\"label\""), "{e}");
    let e = parse("{\"labels\": ").unwrap_err().remove(0);
    assert!(e.contains("not valid JSON"), "{e}");
    let e = parse("[1, 2]").unwrap_err().remove(0);
    assert!(e.contains("must be a JSON object"), "{e}");
}

#[test]
fn several_malformed_fields_are_all_reported() {
    let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    v["numTraining"] = serde_json::json!("x");
    v["file_ending"] = serde_json::json!(null);
    v["labels"] = serde_json::json!({"tumor": 1});
    let errors = parse(&v.to_string()).unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:?}");
    let e = DatasetJson::from_file(Path::new("/nonexistent/dataset.json")).unwrap_err();
    assert!(
        e.to_string().starts_with("/nonexistent/dataset.json: "),
        "{e}"
    );
}

#[test]
fn overwrite_reader_none_means_none() {
    let dj = parse(&with("overwrite_image_reader_writer", "\"None\"")).unwrap();
    assert_eq!(dj.overwrite_image_reader_writer, None);
    let dj = parse(&with("overwrite_image_reader_writer", "null")).unwrap();
    assert_eq!(dj.overwrite_image_reader_writer, None);
    let dj = parse(&with("overwrite_image_reader_writer", "\"NibabelIO\"")).unwrap();
    assert_eq!(
        dj.overwrite_image_reader_writer.as_deref(),
        Some("NibabelIO")
    );
}

fn label_error(labels: &str, order: Option<&str>) -> String {
    let mut text = with("labels", labels);
    if let Some(order) = order {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["regions_class_order"] = serde_json::from_str(order).unwrap();
        text = v.to_string();
    }
    error(&text, "labels")
}

#[test]
fn background_rules() {
    let e = label_error(r#"{"tumor": 1}"#, None);
    assert!(e.contains("no 'background' label"), "{e}");
    let e = label_error(r#"{"background": [0], "tumor": 1}"#, None);
    assert!(e.contains("not a list"), "{e}");
    let e = label_error(r#"{"background": 1, "tumor": 2}"#, None);
    assert!(e.contains("must be 0 (got 1)"), "{e}");
}

#[test]
fn region_labels() {
    let labels = r#"{"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                         "enhancing tumor": 3}"#;
    let e = label_error(labels, None);
    assert!(e.contains("needs 'regions_class_order'"), "{e}");
    let e = label_error(labels, Some("[1, 2]"));
    assert!(e.contains("has 2 entries but there are 3 regions"), "{e}");
    let mut v: serde_json::Value = serde_json::from_str(&with("labels", labels)).unwrap();
    v["regions_class_order"] = serde_json::json!([1, 2, 3]);
    let dj = parse(&v.to_string()).unwrap();
    assert!(dj.labels.is_region_based());
    assert_eq!(
        dj.labels.regions(),
        vec![vec![1, 2, 3], vec![2, 3], vec![3]]
    );
    assert_eq!(dj.labels.regions_class_order(), Some(&[1, 2, 3][..]));
    assert_eq!(dj.labels.all_labels(), vec![0, 1, 2, 3]);
    // A one-element list is not a region.
    let dj = parse(&with("labels", r#"{"background": 0, "a": [1]}"#)).unwrap();
    assert!(!dj.labels.is_region_based());
    // Serialized with regions_class_order at the top level.
    let text = serde_json::to_string(&parse(&v.to_string()).unwrap()).unwrap();
    assert!(text.contains(r#""regions_class_order":[1,2,3]"#), "{text}");
}

#[test]
fn ignore_label_rules() {
    let dj = parse(&with("labels", r#"{"background": 0, "a": 1, "ignore": 2}"#)).unwrap();
    assert_eq!(dj.labels.ignore_label(), Some(2));
    assert_eq!(dj.labels.all_labels(), vec![0, 1]);
    assert_eq!(dj.labels.expected_values(), vec![0, 1, 2]);
    let e = label_error(r#"{"background": 0, "a": 1, "ignore": 5}"#, None);
    assert!(e.contains("ignore label must be the highest"), "{e}");
    let e = label_error(r#"{"background": 0, "ignore": 1, "a": 2}"#, None);
    assert!(e.contains("ignore label must be the highest"), "{e}");
    let e = label_error(r#"{"background": 0, "a": 1, "ignore": [2, 3]}"#, None);
    assert!(e.contains("ignore label must be an integer"), "{e}");
    // Region-based with an ignore label: the ignore entry is not a region.
    let mut v: serde_json::Value = serde_json::from_str(&with(
        "labels",
        r#"{"background": 0, "wt": [1, 2], "tc": 2, "ignore": 3}"#,
    ))
    .unwrap();
    v["regions_class_order"] = serde_json::json!([1, 2]);
    let dj = parse(&v.to_string()).unwrap();
    assert_eq!(dj.labels.regions(), vec![vec![1, 2], vec![2]]);
}

#[test]
fn duplicate_keys_are_errors() {
    let text = GOOD.replace(r#""transition": 2"#, r#""transition": 2, "peripheral": 3"#);
    let e = error(&text, "labels");
    assert!(e.contains("'peripheral' is declared more than once"), "{e}");
    let text = with(
        "dataset",
        r#"{"a": {"images": ["x.png"], "label": "y.png"}}"#,
    )
    .replace(
        r#""dataset":{"#,
        r#""dataset":{"a": {"images": ["z.png"], "label": "w.png"},"#,
    );
    let e = error(&text, "dataset");
    assert!(e.contains("case 'a' is listed more than once"), "{e}");
}

#[test]
fn explicit_cases_resolve_paths() {
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("NNUNET_TEST_DATA_ROOT", "/mnt/data") };
    let text = with(
        "dataset",
        r#"{"b": {"images": ["imgs/b0.png", "$NNUNET_TEST_DATA_ROOT/b1.png"], "label": "/abs/b.png"},
                "a": {"images": ["${NNUNET_TEST_DATA_ROOT}/a.png", "$UNSET_VAR_XYZ/a1.png"], "label": "l/a.png"}}"#,
    );
    let dj = parse(&text).unwrap();
    let cases = training_cases(Path::new("/raw/D1"), &dj).unwrap();
    assert_eq!(cases[0].id, "b");
    assert_eq!(
        cases[0].images,
        vec![
            PathBuf::from("/raw/D1/imgs/b0.png"),
            PathBuf::from("/mnt/data/b1.png")
        ]
    );
    assert_eq!(cases[0].label, PathBuf::from("/abs/b.png"));
    assert_eq!(cases[1].images[0], PathBuf::from("/mnt/data/a.png"));
    assert_eq!(
        cases[1].images[1],
        PathBuf::from("/raw/D1/$UNSET_VAR_XYZ/a1.png")
    );
    assert_eq!(cases[1].label, PathBuf::from("/raw/D1/l/a.png"));
}

#[test]
fn folder_cases_follow_nnunet_naming() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("imagesTr");
    std::fs::create_dir_all(&images).unwrap();
    for name in [
        "b_0001.png",
        "b_0000.png",
        "a_0000.png",
        "a_b_0000.png",
        "a_0001.png",
        "notes.txt",
        "c.png",
        "d_000.png",
    ] {
        std::fs::write(images.join(name), b"").unwrap();
    }
    let dj = parse(&with("file_ending", "\".png\"")).unwrap();
    let cases = training_cases(tmp.path(), &dj).unwrap();
    let ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a", "a_b", "b"]);
    assert_eq!(
        cases[0].images,
        vec![images.join("a_0000.png"), images.join("a_0001.png")]
    );
    assert_eq!(cases[2].label, tmp.path().join("labelsTr/b.png"));
    let err = training_cases(Path::new("/nonexistent"), &dj).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/imagesTr"), "{err}");
}
