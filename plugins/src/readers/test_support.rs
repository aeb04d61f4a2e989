//! Helpers shared by the readers' unit tests.

use std::fmt::Debug;
use std::path::Path;

use nnunet_core::Result;

/// Writes `bytes` as `dir/name` and checks that `read` refuses it with an error naming the file
/// and containing `want`.
pub(crate) fn assert_read_error<T: Debug>(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    want: &str,
    read: impl Fn(&Path) -> Result<T>,
) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = read(&path).unwrap_err().to_string();
    assert!(err.contains(name) && err.contains(want), "{name}: {err}");
}
