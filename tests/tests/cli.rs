//! The `nnunet` command line: listings, unknown names, nnU-Net's flag spellings, the nnU-Net
//! command names, and the nnU-Net folder variables.

use nnunet_tests::{assert_contains, nnunet, run, run_fails, run_ok};

#[test]
fn list_trainers_shows_nnunet_names_with_descriptions() {
    let stdout = run_ok(nnunet().args(["list", "trainers"]));
    for name in [
        "nnUNetTrainer",
        "nnUNetTrainer_50epochs",
        "nnUNetTrainerNoDeepSupervision",
        "nnUNetTrainerAdam",
        "nnUNetTrainerAdan",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{stdout}"));
        let description = line[name.len()..]
            .trim()
            .trim_end_matches("[built-in]")
            .trim();
        assert!(description.len() > 10, "no description: {line}");
    }
}

#[test]
fn unknown_names_suggest_the_nearest() {
    for (args, expected) in [
        (
            ["describe", "-tr", "nnUNetTrainer_50epoch"],
            &[
                "unknown trainer 'nnUNetTrainer_50epoch'",
                "did you mean nnUNetTrainer_50epochs",
            ][..],
        ),
        (
            ["describe", "--trainer", "nnunettrainernoda"],
            &["did you mean nnUNetTrainerNoDA"],
        ),
        (
            ["describe", "-pl", "ExperimentPlaner"],
            &["unknown planner 'ExperimentPlaner'"],
        ),
    ] {
        assert_contains(&run_fails(nnunet().args(args)), expected);
    }
}

#[test]
fn nnunet_and_gnu_spellings_are_the_same() {
    let (a, sa, _) = run(nnunet().args(["describe", "-tr", "nnUNetTrainer_5epochs"]));
    let (b, sb, _) = run(nnunet().args(["describe", "--trainer=nnUNetTrainer_5epochs"]));
    assert!(a.status.success() && b.status.success());
    assert_eq!(sa, sb);
    assert!(sa.contains("\"num_epochs\": 5"), "{sa}");
}

#[test]
fn nnunet_command_names_run_their_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("nnUNetv2_train");
    std::os::unix::fs::symlink(nnunet_tests::nnunet_bin(), &link).unwrap();
    let mut cmd = std::process::Command::new(&link);
    // Called as nnUNetv2_train, the binary is `nnunet train`: without the folder variables it
    // says which one to set.
    let stderr = run_fails(
        cmd.args(["4", "3d_fullres", "0"])
            .env_remove("nnUNet_raw")
            .env_remove("nnUNet_preprocessed")
            .env_remove("nnUNet_results"),
    );
    assert!(stderr.contains("nnUNet_"), "{stderr}");
    assert!(!stderr.contains("does not have yet"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unset_folder_variables_are_named_with_how_to_set_them() {
    let stderr = run_fails(nnunet().args(["paths", "-d", "4"]));
    assert_contains(&stderr, &["nnUNet_raw is not set", "export nnUNet_raw="]);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn datasets_are_found_by_id_or_name_and_duplicates_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    std::fs::create_dir_all(raw.join("Dataset004_Hippocampus")).unwrap();
    let paths_4 = || {
        let mut cmd = nnunet();
        cmd.env("nnUNet_raw", &raw).args(["paths", "-d", "4"]);
        cmd
    };
    let stdout = run_ok(&mut paths_4());
    assert!(stdout.starts_with("Dataset004_Hippocampus\n"), "{stdout}");
    let stdout = run_ok(
        nnunet()
            .args(["paths", "-d", "Dataset004_Hippocampus", "--nnunet-raw"])
            .arg(&raw),
    );
    assert!(stdout.starts_with("Dataset004_Hippocampus\n"), "{stdout}");
    std::fs::create_dir_all(raw.join("Dataset004_Other")).unwrap();
    let stderr = run_fails(&mut paths_4());
    assert_contains(&stderr, &["more than one dataset has ID 004"]);
}

#[test]
fn list_survives_a_closed_pipe() {
    use std::io::Read;
    let mut child = nnunet()
        .args(["list", "trainers"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // stdout is dropped here: the rest of the listing meets a closed pipe.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn info_shows_what_nnunet_sees_in_an_image() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("photo.png");
    image::RgbImage::from_fn(5, 3, |x, _| image::Rgb([x as u8, 10, 200]))
        .save(&png)
        .unwrap();
    let stdout = run_ok(nnunet().arg("info").arg(&png));
    let expected = [
        "reader:    NaturalImage2DIO [built-in]",
        "shape:     [3, 1, 3, 5]",
        "spacing:   [999.0, 1.0, 1.0]",
        "channel 0: min 0, max 4",
    ];
    assert_contains(&stdout, &expected);

    let stderr = run_fails(nnunet().arg("info").arg("--segmentation").arg(&png));
    assert!(stderr.contains("photo.png"), "{stderr}");

    let broken = tmp.path().join("broken.nii.gz");
    std::fs::write(&broken, b"\x1f\x8b\x08\x00 not really gzip").unwrap();
    let stderr = run_fails(nnunet().arg("info").arg(&broken));
    assert!(stderr.contains("broken.nii.gz"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn link_commands_makes_links_for_existing_subcommands_only() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    let stdout = run_ok(nnunet().arg("link-commands").arg(&bin));
    let msd = bin.join("nnUNetv2_convert_MSD_dataset");
    assert!(msd.symlink_metadata().is_ok(), "{stdout}");
    assert_eq!(
        std::fs::read_link(&msd).unwrap().canonicalize().unwrap(),
        nnunet_tests::nnunet_bin().canonicalize().unwrap()
    );
    assert!(
        bin.join("nnUNetv2_plan_and_preprocess")
            .symlink_metadata()
            .is_ok()
    );
    assert!(
        bin.join("nnUNetv2_train").symlink_metadata().is_ok(),
        "{stdout}"
    );
    // Through the link, the binary is the subcommand: its help names the MSD input flag.
    let stdout = run_ok(std::process::Command::new(&msd).arg("--help"));
    assert!(stdout.contains("--overwrite-id"), "{stdout}");
    // Existing files are kept unless --force.
    let stderr = run_fails(nnunet().arg("link-commands").arg(&bin));
    assert!(stderr.contains("exists; pass --force"), "{stderr}");
    run_ok(nnunet().arg("link-commands").arg(&bin).arg("--force"));
}

#[test]
fn version_lists_backends_and_devices_explain_themselves() {
    let stdout = run_ok(nnunet().arg("--version"));
    assert!(stdout.contains("backends: cpu (flex)"), "{stdout}");
    let with_wgpu = stdout.contains("wgpu");
    // A Mac user's -device mps is pointed at wgpu (Metal); a missing backend names its feature.
    let stderr = run_fails(nnunet().args(["train", "1", "2d", "0", "-device", "mps"]));
    assert!(stderr.contains("-device wgpu"), "{stderr}");
    if !with_wgpu {
        let (_, _, stderr) = run(nnunet().args(["train", "1", "2d", "0", "-device", "wgpu"]));
        assert!(stderr.contains("--features wgpu"), "{stderr}");
    }
    let (_, _, stderr) = run(nnunet().args(["train", "1", "2d", "0", "-device", "cuda:x"]));
    assert!(stderr.contains("'x' is not a device index"), "{stderr}");
}

#[test]
fn a_negative_checkpoint_interval_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let stderr = run_fails(
        nnunet()
            .env("nnUNet_preprocessed", tmp.path())
            .env("nnUNet_results", tmp.path())
            .args(["train", "1", "2d", "0", "--checkpoint-minutes=-1"]),
    );
    assert!(
        stderr.contains("--checkpoint-minutes must be a number of minutes, 0 or more (got -1)"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
