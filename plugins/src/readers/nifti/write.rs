//! Writing NIfTI files: label maps, probabilities and single volumes with the header geometry of
//! the input, and the splitting of 4D files into 3D ones.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use ndarray::{ArrayView3, ArrayView4};
use nnunet_core::io::ImageProperties;
use nnunet_core::{Error, Result};

use super::geometry::{geometry_from_json, header_from_properties};
use super::header::{DataType, Header, header_bytes};
use super::read::load;
use crate::readers::itk::{f32_pixels, label_pixels};

/// Writes `header` and the voxel bytes `data` to `file`, gzip-compressed when its name ends in
/// `.gz`.
pub(super) fn write_file(file: &Path, header: &Header, data: &[u8]) -> Result<()> {
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
        return Err(Error::reader_file(
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
        return Err(Error::reader_file(
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
    write_f32(file, properties, [x, y, z], Some(c), probs.iter())
}

/// Writes one float32 volume `[z, y, x]` as a 3D NIfTI file (`.nii` or `.nii.gz`) with the
/// geometry in `properties` (spacing alone gives an axis-aligned image at the origin).
pub fn write_volume_f32(
    volume: ndarray::ArrayView3<'_, f32>,
    file: &Path,
    properties: &ImageProperties,
) -> Result<()> {
    let (z, y, x) = volume.dim();
    write_f32(file, properties, [x, y, z], None, volume.iter())
}

/// Writes `values` as float32 NIfTI of size `xyz` (and `t` volumes) with the header geometry of
/// `properties`.
fn write_f32<'a>(
    file: &Path,
    properties: &ImageProperties,
    xyz: [usize; 3],
    t: Option<usize>,
    values: impl ExactSizeIterator<Item = &'a f32>,
) -> Result<()> {
    let header = output_header(properties, xyz, t, DataType::F32, file)?;
    write_file(file, &header, &f32_pixels(values).bytes)
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
