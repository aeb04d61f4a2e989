//! Decoding TIFF files: every page of a stack as `f32` samples, with tifffile's shape.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use nnunet_core::{Error, Result};
use tiff::decoder::{Decoder, DecodingResult};
use tiff::tags::Tag;
use tiff::{ColorType, TiffError};

/// The pages of one TIFF file, decoded to `f32` in storage order: page after page, each page
/// `[height, width, samples]` (interleaved) or `[samples, height, width]` (planar).
pub(crate) struct TiffStack {
    /// Number of pages.
    pub pages: usize,
    /// Samples per pixel.
    pub samples: usize,
    /// Page height in pixels.
    pub height: usize,
    /// Page width in pixels.
    pub width: usize,
    /// Whether each page stores its samples plane by plane.
    pub planar: bool,
    /// The decoded samples of every page, in storage order.
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

/// `e` as an error naming `file`.
fn tiff_error(file: &Path, e: TiffError) -> Error {
    match e {
        TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::reader_file(file, "the TIFF file is truncated (it ends too early)")
        }
        TiffError::IoError(io) => Error::io(file, io),
        TiffError::LimitsExceeded => Error::reader_file(
            file,
            "a TIFF page is larger than the decoder allows (256 MiB per page); the file is \
             corrupt or too large",
        ),
        other => Error::reader_file(file, format!("not a readable TIFF file: {other}")),
    }
}

/// The number of decoded samples in `result`.
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
    /// Appends `values` converted by `f`.
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
        Err(Error::reader_file(
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

/// Decodes every page of `file` (see [`read_tiff_stack`]).
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
            Error::reader_file(file, format!("page {} (counting from 0): {reason}", pages))
        };
        let (width, height, color, samples) = page_format(file, &mut decoder, page_error)?;
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

/// Width, height, colour type and samples per pixel of the decoder's current page, checked to be
/// a non-empty page of a colour model and bit depth we decode; `page_error` names the page.
fn page_format<R: Read + Seek>(
    file: &Path,
    decoder: &mut Decoder<R>,
    page_error: impl Fn(String) -> Error,
) -> Result<(usize, usize, ColorType, usize)> {
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
    Ok((width, height, color, samples))
}

/// Converts decoded label values to `i16`, naming the file on a value that is not an integer
/// label.
pub(crate) fn to_labels(file: &Path, values: impl Iterator<Item = f32>) -> Result<Vec<i16>> {
    values
        .map(|v| {
            if v.fract() == 0.0 && (f32::from(i16::MIN)..=f32::from(i16::MAX)).contains(&v) {
                Ok(v as i16)
            } else {
                Err(Error::reader_file(
                    file,
                    format!("label map holds {v}, which is not an integer label in -32768..=32767"),
                ))
            }
        })
        .collect()
}
