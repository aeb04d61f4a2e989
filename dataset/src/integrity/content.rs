//! The content checks: reading each case's images and label map and comparing them with
//! `dataset.json` and with each other.

use std::collections::BTreeSet;
use std::path::Path;

use super::Report;
use crate::{TrainingCase, catch};
use nnunet_core::error::Error;
use nnunet_core::io::{Image, ImageProperties, Reader, Segmentation};

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
    if let Some((path, reason)) = error.file_reason()
        && path == file
    {
        return reason.to_string();
    }
    match error {
        Error::Io { path, source } if path == file => format!("cannot be read: {source}"),
        other => other.to_string(),
    }
}

/// Reads one case and checks its content.
pub(super) fn check_case(
    report: &mut Report,
    reader: &dyn Reader,
    case: &TrainingCase,
    ending: &str,
    channels: Option<usize>,
    labels: Option<&(Vec<i64>, BTreeSet<i64>)>,
) {
    let segmentation = read_label_map(report, reader, case, labels);
    let (images, all_read) = read_channels(report, reader, case);
    for (file, image) in &images {
        check_finite(report, file, image);
    }
    // Channels agree with the first channel.
    let Some((first_file, first)) = images.first() else {
        return;
    };
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
    if let Some(n) = channels
        && all_read
    {
        check_channel_count(report, case, &images, n, ending);
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

/// Reads the label map of `case` (if it exists) and checks its channels and, given the declared
/// `labels`, its values.
fn read_label_map(
    report: &mut Report,
    reader: &dyn Reader,
    case: &TrainingCase,
    labels: Option<&(Vec<i64>, BTreeSet<i64>)>,
) -> Option<Segmentation> {
    if !case.label.is_file() {
        return None;
    }
    let seg = match catch(|| reader.read_segmentation(&case.label)) {
        Ok(Ok(seg)) => seg,
        Ok(Err(e)) => {
            report.problem(&case.label, reason(e, &case.label));
            return None;
        }
        Err(panic) => {
            report.problem(&case.label, panic);
            return None;
        }
    };
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
        check_label_values(report, &case.label, &seg, expected, background);
    }
    Some(seg)
}

/// Reads the images of `case` one file at a time so that every bad file is named. Returns the
/// images read and whether every file was read.
fn read_channels<'c>(
    report: &mut Report,
    reader: &dyn Reader,
    case: &'c TrainingCase,
) -> (Vec<(&'c Path, Image)>, bool) {
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
    (images, all_read)
}

/// NaN and infinite pixel values are problems.
fn check_finite(report: &mut Report, file: &Path, image: &Image) {
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
            file,
            format!("contains {} pixel values", parts.join(" and ")),
        );
    }
}

/// The images of a fully read case hold the `n` channels `dataset.json` declares: with one
/// channel per file, missing and extra files are named; otherwise the count is reported.
fn check_channel_count(
    report: &mut Report,
    case: &TrainingCase,
    images: &[(&Path, Image)],
    n: usize,
    ending: &str,
) {
    let got: usize = images.iter().map(|(_, i)| i.data.shape()[0]).sum();
    if got == n {
        return;
    }
    let first_file = images[0].0;
    let one_per_file = images.iter().all(|(_, i)| i.data.shape()[0] == 1);
    if one_per_file {
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
    } else {
        let per_file: Vec<String> = images
            .iter()
            .filter(|(_, i)| i.data.shape()[0] != 1)
            .map(|(f, i)| format!("{} has {}", f.display(), i.data.shape()[0]))
            .collect();
        report.problem(
            first_file,
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
