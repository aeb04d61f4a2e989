// The inputs of the build fingerprint besides the build environment, shared by `build.rs` (which
// hashes them) and the crate's tests (which check that the fingerprint is exactly this).
//
// A plugin and the `nnunet` that loads it exchange the types of nnunet-api and of the crates it
// builds on, so the fingerprint covers: this crate's manifest, build script and sources; the
// workspace's declarations of this crate's dependencies (versions and features); and the crates
// the workspace patches (`[patch.crates-io]`: burn's CPU backend, whose tensors plugins share).
// The pipeline (nnunet-core, the built-in extensions, the CLI) is not an input.

use std::path::{Path, PathBuf};

/// The fingerprint's inputs as `(name, content)` pairs, in a fixed order, for the crate in
/// `api_dir` inside the workspace at `api_dir/..`. Missing files count as empty.
pub(crate) fn fingerprint_inputs(api_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut inputs = Vec::new();
    let manifest = read(&api_dir.join("Cargo.toml"));
    for name in ["Cargo.toml", "build.rs", "fingerprint.rs"] {
        inputs.push((format!("api/{name}"), read(&api_dir.join(name))));
    }
    push_sources(&mut inputs, api_dir, "api");
    let root = api_dir.parent().unwrap_or(api_dir);
    let workspace = String::from_utf8_lossy(&read(&root.join("Cargo.toml"))).into_owned();
    let dependencies = section_lines(&String::from_utf8_lossy(&manifest), "[dependencies]");
    for line in section_lines(&workspace, "[workspace.dependencies]") {
        let name = line.split(['=', '.']).next().unwrap_or("").trim().to_string();
        if dependencies.iter().any(|d| d.starts_with(&format!("{name}.")) || d.starts_with(&format!("{name} "))) {
            inputs.push(("workspace dependency".into(), line.into_bytes()));
        }
    }
    for line in section_lines(&workspace, "[patch.crates-io]") {
        let patched = line.split_once("path = \"").and_then(|(_, rest)| rest.split_once('"'));
        if let Some((path, _)) = patched {
            inputs.push(("patch".into(), line.clone().into_bytes()));
            inputs.push((format!("{path}/Cargo.toml"), read(&root.join(path).join("Cargo.toml"))));
            push_sources(&mut inputs, &root.join(path), path);
        }
    }
    inputs
}

/// Every file the inputs are read from, for `cargo:rerun-if-changed`.
fn fingerprint_files(api_dir: &Path) -> Vec<PathBuf> {
    let root = api_dir.parent().unwrap_or(api_dir);
    let mut files = vec![root.join("Cargo.toml"), api_dir.join("src")];
    let workspace = String::from_utf8_lossy(&read(&root.join("Cargo.toml"))).into_owned();
    for line in section_lines(&workspace, "[patch.crates-io]") {
        if let Some((path, _)) = line.split_once("path = \"").and_then(|(_, r)| r.split_once('"')) {
            files.push(root.join(path).join("Cargo.toml"));
            files.push(root.join(path).join("src"));
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
