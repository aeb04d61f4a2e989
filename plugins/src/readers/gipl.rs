//! GIPL (Guy's Image Processing Lab format: `.gipl`, gzip-compressed `.gipl.gz`), read as ITK's
//! `GiplImageIO` reads it for [`super::simpleitk::SimpleItkIO`] and written as it writes it.
//!
//! Written here rather than taken from a crate: no Rust crate reads GIPL.
//!
//! A 256-byte big-endian header, then the voxels, big-endian. The header holds four sizes (the
//! first three count as dimensions when non-zero, the fourth when above 1, as in ITK: a 2D image
//! written with a third size of 1 reads back as 3D), the voxel type (binary and 8-bit types are
//! one byte per voxel; 16/32-bit integers, 32/64-bit floats), four spacings (`f32`, at byte 10),
//! four origin values (`f64`, at byte 204) and the magic number at byte 252. GIPL has no
//! direction: it is the identity.
//!
//! Differences from ITK, on input ITK misreads: 32-bit integer voxels are read (ITK fails on
//! them); a spacing of 0 or not a number is taken as 1; a header announcing more voxels than the
//! file holds is an error (ITK reads garbage).

use std::io::Read;
use std::path::Path;

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use nnunet_core::{Error, Result};
use serde_json::{Map, Value};

use super::itk::{
    ItkGeometry, ItkImage, PixelType, Pixels, byte_count, compressed, encode_value, open_regular,
    read_exact_or_eof, read_voxel_bytes,
};

/// Size of the GIPL header in bytes.
const HEADER: usize = 256;
/// The GIPL magic number at the end of the header.
const MAGIC: u32 = 0xefff_e9b0;
/// The alternative GIPL magic number some writers use.
const MAGIC2: u32 = 0x2ae3_89b8;

/// The big-endian `u16` at `off`.
fn be_u16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// The big-endian `f32` at `off`.
fn be_f32(b: &[u8], off: usize) -> f32 {
    f32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// The big-endian `f64` at `off`.
fn be_f64(b: &[u8], off: usize) -> f64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    f64::from_be_bytes(a)
}

/// The pixel type of GIPL image type `code`; complex and surface types are an error.
fn pixel_type(path: &Path, code: u16) -> Result<PixelType> {
    Ok(match code {
        1 | 8 => PixelType::U8,
        7 => PixelType::I8,
        15 => PixelType::I16,
        16 => PixelType::U16,
        31 => PixelType::U32,
        32 => PixelType::I32,
        64 => PixelType::F32,
        65 => PixelType::F64,
        other => {
            return Err(Error::reader_file(
                path,
                format!("GIPL image type {other} is not supported (complex or surface data)"),
            ));
        }
    })
}

/// The GIPL image type written for `kind` (64-bit integers as their 32-bit type).
fn type_code(kind: PixelType) -> u16 {
    match kind {
        PixelType::U8 => 8,
        PixelType::I8 => 7,
        PixelType::I16 => 15,
        PixelType::U16 => 16,
        PixelType::U32 | PixelType::U64 => 31,
        PixelType::I32 | PixelType::I64 => 32,
        PixelType::F32 => 64,
        PixelType::F64 => 65,
    }
}

/// Size, type and geometry from the 256 header bytes.
fn parse_header(path: &Path, b: &[u8]) -> Result<(Vec<usize>, PixelType, ItkGeometry)> {
    let magic = u32::from_be_bytes([b[252], b[253], b[254], b[255]]);
    if magic != MAGIC && magic != MAGIC2 {
        return Err(Error::reader_file(
            path,
            "not a GIPL file (wrong magic number)",
        ));
    }
    let dims: Vec<u16> = (0..4).map(|i| be_u16(b, 2 * i)).collect();
    let n = (0..3).filter(|&i| dims[i] > 0).count() + usize::from(dims[3] > 1);
    let size: Vec<usize> = dims[..n].iter().map(|&d| d as usize).collect();
    if n == 0 || size.contains(&0) {
        return Err(Error::reader_file(
            path,
            format!("invalid GIPL sizes {dims:?}"),
        ));
    }
    let kind = pixel_type(path, be_u16(b, 8))?;
    let mut g = ItkGeometry::identity(n);
    for i in 0..n {
        let s = be_f32(b, 10 + 4 * i) as f64;
        g.spacing[i] = if s.is_finite() && s != 0.0 {
            s.abs()
        } else {
            1.0
        };
        let o = be_f64(b, 204 + 8 * i);
        g.origin[i] = if o.is_finite() { o } else { 0.0 };
    }
    Ok((size, kind, g))
}

/// Reads a GIPL file as ITK does (it has no header data to keep).
pub(crate) fn read_itk(path: &Path) -> Result<(ItkImage, Map<String, Value>)> {
    let (file, len) = open_regular(path)?;
    let gz = path.to_string_lossy().to_lowercase().ends_with(".gz");
    let mut reader: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let mut head = [0u8; HEADER];
    let got = read_exact_or_eof(&mut reader, &mut head)
        .map_err(|e| Error::reader_file(path, format!("cannot read the header: {e}")))?;
    if got < HEADER {
        return Err(Error::reader_file(
            path,
            format!("truncated: a GIPL header has {HEADER} bytes, the file {got}"),
        ));
    }
    let (size, kind, geometry) = parse_header(path, &head)?;
    let nbytes = byte_count(path, &size, 1, kind)?;
    if !gz && (HEADER as u64).saturating_add(nbytes) > len {
        return Err(Error::reader_file(
            path,
            format!(
                "truncated: the header announces {nbytes} bytes of voxel data, the file has {}",
                len - HEADER as u64
            ),
        ));
    }
    let bytes = read_voxel_bytes(path, reader, nbytes)?;
    let pixels = Pixels {
        kind,
        big_endian: true,
        bytes,
        scale: None,
    };
    let image = ItkImage {
        size,
        components: 1,
        geometry,
        pixels,
    };
    Ok((image, Map::new()))
}

/// The values of `pixels` big-endian, as GIPL stores them (64-bit integers narrowed to 32 bits).
fn big_endian_bytes(pixels: &Pixels) -> Vec<u8> {
    let kind = match pixels.kind {
        PixelType::U64 => PixelType::U32,
        PixelType::I64 => PixelType::I32,
        k => k,
    };
    let mut out = Vec::with_capacity(pixels.bytes.len());
    for v in pixels.decode(|v| v) {
        encode_value(kind, v, true, &mut out);
    }
    out
}

/// Writes `image` as GIPL (gzip-compressed for `.gipl.gz`); GIPL keeps spacing and origin but
/// no direction, and at most 4 dimensions.
pub(crate) fn write_itk(path: &Path, image: &ItkImage, _extra: &Map<String, Value>) -> Result<()> {
    let n = image.size.len();
    if n > 4 || image.components > 1 || image.size.iter().any(|&s| s > u16::MAX as usize) {
        return Err(Error::reader_file(
            path,
            format!(
                "GIPL holds up to 4 dimensions of at most 65535 voxels, one value per voxel; this \
                 image is {:?} with {} components",
                image.size, image.components
            ),
        ));
    }
    let mut h = vec![0u8; HEADER];
    for i in 0..4 {
        let d = image.size.get(i).copied().unwrap_or(1) as u16;
        h[2 * i..2 * i + 2].copy_from_slice(&d.to_be_bytes());
        let s = image.geometry.spacing.get(i).copied().unwrap_or(1.0) as f32;
        h[10 + 4 * i..14 + 4 * i].copy_from_slice(&s.to_be_bytes());
        let o = image.geometry.origin.get(i).copied().unwrap_or(0.0);
        h[204 + 8 * i..212 + 8 * i].copy_from_slice(&o.to_be_bytes());
    }
    h[8..10].copy_from_slice(&type_code(image.pixels.kind).to_be_bytes());
    let values = image.pixels.decode(|v| v);
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    h[188..196].copy_from_slice(&min.to_be_bytes());
    h[196..204].copy_from_slice(&max.to_be_bytes());
    h[252..256].copy_from_slice(&MAGIC.to_be_bytes());
    let mut bytes = h;
    bytes.extend(big_endian_bytes(&image.pixels));
    if path.to_string_lossy().to_lowercase().ends_with(".gz") {
        let encoder = GzEncoder::new(Vec::new(), Compression::default());
        bytes = compressed(path, &bytes, encoder, GzEncoder::finish)?;
    }
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readers::test_support::{assert_read_error, geometry3, i16_image};

    #[test]
    fn round_trip_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let g = geometry3([0.5, 0.75, 2.0], [1.0, -2.0, 3.5]);
        let img = i16_image(vec![3, 2, 1], g.clone(), -2..4);
        for name in ["a.gipl", "a.gipl.gz"] {
            let path = dir.path().join(name);
            write_itk(&path, &img, &Map::new()).unwrap();
            let (back, _) = read_itk(&path).unwrap();
            assert_eq!(back.size, [3, 2, 1]);
            assert_eq!(back.geometry, g);
            assert_eq!(back.pixels.decode(|v| v), [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0]);
        }
        let good = std::fs::read(dir.path().join("a.gipl")).unwrap();
        let check = |name: &str, bytes: &[u8], want: &str| {
            assert_read_error(dir.path(), name, bytes, want, read_itk)
        };
        check("short.gipl", &good[..100], "truncated");
        check("data.gipl", &good[..good.len() - 1], "truncated");
        let mut bad = good.clone();
        bad[252] = 0;
        check("magic.gipl", &bad, "magic");
        let mut bad = good.clone();
        bad[8..10].copy_from_slice(&192u16.to_be_bytes());
        check("complex.gipl", &bad, "192");
        let mut bad = good.clone();
        bad[0..6].copy_from_slice(&[0xff; 6]);
        check("huge.gipl", &bad, "truncated");
        check("notgz.gipl.gz", &good, "");
    }
}
