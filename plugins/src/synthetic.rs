//! Generated example datasets in nnU-Net's raw format: noisy images with a bright ellipsoid
//! (label 1) and a dark box (label 2) at random places, as 2D PNG or 3D NIfTI. They are what
//! `nnunet demo`, the training tests and the benchmarks run on: small enough to train in minutes
//! on a CPU, and not trivial (the classes differ in shape and contrast, under noise).

use std::path::{Path, PathBuf};

use ndarray::{Array3, ArrayView3};
use nnunet_core::io::ImageProperties;
use nnunet_core::{Error, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What to generate.
#[derive(Clone, Debug)]
pub struct SyntheticSpec {
    /// Dataset ID (the folder is `DatasetXXX_<name>`).
    pub id: u32,
    /// Dataset name (the folder's `<name>`).
    pub name: String,
    /// 2D (PNG) or 3D (NIfTI).
    pub three_d: bool,
    /// Number of training cases.
    pub cases: usize,
    /// Number of extra cases written to `imagesTs` (with their labels in `labelsTs`).
    pub test_cases: usize,
    /// Image shape `[z, y, x]` (`z` ignored in 2D).
    pub shape: [usize; 3],
    /// Voxel spacing `[z, y, x]` (3D only).
    pub spacing: [f64; 3],
    /// Seed of the random shapes, positions and noise; the same seed gives the same files.
    pub seed: u64,
    /// Declare nnU-Net regions in `dataset.json` (`whole` = ellipsoid or box, `box` = box) instead
    /// of plain labels, for region-based (sigmoid) training.
    pub regions: bool,
}

impl SyntheticSpec {
    /// A small 2D dataset: 64x64 PNG images.
    pub fn small_2d(id: u32) -> Self {
        Self::small(id, "Synthetic2D", false, [1, 64, 64], [1.0, 1.0, 1.0], 42)
    }

    /// A small 3D dataset: 32x40x40 NIfTI volumes, 1.5 mm slices.
    pub fn small_3d(id: u32) -> Self {
        Self::small(id, "Synthetic3D", true, [32, 40, 40], [1.5, 1.0, 1.0], 43)
    }

    /// A small dataset of 10 training and 2 test cases with plain labels.
    fn small(
        id: u32,
        name: &str,
        three_d: bool,
        shape: [usize; 3],
        spacing: [f64; 3],
        seed: u64,
    ) -> Self {
        Self {
            id,
            name: name.into(),
            three_d,
            cases: 10,
            test_cases: 2,
            shape,
            spacing,
            seed,
            regions: false,
        }
    }

    /// The dataset folder name, `DatasetXXX_Name`.
    pub fn folder_name(&self) -> String {
        nnunet_core::paths::dataset_folder_name(self.id, &self.name)
    }

    /// The file ending of the images and labels: `.nii.gz` in 3D, `.png` in 2D.
    fn file_ending(&self) -> &'static str {
        if self.three_d { ".nii.gz" } else { ".png" }
    }
}

/// One generated case: image and label map `[z, y, x]`.
pub fn synthetic_case(spec: &SyntheticSpec, index: usize) -> (Array3<f32>, Array3<i16>) {
    let mut rng =
        StdRng::seed_from_u64(spec.seed.wrapping_mul(1_000_003).wrapping_add(index as u64));
    let [nz, ny, nx] = if spec.three_d {
        spec.shape
    } else {
        [1, spec.shape[1], spec.shape[2]]
    };
    let dims = [nz, ny, nx];
    let mut label = Array3::<i16>::zeros(dims);
    // Ellipsoid: radii 15-30% of each axis, centred inside.
    let radius = |n: usize, rng: &mut StdRng| (n as f64 * rng.random_range(0.15..0.3)).max(1.5);
    let centre = |n: usize, r: f64, rng: &mut StdRng| {
        let lo = r.min(n as f64 / 2.0);
        let hi = (n as f64 - r).max(lo + 1e-3);
        rng.random_range(lo..hi)
    };
    let r = [
        radius(nz, &mut rng),
        radius(ny, &mut rng),
        radius(nx, &mut rng),
    ];
    let c = [
        centre(nz, r[0], &mut rng),
        centre(ny, r[1], &mut rng),
        centre(nx, r[2], &mut rng),
    ];
    // Box: 20-40% of each axis.
    let side =
        |n: usize, rng: &mut StdRng| ((n as f64 * rng.random_range(0.2..0.4)) as usize).max(1);
    let s = [side(nz, &mut rng), side(ny, &mut rng), side(nx, &mut rng)];
    let start = [
        rng.random_range(0..=nz - s[0]),
        rng.random_range(0..=ny - s[1]),
        rng.random_range(0..=nx - s[2]),
    ];
    for ((z, y, x), v) in label.indexed_iter_mut() {
        let d = [z, y, x]
            .iter()
            .enumerate()
            .map(|(a, &p)| {
                if dims[a] == 1 {
                    0.0
                } else {
                    ((p as f64 + 0.5 - c[a]) / r[a]).powi(2)
                }
            })
            .sum::<f64>();
        if d <= 1.0 {
            *v = 1;
        }
        let in_box = [z, y, x]
            .iter()
            .enumerate()
            .all(|(a, &p)| p >= start[a] && p < start[a] + s[a]);
        if in_box {
            *v = 2;
        }
    }
    let mut image = Array3::<f32>::zeros(dims);
    let base: f32 = rng.random_range(90.0..110.0);
    for (v, l) in image.iter_mut().zip(label.iter()) {
        let mean = match l {
            1 => base + 60.0,
            2 => base - 50.0,
            _ => base,
        };
        *v = mean + 18.0 * gaussian(&mut rng);
    }
    (image, label)
}

/// A standard normal sample (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Writes the dataset under `raw_root` (`imagesTr`, `labelsTr`, `imagesTs`, `labelsTs`,
/// `dataset.json`) and returns its folder. An existing folder of the same name is an error, so
/// nothing a user made is overwritten.
pub fn write_synthetic_dataset(raw_root: &Path, spec: &SyntheticSpec) -> Result<PathBuf> {
    let folder = raw_root.join(spec.folder_name());
    if folder.exists() {
        return Err(Error::dataset(format!(
            "{} exists already; remove it or choose another dataset ID",
            folder.display()
        )));
    }
    let ending = spec.file_ending();
    for (sub, first, count) in [("Tr", 0, spec.cases), ("Ts", spec.cases, spec.test_cases)] {
        let images = folder.join(format!("images{sub}"));
        let labels = folder.join(format!("labels{sub}"));
        for dir in [&images, &labels] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        for i in first..first + count {
            let case = format!("{}_{i:03}", spec.name.to_lowercase());
            let (image, label) = synthetic_case(spec, i);
            write_image(
                spec,
                image.view(),
                &images.join(format!("{case}_0000{ending}")),
            )?;
            write_label(spec, label.view(), &labels.join(format!("{case}{ending}")))?;
        }
    }
    let labels = if spec.regions {
        serde_json::json!({"background": 0, "whole": [1, 2], "box": 2})
    } else {
        serde_json::json!({"background": 0, "ellipsoid": 1, "box": 2})
    };
    let mut dataset_json = serde_json::json!({
        "channel_names": {"0": "synthetic"},
        "labels": labels,
        "numTraining": spec.cases,
        "file_ending": ending,
        "name": spec.name,
        "description": "generated by nnunet-rs: noisy images with a bright ellipsoid and a dark box",
    });
    if spec.regions {
        dataset_json["regions_class_order"] = serde_json::json!([1, 2]);
    }
    nnunet_core::compat::json::write_json(&folder.join("dataset.json"), &dataset_json)?;
    Ok(folder)
}

/// The properties written with every file: the spec's spacing, default origin and direction.
fn properties(spec: &SyntheticSpec) -> ImageProperties {
    ImageProperties {
        spacing: spec.spacing,
        ..Default::default()
    }
}

/// Writes an image as NIfTI (3D) or as an 8-bit gray PNG (2D, values rounded and clamped).
fn write_image(spec: &SyntheticSpec, image: ArrayView3<'_, f32>, file: &Path) -> Result<()> {
    if spec.three_d {
        crate::readers::nifti::write_volume_f32(image, file, &properties(spec))
    } else {
        let (_, ny, nx) = image.dim();
        let pixels: Vec<u8> = image
            .iter()
            .map(|v| v.round().clamp(0.0, 255.0) as u8)
            .collect();
        save_gray_png(file, nx, ny, pixels, "image")
    }
}

/// Writes a label map as NIfTI (3D) or as an 8-bit gray PNG (2D).
fn write_label(spec: &SyntheticSpec, label: ArrayView3<'_, i16>, file: &Path) -> Result<()> {
    if spec.three_d {
        use nnunet_core::Reader;
        crate::readers::nifti::SimpleItkIO.write_segmentation(label, file, &properties(spec))
    } else {
        let (_, ny, nx) = label.dim();
        let pixels: Vec<u8> = label.iter().map(|&v| v as u8).collect();
        save_gray_png(file, nx, ny, pixels, "label")
    }
}

/// Saves `pixels` (`ny` rows of `nx`) as a gray PNG; `what` (image or label) names it in errors.
fn save_gray_png(file: &Path, nx: usize, ny: usize, pixels: Vec<u8>, what: &str) -> Result<()> {
    let buffer = image::GrayImage::from_raw(nx as u32, ny as u32, pixels).ok_or_else(|| {
        Error::dataset_file(file, format!("{what} size does not match its pixels"))
    })?;
    buffer
        .save(file)
        .map_err(|e| Error::dataset_file(file, format!("cannot write PNG: {e}")))
}
