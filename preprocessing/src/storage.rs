//! How a preprocessed case is stored: `<case>.npy` (float32 `[c, z, y, x]`), `<case>_seg.npy`
//! (int16 `[1, z, y, x]`, `-1` outside the nonzero region) and `<case>.json` (its properties).
//! The arrays are plain uncompressed `.npy` files, so that training memory-maps them and reads a
//! patch without loading the case (numpy opens them too, with `np.load(mmap_mode="r")`). Every
//! file is written to a temporary name and renamed, and the properties last, so a case whose
//! properties exist is complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use ndarray::{ArrayView4, ArrayViewD, Ix4};
use ndarray_npy::{ViewNpyExt, WriteNpyExt};
use serde::{Deserialize, Serialize};

use nnunet_core::error::{Error, Result};
use nnunet_core::io::{ImageProperties, write_atomically};

/// Everything known about a preprocessed case besides its arrays.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CaseProperties {
    /// The raw image's geometry (spacing in untransposed array order), to write predictions back.
    pub image: ImageProperties,
    /// The raw spacing in untransposed array order (as nnU-Net's `spacing`).
    pub spacing: [f64; 3],
    /// Shape after transposing, before cropping.
    pub shape_before_cropping: [usize; 3],
    /// The crop, `[[lo, hi), …]` per (transposed) axis.
    pub bbox_used_for_cropping: [[usize; 2]; 3],
    /// Shape after cropping, before resampling.
    pub shape_after_cropping_and_before_resampling: [usize; 3],
    /// Foreground voxel locations `[z, y, x]` (preprocessed space) per class key (`"1"`, or
    /// `"1,2"` for a region); absent classes have empty lists.
    pub class_locations: BTreeMap<String, Vec<[u32; 3]>>,
    /// Identifies the inputs and settings that produced this case; a re-run skips the case when it
    /// matches.
    #[serde(default)]
    pub source_key: String,
}

/// The files of one case in a preprocessed folder.
#[derive(Clone, Debug)]
pub struct CaseFiles {
    /// `<case>.npy`: the image data, `[c, z, y, x]` float32.
    pub data: PathBuf,
    /// `<case>_seg.npy`: the segmentation, `[1, z, y, x]` int16.
    pub seg: PathBuf,
    /// `<case>.json`: the [`CaseProperties`].
    pub properties: PathBuf,
}

impl CaseFiles {
    /// The files of `case` in `folder`.
    pub fn new(folder: &Path, case: &str) -> Self {
        CaseFiles {
            data: folder.join(format!("{case}.npy")),
            seg: folder.join(format!("{case}_seg.npy")),
            properties: folder.join(format!("{case}.json")),
        }
    }
}

/// The case identifiers stored in a preprocessed folder (those with a properties file), sorted.
pub fn stored_cases(folder: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(|e| Error::io(folder, e))? {
        let entry = entry.map_err(|e| Error::io(folder, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(case) = name.strip_suffix(".json")
            && folder.join(format!("{case}.npy")).is_file()
        {
            out.push(case.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// Stores a preprocessed case: both arrays, then the properties.
pub fn write_case(
    files: &CaseFiles,
    data: ArrayView4<'_, f32>,
    seg: ArrayView4<'_, i16>,
    properties: &CaseProperties,
) -> Result<()> {
    // Remove a stale properties file first so that a crash below leaves the case incomplete.
    let _ = std::fs::remove_file(&files.properties);
    write_atomically(&files.data, |out| {
        data.as_standard_layout()
            .write_npy(out)
            .map_err(std::io::Error::other)
    })?;
    write_atomically(&files.seg, |out| {
        seg.as_standard_layout()
            .write_npy(out)
            .map_err(std::io::Error::other)
    })?;
    write_atomically(&files.properties, |out| {
        serde_json::to_writer(&mut *out, properties).map_err(std::io::Error::other)?;
        out.flush()
    })
}

/// Reads a case's properties.
pub fn read_properties(path: &Path) -> Result<CaseProperties> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::dataset_file(path, format!("not a preprocessed case's properties: {e}"))
    })
}

/// A memory-mapped `.npy` array; its views ([`MappedArray::view_f32`], [`MappedArray::view_i16`])
/// read nothing until indexed.
pub struct MappedArray {
    map: Mmap,
    path: PathBuf,
}

impl MappedArray {
    /// Maps `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the preprocessed files are only ever replaced by rename, never modified in
        // place, so the mapped bytes do not change under us.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Ok(MappedArray {
            map,
            path: path.to_path_buf(),
        })
    }

    /// The array as a 4-D `f32` view.
    pub fn view_f32(&self) -> Result<ArrayView4<'_, f32>> {
        self.view::<f32>()
    }

    /// The array as a 4-D `i16` view.
    pub fn view_i16(&self) -> Result<ArrayView4<'_, i16>> {
        self.view::<i16>()
    }

    fn view<T: ndarray_npy::ViewElement>(&self) -> Result<ArrayView4<'_, T>> {
        let view: ArrayViewD<'_, T> = ArrayViewD::view_npy(&self.map).map_err(|e| {
            Error::dataset_file(&self.path, format!("not a readable .npy array: {e}"))
        })?;
        view.into_dimensionality::<Ix4>()
            .map_err(|_| Error::dataset_file(&self.path, "expected a 4-D array"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    #[test]
    fn a_case_round_trips_through_memory_maps() {
        let dir = tempfile::tempdir().unwrap();
        let files = CaseFiles::new(dir.path(), "case_000");
        let data = Array4::from_shape_fn((2, 3, 4, 5), |(c, z, y, x)| {
            (c * 100 + z * 20 + y * 5 + x) as f32
        });
        let seg = Array4::from_shape_fn((1, 3, 4, 5), |(_, z, y, x)| ((z + y + x) % 3) as i16 - 1);
        let props = CaseProperties {
            image: ImageProperties::default(),
            spacing: [1.0, 2.0, 3.0],
            shape_before_cropping: [3, 4, 5],
            bbox_used_for_cropping: [[0, 3], [0, 4], [0, 5]],
            shape_after_cropping_and_before_resampling: [3, 4, 5],
            class_locations: [("1".to_string(), vec![[0, 1, 2]])].into(),
            source_key: "k".into(),
        };
        write_case(&files, data.view(), seg.view(), &props).unwrap();
        assert_eq!(stored_cases(dir.path()).unwrap(), vec!["case_000"]);
        let mapped = MappedArray::open(&files.data).unwrap();
        assert_eq!(mapped.view_f32().unwrap(), data.view());
        let mapped = MappedArray::open(&files.seg).unwrap();
        assert_eq!(mapped.view_i16().unwrap(), seg.view());
        assert_eq!(read_properties(&files.properties).unwrap(), props);
        assert!(
            MappedArray::open(&files.properties)
                .unwrap()
                .view_f32()
                .is_err()
        );
    }
}
