//! Fuzzes every built-in image reader with arbitrary file contents: reading an image or a label
//! map from any bytes must return `Ok` or an error, never panic, hang or exhaust memory.
//!
//! The first input byte picks the file ending (and so the decoder path: plain or gzipped NIfTI,
//! PNG, BMP, TIFF, JPEG, 3D TIFF, NRRD, MetaImage, GIPL); the rest is the file. A detached
//! header (`.nhdr`, `.mhd`) names its data file, which may then be the header itself.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use nnunet_core::Reader;
use nnunet_plugins::readers::natural_image::NaturalImage2DIO;
use nnunet_plugins::readers::nifti::{NibabelIO, NibabelIOWithReorient};
use nnunet_plugins::readers::simpleitk::{SimpleItkIO, SimpleItkIOWithReorient};
use nnunet_plugins::readers::tiff3d::Tiff3DIO;

const ENDINGS: &[&str] = &[
    ".nii", ".nii.gz", ".png", ".bmp", ".tif", ".jpg", ".tiff", ".nrrd", ".nhdr", ".mha", ".mhd",
    ".gipl", ".gipl.gz",
];

fn scratch(ending: &str) -> PathBuf {
    let dir = std::env::var_os("NNUNET_FUZZ_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/shm"));
    dir.join(format!("nnunet-fuzz-{}{ending}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let ending = ENDINGS[selector as usize % ENDINGS.len()];
    let file = scratch(ending);
    if std::fs::write(&file, body).is_err() {
        return;
    }
    let readers: Vec<Box<dyn Reader>> = vec![
        Box::new(SimpleItkIO),
        Box::new(SimpleItkIOWithReorient),
        Box::new(NibabelIO),
        Box::new(NibabelIOWithReorient),
        Box::new(NaturalImage2DIO),
        Box::new(Tiff3DIO),
    ];
    for reader in &readers {
        let name = file.to_string_lossy().to_lowercase();
        if !reader.file_endings().iter().any(|e| name.ends_with(e)) {
            continue;
        }
        let _ = reader.read_images(&[file.as_path()]);
        let _ = reader.read_segmentation(&file);
    }
});
