//! The synthetic raw datasets of the planning golden fixtures (`tests/fixtures/planning`), rebuilt
//! from the integer formulas of the fixtures' README: Dataset901_Rgb2D (PNG), Dataset902_MrIso,
//! Dataset903_CtAniso, Dataset904_TwoChanMasked and Dataset905_Nifti2D (NIfTI).
//!
//! [`Synthetic::write_raw`] writes one as a raw nnU-Net dataset (`dataset.json`, `imagesTr`,
//! `labelsTr`) and can check every voxel array against the SHA-256 recorded in the fixture's
//! `dataset_params.json`, so a test knows it runs on exactly the reference's data. NIfTI files are
//! written by a small NIfTI-1 writer here (float32 pixdim, no qform/sform, so origin 0 and identity
//! direction as in the fixtures); PNGs with the `image` crate.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The folder of the planning golden fixtures.
pub(crate) fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/planning")
}

/// Voxel values of one array, in numpy C order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Values {
    U8(Vec<u8>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

impl Values {
    /// The raw little-endian bytes (what the fixtures hash).
    pub(crate) fn le_bytes(&self) -> Vec<u8> {
        match self {
            Values::U8(v) => v.clone(),
            Values::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Values::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Values::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// numpy's name of the dtype.
    pub(crate) fn dtype(&self) -> &'static str {
        match self {
            Values::U8(_) => "uint8",
            Values::I16(_) => "int16",
            Values::U16(_) => "uint16",
            Values::F32(_) => "float32",
        }
    }

    /// NIfTI datatype code and bits per voxel.
    fn nifti_type(&self) -> (i16, i16) {
        match self {
            Values::U8(_) => (2, 8),
            Values::I16(_) => (4, 16),
            Values::U16(_) => (512, 16),
            Values::F32(_) => (16, 32),
        }
    }

    /// The values as f64 (for tests that compare with what a reader returns).
    pub(crate) fn to_f64(&self) -> Vec<f64> {
        match self {
            Values::U8(v) => v.iter().map(|&x| x as f64).collect(),
            Values::I16(v) => v.iter().map(|&x| x as f64).collect(),
            Values::U16(v) => v.iter().map(|&x| x as f64).collect(),
            Values::F32(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }
}

/// One array with its numpy shape.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Array {
    /// numpy shape: `(z, y, x)`, `(h, w)` or `(h, w, 3)` for RGB.
    pub shape: Vec<usize>,
    pub values: Values,
}

impl Array {
    /// SHA-256 (hex) of the raw little-endian C-order bytes, as `dataset_params.json` records it.
    pub(crate) fn sha256(&self) -> String {
        let digest = Sha256::digest(self.values.le_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The arrays of one case: one per image file (a PNG holds all three RGB channels) and the labels.
#[derive(Clone, Debug)]
pub(crate) struct Case {
    pub images: Vec<Array>,
    pub label: Array,
}

impl Case {
    /// A case whose image channels and label map all have the shape `shape`.
    fn same_shape(shape: &[usize], images: Vec<Values>, label: Values) -> Case {
        let array = |values: Values| Array {
            shape: shape.to_vec(),
            values,
        };
        Case {
            images: images.into_iter().map(&array).collect(),
            label: array(label),
        }
    }
}

/// File format of a synthetic dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Png,
    Nifti,
}

/// One synthetic dataset.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Synthetic {
    pub id: u32,
    pub name: &'static str,
    pub kind: Kind,
    pub num_cases: usize,
}

/// The dataset with the given fixture id (901 to 905).
pub(crate) fn dataset(id: u32) -> Synthetic {
    let (name, kind, num_cases) = match id {
        901 => ("Dataset901_Rgb2D", Kind::Png, 4),
        902 => ("Dataset902_MrIso", Kind::Nifti, 4),
        903 => ("Dataset903_CtAniso", Kind::Nifti, 3),
        904 => ("Dataset904_TwoChanMasked", Kind::Nifti, 4),
        905 => ("Dataset905_Nifti2D", Kind::Nifti, 3),
        other => panic!("no synthetic dataset {other}"),
    };
    Synthetic {
        id,
        name,
        kind,
        num_cases,
    }
}

fn sphere(p: &[i64], c: &[i64], r: i64) -> bool {
    p.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum::<i64>() <= r * r
}

fn ellipsoid(p: &[i64], c: &[i64], radii: &[i64]) -> bool {
    let all: i64 = radii.iter().map(|r| r * r).product();
    let acc: i64 = p
        .iter()
        .zip(c)
        .zip(radii)
        .map(|((a, b), r)| (a - b) * (a - b) * (all / (r * r)))
        .sum();
    acc <= all
}

fn in_box(p: &[i64], lo: &[i64], hi: &[i64]) -> bool {
    p.iter()
        .zip(lo)
        .zip(hi)
        .all(|((a, l), h)| *l <= *a && *a < *h)
}

/// A one-channel int16 case of `shape`: voxel `(i, j, k)` has the value and label `f` gives.
fn int16_case(shape: [usize; 3], mut f: impl FnMut(i64, i64, i64) -> (i64, u8)) -> Case {
    let n = shape.iter().product();
    let mut img = Vec::with_capacity(n);
    let mut lab = Vec::with_capacity(n);
    grid3(shape, |i, j, k| {
        let (v, l) = f(i, j, k);
        img.push(v as i16);
        lab.push(l);
    });
    Case::same_shape(&shape, vec![Values::I16(img)], Values::U8(lab))
}

fn grid3(shape: [usize; 3], mut f: impl FnMut(i64, i64, i64)) {
    for i in 0..shape[0] as i64 {
        for j in 0..shape[1] as i64 {
            for k in 0..shape[2] as i64 {
                f(i, j, k);
            }
        }
    }
}

impl Synthetic {
    /// The folder of this dataset's golden fixtures.
    pub(crate) fn fixture_dir(&self) -> PathBuf {
        fixtures_dir().join(self.name)
    }

    /// The fixture's `dataset_params.json`.
    pub(crate) fn params(&self) -> Value {
        let path = self.fixture_dir().join("dataset_params.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// The fixture's golden `dataset_fingerprint.json`.
    pub(crate) fn golden_fingerprint(&self) -> Value {
        let path = self.fixture_dir().join("dataset_fingerprint.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// The file ending of its files.
    pub(crate) fn file_ending(&self) -> &'static str {
        match self.kind {
            Kind::Png => ".png",
            Kind::Nifti => ".nii.gz",
        }
    }

    /// The `dataset.json` the reference was run with (key order as written there).
    pub(crate) fn dataset_json(&self) -> Value {
        let (channels, labels) = match self.id {
            901 => (
                json!({"0": "R", "1": "G", "2": "B"}),
                json!({"background": 0, "disk": 1, "rectangle": 2}),
            ),
            902 => (
                json!({"0": "T2"}),
                json!({"background": 0, "sphere": 1, "box": 2}),
            ),
            903 => (
                json!({"0": "CT"}),
                json!({"background": 0, "organ": 1, "lesion": 2}),
            ),
            904 => (
                json!({"0": "T1", "1": "rescale_to_0_1"}),
                json!({"background": 0, "sphere": 1, "box": 2}),
            ),
            905 => (json!({"0": "noNorm"}), json!({"background": 0, "disk": 1})),
            _ => unreachable!(),
        };
        json!({
            "channel_names": channels,
            "labels": labels,
            "numTraining": self.num_cases,
            "file_ending": self.file_ending(),
            "name": self.name,
        })
    }

    /// The ITK spacing `(x, y[, z])` of case `c` (NIfTI datasets only).
    pub(crate) fn spacing_xyz(&self, c: usize) -> Vec<f64> {
        match self.id {
            902 => vec![1.0, 1.0, if c == 3 { 1.25 } else { 1.0 }],
            903 => vec![0.75, 0.75, [1.5, 5.0, 5.0][c]],
            904 => vec![2.2, 0.9, 0.9],
            905 => vec![0.5, 0.625],
            _ => Vec::new(),
        }
    }

    /// The case identifier of case `c`.
    pub(crate) fn case_id(c: usize) -> String {
        format!("case_{c:03}")
    }

    /// The arrays of case `c`, from the README formulas.
    pub(crate) fn case(&self, c: usize) -> Case {
        match self.id {
            901 => rgb2d(c as i64),
            902 => mr_iso(c as i64),
            903 => ct_aniso(c as i64),
            904 => two_chan(c as i64),
            905 => nifti2d(c as i64),
            _ => unreachable!(),
        }
    }

    /// Writes the raw dataset into `root/<name>` and returns that folder. With `check`, every
    /// array's shape, dtype and SHA-256 are compared with the fixture's `dataset_params.json`
    /// (panicking on a difference), as is `dataset.json`.
    pub(crate) fn write_raw(&self, root: &Path, check: bool) -> PathBuf {
        let folder = root.join(self.name);
        let images = folder.join("imagesTr");
        let labels = folder.join("labelsTr");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(&labels).unwrap();
        let params = check.then(|| self.params());
        if let Some(p) = &params {
            assert_eq!(
                p["dataset_json"],
                self.dataset_json(),
                "{} dataset.json",
                self.name
            );
        }
        let ending = self.file_ending();
        for c in 0..self.num_cases {
            let case = self.case(c);
            let id = Self::case_id(c);
            if let Some(p) = &params {
                let entry = &p["cases"][c];
                assert_eq!(entry["case"], id.as_str());
                let check_array = |a: &Array, shape: &Value, dtype: &Value, sha: &Value, what| {
                    let want: Vec<usize> = serde_json::from_value(shape.clone()).unwrap();
                    assert_eq!(a.shape, want, "{} {id} {what} shape", self.name);
                    assert_eq!(a.values.dtype(), dtype, "{} {id} {what} dtype", self.name);
                    assert_eq!(a.sha256(), *sha, "{} {id} {what} SHA-256", self.name);
                };
                check_array(
                    &case.label,
                    &entry["label_shape"],
                    &entry["label_dtype"],
                    &entry["label_sha256"],
                    "label",
                );
                assert_eq!(entry["images"].as_array().unwrap().len(), case.images.len());
                for (a, e) in case.images.iter().zip(entry["images"].as_array().unwrap()) {
                    check_array(a, &e["shape"], &e["dtype"], &e["sha256"], "image");
                }
                if self.kind == Kind::Nifti {
                    let sp: Vec<f64> =
                        serde_json::from_value(entry["spacing_sitk_xyz"].clone()).unwrap();
                    assert_eq!(sp, self.spacing_xyz(c), "{} {id} spacing", self.name);
                }
            }
            for (ch, a) in case.images.iter().enumerate() {
                let file = images.join(format!("{id}_{ch:04}{ending}"));
                match self.kind {
                    Kind::Png => write_png(&file, a),
                    Kind::Nifti => write_nifti(&file, a, &self.spacing_xyz(c)),
                }
            }
            let file = labels.join(format!("{id}{ending}"));
            match self.kind {
                Kind::Png => write_png(&file, &case.label),
                Kind::Nifti => write_nifti(&file, &case.label, &self.spacing_xyz(c)),
            }
        }
        let text = serde_json::to_string_pretty(&self.dataset_json()).unwrap();
        std::fs::write(folder.join("dataset.json"), text).unwrap();
        folder
    }
}

/// Writes a PNG: RGB for `(h, w, 3)` arrays, 8-bit gray for `(h, w)`.
pub(crate) fn write_png(file: &Path, a: &Array) {
    let Values::U8(v) = &a.values else {
        panic!("PNG arrays must be uint8");
    };
    let (h, w) = (a.shape[0] as u32, a.shape[1] as u32);
    let result = match a.shape.len() {
        3 => image::RgbImage::from_raw(w, h, v.clone())
            .unwrap()
            .save(file),
        2 => image::GrayImage::from_raw(w, h, v.clone())
            .unwrap()
            .save(file),
        n => panic!("cannot write a {n}-D array as PNG"),
    };
    result.unwrap_or_else(|e| panic!("{}: {e}", file.display()));
}

/// Writes a gzipped NIfTI-1 file of a numpy-order array (`(z, y, x)` or `(h, w)`) with the ITK
/// spacing `(x, y[, z])` stored as float32 pixdim, millimetre units and no qform/sform.
pub(crate) fn write_nifti(file: &Path, a: &Array, spacing_xyz: &[f64]) {
    let mut h = vec![0u8; 352];
    let put_i16 =
        |h: &mut Vec<u8>, off: usize, v: i16| h[off..off + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 =
        |h: &mut Vec<u8>, off: usize, v: f32| h[off..off + 4].copy_from_slice(&v.to_le_bytes());
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    h[38] = b'r';
    let dims: Vec<usize> = a.shape.iter().rev().copied().collect(); // x fastest
    put_i16(&mut h, 40, dims.len() as i16);
    for d in 0..7 {
        put_i16(&mut h, 42 + 2 * d, *dims.get(d).unwrap_or(&1) as i16);
    }
    let (code, bits) = a.values.nifti_type();
    put_i16(&mut h, 70, code);
    put_i16(&mut h, 72, bits);
    put_f32(&mut h, 76, 1.0); // qfac
    for d in 0..7 {
        put_f32(
            &mut h,
            80 + 4 * d,
            spacing_xyz.get(d).map_or(1.0, |&s| s as f32),
        );
    }
    put_f32(&mut h, 108, 352.0);
    put_f32(&mut h, 112, 1.0); // scl_slope
    h[123] = 2; // mm
    h[344..348].copy_from_slice(b"n+1\0");
    let out = std::fs::File::create(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(out), flate2::Compression::fast());
    gz.write_all(&h).unwrap();
    gz.write_all(&a.values.le_bytes()).unwrap();
    gz.finish().unwrap().flush().unwrap();
}

fn rgb2d(c: i64) -> Case {
    let (h, w) = (96 + 8 * c, 128 - 8 * c);
    let mut label = Vec::with_capacity((h * w) as usize);
    let mut rgb = Vec::with_capacity((h * w * 3) as usize);
    for i in 0..h {
        for j in 0..w {
            let p = [i, j];
            let mut l = 0u8;
            if sphere(&p, &[h / 2, w / 3], h / 4) {
                l = 1;
            }
            if in_box(&p, &[8, w - 40], &[28, w - 12]) {
                l = 2;
            }
            let fg = (l > 0) as i64;
            let r = 1 + (7 * i + 13 * j + 11 * c) % 97 + 100 * fg;
            let g = 1 + (3 * i + 5 * j + 17 * c) % 89 + 60 * (l == 1) as i64;
            let b = 1 + (i * j + 5 * c) % 64 + 120 * (l == 2) as i64;
            rgb.extend([r as u8, g as u8, b as u8]);
            label.push(l);
        }
    }
    let (h, w) = (h as usize, w as usize);
    Case {
        images: vec![Array {
            shape: vec![h, w, 3],
            values: Values::U8(rgb),
        }],
        label: Array {
            shape: vec![h, w],
            values: Values::U8(label),
        },
    }
}

fn mr_iso(c: i64) -> Case {
    let (z, y, x) = (48 + 4 * c, 60 - 2 * c, 64);
    let (ci, cj, ck) = (z / 2, y / 2, x / 2);
    let shape = [z as usize, y as usize, x as usize];
    int16_case(shape, |i, j, k| {
        let p = [i, j, k];
        let mut l = 0u8;
        if sphere(&p, &[ci, cj - y / 8, ck], z.min(y).min(x) / 6) {
            l = 1;
        }
        if in_box(&p, &[ci + 2, cj + 4, ck - 6], &[ci + 8, cj + 12, ck + 6]) {
            l = 2;
        }
        let body = ellipsoid(&p, &[ci, cj, ck], &[2 * z / 5, 2 * y / 5, 2 * x / 5]);
        let mut v = 5 + (i + 2 * j + 3 * k) % 7;
        if body {
            v = 100 + (7 * k + 13 * j + 3 * i + 11 * c) % 97;
        }
        if l == 1 {
            v = 300 + (5 * i + 3 * j + 2 * k + c) % 41;
        }
        if l == 2 {
            v = 500 + (i * j + k + 3 * c) % 53;
        }
        if i < 2 || j >= y - 3 {
            v = 0;
            l = 0;
        }
        (v, l)
    })
}

fn ct_aniso(c: i64) -> Case {
    let z = 46;
    let n = [384, 400, 368][c as usize];
    let (ci, cj, ck) = (z / 2, n / 2, n / 2);
    let rad = 21 * n / 50;
    let centre = [ci, cj + n / 10, ck - n / 8];
    let radii = [z / 3, n / 6, n / 5];
    let shape = [z as usize, n as usize, n as usize];
    int16_case(shape, |i, j, k| {
        let p = [i, j, k];
        let body = (j - cj) * (j - cj) + (k - ck) * (k - ck) <= rad * rad;
        let organ = ellipsoid(&p, &centre, &radii);
        let lesion = sphere(&p, &centre, n / 24);
        let mut v = -1000;
        let mut l = 0u8;
        if body {
            v = -30 + (3 * i + 7 * j + 13 * k + 11 * c) % 61;
        }
        if organ {
            v = 40 + (5 * i + 11 * j + 3 * k + c) % 37;
            l = 1;
        }
        if lesion {
            v = 120 + (i + j + k + 7 * c) % 29;
            l = 2;
        }
        (v, l)
    })
}

fn two_chan(c: i64) -> Case {
    let (z, y, x) = (40, 48 + 4 * c, 36);
    let (ci, cj, ck) = (z / 2, y / 2, x / 2);
    let shape = [z as usize, y as usize, x as usize];
    let n = shape.iter().product();
    let (mut ch0, mut ch1, mut lab) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    grid3(shape, |i, j, k| {
        let p = [i, j, k];
        let body = ellipsoid(&p, &[ci, cj, ck], &[7 * z / 20, 7 * y / 20, 7 * x / 20]);
        let cavity = sphere(&p, &[ci - 4, cj - 5, ck], 3);
        let mut l = 0u8;
        if sphere(&p, &[ci + 3, cj + 4, ck], 5) {
            l = 1;
        }
        if c % 2 == 0 && in_box(&p, &[ci - 2, cj - 2, ck + 3], &[ci + 2, cj + 2, ck + 7]) {
            l = 2;
        }
        let inside = body && !cavity;
        let (a, b) = if inside {
            (
                50 + (7 * k + 13 * j + 3 * i + 11 * c) % 97
                    + 200 * (l == 1) as i64
                    + 400 * (l == 2) as i64,
                10 + (5 * i + 3 * j + 11 * k + 7 * c) % 31 + 40 * (l > 0) as i64,
            )
        } else {
            (0, 0)
        };
        ch0.push(a as f32);
        ch1.push(b as f32);
        lab.push(l);
    });
    Case::same_shape(
        &shape,
        vec![Values::F32(ch0), Values::F32(ch1)],
        Values::U8(lab),
    )
}

fn nifti2d(c: i64) -> Case {
    let (h, w) = (80 + 4 * c, 72);
    let mut img = Vec::new();
    let mut lab = Vec::new();
    for i in 0..h {
        for j in 0..w {
            let l = sphere(&[i, j], &[h / 2, w / 2], 12 + c) as u8;
            img.push((1000 + (9 * i + 4 * j + 13 * c) % 211 + 300 * l as i64) as u16);
            lab.push(l);
        }
    }
    let shape = [h as usize, w as usize];
    Case::same_shape(&shape, vec![Values::U16(img)], Values::U8(lab))
}
