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
//! [`Predictor::folder_cases`] chooses the cases of an input folder that one call predicts.
//!
//! [`preprocess_case`]: nnunet_preprocessing::preprocess_case
//! [`logits_to_segmentation_in_input_geometry`]: crate::export::logits_to_segmentation_in_input_geometry

mod cases;
mod folder;
mod folds;
mod loading;
mod overlapped;
mod pipeline;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use ndarray::{Array4, ArrayView4, Axis};

use crate::sliding_window::{SlidingWindowSettings, predict_sliding_window};
use nnunet_core::error::{Error, Result};
use nnunet_core::io::{Image, ImageProperties, Reader, Segmentation};
use nnunet_core::network::Network;
use nnunet_dataset::DatasetJson;
use nnunet_preprocessing::plans::{Configuration, Plans};
use nnunet_training::splits::Fold;
use pipeline::CasePipeline;

pub use cases::{
    CaseInput, case_is_predicted, cases_in_folder, channel_count_hint, with_previous_stage,
    with_regions_of_interest,
};
pub use folder::{FolderCases, FolderSelection, part_of};
pub use folds::{available_folds, checkpoint_file_name};

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

/// What [`Predictor::predict_from_files`] writes besides the segmentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileOutputOptions {
    /// Also write `<case>.npz` (probabilities) and `<case>.json` (properties), as nnU-Net's
    /// `--save_probabilities`.
    pub save_probabilities: bool,
    /// Write label values spread over 0..255 (see [`visible_labels`](crate::visible_labels))
    /// instead of the labels, for looking at the segmentation in an image viewer.
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

/// A trained model loaded for prediction (see the module documentation).
pub struct Predictor {
    /// The model folder it was loaded from.
    model_folder: PathBuf,
    /// The model's plans.
    plans: Plans,
    /// The configuration the model was trained on.
    configuration: Configuration,
    /// The model's `dataset.json`.
    dataset_json: DatasetJson,
    /// The folds whose networks are averaged.
    folds: Vec<Fold>,
    /// One network per fold, in fold order.
    networks: Vec<Box<dyn Network>>,
    /// How cases are tiled and mirrored.
    window: SlidingWindowSettings,
    /// Reading, preprocessing, export and writing of cases.
    pipeline: CasePipeline,
    /// Where the networks live.
    device: Device,
}

impl Predictor {
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
        let mut logits = sum.ok_or_else(|| Error::inference("no folds to predict with"))?;
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
            return Err(Error::inference(format!(
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
}
