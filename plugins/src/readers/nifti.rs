//! NIfTI (`.nii`, `.nii.gz`): the NIfTI part of nnU-Net's `SimpleITKIO` (registered in
//! [`super::simpleitk`]), and `NibabelIO` / `NibabelIOWithReorient`.
//!
//! Both read the file with our own NIfTI-1/NIfTI-2 parser (either byte order, gzip or not) and
//! give the array in nnU-Net's order `[c, z, y, x]`: NIfTI stores `x` fastest, so the voxel
//! buffer is already in that order, for SimpleITK (`GetArrayFromImage`) as for nnU-Net's
//! `NibabelIO` (`get_fdata().transpose(2, 1, 0)`).
//!
//! * `SimpleITKIO` follows SimpleITK 2.5 / ITK 5.4 (`NiftiImageIO`) as nnU-Net's default reader
//!   for `.nii.gz` sees the file: a 2D file (`dim[0] = 2`) is `(1, 1, y, x)` with spacing
//!   `(999 * max(sx, sy), sy, sx)`; a 4D file's 4th axis becomes channels; trailing singleton
//!   dimensions beyond the third are dropped as ITK does; spacing is `|pixdim|` (0 → 1) scaled to
//!   millimetres by `xyzt_units`, reversed to `[sz, sy, sx]`. Origin and direction are ITK's (LPS,
//!   as `GetOrigin()` / `GetDirection()` report them): ITK takes the sform when it is a rotation
//!   with scales (orthonormal after normalising its columns) and either the qform is unset, the
//!   sform code is 1 (scanner), or both describe nearly the same transform; otherwise the qform;
//!   with neither code set, origin 0 and identity direction. NIfTI-2 files are refused, as
//!   SimpleITK cannot read them (nnU-Net then falls back to NibabelIO, and so does our reader
//!   selection).
//! * `NibabelIO` follows nibabel as nnU-Net's `NibabelIO` uses it: only 3D files
//!   (`dim[0] = 3`), spacing `pixdim[3], pixdim[2], pixdim[1]` (no unit conversion), NIfTI-1 and
//!   NIfTI-2. Its properties carry the same ITK-style origin/direction, plus nibabel's "best
//!   affine" (sform, else qform, else the pixdim-only affine) as `extra["original_affine"]`.
//! * `NibabelIOWithReorient` is `NibabelIO` reoriented to RAS+ as nibabel's
//!   `as_reoriented(io_orientation(affine))` does (axes permuted and mirrored towards the world
//!   axes nearest to them, no resampling): the spacing is the reoriented affine's column lengths
//!   (the header's when nothing changes), origin and direction are those of the reoriented
//!   affine (ITK style), and `extra` holds `reoriented_affine` and the transform. Writing undoes
//!   the transform and writes the input's header, so the output has the input's orientation
//!   exactly (nnU-Net's writes a new header with the restored affine).
//!
//! `scl_slope`/`scl_inter` are applied when the slope is finite and non-zero (slope 0 means
//! unscaled, as the NIfTI standard and nibabel have it; ITK would still add the intercept).
//!
//! Where we differ from SimpleITK/nibabel, on purpose: a zero or negative size in `dim` is an
//! error (ITK reads it as 1); Analyze 7.5 files and `.hdr`/`.img` pairs are not read; complex and
//! RGB voxels are refused; a label map must hold integers in the `int16` range; sform/qform
//! "very similar" (both codes set, sform code 2 to 4) compares scales, unit directions and offsets
//! within 1e-4 instead of ITK's SVD-based test.
//!
//! `ImageProperties.extra["nifti"]` keeps the header geometry (version, `dim`, `pixdim`,
//! `xyzt_units`, `dim_info`, qform/sform codes, quaternion, offsets, `srow_*`), and the writers put
//! exactly those fields back, so a prediction has the input's header geometry. Label maps are
//! written as `uint8` when all labels are in 0..=254 (nnU-Net: max < 255), `uint16` when none is
//! negative, else `int16` (nnU-Net would wrap negative labels).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use ndarray::{Array4, ArrayView3, ArrayView4};
use nnunet_core::io::{Image, ImageProperties, Reader, Segmentation};
use nnunet_core::{Error, Result};
use serde_json::{Map, Value, json};

use super::itk::{
    ItkGeometry, ItkImage, Pixels, allclose, f32_pixels, is_two_d, label_pixels, mismatch,
    output_geometry, read_exact_or_eof, read_voxel_bytes, stack,
};
use super::orientation::{AxisTransform, nibabel_to_ras, undone3, undone4};

/// nnU-Net's reader for `.nii` (and, if selected, `.nii.gz`), with nibabel's conventions.
pub struct NibabelIO;

/// [`NibabelIO`] reorienting images to RAS+ on reading and back on writing.
pub struct NibabelIOWithReorient;

/// `SimpleITKIO` reads NIfTI and the other ITK formats; it lived here when it read NIfTI only.
pub use super::simpleitk::SimpleItkIO;

nnunet_core::register!(
    Reader,
    "NibabelIO",
    "NIfTI (.nii, .nii.gz) with nibabel's conventions, 3D only; nnU-Net's default for .nii",
    || Box::new(NibabelIO)
);

nnunet_core::register!(
    Reader,
    "NibabelIOWithReorient",
    "NibabelIO reorienting images to RAS+ on reading (nibabel's as_reoriented) and back on \
     writing",
    || Box::new(NibabelIOWithReorient)
);

// ---------------------------------------------------------------------------------------------
// Header

const NIFTI1_SIZE: usize = 348;
const NIFTI2_SIZE: usize = 540;
const NIFTI1_MAGIC: &[u8; 4] = b"n+1\0";
const NIFTI2_MAGIC: &[u8; 8] = b"n+2\0\r\n\x1a\n";

/// NIfTI's voxel types are ITK's pixel types; the NIfTI codes map onto them here.
use super::itk::PixelType as DataType;

impl DataType {
    fn from_code(code: i16) -> std::result::Result<Self, String> {
        Ok(match code {
            2 => Self::U8,
            256 => Self::I8,
            4 => Self::I16,
            512 => Self::U16,
            8 => Self::I32,
            768 => Self::U32,
            1024 => Self::I64,
            1280 => Self::U64,
            16 => Self::F32,
            64 => Self::F64,
            1 => return Err("binary (1-bit) voxels are not supported".into()),
            32 | 1792 | 2048 => return Err("complex voxels are not supported".into()),
            128 | 2304 => return Err("RGB/RGBA voxels are not supported".into()),
            1536 => return Err("128-bit float voxels are not supported".into()),
            other => return Err(format!("unknown NIfTI datatype code {other}")),
        })
    }

    fn code(self) -> i16 {
        match self {
            Self::U8 => 2,
            Self::I8 => 256,
            Self::I16 => 4,
            Self::U16 => 512,
            Self::I32 => 8,
            Self::U32 => 768,
            Self::I64 => 1024,
            Self::U64 => 1280,
            Self::F32 => 16,
            Self::F64 => 64,
        }
    }
}

/// The header fields we use, in NIfTI-2 precision (NIfTI-1 values widen losslessly).
#[derive(Clone, Debug, PartialEq)]
struct Header {
    version: u8,
    big_endian: bool,
    dim_info: u8,
    dim: [i64; 8],
    datatype: i16,
    pixdim: [f64; 8],
    vox_offset: f64,
    scl_slope: f64,
    scl_inter: f64,
    xyzt_units: i32,
    qform_code: i32,
    sform_code: i32,
    quatern: [f64; 3],
    qoffset: [f64; 3],
    srow: [[f64; 4]; 3],
}

impl Default for Header {
    fn default() -> Self {
        Self {
            version: 1,
            big_endian: false,
            dim_info: 0,
            dim: [3, 1, 1, 1, 1, 1, 1, 1],
            datatype: DataType::U8.code(),
            pixdim: [1.0; 8],
            vox_offset: 352.0,
            scl_slope: 1.0,
            scl_inter: 0.0,
            xyzt_units: 2 | 8,
            qform_code: 0,
            sform_code: 0,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [[0.0; 4]; 3],
        }
    }
}

/// Fixed-offset reads of one byte order.
struct Fields<'a> {
    b: &'a [u8],
    be: bool,
}

impl Fields<'_> {
    fn arr<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[off..off + N]);
        if self.be {
            a.reverse();
        }
        a
    }
    fn i16(&self, off: usize) -> i16 {
        i16::from_le_bytes(self.arr(off))
    }
    fn i32(&self, off: usize) -> i32 {
        i32::from_le_bytes(self.arr(off))
    }
    fn i64(&self, off: usize) -> i64 {
        i64::from_le_bytes(self.arr(off))
    }
    fn f32(&self, off: usize) -> f64 {
        f32::from_le_bytes(self.arr(off)) as f64
    }
    fn f64(&self, off: usize) -> f64 {
        f64::from_le_bytes(self.arr(off))
    }
}

/// Which NIfTI version and byte order the first four bytes announce.
fn detect(first: &[u8]) -> std::result::Result<(u8, bool), String> {
    if first.len() < 4 {
        return Err("file is too short to hold a NIfTI header".into());
    }
    let le = i32::from_le_bytes([first[0], first[1], first[2], first[3]]);
    let be = i32::from_be_bytes([first[0], first[1], first[2], first[3]]);
    match (le, be) {
        (348, _) => Ok((1, false)),
        (_, 348) => Ok((1, true)),
        (540, _) => Ok((2, false)),
        (_, 540) => Ok((2, true)),
        _ => Err(format!(
            "not a NIfTI file (header size field is {le}, expected 348 or 540)"
        )),
    }
}

/// Parses a complete NIfTI-1 (348 bytes) or NIfTI-2 (540 bytes) header.
fn parse_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    let (version, be) = detect(bytes)?;
    let size = if version == 1 {
        NIFTI1_SIZE
    } else {
        NIFTI2_SIZE
    };
    if bytes.len() < size {
        return Err(format!(
            "truncated NIfTI header ({} of {size} bytes)",
            bytes.len()
        ));
    }
    let f = Fields { b: bytes, be };
    let mut h = Header {
        version,
        big_endian: be,
        ..Header::default()
    };
    if version == 1 {
        if &bytes[344..348] != NIFTI1_MAGIC {
            return Err(if &bytes[344..348] == b"ni1\0" {
                "a NIfTI header/image pair (.hdr/.img) is not supported; use a single .nii file"
                    .into()
            } else {
                "wrong NIfTI-1 magic (an Analyze 7.5 file, or not a NIfTI file)".into()
            });
        }
        h.dim_info = bytes[39];
        for i in 0..8 {
            h.dim[i] = f.i16(40 + 2 * i) as i64;
            h.pixdim[i] = f.f32(76 + 4 * i);
        }
        h.datatype = f.i16(70);
        h.vox_offset = f.f32(108);
        h.scl_slope = f.f32(112);
        h.scl_inter = f.f32(116);
        h.xyzt_units = bytes[123] as i32;
        h.qform_code = f.i16(252) as i32;
        h.sform_code = f.i16(254) as i32;
        for i in 0..3 {
            h.quatern[i] = f.f32(256 + 4 * i);
            h.qoffset[i] = f.f32(268 + 4 * i);
            for j in 0..4 {
                h.srow[i][j] = f.f32(280 + 16 * i + 4 * j);
            }
        }
    } else {
        if &bytes[4..12] != NIFTI2_MAGIC {
            return Err("wrong NIfTI-2 magic".into());
        }
        h.datatype = f.i16(12);
        for i in 0..8 {
            h.dim[i] = f.i64(16 + 8 * i);
            h.pixdim[i] = f.f64(104 + 8 * i);
        }
        h.vox_offset = f.i64(168) as f64;
        h.scl_slope = f.f64(176);
        h.scl_inter = f.f64(184);
        h.qform_code = f.i32(344);
        h.sform_code = f.i32(348);
        for i in 0..3 {
            h.quatern[i] = f.f64(352 + 8 * i);
            h.qoffset[i] = f.f64(376 + 8 * i);
            for j in 0..4 {
                h.srow[i][j] = f.f64(400 + 32 * i + 8 * j);
            }
        }
        h.xyzt_units = f.i32(500);
        h.dim_info = bytes[524];
    }
    let ndim = h.dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(format!(
            "invalid number of dimensions dim[0] = {ndim} (must be 1 to 7)"
        ));
    }
    for i in 1..=ndim as usize {
        if h.dim[i] <= 0 {
            return Err(format!(
                "invalid size {} along dimension {i} (dim = {:?})",
                h.dim[i],
                &h.dim[1..=ndim as usize]
            ));
        }
    }
    DataType::from_code(h.datatype)?;
    if !h.vox_offset.is_finite() || h.vox_offset < size as f64 {
        return Err(format!(
            "voxel data offset {} lies inside the {size}-byte header",
            h.vox_offset
        ));
    }
    Ok(h)
}

/// Serialises a header (little-endian), followed by the 4-byte empty extension block.
fn header_bytes(h: &Header) -> Vec<u8> {
    fn put(b: &mut [u8], off: usize, v: &[u8]) {
        b[off..off + v.len()].copy_from_slice(v);
    }
    let bitpix = DataType::from_code(h.datatype).map_or(0, |d| d.size() * 8) as i16;
    if h.version == 2 {
        let mut b = vec![0u8; NIFTI2_SIZE + 4];
        put(&mut b, 0, &(NIFTI2_SIZE as i32).to_le_bytes());
        put(&mut b, 4, NIFTI2_MAGIC);
        put(&mut b, 12, &h.datatype.to_le_bytes());
        put(&mut b, 14, &bitpix.to_le_bytes());
        for i in 0..8 {
            put(&mut b, 16 + 8 * i, &h.dim[i].to_le_bytes());
            put(&mut b, 104 + 8 * i, &h.pixdim[i].to_le_bytes());
        }
        put(&mut b, 168, &(NIFTI2_SIZE as i64 + 4).to_le_bytes());
        put(&mut b, 176, &h.scl_slope.to_le_bytes());
        put(&mut b, 184, &h.scl_inter.to_le_bytes());
        put(&mut b, 240, b"nnunet-rs");
        put(&mut b, 344, &h.qform_code.to_le_bytes());
        put(&mut b, 348, &h.sform_code.to_le_bytes());
        for i in 0..3 {
            put(&mut b, 352 + 8 * i, &h.quatern[i].to_le_bytes());
            put(&mut b, 376 + 8 * i, &h.qoffset[i].to_le_bytes());
            for j in 0..4 {
                put(&mut b, 400 + 32 * i + 8 * j, &h.srow[i][j].to_le_bytes());
            }
        }
        put(&mut b, 500, &h.xyzt_units.to_le_bytes());
        b[524] = h.dim_info;
        b
    } else {
        let mut b = vec![0u8; NIFTI1_SIZE + 4];
        put(&mut b, 0, &(NIFTI1_SIZE as i32).to_le_bytes());
        b[38] = b'r';
        b[39] = h.dim_info;
        for i in 0..8 {
            put(&mut b, 40 + 2 * i, &(h.dim[i] as i16).to_le_bytes());
            put(&mut b, 76 + 4 * i, &(h.pixdim[i] as f32).to_le_bytes());
        }
        put(&mut b, 70, &h.datatype.to_le_bytes());
        put(&mut b, 72, &bitpix.to_le_bytes());
        put(&mut b, 108, &(NIFTI1_SIZE as f32 + 4.0).to_le_bytes());
        put(&mut b, 112, &(h.scl_slope as f32).to_le_bytes());
        put(&mut b, 116, &(h.scl_inter as f32).to_le_bytes());
        b[123] = h.xyzt_units as u8;
        put(&mut b, 148, b"nnunet-rs");
        put(&mut b, 252, &(h.qform_code as i16).to_le_bytes());
        put(&mut b, 254, &(h.sform_code as i16).to_le_bytes());
        for i in 0..3 {
            put(&mut b, 256 + 4 * i, &(h.quatern[i] as f32).to_le_bytes());
            put(&mut b, 268 + 4 * i, &(h.qoffset[i] as f32).to_le_bytes());
            for j in 0..4 {
                put(
                    &mut b,
                    280 + 16 * i + 4 * j,
                    &(h.srow[i][j] as f32).to_le_bytes(),
                );
            }
        }
        put(&mut b, 344, NIFTI1_MAGIC);
        b
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// A file's header and its voxel values (exactly as many as `dim` announces, scaled as the
/// header says).
struct RawVolume {
    header: Header,
    pixels: Pixels,
}

impl RawVolume {
    fn dims(&self) -> Vec<usize> {
        (1..=self.header.dim[0] as usize)
            .map(|i| self.header.dim[i] as usize)
            .collect()
    }
}

/// Reads header and voxel bytes, gzip-compressed or not (decided by the content, not the name).
/// The voxel byte count the header announces is checked against what the file really holds
/// before it is trusted, so a corrupt header cannot make us allocate huge buffers.
fn load(path: &Path) -> Result<RawVolume> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut buffered = BufReader::new(file);
    let mut magic = [0u8; 2];
    let got = read_exact_or_eof(&mut buffered, &mut magic).map_err(|e| Error::io(path, e))?;
    let gzipped = got == 2 && magic == [0x1f, 0x8b];
    let prefix = std::io::Cursor::new(magic[..got].to_vec());
    let mut reader: Box<dyn Read> = if gzipped {
        Box::new(MultiGzDecoder::new(prefix.chain(buffered)))
    } else {
        Box::new(prefix.chain(buffered))
    };
    let io_err = |e: std::io::Error| {
        if gzipped {
            Error::invalid_file(path, format!("corrupt gzip data: {e}"))
        } else {
            Error::io(path, e)
        }
    };
    let mut head = vec![0u8; NIFTI2_SIZE];
    let n = read_exact_or_eof(&mut reader, &mut head[..4]).map_err(io_err)?;
    let (version, _) = detect(&head[..n]).map_err(|m| Error::invalid_file(path, m))?;
    let size = if version == 1 {
        NIFTI1_SIZE
    } else {
        NIFTI2_SIZE
    };
    let n = 4 + read_exact_or_eof(&mut reader, &mut head[4..size]).map_err(io_err)?;
    let header = parse_header(&head[..n]).map_err(|m| Error::invalid_file(path, m))?;
    let dtype = DataType::from_code(header.datatype).map_err(|m| Error::invalid_file(path, m))?;

    let nbytes = (1..=header.dim[0] as usize)
        .try_fold(dtype.size() as u64, |acc, i| {
            acc.checked_mul(header.dim[i] as u64)
        })
        .ok_or_else(|| {
            Error::invalid_file(path, format!("image size {:?} overflows", header.dim))
        })?;
    let offset = header.vox_offset as u64;
    let too_big = || {
        Error::invalid_file(
            path,
            format!(
                "truncated or corrupt: the header announces {nbytes} bytes of voxel data \
                 (dim {:?}, {} bytes per voxel) at offset {offset}, more than the file holds",
                &header.dim[1..=header.dim[0] as usize],
                dtype.size()
            ),
        )
    };
    if !gzipped && offset.saturating_add(nbytes) > file_len {
        return Err(too_big());
    }
    if nbytes > isize::MAX as u64 / 2 {
        return Err(too_big());
    }
    // Skip extensions up to the voxel data.
    let skip = offset - size as u64;
    let skipped =
        std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink()).map_err(io_err)?;
    if skipped < skip {
        return Err(too_big());
    }
    let data = read_voxel_bytes(path, reader, nbytes)?;
    let pixels = Pixels {
        kind: dtype,
        big_endian: header.big_endian,
        bytes: data,
        scale: scaling(&header),
    };
    Ok(RawVolume { header, pixels })
}

/// `(slope, intercept)` to apply, or `None` when the data is unscaled.
fn scaling(h: &Header) -> Option<(f64, f64)> {
    let slope = h.scl_slope;
    if slope == 0.0 || !slope.is_finite() {
        return None;
    }
    let inter = if h.scl_inter.is_finite() {
        h.scl_inter
    } else {
        0.0
    };
    (slope != 1.0 || inter != 0.0).then_some((slope, inter))
}

// ---------------------------------------------------------------------------------------------
// Geometry

type Mat = [[f64; 4]; 4];

/// Rounds to single precision, as NIfTI-1 readers keep their matrices in `float`.
fn round_f32(m: &mut Mat, version: u8) {
    if version == 1 {
        for v in m.iter_mut().flatten() {
            *v = *v as f32 as f64;
        }
    }
}

/// `pixdim[i]` with 0 / non-finite replaced by 1 (as the NIfTI library does).
fn pix(h: &Header, i: usize) -> f64 {
    let p = h.pixdim[i];
    if p == 0.0 || !p.is_finite() { 1.0 } else { p }
}

/// The qform matrix (RAS), from the quaternion, signed pixdims, qfac and offsets.
fn qform_matrix(h: &Header) -> Mat {
    let [mut b, mut c, mut d] = h.quatern;
    let mut a = 1.0 - (b * b + c * c + d * d);
    if a < 1e-7 {
        let n = (b * b + c * c + d * d).sqrt();
        if n > 0.0 {
            b /= n;
            c /= n;
            d /= n;
        }
        a = 0.0;
    } else {
        a = a.sqrt();
    }
    let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let (dx, dy, dz) = (pix(h, 1), pix(h, 2), qfac * pix(h, 3));
    let r = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    let mut m = [[0.0; 4]; 4];
    for i in 0..3 {
        m[i] = [r[i][0] * dx, r[i][1] * dy, r[i][2] * dz, h.qoffset[i]];
    }
    m[3][3] = 1.0;
    round_f32(&mut m, h.version);
    m
}

fn sform_matrix(h: &Header) -> Mat {
    let mut m = [[0.0; 4]; 4];
    m[..3].copy_from_slice(&h.srow);
    m[3][3] = 1.0;
    round_f32(&mut m, h.version);
    m
}

fn column_norm(m: &Mat, j: usize) -> f64 {
    (0..3).map(|i| m[i][j] * m[i][j]).sum::<f64>().sqrt()
}

/// The 3×3 part with unit columns, if no column is zero.
fn normalized(m: &Mat) -> Option<[[f64; 3]; 3]> {
    let mut r = [[0.0; 3]; 3];
    for j in 0..3 {
        let n = column_norm(m, j);
        if n == 0.0 || !n.is_finite() {
            return None;
        }
        for i in 0..3 {
            r[i][j] = m[i][j] / n;
        }
    }
    Some(r)
}

/// Whether the sform is a rotation (or reflection) times scales, as ITK requires.
fn orthonormal(m: &Mat) -> bool {
    let Some(r) = normalized(m) else {
        return false;
    };
    (0..3).all(|i| {
        (0..3).all(|k| {
            let dot: f64 = (0..3).map(|j| r[i][j] * r[k][j]).sum();
            let want = if i == k { 1.0 } else { 0.0 };
            (dot - want).abs() <= 1e-4
        })
    })
}

/// ITK's choice between sform and qform (see the module documentation).
fn itk_matrix(h: &Header) -> std::result::Result<Option<Mat>, String> {
    let has_q = h.qform_code > 0;
    let has_s = h.sform_code > 0;
    if !has_q && !has_s {
        return Ok(None);
    }
    let q = has_q.then(|| qform_matrix(h));
    let s = has_s.then(|| sform_matrix(h));
    let mut prefer_s = match (&q, &s) {
        (Some(q), Some(s)) => {
            (0..3).all(|i| (0..3).all(|j| (q[i][j] - s[i][j]).abs() <= 1e-5))
                && (0..3).map(|i| (q[i][3] - s[i][3]).abs()).sum::<f64>() <= 1e-7
        }
        _ => false,
    };
    if let Some(sm) = &s
        && orthonormal(sm)
    {
        if !has_q || h.sform_code == 1 {
            prefer_s = true;
        } else if let Some(qm) = &q {
            // Both set with another sform code: the sform wins if both describe nearly the same
            // transform (same scales, directions and offsets).
            let similar = match (normalized(sm), normalized(qm)) {
                (Some(rs), Some(rq)) => {
                    (0..3).all(|j| (column_norm(sm, j) - column_norm(qm, j)).abs() <= 1e-4)
                        && (0..3).all(|i| (0..3).all(|j| (rs[i][j] - rq[i][j]).abs() <= 1e-4))
                        && (0..3).all(|i| (sm[i][3] - qm[i][3]).abs() <= 1e-4)
                }
                _ => false,
            };
            prefer_s = similar;
        }
    }
    match (prefer_s, s, q) {
        (true, Some(s), _) => Ok(Some(s)),
        (_, _, Some(q)) => Ok(Some(q)),
        _ => Err(
            "the sform is not a rotation with scales (it has shear) and there is no \
                  qform: no orthonormal direction can be derived"
                .into(),
        ),
    }
}

/// Geometry as SimpleITK reports it for a NIfTI file read as `ndim` dimensions (2 to 4).
fn itk_geometry(h: &Header, ndim: usize) -> std::result::Result<ItkGeometry, String> {
    let space_scale = match h.xyzt_units & 7 {
        1 => 1e3,
        3 => 1e-3,
        _ => 1.0,
    };
    let time_scale = match h.xyzt_units & 0x38 {
        16 => 1e-3,
        24 => 1e-6,
        _ => 1.0,
    };
    let mut spacing: Vec<f64> = (1..=ndim.min(3))
        .map(|i| pix(h, i).abs() * space_scale)
        .collect();
    if ndim == 4 {
        spacing.push(pix(h, 4) * time_scale);
    }
    let mut origin = vec![0.0; ndim];
    let mut direction = vec![0.0; ndim * ndim];
    for i in 0..ndim {
        direction[i * ndim + i] = 1.0;
    }
    if let Some(m) = itk_matrix(h)? {
        let sdim = ndim.min(3);
        let flip = |i: usize| if i < 2 { -1.0 } else { 1.0 };
        for i in 0..sdim {
            origin[i] = flip(i) * m[i][3] * space_scale;
        }
        for j in 0..sdim {
            let col: Vec<f64> = (0..sdim).map(|i| flip(i) * m[i][j]).collect();
            let n = col.iter().map(|v| v * v).sum::<f64>().sqrt();
            for i in 0..sdim {
                direction[i * ndim + j] = if n > 0.0 { col[i] / n } else { col[i] };
            }
        }
    }
    Ok(ItkGeometry {
        spacing,
        origin,
        direction,
    })
}

/// nibabel's `get_best_affine()`: sform, else qform, else the pixdim-only affine (RAS).
fn nibabel_affine(h: &Header) -> Mat {
    if h.sform_code > 0 {
        let mut m = [[0.0; 4]; 4];
        m[..3].copy_from_slice(&h.srow);
        m[3][3] = 1.0;
        return m;
    }
    if h.qform_code > 0 {
        let mut m = qform_matrix(&Header {
            pixdim: [
                h.pixdim[0],
                pix(h, 1).abs(),
                pix(h, 2).abs(),
                pix(h, 3).abs(),
                h.pixdim[4],
                h.pixdim[5],
                h.pixdim[6],
                h.pixdim[7],
            ],
            version: 2, // nibabel computes in double precision
            ..h.clone()
        });
        m[3] = [0.0, 0.0, 0.0, 1.0];
        return m;
    }
    let z = [pix(h, 1).abs(), pix(h, 2).abs(), pix(h, 3).abs()];
    let c = |i: usize| (h.dim[i + 1].max(1) as f64 - 1.0) / 2.0;
    [
        [-z[0], 0.0, 0.0, c(0) * z[0]],
        [0.0, z[1], 0.0, -c(1) * z[1]],
        [0.0, 0.0, z[2], -c(2) * z[2]],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// The header geometry as stored in `ImageProperties.extra["nifti"]`.
fn geometry_json(h: &Header) -> Value {
    json!({
        "version": h.version,
        "dim": h.dim,
        "pixdim": h.pixdim,
        "xyzt_units": h.xyzt_units,
        "dim_info": h.dim_info,
        "qform_code": h.qform_code,
        "sform_code": h.sform_code,
        "quatern": h.quatern,
        "qoffset": h.qoffset,
        "srow_x": h.srow[0],
        "srow_y": h.srow[1],
        "srow_z": h.srow[2],
    })
}

/// The stored header geometry back from `extra["nifti"]`, if present and well-formed.
fn geometry_from_json(v: &Value) -> Option<Header> {
    fn nums<const N: usize>(v: &Value, key: &str) -> Option<[f64; N]> {
        let a = v.get(key)?.as_array()?;
        if a.len() != N {
            return None;
        }
        let mut out = [0.0; N];
        for (o, x) in out.iter_mut().zip(a) {
            *o = x.as_f64()?;
        }
        Some(out)
    }
    let int = |key: &str| v.get(key).and_then(Value::as_i64);
    let dim = nums::<8>(v, "dim")?;
    Some(Header {
        version: if int("version")? == 2 { 2 } else { 1 },
        dim: dim.map(|d| d as i64),
        pixdim: nums(v, "pixdim")?,
        xyzt_units: int("xyzt_units")? as i32,
        dim_info: int("dim_info").unwrap_or(0) as u8,
        qform_code: int("qform_code")? as i32,
        sform_code: int("sform_code")? as i32,
        quatern: nums(v, "quatern")?,
        qoffset: nums(v, "qoffset")?,
        srow: [nums(v, "srow_x")?, nums(v, "srow_y")?, nums(v, "srow_z")?],
        ..Header::default()
    })
}

/// A header for properties that carry no NIfTI geometry (e.g. from another reader): the ITK
/// geometry to write ([`output_geometry`]) goes into an sform with code 1 (scanner); qform unset.
fn header_from_properties(p: &ImageProperties) -> Header {
    let mut h = Header::default();
    let n = if is_two_d(p) { 2 } else { 3 };
    let g = output_geometry(p, n);
    for i in 0..n {
        h.pixdim[i + 1] = g.spacing[i];
    }
    if !p.origin.is_empty() || !p.direction.is_empty() {
        h.sform_code = 1;
        for i in 0..n {
            let flip = if i < 2 { -1.0 } else { 1.0 };
            for j in 0..n {
                h.srow[i][j] = flip * g.direction[i * n + j] * g.spacing[j];
            }
            h.srow[i][3] = flip * g.origin[i];
        }
        if n == 2 {
            h.srow[2][2] = 1.0;
        }
    }
    h
}

// ---------------------------------------------------------------------------------------------
// Reading one file per reader convention

/// Effective dimension count as ITK sees it: trailing singleton axes beyond the third dropped.
fn itk_ndim(h: &Header) -> usize {
    let mut n = h.dim[0] as usize;
    while n > 3 && h.dim[n] == 1 {
        n -= 1;
    }
    n
}

/// The header geometry kept in `ImageProperties.extra["nifti"]`.
fn nifti_extra(h: &Header) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert("nifti".into(), geometry_json(h));
    extra
}

/// A NIfTI file as ITK reads it (for `SimpleITKIO`), with its header geometry as the extra
/// properties. NIfTI-2 files are refused, as SimpleITK cannot read them.
pub(crate) fn read_itk(path: &Path) -> Result<(ItkImage, Map<String, Value>)> {
    let raw = load(path)?;
    let h = &raw.header;
    if h.version == 2 {
        return Err(Error::invalid_file(
            path,
            "NIfTI-2 files are not read by SimpleITKIO (SimpleITK cannot read them); \
             use NibabelIO",
        ));
    }
    let ndim = itk_ndim(h);
    if !(2..=4).contains(&ndim) {
        return Err(Error::invalid_file(
            path,
            format!(
                "Unexpected number of dimensions: {ndim} (dim = {:?})",
                raw.dims()
            ),
        ));
    }
    let geometry = itk_geometry(h, ndim).map_err(|m| Error::invalid_file(path, m))?;
    let extra = nifti_extra(h);
    let size = raw.dims()[..ndim].to_vec();
    Ok((
        ItkImage {
            size,
            components: 1,
            geometry,
            pixels: raw.pixels,
        },
        extra,
    ))
}

fn nibabel_check(raw: &RawVolume, path: &Path) -> Result<[usize; 4]> {
    if raw.header.dim[0] != 3 {
        return Err(Error::invalid_file(
            path,
            format!(
                "only 3d images are supported by NibabelIO (this file has {} dimensions)",
                raw.header.dim[0]
            ),
        ));
    }
    let d = raw.dims();
    Ok([1, d[2], d[1], d[0]])
}

fn nibabel_properties(h: &Header, path: &Path) -> Result<ImageProperties> {
    let itk = itk_geometry(h, 3).map_err(|m| Error::invalid_file(path, m))?;
    let mut extra = nifti_extra(h);
    extra.insert("original_affine".into(), json!(nibabel_affine(h)));
    Ok(ImageProperties {
        spacing: [pix(h, 3).abs(), pix(h, 2).abs(), pix(h, 1).abs()],
        origin: itk.origin,
        direction: itk.direction,
        extra,
    })
}

/// The 16 values of a 4×4 affine stored as nested JSON arrays.
fn flat_affine(p: &ImageProperties, key: &str) -> Vec<f64> {
    p.extra
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_f64)
        .collect()
}

/// One file read with nibabel's conventions: the `[1, z, y, x]` array and its properties.
fn nibabel_file(path: &Path) -> Result<(Array4<f32>, ImageProperties)> {
    let raw = load(path)?;
    let shape = nibabel_check(&raw, path)?;
    let properties = nibabel_properties(&raw.header, path)?;
    let data = Array4::from_shape_vec(shape, raw.pixels.decode(|v| v as f32))
        .map_err(|e| Error::invalid_file(path, format!("cannot shape voxel data: {e}")))?;
    Ok((data, properties))
}

/// NibabelIO's checks across channels: shape (error), affine (warning), spacing (error).
#[expect(
    clippy::print_stderr,
    reason = "a warning for the user, as nnU-Net prints it; the library has no other channel to the terminal"
)]
fn nibabel_check_channels(
    files: &[&Path],
    channels: &[(Array4<f32>, ImageProperties)],
    affine_key: &str,
) -> Result<()> {
    let (first, first_props) = &channels[0];
    for ((data, p), &path) in channels.iter().zip(files).skip(1) {
        if first.shape() != data.shape() {
            let (a, b) = (
                format!("{:?}", first.shape()),
                format!("{:?}", data.shape()),
            );
            return Err(mismatch(files[0], path, "shape", a, b));
        }
        if !allclose(
            &flat_affine(first_props, affine_key),
            &flat_affine(p, affine_key),
        ) {
            eprintln!(
                "WARNING: {} and {} do not have the same affine",
                files[0].display(),
                path.display()
            );
        }
        if !allclose(&first_props.spacing, &p.spacing) {
            let (a, b) = (
                format!("{:?}", first_props.spacing),
                format!("{:?}", p.spacing),
            );
            return Err(mismatch(files[0], path, "spacing", a, b));
        }
    }
    Ok(())
}

/// Reads the channel files of a case with `read`, checks them as nnU-Net's nibabel readers do
/// (affines compared under `affine_key`) and stacks them.
fn nibabel_read_all(
    files: &[&Path],
    read: impl Fn(&Path) -> Result<(Array4<f32>, ImageProperties)>,
    affine_key: &str,
) -> Result<Image> {
    if files.is_empty() {
        return Err(Error::Invalid("no image files given".into()));
    }
    let channels = files.iter().map(|f| read(f)).collect::<Result<Vec<_>>>()?;
    nibabel_check_channels(files, &channels, affine_key)?;
    let (arrays, mut props): (Vec<_>, Vec<_>) = channels.into_iter().unzip();
    Ok(Image {
        data: stack(files, arrays)?,
        properties: props.swap_remove(0),
    })
}

/// `affine` of an image of `size` (`i, j, k`) after the axis transform `t`: columns permuted
/// and negated as the axes, the translation moved to the new first voxel (nibabel's
/// `affine @ inv_ornt_aff(ornt, shape)`).
fn reoriented_affine(affine: &Mat, t: &AxisTransform, size: [usize; 3]) -> Mat {
    let step = |axis: usize| [affine[0][axis], affine[1][axis], affine[2][axis]];
    let origin = t.new_origin([affine[0][3], affine[1][3], affine[2][3]], step, size);
    let mut out = [[0.0; 4]; 4];
    out[3][3] = 1.0;
    for i in 0..3 {
        for k in 0..3 {
            let sign = if t.flip[k] { -1.0 } else { 1.0 };
            out[i][k] = sign * affine[i][t.source[k]];
        }
        out[i][3] = origin[i];
    }
    out
}

/// NibabelIOWithReorient's properties of a file and the transform to RAS+: nibabel's spacing of
/// the reoriented image, ITK-style origin and direction of the reoriented affine, and (in
/// `extra`) both affines and the transform.
fn reoriented_properties(raw: &RawVolume, path: &Path) -> Result<(ImageProperties, AxisTransform)> {
    let h = &raw.header;
    let mut p = nibabel_properties(h, path)?;
    let affine = nibabel_affine(h);
    let t = nibabel_to_ras(&affine).ok_or_else(|| {
        Error::invalid_file(
            path,
            "cannot reorient: the affine is degenerate (two voxel axes along one world axis)",
        )
    })?;
    let d = raw.dims();
    let new = reoriented_affine(&affine, &t, [d[0], d[1], d[2]]);
    if !t.is_identity() {
        p.spacing = [
            column_norm(&new, 2),
            column_norm(&new, 1),
            column_norm(&new, 0),
        ];
    }
    let flip = |i: usize| if i < 2 { -1.0 } else { 1.0 };
    p.origin = (0..3).map(|i| flip(i) * new[i][3]).collect();
    p.direction = vec![0.0; 9];
    for j in 0..3 {
        let n = column_norm(&new, j);
        for (i, row) in new.iter().take(3).enumerate() {
            p.direction[i * 3 + j] = if n > 0.0 { flip(i) * row[j] / n } else { 0.0 };
        }
    }
    p.extra.insert("reoriented_affine".into(), json!(new));
    p.extra.insert("reorientation".into(), t.to_json());
    Ok((p, t))
}

/// One file read as NibabelIOWithReorient reads it: reoriented to RAS+.
fn reoriented_file(path: &Path) -> Result<(Array4<f32>, ImageProperties)> {
    let raw = load(path)?;
    let shape = nibabel_check(&raw, path)?;
    let (properties, t) = reoriented_properties(&raw, path)?;
    let data = Array4::from_shape_vec(shape, raw.pixels.decode(|v| v as f32))
        .map_err(|e| Error::invalid_file(path, format!("cannot shape voxel data: {e}")))?;
    Ok((t.array4(data.view()), properties))
}

/// The transform that undoes a NibabelIOWithReorient reorientation recorded in `properties`.
fn undo_reorientation(properties: &ImageProperties) -> Option<AxisTransform> {
    properties
        .extra
        .get("reorientation")
        .and_then(AxisTransform::from_json)
        .map(|t| t.inverse())
}

impl Reader for NibabelIOWithReorient {
    fn file_endings(&self) -> &[&str] {
        &[".nii", ".nii.gz"]
    }

    fn read_images(&self, files: &[&Path]) -> Result<Image> {
        nibabel_read_all(files, reoriented_file, "reoriented_affine")
    }

    fn read_segmentation(&self, file: &Path) -> Result<Segmentation> {
        let raw = load(file)?;
        let shape = nibabel_check(&raw, file)?;
        let (properties, t) = reoriented_properties(&raw, file)?;
        let data = Array4::from_shape_vec(shape, raw.pixels.labels(file)?)
            .map_err(|e| Error::invalid_file(file, format!("cannot shape voxel data: {e}")))?;
        Ok(Segmentation {
            data: t.array4(data.view()),
            properties,
        })
    }

    fn write_segmentation(
        &self,
        segmentation: ArrayView3<'_, i16>,
        file: &Path,
        properties: &ImageProperties,
    ) -> Result<()> {
        let undo = undo_reorientation(properties);
        write_segmentation(
            undone3(undo.as_ref(), segmentation).view(),
            file,
            properties,
        )
    }

    fn write_probabilities(
        &self,
        probabilities: ArrayView4<'_, f32>,
        file: &Path,
        properties: &ImageProperties,
    ) -> Result<()> {
        let undo = undo_reorientation(properties);
        write_probabilities(
            undone4(undo.as_ref(), probabilities).view(),
            file,
            properties,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

fn write_file(file: &Path, header: &Header, data: &[u8]) -> Result<()> {
    let gz = file.to_string_lossy().to_lowercase().ends_with(".gz");
    let handle = File::create(file).map_err(|e| Error::io(file, e))?;
    let mut out: Box<dyn Write> = if gz {
        Box::new(GzEncoder::new(
            BufWriter::new(handle),
            Compression::default(),
        ))
    } else {
        Box::new(BufWriter::new(handle))
    };
    out.write_all(&header_bytes(header))
        .and_then(|_| out.write_all(data))
        .and_then(|_| out.flush())
        .map_err(|e| Error::io(file, e))?;
    drop(out);
    Ok(())
}

/// Splits a NIfTI file into one 3D file per volume of its 4th axis, as nnU-Net's MSD conversion
/// does: voxel type, byte order, scaling and header geometry are kept, and `output(i)` names the
/// file of volume `i`. A 3D file is copied unchanged as volume 0. Returns the number of volumes.
pub fn split_volumes(file: &Path, output: impl Fn(usize) -> std::path::PathBuf) -> Result<usize> {
    let raw = load(file)?;
    let ndim = raw.header.dim[0];
    if ndim == 3 {
        let out = output(0);
        std::fs::copy(file, &out).map_err(|e| Error::io(&out, e))?;
        return Ok(1);
    }
    if ndim != 4 {
        return Err(Error::invalid_file(
            file,
            format!("has {ndim} dimensions; only 3D and 4D images can be split into channels"),
        ));
    }
    let volumes = raw.header.dim[4] as usize;
    let per_volume = raw.pixels.bytes.len() / volumes;
    let mut header = raw.header.clone();
    header.dim[0] = 3;
    header.dim[4] = 1;
    header.vox_offset = if header.version == 2 { 544.0 } else { 352.0 };
    for (i, chunk) in raw.pixels.bytes.chunks_exact(per_volume).enumerate() {
        write_file(&output(i), &header, chunk)?;
    }
    Ok(volumes)
}

/// The header to write for an array of `shape` (`[x, y, z]` and optional 4th size) with the
/// geometry of `properties`.
fn output_header(
    properties: &ImageProperties,
    xyz: [usize; 3],
    t: Option<usize>,
    dtype: DataType,
    file: &Path,
) -> Result<Header> {
    let mut h = match properties.extra.get("nifti").and_then(geometry_from_json) {
        Some(h) => h,
        None => header_from_properties(properties),
    };
    let two_d = h.dim[0] == 2 && xyz[2] == 1 && t.is_none();
    let mut dim = [1i64; 8];
    dim[0] = if t.is_some() {
        4
    } else if two_d {
        2
    } else {
        3
    };
    for i in 0..3 {
        dim[i + 1] = xyz[i] as i64;
    }
    if let Some(t) = t {
        dim[4] = t as i64;
        h.pixdim[4] = 1.0;
        h.xyzt_units &= 7;
    }
    let limit = if h.version == 2 {
        i64::MAX
    } else {
        i16::MAX as i64
    };
    if let Some(d) = dim[1..].iter().find(|&&d| d > limit) {
        return Err(Error::invalid_file(
            file,
            format!("cannot write a NIfTI-1 file with an axis of {d} voxels (at most 32767)"),
        ));
    }
    h.dim = dim;
    h.datatype = dtype.code();
    h.scl_slope = 1.0;
    h.scl_inter = 0.0;
    h.vox_offset = if h.version == 2 { 544.0 } else { 352.0 };
    Ok(h)
}

/// Writes a label map `[z, y, x]` as NIfTI (`.nii` or `.nii.gz`) with the header geometry of
/// `properties` (see the module documentation).
pub(crate) fn write_segmentation(
    seg: ArrayView3<'_, i16>,
    file: &Path,
    properties: &ImageProperties,
) -> Result<()> {
    let (z, y, x) = seg.dim();
    let pixels = label_pixels(seg);
    let header = output_header(properties, [x, y, z], None, pixels.kind, file)?;
    write_file(file, &header, &pixels.bytes)
}

/// Writes probabilities `[classes, z, y, x]` as a 4D float32 NIfTI with the header geometry of
/// `properties`.
pub(crate) fn write_probabilities(
    probs: ArrayView4<'_, f32>,
    file: &Path,
    properties: &ImageProperties,
) -> Result<()> {
    let (c, z, y, x) = probs.dim();
    let header = output_header(properties, [x, y, z], Some(c), DataType::F32, file)?;
    write_file(file, &header, &f32_pixels(probs.iter()).bytes)
}

/// Writes one float32 volume `[z, y, x]` as a 3D NIfTI file (`.nii` or `.nii.gz`) with the
/// geometry in `properties` (spacing alone gives an axis-aligned image at the origin).
pub fn write_volume_f32(
    volume: ndarray::ArrayView3<'_, f32>,
    file: &Path,
    properties: &ImageProperties,
) -> Result<()> {
    let (z, y, x) = volume.dim();
    let header = output_header(properties, [x, y, z], None, DataType::F32, file)?;
    write_file(file, &header, &f32_pixels(volume.iter()).bytes)
}

/// Writes one volume `[z, y, x]` as a 3D NIfTI file with the geometry in `properties`: as the
/// smallest of `uint8`, `uint16`, `int16` when every value is an integer that fits `int16`, else
/// as `float32`.
pub fn write_volume(
    volume: ndarray::ArrayView3<'_, f32>,
    file: &Path,
    properties: &ImageProperties,
) -> Result<()> {
    let fits = |v: f32| v.fract() == 0.0 && v >= i16::MIN as f32 && v <= i16::MAX as f32;
    if volume.iter().all(|&v| fits(v)) {
        write_segmentation(volume.mapv(|v| v as i16).view(), file, properties)
    } else {
        write_volume_f32(volume, file, properties)
    }
}

impl Reader for NibabelIO {
    fn file_endings(&self) -> &[&str] {
        &[".nii", ".nii.gz"]
    }

    fn read_images(&self, files: &[&Path]) -> Result<Image> {
        nibabel_read_all(files, nibabel_file, "original_affine")
    }

    fn read_segmentation(&self, file: &Path) -> Result<Segmentation> {
        let raw = load(file)?;
        let shape = nibabel_check(&raw, file)?;
        let properties = nibabel_properties(&raw.header, file)?;
        let labels = raw.pixels.labels(file)?;
        let data = Array4::from_shape_vec(shape, labels)
            .map_err(|e| Error::invalid_file(file, format!("cannot shape voxel data: {e}")))?;
        Ok(Segmentation { data, properties })
    }

    fn write_segmentation(
        &self,
        segmentation: ArrayView3<'_, i16>,
        file: &Path,
        properties: &ImageProperties,
    ) -> Result<()> {
        write_segmentation(segmentation, file, properties)
    }

    fn write_probabilities(
        &self,
        probabilities: ArrayView4<'_, f32>,
        file: &Path,
        properties: &ImageProperties,
    ) -> Result<()> {
        write_probabilities(probabilities, file, properties)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readers::simpleitk::SimpleItkIO;
    use ndarray::{Array3, Axis};

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    /// A 3D header with an oblique qform (code 1) and the same transform as sform (code 1).
    fn oblique_header(dims: [i64; 3], dtype: DataType) -> Header {
        let mut h = Header {
            dim: [3, dims[0], dims[1], dims[2], 1, 1, 1, 1],
            datatype: dtype.code(),
            pixdim: [1.0, 0.7, 0.8, 2.5, 1.0, 1.0, 1.0, 1.0],
            qform_code: 1,
            sform_code: 1,
            quatern: [0.1, 0.2, 0.3],
            qoffset: [-90.5, 12.25, 33.0],
            ..Header::default()
        };
        let q = qform_matrix(&h);
        h.srow.copy_from_slice(&q[..3]);
        h
    }

    fn le_bytes_i16(v: &[i16]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn raw_header(path: &Path) -> Header {
        load(path).unwrap().header
    }

    /// Header geometry equal at the file's precision (NIfTI-1 stores `f32`).
    fn same_geometry(a: &Header, b: &Header) {
        let f = |v: &[f64]| -> Vec<f32> { v.iter().map(|&x| x as f32).collect() };
        assert_eq!(f(&a.pixdim[..4]), f(&b.pixdim[..4]));
        assert_eq!(a.qform_code, b.qform_code);
        assert_eq!(a.sform_code, b.sform_code);
        assert_eq!(f(&a.quatern), f(&b.quatern));
        assert_eq!(f(&a.qoffset), f(&b.qoffset));
        for i in 0..3 {
            assert_eq!(f(&a.srow[i]), f(&b.srow[i]));
        }
        assert_eq!(a.xyzt_units, b.xyzt_units);
        assert_eq!(a.dim[..4], b.dim[..4]);
    }

    #[test]
    fn segmentation_round_trip_keeps_data_and_header_geometry() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("case.nii.gz");
        let h = oblique_header([5, 6, 7], DataType::I16);
        let labels: Vec<i16> = (0..210).map(|v| (v % 5) as i16).collect();
        write_file(&input, &h, &le_bytes_i16(&labels)).unwrap();

        for reader in [&SimpleItkIO as &dyn Reader, &NibabelIO] {
            let seg = reader.read_segmentation(&input).unwrap();
            assert_eq!(seg.data.shape(), [1, 7, 6, 5]);
            assert_eq!(seg.data.as_slice().unwrap(), &labels[..]);
            assert!(close(&seg.properties.spacing, &[2.5, 0.8, 0.7], 1e-6));
            for (out_name, big) in [("out.nii.gz", false), ("out.nii", false), ("big.nii", true)] {
                let out = dir.path().join(out_name);
                let mut data = seg.data.index_axis(Axis(0), 0).to_owned();
                if big {
                    data[[0, 0, 0]] = 300;
                    data[[1, 0, 0]] = -2;
                }
                reader
                    .write_segmentation(data.view(), &out, &seg.properties)
                    .unwrap();
                let back = reader.read_segmentation(&out).unwrap();
                assert_eq!(back.data.index_axis(Axis(0), 0), data);
                assert_eq!(back.properties.spacing, seg.properties.spacing);
                assert_eq!(back.properties.origin, seg.properties.origin);
                assert_eq!(back.properties.direction, seg.properties.direction);
                let written = raw_header(&out);
                same_geometry(&written, &h);
                let want = if big { DataType::I16 } else { DataType::U8 };
                assert_eq!(written.datatype, want.code());
                let gz = std::fs::read(&out).unwrap()[..2] == [0x1f, 0x8b];
                assert_eq!(gz, out_name.ends_with(".gz"));
            }
        }
        // uint16 when a label is >= 255 and none is negative
        let seg = SimpleItkIO.read_segmentation(&input).unwrap();
        let data = Array3::from_elem((7, 6, 5), 255i16);
        let out = dir.path().join("u16.nii.gz");
        SimpleItkIO
            .write_segmentation(data.view(), &out, &seg.properties)
            .unwrap();
        assert_eq!(raw_header(&out).datatype, DataType::U16.code());
        assert_eq!(
            SimpleItkIO.read_segmentation(&out).unwrap().data[[0, 6, 5, 4]],
            255
        );
    }

    #[test]
    fn itk_geometry_of_oblique_qform() {
        let h = oblique_header([5, 6, 7], DataType::I16);
        let g = itk_geometry(&h, 3).unwrap();
        let q = qform_matrix(&h);
        assert!(close(&g.origin, &[90.5, -12.25, 33.0], 1e-5));
        // direction columns are the normalised matrix columns with x and y negated
        for j in 0..3 {
            let n = column_norm(&q, j);
            for (i, row) in q.iter().take(3).enumerate() {
                let flip = if i < 2 { -1.0 } else { 1.0 };
                assert!((g.direction[i * 3 + j] - flip * row[j] / n).abs() < 1e-6);
            }
        }
        assert!(close(&g.spacing, &[0.7, 0.8, 2.5], 1e-6));
    }

    #[test]
    fn itk_chooses_between_sform_and_qform() {
        let mut h = oblique_header([2, 2, 2], DataType::U8);
        h.srow = [
            [-2.0, 0.0, 0.0, 1.0],
            [0.0, 2.0, 0.0, 2.0],
            [0.0, 0.0, 2.0, 3.0],
        ];
        // sform code 1 (scanner) wins
        assert!(close(
            &itk_geometry(&h, 3).unwrap().origin,
            &[-1.0, -2.0, 3.0],
            0.0
        ));
        // another sform code that disagrees with the qform: the qform wins
        h.sform_code = 2;
        assert!(close(
            &itk_geometry(&h, 3).unwrap().origin,
            &[90.5, -12.25, 33.0],
            1e-5
        ));
        // sform only
        h.qform_code = 0;
        let g = itk_geometry(&h, 3).unwrap();
        assert!(close(&g.origin, &[-1.0, -2.0, 3.0], 0.0));
        assert!(close(
            &g.direction,
            &[1., 0., 0., 0., -1., 0., 0., 0., 1.],
            0.0
        ));
        // a sheared sform alone cannot be used
        h.srow[0][1] = 1.0;
        assert!(itk_geometry(&h, 3).is_err());
        // neither: origin 0, identity
        h.sform_code = 0;
        let g = itk_geometry(&h, 3).unwrap();
        assert_eq!(g.origin, [0.0; 3]);
        assert_eq!(g.direction, [1., 0., 0., 0., 1., 0., 0., 0., 1.]);
        // metres are converted to millimetres
        h.qform_code = 1;
        h.xyzt_units = 1;
        let g = itk_geometry(&h, 3).unwrap();
        assert!(close(&g.spacing, &[700.0, 800.0, 2500.0], 1e-3));
        assert!(close(&g.origin, &[90500.0, -12250.0, 33000.0], 1e-2));
    }

    #[test]
    fn scaling_is_applied_unless_slope_is_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scaled.nii.gz");
        let mut h = oblique_header([2, 2, 1], DataType::I16);
        h.scl_slope = 2.0;
        h.scl_inter = 10.0;
        let mut bytes = header_bytes(&h);
        bytes.extend(le_bytes_i16(&[0, 1, -3, 7]));
        let enc = |b: &[u8]| {
            let mut e = GzEncoder::new(Vec::new(), Compression::fast());
            e.write_all(b).unwrap();
            e.finish().unwrap()
        };
        std::fs::write(&path, enc(&bytes)).unwrap();
        let img = SimpleItkIO.read_images(&[&path]).unwrap();
        assert_eq!(img.data.as_slice().unwrap(), &[10.0, 12.0, 4.0, 24.0]);
        let seg = NibabelIO.read_segmentation(&path).unwrap();
        assert_eq!(seg.data.as_slice().unwrap(), &[10, 12, 4, 24]);

        // slope 0: no scaling at all (NIfTI standard)
        bytes[112..116].copy_from_slice(&0f32.to_le_bytes());
        std::fs::write(&path, enc(&bytes)).unwrap();
        let img = NibabelIO.read_images(&[&path]).unwrap();
        assert_eq!(img.data.as_slice().unwrap(), &[0.0, 1.0, -3.0, 7.0]);

        // a scaled label map with fractional values is an error naming the file
        bytes[112..116].copy_from_slice(&0.5f32.to_le_bytes());
        std::fs::write(&path, enc(&bytes)).unwrap();
        let err = SimpleItkIO
            .read_segmentation(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("scaled.nii.gz") && err.contains("not an integer"),
            "{err}"
        );
    }

    #[test]
    fn all_data_types_and_big_endian() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.nii");
        let values = [0.0f64, 1.0, 2.0, 100.0];
        let cases: Vec<(DataType, Vec<u8>)> = vec![
            (DataType::U8, values.iter().map(|&v| v as u8).collect()),
            (
                DataType::I8,
                values.iter().map(|&v| v as i8 as u8).collect(),
            ),
            (
                DataType::U16,
                values
                    .iter()
                    .flat_map(|&v| (v as u16).to_be_bytes())
                    .collect(),
            ),
            (
                DataType::I32,
                values
                    .iter()
                    .flat_map(|&v| (v as i32).to_be_bytes())
                    .collect(),
            ),
            (
                DataType::U32,
                values
                    .iter()
                    .flat_map(|&v| (v as u32).to_be_bytes())
                    .collect(),
            ),
            (
                DataType::I64,
                values
                    .iter()
                    .flat_map(|&v| (v as i64).to_be_bytes())
                    .collect(),
            ),
            (
                DataType::U64,
                values
                    .iter()
                    .flat_map(|&v| (v as u64).to_be_bytes())
                    .collect(),
            ),
            (
                DataType::F32,
                values
                    .iter()
                    .flat_map(|&v| (v as f32).to_be_bytes())
                    .collect(),
            ),
            (
                DataType::F64,
                values.iter().flat_map(|&v| v.to_be_bytes()).collect(),
            ),
        ];
        for (dtype, data) in cases {
            let h = Header {
                dim: [3, 4, 1, 1, 1, 1, 1, 1],
                datatype: dtype.code(),
                ..Header::default()
            };
            // big-endian header: swap every multi-byte field by re-encoding by hand
            let mut bytes = header_bytes(&h);
            let le = bytes.clone();
            let swap = |b: &mut Vec<u8>, off: usize, n: usize| b[off..off + n].reverse();
            swap(&mut bytes, 0, 4);
            for i in 0..8 {
                swap(&mut bytes, 40 + 2 * i, 2);
                swap(&mut bytes, 76 + 4 * i, 4);
            }
            for off in [70, 72] {
                swap(&mut bytes, off, 2);
            }
            for off in [108, 112, 116] {
                swap(&mut bytes, off, 4);
            }
            bytes.extend(&data);
            std::fs::write(&path, &bytes).unwrap();
            let parsed = raw_header(&path);
            assert!(parsed.big_endian);
            assert_eq!(parsed.dim, h.dim);
            let _ = le;
            let img = NibabelIO.read_images(&[&path]).unwrap();
            let got: Vec<f64> = img.data.iter().map(|&v| v as f64).collect();
            assert_eq!(got, values, "{dtype:?}");
        }
    }

    #[test]
    fn two_d_images_follow_simpleitkio() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slice.nii.gz");
        let h = Header {
            dim: [2, 3, 2, 1, 1, 1, 1, 1],
            datatype: DataType::I16.code(),
            pixdim: [1.0, 0.5, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            qform_code: 1,
            qoffset: [3.0, 4.0, 0.0],
            ..Header::default()
        };
        write_file(&path, &h, &le_bytes_i16(&[1, 2, 3, 4, 5, 6])).unwrap();
        let img = SimpleItkIO.read_images(&[&path]).unwrap();
        assert_eq!(img.data.shape(), [1, 1, 2, 3]);
        assert_eq!(img.data[[0, 0, 1, 0]], 4.0);
        assert_eq!(img.properties.spacing, [1998.0, 2.0, 0.5]);
        assert_eq!(img.properties.origin, [-3.0, -4.0]);
        assert_eq!(img.properties.direction, [-1.0, 0.0, 0.0, -1.0]);
        let err = NibabelIO.read_images(&[&path]).unwrap_err().to_string();
        assert!(err.contains("only 3d images"), "{err}");

        let out = dir.path().join("pred.nii.gz");
        let seg = Array3::from_shape_fn((1, 2, 3), |(_, y, x)| (y * 3 + x) as i16);
        SimpleItkIO
            .write_segmentation(seg.view(), &out, &img.properties)
            .unwrap();
        let written = raw_header(&out);
        assert_eq!(written.dim[0], 2);
        same_geometry(&written, &h);
        let back = SimpleItkIO.read_segmentation(&out).unwrap();
        assert_eq!(back.data.index_axis(Axis(0), 0), seg);
        assert_eq!(
            back.properties,
            SimpleItkIO.read_segmentation(&out).unwrap().properties
        );
        assert_eq!(back.properties.spacing, [1998.0, 2.0, 0.5]);
    }

    #[test]
    fn four_d_files_give_channels_and_probabilities_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("multi.nii.gz");
        let mut h = oblique_header([3, 2, 2], DataType::I16);
        h.dim = [4, 3, 2, 2, 2, 1, 1, 1];
        let values: Vec<i16> = (0..24).collect();
        write_file(&path, &h, &le_bytes_i16(&values)).unwrap();
        let img = SimpleItkIO.read_images(&[&path]).unwrap();
        assert_eq!(img.data.shape(), [2, 2, 2, 3]);
        assert_eq!(img.data[[1, 0, 0, 0]], 12.0);
        assert!(close(&img.properties.spacing, &[2.5, 0.8, 0.7], 1e-6));
        assert_eq!(img.properties.origin.len(), 4);
        assert_eq!(img.properties.direction.len(), 16);
        assert!(SimpleItkIO.read_segmentation(&path).is_err());
        assert!(NibabelIO.read_images(&[&path]).is_err());

        // a 4D file with a single volume is 3D for ITK
        let single = dir.path().join("single.nii.gz");
        h.dim = [4, 3, 2, 2, 1, 1, 1, 1];
        write_file(&single, &h, &le_bytes_i16(&values[..12])).unwrap();
        let img1 = SimpleItkIO.read_images(&[&single]).unwrap();
        assert_eq!(img1.data.shape(), [1, 2, 2, 3]);
        assert_eq!(img1.properties.origin.len(), 3);

        let probs = Array4::from_shape_fn((3, 2, 2, 3), |(c, z, y, x)| {
            (c * 100 + z * 10 + y * 3 + x) as f32 / 7.0
        });
        let out = dir.path().join("probs.nii.gz");
        SimpleItkIO
            .write_probabilities(probs.view(), &out, &img1.properties)
            .unwrap();
        let back = SimpleItkIO.read_images(&[&out]).unwrap();
        assert_eq!(back.data, probs);
        assert_eq!(raw_header(&out).datatype, DataType::F32.code());
        assert_eq!(back.properties.origin[..3], img1.properties.origin[..]);
        // the 4th axis holds classes, not time: its unit is dropped
        same_geometry(
            &Header {
                dim: h.dim,
                ..raw_header(&out)
            },
            &Header {
                xyzt_units: h.xyzt_units & 7,
                ..h
            },
        );
    }

    #[test]
    fn channels_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("case_0000.nii.gz");
        let b = dir.path().join("case_0001.nii.gz");
        let c = dir.path().join("case_0002.nii.gz");
        let h = oblique_header([2, 2, 2], DataType::U8);
        write_file(&a, &h, &[1u8; 8]).unwrap();
        write_file(&b, &h, &[2u8; 8]).unwrap();
        let img = SimpleItkIO.read_images(&[&a, &b]).unwrap();
        assert_eq!(img.data.shape(), [2, 2, 2, 2]);
        assert_eq!(img.data[[1, 1, 1, 1]], 2.0);
        let img = NibabelIO.read_images(&[&a, &b]).unwrap();
        assert_eq!(img.data[[0, 1, 1, 1]], 1.0);

        let mut other = h.clone();
        other.dim = [3, 2, 2, 1, 1, 1, 1, 1];
        write_file(&c, &other, &[3u8; 4]).unwrap();
        for reader in [&SimpleItkIO as &dyn Reader, &NibabelIO] {
            let err = reader.read_images(&[&a, &c]).unwrap_err().to_string();
            assert!(
                err.contains("case_0000.nii.gz") && err.contains("case_0002.nii.gz"),
                "{err}"
            );
            assert!(err.contains("shape"), "{err}");
        }
        let mut other = h.clone();
        other.pixdim[2] = 0.9;
        write_file(&c, &other, &[3u8; 8]).unwrap();
        for reader in [&SimpleItkIO as &dyn Reader, &NibabelIO] {
            let err = reader.read_images(&[&a, &c]).unwrap_err().to_string();
            assert!(
                err.contains("spacing") && err.contains("case_0000.nii.gz"),
                "{err}"
            );
        }
        // a different origin is only a warning
        let mut other = h.clone();
        other.srow[0][3] += 5.0;
        other.qoffset[0] += 5.0;
        write_file(&c, &other, &[3u8; 8]).unwrap();
        assert!(SimpleItkIO.read_images(&[&a, &c]).is_ok());
        assert!(NibabelIO.read_images(&[&a, &c]).is_ok());
    }

    #[test]
    fn nifti2_is_read_by_nibabelio_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.nii.gz");
        let mut h = oblique_header([2, 3, 1], DataType::F64);
        h.version = 2;
        let data: Vec<u8> = (0..6)
            .flat_map(|v| (v as f64 * 1.5).to_le_bytes())
            .collect();
        write_file(&path, &h, &data).unwrap();
        assert_eq!(raw_header(&path).srow, h.srow);
        let img = NibabelIO.read_images(&[&path]).unwrap();
        assert_eq!(
            img.data.as_slice().unwrap(),
            &[0.0, 1.5, 3.0, 4.5, 6.0, 7.5]
        );
        let err = SimpleItkIO.read_images(&[&path]).unwrap_err().to_string();
        assert!(err.contains("NIfTI-2"), "{err}");
        assert!(!SimpleItkIO.can_read(&path));
        assert!(NibabelIO.can_read(&path));
        // written back as NIfTI-2
        let out = dir.path().join("out.nii.gz");
        NibabelIO
            .write_segmentation(
                Array3::<i16>::zeros((1, 3, 2)).view(),
                &out,
                &img.properties,
            )
            .unwrap();
        let back = raw_header(&out);
        assert_eq!(back.version, 2);
        same_geometry(&back, &h);
    }

    #[test]
    fn properties_without_nifti_header_are_written_from_spacing_origin_direction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.nii.gz");
        let h = oblique_header([3, 2, 2], DataType::U8);
        write_file(&path, &h, &[0u8; 12]).unwrap();
        let mut props = SimpleItkIO.read_segmentation(&path).unwrap().properties;
        props.extra.clear();
        let out = dir.path().join("out.nii.gz");
        SimpleItkIO
            .write_segmentation(Array3::<i16>::ones((2, 2, 3)).view(), &out, &props)
            .unwrap();
        let back = SimpleItkIO.read_segmentation(&out).unwrap().properties;
        assert!(close(&back.spacing, &props.spacing, 1e-6));
        assert!(close(&back.origin, &props.origin, 1e-4));
        assert!(close(&back.direction, &props.direction, 1e-6));
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.nii.gz");
        let h = oblique_header([4, 4, 4], DataType::I16);
        write_file(&good, &h, &le_bytes_i16(&[7; 64])).unwrap();
        let gz = std::fs::read(&good).unwrap();
        let mut plain = header_bytes(&h);
        plain.extend(le_bytes_i16(&[7; 64]));

        let check = |name: &str, bytes: Option<&[u8]>, want: &str| {
            let path = dir.path().join(name);
            if let Some(b) = bytes {
                std::fs::write(&path, b).unwrap();
            }
            for reader in [&SimpleItkIO as &dyn Reader, &NibabelIO] {
                let err = reader.read_images(&[&path]).unwrap_err().to_string();
                assert!(err.contains(name), "{name}: {err}");
                assert!(err.contains(want), "{name}: {err}");
                assert!(reader.read_segmentation(&path).is_err());
            }
        };
        check("missing.nii.gz", None, "No such file");
        check("empty.nii.gz", Some(&[]), "too short");
        check("truncated.nii.gz", Some(&gz[..gz.len() / 2]), "");
        check(
            "truncated.nii",
            Some(&plain[..plain.len() - 3]),
            "truncated",
        );
        check(
            "short_header.nii",
            Some(&plain[..200]),
            "truncated NIfTI header",
        );
        let mut corrupt = gz.clone();
        let mid = corrupt.len() / 2;
        for b in &mut corrupt[mid - 8..mid + 8] {
            *b ^= 0x5a;
        }
        check("corrupt.nii.gz", Some(&corrupt), "");
        check(
            "text.nii.gz",
            Some(b"this is not an image at all"),
            "not a NIfTI file",
        );
        let mut bad = plain.clone();
        bad[344..348].copy_from_slice(b"abcd");
        check("magic.nii", Some(&bad), "magic");
        let mut bad = plain.clone();
        bad[42..44].copy_from_slice(&0i16.to_le_bytes());
        check("zero_dim.nii", Some(&bad), "invalid size 0");
        let mut bad = plain.clone();
        bad[44..46].copy_from_slice(&(-3i16).to_le_bytes());
        check("negative_dim.nii", Some(&bad), "invalid size -3");
        let mut bad = plain.clone();
        for i in 1..4 {
            bad[40 + 2 * i..42 + 2 * i].copy_from_slice(&i16::MAX.to_le_bytes());
        }
        check("huge.nii", Some(&bad), "more than the file holds");
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(&bad).unwrap();
        check("huge.nii.gz", Some(&e.finish().unwrap()), "truncated");
        let mut bad = plain.clone();
        bad[70..72].copy_from_slice(&32i16.to_le_bytes());
        check("complex.nii", Some(&bad), "complex");
        let mut bad = plain.clone();
        bad[40..42].copy_from_slice(&9i16.to_le_bytes());
        check("dim0.nii", Some(&bad), "dim[0] = 9");
        let mut bad = plain.clone();
        bad[108..112].copy_from_slice(&0f32.to_le_bytes());
        check("offset.nii", Some(&bad), "offset");
        assert!(SimpleItkIO.read_images(&[]).is_err());
        // labels out of the int16 range
        let big = dir.path().join("big_labels.nii");
        let h = Header {
            dim: [3, 2, 1, 1, 1, 1, 1, 1],
            datatype: DataType::I32.code(),
            ..Header::default()
        };
        let data: Vec<u8> = [1i32, 40000].iter().flat_map(|v| v.to_le_bytes()).collect();
        write_file(&big, &h, &data).unwrap();
        let err = NibabelIO.read_segmentation(&big).unwrap_err().to_string();
        assert!(
            err.contains("big_labels.nii") && err.contains("40000"),
            "{err}"
        );
    }

    #[test]
    fn endings_and_registration() {
        assert_eq!(
            SimpleItkIO.file_endings()[..4],
            [".nii.gz", ".nrrd", ".mha", ".gipl"]
        );
        assert_eq!(NibabelIO.file_endings(), [".nii", ".nii.gz"]);
        let registries = nnunet_core::registry::Registries::builtin().unwrap();
        for name in [
            "SimpleITKIO",
            "SimpleITKIOWithReorient",
            "NibabelIO",
            "NibabelIOWithReorient",
        ] {
            assert!(registries.readers.contains(name), "{name}");
        }
    }
}
