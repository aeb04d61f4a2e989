//! Image input/output: the [`Reader`] extension trait and the in-memory image types (from
//! `nnunet-api`), and the pipeline's helpers around them.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

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

/// Writes `write` to `path` through a temporary file in the same folder, then renames it.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.partial",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
