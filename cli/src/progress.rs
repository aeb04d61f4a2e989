//! Progress bars with an ETA on stderr (hidden when stderr is not a terminal).

use indicatif::ProgressBar;

/// A bar over `total` cases, labelled `what`.
pub(crate) fn bar(total: usize, what: &str) -> ProgressBar {
    nnunet_core::progress::bar(total, what, "cases")
}
