//! Dynamic plugins: shared libraries (`cdylib`) that add trainers, readers, planners, losses,
//! augmentations or architectures to the registries at run time.
//!
//! Rust has no stable ABI, so a plugin is checked before any of its Rust code is called: it must
//! export [`PluginDescriptor`] under the symbol `NNUNET_PLUGIN_DESCRIPTOR`, a `#[repr(C)]` struct
//! of plain C strings that can be read safely whatever compiler built the plugin. The loader
//! compares the nnunet-api version, the rustc version and the build fingerprint (a hash of the
//! nnunet-api sources, the compiler, the target and the API's features; see `build.rs`) with its
//! own, and only when all three match does it call the plugin's entry point. A mismatched plugin is
//! refused with a message saying what to rebuild. The rest of nnunet-rs (the pipeline in
//! nnunet-core and the built-in extensions) is not part of the fingerprint: a plugin only ever
//! reaches it through the types and traits of this crate, so rebuilding nnunet after a change
//! there keeps every plugin loadable.
//!
//! Plugin authors write one registration function and export it with [`crate::export_plugin!`]:
//!
//! ```ignore
//! fn register(r: &mut nnunet_api::plugin::PluginRegistrar) -> nnunet_api::Result<()> {
//!     r.trainer("MyTrainer", "nnUNetTrainer with a lower learning rate", || Box::new(MyTrainer))
//! }
//! nnunet_api::export_plugin!(register);
//! ```

use std::ffi::{CStr, c_char};
use std::sync::Arc;

use crate::augmentation::Augmentation;
use crate::error::Result;
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

/// Version of nnunet-api this binary was built against.
pub const API_VERSION: &CStr = cstr_env(concat!(env!("CARGO_PKG_VERSION"), "\0"));
/// `rustc --version` of the compiler that built nnunet-api.
pub const RUSTC_VERSION: &CStr = cstr_env(concat!(env!("NNUNET_RUSTC_VERSION"), "\0"));
/// Hash of the nnunet-api sources, compiler, target and features (see `build.rs`).
pub const BUILD_FINGERPRINT: &CStr = cstr_env(concat!(env!("NNUNET_BUILD_FINGERPRINT"), "\0"));
/// Cargo features nnunet-api was built with (comma-separated, for messages).
pub const API_FEATURES: &str = env!("NNUNET_API_FEATURES");

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
    /// [`DESCRIPTOR_MAGIC`].
    pub magic: [u8; 16],
    /// [`DESCRIPTOR_LAYOUT`].
    pub layout: u32,
    /// [`API_VERSION`] of the plugin's build.
    pub api_version: *const c_char,
    /// [`RUSTC_VERSION`] of the plugin's build.
    pub rustc_version: *const c_char,
    /// [`BUILD_FINGERPRINT`] of the plugin's build.
    pub build_fingerprint: *const c_char,
    /// The plugin's crate name.
    pub plugin_name: *const c_char,
}

// SAFETY: the descriptor only holds pointers to immutable static strings.
unsafe impl Sync for PluginDescriptor {}

impl PluginDescriptor {
    /// The descriptor of a plugin built against this nnunet-api, named `plugin_name`.
    pub const fn current(plugin_name: &'static CStr) -> Self {
        Self {
            magic: DESCRIPTOR_MAGIC,
            layout: DESCRIPTOR_LAYOUT,
            api_version: API_VERSION.as_ptr(),
            rustc_version: RUSTC_VERSION.as_ptr(),
            build_fingerprint: BUILD_FINGERPRINT.as_ptr(),
            plugin_name: plugin_name.as_ptr(),
        }
    }
}

/// Exports a plugin: the descriptor and the entry point. Use once, at the crate root of a `cdylib`,
/// either with a registration function, a `fn(&mut PluginRegistrar) -> nnunet_api::Result<()>`:
/// `export_plugin!(register);`, or with the list of what the plugin registers, one
/// `method "name", "description", factory;` each, `method` a [`PluginRegistrar`] method
/// (`trainer`, `reader`, `planner`, `loss`, `augmentation`, `architecture`):
///
/// ```text
/// nnunet_api::export_plugin! {
///     trainer "MyTrainer", "nnUNetTrainer with a lower learning rate", || Box::new(MyTrainer);
/// }
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($($method:ident $name:literal, $description:literal, $factory:expr);+ $(;)?) => {
        /// Registers this plugin's extensions with the host.
        fn nnunet_plugin_extensions(
            registrar: &mut $crate::plugin::PluginRegistrar<'_>,
        ) -> $crate::Result<()> {
            $(registrar.$method($name, $description, $factory)?;)+
            Ok(())
        }
        $crate::export_plugin!(nnunet_plugin_extensions);
    };
    ($register:path) => {
        /// This library's plugin descriptor, checked by the host before it calls the entry point.
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
            // SAFETY: the loader calls this only after the descriptor proved the same build
            // fingerprint, and before any other code of the plugin runs.
            unsafe { registrar.host_runtime().adopt() };
            $register(registrar)
        }
    };
}

/// The process-wide state of the crates a plugin library carries its own copy of: burn's autodiff
/// graphs, the CPU backend's seed and settings, the kernels' precision. The host hands its own to
/// the plugin at registration, so that tensors made in plugin code (its network, its loss terms)
/// back-propagate through the host's graphs and compute as the host was told to.
#[derive(Clone, Copy)]
pub struct HostRuntime {
    autodiff: &'static burn::backend::autodiff::shared::SharedState,
    flex: &'static burn::backend::flex::nnunet_shared::SharedState,
    kernels: &'static nnunet_kernels::shared::Settings,
}

impl HostRuntime {
    /// The state of the copy of these crates that runs this call (in the host: the host's).
    pub fn current() -> Self {
        Self {
            autodiff: burn::backend::autodiff::shared::state(),
            flex: burn::backend::flex::nnunet_shared::state(),
            kernels: nnunet_kernels::shared::settings(),
        }
    }

    /// Makes the copy of these crates that runs this call (in a plugin: the plugin's) use this
    /// state from now on.
    ///
    /// # Safety
    /// `self` must come from a build with the same fingerprint as the caller's, and this must run
    /// before the caller's copy runs any tensor code.
    pub unsafe fn adopt(self) {
        // SAFETY: same sources, compiler and features (the caller's contract), so same layouts.
        unsafe {
            burn::backend::autodiff::shared::adopt(self.autodiff);
            burn::backend::flex::nnunet_shared::adopt(self.flex);
            nnunet_kernels::shared::adopt(self.kernels);
        }
    }
}

/// Handed to a plugin's registration function: adds extensions with the plugin as their origin.
pub struct PluginRegistrar<'a> {
    registries: &'a mut Registries,
    origin: Origin,
    runtime: HostRuntime,
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
    /// A registrar adding to `registries` with `origin`, handing over the caller's
    /// [`HostRuntime`].
    pub fn new(registries: &'a mut Registries, origin: Origin) -> Self {
        Self {
            registries,
            origin,
            runtime: HostRuntime::current(),
        }
    }

    /// The host's runtime state, which the plugin's entry point adopts (see [`crate::export_plugin!`]).
    pub fn host_runtime(&self) -> HostRuntime {
        self.runtime
    }

    registrar_method!(reader, readers, Reader);
    registrar_method!(planner, planners, Planner);
    registrar_method!(trainer, trainers, Trainer);
    registrar_method!(loss, losses, Loss);
    registrar_method!(augmentation, augmentations, Augmentation);
    registrar_method!(architecture, architectures, Architecture);
}

/// The descriptor of a plugin file, read without calling any of its Rust code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorInfo {
    /// The plugin's crate name (`nnunet` for the host).
    pub plugin_name: String,
    /// The nnunet-api version it was built against.
    pub api_version: String,
    /// `rustc --version` of its compiler.
    pub rustc_version: String,
    /// Its build fingerprint.
    pub build_fingerprint: String,
}

impl DescriptorInfo {
    /// The values of this binary.
    pub fn host() -> Self {
        Self {
            plugin_name: "nnunet".into(),
            api_version: API_VERSION.to_string_lossy().into_owned(),
            rustc_version: RUSTC_VERSION.to_string_lossy().into_owned(),
            build_fingerprint: BUILD_FINGERPRINT.to_string_lossy().into_owned(),
        }
    }

    /// Why a plugin with this descriptor cannot be loaded into this binary, if it cannot.
    pub fn mismatch(&self) -> Option<String> {
        let host = Self::host();
        let mut differences = Vec::new();
        if self.api_version != host.api_version {
            differences.push(format!(
                "it was built against nnunet-api {}, this nnunet uses nnunet-api {}",
                self.api_version, host.api_version
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
                "its build fingerprint {} differs from this nnunet's {} (other nnunet-api \
                 sources, target or features [{}])",
                self.build_fingerprint, host.build_fingerprint, API_FEATURES
            ));
        }
        if differences.is_empty() {
            return None;
        }
        Some(format!(
            "refused plugin '{}': {}. Rust has no stable ABI, so a plugin must be built with the \
             same compiler ({}) against the same nnunet-api sources as the nnunet that loads it: \
             rebuild the plugin (`cargo build --release` in its crate, depending on this nnunet \
             checkout's `api` crate), or rebuild nnunet from the sources the plugin was built \
             against.",
            self.plugin_name,
            differences.join("; "),
            host.rustc_version
        ))
    }
}

/// The fingerprint's inputs besides the build environment (`fingerprint.rs`, shared with
/// `build.rs`), for the tests to check the compiled fingerprint against.
#[cfg(test)]
#[allow(dead_code)]
mod inputs {
    include!("../fingerprint.rs");
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
    fn fingerprint_covers_the_api_and_not_the_pipeline() {
        let api_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let inputs = inputs::fingerprint_inputs(api_dir);
        let hex = inputs::fingerprint_hex(env!("NNUNET_BUILD_ENVIRONMENT"), &inputs);
        assert_eq!(hex, BUILD_FINGERPRINT.to_str().unwrap());
        // A watched path that does not exist would make cargo rerun the build script, and rebuild
        // everything above this crate, on every build.
        for file in inputs::fingerprint_files(api_dir) {
            assert!(
                file.exists(),
                "{} is watched but does not exist",
                file.display()
            );
        }
        // The crates a plugin carries a copy of and shares state with are in it.
        for shared in [
            "api/src/plugin.rs",
            "kernels/src/shared.rs",
            "third_party/burn-flex/src/nnunet_shared.rs",
            "third_party/burn-autodiff/src/shared.rs",
        ] {
            assert!(inputs.iter().any(|(name, _)| name == shared), "{shared}");
        }
        assert!(
            !inputs
                .iter()
                .any(|(name, _)| name == "kernels/src/conv/mod.rs")
        );
        for (name, _) in &inputs {
            for pipeline in [
                "core/",
                "dataset/",
                "preprocessing/",
                "training/",
                "inference/",
                "evaluation/",
                "pipeline/",
                "plugins/",
                "planners/",
                "cli/",
            ] {
                assert!(
                    !name.starts_with(pipeline),
                    "{name} is part of the fingerprint"
                );
            }
        }
    }
}
