//! The three folders of nnU-Net (`nnUNet_raw`, `nnUNet_preprocessed`, `nnUNet_results`) and
//! finding a dataset in them by ID (`4`) or by name (`Dataset004_Hippocampus`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The three nnU-Net folders. Each is taken from its command-line flag if given, else from the
/// environment variable of nnU-Net's name. A folder is only required when it is used.
#[derive(Clone, Debug, Default)]
pub struct NnunetPaths {
    raw: Option<PathBuf>,
    preprocessed: Option<PathBuf>,
    results: Option<PathBuf>,
}

fn from_env(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl NnunetPaths {
    /// Flags override the environment variables.
    pub fn new(
        raw: Option<PathBuf>,
        preprocessed: Option<PathBuf>,
        results: Option<PathBuf>,
    ) -> Self {
        Self {
            raw: raw.or_else(|| from_env("nnUNet_raw")),
            preprocessed: preprocessed.or_else(|| from_env("nnUNet_preprocessed")),
            results: results.or_else(|| from_env("nnUNet_results")),
        }
    }

    /// The raw-data folder, or an error naming `nnUNet_raw` and how to set it.
    pub fn raw(&self) -> Result<&Path> {
        self.raw.as_deref().ok_or(Error::PathNotSet {
            var: "nnUNet_raw",
            flag: "nnunet-raw",
            what: "raw datasets (DatasetXXX_Name folders with imagesTr, labelsTr, dataset.json)",
        })
    }

    /// The preprocessed-data folder, or an error naming `nnUNet_preprocessed`.
    pub fn preprocessed(&self) -> Result<&Path> {
        self.preprocessed.as_deref().ok_or(Error::PathNotSet {
            var: "nnUNet_preprocessed",
            flag: "nnunet-preprocessed",
            what: "fingerprints, plans and preprocessed data",
        })
    }

    /// The results folder, or an error naming `nnUNet_results`.
    pub fn results(&self) -> Result<&Path> {
        self.results.as_deref().ok_or(Error::PathNotSet {
            var: "nnUNet_results",
            flag: "nnunet-results",
            what: "trained models",
        })
    }

    /// Only the results folder of these (an error naming `nnUNet_results` if it is not set): to
    /// find trained models without the raw and preprocessed data, as prediction does.
    pub fn results_only(&self) -> Result<Self> {
        Ok(Self {
            raw: None,
            preprocessed: None,
            results: Some(self.results()?.to_path_buf()),
        })
    }

    /// The three folders as set (for display).
    pub fn all(&self) -> [(&'static str, Option<&Path>); 3] {
        [
            ("nnUNet_raw", self.raw.as_deref()),
            ("nnUNet_preprocessed", self.preprocessed.as_deref()),
            ("nnUNet_results", self.results.as_deref()),
        ]
    }

    /// Resolves a dataset given as an ID (`4`, `004`) or a full name (`Dataset004_Hippocampus`)
    /// to its name, by looking in every folder that is set. Two different folders with the same ID
    /// are an error.
    pub fn dataset_name(&self, id_or_name: &str) -> Result<String> {
        let id = parse_dataset_id(id_or_name)?;
        let mut found: Vec<(String, PathBuf)> = Vec::new();
        for (_, root) in self.all() {
            let Some(root) = root else { continue };
            for name in datasets_with_id(root, id)? {
                if !found.iter().any(|(n, _)| *n == name) {
                    found.push((name.clone(), root.join(&name)));
                }
            }
        }
        if let Some(name) = id_or_name.strip_prefix("Dataset")
            && name.contains('_')
        {
            // A full name was given: it must be the one found, or it may simply not exist yet.
            let full = id_or_name.to_string();
            if found.iter().any(|(n, _)| *n == full) || found.is_empty() {
                if found.len() > 1 {
                    return Err(duplicate_ids(id, &found));
                }
                return Ok(full);
            }
            return Err(Error::dataset(format!(
                "dataset {full} not found, but ID {id:03} belongs to {}",
                folder_list(&found)
            )));
        }
        match found.len() {
            0 => {
                let searched: Vec<String> = self
                    .all()
                    .iter()
                    .filter_map(|(var, p)| p.map(|p| format!("{var}={}", p.display())))
                    .collect();
                if searched.is_empty() {
                    // Nothing to search: say which variable to set.
                    self.raw()?;
                }
                Err(Error::dataset(format!(
                    "no dataset with ID {id} (a folder named Dataset{id:03}_<name>) in {}",
                    searched.join(", ")
                )))
            }
            1 => Ok(found.remove(0).0),
            _ => Err(duplicate_ids(id, &found)),
        }
    }
}

/// The error for an ID that more than one dataset folder in `found` has.
fn duplicate_ids(id: u32, found: &[(String, PathBuf)]) -> Error {
    Error::dataset(format!(
        "more than one dataset has ID {id:03}: {}. Rename or remove all but one.",
        folder_list(found)
    ))
}

/// The folders of `found` (name, folder), comma-separated.
fn folder_list(found: &[(String, PathBuf)]) -> String {
    found
        .iter()
        .map(|(_, p)| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A trained model: the folder `Trainer__Plans__configuration`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainedModel {
    /// The trainer's name (`nnUNetTrainer`).
    pub trainer: String,
    /// The plans identifier (`nnUNetPlans`).
    pub plans: String,
    /// The configuration (`3d_fullres`, …).
    pub configuration: String,
}

impl TrainedModel {
    /// The model of `trainer` with `plans` and `configuration`.
    pub fn new(trainer: &str, plans: &str, configuration: &str) -> Self {
        TrainedModel {
            trainer: trainer.to_string(),
            plans: plans.to_string(),
            configuration: configuration.to_string(),
        }
    }

    /// The same trainer and plans with another configuration (a cascade's other stage).
    pub fn with_configuration(&self, configuration: &str) -> Self {
        TrainedModel::new(&self.trainer, &self.plans, configuration)
    }

    /// `Trainer__Plans__configuration`: the model's folder name.
    pub fn identifier(&self) -> String {
        format!("{}__{}__{}", self.trainer, self.plans, self.configuration)
    }

    /// Parses `Trainer__Plans__configuration`.
    pub fn from_identifier(identifier: &str) -> Option<Self> {
        let parts: Vec<&str> = identifier.split("__").collect();
        match parts.as_slice() {
            [t, p, c] => Some(TrainedModel {
                trainer: t.to_string(),
                plans: p.to_string(),
                configuration: c.to_string(),
            }),
            _ => None,
        }
    }
}

/// The numeric ID of `4`, `004`, `Dataset004_Hippocampus` or `Dataset004`.
pub fn parse_dataset_id(id_or_name: &str) -> Result<u32> {
    let digits = id_or_name
        .strip_prefix("Dataset")
        .map(|rest| rest.split('_').next().unwrap_or(""))
        .unwrap_or(id_or_name);
    digits
        .parse::<u32>()
        .ok()
        .filter(|id| *id <= 999)
        .ok_or_else(|| {
            Error::dataset(format!(
                "'{id_or_name}' is neither a dataset ID (an integer from 1 to 999) nor a dataset \
             name like Dataset004_Hippocampus"
            ))
        })
}

/// The dataset folder name for an ID and a name: `Dataset004_Hippocampus`.
pub fn dataset_folder_name(id: u32, name: &str) -> String {
    format!("Dataset{id:03}_{name}")
}

/// The names of the folders `DatasetXXX_*` directly in `root` whose ID is `id`.
fn datasets_with_id(root: &Path, id: u32) -> Result<Vec<String>> {
    let prefix = format!("Dataset{id:03}_");
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(root, e)),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse() {
        assert_eq!(parse_dataset_id("4").unwrap(), 4);
        assert_eq!(parse_dataset_id("004").unwrap(), 4);
        assert_eq!(parse_dataset_id("Dataset004_Hippocampus").unwrap(), 4);
        assert!(parse_dataset_id("Hippocampus").is_err());
        assert!(parse_dataset_id("1000").is_err());
    }

    #[test]
    fn find_by_id_and_name_and_duplicates() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("raw");
        let pre = tmp.path().join("pre");
        std::fs::create_dir_all(raw.join("Dataset004_Hippocampus")).unwrap();
        std::fs::create_dir_all(pre.join("Dataset004_Hippocampus")).unwrap();
        let paths = NnunetPaths {
            raw: Some(raw.clone()),
            preprocessed: Some(pre.clone()),
            results: None,
        };
        assert_eq!(paths.dataset_name("4").unwrap(), "Dataset004_Hippocampus");
        assert_eq!(
            paths.dataset_name("Dataset004_Hippocampus").unwrap(),
            "Dataset004_Hippocampus"
        );
        let err = paths.dataset_name("5").unwrap_err().to_string();
        assert!(err.contains("no dataset with ID 5"), "{err}");
        std::fs::create_dir_all(raw.join("Dataset004_Other")).unwrap();
        let err = paths.dataset_name("4").unwrap_err().to_string();
        assert!(err.contains("more than one dataset has ID 004"), "{err}");
        assert!(err.contains("Dataset004_Other"), "{err}");
    }

    #[test]
    fn unset_variable_is_named() {
        let paths = NnunetPaths::default();
        let err = paths.results().unwrap_err().to_string();
        assert!(err.contains("nnUNet_results is not set"), "{err}");
        assert!(err.contains("export nnUNet_results="), "{err}");
        let err = paths.results_only().unwrap_err().to_string();
        assert!(err.contains("nnUNet_results is not set"), "{err}");
    }

    #[test]
    fn models_are_found_in_the_results_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let (raw, results) = (tmp.path().join("raw"), tmp.path().join("results"));
        std::fs::create_dir_all(raw.join("Dataset004_Other")).unwrap();
        std::fs::create_dir_all(results.join("Dataset004_Hippocampus")).unwrap();
        let paths = NnunetPaths {
            raw: Some(raw),
            preprocessed: None,
            results: Some(results),
        };
        assert!(paths.dataset_name("4").is_err());
        let only = paths.results_only().unwrap();
        assert_eq!(only.dataset_name("4").unwrap(), "Dataset004_Hippocampus");
        assert!(only.raw().is_err());
    }
}
