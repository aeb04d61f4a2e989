//! `nnunet demo`: the whole pipeline on a generated 2D dataset in one command (with `--quick`, a
//! shorter schedule than the default, to keep the test suite fast) ends with a good Dice on the
//! test cases, states one prediction time per case and leaves every step's files in `--root`,
//! the fold's validation included.

use nnunet_tests::{nnunet, run};

#[test]
fn demo_runs_end_to_end_with_a_good_dice() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("demo");
    let (out, stdout, stderr) = run(nnunet().args([
        "demo",
        "--quick",
        "--dataset-id",
        "998",
        "--root",
        root.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for step in ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"] {
        assert!(stderr.contains(step), "step {step} not reported:\n{stderr}");
    }
    let dice: f64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("mean foreground Dice: "))
        .unwrap_or_else(|| panic!("no mean Dice printed:\n{stdout}"))
        .parse()
        .unwrap();
    assert!(dice > 0.6, "mean foreground Dice {dice}:\n{stdout}");
    assert!(stdout.contains("label 1 (ellipsoid): Dice"), "{stdout}");
    assert!(stdout.contains("label 2 (box): Dice"), "{stdout}");
    let dataset = "Dataset998_Synthetic2D";
    for path in [
        root.join("nnUNet_raw").join(dataset).join("dataset.json"),
        root.join("nnUNet_preprocessed")
            .join(dataset)
            .join("nnUNetPlans.json"),
        root.join("nnUNet_results")
            .join(dataset)
            .join("nnUNetTrainer__nnUNetPlans__2d")
            .join("fold_0")
            .join("checkpoint_final.safetensors"),
        root.join("nnUNet_results")
            .join(dataset)
            .join("nnUNetTrainer__nnUNetPlans__2d")
            .join("fold_0")
            .join("validation")
            .join("summary.json"),
        root.join("predictions").join("summary.json"),
    ] {
        assert!(path.is_file(), "{} missing", path.display());
    }
    let predictions = std::fs::read_dir(root.join("predictions"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".png"))
        })
        .count();
    assert_eq!(predictions, 4, "one prediction per test case");
    assert!(stdout.contains(&format!("everything is in {}", root.display())));
    // One time per case, said the same wherever it is said.
    let text = format!("{stdout}\n{stderr}");
    let pieces: Vec<&str> = text.split(" s per case").collect();
    let times: Vec<&str> = pieces[..pieces.len() - 1]
        .iter()
        .filter_map(|before| before.rsplit(['(', ' ']).next())
        .collect();
    assert!(times.len() >= 2, "{text}");
    assert!(
        times.windows(2).all(|w| w[0] == w[1]),
        "different times per case: {times:?}"
    );
    assert!(
        stdout.contains("fold 0's validation cases: mean foreground Dice"),
        "{stdout}"
    );
}
