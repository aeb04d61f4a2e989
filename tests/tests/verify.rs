//! `nnunet verify -d ID`: a good dataset passes; each integrity check catches its broken dataset
//! with a message naming the file; several problems are all listed.

use std::path::{Path, PathBuf};

use nnunet_tests::{nnunet, run};

/// A raw dataset of grayscale PNG files in a temporary `nnUNet_raw`.
struct Dataset {
    raw: tempfile::TempDir,
    dir: PathBuf,
}

const W: u32 = 6;
const H: u32 = 4;

fn write_png(path: &Path, width: u32, height: u32, pixel: impl Fn(u32, u32) -> u8) {
    let img = image::GrayImage::from_fn(width, height, |x, y| image::Luma([pixel(x, y)]));
    img.save(path).unwrap();
}

impl Dataset {
    /// `cases` cases with two channels and labels 0, 1, 2 (each label map holds all three).
    fn new(cases: usize) -> Self {
        let raw = tempfile::tempdir().unwrap();
        let dir = raw.path().join("Dataset042_Tiny");
        std::fs::create_dir_all(dir.join("imagesTr")).unwrap();
        std::fs::create_dir_all(dir.join("labelsTr")).unwrap();
        let d = Self { raw, dir };
        d.write_json(&serde_json_text(cases));
        for case in 0..cases {
            for channel in 0..2 {
                write_png(&d.image(case, channel), W, H, |x, y| {
                    (x * 10 + y + channel as u32) as u8
                });
            }
            write_png(&d.label(case), W, H, |x, _| (x % 3) as u8);
        }
        d
    }

    fn write_json(&self, text: &str) {
        std::fs::write(self.json(), text).unwrap();
    }

    fn json(&self) -> PathBuf {
        self.dir.join("dataset.json")
    }

    fn image(&self, case: usize, channel: usize) -> PathBuf {
        self.dir
            .join("imagesTr")
            .join(format!("case{case:03}_{channel:04}.png"))
    }

    fn label(&self, case: usize) -> PathBuf {
        self.dir.join("labelsTr").join(format!("case{case:03}.png"))
    }

    fn verify(&self) -> (bool, String, String) {
        let (out, stdout, stderr) = run(nnunet()
            .env("nnUNet_raw", self.raw.path())
            .args(["verify", "-d", "42"]));
        (out.status.success(), stdout, stderr)
    }

    /// Runs `nnunet verify`, expects it to fail, and returns its standard output.
    fn fails(&self) -> String {
        let (ok, stdout, stderr) = self.verify();
        assert!(!ok, "verify passed a broken dataset:\n{stdout}\n{stderr}");
        assert!(stderr.contains("Dataset042_Tiny has"), "{stderr}");
        stdout
    }

    /// Runs `nnunet verify`, expects it to fail with the line `<file>: <message…>`, and returns
    /// its standard output.
    fn fails_with(&self, file: &Path, message: &str) -> String {
        let stdout = self.fails();
        assert_line(&stdout, file, message);
        stdout
    }
}

fn serde_json_text(num_training: usize) -> String {
    format!(
        r#"{{
    "channel_names": {{"0": "T2", "1": "ADC"}},
    "labels": {{"background": 0, "organ": 1, "tumor": 2}},
    "numTraining": {num_training},
    "file_ending": ".png",
    "name": "Tiny"
}}"#
    )
}

/// Asserts that `stdout` has the line `<file>: <message…>`.
fn assert_line(stdout: &str, file: &Path, message: &str) {
    let prefix = format!("{}: ", file.display());
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&prefix) && l.contains(message)),
        "no line `{prefix}…{message}…` in:\n{stdout}"
    );
}

#[test]
fn good_dataset_passes() {
    let d = Dataset::new(3);
    let (ok, stdout, stderr) = d.verify();
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "Dataset042_Tiny: 0 problems, 0 warnings in 3 cases, read with NaturalImage2DIO"
        ),
        "{stdout}"
    );
}

#[test]
fn missing_channel() {
    let d = Dataset::new(3);
    std::fs::remove_file(d.image(1, 1)).unwrap();
    let stdout = d.fails_with(&d.image(1, 1), "missing: channel 1 of case 'case001'");
    assert!(stdout.contains("1 problem,"), "{stdout}");
}

#[test]
fn missing_label() {
    let d = Dataset::new(3);
    std::fs::remove_file(d.label(2)).unwrap();
    d.fails_with(&d.label(2), "missing: the label map of case 'case002'");
}

#[test]
fn num_training_mismatch() {
    let d = Dataset::new(3);
    d.write_json(&serde_json_text(4));
    d.fails_with(
        &d.json(),
        "numTraining is 4 but 3 training cases were found",
    );
}

#[test]
fn undeclared_label_value() {
    let d = Dataset::new(3);
    write_png(
        &d.label(0),
        W,
        H,
        |x, y| if x == 2 && y == 1 { 5 } else { 1 },
    );
    let message = "contains label values not declared in dataset.json: [5] (declared: [0, 1, 2])";
    d.fails_with(&d.label(0), message);
}

#[test]
fn shape_mismatch_between_image_and_label() {
    let d = Dataset::new(3);
    write_png(&d.label(1), W + 1, H, |_, _| 1);
    d.fails_with(
        &d.label(1),
        "shape [1, 4, 7] differs from the image's [1, 4, 6]",
    );
}

#[test]
fn truncated_and_corrupt_files() {
    let d = Dataset::new(3);
    let bytes = std::fs::read(d.image(2, 0)).unwrap();
    std::fs::write(d.image(2, 0), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(d.label(1), b"this is not a PNG file").unwrap();
    let stdout = d.fails();
    assert_line(&stdout, &d.image(2, 0), "");
    assert_line(&stdout, &d.label(1), "");
    assert!(stdout.contains("2 problems,"), "{stdout}");
}

#[test]
fn bad_dataset_json_field() {
    let d = Dataset::new(3);
    d.write_json(&serde_json_text(3).replace("\"numTraining\": 3", "\"numTraining\": \"three\""));
    let message = "field 'numTraining' must be a non-negative integer, not the string \"three\"";
    d.fails_with(&d.json(), message);
    d.write_json(&serde_json_text(3).replace("\"background\": 0", "\"background\": 1"));
    d.fails_with(&d.json(), "field 'labels': the background label must be 0");
    d.write_json("{\"channel_names\": ");
    d.fails_with(&d.json(), "not valid JSON");
}

#[test]
fn several_problems_are_all_listed() {
    let d = Dataset::new(4);
    std::fs::remove_file(d.image(0, 1)).unwrap();
    std::fs::remove_file(d.label(1)).unwrap();
    write_png(&d.label(2), W, H, |_, _| 9);
    write_png(&d.image(3, 1), W, H + 2, |_, _| 9);
    std::fs::write(d.dir.join("imagesTr/case004.png"), b"").unwrap();
    write_png(&d.dir.join("labelsTr/case000_copy.png"), W, H, |_, _| 0);
    d.write_json(&serde_json_text(5));
    let stdout = d.fails();
    assert_line(&stdout, &d.image(0, 1), "missing: channel 1");
    assert_line(&stdout, &d.label(1), "missing: the label map");
    assert_line(&stdout, &d.label(2), "not declared in dataset.json: [9]");
    assert_line(
        &stdout,
        &d.image(3, 1),
        "shape [1, 6, 6] differs from channel 0's [1, 4, 6]",
    );
    assert_line(
        &stdout,
        &d.dir.join("imagesTr/case004.png"),
        "belongs to no case",
    );
    assert_line(&stdout, &d.json(), "numTraining is 5 but 4");
    assert!(
        stdout.lines().any(|l| l.starts_with("warning: ")
            && l.contains("case000_copy.png")
            && l.contains("label map of no case")),
        "{stdout}"
    );
    assert!(
        stdout.contains("6 problems, 1 warning in 4 cases"),
        "{stdout}"
    );
}

#[test]
fn warnings_alone_pass() {
    let d = Dataset::new(2);
    write_png(&d.label(0), W, H, |_, _| 0);
    let (ok, stdout, stderr) = d.verify();
    assert!(ok, "{stdout}\n{stderr}");
    let warning = format!(
        "warning: {}: contains no foreground label",
        d.label(0).display()
    );
    assert!(stdout.lines().any(|l| l.starts_with(&warning)), "{stdout}");
    assert!(
        stdout.contains("0 problems, 1 warning in 2 cases"),
        "{stdout}"
    );
}
