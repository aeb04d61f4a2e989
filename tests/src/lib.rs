//! Helpers for the workspace integration tests: build the `nnunet` binary and the plugin
//! libraries with the same cargo profile as the tests, and run the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The profile folder of the running test binary (`target/debug` or `target/release`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Builds the binary and the plugins once per test process, with the tests' profile and target
/// folder, so that the plugins' descriptors match the binary's. The whole workspace with all
/// targets is built, as `cargo test --workspace` resolves it, so that cargo reuses what the test
/// run already compiled instead of building the dependencies again with other features.
pub fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = profile_dir();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--workspace", "--all-targets"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", dir.parent().expect("target dir"));
        match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(profile) => {
                cmd.args(["--profile", profile]);
            }
            None => panic!("unexpected target layout {}", dir.display()),
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build of the workspace failed");
        dir
    })
}

/// Path of the `nnunet` binary.
pub fn nnunet_bin() -> PathBuf {
    built().join(format!("nnunet{}", std::env::consts::EXE_SUFFIX))
}

/// Path of a plugin library built from the workspace, by crate name.
pub fn plugin(crate_name: &str) -> PathBuf {
    built().join(format!(
        "{}{crate_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// A command running `nnunet` with the nnU-Net variables and plugin list cleared.
pub fn nnunet() -> Command {
    let mut cmd = Command::new(nnunet_bin());
    for var in [
        "nnUNet_raw",
        "nnUNet_preprocessed",
        "nnUNet_results",
        "NNUNET_PLUGINS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a command and returns its output, with stdout and stderr as text.
pub fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run nnunet");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}
