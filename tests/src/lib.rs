//! Helpers for the workspace integration tests: build the `nnunet` binary and the plugin
//! libraries with the same cargo profile as the tests, and run the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use nifti::writer::WriterOptions;

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

    /// A command running `nnunet` with the tree's variables.
    pub fn command(&self) -> Command {
        let mut cmd = nnunet();
        cmd.env("nnUNet_raw", &self.raw)
            .env("nnUNet_preprocessed", &self.pre)
            .env("nnUNet_results", &self.results);
        cmd
    }

    /// Runs `nnunet args` with the tree's variables: whether it succeeded, and stdout + stderr.
    pub fn exec(&self, args: &[&str]) -> (bool, String) {
        let (out, stdout, stderr) = run(self.command().args(args));
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

    /// Plans and preprocesses `configuration` of dataset `id` with two processes; returns the
    /// output.
    pub fn plan_and_preprocess(&self, id: &str, configuration: &str) -> String {
        self.nnunet(&[
            "plan-and-preprocess",
            "-d",
            id,
            "-c",
            configuration,
            "-np",
            "2",
        ])
    }

    /// Makes the example dataset `id` (`make-example-dataset -d ID [--3d] OPTIONS… --shape
    /// SHAPE…`, `--3d` where `shape` has three values), then plans and preprocesses its
    /// `configuration`.
    pub fn example_dataset(&self, id: &str, options: &[&str], shape: &[&str], configuration: &str) {
        let mut args = vec!["make-example-dataset", "-d", id];
        if shape.len() == 3 {
            args.push("--3d");
        }
        args.extend_from_slice(options);
        args.push("--shape");
        args.extend_from_slice(shape);
        self.nnunet(&args);
        self.plan_and_preprocess(id, configuration);
    }
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let (out, stdout, stderr) = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// Runs a command that must fail; returns its stderr.
pub fn run_fails(cmd: &mut Command) -> String {
    let (out, stdout, stderr) = run(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} should fail:\n{stdout}\n{stderr}"
    );
    stderr
}

/// Asserts that `text` contains each of `parts`.
pub fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "no `{part}` in:\n{text}");
    }
}

/// The arguments `COMMAND -i INPUT -o OUTPUT OPTIONS…` of the commands that read one folder or
/// file and write another.
pub fn io_args<'a>(
    command: &'a str,
    input: &'a Path,
    output: &'a Path,
    options: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        command,
        "-i",
        input.to_str().expect("UTF-8 path"),
        "-o",
        output.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(options);
    args
}

/// The arguments of a short `nnunet train`: `train ID CONFIGURATION FOLD` (`run`), `options` (a
/// trainer, a number of epochs, …), then `--iterations-per-epoch N --val-iterations-per-epoch M`
/// (`iterations` = `[N, M]`).
pub fn train_args<'a>(
    run: [&'a str; 3],
    options: &[&'a str],
    iterations: [&'a str; 2],
) -> Vec<&'a str> {
    let mut args = vec!["train"];
    args.extend(run);
    args.extend_from_slice(options);
    args.extend([
        "--iterations-per-epoch",
        iterations[0],
        "--val-iterations-per-epoch",
        iterations[1],
    ]);
    args
}

/// Dice of label `label` between two label maps of the same size (1 where neither has it).
pub fn dice(a: &[u8], b: &[u8], label: u8) -> f64 {
    let (mut both, mut na, mut nb) = (0u64, 0u64, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x == label, y == label);
        both += u64::from(x && y);
        na += u64::from(x);
        nb += u64::from(y);
    }
    if na + nb == 0 {
        1.0
    } else {
        2.0 * both as f64 / (na + nb) as f64
    }
}

/// Writes `value` to `path` as pretty-printed JSON.
pub fn write_json(path: &Path, value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("JSON text");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// An empty MSD task folder `root/name` with its `imagesTr`, `labelsTr` and `imagesTs`.
pub fn msd_task(root: &Path, name: &str) -> PathBuf {
    let task = root.join(name);
    for sub in ["imagesTr", "labelsTr", "imagesTs"] {
        std::fs::create_dir_all(task.join(sub)).expect("create folder");
    }
    task
}

/// A command running `nnunet convert-msd -i TASK` with `nnUNet_raw` set to `raw`.
pub fn convert_msd(raw: &Path, task: &Path) -> Command {
    let mut cmd = nnunet();
    cmd.env("nnUNet_raw", raw)
        .args(["convert-msd", "-i"])
        .arg(task);
    cmd
}

/// A NIfTI header with voxel `spacing` and the axis-aligned sform that puts voxel 0 at `origin`.
pub fn nifti_header(spacing: [f32; 3], origin: [f32; 3]) -> nifti::NiftiHeader {
    let [x, y, z] = spacing;
    nifti::NiftiHeader {
        pixdim: [1.0, x, y, z, 1.0, 0.0, 0.0, 0.0],
        sform_code: 1,
        srow_x: [x, 0.0, 0.0, origin[0]],
        srow_y: [0.0, y, 0.0, origin[1]],
        srow_z: [0.0, 0.0, z, origin[2]],
        ..Default::default()
    }
}

/// A NIfTI writer of `path` with `header`'s geometry.
pub fn nifti_writer<'a>(path: &Path, header: &'a nifti::NiftiHeader) -> WriterOptions<'a> {
    WriterOptions::new(path).reference_header(header)
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
