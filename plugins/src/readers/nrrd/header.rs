//! The NRRD header: its fields, teem's type names and the parsing of per-axis values and
//! vectors.

use std::path::Path;

use nnunet_core::{Error, Result};

use crate::readers::itk::{HeaderLines, PixelType, TypeNames, find_field, type_by_name};

/// The parsed header: fields by lower-case name, header length and the lines after a
/// `data file: LIST` field.
pub(super) struct Header {
    pub(super) fields: Vec<(String, String)>,
    pub(super) length: u64,
    pub(super) list: Vec<String>,
    pub(super) detached: bool,
}

impl Header {
    /// The value of the first of `names` present (compared without case).
    pub(super) fn get(&self, names: &[&str]) -> Option<&str> {
        find_field(&self.fields, names)
    }
}

/// Reads the header of `path` (up to the empty line, or the end of a detached header).
pub(super) fn read_header(path: &Path) -> Result<Header> {
    let mut lines = HeaderLines::open(path)?;
    match lines.next_line()? {
        Some(magic) if magic.starts_with("NRRD000") => {}
        _ => {
            return Err(Error::reader_file(
                path,
                "not a NRRD file (it does not start with the NRRD000x magic)",
            ));
        }
    }
    let mut h = Header {
        fields: Vec::new(),
        length: 0,
        list: Vec::new(),
        detached: true,
    };
    let mut in_list = false;
    while let Some(text) = lines.next_line()? {
        if text.is_empty() {
            h.detached = false;
            break;
        }
        if text.starts_with('#') || text.contains(":=") {
            continue;
        }
        if in_list {
            h.list.push(text.trim().to_string());
            continue;
        }
        let Some((key, value)) = text.split_once(':') else {
            return Err(Error::reader_file(
                path,
                format!("NRRD header line '{text}' is not 'field: value'"),
            ));
        };
        let (key, value) = (key.trim().to_lowercase(), value.trim().to_string());
        in_list = matches!(key.as_str(), "data file" | "datafile") && value.starts_with("LIST");
        h.fields.push((key, value));
    }
    h.length = lines.length;
    Ok(h)
}

/// teem's type names.
pub(super) const TYPES: TypeNames = [
    (PixelType::I8, &["signed char", "int8", "int8_t"]),
    (
        PixelType::U8,
        &["unsigned char", "uchar", "uint8", "uint8_t"],
    ),
    (
        PixelType::I16,
        &[
            "short",
            "short int",
            "signed short",
            "signed short int",
            "int16",
            "int16_t",
        ],
    ),
    (
        PixelType::U16,
        &[
            "unsigned short",
            "ushort",
            "unsigned short int",
            "uint16",
            "uint16_t",
        ],
    ),
    (PixelType::I32, &["int", "signed int", "int32", "int32_t"]),
    (
        PixelType::U32,
        &["unsigned int", "uint", "uint32", "uint32_t"],
    ),
    (
        PixelType::I64,
        &[
            "long long int",
            "longlong",
            "long long",
            "signed long long",
            "signed long long int",
            "int64",
            "int64_t",
        ],
    ),
    (
        PixelType::U64,
        &[
            "unsigned long long int",
            "ulonglong",
            "unsigned long long",
            "uint64",
            "uint64_t",
        ],
    ),
    (PixelType::F32, &["float"]),
    (PixelType::F64, &["double"]),
];

/// The pixel type of teem type `name`; an unknown name is an error naming `path`.
pub(super) fn pixel_type(path: &Path, name: &str) -> Result<PixelType> {
    type_by_name(&TYPES, name)
        .ok_or_else(|| Error::reader_file(path, format!("NRRD type '{name}' is not supported")))
}

/// Whitespace-separated values of a per-axis field, exactly `n` of them.
pub(super) fn per_axis<'a>(
    path: &Path,
    key: &str,
    value: &'a str,
    n: usize,
) -> Result<Vec<&'a str>> {
    let words: Vec<&str> = value.split_whitespace().collect();
    if words.len() != n {
        return Err(Error::reader_file(
            path,
            format!("NRRD field '{key}: {value}' must have {n} entries, one per axis"),
        ));
    }
    Ok(words)
}

/// A `(x,y,z)` vector, `None` for `none`.
pub(super) fn vector(path: &Path, text: &str) -> Result<Option<Vec<f64>>> {
    if text == "none" {
        return Ok(None);
    }
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| Error::reader_file(path, format!("'{text}' is not a (x,y,z) vector")))?;
    let v: Option<Vec<f64>> = inner.split(',').map(|x| x.trim().parse().ok()).collect();
    v.map(Some)
        .ok_or_else(|| Error::reader_file(path, format!("'{text}' is not a (x,y,z) vector")))
}

/// The vectors of `space directions` / `space origin` (spaces inside the parentheses allowed).
pub(super) fn vectors(path: &Path, value: &str) -> Result<Vec<Option<Vec<f64>>>> {
    let mut out = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        let (item, tail) = if rest.starts_with('(') {
            let end = rest
                .find(')')
                .ok_or_else(|| Error::reader_file(path, format!("unclosed vector in '{value}'")))?;
            (&rest[..=end], &rest[end + 1..])
        } else {
            rest.split_at(rest.find(char::is_whitespace).unwrap_or(rest.len()))
        };
        let item: String = item.chars().filter(|c| !c.is_whitespace()).collect();
        out.push(vector(path, &item)?);
        rest = tail.trim_start();
    }
    Ok(out)
}
