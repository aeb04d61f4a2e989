//! An nnunet-rs plugin adding a file format: NumPy `.npy` volumes, with the voxel spacing in a
//! JSON side file, as nnU-Net's 3D TIFF reader does it.
//!
//! * An image channel `case_0000.npy` and a label map `case.npy` are 3D arrays `[z, y, x]` (or 2D
//!   `[y, x]`, read as one slice) of any integer or float type.
//! * The spacing is in `case.json` next to them: `{"spacing": [sz, sy, sx]}`, in array axis order.
//!   Without the side file the spacing is 1 along every axis, as in nnU-Net's TIFF reader.
//!
//! Use it with `nnunet --plugin target/release/libcustom_reader.so …`, or select it in
//! `dataset.json` with `"overwrite_image_reader_writer": "NpyIO"`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};
use nnunet_api::io::{Image, ImageProperties, Reader, Segmentation};
use nnunet_api::ndarray::{self, Array3, ArrayD, ArrayView3, Axis, Ix2, Ix3};
use nnunet_api::{Error, Result, serde_json};

/// The `.npy` reader/writer.
pub struct NpyIO;

/// `case_0000.npy` (image channel) and `case.npy` (label map) both use `case.json`.
fn side_file(file: &Path, is_image: bool) -> PathBuf {
    let stem = file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".npy"))
        .unwrap_or_default();
    let case = if is_image && stem.len() > 5 && stem.as_bytes()[stem.len() - 5] == b'_' {
        &stem[..stem.len() - 5]
    } else {
        stem
    };
    file.with_file_name(format!("{case}.json"))
}

/// The spacing `[z, y, x]` from the side file of `file`; `[1, 1, 1]` when there is none.
fn read_spacing(file: &Path, is_image: bool) -> Result<[f64; 3]> {
    let json = side_file(file, is_image);
    let text = match std::fs::read_to_string(&json) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok([1.0; 3]),
        Err(e) => return Err(Error::io(&json, e)),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid_file(&json, format!("not valid JSON: {e}")))?;
    let spacing: Vec<f64> = value
        .get("spacing")
        .and_then(|s| s.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    match spacing[..] {
        [z, y, x] if [z, y, x].iter().all(|v| v.is_finite() && *v > 0.0) => Ok([z, y, x]),
        _ => Err(Error::invalid_file(
            &json,
            "needs \"spacing\": a list of three positive numbers [z, y, x]",
        )),
    }
}

/// Reads a `.npy` array of any numeric type as `f64`, shaped `[z, y, x]`.
fn read_volume(file: &Path) -> Result<Array3<f64>> {
    /// The array when `file` holds elements of type `T`, `None` when it holds another type.
    fn try_read<T: ndarray_npy::ReadableElement + Copy + Into<f64>>(
        file: &Path,
    ) -> Result<Option<ArrayD<f64>>> {
        let handle = File::open(file).map_err(|e| Error::io(file, e))?;
        match ArrayD::<T>::read_npy(BufReader::new(handle)) {
            Ok(a) => Ok(Some(a.mapv(Into::into))),
            Err(ReadNpyError::WrongDescriptor(_)) => Ok(None),
            Err(e) => Err(Error::invalid_file(
                file,
                format!("not a readable .npy file: {e}"),
            )),
        }
    }
    let array = match try_read::<f32>(file)? {
        Some(a) => a,
        None => [
            try_read::<f64>,
            try_read::<u8>,
            try_read::<i8>,
            try_read::<u16>,
            try_read::<i16>,
            try_read::<u32>,
            try_read::<i32>,
        ]
        .iter()
        .find_map(|read| read(file).transpose())
        .transpose()?
        .ok_or_else(|| {
            Error::invalid_file(
                file,
                "unsupported data type (use a float or an integer of at most 32 bits)",
            )
        })?,
    };
    match array.ndim() {
        2 => Ok(array
            .into_dimensionality::<Ix2>()
            .expect("two dimensions")
            .insert_axis(Axis(0))),
        3 => Ok(array
            .into_dimensionality::<Ix3>()
            .expect("three dimensions")),
        n => Err(Error::invalid_file(
            file,
            format!("has {n} dimensions; expected a 2D [y, x] or 3D [z, y, x] array"),
        )),
    }
}

/// Writes the spacing of `properties` into the side file of `file`.
fn write_json_spacing(file: &Path, is_image: bool, properties: &ImageProperties) -> Result<()> {
    let json = side_file(file, is_image);
    let text = serde_json::json!({ "spacing": properties.spacing }).to_string();
    std::fs::write(&json, text).map_err(|e| Error::io(&json, e))
}

/// Writes `array` to `file` in `.npy` format.
fn write_npy<A: WriteNpyExt>(array: &A, file: &Path) -> Result<()> {
    let handle = File::create(file).map_err(|e| Error::io(file, e))?;
    array
        .write_npy(std::io::BufWriter::new(handle))
        .map_err(|e| Error::invalid_file(file, format!("cannot write: {e}")))
}

impl Reader for NpyIO {
    fn file_endings(&self) -> &[&str] {
        &[".npy"]
    }

    fn read_images(&self, files: &[&Path]) -> Result<Image> {
        let Some(first) = files.first() else {
            return Err(Error::Invalid("no image files given".into()));
        };
        let spacing = read_spacing(first, true)?;
        let mut channels = Vec::with_capacity(files.len());
        for file in files {
            let volume = read_volume(file)?;
            if let Some(first_channel) = channels.first() {
                let expected: &Array3<f64> = first_channel;
                if volume.shape() != expected.shape() {
                    return Err(Error::invalid_file(
                        file,
                        format!(
                            "shape {:?} differs from the first channel's {:?} ({})",
                            volume.shape(),
                            expected.shape(),
                            first.display()
                        ),
                    ));
                }
            }
            channels.push(volume);
        }
        let views: Vec<_> = channels.iter().map(|c| c.view()).collect();
        let data = ndarray::stack(Axis(0), &views)
            .expect("equal shapes were checked")
            .mapv(|v| v as f32);
        Ok(Image {
            data,
            properties: ImageProperties {
                spacing,
                ..Default::default()
            },
        })
    }

    fn read_segmentation(&self, file: &Path) -> Result<Segmentation> {
        let volume = read_volume(file)?;
        if let Some(bad) = volume
            .iter()
            .find(|v| v.fract() != 0.0 || **v < i16::MIN as f64 || **v > i16::MAX as f64)
        {
            return Err(Error::invalid_file(
                file,
                format!("label map holds {bad}, which is not an integer label"),
            ));
        }
        Ok(Segmentation {
            data: volume.mapv(|v| v as i16).insert_axis(Axis(0)),
            properties: ImageProperties {
                spacing: read_spacing(file, false)?,
                ..Default::default()
            },
        })
    }

    fn write_segmentation(
        &self,
        segmentation: ArrayView3<'_, i16>,
        file: &Path,
        properties: &ImageProperties,
    ) -> Result<()> {
        if segmentation.iter().all(|v| (0..=255).contains(v)) {
            write_npy(&segmentation.mapv(|v| v as u8), file)?;
        } else {
            write_npy(&segmentation.to_owned(), file)?;
        }
        write_json_spacing(file, false, properties)
    }
}

// What the plugin registers with the host, and the entry point that does it.
nnunet_api::export_plugin! {
    reader "NpyIO",
        "NumPy .npy volumes with a case.json spacing side file (example plugin)",
        || Box::new(NpyIO);
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnunet_api::ndarray::Array3;

    #[test]
    fn round_trip_keeps_data_and_spacing() {
        let dir = tempfile::tempdir().unwrap();
        let image = Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (z * 100 + y * 10 + x) as i16);
        write_npy(&image, &dir.path().join("case_0000.npy")).unwrap();
        std::fs::write(
            dir.path().join("case.json"),
            r#"{"spacing": [3.0, 0.5, 0.25]}"#,
        )
        .unwrap();
        let read = NpyIO
            .read_images(&[&dir.path().join("case_0000.npy")])
            .unwrap();
        assert_eq!(read.data.shape(), [1, 3, 4, 5]);
        assert_eq!(read.data[[0, 2, 3, 4]], 234.0);
        assert_eq!(read.properties.spacing, [3.0, 0.5, 0.25]);

        let seg = image.mapv(|v| v % 3);
        let out = dir.path().join("out").join("case.npy");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        NpyIO
            .write_segmentation(seg.view(), &out, &read.properties)
            .unwrap();
        let back = NpyIO.read_segmentation(&out).unwrap();
        assert_eq!(back.data.index_axis(Axis(0), 0), seg);
        assert_eq!(back.properties.spacing, [3.0, 0.5, 0.25]);
    }

    #[test]
    fn bad_files_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broken_0000.npy");
        std::fs::write(&file, b"\x93NUMPY garbage").unwrap();
        let err = NpyIO.read_images(&[&file]).unwrap_err().to_string();
        assert!(err.contains("broken_0000.npy"), "{err}");
        write_npy(&Array3::<f32>::zeros((2, 2, 2)), &file).unwrap();
        std::fs::write(dir.path().join("broken.json"), r#"{"spacing": [1, 2]}"#).unwrap();
        let err = NpyIO.read_images(&[&file]).unwrap_err().to_string();
        assert!(
            err.contains("broken.json") && err.contains("three positive"),
            "{err}"
        );
        let seg = dir.path().join("frac.npy");
        write_npy(&Array3::<f32>::from_elem((1, 1, 2), 0.5), &seg).unwrap();
        let err = NpyIO.read_segmentation(&seg).unwrap_err().to_string();
        assert!(err.contains("not an integer label"), "{err}");
    }
}
