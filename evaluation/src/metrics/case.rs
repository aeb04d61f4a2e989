//! Reading and checking the label maps of one case and scoring them.

use std::path::{Path, PathBuf};

use ndarray::Zip;

use nnunet_core::error::{Error, Result};
use nnunet_core::io::Reader;

use super::{CaseMetrics, LabelOrRegion, evaluate_arrays};

/// How the values of reference and prediction files are checked before they are scored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValueCheck {
    /// The values a file may hold: the labels (background included) and the ignore label.
    pub allowed: Vec<i64>,
    /// Where the labels come from, for messages (`dataset.json`, `-l`).
    pub labels_from: String,
    /// The highest label: `nnunet predict --visible-labels` spreads `0..=highest` over 0..255.
    pub highest: i64,
    /// Map a file holding only visible values (a 0/255 mask for one label) back to the labels;
    /// without it such a file is an error that says to pass `--visible-labels`.
    pub map_visible: bool,
    /// Any other value that is not allowed is an error too (with `dataset.json`, which lists
    /// every label); otherwise it is scored as it is (nnU-Net's `evaluate_simple`).
    pub strict: bool,
}
/// What is scored in every case and how its files are read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scoring {
    /// The labels or regions to score.
    pub regions: Vec<LabelOrRegion>,
    /// Voxels with this value in the reference are not counted.
    pub ignore_label: Option<i64>,
    /// Check the values of every file (and map visible values back); `None`: no check.
    pub values: Option<ValueCheck>,
}

impl Scoring {
    /// Scores `regions` with `ignore_label`, reading the files as they are.
    pub fn new(regions: &[LabelOrRegion], ignore_label: Option<i64>) -> Self {
        Scoring {
            regions: regions.to_vec(),
            ignore_label,
            values: None,
        }
    }
}

/// The files of one case to evaluate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvaluationCase {
    /// The reference label map.
    pub reference: PathBuf,
    /// The predicted label map.
    pub prediction: PathBuf,
    /// The region of interest (nonzero inside); voxels outside it are not counted.
    pub roi: Option<PathBuf>,
}

/// The distinct values of a label map, sorted.
fn distinct_values(data: &ndarray::Array4<i16>) -> Vec<i64> {
    let mut seen = vec![false; 1 << 16];
    for &v in data {
        seen[v as u16 as usize] = true;
    }
    let mut values: Vec<i64> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| **s)
        .map(|(raw, _)| i64::from(raw as u16 as i16))
        .collect();
    values.sort_unstable();
    values
}

/// The label of each visible value of labels `0..=highest`, if every one of `values` is one.
fn labels_of_visible_values(values: &[i64], highest: i64) -> Option<Vec<(i16, i16)>> {
    let highest = i16::try_from(highest)
        .ok()
        .filter(|h| (1..=255).contains(h))?;
    let table: Vec<(i16, i16)> = (0..=highest)
        .map(|label| (nnunet_inference::visible_value(label, highest), label))
        .collect();
    values
        .iter()
        .all(|v| table.iter().any(|(visible, _)| i64::from(*visible) == *v))
        .then_some(table)
}

/// The values as `1, 2, 3`, for messages.
fn list_values(values: &[i64]) -> String {
    values
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads a label map with `reader`; with a [`ValueCheck`], values that are not labels are an
/// error naming the file and the values (see [`ValueCheck`]), unless they are visible values to
/// map back.
pub fn read_label_map(
    file: &Path,
    reader: &dyn Reader,
    check: Option<&ValueCheck>,
) -> Result<ndarray::Array4<i16>> {
    let mut data = reader.read_segmentation(file)?.data;
    let Some(check) = check else {
        return Ok(data);
    };
    let values = distinct_values(&data);
    let unexpected: Vec<i64> = values
        .iter()
        .filter(|v| !check.allowed.contains(v))
        .copied()
        .collect();
    if unexpected.is_empty() {
        return Ok(data);
    }
    let visible = labels_of_visible_values(&values, check.highest);
    match (visible, check.map_visible, check.strict) {
        (Some(table), true, _) => {
            data.mapv_inplace(|v| {
                table
                    .iter()
                    .find(|(visible, _)| *visible == v)
                    .map_or(v, |(_, label)| *label)
            });
            Ok(data)
        }
        (None, _, false) => Ok(data),
        (visible, map_visible, _) => {
            let hint = if visible.is_some() {
                "they are the values `nnunet predict --visible-labels` writes (a mask of 0 and 255 \
                 for one label): pass --visible-labels to map them back to labels"
                    .to_string()
            } else if map_visible {
                format!(
                    "they are not the visible values of labels 0 to {} either, so \
                     --visible-labels cannot map them back",
                    check.highest
                )
            } else {
                "a segmentation written by `nnunet predict --visible-labels` holds visible \
                 values: pass --visible-labels to map them back to labels"
                    .to_string()
            };
            Err(Error::evaluation_file(
                file,
                format!(
                    "holds the value(s) {}, which are not labels of {} ({}); {hint}",
                    list_values(&unexpected),
                    check.labels_from,
                    list_values(&check.allowed)
                ),
            ))
        }
    }
}

/// Gives the reference's voxels outside the region of interest in `roi_file` (nonzero inside) a
/// value that is ignored; returns that value (the ignore label, or a value the reference does not
/// hold).
fn ignore_outside_roi(
    reference: &mut ndarray::Array4<i16>,
    reference_file: &Path,
    roi_file: &Path,
    reader: &dyn Reader,
    ignore_label: Option<i64>,
) -> Result<i64> {
    let roi = reader.read_segmentation(roi_file)?.data;
    if roi.shape() != reference.shape() {
        return Err(Error::evaluation_file(
            roi_file,
            format!(
                "the region of interest has shape {:?} but the reference {} has shape {:?} \
                 (they must have the same shape)",
                &roi.shape()[1..],
                reference_file.display(),
                &reference.shape()[1..]
            ),
        ));
    }
    let held = distinct_values(reference);
    let outside = match ignore_label.and_then(|v| i16::try_from(v).ok()) {
        Some(v) => v,
        None => (i16::MIN..=i16::MAX)
            .find(|v| !held.contains(&i64::from(*v)))
            .unwrap_or(i16::MIN),
    };
    Zip::from(reference).and(&roi).for_each(|r, &inside| {
        if inside == 0 {
            *r = outside;
        }
    });
    Ok(i64::from(outside))
}

/// Reads one case's files with `reader` and evaluates it; errors name the files.
pub fn evaluate_case(
    case: &EvaluationCase,
    reader: &dyn Reader,
    scoring: &Scoring,
) -> Result<CaseMetrics> {
    let check = scoring.values.as_ref();
    let mut reference = read_label_map(&case.reference, reader, check)?;
    let prediction = read_label_map(&case.prediction, reader, check)?;
    if reference.shape() != prediction.shape() {
        return Err(Error::evaluation_file(
            &case.prediction,
            format!(
                "the prediction has shape {:?} but its reference {} has shape {:?} \
                 (prediction and reference must have the same shape)",
                &prediction.shape()[1..],
                case.reference.display(),
                &reference.shape()[1..]
            ),
        ));
    }
    let ignore_label = match &case.roi {
        Some(roi) => Some(ignore_outside_roi(
            &mut reference,
            &case.reference,
            roi,
            reader,
            scoring.ignore_label,
        )?),
        None => scoring.ignore_label,
    };
    let metrics = evaluate_arrays(
        reference.view(),
        prediction.view(),
        &scoring.regions,
        ignore_label,
    )?;
    Ok(CaseMetrics {
        reference_file: case.reference.clone(),
        prediction_file: case.prediction.clone(),
        metrics,
    })
}
