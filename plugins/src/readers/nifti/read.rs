//! Reading a NIfTI file: header and voxel bytes, gzip-compressed or not, and the file as ITK
//! sees it (for `SimpleITKIO`).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use nnunet_core::{Error, Result};
use serde_json::{Map, Value};

use super::geometry::{geometry_json, itk_geometry};
use super::header::{DataType, Header, NIFTI2_SIZE, detect, header_size, parse_header};
use crate::readers::itk::{ItkImage, Pixels, read_exact_or_eof, read_voxel_bytes};

/// A file's header and its voxel values (exactly as many as `dim` announces, scaled as the
/// header says).
pub(super) struct RawVolume {
    /// The parsed header.
    pub(super) header: Header,
    /// The voxel values, with the header's scaling.
    pub(super) pixels: Pixels,
}

impl RawVolume {
    /// The sizes of the `dim[0]` axes, `x` first.
    pub(super) fn dims(&self) -> Vec<usize> {
        (1..=self.header.dim[0] as usize)
            .map(|i| self.header.dim[i] as usize)
            .collect()
    }
}

/// Reads header and voxel bytes, gzip-compressed or not (decided by the content, not the name).
/// The voxel byte count the header announces is checked against what the file really holds
/// before it is trusted, so a corrupt header cannot make us allocate huge buffers.
pub(super) fn load(path: &Path) -> Result<RawVolume> {
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
            Error::reader_file(path, format!("corrupt gzip data: {e}"))
        } else {
            Error::io(path, e)
        }
    };
    let mut head = vec![0u8; NIFTI2_SIZE];
    let n = read_exact_or_eof(&mut reader, &mut head[..4]).map_err(io_err)?;
    let (version, _) = detect(&head[..n]).map_err(|m| Error::reader_file(path, m))?;
    let size = header_size(version);
    let n = 4 + read_exact_or_eof(&mut reader, &mut head[4..size]).map_err(io_err)?;
    let header = parse_header(&head[..n]).map_err(|m| Error::reader_file(path, m))?;
    let dtype = DataType::from_code(header.datatype).map_err(|m| Error::reader_file(path, m))?;

    let nbytes = (1..=header.dim[0] as usize)
        .try_fold(dtype.size() as u64, |acc, i| {
            acc.checked_mul(header.dim[i] as u64)
        })
        .ok_or_else(|| {
            Error::reader_file(path, format!("image size {:?} overflows", header.dim))
        })?;
    let offset = header.vox_offset as u64;
    let too_big = || {
        Error::reader_file(
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

/// Effective dimension count as ITK sees it: trailing singleton axes beyond the third dropped.
fn itk_ndim(h: &Header) -> usize {
    let mut n = h.dim[0] as usize;
    while n > 3 && h.dim[n] == 1 {
        n -= 1;
    }
    n
}

/// The header geometry kept in `ImageProperties.extra["nifti"]`.
pub(super) fn nifti_extra(h: &Header) -> Map<String, Value> {
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
        return Err(Error::reader_file(
            path,
            "NIfTI-2 files are not read by SimpleITKIO (SimpleITK cannot read them); \
             use NibabelIO",
        ));
    }
    let ndim = itk_ndim(h);
    if !(2..=4).contains(&ndim) {
        return Err(Error::reader_file(
            path,
            format!(
                "Unexpected number of dimensions: {ndim} (dim = {:?})",
                raw.dims()
            ),
        ));
    }
    let geometry = itk_geometry(h, ndim).map_err(|m| Error::reader_file(path, m))?;
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
