//! The voxel data of a NRRD file: where it is (attached or in detached data files), its
//! encoding, and its decoding.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use nnunet_core::{Error, Result};

use super::header::{Header, read_header};
use crate::readers::itk::{
    PixelType, data_reader, open_regular, parse_text_values, pattern_files, read_voxel_bytes,
    tail_start,
};

/// The file(s) holding the data of a detached header.
pub(super) fn data_files(path: &Path, h: &Header) -> Result<Vec<PathBuf>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let value = h.get(&["data file", "datafile"]).ok_or_else(|| {
        Error::reader_file(path, "the NRRD header has no data and no 'data file' field")
    })?;
    let words: Vec<&str> = value.split_whitespace().collect();
    match words.as_slice() {
        ["LIST", ..] => Ok(h.list.iter().map(|f| dir.join(f)).collect()),
        [pattern, min, max, step, ..] if pattern.contains('%') => {
            pattern_files(dir, pattern, min, max, step).ok_or_else(|| {
                Error::reader_file(
                    path,
                    format!("'data file: {value}' is not a valid file name pattern"),
                )
            })
        }
        _ => Ok(vec![dir.join(value)]),
    }
}

/// The data files the header `path` names (none when the data is attached).
pub(crate) fn header_data_files(path: &Path) -> Result<Vec<PathBuf>> {
    let h = read_header(path)?;
    if h.detached || h.get(&["data file", "datafile"]).is_some() {
        data_files(path, &h)
    } else {
        Ok(Vec::new())
    }
}

/// The encodings we decode.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Raw,
    Gzip,
    Text,
    Hex,
}

/// The data encoding the header names; a missing, unknown or bzip2 encoding is an error naming
/// `path`.
pub(super) fn encoding(path: &Path, h: &Header) -> Result<Encoding> {
    match h.get(&["encoding"]).map(str::to_lowercase).as_deref() {
        Some("raw") => Ok(Encoding::Raw),
        Some("gzip" | "gz") => Ok(Encoding::Gzip),
        Some("text" | "txt" | "ascii") => Ok(Encoding::Text),
        Some("hex") => Ok(Encoding::Hex),
        Some("bzip2" | "bz2") => Err(Error::reader_file(
            path,
            "bzip2-encoded NRRD data is not supported; re-save it with raw or gzip encoding",
        )),
        Some(other) => Err(Error::reader_file(
            path,
            format!("NRRD encoding '{other}' is not known"),
        )),
        None => Err(Error::reader_file(
            path,
            "the NRRD header has no 'encoding'",
        )),
    }
}

/// Skips `lines` lines of `reader`.
pub(super) fn skip_lines(path: &Path, reader: &mut impl BufRead, lines: usize) -> Result<()> {
    let mut sink = Vec::new();
    for _ in 0..lines {
        sink.clear();
        if reader
            .read_until(b'\n', &mut sink)
            .map_err(|e| Error::io(path, e))?
            == 0
        {
            return Err(Error::reader_file(
                path,
                "truncated: fewer lines than 'line skip'",
            ));
        }
    }
    Ok(())
}

/// Text or hex data as `kind` values (little-endian).
pub(super) fn parse_text(
    path: &Path,
    text: &str,
    kind: PixelType,
    count: usize,
    hex: bool,
) -> Result<Vec<u8>> {
    if hex {
        let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let bytes: Option<Vec<u8>> = digits
            .chunks(2)
            .take(count * kind.size())
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect();
        return match bytes {
            Some(b) if b.len() == count * kind.size() => Ok(b),
            _ => Err(Error::reader_file(path, "truncated or invalid hex data")),
        };
    }
    parse_text_values(path, text, kind, count)
}

/// `nbytes` bytes of data from `file` starting at `offset`, decoded from `enc`.
pub(super) fn read_data(
    file: &Path,
    offset: u64,
    h: &Header,
    enc: Encoding,
    kind: PixelType,
    nbytes: u64,
) -> Result<Vec<u8>> {
    let (mut f, len) = open_regular(file)?;
    let int = |names: &[&str]| -> Result<i64> {
        h.get(names).map_or(Ok(0), |v| {
            v.parse().map_err(|_| {
                Error::reader_file(file, format!("'{}: {v}' is not an integer", names[0]))
            })
        })
    };
    let (line_skip, byte_skip) = (
        int(&["line skip", "lineskip"])?,
        int(&["byte skip", "byteskip"])?,
    );
    let start = if byte_skip < 0 && enc == Encoding::Raw {
        tail_start(file, len, nbytes)?
    } else {
        offset
    };
    f.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io(file, e))?;
    let mut reader = BufReader::new(f);
    skip_lines(file, &mut reader, line_skip.max(0) as usize)?;
    let mut reader = data_reader(file, reader, enc == Encoding::Gzip)?;
    if byte_skip > 0 {
        let skipped = std::io::copy(
            &mut (&mut reader).take(byte_skip as u64),
            &mut std::io::sink(),
        )
        .map_err(|e| Error::reader_file(file, format!("cannot read the data: {e}")))?;
        if skipped < byte_skip as u64 {
            return Err(Error::reader_file(
                file,
                "truncated: shorter than 'byte skip'",
            ));
        }
    }
    if enc == Encoding::Raw && start.saturating_add(nbytes) > len {
        return Err(Error::reader_file(
            file,
            format!(
                "truncated: the header announces {nbytes} bytes of data from byte {start}, the file has {len}"
            ),
        ));
    }
    match enc {
        Encoding::Raw | Encoding::Gzip => read_voxel_bytes(file, reader, nbytes),
        Encoding::Text | Encoding::Hex => {
            let mut text = String::new();
            reader
                .take(nbytes.saturating_mul(40).min(len))
                .read_to_string(&mut text)
                .map_err(|e| Error::reader_file(file, format!("cannot read the text data: {e}")))?;
            let count = (nbytes / kind.size() as u64) as usize;
            parse_text(file, &text, kind, count, enc == Encoding::Hex)
        }
    }
}

/// Moves the components axis `r` of data with axis `sizes` (fastest first) to the front.
pub(super) fn interleave(bytes: &[u8], sizes: &[usize], r: usize, value: usize) -> Vec<u8> {
    if r == 0 {
        return bytes.to_vec();
    }
    let inner: usize = sizes[..r].iter().product();
    let c = sizes[r];
    let outer: usize = sizes[r + 1..].iter().product();
    let mut out = vec![0u8; bytes.len()];
    for o in 0..outer {
        for k in 0..c {
            for i in 0..inner {
                let from = ((o * c + k) * inner + i) * value;
                let to = ((o * inner + i) * c + k) * value;
                out[to..to + value].copy_from_slice(&bytes[from..from + value]);
            }
        }
    }
    out
}
