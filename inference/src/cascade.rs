//! The cascade (`3d_lowres` → `3d_cascade_fullres`), as nnU-Net v2.8.1 runs it.
//!
//! A cascade stage's network sees the image channels followed by one channel per foreground label
//! (every label but background and the ignore label): 1 where the previous stage predicted that
//! label, 0 elsewhere ([`append_one_hot`]).
//!
//! - **Training** needs the previous stage's segmentation of every training case on the cascade
//!   stage's preprocessed grid. The previous stage's final validation writes it: each validation
//!   case's logits are resampled (with the previous stage's probability resampling) to the shape
//!   of the next stage's preprocessed case, turned into labels and stored as
//!   `Trainer__Plans__3d_lowres/predicted_next_stage/3d_cascade_fullres/<case>.npy` (int16,
//!   `[1, z, y, x]`) ([`segmentation_for_next_stage`], [`write_next_stage_segmentation`]). The
//!   five folds together cover every case.
//! - **Prediction** reads the previous stage's prediction of the case (a label map in the input's
//!   geometry, as `nnunet predict` of the previous stage wrote it), preprocesses it with the image
//!   as a label map (crop, transpose, resampling as segmentation) and appends its one-hot
//!   channels.

use std::path::{Path, PathBuf};

use ndarray::{Array3, Array4, ArrayView3, ArrayView4, ArrayViewD, Axis, Ix3, Ix4, Zip};
use ndarray_npy::{ViewNpyExt, WriteNpyExt};

use crate::export::ExportSettings;
use nnunet_core::error::{Error, Result};
use nnunet_core::io::write_atomically;
use nnunet_dataset::DatasetJson;
use nnunet_preprocessing::plans::Configuration;
use nnunet_preprocessing::resampling::resample_data;

/// The labels a cascade stage of `configuration` gets as one-hot input channels, in channel
/// order; `None` for a configuration that is not a cascade stage.
pub fn cascade_labels(
    configuration: &Configuration,
    dataset_json: &DatasetJson,
) -> Result<Option<Vec<i16>>> {
    if configuration.previous_stage().is_none() {
        return Ok(None);
    }
    dataset_json
        .labels
        .foreground_labels()
        .into_iter()
        .map(|l| {
            i16::try_from(l).map_err(|_| {
                Error::inference(format!(
                    "label {l} does not fit a label map (-32768 to 32767)"
                ))
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The number of network input channels of `configuration`: the image channels, plus one per
/// foreground label for a cascade stage (nnU-Net's `determine_num_input_channels`).
pub fn network_input_channels(
    configuration: &Configuration,
    dataset_json: &DatasetJson,
) -> Result<usize> {
    Ok(dataset_json.num_channels()
        + cascade_labels(configuration, dataset_json)?.map_or(0, |l| l.len()))
}

/// `data` (`[c, z, y, x]`) followed by one channel per label of `labels`: 1 where `segmentation`
/// (`[z, y, x]`, the same grid) has that label, 0 elsewhere.
pub fn append_one_hot(
    data: Array4<f32>,
    segmentation: ArrayView3<'_, i16>,
    labels: &[i16],
) -> Result<Array4<f32>> {
    let (c, z, y, x) = data.dim();
    if segmentation.dim() != (z, y, x) {
        return Err(Error::inference(format!(
            "the previous stage's segmentation has shape {:?} but the image has {:?}",
            segmentation.shape(),
            [z, y, x]
        )));
    }
    let mut out = Array4::<f32>::zeros((c + labels.len(), z, y, x));
    out.slice_mut(ndarray::s![..c, .., .., ..]).assign(&data);
    drop(data);
    for (i, &label) in labels.iter().enumerate() {
        Zip::from(out.index_axis_mut(Axis(0), c + i))
            .and(&segmentation)
            .for_each(|o, &s| {
                if s == label {
                    *o = 1.0;
                }
            });
    }
    Ok(out)
}

/// The folder the previous stage's validation fills for `next_stage`:
/// `previous_model_folder/predicted_next_stage/<next_stage>`.
pub fn predicted_next_stage_folder(previous_model_folder: &Path, next_stage: &str) -> PathBuf {
    previous_model_folder
        .join("predicted_next_stage")
        .join(next_stage)
}

/// Labels for the next stage from this stage's `logits` (`[heads, z, y, x]`, this stage's
/// preprocessed grid): resampled to `target_shape` (the next stage's preprocessed case) with this
/// stage's probability resampling, then argmax (or the regions' thresholds). As the reference,
/// the resampling decides about a separate `z` axis from this stage's spacing alone.
pub fn segmentation_for_next_stage(
    logits: ArrayView4<'_, f32>,
    target_shape: [usize; 3],
    case_spacing_transposed: [f64; 3],
    settings: &ExportSettings,
) -> Result<Array3<i16>> {
    let spacing = settings.spacing_3d(case_spacing_transposed[0], "")?;
    let resampled = resample_data(
        logits,
        target_shape,
        spacing,
        spacing,
        &settings.probabilities_resampling,
    )?;
    Ok(settings.labels.logits_to_segmentation(resampled))
}

/// Stores a next-stage segmentation as `path` (int16 `.npy`, `[1, z, y, x]`), atomically.
pub fn write_next_stage_segmentation(path: &Path, segmentation: ArrayView3<'_, i16>) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    write_atomically(path, |out| {
        segmentation
            .insert_axis(Axis(0))
            .as_standard_layout()
            .write_npy(out)
            .map_err(std::io::Error::other)
    })
}

/// Reads a segmentation stored by [`write_next_stage_segmentation`] (`[1, z, y, x]` or
/// `[z, y, x]`, int16).
pub fn read_next_stage_segmentation(path: &Path) -> Result<Array3<i16>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let view: ArrayViewD<'_, i16> = ArrayViewD::view_npy(&bytes).map_err(|e| {
        Error::inference_file(
            path,
            format!("not a readable int16 .npy array (previous stage segmentation): {e}"),
        )
    })?;
    let bad = || Error::inference_file(path, "expected a [1, z, y, x] or [z, y, x] array");
    match view.ndim() {
        3 => Ok(view
            .into_dimensionality::<Ix3>()
            .map_err(|_| bad())?
            .to_owned()),
        4 => {
            let v = view.into_dimensionality::<Ix4>().map_err(|_| bad())?;
            if v.dim().0 != 1 {
                return Err(bad());
            }
            Ok(v.index_axis(Axis(0), 0).to_owned())
        }
        _ => Err(bad()),
    }
}

/// The shape `[z, y, x]` of a stored `.npy` array `[c, z, y, x]` (read from its header only).
pub fn stored_case_shape(path: &Path) -> Result<[usize; 3]> {
    let array = nnunet_preprocessing::storage::MappedArray::open(path)?;
    let view = array.view_f32()?;
    let (_, z, y, x) = view.dim();
    Ok([z, y, x])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn one_hot_channels_follow_the_image() {
        let data = Array4::from_elem((1, 1, 2, 2), 5.0f32);
        let seg = Array3::from_shape_vec((1, 2, 2), vec![0i16, 1, 2, -1]).unwrap();
        let out = append_one_hot(data, seg.view(), &[1, 2]).unwrap();
        assert_eq!(out.dim(), (3, 1, 2, 2));
        assert_eq!(out.index_axis(Axis(0), 0).iter().sum::<f32>(), 20.0);
        let channel = |c: usize| {
            out.index_axis(Axis(0), c)
                .iter()
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(channel(1), [0.0, 1.0, 0.0, 0.0]);
        assert_eq!(channel(2), [0.0, 0.0, 1.0, 0.0]);
        let wrong = Array3::<i16>::zeros((1, 3, 2));
        assert!(append_one_hot(Array4::zeros((1, 1, 2, 2)), wrong.view(), &[1]).is_err());
    }

    #[test]
    fn next_stage_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("case.npy");
        let seg = Array3::from_shape_fn((2, 3, 4), |(z, y, x)| ((z + y + x) % 3) as i16);
        write_next_stage_segmentation(&path, seg.view()).unwrap();
        assert_eq!(read_next_stage_segmentation(&path).unwrap(), seg);
        std::fs::write(&path, b"nonsense").unwrap();
        let err = read_next_stage_segmentation(&path).unwrap_err().to_string();
        assert!(err.contains("case.npy"), "{err}");
    }
}
