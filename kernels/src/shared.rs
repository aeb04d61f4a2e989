//! The kernels' run-time settings (precision, instruction-set caps, the activations' float type) in one process-wide struct
//! that a second copy of this crate in the same process can adopt.
//!
//! A plugin library (`cdylib`) links its own copy of this crate; without this, the convolutions
//! of a plugin's network would ignore the host's `-precision`. The host hands [`settings`] to the
//! plugin, which calls [`adopt`] before running any kernel.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// The settings changed at run time.
pub struct Settings {
    pub(crate) isa_limit: AtomicU8,
    pub(crate) bf16_limit: AtomicU8,
    pub(crate) precision: AtomicU8,
    pub(crate) activations: AtomicU8,
}

static LOCAL: Settings = Settings {
    isa_limit: AtomicU8::new(0),
    bf16_limit: AtomicU8::new(0),
    precision: AtomicU8::new(0),
    activations: AtomicU8::new(0),
};

static ADOPTED: AtomicPtr<Settings> = AtomicPtr::new(ptr::null_mut());

/// The settings this copy of the crate uses: its own, or the ones given to [`adopt`].
pub fn settings() -> &'static Settings {
    let adopted = ADOPTED.load(Ordering::Acquire);
    if adopted.is_null() {
        &LOCAL
    } else {
        // SAFETY: only `adopt` stores a non-null pointer, and it comes from a `&'static`.
        unsafe { &*adopted }
    }
}

/// Makes this copy of the crate use `settings` (another copy's [`settings`]) from now on.
///
/// # Safety
/// `settings` must come from a copy of this crate built from the same sources and compiler.
pub unsafe fn adopt(settings: &'static Settings) {
    ADOPTED.store(ptr::from_ref(settings).cast_mut(), Ordering::Release);
}
