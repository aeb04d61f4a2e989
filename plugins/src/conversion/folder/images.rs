//! Reading images and masks, and writing a case's PNG files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageBuffer, Luma};
use nnunet_core::{Error, Result};

use super::{Case, Colour};

/// Decodes the image file at `path`, its format guessed from its content.
pub(super) fn open_image(path: &Path) -> Result<DynamicImage> {
    image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .decode()
        .map_err(|e| Error::dataset_file(path, format!("cannot decode the image: {e}")))
}

/// The label values of a mask (grayscale, or RGB with equal channels).
pub(super) fn read_label(path: &Path) -> Result<ImageBuffer<Luma<u16>, Vec<u16>>> {
    let img = open_image(path)?;
    if img.color().has_color() {
        let rgb = img.to_rgb16();
        if let Some((x, y, p)) = rgb
            .enumerate_pixels()
            .find(|(_, _, p)| p[0] != p[1] || p[1] != p[2])
        {
            return Err(Error::dataset_file(
                path,
                format!(
                    "mask is in colour and pixel ({x}, {y}) is {:?}: a mask must hold one label \
                     value per pixel (grayscale)",
                    p.0
                ),
            ));
        }
    }
    let bits8 = bits_per_channel(img.color()) == 8;
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
        .map_err(|e| Error::dataset_file(image, format!("cannot read: {e}")))?;
    if (w, h) != mask.dimensions() {
        return Err(Error::dataset_file(
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
pub(super) fn decide_mapping(
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
        return Err(Error::dataset(format!(
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

/// Saves `img` as PNG at `path`.
fn save_png<P, C>(img: &ImageBuffer<P, C>, path: &Path) -> Result<()>
where
    P: image::Pixel + image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| Error::dataset_file(path, format!("cannot write: {e}")))
}

/// Bits per channel of an image's colour type (8, 16 or 32).
fn bits_per_channel(color: image::ColorType) -> u16 {
    color.bits_per_pixel() / u16::from(color.channel_count())
}

/// Writes the image as PNG; returns its number of channels.
pub(super) fn write_image(img: &DynamicImage, colour: Colour, path: &Path) -> Result<usize> {
    let sixteen = bits_per_channel(img.color()) == 16;
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

/// The label values of every mask, after checking each mask and region of interest against its
/// image's size.
pub(super) fn label_values(cases: &[Case]) -> Result<BTreeSet<i64>> {
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

/// How each case's files are written.
pub(super) struct CaseWriter<'a> {
    /// The dataset folder.
    pub(super) target: &'a Path,
    /// How image colours are stored.
    pub(super) colour: Colour,
    /// The label value mapping.
    pub(super) map: &'a BTreeMap<i64, i64>,
    /// The highest value written into label maps (the ignore label, if any).
    pub(super) max_value: i64,
    /// Outside the region of interest, labels become this (nnU-Net's ignore label).
    pub(super) ignore: Option<i64>,
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

    /// Writes every case (those in `test` as test cases); returns the images' channels, which
    /// must be the same for all (1 when there are no cases).
    pub(super) fn write_all(&self, cases: &[Case], test: &BTreeSet<String>) -> Result<usize> {
        let mut channels = None;
        for case in cases {
            let n = self.write(case, test.contains(&case.id))?;
            match channels {
                None => channels = Some(n),
                Some(c) if c != n => {
                    return Err(Error::dataset_file(
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
        Ok(channels.unwrap_or(1))
    }

    /// The folder `name` of the dataset, created if missing.
    fn folder(&self, name: &str) -> Result<PathBuf> {
        let dir = self.target.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(dir)
    }
}
