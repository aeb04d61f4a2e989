//! The NIfTI-1 / NIfTI-2 header: the fields we use, parsed from either byte order and written
//! back little-endian.

/// Size of a NIfTI-1 header in bytes.
pub(super) const NIFTI1_SIZE: usize = 348;
/// Size of a NIfTI-2 header in bytes.
pub(super) const NIFTI2_SIZE: usize = 540;
/// The magic of a single-file NIfTI-1 (`.nii`).
const NIFTI1_MAGIC: &[u8; 4] = b"n+1\0";
/// The magic of a single-file NIfTI-2.
const NIFTI2_MAGIC: &[u8; 8] = b"n+2\0\r\n\x1a\n";

/// NIfTI's voxel types are ITK's pixel types; the NIfTI codes map onto them here.
pub(super) use crate::readers::itk::PixelType as DataType;

impl DataType {
    /// The voxel type of NIfTI datatype `code`; unsupported codes are an error message.
    pub(super) fn from_code(code: i16) -> std::result::Result<Self, String> {
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

    /// The NIfTI datatype code of this voxel type.
    pub(super) fn code(self) -> i16 {
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
pub(super) struct Header {
    pub(super) version: u8,
    pub(super) big_endian: bool,
    pub(super) dim_info: u8,
    pub(super) dim: [i64; 8],
    pub(super) datatype: i16,
    pub(super) pixdim: [f64; 8],
    pub(super) vox_offset: f64,
    pub(super) scl_slope: f64,
    pub(super) scl_inter: f64,
    pub(super) xyzt_units: i32,
    pub(super) qform_code: i32,
    pub(super) sform_code: i32,
    pub(super) quatern: [f64; 3],
    pub(super) qoffset: [f64; 3],
    pub(super) srow: [[f64; 4]; 3],
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
    /// The `N` bytes at `off` in little-endian order.
    fn arr<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[off..off + N]);
        if self.be {
            a.reverse();
        }
        a
    }
    /// The `i16` at `off`.
    fn i16(&self, off: usize) -> i16 {
        i16::from_le_bytes(self.arr(off))
    }
    /// The `i32` at `off`.
    fn i32(&self, off: usize) -> i32 {
        i32::from_le_bytes(self.arr(off))
    }
    /// The `i64` at `off`.
    fn i64(&self, off: usize) -> i64 {
        i64::from_le_bytes(self.arr(off))
    }
    /// The `f32` at `off`, widened.
    fn f32(&self, off: usize) -> f64 {
        f32::from_le_bytes(self.arr(off)) as f64
    }
    /// The `f64` at `off`.
    fn f64(&self, off: usize) -> f64 {
        f64::from_le_bytes(self.arr(off))
    }
}

/// Which NIfTI version and byte order the first four bytes announce.
pub(super) fn detect(first: &[u8]) -> std::result::Result<(u8, bool), String> {
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

/// The header size of NIfTI `version` (1 or 2).
pub(super) fn header_size(version: u8) -> usize {
    if version == 1 {
        NIFTI1_SIZE
    } else {
        NIFTI2_SIZE
    }
}

/// Parses a complete NIfTI-1 (348 bytes) or NIfTI-2 (540 bytes) header.
pub(super) fn parse_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    let (version, be) = detect(bytes)?;
    let size = header_size(version);
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
        parse_nifti1_fields(&f, &mut h)?;
    } else {
        parse_nifti2_fields(&f, &mut h)?;
    }
    validate(&h, size)?;
    Ok(h)
}

/// Fills `h` from the fields of a NIfTI-1 header, after checking its magic.
fn parse_nifti1_fields(f: &Fields<'_>, h: &mut Header) -> std::result::Result<(), String> {
    let bytes = f.b;
    if &bytes[344..348] != NIFTI1_MAGIC {
        return Err(if &bytes[344..348] == b"ni1\0" {
            "a NIfTI header/image pair (.hdr/.img) is not supported; use a single .nii file".into()
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
    Ok(())
}

/// Fills `h` from the fields of a NIfTI-2 header, after checking its magic.
fn parse_nifti2_fields(f: &Fields<'_>, h: &mut Header) -> std::result::Result<(), String> {
    let bytes = f.b;
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
    Ok(())
}

/// Checks the dimensions, voxel type and data offset of a parsed header of `size` bytes.
fn validate(h: &Header, size: usize) -> std::result::Result<(), String> {
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
    Ok(())
}

/// Serialises a header (little-endian), followed by the 4-byte empty extension block.
pub(super) fn header_bytes(h: &Header) -> Vec<u8> {
    /// Copies `v` to `b` at `off`.
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
