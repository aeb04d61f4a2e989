//! Finding the training cases of a raw dataset folder: the explicit `dataset` entry of
//! `dataset.json`, or the files of `imagesTr` and `labelsTr`.

use std::path::{Path, PathBuf};

use crate::dataset_json::{CaseEntry, DatasetJson};
use nnunet_core::error::{Error, Result};

/// One training case of a raw dataset: its channel files in channel order and its label map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainingCase {
    /// The case identifier (`hippocampus_001`).
    pub id: String,
    /// The image files, in channel order.
    pub images: Vec<PathBuf>,
    /// The label map (it may not exist).
    pub label: PathBuf,
}

/// The case identifier of an `imagesTr` file name `<case>_XXXX<ending>`, if it has that form.
pub(crate) fn channel_file_case_id<'a>(name: &'a str, ending: &str) -> Option<(&'a str, u32)> {
    let stem = name.strip_suffix(ending)?;
    let (case, index) = stem.rsplit_once('_')?;
    if index.len() == 4 && index.bytes().all(|b| b.is_ascii_digit()) {
        Some((case, index.parse().ok()?))
    } else {
        None
    }
}

/// The file names in `folder` (not sub-folders), sorted; an error names the folder.
pub(crate) fn file_names(folder: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(folder).map_err(|e| Error::io(folder, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(folder, e))?;
        if entry.path().is_dir() {
            continue;
        }
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The training cases of the raw dataset in `folder`, as nnU-Net finds them: the explicit
/// `dataset` entry of `dataset.json` (paths relative to `folder` unless absolute, `$VARIABLES`
/// expanded) or, without it, the files `imagesTr/<case>_XXXX<ending>` sorted by case, each with
/// `labelsTr/<case><ending>`. Files are not checked for existence.
pub fn training_cases(folder: &Path, dataset_json: &DatasetJson) -> Result<Vec<TrainingCase>> {
    match &dataset_json.dataset {
        Some(d) => Ok(explicit_cases(folder, d)),
        None => folder_cases(folder, &dataset_json.file_ending),
    }
}

/// The cases of the explicit `dataset` entry, paths resolved against `folder` (absolute paths
/// kept, `$VARIABLES` expanded).
pub(crate) fn explicit_cases(folder: &Path, dataset: &[(String, CaseEntry)]) -> Vec<TrainingCase> {
    let resolve = |p: &str| {
        let expanded = PathBuf::from(expand_vars(p));
        if expanded.is_absolute() {
            expanded
        } else {
            folder.join(expanded)
        }
    };
    dataset
        .iter()
        .map(|(id, c)| TrainingCase {
            id: id.clone(),
            images: c.images.iter().map(|p| resolve(p)).collect(),
            label: resolve(&c.label),
        })
        .collect()
}

/// The cases of `folder/imagesTr` (files `<case>_XXXX<ending>`, sorted by case and channel),
/// each with its label map `folder/labelsTr/<case><ending>`.
pub(crate) fn folder_cases(folder: &Path, ending: &str) -> Result<Vec<TrainingCase>> {
    let images = folder.join("imagesTr");
    let labels = folder.join("labelsTr");
    let mut cases: Vec<TrainingCase> = Vec::new();
    for name in file_names(&images)? {
        let Some((id, _)) = channel_file_case_id(&name, ending) else {
            continue;
        };
        // Names are sorted, so the files of one case are adjacent and in channel order.
        match cases.last_mut() {
            Some(case) if case.id == id => case.images.push(images.join(&name)),
            _ => cases.push(TrainingCase {
                id: id.to_string(),
                images: vec![images.join(&name)],
                label: labels.join(format!("{id}{ending}")),
            }),
        }
    }
    // Sorting by file name may interleave case ids that are prefixes of each other
    // (`a_0000`, `a_b_0000`, `a_0001`): merge them.
    cases.sort_by(|a, b| a.id.cmp(&b.id));
    let mut merged: Vec<TrainingCase> = Vec::with_capacity(cases.len());
    for case in cases {
        match merged.last_mut() {
            Some(last) if last.id == case.id => {
                last.images.extend(case.images);
                last.images.sort();
            }
            _ => merged.push(case),
        }
    }
    Ok(merged)
}

/// Expands `$NAME` and `${NAME}` from the environment; unknown variables are left as written
/// (as Python's `os.path.expandvars` does).
fn expand_vars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match std::env::var(name).ok().filter(|_| !name.is_empty()) {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[pos..pos + 1 + consumed]),
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}
