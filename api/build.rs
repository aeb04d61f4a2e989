//! Computes the build fingerprint that dynamic plugins must match (see `src/plugin.rs`).
//!
//! Rust has no stable ABI: a plugin may only be loaded by a host built with the same compiler, for
//! the same target, against the same nnunet-api sources and features. The fingerprint is a SHA-256
//! over the build environment (compiler, target, version, features) and the inputs listed in
//! `fingerprint.rs`.

use sha2::{Digest, Sha256};
use std::process::Command;

include!("fingerprint.rs");

fn main() {
    let api_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
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
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(str::to_string))
        .collect();
    features.sort();
    let environment = Sha256::new()
        .chain_update(rustc_version.as_bytes())
        .chain_update(std::env::var("TARGET").unwrap_or_default().as_bytes())
        .chain_update(
            std::env::var("CARGO_PKG_VERSION")
                .unwrap_or_default()
                .as_bytes(),
        )
        .chain_update(features.join(",").as_bytes())
        .finalize();
    let environment = hex(&environment);
    let hex = fingerprint_hex(&environment, &fingerprint_inputs(&api_dir));
    for file in fingerprint_files(&api_dir) {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=fingerprint.rs");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rustc-env=NNUNET_BUILD_FINGERPRINT={hex}");
    println!("cargo:rustc-env=NNUNET_BUILD_ENVIRONMENT={environment}");
    println!("cargo:rustc-env=NNUNET_RUSTC_VERSION={release}");
    println!(
        "cargo:rustc-env=NNUNET_API_FEATURES={}",
        features.join(",").to_lowercase()
    );
}
