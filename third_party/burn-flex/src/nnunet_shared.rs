//! nnU-Net-rs patch: the process-wide state of this backend (the random seed and whether
//! convolutions take the `nnunet-kernels` path) in one struct that a second copy of this crate in
//! the same process can adopt.
//!
//! A plugin library (`cdylib`) links its own copy of burn-flex; without this, `Backend::seed` in
//! the host would not make the plugin's weight initialisation reproducible, and the plugin's
//! convolutions would ignore the host's settings. The host hands [`state`] to the plugin, which
//! calls [`adopt`] before running any tensor code.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use burn_std::sync::Mutex;

use crate::backend::FlexRng;

/// The global state of the backend.
pub struct SharedState {
    pub(crate) seed: Mutex<Option<FlexRng>>,
    pub(crate) nnunet_conv: AtomicU8,
}

static LOCAL: SharedState = SharedState {
    seed: Mutex::new(None),
    nnunet_conv: AtomicU8::new(2),
};

static ADOPTED: AtomicPtr<SharedState> = AtomicPtr::new(ptr::null_mut());

/// The state this copy of the crate uses: its own, or the one given to [`adopt`].
pub fn state() -> &'static SharedState {
    let adopted = ADOPTED.load(Ordering::Acquire);
    if adopted.is_null() {
        &LOCAL
    } else {
        // SAFETY: only `adopt` stores a non-null pointer, and it comes from a `&'static`.
        unsafe { &*adopted }
    }
}

/// Makes this copy of the crate use `state` (another copy's [`state`]) from now on.
///
/// # Safety
/// `state` must come from a copy of burn-flex built from the same sources, features and compiler
/// (so that its layout is this copy's), and this must be called before this copy runs any
/// operation.
pub unsafe fn adopt(state: &'static SharedState) {
    ADOPTED.store(ptr::from_ref(state).cast_mut(), Ordering::Release);
}
