//! Dynamic plugins end to end: the example plugins load through `--plugin` and `NNUNET_PLUGINS`
//! and show with their origin; a mismatched plugin is refused with a message saying what to
//! rebuild; a name registered twice names both origins.

use std::path::Path;
use std::process::Output;

use nnunet_tests::{assert_contains, nnunet, plugin, run, run_ok};

/// Runs `nnunet --plugin LIB args…`: its output, stdout and stderr.
fn with_plugin(lib: &Path, args: &[&str]) -> (Output, String, String) {
    run(nnunet().arg("--plugin").arg(lib).args(args))
}

#[test]
fn example_trainer_plugin_lists_with_its_origin() {
    let lib = plugin("custom_trainer");
    let (out, stdout, stderr) = with_plugin(&lib, &["list", "trainers"]);
    assert!(out.status.success(), "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("MyTrainer_lr3e-3_300epochs "))
        .unwrap_or_else(|| panic!("plugin trainer missing from:\n{stdout}"));
    let canonical = lib.canonicalize().unwrap();
    assert!(line.contains("learning rate 3e-3"), "{line}");
    assert!(
        line.ends_with(&format!("[plugin {}]", canonical.display())),
        "{line}"
    );
    // Built-ins are still there, marked as such.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("nnUNetTrainer ") && l.ends_with("[built-in]"))
    );
}

#[test]
fn plugin_trainer_settings_are_its_own() {
    let args = ["describe", "-tr", "MyTrainer_lr3e-3_300epochs"];
    let (out, stdout, stderr) = with_plugin(&plugin("custom_trainer"), &args);
    assert!(out.status.success(), "{stderr}");
    let settings = [
        "\"initial_lr\": 0.003",
        "\"num_epochs\": 300",
        "\"weight_decay\": 0.00003",
    ];
    assert_contains(&stdout, &settings);
}

#[test]
fn reader_plugin_loads_from_environment_variable() {
    let both = std::env::join_paths([plugin("custom_reader"), plugin("custom_trainer")]).unwrap();
    let (out, stdout, stderr) = run(nnunet()
        .env("NNUNET_PLUGINS", &both)
        .args(["list", "readers"]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("NpyIO ")
            && l.contains("[plugin ")
            && l.contains("custom_reader")),
        "{stdout}"
    );
}

#[test]
fn mismatched_plugin_is_refused_with_what_to_rebuild() {
    let lib = plugin("mismatched_plugin");
    let (out, stdout, stderr) = with_plugin(&lib, &["list", "trainers"]);
    assert!(
        !out.status.success(),
        "loaded a mismatched plugin:\n{stdout}"
    );
    let what = [
        "mismatched_plugin",
        "refused plugin",
        "rustc 1.70.0",
        "rebuild the plugin",
    ];
    assert_contains(&stderr, &what);
    // The process was not aborted by the plugin's entry point: a normal error exit.
    assert_eq!(out.status.code(), Some(1), "{stderr}");

    let (out, stdout, stderr) = run(nnunet().arg("plugin-info").arg(&lib));
    assert!(!out.status.success());
    assert!(
        stdout.contains("compiler:          rustc 1.70.0"),
        "{stdout}"
    );
    assert!(stderr.contains("rebuild"), "{stderr}");
}

#[test]
fn matching_plugin_info_is_compatible() {
    let stdout = run_ok(nnunet().arg("plugin-info").arg(plugin("custom_reader")));
    assert_contains(
        &stdout,
        &["plugin:            custom_reader", "compatible: yes"],
    );
}

#[test]
fn a_name_registered_twice_names_both_origins() {
    let lib = plugin("custom_trainer");
    let (out, _, stderr) = run(nnunet()
        .arg("--plugin")
        .arg(&lib)
        .env("NNUNET_PLUGINS", &lib)
        .args(["list", "trainers"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("trainer 'MyTrainer_lr3e-3_300epochs' is registered twice"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("custom_trainer").count(), 3, "{stderr}");
}

#[test]
fn files_that_are_not_plugins_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libnotaplugin.so");
    std::fs::write(&fake, b"\x7fELF but not really").unwrap();
    let (out, _, stderr) = with_plugin(&fake, &["list", "losses"]);
    assert!(!out.status.success());
    assert!(stderr.contains("libnotaplugin.so"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (out, _, stderr) = with_plugin(&dir.path().join("missing.so"), &["list", "losses"]);
    assert!(!out.status.success());
    assert!(stderr.contains("missing.so: no such file"), "{stderr}");
}
