//! How the process's allocator treats large blocks.
//!
//! A training step allocates and frees tensors and convolution grids of tens of megabytes, the
//! same sizes every step. glibc's malloc serves such blocks with `mmap` and returns them to the
//! kernel on `free`, so each step faults every page of them in again (about 70 000 page faults
//! per 2d step, 3–7% of its time). Serving them from the heap and keeping freed memory
//! removes those faults; the peak memory stays that of the largest step (+5% measured). Only the
//! commands that train or predict ask for it; the others keep glibc's defaults.

/// Keeps freed blocks for reuse instead of returning them to the kernel (glibc on Linux; other
/// allocators are left as they are).
pub(crate) fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc refuses a threshold above its per-arena heap size on some versions; 32 MiB is
        // accepted by all.
        const LARGE: libc::c_int = 1 << 30;
        const ACCEPTED: libc::c_int = 32 << 20;
        // SAFETY: mallopt only changes allocator parameters (under the allocator's own lock).
        unsafe {
            if libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE) == 0 {
                libc::mallopt(libc::M_MMAP_THRESHOLD, ACCEPTED);
            }
            libc::mallopt(libc::M_TRIM_THRESHOLD, LARGE);
        }
    }
}
