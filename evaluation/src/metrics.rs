//! Evaluation: per-case segmentation metrics and nnU-Net's `summary.json`.
//!
//! As nnU-Net's `evaluate_predictions`: for every case and every label or region (a region is a
//! set of labels whose union is the mask), the voxel counts TP, FP, FN, TN, `n_pred`, `n_ref` and
//! Dice and IoU, with voxels that carry the ignore label in the reference left out. Dice and IoU
//! are NaN when neither reference nor prediction has the label (TP + FP + FN = 0). The mean over
//! cases skips NaN (numpy's `nanmean`); the foreground mean is the plain mean of those means over
//! every entry but label 0, so a label with a NaN mean makes it NaN, as in nnU-Net.
//!
//! [`Summary::to_json`] writes the text Python's `json.dump(..., sort_keys=True, indent=4)` writes
//! for nnU-Net's summary: keys sorted, NaN as the bare token `NaN`, counts as integers, means as
//! floats in Python's shortest `repr`, label keys `"1"` and region keys `"(1, 2)"` / `"(3,)"`.
//! Sums are numpy's pairwise sums, so the means are bit for bit nnU-Net's.

use std::fmt;
use std::path::{Path, PathBuf};

use ndarray::{ArrayView, Dimension, Zip};
use rayon::prelude::*;
use serde_json::Value;

use nnunet_core::error::{Error, Result};
use nnunet_core::io::{Reader, required_file};
use nnunet_core::json::{JsonValue, parse_float, quote_numbers};
use nnunet_dataset::{LabelValue, Labels};

/// What a metric is computed on: one label, or a region (the union of several labels).
///
/// The two are distinct even with one label: `Label(3)` is nnU-Net's integer key `"3"`,
/// `Region(vec![3])` its tuple key `"(3,)"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LabelOrRegion {
    /// One label value.
    Label(i64),
    /// A set of label values; the mask is their union.
    Region(Vec<i64>),
}

impl LabelOrRegion {
    /// The label values whose union is the mask.
    pub fn labels(&self) -> &[i64] {
        match self {
            LabelOrRegion::Label(v) => std::slice::from_ref(v),
            LabelOrRegion::Region(v) => v,
        }
    }

    /// The key nnU-Net writes in `summary.json`: Python's `str()` of the int or tuple.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// Parses a key of `summary.json` back (`"1"`, `"(1, 2)"`, `"(3,)"`).
    pub fn from_key(key: &str) -> Option<Self> {
        let key = key.trim();
        if let Ok(v) = key.parse::<i64>() {
            return Some(LabelOrRegion::Label(v));
        }
        let inner = key.strip_prefix('(')?.strip_suffix(')')?;
        let values = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<i64>().ok())
            .collect::<Option<Vec<_>>>()?;
        Some(LabelOrRegion::Region(values))
    }

    /// Whether nnU-Net leaves this entry out of the foreground mean (only the integer label 0).
    pub fn is_background(&self) -> bool {
        matches!(self, LabelOrRegion::Label(0))
    }
}

impl fmt::Display for LabelOrRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelOrRegion::Label(v) => write!(f, "{v}"),
            LabelOrRegion::Region(v) if v.len() == 1 => write!(f, "({},)", v[0]),
            LabelOrRegion::Region(v) => {
                let parts: Vec<String> = v.iter().map(i64::to_string).collect();
                write!(f, "({})", parts.join(", "))
            }
        }
    }
}

/// Each label as a one-label region, as nnU-Net's `labels_to_list_of_regions`.
pub fn labels_to_list_of_regions(labels: &[i64]) -> Vec<LabelOrRegion> {
    labels
        .iter()
        .map(|&l| LabelOrRegion::Region(vec![l]))
        .collect()
}

/// What nnU-Net evaluates for a dataset: its foreground regions, in `dataset.json` order, when the
/// labels are region-based, and otherwise its foreground labels, sorted (the ignore label is never
/// among them).
pub fn evaluation_targets(labels: &Labels) -> Vec<LabelOrRegion> {
    if labels.is_region_based() {
        labels
            .entries()
            .iter()
            .filter(|(name, _)| name != "ignore")
            .filter_map(|(_, value)| match value {
                LabelValue::Label(0) => None,
                LabelValue::Label(v) => Some(LabelOrRegion::Label(*v)),
                LabelValue::Region(v) if !v.is_empty() && v.iter().all(|x| *x == 0) => None,
                LabelValue::Region(v) => Some(LabelOrRegion::Region(v.clone())),
            })
            .collect()
    } else {
        labels
            .all_labels()
            .into_iter()
            .filter(|v| *v != 0)
            .map(LabelOrRegion::Label)
            .collect()
    }
}

/// The metrics of one label or region in one case.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    /// `2 TP / (2 TP + FP + FN)`, NaN when TP + FP + FN = 0.
    pub dice: f64,
    /// `TP / (TP + FP + FN)`, NaN when TP + FP + FN = 0.
    pub iou: f64,
    /// True positives (voxels).
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// False negatives.
    pub fn_: u64,
    /// True negatives.
    pub tn: u64,
    /// Voxels in the prediction's mask (TP + FP).
    pub n_pred: u64,
    /// Voxels in the reference's mask (TP + FN).
    pub n_ref: u64,
}

impl Metrics {
    /// The metrics from the four counts.
    pub fn from_counts(tp: u64, fp: u64, fn_: u64, tn: u64) -> Self {
        let (dice, iou) = if tp + fp + fn_ == 0 {
            (f64::NAN, f64::NAN)
        } else {
            (
                (2 * tp) as f64 / (2 * tp + fp + fn_) as f64,
                tp as f64 / (tp + fp + fn_) as f64,
            )
        };
        Metrics {
            dice,
            iou,
            tp,
            fp,
            fn_,
            tn,
            n_pred: tp + fp,
            n_ref: tp + fn_,
        }
    }

    fn as_floats(&self) -> [f64; 8] {
        [
            self.dice,
            self.iou,
            self.tp as f64,
            self.fp as f64,
            self.fn_ as f64,
            self.tn as f64,
            self.n_pred as f64,
            self.n_ref as f64,
        ]
    }
}

/// Metrics averaged over cases (every field a float, as nnU-Net writes means).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanMetrics {
    pub dice: f64,
    pub iou: f64,
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
    pub tn: f64,
    pub n_pred: f64,
    pub n_ref: f64,
}

impl MeanMetrics {
    fn from_floats(v: [f64; 8]) -> Self {
        MeanMetrics {
            dice: v[0],
            iou: v[1],
            tp: v[2],
            fp: v[3],
            fn_: v[4],
            tn: v[5],
            n_pred: v[6],
            n_ref: v[7],
        }
    }

    fn as_floats(&self) -> [f64; 8] {
        [
            self.dice,
            self.iou,
            self.tp,
            self.fp,
            self.fn_,
            self.tn,
            self.n_pred,
            self.n_ref,
        ]
    }
}

/// The metric names of `summary.json`, in the order of [`Metrics::as_floats`].
const METRIC_NAMES: [&str; 8] = ["Dice", "IoU", "TP", "FP", "FN", "TN", "n_pred", "n_ref"];

/// The metrics of one case.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseMetrics {
    /// The reference label map, as the folder was given joined with the file name.
    pub reference_file: PathBuf,
    /// The predicted label map.
    pub prediction_file: PathBuf,
    /// One entry per label or region, in the order they were asked for.
    pub metrics: Vec<(LabelOrRegion, Metrics)>,
}

/// Drops repeated entries, keeping the first (a repeated label is one key in nnU-Net's dicts).
fn unique(regions: &[LabelOrRegion]) -> Vec<LabelOrRegion> {
    let mut out: Vec<LabelOrRegion> = Vec::with_capacity(regions.len());
    for r in regions {
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    out
}

/// The metrics of `prediction` against `reference` for each label or region; voxels whose
/// reference value is `ignore_label` are not counted. Both arrays must have the same shape.
pub fn evaluate_arrays<D: Dimension>(
    reference: ArrayView<'_, i16, D>,
    prediction: ArrayView<'_, i16, D>,
    regions: &[LabelOrRegion],
    ignore_label: Option<i64>,
) -> Result<Vec<(LabelOrRegion, Metrics)>> {
    if reference.shape() != prediction.shape() {
        return Err(Error::Invalid(format!(
            "the reference has shape {:?} but the prediction {:?}",
            reference.shape(),
            prediction.shape()
        )));
    }
    let ignore = ignore_label.and_then(|v| i16::try_from(v).ok());
    // Which values occur (outside ignored voxels), then how often each pair of values occurs.
    let mut seen_ref = vec![false; 1 << 16];
    let mut seen_pred = vec![false; 1 << 16];
    Zip::from(&reference).and(&prediction).for_each(|&r, &p| {
        if Some(r) != ignore {
            seen_ref[r as u16 as usize] = true;
            seen_pred[p as u16 as usize] = true;
        }
    });
    let index = |seen: &[bool]| -> (Vec<u32>, Vec<i64>) {
        let mut idx = vec![u32::MAX; 1 << 16];
        let mut values = Vec::new();
        for (raw, &s) in seen.iter().enumerate() {
            if s {
                idx[raw] = values.len() as u32;
                values.push(raw as u16 as i16 as i64);
            }
        }
        (idx, values)
    };
    let (ref_idx, ref_values) = index(&seen_ref);
    let (pred_idx, pred_values) = index(&seen_pred);
    let n_pred_values = pred_values.len();
    let mut counts = vec![0u64; ref_values.len() * n_pred_values];
    Zip::from(&reference).and(&prediction).for_each(|&r, &p| {
        if Some(r) != ignore {
            let i = ref_idx[r as u16 as usize] as usize;
            let j = pred_idx[p as u16 as usize] as usize;
            counts[i * n_pred_values + j] += 1;
        }
    });
    let out = unique(regions)
        .into_iter()
        .map(|region| {
            let labels = region.labels();
            let in_ref: Vec<bool> = ref_values.iter().map(|v| labels.contains(v)).collect();
            let in_pred: Vec<bool> = pred_values.iter().map(|v| labels.contains(v)).collect();
            let (mut tp, mut fp, mut fn_, mut tn) = (0u64, 0u64, 0u64, 0u64);
            for (i, &a) in in_ref.iter().enumerate() {
                for (j, &b) in in_pred.iter().enumerate() {
                    let c = counts[i * n_pred_values + j];
                    match (a, b) {
                        (true, true) => tp += c,
                        (false, true) => fp += c,
                        (true, false) => fn_ += c,
                        (false, false) => tn += c,
                    }
                }
            }
            (region, Metrics::from_counts(tp, fp, fn_, tn))
        })
        .collect();
    Ok(out)
}

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
            Err(Error::invalid_file(
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
        return Err(Error::invalid_file(
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
        return Err(Error::invalid_file(
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

/// The file names in `folder` ending with `file_ending`, sorted.
pub(crate) fn files_with_ending(folder: &Path, file_ending: &str) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(folder).map_err(|e| Error::io(folder, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(folder, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.ends_with(file_ending) && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// `name` without `ending`, with `suffix` and `ending` appended (`Image_01L.png` with `_1stHO`:
/// `Image_01L_1stHO.png`).
fn with_name_suffix(name: &str, ending: &str, suffix: &str) -> String {
    let stem = name.strip_suffix(ending).unwrap_or(name);
    format!("{stem}{suffix}{ending}")
}

/// The cases to evaluate, as nnU-Net pairs them: every file of `prediction_folder` ending with
/// `file_ending`, sorted by name, with the file of the same name in `reference_folder` (with
/// `reference_suffix` before the ending: `CASE_1stHO.png` for `CASE.png`). Unless `chill`, every
/// reference file (with the suffix) must have its prediction. A prediction without its reference
/// is an error unless `skip_unreferenced` (a test folder's image-only cases), which leaves it out.
pub fn pair_files(
    reference_folder: &Path,
    prediction_folder: &Path,
    file_ending: &str,
    reference_suffix: &str,
    chill: bool,
    skip_unreferenced: bool,
) -> Result<Vec<EvaluationCase>> {
    if !reference_folder.is_dir() {
        return Err(Error::invalid_file(
            reference_folder,
            "no such folder (the reference segmentations)",
        ));
    }
    if !prediction_folder.is_dir() {
        return Err(Error::invalid_file(
            prediction_folder,
            "no such folder (the predicted segmentations)",
        ));
    }
    let predictions = files_with_ending(prediction_folder, file_ending)?;
    if !chill {
        let reference_ending = format!("{reference_suffix}{file_ending}");
        let missing: Vec<String> = files_with_ending(reference_folder, &reference_ending)?
            .into_iter()
            .filter(|name| {
                let stem = &name[..name.len() - reference_ending.len()];
                !prediction_folder
                    .join(format!("{stem}{file_ending}"))
                    .is_file()
            })
            .collect();
        if !missing.is_empty() {
            return Err(Error::invalid_file(
                prediction_folder,
                format!(
                    "{} of the reference files have no prediction here: {} \
                     (pass --chill to evaluate only the cases that have one)",
                    missing.len(),
                    missing.join(", ")
                ),
            ));
        }
    }
    if predictions.is_empty() {
        return Err(Error::invalid_file(
            prediction_folder,
            format!("no predictions (files ending with '{file_ending}') to evaluate"),
        ));
    }
    let mut cases = Vec::with_capacity(predictions.len());
    for name in predictions {
        let reference =
            reference_folder.join(with_name_suffix(&name, file_ending, reference_suffix));
        let prediction = prediction_folder.join(&name);
        if reference.is_file() {
            cases.push(EvaluationCase {
                reference,
                prediction,
                roi: None,
            });
        } else if !skip_unreferenced {
            return Err(Error::invalid_file(
                &prediction,
                format!(
                    "no reference segmentation {} for this prediction (pass --chill to evaluate \
                     only the cases that have one)",
                    reference.display()
                ),
            ));
        }
    }
    if cases.is_empty() {
        return Err(Error::invalid_file(
            prediction_folder,
            format!(
                "no prediction has a reference in {}",
                reference_folder.display()
            ),
        ));
    }
    Ok(cases)
}

/// Gives every case its region of interest `roi_folder/<prediction name with roi_suffix>`; a
/// missing file is an error naming it.
pub fn with_rois(
    cases: Vec<EvaluationCase>,
    roi_folder: &Path,
    roi_suffix: &str,
    file_ending: &str,
) -> Result<Vec<EvaluationCase>> {
    if !roi_folder.is_dir() {
        return Err(Error::invalid_file(
            roi_folder,
            "no such folder (the regions of interest)",
        ));
    }
    cases
        .into_iter()
        .map(|mut case| {
            let name = case
                .prediction
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let roi = roi_folder.join(with_name_suffix(&name, file_ending, roi_suffix));
            case.roi = Some(required_file(roi, || {
                format!(
                    "the region of interest of {} (every case needs one in {})",
                    case.prediction.display(),
                    roi_folder.display()
                )
            })?);
            Ok(case)
        })
        .collect()
}

/// Evaluates the cases on `num_processes` threads (0: rayon's default) and aggregates them;
/// `progress` is called once per finished case. Cases stay in the order of `cases`.
pub fn evaluate_pairs(
    cases: &[EvaluationCase],
    reader: &dyn Reader,
    scoring: &Scoring,
    num_processes: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<Summary> {
    if cases.is_empty() {
        return Err(Error::Invalid("no cases to evaluate".into()));
    }
    if scoring.regions.is_empty() {
        return Err(Error::Invalid(
            "no labels or regions to evaluate (give at least one)".into(),
        ));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(num_processes)
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start {num_processes} threads: {e}")))?;
    let scored = pool.install(|| {
        cases
            .par_iter()
            .map(|case| {
                let scored = evaluate_case(case, reader, scoring);
                progress();
                scored
            })
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(Summary::from_cases(scored, &scoring.regions))
}

/// Where and what to evaluate, for [`evaluate_folders`].
#[derive(Clone, Debug)]
pub struct FolderEvaluation<'a> {
    /// The folder of reference segmentations.
    pub reference_folder: &'a Path,
    /// The folder of predicted segmentations.
    pub prediction_folder: &'a Path,
    /// The file ending that selects the files (`.nii.gz`).
    pub file_ending: &'a str,
    /// The labels or regions to evaluate.
    pub regions: &'a [LabelOrRegion],
    /// Voxels with this value in the reference are not counted.
    pub ignore_label: Option<i64>,
    /// Worker threads (0: one per core).
    pub num_processes: usize,
    /// Evaluate only the cases that have a prediction instead of failing on missing ones.
    pub chill: bool,
}

/// nnU-Net's `compute_metrics_on_folder`: pairs the files ([`pair_files`]) and evaluates them
/// ([`evaluate_pairs`]).
pub fn evaluate_folders(job: &FolderEvaluation<'_>, reader: &dyn Reader) -> Result<Summary> {
    let cases = pair_files(
        job.reference_folder,
        job.prediction_folder,
        job.file_ending,
        "",
        job.chill,
        false,
    )?;
    evaluate_pairs(
        &cases,
        reader,
        &Scoring::new(job.regions, job.ignore_label),
        job.num_processes,
        &|| {},
    )
}

/// numpy's pairwise summation of float64 (`np.sum` on a contiguous array), so that means are
/// bit-identical to nnU-Net's.
pub fn numpy_sum(values: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = values.len();
    if n < 8 {
        let mut res = 0.0;
        for v in values {
            res += v;
        }
        res
    } else if n <= BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&values[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += values[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for v in &values[i..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum(&values[..n2]) + numpy_sum(&values[n2..])
    }
}

/// `np.nanmean`: the mean of the values that are not NaN (NaN if there are none).
fn nanmean(values: &[f64]) -> f64 {
    let replaced: Vec<f64> = values
        .iter()
        .map(|v| if v.is_nan() { 0.0 } else { *v })
        .collect();
    let count = values.iter().filter(|v| !v.is_nan()).count();
    numpy_sum(&replaced) / count as f64
}

/// `np.mean` (NaN for no values).
fn np_mean(values: &[f64]) -> f64 {
    numpy_sum(values) / values.len() as f64
}

/// nnU-Net's `summary.json`: the metrics of every case, their mean per label or region and the
/// foreground mean.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// One entry per case, in the order the cases were evaluated (sorted by file name).
    pub metric_per_case: Vec<CaseMetrics>,
    /// Mean over cases per label or region (NaN skipped).
    pub mean: Vec<(LabelOrRegion, MeanMetrics)>,
    /// Mean of [`Summary::mean`] over every entry but label 0.
    pub foreground_mean: MeanMetrics,
}

impl Summary {
    /// Aggregates per-case metrics as nnU-Net does. Every case must hold every entry of `regions`.
    pub fn from_cases(cases: Vec<CaseMetrics>, regions: &[LabelOrRegion]) -> Self {
        let regions = unique(regions);
        let mean: Vec<(LabelOrRegion, MeanMetrics)> = regions
            .into_iter()
            .map(|region| {
                let per_case: Vec<[f64; 8]> = cases
                    .iter()
                    .filter_map(|c| c.metrics.iter().find(|(r, _)| *r == region))
                    .map(|(_, m)| m.as_floats())
                    .collect();
                let mut out = [0.0; 8];
                for (k, o) in out.iter_mut().enumerate() {
                    let column: Vec<f64> = per_case.iter().map(|m| m[k]).collect();
                    *o = nanmean(&column);
                }
                (region, MeanMetrics::from_floats(out))
            })
            .collect();
        let mut fg = [0.0; 8];
        for (k, o) in fg.iter_mut().enumerate() {
            let column: Vec<f64> = mean
                .iter()
                .filter(|(r, _)| !r.is_background())
                .map(|(_, m)| m.as_floats()[k])
                .collect();
            *o = np_mean(&column);
        }
        Summary {
            metric_per_case: cases,
            mean,
            foreground_mean: MeanMetrics::from_floats(fg),
        }
    }

    /// The mean metrics of one label or region.
    pub fn mean_of(&self, region: &LabelOrRegion) -> Option<&MeanMetrics> {
        self.mean.iter().find(|(r, _)| r == region).map(|(_, m)| m)
    }

    /// The text nnU-Net's `save_summary_json` writes (no trailing newline).
    pub fn to_json(&self) -> String {
        let metrics_obj = |m: &[JsonValue; 8]| {
            JsonValue::Object(
                METRIC_NAMES
                    .iter()
                    .zip(m.iter())
                    .map(|(n, v)| (n.to_string(), v.clone()))
                    .collect(),
            )
        };
        let mean_obj = |m: &MeanMetrics| metrics_obj(&m.as_floats().map(JsonValue::Float));
        let case_obj = |m: &Metrics| {
            metrics_obj(&[
                JsonValue::Float(m.dice),
                JsonValue::Float(m.iou),
                JsonValue::Int(m.tp as i64),
                JsonValue::Int(m.fp as i64),
                JsonValue::Int(m.fn_ as i64),
                JsonValue::Int(m.tn as i64),
                JsonValue::Int(m.n_pred as i64),
                JsonValue::Int(m.n_ref as i64),
            ])
        };
        let per_case = self
            .metric_per_case
            .iter()
            .map(|c| {
                JsonValue::Object(vec![
                    (
                        "metrics".into(),
                        JsonValue::Object(
                            c.metrics
                                .iter()
                                .map(|(r, m)| (r.key(), case_obj(m)))
                                .collect(),
                        ),
                    ),
                    (
                        "prediction_file".into(),
                        JsonValue::Str(c.prediction_file.to_string_lossy().into_owned()),
                    ),
                    (
                        "reference_file".into(),
                        JsonValue::Str(c.reference_file.to_string_lossy().into_owned()),
                    ),
                ])
            })
            .collect();
        let root = JsonValue::Object(vec![
            ("foreground_mean".into(), mean_obj(&self.foreground_mean)),
            (
                "mean".into(),
                JsonValue::Object(
                    self.mean
                        .iter()
                        .map(|(r, m)| (r.key(), mean_obj(m)))
                        .collect(),
                ),
            ),
            ("metric_per_case".into(), JsonValue::Array(per_case)),
        ]);
        root.to_python_text()
    }

    /// Writes [`Summary::to_json`] to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()).map_err(|e| Error::io(path, e))
    }

    /// Reads a `summary.json` written by nnU-Net or by [`Summary::write_json`] (bare `NaN`,
    /// `Infinity` and `-Infinity` accepted).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text).map_err(|reason| Error::invalid_file(path, reason))
    }

    /// Parses the text of a `summary.json`; the error says what is wrong.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let value: Value = serde_json::from_str(&quote_numbers(text))
            .map_err(|e| format!("not valid JSON: {e}"))?;
        let root = value
            .as_object()
            .ok_or("the summary must be a JSON object")?;
        let get = |key: &str| root.get(key).ok_or(format!("no '{key}' entry"));
        let foreground_mean = parse_mean(get("foreground_mean")?, "foreground_mean")?;
        let mean = get("mean")?
            .as_object()
            .ok_or("'mean' must be an object")?
            .iter()
            .map(|(k, v)| Ok((parse_key(k)?, parse_mean(v, &format!("mean/{k}"))?)))
            .collect::<std::result::Result<Vec<_>, String>>()?;
        let metric_per_case = get("metric_per_case")?
            .as_array()
            .ok_or("'metric_per_case' must be a list")?
            .iter()
            .enumerate()
            .map(|(i, case)| parse_case(case, i))
            .collect::<std::result::Result<Vec<_>, String>>()?;
        Ok(Summary {
            metric_per_case,
            mean,
            foreground_mean,
        })
    }
}

fn parse_key(key: &str) -> std::result::Result<LabelOrRegion, String> {
    LabelOrRegion::from_key(key)
        .ok_or_else(|| format!("'{key}' is neither a label (\"1\") nor a region (\"(1, 2)\")"))
}

/// A number as [`quote_numbers`] left it (`NaN`, `Infinity` and `-Infinity` included).
fn metric_values(value: &Value, at: &str) -> std::result::Result<[f64; 8], String> {
    let obj = value
        .as_object()
        .ok_or(format!("'{at}' must be an object"))?;
    let mut out = [0.0; 8];
    for (o, name) in out.iter_mut().zip(METRIC_NAMES) {
        let v = obj.get(name).ok_or(format!("'{at}' has no '{name}'"))?;
        *o = parse_float(v).ok_or(format!("'{at}/{name}' is not a number"))?;
    }
    Ok(out)
}

fn parse_mean(value: &Value, at: &str) -> std::result::Result<MeanMetrics, String> {
    metric_values(value, at).map(MeanMetrics::from_floats)
}

fn parse_case(case: &Value, i: usize) -> std::result::Result<CaseMetrics, String> {
    let at = format!("metric_per_case[{i}]");
    let obj = case
        .as_object()
        .ok_or(format!("'{at}' must be an object"))?;
    let file = |key: &str| {
        obj.get(key)
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .ok_or(format!("'{at}' has no '{key}' text"))
    };
    let metrics = obj
        .get("metrics")
        .and_then(Value::as_object)
        .ok_or(format!("'{at}' has no 'metrics' object"))?
        .iter()
        .map(|(k, v)| {
            let here = format!("{at}/metrics/{k}");
            let f = metric_values(v, &here)?;
            let count = |x: f64, name: &str| {
                if x >= 0.0 && x.fract() == 0.0 && x < 2f64.powi(63) {
                    Ok(x as u64)
                } else {
                    Err(format!("'{here}/{name}' must be a count, not {x}"))
                }
            };
            let m = Metrics {
                dice: f[0],
                iou: f[1],
                tp: count(f[2], "TP")?,
                fp: count(f[3], "FP")?,
                fn_: count(f[4], "FN")?,
                tn: count(f[5], "TN")?,
                n_pred: count(f[6], "n_pred")?,
                n_ref: count(f[7], "n_ref")?,
            };
            Ok((parse_key(k)?, m))
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    Ok(CaseMetrics {
        reference_file: file("reference_file")?,
        prediction_file: file("prediction_file")?,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_python_str() {
        assert_eq!(LabelOrRegion::Label(3).key(), "3");
        assert_eq!(LabelOrRegion::Region(vec![3]).key(), "(3,)");
        assert_eq!(LabelOrRegion::Region(vec![1, 2, 3]).key(), "(1, 2, 3)");
        for key in ["3", "(3,)", "(1, 2, 3)", "-1"] {
            assert_eq!(LabelOrRegion::from_key(key).unwrap().key(), key);
        }
        assert_eq!(LabelOrRegion::from_key("(a, 1)"), None);
    }

    #[test]
    fn pairwise_sum_blocks() {
        // 1e16 + 1 + 1 + ... loses the ones summed one by one but not pairwise in blocks of 8.
        let mut v = vec![1.0; 200];
        v[0] = 1e16;
        let sequential: f64 = v.iter().sum();
        assert_eq!(sequential, 1e16);
        assert!(numpy_sum(&v) > 1e16);
    }
}
