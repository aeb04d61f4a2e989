use std::path::{Path, PathBuf};

use super::pipeline::publish;
use super::*;
use nnunet_core::error::Result;

#[test]
fn staged_files_are_published_together() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join(".case.partial");
    std::fs::create_dir_all(&staging).unwrap();
    let header = staging.join("case.mhd");
    std::fs::write(&header, "ElementDataFile = case.zraw\n").unwrap();
    std::fs::write(staging.join("case.zraw"), [1, 2, 3]).unwrap();
    publish(&staging, &header, dir.path()).unwrap();
    assert!(!staging.exists());
    assert_eq!(
        std::fs::read(dir.path().join("case.zraw")).unwrap(),
        [1, 2, 3]
    );
    assert!(dir.path().join("case.mhd").is_file());
}

#[test]
fn checkpoint_names_as_nnunet_spells_them() {
    for name in [
        "checkpoint_final",
        "checkpoint_final.pth",
        "checkpoint_final.safetensors",
    ] {
        assert_eq!(
            checkpoint_file_name(name).unwrap(),
            "checkpoint_final.safetensors"
        );
    }
    assert!(checkpoint_file_name("../x").is_err());
    assert!(checkpoint_file_name(".pth").is_err());
}

/// A new empty folder for one test, named after `what`.
fn test_folder(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nnunet-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The error of [`cases_in_folder`] for the `.png` files of `dir` and a model with
/// `num_channels` channels.
fn folder_error(
    dir: &Path,
    num_channels: usize,
    channels_in: &dyn Fn(&[PathBuf]) -> Result<usize>,
) -> String {
    cases_in_folder(dir, ".png", num_channels, Path::new("/out"), channels_in)
        .unwrap_err()
        .to_string()
}

#[test]
fn cases_follow_nnunet_naming() {
    let dir = test_folder("predictor");
    let touch = |name: &str| std::fs::write(dir.join(name), b"").unwrap();
    for name in [
        "b_0001.png",
        "b_0000.png",
        "a_x_0000.png",
        "a_x_0001.png",
        "notes.txt",
    ] {
        touch(name);
    }
    let out = Path::new("/out");
    let one_per_file = |files: &[PathBuf]| Ok(files.len());
    let cases = cases_in_folder(&dir, ".png", 2, out, &one_per_file).unwrap();
    assert_eq!(
        cases
            .iter()
            .map(|c| c.identifier.as_str())
            .collect::<Vec<_>>(),
        ["a_x", "b"]
    );
    assert_eq!(
        cases[1].files,
        [dir.join("b_0000.png"), dir.join("b_0001.png")]
    );
    assert_eq!(cases[1].output_truncated, out.join("b"));

    // Three channels wanted: the error names the first missing file.
    let err = folder_error(&dir, 3, &one_per_file);
    assert!(
        err.contains("a_x_0002.png") && err.contains("missing"),
        "{err}"
    );
    // One channel wanted: the extra channel file is named.
    let err = folder_error(&dir, 1, &one_per_file);
    assert!(err.contains("a_x_0001.png"), "{err}");
    // A gap in the numbering names the missing file.
    std::fs::remove_file(dir.join("b_0000.png")).unwrap();
    let err = folder_error(&dir, 2, &one_per_file);
    assert!(err.contains("b_0000.png") && err.contains("gaps"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn colour_files_hold_several_channels() {
    let dir = test_folder("predictor-colour");
    let touch = |name: &str| std::fs::write(dir.join(name), b"").unwrap();
    touch("a_x_0000.png");
    touch("a_x_0001.png");
    let out = Path::new("/out");
    // One colour file satisfies three channels; two are too many, a gray one too few.
    let colour = |files: &[PathBuf]| Ok(3 * files.len());
    let err = folder_error(&dir, 3, &colour);
    assert!(err.contains("has 6 channel(s)"), "{err}");
    std::fs::remove_file(dir.join("a_x_0001.png")).unwrap();
    let cases = cases_in_folder(&dir, ".png", 3, out, &colour).unwrap();
    assert_eq!(cases[0].files, [dir.join("a_x_0000.png")]);
    touch("d_0000.png");
    let err = folder_error(&dir, 3, &|files: &[PathBuf]| {
        Ok(if files[0].ends_with("d_0000.png") {
            1
        } else {
            3
        })
    });
    assert!(
        err.contains("d_0001.png") && err.contains("hold 1") && err.contains("--rgb"),
        "{err}"
    );
    assert!(channel_count_hint(1, 3).contains("--grayscale"));
    std::fs::remove_file(dir.join("d_0000.png")).unwrap();
    // A file with the ending but without a channel index.
    touch("c.png");
    let err = folder_error(&dir, 2, &|files: &[PathBuf]| Ok(files.len()));
    assert!(err.contains("c.png") && err.contains("_XXXX"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn continue_needs_every_output() {
    let dir = test_folder("predicted");
    let case = CaseInput {
        identifier: "a".into(),
        files: vec![],
        output_truncated: dir.join("a"),
        previous_stage: None,
        roi: None,
    };
    assert!(!case_is_predicted(&case, ".nii.gz", false));
    std::fs::write(dir.join("a.nii.gz"), b"").unwrap();
    assert!(case_is_predicted(&case, ".nii.gz", false));
    assert!(!case_is_predicted(&case, ".nii.gz", true));
    std::fs::write(dir.join("a.npz"), b"").unwrap();
    assert!(case_is_predicted(&case, ".nii.gz", true));
    std::fs::remove_dir_all(&dir).unwrap();
}
