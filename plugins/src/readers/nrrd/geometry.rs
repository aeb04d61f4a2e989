//! The image layout of a NRRD header: its axes, the components axis and the ITK geometry of the
//! image axes.

use std::path::Path;

use nnunet_core::{Error, Result};

use super::header::{Header, per_axis, vectors};
use crate::readers::itk::ItkGeometry;

/// Whether an axis of this kind is an image axis (teem's domain kinds, or no kind given).
pub(super) fn is_domain(kind: &str) -> bool {
    matches!(kind, "domain" | "space" | "time" | "???" | "none" | "")
}

/// The dimension of a named space.
pub(super) fn space_dimension(path: &Path, space: &str) -> Result<usize> {
    match space {
        "right-anterior-superior"
        | "ras"
        | "left-anterior-superior"
        | "las"
        | "left-posterior-superior"
        | "lps"
        | "scanner-xyz"
        | "3d-right-handed"
        | "3d-left-handed" => Ok(3),
        "right-anterior-superior-time"
        | "rast"
        | "left-anterior-superior-time"
        | "last"
        | "left-posterior-superior-time"
        | "lpst"
        | "scanner-xyz-time"
        | "3d-right-handed-time"
        | "3d-left-handed-time" => Ok(4),
        other => Err(Error::reader_file(
            path,
            format!("NRRD space '{other}' is not known"),
        )),
    }
}

/// Signs that bring a vector of `space` into ITK's LPS world.
pub(super) fn to_lps(space: &str) -> [f64; 3] {
    match space {
        "right-anterior-superior" | "ras" => [-1.0, -1.0, 1.0],
        "left-anterior-superior" | "las" => [1.0, -1.0, 1.0],
        _ => [1.0; 3],
    }
}

/// The image layout of the header: sizes of all axes, the components axis (if any), and the
/// ITK geometry of the image axes.
pub(super) struct Layout {
    pub(super) sizes: Vec<usize>,
    pub(super) range_axis: Option<usize>,
    pub(super) geometry: ItkGeometry,
}

/// The layout of the header's axes (see [`Layout`]).
pub(super) fn layout(path: &Path, h: &Header) -> Result<Layout> {
    let required = |names: &[&str]| {
        h.get(names).ok_or_else(|| {
            Error::reader_file(path, format!("the NRRD header has no '{}' field", names[0]))
        })
    };
    let dim: usize = required(&["dimension"])?
        .parse()
        .ok()
        .filter(|d| (1..=16).contains(d))
        .ok_or_else(|| Error::reader_file(path, "NRRD 'dimension' must be 1 to 16"))?;
    let sizes: Vec<usize> = per_axis(path, "sizes", required(&["sizes"])?, dim)?
        .iter()
        .map(|s| s.parse().ok().filter(|&v| v > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::reader_file(path, "NRRD 'sizes' must be positive integers"))?;
    let kinds: Vec<String> = match h.get(&["kinds"]) {
        Some(v) => per_axis(path, "kinds", v, dim)?
            .iter()
            .map(|k| k.to_lowercase())
            .collect(),
        None => vec![String::new(); dim],
    };
    let range: Vec<usize> = (0..dim).filter(|&a| !is_domain(&kinds[a])).collect();
    if range.len() > 1 {
        return Err(Error::reader_file(
            path,
            format!(
                "the NRRD file has {} non-spatial axes (kinds {kinds:?}); only one (pixel components) is supported",
                range.len()
            ),
        ));
    }
    let domain: Vec<usize> = (0..dim).filter(|a| !range.contains(a)).collect();
    let geometry = geometry(path, h, &domain, &sizes)?;
    Ok(Layout {
        sizes,
        range_axis: range.first().copied(),
        geometry,
    })
}

/// The ITK geometry of the image axes `domain` (see the module documentation).
pub(super) fn geometry(
    path: &Path,
    h: &Header,
    domain: &[usize],
    sizes: &[usize],
) -> Result<ItkGeometry> {
    let n = domain.len();
    let mut g = ItkGeometry::identity(n);
    let space = h.get(&["space"]).map(str::to_lowercase);
    let space_dim = match (&space, h.get(&["space dimension"])) {
        (Some(s), _) => Some(space_dimension(path, s)?),
        (None, Some(d)) => Some(d.parse().map_err(|_| {
            Error::reader_file(path, format!("'space dimension: {d}' is not a number"))
        })?),
        (None, None) => None,
    };
    let directions = h.get(&["space directions"]);
    let (Some(sd), Some(dirs)) = (space_dim, directions) else {
        return axis_geometry(path, h, domain, sizes, g);
    };
    if sd != n {
        return Err(Error::reader_file(
            path,
            format!(
                "the number of image axes in the NRRD file ({n}) differs from the dimension of \
                 its space ({sd}); ITK cannot read it either"
            ),
        ));
    }
    let all = vectors(path, dirs)?;
    if all.len() != sizes.len() {
        return Err(Error::reader_file(
            path,
            "'space directions' must have one entry per axis",
        ));
    }
    let signs = match (&space, n) {
        (Some(s), 3) => to_lps(s),
        _ => [1.0; 3],
    };
    let sign = |i: usize| if i < 3 { signs[i] } else { 1.0 };
    for (j, &axis) in domain.iter().enumerate() {
        let v = all[axis].as_ref().filter(|v| v.len() == n).ok_or_else(|| {
            Error::reader_file(
                path,
                format!("image axis {axis} needs a space direction of {n} values"),
            )
        })?;
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        g.spacing[j] = if norm > 0.0 && norm.is_finite() {
            norm
        } else {
            1.0
        };
        for (i, x) in v.iter().enumerate() {
            g.direction[i * n + j] = sign(i) * x / g.spacing[j];
        }
    }
    if let Some(o) = h.get(&["space origin"]) {
        let origin = vectors(path, o)?.into_iter().next().flatten();
        match origin {
            Some(o) if o.len() == n => {
                for (i, x) in o.iter().enumerate() {
                    g.origin[i] = if x.is_finite() { sign(i) * x } else { 0.0 };
                }
            }
            _ => {
                return Err(Error::reader_file(
                    path,
                    format!("'space origin: {o}' must be a vector of {n} values"),
                ));
            }
        }
    }
    Ok(g)
}

/// Geometry without space directions: `spacings` and `axis mins`, identity direction.
pub(super) fn axis_geometry(
    path: &Path,
    h: &Header,
    domain: &[usize],
    sizes: &[usize],
    mut g: ItkGeometry,
) -> Result<ItkGeometry> {
    let floats = |names: &[&str]| -> Result<Option<Vec<f64>>> {
        let Some(v) = h.get(names) else {
            return Ok(None);
        };
        let words = per_axis(path, names[0], v, sizes.len())?;
        Ok(Some(
            words
                .iter()
                .map(|w| w.parse().unwrap_or(f64::NAN))
                .collect(),
        ))
    };
    let spacings = floats(&["spacings"])?;
    let mins = floats(&["axis mins", "axismins"])?;
    let centers: Vec<String> = match h.get(&["centers", "centerings"]) {
        Some(v) => per_axis(path, "centers", v, sizes.len())?
            .iter()
            .map(|s| s.to_string())
            .collect(),
        None => vec![String::new(); sizes.len()],
    };
    for (j, &axis) in domain.iter().enumerate() {
        if let Some(s) = spacings
            .as_ref()
            .map(|s| s[axis])
            .filter(|s| s.is_finite() && *s != 0.0)
        {
            g.spacing[j] = s.abs();
        }
        if let Some(min) = mins.as_ref().map(|m| m[axis]).filter(|m| m.is_finite()) {
            let half = if centers[axis] == "node" {
                0.0
            } else {
                g.spacing[j] / 2.0
            };
            g.origin[j] = min + half;
        }
    }
    Ok(g)
}
