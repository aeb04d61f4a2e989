//! Encoding TIFF files: deflate-compressed multi-page TIFFs with tifffile's shape description.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::Path;

use ndarray::{ArrayView3, ArrayView4};
use nnunet_core::{Error, Result};
use tiff::TiffError;
use tiff::encoder::{Compression, DeflateLevel, TiffEncoder, TiffKind, colortype};
use tiff::tags::Tag;

/// Sample types this module writes to TIFF.
pub(crate) trait TiffSample: Copy {
    /// The TIFF grayscale colour type storing one sample of this type.
    type Color: colortype::ColorType<Inner = Self>;
}
impl TiffSample for u8 {
    type Color = colortype::Gray8;
}
impl TiffSample for u16 {
    type Color = colortype::Gray16;
}
impl TiffSample for f32 {
    type Color = colortype::Gray32Float;
}

/// The pages to write: `pages` pages of `height × width` samples of `data`, the first page
/// carrying `description`.
struct Pages<'a, T> {
    /// Number of pages.
    pages: usize,
    /// Page height in pixels.
    height: usize,
    /// Page width in pixels.
    width: usize,
    /// The samples of all pages, page after page.
    data: &'a [T],
    /// tifffile's JSON shape description.
    description: &'a str,
}

/// Writes `p` deflate-compressed with `encoder` (a TIFF or BigTIFF encoder, or the error of
/// creating it).
fn write_pages_with<W: Write + Seek, K: TiffKind, T: TiffSample>(
    encoder: std::result::Result<TiffEncoder<W, K>, TiffError>,
    p: &Pages<'_, T>,
) -> std::result::Result<(), TiffError>
where
    [T]: tiff::encoder::TiffValue,
{
    let mut encoder = encoder?.with_compression(Compression::Deflate(DeflateLevel::Balanced));
    let page_len = p.height * p.width;
    for page in 0..p.pages {
        let mut image = encoder.new_image::<T::Color>(p.width as u32, p.height as u32)?;
        if page == 0 {
            image
                .encoder()
                .write_tag(Tag::ImageDescription, p.description)?;
        }
        image.write_data(&p.data[page * page_len..(page + 1) * page_len])?;
    }
    Ok(())
}

/// Writes `data` (`shape`, the last two axes being y and x) as a deflate-compressed multi-page
/// TIFF with tifffile's shape description. BigTIFF is used when the data would not fit a TIFF.
pub(crate) fn write_tiff<T: TiffSample>(file: &Path, shape: &[usize], data: &[T]) -> Result<()>
where
    [T]: tiff::encoder::TiffValue,
{
    let n = shape.len();
    if n < 2 || shape.contains(&0) || shape.iter().product::<usize>() != data.len() {
        return Err(Error::reader_file(
            file,
            format!("cannot write an empty or inconsistent array of shape {shape:?}"),
        ));
    }
    let (height, width) = (shape[n - 2], shape[n - 1]);
    if u32::try_from(height).is_err() || u32::try_from(width).is_err() {
        return Err(Error::reader_file(file, "the image is too large for TIFF"));
    }
    let description = serde_json::json!({ "shape": shape }).to_string();
    let pages = Pages {
        pages: data.len() / (height * width),
        height,
        width,
        data,
        description: &description,
    };
    let handle = File::create(file).map_err(|e| Error::io(file, e))?;
    let mut writer = BufWriter::new(handle);
    let big = std::mem::size_of_val(data) as u64 > 3_900_000_000;
    let written = if big {
        write_pages_with(TiffEncoder::new_big(&mut writer), &pages)
    } else {
        write_pages_with(TiffEncoder::new(&mut writer), &pages)
    };
    written.map_err(|e| Error::reader_file(file, format!("cannot write the TIFF file: {e}")))?;
    writer.flush().map_err(|e| Error::io(file, e))
}

/// Writes a label map `[z, y, x]` as `uint8` if its largest value is below 255, else `uint16`
/// (nnU-Net's rule). Negative labels are an error.
pub(crate) fn write_label_tiff(segmentation: ArrayView3<'_, i16>, file: &Path) -> Result<()> {
    if let Some(bad) = segmentation.iter().find(|v| **v < 0) {
        return Err(Error::reader_file(
            file,
            format!("cannot write a label map holding the negative label {bad}"),
        ));
    }
    let shape = segmentation.shape().to_vec();
    let max = segmentation.iter().copied().max().unwrap_or(0);
    if max < 255 {
        let data: Vec<u8> = segmentation.iter().map(|v| *v as u8).collect();
        write_tiff(file, &shape, &data)
    } else {
        let data: Vec<u16> = segmentation.iter().map(|v| *v as u16).collect();
        write_tiff(file, &shape, &data)
    }
}

/// Writes probabilities `[classes, z, y, x]` losslessly as a float32 TIFF (pages in class-major
/// order), read back by [`super::read_probabilities`].
pub(crate) fn write_probability_tiff(
    probabilities: ArrayView4<'_, f32>,
    file: &Path,
) -> Result<()> {
    let data: Vec<f32> = probabilities.iter().copied().collect();
    write_tiff(file, probabilities.shape(), &data)
}
