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

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use nnunet_core::{Error, Result};
use serde_json::{Map, Value, json};

use super::itk::{
    HeaderLines, ItkGeometry, ItkImage, PixelType, Pixels, TypeNames, byte_count, data_reader,
    find_field, name_of_type, number, open_regular, parse_text_values, pattern_files,
    read_voxel_bytes, type_by_name,
};

/// The parsed header: fields by lower-case name, header length and the lines after a
/// `data file: LIST` field.
struct Header {
    fields: Vec<(String, String)>,
    length: u64,
    list: Vec<String>,
    detached: bool,
}

impl Header {
    fn get(&self, names: &[&str]) -> Option<&str> {
        find_field(&self.fields, names)
    }
}

/// Reads the header of `path` (up to the empty line, or the end of a detached header).
fn read_header(path: &Path) -> Result<Header> {
    let mut lines = HeaderLines::open(path)?;
    match lines.next_line()? {
        Some(magic) if magic.starts_with("NRRD000") => {}
        _ => {
            return Err(Error::invalid_file(
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
            return Err(Error::invalid_file(
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
const TYPES: TypeNames = [
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

fn pixel_type(path: &Path, name: &str) -> Result<PixelType> {
    type_by_name(&TYPES, name)
        .ok_or_else(|| Error::invalid_file(path, format!("NRRD type '{name}' is not supported")))
}

/// Whitespace-separated values of a per-axis field, exactly `n` of them.
fn per_axis<'a>(path: &Path, key: &str, value: &'a str, n: usize) -> Result<Vec<&'a str>> {
    let words: Vec<&str> = value.split_whitespace().collect();
    if words.len() != n {
        return Err(Error::invalid_file(
            path,
            format!("NRRD field '{key}: {value}' must have {n} entries, one per axis"),
        ));
    }
    Ok(words)
}

/// A `(x,y,z)` vector, `None` for `none`.
fn vector(path: &Path, text: &str) -> Result<Option<Vec<f64>>> {
    if text == "none" {
        return Ok(None);
    }
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| Error::invalid_file(path, format!("'{text}' is not a (x,y,z) vector")))?;
    let v: Option<Vec<f64>> = inner.split(',').map(|x| x.trim().parse().ok()).collect();
    v.map(Some)
        .ok_or_else(|| Error::invalid_file(path, format!("'{text}' is not a (x,y,z) vector")))
}

/// The vectors of `space directions` / `space origin` (spaces inside the parentheses allowed).
fn vectors(path: &Path, value: &str) -> Result<Vec<Option<Vec<f64>>>> {
    let mut out = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        let (item, tail) = if rest.starts_with('(') {
            let end = rest.find(')').ok_or_else(|| {
                Error::invalid_file(path, format!("unclosed vector in '{value}'"))
            })?;
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

/// Whether an axis of this kind is an image axis (teem's domain kinds, or no kind given).
fn is_domain(kind: &str) -> bool {
    matches!(kind, "domain" | "space" | "time" | "???" | "none" | "")
}

/// The dimension of a named space.
fn space_dimension(path: &Path, space: &str) -> Result<usize> {
    match space {
        "right-anterior-superior"
        | "ras"
        | "left-anterior-superior"
        | "las"
        | "left-posterior-superior"
        | "lps"
        | "scanner-xyz"
        | "3d-right-handed"
        | "3d-left-handed" => Ok(3),
        "right-anterior-superior-time"
        | "rast"
        | "left-anterior-superior-time"
        | "last"
        | "left-posterior-superior-time"
        | "lpst"
        | "scanner-xyz-time"
        | "3d-right-handed-time"
        | "3d-left-handed-time" => Ok(4),
        other => Err(Error::invalid_file(
            path,
            format!("NRRD space '{other}' is not known"),
        )),
    }
}

/// Signs that bring a vector of `space` into ITK's LPS world.
fn to_lps(space: &str) -> [f64; 3] {
    match space {
        "right-anterior-superior" | "ras" => [-1.0, -1.0, 1.0],
        "left-anterior-superior" | "las" => [1.0, -1.0, 1.0],
        _ => [1.0; 3],
    }
}

/// The image layout of the header: sizes of all axes, the components axis (if any), and the
/// ITK geometry of the image axes.
struct Layout {
    sizes: Vec<usize>,
    range_axis: Option<usize>,
    geometry: ItkGeometry,
}

fn layout(path: &Path, h: &Header) -> Result<Layout> {
    let required = |names: &[&str]| {
        h.get(names).ok_or_else(|| {
            Error::invalid_file(path, format!("the NRRD header has no '{}' field", names[0]))
        })
    };
    let dim: usize = required(&["dimension"])?
        .parse()
        .ok()
        .filter(|d| (1..=16).contains(d))
        .ok_or_else(|| Error::invalid_file(path, "NRRD 'dimension' must be 1 to 16"))?;
    let sizes: Vec<usize> = per_axis(path, "sizes", required(&["sizes"])?, dim)?
        .iter()
        .map(|s| s.parse().ok().filter(|&v| v > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::invalid_file(path, "NRRD 'sizes' must be positive integers"))?;
    let kinds: Vec<String> = match h.get(&["kinds"]) {
        Some(v) => per_axis(path, "kinds", v, dim)?
            .iter()
            .map(|k| k.to_lowercase())
            .collect(),
        None => vec![String::new(); dim],
    };
    let range: Vec<usize> = (0..dim).filter(|&a| !is_domain(&kinds[a])).collect();
    if range.len() > 1 {
        return Err(Error::invalid_file(
            path,
            format!(
                "the NRRD file has {} non-spatial axes (kinds {kinds:?}); only one (pixel components) is supported",
                range.len()
            ),
        ));
    }
    let domain: Vec<usize> = (0..dim).filter(|a| !range.contains(a)).collect();
    let geometry = geometry(path, h, &domain, &sizes)?;
    Ok(Layout {
        sizes,
        range_axis: range.first().copied(),
        geometry,
    })
}

/// The ITK geometry of the image axes `domain` (see the module documentation).
fn geometry(path: &Path, h: &Header, domain: &[usize], sizes: &[usize]) -> Result<ItkGeometry> {
    let n = domain.len();
    let mut g = ItkGeometry::identity(n);
    let space = h.get(&["space"]).map(str::to_lowercase);
    let space_dim = match (&space, h.get(&["space dimension"])) {
        (Some(s), _) => Some(space_dimension(path, s)?),
        (None, Some(d)) => Some(d.parse().map_err(|_| {
            Error::invalid_file(path, format!("'space dimension: {d}' is not a number"))
        })?),
        (None, None) => None,
    };
    let directions = h.get(&["space directions"]);
    let (Some(sd), Some(dirs)) = (space_dim, directions) else {
        return axis_geometry(path, h, domain, sizes, g);
    };
    if sd != n {
        return Err(Error::invalid_file(
            path,
            format!(
                "the number of image axes in the NRRD file ({n}) differs from the dimension of \
                 its space ({sd}); ITK cannot read it either"
            ),
        ));
    }
    let all = vectors(path, dirs)?;
    if all.len() != sizes.len() {
        return Err(Error::invalid_file(
            path,
            "'space directions' must have one entry per axis",
        ));
    }
    let signs = match (&space, n) {
        (Some(s), 3) => to_lps(s),
        _ => [1.0; 3],
    };
    let sign = |i: usize| if i < 3 { signs[i] } else { 1.0 };
    for (j, &axis) in domain.iter().enumerate() {
        let v = all[axis].as_ref().filter(|v| v.len() == n).ok_or_else(|| {
            Error::invalid_file(
                path,
                format!("image axis {axis} needs a space direction of {n} values"),
            )
        })?;
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        g.spacing[j] = if norm > 0.0 && norm.is_finite() {
            norm
        } else {
            1.0
        };
        for (i, x) in v.iter().enumerate() {
            g.direction[i * n + j] = sign(i) * x / g.spacing[j];
        }
    }
    if let Some(o) = h.get(&["space origin"]) {
        let origin = vectors(path, o)?.into_iter().next().flatten();
        match origin {
            Some(o) if o.len() == n => {
                for (i, x) in o.iter().enumerate() {
                    g.origin[i] = if x.is_finite() { sign(i) * x } else { 0.0 };
                }
            }
            _ => {
                return Err(Error::invalid_file(
                    path,
                    format!("'space origin: {o}' must be a vector of {n} values"),
                ));
            }
        }
    }
    Ok(g)
}

/// Geometry without space directions: `spacings` and `axis mins`, identity direction.
fn axis_geometry(
    path: &Path,
    h: &Header,
    domain: &[usize],
    sizes: &[usize],
    mut g: ItkGeometry,
) -> Result<ItkGeometry> {
    let floats = |names: &[&str]| -> Result<Option<Vec<f64>>> {
        let Some(v) = h.get(names) else {
            return Ok(None);
        };
        let words = per_axis(path, names[0], v, sizes.len())?;
        Ok(Some(
            words
                .iter()
                .map(|w| w.parse().unwrap_or(f64::NAN))
                .collect(),
        ))
    };
    let spacings = floats(&["spacings"])?;
    let mins = floats(&["axis mins", "axismins"])?;
    let centers: Vec<String> = match h.get(&["centers", "centerings"]) {
        Some(v) => per_axis(path, "centers", v, sizes.len())?
            .iter()
            .map(|s| s.to_string())
            .collect(),
        None => vec![String::new(); sizes.len()],
    };
    for (j, &axis) in domain.iter().enumerate() {
        if let Some(s) = spacings
            .as_ref()
            .map(|s| s[axis])
            .filter(|s| s.is_finite() && *s != 0.0)
        {
            g.spacing[j] = s.abs();
        }
        if let Some(min) = mins.as_ref().map(|m| m[axis]).filter(|m| m.is_finite()) {
            let half = if centers[axis] == "node" {
                0.0
            } else {
                g.spacing[j] / 2.0
            };
            g.origin[j] = min + half;
        }
    }
    Ok(g)
}

/// The file(s) holding the data of a detached header.
fn data_files(path: &Path, h: &Header) -> Result<Vec<PathBuf>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let value = h.get(&["data file", "datafile"]).ok_or_else(|| {
        Error::invalid_file(path, "the NRRD header has no data and no 'data file' field")
    })?;
    let words: Vec<&str> = value.split_whitespace().collect();
    match words.as_slice() {
        ["LIST", ..] => Ok(h.list.iter().map(|f| dir.join(f)).collect()),
        [pattern, min, max, step, ..] if pattern.contains('%') => {
            pattern_files(dir, pattern, min, max, step).ok_or_else(|| {
                Error::invalid_file(
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
enum Encoding {
    Raw,
    Gzip,
    Text,
    Hex,
}

fn encoding(path: &Path, h: &Header) -> Result<Encoding> {
    match h.get(&["encoding"]).map(str::to_lowercase).as_deref() {
        Some("raw") => Ok(Encoding::Raw),
        Some("gzip" | "gz") => Ok(Encoding::Gzip),
        Some("text" | "txt" | "ascii") => Ok(Encoding::Text),
        Some("hex") => Ok(Encoding::Hex),
        Some("bzip2" | "bz2") => Err(Error::invalid_file(
            path,
            "bzip2-encoded NRRD data is not supported; re-save it with raw or gzip encoding",
        )),
        Some(other) => Err(Error::invalid_file(
            path,
            format!("NRRD encoding '{other}' is not known"),
        )),
        None => Err(Error::invalid_file(
            path,
            "the NRRD header has no 'encoding'",
        )),
    }
}

/// Skips `lines` lines of `reader`.
fn skip_lines(path: &Path, reader: &mut impl BufRead, lines: usize) -> Result<()> {
    let mut sink = Vec::new();
    for _ in 0..lines {
        sink.clear();
        if reader
            .read_until(b'\n', &mut sink)
            .map_err(|e| Error::io(path, e))?
            == 0
        {
            return Err(Error::invalid_file(
                path,
                "truncated: fewer lines than 'line skip'",
            ));
        }
    }
    Ok(())
}

/// Text or hex data as `kind` values (little-endian).
fn parse_text(
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
            _ => Err(Error::invalid_file(path, "truncated or invalid hex data")),
        };
    }
    parse_text_values(path, text, kind, count)
}

/// `nbytes` bytes of data from `file` starting at `offset`, decoded from `enc`.
fn read_data(
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
                Error::invalid_file(file, format!("'{}: {v}' is not an integer", names[0]))
            })
        })
    };
    let (line_skip, byte_skip) = (
        int(&["line skip", "lineskip"])?,
        int(&["byte skip", "byteskip"])?,
    );
    let start = if byte_skip < 0 && enc == Encoding::Raw {
        len.checked_sub(nbytes).ok_or_else(|| {
            Error::invalid_file(
                file,
                format!("truncated: {nbytes} bytes of data expected, the file has {len}"),
            )
        })?
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
        .map_err(|e| Error::invalid_file(file, format!("cannot read the data: {e}")))?;
        if skipped < byte_skip as u64 {
            return Err(Error::invalid_file(
                file,
                "truncated: shorter than 'byte skip'",
            ));
        }
    }
    if enc == Encoding::Raw && start.saturating_add(nbytes) > len {
        return Err(Error::invalid_file(
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
                .map_err(|e| {
                    Error::invalid_file(file, format!("cannot read the text data: {e}"))
                })?;
            let count = (nbytes / kind.size() as u64) as usize;
            parse_text(file, &text, kind, count, enc == Encoding::Hex)
        }
    }
}

/// Moves the components axis `r` of data with axis `sizes` (fastest first) to the front.
fn interleave(bytes: &[u8], sizes: &[usize], r: usize, value: usize) -> Vec<u8> {
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

/// Reads a NRRD file (or detached header) as ITK does, with its `space` as extra data.
pub(crate) fn read_itk(path: &Path) -> Result<(ItkImage, Map<String, Value>)> {
    let h = read_header(path)?;
    let l = layout(path, &h)?;
    let kind = pixel_type(
        path,
        h.get(&["type"])
            .ok_or_else(|| Error::invalid_file(path, "the NRRD header has no 'type'"))?,
    )?;
    let enc = encoding(path, &h)?;
    let nbytes = byte_count(path, &l.sizes, 1, kind)?;
    let bytes = if h.detached || h.get(&["data file", "datafile"]).is_some() {
        let files = data_files(path, &h)?;
        if files.is_empty() || !nbytes.is_multiple_of(files.len() as u64) {
            return Err(Error::invalid_file(
                path,
                format!(
                    "{} data files cannot hold {nbytes} bytes in equal parts",
                    files.len()
                ),
            ));
        }
        let part = nbytes / files.len() as u64;
        let mut bytes = Vec::new();
        for file in &files {
            bytes.extend(read_data(file, 0, &h, enc, kind, part).map_err(|e| {
                Error::invalid_file(path, format!("its data file cannot be read: {e}"))
            })?);
        }
        bytes
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

/// The header text of `image` in `space`, with a `data file` line for a detached header.
fn header_text(image: &ItkImage, space: Option<&str>, data_file: Option<&str>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, header: &str, data: &[u8]) -> PathBuf {
        let path = dir.join(name);
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(data);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn ras_space_directions_become_lps() {
        let dir = tempfile::tempdir().unwrap();
        let header = "NRRD0004\ntype: uint8\ndimension: 3\nspace: right-anterior-superior\n\
            sizes: 2 1 1\nspace directions: (0.5,0,0) (0,0.7,0.1) (0,0,2)\nendian: little\n\
            encoding: raw\nspace origin: (1, 2, 3)\n\n";
        let path = write(dir.path(), "ras.nrrd", header, &[7, 8]);
        let (img, extra) = read_itk(&path).unwrap();
        assert_eq!(img.size, [2, 1, 1]);
        assert_eq!(img.geometry.origin, [-1.0, -2.0, 3.0]);
        let s = 0.7f64.hypot(0.1);
        assert!((img.geometry.spacing[1] - s).abs() < 1e-15);
        assert_eq!(img.geometry.direction[0], -1.0);
        assert!((img.geometry.direction[4] + 0.7 / s).abs() < 1e-15);
        assert_eq!(extra["nrrd"]["space"], "right-anterior-superior");
        // written back in RAS, read back the same
        for name in ["out.nrrd", "out.nhdr"] {
            let out = dir.path().join(name);
            write_itk(&out, &img, &extra).unwrap();
            let text = String::from_utf8_lossy(&std::fs::read(&out).unwrap()).into_owned();
            assert!(text.contains("space: right-anterior-superior"), "{text}");
            let (back, _) = read_itk(&out).unwrap();
            assert_eq!(back.geometry, img.geometry);
            assert_eq!(back.pixels.bytes, [7, 8]);
        }
        assert!(dir.path().join("out.raw.gz").is_file());
    }

    #[test]
    fn components_axis_anywhere_and_axis_geometry() {
        let dir = tempfile::tempdir().unwrap();
        // 2 components on the last axis of a 2x1 image: values (x0: 1, 2), (x1: 3, 4)
        let header = "NRRD0005\n# comment\nkey:=value\ntype: short\ndimension: 3\nsizes: 2 1 2\n\
            kinds: domain domain vector\nspacings: 0.5 NaN nan\naxis mins: 5 6 0\nendian: big\n\
            encoding: text\n\n";
        let path = write(dir.path(), "vec.nrrd", header, b"1 3\n2 4\n");
        let (img, _) = read_itk(&path).unwrap();
        assert_eq!((img.size.clone(), img.components), (vec![2, 1], 2));
        assert_eq!(img.pixels.decode(|v| v), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(img.geometry.spacing, [0.5, 1.0]);
        assert_eq!(img.geometry.origin, [5.25, 6.5]);
    }

    #[test]
    fn detached_gzip_big_endian_with_skips() {
        let dir = tempfile::tempdir().unwrap();
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&[0xff, 0, 1, 0, 2]).unwrap();
        std::fs::write(dir.path().join("d.raw.gz"), gz.finish().unwrap()).unwrap();
        let header = "NRRD0004\ntype: ushort\ndimension: 2\nsizes: 2 1\nendian: big\n\
            encoding: gzip\nbyte skip: 1\ndata file: d.raw.gz\n";
        let path = write(dir.path(), "d.nhdr", header, b"");
        let (img, _) = read_itk(&path).unwrap();
        assert_eq!(img.pixels.decode(|v| v), [1.0, 2.0]);
        std::fs::write(dir.path().join("r.raw"), b"skip me\n\x01\x02").unwrap();
        let header = "NRRD0004\ntype: uchar\ndimension: 1\nsizes: 2\nencoding: raw\nline skip: 1\ndata file: r.raw\n";
        let path = write(dir.path(), "r.nhdr", header, b"");
        assert_eq!(read_itk(&path).unwrap().0.pixels.bytes, [1, 2]);
    }

    #[test]
    fn bad_headers_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let check = |name: &str, text: &[u8], want: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let err = read_itk(&path).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(want), "{name}: {err}");
        };
        check("magic.nrrd", b"P5 2 2\n", "magic");
        check(
            "nosizes.nrrd",
            b"NRRD0004\ntype: uchar\ndimension: 2\nencoding: raw\n\n",
            "sizes",
        );
        check(
            "dim.nrrd",
            b"NRRD0004\ntype: uchar\ndimension: 2\nsizes: 2\nencoding: raw\n\n",
            "one per axis",
        );
        check(
            "type.nrrd",
            b"NRRD0004\ntype: block\ndimension: 1\nsizes: 2\nencoding: raw\n\n",
            "block",
        );
        check(
            "bz.nrrd",
            b"NRRD0004\ntype: uchar\ndimension: 1\nsizes: 2\nencoding: bzip2\n\n",
            "bzip2",
        );
        check(
            "trunc.nrrd",
            b"NRRD0004\ntype: uchar\ndimension: 1\nsizes: 4\nencoding: raw\n\nab",
            "truncated",
        );
        check("huge.nrrd", b"NRRD0004\ntype: double\ndimension: 3\nsizes: 100000 100000 100000\nencoding: gzip\n\n", "");
        check("space.nrrd", b"NRRD0004\ntype: uchar\ndimension: 2\nsizes: 2 2\nspace: right-anterior-superior\nspace directions: (1,0,0) (0,1,0)\nencoding: raw\n\n\0\0\0\0", "dimension of its space");
        check("vec.nrrd", b"NRRD0004\ntype: uchar\ndimension: 1\nsizes: 2\nspace dimension: 1\nspace directions: (1,0\nencoding: raw\n\n\0\0", "vector");
        check(
            "nodata.nhdr",
            b"NRRD0004\ntype: uchar\ndimension: 1\nsizes: 2\nencoding: raw\n",
            "data file",
        );
    }
}
