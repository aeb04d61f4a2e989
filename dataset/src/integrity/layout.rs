//! The layout checks: the folders and file names of a raw dataset, or the files its
//! `dataset.json` lists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::Report;
use crate::{TrainingCase, channel_file_case_id, file_names, folder_cases};

/// The folder layout: `imagesTr` and `labelsTr` exist, files are named by case and channel, every
/// case has every channel and a label map. Returns the cases, or `None` without `imagesTr`.
pub(super) fn check_folders(
    report: &mut Report,
    folder: &Path,
    ending: &str,
) -> Option<Vec<TrainingCase>> {
    let images_dir = folder.join("imagesTr");
    let labels_dir = folder.join("labelsTr");
    let images_ok = images_dir.is_dir();
    if !images_ok {
        report.problem(
            &images_dir,
            "missing: the training images folder (or list the files under 'dataset' in \
             dataset.json)",
        );
    }
    let label_names = read_label_names(report, &labels_dir);
    if !images_ok {
        return None;
    }
    let names = match file_names(&images_dir) {
        Ok(n) => n,
        Err(e) => {
            report.problem(&images_dir, e.to_string());
            return None;
        }
    };
    check_image_names(report, &images_dir, &names, ending);
    let cases = match folder_cases(folder, ending) {
        Ok(c) => c,
        Err(e) => {
            report.problem(&images_dir, e.to_string());
            return None;
        }
    };
    check_channel_numbering(report, &images_dir, &cases, ending);
    if let Some(label_names) = label_names {
        check_label_maps(report, &labels_dir, &cases, &label_names, ending);
    }
    Some(cases)
}

/// The file names in `labelsTr`, or `None` (with a problem) when it is missing or unreadable.
fn read_label_names(report: &mut Report, labels_dir: &Path) -> Option<Vec<String>> {
    if labels_dir.is_dir() {
        match file_names(labels_dir) {
            Ok(names) => Some(names),
            Err(e) => {
                report.problem(labels_dir, e.to_string());
                None
            }
        }
    } else {
        report.problem(
            labels_dir,
            "missing: the training label maps folder (or list the files under 'dataset' in \
             dataset.json)",
        );
        None
    }
}

/// Files of `imagesTr` that belong to no case: misnamed ones are problems, ones whose ending
/// differs only in case are warnings.
fn check_image_names(report: &mut Report, images_dir: &Path, names: &[String], ending: &str) {
    let lower_ending = ending.to_lowercase();
    for name in names {
        if channel_file_case_id(name, ending).is_some() {
            continue;
        }
        let path = images_dir.join(name);
        if name.ends_with(ending) {
            report.problem(
                path,
                format!(
                    "belongs to no case: image files must be named <case>_XXXX{ending}, XXXX \
                     being the 4-digit channel index (e.g. {}_0000{ending})",
                    name.strip_suffix(ending).unwrap_or(name)
                ),
            );
        } else if name.to_lowercase().ends_with(&lower_ending) {
            report.warning(
                path,
                format!("ignored: it does not end in '{ending}' (file endings are case-sensitive)"),
            );
        }
    }
}

/// Channel files are numbered from _0000 without gaps. How many channels they hold is checked
/// once they are read: an RGB image is one file holding three channels.
fn check_channel_numbering(
    report: &mut Report,
    images_dir: &Path,
    cases: &[TrainingCase],
    ending: &str,
) {
    for case in cases {
        let indices: BTreeSet<u32> = case
            .images
            .iter()
            .filter_map(|p| p.file_name()?.to_str())
            .filter_map(|n| channel_file_case_id(n, ending).map(|(_, i)| i))
            .collect();
        if let Some(&last) = indices.iter().next_back() {
            for i in (0..last).filter(|i| !indices.contains(i)) {
                report.problem(
                    images_dir.join(format!("{}_{i:04}{ending}", case.id)),
                    format!(
                        "missing: channel file {i} of case '{}' (channel files are numbered \
                         from _0000 without gaps)",
                        case.id
                    ),
                );
            }
        }
    }
}

/// Every case has a label map in `labelsTr`; label maps of no case are warnings.
fn check_label_maps(
    report: &mut Report,
    labels_dir: &Path,
    cases: &[TrainingCase],
    label_names: &[String],
    ending: &str,
) {
    let ids: BTreeSet<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    let present: BTreeSet<&str> = label_names
        .iter()
        .filter_map(|n| n.strip_suffix(ending))
        .collect();
    for case in cases {
        if !present.contains(case.id.as_str()) {
            report.problem(
                &case.label,
                format!("missing: the label map of case '{}'", case.id),
            );
        }
    }
    for name in label_names {
        match name.strip_suffix(ending) {
            Some(id) if !ids.contains(id) => report.warning(
                labels_dir.join(name),
                format!("label map of no case in imagesTr (no {id}_0000{ending}); ignored"),
            ),
            _ => {}
        }
    }
}

/// The files listed in `dataset.json` exist, have one image per channel, and no file serves two
/// cases.
pub(super) fn check_explicit_files(report: &mut Report, cases: &[TrainingCase]) {
    let mut owners: BTreeMap<&Path, &str> = BTreeMap::new();
    for case in cases {
        for (i, image) in case.images.iter().enumerate() {
            if !image.is_file() {
                report.problem(
                    image,
                    format!(
                        "missing: channel {i} of case '{}' (listed in dataset.json)",
                        case.id
                    ),
                );
            }
        }
        if !case.label.is_file() {
            report.problem(
                &case.label,
                format!(
                    "missing: the label map of case '{}' (listed in dataset.json)",
                    case.id
                ),
            );
        }
        for file in case.images.iter().chain([&case.label]) {
            if let Some(other) = owners.insert(file, &case.id)
                && other != case.id
            {
                report.warning(
                    file,
                    format!(
                        "listed for two cases in dataset.json: '{other}' and '{}'",
                        case.id
                    ),
                );
            }
        }
    }
}
