//! Reading what a header describes: byte counts, regular files, exact reads, voxel data split
//! over files or named by a `printf` pattern, compressed streams, text values and header lines.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::{MultiGzDecoder, ZlibDecoder};
use nnunet_core::{Error, Result};

use super::{PixelType, for_pixel_type};

/// `size` multiplied out with `components` and the value size; an overflow or a product over
/// what a buffer can hold is an error naming `path`.
pub(crate) fn byte_count(
    path: &Path,
    size: &[usize],
    components: usize,
    kind: PixelType,
) -> Result<u64> {
    size.iter()
        .chain([&components, &kind.size()])
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&n| n <= isize::MAX as u64 / 2)
        .ok_or_else(|| Error::reader_file(path, format!("image size {size:?} is too large")))
}

/// Opens a regular file (not a device, pipe or folder, which a header could name as its data
/// file) and gives its length.
pub(crate) fn open_regular(path: &Path) -> Result<(std::fs::File, u64)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::reader_file(path, "is not a regular file"));
    }
    Ok((file, meta.len()))
}

/// Where the last `nbytes` of a file of `len` bytes start (a header's skip of -1: the data sits
/// at the end); a shorter file is an error naming `path`.
pub(crate) fn tail_start(path: &Path, len: u64, nbytes: u64) -> Result<u64> {
    len.checked_sub(nbytes).ok_or_else(|| {
        Error::reader_file(
            path,
            format!("truncated: expected {nbytes} bytes of voxel data, the file has {len}"),
        )
    })
}

/// Reads up to `buf.len()` bytes, fewer only at the end of the stream.
pub(crate) fn read_exact_or_eof(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Exactly `nbytes` bytes of voxel data from `reader` (decompressed if `reader` decompresses);
/// the buffer grows with the data actually present, so a header announcing more than the file
/// holds is an error naming `path`, not a huge allocation.
pub(crate) fn read_voxel_bytes(path: &Path, reader: impl Read, nbytes: u64) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(nbytes.min(64 << 20) as usize);
    reader
        .take(nbytes)
        .read_to_end(&mut data)
        .map_err(|e| Error::reader_file(path, format!("cannot read the voxel data: {e}")))?;
    if (data.len() as u64) < nbytes {
        return Err(Error::reader_file(
            path,
            format!(
                "truncated: expected {nbytes} bytes of voxel data, found {}",
                data.len()
            ),
        ));
    }
    Ok(data)
}

/// The voxel data of a detached header `header`, split over `files` in equal parts (in order),
/// `nbytes` in all; `read(file, part)` reads the `part` bytes of one file. Errors name `header`.
pub(crate) fn read_split_data(
    header: &Path,
    files: &[std::path::PathBuf],
    nbytes: u64,
    read: impl Fn(&Path, u64) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    if files.is_empty() || !nbytes.is_multiple_of(files.len() as u64) {
        return Err(Error::reader_file(
            header,
            format!(
                "{} data files cannot hold {nbytes} bytes in equal parts",
                files.len()
            ),
        ));
    }
    let part = nbytes / files.len() as u64;
    let mut bytes = Vec::new();
    for file in files {
        let data = read(file, part).map_err(|e| {
            Error::reader_file(header, format!("its data file cannot be read: {e}"))
        })?;
        bytes.extend(data);
    }
    Ok(bytes)
}

/// `pattern` with its `%d` / `%0Nd` conversion replaced by `v` (widths above 32 are ignored).
fn printf_int(pattern: &str, v: i64) -> String {
    let Some(start) = pattern.find('%') else {
        return pattern.to_string();
    };
    let rest = &pattern[start + 1..];
    let end = rest
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let spec = &rest[..end];
    let width: usize = spec
        .trim_start_matches('0')
        .parse()
        .ok()
        .filter(|&w| w <= 32)
        .unwrap_or(0);
    let text = if spec.starts_with('0') {
        format!("{v:0width$}")
    } else {
        format!("{v:width$}")
    };
    format!(
        "{}{text}{}",
        &pattern[..start],
        &rest[(end + 1).min(rest.len())..]
    )
}

/// The files a `printf` pattern names for `min`, `min + step`, … up to `max` (the three given as
/// text), in `dir`; `None` unless they are integers with a step that reaches `max`, giving at
/// most 100 000 names.
pub(crate) fn pattern_files(
    dir: &Path,
    pattern: &str,
    min: &str,
    max: &str,
    step: &str,
) -> Option<Vec<std::path::PathBuf>> {
    let (min, max, step): (i64, i64, i64) =
        (min.parse().ok()?, max.parse().ok()?, step.parse().ok()?);
    let count = max.checked_sub(min)?.checked_div(step)?;
    if !(0..=100_000).contains(&count) {
        return None;
    }
    Some(
        (0..=count)
            .map(|i| dir.join(printf_int(pattern, min + i * step)))
            .collect(),
    )
}

/// The reader of one data stream, decompressing a zlib or gzip stream (told apart by its first
/// bytes) when `compressed`.
pub(crate) fn data_reader<'a>(
    path: &Path,
    source: impl Read + 'a,
    compressed: bool,
) -> Result<Box<dyn Read + 'a>> {
    if !compressed {
        return Ok(Box::new(source));
    }
    let mut buffered = BufReader::new(source);
    let head = buffered.fill_buf().map_err(|e| Error::io(path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(ZlibDecoder::new(buffered)))
    }
}

/// `bytes` compressed with `encoder` (a gzip or zlib writer into a `Vec`) and its `finish`; an
/// I/O error names `path`.
pub(crate) fn compressed<E: Write>(
    path: &Path,
    bytes: &[u8],
    mut encoder: E,
    finish: impl FnOnce(E) -> std::io::Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    encoder.write_all(bytes).map_err(|e| Error::io(path, e))?;
    finish(encoder).map_err(|e| Error::io(path, e))
}

/// Writes a text header (`header(data file name)`) and its voxel bytes `data`: with a
/// `data_path`, the data into that file and the header naming it into `path`; without one, the
/// header (given no name) followed by the data into `path`.
pub(crate) fn write_header_and_data(
    path: &Path,
    data: &[u8],
    data_path: Option<PathBuf>,
    header: impl FnOnce(Option<&str>) -> String,
) -> Result<()> {
    let Some(data_path) = data_path else {
        let mut bytes = header(None).into_bytes();
        bytes.extend_from_slice(data);
        return std::fs::write(path, bytes).map_err(|e| Error::io(path, e));
    };
    let name = data_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::write(&data_path, data).map_err(|e| Error::io(&data_path, e))?;
    std::fs::write(path, header(Some(&name))).map_err(|e| Error::io(path, e))
}

/// Appends `v` stored as `kind` in the given byte order (cast as Rust's `as` casts).
pub(crate) fn encode_value(kind: PixelType, v: f64, big_endian: bool, out: &mut Vec<u8>) {
    macro_rules! put {
        ($t:ty) => {{
            let x = v as $t;
            out.extend(if big_endian {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            })
        }};
    }
    for_pixel_type!(kind, put)
}

/// Text voxel data: the first `count` numbers of `text` (separated by white space or commas),
/// stored as `kind`, little-endian; fewer numbers, or a word that is not one, is an error naming
/// `path`.
pub(crate) fn parse_text_values(
    path: &Path,
    text: &str,
    kind: PixelType,
    count: usize,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(count.min(1 << 24) * kind.size());
    let words = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty());
    for word in words.take(count) {
        let v: f64 = word.parse().map_err(|_| {
            Error::reader_file(path, format!("'{word}' in the text data is not a number"))
        })?;
        encode_value(kind, v, false, &mut out);
    }
    if out.len() < count * kind.size() {
        return Err(Error::reader_file(
            path,
            format!("truncated: expected {count} values of text data"),
        ));
    }
    Ok(out)
}

/// The lines of a text header (NRRD, MetaImage), read one at a time from a regular file, at
/// most 1 MiB of them, counting the bytes read.
pub(crate) struct HeaderLines {
    reader: std::io::Take<BufReader<std::fs::File>>,
    path: std::path::PathBuf,
    /// Bytes read so far, line ends included.
    pub length: u64,
}

impl HeaderLines {
    /// Opens `path` for reading its header.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let (file, _) = open_regular(path)?;
        Ok(HeaderLines {
            reader: BufReader::new(file).take(1 << 20),
            path: path.to_path_buf(),
            length: 0,
        })
    }

    /// The next line without its line end; `None` at the end of the file (or of 1 MiB).
    pub(crate) fn next_line(&mut self) -> Result<Option<String>> {
        let mut line = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.length += n as u64;
        let text = String::from_utf8_lossy(&line);
        Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
    }
}

/// The value of the first of `keys` found among `fields` (keys compared without case).
pub(crate) fn find_field<'a>(fields: &'a [(String, String)], keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|key| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    })
}
