//! NRRD (`.nrrd` with the data attached, `.nhdr` with the data in the file(s) its `data file`
//! field names), read as SimpleITK (ITK's `NrrdImageIO`) reads it for
//! [`super::simpleitk::SimpleItkIO`], written as ITK writes it.
//!
//! Written here rather than taken from a crate: no maintained Rust crate reads NRRD, and the
//! geometry must follow ITK's conventions exactly (the shared [`super::itk`] model).
//!
//! * Header: the `NRRD000N` magic, `field: value` lines, `key:=value` pairs and `#` comments, up
//!   to an empty line (data follows) or the end of a detached header. `type`, `dimension` and
//!   `sizes` are required; `encoding` is `raw`, `gzip`/`gz`, `text`/`txt`/`ascii` or `hex`
//!   (bzip2 is refused with an error); `endian` defaults to little; `line skip` and `byte skip`
//!   (`-1`: the data ends the file) are honoured.
//! * Axes: an axis whose `kinds` entry is a non-spatial kind (`vector`, `RGB-color`, `list`, …)
//!   holds pixel components, wherever it is (ITK moves it first); at most one such axis. The other
//!   axes are the image axes.
//! * Geometry, as ITK: with `space directions`, each image axis' spacing is its vector's length
//!   and its direction the unit vector; the origin is `space origin`. `space`
//!   `right-anterior-superior` negates `x` and `y` (ITK's world is LPS),
//!   `left-anterior-superior` negates `y`; other spaces (`left-posterior-superior`,
//!   `scanner-xyz`, the `-time` spaces, a bare `space dimension`) are taken as they are. A space
//!   whose dimension differs from the number of image axes is an error, as in ITK. Without space
//!   directions: spacing from `spacings` (1 where missing), origin from `axis mins` (plus half a
//!   spacing unless `centers` says `node`), identity direction.
//! * Detached data: `data file` names one file (relative to the header), `LIST` (file names on
//!   the following lines) or a `printf` pattern with `min max step`.
//!
//! `extra["nrrd"]["space"]` keeps the input's `space`, and a prediction is written in it (RAS and
//! LAS data are converted back), gzip-compressed; `.nhdr` gets its data in `<name>.raw.gz`.

mod data;
mod geometry;
mod header;
#[cfg(test)]
mod tests;
mod write;

use std::path::Path;

use nnunet_core::{Error, Result};
use serde_json::{Map, Value, json};

use crate::readers::itk::{ItkImage, Pixels, byte_count, read_split_data};
use data::{Encoding, data_files, encoding, interleave, read_data};
use geometry::layout;
use header::{pixel_type, read_header};

pub(crate) use data::header_data_files;
pub(crate) use write::write_itk;

/// Reads a NRRD file (or detached header) as ITK does, with its `space` as extra data.
pub(crate) fn read_itk(path: &Path) -> Result<(ItkImage, Map<String, Value>)> {
    let h = read_header(path)?;
    let l = layout(path, &h)?;
    let kind = pixel_type(
        path,
        h.get(&["type"])
            .ok_or_else(|| Error::reader_file(path, "the NRRD header has no 'type'"))?,
    )?;
    let enc = encoding(path, &h)?;
    let nbytes = byte_count(path, &l.sizes, 1, kind)?;
    let bytes = if h.detached || h.get(&["data file", "datafile"]).is_some() {
        let files = data_files(path, &h)?;
        read_split_data(path, &files, nbytes, |file, part| {
            read_data(file, 0, &h, enc, kind, part)
        })?
    } else {
        read_data(path, h.length, &h, enc, kind, nbytes)?
    };
    let big_endian = matches!(enc, Encoding::Raw | Encoding::Gzip)
        && h.get(&["endian"])
            .is_some_and(|e| e.eq_ignore_ascii_case("big"));
    let (bytes, components, size) = match l.range_axis {
        Some(r) => {
            let size = (0..l.sizes.len())
                .filter(|&a| a != r)
                .map(|a| l.sizes[a])
                .collect();
            (
                interleave(&bytes, &l.sizes, r, kind.size()),
                l.sizes[r],
                size,
            )
        }
        None => (bytes, 1, l.sizes.clone()),
    };
    let mut extra = Map::new();
    if let Some(space) = h.get(&["space"]) {
        extra.insert("nrrd".into(), json!({ "space": space.to_lowercase() }));
    }
    let pixels = Pixels {
        kind,
        big_endian,
        bytes,
        scale: None,
    };
    let image = ItkImage {
        size,
        components,
        geometry: l.geometry,
        pixels,
    };
    Ok((image, extra))
}
