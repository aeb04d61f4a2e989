//! Computes the build fingerprint that dynamic plugins must match (see `src/plugin.rs`).
//!
//! Rust has no stable ABI: a plugin may only be loaded by a host built from the same nnunet-core
//! sources, with the same compiler, for the same target and with the same core features. The
//! fingerprint is a SHA-256 over exactly those inputs.

use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(&rustc)
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    let release = rustc_version
        .lines()
        .next()
        .unwrap_or("rustc unknown")
        .to_string();

    let mut hasher = Sha256::new();
    hasher.update(rustc_version.as_bytes());
    hasher.update(std::env::var("TARGET").unwrap_or_default().as_bytes());
    hasher.update(
        std::env::var("CARGO_PKG_VERSION")
            .unwrap_or_default()
            .as_bytes(),
    );
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(str::to_string))
        .collect();
    features.sort();
    hasher.update(features.join(",").as_bytes());
    let manifest = Path::new(&manifest_dir).join("Cargo.toml");
    hasher.update(std::fs::read(&manifest).unwrap_or_default());
    println!("cargo:rerun-if-changed={}", manifest.display());
    let mut files = Vec::new();
    collect_sources(&Path::new(&manifest_dir).join("src"), &mut files);
    files.sort();
    for file in files {
        println!("cargo:rerun-if-changed={}", file.display());
        let rel = file.strip_prefix(&manifest_dir).unwrap_or(&file);
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&file).unwrap_or_default());
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=NNUNET_BUILD_FINGERPRINT={hex}");
    println!("cargo:rustc-env=NNUNET_RUSTC_VERSION={release}");
    println!(
        "cargo:rustc-env=NNUNET_CORE_FEATURES={}",
        features.join(",").to_lowercase()
    );
    println!("cargo:rerun-if-env-changed=RUSTC");
}

fn collect_sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
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
