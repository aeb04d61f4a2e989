//! `nnunet evaluate` and `nnunet evaluate-simple` end to end on the NIfTI and PNG label maps of
//! `tests/fixtures/evaluation/`: the summary.json written is byte for byte the one nnU-Net v2.8.1
//! wrote for the same command (made by `make_fixtures.py` there), missing predictions stop with
//! their names unless `--chill`, and nnU-Net's command names and flags work.

use std::path::{Path, PathBuf};

use nnunet_tests::{copy_dir, nnunet, nnunet_bin, run};

/// The evaluation fixtures: one folder per set.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/evaluation")
}

/// The text of `path`.
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `nnunet <args>` in the fixture set's folder with `-o <tmp>/summary.json` and returns the
/// summary written and stdout.
fn evaluate_in(set: &str, args: &[&str]) -> (String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("summary.json");
    let (out, stdout, stderr) = run(nnunet()
        .current_dir(fixtures().join(set))
        .args(args)
        .arg("-o")
        .arg(&output));
    assert!(out.status.success(), "{args:?}: {stderr}");
    (read(&output), stdout)
}

#[test]
fn evaluate_simple_equals_reference() {
    let (summary, stdout) = evaluate_in(
        "labels",
        &[
            "evaluate-simple",
            "gt",
            "pred",
            "-l",
            "1",
            "2",
            "3",
            "5",
            "-np",
            "2",
        ],
    );
    assert_eq!(
        summary,
        read(&fixtures().join("labels/summary_simple.json"))
    );
    assert!(stdout.contains("Dice of 1: 0.8191"), "{stdout}");
    assert!(stdout.contains("Dice of 5: NaN"), "{stdout}");
    assert!(stdout.contains("mean foreground Dice: NaN"), "{stdout}");
    assert!(stdout.contains("4 cases evaluated"), "{stdout}");

    let (summary, stdout) = evaluate_in("png", &["evaluate-simple", "gt", "pred", "-l", "1", "2"]);
    assert_eq!(summary, read(&fixtures().join("png/summary_png.json")));
    assert!(stdout.contains("mean foreground Dice: 0.6759"), "{stdout}");
}

#[test]
fn evaluate_with_dataset_json_equals_reference() {
    for set in ["labels", "ignore", "regions"] {
        let (summary, _) = evaluate_in(
            set,
            &[
                "evaluate",
                "gt",
                "pred",
                "-djfile",
                "dataset.json",
                "-pfile",
                "plans.json",
                "-np",
                "2",
            ],
        );
        assert_eq!(
            summary,
            read(&fixtures().join(set).join(format!("summary_{set}.json"))),
            "{set}"
        );
    }
}

/// Runs `nnunet <args>` in `dir`, which must fail; returns stderr.
fn fails_in(dir: &Path, args: &[&str]) -> String {
    let (out, _, stderr) = run(nnunet().current_dir(dir).args(args));
    assert!(!out.status.success(), "{args:?} should fail");
    stderr
}

/// Copies a fixture set's `gt/` and `pred/` into a temporary folder.
fn scratch_copy(set: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["gt", "pred"] {
        copy_dir(&fixtures().join(set).join(sub), &dir.path().join(sub));
    }
    dir
}

#[cfg(unix)]
#[test]
fn missing_prediction_needs_chill_and_default_output() {
    let dir = scratch_copy("labels");
    std::fs::remove_file(dir.path().join("pred/case_002.nii.gz")).unwrap();
    let stderr = fails_in(
        dir.path(),
        &["evaluate-simple", "gt", "pred", "-l", "1", "2"],
    );
    assert!(stderr.contains("case_002.nii.gz"), "{stderr}");
    assert!(stderr.contains("--chill"), "{stderr}");
    assert!(!dir.path().join("pred/summary.json").exists());

    // With --chill the three predicted cases are evaluated into pred/summary.json; invoked as
    // nnU-Net's command, with its flags.
    let link = dir.path().join("nnUNetv2_evaluate_simple");
    std::os::unix::fs::symlink(nnunet_bin(), &link).unwrap();
    let (out, stdout, stderr) = run(std::process::Command::new(&link)
        .current_dir(dir.path())
        .args([
            "gt", "pred", "-l", "1", "2", "-il", "7", "-np", "1", "--chill",
        ]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("3 cases evaluated"), "{stdout}");
    let summary = read(&dir.path().join("pred/summary.json"));
    assert!(summary.contains("\"pred/case_003.nii.gz\""));
    assert!(!summary.contains("case_002"));
}

#[test]
fn bad_inputs_are_named() {
    let dir = scratch_copy("labels");
    // A prediction of another shape: both files named.
    nifti::writer::WriterOptions::new(dir.path().join("pred/case_001.nii.gz"))
        .write_nifti(&ndarray::Array3::<u8>::zeros((11, 10, 8)))
        .unwrap();
    let stderr = fails_in(dir.path(), &["evaluate-simple", "gt", "pred", "-l", "1"]);
    assert!(stderr.contains("pred/case_001.nii.gz"), "{stderr}");
    assert!(stderr.contains("gt/case_001.nii.gz"), "{stderr}");
    assert!(stderr.contains("same shape"), "{stderr}");

    // A file that is not an image.
    std::fs::copy(
        fixtures().join("labels/pred/case_001.nii.gz"),
        dir.path().join("pred/case_001.nii.gz"),
    )
    .unwrap();
    std::fs::write(dir.path().join("pred/case_003.nii.gz"), b"not an image").unwrap();
    let stderr = fails_in(
        dir.path(),
        &["evaluate-simple", "gt", "pred", "-l", "1", "--chill"],
    );
    assert!(stderr.contains("pred/case_003.nii.gz"), "{stderr}");

    let stderr = fails_in(
        dir.path(),
        &[
            "evaluate",
            "gt",
            "pred",
            "-djfile",
            "missing.json",
            "-pfile",
            "plans.json",
        ],
    );
    assert!(stderr.contains("missing.json"), "{stderr}");

    let stderr = fails_in(
        dir.path(),
        &["evaluate-simple", "gt", "pred", "-l", "1", "-o", "out.txt"],
    );
    assert!(
        stderr.contains("out.txt") && stderr.contains(".json"),
        "{stderr}"
    );
}
