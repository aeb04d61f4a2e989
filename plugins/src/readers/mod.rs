//! Image readers/writers, registered under nnU-Net's reader class names so that
//! `overwrite_image_reader_writer` in `dataset.json` selects them as in nnU-Net.

pub mod dicom;
mod gipl;
pub(crate) mod itk;
mod metaimage;
pub mod natural_image;
pub mod nifti;
mod nrrd;
pub(crate) mod orientation;
pub mod simpleitk;
#[cfg(test)]
pub(crate) mod test_support;
pub mod tiff3d;
