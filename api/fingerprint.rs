// The inputs of the build fingerprint besides the build environment, shared by `build.rs` (which
// hashes them) and the crate's tests (which check that the fingerprint is exactly this).
//
// A plugin and the `nnunet` that loads it exchange the types of nnunet-api and of the crates it
// builds on, so the fingerprint covers: this crate's manifest, build script and sources; the
// workspace's declarations of this crate's dependencies (versions and features); the crates the
// workspace patches (`[patch.crates-io]`: burn's CPU backend and autodiff, whose tensors and graph
// state plugins share); and, of the workspace's own crates a plugin carries a copy of (nnunet-api's
// path dependencies and those of the patched crates: the kernels), the state the plugin's copy
// adopts from the host (`src/shared.rs`), not the rest of their code.
// The pipeline (nnunet-core, the built-in extensions, the CLI) is not an input.

use std::path::{Path, PathBuf};

/// The fingerprint: the first 16 bytes, in hex, of SHA-256 over `environment` and each input's
/// name, length and content.
pub(crate) fn fingerprint_hex(environment: &str, inputs: &[(String, Vec<u8>)]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new().chain_update(environment.as_bytes());
    for (name, content) in inputs {
        hasher.update(name.as_bytes());
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(content);
    }
    hex(&hasher.finalize()[..16])
}

/// `bytes` as lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint's inputs as `(name, content)` pairs, in a fixed order, for the crate in
/// `api_dir` inside the workspace at `api_dir/..`. Missing files count as empty.
pub(crate) fn fingerprint_inputs(api_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut inputs = Vec::new();
    for name in ["Cargo.toml", "build.rs", "fingerprint.rs"] {
        inputs.push((format!("api/{name}"), read(&api_dir.join(name))));
    }
    push_sources(&mut inputs, api_dir, "api");
    let workspace = workspace_manifest(api_dir);
    for line in api_dependency_lines(api_dir, &workspace) {
        inputs.push(("workspace dependency".into(), line.into_bytes()));
    }
    for line in section_lines(&workspace, "[patch.crates-io]") {
        if quoted_path(&line).is_some() {
            inputs.push(("patch".into(), line.into_bytes()));
        }
    }
    for local in local_crates(api_dir, &workspace) {
        if local.shared_only {
            let shared = format!("{}/src/shared.rs", local.label);
            inputs.push((shared, read(&local.dir.join("src").join("shared.rs"))));
        } else {
            let manifest = format!("{}/Cargo.toml", local.label);
            inputs.push((manifest, read(&local.dir.join("Cargo.toml"))));
            push_sources(&mut inputs, &local.dir, &local.label);
        }
    }
    inputs
}

/// A crate built from this workspace's folders whose code a plugin carries a copy of.
struct LocalCrate {
    /// Its folder relative to the workspace, e.g. `third_party/burn-flex`.
    label: String,
    dir: PathBuf,
    /// A workspace member (part of the pipeline): only the state a plugin's copy adopts from the
    /// host (`src/shared.rs`) is an input, not the rest of its code.
    shared_only: bool,
}

/// The workspace's `Cargo.toml`, as text.
fn workspace_manifest(api_dir: &Path) -> String {
    let root = api_dir.parent().unwrap_or(api_dir);
    String::from_utf8_lossy(&read(&root.join("Cargo.toml"))).into_owned()
}

/// The lines of `[workspace.dependencies]` that declare a dependency of nnunet-api.
fn api_dependency_lines(api_dir: &Path, workspace: &str) -> Vec<String> {
    let manifest = String::from_utf8_lossy(&read(&api_dir.join("Cargo.toml"))).into_owned();
    let dependencies = section_lines(&manifest, "[dependencies]");
    section_lines(workspace, "[workspace.dependencies]")
        .into_iter()
        .filter(|line| {
            let name = line.split(['=', '.']).next().unwrap_or("").trim();
            let (dotted, spaced) = (format!("{name}."), format!("{name} "));
            dependencies.iter().any(|d| d.starts_with(&dotted) || d.starts_with(&spaced))
        })
        .collect()
}

/// The crates built from this workspace's folders whose code a plugin carries: the path
/// dependencies of nnunet-api, the crates the workspace patches (`[patch.crates-io]`) and their
/// path dependencies, each once.
fn local_crates(api_dir: &Path, workspace: &str) -> Vec<LocalCrate> {
    let root = api_dir.parent().unwrap_or(api_dir);
    let mut labels: Vec<String> = api_dependency_lines(api_dir, workspace)
        .iter()
        .filter_map(|line| quoted_path(line).map(str::to_string))
        .collect();
    for line in section_lines(workspace, "[patch.crates-io]") {
        let Some(path) = quoted_path(&line) else { continue };
        labels.push(path.to_string());
        let patched = String::from_utf8_lossy(&read(&root.join(path).join("Cargo.toml"))).into_owned();
        // Path dependencies of the patched crate (other `path = ` lines, such as `[lib]`'s, name
        // files, not crates).
        for dependency in patched.lines().filter_map(quoted_path) {
            let label = normalize(&Path::new(path).join(dependency));
            if root.join(&label).join("Cargo.toml").is_file() {
                labels.push(label);
            }
        }
    }
    let mut crates: Vec<LocalCrate> = Vec::new();
    for label in labels {
        if !crates.iter().any(|c| c.label == label) {
            crates.push(LocalCrate {
                dir: root.join(&label),
                shared_only: is_member(workspace, &label),
                label,
            });
        }
    }
    crates
}

/// Whether the workspace's `members` list names the folder `label`.
fn is_member(workspace: &str, label: &str) -> bool {
    workspace
        .lines()
        .find(|line| line.trim_start().starts_with("members"))
        .is_some_and(|line| line.contains(&format!("\"{label}\"")))
}

/// The value of `path = "..."` in a TOML line, if it has one.
fn quoted_path(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once("path = \"")?;
    rest.split_once('"').map(|(path, _)| path)
}

/// `a/b/../../c` as `c`: a relative path without `..` steps after a name.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir if parts.last().is_some_and(|p| p != "..") => {
                parts.pop();
            }
            other => parts.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    parts.join("/")
}

/// Every file the inputs are read from, for `cargo:rerun-if-changed`.
pub(crate) fn fingerprint_files(api_dir: &Path) -> Vec<PathBuf> {
    let root = api_dir.parent().unwrap_or(api_dir);
    let mut files = vec![root.join("Cargo.toml"), api_dir.join("src")];
    for local in local_crates(api_dir, &workspace_manifest(api_dir)) {
        if local.shared_only {
            files.push(local.dir.join("src").join("shared.rs"));
        } else {
            files.push(local.dir.join("Cargo.toml"));
            files.push(local.dir.join("src"));
        }
    }
    files
}

/// The `.rs` files under `dir/src`, sorted, each named `label/<relative path>`.
fn push_sources(inputs: &mut Vec<(String, Vec<u8>)>, dir: &Path, label: &str) {
    let mut files = Vec::new();
    collect_sources(&dir.join("src"), &mut files);
    files.sort();
    for file in files {
        let relative = file.strip_prefix(dir).unwrap_or(&file).to_string_lossy().into_owned();
        inputs.push((format!("{label}/{relative}"), read(&file)));
    }
}

fn collect_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The non-empty, non-comment lines of a TOML `section`, trimmed.
fn section_lines(toml: &str, section: &str) -> Vec<String> {
    toml.lines()
        .map(str::trim)
        .skip_while(|line| *line != section)
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}
