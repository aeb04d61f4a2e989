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

mod geometry;
mod header;
mod nibabel;
mod read;
#[cfg(test)]
mod tests;
mod write;

pub(crate) use read::read_itk;
pub use write::{split_volumes, write_volume, write_volume_f32};
pub(crate) use write::{write_probabilities, write_segmentation};

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
