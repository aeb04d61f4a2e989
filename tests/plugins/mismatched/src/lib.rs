//! Test fixture: a plugin built "by another compiler". Its descriptor names a rustc that is not
//! the host's, so the loader must refuse it without calling its entry point, which aborts the
//! process if it is ever reached.

use nnunet_api::plugin::{
    API_VERSION, BUILD_FINGERPRINT, DESCRIPTOR_LAYOUT, DESCRIPTOR_MAGIC, PluginDescriptor,
    PluginRegistrar,
};

/// The descriptor naming another compiler.
#[unsafe(no_mangle)]
pub static NNUNET_PLUGIN_DESCRIPTOR: PluginDescriptor = PluginDescriptor {
    magic: DESCRIPTOR_MAGIC,
    layout: DESCRIPTOR_LAYOUT,
    api_version: API_VERSION.as_ptr(),
    rustc_version: c"rustc 1.70.0 (90c541806 2023-05-31)".as_ptr(),
    build_fingerprint: BUILD_FINGERPRINT.as_ptr(),
    plugin_name: c"mismatched_plugin".as_ptr(),
};

/// Must never run: the loader refuses the plugin first.
#[unsafe(no_mangle)]
pub fn nnunet_plugin_register(_registrar: &mut PluginRegistrar<'_>) -> nnunet_api::Result<()> {
    std::process::abort()
}
