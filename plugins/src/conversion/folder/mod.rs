//! `nnunet convert-folder`: the folder layouts researchers actually have, turned into an nnU-Net
//! v2 raw dataset with its `dataset.json`; and `nnunet convert-images`: new images of any naming
//! turned into a prediction input folder.
//!
//! Two layouts of 2D images (PNG, JPEG, BMP, TIFF):
//! * one folder per case holding the image, the label and optionally a region-of-interest mask
//!   under fixed names (`cases/0/image.png`, `cases/0/label.png`, `cases/0/mask.png`);
//! * an image folder, a mask folder and optionally a region-of-interest folder, matched by name
//!   with suffixes (`images/Image_01L.jpg` with `masks/Image_01L_1stHO.png` and
//!   `rois/Image_01L_mask.png`); other files there (a second annotator's) are left alone.
//!
//! Images are stored as lossless PNG (JPEG inputs are decoded once), grayscale or RGB (RGB stays
//! three channels, as nnU-Net reads RGB PNGs). Label values are mapped to nnU-Net's consecutive
//! labels: explicitly (`255:1`), or, for a mask holding only 0 and 255, to 0/1 automatically with
//! a message. Cases without a mask, listed test cases, a seeded fraction (of cases or of groups of
//! cases) and the cases of a separate test folder go to `imagesTs` (with `labelsTs` where they have
//! a mask). Regions of interest go to `roisTr`/`roisTs` as 0/1 PNGs named like the labels; with
//! `roi_as_ignore` the label maps carry nnU-Net's `ignore` label outside them.

mod cases;
mod dataset;
mod images;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nnunet_core::paths::{NnunetPaths, dataset_folder_name};
use nnunet_core::{Error, Result};

use super::{create_dataset_folder, write_dataset_json};
use cases::{all_cases, drawn_test_cases, images_to_convert};
use dataset::{check_dataset_name, check_id_free, dataset_json};
use images::{CaseWriter, decide_mapping, label_values, open_image, write_image};

/// Image file endings `convert-folder` reads.
pub const IMAGE_ENDINGS: &[&str] = &[".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"];

/// Where the cases are.
#[derive(Clone, Debug)]
pub enum Layout {
    /// `root/<case>/<image_name>`, `root/<case>/<label_name>` and, with `roi_name`, the region of
    /// interest `root/<case>/<roi_name>`.
    PerCase {
        /// The folder holding one folder per case.
        root: PathBuf,
        /// File name of the image in each case folder.
        image_name: String,
        /// File name of the label mask in each case folder (a case without one is a test case).
        label_name: String,
        /// File name of the region of interest in each case folder, if there are any.
        roi_name: Option<String>,
    },
    /// `images/<case>.<ext>`, `labels/<case><label_suffix>.<ext>` (no labels: images only) and,
    /// with `rois`, `rois/<case><roi_suffix>.<ext>`.
    Split {
        /// The image folder.
        images: PathBuf,
        /// The mask folder, if the cases have masks.
        labels: Option<PathBuf>,
        /// What a mask's name adds to its image's name (before the ending).
        label_suffix: String,
        /// The region-of-interest folder, if there are regions of interest.
        rois: Option<PathBuf>,
        /// What a region of interest's name adds to its image's name (before the ending).
        roi_suffix: String,
    },
}

impl Layout {
    /// Whether the layout names a region of interest per case.
    pub fn has_rois(&self) -> bool {
        match self {
            Layout::PerCase { roi_name, .. } => roi_name.is_some(),
            Layout::Split { rois, .. } => rois.is_some(),
        }
    }
}

/// Which cases become test cases.
#[derive(Clone, Debug)]
pub enum TestSplit {
    /// Only cases without a label.
    None,
    /// These case names.
    Cases(Vec<String>),
    /// This fraction of the labelled cases, drawn with this seed; with `group_by` (a regular
    /// expression whose first group names a case's group) whole groups are drawn.
    Fraction {
        /// Share of the labelled cases (or groups) to draw, at least 0 and below 1.
        fraction: f64,
        /// Seed of the random draw.
        seed: u64,
        /// Regular expression whose first group names a case's group.
        group_by: Option<String>,
    },
}

/// Everything `convert-folder` needs.
#[derive(Clone, Debug)]
pub struct FolderConversion {
    /// The cases to train on (those without a label become test cases).
    pub layout: Layout,
    /// A separate folder of test cases, in the same kind of layout (labels optional).
    pub test_layout: Option<Layout>,
    /// The dataset ID (`DatasetXXX_Name`).
    pub dataset_id: u32,
    /// The dataset name (`DatasetXXX_Name`), without spaces or slashes.
    pub dataset_name: String,
    /// Explicit label value mapping `from -> to`.
    pub label_map: Vec<(i64, i64)>,
    /// Convert RGB images to one grayscale channel.
    pub grayscale: bool,
    /// Which labelled cases of `layout` become test cases.
    pub test_split: TestSplit,
    /// Channel names (one, or three for RGB); defaults: `image`, or `R`, `G`, `B`.
    pub channel_names: Option<Vec<String>>,
    /// Label names from 0 upwards; defaults: `background`, `label_1`, …
    pub label_names: Option<Vec<String>>,
    /// Outside the region of interest, label maps get nnU-Net's ignore label (one above the
    /// others, declared as `ignore` in `dataset.json`), so that training leaves it out.
    pub roi_as_ignore: bool,
    /// Replace an existing dataset folder of the same ID and name.
    pub overwrite: bool,
}

/// One case found in the input.
#[derive(Clone, Debug)]
struct Case {
    /// The case name.
    id: String,
    /// The image file.
    image: PathBuf,
    /// The label mask file, if the case has one.
    label: Option<PathBuf>,
    /// The region-of-interest file, if the layout has them.
    roi: Option<PathBuf>,
}

/// What a conversion did, for the user.
#[derive(Debug)]
pub struct ConversionReport {
    /// The dataset folder written.
    pub target: PathBuf,
    /// Cases written to `imagesTr`/`labelsTr`.
    pub training_cases: usize,
    /// Cases written to `imagesTs`.
    pub test_cases: usize,
    /// Notes for the user on what was decided (label mapping, ignore label).
    pub messages: Vec<String>,
}

/// How colours are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    /// Gray stays one channel, colour three (alpha is dropped).
    Keep,
    /// Everything one gray channel.
    Gray,
    /// Everything three channels (R, G, B).
    Rgb,
}

/// Runs the conversion into `nnUNet_raw/DatasetXXX_Name`.
pub fn convert_folder(job: &FolderConversion, paths: &NnunetPaths) -> Result<ConversionReport> {
    check_dataset_name(&job.dataset_name)?;
    let folder_name = dataset_folder_name(job.dataset_id, &job.dataset_name);
    check_id_free(job, paths, &folder_name)?;
    let (mut cases, extra_test) = all_cases(job)?;
    let mut messages = Vec::new();

    // Pass 1: read every mask once to learn the label values, and check sizes.
    let labelled_training = cases.iter().any(|c| c.label.is_some());
    cases.extend(extra_test.iter().cloned());
    let found = label_values(&cases)?;
    if !labelled_training {
        return Err(Error::dataset(
            "no training case has a mask: nothing to train on (check the mask names or suffix)",
        ));
    }
    let map = decide_mapping(&found, &job.label_map, &mut messages)?;
    let max_label = found
        .iter()
        .map(|v| map.get(v).copied().unwrap_or(*v))
        .max()
        .unwrap_or(0);
    let ignore = job.roi_as_ignore.then_some(max_label + 1);

    let (test, training) = test_cases(job, &cases, &extra_test)?;

    let target = paths.raw()?.join(&folder_name);
    create_dataset_folder(&target, job.overwrite)?;
    let writer = CaseWriter {
        target: &target,
        colour: if job.grayscale {
            Colour::Gray
        } else {
            Colour::Keep
        },
        map: &map,
        max_value: ignore.unwrap_or(max_label),
        ignore,
    };
    let channels = writer.write_all(&cases, &test)?;
    let json = dataset_json(job, channels, max_label, ignore, training)?;
    write_dataset_json(&target, &json)?;
    if ignore.is_some() {
        messages.push(format!(
            "outside the regions of interest the label maps hold the ignore label {} \
             (\"ignore\" in dataset.json): training leaves those pixels out",
            max_label + 1
        ));
    }
    Ok(ConversionReport {
        target,
        training_cases: training,
        test_cases: test.len(),
        messages,
    })
}

/// The test cases (those without a label, those the test split draws from the training layout,
/// and those of the test layout) and the number of training cases left, which must not be 0.
/// `cases` ends with the `extra_test` cases of the test layout.
fn test_cases(
    job: &FolderConversion,
    cases: &[Case],
    extra_test: &[Case],
) -> Result<(BTreeSet<String>, usize)> {
    let mut test: BTreeSet<String> = cases
        .iter()
        .filter(|c| c.label.is_none())
        .map(|c| c.id.clone())
        .collect();
    test.extend(drawn_test_cases(
        &job.test_split,
        &cases[..cases.len() - extra_test.len()],
    )?);
    test.extend(extra_test.iter().map(|c| c.id.clone()));
    let training = cases
        .iter()
        .filter(|c| c.label.is_some() && !test.contains(&c.id))
        .count();
    if training == 0 {
        return Err(Error::dataset("every labelled case is a test case"));
    }
    Ok((test, training))
}

/// What [`convert_images`] wrote.
#[derive(Debug)]
pub struct ImagesReport {
    /// Images written.
    pub images: usize,
    /// How many of them have three channels.
    pub colour: usize,
}

/// `nnunet convert-images`: new images (PNG, JPEG, BMP, TIFF, any naming) into a prediction input
/// folder: `output/<case>_0000.png` per image, as nnU-Net names a case's first channel, colour
/// kept or converted. An existing output file is kept unless `overwrite`.
pub fn convert_images(
    input: &Path,
    image_name: Option<&str>,
    output: &Path,
    colour: Colour,
    overwrite: bool,
) -> Result<ImagesReport> {
    let images = images_to_convert(input, image_name)?;
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    let targets: Vec<PathBuf> = images
        .iter()
        .map(|(id, _)| output.join(format!("{id}_0000.png")))
        .collect();
    if !overwrite && let Some(existing) = targets.iter().find(|t| t.exists()) {
        return Err(Error::dataset_file(
            existing,
            "exists already; pass --overwrite to replace the converted images",
        ));
    }
    let mut report = ImagesReport {
        images: 0,
        colour: 0,
    };
    for ((_, file), target) in images.iter().zip(&targets) {
        let channels = write_image(&open_image(file)?, colour, target)?;
        report.images += 1;
        report.colour += usize::from(channels == 3);
    }
    Ok(report)
}
