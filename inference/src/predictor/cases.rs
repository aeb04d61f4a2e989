//! The cases to predict from files: a folder of images named as nnU-Net wants them, the
//! previous stage's predictions and regions of interest that go with them, and whether a case's
//! outputs exist.

use std::path::{Path, PathBuf};

use crate::export::with_suffix;
use nnunet_core::error::{Error, Result};
use nnunet_core::io::required_file;

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

/// Gives every case its file `folder/<case><file_ending>` with `set`; each must exist, and
/// `what(case)` says what the file is, for the error naming a missing one.
fn with_case_files(
    mut cases: Vec<CaseInput>,
    folder: &Path,
    file_ending: &str,
    what: &dyn Fn(&str) -> String,
    set: fn(&mut CaseInput, PathBuf),
) -> Result<Vec<CaseInput>> {
    for case in &mut cases {
        let file = required_file(
            folder.join(format!("{}{file_ending}", case.identifier)),
            || what(&case.identifier),
        )?;
        set(case, file);
    }
    Ok(cases)
}

/// Points every case at its previous-stage prediction `folder/<case><file_ending>` (nnU-Net's
/// `-prev_stage_predictions`); a missing file is an error naming it.
pub fn with_previous_stage(
    cases: Vec<CaseInput>,
    folder: &Path,
    file_ending: &str,
) -> Result<Vec<CaseInput>> {
    let what = |case: &str| {
        format!(
            "case '{case}' has no prediction of the previous stage in {} (predict the cases \
             with the previous stage's model into that folder first)",
            folder.display()
        )
    };
    with_case_files(cases, folder, file_ending, &what, |case, file| {
        case.previous_stage = Some(file);
    })
}

/// Gives every case its region of interest `folder/<case><file_ending>` (nonzero inside; outside
/// it the prediction is background); a missing file is an error naming it.
pub fn with_regions_of_interest(
    cases: Vec<CaseInput>,
    folder: &Path,
    file_ending: &str,
) -> Result<Vec<CaseInput>> {
    if !folder.is_dir() {
        return Err(Error::inference_file(
            folder,
            "no such folder (the regions of interest, CASE<ending> per case)",
        ));
    }
    let what = |case: &str| {
        format!(
            "the region of interest of case '{case}' (every case needs one in {})",
            folder.display()
        )
    };
    with_case_files(cases, folder, file_ending, &what, |case, file| {
        case.roi = Some(file);
    })
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
                return Err(Error::inference_file(
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
        return Err(Error::inference_file(
            channel_file(gap),
            format!(
                "missing: case '{case}' has channel files up to {} but not this one (channel \
                 files are numbered from _0000 without gaps)",
                files[files.len() - 1].1.display()
            ),
        ));
    }
    if let Some((_, extra)) = files.get(num_channels) {
        return Err(Error::inference_file(
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
            return Err(Error::inference_file(
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
            return Err(Error::inference_file(
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
