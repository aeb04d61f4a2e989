//! MetaImage (ITK's MetaIO format): `.mha` with the voxel data in the same file, `.mhd` with the
//! data in the file(s) its `ElementDataFile` names. Read as SimpleITK reads it, for
//! [`super::simpleitk::SimpleItkIO`]; written as ITK writes it.
//!
//! Written here rather than taken from a crate: no maintained Rust crate reads MetaImage, and
//! the geometry must follow ITK's conventions exactly (the shared [`super::itk`] model).
//!
//! * Header: `Key = Value` lines (keys compared without case), ending with `ElementDataFile`.
//!   `NDims`, `DimSize`, `ElementType` (`MET_UCHAR`, `MET_CHAR`, `MET_USHORT`, `MET_SHORT`,
//!   `MET_UINT`, `MET_INT`, `MET_ULONG`/`MET_LONG` (4 bytes, as MetaIO), `MET_ULONG_LONG`,
//!   `MET_LONG_LONG`, `MET_FLOAT`, `MET_DOUBLE`, and their `_ARRAY` forms) are required;
//!   `ElementNumberOfChannels` gives pixel components (channels for nnU-Net).
//! * Geometry: `ElementSpacing` (else `ElementSize`, else 1), `Offset` (or `Origin`, `Position`;
//!   else 0) and `TransformMatrix` (or `Rotation`, `Orientation`; else identity), which lists the
//!   direction columns one after the other, as ITK reads and writes it. `AnatomicalOrientation`
//!   is informational, as in ITK.
//! * Data: `ElementDataFile = LOCAL` (data after the header), a file name relative to the
//!   header, `LIST` (one file name per following line) or a `printf` pattern with
//!   `min max step`; `HeaderSize` bytes are skipped (`-1`: the data is the end of the file);
//!   `CompressedData = True` is a zlib (or gzip) stream; `BinaryData = False` is text;
//!   `BinaryDataByteOrderMSB`/`ElementByteOrderMSB` give the byte order.
//!
//! Written files are compressed, little-endian, with the full geometry; `.mhd` gets its data in
//! `<name>.zraw` next to it.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::ZlibEncoder;
use nnunet_core::{Error, Result};
use serde_json::{Map, Value, json};

use super::itk::{
    HeaderLines, ItkGeometry, ItkImage, PixelType, Pixels, TypeNames, byte_count, compressed,
    data_reader, find_field, name_of_type, number, open_regular, parse_text_values, pattern_files,
    read_split_data, read_voxel_bytes, tail_start, type_by_name, write_header_and_data,
};
use super::orientation::itk_orientation_code;

/// The header fields, keys as written, in order.
struct Header {
    fields: Vec<(String, String)>,
    /// Bytes of the header file up to and including the `ElementDataFile` line.
    length: u64,
    /// Lines after `ElementDataFile` (the file names of a `LIST`).
    rest: Vec<String>,
}

impl Header {
    /// The value of `key` (compared without case).
    fn get(&self, key: &str) -> Option<&str> {
        find_field(&self.fields, &[key])
    }

    /// The value of the first of `keys` present.
    fn first(&self, keys: &[&str]) -> Option<&str> {
        find_field(&self.fields, keys)
    }

    /// Whether the first of `keys` present is `True` (or `1`).
    fn flag(&self, keys: &[&str]) -> bool {
        self.first(keys)
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }
}

/// Reads the header lines of `path` up to `ElementDataFile` (and the file names of a `LIST`).
fn read_header(path: &Path) -> Result<Header> {
    let mut lines = HeaderLines::open(path)?;
    let mut fields = Vec::new();
    loop {
        let Some(text) = lines.next_line()? else {
            return Err(Error::reader_file(
                path,
                "not a MetaImage header: no 'ElementDataFile = ...' line (it must end the header)",
            ));
        };
        let Some((key, value)) = text.split_once('=') else {
            if text.trim().is_empty() {
                continue;
            }
            return Err(Error::reader_file(
                path,
                format!(
                    "not a MetaImage header: line '{}' is not 'Key = Value'",
                    text.trim()
                ),
            ));
        };
        let (key, value) = (key.trim().to_string(), value.trim().to_string());
        let done = key.eq_ignore_ascii_case("ElementDataFile");
        fields.push((key, value));
        if done {
            break;
        }
    }
    let length = lines.length;
    let mut rest = Vec::new();
    let is_list = find_field(&fields, &["ElementDataFile"])
        .is_some_and(|v| v.split_whitespace().next() == Some("LIST"));
    while is_list && let Some(line) = lines.next_line()? {
        if !line.trim().is_empty() {
            rest.push(line.trim().to_string());
        }
    }
    Ok(Header {
        fields,
        length,
        rest,
    })
}

/// The first `n` numbers of the value of `key`; fewer is an error naming `path`.
fn parse_numbers<T: std::str::FromStr>(
    path: &Path,
    key: &str,
    value: &str,
    n: usize,
) -> Result<Vec<T>> {
    let values: Option<Vec<T>> = value.split_whitespace().map(|v| v.parse().ok()).collect();
    match values {
        Some(v) if v.len() >= n => Ok(v.into_iter().take(n).collect()),
        _ => Err(Error::reader_file(
            path,
            format!("{key} = '{value}' must hold {n} numbers"),
        )),
    }
}

/// MetaIO's element types (`MET_LONG` is 4 bytes in MetaIO).
const ELEMENT_TYPES: TypeNames = [
    (PixelType::U8, &["MET_UCHAR"]),
    (PixelType::I8, &["MET_CHAR"]),
    (PixelType::U16, &["MET_USHORT"]),
    (PixelType::I16, &["MET_SHORT"]),
    (PixelType::U32, &["MET_UINT", "MET_ULONG"]),
    (PixelType::I32, &["MET_INT", "MET_LONG"]),
    (PixelType::U64, &["MET_ULONG_LONG"]),
    (PixelType::I64, &["MET_LONG_LONG"]),
    (PixelType::F32, &["MET_FLOAT"]),
    (PixelType::F64, &["MET_DOUBLE"]),
];

/// The pixel type of MetaIO element type `name` (an `_ARRAY` suffix ignored).
fn element_type(path: &Path, name: &str) -> Result<PixelType> {
    let base = name.trim().strip_suffix("_ARRAY").unwrap_or(name.trim());
    type_by_name(&ELEMENT_TYPES, base)
        .ok_or_else(|| Error::reader_file(path, format!("ElementType '{base}' is not supported")))
}

/// Size, components and ITK geometry from the header.
fn layout(path: &Path, h: &Header) -> Result<(Vec<usize>, usize, ItkGeometry)> {
    if let Some(t) = h.get("ObjectType")
        && !t.eq_ignore_ascii_case("Image")
    {
        return Err(Error::reader_file(
            path,
            format!("ObjectType is '{t}', not Image"),
        ));
    }
    let required = |key: &str| {
        h.get(key)
            .ok_or_else(|| Error::reader_file(path, format!("the MetaImage header has no {key}")))
    };
    let n: usize = parse_numbers(path, "NDims", required("NDims")?, 1)?[0];
    if !(1..=8).contains(&n) {
        return Err(Error::reader_file(
            path,
            format!("NDims = {n} is not supported"),
        ));
    }
    let size: Vec<usize> = parse_numbers(path, "DimSize", required("DimSize")?, n)?;
    if size.contains(&0) {
        return Err(Error::reader_file(
            path,
            format!("DimSize {size:?} has a zero size"),
        ));
    }
    let components = match h.get("ElementNumberOfChannels") {
        Some(v) => parse_numbers::<usize>(path, "ElementNumberOfChannels", v, 1)?[0].max(1),
        None => 1,
    };
    let mut g = ItkGeometry::identity(n);
    if let Some(v) = h.first(&["ElementSpacing", "ElementSize"]) {
        g.spacing = parse_numbers(path, "ElementSpacing", v, n)?;
    }
    if let Some(v) = h.first(&["Offset", "Origin", "Position"]) {
        g.origin = parse_numbers(path, "Offset", v, n)?;
    }
    if let Some(v) = h.first(&["TransformMatrix", "Rotation", "Orientation"]) {
        let m: Vec<f64> = parse_numbers(path, "TransformMatrix", v, n * n)?;
        for r in 0..n {
            for c in 0..n {
                g.direction[r * n + c] = m[c * n + r];
            }
        }
    }
    Ok((size, components, g))
}

/// The data files an `ElementDataFile` value names (`None` for `LOCAL`).
fn data_files(path: &Path, h: &Header, value: &str) -> Result<Option<Vec<PathBuf>>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let words: Vec<&str> = value.split_whitespace().collect();
    match words.as_slice() {
        ["LOCAL"] | ["Local"] | ["local"] => Ok(None),
        ["LIST", ..] => Ok(Some(h.rest.iter().map(|f| dir.join(f)).collect())),
        [pattern, min, max, step, ..] if pattern.contains('%') => {
            let names = pattern_files(dir, pattern, min, max, step).ok_or_else(|| {
                Error::reader_file(
                    path,
                    format!("ElementDataFile = '{value}' is not a valid file name pattern"),
                )
            })?;
            Ok(Some(names))
        }
        _ => Ok(Some(vec![dir.join(value)])),
    }
}

/// `nbytes` of voxel data from `file` after `skip` bytes (`-1`: the last `nbytes`).
fn read_file_data(
    file: &Path,
    offset: u64,
    skip: i64,
    compressed: bool,
    nbytes: u64,
) -> Result<Vec<u8>> {
    let (mut f, len) = open_regular(file)?;
    let start = if skip < 0 && !compressed {
        tail_start(file, len, nbytes)?
    } else {
        offset.saturating_add(skip.max(0) as u64)
    };
    if !compressed && start.saturating_add(nbytes) > len {
        return Err(Error::reader_file(
            file,
            format!(
                "truncated: the header announces {nbytes} bytes of voxel data from byte {start}, \
                 the file has {len}"
            ),
        ));
    }
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start)).map_err(|e| Error::io(file, e))?;
    read_voxel_bytes(
        file,
        data_reader(file, BufReader::new(f), compressed)?,
        nbytes,
    )
}

/// The data files the header `path` names (none for `LOCAL` data).
pub(crate) fn header_data_files(path: &Path) -> Result<Vec<PathBuf>> {
    let h = read_header(path)?;
    let value = h.get("ElementDataFile").unwrap_or("LOCAL");
    Ok(data_files(path, &h, value)?.unwrap_or_default())
}

/// Reads a MetaImage file as ITK does, with `AnatomicalOrientation` (if any) as extra data.
pub(crate) fn read_itk(path: &Path) -> Result<(ItkImage, Map<String, Value>)> {
    let h = read_header(path)?;
    let (size, components, geometry) = layout(path, &h)?;
    let kind = element_type(
        path,
        h.get("ElementType")
            .ok_or_else(|| Error::reader_file(path, "the MetaImage header has no ElementType"))?,
    )?;
    let nbytes = byte_count(path, &size, components, kind)?;
    let compressed = h.flag(&["CompressedData"]);
    let binary = h.get("BinaryData").is_none_or(|_| h.flag(&["BinaryData"]));
    let skip: i64 = match h.get("HeaderSize") {
        Some(v) => parse_numbers(path, "HeaderSize", v, 1)?[0],
        None => 0,
    };
    let value = h.get("ElementDataFile").unwrap_or("LOCAL");
    let bytes = match data_files(path, &h, value)? {
        None if !binary => {
            let mut text = String::new();
            let (mut f, _) = open_regular(path)?;
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(h.length))
                .map_err(|e| Error::io(path, e))?;
            f.take(nbytes.saturating_mul(32))
                .read_to_string(&mut text)
                .map_err(|e| Error::reader_file(path, format!("cannot read the text data: {e}")))?;
            parse_text_values(path, &text, kind, (nbytes / kind.size() as u64) as usize)?
        }
        None => read_file_data(path, h.length, skip, compressed, nbytes)?,
        Some(files) => read_data_files(path, &files, skip, compressed, nbytes)?,
    };
    let pixels = Pixels {
        kind,
        big_endian: h.flag(&["BinaryDataByteOrderMSB", "ElementByteOrderMSB"]),
        bytes,
        scale: None,
    };
    let mut extra = Map::new();
    if let Some(o) = h.get("AnatomicalOrientation") {
        extra.insert("metaimage".into(), json!({"AnatomicalOrientation": o}));
    }
    let image = ItkImage {
        size,
        components,
        geometry,
        pixels,
    };
    Ok((image, extra))
}

/// The voxel data split over `files` (equal parts, in order), `nbytes` in all.
fn read_data_files(
    header: &Path,
    files: &[PathBuf],
    skip: i64,
    compressed: bool,
    nbytes: u64,
) -> Result<Vec<u8>> {
    read_split_data(header, files, nbytes, |file, part| {
        read_file_data(file, 0, skip, compressed, part)
    })
}

/// ITK's `AnatomicalOrientation` letters (MetaIO's "from" convention: identity is `RAI`).
fn anatomical_orientation(direction: &[f64]) -> String {
    itk_orientation_code(direction)
        .chars()
        .map(|c| match c {
            'L' => 'R',
            'R' => 'L',
            'P' => 'A',
            'A' => 'P',
            'S' => 'I',
            _ => 'S',
        })
        .collect()
}

/// `values` as MetaIO writes a list of numbers: separated by spaces.
fn join(values: &[f64]) -> String {
    values
        .iter()
        .map(|&v| number(v))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The header text of `image`, data in `data_file` (`LOCAL` or a file name), compressed to
/// `compressed_size` bytes.
fn header_text(image: &ItkImage, data_file: &str, compressed_size: usize) -> String {
    let g = &image.geometry;
    let n = image.size.len();
    let transform: Vec<f64> = (0..n * n)
        .map(|k| g.direction[(k % n) * n + k / n])
        .collect();
    let mut lines = vec![
        "ObjectType = Image".to_string(),
        format!("NDims = {n}"),
        "BinaryData = True".into(),
        "BinaryDataByteOrderMSB = False".into(),
        "CompressedData = True".into(),
        format!("CompressedDataSize = {compressed_size}"),
        format!("TransformMatrix = {}", join(&transform)),
        format!("Offset = {}", join(&g.origin)),
        format!("CenterOfRotation = {}", join(&vec![0.0; n])),
    ];
    if n == 3 {
        lines.push(format!(
            "AnatomicalOrientation = {}",
            anatomical_orientation(&g.direction)
        ));
    }
    lines.push(format!("ElementSpacing = {}", join(&g.spacing)));
    lines.push(format!(
        "DimSize = {}",
        image
            .size
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    ));
    if image.components > 1 {
        lines.push(format!("ElementNumberOfChannels = {}", image.components));
    }
    lines.push(format!(
        "ElementType = {}",
        name_of_type(&ELEMENT_TYPES, image.pixels.kind)
    ));
    lines.push(format!("ElementDataFile = {data_file}"));
    lines.join("\n") + "\n"
}

/// Writes `image` as `.mha` (data in the file) or `.mhd` + `.zraw`, zlib-compressed.
pub(crate) fn write_itk(path: &Path, image: &ItkImage, _extra: &Map<String, Value>) -> Result<()> {
    let encoder = ZlibEncoder::new(Vec::new(), Compression::default());
    let data = compressed(path, &image.pixels.bytes, encoder, ZlibEncoder::finish)?;
    let detached = path.to_string_lossy().to_lowercase().ends_with(".mhd");
    let data_path = detached.then(|| path.with_extension("zraw"));
    write_header_and_data(path, &data, data_path, |name| {
        header_text(image, name.unwrap_or("LOCAL"), data.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readers::test_support::{assert_read_errors, geometry3, i16_image};

    #[test]
    fn round_trip_mha_and_mhd() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = geometry3([0.5, 0.7, 2.0], [1.0, -2.5, 3.0]);
        g.direction = vec![0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let img = i16_image(vec![4, 3, 2], g.clone(), 0..24);
        for name in ["a.mha", "b.mhd"] {
            let path = dir.path().join(name);
            write_itk(&path, &img, &Map::new()).unwrap();
            let (back, extra) = read_itk(&path).unwrap();
            assert_eq!(back.size, img.size);
            assert_eq!(back.geometry, g);
            assert_eq!(back.pixels.bytes, img.pixels.bytes);
            assert_eq!(extra["metaimage"]["AnatomicalOrientation"], "ALI");
        }
        assert!(dir.path().join("b.zraw").is_file());
        let text = std::fs::read_to_string(dir.path().join("b.mhd")).unwrap();
        // as SimpleITK writes this direction
        assert!(
            text.contains("TransformMatrix = 0 1 0 -1 0 0 0 0 1"),
            "{text}"
        );
    }

    #[test]
    fn uncompressed_big_endian_text_and_header_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.mhd");
        std::fs::write(dir.path().join("t.raw"), [9, 9, 0, 1, 0, 2]).unwrap();
        let header = "NDims = 2\nDimSize = 2 1\nElementType = MET_USHORT\nHeaderSize = 2\n\
                      ElementByteOrderMSB = True\nElementDataFile = t.raw\n";
        std::fs::write(&path, header).unwrap();
        let (img, _) = read_itk(&path).unwrap();
        assert_eq!(img.pixels.decode(|v| v), [1.0, 2.0]);
        std::fs::write(&path, header.replace("HeaderSize = 2", "HeaderSize = -1")).unwrap();
        assert_eq!(read_itk(&path).unwrap().0.pixels.decode(|v| v), [1.0, 2.0]);
        let text = dir.path().join("text.mha");
        std::fs::write(&text, "NDims = 1\nDimSize = 3\nElementType = MET_FLOAT\nBinaryData = False\nElementDataFile = LOCAL\n1.5 -2 3\n").unwrap();
        assert_eq!(
            read_itk(&text).unwrap().0.pixels.decode(|v| v),
            [1.5, -2.0, 3.0]
        );
        let names = pattern_files(Path::new("d"), "s%03d.raw", "1", "5", "2").unwrap();
        assert_eq!(
            names,
            [
                Path::new("d/s001.raw"),
                Path::new("d/s003.raw"),
                Path::new("d/s005.raw")
            ]
        );
        assert!(pattern_files(Path::new("d"), "s%d", "0", "9223372036854775807", "-1").is_none());
        assert!(
            pattern_files(Path::new("d"), "s%0999999999d", "0", "0", "1").unwrap()[0]
                .as_os_str()
                .len()
                < 40
        );
    }

    #[test]
    fn bad_headers_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], &str); 9] = [
            ("empty.mha", b"", "ElementDataFile"),
            ("garbage.mha", b"\x00\x01binary", "Key = Value"),
            ("nodims.mha", b"DimSize = 2 2\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n", "NDims"),
            ("type.mha", b"NDims = 1\nDimSize = 2\nElementType = MET_STRING\nElementDataFile = LOCAL\n", "ElementType"),
            ("short.mha", b"NDims = 2\nDimSize = 2\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n", "DimSize"),
            ("trunc.mha", b"NDims = 1\nDimSize = 4\nElementType = MET_UCHAR\nElementDataFile = LOCAL\nab", "truncated"),
            ("huge.mha", b"NDims = 3\nDimSize = 100000 100000 100000\nElementType = MET_DOUBLE\nElementDataFile = LOCAL\n", ""),
            ("zip.mha", b"NDims = 1\nDimSize = 4\nElementType = MET_UCHAR\nCompressedData = True\nElementDataFile = LOCAL\nnot zlib", ""),
            ("nofile.mhd", b"NDims = 1\nDimSize = 4\nElementType = MET_UCHAR\nElementDataFile = missing.raw\n", ""),
        ];
        assert_read_errors(dir.path(), read_itk, &cases);
    }
}
