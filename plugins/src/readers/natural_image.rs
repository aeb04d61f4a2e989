//! `NaturalImage2DIO`: 2D natural images (PNG, BMP, TIFF and, as our addition, JPEG), as
//! nnU-Net's reader of the same name.
//!
//! * A grayscale file gives one channel and an RGB or RGBA file gives three or four: every colour
//!   channel, alpha included, becomes an input channel, in file order. The array is
//!   `[c, 1, y, x]` in `f32`; 8- and 16-bit values (and float TIFF samples) are kept as they are.
//! * The spacing is always `(999, 1, 1)`; there is no other geometry.
//! * What the file holds decides how it is read, as in nnU-Net (scikit-image): palette PNG and BMP
//!   files become RGB, except a BMP whose palette is the identity gray ramp, which is grayscale;
//!   1-bit black-and-white PNG and BMP files hold 0 and 1. A TIFF file is read as tifffile and
//!   scikit-image read it, so a stack of three or four pages is read as RGB(A), as in nnU-Net;
//!   other stacks and grayscale+alpha images are errors (nnU-Net cannot read them either; use
//!   `Tiff3DIO` for stacks).
//! * File endings: nnU-Net's `.png`, `.bmp` and `.tif`, plus `.jpg` and `.jpeg`, which nnU-Net
//!   leaves out because JPEG is lossy: reading photographs is useful, but a label map must never
//!   be stored as JPEG, so writing one is an error.
//! * `read_segmentation` takes a grayscale label image; an RGB(A) label image is accepted only if
//!   its colour channels are all equal (and its alpha channel, if any, constant). nnU-Net instead
//!   returns the three channels.
//! * `write_segmentation` writes a grayscale image in the format of the file ending (`.png`,
//!   `.bmp`, `.tif`/`.tiff`): `uint8` if the largest label is below 255, else `uint16` (nnU-Net's
//!   rule; BMP holds only labels up to 255).
//! * `write_probabilities` writes the `[classes, 1, y, x]` array losslessly as a float32 TIFF, one
//!   page per class, with tifffile's `{"shape": [...]}` description (tifffile reads it back as
//!   that 4D array); nnU-Net writes probabilities to a separate `.npz` instead.
//!   [`crate::readers::tiff3d::read_probabilities`] reads it back.

use std::fs::File;
use std::io::{BufWriter, Cursor};
use std::path::Path;

use image::codecs::bmp::BmpDecoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, Limits};
use ndarray::{Array4, ArrayView3, ArrayView4};
use nnunet_core::io::{Image, ImageProperties, Reader, Segmentation};
use nnunet_core::{Error, Result};

use super::tiff3d::{
    guard_decoder, is_tiff_magic, read_tiff_stack, to_labels, with_spacing, write_probability_tiff,
    write_tiff,
};

/// The 2D natural image reader/writer.
pub struct NaturalImage2DIO;

nnunet_core::register!(
    Reader,
    "NaturalImage2DIO",
    "2D natural images (.png, .bmp, .tif; also .jpg/.jpeg, which nnU-Net excludes as lossy): \
     RGB(A) channels become input channels, spacing (999, 1, 1), as nnU-Net's NaturalImage2DIO",
    || Box::new(NaturalImage2DIO)
);

/// nnU-Net's spacing for 2D natural images.
const SPACING: [f64; 3] = [999.0, 1.0, 1.0];

/// One decoded file: `data` is `[channels, height, width]`.
struct Planes {
    channels: usize,
    height: usize,
    width: usize,
    data: Vec<f32>,
}

/// Reorders interleaved `[height, width, channels]` samples to `[channels, height, width]`.
fn deinterleave<T: Copy>(raw: &[T], channels: usize, f: impl Fn(T) -> f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(raw.len());
    for c in 0..channels {
        out.extend(raw.iter().skip(c).step_by(channels).map(|v| f(*v)));
    }
    out
}

/// `e` as an error naming `file`.
fn image_error(file: &Path, e: image::ImageError) -> Error {
    match e {
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::reader_file(file, "the image file is truncated (it ends too early)")
        }
        image::ImageError::Limits(l) => Error::reader_file(
            file,
            format!("the image is too large to decode ({l}); the file is corrupt or too large"),
        ),
        other => Error::reader_file(file, format!("not a readable image: {other}")),
    }
}

/// The colour planes of a decoded image.
fn from_dynamic(file: &Path, image: DynamicImage) -> Result<Planes> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let (channels, data) = match &image {
        DynamicImage::ImageLuma8(b) => (1, deinterleave(b.as_raw(), 1, f32::from)),
        DynamicImage::ImageLuma16(b) => (1, deinterleave(b.as_raw(), 1, f32::from)),
        DynamicImage::ImageRgb8(b) => (3, deinterleave(b.as_raw(), 3, f32::from)),
        DynamicImage::ImageRgb16(b) => (3, deinterleave(b.as_raw(), 3, f32::from)),
        DynamicImage::ImageRgb32F(b) => (3, deinterleave(b.as_raw(), 3, |v| v)),
        DynamicImage::ImageRgba8(b) => (4, deinterleave(b.as_raw(), 4, f32::from)),
        DynamicImage::ImageRgba16(b) => (4, deinterleave(b.as_raw(), 4, f32::from)),
        DynamicImage::ImageRgba32F(b) => (4, deinterleave(b.as_raw(), 4, |v| v)),
        DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLumaA16(_) => {
            return Err(Error::reader_file(
                file,
                "grayscale+alpha images are not supported (nnU-Net cannot read them either); \
                 save it as plain grayscale or RGB",
            ));
        }
        other => {
            return Err(Error::reader_file(
                file,
                format!("unsupported pixel format {:?}", other.color()),
            ));
        }
    };
    Ok(Planes {
        channels,
        height,
        width,
        data,
    })
}

/// A PNG whose header says 1-bit grayscale: scikit-image reads it as booleans (0 and 1).
fn is_one_bit_gray_png(bytes: &[u8]) -> bool {
    bytes.len() > 25 && &bytes[12..16] == b"IHDR" && bytes[24] == 1 && bytes[25] == 0
}

/// The colour planes of the BMP `bytes`, palette images read as Pillow reads them.
fn read_bmp(file: &Path, bytes: &[u8]) -> Result<Planes> {
    let mut decoder = BmpDecoder::new(Cursor::new(bytes)).map_err(|e| image_error(file, e))?;
    decoder
        .set_limits(Limits::default())
        .map_err(|e| image_error(file, e))?;
    // Like Pillow (behind scikit-image): a palette image whose palette is the identity gray ramp
    // (or black and white for two colours) is grayscale holding the palette indices.
    let header_size = bytes
        .get(14..18)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let bits = bytes
        .get(28..30)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    let declared = bytes
        .get(46..50)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let gray_palette = header_size >= 40
        && matches!(bits, 1 | 4 | 8)
        && decoder.get_palette().is_some_and(|palette| {
            let colors = if declared > 0 {
                declared as usize
            } else {
                1usize << bits
            };
            colors <= palette.len()
                && palette[..colors].iter().enumerate().all(|(i, rgb)| {
                    let v = if colors == 2 {
                        (i * 255) as u8
                    } else {
                        i as u8
                    };
                    *rgb == [v, v, v]
                })
        });
    let two_colours = declared == 2 || (declared == 0 && bits == 1);
    // Decoding allocates the whole image up front; a corrupt header may declare any size, so hold
    // BMP to the same allocation limit the other formats get from the image crate.
    let limit = Limits::default().max_alloc.unwrap_or(u64::MAX);
    if decoder.total_bytes() > limit {
        let (w, h) = decoder.dimensions();
        return Err(Error::reader_file(
            file,
            format!(
                "declares a {w}x{h} image ({} MB decoded), more than the {} MB a 2D image may \
                 take; the file is corrupt or too large",
                decoder.total_bytes() >> 20,
                limit >> 20
            ),
        ));
    }
    let image = DynamicImage::from_decoder(decoder).map_err(|e| image_error(file, e))?;
    let mut planes = from_dynamic(file, image)?;
    if gray_palette {
        // The palette maps index i to (i, i, i), so the first colour channel is the index.
        let n = planes.height * planes.width;
        planes.data.truncate(n);
        planes.channels = 1;
        if two_colours {
            planes
                .data
                .iter_mut()
                .for_each(|v| *v = f32::from(*v > 0.0));
        }
    }
    Ok(planes)
}

/// A TIFF file as scikit-image and nnU-Net read it: tifffile's array; a 3D array whose last axis
/// is not 3 or 4 long but whose first is gets that axis moved last (scikit-image); then a 2D array
/// is grayscale and a 3D array `[y, x, 3|4]` is RGB(A) (nnU-Net). So a single page with three or
/// four samples, planar or not, is RGB(A), and so is a stack of three or four single-sample
/// pages, exactly as in nnU-Net.
fn read_tiff_page(file: &Path) -> Result<Planes> {
    let stack = read_tiff_stack(file)?;
    let shape = stack.shape();
    match shape[..] {
        [height, width] => Ok(Planes {
            channels: 1,
            height,
            width,
            data: stack.data,
        }),
        [height, width, c @ (3 | 4)] => Ok(Planes {
            channels: c,
            height,
            width,
            data: deinterleave(&stack.data, c, |v| v),
        }),
        [c @ (3 | 4), height, width] => Ok(Planes {
            channels: c,
            height,
            width,
            data: stack.data,
        }),
        [_, _, _] => Err(Error::reader_file(
            file,
            format!(
                "holds an array of shape {shape:?}: a 3D image must be [y, x, 3|4] (RGB or \
                 RGBA); a stack of slices is read by Tiff3DIO"
            ),
        )),
        _ => Err(Error::reader_file(
            file,
            format!(
                "holds a {}D array of shape {shape:?}; NaturalImage2DIO reads 2D grayscale, RGB \
                 or RGBA images",
                shape.len()
            ),
        )),
    }
}

/// Decodes one file, whatever its ending says, from its content.
fn read_planes(file: &Path) -> Result<Planes> {
    let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
    if bytes.is_empty() {
        return Err(Error::reader_file(file, "the file is empty"));
    }
    let planes = if is_tiff_magic(&bytes) {
        read_tiff_page(file)?
    } else if bytes.starts_with(b"BM") {
        guard_decoder(file, || read_bmp(file, &bytes))?
    } else {
        let format = match image::guess_format(&bytes) {
            Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => f,
            _ => {
                return Err(Error::reader_file(
                    file,
                    "not a PNG, BMP, TIFF or JPEG image",
                ));
            }
        };
        let image = guard_decoder(file, || {
            image::load_from_memory_with_format(&bytes, format).map_err(|e| image_error(file, e))
        })?;
        let mut planes = from_dynamic(file, image)?;
        if format == ImageFormat::Png && is_one_bit_gray_png(&bytes) {
            planes
                .data
                .iter_mut()
                .for_each(|v| *v = f32::from(*v > 0.0));
        }
        planes
    };
    if planes.width == 0 || planes.height == 0 {
        return Err(Error::reader_file(
            file,
            format!(
                "the image is empty ({} x {} pixels)",
                planes.width, planes.height
            ),
        ));
    }
    Ok(planes)
}

/// The properties of every natural image: the fixed spacing, default origin and direction.
fn properties() -> ImageProperties {
    with_spacing(SPACING)
}

/// Lower-case ending of `file` without the dot (`png`), or empty.
fn ending(file: &Path) -> String {
    file.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

/// Writes `image` to `file` in `format`.
fn write_dynamic(file: &Path, image: DynamicImage, format: ImageFormat) -> Result<()> {
    let handle = File::create(file).map_err(|e| Error::io(file, e))?;
    let mut writer = BufWriter::new(handle);
    image
        .write_to(&mut writer, format)
        .map_err(|e| Error::reader_file(file, format!("cannot write the image: {e}")))?;
    std::io::Write::flush(&mut writer).map_err(|e| Error::io(file, e))
}

impl Reader for NaturalImage2DIO {
    fn file_endings(&self) -> &[&str] {
        &[".png", ".bmp", ".tif", ".jpg", ".jpeg"]
    }

    fn read_images(&self, files: &[&Path]) -> Result<Image> {
        let Some(first) = files.first() else {
            return Err(Error::reader("no image files given"));
        };
        let mut data = Vec::new();
        let mut shape = (0, 0, 0);
        let mut channels = 0;
        for file in files {
            let planes = read_planes(file)?;
            let this = (planes.channels, planes.height, planes.width);
            if channels == 0 {
                shape = this;
            } else if this != shape {
                return Err(Error::reader_file(
                    file,
                    format!(
                        "{} channel(s) of {} x {} pixels differ from {} channel(s) of {} x {} \
                         pixels in {}; all images of a case must have the same shape",
                        this.0,
                        this.2,
                        this.1,
                        shape.0,
                        shape.2,
                        shape.1,
                        first.display()
                    ),
                ));
            }
            channels += planes.channels;
            data.extend(planes.data);
        }
        let data = Array4::from_shape_vec([channels, 1, shape.1, shape.2], data)
            .expect("the sizes were checked");
        Ok(Image {
            data,
            properties: properties(),
        })
    }

    fn read_segmentation(&self, file: &Path) -> Result<Segmentation> {
        let planes = read_planes(file)?;
        let n = planes.height * planes.width;
        let gray = if planes.channels == 1 {
            &planes.data[..]
        } else {
            let (colour, alpha) = planes.data.split_at(3 * n);
            let alpha_constant = alpha.iter().all(|a| *a == alpha[0]);
            let equal =
                (0..n).all(|i| colour[i] == colour[n + i] && colour[i] == colour[2 * n + i]);
            if !(equal && alpha_constant) {
                return Err(Error::reader_file(
                    file,
                    "is a colour (RGB) image whose channels differ; a label map must be a \
                     grayscale image of integer labels",
                ));
            }
            &colour[..n]
        };
        let labels = to_labels(file, gray.iter().copied())?;
        Ok(Segmentation {
            data: Array4::from_shape_vec([1, 1, planes.height, planes.width], labels)
                .expect("the size was checked"),
            properties: properties(),
        })
    }

    fn write_segmentation(
        &self,
        segmentation: ArrayView3<'_, i16>,
        file: &Path,
        _properties: &ImageProperties,
    ) -> Result<()> {
        let &[z, height, width] = segmentation.shape() else {
            unreachable!("a 3D view")
        };
        if z != 1 || height == 0 || width == 0 {
            return Err(Error::reader_file(
                file,
                format!(
                    "NaturalImage2DIO writes 2D label maps [1, y, x]; got shape [{z}, {height}, \
                     {width}]"
                ),
            ));
        }
        if let Some(bad) = segmentation.iter().find(|v| **v < 0) {
            return Err(Error::reader_file(
                file,
                format!("cannot write a label map holding the negative label {bad}"),
            ));
        }
        let max = segmentation.iter().copied().max().unwrap_or(0);
        let (w, h) = (
            u32::try_from(width).map_err(|_| Error::reader_file(file, "image too wide"))?,
            u32::try_from(height).map_err(|_| Error::reader_file(file, "image too tall"))?,
        );
        let bytes = || -> Vec<u8> { segmentation.iter().map(|v| *v as u8).collect() };
        let words = || -> Vec<u16> { segmentation.iter().map(|v| *v as u16).collect() };
        match ending(file).as_str() {
            "png" => {
                let image = if max < 255 {
                    DynamicImage::ImageLuma8(
                        image::GrayImage::from_raw(w, h, bytes()).expect("size matches"),
                    )
                } else {
                    DynamicImage::ImageLuma16(
                        image::ImageBuffer::from_raw(w, h, words()).expect("size matches"),
                    )
                };
                write_dynamic(file, image, ImageFormat::Png)
            }
            "bmp" if max <= 255 => {
                let image = image::GrayImage::from_raw(w, h, bytes()).expect("size matches");
                write_dynamic(file, DynamicImage::ImageLuma8(image), ImageFormat::Bmp)
            }
            "bmp" => Err(Error::reader_file(
                file,
                format!("BMP holds labels up to 255 only, this label map has {max}; use .png"),
            )),
            "tif" | "tiff" if max < 255 => write_tiff(file, &[height, width], &bytes()),
            "tif" | "tiff" => write_tiff(file, &[height, width], &words()),
            "jpg" | "jpeg" => Err(Error::reader_file(
                file,
                "JPEG is lossy and would change the labels; write label maps as .png",
            )),
            other => Err(Error::reader_file(
                file,
                format!("cannot write a label map with ending '.{other}'; use .png, .bmp or .tif"),
            )),
        }
    }

    fn write_probabilities(
        &self,
        probabilities: ArrayView4<'_, f32>,
        file: &Path,
        _properties: &ImageProperties,
    ) -> Result<()> {
        write_probability_tiff(probabilities, file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readers::test_support::{
        Unreadable, assert_error, assert_files_refused, assert_images_error,
    };
    use crate::readers::tiff3d::read_probabilities;
    use ndarray::{Array3, Axis, s};

    fn save(path: &Path, image: DynamicImage, format: ImageFormat) {
        image.save_with_format(path, format).unwrap();
    }

    fn gray8(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> DynamicImage {
        DynamicImage::ImageLuma8(image::GrayImage::from_fn(w, h, |x, y| {
            image::Luma([f(x, y)])
        }))
    }

    #[test]
    fn gray_png_bmp_and_16_bit() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("c_0000.png");
        save(
            &png,
            gray8(5, 3, |x, y| (x * 40 + y) as u8),
            ImageFormat::Png,
        );
        let read = NaturalImage2DIO.read_images(&[&png]).unwrap();
        assert_eq!(read.data.shape(), [1, 1, 3, 5]);
        assert_eq!(read.data[[0, 0, 2, 4]], 162.0);
        assert_eq!(read.properties.spacing, [999.0, 1.0, 1.0]);

        let wide = dir.path().join("c_0001.png");
        let image16 =
            image::ImageBuffer::from_fn(5, 3, |x, y| image::Luma([(x * 10000 + y) as u16]));
        save(&wide, DynamicImage::ImageLuma16(image16), ImageFormat::Png);
        let bmp = dir.path().join("c_0002.bmp");
        save(
            &bmp,
            gray8(5, 3, |x, y| (x + 10 * y) as u8),
            ImageFormat::Bmp,
        );
        let read = NaturalImage2DIO.read_images(&[&png, &wide, &bmp]).unwrap();
        assert_eq!(read.data.shape(), [3, 1, 3, 5]);
        assert_eq!(read.data[[1, 0, 2, 4]], 40002.0);
        assert_eq!(read.data[[2, 0, 2, 4]], 24.0, "gray BMP stays one channel");
    }

    #[test]
    fn rgb_and_rgba_become_channels() {
        let dir = tempfile::tempdir().unwrap();
        let rgb = dir.path().join("rgb.png");
        let image = image::RgbImage::from_fn(4, 2, |x, y| image::Rgb([x as u8, y as u8, 7]));
        save(&rgb, DynamicImage::ImageRgb8(image), ImageFormat::Png);
        let read = NaturalImage2DIO.read_images(&[&rgb]).unwrap();
        assert_eq!(read.data.shape(), [3, 1, 2, 4]);
        assert_eq!(read.data[[0, 0, 1, 3]], 3.0);
        assert_eq!(read.data[[1, 0, 1, 3]], 1.0);
        assert_eq!(read.data[[2, 0, 1, 3]], 7.0);

        let rgba = dir.path().join("rgba.png");
        let image = image::RgbaImage::from_fn(4, 2, |x, _| image::Rgba([1, 2, 3, x as u8 * 50]));
        save(&rgba, DynamicImage::ImageRgba8(image), ImageFormat::Png);
        let read = NaturalImage2DIO.read_images(&[&rgba]).unwrap();
        assert_eq!(read.data.shape(), [4, 1, 2, 4]);
        assert_eq!(read.data[[3, 0, 0, 3]], 150.0, "alpha is kept as a channel");

        // An RGB image and a gray image in one case have different shapes.
        let gray = dir.path().join("gray.png");
        save(&gray, gray8(4, 2, |_, _| 0), ImageFormat::Png);
        assert_images_error(&NaturalImage2DIO, &[&rgb, &gray], &["gray.png", "rgb.png"]);
    }

    #[test]
    fn segmentation_round_trips_in_every_format() {
        let dir = tempfile::tempdir().unwrap();
        for (name, max) in [
            ("s.png", 3),
            ("s16.png", 1000),
            ("s255.png", 255),
            ("s.bmp", 255),
            ("s.tif", 4),
            ("s16.tiff", 300),
        ] {
            let seg = Array3::from_shape_fn((1, 3, 4), |(_, y, x)| ((y * 4 + x) as i16 * max) / 11);
            let file = dir.path().join(name);
            NaturalImage2DIO
                .write_segmentation(seg.view(), &file, &properties())
                .unwrap();
            let back = NaturalImage2DIO.read_segmentation(&file).unwrap();
            assert_eq!(back.data.index_axis(Axis(0), 0), seg, "{name}");
            assert_eq!(back.properties.spacing, SPACING);
        }
        // Label maps that cannot be written: a label over 255 as BMP, JPEG, a 3D array.
        let seg = Array3::from_elem((1, 2, 2), 256i16);
        let seg3d = Array3::from_elem((2, 2, 2), 1i16);
        for (seg, name, wanted) in [
            (&seg, "x.bmp", &["x.bmp", "255"][..]),
            (&seg, "x.jpg", &["x.jpg", "lossy"]),
            (&seg3d, "x.png", &["2D"]),
        ] {
            let file = dir.path().join(name);
            let written = NaturalImage2DIO.write_segmentation(seg.view(), &file, &properties());
            assert_error(written, wanted);
        }
    }

    #[test]
    fn rgb_label_maps() {
        let dir = tempfile::tempdir().unwrap();
        let equal = dir.path().join("eq.png");
        let image = image::RgbImage::from_fn(3, 2, |x, _| image::Rgb([x as u8; 3]));
        save(&equal, DynamicImage::ImageRgb8(image), ImageFormat::Png);
        let seg = NaturalImage2DIO.read_segmentation(&equal).unwrap();
        assert_eq!(seg.data.shape(), [1, 1, 2, 3]);
        assert_eq!(seg.data[[0, 0, 1, 2]], 2);

        let colour = dir.path().join("colour.png");
        let image = image::RgbImage::from_fn(3, 2, |x, _| image::Rgb([x as u8, 0, 0]));
        save(&colour, DynamicImage::ImageRgb8(image), ImageFormat::Png);
        assert_error(
            NaturalImage2DIO.read_segmentation(&colour),
            &["colour.png", "RGB"],
        );
    }

    #[test]
    fn probabilities_are_lossless() {
        let dir = tempfile::tempdir().unwrap();
        let p = Array4::from_shape_fn((3, 1, 4, 5), |(c, _, y, x)| {
            (c as f32 + 0.1) / (y * 5 + x + 1) as f32
        });
        let file = dir.path().join("case.tif");
        NaturalImage2DIO
            .write_probabilities(p.view(), &file, &properties())
            .unwrap();
        assert_eq!(read_probabilities(&file).unwrap(), p);
    }

    #[test]
    fn tiff_pages_and_jpeg() {
        let dir = tempfile::tempdir().unwrap();
        let single = dir.path().join("one.tif");
        write_tiff(&single, &[2, 3], &[1u16, 2, 3, 4, 5, 60000]).unwrap();
        let read = NaturalImage2DIO.read_images(&[&single]).unwrap();
        assert_eq!(
            read.data.slice(s![0, 0, 1, ..]).to_vec(),
            [4.0, 5.0, 60000.0]
        );
        let stack = dir.path().join("stack.tif");
        write_tiff(&stack, &[2, 2, 5], &[0u8; 20]).unwrap();
        assert_images_error(&NaturalImage2DIO, &[&stack], &["stack.tif", "Tiff3DIO"]);
        // Three pages become three channels, as scikit-image makes them.
        let three: Vec<u8> = (0..30).collect();
        write_tiff(&stack, &[3, 2, 5], &three).unwrap();
        let read = NaturalImage2DIO.read_images(&[&stack]).unwrap();
        assert_eq!(read.data.shape(), [3, 1, 2, 5]);
        assert_eq!(
            read.data.iter().map(|v| *v as u8).collect::<Vec<_>>(),
            three
        );

        let jpg = dir.path().join("photo.jpg");
        save(&jpg, gray8(8, 8, |_, _| 128), ImageFormat::Jpeg);
        let read = NaturalImage2DIO.read_images(&[&jpg]).unwrap();
        assert_eq!(read.data.shape(), [1, 1, 8, 8]);
        assert!((read.data[[0, 0, 4, 4]] - 128.0).abs() <= 2.0);
    }

    #[test]
    fn bad_files_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let unreadable: [Unreadable; 3] = [
            ("missing.png", None, &["missing.png"]),
            ("empty.png", Some(b""), &["empty.png", "empty"]),
            ("text.png", Some(b"hello, this is text"), &["text.png"]),
        ];
        assert_files_refused(&NaturalImage2DIO, dir.path(), &unreadable);

        let mut sources = Vec::new();
        for (name, format) in [
            ("good.png", ImageFormat::Png),
            ("good.bmp", ImageFormat::Bmp),
            ("good.jpg", ImageFormat::Jpeg),
        ] {
            let file = dir.path().join(name);
            save(&file, gray8(16, 16, |x, y| (x * y) as u8), format);
            sources.push((name, std::fs::read(&file).unwrap()));
        }
        let tif = dir.path().join("good.tif");
        write_tiff(&tif, &[16, 16], &[7u8; 256]).unwrap();
        sources.push(("good.tif", std::fs::read(&tif).unwrap()));
        for (name, bytes) in &sources {
            for cut in [1, 8, 30, bytes.len() / 2, bytes.len() - 3] {
                let file = dir.path().join(format!("cut{cut}_{name}"));
                std::fs::write(&file, &bytes[..cut]).unwrap();
                // Some formats decode a partial image without noticing; none may panic, and an
                // error names the file.
                if let Err(e) = NaturalImage2DIO.read_images(&[&file]) {
                    assert!(e.to_string().contains(&format!("cut{cut}_{name}")), "{e}");
                }
            }
            for pos in (0..bytes.len()).step_by(3) {
                let mut b = bytes.clone();
                b[pos] ^= 0x5A;
                let file = dir.path().join(format!("flip_{name}"));
                std::fs::write(&file, &b).unwrap();
                let _ = NaturalImage2DIO.read_images(&[&file]);
                let _ = NaturalImage2DIO.read_segmentation(&file);
            }
        }
        // A truncated PNG is reported as such.
        let png = &sources[0].1;
        let file = dir.path().join("trunc.png");
        std::fs::write(&file, &png[..png.len() / 2]).unwrap();
        assert_images_error(&NaturalImage2DIO, &[&file], &["trunc.png"]);
    }
}
