//! The raw dataset format of nnU-Net v2: `dataset.json`, the training cases of a raw dataset
//! folder, and choosing the [`Reader`](nnunet_core::io::Reader) for a dataset.
//!
//! A raw dataset folder holds `dataset.json` and either `imagesTr/<case>_XXXX<ending>` (one file per
//! channel, `XXXX` the four-digit channel index) with `labelsTr/<case><ending>`, or an explicit
//! `dataset` entry in `dataset.json` listing each case's files.
//!
//! `dataset.json` is read with the order of its keys kept: the order of `channel_names` is the
//! order nnU-Net assigns normalizations in, and the order of `labels` is the order of regions.

mod cases;
mod dataset_json;
pub mod integrity;
mod json;
mod labels;
mod partial;
mod reader_choice;

pub use cases::{TrainingCase, training_cases};
pub(crate) use cases::{channel_file_case_id, explicit_cases, file_names, folder_cases};
pub use dataset_json::{CaseEntry, DatasetJson};
pub use labels::{LabelOrRegion, LabelValue, Labels};
pub(crate) use partial::Partial;
pub use reader_choice::{READER_PREFERENCE, choose_reader, choose_reader_for};

/// Runs `f`, turning a panic into its message so that a bad file never takes the program down.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("the reader failed unexpectedly: {msg}")
    })
}

#[cfg(test)]
mod tests;
