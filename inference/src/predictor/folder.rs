//! The cases one prediction call over an input folder predicts: nnU-Net's `-num_parts` /
//! `-part_id` share, the previous stage's predictions and regions of interest that go with them,
//! and `--continue_prediction`'s skipping of cases already written.

use std::path::Path;

use super::cases::{CaseInput, case_is_predicted, with_previous_stage, with_regions_of_interest};
use super::{FileOutputOptions, Predictor};
use nnunet_core::error::{Error, Result};

/// Which cases of an input folder one call predicts, and what comes with them.
#[derive(Clone, Copy, Debug, Default)]
pub struct FolderSelection<'a> {
    /// Number of separate calls sharing the cases (`-num_parts`).
    pub num_parts: usize,
    /// Which of them this is, from 0 (`-part_id`).
    pub part_id: usize,
    /// Skip cases whose outputs exist (`--continue_prediction`; with `save_probabilities`, a
    /// case is only done when its probabilities exist too).
    pub continue_prediction: bool,
    /// A cascade stage's previous-stage predictions (`DIR/CASE.ending`).
    pub previous_stage: Option<&'a Path>,
    /// Regions of interest (`DIR/CASE.ending`).
    pub roi_folder: Option<&'a Path>,
}

/// The cases of an input folder, as [`Predictor::folder_cases`] selected them.
#[derive(Clone, Debug)]
pub struct FolderCases {
    /// Cases in the input folder.
    pub total: usize,
    /// Cases in this call's part.
    pub in_part: usize,
    /// Cases of the part still to predict (all of them without `continue_prediction`).
    pub todo: Vec<CaseInput>,
}

/// Every `part_id`-th case of `num_parts`, as nnU-Net's `[part_id::num_parts]`.
pub fn part_of(cases: Vec<CaseInput>, num_parts: usize, part_id: usize) -> Vec<CaseInput> {
    cases
        .into_iter()
        .skip(part_id)
        .step_by(num_parts.max(1))
        .collect()
}

impl Predictor {
    /// The cases of `input` that this call predicts into `output` (see [`FolderSelection`]),
    /// with their previous-stage predictions and regions of interest, to be written with
    /// `options`. Creates `output` and
    /// copies the model's `dataset.json` and `plans.json` into it, as the reference does. An
    /// input folder that does not exist or has no images is an error.
    pub fn folder_cases(
        &self,
        input: &Path,
        output: &Path,
        selection: &FolderSelection<'_>,
        options: &FileOutputOptions,
    ) -> Result<FolderCases> {
        if !input.is_dir() {
            return Err(Error::inference(format!(
                "{}: no such input folder",
                input.display()
            )));
        }
        let ending = self.file_ending().to_string();
        let all = self.input_cases(input, output)?;
        if all.is_empty() {
            return Err(Error::inference(format!(
                "{}: no input images; nnU-Net names them CASE_0000{ending} (one file per \
                 channel, the model's file ending {ending}); `nnunet convert-images -i DIR -o \
                 OUT` names images so",
                input.display()
            )));
        }
        let total = all.len();
        let mut mine = part_of(all, selection.num_parts, selection.part_id);
        if let Some(folder) = selection.previous_stage {
            mine = with_previous_stage(mine, folder, &ending)?;
        }
        if let Some(folder) = selection.roi_folder {
            mine = with_regions_of_interest(mine, folder, &ending)?;
        }
        std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
        for name in ["dataset.json", "plans.json"] {
            copy_model_file(self.model_folder(), output, name)?;
        }
        let in_part = mine.len();
        let todo: Vec<CaseInput> = if selection.continue_prediction {
            mine.into_iter()
                .filter(|c| !case_is_predicted(c, &ending, options.save_probabilities))
                .collect()
        } else {
            mine
        };
        Ok(FolderCases {
            total,
            in_part,
            todo,
        })
    }
}

/// Copies the file `name` of the model folder into `output` (nothing when they are the same).
fn copy_model_file(model_folder: &Path, output: &Path, name: &str) -> Result<()> {
    let from = model_folder.join(name);
    let to = output.join(name);
    if from == to {
        return Ok(());
    }
    std::fs::copy(&from, &to).map_err(|e| {
        Error::inference(format!(
            "cannot copy {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })?;
    Ok(())
}
