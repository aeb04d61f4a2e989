//! Checking the dataset name and ID, and the `dataset.json` of a converted dataset.

use nnunet_core::paths::NnunetPaths;
use nnunet_core::{Error, Result};

use super::FolderConversion;

/// The dataset name must be non-empty, without white space or slashes.
pub(super) fn check_dataset_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(|c: char| c == '/' || c == '\\' || c.is_whitespace()) {
        return Err(Error::dataset(format!(
            "dataset name '{name}' must be non-empty, without spaces or slashes"
        )));
    }
    Ok(())
}

/// The dataset ID must be free (or, with `overwrite`, be this dataset).
pub(super) fn check_id_free(
    job: &FolderConversion,
    paths: &NnunetPaths,
    folder_name: &str,
) -> Result<()> {
    if let Ok(existing) = paths.dataset_name(&job.dataset_id.to_string())
        && (existing != folder_name || !job.overwrite)
    {
        return Err(Error::dataset(format!(
            "dataset ID {} is already taken by {existing}{}",
            job.dataset_id,
            if existing == folder_name {
                "; pass --overwrite to replace it"
            } else {
                "; choose another ID"
            }
        )));
    }
    Ok(())
}

/// Channel names: the given ones (one per channel), or `image`, or `R`, `G`, `B`.
fn channel_names(given: &Option<Vec<String>>, channels: usize) -> Result<Vec<String>> {
    match given {
        Some(names) if names.len() == channels => Ok(names.clone()),
        Some(names) => Err(Error::dataset(format!(
            "{} channel name(s) given but the images have {channels} channel(s)",
            names.len()
        ))),
        None if channels == 3 => Ok(vec!["R".into(), "G".into(), "B".into()]),
        None => Ok(vec!["image".into()]),
    }
}

/// Label names from 0 to `max_label`: the given ones, or `background`, `label_1`, ….
fn label_names(given: &Option<Vec<String>>, max_label: i64) -> Result<Vec<String>> {
    match given {
        Some(names) if names.len() as i64 == max_label + 1 => Ok(names.clone()),
        Some(names) => Err(Error::dataset(format!(
            "{} label name(s) given but the labels are 0..={max_label}",
            names.len()
        ))),
        None => Ok(std::iter::once("background".to_string())
            .chain((1..=max_label).map(|i| format!("label_{i}")))
            .collect()),
    }
}

/// The `dataset.json` of a converted dataset.
pub(super) fn dataset_json(
    job: &FolderConversion,
    channels: usize,
    max_label: i64,
    ignore: Option<i64>,
    num_training: usize,
) -> Result<serde_json::Value> {
    let mut labels: serde_json::Map<String, serde_json::Value> =
        label_names(&job.label_names, max_label)?
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, (i as i64).into()))
            .collect();
    if let Some(ignore) = ignore {
        labels.insert("ignore".into(), ignore.into());
    }
    let mut json = serde_json::Map::new();
    json.insert(
        "channel_names".into(),
        serde_json::Value::Object(
            channel_names(&job.channel_names, channels)?
                .into_iter()
                .enumerate()
                .map(|(i, n)| (i.to_string(), n.into()))
                .collect(),
        ),
    );
    json.insert("labels".into(), serde_json::Value::Object(labels));
    json.insert("numTraining".into(), num_training.into());
    json.insert("file_ending".into(), ".png".into());
    json.insert("name".into(), job.dataset_name.clone().into());
    json.insert("converted_by".into(), "nnunet convert-folder".into());
    Ok(serde_json::Value::Object(json))
}
