//! Loading dynamic plugins: the descriptor a plugin exports (see [`nnunet_api::plugin`]) is read
//! and checked before any of its Rust code is called; only a plugin built with this binary's
//! compiler against the same nnunet-api sources is registered.

use std::ffi::{CStr, c_char};
use std::path::{Path, PathBuf};

use crate::error::{Error, PluginError, Result};
use crate::registry::{Origin, Registries};

pub use nnunet_api::plugin::*;

type EntryFn = fn(&mut PluginRegistrar<'_>) -> Result<()>;

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
                 call nnunet_api::export_plugin!)"
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
        api_version: read_c_string(descriptor.api_version, "API version")?,
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
    PluginError::Load {
        path: path.to_path_buf(),
        reason,
    }
    .into()
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
    // nnunet-api sources and features, so the Rust signature below is the one it exports.
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
