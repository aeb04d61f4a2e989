//! Ensembling: the average of several models' class probabilities for the same cases, as
//! nnU-Net v2.8.1's `ensemble_folders` and `ensemble_crossvalidations`.
//!
//! Every case's `<case>.npz` (key `probabilities`, `[classes, z, y, x]` float32) is read from each
//! input, summed in float32 in the order the inputs are given and divided by their number; the
//! average becomes a segmentation with the dataset's label handling (argmax, or regions above 0.5
//! in `regions_class_order`) and is written by the dataset's reader with the geometry in the
//! `<case>.json` next to the first input's `.npz`. With `save_probabilities`, the average and the
//! properties are written too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ndarray::Array4;

use nnunet_core::error::{Error, Result};
use nnunet_core::io::Reader;
use nnunet_core::parallel::try_map_ordered;
use nnunet_inference::export::{LabelHandling, read_probabilities_npz, write_probabilities_npz};
use nnunet_preprocessing::storage::read_properties;

/// One ensembled case: the `.npz` of every member and where the result goes (without ending).
#[derive(Clone, Debug)]
pub struct EnsembleCase {
    /// The members' `<case>.npz`; the properties are read from the `.json` next to the first.
    pub npz_files: Vec<PathBuf>,
    /// The output path without its ending (`OUT/<case>`).
    pub output_truncated: PathBuf,
}

/// `path` with its `.npz` replaced by `suffix`.
fn sibling(npz: &Path, suffix: &str) -> PathBuf {
    let s = npz.to_string_lossy();
    PathBuf::from(format!("{}{suffix}", s.strip_suffix(".npz").unwrap_or(&s)))
}

/// The mean of the members' probabilities (float32, summed in the given order).
pub fn average_probabilities(files: &[PathBuf]) -> Result<Array4<f32>> {
    let (first, rest) = files
        .split_first()
        .ok_or_else(|| Error::evaluation("ensembling needs at least one .npz file"))?;
    let mut sum = read_probabilities_npz(first)?;
    for f in rest {
        let p = read_probabilities_npz(f)?;
        if p.shape() != sum.shape() {
            return Err(Error::evaluation_file(
                f,
                format!(
                    "probabilities of shape {:?}, but {} has {:?}",
                    p.shape(),
                    first.display(),
                    sum.shape()
                ),
            ));
        }
        sum += &p;
    }
    let n = files.len() as f32;
    sum.mapv_inplace(|v| v / n);
    Ok(sum)
}

/// Ensembles one case: averages, converts with `labels`, writes `<output><file_ending>` with
/// `reader` (and `<output>.npz` + `<output>.json` when `save_probabilities`).
pub fn merge_case(
    case: &EnsembleCase,
    labels: &LabelHandling,
    reader: &dyn Reader,
    file_ending: &str,
    save_probabilities: bool,
) -> Result<PathBuf> {
    let first = case
        .npz_files
        .first()
        .ok_or_else(|| Error::evaluation("ensembling needs at least one .npz file"))?;
    let properties_file = sibling(first, ".json");
    if !properties_file.is_file() {
        return Err(Error::evaluation_file(
            first,
            format!(
                "the case's properties {} are missing (predictions written with --npz / \
                 --save_probabilities have them)",
                properties_file.display()
            ),
        ));
    }
    let properties = read_properties(&properties_file)?;
    let probabilities = average_probabilities(&case.npz_files)?;
    if probabilities.shape()[0] != labels.num_heads() {
        return Err(Error::evaluation_file(
            first,
            format!(
                "{} probability channels, but the dataset's labels need {}",
                probabilities.shape()[0],
                labels.num_heads()
            ),
        ));
    }
    let seg = labels.probabilities_to_segmentation(probabilities.view());
    if let Some(parent) = case.output_truncated.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let out = PathBuf::from(format!(
        "{}{file_ending}",
        case.output_truncated.to_string_lossy()
    ));
    reader.write_segmentation(seg.view(), &out, &properties.image)?;
    if save_probabilities {
        let npz = PathBuf::from(format!("{}.npz", case.output_truncated.to_string_lossy()));
        write_probabilities_npz(&npz, probabilities.view())?;
        let json = PathBuf::from(format!("{}.json", case.output_truncated.to_string_lossy()));
        std::fs::copy(&properties_file, &json).map_err(|e| Error::io(&json, e))?;
    }
    Ok(out)
}

/// Ensembles every case on `num_processes` threads; `progress` is called once per case.
pub fn merge_cases(
    cases: &[EnsembleCase],
    labels: &LabelHandling,
    reader: &dyn Reader,
    file_ending: &str,
    save_probabilities: bool,
    num_processes: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(num_processes)
        .build()
        .map_err(|e| Error::evaluation(format!("cannot start {num_processes} threads: {e}")))?;
    pool.install(|| {
        try_map_ordered(cases, |case| {
            merge_case(case, labels, reader, file_ending, save_probabilities)?;
            progress();
            Ok(())
        })
    })?;
    Ok(())
}

/// The `.npz` file names in `folder`, sorted.
pub fn npz_files(folder: &Path) -> Result<BTreeSet<String>> {
    if !folder.is_dir() {
        return Err(Error::evaluation_file(folder, "no such folder"));
    }
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(folder).map_err(|e| Error::io(folder, e))? {
        let entry = entry.map_err(|e| Error::io(folder, e))?;
        if let Ok(name) = entry.file_name().into_string()
            && name.ends_with(".npz")
            && entry.path().is_file()
        {
            out.insert(name);
        }
    }
    Ok(out)
}

/// The cases to ensemble from folders of predictions (as nnU-Net's `ensemble_folders`): every
/// folder must hold the same `.npz` files; an error names the folder and what it lacks.
pub fn cases_from_folders(inputs: &[PathBuf], output: &Path) -> Result<Vec<EnsembleCase>> {
    if inputs.is_empty() {
        return Err(Error::evaluation("give at least one folder to ensemble"));
    }
    let per_folder = inputs
        .iter()
        .map(|f| npz_files(f))
        .collect::<Result<Vec<_>>>()?;
    let all: BTreeSet<String> = per_folder.iter().flatten().cloned().collect();
    if all.is_empty() {
        return Err(Error::evaluation_file(
            &inputs[0],
            "no probabilities (.npz files) to ensemble; predict with --save_probabilities (or \
             train with --npz)",
        ));
    }
    for (folder, files) in inputs.iter().zip(&per_folder) {
        let missing: Vec<&String> = all.difference(files).collect();
        if !missing.is_empty() {
            return Err(Error::evaluation_file(
                folder,
                format!(
                    "{} case(s) that other folders have are missing here: {} (every folder \
                     must hold the probabilities of the same cases)",
                    missing.len(),
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(all
        .iter()
        .map(|name| EnsembleCase {
            npz_files: inputs.iter().map(|f| f.join(name)).collect(),
            output_truncated: output.join(name.trim_end_matches(".npz")),
        })
        .collect())
}

/// The cases to ensemble from the cross-validation of trained models (as nnU-Net's
/// `ensemble_crossvalidations`): each model's `fold_N/validation/*.npz` for the `folds`; every
/// model must have every case once.
pub fn cases_from_crossvalidation(
    model_folders: &[PathBuf],
    folds: &[u32],
    output: &Path,
) -> Result<Vec<EnsembleCase>> {
    let mut mappings: Vec<std::collections::BTreeMap<String, PathBuf>> = Vec::new();
    for model in model_folders {
        let mut mapping = std::collections::BTreeMap::new();
        for fold in folds {
            let validation = model.join(format!("fold_{fold}")).join("validation");
            if !validation.is_dir() {
                return Err(Error::evaluation_file(
                    &validation,
                    format!(
                        "fold {fold} of this model is missing; train every requested fold \
                         (with --npz)"
                    ),
                ));
            }
            let files = npz_files(&validation)?;
            if files.is_empty() {
                return Err(Error::evaluation_file(
                    &validation,
                    "no .npz files; rerun the validation with --npz (nnunet train ... --val --npz)",
                ));
            }
            for name in files {
                if mapping.contains_key(&name) {
                    return Err(Error::evaluation_file(
                        &validation,
                        format!("case {name} is in more than one fold of this model"),
                    ));
                }
                mapping.insert(name.clone(), validation.join(&name));
            }
        }
        mappings.push(mapping);
    }
    let all: BTreeSet<String> = mappings.iter().flat_map(|m| m.keys().cloned()).collect();
    for (model, mapping) in model_folders.iter().zip(&mappings) {
        let missing: Vec<&str> = all
            .iter()
            .filter(|n| !mapping.contains_key(*n))
            .map(|s| s.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(Error::evaluation_file(
                model,
                format!(
                    "the cross-validation of this model lacks predictions that the other models \
                     have: {}",
                    missing.join(", ")
                ),
            ));
        }
    }
    Ok(all
        .iter()
        .map(|name| EnsembleCase {
            npz_files: mappings.iter().map(|m| m[name].clone()).collect(),
            output_truncated: output.join(name.trim_end_matches(".npz")),
        })
        .collect())
}
