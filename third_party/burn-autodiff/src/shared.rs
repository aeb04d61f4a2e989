//! nnU-Net-rs patch: the process-wide autodiff state (the graph locator and the node id counter)
//! in one struct that a second copy of this crate in the same process can adopt.
//!
//! A plugin library (`cdylib`) links its own copy of burn-autodiff. Without this, tensor
//! operations run in the plugin's code (its network, its loss term) register their backward steps
//! in the plugin's graph state, which the host's `backward` never sees. The host hands
//! [`state`] to the plugin, which calls [`adopt`] before running any tensor code.

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

#[cfg(target_has_atomic = "64")]
use core::sync::atomic::AtomicU64;
#[cfg(not(target_has_atomic = "64"))]
use portable_atomic::AtomicU64;

#[cfg(feature = "std")]
use parking_lot::Mutex;
#[cfg(not(feature = "std"))]
use spin::Mutex;

use crate::runtime::graph::GraphLocator;

/// The global state of the autodiff runtime: every graph being recorded and the next node id.
pub struct SharedState {
    pub(crate) graphs: Mutex<Option<GraphLocator>>,
    pub(crate) node_ids: AtomicU64,
}

static LOCAL: SharedState = SharedState {
    graphs: Mutex::new(None),
    node_ids: AtomicU64::new(0),
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
/// `state` must come from a copy of burn-autodiff built from the same sources, features and
/// compiler (so that its layout is this copy's), and this must be called before this copy records
/// any operation.
pub unsafe fn adopt(state: &'static SharedState) {
    ADOPTED.store(ptr::from_ref(state).cast_mut(), Ordering::Release);
}
