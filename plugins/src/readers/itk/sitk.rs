//! SimpleITKIO's view of one file: nnU-Net's `[c, z, y, x]` array and spacing, the checks across
//! the channels of a case, and the properties it records.

use std::path::Path;

use ndarray::{Array4, Axis};
use nnunet_core::io::ImageProperties;
use nnunet_core::{Error, Result};
use serde_json::{Map, Value, json};

use super::{ItkGeometry, ItkImage};

/// One channel file as nnU-Net's `SimpleITKIO` sees it: the `[c, z, y, x]` array, the ITK
/// geometry and nnU-Net's spacing.
pub(crate) struct SitkFile {
    /// The `[c, z, y, x]` array.
    pub data: Array4<f32>,
    /// The geometry ITK reports.
    pub geometry: ItkGeometry,
    /// nnU-Net's spacing `[z, y, x]`.
    pub spacing: [f64; 3],
}

/// The `[c, z, y, x]` shape SimpleITKIO gives `image` (see the module documentation).
pub(crate) fn sitk_shape(image: &ItkImage, path: &Path) -> Result<[usize; 4]> {
    let s = &image.size;
    let c = image.components;
    match (s.len(), c) {
        (2, _) => Ok([c, 1, s[1], s[0]]),
        (3, _) => Ok([c, s[2], s[1], s[0]]),
        (4, 1) => Ok([s[3], s[2], s[1], s[0]]),
        (4, _) => Err(Error::reader_file(
            path,
            format!("a 4D image with {c} components per voxel cannot be read as channels"),
        )),
        (n, _) => Err(Error::reader_file(
            path,
            format!("Unexpected number of dimensions: {n} (size {s:?})"),
        )),
    }
}

/// nnU-Net's spacing from ITK's: `(999 * max(sx, sy), sy, sx)` for 2D, `(sz, sy, sx)` otherwise.
pub(crate) fn nnunet_spacing(geometry: &ItkGeometry) -> [f64; 3] {
    let s = &geometry.spacing;
    match s.len() {
        2 => [s[0].max(s[1]) * 999.0, s[1], s[0]],
        _ => [s[2], s[1], s[0]],
    }
    .map(f64::abs)
}

/// `values` as an array of `shape`; a count that does not fit is an error naming `path`.
pub(crate) fn shaped<T>(path: &Path, shape: [usize; 4], values: Vec<T>) -> Result<Array4<T>> {
    Array4::from_shape_vec(shape, values)
        .map_err(|e| Error::reader_file(path, format!("cannot shape voxel data: {e}")))
}

/// `image` as SimpleITKIO reads it, components moved to the channel axis.
pub(crate) fn sitk_file(image: ItkImage, path: &Path) -> Result<SitkFile> {
    let shape = sitk_shape(&image, path)?;
    let values = image.pixels.decode(|v| v as f32);
    let data = if image.components > 1 {
        let [c, z, y, x] = shape;
        shaped(path, [z, y, x, c], values)?
            .permuted_axes([3, 0, 1, 2])
            .as_standard_layout()
            .into_owned()
    } else {
        shaped(path, shape, values)?
    };
    Ok(SitkFile {
        data,
        spacing: nnunet_spacing(&image.geometry),
        geometry: image.geometry,
    })
}

/// `image` as a label map `[1, z, y, x]`, with nnU-Net's spacing.
pub(crate) fn sitk_labels(image: &ItkImage, path: &Path) -> Result<(Array4<i16>, [f64; 3])> {
    let shape = sitk_shape(image, path)?;
    if shape[0] != 1 {
        return Err(Error::reader_file(
            path,
            format!(
                "a label map must have one channel; this file has {} (volumes or components)",
                shape[0]
            ),
        ));
    }
    let data = shaped(path, shape, image.pixels.labels(path)?)?;
    Ok((data, nnunet_spacing(&image.geometry)))
}

/// `numpy.allclose(a, b)` with its default tolerances.
pub(crate) fn allclose(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-8 + 1e-5 * y.abs())
}

/// An error on `other`: its `what` differs from that of the first channel.
pub(crate) fn mismatch(first: &Path, other: &Path, what: &str, a: String, b: String) -> Error {
    Error::reader_file(
        other,
        format!(
            "{what} {b} differs from {a} of the first channel {}; all input images of a case \
             must have the same {what}",
            first.display()
        ),
    )
}

/// SimpleITKIO's checks across the channel files of a case, in its order: shape and ITK spacing
/// must agree (errors), origin and direction should (warnings), nnU-Net spacing must.
#[expect(
    clippy::print_stderr,
    reason = "a warning for the user, as nnU-Net prints it; the library has no other channel to the terminal"
)]
pub(crate) fn check_channels(files: &[&Path], read: &[SitkFile]) -> Result<()> {
    let (first, first_path) = (&read[0], files[0]);
    for (f, &path) in read.iter().zip(files).skip(1) {
        if f.data.shape() != first.data.shape() {
            return Err(mismatch(
                first_path,
                path,
                "shape",
                format!("{:?}", first.data.shape()),
                format!("{:?}", f.data.shape()),
            ));
        }
        let (a, b) = (&first.geometry, &f.geometry);
        if !allclose(&a.spacing, &b.spacing) {
            let (sa, sb) = (format!("{:?}", a.spacing), format!("{:?}", b.spacing));
            return Err(mismatch(first_path, path, "spacing", sa, sb));
        }
        for (what, x, y) in [
            ("origin", &a.origin, &b.origin),
            ("direction", &a.direction, &b.direction),
        ] {
            if !allclose(x, y) {
                eprintln!(
                    "WARNING: {} and {} do not have the same {what} ({x:?} vs {y:?})",
                    first_path.display(),
                    path.display(),
                );
            }
        }
        if !allclose(&first.spacing, &f.spacing) {
            let (sa, sb) = (format!("{:?}", first.spacing), format!("{:?}", f.spacing));
            return Err(mismatch(first_path, path, "nnU-Net spacing", sa, sb));
        }
    }
    Ok(())
}

/// The channel arrays stacked along axis 0.
pub(crate) fn stack(files: &[&Path], channels: Vec<Array4<f32>>) -> Result<Array4<f32>> {
    let views: Vec<_> = channels.iter().map(|c| c.view()).collect();
    ndarray::concatenate(Axis(0), &views)
        .map_err(|e| Error::reader_file(files[0], format!("cannot stack the channels: {e}")))
}

/// The properties SimpleITKIO records: nnU-Net's spacing, ITK's origin and direction, ITK's
/// spacing as `extra["sitk_spacing"]`, plus the format's own header data in `extra`.
pub(crate) fn sitk_properties(
    geometry: &ItkGeometry,
    spacing: [f64; 3],
    mut extra: Map<String, Value>,
) -> ImageProperties {
    extra.insert("sitk_spacing".into(), json!(geometry.spacing));
    ImageProperties {
        spacing,
        origin: geometry.origin.clone(),
        direction: geometry.direction.clone(),
        extra,
    }
}
