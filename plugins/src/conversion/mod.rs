//! Turning the datasets researchers have into nnU-Net v2 raw datasets: Medical Segmentation
//! Decathlon tasks ([`msd`]) and plain folders of images and masks ([`folder`]).

pub mod folder;
pub mod msd;

use std::path::{Path, PathBuf};

use nnunet_core::{Error, Result};

/// Writes `value` as `dataset.json` the way nnU-Net does (4-space indentation, keys in order).
pub fn write_dataset_json(folder: &Path, value: &serde_json::Value) -> Result<()> {
    let path = folder.join("dataset.json");
    let text = nnunet_core::compat::json::to_indented_string(value)
        .map_err(|e| Error::dataset_file(&path, format!("cannot serialise: {e}")))?;
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}

/// Creates `imagesTr`, `labelsTr` and `imagesTs` in a new dataset folder. An existing folder is
/// refused unless `overwrite` is set, so nothing a user made is replaced by accident.
pub fn create_dataset_folder(target: &Path, overwrite: bool) -> Result<()> {
    if target.exists() {
        if !overwrite {
            return Err(Error::dataset(format!(
                "{} already exists; pass --overwrite to replace it",
                target.display()
            )));
        }
        std::fs::remove_dir_all(target).map_err(|e| Error::io(target, e))?;
    }
    for sub in ["imagesTr", "labelsTr", "imagesTs"] {
        let dir = target.join(sub);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

/// The entries of `dir` that `keep` accepts, sorted.
fn sorted_paths(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| keep(p))
        .collect();
    entries.sort();
    Ok(entries)
}

/// The file name of `path`, if it is valid UTF-8.
fn file_name(path: &Path) -> Option<&str> {
    path.file_name().and_then(|n| n.to_str())
}
