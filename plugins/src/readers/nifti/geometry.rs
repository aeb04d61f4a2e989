//! NIfTI geometry: the qform and sform matrices, ITK's choice between them, nibabel's best
//! affine, and the header geometry kept in `ImageProperties.extra["nifti"]`.

use nnunet_core::io::ImageProperties;
use serde_json::{Value, json};

use super::header::Header;
use crate::readers::itk::{ItkGeometry, is_two_d, output_geometry};

/// A 4×4 affine, row-major.
pub(super) type Mat = [[f64; 4]; 4];

/// Rounds to single precision, as NIfTI-1 readers keep their matrices in `float`.
fn round_f32(m: &mut Mat, version: u8) {
    if version == 1 {
        for v in m.iter_mut().flatten() {
            *v = *v as f32 as f64;
        }
    }
}

/// `pixdim[i]` with 0 / non-finite replaced by 1 (as the NIfTI library does).
pub(super) fn pix(h: &Header, i: usize) -> f64 {
    let p = h.pixdim[i];
    if p == 0.0 || !p.is_finite() { 1.0 } else { p }
}

/// The qform matrix (RAS), from the quaternion, signed pixdims, qfac and offsets.
pub(super) fn qform_matrix(h: &Header) -> Mat {
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

/// The sform matrix (RAS) from the `srow_*` fields.
fn sform_matrix(h: &Header) -> Mat {
    let mut m = [[0.0; 4]; 4];
    m[..3].copy_from_slice(&h.srow);
    m[3][3] = 1.0;
    round_f32(&mut m, h.version);
    m
}

/// The length of column `j` of the 3×3 part.
pub(super) fn column_norm(m: &Mat, j: usize) -> f64 {
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
pub(super) fn itk_geometry(h: &Header, ndim: usize) -> std::result::Result<ItkGeometry, String> {
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
pub(super) fn nibabel_affine(h: &Header) -> Mat {
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
pub(super) fn geometry_json(h: &Header) -> Value {
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
pub(super) fn geometry_from_json(v: &Value) -> Option<Header> {
    /// The `N` numbers under `key`, if present.
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
pub(super) fn header_from_properties(p: &ImageProperties) -> Header {
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
