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

/// A temporary `nnUNet_raw` / `nnUNet_preprocessed` / `nnUNet_results` tree (under `root`, as
/// `raw`, `pre` and `results`) that `nnunet` runs with.
pub struct Folders {
    _tmp: tempfile::TempDir,
    /// The temporary folder holding the three trees.
    pub root: PathBuf,
    /// `nnUNet_raw`.
    pub raw: PathBuf,
    /// `nnUNet_preprocessed`.
    pub pre: PathBuf,
    /// `nnUNet_results`.
    pub results: PathBuf,
}

impl Folders {
    /// A new empty tree.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temporary folder");
        let root = tmp.path().to_path_buf();
        let (raw, pre, results) = (root.join("raw"), root.join("pre"), root.join("results"));
        for d in [&raw, &pre, &results] {
            std::fs::create_dir_all(d).expect("create folder");
        }
        Folders {
            _tmp: tmp,
            root,
            raw,
            pre,
            results,
        }
    }

    /// Runs `nnunet args` with the tree's variables: whether it succeeded, and stdout + stderr.
    pub fn exec(&self, args: &[&str]) -> (bool, String) {
        let (out, stdout, stderr) = run(nnunet()
            .env("nnUNet_raw", &self.raw)
            .env("nnUNet_preprocessed", &self.pre)
            .env("nnUNet_results", &self.results)
            .args(args));
        (out.status.success(), format!("{stdout}\n{stderr}"))
    }

    /// Runs `nnunet args`, which must succeed; returns stdout + stderr.
    pub fn nnunet(&self, args: &[&str]) -> String {
        let (ok, text) = self.exec(args);
        assert!(ok, "nnunet {args:?} failed:\n{text}");
        text
    }

    /// Runs `nnunet args`, which must fail; returns stdout + stderr.
    pub fn nnunet_fails(&self, args: &[&str]) -> String {
        let (ok, text) = self.exec(args);
        assert!(!ok, "nnunet {args:?} should fail:\n{text}");
        text
    }
}

/// A JSON file (nnU-Net writes `NaN`, read as null).
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text.replace("NaN", "null"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Copies the folder `from` into `to` (created if needed), recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("folder entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        }
    }
}

/// The raw bytes of a checkpoint's tensors whose names start with `prefix` (`network.`,
/// `optimizer.`), by name, sorted: the safetensors header is JSON with each tensor's offsets.
pub fn checkpoint_tensors(path: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&data[8..8 + n]).unwrap();
    let body = &data[8 + n..];
    let mut out: Vec<(String, Vec<u8>)> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| {
            let o = v["data_offsets"].as_array().unwrap();
            let (a, b) = (
                o[0].as_u64().unwrap() as usize,
                o[1].as_u64().unwrap() as usize,
            );
            (k.clone(), body[a..b].to_vec())
        })
        .collect();
    out.sort();
    out
}
