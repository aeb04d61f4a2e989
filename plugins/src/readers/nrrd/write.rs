//! Writing NRRD files as ITK writes them, in the input's `space`.

use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use nnunet_core::Result;
use serde_json::{Map, Value};

use super::geometry::{space_dimension, to_lps};
use super::header::TYPES;
use crate::readers::itk::{ItkImage, compressed, name_of_type, number, write_header_and_data};

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
    let encoder = GzEncoder::new(Vec::new(), Compression::default());
    let data = compressed(path, &image.pixels.bytes, encoder, GzEncoder::finish)?;
    let detached = path.to_string_lossy().to_lowercase().ends_with(".nhdr");
    let data_path = detached.then(|| {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        path.with_file_name(format!("{stem}.raw.gz"))
    });
    write_header_and_data(path, &data, data_path, |name| {
        let mut text = header_text(image, space, name);
        if name.is_none() {
            // the blank line that ends an attached header
            text.push('\n');
        }
        text
    })
}
