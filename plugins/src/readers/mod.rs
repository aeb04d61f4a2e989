//! Image readers/writers, registered under nnU-Net's reader class names so that
//! `overwrite_image_reader_writer` in `dataset.json` selects them as in nnU-Net.

pub mod dicom;
pub mod gipl;
pub(crate) mod itk;
pub mod metaimage;
pub mod natural_image;
pub mod nifti;
pub mod nrrd;
pub(crate) mod orientation;
pub mod simpleitk;
#[cfg(test)]
mod test_support;
pub mod tiff3d;
