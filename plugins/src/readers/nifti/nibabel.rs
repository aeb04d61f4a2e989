//! `NibabelIO` and `NibabelIOWithReorient`: NIfTI files read with nibabel's conventions, the
//! latter reoriented to RAS+.

use std::borrow::Cow;
use std::path::Path;

use ndarray::Array4;
use nnunet_core::io::{Image, ImageProperties, Segmentation};
use nnunet_core::{Error, Result};
use serde_json::{Value, json};

use super::geometry::{Mat, column_norm, itk_geometry, nibabel_affine, pix};
use super::header::Header;
use super::read::{RawVolume, load, nifti_extra};
use super::write::{write_probabilities, write_segmentation};
use super::{NibabelIO, NibabelIOWithReorient};
use crate::readers::itk::{Pixels, allclose, mismatch, shaped, stack};
use crate::readers::orientation::{
    AxisTransform, nibabel_to_ras, recorded_transform, reorienting_readers,
};

/// The `[1, z, y, x]` shape of a NibabelIO image; files that are not 3D are an error.
fn nibabel_check(raw: &RawVolume, path: &Path) -> Result<[usize; 4]> {
    if raw.header.dim[0] != 3 {
        return Err(Error::reader_file(
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

/// NibabelIO's properties of a file: nibabel's spacing, ITK-style origin and direction, the
/// header geometry and nibabel's best affine (`extra["original_affine"]`).
fn nibabel_properties(h: &Header, path: &Path) -> Result<ImageProperties> {
    let itk = itk_geometry(h, 3).map_err(|m| Error::reader_file(path, m))?;
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

/// Loads the 3D file at `path` as nnU-Net's nibabel readers do: its properties (`properties`,
/// from the header) and its values (`values`, from the voxels) as the `[1, z, y, x]` array.
fn nibabel_load<T, P>(
    path: &Path,
    properties: impl FnOnce(&RawVolume) -> Result<P>,
    values: impl FnOnce(&Pixels) -> Result<Vec<T>>,
) -> Result<(Array4<T>, P)> {
    let raw = load(path)?;
    let shape = nibabel_check(&raw, path)?;
    let properties = properties(&raw)?;
    let data = shaped(path, shape, values(&raw.pixels)?)?;
    Ok((data, properties))
}

/// The voxel values as `f32`.
fn f32_values(pixels: &Pixels) -> Result<Vec<f32>> {
    Ok(pixels.decode(|v| v as f32))
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
        return Err(Error::reader("no image files given"));
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
        Error::reader_file(
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

/// Loads the 3D file at `path` as [`nibabel_load`] does, with NibabelIO's properties, or
/// reoriented to RAS+ with NibabelIOWithReorient's when `reorient`.
fn nibabel_read<T: Clone>(
    path: &Path,
    reorient: bool,
    values: impl FnOnce(&Pixels) -> Result<Vec<T>>,
) -> Result<(Array4<T>, ImageProperties)> {
    if !reorient {
        return nibabel_load(path, |raw| nibabel_properties(&raw.header, path), values);
    }
    let (data, (properties, t)) =
        nibabel_load(path, |raw| reoriented_properties(raw, path), values)?;
    Ok((t.array(data.view()), properties))
}

/// Reads the channel files of a case as NibabelIO does, or NibabelIOWithReorient when
/// `reorient`.
fn read_images(files: &[&Path], reorient: bool) -> Result<Image> {
    let affine_key = if reorient {
        "reoriented_affine"
    } else {
        "original_affine"
    };
    nibabel_read_all(files, |f| nibabel_read(f, reorient, f32_values), affine_key)
}

/// Reads a label map as NibabelIO does, or NibabelIOWithReorient when `reorient`.
fn read_segmentation(file: &Path, reorient: bool) -> Result<Segmentation> {
    let (data, properties) = nibabel_read(file, reorient, |pixels| pixels.labels(file))?;
    Ok(Segmentation { data, properties })
}

/// The properties to write with (those given: the input's header) and, for
/// NibabelIOWithReorient (`reorient`), the transform that undoes its reorientation.
fn write_geometry(
    properties: &ImageProperties,
    reorient: bool,
) -> (Cow<'_, ImageProperties>, Option<AxisTransform>) {
    let undo = if reorient {
        recorded_transform(properties).map(|t| t.inverse())
    } else {
        None
    };
    (Cow::Borrowed(properties), undo)
}

reorienting_readers!(NibabelIO, NibabelIOWithReorient, &[".nii", ".nii.gz"]);
