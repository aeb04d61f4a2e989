//! `nnunet convert-msd`: a Medical Segmentation Decathlon task (v1 layout: `imagesTr`,
//! `labelsTr`, `imagesTs`, `dataset.json`, 4D multi-modal NIfTI) into an nnU-Net v2 raw dataset.
//!
//! As nnU-Net does it: `TaskXX_Name` becomes `DatasetXXX_Name` (or the ID given), each 4D image is
//! split into one 3D file per channel (`case_0000.nii.gz`, `case_0001.nii.gz`, …) keeping the
//! voxel type and the spatial geometry, 3D images are copied as `case_0000.nii.gz`, labels are
//! copied, and `dataset.json` is translated (`modality` → `channel_names`, labels inverted to
//! `name: value`, `file_ending` added, `training`/`test` dropped).

use std::path::{Path, PathBuf};

use nnunet_core::paths::{NnunetPaths, dataset_folder_name};
use nnunet_core::{Error, Result};

use super::{create_dataset_folder, file_name, sorted_paths, write_dataset_json};
use crate::readers::nifti::split_volumes;

/// Task ID and name from a folder called `TaskXX_Name`.
pub fn parse_task_name(folder: &Path) -> Result<(u32, String)> {
    let base = folder
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::dataset(format!("{} has no folder name", folder.display())))?;
    let bad = || {
        Error::dataset(format!(
            "{}: an MSD task folder is named TaskXX_Name (e.g. Task05_Prostate)",
            folder.display()
        ))
    };
    let (task, name) = base.split_once('_').ok_or_else(bad)?;
    if name.contains('_') || name.is_empty() {
        return Err(bad());
    }
    let id = task
        .strip_prefix("Task")
        .and_then(|d| d.parse::<u32>().ok())
        .ok_or_else(bad)?;
    Ok((id, name.to_string()))
}

/// Converts the task in `source` into `nnUNet_raw/DatasetXXX_Name`; returns the new folder.
pub fn convert_msd(
    source: &Path,
    paths: &NnunetPaths,
    overwrite_id: Option<u32>,
) -> Result<PathBuf> {
    for sub in ["labelsTr", "imagesTs", "imagesTr"] {
        if !source.join(sub).is_dir() {
            return Err(Error::dataset(format!(
                "{}: the {sub} subfolder is missing; this is not an MSD task folder",
                source.display()
            )));
        }
    }
    let json_path = source.join("dataset.json");
    let text = std::fs::read_to_string(&json_path).map_err(|e| Error::io(&json_path, e))?;
    let msd: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::dataset_file(&json_path, format!("not valid JSON: {e}")))?;
    let translated = translate_dataset_json(&msd, &json_path)?;

    let (task_id, name) = parse_task_name(source)?;
    let id = overwrite_id.unwrap_or(task_id);
    if let Ok(existing) = paths.dataset_name(&id.to_string()) {
        return Err(Error::dataset(format!(
            "dataset ID {id} is already taken by {existing}; choose another with -overwrite_id \
             (nnUNet_raw, nnUNet_preprocessed and nnUNet_results were checked)"
        )));
    }
    let target = paths.raw()?.join(dataset_folder_name(id, &name));
    create_dataset_folder(&target, false)?;

    for sub in ["imagesTr", "imagesTs"] {
        for file in nifti_files(&source.join(sub))? {
            split_4d_nifti(&file, &target.join(sub))?;
        }
    }
    for file in nifti_files(&source.join("labelsTr"))? {
        let dest = target
            .join("labelsTr")
            .join(file.file_name().expect("listed file"));
        std::fs::copy(&file, &dest).map_err(|e| Error::io(&file, e))?;
    }
    write_dataset_json(&target, &translated)?;
    Ok(target)
}

/// `.nii.gz` files of a folder that do not start with `.` or `_`, sorted.
fn nifti_files(dir: &Path) -> Result<Vec<PathBuf>> {
    sorted_paths(dir, |p| {
        file_name(p)
            .is_some_and(|n| n.ends_with(".nii.gz") && !n.starts_with('.') && !n.starts_with('_'))
    })
}

/// The v2 `dataset.json` of an MSD one, keys in nnU-Net's order.
pub fn translate_dataset_json(msd: &serde_json::Value, path: &Path) -> Result<serde_json::Value> {
    let object = msd
        .as_object()
        .ok_or_else(|| Error::dataset_file(path, "dataset.json is not a JSON object"))?;
    let labels = object
        .get("labels")
        .and_then(|l| l.as_object())
        .ok_or_else(|| Error::dataset_file(path, "\"labels\" is missing or not an object"))?;
    let modality = object
        .get("modality")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::dataset_file(path, "\"modality\" is missing or not an object"))?;
    let mut inverted = serde_json::Map::new();
    for (value, name) in labels {
        let value: i64 = value.trim().parse().map_err(|_| {
            Error::dataset_file(path, format!("label key \"{value}\" is not an integer"))
        })?;
        let name = name.as_str().ok_or_else(|| {
            Error::dataset_file(path, format!("the name of label {value} is not a string"))
        })?;
        inverted.insert(name.to_string(), value.into());
    }
    let mut out = serde_json::Map::new();
    for (key, value) in object {
        match key.as_str() {
            "modality" | "training" | "test" => {}
            "labels" => {
                out.insert(key.clone(), serde_json::Value::Object(inverted.clone()));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out.insert("file_ending".into(), ".nii.gz".into());
    out.insert(
        "channel_names".into(),
        serde_json::Value::Object(modality.clone()),
    );
    Ok(serde_json::Value::Object(out))
}

/// Splits one MSD image into `<case>_XXXX.nii.gz` files in `dest` (a 3D image is copied as
/// `<case>_0000.nii.gz`).
fn split_4d_nifti(file: &Path, dest: &Path) -> Result<()> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".nii.gz"))
        .expect("listed as .nii.gz");
    split_volumes(file, |channel| {
        dest.join(format!("{name}_{channel:04}.nii.gz"))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readers::test_support::assert_error;
    use ndarray::ShapeBuilder;
    use nifti::{NiftiObject, NiftiType, ReaderOptions};

    #[test]
    fn task_names() {
        assert_eq!(
            parse_task_name(Path::new("/data/Task05_Prostate")).unwrap(),
            (5, "Prostate".into())
        );
        assert!(parse_task_name(Path::new("Task05")).is_err());
        assert!(parse_task_name(Path::new("Prostate_05")).is_err());
        assert!(parse_task_name(Path::new("Task05_Pro_state")).is_err());
    }

    #[test]
    fn dataset_json_translation_keeps_nnunets_key_order() {
        let msd: serde_json::Value = serde_json::from_str(
            r#"{"name": "PROSTATE", "description": "d", "tensorImageSize": "4D",
                "modality": {"0": "T2", "1": "ADC"},
                "labels": {"0": "background", "1": "PZ", "2": "TZ"},
                "numTraining": 32, "numTest": 16,
                "training": [{"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"}],
                "test": ["./imagesTs/b.nii.gz"]}"#,
        )
        .unwrap();
        let v2 = translate_dataset_json(&msd, Path::new("dataset.json")).unwrap();
        let keys: Vec<&str> = v2.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "name",
                "description",
                "tensorImageSize",
                "labels",
                "numTraining",
                "numTest",
                "file_ending",
                "channel_names"
            ]
        );
        assert_eq!(
            v2["labels"],
            serde_json::json!({"background": 0, "PZ": 1, "TZ": 2})
        );
        assert_eq!(
            v2["channel_names"],
            serde_json::json!({"0": "T2", "1": "ADC"})
        );
        assert_error(
            translate_dataset_json(&serde_json::json!({"labels": {}}), Path::new("x.json")),
            &["x.json", "modality"],
        );
    }

    #[test]
    fn four_d_images_split_into_channels_with_type_and_geometry() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("case.nii.gz");
        // x fastest: value = 1000 * t + 100 * z + 10 * y + x
        let array = ndarray::Array4::from_shape_fn((3, 2, 2, 2).f(), |(x, y, z, t)| {
            (1000 * t + 100 * z + 10 * y + x) as i16
        });
        let reference = nifti::NiftiHeader {
            pixdim: [1.0, 0.5, 0.75, 2.5, 1.0, 0.0, 0.0, 0.0],
            sform_code: 1,
            srow_x: [0.5, 0.0, 0.0, -10.0],
            srow_y: [0.0, 0.75, 0.0, 20.0],
            srow_z: [0.0, 0.0, 2.5, 30.0],
            ..Default::default()
        };
        nifti::writer::WriterOptions::new(&source)
            .reference_header(&reference)
            .write_nifti(&array)
            .unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        split_4d_nifti(&source, &out).unwrap();
        for t in 0..2usize {
            let file = out.join(format!("case_{t:04}.nii.gz"));
            let object = ReaderOptions::new().read_file(&file).unwrap();
            let h = object.header();
            assert_eq!(&h.dim[..4], &[3, 3, 2, 2]);
            assert_eq!(h.datatype, NiftiType::Int16 as i16);
            assert_eq!(h.srow_x, reference.srow_x);
            assert_eq!(h.srow_z, reference.srow_z);
            assert_eq!(&h.pixdim[1..4], &reference.pixdim[1..4]);
            let values: Vec<i16> = object.into_volume().into_nifti_typed_data().unwrap();
            assert_eq!(values[0], (1000 * t) as i16);
            assert_eq!(values[values.len() - 1], (1000 * t + 111 + 1) as i16);
        }
        assert!(!out.join("case_0002.nii.gz").exists());
    }
}
