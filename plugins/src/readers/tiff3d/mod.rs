//! `Tiff3DIO`: 3D TIFF stacks, one page per z slice, with the voxel spacing in a JSON side file, as
//! nnU-Net's reader of the same name.
//!
//! * An image channel `case_0000.tif` and a label map `case.tif` hold a 3D array, read as
//!   tifffile reads it and kept in that axis order (no transposition), as nnU-Net does: usually
//!   one single-sample page per z slice, giving `[z, y, x]`. tifffile's `{"shape": [...]}`
//!   description is honoured, so a file tifffile wrote (for example a 3- or 4-slice volume, which
//!   tifffile stores as one page with 3 or 4 samples, or a one-slice volume) reads as the array
//!   that was written. Anything that is not 3D (a single 2D page, RGB stacks) is an error, as in
//!   nnU-Net. Every sample type the `tiff` crate decodes is accepted (8 to 64-bit integers,
//!   16/32/64-bit floats).
//! * The spacing is in `case.json` next to them, `{"spacing": [s0, s1, s2]}` in array axis order:
//!   an image channel `<dir>/case_0000.tif` uses `<dir>/case.json` (the channel suffix `_XXXX` is
//!   removed), a label map `<dir>/case.tif` uses `<dir>/case.json`. Without the side file the
//!   spacing is `(1, 1, 1)` and a warning is printed, as in nnU-Net.
//! * `write_segmentation` writes a zlib (deflate) compressed multi-page TIFF, `uint8` if the
//!   largest label is below 255 and `uint16` otherwise, plus the side file
//!   `<dir>/<name without its extension>.json`, formatted as nnU-Net writes it
//!   (`json.dump(indent=4, sort_keys=True)`).
//! * `write_probabilities` writes the `[classes, z, y, x]` array losslessly as a float32
//!   multi-page TIFF (pages in class-major order, `classes * z` pages) plus the same side file;
//!   nnU-Net writes probabilities to a separate `.npz` instead. [`read_probabilities`] reads
//!   such a file back, and so does `tifffile.imread` (as the 4D array).
//!
//! Every TIFF written here carries tifffile's `{"shape": [...]}` image description, so that
//! tifffile (and thus nnU-Net) reads a one-slice stack as 3D and a probability file as 4D.
//!
//! Differences from nnU-Net, all on input nnU-Net rejects or misreads: spacings must be positive
//! and finite for images too (nnU-Net checks positivity only for label maps); a label map must
//! hold integers in `-32768..=32767`; a side file name is only shortened by a channel suffix that
//! really is `_` and four digits (nnU-Net always cuts five characters).

mod decode;
mod encode;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use ndarray::{Array4, ArrayView3, ArrayView4};
use nnunet_core::io::{Image, ImageProperties, Reader, Segmentation};
use nnunet_core::{Error, Result};

pub(crate) use decode::{guard_decoder, is_tiff_magic, read_tiff_stack, to_labels};
pub(crate) use encode::{write_label_tiff, write_probability_tiff, write_tiff};

/// The 3D TIFF reader/writer.
pub struct Tiff3DIO;

nnunet_core::register!(
    Reader,
    "Tiff3DIO",
    "3D TIFF stacks (.tif, .tiff; one page per z slice) with a case.json spacing side file, as \
     nnU-Net's Tiff3DIO",
    || Box::new(Tiff3DIO)
);

/// Reads a 3D array `[a0, a1, a2]` in tifffile's axis order: a stack of single-sample pages, or
/// whatever else tifffile reads as a 3D array (a single page with three or four samples, or a
/// file whose tifffile description says it is 3D), as nnU-Net does.
fn read_volume(file: &Path) -> Result<(Vec<f32>, [usize; 3])> {
    let stack = read_tiff_stack(file)?;
    match stack.shape()[..] {
        [a, b, c] => Ok((stack.data, [a, b, c])),
        [_, _] => Err(Error::reader_file(
            file,
            "is a single 2D page; Tiff3DIO supports only 3D images (one page per z slice). Use \
             NaturalImage2DIO (file ending .tif) for 2D images",
        )),
        ref shape => Err(Error::reader_file(
            file,
            format!(
                "holds a {}D array of shape {shape:?}; Tiff3DIO supports only 3D images (for \
                 several channels use one file per channel: case_0000.tif, case_0001.tif, ...)",
                shape.len()
            ),
        )),
    }
}

/// The side file of an image channel (`case_0000.tif` → `case.json`) or of a label map
/// (`case.tif` → `case.json`): the last extension is removed, and for an image channel also the
/// channel suffix `_XXXX`.
pub(crate) fn side_file(file: &Path, is_image: bool) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = match name.rfind('.') {
        Some(dot) => &name[..dot],
        None => &name[..],
    };
    let bytes = stem.as_bytes();
    let case = if is_image
        && bytes.len() > 5
        && bytes[bytes.len() - 5] == b'_'
        && bytes[bytes.len() - 4..].iter().all(u8::is_ascii_digit)
    {
        &stem[..stem.len() - 5]
    } else {
        stem
    };
    file.with_file_name(format!("{case}.json"))
}

/// The spacing in the side file of `file`, or `(1, 1, 1)` with a warning if there is none.
#[expect(
    clippy::print_stderr,
    reason = "a warning for the user, as nnU-Net prints it; the library has no other channel to the terminal"
)]
fn read_spacing(file: &Path, is_image: bool) -> Result<[f64; 3]> {
    let json = side_file(file, is_image);
    let text = match std::fs::read_to_string(&json) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let what = if is_image { "images" } else { "segmentation" };
            eprintln!(
                "WARNING no spacing file found for {what} {} (expected {})\nAssuming spacing \
                 (1, 1, 1).",
                file.display(),
                json.display()
            );
            return Ok([1.0; 3]);
        }
        Err(e) => return Err(Error::io(&json, e)),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::reader_file(&json, format!("not valid JSON: {e}")))?;
    let spacing: Option<Vec<f64>> = value
        .get("spacing")
        .and_then(|s| s.as_array())
        .map(|a| a.iter().map(|v| v.as_f64()).collect::<Option<Vec<f64>>>())
        .unwrap_or_default();
    match spacing.as_deref() {
        Some(&[a, b, c]) if [a, b, c].iter().all(|v| v.is_finite() && *v > 0.0) => Ok([a, b, c]),
        Some(&[a, b, c]) => Err(Error::reader_file(
            &json,
            format!("spacing must be > 0, spacing: [{a}, {b}, {c}]"),
        )),
        _ => Err(Error::reader_file(
            &json,
            "needs \"spacing\": a list of three numbers in array axis order",
        )),
    }
}

/// Writes `{"spacing": [...]}` formatted like Python's `json.dump(indent=4, sort_keys=True)`.
fn write_spacing(file: &Path, properties: &ImageProperties) -> Result<()> {
    let json = side_file(file, false);
    let values: Vec<String> = properties
        .spacing
        .iter()
        .map(|v| serde_json::Value::from(*v).to_string())
        .collect();
    let text = format!(
        "{{\n    \"spacing\": [\n        {}\n    ]\n}}",
        values.join(",\n        ")
    );
    std::fs::write(&json, text).map_err(|e| Error::io(&json, e))
}

/// Properties holding only `spacing` (no origin, direction or header data), as the TIFF and
/// natural image readers give them.
pub(crate) fn with_spacing(spacing: [f64; 3]) -> ImageProperties {
    ImageProperties {
        spacing,
        ..Default::default()
    }
}

/// Reads a probability file written by `write_probabilities` (of this reader or of
/// `NaturalImage2DIO`): a float32 TIFF whose description gives the shape `[classes, z, y, x]`.
pub fn read_probabilities(file: &Path) -> Result<Array4<f32>> {
    let stack = read_tiff_stack(file)?;
    let shape = match stack.shape()[..] {
        [c, z, y, x] => [c, z, y, x],
        [c, y, x] if stack.samples == 1 => [c, 1, y, x],
        ref other => {
            return Err(Error::reader_file(
                file,
                format!("not a probability file: holds an array of shape {other:?}"),
            ));
        }
    };
    Array4::from_shape_vec(shape, stack.data)
        .map_err(|e| Error::reader_file(file, format!("inconsistent probability file: {e}")))
}

impl Reader for Tiff3DIO {
    fn file_endings(&self) -> &[&str] {
        &[".tif", ".tiff"]
    }

    fn read_images(&self, files: &[&Path]) -> Result<Image> {
        let Some(first) = files.first() else {
            return Err(Error::reader("no image files given"));
        };
        let mut data = Vec::new();
        let mut shape = [0usize; 3];
        for file in files {
            let (values, this) = read_volume(file)?;
            if data.is_empty() {
                shape = this;
            } else if this != shape {
                return Err(Error::reader_file(
                    file,
                    format!(
                        "shape {this:?} differs from {shape:?} of {}; all channels of a case \
                         must have the same shape",
                        first.display()
                    ),
                ));
            }
            data.extend(values);
        }
        let spacing = read_spacing(first, true)?;
        let data = Array4::from_shape_vec([files.len(), shape[0], shape[1], shape[2]], data)
            .expect("the sizes were checked");
        Ok(Image {
            data,
            properties: with_spacing(spacing),
        })
    }

    fn read_segmentation(&self, file: &Path) -> Result<Segmentation> {
        let (values, [z, y, x]) = read_volume(file)?;
        let labels = to_labels(file, values.into_iter())?;
        let spacing = read_spacing(file, false)?;
        Ok(Segmentation {
            data: Array4::from_shape_vec([1, z, y, x], labels).expect("the size was checked"),
            properties: with_spacing(spacing),
        })
    }

    fn write_segmentation(
        &self,
        segmentation: ArrayView3<'_, i16>,
        file: &Path,
        properties: &ImageProperties,
    ) -> Result<()> {
        write_label_tiff(segmentation, file)?;
        write_spacing(file, properties)
    }

    fn write_probabilities(
        &self,
        probabilities: ArrayView4<'_, f32>,
        file: &Path,
        properties: &ImageProperties,
    ) -> Result<()> {
        write_probability_tiff(probabilities, file)?;
        write_spacing(file, properties)
    }
}

/// `[c, z, y, x]` → the channel `c` as `[z, y, x]` (helper for tests of other readers).
#[cfg(test)]
pub(crate) fn channel(data: &Array4<f32>, c: usize) -> ndarray::Array3<f32> {
    data.index_axis(ndarray::Axis(0), c).to_owned()
}
