//! From predicted logits to a segmentation in the input's geometry, as nnU-Net v2.8.1's
//! `convert_predicted_logits_to_segmentation_with_correct_shape` and
//! `export_prediction_from_logits` do it:
//!
//! 1. The logits (`[heads, z, y, x]`, configuration spacing, transposed, cropped) are resampled
//!    to the shape after cropping with the configuration's probability resampling
//!    (`resampling_fn_probabilities_kwargs`), from the configuration spacing (a 2D configuration
//!    keeps the case's own spacing along `z`) to the case's spacing.
//! 2. Labels: softmax and argmax (the argmax of the logits when no probabilities are wanted,
//!    which is the same); regions: sigmoid, and every region above 0.5 writes its
//!    `regions_class_order` value, later regions over earlier ones.
//! 3. The crop is undone (segmentation 0 outside it; probabilities: background 1 and the other
//!    classes 0 outside it, or all 0 for regions) and the transpose is reverted.
//! 4. The segmentation is written with the input's geometry by the dataset's [`Reader`];
//!    probabilities go, as in nnU-Net, to `<case>.npz` (key `probabilities`, float32,
//!    `[classes, z, y, x]` in the input's axis order), with the case's properties as
//!    `<case>.json` where nnU-Net writes a pickle.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::{Array3, Array4, ArrayView3, ArrayView4, Axis, Zip, s};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};

use nnunet_core::error::{Error, Result};
use nnunet_core::io::Reader;
use nnunet_dataset::Labels;
use nnunet_preprocessing::cropping::{BoundingBox, bbox_shape, uncrop};
use nnunet_preprocessing::plans::{Configuration, Plans};
use nnunet_preprocessing::resampling::{ResamplingSettings, resample_data};
use nnunet_preprocessing::storage::CaseProperties;

/// The only probability resampling function nnU-Net's plans name.
const RESAMPLING_FN: &str = "resample_data_or_seg_to_shape";

/// How network outputs become labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelHandling {
    /// One output per label `0..num_classes` (background included): softmax, argmax.
    Classes {
        /// The number of labels, background included (the network's outputs).
        num_classes: usize,
    },
    /// One output per region: sigmoid; a voxel gets `regions_class_order[i]` when region `i`'s
    /// probability exceeds 0.5, later regions overwriting earlier ones, and 0 otherwise.
    Regions {
        /// The label each region writes, in region order (`dataset.json`'s
        /// `regions_class_order`).
        regions_class_order: Vec<i16>,
    },
}

impl LabelHandling {
    /// The handling of a dataset's labels (the ignore label is not predicted).
    pub fn from_labels(labels: &Labels) -> Result<Self> {
        if labels.is_region_based() {
            let order = labels.regions_class_order().ok_or_else(|| {
                Error::inference("region-based labels need 'regions_class_order'")
            })?;
            let regions = labels.regions().len();
            if order.len() != regions {
                return Err(Error::inference(format!(
                    "'regions_class_order' has {} entries for {regions} regions",
                    order.len()
                )));
            }
            let regions_class_order = order
                .iter()
                .map(|&v| {
                    i16::try_from(v).map_err(|_| {
                        Error::inference(format!(
                            "regions_class_order value {v} does not fit a label map (-32768 to 32767)"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(LabelHandling::Regions {
                regions_class_order,
            })
        } else {
            let num_classes = labels.all_labels().len();
            if num_classes > i16::MAX as usize {
                return Err(Error::inference(format!(
                    "{num_classes} labels do not fit a label map"
                )));
            }
            Ok(LabelHandling::Classes { num_classes })
        }
    }

    /// Number of network outputs (classes or regions).
    pub fn num_heads(&self) -> usize {
        match self {
            LabelHandling::Classes { num_classes } => *num_classes,
            LabelHandling::Regions {
                regions_class_order,
            } => regions_class_order.len(),
        }
    }

    /// Softmax over the first axis (classes) or sigmoid (regions), in place.
    pub fn apply_inference_nonlin(&self, logits: &mut Array4<f32>) {
        match self {
            LabelHandling::Classes { .. } => softmax_in_place(logits),
            LabelHandling::Regions { .. } => {
                logits.mapv_inplace(|v| 1.0 / (1.0 + (-v).exp()));
            }
        }
    }

    /// Labels from probabilities (after [`LabelHandling::apply_inference_nonlin`]).
    pub fn probabilities_to_segmentation(&self, probabilities: ArrayView4<'_, f32>) -> Array3<i16> {
        match self {
            LabelHandling::Classes { .. } => argmax(probabilities),
            LabelHandling::Regions {
                regions_class_order,
            } => {
                let (_, z, y, x) = probabilities.dim();
                let mut seg = Array3::<i16>::zeros((z, y, x));
                for (region, &value) in regions_class_order.iter().enumerate() {
                    Zip::from(&mut seg)
                        .and(probabilities.index_axis(Axis(0), region))
                        .for_each(|s, &p| {
                            if p > 0.5 {
                                *s = value;
                            }
                        });
                }
                seg
            }
        }
    }

    /// Labels from logits (argmax of the logits, or sigmoid and threshold for regions).
    pub fn logits_to_segmentation(&self, logits: Array4<f32>) -> Array3<i16> {
        match self {
            LabelHandling::Classes { .. } => argmax(logits.view()),
            LabelHandling::Regions { .. } => {
                let mut probabilities = logits;
                self.apply_inference_nonlin(&mut probabilities);
                self.probabilities_to_segmentation(probabilities.view())
            }
        }
    }
}

/// Softmax over the first axis, per voxel (`exp(v - max) / sum`, in `f32`).
fn softmax_in_place(logits: &mut Array4<f32>) {
    let classes = logits.shape()[0];
    if classes == 0 {
        return;
    }
    let mut max = logits.index_axis(Axis(0), 0).to_owned();
    for k in 1..classes {
        Zip::from(&mut max)
            .and(logits.index_axis(Axis(0), k))
            .for_each(|m, &v| *m = m.max(v));
    }
    let mut sum = Array3::<f32>::zeros(max.raw_dim());
    for mut class in logits.outer_iter_mut() {
        Zip::from(&mut class)
            .and(&max)
            .and(&mut sum)
            .for_each(|v, &m, s| {
                *v = (*v - m).exp();
                *s += *v;
            });
    }
    for mut class in logits.outer_iter_mut() {
        class.zip_mut_with(&sum, |v, &s| *v /= s);
    }
}

/// The index of the largest value along the first axis (the first one on ties, as numpy).
fn argmax(values: ArrayView4<'_, f32>) -> Array3<i16> {
    let classes = values.shape()[0];
    let mut best = values.index_axis(Axis(0), 0).to_owned();
    let mut index = Array3::<i16>::zeros(best.raw_dim());
    for k in 1..classes {
        Zip::from(&mut best)
            .and(&mut index)
            .and(values.index_axis(Axis(0), k))
            .for_each(|b, i, &v| {
                if v > *b {
                    *b = v;
                    *i = k as i16;
                }
            });
    }
    index
}

/// What the export needs from the plans, the configuration and the dataset's labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportSettings {
    /// The plans' `transpose_forward`.
    pub transpose_forward: [usize; 3],
    /// The plans' `transpose_backward`.
    pub transpose_backward: [usize; 3],
    /// The configuration's spacing (2 values for a 2D configuration, 3 otherwise).
    pub configuration_spacing: Vec<f64>,
    /// `resampling_fn_probabilities_kwargs`.
    pub probabilities_resampling: ResamplingSettings,
    /// Classes or regions.
    pub labels: LabelHandling,
}

impl ExportSettings {
    /// The settings of `configuration` in `plans` for a dataset with `labels`.
    pub fn new(plans: &Plans, configuration: &Configuration, labels: &Labels) -> Result<Self> {
        if let Some(name) = configuration
            .json
            .get("resampling_fn_probabilities")
            .and_then(serde_json::Value::as_str)
            && name != RESAMPLING_FN
        {
            return Err(Error::inference_file(
                plans.path(),
                format!(
                    "configuration '{}' resamples probabilities with '{name}'; only \
                     '{RESAMPLING_FN}' exists",
                    configuration.name
                ),
            ));
        }
        Ok(ExportSettings {
            transpose_forward: plans.transpose_forward()?,
            transpose_backward: plans.transpose_backward()?,
            configuration_spacing: configuration.spacing()?,
            probabilities_resampling: configuration
                .resampling_kwargs("resampling_fn_probabilities_kwargs")?,
            labels: LabelHandling::from_labels(labels)?,
        })
    }

    /// The configuration's spacing as three values `[z, y, x]`: a 2D configuration's two, after
    /// `z_spacing` (the case's own). Errors start with `context`.
    pub(crate) fn spacing_3d(&self, z_spacing: f64, context: &str) -> Result<[f64; 3]> {
        match self.configuration_spacing.as_slice() {
            [a, b] => Ok([z_spacing, *a, *b]),
            [a, b, c] => Ok([*a, *b, *c]),
            other => Err(Error::inference(format!(
                "{context}the configuration spacing {other:?} must have 2 or 3 values"
            ))),
        }
    }
}

/// A prediction in the input's geometry.
#[derive(Clone, Debug)]
pub struct ExportedPrediction {
    /// Labels `[z, y, x]` in the input image's axis order and shape.
    pub segmentation: Array3<i16>,
    /// Probabilities `[heads, z, y, x]` in the input image's axis order and shape, if asked for.
    pub probabilities: Option<Array4<f32>>,
}

/// Checks that the case's crop fits its shapes and that its spacing is positive.
fn check_geometry(properties: &CaseProperties) -> Result<()> {
    let bbox: &BoundingBox = &properties.bbox_used_for_cropping;
    let full = properties.shape_before_cropping;
    let inside = (0..3).all(|a| bbox[a][0] <= bbox[a][1] && bbox[a][1] <= full[a]);
    if !inside || bbox_shape(bbox) != properties.shape_after_cropping_and_before_resampling {
        return Err(Error::inference(format!(
            "case properties: the crop {bbox:?} does not fit the shape before cropping {full:?} \
             and the shape after cropping {:?}",
            properties.shape_after_cropping_and_before_resampling
        )));
    }
    if properties
        .spacing
        .iter()
        .any(|s| !(s.is_finite() && *s > 0.0))
    {
        return Err(Error::inference(format!(
            "case properties: the spacing {:?} must be positive",
            properties.spacing
        )));
    }
    Ok(())
}

/// Turns `logits` (`[heads, z, y, x]` as predicted: configuration spacing and axis order,
/// cropped) into a segmentation, and optionally probabilities, of the input image's shape and
/// axis order (see the module documentation).
pub fn logits_to_segmentation_in_input_geometry(
    logits: ArrayView4<'_, f32>,
    properties: &CaseProperties,
    settings: &ExportSettings,
    return_probabilities: bool,
) -> Result<ExportedPrediction> {
    check_geometry(properties)?;
    let heads = settings.labels.num_heads();
    if logits.shape()[0] != heads {
        return Err(Error::inference(format!(
            "export: the prediction has {} channels but the labels need {heads}",
            logits.shape()[0]
        )));
    }
    let tf = settings.transpose_forward;
    let spacing_transposed = tf.map(|i| properties.spacing[i]);
    let current_spacing = settings.spacing_3d(spacing_transposed[0], "export: ")?;
    let target_shape = properties.shape_after_cropping_and_before_resampling;
    let (_, z, y, x) = logits.dim();
    if [z, y, x].contains(&0) {
        return Err(Error::inference("export: the prediction is empty"));
    }
    let resampled = resample_data(
        logits,
        target_shape,
        current_spacing,
        spacing_transposed,
        &settings.probabilities_resampling,
    )?;

    let (segmentation, probabilities) = if return_probabilities {
        let mut probabilities = resampled;
        settings.labels.apply_inference_nonlin(&mut probabilities);
        let seg = settings
            .labels
            .probabilities_to_segmentation(probabilities.view());
        (seg, Some(probabilities))
    } else {
        (settings.labels.logits_to_segmentation(resampled), None)
    };

    let bbox = &properties.bbox_used_for_cropping;
    let full = properties.shape_before_cropping;
    let tb = settings.transpose_backward;
    let segmentation = uncrop(segmentation.view(), bbox, full, 0i16)
        .permuted_axes(tb)
        .as_standard_layout()
        .into_owned();
    let probabilities = probabilities.map(|p| {
        let mut out = Array4::<f32>::zeros((heads, full[0], full[1], full[2]));
        if matches!(settings.labels, LabelHandling::Classes { .. }) {
            out.index_axis_mut(Axis(0), 0).fill(1.0);
        }
        out.slice_mut(s![
            ..,
            bbox[0][0]..bbox[0][1],
            bbox[1][0]..bbox[1][1],
            bbox[2][0]..bbox[2][1]
        ])
        .assign(&p);
        out.permuted_axes([0, tb[0] + 1, tb[1] + 1, tb[2] + 1])
            .as_standard_layout()
            .into_owned()
    });
    Ok(ExportedPrediction {
        segmentation,
        probabilities,
    })
}

/// `<truncated><suffix>`: nnU-Net names outputs by appending the ending to the case name.
pub(crate) fn with_suffix(truncated: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(truncated.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes a prediction: the segmentation as `<output_truncated><file_ending>` through `reader`
/// with the input's geometry (`properties.image`), and, if it has probabilities,
/// `<output_truncated>.npz` (see [`write_probabilities_npz`]) and the properties as
/// `<output_truncated>.json`. Returns the segmentation's path.
pub fn write_prediction(
    prediction: &ExportedPrediction,
    properties: &CaseProperties,
    reader: &dyn Reader,
    output_truncated: &Path,
    file_ending: &str,
) -> Result<PathBuf> {
    if let Some(parent) = output_truncated.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    if let Some(probabilities) = &prediction.probabilities {
        write_probabilities_and_properties(output_truncated, probabilities.view(), properties)?;
    }
    let seg_path = with_suffix(output_truncated, file_ending);
    reader.write_segmentation(prediction.segmentation.view(), &seg_path, &properties.image)?;
    Ok(seg_path)
}

/// Writes `<truncated>.npz` (probabilities) and `<truncated>.json` (the case's properties), as
/// `--save_probabilities` does.
pub(crate) fn write_probabilities_and_properties(
    output_truncated: &Path,
    probabilities: ArrayView4<'_, f32>,
    properties: &CaseProperties,
) -> Result<()> {
    write_probabilities_npz(&with_suffix(output_truncated, ".npz"), probabilities)?;
    let json_path = with_suffix(output_truncated, ".json");
    let value = serde_json::to_value(properties)
        .map_err(|e| Error::inference_file(&json_path, format!("cannot write JSON: {e}")))?;
    nnunet_core::compat::json::write_json(&json_path, &value)
}

/// Resamples, converts and writes a case's logits in one go
/// ([`logits_to_segmentation_in_input_geometry`], then [`write_prediction`]); returns the
/// segmentation's path.
pub fn export_prediction_from_logits(
    logits: ArrayView4<'_, f32>,
    properties: &CaseProperties,
    settings: &ExportSettings,
    reader: &dyn Reader,
    output_truncated: &Path,
    file_ending: &str,
    save_probabilities: bool,
) -> Result<PathBuf> {
    let prediction =
        logits_to_segmentation_in_input_geometry(logits, properties, settings, save_probabilities)?;
    write_prediction(
        &prediction,
        properties,
        reader,
        output_truncated,
        file_ending,
    )
}

/// Makes everything outside the region of interest `roi` (`[z, y, x]`, nonzero inside)
/// background: label 0 and, in the probabilities, background 1 and every other class 0 (every
/// region 0). `roi` must have the segmentation's shape.
pub fn restrict_to_roi(
    prediction: &mut ExportedPrediction,
    roi: ArrayView3<'_, i16>,
    labels: &LabelHandling,
) -> Result<()> {
    if roi.shape() != prediction.segmentation.shape() {
        return Err(Error::inference(format!(
            "the region of interest has shape {:?} but the image {:?} (they must have the same \
             shape)",
            roi.shape(),
            prediction.segmentation.shape()
        )));
    }
    Zip::from(&mut prediction.segmentation)
        .and(&roi)
        .for_each(|label, &inside| {
            if inside == 0 {
                *label = 0;
            }
        });
    if let Some(probabilities) = &mut prediction.probabilities {
        for (c, mut channel) in probabilities.axis_iter_mut(Axis(0)).enumerate() {
            let outside = match labels {
                LabelHandling::Classes { .. } if c == 0 => 1.0,
                _ => 0.0,
            };
            Zip::from(&mut channel).and(&roi).for_each(|p, &inside| {
                if inside == 0 {
                    *p = outside;
                }
            });
        }
    }
    Ok(())
}

/// Spreads labels `0..=max_label` evenly over `0..=255` (`round(label * 255 / max_label)`), so
/// that a label map saved in an 8-bit format can be looked at (binary: 0 and 255). Labels
/// outside `0..=max_label`, and `max_label` outside `1..=255`, are errors.
pub fn visible_labels(segmentation: ArrayView3<'_, i16>, max_label: i16) -> Result<Array3<i16>> {
    if !(1..=255).contains(&max_label) {
        return Err(Error::inference(format!(
            "visible labels: the highest label must be 1 to 255 to map labels to 0..255, not \
             {max_label}"
        )));
    }
    if let Some(bad) = segmentation
        .iter()
        .find(|&&v| !(0..=max_label).contains(&v))
    {
        return Err(Error::inference(format!(
            "visible labels: label {bad} is outside 0..={max_label}"
        )));
    }
    Ok(segmentation.mapv(|v| visible_value(v, max_label)))
}

/// The value [`visible_labels`] writes for `label` when the highest label is `max_label` (in
/// `1..=255`): `round(label * 255 / max_label)`.
pub fn visible_value(label: i16, max_label: i16) -> i16 {
    let max = i32::from(max_label.max(1));
    ((i32::from(label) * 255 * 2 + max) / (2 * max)) as i16
}

/// Writes probabilities as numpy's `.npz` with one array `probabilities` (float32, the given
/// shape), readable by `np.load(path)["probabilities"]` as nnU-Net's. The archive is stored
/// uncompressed (ZIP64 when it exceeds 4 GiB).
pub fn write_probabilities_npz(path: &Path, probabilities: ArrayView4<'_, f32>) -> Result<()> {
    // ZIP64 well before the 32-bit limit, counting the .npy header too.
    let large = probabilities.len() as u64 * 4 + 4096 >= 0xFFFF_FFFF;
    write_npz(path, probabilities, large)
}

/// [`write_probabilities_npz`], with or without ZIP64 records.
fn write_npz(path: &Path, probabilities: ArrayView4<'_, f32>, zip64: bool) -> Result<()> {
    let array = probabilities.as_standard_layout();
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(zip64);
    nnunet_core::io::write_atomically(path, |out| {
        let mut archive = zip::ZipWriter::new(out);
        archive.start_file("probabilities.npy", options)?;
        array
            .write_npy(&mut archive)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        archive.finish()?;
        Ok(())
    })
}

/// Reads the array `probabilities` of an nnU-Net `.npz` (float32, or float64 converted to float32,
/// `[classes, z, y, x]`), stored (`np.savez`, nnunet) or deflated (`np.savez_compressed`,
/// nnU-Net), ZIP64 included.
pub fn read_probabilities_npz(path: &Path) -> Result<Array4<f32>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| Error::inference_file(path, format!("not a readable zip archive: {e}")))?;
    let held: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok())
        .map(|n| n.trim_end_matches(".npy").to_string())
        .collect();
    let unreadable = |e: String| {
        Error::inference_file(path, format!("cannot read the array 'probabilities': {e}"))
    };
    let mut member = match archive.by_name("probabilities.npy") {
        Ok(member) => member,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(Error::inference_file(
                path,
                format!(
                    "no array 'probabilities' in the archive (it holds: {})",
                    held.join(", ")
                ),
            ));
        }
        Err(e) => return Err(unreadable(e.to_string())),
    };
    let mut data = Vec::with_capacity(usize::try_from(member.size()).unwrap_or(0));
    member
        .read_to_end(&mut data)
        .map_err(|e| unreadable(e.to_string()))?;
    if let Ok(a) = Array4::<f32>::read_npy(data.as_slice()) {
        return Ok(a);
    }
    if let Ok(a) = Array4::<f64>::read_npy(data.as_slice()) {
        return Ok(a.mapv(|v| v as f32));
    }
    Array4::<f32>::read_npy(data.as_slice()).map_err(|e| {
        Error::inference_file(
            path,
            format!("'probabilities' is not a 4D float array [classes, z, y, x]: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npz_files_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let a = Array4::from_shape_fn((2, 3, 4, 5), |(c, z, y, x)| {
            (c * 60 + z * 20 + y * 5 + x) as f32
        });
        for (name, zip64) in [("plain.npz", false), ("zip64.npz", true)] {
            let path = dir.path().join(name);
            write_npz(&path, a.view(), zip64).unwrap();
            assert_eq!(read_probabilities_npz(&path).unwrap(), a);
            let mut archive = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
            let member = archive.by_name("probabilities.npy").unwrap();
            assert_eq!(member.compression(), zip::CompressionMethod::Stored);
        }
    }

    #[test]
    fn visible_labels_spread_over_8_bits() {
        let seg = ndarray::arr3(&[[[0i16, 1], [2, 3]]]);
        let v = visible_labels(seg.view(), 3).unwrap();
        assert_eq!(v, ndarray::arr3(&[[[0i16, 85], [170, 255]]]));
        let binary = ndarray::arr3(&[[[0i16, 1]]]);
        assert_eq!(
            visible_labels(binary.view(), 1).unwrap(),
            ndarray::arr3(&[[[0i16, 255]]])
        );
        assert!(visible_labels(seg.view(), 2).is_err());
        assert!(visible_labels(seg.view(), 300).is_err());
        assert!(visible_labels(seg.view(), 0).is_err());
    }
}
