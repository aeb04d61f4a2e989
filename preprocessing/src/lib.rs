//! The dataset's fingerprint ([`fingerprint`]), the plans ([`plans`]) and preprocessing.
//!
//! Preprocessing of a dataset for one plans configuration: transpose, crop to the nonzero region,
//! normalise, resample to the target spacing, sample foreground locations, and store each case as
//! memory-mappable arrays with its properties as JSON ([`storage`]).
//!
//! [`preprocess_case`] works on arrays in memory (prediction uses it too); [`preprocess_dataset`]
//! runs it over a raw dataset in parallel, a few cases in memory at a time, and skips cases that
//! an earlier, interrupted run already finished with the same inputs and settings.

pub mod cropping;
pub mod fingerprint;
mod foreground;
pub mod normalization;
pub mod plans;
pub mod resampling;
pub mod storage;

use std::path::{Path, PathBuf};

use ndarray::{Array4, Axis};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::plans::{Configuration, Plans};
use nnunet_core::error::{Error, Result};
use nnunet_core::io::{Image, Reader, Segmentation};
use nnunet_dataset::LabelOrRegion;
use nnunet_dataset::{DatasetJson, Labels, TrainingCase, training_cases};
use normalization::Scheme;
use storage::{CaseFiles, CaseProperties};

/// A case after preprocessing.
pub struct PreprocessedCase {
    /// `[c, z, y, x]` in the configuration's (transposed) axis order and spacing.
    pub data: Array4<f32>,
    /// `[1, z, y, x]`: labels, `-1` outside the nonzero region; without an input label map, `0`
    /// inside and `-1` outside.
    pub seg: Array4<i16>,
    /// Crop, shapes and foreground locations.
    pub properties: CaseProperties,
}

/// What [`preprocess_case`] needs besides the arrays: the plans' settings for one configuration.
pub struct CaseSettings {
    transpose_forward: [usize; 3],
    target_spacing: Vec<f64>,
    schemes: Vec<Scheme>,
    use_mask: Vec<bool>,
    intensity: Vec<Option<crate::fingerprint::IntensityProperties>>,
    data_resampling: resampling::ResamplingSettings,
    seg_resampling: resampling::ResamplingSettings,
    classes: Vec<LabelOrRegion>,
}

impl CaseSettings {
    /// Settings of `configuration` in `plans`, for a dataset with `labels` and `num_channels`.
    pub fn new(
        plans: &Plans,
        configuration: &Configuration,
        labels: &Labels,
        num_channels: usize,
    ) -> Result<Self> {
        if let Some(name) = configuration
            .json
            .get("preprocessor_name")
            .and_then(serde_json::Value::as_str)
            && name != "DefaultPreprocessor"
        {
            return Err(Error::dataset_file(
                plans.path(),
                format!(
                    "configuration '{}' asks for the preprocessor '{name}'; only nnU-Net's \
                     DefaultPreprocessor exists",
                    configuration.name
                ),
            ));
        }
        let schemes = configuration
            .normalization_schemes()?
            .iter()
            .map(|n| Scheme::from_plans_name(n))
            .collect::<Result<Vec<_>>>()?;
        let use_mask = configuration.use_mask_for_norm()?;
        if schemes.len() != num_channels || use_mask.len() != num_channels {
            return Err(Error::dataset_file(
                plans.path(),
                format!(
                    "configuration '{}' has {} normalization schemes and {} use_mask_for_norm \
                     entries, but the dataset has {num_channels} channels",
                    configuration.name,
                    schemes.len(),
                    use_mask.len()
                ),
            ));
        }
        let intensity = schemes
            .iter()
            .enumerate()
            .map(|(c, s)| match s {
                Scheme::Ct => plans.intensity_properties(c).map(Some),
                _ => Ok(plans.intensity_properties(c).ok()),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CaseSettings {
            transpose_forward: plans.transpose_forward()?,
            target_spacing: configuration.spacing()?,
            schemes,
            use_mask,
            intensity,
            data_resampling: configuration.resampling_kwargs("resampling_fn_data_kwargs")?,
            seg_resampling: configuration.resampling_kwargs("resampling_fn_seg_kwargs")?,
            classes: foreground::classes_to_sample(labels),
        })
    }

    /// The target spacing in the transposed axis order; a 2-D configuration keeps the first axis's
    /// `original_spacing`.
    fn target_spacing_3d(&self, original_spacing: [f64; 3], name: &str) -> Result<[f64; 3]> {
        match self.target_spacing.as_slice() {
            [a, b] => Ok([original_spacing[0], *a, *b]),
            [a, b, c] => Ok([*a, *b, *c]),
            other => Err(Error::dataset(format!(
                "{name}: target spacing {other:?} must have 2 or 3 values"
            ))),
        }
    }
}

/// Preprocesses one case (all channels, and its label map if it has one). `name` is used in error
/// messages.
pub fn preprocess_case(
    image: Image,
    segmentation: Option<Segmentation>,
    settings: &CaseSettings,
    name: &str,
) -> Result<PreprocessedCase> {
    let Image {
        data,
        properties: image_properties,
    } = image;
    check_case_inputs(&data, segmentation.as_ref(), settings, name)?;
    let has_seg = segmentation.is_some();
    let tf = settings.transpose_forward;
    let data = transposed(data, tf);
    let seg = segmentation.map(|s| transposed(s.data, tf));
    let spacing = image_properties.spacing;
    let original_spacing = [spacing[tf[0]], spacing[tf[1]], spacing[tf[2]]];
    let shape_before_cropping = [data.shape()[1], data.shape()[2], data.shape()[3]];

    let cropped = cropping::crop_to_nonzero(data, seg);
    let (mut data, seg, bbox) = (cropped.data, cropped.seg, cropped.bbox);
    let cropped_shape = [data.shape()[1], data.shape()[2], data.shape()[3]];

    let target_spacing = settings.target_spacing_3d(original_spacing, name)?;
    let new_shape = resampling::compute_new_shape(cropped_shape, original_spacing, target_spacing);
    normalize_case(&mut data, &seg, settings, name)?;

    let in_case = |e: Error| Error::dataset(format!("{name}: {e}"));
    let data = resampling::resample_data(
        data.view(),
        new_shape,
        original_spacing,
        target_spacing,
        &settings.data_resampling,
    )
    .map_err(in_case)?;
    let seg = resampling::resample_segmentation(
        seg.view(),
        new_shape,
        original_spacing,
        target_spacing,
        &settings.seg_resampling,
    )
    .map_err(in_case)?;

    let class_locations = if has_seg {
        foreground::sample_class_locations(seg.index_axis(Axis(0), 0), &settings.classes)
            .into_iter()
            .collect()
    } else {
        Default::default()
    };
    Ok(PreprocessedCase {
        data,
        seg,
        properties: CaseProperties {
            spacing,
            image: image_properties,
            shape_before_cropping,
            bbox_used_for_cropping: bbox,
            shape_after_cropping_and_before_resampling: cropped_shape,
            class_locations,
            source_key: String::new(),
        },
    })
}

/// The image has the channels the plans normalise, and the label map (if any) its shape.
fn check_case_inputs(
    data: &Array4<f32>,
    segmentation: Option<&Segmentation>,
    settings: &CaseSettings,
    name: &str,
) -> Result<()> {
    let channels = data.shape()[0];
    if channels != settings.schemes.len() {
        return Err(Error::dataset(format!(
            "{name}: {channels} image channels, but the plans normalise {}",
            settings.schemes.len()
        )));
    }
    if let Some(seg) = segmentation
        && seg.data.shape()[1..] != data.shape()[1..]
    {
        return Err(Error::dataset(format!(
            "{name}: the label map has shape {:?} but the image has {:?}",
            &seg.data.shape()[1..],
            &data.shape()[1..]
        )));
    }
    Ok(())
}

/// `array` `[c, z, y, x]` with its spatial axes in the order `transpose_forward` gives, in
/// standard layout.
fn transposed<T: Clone>(array: Array4<T>, transpose_forward: [usize; 3]) -> Array4<T> {
    let tf = transpose_forward;
    array
        .permuted_axes([0, tf[0] + 1, tf[1] + 1, tf[2] + 1])
        .as_standard_layout()
        .into_owned()
}

/// Normalises every channel of `data` in place, with the cropped label map `seg` as the mask.
fn normalize_case(
    data: &mut Array4<f32>,
    seg: &Array4<i16>,
    settings: &CaseSettings,
    name: &str,
) -> Result<()> {
    let seg_view = seg.index_axis(Axis(0), 0);
    for (c, mut channel) in data.axis_iter_mut(Axis(0)).enumerate() {
        normalization::normalize_channel(
            channel.view_mut(),
            Some(seg_view.view()),
            settings.schemes[c],
            settings.use_mask[c],
            settings.intensity[c].as_ref(),
            c,
        )
        .map_err(|e| Error::dataset(format!("{name}: {e}")))?;
    }
    Ok(())
}

/// What [`preprocess_dataset`] did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Cases preprocessed now.
    pub written: usize,
    /// Cases left as an earlier run wrote them (same inputs and settings).
    pub reused: usize,
    /// Output folder.
    pub folder: PathBuf,
}

/// Preprocesses every training case of the raw dataset in `raw_folder` for `configuration` into
/// `output_folder` (created if needed), with `num_processes` workers. Each finished case calls
/// `on_case_done` (for a progress bar); cases whose stored files match the current inputs and
/// settings are kept. Stale cases (no longer in the dataset) are removed.
#[allow(clippy::too_many_arguments)]
pub fn preprocess_dataset(
    raw_folder: &Path,
    dataset_json: &DatasetJson,
    reader: &dyn Reader,
    plans: &Plans,
    configuration: &Configuration,
    output_folder: &Path,
    num_processes: usize,
    on_case_done: &(dyn Fn() + Sync),
) -> Result<Summary> {
    let cases = training_cases(raw_folder, dataset_json)?;
    let settings = CaseSettings::new(
        plans,
        configuration,
        &dataset_json.labels,
        dataset_json.num_channels(),
    )?;
    std::fs::create_dir_all(output_folder).map_err(|e| Error::io(output_folder, e))?;
    let settings_key = settings_key(plans, configuration, dataset_json);

    // Remove cases that are not in the dataset any more, and leftovers of interrupted writes.
    let wanted: std::collections::HashSet<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    for entry in std::fs::read_dir(output_folder).map_err(|e| Error::io(output_folder, e))? {
        let entry = entry.map_err(|e| Error::io(output_folder, e))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let case = file
            .strip_suffix("_seg.npy")
            .or_else(|| file.strip_suffix(".npy"))
            .or_else(|| file.strip_suffix(".json"));
        let stale = match case {
            Some(case) => !wanted.contains(case),
            None => file.ends_with(".partial"),
        };
        if stale {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(num_processes.max(1))
        .build()
        .map_err(|e| Error::dataset(format!("cannot start {num_processes} workers: {e}")))?;
    let outcomes: Vec<Result<bool>> = pool.install(|| {
        cases
            .par_iter()
            .map(|case| {
                let r =
                    preprocess_stored_case(case, reader, &settings, &settings_key, output_folder);
                on_case_done();
                r
            })
            .collect()
    });
    let mut summary = Summary {
        folder: output_folder.to_path_buf(),
        ..Default::default()
    };
    for outcome in outcomes {
        if outcome? {
            summary.written += 1;
        } else {
            summary.reused += 1;
        }
    }
    Ok(summary)
}

/// Preprocesses and stores one raw case unless it is stored already with the same key; returns
/// whether it was written.
fn preprocess_stored_case(
    case: &TrainingCase,
    reader: &dyn Reader,
    settings: &CaseSettings,
    settings_key: &str,
    output_folder: &Path,
) -> Result<bool> {
    let files = CaseFiles::new(output_folder, &case.id);
    let key = case_key(settings_key, case)?;
    if files.data.is_file()
        && files.seg.is_file()
        && storage::read_properties(&files.properties).is_ok_and(|p| p.source_key == key)
    {
        return Ok(false);
    }
    let image_files: Vec<&Path> = case.images.iter().map(PathBuf::as_path).collect();
    let image = reader
        .read_images(&image_files)
        .map_err(|e| Error::dataset(format!("case {}: {e}", case.id)))?;
    let seg = reader
        .read_segmentation(&case.label)
        .map_err(|e| Error::dataset(format!("case {}: {e}", case.id)))?;
    let mut done = preprocess_case(image, Some(seg), settings, &format!("case {}", case.id))?;
    done.properties.source_key = key;
    storage::write_case(&files, done.data.view(), done.seg.view(), &done.properties)?;
    Ok(true)
}

/// A digest of everything in the plans and dataset that changes the preprocessed data.
fn settings_key(
    plans: &Plans,
    configuration: &Configuration,
    dataset_json: &DatasetJson,
) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION"));
    h.update(serde_json::Value::Object(configuration.json.clone()).to_string());
    for key in [
        "transpose_forward",
        "foreground_intensity_properties_per_channel",
    ] {
        h.update(
            plans
                .json()
                .get(key)
                .map(|v| v.to_string())
                .unwrap_or_default(),
        );
    }
    h.update(format!("{:?}", dataset_json.labels.entries()));
    format!("{:x}", h.finalize())
}

/// The settings digest extended with the case's files (path, size, modification time).
fn case_key(settings_key: &str, case: &TrainingCase) -> Result<String> {
    let mut h = Sha256::new();
    h.update(settings_key);
    for file in case.images.iter().chain(std::iter::once(&case.label)) {
        let meta = std::fs::metadata(file).map_err(|e| Error::io(file, e))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.update(format!("{}|{}|{modified}\n", file.display(), meta.len()));
    }
    Ok(format!("{:x}", h.finalize()))
}
