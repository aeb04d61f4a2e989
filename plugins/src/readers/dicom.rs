//! DICOM series: finding every image series under a folder and reading one into a volume with
//! its world geometry, as SimpleITK's `ImageSeriesReader` reads it, for `nnunet convert-dicom`,
//! `nnunet info DIR` and `nnunet predict -i DIR --dicom`. Parsing and pixel decoding use the
//! dicom-rs crates (`dicom-object`, `dicom-pixeldata`; native transfer syntaxes: uncompressed,
//! deflate, RLE and JPEG baseline/lossless).
//!
//! * Discovery: every file under the folder (any depth) is tried as DICOM; files that are not
//!   DICOM, and objects that are not cross-sectional images (no `ImagePositionPatient`,
//!   `ImageOrientationPatient` or `Rows`, e.g. RT plans, structured reports), are skipped and
//!   listed. Images are grouped by `SeriesInstanceUID`.
//! * Order and geometry: slices are sorted by their position along the slice normal (the cross
//!   product of the row and column cosines of `ImageOrientationPatient`). The origin is the first
//!   slice's `ImagePositionPatient`; the direction columns are the row cosines, column cosines and
//!   normal (LPS, as ITK); the spacing is `PixelSpacing` (column spacing along `x`) and, between
//!   slices, the distance between the first and last positions over the number of gaps (a
//!   single slice: `SpacingBetweenSlices`, else `SliceThickness`, else 1).
//! * Never silently wrong: a series whose slices differ in orientation, size or pixel spacing,
//!   that has several slices at one position (echoes, phases), whose positions do not run along
//!   the normal (gantry tilt: the volume would be sheared) or whose gaps differ by more than 1 %
//!   (a missing slice) is an error naming the series and the problem.
//! * Values: stored values times `RescaleSlope` plus `RescaleIntercept`, per slice. Multi-frame
//!   objects and colour images are refused with an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions, Tag};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use ndarray::Array4;
use nnunet_core::io::{Image, ImageProperties};
use nnunet_core::{Error, Result};
use serde_json::{Value, json};

/// One image series found under a folder.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// A readable name, unique among the series found together: patient ID, series number and
    /// description (characters other than letters, digits and `-` replaced by `_`).
    pub name: String,
    /// `SeriesInstanceUID`.
    pub uid: String,
    /// `Modality`.
    pub modality: String,
    /// `SeriesDescription`.
    pub description: String,
    /// `SeriesNumber`, if present.
    pub number: Option<i64>,
    /// `PatientID`.
    pub patient_id: String,
    /// `StudyInstanceUID`.
    pub study_uid: String,
    /// The image files of the series, in file name order.
    pub files: Vec<PathBuf>,
}

/// What [`find_series`] found: the image series and the files it skipped, with why.
#[derive(Clone, Debug, Default)]
pub struct Found {
    /// Image series, ordered by patient, study, series number and UID.
    pub series: Vec<Series>,
    /// Files that are not DICOM images, each with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Every file under `dir`, sorted, following no symbolic links to folders.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() || kind.is_symlink() && entry.path().is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The trimmed text value of `tag`, empty when missing.
fn text(obj: &DefaultDicomObject, tag: Tag) -> String {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The numbers of a multi-valued `tag`.
fn floats(obj: &DefaultDicomObject, tag: Tag) -> Option<Vec<f64>> {
    obj.element_opt(tag).ok().flatten()?.to_multi_float64().ok()
}

/// The first number of `tag`.
fn float(obj: &DefaultDicomObject, tag: Tag) -> Option<f64> {
    floats(obj, tag).and_then(|v| v.first().copied())
}

/// The integer value of `tag`.
fn int(obj: &DefaultDicomObject, tag: Tag) -> Option<i64> {
    obj.element_opt(tag).ok().flatten()?.to_int::<i64>().ok()
}

/// Why `obj` is not a cross-sectional image, if it is not.
fn not_an_image(obj: &DefaultDicomObject) -> Option<String> {
    let missing: Vec<&str> = [
        (tags::ROWS, "Rows"),
        (tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient"),
        (tags::IMAGE_ORIENTATION_PATIENT, "ImageOrientationPatient"),
        (tags::SERIES_INSTANCE_UID, "SeriesInstanceUID"),
    ]
    .iter()
    .filter(|(tag, _)| obj.element_opt(*tag).ok().flatten().is_none())
    .map(|(_, name)| *name)
    .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "not a cross-sectional image ({} {}; SOP class {})",
            missing.join(", "),
            if missing.len() == 1 {
                "is missing"
            } else {
                "are missing"
            },
            text(obj, tags::SOP_CLASS_UID)
        )
    })
}

/// The header of `file` (up to the pixel data).
fn open_header(file: &Path) -> std::result::Result<DefaultDicomObject, String> {
    OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(file)
        .map_err(|e| format!("not a DICOM file ({e})"))
}

/// `s` with every run of characters other than ASCII letters, digits and `-` turned into `_`.
fn sanitize(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// Gives each series a unique readable name.
fn name_series(series: &mut [Series]) {
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for s in series.iter_mut() {
        let parts = [
            sanitize(&s.patient_id),
            s.number.map(|n| n.to_string()).unwrap_or_default(),
            sanitize(&s.description),
        ];
        let mut base = parts
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join("_");
        if base.is_empty() {
            base = format!("series_{}", sanitize(&s.uid));
        }
        let count = used.entry(base.clone()).or_insert(0);
        *count += 1;
        s.name = if *count == 1 {
            base
        } else {
            format!("{base}_{count}")
        };
    }
}

/// Finds every DICOM image series under `dir` (see the module documentation).
pub fn find_series(dir: &Path) -> Result<Found> {
    if !dir.is_dir() {
        return Err(Error::reader_file(dir, "no such folder"));
    }
    let mut by_uid: BTreeMap<String, Series> = BTreeMap::new();
    let mut found = Found::default();
    for file in files_under(dir)? {
        let obj = match open_header(&file) {
            Ok(obj) => obj,
            Err(why) => {
                found.skipped.push((file, why));
                continue;
            }
        };
        if let Some(why) = not_an_image(&obj) {
            found.skipped.push((file, why));
            continue;
        }
        let uid = text(&obj, tags::SERIES_INSTANCE_UID);
        let series = by_uid.entry(uid.clone()).or_insert_with(|| Series {
            name: String::new(),
            uid,
            modality: text(&obj, tags::MODALITY),
            description: text(&obj, tags::SERIES_DESCRIPTION),
            number: int(&obj, tags::SERIES_NUMBER),
            patient_id: text(&obj, tags::PATIENT_ID),
            study_uid: text(&obj, tags::STUDY_INSTANCE_UID),
            files: Vec::new(),
        });
        series.files.push(file);
    }
    let mut series: Vec<Series> = by_uid.into_values().collect();
    series.sort_by(|a, b| {
        (&a.patient_id, &a.study_uid, a.number, &a.uid).cmp(&(
            &b.patient_id,
            &b.study_uid,
            b.number,
            &b.uid,
        ))
    });
    name_series(&mut series);
    found.series = series;
    Ok(found)
}

/// The geometry tags of one slice.
#[derive(Clone, Debug)]
struct Slice {
    /// The file holding the slice.
    file: PathBuf,
    /// `ImagePositionPatient`: the first voxel's centre (mm, LPS).
    position: [f64; 3],
    /// `ImageOrientationPatient`: the row and column directions.
    orientation: [f64; 6],
    /// `PixelSpacing`: between rows, then between columns (mm).
    pixel_spacing: [f64; 2],
    /// `Rows`.
    rows: usize,
    /// `Columns`.
    columns: usize,
}

/// The first three values of `v`.
fn three(v: &[f64]) -> [f64; 3] {
    [v[0], v[1], v[2]]
}

/// The cross product `a × b`.
fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// The dot product `a · b`.
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The difference `a - b`.
fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// The Euclidean length of `a`.
fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

/// The geometry tags of `file`, checked for presence and shape.
fn slice_of(file: &Path, obj: &DefaultDicomObject) -> Result<Slice> {
    let need = |tag: Tag, name: &str, n: usize| -> Result<Vec<f64>> {
        match floats(obj, tag) {
            Some(v) if v.len() >= n && v.iter().take(n).all(|x| x.is_finite()) => Ok(v),
            _ => Err(Error::reader_file(
                file,
                format!("{name} is missing or does not hold {n} numbers"),
            )),
        }
    };
    let o = need(
        tags::IMAGE_ORIENTATION_PATIENT,
        "ImageOrientationPatient",
        6,
    )?;
    let spacing = floats(obj, tags::PIXEL_SPACING).unwrap_or_else(|| vec![1.0, 1.0]);
    let dims = |tag: Tag| int(obj, tag).filter(|&v| v > 0).map(|v| v as usize);
    let (Some(rows), Some(columns)) = (dims(tags::ROWS), dims(tags::COLUMNS)) else {
        return Err(Error::reader_file(file, "Rows or Columns is missing"));
    };
    Ok(Slice {
        file: file.to_path_buf(),
        position: three(&need(
            tags::IMAGE_POSITION_PATIENT,
            "ImagePositionPatient",
            3,
        )?),
        orientation: [o[0], o[1], o[2], o[3], o[4], o[5]],
        pixel_spacing: [
            spacing.first().copied().unwrap_or(1.0),
            spacing.get(1).copied().unwrap_or(1.0),
        ],
        rows,
        columns,
    })
}

/// An error about `series`, naming its folder, name and UID.
fn series_error(series: &Series, problem: String) -> Error {
    let folder = series
        .files
        .first()
        .and_then(|f| f.parent())
        .unwrap_or(Path::new("."));
    Error::reader_file(
        folder,
        format!("series '{}' ({}): {problem}", series.name, series.uid),
    )
}

/// Every slice of `series` must have the orientation, size and pixel spacing of the first.
fn check_slices_alike(series: &Series, slices: &[Slice]) -> Result<()> {
    let first = &slices[0];
    for s in &slices[1..] {
        let same_orientation = s
            .orientation
            .iter()
            .zip(first.orientation)
            .all(|(a, b)| (a - b).abs() < 1e-4);
        if !same_orientation || (s.rows, s.columns) != (first.rows, first.columns) {
            return Err(series_error(
                series,
                format!(
                    "its slices differ in orientation or size ({} and {}); they cannot be stacked \
                     into one volume",
                    first.file.display(),
                    s.file.display()
                ),
            ));
        }
        if s.pixel_spacing
            .iter()
            .zip(first.pixel_spacing)
            .any(|(a, b)| (a - b).abs() > 1e-4 * b.abs().max(1.0))
        {
            return Err(series_error(
                series,
                "its slices differ in PixelSpacing".into(),
            ));
        }
    }
    Ok(())
}

/// The slices of `series` sorted along the normal, checked to form one regular volume; returns
/// them with the slice spacing.
fn sorted_slices(series: &Series, mut slices: Vec<Slice>) -> Result<(Vec<Slice>, f64)> {
    check_slices_alike(series, &slices)?;
    let o = slices[0].orientation;
    let normal = cross([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    if (norm(normal) - 1.0).abs() > 1e-3 {
        return Err(series_error(
            series,
            format!("ImageOrientationPatient {o:?} does not hold two orthogonal unit vectors"),
        ));
    }
    slices.sort_by(|a, b| dot(a.position, normal).total_cmp(&dot(b.position, normal)));
    if slices.len() == 1 {
        return Ok((slices, 0.0));
    }
    let along: Vec<f64> = slices.iter().map(|s| dot(s.position, normal)).collect();
    let gaps: Vec<f64> = along.windows(2).map(|w| w[1] - w[0]).collect();
    if let Some(i) = gaps.iter().position(|g| g.abs() < 1e-4) {
        return Err(series_error(
            series,
            format!(
                "{} and {} lie at the same position: the series holds several volumes (echoes, \
                 phases or acquisitions); split it first",
                slices[i].file.display(),
                slices[i + 1].file.display()
            ),
        ));
    }
    let span = sub(slices[slices.len() - 1].position, slices[0].position);
    let off_normal = norm(sub(span, normal.map(|v| v * dot(span, normal))));
    if off_normal > 1e-3 * norm(span) + 1e-4 {
        let degrees = (off_normal / dot(span, normal)).atan().to_degrees();
        return Err(series_error(
            series,
            format!(
                "the slices are not stacked along their normal (gantry tilt of {degrees:.2} \
                 degrees): the volume would be sheared; correct the tilt with a tool that \
                 resamples it (e.g. dcm2niix) first"
            ),
        ));
    }
    let spacing = norm(span) / gaps.len() as f64;
    let (min, max) = gaps
        .iter()
        .fold((f64::INFINITY, 0f64), |(lo, hi), &g| (lo.min(g), hi.max(g)));
    if max - min > 0.01 * spacing {
        return Err(series_error(
            series,
            format!(
                "irregular slice spacing: gaps from {min:.4} to {max:.4} mm (a slice may be \
                 missing); it cannot be stored as a regular volume"
            ),
        ));
    }
    Ok((slices, spacing))
}

/// The spacing between the slices of a one-slice series.
fn single_slice_spacing(obj: &DefaultDicomObject) -> f64 {
    [tags::SPACING_BETWEEN_SLICES, tags::SLICE_THICKNESS]
        .iter()
        .filter_map(|&t| float(obj, t))
        .find(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(1.0)
}

/// The rescaled values of one slice, row by row.
fn slice_values(file: &Path, rows: usize, columns: usize) -> Result<Vec<f32>> {
    let obj = dicom_object::open_file(file)
        .map_err(|e| Error::reader_file(file, format!("cannot read the DICOM file: {e}")))?;
    let frames = int(&obj, tags::NUMBER_OF_FRAMES).unwrap_or(1);
    let samples = int(&obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    if frames != 1 || samples != 1 {
        return Err(Error::reader_file(
            file,
            format!(
                "{frames} frames of {samples} samples per pixel: multi-frame and colour images \
                 are not supported (one grey slice per file)"
            ),
        ));
    }
    let decoded = obj
        .decode_pixel_data()
        .map_err(|e| Error::reader_file(file, format!("cannot decode the pixel data: {e}")))?;
    let raw: Vec<f64> = decoded
        .to_vec_with_options(&ConvertOptions::new().with_modality_lut(ModalityLutOption::None))
        .map_err(|e| Error::reader_file(file, format!("cannot convert the pixel data: {e}")))?;
    if raw.len() != rows * columns {
        return Err(Error::reader_file(
            file,
            format!("{} pixels, expected {rows} x {columns}", raw.len()),
        ));
    }
    let slope = float(&obj, tags::RESCALE_SLOPE).filter(|s| s.is_finite() && *s != 0.0);
    let intercept = float(&obj, tags::RESCALE_INTERCEPT).filter(|s| s.is_finite());
    let (slope, intercept) = (slope.unwrap_or(1.0), intercept.unwrap_or(0.0));
    Ok(raw.iter().map(|v| (v * slope + intercept) as f32).collect())
}

/// How the slices of a series form a volume.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The slice files in volume order (increasing position along the normal).
    pub files: Vec<PathBuf>,
    /// Columns, rows and slices.
    pub size: [usize; 3],
    /// The volume's geometry (ITK's, LPS; spacing in `[z, y, x]` order).
    pub properties: ImageProperties,
}

/// How the slices of `series` form a volume, from the headers alone; a series that cannot be one
/// regular volume is an error naming it.
pub fn series_layout(series: &Series) -> Result<Layout> {
    let mut slices = Vec::with_capacity(series.files.len());
    let mut first_header = None;
    for file in &series.files {
        let obj = open_header(file).map_err(|m| Error::reader_file(file, m))?;
        slices.push(slice_of(file, &obj)?);
        first_header.get_or_insert(obj);
    }
    let Some(header) = first_header else {
        return Err(series_error(series, "it has no image files".into()));
    };
    let (slices, mut spacing_z) = sorted_slices(series, slices)?;
    if slices.len() == 1 {
        spacing_z = single_slice_spacing(&header);
    }
    let o = slices[0].orientation;
    let (r, c) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    let n = cross(r, c);
    let [row_spacing, column_spacing] = slices[0].pixel_spacing;
    let properties = ImageProperties {
        spacing: [spacing_z, row_spacing, column_spacing],
        origin: slices[0].position.to_vec(),
        direction: (0..3).flat_map(|i| [r[i], c[i], n[i]]).collect(),
        extra: Default::default(),
    };
    Ok(Layout {
        size: [slices[0].columns, slices[0].rows, slices.len()],
        files: slices.into_iter().map(|s| s.file).collect(),
        properties,
    })
}

/// Reads `series` into a volume `[1, z, y, x]` with its ITK geometry (see the module
/// documentation); a series that cannot be one regular volume is an error naming it.
pub fn read_series(series: &Series) -> Result<Image> {
    let layout = series_layout(series)?;
    let [columns, rows, slices] = layout.size;
    let mut values = Vec::with_capacity(slices * rows * columns);
    for file in &layout.files {
        values.extend(slice_values(file, rows, columns)?);
    }
    let data = Array4::from_shape_vec([1, slices, rows, columns], values)
        .map_err(|e| series_error(series, format!("cannot shape the volume: {e}")))?;
    Ok(Image {
        data,
        properties: layout.properties,
    })
}

/// The JSON side file of a converted series: its tags and slice count.
pub fn sidecar(series: &Series) -> Value {
    json!({
        "SeriesInstanceUID": series.uid,
        "Modality": series.modality,
        "SeriesDescription": series.description,
        "SeriesNumber": series.number,
        "PatientID": series.patient_id,
        "StudyInstanceUID": series.study_uid,
        "slices": series.files.len(),
    })
}

/// Converts `series` into `out_dir/<name>.nii.gz` (values as `int16` when they all fit, else
/// `float32`) and `out_dir/<name>.json` ([`sidecar`]); returns the image file.
pub fn convert_series(series: &Series, out_dir: &Path) -> Result<PathBuf> {
    let image = read_series(series)?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let file = out_dir.join(format!("{}.nii.gz", series.name));
    let volume = image.data.index_axis(ndarray::Axis(0), 0);
    super::nifti::write_volume(volume, &file, &image.properties)?;
    let json_file = out_dir.join(format!("{}.json", series.name));
    let text = serde_json::to_string_pretty(&sidecar(series)).unwrap_or_default();
    std::fs::write(&json_file, text + "\n").map_err(|e| Error::io(&json_file, e))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_readable_and_unique() {
        let s = |patient: &str, number: Option<i64>, description: &str, uid: &str| Series {
            name: String::new(),
            uid: uid.into(),
            modality: "CT".into(),
            description: description.into(),
            number,
            patient_id: patient.into(),
            study_uid: String::new(),
            files: vec![],
        };
        let mut series = vec![
            s("P 1", Some(3), "AX T2 / fs", "1.2"),
            s("P 1", Some(3), "AX T2 / fs", "1.3"),
            s("", None, "", "1.4.5"),
        ];
        name_series(&mut series);
        let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["P_1_3_AX_T2_fs", "P_1_3_AX_T2_fs_2", "series_1_4_5"]
        );
    }
}
