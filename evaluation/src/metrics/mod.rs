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

use std::path::PathBuf;

use ndarray::{ArrayView, Dimension, Zip};

use nnunet_core::error::{Error, Result};
pub use nnunet_dataset::LabelOrRegion;
use nnunet_dataset::Labels;

mod case;
mod folders;
mod summary;

pub use case::{EvaluationCase, Scoring, ValueCheck, evaluate_case, read_label_map};
pub use folders::{
    FolderEvaluation, evaluate_dataset_folder, evaluate_folders, evaluate_pairs, pair_files,
    with_rois,
};
pub(crate) use folders::{files_with_ending, require_folder};
pub use nnunet_core::compat::statistics::numpy_sum;
pub use summary::Summary;

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
    labels.foreground_classes()
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

    /// The metrics as floats, in the order of [`METRIC_NAMES`].
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
    /// Mean Dice.
    pub dice: f64,
    /// Mean IoU.
    pub iou: f64,
    /// Mean true positives.
    pub tp: f64,
    /// Mean false positives.
    pub fp: f64,
    /// Mean false negatives.
    pub fn_: f64,
    /// Mean true negatives.
    pub tn: f64,
    /// Mean voxels in the prediction's mask.
    pub n_pred: f64,
    /// Mean voxels in the reference's mask.
    pub n_ref: f64,
}

impl MeanMetrics {
    /// The means from floats in the order of [`METRIC_NAMES`].
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

    /// The means as floats, in the order of [`METRIC_NAMES`].
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
        return Err(Error::evaluation(format!(
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

#[cfg(test)]
mod tests;
