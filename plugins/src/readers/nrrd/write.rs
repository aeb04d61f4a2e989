//! Writing NRRD files as ITK writes them, in the input's `space`.

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use nnunet_core::{Error, Result};
use serde_json::{Map, Value};

use super::geometry::{space_dimension, to_lps};
use super::header::TYPES;
use crate::readers::itk::{ItkImage, name_of_type, number};

/// The header text of `image` in `space`, with a `data file` line for a detached header.
pub(super) fn header_text(
    image: &ItkImage,
    space: Option<&str>,
    data_file: Option<&str>,
) -> String {
    let g = &image.geometry;
    let n = image.size.len();
    let signs = space.map_or([1.0; 3], to_lps);
    let sign = |i: usize| {
        if i < 3 && space.is_some() {
            signs[i]
        } else {
            1.0
        }
    };
    let vec_text = |v: Vec<f64>| {
        format!(
            "({})",
            v.iter().map(|&x| number(x)).collect::<Vec<_>>().join(",")
        )
    };
    let mut sizes: Vec<String> = image.size.iter().map(|s| s.to_string()).collect();
    let mut dirs: Vec<String> = (0..n)
        .map(|j| {
            vec_text(
                (0..n)
                    .map(|i| sign(i) * g.direction[i * n + j] * g.spacing[j])
                    .collect(),
            )
        })
        .collect();
    let mut kinds = vec!["domain"; n];
    if image.components > 1 {
        sizes.insert(0, image.components.to_string());
        dirs.insert(0, "none".into());
        kinds.insert(0, "vector");
    }
    let mut lines = vec![
        "NRRD0004".to_string(),
        "# Complete NRRD file format specification at:".into(),
        "# http://teem.sourceforge.net/nrrd/format.html".into(),
        format!("type: {}", name_of_type(&TYPES, image.pixels.kind)),
        format!("dimension: {}", sizes.len()),
        match space {
            Some(s) => format!("space: {s}"),
            None => format!("space dimension: {n}"),
        },
        format!("sizes: {}", sizes.join(" ")),
        format!("space directions: {}", dirs.join(" ")),
        format!("kinds: {}", kinds.join(" ")),
        "endian: little".into(),
        "encoding: gzip".into(),
        format!(
            "space origin: {}",
            vec_text((0..n).map(|i| sign(i) * g.origin[i]).collect())
        ),
    ];
    if let Some(f) = data_file {
        lines.push(format!("data file: {f}"));
    }
    lines.join("\n") + "\n"
}

/// Writes `image` as `.nrrd` (data attached) or `.nhdr` + `.raw.gz`, gzip-compressed, in the
/// input's `space` (`extra["nrrd"]["space"]`) when it is a 3D space and the image is 3D.
pub(crate) fn write_itk(path: &Path, image: &ItkImage, extra: &Map<String, Value>) -> Result<()> {
    let input_space = extra
        .get("nrrd")
        .and_then(|n| n.get("space"))
        .and_then(Value::as_str);
    let space = match (image.size.len(), input_space) {
        (3, Some(s)) if space_dimension(path, s).ok() == Some(3) => Some(s),
        (3, _) => Some("left-posterior-superior"),
        _ => None,
    };
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(&image.pixels.bytes)
        .map_err(|e| Error::io(path, e))?;
    let data = encoder.finish().map_err(|e| Error::io(path, e))?;
    if path.to_string_lossy().to_lowercase().ends_with(".nhdr") {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = format!("{stem}.raw.gz");
        let data_path = path.with_file_name(&name);
        std::fs::write(&data_path, &data).map_err(|e| Error::io(&data_path, e))?;
        std::fs::write(path, header_text(image, space, Some(&name))).map_err(|e| Error::io(path, e))
    } else {
        let mut bytes = header_text(image, space, None).into_bytes();
        bytes.push(b'\n');
        bytes.extend_from_slice(&data);
        std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
    }
}
