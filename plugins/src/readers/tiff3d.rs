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

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use ndarray::{Array4, ArrayView3, ArrayView4};
use nnunet_core::io::{Image, ImageProperties, Reader, Segmentation};
use nnunet_core::{Error, Result};
use tiff::decoder::{Decoder, DecodingResult};
use tiff::encoder::{Compression, DeflateLevel, TiffEncoder, TiffKind, colortype};
use tiff::tags::Tag;
use tiff::{ColorType, TiffError};

/// The 3D TIFF reader/writer.
pub struct Tiff3DIO;

nnunet_core::register!(
    Reader,
    "Tiff3DIO",
    "3D TIFF stacks (.tif, .tiff; one page per z slice) with a case.json spacing side file, as \
     nnU-Net's Tiff3DIO",
    || Box::new(Tiff3DIO)
);

/// The pages of one TIFF file, decoded to `f32` in storage order: page after page, each page
/// `[height, width, samples]` (interleaved) or `[samples, height, width]` (planar).
pub(crate) struct TiffStack {
    pub pages: usize,
    pub samples: usize,
    pub height: usize,
    pub width: usize,
    pub planar: bool,
    pub data: Vec<f32>,
    /// The `shape` of tifffile's JSON image description on the first page, if there is one.
    pub described_shape: Option<Vec<usize>>,
}

impl TiffStack {
    /// The array shape tifffile gives the file: the shape in its JSON description when that fits
    /// the data, otherwise `[pages,] height, width[, samples]` (`[pages,] samples, height, width`
    /// for planar pages), without a page axis for a single page and without a sample axis for
    /// one sample. `data` is this array in C order.
    pub(crate) fn shape(&self) -> Vec<usize> {
        if let Some(shape) = &self.described_shape
            && !shape.is_empty()
            && shape.iter().product::<usize>() == self.data.len()
        {
            return shape.clone();
        }
        let mut shape = Vec::with_capacity(4);
        if self.pages > 1 {
            shape.push(self.pages);
        }
        if self.samples > 1 && self.planar {
            shape.push(self.samples);
        }
        shape.extend([self.height, self.width]);
        if self.samples > 1 && !self.planar {
            shape.push(self.samples);
        }
        shape
    }
}

/// Whether `bytes` start like a TIFF or BigTIFF file.
pub(crate) fn is_tiff_magic(bytes: &[u8]) -> bool {
    matches!(
        bytes.get(..4),
        Some([b'I', b'I', 42, 0] | [b'M', b'M', 0, 42] | [b'I', b'I', 43, 0] | [b'M', b'M', 0, 43])
    )
}

fn tiff_error(file: &Path, e: TiffError) -> Error {
    match e {
        TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::invalid_file(file, "the TIFF file is truncated (it ends too early)")
        }
        TiffError::IoError(io) => Error::io(file, io),
        TiffError::LimitsExceeded => Error::invalid_file(
            file,
            "a TIFF page is larger than the decoder allows (256 MiB per page); the file is \
             corrupt or too large",
        ),
        other => Error::invalid_file(file, format!("not a readable TIFF file: {other}")),
    }
}

fn decoding_len(result: &DecodingResult) -> usize {
    match result {
        DecodingResult::U8(v) => v.len(),
        DecodingResult::U16(v) => v.len(),
        DecodingResult::U32(v) => v.len(),
        DecodingResult::U64(v) => v.len(),
        DecodingResult::F16(v) => v.len(),
        DecodingResult::F32(v) => v.len(),
        DecodingResult::F64(v) => v.len(),
        DecodingResult::I8(v) => v.len(),
        DecodingResult::I16(v) => v.len(),
        DecodingResult::I32(v) => v.len(),
        DecodingResult::I64(v) => v.len(),
    }
}

/// Appends the decoded samples to `out` as `f32`, in storage order.
fn append_page(result: &DecodingResult, out: &mut Vec<f32>) {
    fn push<T: Copy>(values: &[T], out: &mut Vec<f32>, f: fn(T) -> f32) {
        out.extend(values.iter().map(|v| f(*v)));
    }
    match result {
        DecodingResult::U8(v) => push(v, out, f32::from),
        DecodingResult::U16(v) => push(v, out, f32::from),
        DecodingResult::U32(v) => push(v, out, |x| x as f32),
        DecodingResult::U64(v) => push(v, out, |x| x as f32),
        DecodingResult::F16(v) => push(v, out, |x| x.to_f32()),
        DecodingResult::F32(v) => push(v, out, |x| x),
        DecodingResult::F64(v) => push(v, out, |x| x as f32),
        DecodingResult::I8(v) => push(v, out, f32::from),
        DecodingResult::I16(v) => push(v, out, f32::from),
        DecodingResult::I32(v) => push(v, out, |x| x as f32),
        DecodingResult::I64(v) => push(v, out, |x| x as f32),
    }
}

/// The `shape` of a tifffile JSON description such as `{"shape": [4, 32, 32]}`.
fn described_shape(description: &str) -> Option<Vec<usize>> {
    let value: serde_json::Value = serde_json::from_str(description.trim_end_matches('\0')).ok()?;
    value
        .get("shape")?
        .as_array()?
        .iter()
        .map(|v| v.as_u64().and_then(|v| usize::try_from(v).ok()))
        .collect()
}

/// Runs a decoder on `file`, turning a panic inside the decoding library (which must not happen,
/// but malformed files are what decoders get wrong) into an error naming the file.
pub(crate) fn guard_decoder<T>(file: &Path, decode: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|_| {
        Err(Error::invalid_file(
            file,
            "the decoder failed on malformed data; the file is corrupt",
        ))
    })
}

/// Decodes every page of a TIFF file. All pages must have the same size and sample layout;
/// anything wrong is an error naming the file (and the page).
pub(crate) fn read_tiff_stack(file: &Path) -> Result<TiffStack> {
    guard_decoder(file, || decode_tiff_stack(file))
}

fn decode_tiff_stack(file: &Path) -> Result<TiffStack> {
    let handle = File::open(file).map_err(|e| Error::io(file, e))?;
    let mut decoder = Decoder::new(BufReader::new(handle)).map_err(|e| tiff_error(file, e))?;
    let described = decoder
        .get_tag_ascii_string(Tag::ImageDescription)
        .ok()
        .and_then(|d| described_shape(&d));
    let mut data = Vec::new();
    let mut buffer = DecodingResult::U8(Vec::new());
    let mut first: Option<(usize, usize, ColorType, bool)> = None;
    let mut pages = 0usize;
    loop {
        let page_error = |reason: String| {
            Error::invalid_file(file, format!("page {} (counting from 0): {reason}", pages))
        };
        let (width, height) = decoder.dimensions().map_err(|e| tiff_error(file, e))?;
        let (width, height) = (width as usize, height as usize);
        if width == 0 || height == 0 {
            return Err(page_error(format!(
                "the page is empty ({width} x {height} pixels)"
            )));
        }
        let color = decoder.colortype().map_err(|e| tiff_error(file, e))?;
        let samples = match color {
            ColorType::Gray(_)
            | ColorType::Palette(_)
            | ColorType::RGB(_)
            | ColorType::RGBA(_)
            | ColorType::GrayA(_)
            | ColorType::Multiband { .. } => usize::from(color.num_samples()),
            other => {
                return Err(page_error(format!(
                    "unsupported colour model {other:?}; store intensities as grayscale samples"
                )));
            }
        };
        if !matches!(color.bit_depth(), 8 | 16 | 32 | 64) {
            return Err(page_error(format!(
                "{} bits per sample is not supported; use 8, 16, 32 or 64 bits",
                color.bit_depth()
            )));
        }
        let layout = decoder
            .read_image_to_buffer(&mut buffer)
            .map_err(|e| tiff_error(file, e))?;
        let planar = layout.planes > 1;
        match first {
            None => first = Some((width, height, color, planar)),
            Some((w, h, c, p)) if (w, h, c, p) != (width, height, color, planar) => {
                return Err(page_error(format!(
                    "{width} x {height} pixels of {color:?} differ from the first page's \
                     {w} x {h} pixels of {c:?}; every page of a stack must be alike"
                )));
            }
            Some(_) => {}
        }
        let expected = width * height * samples;
        if decoding_len(&buffer) != expected {
            return Err(page_error(format!(
                "decoded {} samples instead of {expected}; the page layout is not supported",
                decoding_len(&buffer)
            )));
        }
        append_page(&buffer, &mut data);
        pages += 1;
        if !decoder.more_images() {
            break;
        }
        decoder.next_image().map_err(|e| tiff_error(file, e))?;
    }
    let (width, height, color, planar) = first.expect("at least one page was decoded");
    Ok(TiffStack {
        pages,
        samples: usize::from(color.num_samples()),
        height,
        width,
        planar,
        data,
        described_shape: described,
    })
}

/// Reads a 3D array `[a0, a1, a2]` in tifffile's axis order: a stack of single-sample pages, or
/// whatever else tifffile reads as a 3D array (a single page with three or four samples, or a
/// file whose tifffile description says it is 3D), as nnU-Net does.
fn read_volume(file: &Path) -> Result<(Vec<f32>, [usize; 3])> {
    let stack = read_tiff_stack(file)?;
    match stack.shape()[..] {
        [a, b, c] => Ok((stack.data, [a, b, c])),
        [_, _] => Err(Error::invalid_file(
            file,
            "is a single 2D page; Tiff3DIO supports only 3D images (one page per z slice). Use \
             NaturalImage2DIO (file ending .tif) for 2D images",
        )),
        ref shape => Err(Error::invalid_file(
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
        .map_err(|e| Error::invalid_file(&json, format!("not valid JSON: {e}")))?;
    let spacing: Option<Vec<f64>> = value
        .get("spacing")
        .and_then(|s| s.as_array())
        .map(|a| a.iter().map(|v| v.as_f64()).collect::<Option<Vec<f64>>>())
        .unwrap_or_default();
    match spacing.as_deref() {
        Some(&[a, b, c]) if [a, b, c].iter().all(|v| v.is_finite() && *v > 0.0) => Ok([a, b, c]),
        Some(&[a, b, c]) => Err(Error::invalid_file(
            &json,
            format!("spacing must be > 0, spacing: [{a}, {b}, {c}]"),
        )),
        _ => Err(Error::invalid_file(
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

/// Sample types this module writes to TIFF.
pub(crate) trait TiffSample: Copy {
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

fn write_pages_with<W: Write + Seek, K: TiffKind, T: TiffSample>(
    mut encoder: TiffEncoder<W, K>,
    pages: usize,
    height: usize,
    width: usize,
    data: &[T],
    description: &str,
) -> std::result::Result<(), TiffError>
where
    [T]: tiff::encoder::TiffValue,
{
    let page_len = height * width;
    for page in 0..pages {
        let mut image = encoder.new_image::<T::Color>(width as u32, height as u32)?;
        if page == 0 {
            image
                .encoder()
                .write_tag(Tag::ImageDescription, description)?;
        }
        image.write_data(&data[page * page_len..(page + 1) * page_len])?;
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
        return Err(Error::invalid_file(
            file,
            format!("cannot write an empty or inconsistent array of shape {shape:?}"),
        ));
    }
    let (height, width) = (shape[n - 2], shape[n - 1]);
    if u32::try_from(height).is_err() || u32::try_from(width).is_err() {
        return Err(Error::invalid_file(file, "the image is too large for TIFF"));
    }
    let pages = data.len() / (height * width);
    let description = serde_json::json!({ "shape": shape }).to_string();
    let handle = File::create(file).map_err(|e| Error::io(file, e))?;
    let mut writer = BufWriter::new(handle);
    let compression = Compression::Deflate(DeflateLevel::Balanced);
    let big = std::mem::size_of_val(data) as u64 > 3_900_000_000;
    let written = if big {
        TiffEncoder::new_big(&mut writer).and_then(|e| {
            write_pages_with(
                e.with_compression(compression),
                pages,
                height,
                width,
                data,
                &description,
            )
        })
    } else {
        TiffEncoder::new(&mut writer).and_then(|e| {
            write_pages_with(
                e.with_compression(compression),
                pages,
                height,
                width,
                data,
                &description,
            )
        })
    };
    written.map_err(|e| Error::invalid_file(file, format!("cannot write the TIFF file: {e}")))?;
    writer.flush().map_err(|e| Error::io(file, e))
}

/// Writes a label map `[z, y, x]` as `uint8` if its largest value is below 255, else `uint16`
/// (nnU-Net's rule). Negative labels are an error.
pub(crate) fn write_label_tiff(segmentation: ArrayView3<'_, i16>, file: &Path) -> Result<()> {
    if let Some(bad) = segmentation.iter().find(|v| **v < 0) {
        return Err(Error::invalid_file(
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

/// Converts decoded label values to `i16`, naming the file on a value that is not an integer
/// label.
pub(crate) fn to_labels(file: &Path, values: impl Iterator<Item = f32>) -> Result<Vec<i16>> {
    values
        .map(|v| {
            if v.fract() == 0.0 && (f32::from(i16::MIN)..=f32::from(i16::MAX)).contains(&v) {
                Ok(v as i16)
            } else {
                Err(Error::invalid_file(
                    file,
                    format!("label map holds {v}, which is not an integer label in -32768..=32767"),
                ))
            }
        })
        .collect()
}

/// Reads a probability file written by `write_probabilities` (of this reader or of
/// `NaturalImage2DIO`): a float32 TIFF whose description gives the shape `[classes, z, y, x]`.
pub fn read_probabilities(file: &Path) -> Result<Array4<f32>> {
    let stack = read_tiff_stack(file)?;
    let shape = match stack.shape()[..] {
        [c, z, y, x] => [c, z, y, x],
        [c, y, x] if stack.samples == 1 => [c, 1, y, x],
        ref other => {
            return Err(Error::invalid_file(
                file,
                format!("not a probability file: holds an array of shape {other:?}"),
            ));
        }
    };
    Array4::from_shape_vec(shape, stack.data)
        .map_err(|e| Error::invalid_file(file, format!("inconsistent probability file: {e}")))
}

impl Reader for Tiff3DIO {
    fn file_endings(&self) -> &[&str] {
        &[".tif", ".tiff"]
    }

    fn read_images(&self, files: &[&Path]) -> Result<Image> {
        let Some(first) = files.first() else {
            return Err(Error::Invalid("no image files given".into()));
        };
        let mut data = Vec::new();
        let mut shape = [0usize; 3];
        for file in files {
            let (values, this) = read_volume(file)?;
            if data.is_empty() {
                shape = this;
            } else if this != shape {
                return Err(Error::invalid_file(
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
            properties: ImageProperties {
                spacing,
                ..Default::default()
            },
        })
    }

    fn read_segmentation(&self, file: &Path) -> Result<Segmentation> {
        let (values, [z, y, x]) = read_volume(file)?;
        let labels = to_labels(file, values.into_iter())?;
        let spacing = read_spacing(file, false)?;
        Ok(Segmentation {
            data: Array4::from_shape_vec([1, z, y, x], labels).expect("the size was checked"),
            properties: ImageProperties {
                spacing,
                ..Default::default()
            },
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
        let data: Vec<f32> = probabilities.iter().copied().collect();
        write_tiff(file, probabilities.shape(), &data)?;
        write_spacing(file, properties)
    }
}

/// `[c, z, y, x]` → the channel `c` as `[z, y, x]` (helper for tests of other readers).
#[cfg(test)]
pub(crate) fn channel(data: &Array4<f32>, c: usize) -> ndarray::Array3<f32> {
    data.index_axis(ndarray::Axis(0), c).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, Axis};

    fn props(spacing: [f64; 3]) -> ImageProperties {
        ImageProperties {
            spacing,
            ..Default::default()
        }
    }

    fn write_json(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn side_file_names() {
        let p = Path::new("/d/imagesTr/case1_0000.tif");
        assert_eq!(side_file(p, true), Path::new("/d/imagesTr/case1.json"));
        let p = Path::new("/d/labelsTr/case1.tif");
        assert_eq!(side_file(p, false), Path::new("/d/labelsTr/case1.json"));
        let p = Path::new("/d/labelsTr/case_0001.tiff");
        assert_eq!(side_file(p, false), Path::new("/d/labelsTr/case_0001.json"));
        assert_eq!(
            side_file(Path::new("x.TIFF"), true),
            Path::new("x.json"),
            "no channel suffix: the name is kept"
        );
    }

    #[test]
    fn image_and_segmentation_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        // A 16-bit image written through the label writer (max >= 255 gives uint16).
        let volume = Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (z * 300 + y * 10 + x) as i16);
        let img = dir.path().join("case_0000.tif");
        write_label_tiff(volume.view(), &img).unwrap();
        write_json(
            &dir.path().join("case.json"),
            r#"{"spacing": [3.5, 0.5, 0.25]}"#,
        );
        let read = Tiff3DIO.read_images(&[&img]).unwrap();
        assert_eq!(read.data.shape(), [1, 3, 4, 5]);
        assert_eq!(channel(&read.data, 0), volume.mapv(f32::from));
        assert_eq!(read.properties.spacing, [3.5, 0.5, 0.25]);

        let seg = volume.mapv(|v| v % 4);
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let seg_file = out.join("case.tif");
        Tiff3DIO
            .write_segmentation(seg.view(), &seg_file, &read.properties)
            .unwrap();
        let json = std::fs::read_to_string(out.join("case.json")).unwrap();
        assert_eq!(
            json,
            "{\n    \"spacing\": [\n        3.5,\n        0.5,\n        0.25\n    ]\n}"
        );
        let back = Tiff3DIO.read_segmentation(&seg_file).unwrap();
        assert_eq!(back.data.index_axis(Axis(0), 0), seg);
        assert_eq!(back.properties.spacing, [3.5, 0.5, 0.25]);

        // Large labels are stored as uint16.
        let big = seg.mapv(|v| v * 1000);
        Tiff3DIO
            .write_segmentation(big.view(), &seg_file, &read.properties)
            .unwrap();
        let back = Tiff3DIO.read_segmentation(&seg_file).unwrap();
        assert_eq!(back.data.index_axis(Axis(0), 0), big);
    }

    #[test]
    fn float_and_signed_stacks_and_channels() {
        let dir = tempfile::tempdir().unwrap();
        let f = Array3::from_shape_fn((2, 3, 4), |(z, y, x)| {
            z as f32 - 0.25 * y as f32 + x as f32 * 1e-3
        });
        let f_file = dir.path().join("c_0000.tif");
        write_tiff(&f_file, f.shape(), f.as_slice().unwrap()).unwrap();
        // A second channel written as raw int16 pages by the tiff crate itself.
        let i_file = dir.path().join("c_0001.tif");
        {
            let mut enc = TiffEncoder::new(File::create(&i_file).unwrap()).unwrap();
            for z in 0..2i16 {
                let page: Vec<i16> = (0..12).map(|k| -1000 * z + k).collect();
                enc.write_image::<colortype::GrayI16>(4, 3, &page).unwrap();
            }
        }
        let read = Tiff3DIO.read_images(&[&f_file, &i_file]).unwrap();
        assert_eq!(read.data.shape(), [2, 2, 3, 4]);
        assert_eq!(channel(&read.data, 0), f);
        assert_eq!(read.data[[1, 1, 2, 3]], -1000.0 + 11.0);
        assert_eq!(read.properties.spacing, [1.0, 1.0, 1.0], "no side file");

        // Shapes must agree, naming both files.
        let other = dir.path().join("c_0002.tif");
        write_tiff(&other, &[3, 3, 4], &[0u8; 36]).unwrap();
        let err = Tiff3DIO
            .read_images(&[&f_file, &other])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c_0002.tif") && err.contains("c_0000.tif"),
            "{err}"
        );
    }

    #[test]
    fn single_slice_needs_3d_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let seg = Array3::from_shape_fn((1, 2, 3), |(_, y, x)| (y + x) as i16);
        let file = dir.path().join("one.tif");
        Tiff3DIO
            .write_segmentation(seg.view(), &file, &props([2.0, 1.0, 1.0]))
            .unwrap();
        let back = Tiff3DIO.read_segmentation(&file).unwrap();
        assert_eq!(back.data.shape(), [1, 1, 2, 3]);
        // A plain 2D page (no tifffile description) is refused, as nnU-Net does.
        let flat = dir.path().join("flat.tif");
        TiffEncoder::new(File::create(&flat).unwrap())
            .unwrap()
            .write_image::<colortype::Gray8>(3, 2, &[0u8; 6])
            .unwrap();
        let err = Tiff3DIO.read_images(&[&flat]).unwrap_err().to_string();
        assert!(err.contains("flat.tif") && err.contains("only 3D"), "{err}");
        // An RGB stack is refused.
        let rgb = dir.path().join("rgb.tif");
        {
            let mut enc = TiffEncoder::new(File::create(&rgb).unwrap()).unwrap();
            enc.write_image::<colortype::RGB8>(2, 2, &[0u8; 12])
                .unwrap();
            enc.write_image::<colortype::RGB8>(2, 2, &[0u8; 12])
                .unwrap();
        }
        let err = Tiff3DIO.read_images(&[&rgb]).unwrap_err().to_string();
        assert!(err.contains("rgb.tif") && err.contains("4D"), "{err}");
        // A single page with three samples is a 3D array for tifffile, and so for nnU-Net.
        let planes = dir.path().join("planes.tif");
        TiffEncoder::new(File::create(&planes).unwrap())
            .unwrap()
            .write_image::<colortype::RGB8>(2, 1, &[1u8, 2, 3, 4, 5, 6])
            .unwrap();
        let read = Tiff3DIO.read_images(&[&planes]).unwrap();
        assert_eq!(read.data.shape(), [1, 1, 2, 3]);
        assert_eq!(
            read.data.iter().copied().collect::<Vec<_>>(),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
    }

    #[test]
    fn probabilities_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = Array4::from_shape_fn((3, 2, 4, 5), |(c, z, y, x)| {
            (c as f32 + 1.0) / (z + y + x + 1) as f32
        });
        let file = dir.path().join("case_probabilities.tif");
        Tiff3DIO
            .write_probabilities(p.view(), &file, &props([1.0, 2.0, 3.0]))
            .unwrap();
        assert_eq!(read_probabilities(&file).unwrap(), p);
        assert!(dir.path().join("case_probabilities.json").is_file());
    }

    #[test]
    fn bad_inputs_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing_0000.tif");
        let err = Tiff3DIO.read_images(&[&missing]).unwrap_err().to_string();
        assert!(err.contains("missing_0000.tif"), "{err}");

        let garbage = dir.path().join("garbage_0000.tif");
        std::fs::write(&garbage, b"this is not a tiff file at all").unwrap();
        let err = Tiff3DIO.read_images(&[&garbage]).unwrap_err().to_string();
        assert!(err.contains("garbage_0000.tif"), "{err}");

        let good = dir.path().join("good_0000.tif");
        let v = Array3::from_shape_fn((4, 16, 16), |(z, y, x)| ((z + y * x) % 7) as i16);
        write_label_tiff(v.view(), &good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        for cut in [4, 8, 20, bytes.len() / 2, bytes.len() - 10] {
            let truncated = dir.path().join(format!("trunc{cut}_0000.tif"));
            std::fs::write(&truncated, &bytes[..cut]).unwrap();
            let err = Tiff3DIO.read_images(&[&truncated]).unwrap_err().to_string();
            assert!(err.contains(&format!("trunc{cut}_0000.tif")), "{err}");
        }
        // Flipped bytes anywhere never panic.
        for pos in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[pos] ^= 0xA5;
            let corrupt = dir.path().join("corrupt_0000.tif");
            std::fs::write(&corrupt, &b).unwrap();
            let _ = Tiff3DIO.read_images(&[&corrupt]);
        }

        std::fs::write(dir.path().join("good.json"), r#"{"spacing": [1, 2]}"#).unwrap();
        let err = Tiff3DIO.read_images(&[&good]).unwrap_err().to_string();
        assert!(
            err.contains("good.json") && err.contains("three numbers"),
            "{err}"
        );
        std::fs::write(dir.path().join("good.json"), r#"{"spacing": [0, 1, 1]}"#).unwrap();
        let err = Tiff3DIO.read_images(&[&good]).unwrap_err().to_string();
        assert!(err.contains("good.json") && err.contains("> 0"), "{err}");
        std::fs::write(dir.path().join("good.json"), "{not json").unwrap();
        let err = Tiff3DIO.read_images(&[&good]).unwrap_err().to_string();
        assert!(err.contains("good.json") && err.contains("JSON"), "{err}");

        let frac = dir.path().join("frac.tif");
        write_tiff(&frac, &[2, 1, 2], &[0.0f32, 1.0, 0.5, 2.0]).unwrap();
        let err = Tiff3DIO.read_segmentation(&frac).unwrap_err().to_string();
        assert!(
            err.contains("frac.tif") && err.contains("not an integer label"),
            "{err}"
        );

        let neg = Array3::from_elem((2, 2, 2), -1i16);
        let err = Tiff3DIO
            .write_segmentation(neg.view(), &dir.path().join("neg.tif"), &props([1.0; 3]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("neg.tif") && err.contains("negative"), "{err}");
        let empty = Array3::<i16>::zeros((0, 2, 2));
        assert!(
            Tiff3DIO
                .write_segmentation(empty.view(), &dir.path().join("e.tif"), &props([1.0; 3]))
                .is_err()
        );
    }
}
