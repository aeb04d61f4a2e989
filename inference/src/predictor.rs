//! Prediction with a trained model, as nnU-Net v2.8.1's `nnUNetPredictor`: a model folder
//! (`Trainer__Plans__configuration` with `plans.json`, `dataset.json` and `fold_N/<checkpoint>`)
//! is loaded once, and cases are predicted from files, from an in-memory [`Image`] or from a plain
//! array with a spacing.
//!
//! Every case goes the way of training and validation: [`preprocess_case`] with the plans'
//! configuration, [`predict_sliding_window`] (Gaussian weighting, mirroring over the checkpoint's
//! inference axes unless switched off) with every fold's network, the folds' logits summed and
//! divided by their number (as the reference), and [`logits_to_segmentation_in_input_geometry`]
//! (resampling, uncropping, untransposing) back to the input's geometry.
//!
//! [`Predictor::predict_from_files`] overlaps the work as the reference's worker pools do, with
//! threads and bounded channels: while the network predicts one case, the next case is read and
//! preprocessed on one thread and the previous case is exported and written on another, so that at
//! most three cases are in memory. A segmentation file is written under a temporary name and
//! renamed when complete, so an existing output is always a whole one.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use burn::tensor::Device;
use ndarray::{Array4, ArrayView4, Axis};

use crate::cascade::{append_one_hot, cascade_labels, network_input_channels};
use crate::export::{
    ExportSettings, ExportedPrediction, LabelHandling, logits_to_segmentation_in_input_geometry,
    restrict_to_roi, visible_labels, with_suffix, write_probabilities_and_properties,
};
use crate::model::network_from_checkpoint;
use crate::sliding_window::{SlidingWindowSettings, predict_sliding_window};
use nnunet_core::error::{Error, Result};
use nnunet_core::io::{Image, ImageProperties, Reader, Segmentation, required_file};
use nnunet_core::network::{Network, NetworkSpec};
use nnunet_core::registry::Registries;
use nnunet_dataset::{DatasetJson, choose_reader};
use nnunet_preprocessing::plans::{Configuration, Plans};
use nnunet_preprocessing::storage::CaseProperties;
use nnunet_preprocessing::{CaseSettings, PreprocessedCase, preprocess_case};
use nnunet_training::NormKind;
use nnunet_training::checkpoint::Checkpoint;
use nnunet_training::splits::Fold;

/// How a [`Predictor`] predicts (nnU-Net's `nnUNetPredictor` arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct PredictorSettings {
    /// Sliding-window step as a fraction of the patch size, in `(0, 1]` (nnU-Net: 0.5).
    pub step_size: f64,
    /// Weight tiles with the Gaussian importance map (nnU-Net: yes).
    pub use_gaussian: bool,
    /// Test-time mirroring over the checkpoint's inference axes (`--disable_tta` switches it off).
    pub use_mirroring: bool,
    /// Tiles per forward pass; `None` chooses by patch size.
    pub tiles_per_batch: Option<usize>,
}

impl Default for PredictorSettings {
    fn default() -> Self {
        PredictorSettings {
            step_size: 0.5,
            use_gaussian: true,
            use_mirroring: true,
            tiles_per_batch: None,
        }
    }
}

/// One case to predict from files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseInput {
    /// The case identifier (file name without the channel index and ending).
    pub identifier: String,
    /// One file per channel, in channel order.
    pub files: Vec<PathBuf>,
    /// The output path without the file ending (`OUT/<case>`).
    pub output_truncated: PathBuf,
    /// Cascade stage: the previous stage's prediction of the case (a label map in the input's
    /// geometry, as `nnunet predict` wrote it); see [`with_previous_stage`].
    pub previous_stage: Option<PathBuf>,
    /// The case's region of interest (a label map in the input's geometry, nonzero inside):
    /// everything outside it is written as background; see [`with_regions_of_interest`].
    pub roi: Option<PathBuf>,
}

/// `folder/<case><file_ending>` of every case, each of which must exist; `what(case)` says what
/// the file is, for the error naming a missing one.
fn case_files(
    cases: &[CaseInput],
    folder: &Path,
    file_ending: &str,
    what: &dyn Fn(&str) -> String,
) -> Result<Vec<PathBuf>> {
    cases
        .iter()
        .map(|case| {
            required_file(
                folder.join(format!("{}{file_ending}", case.identifier)),
                || what(&case.identifier),
            )
        })
        .collect()
}

/// Points every case at its previous-stage prediction `folder/<case><file_ending>` (nnU-Net's
/// `-prev_stage_predictions`); a missing file is an error naming it.
pub fn with_previous_stage(
    mut cases: Vec<CaseInput>,
    folder: &Path,
    file_ending: &str,
) -> Result<Vec<CaseInput>> {
    let files = case_files(&cases, folder, file_ending, &|case| {
        format!(
            "case '{case}' has no prediction of the previous stage in {} (predict the cases \
             with the previous stage's model into that folder first)",
            folder.display()
        )
    })?;
    for (case, file) in cases.iter_mut().zip(files) {
        case.previous_stage = Some(file);
    }
    Ok(cases)
}

/// Gives every case its region of interest `folder/<case><file_ending>` (nonzero inside; outside
/// it the prediction is background); a missing file is an error naming it.
pub fn with_regions_of_interest(
    mut cases: Vec<CaseInput>,
    folder: &Path,
    file_ending: &str,
) -> Result<Vec<CaseInput>> {
    if !folder.is_dir() {
        return Err(Error::invalid_file(
            folder,
            "no such folder (the regions of interest, CASE<ending> per case)",
        ));
    }
    let files = case_files(&cases, folder, file_ending, &|case| {
        format!(
            "the region of interest of case '{case}' (every case needs one in {})",
            folder.display()
        )
    })?;
    for (case, file) in cases.iter_mut().zip(files) {
        case.roi = Some(file);
    }
    Ok(cases)
}

/// What [`Predictor::predict_from_files`] writes besides the segmentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileOutputOptions {
    /// Also write `<case>.npz` (probabilities) and `<case>.json` (properties), as nnU-Net's
    /// `--save_probabilities`.
    pub save_probabilities: bool,
    /// Write label values spread over 0..255 (see [`visible_labels`]) instead of the labels, for
    /// looking at the segmentation in an image viewer.
    pub visible_labels: bool,
}

/// A prediction in the input's geometry.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// Labels `[1, z, y, x]` with the input's properties.
    pub segmentation: Segmentation,
    /// Probabilities `[classes or regions, z, y, x]` in the input's axis order, if asked for.
    pub probabilities: Option<Array4<f32>>,
}

/// A checkpoint name as given (`checkpoint_final`, nnU-Net's `checkpoint_final.pth`, or
/// `checkpoint_final.safetensors`) turned into the file name nnunet-rs writes.
pub fn checkpoint_file_name(name: &str) -> Result<String> {
    let stem = name
        .strip_suffix(".pth")
        .or_else(|| name.strip_suffix(".safetensors"))
        .unwrap_or(name);
    if stem.is_empty() || stem.contains(['/', '\\']) || stem.starts_with('.') {
        return Err(Error::Invalid(format!(
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

/// The cases of a folder of images named as nnU-Net wants them (`<case>_XXXX<file_ending>`),
/// sorted by case. A case's files are numbered from `0000` without gaps and hold the model's
/// `num_channels` channels: one file per channel, or fewer files when the reader gives several
/// channels from one file (an RGB image is three channels); `channels_in(files)` counts what a
/// case's files hold when there are fewer files than channels. An error names the case and the
/// missing or extra file. Outputs go to `output_folder/<case>`.
pub fn cases_in_folder(
    input_folder: &Path,
    file_ending: &str,
    num_channels: usize,
    output_folder: &Path,
    channels_in: &dyn Fn(&[PathBuf]) -> Result<usize>,
) -> Result<Vec<CaseInput>> {
    let entries = std::fs::read_dir(input_folder).map_err(|e| Error::io(input_folder, e))?;
    let mut by_case: std::collections::BTreeMap<String, Vec<(u32, PathBuf)>> =
        std::collections::BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(input_folder, e))?;
        let path = entry.path();
        if path.is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(file_ending) else {
            continue;
        };
        let parsed = stem.rsplit_once('_').and_then(|(case, index)| {
            (index.len() == 4 && index.bytes().all(|b| b.is_ascii_digit()))
                .then(|| (case.to_string(), index.parse::<u32>().ok()))
        });
        match parsed {
            Some((case, Some(index))) if !case.is_empty() => {
                by_case.entry(case).or_default().push((index, path));
            }
            _ => {
                return Err(Error::invalid_file(
                    &path,
                    format!(
                        "is not named <case>_XXXX{file_ending} (XXXX: the 4-digit channel index, \
                         0000 for the first channel), as nnU-Net's input files must be"
                    ),
                ));
            }
        }
    }
    let mut cases = Vec::with_capacity(by_case.len());
    for (case, mut files) in by_case {
        files.sort();
        let files = case_channel_files(
            input_folder,
            &case,
            files,
            file_ending,
            num_channels,
            channels_in,
        )?;
        cases.push(CaseInput {
            output_truncated: output_folder.join(&case),
            identifier: case,
            files,
            previous_stage: None,
            roi: None,
        });
    }
    Ok(cases)
}

/// Checks one case's channel files (sorted by index) for [`cases_in_folder`]: numbered from 0000
/// without gaps, no more than the model's channels, and holding them all.
fn case_channel_files(
    input_folder: &Path,
    case: &str,
    files: Vec<(u32, PathBuf)>,
    file_ending: &str,
    num_channels: usize,
    channels_in: &dyn Fn(&[PathBuf]) -> Result<usize>,
) -> Result<Vec<PathBuf>> {
    let channel_file = |i: usize| input_folder.join(format!("{case}_{i:04}{file_ending}"));
    if let Some(gap) = (0..files.len()).find(|&i| files[i].0 as usize != i) {
        return Err(Error::invalid_file(
            channel_file(gap),
            format!(
                "missing: case '{case}' has channel files up to {} but not this one (channel \
                 files are numbered from _0000 without gaps)",
                files[files.len() - 1].1.display()
            ),
        ));
    }
    if let Some((_, extra)) = files.get(num_channels) {
        return Err(Error::invalid_file(
            extra,
            format!(
                "case '{case}' has more channel files than the model's {num_channels} \
                 channel(s)"
            ),
        ));
    }
    let files: Vec<PathBuf> = files.into_iter().map(|(_, p)| p).collect();
    if files.len() < num_channels {
        let held = channels_in(&files)?;
        if held < num_channels {
            return Err(Error::invalid_file(
                channel_file(files.len()),
                format!(
                    "missing: case '{case}' needs {num_channels} channel(s) but its {} file(s) \
                     hold {held} ({case}_0000{file_ending} to {case}_{:04}{file_ending}, one \
                     file per channel, or colour images holding several){}",
                    files.len(),
                    num_channels - 1,
                    channel_count_hint(num_channels, held)
                ),
            ));
        }
        if held > num_channels {
            return Err(Error::invalid_file(
                &files[0],
                format!(
                    "case '{case}' has {held} channel(s) but the model takes {num_channels}{}",
                    channel_count_hint(num_channels, held)
                ),
            ));
        }
    }
    Ok(files)
}

/// What to do about an image with `image_channels` channels for a model trained with
/// `model_channels`: convert colour images to gray (or gray to colour) with `convert-images`.
pub fn channel_count_hint(model_channels: usize, image_channels: usize) -> String {
    match (model_channels, image_channels) {
        (1, n) if n > 1 => "; the model was trained on gray images: convert colour images with \
             `nnunet convert-images -i DIR -o OUT --grayscale` and predict OUT"
            .into(),
        (3, 1) => "; the model was trained on colour (RGB) images: convert gray images with \
             `nnunet convert-images -i DIR -o OUT --rgb` and predict OUT"
            .into(),
        _ => String::new(),
    }
}

/// Whether the outputs of `case` exist (the segmentation, and the probabilities if wanted), as
/// nnU-Net's `--continue_prediction` decides.
pub fn case_is_predicted(case: &CaseInput, file_ending: &str, save_probabilities: bool) -> bool {
    with_suffix(&case.output_truncated, file_ending).is_file()
        && (!save_probabilities || with_suffix(&case.output_truncated, ".npz").is_file())
}

/// The part of a predictor that reads, preprocesses, exports and writes: shared with the
/// background threads.
struct CasePipeline {
    case_settings: CaseSettings,
    export: ExportSettings,
    reader: Box<dyn Reader>,
    file_ending: String,
    input_channels: usize,
    channel_names: Vec<String>,
    highest_label: i64,
    /// Cascade stage: the previous stage's name and the labels it feeds as one-hot channels.
    cascade: Option<(String, Vec<i16>)>,
}

impl CasePipeline {
    /// Preprocesses `image` (and, for a cascade stage, appends the one-hot channels of
    /// `previous_stage`, which is preprocessed with it as its label map).
    fn preprocess(
        &self,
        image: Image,
        previous_stage: Option<Segmentation>,
        name: &str,
    ) -> Result<PreprocessedCase> {
        let channels = image.data.shape()[0];
        if channels != self.input_channels {
            return Err(Error::Invalid(format!(
                "{name}: the image has {channels} channel(s) but the model was trained with {} \
                 ({}){}",
                self.input_channels,
                self.channel_names.join(", "),
                channel_count_hint(self.input_channels, channels)
            )));
        }
        match (&self.cascade, previous_stage) {
            (None, _) => preprocess_case(image, None, &self.case_settings, name),
            (Some((previous, _)), None) => Err(Error::Invalid(format!(
                "{name}: the model is a cascade stage and needs the prediction of the previous \
                 stage '{previous}' of this case (-prev_stage_predictions)"
            ))),
            (Some((_, labels)), Some(segmentation)) => {
                let mut case =
                    preprocess_case(image, Some(segmentation), &self.case_settings, name)?;
                case.data = append_one_hot(case.data, case.seg.index_axis(Axis(0), 0), labels)
                    .map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
                Ok(case)
            }
        }
    }

    fn read_and_preprocess(&self, case: &CaseInput) -> Result<PreprocessedCase> {
        let files: Vec<&Path> = case.files.iter().map(PathBuf::as_path).collect();
        let image = self.reader.read_images(&files)?;
        let previous_stage = match (&self.cascade, &case.previous_stage) {
            (Some(_), Some(file)) => Some(self.reader.read_segmentation(file)?),
            _ => None,
        };
        let mut name = case
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if let (Some(_), Some(file)) = (&self.cascade, &case.previous_stage) {
            name.push_str(&format!(" with the previous stage's {}", file.display()));
        }
        self.preprocess(image, previous_stage, &name)
    }

    fn export(
        &self,
        logits: ArrayView4<'_, f32>,
        properties: &CaseProperties,
        probabilities: bool,
    ) -> Result<ExportedPrediction> {
        logits_to_segmentation_in_input_geometry(logits, properties, &self.export, probabilities)
    }

    /// Makes the prediction background outside the case's region of interest, if it has one.
    fn apply_roi(&self, exported: &mut ExportedPrediction, case: &CaseInput) -> Result<()> {
        let Some(file) = &case.roi else {
            return Ok(());
        };
        let roi = self.reader.read_segmentation(file)?.data;
        let roi = roi.index_axis(Axis(0), 0);
        if roi.shape() != exported.segmentation.shape() {
            return Err(Error::invalid_file(
                file,
                format!(
                    "the region of interest has shape {:?} but the image {} has shape {:?} \
                     (they must have the same shape)",
                    roi.shape(),
                    case.files[0].display(),
                    exported.segmentation.shape()
                ),
            ));
        }
        restrict_to_roi(exported, roi, &self.export.labels)
    }

    /// Writes probabilities and properties (if any), then the segmentation into a temporary
    /// folder whose files (with a detached header's data files and side files) are moved next to
    /// the output when complete; returns the segmentation's path.
    fn write(
        &self,
        prediction: &ExportedPrediction,
        properties: &CaseProperties,
        output_truncated: &Path,
        options: &FileOutputOptions,
    ) -> Result<PathBuf> {
        let parent = output_truncated
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        if let Some(probabilities) = &prediction.probabilities {
            write_probabilities_and_properties(output_truncated, probabilities.view(), properties)?;
        }
        let visible;
        let segmentation = if options.visible_labels {
            let highest = i16::try_from(self.highest_label).unwrap_or(i16::MAX);
            visible = visible_labels(prediction.segmentation.view(), highest)?;
            visible.view()
        } else {
            prediction.segmentation.view()
        };
        let target = with_suffix(output_truncated, &self.file_ending);
        let file_name = output_truncated
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staging = parent.join(format!(".{file_name}.partial"));
        std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        let temporary = staging.join(format!("{file_name}{}", self.file_ending));
        let ending = self.file_ending.to_lowercase();
        let written = if options.visible_labels
            && (ending == ".png" || ending == ".bmp")
            && segmentation.shape()[0] == 1
        {
            // The reader writes label maps reaching 255 as 16-bit PNG (as nnU-Net), which shows
            // as black; a picture to look at is 8-bit.
            write_gray8(segmentation, &temporary)
        } else {
            self.reader
                .write_segmentation(segmentation, &temporary, &properties.image)
        };
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        publish(&staging, &temporary, parent)?;
        Ok(target)
    }
}

/// Moves every file of `staging` into `parent`, `main` last (so that a header never names data
/// that is not there yet), and removes `staging`.
fn publish(staging: &Path, main: &Path, parent: &Path) -> Result<()> {
    let entries = std::fs::read_dir(staging).map_err(|e| Error::io(staging, e))?;
    let mut files = Vec::new();
    for entry in entries {
        files.push(entry.map_err(|e| Error::io(staging, e))?.path());
    }
    files.sort_by_key(|f| f == main);
    for file in files {
        let target = parent.join(file.file_name().unwrap_or_default());
        std::fs::rename(&file, &target).map_err(|e| Error::io(&target, e))?;
    }
    std::fs::remove_dir(staging).map_err(|e| Error::io(staging, e))
}

/// Writes a `[1, y, x]` label map with values in 0..=255 as an 8-bit grey image (the format
/// from the file's ending).
fn write_gray8(segmentation: ndarray::ArrayView3<'_, i16>, file: &Path) -> Result<()> {
    let (_, height, width) = segmentation.dim();
    let pixels: Vec<u8> = segmentation
        .iter()
        .map(|&v| v.clamp(0, 255) as u8)
        .collect();
    let too_large = || Error::invalid_file(file, "the image is too large to write");
    let buffer = image::GrayImage::from_raw(
        u32::try_from(width).map_err(|_| too_large())?,
        u32::try_from(height).map_err(|_| too_large())?,
        pixels,
    )
    .ok_or_else(too_large)?;
    buffer
        .save(file)
        .map_err(|e| Error::invalid_file(file, format!("cannot write the image: {e}")))
}

/// A trained model loaded for prediction (see the module documentation).
pub struct Predictor {
    model_folder: PathBuf,
    plans: Plans,
    configuration: Configuration,
    dataset_json: DatasetJson,
    folds: Vec<Fold>,
    networks: Vec<Box<dyn Network>>,
    window: SlidingWindowSettings,
    pipeline: CasePipeline,
    device: Device,
}

impl Predictor {
    /// Loads the model in `model_folder` (`plans.json`, `dataset.json`) with the checkpoint
    /// `checkpoint_name` of each of `folds` (all folds that have it when `folds` is empty), its
    /// networks on `device`. A fold without the checkpoint is an error naming it and the folds
    /// that have one. A cascade stage (`3d_cascade_fullres`) predicts cases that come with the
    /// previous stage's prediction ([`CaseInput::previous_stage`]).
    pub fn from_model_folder(
        registries: &Registries,
        model_folder: &Path,
        folds: &[Fold],
        checkpoint_name: &str,
        device: &Device,
        settings: &PredictorSettings,
    ) -> Result<Self> {
        if !model_folder.is_dir() {
            return Err(Error::invalid_file(
                model_folder,
                "no such model folder (a trained model: Trainer__Plans__configuration with \
                 plans.json, dataset.json and fold_N folders)",
            ));
        }
        let checkpoint_file = checkpoint_file_name(checkpoint_name)?;
        for name in ["plans.json", "dataset.json"] {
            let file = model_folder.join(name);
            if !file.is_file() {
                return Err(Error::invalid_file(
                    &file,
                    "missing; a trained model folder has the plans.json and dataset.json of its \
                     training",
                ));
            }
        }
        let plans = Plans::from_file(&model_folder.join("plans.json"))?;
        let dataset_json = DatasetJson::from_file(&model_folder.join("dataset.json"))?;

        let present = available_folds(model_folder, checkpoint_name)?;
        let folds: Vec<Fold> = if folds.is_empty() {
            if present.is_empty() {
                return Err(Error::invalid_file(
                    model_folder,
                    format!(
                        "no fold_N folder has {checkpoint_file}; train a fold first{}",
                        unfinished_hint(model_folder, &checkpoint_file, &[])?
                    ),
                ));
            }
            present.clone()
        } else {
            folds.to_vec()
        };
        let missing: Vec<Fold> = folds
            .iter()
            .copied()
            .filter(|f| !present.contains(f))
            .collect();
        if !missing.is_empty() {
            return Err(Error::invalid_file(
                model_folder,
                format!(
                    "fold(s) {} have no {checkpoint_file}; folds with {checkpoint_file}: {} \
                     (choose them with -f){}",
                    fold_list(&missing),
                    fold_list(&present),
                    unfinished_hint(model_folder, &checkpoint_file, &missing)?
                ),
            ));
        }
        for (i, fold) in folds.iter().enumerate() {
            if folds[..i].contains(fold) {
                return Err(Error::Invalid(format!("fold {fold} is listed twice")));
            }
        }

        let labels = LabelHandling::from_labels(&dataset_json.labels)?;
        let input_channels = dataset_json.num_channels();
        let mut configuration: Option<Configuration> = None;
        let mut networks = Vec::with_capacity(folds.len());
        let mut mirror_axes: Option<Vec<usize>> = None;
        for fold in &folds {
            let path = model_folder.join(fold.folder_name()).join(&checkpoint_file);
            let checkpoint = Checkpoint::load(&path)?;
            let meta = &checkpoint.meta;
            let config = match &configuration {
                Some(c) if c.name != meta.configuration => {
                    return Err(Error::invalid_file(
                        &path,
                        format!(
                            "was trained on configuration '{}', the other folds on '{}'",
                            meta.configuration, c.name
                        ),
                    ));
                }
                Some(c) => c.clone(),
                None => {
                    let c = plans.configuration(&meta.configuration)?;
                    configuration = Some(c.clone());
                    c
                }
            };
            let network_channels = network_input_channels(&config, &dataset_json)?;
            if meta.input_channels != network_channels || meta.output_channels != labels.num_heads()
            {
                return Err(Error::invalid_file(
                    &path,
                    format!(
                        "has {} input and {} output channels, but dataset.json and the plans \
                         need {} and {}",
                        meta.input_channels,
                        meta.output_channels,
                        network_channels,
                        labels.num_heads()
                    ),
                ));
            }
            let arch_kwargs = config
                .json
                .get("architecture")
                .and_then(|a| a.get("arch_kwargs"))
                .cloned()
                .ok_or_else(|| {
                    Error::invalid_file(
                        plans.path(),
                        format!(
                            "configuration '{}' has no architecture.arch_kwargs",
                            config.name
                        ),
                    )
                })?;
            let spec = NetworkSpec {
                arch_kwargs,
                input_channels: network_channels,
                output_channels: labels.num_heads(),
                deep_supervision: false,
                is_2d: config.is_2d()?,
                batch_norm: meta.settings.norm == NormKind::Batch,
            };
            networks.push(network_from_checkpoint(
                registries,
                &checkpoint,
                &spec,
                device,
                &path,
            )?);
            if mirror_axes.is_none() {
                mirror_axes = Some(meta.inference_allowed_mirroring_axes.clone());
            }
        }
        let configuration =
            configuration.ok_or_else(|| Error::Invalid("no folds to predict with".into()))?;
        let mirror_axes = if settings.use_mirroring {
            mirror_axes.unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut window = SlidingWindowSettings::from_configuration(&configuration, mirror_axes)?;
        window.step_size = settings.step_size;
        window.use_gaussian = settings.use_gaussian;
        if let Some(n) = settings.tiles_per_batch {
            window.tiles_per_batch = n;
        }
        if !(window.step_size > 0.0 && window.step_size <= 1.0) {
            return Err(Error::Invalid(format!(
                "the step size must be in (0, 1], not {}",
                window.step_size
            )));
        }

        // The reader named in the plans (as nnU-Net's predictor), else the dataset's choice.
        let reader = match plans
            .image_reader_writer()
            .ok()
            .and_then(|name| registries.readers.create(name).ok())
        {
            Some(reader) => reader,
            None => choose_reader(registries, &dataset_json, None)?.create(),
        };
        let highest_label = match &labels {
            LabelHandling::Classes { num_classes } => *num_classes as i64 - 1,
            LabelHandling::Regions {
                regions_class_order,
            } => regions_class_order
                .iter()
                .copied()
                .max()
                .map_or(0, i64::from),
        };
        let pipeline = CasePipeline {
            case_settings: CaseSettings::new(
                &plans,
                &configuration,
                &dataset_json.labels,
                input_channels,
            )?,
            export: ExportSettings::new(&plans, &configuration, &dataset_json.labels)?,
            reader,
            file_ending: dataset_json.file_ending.clone(),
            input_channels,
            channel_names: dataset_json
                .channel_names
                .iter()
                .map(|(_, n)| n.clone())
                .collect(),
            highest_label,
            cascade: match (
                configuration.previous_stage(),
                cascade_labels(&configuration, &dataset_json)?,
            ) {
                (Some(previous), Some(labels)) => Some((previous.to_string(), labels)),
                _ => None,
            },
        };
        Ok(Predictor {
            model_folder: model_folder.to_path_buf(),
            plans,
            configuration,
            dataset_json,
            folds,
            networks,
            window,
            pipeline,
            device: device.clone(),
        })
    }

    /// The model folder.
    pub fn model_folder(&self) -> &Path {
        &self.model_folder
    }

    /// The model's plans.
    pub fn plans(&self) -> &Plans {
        &self.plans
    }

    /// The configuration the model was trained on.
    pub fn configuration(&self) -> &Configuration {
        &self.configuration
    }

    /// The model's `dataset.json`.
    pub fn dataset_json(&self) -> &DatasetJson {
        &self.dataset_json
    }

    /// The folds whose networks are averaged.
    pub fn folds(&self) -> &[Fold] {
        &self.folds
    }

    /// The file ending of images and segmentations (`dataset.json`'s `file_ending`).
    pub fn file_ending(&self) -> &str {
        &self.pipeline.file_ending
    }

    /// The number of image channels the model takes.
    pub fn input_channels(&self) -> usize {
        self.pipeline.input_channels
    }

    /// The cases of `input_folder` ([`cases_in_folder`] with the model's file ending, channels
    /// and reader), their outputs going to `output_folder`.
    pub fn input_cases(&self, input_folder: &Path, output_folder: &Path) -> Result<Vec<CaseInput>> {
        let reader = self.pipeline.reader.as_ref();
        cases_in_folder(
            input_folder,
            &self.pipeline.file_ending,
            self.pipeline.input_channels,
            output_folder,
            &|files| {
                let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
                Ok(reader.read_images(&files)?.data.shape()[0])
            },
        )
    }

    /// For a cascade stage, the configuration whose predictions it takes as input.
    pub fn previous_stage(&self) -> Option<&str> {
        self.pipeline.cascade.as_ref().map(|(p, _)| p.as_str())
    }

    /// The sliding-window settings in use.
    pub fn window(&self) -> &SlidingWindowSettings {
        &self.window
    }

    /// The reader and writer of the model's images.
    pub fn reader(&self) -> &dyn Reader {
        self.pipeline.reader.as_ref()
    }

    /// Logits `[heads, z, y, x]` of a preprocessed case: every fold's sliding-window prediction,
    /// summed and divided by the number of folds. `progress(done, total)` counts tiles over all
    /// folds.
    pub fn predict_logits(
        &self,
        data: ArrayView4<'_, f32>,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Array4<f32>> {
        let n = self.networks.len();
        let mut sum: Option<Array4<f32>> = None;
        for (i, network) in self.networks.iter().enumerate() {
            let logits = predict_sliding_window(
                network.as_ref(),
                data,
                &self.window,
                &self.device,
                &|done, total| progress(i * total + done, n * total),
            )?;
            match &mut sum {
                None => sum = Some(logits),
                Some(s) => *s += &logits,
            }
        }
        let mut logits = sum.ok_or_else(|| Error::Invalid("no folds to predict with".into()))?;
        if n > 1 {
            logits.mapv_inplace(|v| v / n as f32);
        }
        Ok(logits)
    }

    /// Predicts an image in memory (`[channels, z, y, x]` as the model's reader reads it, with
    /// its properties). Returns the segmentation with the image's properties and, if asked for,
    /// the probabilities.
    pub fn predict_image(&self, image: Image, return_probabilities: bool) -> Result<Prediction> {
        self.predict_image_with_previous_stage(image, None, return_probabilities)
    }

    /// [`Predictor::predict_image`] for a cascade stage: `previous_stage` is the previous stage's
    /// prediction of the image (`[1, z, y, x]`, the image's geometry).
    pub fn predict_image_with_previous_stage(
        &self,
        image: Image,
        previous_stage: Option<Segmentation>,
        return_probabilities: bool,
    ) -> Result<Prediction> {
        let properties = image.properties.clone();
        let case = self
            .pipeline
            .preprocess(image, previous_stage, "the image")?;
        let logits = self.predict_logits(case.data.view(), &|_, _| {})?;
        let exported =
            self.pipeline
                .export(logits.view(), &case.properties, return_probabilities)?;
        Ok(Prediction {
            segmentation: Segmentation {
                data: exported.segmentation.insert_axis(Axis(0)),
                properties,
            },
            probabilities: exported.probabilities,
        })
    }

    /// Predicts a plain array `[channels, z, y, x]` (a 2D image has `z = 1`) with the voxel
    /// `spacing` in the array's axis order, as nnU-Net's `predict_single_npy_array`.
    pub fn predict_array(
        &self,
        data: Array4<f32>,
        spacing: [f64; 3],
        return_probabilities: bool,
    ) -> Result<Prediction> {
        if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::Invalid(format!(
                "the spacing {spacing:?} must have three positive values"
            )));
        }
        self.predict_image(
            Image {
                data,
                properties: ImageProperties {
                    spacing,
                    ..Default::default()
                },
            },
            return_probabilities,
        )
    }

    /// Predicts one case from its channel files and writes the outputs (see
    /// [`Predictor::predict_from_files`]); returns the segmentation's path.
    pub fn predict_case(&self, case: &CaseInput, options: &FileOutputOptions) -> Result<PathBuf> {
        let preprocessed = self.pipeline.read_and_preprocess(case)?;
        let logits = self.predict_logits(preprocessed.data.view(), &|_, _| {})?;
        let mut exported = self.pipeline.export(
            logits.view(),
            &preprocessed.properties,
            options.save_probabilities,
        )?;
        self.pipeline.apply_roi(&mut exported, case)?;
        self.pipeline.write(
            &exported,
            &preprocessed.properties,
            &case.output_truncated,
            options,
        )
    }

    /// Predicts `cases` and writes each one's segmentation as `<output_truncated><file_ending>`
    /// in the input's geometry (and, with `save_probabilities`, `<output_truncated>.npz` and
    /// `.json`), reading the next case and writing the previous one while the network works (see
    /// the module documentation). `on_written(case, segmentation_file)` is called, from the
    /// writing thread, after each case. The first error stops the run; the cases written before
    /// it stay. Returns the segmentation files in case order.
    pub fn predict_from_files(
        &self,
        cases: &[CaseInput],
        options: &FileOutputOptions,
        on_written: &(dyn Fn(&CaseInput, &Path) + Sync),
    ) -> Result<Vec<PathBuf>> {
        let pipeline = &self.pipeline;
        std::thread::scope(|scope| {
            // Rendezvous channels: a stage hands a case on only when the next stage takes it.
            let (pre_tx, pre_rx) = mpsc::sync_channel::<(usize, Result<PreprocessedCase>)>(0);
            let reading = std::thread::Builder::new()
                .name("predict-read".into())
                .spawn_scoped(scope, move || {
                    for (i, case) in cases.iter().enumerate() {
                        let result = pipeline.read_and_preprocess(case);
                        let failed = result.is_err();
                        if pre_tx.send((i, result)).is_err() || failed {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::Invalid(format!("cannot start a reading thread: {e}")))?;
            let (out_tx, out_rx) = mpsc::sync_channel::<(usize, Array4<f32>, CaseProperties)>(0);
            let writing = std::thread::Builder::new()
                .name("predict-write".into())
                .spawn_scoped(scope, move || -> Result<Vec<PathBuf>> {
                    let mut written = Vec::with_capacity(cases.len());
                    for (i, logits, properties) in out_rx {
                        let case = &cases[i];
                        let mut exported = pipeline.export(
                            logits.view(),
                            &properties,
                            options.save_probabilities,
                        )?;
                        drop(logits);
                        pipeline.apply_roi(&mut exported, case)?;
                        let path = pipeline.write(
                            &exported,
                            &properties,
                            &case.output_truncated,
                            options,
                        )?;
                        on_written(case, &path);
                        written.push(path);
                    }
                    Ok(written)
                })
                .map_err(|e| Error::Invalid(format!("cannot start a writing thread: {e}")))?;

            let mut error: Option<Error> = None;
            for (i, result) in pre_rx.iter() {
                let outcome = result.and_then(|case| {
                    let logits = self.predict_logits(case.data.view(), &|_, _| {})?;
                    Ok((logits, case.properties))
                });
                match outcome {
                    Ok((logits, properties)) => {
                        if out_tx.send((i, logits, properties)).is_err() {
                            // The writer stopped on an error; it is reported below.
                            break;
                        }
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            drop(pre_rx);
            drop(out_tx);
            let written = writing
                .join()
                .unwrap_or_else(|_| Err(Error::Invalid("the writing thread panicked".into())));
            if reading.join().is_err() && error.is_none() {
                error = Some(Error::Invalid("the reading thread panicked".into()));
            }
            match (error, written) {
                (Some(e), _) => Err(e),
                (None, Err(e)) => Err(e),
                (None, Ok(written)) => {
                    if written.len() != cases.len() {
                        return Err(Error::Invalid(format!(
                            "only {} of {} cases were predicted",
                            written.len(),
                            cases.len()
                        )));
                    }
                    Ok(written)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_files_are_published_together() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join(".case.partial");
        std::fs::create_dir_all(&staging).unwrap();
        let header = staging.join("case.mhd");
        std::fs::write(&header, "ElementDataFile = case.zraw\n").unwrap();
        std::fs::write(staging.join("case.zraw"), [1, 2, 3]).unwrap();
        publish(&staging, &header, dir.path()).unwrap();
        assert!(!staging.exists());
        assert_eq!(
            std::fs::read(dir.path().join("case.zraw")).unwrap(),
            [1, 2, 3]
        );
        assert!(dir.path().join("case.mhd").is_file());
    }

    #[test]
    fn checkpoint_names_as_nnunet_spells_them() {
        for name in [
            "checkpoint_final",
            "checkpoint_final.pth",
            "checkpoint_final.safetensors",
        ] {
            assert_eq!(
                checkpoint_file_name(name).unwrap(),
                "checkpoint_final.safetensors"
            );
        }
        assert!(checkpoint_file_name("../x").is_err());
        assert!(checkpoint_file_name(".pth").is_err());
    }

    #[test]
    fn cases_follow_nnunet_naming() {
        let dir = std::env::temp_dir().join(format!("nnunet-predictor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let touch = |name: &str| std::fs::write(dir.join(name), b"").unwrap();
        for name in [
            "b_0001.png",
            "b_0000.png",
            "a_x_0000.png",
            "a_x_0001.png",
            "notes.txt",
        ] {
            touch(name);
        }
        let out = Path::new("/out");
        let one_per_file = |files: &[PathBuf]| Ok(files.len());
        let cases = cases_in_folder(&dir, ".png", 2, out, &one_per_file).unwrap();
        assert_eq!(
            cases
                .iter()
                .map(|c| c.identifier.as_str())
                .collect::<Vec<_>>(),
            ["a_x", "b"]
        );
        assert_eq!(
            cases[1].files,
            [dir.join("b_0000.png"), dir.join("b_0001.png")]
        );
        assert_eq!(cases[1].output_truncated, out.join("b"));

        // Three channels wanted: the error names the first missing file.
        let err = cases_in_folder(&dir, ".png", 3, out, &one_per_file)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a_x_0002.png") && err.contains("missing"),
            "{err}"
        );
        // One channel wanted: the extra channel file is named.
        let err = cases_in_folder(&dir, ".png", 1, out, &one_per_file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a_x_0001.png"), "{err}");
        // A gap in the numbering names the missing file.
        std::fs::remove_file(dir.join("b_0000.png")).unwrap();
        let err = cases_in_folder(&dir, ".png", 2, out, &one_per_file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("b_0000.png") && err.contains("gaps"), "{err}");
        std::fs::remove_file(dir.join("b_0001.png")).unwrap();
        // One colour file satisfies three channels; two are too many, a gray one too few.
        let colour = |files: &[PathBuf]| Ok(3 * files.len());
        let err = cases_in_folder(&dir, ".png", 3, out, &colour)
            .unwrap_err()
            .to_string();
        assert!(err.contains("has 6 channel(s)"), "{err}");
        std::fs::remove_file(dir.join("a_x_0001.png")).unwrap();
        let cases = cases_in_folder(&dir, ".png", 3, out, &colour).unwrap();
        assert_eq!(cases[0].files, [dir.join("a_x_0000.png")]);
        touch("d_0000.png");
        let err = cases_in_folder(&dir, ".png", 3, out, &|files: &[PathBuf]| {
            Ok(if files[0].ends_with("d_0000.png") {
                1
            } else {
                3
            })
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("d_0001.png") && err.contains("hold 1") && err.contains("--rgb"),
            "{err}"
        );
        assert!(channel_count_hint(1, 3).contains("--grayscale"));
        std::fs::remove_file(dir.join("d_0000.png")).unwrap();
        // A file with the ending but without a channel index.
        touch("c.png");
        let err = cases_in_folder(&dir, ".png", 2, out, &one_per_file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.png") && err.contains("_XXXX"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn continue_needs_every_output() {
        let dir = std::env::temp_dir().join(format!("nnunet-predicted-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let case = CaseInput {
            identifier: "a".into(),
            files: vec![],
            output_truncated: dir.join("a"),
            previous_stage: None,
            roi: None,
        };
        assert!(!case_is_predicted(&case, ".nii.gz", false));
        std::fs::write(dir.join("a.nii.gz"), b"").unwrap();
        assert!(case_is_predicted(&case, ".nii.gz", false));
        assert!(!case_is_predicted(&case, ".nii.gz", true));
        std::fs::write(dir.join("a.npz"), b"").unwrap();
        assert!(case_is_predicted(&case, ".nii.gz", true));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
