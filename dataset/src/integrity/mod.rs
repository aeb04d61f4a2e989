//! Checking a raw dataset before it is used: every check of nnU-Net's
//! `verify_dataset_integrity`, and a few more.
//!
//! [`verify_dataset`] never stops at the first problem and never fails on a bad file: everything
//! it finds is collected in a [`Report`], each finding naming the file and what is wrong.
//! Problems make the dataset unusable (nnU-Net would refuse it or crash on it); warnings are
//! worth a look but do not stop training (as in nnU-Net, where origin, direction and affine
//! mismatches are warnings).

mod content;
mod layout;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Partial, TrainingCase, choose_reader_for, explicit_cases};
use content::check_case;
use layout::{check_explicit_files, check_folders};
use nnunet_core::io::Reader;
use nnunet_core::registry::{Entry, Registries};

/// One thing found wrong, with the file it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The file (or folder) concerned.
    pub file: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

/// What [`verify_dataset`] found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Everything that makes the dataset unusable.
    pub problems: Vec<Finding>,
    /// Things worth a look that do not stop training.
    pub warnings: Vec<Finding>,
    /// The number of training cases found.
    pub cases: usize,
    /// The reader used for the images, if one could be chosen.
    pub reader: Option<String>,
}

impl Report {
    /// Whether no problem was found (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, file: impl Into<PathBuf>, message: impl Into<String>) {
        self.problems.push(Finding {
            file: file.into(),
            message: message.into(),
        });
    }

    fn warning(&mut self, file: impl Into<PathBuf>, message: impl Into<String>) {
        self.warnings.push(Finding {
            file: file.into(),
            message: message.into(),
        });
    }
}

/// Checks the raw dataset in `folder` (the folder holding `dataset.json`) with the readers of
/// `registries`, and reports every problem found. `progress` is called after each case with the
/// number of cases checked and the total.
///
/// The checks, as in nnU-Net: `dataset.json` exists and its fields are valid (required fields,
/// label rules, labels consecutive from 0); `imagesTr` and `labelsTr` exist (unless `dataset.json`
/// lists the files); every case has a file for every channel and a label map; `numTraining`
/// matches the number of cases; a reader can read the images; every label map holds only declared
/// labels; every image has the declared number of channels and no NaN (nor, here, infinite)
/// values; channels and label map agree in shape and spacing (numpy `allclose` tolerances), and in
/// origin and direction (warnings, as in nnU-Net). Besides: unreadable files, files in `imagesTr`
/// that belong to no case, label maps of no case, files listed for two cases and label maps with
/// no foreground.
pub fn verify_dataset(
    folder: &Path,
    registries: &Registries,
    progress: &mut dyn FnMut(usize, usize),
) -> Report {
    let mut report = Report::default();
    let Some((json_path, dj)) = read_dataset_json(&mut report, folder) else {
        return report;
    };
    let Some(ending) = dj.file_ending.clone() else {
        return report;
    };
    if dj.has_dataset && dj.dataset.is_none() {
        // The explicit case list is broken (reported above): nothing to find the files by.
        return report;
    }
    let Some(cases) = find_cases(&mut report, folder, &json_path, &dj, &ending) else {
        return report;
    };
    let Some(entry) = pick_reader(&mut report, registries, &json_path, &dj, &cases, &ending) else {
        return report;
    };
    report.reader = Some(entry.name.clone());
    let reader = entry.create();

    let channels = dj.channel_names.as_ref().map(Vec::len);
    let expected_labels = dj.labels.as_ref().map(|l| {
        let values = l.expected_values();
        let background: BTreeSet<i64> = [Some(0), l.ignore_label()].into_iter().flatten().collect();
        (values, background)
    });
    let total = cases.len();
    for (i, case) in cases.iter().enumerate() {
        check_case(
            &mut report,
            reader.as_ref(),
            case,
            &ending,
            channels,
            expected_labels.as_ref(),
        );
        progress(i + 1, total);
    }
    report
}

/// Reads and checks `dataset.json` in `folder`: its path and what could be read of it, or `None`
/// when the folder or the file is missing or unreadable.
fn read_dataset_json(report: &mut Report, folder: &Path) -> Option<(PathBuf, Partial)> {
    if !folder.is_dir() {
        report.problem(folder, "is not a folder");
        return None;
    }
    let json_path = folder.join("dataset.json");
    if !json_path.is_file() {
        report.problem(
            &json_path,
            "missing: every raw dataset needs a dataset.json (channel_names, labels, numTraining, \
             file_ending)",
        );
        return None;
    }
    let text = match std::fs::read_to_string(&json_path) {
        Ok(t) => t,
        Err(e) => {
            report.problem(&json_path, format!("cannot be read: {e}"));
            return None;
        }
    };
    let dj = Partial::parse(&text);
    for e in &dj.errors {
        report.problem(&json_path, e.clone());
    }
    if dj.legacy_modality {
        report.warning(
            &json_path,
            "uses the legacy field 'modality'; rename it to 'channel_names' (nnU-Net's own check \
             requires 'channel_names')",
        );
    }
    if let Some(labels) = &dj.labels {
        check_consecutive(report, &json_path, &labels.expected_values());
    }
    Some((json_path, dj))
}

/// The training cases, from the explicit list or the folders, with their layout checked and
/// their number compared with `numTraining`; `None` when there are none.
fn find_cases(
    report: &mut Report,
    folder: &Path,
    json_path: &Path,
    dj: &Partial,
    ending: &str,
) -> Option<Vec<TrainingCase>> {
    let cases = match &dj.dataset {
        Some(d) => {
            let cases = explicit_cases(folder, d);
            check_explicit_files(report, &cases);
            cases
        }
        None => check_folders(report, folder, ending)?,
    };
    report.cases = cases.len();
    if let Some(expected) = dj.num_training
        && expected != cases.len()
    {
        let examples: Vec<&str> = cases.iter().take(5).map(|c| c.id.as_str()).collect();
        report.problem(
            json_path,
            format!(
                "numTraining is {expected} but {} training cases were found{}",
                cases.len(),
                if examples.is_empty() {
                    String::new()
                } else {
                    format!(" (first: {})", examples.join(", "))
                }
            ),
        );
    }
    if cases.is_empty() {
        report.problem(
            if dj.dataset.is_some() {
                json_path.to_path_buf()
            } else {
                folder.join("imagesTr")
            },
            format!("no training cases found (files named <case>_0000{ending})"),
        );
        return None;
    }
    Some(cases)
}

/// The reader: the one dataset.json names, or the first that can read the first channel of one
/// of the first cases (nnU-Net tries only the first case), or else the first that handles the
/// file ending (the unreadable files are then reported one by one). `None` when there is none.
fn pick_reader<'r>(
    report: &mut Report,
    registries: &'r Registries,
    json_path: &Path,
    dj: &Partial,
    cases: &[TrainingCase],
    ending: &str,
) -> Option<&'r Entry<dyn Reader>> {
    if let Some(name) = dj.overwrite_image_reader_writer.as_deref() {
        return match registries.readers.get(name) {
            Ok(e) => Some(e),
            Err(e) => {
                report.problem(
                    json_path,
                    format!("field 'overwrite_image_reader_writer': {e}"),
                );
                None
            }
        };
    }
    let by_example = cases
        .iter()
        .filter_map(|c| c.images.first())
        .filter(|f| f.is_file())
        .take(5)
        .find_map(|example| choose_reader_for(registries, None, ending, Some(example)).ok());
    match by_example.map_or_else(|| choose_reader_for(registries, None, ending, None), Ok) {
        Ok(e) => Some(e),
        Err(_) => {
            report.problem(
                json_path,
                format!(
                    "field 'file_ending': no reader handles '{ending}' (see `nnunet list \
                     readers`; a plugin may add one)"
                ),
            );
            None
        }
    }
}

/// Labels (with the ignore label) must be 0, 1, 2, … with no gap.
fn check_consecutive(report: &mut Report, json_path: &Path, values: &[i64]) {
    let offending: Vec<i64> = values
        .iter()
        .enumerate()
        .filter(|(i, v)| **v != *i as i64)
        .map(|(_, v)| *v)
        .collect();
    if !offending.is_empty() {
        report.problem(
            json_path,
            format!(
                "field 'labels': labels must be consecutive integers 0, 1, 2, … (the ignore label \
                 included), but they are {values:?}; {offending:?} break the sequence"
            ),
        );
    }
}

#[cfg(test)]
mod tests;
