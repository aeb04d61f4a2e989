//! The final validation of a trained fold (nnU-Net's `perform_actual_validation`): every
//! validation case of the fold is predicted with the sliding window (Gaussian weighting, mirroring
//! over the training axes), written in its input geometry to `fold_N/validation/`, and scored
//! against `gt_segmentations` into `validation/summary.json`.
//!
//! A cascade stage sees each case with the previous stage's segmentation as one-hot channels; a
//! stage with a next stage (`3d_lowres`) also writes each validation case's segmentation on the
//! next stage's preprocessed grid to `predicted_next_stage/<next>/` (see
//! [`nnunet_inference::cascade`]), as the reference does.

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use nnunet_core::network::Network;
use nnunet_core::{Error, Reader, Registries, Result};
use nnunet_dataset::choose_reader;
use nnunet_evaluation::metrics::evaluate_dataset_folder;
use nnunet_inference::cascade::{
    append_one_hot, predicted_next_stage_folder, read_next_stage_segmentation,
    segmentation_for_next_stage, stored_case_shape, write_next_stage_segmentation,
};
use nnunet_inference::export::{ExportSettings, export_prediction_from_logits};
use nnunet_inference::network_from_checkpoint;
use nnunet_inference::sliding_window::{SlidingWindowSettings, predict_sliding_window};
use nnunet_preprocessing::storage::{CaseFiles, MappedArray, read_properties};
use nnunet_training::checkpoint::Checkpoint;

use crate::setup::{RunContext, RunRequest, run_context};

/// For each next stage of the configuration: its preprocessed data folder and the folder the
/// next-stage segmentations go to.
fn next_stage_targets(request: &RunRequest, ctx: &RunContext) -> Result<Vec<(PathBuf, PathBuf)>> {
    let model_folder = ctx
        .output_folder
        .parent()
        .ok_or_else(|| Error::training("the fold folder has no parent"))?;
    let mut targets = Vec::new();
    for next in ctx.configuration.next_stages() {
        let configuration = ctx.plans.configuration(&next)?;
        let data_folder = request
            .preprocessed_folder
            .join(configuration.data_identifier()?);
        let out = predicted_next_stage_folder(model_folder, &next);
        std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
        targets.push((data_folder, out));
    }
    Ok(targets)
}

/// What a validation produced.
#[derive(Clone, Debug)]
pub struct ValidationResult {
    /// Validation cases predicted.
    pub cases: usize,
    /// Mean foreground Dice of the validation cases.
    pub foreground_mean_dice: f64,
    /// The `validation/summary.json` written.
    pub summary_file: PathBuf,
}

/// What the validation of each case uses: the network, how it predicts and exports, and where
/// the results go.
struct CaseValidation<'a> {
    ctx: &'a RunContext,
    network: Box<dyn Network>,
    window: SlidingWindowSettings,
    export: ExportSettings,
    reader: Box<dyn Reader>,
    device: burn::tensor::Device,
    /// `fold_N/validation`.
    out_dir: PathBuf,
    /// Per next stage: its preprocessed data folder and the folder of its segmentations.
    next_stages: Vec<(PathBuf, PathBuf)>,
    progress: ProgressBar,
    save_probabilities: bool,
}

impl CaseValidation<'_> {
    /// Predicts `case` with the sliding window (a cascade stage with the previous stage's
    /// segmentation as one-hot channels), writes its segmentation for each next stage that is
    /// preprocessed (warning about the others) and exports it in its input geometry.
    #[expect(
        clippy::print_stderr,
        reason = "a warning for the user, as nnU-Net prints it; the library has no other channel to the terminal"
    )]
    fn validate(&self, case: &str) -> Result<()> {
        let ctx = self.ctx;
        let files = CaseFiles::new(&ctx.data_folder, case);
        let properties = read_properties(&files.properties)?;
        let data = MappedArray::open(&files.data)?;
        let with_previous_stage = match (&ctx.cascade_labels, &ctx.previous_stage_folder) {
            (Some(labels), Some(folder)) => {
                let path = folder.join(format!("{case}.npy"));
                let previous = read_next_stage_segmentation(&path)?;
                Some(
                    append_one_hot(data.view_f32()?.to_owned(), previous.view(), labels)
                        .map_err(|e| Error::training_file(&path, e.to_string()))?,
                )
            }
            _ => None,
        };
        let input = match &with_previous_stage {
            Some(d) => d.view(),
            None => data.view_f32()?,
        };
        let logits = predict_sliding_window(
            self.network.as_ref(),
            input,
            &self.window,
            &self.device,
            &|_, _| {},
        )?;
        drop(with_previous_stage);
        let spacing_transposed = self.export.transpose_forward.map(|i| properties.spacing[i]);
        for (next_data_folder, out_folder) in &self.next_stages {
            let next_case = CaseFiles::new(next_data_folder, case);
            if !next_case.data.is_file() {
                self.progress.suspend(|| {
                    eprintln!(
                        "{case}: no next-stage prediction written: {} is missing (preprocess \
                         that configuration first)",
                        next_case.data.display()
                    )
                });
                continue;
            }
            let target_shape = stored_case_shape(&next_case.data)?;
            let segmentation = segmentation_for_next_stage(
                logits.view(),
                target_shape,
                spacing_transposed,
                &self.export,
            )?;
            write_next_stage_segmentation(
                &out_folder.join(format!("{case}.npy")),
                segmentation.view(),
            )?;
        }
        export_prediction_from_logits(
            logits.view(),
            &properties,
            &self.export,
            self.reader.as_ref(),
            &self.out_dir.join(case),
            &ctx.dataset_json.file_ending,
            self.save_probabilities,
        )?;
        Ok(())
    }
}

/// Predicts and scores the fold's validation cases with the weights in `checkpoint_file`.
pub fn validate_fold(
    registries: &Registries,
    request: &RunRequest,
    checkpoint_file: &Path,
    save_probabilities: bool,
) -> Result<ValidationResult> {
    let ctx = run_context(registries, request)?;
    let checkpoint = Checkpoint::load(checkpoint_file)?;
    let device = request.device.clone().inner();
    let network =
        network_from_checkpoint(registries, &checkpoint, &ctx.spec, &device, checkpoint_file)?;
    let mut window = SlidingWindowSettings::from_configuration(
        &ctx.configuration,
        checkpoint.meta.inference_allowed_mirroring_axes.clone(),
    )?;
    window.step_size = 0.5;
    let export = ExportSettings::new(&ctx.plans, &ctx.configuration, &ctx.dataset_json.labels)?;
    let reader_entry = choose_reader(registries, &ctx.dataset_json, None)?;
    let reader = reader_entry.create();
    let out_dir = ctx.output_folder.join("validation");
    std::fs::create_dir_all(&out_dir).map_err(|e| Error::io(&out_dir, e))?;

    let next_stages = next_stage_targets(request, &ctx)?;
    let progress = nnunet_core::progress::bar(ctx.split.val.len(), "validation", "cases");
    if !request.show_progress {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let validation = CaseValidation {
        ctx: &ctx,
        network,
        window,
        export,
        reader,
        device,
        out_dir,
        next_stages,
        progress,
        save_probabilities,
    };
    for case in &ctx.split.val {
        validation.validate(case)?;
        validation.progress.inc(1);
    }
    validation.progress.finish_and_clear();

    let gt_folder = request.preprocessed_folder.join("gt_segmentations");
    let out_dir = &validation.out_dir;
    let summary = evaluate_dataset_folder(
        &gt_folder,
        out_dir,
        &ctx.dataset_json,
        validation.reader.as_ref(),
        0,
    )?;
    let summary_file = out_dir.join("summary.json");
    Ok(ValidationResult {
        cases: ctx.split.val.len(),
        foreground_mean_dice: summary.foreground_mean.dice,
        summary_file,
    })
}
