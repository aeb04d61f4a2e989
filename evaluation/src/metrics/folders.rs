//! Pairing the files of prediction and reference folders and evaluating the pairs.

use std::path::Path;

use nnunet_core::error::{Error, Result};
use nnunet_core::io::{Reader, required_file};
use nnunet_core::parallel::try_map_ordered;

use nnunet_dataset::DatasetJson;

use super::{EvaluationCase, LabelOrRegion, Scoring, Summary, evaluate_case, evaluation_targets};

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
    require_folder(reference_folder, "the reference segmentations")?;
    require_folder(prediction_folder, "the predicted segmentations")?;
    let predictions = files_with_ending(prediction_folder, file_ending)?;
    if !chill {
        require_every_prediction(
            reference_folder,
            prediction_folder,
            file_ending,
            reference_suffix,
        )?;
    }
    if predictions.is_empty() {
        return Err(Error::evaluation_file(
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
            return Err(Error::evaluation_file(
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
        return Err(Error::evaluation_file(
            prediction_folder,
            format!(
                "no prediction has a reference in {}",
                reference_folder.display()
            ),
        ));
    }
    Ok(cases)
}

/// Fails unless every reference file (with `reference_suffix` before `file_ending`) of
/// `reference_folder` has its prediction in `prediction_folder`; the error lists the missing ones.
fn require_every_prediction(
    reference_folder: &Path,
    prediction_folder: &Path,
    file_ending: &str,
    reference_suffix: &str,
) -> Result<()> {
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
        return Err(Error::evaluation_file(
            prediction_folder,
            format!(
                "{} of the reference files have no prediction here: {} \
                 (pass --chill to evaluate only the cases that have one)",
                missing.len(),
                missing.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Gives every case its region of interest `roi_folder/<prediction name with roi_suffix>`; a
/// missing file is an error naming it.
pub fn with_rois(
    cases: Vec<EvaluationCase>,
    roi_folder: &Path,
    roi_suffix: &str,
    file_ending: &str,
) -> Result<Vec<EvaluationCase>> {
    require_folder(roi_folder, "the regions of interest")?;
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
        return Err(Error::evaluation("no cases to evaluate"));
    }
    if scoring.regions.is_empty() {
        return Err(Error::evaluation(
            "no labels or regions to evaluate (give at least one)",
        ));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(num_processes)
        .build()
        .map_err(|e| Error::evaluation(format!("cannot start {num_processes} threads: {e}")))?;
    let scored = pool.install(|| {
        try_map_ordered(cases, |case| {
            let scored = evaluate_case(case, reader, scoring);
            progress();
            scored
        })
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

/// Evaluates the predictions in `folder` against `reference` on what nnU-Net evaluates for
/// `dataset_json` ([`evaluation_targets`], its ignore label left out), only the cases that have a
/// prediction, and writes `folder/summary.json`.
pub fn evaluate_dataset_folder(
    reference: &Path,
    folder: &Path,
    dataset_json: &DatasetJson,
    reader: &dyn Reader,
    num_processes: usize,
) -> Result<Summary> {
    let targets = evaluation_targets(&dataset_json.labels);
    let summary = evaluate_folders(
        &FolderEvaluation {
            reference_folder: reference,
            prediction_folder: folder,
            file_ending: &dataset_json.file_ending,
            regions: &targets,
            ignore_label: dataset_json.labels.ignore_label(),
            num_processes,
            chill: true,
        },
        reader,
    )?;
    summary.write_json(&folder.join("summary.json"))?;
    Ok(summary)
}

/// Nothing if `folder` is a folder, else an error naming it: `no such folder (<what>)`.
pub(crate) fn require_folder(folder: &Path, what: &str) -> Result<()> {
    if folder.is_dir() {
        return Ok(());
    }
    let reason = format!("no such folder ({what})");
    Err(Error::evaluation_file(folder, reason))
}
