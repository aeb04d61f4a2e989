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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageBuffer, Luma};
use nnunet_core::io::required_file;
use nnunet_core::paths::{NnunetPaths, dataset_folder_name};
use nnunet_core::{Error, Result};
use nnunet_training::splits::case_groups;
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::{create_dataset_folder, write_dataset_json};

/// Image file endings `convert-folder` reads.
pub const IMAGE_ENDINGS: &[&str] = &[".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"];

/// Where the cases are.
#[derive(Clone, Debug)]
pub enum Layout {
    /// `root/<case>/<image_name>`, `root/<case>/<label_name>` and, with `roi_name`, the region of
    /// interest `root/<case>/<roi_name>`.
    PerCase {
        root: PathBuf,
        image_name: String,
        label_name: String,
        roi_name: Option<String>,
    },
    /// `images/<case>.<ext>`, `labels/<case><label_suffix>.<ext>` (no labels: images only) and,
    /// with `rois`, `rois/<case><roi_suffix>.<ext>`.
    Split {
        images: PathBuf,
        labels: Option<PathBuf>,
        label_suffix: String,
        rois: Option<PathBuf>,
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
        fraction: f64,
        seed: u64,
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
    pub dataset_id: u32,
    pub dataset_name: String,
    /// Explicit label value mapping `from -> to`.
    pub label_map: Vec<(i64, i64)>,
    /// Convert RGB images to one grayscale channel.
    pub grayscale: bool,
    pub test_split: TestSplit,
    /// Channel names (one, or three for RGB); defaults: `image`, or `R`, `G`, `B`.
    pub channel_names: Option<Vec<String>>,
    /// Label names from 0 upwards; defaults: `background`, `label_1`, …
    pub label_names: Option<Vec<String>>,
    /// Outside the region of interest, label maps get nnU-Net's ignore label (one above the
    /// others, declared as `ignore` in `dataset.json`), so that training leaves it out.
    pub roi_as_ignore: bool,
    pub overwrite: bool,
}

/// One case found in the input.
#[derive(Clone, Debug)]
struct Case {
    id: String,
    image: PathBuf,
    label: Option<PathBuf>,
    roi: Option<PathBuf>,
}

/// What a conversion did, for the user.
#[derive(Debug)]
pub struct ConversionReport {
    pub target: PathBuf,
    pub training_cases: usize,
    pub test_cases: usize,
    pub messages: Vec<String>,
}

fn has_image_ending(path: &Path) -> bool {
    let name = path.to_string_lossy().to_lowercase();
    IMAGE_ENDINGS.iter().any(|e| name.ends_with(e))
}

fn stem_without_ending(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let lower = name.to_lowercase();
    IMAGE_ENDINGS
        .iter()
        .find(|e| lower.ends_with(*e))
        .map(|e| name[..name.len() - e.len()].to_string())
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    Ok(entries)
}

/// The image files directly in `dir`, sorted.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_file() && has_image_ending(p))
        .collect())
}

/// The file of `files` whose name without its ending is `stem`.
fn file_with_stem(files: &[PathBuf], stem: &str) -> Option<PathBuf> {
    files
        .iter()
        .find(|f| stem_without_ending(f).as_deref() == Some(stem))
        .cloned()
}

fn find_cases(layout: &Layout) -> Result<Vec<Case>> {
    let cases = match layout {
        Layout::PerCase {
            root,
            image_name,
            label_name,
            roi_name,
        } => per_case_cases(root, image_name, label_name, roi_name.as_deref())?,
        Layout::Split {
            images,
            labels,
            label_suffix,
            rois,
            roi_suffix,
        } => split_cases(
            images,
            labels.as_deref().map(|l| (l, label_suffix.as_str())),
            rois.as_deref().map(|r| (r, roi_suffix.as_str())),
        )?,
    };
    Ok(cases)
}

fn per_case_cases(
    root: &Path,
    image_name: &str,
    label_name: &str,
    roi_name: Option<&str>,
) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
        let image = dir.join(image_name);
        if !image.is_file() {
            continue;
        }
        let label = dir.join(label_name);
        let id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let roi = match roi_name {
            Some(name) => Some(required_roi(dir.join(name), &id)?),
            None => None,
        };
        cases.push(Case {
            id,
            image,
            label: label.is_file().then_some(label),
            roi,
        });
    }
    if cases.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no case folder holds an image named {image_name}",
            root.display()
        )));
    }
    Ok(cases)
}

/// The region of interest `file` of case `id`, which must exist.
fn required_roi(file: PathBuf, id: &str) -> Result<PathBuf> {
    required_file(file, || {
        format!("the region of interest of case '{id}' (every case needs one)")
    })
}

fn split_cases(
    images: &Path,
    labels: Option<(&Path, &str)>,
    rois: Option<(&Path, &str)>,
) -> Result<Vec<Case>> {
    let label_files = labels.map(|(dir, _)| image_files(dir)).transpose()?;
    let roi_files = rois.map(|(dir, _)| image_files(dir)).transpose()?;
    // An image folder that also holds the masks: their files are not images.
    let not_an_image = |stem: &str| {
        [labels, rois]
            .into_iter()
            .flatten()
            .any(|(dir, suffix)| dir == images && !suffix.is_empty() && stem.ends_with(suffix))
    };
    let mut cases = Vec::new();
    for image in image_files(images)? {
        let id = stem_without_ending(&image).expect("filtered by ending");
        if not_an_image(&id) {
            continue;
        }
        let label = match (labels, &label_files) {
            (Some((_, suffix)), Some(files)) => file_with_stem(files, &format!("{id}{suffix}")),
            _ => None,
        };
        let roi = match (rois, &roi_files) {
            (Some((dir, suffix)), Some(files)) => Some(
                file_with_stem(files, &format!("{id}{suffix}")).ok_or_else(|| {
                    Error::invalid_file(
                        dir.join(format!("{id}{suffix}.png")),
                        format!(
                            "missing: the region of interest of case '{id}' ({id}{suffix} with \
                             an image ending; every case needs one)"
                        ),
                    )
                })?,
            ),
            _ => None,
        };
        cases.push(Case {
            id,
            image,
            label,
            roi,
        });
    }
    if cases.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no image files ({})",
            images.display(),
            IMAGE_ENDINGS.join(", ")
        )));
    }
    Ok(cases)
}

fn open_image(path: &Path) -> Result<DynamicImage> {
    image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .decode()
        .map_err(|e| Error::invalid_file(path, format!("cannot decode the image: {e}")))
}

/// The label values of a mask (grayscale, or RGB with equal channels).
fn read_label(path: &Path) -> Result<ImageBuffer<Luma<u16>, Vec<u16>>> {
    let img = open_image(path)?;
    if img.color().has_color() {
        let rgb = img.to_rgb16();
        if let Some((x, y, p)) = rgb
            .enumerate_pixels()
            .find(|(_, _, p)| p[0] != p[1] || p[1] != p[2])
        {
            return Err(Error::invalid_file(
                path,
                format!(
                    "mask is in colour and pixel ({x}, {y}) is {:?}: a mask must hold one label \
                     value per pixel (grayscale)",
                    p.0
                ),
            ));
        }
    }
    let bits8 = matches!(
        img.color(),
        image::ColorType::L8
            | image::ColorType::La8
            | image::ColorType::Rgb8
            | image::ColorType::Rgba8
    );
    let gray = img.to_luma16();
    if bits8 {
        // to_luma16 scales 8-bit values by 257; labels keep their 8-bit values.
        Ok(ImageBuffer::from_fn(gray.width(), gray.height(), |x, y| {
            Luma([gray.get_pixel(x, y)[0] / 257])
        }))
    } else {
        Ok(gray)
    }
}

/// A mask file (label or region of interest) checked to have its image's size.
fn read_mask_of(path: &Path, image: &Path, what: &str) -> Result<ImageBuffer<Luma<u16>, Vec<u16>>> {
    let mask = read_label(path)?;
    let (w, h) = image::image_dimensions(image)
        .map_err(|e| Error::invalid_file(image, format!("cannot read: {e}")))?;
    if (w, h) != mask.dimensions() {
        return Err(Error::invalid_file(
            path,
            format!(
                "{what} is {}x{} but its image {} is {w}x{h}",
                mask.width(),
                mask.height(),
                image.display()
            ),
        ));
    }
    Ok(mask)
}

/// The mapping to apply: the explicit one, or 255 -> 1 for 0/255 masks.
fn decide_mapping(
    found: &BTreeSet<i64>,
    explicit: &[(i64, i64)],
    messages: &mut Vec<String>,
) -> Result<BTreeMap<i64, i64>> {
    let mut map: BTreeMap<i64, i64> = explicit.iter().copied().collect();
    if map.is_empty() && found.contains(&255) && found.iter().all(|v| *v == 0 || *v == 255) {
        map.insert(255, 1);
        messages.push(
            "the masks hold only 0 and 255: mapped 255 to label 1 (pass --map to choose otherwise)"
                .into(),
        );
    }
    let mapped: BTreeSet<i64> = found
        .iter()
        .map(|v| map.get(v).copied().unwrap_or(*v))
        .collect();
    let expected: BTreeSet<i64> = (0..mapped.len() as i64).collect();
    if mapped != expected {
        let suggestion: Vec<String> = found
            .iter()
            .filter(|v| **v != 0)
            .enumerate()
            .map(|(i, v)| format!("--map {v}:{}", i + 1))
            .collect();
        return Err(Error::Invalid(format!(
            "the masks hold the values {found:?}{}; nnU-Net needs consecutive labels 0, 1, 2, …. \
             Map them, e.g. {}",
            if map.is_empty() {
                String::new()
            } else {
                format!(" (after mapping: {mapped:?})")
            },
            suggestion.join(" ")
        )));
    }
    Ok(map)
}

fn save_png<P, C>(img: &ImageBuffer<P, C>, path: &Path) -> Result<()>
where
    P: image::Pixel + image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| Error::invalid_file(path, format!("cannot write: {e}")))
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

/// Writes the image as PNG; returns its number of channels.
fn write_image(img: &DynamicImage, colour: Colour, path: &Path) -> Result<usize> {
    let sixteen = matches!(
        img.color(),
        image::ColorType::L16
            | image::ColorType::La16
            | image::ColorType::Rgb16
            | image::ColorType::Rgba16
    );
    let gray = match colour {
        Colour::Keep => !img.color().has_color(),
        Colour::Gray => true,
        Colour::Rgb => false,
    };
    match (gray, sixteen) {
        (true, true) => save_png(&img.to_luma16(), path)?,
        (true, false) => save_png(&img.to_luma8(), path)?,
        (false, true) => save_png(&img.to_rgb16(), path)?,
        (false, false) => save_png(&img.to_rgb8(), path)?,
    }
    Ok(if gray { 1 } else { 3 })
}

/// Writes a label map as PNG (8-bit when the labels fit, else 16-bit).
fn write_label_png(values: &ImageBuffer<Luma<u16>, Vec<u16>>, max: i64, path: &Path) -> Result<()> {
    if max <= 255 {
        let narrow: ImageBuffer<Luma<u8>, Vec<u8>> =
            ImageBuffer::from_fn(values.width(), values.height(), |x, y| {
                Luma([values.get_pixel(x, y)[0] as u8])
            });
        save_png(&narrow, path)
    } else {
        save_png(values, path)
    }
}

fn check_dataset_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(|c: char| c == '/' || c == '\\' || c.is_whitespace()) {
        return Err(Error::Invalid(format!(
            "dataset name '{name}' must be non-empty, without spaces or slashes"
        )));
    }
    Ok(())
}

/// The dataset ID must be free (or, with `overwrite`, be this dataset).
fn check_id_free(job: &FolderConversion, paths: &NnunetPaths, folder_name: &str) -> Result<()> {
    if let Ok(existing) = paths.dataset_name(&job.dataset_id.to_string())
        && (existing != folder_name || !job.overwrite)
    {
        return Err(Error::Dataset(format!(
            "dataset ID {} is already taken by {existing}{}",
            job.dataset_id,
            if existing == folder_name {
                "; pass --overwrite to replace it"
            } else {
                "; choose another ID"
            }
        )));
    }
    Ok(())
}

/// The label values of every mask, after checking each mask and region of interest against its
/// image's size.
fn label_values(cases: &[Case]) -> Result<BTreeSet<i64>> {
    let mut found = BTreeSet::new();
    for case in cases {
        if let Some(label) = &case.label {
            let mask = read_mask_of(label, &case.image, "mask")?;
            found.extend(mask.pixels().map(|p| i64::from(p[0])));
        }
        if let Some(roi) = &case.roi {
            read_mask_of(roi, &case.image, "region of interest")?;
        }
    }
    Ok(found)
}

/// The labelled cases of the training layout that the test split makes test cases.
fn drawn_test_cases(split: &TestSplit, cases: &[Case]) -> Result<BTreeSet<String>> {
    let labelled: Vec<String> = cases
        .iter()
        .filter(|c| c.label.is_some())
        .map(|c| c.id.clone())
        .collect();
    match split {
        TestSplit::None => Ok(BTreeSet::new()),
        TestSplit::Cases(names) => {
            for name in names {
                if !cases.iter().any(|c| &c.id == name) {
                    return Err(Error::Invalid(format!(
                        "test case '{name}' is not among the cases found"
                    )));
                }
            }
            Ok(names.iter().cloned().collect())
        }
        TestSplit::Fraction {
            fraction,
            seed,
            group_by,
        } => {
            if !(0.0..1.0).contains(fraction) {
                return Err(Error::Invalid(format!(
                    "the test fraction must be at least 0 and below 1, got {fraction} (a separate \
                     test folder is given with --test-input)"
                )));
            }
            let groups = match group_by {
                Some(pattern) => case_groups(&labelled, pattern)?,
                None => labelled.clone(),
            };
            let mut distinct: Vec<&String> =
                groups.iter().collect::<BTreeSet<_>>().into_iter().collect();
            distinct.shuffle(&mut rand::rngs::StdRng::seed_from_u64(*seed));
            let n = (distinct.len() as f64 * fraction).round() as usize;
            let chosen: BTreeSet<&String> = distinct.into_iter().take(n).collect();
            Ok(labelled
                .iter()
                .zip(&groups)
                .filter(|(_, g)| chosen.contains(g))
                .map(|(id, _)| id.clone())
                .collect())
        }
    }
}

/// How each case's files are written.
struct CaseWriter<'a> {
    target: &'a Path,
    colour: Colour,
    map: &'a BTreeMap<i64, i64>,
    /// The highest value written into label maps (the ignore label, if any).
    max_value: i64,
    /// Outside the region of interest, labels become this (nnU-Net's ignore label).
    ignore: Option<i64>,
}

impl CaseWriter<'_> {
    /// Writes the case's image, label map and region of interest; returns the image's channels.
    fn write(&self, case: &Case, is_test: bool) -> Result<usize> {
        let (images, labels, rois) = if is_test {
            ("imagesTs", "labelsTs", "roisTs")
        } else {
            ("imagesTr", "labelsTr", "roisTr")
        };
        let image = open_image(&case.image)?;
        let channels = write_image(
            &image,
            self.colour,
            &self.folder(images)?.join(format!("{}_0000.png", case.id)),
        )?;
        let roi = case.roi.as_deref().map(read_label).transpose()?;
        if let Some(roi) = &roi {
            let binary: ImageBuffer<Luma<u16>, Vec<u16>> =
                ImageBuffer::from_fn(roi.width(), roi.height(), |x, y| {
                    Luma([u16::from(roi.get_pixel(x, y)[0] != 0)])
                });
            write_label_png(
                &binary,
                1,
                &self.folder(rois)?.join(format!("{}.png", case.id)),
            )?;
        }
        if let Some(label) = &case.label {
            let mask = read_label(label)?;
            let mapped: ImageBuffer<Luma<u16>, Vec<u16>> =
                ImageBuffer::from_fn(mask.width(), mask.height(), |x, y| {
                    let outside = roi.as_ref().is_some_and(|r| r.get_pixel(x, y)[0] == 0);
                    let v = i64::from(mask.get_pixel(x, y)[0]);
                    let value = match self.ignore {
                        Some(ignore) if outside => ignore,
                        _ => self.map.get(&v).copied().unwrap_or(v),
                    };
                    Luma([value as u16])
                });
            let out = self.folder(labels)?.join(format!("{}.png", case.id));
            write_label_png(&mapped, self.max_value, &out)?;
        }
        Ok(channels)
    }

    fn folder(&self, name: &str) -> Result<PathBuf> {
        let dir = self.target.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(dir)
    }
}

/// Channel names: the given ones (one per channel), or `image`, or `R`, `G`, `B`.
fn channel_names(given: &Option<Vec<String>>, channels: usize) -> Result<Vec<String>> {
    match given {
        Some(names) if names.len() == channels => Ok(names.clone()),
        Some(names) => Err(Error::Invalid(format!(
            "{} channel name(s) given but the images have {channels} channel(s)",
            names.len()
        ))),
        None if channels == 3 => Ok(vec!["R".into(), "G".into(), "B".into()]),
        None => Ok(vec!["image".into()]),
    }
}

/// Label names from 0 to `max_label`: the given ones, or `background`, `label_1`, ….
fn label_names(given: &Option<Vec<String>>, max_label: i64) -> Result<Vec<String>> {
    match given {
        Some(names) if names.len() as i64 == max_label + 1 => Ok(names.clone()),
        Some(names) => Err(Error::Invalid(format!(
            "{} label name(s) given but the labels are 0..={max_label}",
            names.len()
        ))),
        None => Ok(std::iter::once("background".to_string())
            .chain((1..=max_label).map(|i| format!("label_{i}")))
            .collect()),
    }
}

/// The `dataset.json` of a converted dataset.
fn dataset_json(
    job: &FolderConversion,
    channels: usize,
    max_label: i64,
    ignore: Option<i64>,
    num_training: usize,
) -> Result<serde_json::Value> {
    let mut labels: serde_json::Map<String, serde_json::Value> =
        label_names(&job.label_names, max_label)?
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, (i as i64).into()))
            .collect();
    if let Some(ignore) = ignore {
        labels.insert("ignore".into(), ignore.into());
    }
    let mut json = serde_json::Map::new();
    json.insert(
        "channel_names".into(),
        serde_json::Value::Object(
            channel_names(&job.channel_names, channels)?
                .into_iter()
                .enumerate()
                .map(|(i, n)| (i.to_string(), n.into()))
                .collect(),
        ),
    );
    json.insert("labels".into(), serde_json::Value::Object(labels));
    json.insert("numTraining".into(), num_training.into());
    json.insert("file_ending".into(), ".png".into());
    json.insert("name".into(), job.dataset_name.clone().into());
    json.insert("converted_by".into(), "nnunet convert-folder".into());
    Ok(serde_json::Value::Object(json))
}

/// The cases of the training layout and of the test layout; a case name in both is an error.
fn all_cases(job: &FolderConversion) -> Result<(Vec<Case>, Vec<Case>)> {
    let cases = find_cases(&job.layout)?;
    let extra_test = match &job.test_layout {
        Some(layout) => find_cases(layout)?,
        None => Vec::new(),
    };
    if let Some(twice) = extra_test
        .iter()
        .find(|t| cases.iter().any(|c| c.id == t.id))
    {
        return Err(Error::invalid_file(
            &twice.image,
            format!(
                "the test case '{}' has the name of a training case; case names must be unique",
                twice.id
            ),
        ));
    }
    if job.roi_as_ignore && !job.layout.has_rois() {
        return Err(Error::Invalid(
            "--roi-as-ignore needs the regions of interest (--roi-name, or --rois with \
             --roi-suffix)"
                .into(),
        ));
    }
    Ok((cases, extra_test))
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
        return Err(Error::Invalid(
            "no training case has a mask: nothing to train on (check the mask names or suffix)"
                .into(),
        ));
    }
    let map = decide_mapping(&found, &job.label_map, &mut messages)?;
    let max_label = found
        .iter()
        .map(|v| map.get(v).copied().unwrap_or(*v))
        .max()
        .unwrap_or(0);
    let ignore = job.roi_as_ignore.then_some(max_label + 1);

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
        return Err(Error::Invalid("every labelled case is a test case".into()));
    }

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
    let mut channels = None;
    for case in &cases {
        let n = writer.write(case, test.contains(&case.id))?;
        match channels {
            None => channels = Some(n),
            Some(c) if c != n => {
                return Err(Error::invalid_file(
                    &case.image,
                    format!(
                        "has {n} channel(s) but earlier images have {c}; pass --grayscale to \
                         store every image as one gray channel"
                    ),
                ));
            }
            _ => {}
        }
    }
    let json = dataset_json(job, channels.unwrap_or(1), max_label, ignore, training)?;
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

/// What [`convert_images`] wrote.
#[derive(Debug)]
pub struct ImagesReport {
    /// Images written.
    pub images: usize,
    /// How many of them have three channels.
    pub colour: usize,
}

/// The images to convert: the image files directly in `input` (case = file name without its
/// ending), or, with `image_name`, `input/<case>/<image_name>`.
fn images_to_convert(input: &Path, image_name: Option<&str>) -> Result<Vec<(String, PathBuf)>> {
    let found: Vec<(String, PathBuf)> = match image_name {
        Some(name) => sorted_entries(input)?
            .into_iter()
            .filter(|d| d.join(name).is_file())
            .filter_map(|d| {
                let id = d.file_name()?.to_str()?.to_string();
                Some((id, d.join(name)))
            })
            .collect(),
        None => image_files(input)?
            .into_iter()
            .filter_map(|f| Some((stem_without_ending(&f)?, f)))
            .collect(),
    };
    if found.is_empty() {
        return Err(Error::invalid_file(
            input,
            match image_name {
                Some(name) => format!("no case folder holds an image named {name}"),
                None => format!("no image files ({})", IMAGE_ENDINGS.join(", ")),
            },
        ));
    }
    for pair in found.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(Error::invalid_file(
                &pair[1].1,
                format!(
                    "has the name of {} without its ending; the cases would have the same name",
                    pair[0].1.display()
                ),
            ));
        }
    }
    Ok(found)
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
        return Err(Error::invalid_file(
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

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn paths(raw: &Path) -> NnunetPaths {
        NnunetPaths::new(Some(raw.to_path_buf()), None, None)
    }

    fn job(layout: Layout) -> FolderConversion {
        FolderConversion {
            layout,
            dataset_id: 7,
            dataset_name: "Cells".into(),
            label_map: Vec::new(),
            grayscale: false,
            test_layout: None,
            test_split: TestSplit::None,
            channel_names: None,
            label_names: None,
            roi_as_ignore: false,
            overwrite: false,
        }
    }

    fn write_case(dir: &Path, mask_value: u8) {
        std::fs::create_dir_all(dir).unwrap();
        RgbImage::from_fn(6, 4, |x, y| Rgb([x as u8 * 10, y as u8 * 20, 7]))
            .save(dir.join("image.png"))
            .unwrap();
        ImageBuffer::<Luma<u8>, Vec<u8>>::from_fn(6, 4, |x, _| {
            Luma([if x > 2 { mask_value } else { 0 }])
        })
        .save(dir.join("label.png"))
        .unwrap();
    }

    #[test]
    fn per_case_folders_with_0_255_masks() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("cases");
        for case in ["0", "1", "2"] {
            write_case(&input.join(case), 255);
        }
        std::fs::create_dir_all(input.join("3")).unwrap();
        RgbImage::new(6, 4)
            .save(input.join("3").join("image.png"))
            .unwrap();
        let raw = tmp.path().join("raw");
        let layout = Layout::PerCase {
            root: input,
            image_name: "image.png".into(),
            label_name: "label.png".into(),
            roi_name: None,
        };
        let report = convert_folder(&job(layout.clone()), &paths(&raw)).unwrap();
        assert_eq!((report.training_cases, report.test_cases), (3, 1));
        assert!(
            report.messages[0].contains("0 and 255"),
            "{:?}",
            report.messages
        );
        let target = raw.join("Dataset007_Cells");
        let label = image::open(target.join("labelsTr/1.png"))
            .unwrap()
            .to_luma8();
        assert_eq!(label.get_pixel(5, 0)[0], 1);
        assert_eq!(label.get_pixel(0, 0)[0], 0);
        let img = image::open(target.join("imagesTr/2_0000.png"))
            .unwrap()
            .to_rgb8();
        assert_eq!(img.get_pixel(3, 2).0, [30, 40, 7]);
        assert!(target.join("imagesTs/3_0000.png").is_file());
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(target.join("dataset.json")).unwrap())
                .unwrap();
        assert_eq!(
            json["channel_names"],
            serde_json::json!({"0": "R", "1": "G", "2": "B"})
        );
        assert_eq!(
            json["labels"],
            serde_json::json!({"background": 0, "label_1": 1})
        );
        assert_eq!(json["numTraining"], 3);
        assert_eq!(json["file_ending"], ".png");
        // A second run refuses to overwrite.
        let err = convert_folder(&job(layout.clone()), &paths(&raw))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--overwrite"), "{err}");
        let mut again = job(layout);
        again.overwrite = true;
        again.grayscale = true;
        convert_folder(&again, &paths(&raw)).unwrap();
        let img = image::open(target.join("imagesTr/2_0000.png")).unwrap();
        assert_eq!(img.color(), image::ColorType::L8);
    }

    #[test]
    fn split_folders_with_suffix_jpeg_and_fraction() {
        let tmp = tempfile::tempdir().unwrap();
        let images = tmp.path().join("images");
        let masks = tmp.path().join("masks");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(&masks).unwrap();
        for i in 0..10 {
            ImageBuffer::<Luma<u8>, Vec<u8>>::from_fn(8, 8, |x, y| Luma([(x * y) as u8]))
                .save(images.join(format!("Image_{i:02}L.jpg")))
                .unwrap();
            ImageBuffer::<Luma<u8>, Vec<u8>>::from_fn(8, 8, |x, _| Luma([(x % 3) as u8 * 100]))
                .save(masks.join(format!("Image_{i:02}L_1stHO.png")))
                .unwrap();
        }
        let layout = Layout::Split {
            images,
            labels: Some(masks),
            label_suffix: "_1stHO".into(),
            rois: None,
            roi_suffix: String::new(),
        };
        let raw = tmp.path().join("raw");
        let mut j = job(layout);
        // 0, 100, 200 are not consecutive: refused with a suggestion.
        let err = convert_folder(&j, &paths(&raw)).unwrap_err().to_string();
        assert!(err.contains("--map 100:1 --map 200:2"), "{err}");
        assert!(!raw.join("Dataset007_Cells").exists());
        j.label_map = vec![(100, 1), (200, 2)];
        j.test_split = TestSplit::Fraction {
            fraction: 0.2,
            seed: 1,
            group_by: None,
        };
        j.label_names = Some(vec!["bg".into(), "a".into(), "b".into()]);
        let report = convert_folder(&j, &paths(&raw)).unwrap();
        assert_eq!((report.training_cases, report.test_cases), (8, 2));
        let target = raw.join("Dataset007_Cells");
        let pngs = std::fs::read_dir(target.join("imagesTr")).unwrap().count();
        assert_eq!(pngs, 8);
        assert_eq!(
            std::fs::read_dir(target.join("labelsTs")).unwrap().count(),
            2
        );
        let label = image::open(
            target.join("labelsTr").join(
                std::fs::read_dir(target.join("labelsTr"))
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .file_name(),
            ),
        )
        .unwrap()
        .to_luma8();
        assert_eq!(label.get_pixel(2, 0)[0], 2);
    }

    #[test]
    fn bad_inputs_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("cases");
        write_case(&input.join("a"), 1);
        ImageBuffer::<Luma<u8>, Vec<u8>>::new(3, 3)
            .save(input.join("a").join("label.png"))
            .unwrap();
        let layout = Layout::PerCase {
            root: input.clone(),
            image_name: "image.png".into(),
            label_name: "label.png".into(),
            roi_name: None,
        };
        let raw = tmp.path().join("raw");
        let err = convert_folder(&job(layout.clone()), &paths(&raw))
            .unwrap_err()
            .to_string();
        assert!(err.contains("label.png") && err.contains("3x3"), "{err}");
        std::fs::write(input.join("a").join("label.png"), b"\x89PNG truncated").unwrap();
        let err = convert_folder(&job(layout), &paths(&raw))
            .unwrap_err()
            .to_string();
        assert!(err.contains("label.png") && err.contains("cannot"), "{err}");
    }

    fn write_roi(dir: &Path, name: &str) {
        ImageBuffer::<Luma<u8>, Vec<u8>>::from_fn(6, 4, |_, y| Luma([if y > 0 { 255 } else { 0 }]))
            .save(dir.join(name))
            .unwrap();
    }

    #[test]
    fn rois_ignore_label_and_separate_test_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let (train, test) = (tmp.path().join("train"), tmp.path().join("test"));
        for (root, cases) in [(&train, ["a", "b", "c"]), (&test, ["t1", "t2", "t3"])] {
            for case in cases {
                write_case(&root.join(case), 255);
                write_roi(&root.join(case), "mask.png");
            }
        }
        // An image-only test case.
        std::fs::remove_file(test.join("t3").join("label.png")).unwrap();
        let layout = |root: &Path| Layout::PerCase {
            root: root.to_path_buf(),
            image_name: "image.png".into(),
            label_name: "label.png".into(),
            roi_name: Some("mask.png".into()),
        };
        let raw = tmp.path().join("raw");
        let mut j = job(layout(&train));
        j.test_layout = Some(layout(&test));
        j.roi_as_ignore = true;
        let report = convert_folder(&j, &paths(&raw)).unwrap();
        assert_eq!((report.training_cases, report.test_cases), (3, 3));
        let target = raw.join("Dataset007_Cells");
        let label = image::open(target.join("labelsTr/a.png"))
            .unwrap()
            .to_luma8();
        // Row 0 is outside the region of interest: the ignore label 2.
        assert_eq!(label.get_pixel(5, 0)[0], 2);
        assert_eq!((label.get_pixel(5, 1)[0], label.get_pixel(0, 1)[0]), (1, 0));
        let roi = image::open(target.join("roisTs/t3.png"))
            .unwrap()
            .to_luma8();
        assert_eq!((roi.get_pixel(0, 0)[0], roi.get_pixel(0, 1)[0]), (0, 1));
        assert!(target.join("labelsTs/t1.png").is_file());
        assert!(!target.join("labelsTs/t3.png").exists());
        assert!(target.join("imagesTs/t3_0000.png").is_file());
        assert!(target.join("roisTr/b.png").is_file());
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(target.join("dataset.json")).unwrap())
                .unwrap();
        assert_eq!(
            json["labels"],
            serde_json::json!({"background": 0, "label_1": 1, "ignore": 2})
        );
        // A missing or mis-sized region of interest is named.
        std::fs::remove_file(test.join("t2").join("mask.png")).unwrap();
        j.overwrite = true;
        let err = convert_folder(&j, &paths(&raw)).unwrap_err().to_string();
        assert!(
            err.contains("t2") && err.contains("mask.png") && err.contains("missing"),
            "{err}"
        );
        ImageBuffer::<Luma<u8>, Vec<u8>>::new(2, 2)
            .save(test.join("t2").join("mask.png"))
            .unwrap();
        let err = convert_folder(&j, &paths(&raw)).unwrap_err().to_string();
        assert!(err.contains("mask.png") && err.contains("2x2"), "{err}");
        // The ignore label needs regions of interest.
        let mut no_rois = job(Layout::PerCase {
            root: train,
            image_name: "image.png".into(),
            label_name: "label.png".into(),
            roi_name: None,
        });
        no_rois.roi_as_ignore = true;
        no_rois.overwrite = true;
        let err = convert_folder(&no_rois, &paths(&raw))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--roi-as-ignore"), "{err}");
    }

    #[test]
    fn test_fraction_draws_whole_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("cases");
        for i in 0..10 {
            for eye in ["L", "R"] {
                write_case(&input.join(format!("Image_{i:02}{eye}")), 255);
            }
        }
        let raw = tmp.path().join("raw");
        let mut j = job(Layout::PerCase {
            root: input,
            image_name: "image.png".into(),
            label_name: "label.png".into(),
            roi_name: None,
        });
        j.test_split = TestSplit::Fraction {
            fraction: 0.3,
            seed: 3,
            group_by: Some(r"^(Image_\d+)".into()),
        };
        let report = convert_folder(&j, &paths(&raw)).unwrap();
        assert_eq!((report.training_cases, report.test_cases), (14, 6));
        let test: Vec<String> = std::fs::read_dir(raw.join("Dataset007_Cells/imagesTs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        for name in &test {
            let other = if name.contains("L_") {
                name.replace("L_", "R_")
            } else {
                name.replace("R_", "L_")
            };
            assert!(test.contains(&other), "{name} without {other}: {test:?}");
        }
    }

    #[test]
    fn images_become_a_prediction_input_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("new");
        std::fs::create_dir_all(&input).unwrap();
        RgbImage::from_fn(5, 3, |x, _| Rgb([x as u8, 9, 200]))
            .save(input.join("Eye 1.jpg"))
            .unwrap();
        ImageBuffer::<Luma<u8>, Vec<u8>>::from_fn(5, 3, |x, _| Luma([x as u8]))
            .save(input.join("other.png"))
            .unwrap();
        let out = tmp.path().join("imagesTs");
        let report = convert_images(&input, None, &out, Colour::Gray, false).unwrap();
        assert_eq!((report.images, report.colour), (2, 0));
        let gray = image::open(out.join("Eye 1_0000.png")).unwrap();
        assert_eq!(gray.color(), image::ColorType::L8);
        let err = convert_images(&input, None, &out, Colour::Keep, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--overwrite"), "{err}");
        let report = convert_images(&input, None, &out, Colour::Rgb, true).unwrap();
        assert_eq!(report.colour, 2);
        let rgb = image::open(out.join("other_0000.png")).unwrap();
        assert_eq!(rgb.color(), image::ColorType::Rgb8);
        // The same name twice is refused.
        ImageBuffer::<Luma<u8>, Vec<u8>>::new(2, 2)
            .save(input.join("other.bmp"))
            .unwrap();
        let err = convert_images(&input, None, &out, Colour::Keep, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("other"), "{err}");
    }
}
