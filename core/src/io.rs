//! Image input/output: the [`Reader`] extension trait and the in-memory image types (from
//! `nnunet-api`), and the pipeline's helpers around them.

use std::path::{Path, PathBuf};

use crate::error::Result;

pub use nnunet_api::io::*;

/// `file` if it exists, else an error naming it: `missing: <what()>`.
pub fn required_file(file: PathBuf, what: impl FnOnce() -> String) -> Result<PathBuf> {
    if file.is_file() {
        Ok(file)
    } else {
        let reason = format!("missing: {}", what());
        Err(crate::Error::invalid_file(file, reason))
    }
}

/// Copies the image `from` to `to` with the data files `reader` says it refers to
/// ([`Reader::data_files`]), each to the same place relative to `to` as it has to `from`, so that
/// a detached header still finds its data; a data file outside `from`'s folder is referred to by
/// a path that stays valid, and is not copied.
pub fn copy_image(reader: &dyn Reader, from: &Path, to: &Path) -> Result<()> {
    let (from_dir, to_dir) = (
        from.parent().unwrap_or(Path::new(".")),
        to.parent().unwrap_or(Path::new(".")),
    );
    for data in reader.data_files(from)? {
        if let Ok(relative) = data.strip_prefix(from_dir) {
            let target = to_dir.join(relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| crate::Error::io(parent, e))?;
            }
            std::fs::copy(&data, &target).map_err(|e| crate::Error::io(&data, e))?;
        }
    }
    std::fs::copy(from, to).map_err(|e| crate::Error::io(from, e))?;
    Ok(())
}
