//! Sharing trained models as ZIP files, as nnU-Net v2's `nnUNetv2_export_model_to_zip` and
//! `nnUNetv2_install_pretrained_model_from_zip`.
//!
//! [`export_model`] packs, for each configuration, the model folder's `plans.json`,
//! `dataset.json` and `dataset_fingerprint.json`, and per fold the chosen checkpoints, the
//! validation `summary.json` and `debug.json` / `progress.png` when present; then the
//! cross-validation summaries and postprocessing of those folds, the ensembles made only of the
//! exported models and the dataset's `inference_information.{json,txt}`. Entry names are the
//! paths relative to `nnUNet_results` (`Dataset001_X/Trainer__Plans__2d/fold_0/...`).
//!
//! [`install_model`] extracts such a file into `nnUNet_results`. Every entry is checked before
//! anything is written: a relative path of plain names (no absolute path, drive letter,
//! backslash, `.` or `..` component, NUL), no symbolic link, no entry listed twice, no existing
//! symbolic link on the way to its destination, and no existing file in the way unless `force`
//! is given. Each file is written under a temporary name and renamed.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use zip::ZipArchive;
use zip::write::SimpleFileOptions;

use crate::predictor::checkpoint_file_name;
use nnunet_core::error::{Error, Result};
use nnunet_core::paths::TrainedModel;

/// What to put into a model ZIP file (`nnunet export-model`).
#[derive(Clone, Debug)]
pub struct ExportRequest {
    /// The `nnUNet_results` folder.
    pub results_folder: PathBuf,
    /// The dataset's folder name (`Dataset001_Name`).
    pub dataset_name: String,
    /// Configurations to export (`2d`, `3d_fullres`, ...).
    pub configurations: Vec<String>,
    /// The trainer whose models are exported.
    pub trainer: String,
    /// The plans identifier of the models.
    pub plans_identifier: String,
    /// Folds as nnU-Net names them (`0`..`4`, `all`).
    pub folds: Vec<String>,
    /// Checkpoint names (`checkpoint_final`, `checkpoint_best`, with or without ending).
    pub checkpoints: Vec<String>,
    /// A configuration without a trained model folder is an error (otherwise skipped).
    pub strict: bool,
}

/// The ZIP entry name of `path`, relative to `base`, with `/` separators.
fn entry_name(base: &Path, path: &Path) -> Result<String> {
    let relative = path.strip_prefix(base).map_err(|_| {
        Error::inference(format!(
            "{} is not inside {}",
            path.display(),
            base.display()
        ))
    })?;
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Ok(parts.join("/"))
}

/// `folds_tuple_to_string`: the folds joined by `_`.
fn folds_string(folds: &[String]) -> String {
    folds.join("_")
}

/// The files of an export, gathered in order for one request.
struct ExportFiles<'a> {
    request: &'a ExportRequest,
    /// The file names of the requested checkpoints (`checkpoint_final.safetensors`, …).
    checkpoint_files: Vec<String>,
    files: Vec<PathBuf>,
}

impl ExportFiles<'_> {
    /// Appends each of `names` inside `folder` that is a file, in order.
    fn push_existing(&mut self, folder: &Path, names: &[&str]) {
        for name in names {
            let p = folder.join(name);
            if p.is_file() {
                self.files.push(p);
            }
        }
    }

    /// Appends the files of fold `fold` of a model (in `fold_folder`): `debug.json`, the chosen
    /// checkpoints (each required), the progress plot, the architecture and the validation
    /// summary.
    fn push_fold(&mut self, fold_folder: &Path, fold: &str) -> Result<()> {
        if !fold_folder.is_dir() {
            return Err(Error::inference_file(
                fold_folder,
                format!("fold {fold} was asked for but is not trained"),
            ));
        }
        self.push_existing(fold_folder, &["debug.json"]);
        for checkpoint in &self.checkpoint_files {
            let p = fold_folder.join(checkpoint);
            if !p.is_file() {
                return Err(Error::inference_file(
                    &p,
                    "missing; choose the checkpoints that exist with -chk",
                ));
            }
            self.files.push(p);
        }
        let fold_extras = [
            "progress.png",
            "network_architecture.pdf",
            "validation/summary.json",
        ];
        self.push_existing(fold_folder, &fold_extras);
        Ok(())
    }

    /// Appends the files of the trained model folder `model`: its requested folds, the
    /// cross-validation summary and postprocessing of those folds, and its plans and dataset
    /// files.
    fn push_model(&mut self, model: &Path) -> Result<()> {
        for required in ["plans.json", "dataset.json"] {
            if !model.join(required).is_file() {
                return Err(Error::inference_file(
                    model.join(required),
                    "missing; a trained model folder has it",
                ));
            }
        }
        let request = self.request;
        for fold in &request.folds {
            self.push_fold(&model.join(format!("fold_{fold}")), fold)?;
        }
        let crossval = format!("crossval_results_folds_{}", folds_string(&request.folds));
        self.push_existing(&model.join(crossval), &SUMMARY_FILES);
        let model_files = ["plans.json", "dataset_fingerprint.json", "dataset.json"];
        self.push_existing(model, &model_files);
        Ok(())
    }

    /// Appends the summaries and postprocessing of the ensembles in `ensembles` whose members are
    /// all exported models (the request's trainer and plans in `exported`, the configurations).
    fn push_ensembles(&mut self, ensembles: &Path, exported: &[String]) -> Result<()> {
        let mut names: Vec<String> = std::fs::read_dir(ensembles)
            .map_err(|e| Error::io(ensembles, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            if self.ensemble_is_exported(&name, exported) {
                self.push_existing(&ensembles.join(&name), &SUMMARY_FILES);
            }
        }
        Ok(())
    }

    /// Whether `name` is an ensemble (`ensemble___A___B___folds`) of exported models only.
    fn ensemble_is_exported(&self, name: &str, exported: &[String]) -> bool {
        let Some(rest) = name.strip_prefix("ensemble___") else {
            return false;
        };
        let parts: Vec<&str> = rest.split("___").collect();
        if parts.len() < 2 {
            return false;
        }
        parts[..parts.len() - 1].iter().all(|m| {
            let fields: Vec<&str> = m.split("__").collect();
            fields.len() == 3
                && fields[0] == self.request.trainer
                && fields[1] == self.request.plans_identifier
                && exported.iter().any(|c| c == fields[2])
        })
    }
}

/// The summary and postprocessing files of cross-validation results and ensembles.
const SUMMARY_FILES: [&str; 3] = ["summary.json", "postprocessing.pkl", "postprocessing.json"];

/// The files [`export_model`] packs, in order (paths inside `request.results_folder`).
pub fn files_to_export(request: &ExportRequest) -> Result<Vec<PathBuf>> {
    let dataset_folder = request.results_folder.join(&request.dataset_name);
    let checkpoint_files = request
        .checkpoints
        .iter()
        .map(|c| checkpoint_file_name(c))
        .collect::<Result<Vec<_>>>()?;
    let mut export = ExportFiles {
        request,
        checkpoint_files,
        files: Vec::new(),
    };
    let mut exported_configurations = Vec::new();
    for configuration in &request.configurations {
        let model = dataset_folder.join(
            TrainedModel::new(&request.trainer, &request.plans_identifier, configuration)
                .identifier(),
        );
        if !model.is_dir() {
            if request.strict {
                return Err(Error::inference_file(
                    &model,
                    format!(
                        "no trained model of configuration '{configuration}' (trainer {}, plans \
                         {})",
                        request.trainer, request.plans_identifier
                    ),
                ));
            }
            continue;
        }
        exported_configurations.push(configuration.clone());
        export.push_model(&model)?;
    }
    let ensembles = dataset_folder.join("ensembles");
    if ensembles.is_dir() {
        export.push_ensembles(&ensembles, &exported_configurations)?;
    }
    let information = ["inference_information.json", "inference_information.txt"];
    export.push_existing(&dataset_folder, &information);
    if exported_configurations.is_empty() {
        return Err(Error::inference_file(
            &dataset_folder,
            format!(
                "has no trained model of trainer {} and plans {} in any of the configurations {}",
                request.trainer,
                request.plans_identifier,
                request.configurations.join(", ")
            ),
        ));
    }
    Ok(export.files)
}

/// Writes the model ZIP file `output` (see the module documentation); returns the entry names.
/// The file is written under a temporary name and renamed when complete.
pub fn export_model(request: &ExportRequest, output: &Path) -> Result<Vec<String>> {
    let files = files_to_export(request)?;
    let mut names = Vec::with_capacity(files.len());
    let temporary = output.with_extension("zip.partial");
    let result = (|| -> Result<()> {
        let file = File::create(&temporary).map_err(|e| Error::io(&temporary, e))?;
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
        for path in &files {
            let name = entry_name(&request.results_folder, path)?;
            let size = std::fs::metadata(path)
                .map_err(|e| Error::io(path, e))?
                .len();
            let options = SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(size >= u32::MAX as u64);
            zip.start_file(name.as_str(), options)
                .map_err(|e| Error::inference_file(output, format!("cannot add {name}: {e}")))?;
            let mut input = File::open(path).map_err(|e| Error::io(path, e))?;
            std::io::copy(&mut input, &mut zip).map_err(|e| Error::io(output, e))?;
            names.push(name);
        }
        let mut inner = zip.finish().map_err(|e| {
            Error::inference_file(output, format!("cannot finish the ZIP file: {e}"))
        })?;
        inner.flush().map_err(|e| Error::io(output, e))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    std::fs::rename(&temporary, output).map_err(|e| Error::io(output, e))?;
    Ok(names)
}

/// Why a ZIP entry name is not a safe relative path, or `None` when it is.
fn unsafe_entry_reason(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it has an empty name");
    }
    if name.contains('\0') {
        return Some("its name contains a NUL byte");
    }
    if name.contains('\\') {
        return Some("its name contains a backslash");
    }
    if name.starts_with('/') {
        return Some("it is an absolute path");
    }
    if name.len() >= 2 && name.as_bytes()[1] == b':' {
        return Some("it starts with a drive letter");
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    for part in trimmed.split('/') {
        match part {
            "" => return Some("its name has an empty path component"),
            "." => return Some("its name has a '.' component"),
            ".." => {
                return Some("its name has a '..' component (it would leave the target folder)");
            }
            _ => {}
        }
    }
    let path = Path::new(trimmed);
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Some("it is not a plain relative path");
    }
    None
}

/// One checked entry of a model ZIP file.
struct PlannedEntry {
    index: usize,
    name: String,
    target: PathBuf,
    is_dir: bool,
}

/// The first existing part of `target` below `root` that is a symbolic link (`root` itself is the
/// user's choice and may be one).
fn symlink_on_the_way(root: &Path, target: &Path) -> Option<PathBuf> {
    let relative = target.strip_prefix(root).ok()?;
    let mut current = root.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match current.symlink_metadata() {
            Ok(m) if m.file_type().is_symlink() => return Some(current),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// A model ZIP file opened for reading.
type ModelArchive = ZipArchive<std::io::BufReader<File>>;

/// Checks entry `index` of `archive` (see the module documentation) and plans where it goes in
/// `results_folder`; `seen` collects the entry names and refuses one listed twice.
fn plan_entry(
    archive: &mut ModelArchive,
    index: usize,
    zip_path: &Path,
    results_folder: &Path,
    force: bool,
    seen: &mut BTreeSet<String>,
) -> Result<PlannedEntry> {
    let entry = archive
        .by_index(index)
        .map_err(|e| Error::inference_file(zip_path, format!("cannot read entry {index}: {e}")))?;
    let name = entry
        .name()
        .map_err(|e| {
            Error::inference_file(
                zip_path,
                format!("entry {index} has an unreadable name: {e}"),
            )
        })?
        .into_owned();
    let refuse = |reason: &str| {
        Error::inference_file(
            zip_path,
            format!("entry '{name}' is refused: {reason}; nothing was installed"),
        )
    };
    if let Some(reason) = unsafe_entry_reason(&name) {
        return Err(refuse(reason));
    }
    if entry.is_symlink() {
        return Err(refuse("it is a symbolic link"));
    }
    if entry.enclosed_name().is_none() {
        return Err(refuse("it would leave the target folder"));
    }
    let is_dir = entry.is_dir();
    let trimmed = name.trim_end_matches('/').to_string();
    if !seen.insert(trimmed.clone()) {
        return Err(refuse("the ZIP file lists it twice"));
    }
    let target = results_folder.join(&trimmed);
    if let Some(link) = symlink_on_the_way(results_folder, &target) {
        return Err(refuse(&format!(
            "{} is a symbolic link on the way to its destination",
            link.display()
        )));
    }
    if !is_dir {
        match target.symlink_metadata() {
            Ok(m) if m.is_dir() => {
                return Err(refuse(&format!(
                    "{} exists and is a folder",
                    target.display()
                )));
            }
            Ok(_) if !force => {
                return Err(refuse(&format!(
                    "{} exists (install with --force to replace it)",
                    target.display()
                )));
            }
            _ => {}
        }
    }
    Ok(PlannedEntry {
        index,
        name: trimmed,
        target,
        is_dir,
    })
}

/// Writes the file entry `entry` of `archive` to its target, under a temporary name that is
/// renamed when complete (and removed on failure).
fn extract_entry(archive: &mut ModelArchive, entry: &PlannedEntry, zip_path: &Path) -> Result<()> {
    if let Some(parent) = entry.target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let mut source = archive.by_index(entry.index).map_err(|e| {
        Error::inference_file(zip_path, format!("cannot read entry '{}': {e}", entry.name))
    })?;
    let mut temporary = entry.target.clone().into_os_string();
    temporary.push(".installing");
    let temporary = PathBuf::from(temporary);
    let result = (|| -> Result<()> {
        let mut out = File::create(&temporary).map_err(|e| Error::io(&temporary, e))?;
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = source.read(&mut buffer).map_err(|e| {
                Error::inference_file(
                    zip_path,
                    format!("entry '{}' cannot be decompressed: {e}", entry.name),
                )
            })?;
            if n == 0 {
                break;
            }
            out.write_all(&buffer[..n])
                .map_err(|e| Error::io(&temporary, e))?;
        }
        out.flush().map_err(|e| Error::io(&temporary, e))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    std::fs::rename(&temporary, &entry.target).map_err(|e| Error::io(&entry.target, e))
}

/// Extracts the model ZIP file `zip_path` into `results_folder` (see the module documentation);
/// returns the files written. Nothing is written if any entry is refused.
pub fn install_model(zip_path: &Path, results_folder: &Path, force: bool) -> Result<Vec<PathBuf>> {
    let file = File::open(zip_path).map_err(|e| Error::io(zip_path, e))?;
    let mut archive = ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| Error::inference_file(zip_path, format!("not a readable ZIP file: {e}")))?;
    let mut planned = Vec::with_capacity(archive.len());
    let mut seen = BTreeSet::new();
    for index in 0..archive.len() {
        planned.push(plan_entry(
            &mut archive,
            index,
            zip_path,
            results_folder,
            force,
            &mut seen,
        )?);
    }
    // A file entry may not be the parent folder of another entry.
    for entry in planned.iter().filter(|e| !e.is_dir) {
        let prefix = format!("{}/", entry.name);
        if seen.iter().any(|other| other.starts_with(&prefix)) {
            return Err(Error::inference_file(
                zip_path,
                format!(
                    "entry '{}' is a file and also the folder of other entries; nothing was \
                     installed",
                    entry.name
                ),
            ));
        }
    }

    let mut written = Vec::new();
    for entry in planned {
        if entry.is_dir {
            std::fs::create_dir_all(&entry.target).map_err(|e| Error::io(&entry.target, e))?;
            continue;
        }
        extract_entry(&mut archive, &entry, zip_path)?;
        written.push(entry.target);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::unsafe_entry_reason;

    #[test]
    fn entry_names_are_checked() {
        for ok in ["Dataset001_X/plans.json", "a/b/", "a/b/c.safetensors"] {
            assert_eq!(unsafe_entry_reason(ok), None, "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../evil",
            "a/../../evil",
            "a/./b",
            "a//b",
            "C:/x",
            "a\\..\\b",
            "a\0b",
        ] {
            assert!(unsafe_entry_reason(bad).is_some(), "{bad:?}");
        }
    }
}
