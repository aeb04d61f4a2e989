//! `nnunet convert-folder`: the folder layouts researchers actually have, turned into an nnU-Net
//! v2 raw dataset with its `dataset.json`.
//!
//! Two layouts of 2D images (PNG, JPEG, BMP, TIFF):
//! * one folder per case holding the image and the label under fixed names
//!   (`cases/0/image.png`, `cases/0/label.png`);
//! * an image folder and a mask folder matched by name, the mask name carrying a suffix
//!   (`images/Image_01L.jpg` with `masks/Image_01L_1stHO.png`).
//!
//! Images are stored as lossless PNG (JPEG inputs are decoded once), grayscale or RGB (RGB stays
//! three channels, as nnU-Net reads RGB PNGs). Label values are mapped to nnU-Net's consecutive
//! labels: explicitly (`255:1`), or, for a mask holding only 0 and 255, to 0/1 automatically with
//! a message. Cases without a mask, listed test cases or a seeded fraction go to `imagesTs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageBuffer, Luma};
use nnunet_core::paths::{NnunetPaths, dataset_folder_name};
use nnunet_core::{Error, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::{create_dataset_folder, write_dataset_json};

/// Image file endings `convert-folder` reads.
pub const IMAGE_ENDINGS: &[&str] = &[".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"];

/// Where the cases are.
#[derive(Clone, Debug)]
pub enum Layout {
    /// `root/<case>/<image_name>` and `root/<case>/<label_name>`.
    PerCase {
        root: PathBuf,
        image_name: String,
        label_name: String,
    },
    /// `images/<case>.<ext>` and `labels/<case><label_suffix>.<ext>`.
    Split {
        images: PathBuf,
        labels: PathBuf,
        label_suffix: String,
    },
}

/// Which cases become test cases.
#[derive(Clone, Debug)]
pub enum TestSplit {
    /// Only cases without a label.
    None,
    /// These case names.
    Cases(Vec<String>),
    /// This fraction of the labelled cases, drawn with this seed.
    Fraction { fraction: f64, seed: u64 },
}

/// Everything `convert-folder` needs.
#[derive(Clone, Debug)]
pub struct FolderConversion {
    pub layout: Layout,
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
    pub overwrite: bool,
}

/// One case found in the input.
#[derive(Clone, Debug)]
struct Case {
    id: String,
    image: PathBuf,
    label: Option<PathBuf>,
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

fn find_cases(layout: &Layout) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    match layout {
        Layout::PerCase {
            root,
            image_name,
            label_name,
        } => {
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
                cases.push(Case {
                    id,
                    image,
                    label: label.is_file().then_some(label),
                });
            }
            if cases.is_empty() {
                return Err(Error::Invalid(format!(
                    "{}: no case folder holds an image named {image_name}",
                    root.display()
                )));
            }
        }
        Layout::Split {
            images,
            labels,
            label_suffix,
        } => {
            let label_files: Vec<PathBuf> = sorted_entries(labels)?
                .into_iter()
                .filter(|p| p.is_file() && has_image_ending(p))
                .collect();
            for image in sorted_entries(images)?
                .into_iter()
                .filter(|p| p.is_file() && has_image_ending(p))
            {
                let id = stem_without_ending(&image).expect("filtered by ending");
                let wanted = format!("{id}{label_suffix}");
                let label = label_files
                    .iter()
                    .find(|l| stem_without_ending(l).as_deref() == Some(wanted.as_str()))
                    .cloned();
                cases.push(Case { id, image, label });
            }
            if cases.is_empty() {
                return Err(Error::Invalid(format!(
                    "{}: no image files ({})",
                    images.display(),
                    IMAGE_ENDINGS.join(", ")
                )));
            }
        }
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

/// Writes the image as PNG; returns its number of channels.
fn write_image(img: &DynamicImage, grayscale: bool, path: &Path) -> Result<usize> {
    let sixteen = matches!(
        img.color(),
        image::ColorType::L16
            | image::ColorType::La16
            | image::ColorType::Rgb16
            | image::ColorType::Rgba16
    );
    if grayscale || !img.color().has_color() {
        if sixteen {
            save_png(&img.to_luma16(), path)?;
        } else {
            save_png(&img.to_luma8(), path)?;
        }
        Ok(1)
    } else {
        if sixteen {
            save_png(&img.to_rgb16(), path)?;
        } else {
            save_png(&img.to_rgb8(), path)?;
        }
        Ok(3)
    }
}

/// Runs the conversion into `nnUNet_raw/DatasetXXX_Name`.
pub fn convert_folder(job: &FolderConversion, paths: &NnunetPaths) -> Result<ConversionReport> {
    if job.dataset_name.is_empty()
        || job
            .dataset_name
            .contains(|c: char| c == '/' || c == '\\' || c.is_whitespace())
    {
        return Err(Error::Invalid(format!(
            "dataset name '{}' must be non-empty, without spaces or slashes",
            job.dataset_name
        )));
    }
    let folder_name = dataset_folder_name(job.dataset_id, &job.dataset_name);
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
    let cases = find_cases(&job.layout)?;
    let mut messages = Vec::new();

    // Pass 1: read every mask once to learn the label values, and check shapes.
    let mut found = BTreeSet::new();
    for case in &cases {
        if let Some(label) = &case.label {
            let mask = read_label(label)?;
            let (w, h) = image::image_dimensions(&case.image)
                .map_err(|e| Error::invalid_file(&case.image, format!("cannot read: {e}")))?;
            if (w, h) != mask.dimensions() {
                return Err(Error::invalid_file(
                    label,
                    format!(
                        "mask is {}x{} but its image {} is {w}x{h}",
                        mask.width(),
                        mask.height(),
                        case.image.display()
                    ),
                ));
            }
            found.extend(mask.pixels().map(|p| p[0] as i64));
        }
    }
    if found.is_empty() {
        return Err(Error::Invalid(
            "no case has a mask: nothing to train on (check the mask names or suffix)".into(),
        ));
    }
    let map = decide_mapping(&found, &job.label_map, &mut messages)?;
    let max_label = found
        .iter()
        .map(|v| map.get(v).copied().unwrap_or(*v))
        .max()
        .unwrap_or(0);

    // Which labelled cases are test cases.
    let labelled: Vec<&Case> = cases.iter().filter(|c| c.label.is_some()).collect();
    let mut test: BTreeSet<String> = cases
        .iter()
        .filter(|c| c.label.is_none())
        .map(|c| c.id.clone())
        .collect();
    match &job.test_split {
        TestSplit::None => {}
        TestSplit::Cases(names) => {
            for name in names {
                if !cases.iter().any(|c| &c.id == name) {
                    return Err(Error::Invalid(format!(
                        "test case '{name}' is not among the cases found"
                    )));
                }
                test.insert(name.clone());
            }
        }
        TestSplit::Fraction { fraction, seed } => {
            if !(0.0..1.0).contains(fraction) {
                return Err(Error::Invalid(format!(
                    "the test fraction must be at least 0 and below 1, got {fraction}"
                )));
            }
            let mut ids: Vec<&str> = labelled.iter().map(|c| c.id.as_str()).collect();
            ids.shuffle(&mut rand::rngs::StdRng::seed_from_u64(*seed));
            let n = (ids.len() as f64 * fraction).round() as usize;
            test.extend(ids.into_iter().take(n).map(str::to_string));
        }
    }
    let training: Vec<&Case> = labelled
        .iter()
        .copied()
        .filter(|c| !test.contains(&c.id))
        .collect();
    if training.is_empty() {
        return Err(Error::Invalid("every labelled case is a test case".into()));
    }

    let target = paths.raw()?.join(&folder_name);
    create_dataset_folder(&target, job.overwrite)?;
    let mut channels = None;
    for case in &cases {
        let is_test = test.contains(&case.id);
        let image = open_image(&case.image)?;
        let dir = if is_test { "imagesTs" } else { "imagesTr" };
        let n = write_image(
            &image,
            job.grayscale,
            &target.join(dir).join(format!("{}_0000.png", case.id)),
        )?;
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
        if let Some(label) = &case.label {
            let mask = read_label(label)?;
            let mapped: ImageBuffer<Luma<u16>, Vec<u16>> =
                ImageBuffer::from_fn(mask.width(), mask.height(), |x, y| {
                    let v = mask.get_pixel(x, y)[0] as i64;
                    Luma([map.get(&v).copied().unwrap_or(v) as u16])
                });
            let dir = if is_test { "labelsTs" } else { "labelsTr" };
            std::fs::create_dir_all(target.join(dir)).map_err(|e| Error::io(&target, e))?;
            let out = target.join(dir).join(format!("{}.png", case.id));
            if max_label <= 255 {
                let narrow: ImageBuffer<Luma<u8>, Vec<u8>> =
                    ImageBuffer::from_fn(mapped.width(), mapped.height(), |x, y| {
                        Luma([mapped.get_pixel(x, y)[0] as u8])
                    });
                save_png(&narrow, &out)?;
            } else {
                save_png(&mapped, &out)?;
            }
        }
    }
    let channels = channels.unwrap_or(1);
    let channel_names = match &job.channel_names {
        Some(names) if names.len() == channels => names.clone(),
        Some(names) => {
            return Err(Error::Invalid(format!(
                "{} channel name(s) given but the images have {channels} channel(s)",
                names.len()
            )));
        }
        None if channels == 3 => vec!["R".into(), "G".into(), "B".into()],
        None => vec!["image".into()],
    };
    let label_names = match &job.label_names {
        Some(names) if names.len() as i64 == max_label + 1 => names.clone(),
        Some(names) => {
            return Err(Error::Invalid(format!(
                "{} label name(s) given but the labels are 0..={max_label}",
                names.len()
            )));
        }
        None => std::iter::once("background".to_string())
            .chain((1..=max_label).map(|i| format!("label_{i}")))
            .collect(),
    };
    let mut json = serde_json::Map::new();
    json.insert(
        "channel_names".into(),
        serde_json::Value::Object(
            channel_names
                .into_iter()
                .enumerate()
                .map(|(i, n)| (i.to_string(), n.into()))
                .collect(),
        ),
    );
    json.insert(
        "labels".into(),
        serde_json::Value::Object(
            label_names
                .into_iter()
                .enumerate()
                .map(|(i, n)| (n, (i as i64).into()))
                .collect(),
        ),
    );
    json.insert("numTraining".into(), training.len().into());
    json.insert("file_ending".into(), ".png".into());
    json.insert("name".into(), job.dataset_name.clone().into());
    json.insert("converted_by".into(), "nnunet convert-folder".into());
    write_dataset_json(&target, &serde_json::Value::Object(json))?;
    Ok(ConversionReport {
        target,
        training_cases: training.len(),
        test_cases: test.len(),
        messages,
    })
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
            test_split: TestSplit::None,
            channel_names: None,
            label_names: None,
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
            labels: masks,
            label_suffix: "_1stHO".into(),
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
}
