//! The checkpoints of a model folder: checkpoint names, the folds that have a checkpoint, and the
//! choice of folds to predict with.

use std::path::Path;

use nnunet_core::error::{Error, Result};
use nnunet_training::splits::Fold;

/// A checkpoint name as given (`checkpoint_final`, nnU-Net's `checkpoint_final.pth`, or
/// `checkpoint_final.safetensors`) turned into the file name nnunet-rs writes.
pub fn checkpoint_file_name(name: &str) -> Result<String> {
    let stem = name
        .strip_suffix(".pth")
        .or_else(|| name.strip_suffix(".safetensors"))
        .unwrap_or(name);
    if stem.is_empty() || stem.contains(['/', '\\']) || stem.starts_with('.') {
        return Err(Error::inference(format!(
            "checkpoint name '{name}' must be a file name such as checkpoint_final, \
             checkpoint_best or checkpoint_latest"
        )));
    }
    Ok(format!("{stem}.safetensors"))
}

/// The folds of `model_folder` that have the checkpoint `checkpoint_name` (numbered folds in
/// order, then `all`).
pub fn available_folds(model_folder: &Path, checkpoint_name: &str) -> Result<Vec<Fold>> {
    let file = checkpoint_file_name(checkpoint_name)?;
    let entries = std::fs::read_dir(model_folder).map_err(|e| Error::io(model_folder, e))?;
    let mut folds = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(model_folder, e))?;
        let name = entry.file_name();
        let Some(fold) = name
            .to_str()
            .and_then(|n| n.strip_prefix("fold_"))
            .and_then(|f| Fold::parse(f).ok())
        else {
            continue;
        };
        if entry.path().join(&file).is_file() {
            folds.push(fold);
        }
    }
    folds.sort_by_key(|f| match f {
        Fold::Index(i) => (0, *i),
        Fold::All => (1, 0),
    });
    Ok(folds)
}

/// For a missing `checkpoint_final`: the folds (of `missing`, or any when empty) whose training
/// has not finished but has a `checkpoint_best`, and how to predict with it.
fn unfinished_hint(model_folder: &Path, checkpoint_file: &str, missing: &[Fold]) -> Result<String> {
    if checkpoint_file != "checkpoint_final.safetensors" {
        return Ok(String::new());
    }
    let best: Vec<Fold> = available_folds(model_folder, "checkpoint_best")?
        .into_iter()
        .filter(|f| missing.is_empty() || missing.contains(f))
        .collect();
    if best.is_empty() {
        return Ok(String::new());
    }
    Ok(format!(
        ". The training of fold(s) {} has not finished, but they have checkpoint_best: predict \
         with -chk checkpoint_best, or finish the training with `nnunet train … --c`",
        fold_list(&best)
    ))
}

/// The folds as a comma-separated list (`none` when empty).
fn fold_list(folds: &[Fold]) -> String {
    if folds.is_empty() {
        "none".to_string()
    } else {
        folds
            .iter()
            .map(Fold::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The folds to predict with: `requested`, or every fold with `checkpoint_file` when none are
/// requested. A requested fold without the checkpoint, no fold with it, or a fold listed twice is
/// an error saying which folds have it.
pub(super) fn select_folds(
    model_folder: &Path,
    requested: &[Fold],
    checkpoint_name: &str,
    checkpoint_file: &str,
) -> Result<Vec<Fold>> {
    let present = available_folds(model_folder, checkpoint_name)?;
    let folds: Vec<Fold> = if requested.is_empty() {
        if present.is_empty() {
            return Err(Error::inference_file(
                model_folder,
                format!(
                    "no fold_N folder has {checkpoint_file}; train a fold first{}",
                    unfinished_hint(model_folder, checkpoint_file, &[])?
                ),
            ));
        }
        present.clone()
    } else {
        requested.to_vec()
    };
    let missing: Vec<Fold> = folds
        .iter()
        .copied()
        .filter(|f| !present.contains(f))
        .collect();
    if !missing.is_empty() {
        return Err(Error::inference_file(
            model_folder,
            format!(
                "fold(s) {} have no {checkpoint_file}; folds with {checkpoint_file}: {} \
                 (choose them with -f){}",
                fold_list(&missing),
                fold_list(&present),
                unfinished_hint(model_folder, checkpoint_file, &missing)?
            ),
        ));
    }
    for (i, fold) in folds.iter().enumerate() {
        if folds[..i].contains(fold) {
            return Err(Error::inference(format!("fold {fold} is listed twice")));
        }
    }
    Ok(folds)
}
