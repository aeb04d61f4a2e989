use std::path::Path;

use image::{ImageBuffer, Luma, Rgb, RgbImage};
use nnunet_core::paths::NnunetPaths;

use super::*;
use crate::readers::test_support::assert_error;

fn paths(raw: &Path) -> NnunetPaths {
    NnunetPaths::new(Some(raw.to_path_buf()), None, None)
}

fn job(layout: Layout) -> FolderConversion {
    FolderConversion {
        layout,
        dataset_id: 7,
        dataset_name: "Cells".into(),
        label_map: Vec::new(),
        grayscale: false,
        test_layout: None,
        test_split: TestSplit::None,
        channel_names: None,
        label_names: None,
        roi_as_ignore: false,
        overwrite: false,
    }
}

fn write_case(dir: &Path, mask_value: u8) {
    std::fs::create_dir_all(dir).unwrap();
    RgbImage::from_fn(6, 4, |x, y| Rgb([x as u8 * 10, y as u8 * 20, 7]))
        .save(dir.join("image.png"))
        .unwrap();
    ImageBuffer::<Luma<u8>, Vec<u8>>::from_fn(6, 4, |x, _| {
        Luma([if x > 2 { mask_value } else { 0 }])
    })
    .save(dir.join("label.png"))
    .unwrap();
}

/// The `dataset.json` written into the dataset folder `target`.
fn written_dataset_json(target: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(target.join("dataset.json")).unwrap()).unwrap()
}

#[test]
fn per_case_folders_with_0_255_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("cases");
    for case in ["0", "1", "2"] {
        write_case(&input.join(case), 255);
    }
    std::fs::create_dir_all(input.join("3")).unwrap();
    RgbImage::new(6, 4)
        .save(input.join("3").join("image.png"))
        .unwrap();
    let raw = tmp.path().join("raw");
    let layout = Layout::PerCase {
        root: input,
        image_name: "image.png".into(),
        label_name: "label.png".into(),
        roi_name: None,
    };
    let report = convert_folder(&job(layout.clone()), &paths(&raw)).unwrap();
    assert_eq!((report.training_cases, report.test_cases), (3, 1));
    assert!(
        report.messages[0].contains("0 and 255"),
        "{:?}",
        report.messages
    );
    let target = raw.join("Dataset007_Cells");
    let label = image::open(target.join("labelsTr/1.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(label.get_pixel(5, 0)[0], 1);
    assert_eq!(label.get_pixel(0, 0)[0], 0);
    let img = image::open(target.join("imagesTr/2_0000.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(img.get_pixel(3, 2).0, [30, 40, 7]);
    assert!(target.join("imagesTs/3_0000.png").is_file());
    let json = written_dataset_json(&target);
    assert_eq!(
        json["channel_names"],
        serde_json::json!({"0": "R", "1": "G", "2": "B"})
    );
    assert_eq!(
        json["labels"],
        serde_json::json!({"background": 0, "label_1": 1})
    );
    assert_eq!(json["numTraining"], 3);
    assert_eq!(json["file_ending"], ".png");
    // A second run refuses to overwrite.
    assert_error(
        convert_folder(&job(layout.clone()), &paths(&raw)),
        &["--overwrite"],
    );
    let mut again = job(layout);
    again.overwrite = true;
    again.grayscale = true;
    convert_folder(&again, &paths(&raw)).unwrap();
    let img = image::open(target.join("imagesTr/2_0000.png")).unwrap();
    assert_eq!(img.color(), image::ColorType::L8);
}

#[test]
fn split_folders_with_suffix_jpeg_and_fraction() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    let masks = tmp.path().join("masks");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    for i in 0..10 {
        ImageBuffer::<Luma<u8>, Vec<u8>>::from_fn(8, 8, |x, y| Luma([(x * y) as u8]))
            .save(images.join(format!("Image_{i:02}L.jpg")))
            .unwrap();
        ImageBuffer::<Luma<u8>, Vec<u8>>::from_fn(8, 8, |x, _| Luma([(x % 3) as u8 * 100]))
            .save(masks.join(format!("Image_{i:02}L_1stHO.png")))
            .unwrap();
    }
    let layout = Layout::Split {
        images,
        labels: Some(masks),
        label_suffix: "_1stHO".into(),
        rois: None,
        roi_suffix: String::new(),
    };
    let raw = tmp.path().join("raw");
    let mut j = job(layout);
    // 0, 100, 200 are not consecutive: refused with a suggestion.
    assert_error(
        convert_folder(&j, &paths(&raw)),
        &["--map 100:1 --map 200:2"],
    );
    assert!(!raw.join("Dataset007_Cells").exists());
    j.label_map = vec![(100, 1), (200, 2)];
    j.test_split = TestSplit::Fraction {
        fraction: 0.2,
        seed: 1,
        group_by: None,
    };
    j.label_names = Some(vec!["bg".into(), "a".into(), "b".into()]);
    let report = convert_folder(&j, &paths(&raw)).unwrap();
    assert_eq!((report.training_cases, report.test_cases), (8, 2));
    let target = raw.join("Dataset007_Cells");
    let pngs = std::fs::read_dir(target.join("imagesTr")).unwrap().count();
    assert_eq!(pngs, 8);
    assert_eq!(
        std::fs::read_dir(target.join("labelsTs")).unwrap().count(),
        2
    );
    let label = image::open(
        target.join("labelsTr").join(
            std::fs::read_dir(target.join("labelsTr"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .file_name(),
        ),
    )
    .unwrap()
    .to_luma8();
    assert_eq!(label.get_pixel(2, 0)[0], 2);
}

#[test]
fn bad_inputs_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("cases");
    write_case(&input.join("a"), 1);
    ImageBuffer::<Luma<u8>, Vec<u8>>::new(3, 3)
        .save(input.join("a").join("label.png"))
        .unwrap();
    let layout = Layout::PerCase {
        root: input.clone(),
        image_name: "image.png".into(),
        label_name: "label.png".into(),
        roi_name: None,
    };
    let raw = tmp.path().join("raw");
    assert_error(
        convert_folder(&job(layout.clone()), &paths(&raw)),
        &["label.png", "3x3"],
    );
    std::fs::write(input.join("a").join("label.png"), b"\x89PNG truncated").unwrap();
    assert_error(
        convert_folder(&job(layout), &paths(&raw)),
        &["label.png", "cannot"],
    );
}

fn write_roi(dir: &Path, name: &str) {
    ImageBuffer::<Luma<u8>, Vec<u8>>::from_fn(6, 4, |_, y| Luma([if y > 0 { 255 } else { 0 }]))
        .save(dir.join(name))
        .unwrap();
}

#[test]
fn rois_ignore_label_and_separate_test_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, test) = (tmp.path().join("train"), tmp.path().join("test"));
    for (root, cases) in [(&train, ["a", "b", "c"]), (&test, ["t1", "t2", "t3"])] {
        for case in cases {
            write_case(&root.join(case), 255);
            write_roi(&root.join(case), "mask.png");
        }
    }
    // An image-only test case.
    std::fs::remove_file(test.join("t3").join("label.png")).unwrap();
    let layout = |root: &Path| Layout::PerCase {
        root: root.to_path_buf(),
        image_name: "image.png".into(),
        label_name: "label.png".into(),
        roi_name: Some("mask.png".into()),
    };
    let raw = tmp.path().join("raw");
    let mut j = job(layout(&train));
    j.test_layout = Some(layout(&test));
    j.roi_as_ignore = true;
    let report = convert_folder(&j, &paths(&raw)).unwrap();
    assert_eq!((report.training_cases, report.test_cases), (3, 3));
    let target = raw.join("Dataset007_Cells");
    let label = image::open(target.join("labelsTr/a.png"))
        .unwrap()
        .to_luma8();
    // Row 0 is outside the region of interest: the ignore label 2.
    assert_eq!(label.get_pixel(5, 0)[0], 2);
    assert_eq!((label.get_pixel(5, 1)[0], label.get_pixel(0, 1)[0]), (1, 0));
    let roi = image::open(target.join("roisTs/t3.png"))
        .unwrap()
        .to_luma8();
    assert_eq!((roi.get_pixel(0, 0)[0], roi.get_pixel(0, 1)[0]), (0, 1));
    assert!(target.join("labelsTs/t1.png").is_file());
    assert!(!target.join("labelsTs/t3.png").exists());
    assert!(target.join("imagesTs/t3_0000.png").is_file());
    assert!(target.join("roisTr/b.png").is_file());
    let json = written_dataset_json(&target);
    assert_eq!(
        json["labels"],
        serde_json::json!({"background": 0, "label_1": 1, "ignore": 2})
    );
    // A missing or mis-sized region of interest is named.
    std::fs::remove_file(test.join("t2").join("mask.png")).unwrap();
    j.overwrite = true;
    assert_error(
        convert_folder(&j, &paths(&raw)),
        &["t2", "mask.png", "missing"],
    );
    ImageBuffer::<Luma<u8>, Vec<u8>>::new(2, 2)
        .save(test.join("t2").join("mask.png"))
        .unwrap();
    assert_error(convert_folder(&j, &paths(&raw)), &["mask.png", "2x2"]);
    // The ignore label needs regions of interest.
    let mut no_rois = job(Layout::PerCase {
        root: train,
        image_name: "image.png".into(),
        label_name: "label.png".into(),
        roi_name: None,
    });
    no_rois.roi_as_ignore = true;
    no_rois.overwrite = true;
    assert_error(convert_folder(&no_rois, &paths(&raw)), &["--roi-as-ignore"]);
}

#[test]
fn test_fraction_draws_whole_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("cases");
    for i in 0..10 {
        for eye in ["L", "R"] {
            write_case(&input.join(format!("Image_{i:02}{eye}")), 255);
        }
    }
    let raw = tmp.path().join("raw");
    let mut j = job(Layout::PerCase {
        root: input,
        image_name: "image.png".into(),
        label_name: "label.png".into(),
        roi_name: None,
    });
    j.test_split = TestSplit::Fraction {
        fraction: 0.3,
        seed: 3,
        group_by: Some(r"^(Image_\d+)".into()),
    };
    let report = convert_folder(&j, &paths(&raw)).unwrap();
    assert_eq!((report.training_cases, report.test_cases), (14, 6));
    let test: Vec<String> = std::fs::read_dir(raw.join("Dataset007_Cells/imagesTs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    // both halves (L_ and R_) of each image in the test set: each name without its side twice
    let mut halves = std::collections::BTreeMap::<String, usize>::new();
    for name in &test {
        *halves.entry(name.replace("R_", "L_")).or_default() += 1;
    }
    assert!(halves.values().all(|&n| n == 2), "{test:?}");
}

#[test]
fn images_become_a_prediction_input_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("new");
    std::fs::create_dir_all(&input).unwrap();
    RgbImage::from_fn(5, 3, |x, _| Rgb([x as u8, 9, 200]))
        .save(input.join("Eye 1.jpg"))
        .unwrap();
    ImageBuffer::<Luma<u8>, Vec<u8>>::from_fn(5, 3, |x, _| Luma([x as u8]))
        .save(input.join("other.png"))
        .unwrap();
    let out = tmp.path().join("imagesTs");
    let report = convert_images(&input, None, &out, Colour::Gray, false).unwrap();
    assert_eq!((report.images, report.colour), (2, 0));
    let gray = image::open(out.join("Eye 1_0000.png")).unwrap();
    assert_eq!(gray.color(), image::ColorType::L8);
    assert_error(
        convert_images(&input, None, &out, Colour::Keep, false),
        &["--overwrite"],
    );
    let report = convert_images(&input, None, &out, Colour::Rgb, true).unwrap();
    assert_eq!(report.colour, 2);
    let rgb = image::open(out.join("other_0000.png")).unwrap();
    assert_eq!(rgb.color(), image::ColorType::Rgb8);
    // The same name twice is refused.
    ImageBuffer::<Luma<u8>, Vec<u8>>::new(2, 2)
        .save(input.join("other.bmp"))
        .unwrap();
    assert_error(
        convert_images(&input, None, &out, Colour::Keep, true),
        &["other"],
    );
}
