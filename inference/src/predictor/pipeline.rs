//! The part of a predictor that reads, preprocesses, exports and writes cases, shared with the
//! background threads of [`Predictor::predict_from_files`](super::Predictor::predict_from_files).

use std::path::{Path, PathBuf};

use ndarray::{ArrayView4, Axis};

use super::{CaseInput, FileOutputOptions, channel_count_hint};
use crate::cascade::{append_one_hot, cascade_labels};
use crate::export::{
    ExportSettings, ExportedPrediction, LabelHandling, logits_to_segmentation_in_input_geometry,
    restrict_to_roi, visible_labels, with_suffix, write_probabilities_and_properties,
};
use nnunet_core::error::{Error, Result};
use nnunet_core::io::{Image, Reader, Segmentation};
use nnunet_core::registry::Registries;
use nnunet_dataset::{DatasetJson, choose_reader};
use nnunet_preprocessing::plans::{Configuration, Plans};
use nnunet_preprocessing::storage::CaseProperties;
use nnunet_preprocessing::{CaseSettings, PreprocessedCase, preprocess_case};

/// The part of a predictor that reads, preprocesses, exports and writes: shared with the
/// background threads.
pub(super) struct CasePipeline {
    /// How cases are preprocessed (the plans' configuration).
    case_settings: CaseSettings,
    /// How logits become a segmentation in the input's geometry.
    export: ExportSettings,
    /// The reader and writer of the model's images.
    pub(super) reader: Box<dyn Reader>,
    /// `dataset.json`'s `file_ending`.
    pub(super) file_ending: String,
    /// The number of image channels the model takes.
    pub(super) input_channels: usize,
    /// `dataset.json`'s channel names, for the error about a wrong number of channels.
    channel_names: Vec<String>,
    /// The highest label the model predicts (the scale of visible labels).
    highest_label: i64,
    /// Cascade stage: the previous stage's name and the labels it feeds as one-hot channels.
    pub(super) cascade: Option<(String, Vec<i16>)>,
}

impl CasePipeline {
    /// The pipeline of a model with `plans`, `configuration` and `dataset_json` whose outputs are
    /// handled as `labels`: the reader named in the plans (as nnU-Net's predictor), else the
    /// dataset's choice.
    pub(super) fn new(
        registries: &Registries,
        plans: &Plans,
        configuration: &Configuration,
        dataset_json: &DatasetJson,
        labels: &LabelHandling,
    ) -> Result<Self> {
        let input_channels = dataset_json.num_channels();
        let reader = match plans
            .image_reader_writer()
            .ok()
            .and_then(|name| registries.readers.create(name).ok())
        {
            Some(reader) => reader,
            None => choose_reader(registries, dataset_json, None)?.create(),
        };
        let highest_label = match labels {
            LabelHandling::Classes { num_classes } => *num_classes as i64 - 1,
            LabelHandling::Regions {
                regions_class_order,
            } => regions_class_order
                .iter()
                .copied()
                .max()
                .map_or(0, i64::from),
        };
        Ok(CasePipeline {
            case_settings: CaseSettings::new(
                plans,
                configuration,
                &dataset_json.labels,
                input_channels,
            )?,
            export: ExportSettings::new(plans, configuration, &dataset_json.labels)?,
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
                cascade_labels(configuration, dataset_json)?,
            ) {
                (Some(previous), Some(labels)) => Some((previous.to_string(), labels)),
                _ => None,
            },
        })
    }

    /// Preprocesses `image` (and, for a cascade stage, appends the one-hot channels of
    /// `previous_stage`, which is preprocessed with it as its label map).
    pub(super) fn preprocess(
        &self,
        image: Image,
        previous_stage: Option<Segmentation>,
        name: &str,
    ) -> Result<PreprocessedCase> {
        let channels = image.data.shape()[0];
        if channels != self.input_channels {
            return Err(Error::inference(format!(
                "{name}: the image has {channels} channel(s) but the model was trained with {} \
                 ({}){}",
                self.input_channels,
                self.channel_names.join(", "),
                channel_count_hint(self.input_channels, channels)
            )));
        }
        match (&self.cascade, previous_stage) {
            (None, _) => preprocess_case(image, None, &self.case_settings, name),
            (Some((previous, _)), None) => Err(Error::inference(format!(
                "{name}: the model is a cascade stage and needs the prediction of the previous \
                 stage '{previous}' of this case (-prev_stage_predictions)"
            ))),
            (Some((_, labels)), Some(segmentation)) => {
                let mut case =
                    preprocess_case(image, Some(segmentation), &self.case_settings, name)?;
                case.data = append_one_hot(case.data, case.seg.index_axis(Axis(0), 0), labels)
                    .map_err(|e| Error::inference(format!("{name}: {e}")))?;
                Ok(case)
            }
        }
    }

    /// Reads the case's images (and previous-stage prediction) and preprocesses them; errors
    /// name the case's files.
    pub(super) fn read_and_preprocess(&self, case: &CaseInput) -> Result<PreprocessedCase> {
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

    /// The segmentation (and, if asked for, probabilities) of `logits` in the input's geometry.
    pub(super) fn export(
        &self,
        logits: ArrayView4<'_, f32>,
        properties: &CaseProperties,
        probabilities: bool,
    ) -> Result<ExportedPrediction> {
        logits_to_segmentation_in_input_geometry(logits, properties, &self.export, probabilities)
    }

    /// Makes the prediction background outside the case's region of interest, if it has one.
    pub(super) fn apply_roi(
        &self,
        exported: &mut ExportedPrediction,
        case: &CaseInput,
    ) -> Result<()> {
        let Some(file) = &case.roi else {
            return Ok(());
        };
        let roi = self.reader.read_segmentation(file)?.data;
        let roi = roi.index_axis(Axis(0), 0);
        if roi.shape() != exported.segmentation.shape() {
            return Err(Error::inference_file(
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
    pub(super) fn write(
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
pub(super) fn publish(staging: &Path, main: &Path, parent: &Path) -> Result<()> {
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
    let too_large = || Error::inference_file(file, "the image is too large to write");
    let buffer = image::GrayImage::from_raw(
        u32::try_from(width).map_err(|_| too_large())?,
        u32::try_from(height).map_err(|_| too_large())?,
        pixels,
    )
    .ok_or_else(too_large)?;
    buffer
        .save(file)
        .map_err(|e| Error::inference_file(file, format!("cannot write the image: {e}")))
}
