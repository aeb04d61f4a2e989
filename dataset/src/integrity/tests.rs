use std::collections::HashMap;
use std::sync::Arc;

use ndarray::{Array4, ArrayView3};

use super::*;
use crate::{DatasetJson, choose_reader};
use nnunet_core::error::Error;
use nnunet_core::io::{Image, ImageProperties, Segmentation};
use nnunet_core::registry::Origin;

/// Images held in memory, keyed by path; a path it does not know is a corrupt file. The files
/// themselves exist on disk (empty) so that presence checks pass.
#[derive(Clone, Default)]
struct FakeIO {
    images: Arc<HashMap<PathBuf, Image>>,
    endings: Vec<&'static str>,
    panics: bool,
}

impl Reader for FakeIO {
    fn file_endings(&self) -> &[&str] {
        &self.endings
    }
    fn read_images(&self, files: &[&Path]) -> nnunet_core::Result<Image> {
        if self.panics {
            panic!("index out of bounds");
        }
        let file = files[0];
        self.images
            .get(file)
            .cloned()
            .ok_or_else(|| Error::dataset_file(file, "truncated: unexpected end of file"))
    }
    fn read_segmentation(&self, file: &Path) -> nnunet_core::Result<Segmentation> {
        let image = self.read_images(&[file])?;
        Ok(Segmentation {
            data: image.data.mapv(|v| v as i16),
            properties: image.properties,
        })
    }
    fn write_segmentation(
        &self,
        _: ArrayView3<'_, i16>,
        _: &Path,
        _: &ImageProperties,
    ) -> nnunet_core::Result<()> {
        unimplemented!()
    }
}

fn props() -> ImageProperties {
    ImageProperties {
        spacing: [3.0, 0.5, 0.5],
        origin: vec![10.0, -20.0, 30.0],
        direction: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        extra: Default::default(),
    }
}

fn image(value: f32) -> Image {
    let mut data = Array4::from_elem((1, 2, 3, 4), value);
    data[[0, 0, 0, 0]] = 0.0;
    Image {
        data,
        properties: props(),
    }
}

/// A dataset of `cases` cases with `channels` channels, every image and label map valid.
struct Fixture {
    dir: tempfile::TempDir,
    files: HashMap<PathBuf, Image>,
}

impl Fixture {
    fn new(cases: usize, channels: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("imagesTr")).unwrap();
        std::fs::create_dir_all(root.join("labelsTr")).unwrap();
        let names: serde_json::Map<String, serde_json::Value> = (0..channels)
            .map(|c| (c.to_string(), serde_json::json!(format!("ch{c}"))))
            .collect();
        let dj = serde_json::json!({
            "channel_names": names,
            "labels": {"background": 0, "organ": 1, "tumor": 2},
            "numTraining": cases,
            "file_ending": ".fake",
        });
        std::fs::write(root.join("dataset.json"), dj.to_string()).unwrap();
        let mut fixture = Self {
            dir,
            files: HashMap::new(),
        };
        for case in 0..cases {
            for c in 0..channels {
                fixture.set(&format!("imagesTr/case{case}_{c:04}.fake"), image(5.0));
            }
            fixture.set(&format!("labelsTr/case{case}.fake"), image(1.0));
        }
        fixture
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Replaces `dataset.json` with `text`; gives its path.
    fn write_dataset_json(&self, text: &str) -> PathBuf {
        let json = self.path("dataset.json");
        std::fs::write(&json, text).unwrap();
        json
    }

    fn set(&mut self, rel: &str, image: Image) {
        let path = self.path(rel);
        std::fs::write(&path, b"fake").unwrap();
        self.files.insert(path, image);
    }

    fn get(&mut self, rel: &str) -> &mut Image {
        let path = self.path(rel);
        self.files.get_mut(&path).unwrap()
    }

    fn registries(&self, panics: bool) -> Registries {
        let reader = FakeIO {
            images: Arc::new(self.files.clone()),
            endings: vec![".fake"],
            panics,
        };
        let mut r = Registries::empty();
        r.readers
            .add(
                "FakeIO",
                "test reader",
                Origin::BuiltIn,
                Arc::new(move || Box::new(reader.clone())),
            )
            .unwrap();
        r
    }

    /// Whether `findings` has one about the file `rel` whose message contains `text`.
    fn has(&self, findings: &[Finding], rel: &str, text: &str) -> bool {
        has(findings, &self.path(rel), text)
    }

    fn verify(&self) -> Report {
        verify_dataset(self.dir.path(), &self.registries(false), &mut |_, _| {})
    }
}

fn has(findings: &[Finding], file: &Path, text: &str) -> bool {
    findings
        .iter()
        .any(|f| f.file == file && f.message.contains(text))
}

#[test]
fn clean_dataset_passes() {
    let fixture = Fixture::new(3, 2);
    let mut calls = Vec::new();
    let report = verify_dataset(
        fixture.dir.path(),
        &fixture.registries(false),
        &mut |done, total| calls.push((done, total)),
    );
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.cases, 3);
    assert_eq!(report.reader.as_deref(), Some("FakeIO"));
    assert_eq!(calls, vec![(1, 3), (2, 3), (3, 3)]);
}

#[test]
fn nan_and_inf_are_problems() {
    let mut fixture = Fixture::new(2, 2);
    let img = fixture.get("imagesTr/case1_0001.fake");
    img.data[[0, 1, 1, 1]] = f32::NAN;
    img.data[[0, 1, 2, 1]] = f32::INFINITY;
    img.data[[0, 1, 2, 2]] = f32::NEG_INFINITY;
    let report = fixture.verify();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let file = fixture.path("imagesTr/case1_0001.fake");
    assert!(
        has(
            &report.problems,
            &file,
            "contains 1 NaN and 2 infinite pixel values"
        ),
        "{:?}",
        report.problems
    );
}

#[test]
fn origin_and_direction_mismatches_are_warnings_with_numpy_tolerance() {
    let mut fixture = Fixture::new(3, 1);
    // Within allclose: no finding.
    fixture.get("labelsTr/case0.fake").properties.origin[0] = 10.0 + 5e-5;
    // Beyond it: a warning on the label map.
    fixture.get("labelsTr/case1.fake").properties.origin[1] = -20.01;
    fixture.get("labelsTr/case2.fake").properties.direction[0] = -1.0;
    let report = fixture.verify();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
    assert!(fixture.has(
        &report.warnings,
        "labelsTr/case1.fake",
        "origin [10.0, -20.01, 30.0] differs from the image"
    ));
    assert!(fixture.has(&report.warnings, "labelsTr/case2.fake", "direction"));
}

#[test]
fn spacing_mismatch_is_a_problem() {
    let mut fixture = Fixture::new(2, 1);
    fixture.get("labelsTr/case0.fake").properties.spacing[0] = 3.0 * (1.0 + 5e-6);
    fixture.get("labelsTr/case1.fake").properties.spacing[0] = 3.1;
    let report = fixture.verify();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(fixture.has(
        &report.problems,
        "labelsTr/case1.fake",
        "spacing [3.1, 0.5, 0.5] differs from the image"
    ));
}

#[test]
fn channels_must_agree_with_each_other() {
    let mut fixture = Fixture::new(2, 2);
    fixture.get("imagesTr/case0_0001.fake").properties.spacing = [1.0, 1.0, 1.0];
    fixture.get("imagesTr/case0_0001.fake").properties.origin = vec![0.0, 0.0, 0.0];
    fixture.get("imagesTr/case1_0001.fake").data = Array4::from_elem((1, 2, 3, 5), 1.0);
    let report = fixture.verify();
    let f0 = fixture.path("imagesTr/case0_0001.fake");
    let f1 = fixture.path("imagesTr/case1_0001.fake");
    assert!(has(
        &report.problems,
        &f0,
        "spacing [1.0, 1.0, 1.0] differs from channel 0"
    ));
    assert!(has(
        &report.warnings,
        &f0,
        "origin [0.0, 0.0, 0.0] differs from channel 0"
    ));
    assert!(has(
        &report.problems,
        &f1,
        "shape [2, 3, 5] differs from channel 0's [2, 3, 4]"
    ));
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
}

#[test]
fn label_values_channels_and_empty_maps() {
    let mut fixture = Fixture::new(3, 1);
    fixture.get("labelsTr/case0.fake").data[[0, 1, 1, 1]] = 7.0;
    fixture.get("labelsTr/case1.fake").data.fill(0.0);
    fixture.get("imagesTr/case2_0000.fake").data = Array4::from_elem((3, 2, 3, 4), 1.0);
    let report = fixture.verify();
    assert!(fixture.has(
        &report.problems,
        "labelsTr/case0.fake",
        "contains label values not declared in dataset.json: [7] (declared: [0, 1, 2])"
    ));
    assert!(fixture.has(&report.warnings, "labelsTr/case1.fake", "no foreground"));
    assert!(fixture.has(
        &report.problems,
        "imagesTr/case2_0000.fake",
        "case 'case2' has 3 image channels but dataset.json declares 1"
    ));
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
}

#[test]
fn corrupt_files_and_panicking_readers_are_reported() {
    let mut fixture = Fixture::new(3, 2);
    // Unknown to the fake reader: unreadable.
    fixture
        .files
        .remove(&fixture.path("imagesTr/case1_0000.fake"));
    fixture
        .files
        .remove(&fixture.path("imagesTr/case1_0001.fake"));
    fixture.files.remove(&fixture.path("labelsTr/case2.fake"));
    let report = fixture.verify();
    for rel in [
        "imagesTr/case1_0000.fake",
        "imagesTr/case1_0001.fake",
        "labelsTr/case2.fake",
    ] {
        assert!(
            fixture.has(&report.problems, rel, "truncated"),
            "{rel}: {:?}",
            report.problems
        );
    }
    assert_eq!(report.problems.len(), 3, "{:?}", report.problems);

    let fixture = Fixture::new(2, 1);
    let mut r = Registries::empty();
    let reader = FakeIO {
        images: Arc::new(fixture.files.clone()),
        endings: vec![".fake"],
        panics: true,
    };
    r.readers
        .add(
            "FakeIO",
            "",
            Origin::BuiltIn,
            Arc::new(move || Box::new(reader.clone())),
        )
        .unwrap();
    let report = verify_dataset(fixture.dir.path(), &r, &mut |_, _| {});
    // Two images and two label maps, each reported.
    assert_eq!(report.problems.len(), 4, "{:?}", report.problems);
    assert!(report.problems[0].message.contains("index out of bounds"));
}

#[test]
fn layout_problems_are_all_listed() {
    let mut fixture = Fixture::new(4, 2);
    std::fs::remove_file(fixture.path("imagesTr/case0_0001.fake")).unwrap();
    std::fs::remove_file(fixture.path("labelsTr/case1.fake")).unwrap();
    fixture.set("imagesTr/case2_0002.fake", image(1.0));
    fixture.set("imagesTr/stray.fake", image(1.0));
    fixture.set("labelsTr/orphan.fake", image(1.0));
    fixture.set("imagesTr/case3_0000.FAKE", image(1.0));
    std::fs::write(fixture.path("imagesTr/case3.json"), "{}").unwrap();
    let report = fixture.verify();
    let p = &report.problems;
    assert!(fixture.has(
        p,
        "imagesTr/case0_0001.fake",
        "missing: channel 1 of case 'case0'"
    ));
    assert!(fixture.has(
        p,
        "labelsTr/case1.fake",
        "missing: the label map of case 'case1'"
    ));
    assert!(fixture.has(
        p,
        "imagesTr/case2_0002.fake",
        "dataset.json declares 2 channels"
    ));
    assert!(fixture.has(p, "imagesTr/stray.fake", "belongs to no case"));
    assert_eq!(p.len(), 4, "{p:?}");
    let w = &report.warnings;
    assert!(fixture.has(w, "labelsTr/orphan.fake", "label map of no case"));
    assert!(fixture.has(w, "imagesTr/case3_0000.FAKE", "case-sensitive"));
    assert_eq!(w.len(), 2, "{w:?}");
}

#[test]
fn dataset_json_problems_are_listed_and_checks_go_on() {
    let fixture = Fixture::new(2, 1);
    let json = fixture.write_dataset_json(
        r#"{"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 3},
                "numTraining": 5, "file_ending": ".fake"}"#,
    );
    let report = fixture.verify();
    assert!(has(&report.problems, &json, "labels must be consecutive"));
    assert!(has(
        &report.problems,
        &json,
        "numTraining is 5 but 2 training cases were found"
    ));
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    // Unknown reader name: the nearest names are suggested.
    fixture.write_dataset_json(
        r#"{"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1},
                "numTraining": 2, "file_ending": ".fake", "overwrite_image_reader_writer": "FakeI0"}"#,
    );
    let report = fixture.verify();
    assert!(
        has(
            &report.problems,
            &json,
            "unknown reader 'FakeI0'; did you mean FakeIO?"
        ),
        "{:?}",
        report.problems
    );
    std::fs::remove_file(&json).unwrap();
    let report = fixture.verify();
    assert!(has(&report.problems, &json, "missing"));
}

#[test]
fn explicit_dataset_entries() {
    let fixture = Fixture::new(2, 1);
    let json = fixture.write_dataset_json(
        r#"{"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2},
                "numTraining": 3, "file_ending": ".fake", "dataset": {
                  "x": {"images": ["imagesTr/case0_0000.fake"], "label": "labelsTr/case0.fake"},
                  "y": {"images": ["imagesTr/case1_0000.fake", "imagesTr/case0_0000.fake"],
                        "label": "labelsTr/case1.fake"},
                  "z": {"images": ["elsewhere/z.fake"], "label": "labelsTr/case0.fake"},
                  "x": {"images": ["other.fake"], "label": "other.fake"}}}"#,
    );
    let report = fixture.verify();
    let p = &report.problems;
    assert!(fixture.has(
        p,
        "imagesTr/case0_0000.fake",
        "an extra image channel of case 'y': dataset.json declares 1 channel"
    ));
    assert!(fixture.has(p, "elsewhere/z.fake", "missing: channel 0 of case 'z'"));
    assert!(has(
        p,
        &json,
        "field 'dataset': case 'x' is listed more than once"
    ));
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(fixture.has(
        &report.warnings,
        "labelsTr/case0.fake",
        "listed for two cases"
    ));
}

fn registries_with(readers: &[(&str, FakeIO)]) -> Registries {
    let mut r = Registries::empty();
    for (name, reader) in readers {
        let reader = reader.clone();
        r.readers
            .add(
                name,
                "",
                Origin::BuiltIn,
                Arc::new(move || Box::new(reader.clone())),
            )
            .unwrap();
    }
    r
}

#[test]
fn reader_choice_follows_nnunet_order() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("case_0000.Fake");
    std::fs::write(&file, b"x").unwrap();
    let readable = FakeIO {
        images: Arc::new(HashMap::from([(file.clone(), image(1.0))])),
        endings: vec![".fake"],
        panics: false,
    };
    let unreadable = FakeIO {
        endings: vec![".FAKE"],
        ..Default::default()
    };
    let other = FakeIO {
        endings: vec![".other"],
        ..Default::default()
    };
    let r = registries_with(&[
        ("AaaPluginIO", readable.clone()),
        ("NaturalImage2DIO", unreadable.clone()),
        ("SimpleITKIO", other.clone()),
        ("Tiff3DIO", readable.clone()),
        ("SimpleITKIOWithReorient", readable.clone()),
    ]);
    let labels = crate::Labels::new(
        vec![("background".into(), crate::LabelValue::Label(0))],
        None,
    )
    .unwrap();
    let mut dj = DatasetJson::new(vec![("0".into(), "CT".into())], labels, 1, ".fAKE");
    // Without an example: the first by nnU-Net's order whose ending matches (any case).
    assert_eq!(
        choose_reader(&r, &dj, None).unwrap().name,
        "NaturalImage2DIO"
    );
    // With one: the first that can read it; nnU-Net's readers before others.
    assert_eq!(
        choose_reader(&r, &dj, Some(&file)).unwrap().name,
        "Tiff3DIO"
    );
    let r2 = registries_with(&[
        ("ZzzPluginIO", readable.clone()),
        ("AaaPluginIO", unreadable.clone()),
        ("NaturalImage2DIO", unreadable.clone()),
        ("SimpleITKIOWithReorient", readable.clone()),
    ]);
    assert_eq!(
        choose_reader(&r2, &dj, Some(&file)).unwrap().name,
        "ZzzPluginIO"
    );
    // Nothing can read it: the error names the file and why each reader refused it.
    let r3 = registries_with(&[("NaturalImage2DIO", unreadable.clone())]);
    let e = choose_reader(&r3, &dj, Some(&file))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("case_0000.Fake") && e.contains("NaturalImage2DIO: truncated"),
        "{e}"
    );
    let mut xyz = dj.clone();
    xyz.file_ending = ".xyz".into();
    let e = choose_reader(&r3, &xyz, None).err().unwrap().to_string();
    assert!(
        e.contains("no reader handles the file ending '.xyz'"),
        "{e}"
    );
    // Named in dataset.json: taken as is; an unknown name suggests the nearest.
    dj.overwrite_image_reader_writer = Some("SimpleITKIOWithReorient".into());
    assert_eq!(
        choose_reader(&r, &dj, Some(&file)).unwrap().name,
        "SimpleITKIOWithReorient"
    );
    dj.overwrite_image_reader_writer = Some("SimpleITKIOWithReorent".into());
    let e = choose_reader(&r, &dj, None).err().unwrap().to_string();
    assert!(
        e.contains("did you mean SimpleITKIO, SimpleITKIOWithReorient?"),
        "{e}"
    );
}
