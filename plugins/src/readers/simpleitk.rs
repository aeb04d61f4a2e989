//! `SimpleITKIO`, nnU-Net's default reader for `.nii.gz`, `.nrrd`, `.mha` and `.gipl`, and
//! `SimpleITKIOWithReorient`, the same reader reorienting every image to RAS.
//!
//! Both read every format SimpleITK reads for nnU-Net: NIfTI ([`super::nifti`]), NRRD
//! (`.nrrd`, detached `.nhdr`; [`super::nrrd`]), MetaImage (`.mha`, `.mhd` with its data file;
//! [`super::metaimage`]) and GIPL (`.gipl`, `.gipl.gz`; [`super::gipl`]). The format comes from
//! the file ending; each format module gives the file as ITK sees it ([`ItkImage`]: LPS geometry,
//! pixel components) and [`super::itk`] applies nnU-Net's rules. Besides nnU-Net's endings we also
//! accept `.nhdr`, `.mhd` and `.gipl.gz` datasets (nnU-Net lists none of them).
//!
//! A prediction is written in the format of the file name it is written to, with the input's
//! geometry: NIfTI keeps its header fields, NRRD its `space`, and every format its spacing,
//! origin and direction.
//!
//! `SimpleITKIOWithReorient` applies ITK's `DICOMOrient(image, "RAS")` after reading (an axis
//! permutation and flips chosen from the direction cosines, no resampling), reports the
//! reoriented geometry, and undoes the same permutation before writing, so the written file has
//! the input's orientation and header. Differences from nnU-Net: its label maps use the same
//! `uint8`/`uint16`/`int16` rule as `SimpleITKIO` (nnU-Net's always casts to `uint8`); 2D and 4D
//! images are an error naming the file (SimpleITK's `DICOMOrient` refuses them too).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use ndarray::{ArrayView3, ArrayView4};
use nnunet_core::io::{Image, ImageProperties, Segmentation};
use nnunet_core::{Error, Result};
use serde_json::{Map, Value, json};

use super::itk::{
    ItkGeometry, ItkImage, SitkFile, check_channels, probability_image, segmentation_image,
    sitk_file, sitk_labels, sitk_properties, stack,
};
use super::orientation::{
    AxisTransform, itk_orientation_code, itk_to_ras, recorded_transform, reorienting_readers,
};
use super::{gipl, metaimage, nifti, nrrd};

/// nnU-Net's default reader/writer for `.nii.gz`, `.nrrd`, `.mha`, `.gipl` (and `.nhdr`, `.mhd`).
pub struct SimpleItkIO;

/// [`SimpleItkIO`] reorienting images to RAS on reading and back on writing.
pub struct SimpleItkIOWithReorient;

nnunet_core::register!(
    Reader,
    "SimpleITKIO",
    "NIfTI (.nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) and GIPL (.gipl) with \
     SimpleITK's conventions; nnU-Net's default for these endings",
    || Box::new(SimpleItkIO)
);

nnunet_core::register!(
    Reader,
    "SimpleITKIOWithReorient",
    "SimpleITKIO reorienting 3D images to RAS on reading (ITK's DICOMOrient) and back on \
     writing; used when dataset.json names it",
    || Box::new(SimpleItkIOWithReorient)
);

/// The file endings both readers handle.
const ENDINGS: [&str; 7] = [
    ".nii.gz", ".nrrd", ".mha", ".gipl", ".nhdr", ".mhd", ".gipl.gz",
];

/// The file formats SimpleITK reads for nnU-Net.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Nifti,
    Nrrd,
    MetaImage,
    Gipl,
}

/// The format of `path`, from its ending (case-insensitive).
fn format_of(path: &Path) -> Result<Format> {
    let name = path.to_string_lossy().to_lowercase();
    let ends = |e: &[&str]| e.iter().any(|e| name.ends_with(e));
    if ends(&[".nii", ".nii.gz"]) {
        Ok(Format::Nifti)
    } else if ends(&[".nrrd", ".nhdr"]) {
        Ok(Format::Nrrd)
    } else if ends(&[".mha", ".mhd"]) {
        Ok(Format::MetaImage)
    } else if ends(&[".gipl", ".gipl.gz"]) {
        Ok(Format::Gipl)
    } else {
        Err(Error::reader_file(
            path,
            format!(
                "SimpleITKIO reads {} (and .nii); this file ending is none of them",
                ENDINGS.join(", ")
            ),
        ))
    }
}

/// Reads `path` as ITK does, with the format's header data for [`ImageProperties::extra`].
pub(crate) fn read_itk(path: &Path) -> Result<(ItkImage, Map<String, Value>)> {
    match format_of(path)? {
        Format::Nifti => nifti::read_itk(path),
        Format::Nrrd => nrrd::read_itk(path),
        Format::MetaImage => metaimage::read_itk(path),
        Format::Gipl => gipl::read_itk(path),
    }
}

/// The data files of a detached `.nhdr` / `.mhd` header (none for other files).
fn data_files(path: &Path) -> Result<Vec<PathBuf>> {
    match format_of(path)? {
        Format::Nrrd => nrrd::header_data_files(path),
        Format::MetaImage => metaimage::header_data_files(path),
        Format::Nifti | Format::Gipl => Ok(Vec::new()),
    }
}

/// A writer of an ITK image with the input's header data (`extra`).
type ItkWriter = fn(&Path, &ItkImage, &Map<String, Value>) -> Result<()>;

/// The writer of `format`; NIfTI has none, it is written from its header fields.
fn itk_writer(format: Format) -> Option<ItkWriter> {
    match format {
        Format::Nifti => None,
        Format::Nrrd => Some(nrrd::write_itk),
        Format::MetaImage => Some(metaimage::write_itk),
        Format::Gipl => Some(gipl::write_itk),
    }
}

/// Reads every channel file of a case as `SimpleITKIO` does (reoriented to RAS as
/// `SimpleITKIOWithReorient` does when `reorient`), applies SimpleITKIO's checks and stacks the
/// channels, with the properties of the first.
fn read_images(files: &[&Path], reorient: bool) -> Result<Image> {
    if files.is_empty() {
        return Err(Error::reader("no image files given"));
    }
    let read = if reorient {
        read_reoriented
    } else {
        read_plain
    };
    let mut channels = Vec::with_capacity(files.len());
    let mut extra = Map::new();
    for (i, &path) in files.iter().enumerate() {
        let (file, e) = read(path)?;
        if i == 0 {
            extra = e;
        }
        channels.push(file);
    }
    check_channels(files, &channels)?;
    let properties = sitk_properties(&channels[0].geometry, channels[0].spacing, extra);
    let data = stack(files, channels.into_iter().map(|c| c.data).collect())?;
    Ok(Image { data, properties })
}

/// One channel file as `SimpleITKIO` reads it, with the format's header data.
fn read_plain(path: &Path) -> Result<(SitkFile, Map<String, Value>)> {
    let (image, extra) = read_itk(path)?;
    Ok((sitk_file(image, path)?, extra))
}

/// Writes `data` in the format of `file`'s ending with the geometry of `properties`: NIfTI with
/// `nifti`, the other formats as the ITK image `itk_image` makes of it.
fn write_in_format<A>(
    data: A,
    file: &Path,
    properties: &ImageProperties,
    nifti: impl FnOnce(A, &Path, &ImageProperties) -> Result<()>,
    itk_image: impl FnOnce(A, &ImageProperties) -> ItkImage,
) -> Result<()> {
    match itk_writer(format_of(file)?) {
        None => nifti(data, file, properties),
        Some(write) => write(file, &itk_image(data, properties), &properties.extra),
    }
}

/// Writes a label map in the format of `file`'s ending with the geometry of `p`.
fn write_segmentation(seg: ArrayView3<'_, i16>, file: &Path, p: &ImageProperties) -> Result<()> {
    write_in_format(seg, file, p, nifti::write_segmentation, segmentation_image)
}

/// Writes probabilities in the format of `file`'s ending with the geometry of `p`.
fn write_probabilities(probs: ArrayView4<'_, f32>, file: &Path, p: &ImageProperties) -> Result<()> {
    write_in_format(
        probs,
        file,
        p,
        nifti::write_probabilities,
        probability_image,
    )
}

// ---------------------------------------------------------------------------------------------
// Reorienting

/// The transform to RAS for a 3D `image`; other dimensions are an error naming `path`.
fn ras_transform(image: &ItkImage, path: &Path) -> Result<AxisTransform> {
    if image.size.len() != 3 {
        return Err(Error::reader_file(
            path,
            format!(
                "SimpleITKIOWithReorient reorients 3D images only; this one has {} dimensions",
                image.size.len()
            ),
        ));
    }
    Ok(itk_to_ras(&image.geometry.direction))
}

/// The extra properties of a reoriented file: the transform, the original orientation code and
/// the original ITK geometry, which the writer restores.
fn reorient_extra(
    mut extra: Map<String, Value>,
    t: &AxisTransform,
    g: &ItkGeometry,
) -> Map<String, Value> {
    extra.insert("reorientation".into(), t.to_json());
    extra.insert(
        "original_orientation".into(),
        json!(itk_orientation_code(&g.direction)),
    );
    extra.insert(
        "original_geometry".into(),
        json!({"spacing": g.spacing, "origin": g.origin, "direction": g.direction}),
    );
    extra
}

/// One channel file as `SimpleITKIOWithReorient` reads it: reoriented to RAS, with the
/// format's header data and what the writer needs to undo the reorientation.
fn read_reoriented(path: &Path) -> Result<(SitkFile, Map<String, Value>)> {
    let (image, extra) = read_itk(path)?;
    let t = ras_transform(&image, path)?;
    let size = [image.size[0], image.size[1], image.size[2]];
    let original = image.geometry.clone();
    let mut file = sitk_file(image, path)?;
    file.data = t.array(file.data.view());
    file.geometry = t.geometry(&original, size);
    file.spacing = super::itk::nnunet_spacing(&file.geometry);
    Ok((file, reorient_extra(extra, &t, &original)))
}

/// A label map as `SimpleITKIO` reads it, or reoriented to RAS as `SimpleITKIOWithReorient`
/// reads it (with what the writer needs to undo the reorientation) when `reorient`.
fn read_segmentation(file: &Path, reorient: bool) -> Result<Segmentation> {
    let (image, extra) = read_itk(file)?;
    if !reorient {
        let (data, spacing) = sitk_labels(&image, file)?;
        let properties = sitk_properties(&image.geometry, spacing, extra);
        return Ok(Segmentation { data, properties });
    }
    let t = ras_transform(&image, file)?;
    let size = [image.size[0], image.size[1], image.size[2]];
    let (data, _) = sitk_labels(&image, file)?;
    let geometry = t.geometry(&image.geometry, size);
    let spacing = super::itk::nnunet_spacing(&geometry);
    let extra = reorient_extra(extra, &t, &image.geometry);
    Ok(Segmentation {
        data: t.array(data.view()),
        properties: sitk_properties(&geometry, spacing, extra),
    })
}

/// The properties to write a prediction with, and the transform that undoes the reorientation:
/// for `SimpleITKIOWithReorient` (`reorient`) the original geometry it recorded; properties not
/// from that reader, and all of `SimpleITKIO`'s, are used as they are.
fn write_geometry(
    p: &ImageProperties,
    reorient: bool,
) -> (Cow<'_, ImageProperties>, Option<AxisTransform>) {
    if !reorient {
        return (Cow::Borrowed(p), None);
    }
    let t = recorded_transform(p);
    let g = p.extra.get("original_geometry");
    let floats = |key: &str| -> Option<Vec<f64>> {
        let a = g?.get(key)?.as_array()?;
        a.iter().map(Value::as_f64).collect()
    };
    match (t, floats("spacing"), floats("origin"), floats("direction")) {
        (Some(t), Some(spacing), Some(origin), Some(direction)) if spacing.len() == 3 => {
            let mut extra = p.extra.clone();
            extra.insert("sitk_spacing".into(), json!(spacing));
            let props = ImageProperties {
                spacing: [spacing[2], spacing[1], spacing[0]],
                origin,
                direction,
                extra,
            };
            (Cow::Owned(props), Some(t.inverse()))
        }
        _ => (Cow::Borrowed(p), None),
    }
}

reorienting_readers!(
    SimpleItkIO,
    SimpleItkIOWithReorient,
    &ENDINGS,
    data_files: data_files
);
