//! Checking a raw dataset before it is used: every check of nnU-Net's
//! `verify_dataset_integrity`, and a few more.
//!
//! [`verify_dataset`] never stops at the first problem and never fails on a bad file: everything
//! it finds is collected in a [`Report`], each finding naming the file and what is wrong.
//! Problems make the dataset unusable (nnU-Net would refuse it or crash on it); warnings are
//! worth a look but do not stop training (as in nnU-Net, where origin, direction and affine
//! mismatches are warnings).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::{
    Partial, TrainingCase, catch, channel_file_case_id, choose_reader_for, explicit_cases,
    file_names, folder_cases,
};
use nnunet_core::error::Error;
use nnunet_core::io::{Image, ImageProperties, Reader, Segmentation};
use nnunet_core::registry::Registries;

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

/// numpy's `allclose` with its default tolerances: `|a - b| <= 1e-8 + 1e-5 * |b|` for every
/// element; lists of different lengths are not close.
fn allclose(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-8 + 1e-5 * y.abs())
}

/// The message of a reader's error about `file`, without repeating the file name.
fn reason(error: Error, file: &Path) -> String {
    match error {
        Error::InvalidFile { path, reason } if path == file => reason,
        Error::Io { path, source } if path == file => format!("cannot be read: {source}"),
        other => other.to_string(),
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
    if !folder.is_dir() {
        report.problem(folder, "is not a folder");
        return report;
    }
    let json_path = folder.join("dataset.json");
    if !json_path.is_file() {
        report.problem(
            &json_path,
            "missing: every raw dataset needs a dataset.json (channel_names, labels, numTraining, \
             file_ending)",
        );
        return report;
    }
    let text = match std::fs::read_to_string(&json_path) {
        Ok(t) => t,
        Err(e) => {
            report.problem(&json_path, format!("cannot be read: {e}"));
            return report;
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
        check_consecutive(&mut report, &json_path, &labels.expected_values());
    }
    let Some(ending) = dj.file_ending.clone() else {
        return report;
    };
    if dj.has_dataset && dj.dataset.is_none() {
        // The explicit case list is broken (reported above): nothing to find the files by.
        return report;
    }
    let channels = dj.channel_names.as_ref().map(Vec::len);

    let cases = match &dj.dataset {
        Some(d) => {
            let cases = explicit_cases(folder, d);
            check_explicit_files(&mut report, &cases);
            cases
        }
        None => match check_folders(&mut report, folder, &ending) {
            Some(cases) => cases,
            None => return report,
        },
    };
    report.cases = cases.len();
    if let Some(expected) = dj.num_training
        && expected != cases.len()
    {
        let examples: Vec<&str> = cases.iter().take(5).map(|c| c.id.as_str()).collect();
        report.problem(
            &json_path,
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
                json_path.clone()
            } else {
                folder.join("imagesTr")
            },
            format!("no training cases found (files named <case>_0000{ending})"),
        );
        return report;
    }

    // The reader: the one dataset.json names, or the first that can read the first channel of
    // one of the first cases (nnU-Net tries only the first case), or else the first that handles
    // the file ending (the unreadable files are then reported one by one).
    let entry = match dj.overwrite_image_reader_writer.as_deref() {
        Some(name) => match registries.readers.get(name) {
            Ok(e) => e,
            Err(e) => {
                report.problem(
                    &json_path,
                    format!("field 'overwrite_image_reader_writer': {e}"),
                );
                return report;
            }
        },
        None => {
            let by_example = cases
                .iter()
                .filter_map(|c| c.images.first())
                .filter(|f| f.is_file())
                .take(5)
                .find_map(|example| {
                    choose_reader_for(registries, None, &ending, Some(example)).ok()
                });
            match by_example.map_or_else(|| choose_reader_for(registries, None, &ending, None), Ok)
            {
                Ok(e) => e,
                Err(_) => {
                    report.problem(
                        &json_path,
                        format!(
                            "field 'file_ending': no reader handles '{ending}' (see `nnunet list \
                             readers`; a plugin may add one)"
                        ),
                    );
                    return report;
                }
            }
        }
    };
    report.reader = Some(entry.name.clone());
    let reader = entry.create();

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

/// The folder layout: `imagesTr` and `labelsTr` exist, files are named by case and channel, every
/// case has every channel and a label map. Returns the cases, or `None` without `imagesTr`.
fn check_folders(report: &mut Report, folder: &Path, ending: &str) -> Option<Vec<TrainingCase>> {
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
    let label_names = if labels_dir.is_dir() {
        match file_names(&labels_dir) {
            Ok(names) => Some(names),
            Err(e) => {
                report.problem(&labels_dir, e.to_string());
                None
            }
        }
    } else {
        report.problem(
            &labels_dir,
            "missing: the training label maps folder (or list the files under 'dataset' in \
             dataset.json)",
        );
        None
    };
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
    let lower_ending = ending.to_lowercase();
    for name in &names {
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
    let cases = match folder_cases(folder, ending) {
        Ok(c) => c,
        Err(e) => {
            report.problem(&images_dir, e.to_string());
            return None;
        }
    };
    for case in &cases {
        let indices: BTreeSet<u32> = case
            .images
            .iter()
            .filter_map(|p| p.file_name()?.to_str())
            .filter_map(|n| channel_file_case_id(n, ending).map(|(_, i)| i))
            .collect();
        // Channel files are numbered from _0000 without gaps. How many channels they hold is
        // checked once they are read: an RGB image is one file holding three channels.
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
    if let Some(label_names) = label_names {
        let ids: BTreeSet<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        let present: BTreeSet<&str> = label_names
            .iter()
            .filter_map(|n| n.strip_suffix(ending))
            .collect();
        for case in &cases {
            if !present.contains(case.id.as_str()) {
                report.problem(
                    &case.label,
                    format!("missing: the label map of case '{}'", case.id),
                );
            }
        }
        for name in &label_names {
            match name.strip_suffix(ending) {
                Some(id) if !ids.contains(id) => report.warning(
                    labels_dir.join(name),
                    format!("label map of no case in imagesTr (no {id}_0000{ending}); ignored"),
                ),
                _ => {}
            }
        }
    }
    Some(cases)
}

/// The files listed in `dataset.json` exist, have one image per channel, and no file serves two
/// cases.
fn check_explicit_files(report: &mut Report, cases: &[TrainingCase]) {
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

/// Reads one case and checks its content.
fn check_case(
    report: &mut Report,
    reader: &dyn Reader,
    case: &TrainingCase,
    ending: &str,
    channels: Option<usize>,
    labels: Option<&(Vec<i64>, BTreeSet<i64>)>,
) {
    // Label map.
    let mut segmentation: Option<Segmentation> = None;
    if case.label.is_file() {
        match catch(|| reader.read_segmentation(&case.label)) {
            Ok(Ok(seg)) => segmentation = Some(seg),
            Ok(Err(e)) => report.problem(&case.label, reason(e, &case.label)),
            Err(panic) => report.problem(&case.label, panic),
        }
    }
    if let Some(seg) = &segmentation {
        if seg.data.shape()[0] != 1 {
            report.problem(
                &case.label,
                format!(
                    "a label map must have one channel, this one has {}",
                    seg.data.shape()[0]
                ),
            );
        }
        if let Some((expected, background)) = labels {
            check_label_values(report, &case.label, seg, expected, background);
        }
    }

    // Images, one file at a time so that every bad file is named.
    let mut images: Vec<(&Path, Image)> = Vec::new();
    let mut all_read = true;
    for file in &case.images {
        if !file.is_file() {
            all_read = false;
            continue; // reported as missing
        }
        match catch(|| reader.read_images(&[file.as_path()])) {
            Ok(Ok(image)) => images.push((file, image)),
            Ok(Err(e)) => {
                all_read = false;
                report.problem(file, reason(e, file));
            }
            Err(panic) => {
                all_read = false;
                report.problem(file, panic);
            }
        }
    }
    for (file, image) in &images {
        let (nan, inf) = image.data.iter().fold((0usize, 0usize), |(n, i), v| {
            (n + v.is_nan() as usize, i + v.is_infinite() as usize)
        });
        if nan > 0 || inf > 0 {
            let mut parts = Vec::new();
            if nan > 0 {
                parts.push(format!("{nan} NaN"));
            }
            if inf > 0 {
                parts.push(format!("{inf} infinite"));
            }
            report.problem(
                *file,
                format!("contains {} pixel values", parts.join(" and ")),
            );
        }
    }
    // Channels agree with the first channel.
    if let Some((first_file, first)) = images.first() {
        let first_shape = &first.data.shape()[1..];
        for (file, image) in &images[1..] {
            let shape = &image.data.shape()[1..];
            if shape != first_shape {
                report.problem(
                    *file,
                    format!(
                        "shape {shape:?} differs from channel 0's {first_shape:?} ({})",
                        first_file.display()
                    ),
                );
            }
            compare_geometry(
                report,
                file,
                &image.properties,
                &first.properties,
                &format!("channel 0 ({})", first_file.display()),
            );
        }
        if let Some(n) = channels {
            let got: usize = images.iter().map(|(_, i)| i.data.shape()[0]).sum();
            let one_per_file = images.iter().all(|(_, i)| i.data.shape()[0] == 1);
            if all_read && got != n && one_per_file {
                let dir = first_file.parent().unwrap_or(Path::new(""));
                for i in got..n {
                    report.problem(
                        dir.join(format!("{}_{i:04}{ending}", case.id)),
                        format!("missing: channel {i} of case '{}'", case.id),
                    );
                }
                for (file, _) in images.iter().skip(n) {
                    report.problem(
                        *file,
                        format!(
                            "an extra image channel of case '{}': dataset.json declares {n} \
                             channel{} (channel_names)",
                            case.id,
                            if n == 1 { "" } else { "s" }
                        ),
                    );
                }
            } else if all_read && got != n {
                let per_file: Vec<String> = images
                    .iter()
                    .filter(|(_, i)| i.data.shape()[0] != 1)
                    .map(|(f, i)| format!("{} has {}", f.display(), i.data.shape()[0]))
                    .collect();
                report.problem(
                    *first_file,
                    format!(
                        "case '{}' has {got} image channels but dataset.json declares {n}{}",
                        case.id,
                        if per_file.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", per_file.join(", "))
                        }
                    ),
                );
            }
        }
        if let Some(seg) = &segmentation {
            let seg_shape = &seg.data.shape()[1..];
            if seg_shape != first_shape {
                report.problem(
                    &case.label,
                    format!(
                        "shape {seg_shape:?} differs from the image's {first_shape:?} ({})",
                        first_file.display()
                    ),
                );
            }
            compare_geometry(
                report,
                &case.label,
                &seg.properties,
                &first.properties,
                &format!("the image ({})", first_file.display()),
            );
        }
    }
}

/// Spacing must match (a problem); origin and direction should (warnings, as in nnU-Net).
fn compare_geometry(
    report: &mut Report,
    file: &Path,
    props: &ImageProperties,
    reference: &ImageProperties,
    reference_name: &str,
) {
    if !allclose(&props.spacing, &reference.spacing) {
        report.problem(
            file,
            format!(
                "spacing {:?} differs from {reference_name}'s {:?}",
                props.spacing, reference.spacing
            ),
        );
    }
    let both = |a: &[f64], b: &[f64]| !a.is_empty() || !b.is_empty();
    if both(&props.origin, &reference.origin) && !allclose(&reference.origin, &props.origin) {
        report.warning(
            file,
            format!(
                "origin {:?} differs from {reference_name}'s {:?}",
                props.origin, reference.origin
            ),
        );
    }
    if both(&props.direction, &reference.direction)
        && !allclose(&reference.direction, &props.direction)
    {
        report.warning(
            file,
            format!(
                "direction {:?} differs from {reference_name}'s {:?}",
                props.direction, reference.direction
            ),
        );
    }
}

/// Every value of the label map is a declared label; a map with no foreground is a warning.
fn check_label_values(
    report: &mut Report,
    file: &Path,
    seg: &Segmentation,
    expected: &[i64],
    background: &BTreeSet<i64>,
) {
    let mut seen = vec![false; 1 << 16];
    for v in seg.data.iter() {
        seen[(*v as i32 + 32768) as usize] = true;
    }
    let found: Vec<i64> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| **s)
        .map(|(i, _)| i as i64 - 32768)
        .collect();
    let unexpected: Vec<i64> = found
        .iter()
        .copied()
        .filter(|v| expected.binary_search(v).is_err())
        .collect();
    if !unexpected.is_empty() {
        report.problem(
            file,
            format!(
                "contains label values not declared in dataset.json: {unexpected:?} (declared: \
                 {expected:?})"
            ),
        );
    } else if found.iter().all(|v| background.contains(v)) {
        report.warning(file, "contains no foreground label (background only)");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use ndarray::{Array4, ArrayView3, ArrayView4};

    use super::*;
    use crate::{DatasetJson, choose_reader};
    use nnunet_core::registry::Origin;

    /// Images held in memory, keyed by path; a path it does not know is a corrupt file. The files
    /// themselves exist on disk (empty) so that presence checks pass.
    #[derive(Clone, Default)]
    struct FakeIO {
        images: Arc<HashMap<PathBuf, Image>>,
        endings: Vec<&'static str>,
        panics: bool,
    }

    impl Reader for FakeIO {
        fn file_endings(&self) -> &[&str] {
            &self.endings
        }
        fn read_images(&self, files: &[&Path]) -> nnunet_core::Result<Image> {
            if self.panics {
                panic!("index out of bounds");
            }
            let file = files[0];
            self.images
                .get(file)
                .cloned()
                .ok_or_else(|| Error::invalid_file(file, "truncated: unexpected end of file"))
        }
        fn read_segmentation(&self, file: &Path) -> nnunet_core::Result<Segmentation> {
            let image = self.read_images(&[file])?;
            Ok(Segmentation {
                data: image.data.mapv(|v| v as i16),
                properties: image.properties,
            })
        }
        fn write_segmentation(
            &self,
            _: ArrayView3<'_, i16>,
            _: &Path,
            _: &ImageProperties,
        ) -> nnunet_core::Result<()> {
            unimplemented!()
        }
        fn write_probabilities(
            &self,
            _: ArrayView4<'_, f32>,
            _: &Path,
            _: &ImageProperties,
        ) -> nnunet_core::Result<()> {
            unimplemented!()
        }
    }

    fn props() -> ImageProperties {
        ImageProperties {
            spacing: [3.0, 0.5, 0.5],
            origin: vec![10.0, -20.0, 30.0],
            direction: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            extra: Default::default(),
        }
    }

    fn image(value: f32) -> Image {
        let mut data = Array4::from_elem((1, 2, 3, 4), value);
        data[[0, 0, 0, 0]] = 0.0;
        Image {
            data,
            properties: props(),
        }
    }

    /// A dataset of `cases` cases with `channels` channels, every image and label map valid.
    struct Fixture {
        dir: tempfile::TempDir,
        files: HashMap<PathBuf, Image>,
    }

    impl Fixture {
        fn new(cases: usize, channels: usize) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            std::fs::create_dir_all(root.join("imagesTr")).unwrap();
            std::fs::create_dir_all(root.join("labelsTr")).unwrap();
            let names: serde_json::Map<String, serde_json::Value> = (0..channels)
                .map(|c| (c.to_string(), serde_json::json!(format!("ch{c}"))))
                .collect();
            let dj = serde_json::json!({
                "channel_names": names,
                "labels": {"background": 0, "organ": 1, "tumor": 2},
                "numTraining": cases,
                "file_ending": ".fake",
            });
            std::fs::write(root.join("dataset.json"), dj.to_string()).unwrap();
            let mut fixture = Self {
                dir,
                files: HashMap::new(),
            };
            for case in 0..cases {
                for c in 0..channels {
                    fixture.set(&format!("imagesTr/case{case}_{c:04}.fake"), image(5.0));
                }
                fixture.set(&format!("labelsTr/case{case}.fake"), image(1.0));
            }
            fixture
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn set(&mut self, rel: &str, image: Image) {
            let path = self.path(rel);
            std::fs::write(&path, b"fake").unwrap();
            self.files.insert(path, image);
        }

        fn get(&mut self, rel: &str) -> &mut Image {
            let path = self.path(rel);
            self.files.get_mut(&path).unwrap()
        }

        fn registries(&self, panics: bool) -> Registries {
            let reader = FakeIO {
                images: Arc::new(self.files.clone()),
                endings: vec![".fake"],
                panics,
            };
            let mut r = Registries::empty();
            r.readers
                .add(
                    "FakeIO",
                    "test reader",
                    Origin::BuiltIn,
                    Arc::new(move || Box::new(reader.clone())),
                )
                .unwrap();
            r
        }

        fn verify(&self) -> Report {
            verify_dataset(self.dir.path(), &self.registries(false), &mut |_, _| {})
        }
    }

    fn has(findings: &[Finding], file: &Path, text: &str) -> bool {
        findings
            .iter()
            .any(|f| f.file == file && f.message.contains(text))
    }

    #[test]
    fn clean_dataset_passes() {
        let fixture = Fixture::new(3, 2);
        let mut calls = Vec::new();
        let report = verify_dataset(
            fixture.dir.path(),
            &fixture.registries(false),
            &mut |done, total| calls.push((done, total)),
        );
        assert!(report.is_ok(), "{:?}", report.problems);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(report.cases, 3);
        assert_eq!(report.reader.as_deref(), Some("FakeIO"));
        assert_eq!(calls, vec![(1, 3), (2, 3), (3, 3)]);
    }

    #[test]
    fn nan_and_inf_are_problems() {
        let mut fixture = Fixture::new(2, 2);
        let img = fixture.get("imagesTr/case1_0001.fake");
        img.data[[0, 1, 1, 1]] = f32::NAN;
        img.data[[0, 1, 2, 1]] = f32::INFINITY;
        img.data[[0, 1, 2, 2]] = f32::NEG_INFINITY;
        let report = fixture.verify();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        let file = fixture.path("imagesTr/case1_0001.fake");
        assert!(
            has(
                &report.problems,
                &file,
                "contains 1 NaN and 2 infinite pixel values"
            ),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn origin_and_direction_mismatches_are_warnings_with_numpy_tolerance() {
        let mut fixture = Fixture::new(3, 1);
        // Within allclose: no finding.
        fixture.get("labelsTr/case0.fake").properties.origin[0] = 10.0 + 5e-5;
        // Beyond it: a warning on the label map.
        fixture.get("labelsTr/case1.fake").properties.origin[1] = -20.01;
        fixture.get("labelsTr/case2.fake").properties.direction[0] = -1.0;
        let report = fixture.verify();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
        assert!(has(
            &report.warnings,
            &fixture.path("labelsTr/case1.fake"),
            "origin [10.0, -20.01, 30.0] differs from the image"
        ));
        assert!(has(
            &report.warnings,
            &fixture.path("labelsTr/case2.fake"),
            "direction"
        ));
    }

    #[test]
    fn spacing_mismatch_is_a_problem() {
        let mut fixture = Fixture::new(2, 1);
        fixture.get("labelsTr/case0.fake").properties.spacing[0] = 3.0 * (1.0 + 5e-6);
        fixture.get("labelsTr/case1.fake").properties.spacing[0] = 3.1;
        let report = fixture.verify();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(has(
            &report.problems,
            &fixture.path("labelsTr/case1.fake"),
            "spacing [3.1, 0.5, 0.5] differs from the image"
        ));
    }

    #[test]
    fn channels_must_agree_with_each_other() {
        let mut fixture = Fixture::new(2, 2);
        fixture.get("imagesTr/case0_0001.fake").properties.spacing = [1.0, 1.0, 1.0];
        fixture.get("imagesTr/case0_0001.fake").properties.origin = vec![0.0, 0.0, 0.0];
        fixture.get("imagesTr/case1_0001.fake").data = Array4::from_elem((1, 2, 3, 5), 1.0);
        let report = fixture.verify();
        let f0 = fixture.path("imagesTr/case0_0001.fake");
        let f1 = fixture.path("imagesTr/case1_0001.fake");
        assert!(has(
            &report.problems,
            &f0,
            "spacing [1.0, 1.0, 1.0] differs from channel 0"
        ));
        assert!(has(
            &report.warnings,
            &f0,
            "origin [0.0, 0.0, 0.0] differs from channel 0"
        ));
        assert!(has(
            &report.problems,
            &f1,
            "shape [2, 3, 5] differs from channel 0's [2, 3, 4]"
        ));
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    }

    #[test]
    fn label_values_channels_and_empty_maps() {
        let mut fixture = Fixture::new(3, 1);
        fixture.get("labelsTr/case0.fake").data[[0, 1, 1, 1]] = 7.0;
        fixture.get("labelsTr/case1.fake").data.fill(0.0);
        fixture.get("imagesTr/case2_0000.fake").data = Array4::from_elem((3, 2, 3, 4), 1.0);
        let report = fixture.verify();
        assert!(has(
            &report.problems,
            &fixture.path("labelsTr/case0.fake"),
            "contains label values not declared in dataset.json: [7] (declared: [0, 1, 2])"
        ));
        assert!(has(
            &report.warnings,
            &fixture.path("labelsTr/case1.fake"),
            "no foreground"
        ));
        assert!(has(
            &report.problems,
            &fixture.path("imagesTr/case2_0000.fake"),
            "case 'case2' has 3 image channels but dataset.json declares 1"
        ));
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    }

    #[test]
    fn corrupt_files_and_panicking_readers_are_reported() {
        let mut fixture = Fixture::new(3, 2);
        // Unknown to the fake reader: unreadable.
        fixture
            .files
            .remove(&fixture.path("imagesTr/case1_0000.fake"));
        fixture
            .files
            .remove(&fixture.path("imagesTr/case1_0001.fake"));
        fixture.files.remove(&fixture.path("labelsTr/case2.fake"));
        let report = fixture.verify();
        for rel in [
            "imagesTr/case1_0000.fake",
            "imagesTr/case1_0001.fake",
            "labelsTr/case2.fake",
        ] {
            assert!(
                has(&report.problems, &fixture.path(rel), "truncated"),
                "{rel}: {:?}",
                report.problems
            );
        }
        assert_eq!(report.problems.len(), 3, "{:?}", report.problems);

        let fixture = Fixture::new(2, 1);
        let mut r = Registries::empty();
        let reader = FakeIO {
            images: Arc::new(fixture.files.clone()),
            endings: vec![".fake"],
            panics: true,
        };
        r.readers
            .add(
                "FakeIO",
                "",
                Origin::BuiltIn,
                Arc::new(move || Box::new(reader.clone())),
            )
            .unwrap();
        let report = verify_dataset(fixture.dir.path(), &r, &mut |_, _| {});
        // Two images and two label maps, each reported.
        assert_eq!(report.problems.len(), 4, "{:?}", report.problems);
        assert!(report.problems[0].message.contains("index out of bounds"));
    }

    #[test]
    fn layout_problems_are_all_listed() {
        let mut fixture = Fixture::new(4, 2);
        std::fs::remove_file(fixture.path("imagesTr/case0_0001.fake")).unwrap();
        std::fs::remove_file(fixture.path("labelsTr/case1.fake")).unwrap();
        fixture.set("imagesTr/case2_0002.fake", image(1.0));
        fixture.set("imagesTr/stray.fake", image(1.0));
        fixture.set("labelsTr/orphan.fake", image(1.0));
        fixture.set("imagesTr/case3_0000.FAKE", image(1.0));
        std::fs::write(fixture.path("imagesTr/case3.json"), "{}").unwrap();
        let report = fixture.verify();
        let p = &report.problems;
        assert!(has(
            p,
            &fixture.path("imagesTr/case0_0001.fake"),
            "missing: channel 1 of case 'case0'"
        ));
        assert!(has(
            p,
            &fixture.path("labelsTr/case1.fake"),
            "missing: the label map of case 'case1'"
        ));
        assert!(has(
            p,
            &fixture.path("imagesTr/case2_0002.fake"),
            "dataset.json declares 2 channels"
        ));
        assert!(has(
            p,
            &fixture.path("imagesTr/stray.fake"),
            "belongs to no case"
        ));
        assert_eq!(p.len(), 4, "{p:?}");
        let w = &report.warnings;
        assert!(has(
            w,
            &fixture.path("labelsTr/orphan.fake"),
            "label map of no case"
        ));
        assert!(has(
            w,
            &fixture.path("imagesTr/case3_0000.FAKE"),
            "case-sensitive"
        ));
        assert_eq!(w.len(), 2, "{w:?}");
    }

    #[test]
    fn dataset_json_problems_are_listed_and_checks_go_on() {
        let fixture = Fixture::new(2, 1);
        let json = fixture.path("dataset.json");
        std::fs::write(
            &json,
            r#"{"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 3},
                "numTraining": 5, "file_ending": ".fake"}"#,
        )
        .unwrap();
        let report = fixture.verify();
        assert!(has(&report.problems, &json, "labels must be consecutive"));
        assert!(has(
            &report.problems,
            &json,
            "numTraining is 5 but 2 training cases were found"
        ));
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        // Unknown reader name: the nearest names are suggested.
        std::fs::write(
            &json,
            r#"{"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1},
                "numTraining": 2, "file_ending": ".fake", "overwrite_image_reader_writer": "FakeI0"}"#,
        )
        .unwrap();
        let report = fixture.verify();
        assert!(
            has(
                &report.problems,
                &json,
                "unknown reader 'FakeI0'; did you mean FakeIO?"
            ),
            "{:?}",
            report.problems
        );
        std::fs::remove_file(&json).unwrap();
        let report = fixture.verify();
        assert!(has(&report.problems, &json, "missing"));
    }

    #[test]
    fn explicit_dataset_entries() {
        let fixture = Fixture::new(2, 1);
        let json = fixture.path("dataset.json");
        std::fs::write(
            &json,
            r#"{"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2},
                "numTraining": 3, "file_ending": ".fake", "dataset": {
                  "x": {"images": ["imagesTr/case0_0000.fake"], "label": "labelsTr/case0.fake"},
                  "y": {"images": ["imagesTr/case1_0000.fake", "imagesTr/case0_0000.fake"],
                        "label": "labelsTr/case1.fake"},
                  "z": {"images": ["elsewhere/z.fake"], "label": "labelsTr/case0.fake"},
                  "x": {"images": ["other.fake"], "label": "other.fake"}}}"#,
        )
        .unwrap();
        let report = fixture.verify();
        let p = &report.problems;
        assert!(has(
            p,
            &fixture.path("imagesTr/case0_0000.fake"),
            "an extra image channel of case 'y': dataset.json declares 1 channel"
        ));
        assert!(has(
            p,
            &fixture.path("elsewhere/z.fake"),
            "missing: channel 0 of case 'z'"
        ));
        assert!(has(
            p,
            &json,
            "field 'dataset': case 'x' is listed more than once"
        ));
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(has(
            &report.warnings,
            &fixture.path("labelsTr/case0.fake"),
            "listed for two cases"
        ));
    }

    fn registries_with(readers: &[(&str, FakeIO)]) -> Registries {
        let mut r = Registries::empty();
        for (name, reader) in readers {
            let reader = reader.clone();
            r.readers
                .add(
                    name,
                    "",
                    Origin::BuiltIn,
                    Arc::new(move || Box::new(reader.clone())),
                )
                .unwrap();
        }
        r
    }

    #[test]
    fn reader_choice_follows_nnunet_order() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("case_0000.Fake");
        std::fs::write(&file, b"x").unwrap();
        let readable = FakeIO {
            images: Arc::new(HashMap::from([(file.clone(), image(1.0))])),
            endings: vec![".fake"],
            panics: false,
        };
        let unreadable = FakeIO {
            endings: vec![".FAKE"],
            ..Default::default()
        };
        let other = FakeIO {
            endings: vec![".other"],
            ..Default::default()
        };
        let r = registries_with(&[
            ("AaaPluginIO", readable.clone()),
            ("NaturalImage2DIO", unreadable.clone()),
            ("SimpleITKIO", other.clone()),
            ("Tiff3DIO", readable.clone()),
            ("SimpleITKIOWithReorient", readable.clone()),
        ]);
        let labels = crate::Labels::new(
            vec![("background".into(), crate::LabelValue::Label(0))],
            None,
        )
        .unwrap();
        let mut dj = DatasetJson::new(vec![("0".into(), "CT".into())], labels, 1, ".fAKE");
        // Without an example: the first by nnU-Net's order whose ending matches (any case).
        assert_eq!(
            choose_reader(&r, &dj, None).unwrap().name,
            "NaturalImage2DIO"
        );
        // With one: the first that can read it; nnU-Net's readers before others.
        assert_eq!(
            choose_reader(&r, &dj, Some(&file)).unwrap().name,
            "Tiff3DIO"
        );
        let r2 = registries_with(&[
            ("ZzzPluginIO", readable.clone()),
            ("AaaPluginIO", unreadable.clone()),
            ("NaturalImage2DIO", unreadable.clone()),
            ("SimpleITKIOWithReorient", readable.clone()),
        ]);
        assert_eq!(
            choose_reader(&r2, &dj, Some(&file)).unwrap().name,
            "ZzzPluginIO"
        );
        // Nothing can read it: the error names the file and why each reader refused it.
        let r3 = registries_with(&[("NaturalImage2DIO", unreadable.clone())]);
        let e = choose_reader(&r3, &dj, Some(&file))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("case_0000.Fake") && e.contains("NaturalImage2DIO: truncated"),
            "{e}"
        );
        let mut xyz = dj.clone();
        xyz.file_ending = ".xyz".into();
        let e = choose_reader(&r3, &xyz, None).err().unwrap().to_string();
        assert!(
            e.contains("no reader handles the file ending '.xyz'"),
            "{e}"
        );
        // Named in dataset.json: taken as is; an unknown name suggests the nearest.
        dj.overwrite_image_reader_writer = Some("SimpleITKIOWithReorient".into());
        assert_eq!(
            choose_reader(&r, &dj, Some(&file)).unwrap().name,
            "SimpleITKIOWithReorient"
        );
        dj.overwrite_image_reader_writer = Some("SimpleITKIOWithReorent".into());
        let e = choose_reader(&r, &dj, None).err().unwrap().to_string();
        assert!(
            e.contains("did you mean SimpleITKIO, SimpleITKIOWithReorient?"),
            "{e}"
        );
    }
}
