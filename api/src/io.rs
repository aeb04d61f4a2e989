//! Image input/output: the [`Reader`] extension trait and the in-memory image types.
//!
//! Arrays follow nnU-Net's conventions so that plans computed from them match nnU-Net's: an image
//! is `[channels, z, y, x]` in `f32`, a 2D image has `z = 1` and the spacing nnU-Net gives 2D
//! data, and the spacing is listed in the same axis order as the array.

use std::path::{Path, PathBuf};

use ndarray::{Array4, ArrayView3, ArrayView4};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where an image sits in the world, kept so that predictions are written back with the input's
/// geometry. `spacing` is in array axis order (`[z, y, x]`); `origin` and `direction` are in the
/// file format's world convention and `extra` holds whatever else a reader needs to restore the
/// header exactly (for NIfTI: the qform/sform codes and affines, units, …).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageProperties {
    /// Voxel spacing in array axis order; always three values (2D images use nnU-Net's 999 for z).
    pub spacing: [f64; 3],
    /// World coordinates of the first voxel, if the format has them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origin: Vec<f64>,
    /// Direction cosines, row-major, if the format has them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub direction: Vec<f64>,
    /// Reader-specific header data needed to write the geometry back unchanged.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// All channels of one case, `[c, z, y, x]`, with their geometry.
#[derive(Clone, Debug)]
pub struct Image {
    /// Intensities of all channels, `[c, z, y, x]`.
    pub data: Array4<f32>,
    /// Geometry, shared by all channels.
    pub properties: ImageProperties,
}

/// A label map `[1, z, y, x]` with its geometry.
#[derive(Clone, Debug)]
pub struct Segmentation {
    /// Labels, `[1, z, y, x]`.
    pub data: Array4<i16>,
    /// Geometry of the label map.
    pub properties: ImageProperties,
}

/// Reads and writes one family of file formats. Registered under a name that `dataset.json`'s
/// `overwrite_image_reader_writer` can select (nnU-Net's class names where nnU-Net has the reader).
pub trait Reader: Send + Sync {
    /// File endings this reader handles, with the leading dot (`.nii.gz`, `.png`).
    fn file_endings(&self) -> &[&str];

    /// Reads all channels of a case, one file per channel, in channel order. Every channel must have
    /// the same shape and geometry; a file that cannot be read is an error naming it.
    fn read_images(&self, files: &[&Path]) -> Result<Image>;

    /// Reads a label map.
    fn read_segmentation(&self, file: &Path) -> Result<Segmentation>;

    /// Writes a label map `[z, y, x]` with the geometry it was read with.
    fn write_segmentation(
        &self,
        segmentation: ArrayView3<'_, i16>,
        file: &Path,
        properties: &ImageProperties,
    ) -> Result<()>;

    /// Writes class probabilities `[classes, z, y, x]` with the geometry they were read with.
    /// Optional: the pipeline keeps probabilities in `.npz` files, as nnU-Net does, so by default
    /// this is an error naming `file`.
    fn write_probabilities(
        &self,
        probabilities: ArrayView4<'_, f32>,
        file: &Path,
        properties: &ImageProperties,
    ) -> Result<()> {
        let _ = (probabilities, properties);
        Err(Error::reader_file(
            file,
            "this reader does not write probability maps",
        ))
    }

    /// The files besides `file` that hold its data (the data files a detached header such as
    /// `.mhd` or `.nhdr` names), which must travel with it; none by default.
    fn data_files(&self, file: &Path) -> Result<Vec<PathBuf>> {
        let _ = file;
        Ok(Vec::new())
    }

    /// Whether this reader can read `file`: by default, whether it has one of the endings and
    /// [`Reader::read_images`] succeeds on it.
    fn can_read(&self, file: &Path) -> bool {
        let name = file.to_string_lossy().to_lowercase();
        self.file_endings()
            .iter()
            .any(|e| name.ends_with(&e.to_lowercase()))
            && self.read_images(&[file]).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that writes label maps only.
    struct LabelsOnly;

    impl Reader for LabelsOnly {
        fn file_endings(&self) -> &[&str] {
            &[".lbl"]
        }
        fn read_images(&self, _: &[&Path]) -> Result<Image> {
            Err(Error::reader("unreadable"))
        }
        fn read_segmentation(&self, _: &Path) -> Result<Segmentation> {
            Err(Error::reader("unreadable"))
        }
        fn write_segmentation(
            &self,
            _: ArrayView3<'_, i16>,
            _: &Path,
            _: &ImageProperties,
        ) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn probability_maps_are_refused_by_default_naming_the_file() {
        let probabilities = Array4::<f32>::zeros((2, 1, 2, 2));
        let err = LabelsOnly
            .write_probabilities(
                probabilities.view(),
                Path::new("/out/case.lbl"),
                &Default::default(),
            )
            .unwrap_err();
        let (file, reason) = err.file_reason().expect("names the file");
        assert_eq!(file, Path::new("/out/case.lbl"));
        assert_eq!(reason, "this reader does not write probability maps");
    }
}
