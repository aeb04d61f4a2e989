//! Dynamic plugins: shared libraries (`cdylib`) that add trainers, readers, planners, losses,
//! augmentations or architectures to the registries at run time.
//!
//! Rust has no stable ABI, so a plugin is checked before any of its Rust code is called: it must
//! export [`PluginDescriptor`] under the symbol `NNUNET_PLUGIN_DESCRIPTOR`, a `#[repr(C)]` struct
//! of plain C strings that can be read safely whatever compiler built the plugin. The loader
//! compares the nnunet-core version, the rustc version and the build fingerprint (a hash of the
//! nnunet-core sources, the compiler, the target and the core features) with its own, and only when
//! all three match does it call the plugin's entry point. A mismatched plugin is refused with a
//! message saying what to rebuild.
//!
//! Plugin authors write one registration function and export it with [`crate::export_plugin!`]:
//!
//! ```ignore
//! fn register(r: &mut nnunet_core::plugin::PluginRegistrar) -> nnunet_core::Result<()> {
//!     r.trainer("MyTrainer", "nnUNetTrainer with a lower learning rate", || Box::new(MyTrainer))
//! }
//! nnunet_core::export_plugin!(register);
//! ```

use std::ffi::{CStr, c_char};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::augmentation::Augmentation;
use crate::error::{Error, Result};
use crate::io::Reader;
use crate::loss::Loss;
use crate::network::Architecture;
use crate::planning::Planner;
use crate::registry::{Origin, Registries};
use crate::training::Trainer;

/// Marks the start of a descriptor, so that a foreign symbol of the same name is not misread.
pub const DESCRIPTOR_MAGIC: [u8; 16] = *b"NNUNET-RS-PLUGIN";
/// Layout version of [`PluginDescriptor`] itself.
pub const DESCRIPTOR_LAYOUT: u32 = 1;
/// Name of the exported descriptor symbol.
pub const DESCRIPTOR_SYMBOL: &str = "NNUNET_PLUGIN_DESCRIPTOR";
/// Name of the exported entry point symbol.
pub const ENTRY_SYMBOL: &str = "nnunet_plugin_register";

/// Version of nnunet-core this binary was built from.
pub const CORE_VERSION: &CStr = cstr_env(concat!(env!("CARGO_PKG_VERSION"), "\0"));
/// `rustc --version` of the compiler that built nnunet-core.
pub const RUSTC_VERSION: &CStr = cstr_env(concat!(env!("NNUNET_RUSTC_VERSION"), "\0"));
/// Hash of the nnunet-core sources, compiler, target and features (see `build.rs`).
pub const BUILD_FINGERPRINT: &CStr = cstr_env(concat!(env!("NNUNET_BUILD_FINGERPRINT"), "\0"));
/// Cargo features nnunet-core was built with (comma-separated, for messages).
pub const CORE_FEATURES: &str = env!("NNUNET_CORE_FEATURES");

const fn cstr_env(s: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(s.as_bytes()) {
        Ok(c) => c,
        Err(_) => panic!("build value contains a NUL byte"),
    }
}

/// What a plugin exports so that the loader can check it before calling any Rust code in it.
/// All fields are C types; the strings are NUL-terminated and static.
#[repr(C)]
pub struct PluginDescriptor {
    pub magic: [u8; 16],
    pub layout: u32,
    pub core_version: *const c_char,
    pub rustc_version: *const c_char,
    pub build_fingerprint: *const c_char,
    pub plugin_name: *const c_char,
}

// SAFETY: the descriptor only holds pointers to immutable static strings.
unsafe impl Sync for PluginDescriptor {}

impl PluginDescriptor {
    /// The descriptor of a plugin built against this nnunet-core, named `plugin_name`.
    pub const fn current(plugin_name: &'static CStr) -> Self {
        Self {
            magic: DESCRIPTOR_MAGIC,
            layout: DESCRIPTOR_LAYOUT,
            core_version: CORE_VERSION.as_ptr(),
            rustc_version: RUSTC_VERSION.as_ptr(),
            build_fingerprint: BUILD_FINGERPRINT.as_ptr(),
            plugin_name: plugin_name.as_ptr(),
        }
    }
}

/// Exports a plugin: the descriptor and the entry point calling `$register`, a
/// `fn(&mut PluginRegistrar) -> nnunet_core::Result<()>`. Use once, at the crate root of a `cdylib`.
#[macro_export]
macro_rules! export_plugin {
    ($register:path) => {
        #[unsafe(no_mangle)]
        #[used]
        pub static NNUNET_PLUGIN_DESCRIPTOR: $crate::plugin::PluginDescriptor =
            $crate::plugin::PluginDescriptor::current(match ::std::ffi::CStr::from_bytes_with_nul(
                concat!(env!("CARGO_PKG_NAME"), "\0").as_bytes(),
            ) {
                Ok(name) => name,
                Err(_) => panic!("crate name contains a NUL byte"),
            });

        /// Entry point called by the nnunet loader after the descriptor was checked.
        #[unsafe(no_mangle)]
        pub fn nnunet_plugin_register(
            registrar: &mut $crate::plugin::PluginRegistrar<'_>,
        ) -> $crate::Result<()> {
            $register(registrar)
        }
    };
}

/// Handed to a plugin's registration function: adds extensions with the plugin as their origin.
pub struct PluginRegistrar<'a> {
    registries: &'a mut Registries,
    origin: Origin,
}

macro_rules! registrar_method {
    ($method:ident, $field:ident, $trait:ident) => {
        #[doc = concat!("Registers a `", stringify!($trait), "` under `name`.")]
        pub fn $method(
            &mut self,
            name: &str,
            description: &str,
            make: impl Fn() -> Box<dyn $trait> + Send + Sync + 'static,
        ) -> Result<()> {
            self.registries
                .$field
                .add(name, description, self.origin.clone(), Arc::new(make))
        }
    };
}

impl<'a> PluginRegistrar<'a> {
    /// A registrar adding to `registries` with `origin`.
    pub fn new(registries: &'a mut Registries, origin: Origin) -> Self {
        Self { registries, origin }
    }

    registrar_method!(reader, readers, Reader);
    registrar_method!(planner, planners, Planner);
    registrar_method!(trainer, trainers, Trainer);
    registrar_method!(loss, losses, Loss);
    registrar_method!(augmentation, augmentations, Augmentation);
    registrar_method!(architecture, architectures, Architecture);
}

type EntryFn = fn(&mut PluginRegistrar<'_>) -> Result<()>;

/// The descriptor of a plugin file, read without calling any of its Rust code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorInfo {
    pub plugin_name: String,
    pub core_version: String,
    pub rustc_version: String,
    pub build_fingerprint: String,
}

impl DescriptorInfo {
    /// The values of this binary.
    pub fn host() -> Self {
        Self {
            plugin_name: "nnunet".into(),
            core_version: CORE_VERSION.to_string_lossy().into_owned(),
            rustc_version: RUSTC_VERSION.to_string_lossy().into_owned(),
            build_fingerprint: BUILD_FINGERPRINT.to_string_lossy().into_owned(),
        }
    }

    /// Why a plugin with this descriptor cannot be loaded into this binary, if it cannot.
    pub fn mismatch(&self) -> Option<String> {
        let host = Self::host();
        let mut differences = Vec::new();
        if self.core_version != host.core_version {
            differences.push(format!(
                "it was built against nnunet-core {}, this nnunet is nnunet-core {}",
                self.core_version, host.core_version
            ));
        }
        if self.rustc_version != host.rustc_version {
            differences.push(format!(
                "it was built with {}, this nnunet with {}",
                self.rustc_version, host.rustc_version
            ));
        }
        if differences.is_empty() && self.build_fingerprint != host.build_fingerprint {
            differences.push(format!(
                "its build fingerprint {} differs from this nnunet's {} (other nnunet-core \
                 sources, target or features [{}])",
                self.build_fingerprint, host.build_fingerprint, CORE_FEATURES
            ));
        }
        if differences.is_empty() {
            return None;
        }
        Some(format!(
            "refused plugin '{}': {}. Rust has no stable ABI, so a plugin must be built with the \
             same compiler ({}) against the same nnunet-core sources as the nnunet that loads it: \
             rebuild the plugin (`cargo build --release` in its crate, depending on this nnunet \
             checkout's `core` crate), or rebuild nnunet from the sources the plugin was built \
             against.",
            self.plugin_name,
            differences.join("; "),
            host.rustc_version
        ))
    }
}

fn read_c_string(ptr: *const c_char, what: &str) -> std::result::Result<String, String> {
    if ptr.is_null() {
        return Err(format!("its descriptor has no {what}"));
    }
    // SAFETY: the magic and layout were checked; the pointer refers to a static NUL-terminated
    // string inside the loaded library, which stays mapped while we read it.
    Ok(unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned())
}

/// Reads the descriptor of a loaded library.
fn read_descriptor(library: &libloading::Library) -> std::result::Result<DescriptorInfo, String> {
    // SAFETY: we only take the address of the symbol; it is dereferenced after the magic check
    // below confirms it points to a descriptor.
    let symbol: libloading::Symbol<'_, *const PluginDescriptor> =
        unsafe { library.get(DESCRIPTOR_SYMBOL.as_bytes()) }.map_err(|_| {
            format!(
                "it exports no {DESCRIPTOR_SYMBOL}: not an nnunet-rs plugin (a plugin crate must \
                 call nnunet_core::export_plugin!)"
            )
        })?;
    let ptr: *const PluginDescriptor = *symbol;
    if ptr.is_null() {
        return Err(format!("its {DESCRIPTOR_SYMBOL} symbol is null"));
    }
    // SAFETY: reading the magic bytes first: 16 bytes at the start of a static exported under our
    // descriptor's name; any plugin of any layout version starts with them.
    let magic = unsafe { std::ptr::read_unaligned(ptr as *const [u8; 16]) };
    if magic != DESCRIPTOR_MAGIC {
        return Err(format!(
            "its {DESCRIPTOR_SYMBOL} does not start with the nnunet-rs magic bytes"
        ));
    }
    // SAFETY: the magic matched, so this is an nnunet-rs descriptor; the layout field follows it
    // in every version.
    let descriptor = unsafe { &*ptr };
    if descriptor.layout != DESCRIPTOR_LAYOUT {
        return Err(format!(
            "its descriptor layout is version {}, this nnunet reads version {}: rebuild the plugin \
             against this nnunet's sources",
            descriptor.layout, DESCRIPTOR_LAYOUT
        ));
    }
    Ok(DescriptorInfo {
        plugin_name: read_c_string(descriptor.plugin_name, "plugin name")?,
        core_version: read_c_string(descriptor.core_version, "core version")?,
        rustc_version: read_c_string(descriptor.rustc_version, "rustc version")?,
        build_fingerprint: read_c_string(descriptor.build_fingerprint, "build fingerprint")?,
    })
}

/// Plugin paths from the `NNUNET_PLUGINS` variable (`:`-separated; empty parts ignored).
pub fn paths_from_env() -> Vec<PathBuf> {
    std::env::var_os("NNUNET_PLUGINS")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads and checks the descriptor of the plugin at `path` without registering anything.
pub fn inspect(path: &Path) -> Result<DescriptorInfo> {
    let library = open(path)?;
    let info = read_descriptor(&library).map_err(|reason| plugin_error(path, reason))?;
    // The library is only unloaded if its Rust code was never called.
    drop(library);
    Ok(info)
}

fn plugin_error(path: &Path, reason: String) -> Error {
    Error::Plugin {
        path: path.to_path_buf(),
        reason,
    }
}

fn open(path: &Path) -> Result<libloading::Library> {
    if !path.exists() {
        return Err(plugin_error(path, "no such file".into()));
    }
    // SAFETY: loading runs the library's initialisers. They are the plugin's own (they cannot reach
    // this binary's registries, which are only passed to the entry point after the checks).
    unsafe { libloading::Library::new(path) }
        .map_err(|e| plugin_error(path, format!("cannot be loaded as a shared library: {e}")))
}

/// Loads the plugin at `path` into `registries`. The library stays loaded for the life of the
/// process (its code backs the registered extensions).
pub fn load(path: &Path, registries: &mut Registries) -> Result<DescriptorInfo> {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let library = open(&canonical)?;
    let info = read_descriptor(&library).map_err(|reason| plugin_error(&canonical, reason))?;
    if let Some(reason) = info.mismatch() {
        return Err(plugin_error(&canonical, reason));
    }
    // SAFETY: the descriptor proved the plugin was compiled by the same rustc from the same
    // nnunet-core sources and features, so the Rust signature below is the one it exports.
    let entry: EntryFn = unsafe {
        *library
            .get::<EntryFn>(ENTRY_SYMBOL.as_bytes())
            .map_err(|_| plugin_error(&canonical, format!("it exports no {ENTRY_SYMBOL}")))?
    };
    // Registered factories point into the library: it must never be unloaded.
    std::mem::forget(library);
    let mut registrar = PluginRegistrar::new(registries, Origin::Plugin(canonical.clone()));
    entry(&mut registrar)
        .map_err(|e| plugin_error(&canonical, format!("registration failed: {e}")))?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_descriptor_matches_itself() {
        assert_eq!(DescriptorInfo::host().mismatch(), None);
        assert_eq!(BUILD_FINGERPRINT.to_bytes().len(), 32);
        assert!(RUSTC_VERSION.to_string_lossy().starts_with("rustc "));
    }

    #[test]
    fn mismatch_says_what_to_rebuild() {
        let mut other = DescriptorInfo::host();
        other.rustc_version = "rustc 1.80.0 (051478957 2024-07-21)".into();
        let msg = other.mismatch().unwrap();
        assert!(msg.contains("built with rustc 1.80.0"), "{msg}");
        assert!(msg.contains("rebuild the plugin"), "{msg}");
        let mut other = DescriptorInfo::host();
        other.build_fingerprint = "0".repeat(32);
        let msg = other.mismatch().unwrap();
        assert!(msg.contains("build fingerprint"), "{msg}");
    }

    #[test]
    fn non_plugin_files_are_refused_cleanly() {
        let dir = std::env::temp_dir().join(format!("nnunet-plugin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("libfake.so");
        std::fs::write(&fake, b"not an ELF file").unwrap();
        let mut r = Registries::empty();
        let err = load(&fake, &mut r).unwrap_err().to_string();
        assert!(err.contains("libfake.so"), "{err}");
        assert!(err.contains("cannot be loaded"), "{err}");
        let err = load(&dir.join("missing.so"), &mut r)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such file"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
