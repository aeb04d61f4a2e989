//! The image model ITK gives every file format (a size in ITK axis order, `x` fastest; pixel
//! components; spacing, origin and direction cosines in LPS world coordinates) and nnU-Net's
//! `SimpleITKIO` rules on top of it. The NIfTI, NRRD, MetaImage and GIPL readers only parse their
//! headers into an [`ItkImage`]; turning it into nnU-Net's `[c, z, y, x]` array and spacing,
//! checking the channels of a case against each other, and building the image to write from a
//! prediction's properties happen here, once for every format.
//!
//! SimpleITK's conventions, as nnU-Net's `SimpleITKIO` sees them: a 2D image is `(c, 1, y, x)`
//! with spacing `(999 * max(sx, sy), sy, sx)`; a 3D image `(c, z, y, x)` with `(sz, sy, sx)`; the
//! 4th axis of a 4D image becomes channels. Pixel components (vector, RGB) become channels too;
//! nnU-Net itself puts them on a wrong axis, we keep them as channels (`[c, z, y, x]`).

mod files;
mod output;
mod sitk;
#[cfg(test)]
mod tests;

use std::path::Path;

use ndarray::ArrayView3;
use nnunet_core::{Error, Result};

pub(crate) use files::{
    HeaderLines, byte_count, compressed, data_reader, encode_value, find_field, open_regular,
    parse_text_values, pattern_files, read_exact_or_eof, read_split_data, read_voxel_bytes,
    tail_start, write_header_and_data,
};
pub(crate) use output::{is_two_d, number, output_geometry, probability_image, segmentation_image};
pub(crate) use sitk::{
    SitkFile, allclose, check_channels, mismatch, nnunet_spacing, shaped, sitk_file, sitk_labels,
    sitk_properties, stack,
};

/// The voxel value types the readers decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PixelType {
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
}

impl PixelType {
    /// Bytes per value.
    pub(crate) fn size(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::I64 | Self::U64 | Self::F64 => 8,
        }
    }
}

/// Expands to `$then!(T)` with `T` the Rust type of the pixel type `$kind` (`u8` for
/// [`PixelType::U8`], ...): the one `match` over the pixel types for code written for any of them.
macro_rules! for_pixel_type {
    ($kind:expr, $then:ident) => {
        match $kind {
            $crate::readers::itk::PixelType::U8 => $then!(u8),
            $crate::readers::itk::PixelType::I8 => $then!(i8),
            $crate::readers::itk::PixelType::I16 => $then!(i16),
            $crate::readers::itk::PixelType::U16 => $then!(u16),
            $crate::readers::itk::PixelType::I32 => $then!(i32),
            $crate::readers::itk::PixelType::U32 => $then!(u32),
            $crate::readers::itk::PixelType::I64 => $then!(i64),
            $crate::readers::itk::PixelType::U64 => $then!(u64),
            $crate::readers::itk::PixelType::F32 => $then!(f32),
            $crate::readers::itk::PixelType::F64 => $then!(f64),
        }
    };
}
pub(crate) use for_pixel_type;

/// A format's names of the pixel types: each type with its names, the first one the name written.
pub(crate) type TypeNames = [(PixelType, &'static [&'static str]); 10];

/// The pixel type `name` stands for in `table`.
pub(crate) fn type_by_name(table: &TypeNames, name: &str) -> Option<PixelType> {
    table
        .iter()
        .find(|(_, names)| names.contains(&name))
        .map(|&(kind, _)| kind)
}

/// The name `table` writes `kind` with.
pub(crate) fn name_of_type(table: &TypeNames, kind: PixelType) -> &'static str {
    table
        .iter()
        .find(|&&(k, _)| k == kind)
        .map_or("", |(_, names)| names[0])
}

/// Raw voxel values of one file: their type, byte order, bytes, and an optional linear scaling
/// `value * slope + intercept`.
#[derive(Clone, Debug)]
pub(crate) struct Pixels {
    /// The value type.
    pub kind: PixelType,
    /// Whether the values are stored big-endian.
    pub big_endian: bool,
    /// The stored values.
    pub bytes: Vec<u8>,
    /// `(slope, intercept)` to apply to every value, if any.
    pub scale: Option<(f64, f64)>,
}

impl Pixels {
    /// Little-endian, unscaled values.
    pub(crate) fn new(kind: PixelType, bytes: Vec<u8>) -> Self {
        Pixels {
            kind,
            big_endian: false,
            bytes,
            scale: None,
        }
    }

    /// Every value (scaling applied) through `f`, in storage order.
    pub(crate) fn decode<T>(&self, mut f: impl FnMut(f64) -> T) -> Vec<T> {
        let be = self.big_endian;
        let scale = self.scale;
        let mut g = move |v: f64| match scale {
            Some((s, i)) => f(v * s + i),
            None => f(v),
        };
        macro_rules! conv {
            ($t:ty) => {
                self.bytes
                    .chunks_exact(std::mem::size_of::<$t>())
                    .map(|c| {
                        let a = c.try_into().unwrap_or_default();
                        let v = if be {
                            <$t>::from_be_bytes(a)
                        } else {
                            <$t>::from_le_bytes(a)
                        };
                        g(v as f64)
                    })
                    .collect()
            };
        }
        for_pixel_type!(self.kind, conv)
    }

    /// The values as labels; a value that is not an integer in the `int16` range is an error
    /// naming `path`.
    pub(crate) fn labels(&self, path: &Path) -> Result<Vec<i16>> {
        let mut bad: Option<f64> = None;
        let labels = self.decode(|v| {
            if v.fract() == 0.0 && v >= i16::MIN as f64 && v <= i16::MAX as f64 {
                v as i16
            } else {
                bad.get_or_insert(v);
                0
            }
        });
        match bad {
            Some(v) => Err(Error::reader_file(
                path,
                format!("label map holds {v}, which is not an integer label in the int16 range"),
            )),
            None => Ok(labels),
        }
    }
}

/// Label values written as nnU-Net writes them: `uint8` when all are in 0..=254, `uint16` when
/// none is negative, else `int16` (nnU-Net would wrap negative labels).
pub(crate) fn label_pixels(seg: ArrayView3<'_, i16>) -> Pixels {
    let (min, max) = seg
        .iter()
        .fold((0i16, 0i16), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let kind = if min < 0 {
        PixelType::I16
    } else if max < 255 {
        PixelType::U8
    } else {
        PixelType::U16
    };
    let mut bytes = Vec::with_capacity(seg.len() * kind.size());
    for &v in seg.iter() {
        match kind {
            PixelType::U8 => bytes.push(v as u8),
            PixelType::U16 => bytes.extend_from_slice(&(v as u16).to_le_bytes()),
            _ => bytes.extend_from_slice(&v.to_le_bytes()),
        }
    }
    Pixels::new(kind, bytes)
}

/// `float32` little-endian values.
pub(crate) fn f32_pixels<'a>(values: impl ExactSizeIterator<Item = &'a f32>) -> Pixels {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    Pixels::new(PixelType::F32, bytes)
}

/// Geometry as ITK reports it for an image of `n` dimensions: spacing, origin (LPS) and the
/// direction cosines, row-major `n × n` (column `j` is the world direction of axis `j`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ItkGeometry {
    /// Spacing per axis, `x` first.
    pub spacing: Vec<f64>,
    /// World position of the first voxel (LPS).
    pub origin: Vec<f64>,
    /// Direction cosines, row-major `n × n`.
    pub direction: Vec<f64>,
}

impl ItkGeometry {
    /// Unit spacing, zero origin, identity direction.
    pub(crate) fn identity(n: usize) -> Self {
        let mut direction = vec![0.0; n * n];
        for i in 0..n {
            direction[i * n + i] = 1.0;
        }
        ItkGeometry {
            spacing: vec![1.0; n],
            origin: vec![0.0; n],
            direction,
        }
    }

    /// Number of dimensions.
    pub(crate) fn ndim(&self) -> usize {
        self.spacing.len()
    }

    /// Direction column `j` times the spacing of axis `j`: the world step of one voxel along `j`.
    pub(crate) fn step(&self, j: usize) -> Vec<f64> {
        let n = self.ndim();
        (0..n)
            .map(|i| self.direction[i * n + j] * self.spacing[j])
            .collect()
    }
}

/// One file decoded as ITK decodes it: size in ITK order (`x` first), values per voxel
/// (interleaved), geometry and the raw values.
#[derive(Clone, Debug)]
pub(crate) struct ItkImage {
    /// Size per axis, `x` first.
    pub size: Vec<usize>,
    /// Values per voxel.
    pub components: usize,
    /// Spacing, origin and direction.
    pub geometry: ItkGeometry,
    /// The voxel values, components interleaved.
    pub pixels: Pixels,
}
