//! The image model ITK gives every file format (a size in ITK axis order, `x` fastest; pixel
//! components; spacing, origin and direction cosines in LPS world coordinates) and nnU-Net's
//! `SimpleITKIO` rules on top of it. The NIfTI, NRRD, MetaImage and GIPL readers only parse their
//! headers into an [`ItkImage`]; turning it into nnU-Net's `[c, z, y, x]` array and spacing,
//! checking the channels of a case against each other, and building the image to write from a
//! prediction's properties happen here, once for every format.
//!
//! SimpleITK's conventions, as nnU-Net's `SimpleITKIO` sees them: a 2D image is `(c, 1, y, x)`
//! with spacing `(999 * max(sx, sy), sy, sx)`; a 3D image `(c, z, y, x)` with `(sz, sy, sx)`; the
//! 4th axis of a 4D image becomes channels. Pixel components (vector, RGB) become channels too;
//! nnU-Net itself puts them on a wrong axis, we keep them as channels (`[c, z, y, x]`).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::{MultiGzDecoder, ZlibDecoder};
use ndarray::{Array4, ArrayView3, ArrayView4, Axis};
use nnunet_core::io::ImageProperties;
use nnunet_core::{Error, Result};
use serde_json::{Map, Value, json};

/// The voxel value types the readers decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PixelType {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl PixelType {
    /// Bytes per value.
    pub(crate) fn size(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::I64 | Self::U64 | Self::F64 => 8,
        }
    }
}

/// A format's names of the pixel types: each type with its names, the first one the name written.
pub(crate) type TypeNames = [(PixelType, &'static [&'static str]); 10];

/// The pixel type `name` stands for in `table`.
pub(crate) fn type_by_name(table: &TypeNames, name: &str) -> Option<PixelType> {
    table
        .iter()
        .find(|(_, names)| names.contains(&name))
        .map(|&(kind, _)| kind)
}

/// The name `table` writes `kind` with.
pub(crate) fn name_of_type(table: &TypeNames, kind: PixelType) -> &'static str {
    table
        .iter()
        .find(|&&(k, _)| k == kind)
        .map_or("", |(_, names)| names[0])
}

/// Raw voxel values of one file: their type, byte order, bytes, and an optional linear scaling
/// `value * slope + intercept`.
#[derive(Clone, Debug)]
pub(crate) struct Pixels {
    pub kind: PixelType,
    pub big_endian: bool,
    pub bytes: Vec<u8>,
    pub scale: Option<(f64, f64)>,
}

impl Pixels {
    /// Little-endian, unscaled values.
    pub(crate) fn new(kind: PixelType, bytes: Vec<u8>) -> Self {
        Pixels {
            kind,
            big_endian: false,
            bytes,
            scale: None,
        }
    }

    /// Every value (scaling applied) through `f`, in storage order.
    pub(crate) fn decode<T>(&self, mut f: impl FnMut(f64) -> T) -> Vec<T> {
        let be = self.big_endian;
        let scale = self.scale;
        let mut g = move |v: f64| match scale {
            Some((s, i)) => f(v * s + i),
            None => f(v),
        };
        macro_rules! conv {
            ($t:ty) => {
                self.bytes
                    .chunks_exact(std::mem::size_of::<$t>())
                    .map(|c| {
                        let a = c.try_into().unwrap_or_default();
                        let v = if be {
                            <$t>::from_be_bytes(a)
                        } else {
                            <$t>::from_le_bytes(a)
                        };
                        g(v as f64)
                    })
                    .collect()
            };
        }
        match self.kind {
            PixelType::U8 => self.bytes.iter().map(|&v| g(v as f64)).collect(),
            PixelType::I8 => self.bytes.iter().map(|&v| g(v as i8 as f64)).collect(),
            PixelType::I16 => conv!(i16),
            PixelType::U16 => conv!(u16),
            PixelType::I32 => conv!(i32),
            PixelType::U32 => conv!(u32),
            PixelType::I64 => conv!(i64),
            PixelType::U64 => conv!(u64),
            PixelType::F32 => conv!(f32),
            PixelType::F64 => conv!(f64),
        }
    }

    /// The values as labels; a value that is not an integer in the `int16` range is an error
    /// naming `path`.
    pub(crate) fn labels(&self, path: &Path) -> Result<Vec<i16>> {
        let mut bad: Option<f64> = None;
        let labels = self.decode(|v| {
            if v.fract() == 0.0 && v >= i16::MIN as f64 && v <= i16::MAX as f64 {
                v as i16
            } else {
                bad.get_or_insert(v);
                0
            }
        });
        match bad {
            Some(v) => Err(Error::invalid_file(
                path,
                format!("label map holds {v}, which is not an integer label in the int16 range"),
            )),
            None => Ok(labels),
        }
    }
}

/// Label values written as nnU-Net writes them: `uint8` when all are in 0..=254, `uint16` when
/// none is negative, else `int16` (nnU-Net would wrap negative labels).
pub(crate) fn label_pixels(seg: ArrayView3<'_, i16>) -> Pixels {
    let (min, max) = seg
        .iter()
        .fold((0i16, 0i16), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let kind = if min < 0 {
        PixelType::I16
    } else if max < 255 {
        PixelType::U8
    } else {
        PixelType::U16
    };
    let mut bytes = Vec::with_capacity(seg.len() * kind.size());
    for &v in seg.iter() {
        match kind {
            PixelType::U8 => bytes.push(v as u8),
            PixelType::U16 => bytes.extend_from_slice(&(v as u16).to_le_bytes()),
            _ => bytes.extend_from_slice(&v.to_le_bytes()),
        }
    }
    Pixels::new(kind, bytes)
}

/// `float32` little-endian values.
pub(crate) fn f32_pixels<'a>(values: impl ExactSizeIterator<Item = &'a f32>) -> Pixels {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    Pixels::new(PixelType::F32, bytes)
}

/// Geometry as ITK reports it for an image of `n` dimensions: spacing, origin (LPS) and the
/// direction cosines, row-major `n × n` (column `j` is the world direction of axis `j`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ItkGeometry {
    pub spacing: Vec<f64>,
    pub origin: Vec<f64>,
    pub direction: Vec<f64>,
}

impl ItkGeometry {
    /// Unit spacing, zero origin, identity direction.
    pub(crate) fn identity(n: usize) -> Self {
        let mut direction = vec![0.0; n * n];
        for i in 0..n {
            direction[i * n + i] = 1.0;
        }
        ItkGeometry {
            spacing: vec![1.0; n],
            origin: vec![0.0; n],
            direction,
        }
    }

    /// Number of dimensions.
    pub(crate) fn ndim(&self) -> usize {
        self.spacing.len()
    }

    /// Direction column `j` times the spacing of axis `j`: the world step of one voxel along `j`.
    pub(crate) fn step(&self, j: usize) -> Vec<f64> {
        let n = self.ndim();
        (0..n)
            .map(|i| self.direction[i * n + j] * self.spacing[j])
            .collect()
    }
}

/// One file decoded as ITK decodes it: size in ITK order (`x` first), values per voxel
/// (interleaved), geometry and the raw values.
#[derive(Clone, Debug)]
pub(crate) struct ItkImage {
    pub size: Vec<usize>,
    pub components: usize,
    pub geometry: ItkGeometry,
    pub pixels: Pixels,
}

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
        .ok_or_else(|| Error::invalid_file(path, format!("image size {size:?} is too large")))
}

/// Opens a regular file (not a device, pipe or folder, which a header could name as its data
/// file) and gives its length.
pub(crate) fn open_regular(path: &Path) -> Result<(std::fs::File, u64)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::invalid_file(path, "is not a regular file"));
    }
    Ok((file, meta.len()))
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
        .map_err(|e| Error::invalid_file(path, format!("cannot read the voxel data: {e}")))?;
    if (data.len() as u64) < nbytes {
        return Err(Error::invalid_file(
            path,
            format!(
                "truncated: expected {nbytes} bytes of voxel data, found {}",
                data.len()
            ),
        ));
    }
    Ok(data)
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
    match kind {
        PixelType::U8 => out.push(v as u8),
        PixelType::I8 => out.push(v as i8 as u8),
        PixelType::U16 => put!(u16),
        PixelType::I16 => put!(i16),
        PixelType::U32 => put!(u32),
        PixelType::I32 => put!(i32),
        PixelType::U64 => put!(u64),
        PixelType::I64 => put!(i64),
        PixelType::F32 => put!(f32),
        PixelType::F64 => put!(f64),
    }
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
            Error::invalid_file(path, format!("'{word}' in the text data is not a number"))
        })?;
        encode_value(kind, v, false, &mut out);
    }
    if out.len() < count * kind.size() {
        return Err(Error::invalid_file(
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

// ---------------------------------------------------------------------------------------------
// SimpleITKIO's view of one file

/// One channel file as nnU-Net's `SimpleITKIO` sees it: the `[c, z, y, x]` array, the ITK
/// geometry and nnU-Net's spacing.
pub(crate) struct SitkFile {
    pub data: Array4<f32>,
    pub geometry: ItkGeometry,
    pub spacing: [f64; 3],
}

/// The `[c, z, y, x]` shape SimpleITKIO gives `image` (see the module documentation).
pub(crate) fn sitk_shape(image: &ItkImage, path: &Path) -> Result<[usize; 4]> {
    let s = &image.size;
    let c = image.components;
    match (s.len(), c) {
        (2, _) => Ok([c, 1, s[1], s[0]]),
        (3, _) => Ok([c, s[2], s[1], s[0]]),
        (4, 1) => Ok([s[3], s[2], s[1], s[0]]),
        (4, _) => Err(Error::invalid_file(
            path,
            format!("a 4D image with {c} components per voxel cannot be read as channels"),
        )),
        (n, _) => Err(Error::invalid_file(
            path,
            format!("Unexpected number of dimensions: {n} (size {s:?})"),
        )),
    }
}

/// nnU-Net's spacing from ITK's: `(999 * max(sx, sy), sy, sx)` for 2D, `(sz, sy, sx)` otherwise.
pub(crate) fn nnunet_spacing(geometry: &ItkGeometry) -> [f64; 3] {
    let s = &geometry.spacing;
    match s.len() {
        2 => [s[0].max(s[1]) * 999.0, s[1], s[0]],
        _ => [s[2], s[1], s[0]],
    }
    .map(f64::abs)
}

/// `image` as SimpleITKIO reads it, components moved to the channel axis.
pub(crate) fn sitk_file(image: ItkImage, path: &Path) -> Result<SitkFile> {
    let shape = sitk_shape(&image, path)?;
    let values = image.pixels.decode(|v| v as f32);
    let data = if image.components > 1 {
        let [c, z, y, x] = shape;
        Array4::from_shape_vec([z, y, x, c], values).map(|a| {
            a.permuted_axes([3, 0, 1, 2])
                .as_standard_layout()
                .into_owned()
        })
    } else {
        Array4::from_shape_vec(shape, values)
    }
    .map_err(|e| Error::invalid_file(path, format!("cannot shape voxel data: {e}")))?;
    Ok(SitkFile {
        data,
        spacing: nnunet_spacing(&image.geometry),
        geometry: image.geometry,
    })
}

/// `image` as a label map `[1, z, y, x]`, with nnU-Net's spacing.
pub(crate) fn sitk_labels(image: &ItkImage, path: &Path) -> Result<(Array4<i16>, [f64; 3])> {
    let shape = sitk_shape(image, path)?;
    if shape[0] != 1 {
        return Err(Error::invalid_file(
            path,
            format!(
                "a label map must have one channel; this file has {} (volumes or components)",
                shape[0]
            ),
        ));
    }
    let data = Array4::from_shape_vec(shape, image.pixels.labels(path)?)
        .map_err(|e| Error::invalid_file(path, format!("cannot shape voxel data: {e}")))?;
    Ok((data, nnunet_spacing(&image.geometry)))
}

/// `numpy.allclose(a, b)` with its default tolerances.
pub(crate) fn allclose(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-8 + 1e-5 * y.abs())
}

/// An error on `other`: its `what` differs from that of the first channel.
pub(crate) fn mismatch(first: &Path, other: &Path, what: &str, a: String, b: String) -> Error {
    Error::invalid_file(
        other,
        format!(
            "{what} {b} differs from {a} of the first channel {}; all input images of a case \
             must have the same {what}",
            first.display()
        ),
    )
}

/// SimpleITKIO's checks across the channel files of a case, in its order: shape and ITK spacing
/// must agree (errors), origin and direction should (warnings), nnU-Net spacing must.
#[expect(
    clippy::print_stderr,
    reason = "a warning for the user, as nnU-Net prints it; the library has no other channel to the terminal"
)]
pub(crate) fn check_channels(files: &[&Path], read: &[SitkFile]) -> Result<()> {
    let (first, first_path) = (&read[0], files[0]);
    for (f, &path) in read.iter().zip(files).skip(1) {
        if f.data.shape() != first.data.shape() {
            return Err(mismatch(
                first_path,
                path,
                "shape",
                format!("{:?}", first.data.shape()),
                format!("{:?}", f.data.shape()),
            ));
        }
        let (a, b) = (&first.geometry, &f.geometry);
        if !allclose(&a.spacing, &b.spacing) {
            let (sa, sb) = (format!("{:?}", a.spacing), format!("{:?}", b.spacing));
            return Err(mismatch(first_path, path, "spacing", sa, sb));
        }
        for (what, x, y) in [
            ("origin", &a.origin, &b.origin),
            ("direction", &a.direction, &b.direction),
        ] {
            if !allclose(x, y) {
                eprintln!(
                    "WARNING: {} and {} do not have the same {what} ({x:?} vs {y:?})",
                    first_path.display(),
                    path.display(),
                );
            }
        }
        if !allclose(&first.spacing, &f.spacing) {
            let (sa, sb) = (format!("{:?}", first.spacing), format!("{:?}", f.spacing));
            return Err(mismatch(first_path, path, "nnU-Net spacing", sa, sb));
        }
    }
    Ok(())
}

/// The channel arrays stacked along axis 0.
pub(crate) fn stack(files: &[&Path], channels: Vec<Array4<f32>>) -> Result<Array4<f32>> {
    let views: Vec<_> = channels.iter().map(|c| c.view()).collect();
    ndarray::concatenate(Axis(0), &views)
        .map_err(|e| Error::invalid_file(files[0], format!("cannot stack the channels: {e}")))
}

/// The properties SimpleITKIO records: nnU-Net's spacing, ITK's origin and direction, ITK's
/// spacing as `extra["sitk_spacing"]`, plus the format's own header data in `extra`.
pub(crate) fn sitk_properties(
    geometry: &ItkGeometry,
    spacing: [f64; 3],
    mut extra: Map<String, Value>,
) -> ImageProperties {
    extra.insert("sitk_spacing".into(), json!(geometry.spacing));
    ImageProperties {
        spacing,
        origin: geometry.origin.clone(),
        direction: geometry.direction.clone(),
        extra,
    }
}

// ---------------------------------------------------------------------------------------------
// Images to write

/// Whether `p` describes a 2D image (SimpleITKIO then writes a 2D file).
pub(crate) fn is_two_d(p: &ImageProperties) -> bool {
    p.direction.len() == 4 || p.origin.len() == 2
}

/// The ITK geometry of `n` dimensions to write a prediction with: ITK's spacing as read
/// (`extra["sitk_spacing"]`) or nnU-Net's reversed, the origin and the top-left `n × n` of the
/// direction when present; unit, zero and identity otherwise.
pub(crate) fn output_geometry(p: &ImageProperties, n: usize) -> ItkGeometry {
    let mut g = ItkGeometry::identity(n);
    let sitk: Option<Vec<f64>> = p
        .extra
        .get("sitk_spacing")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_f64).collect());
    let reversed = [p.spacing[2], p.spacing[1], p.spacing[0]];
    for (i, s) in g.spacing.iter_mut().enumerate() {
        let v = match &sitk {
            Some(v) if v.len() >= n => v[i],
            _ => reversed.get(i).copied().unwrap_or(1.0),
        };
        *s = if v.is_finite() && v != 0.0 {
            v.abs()
        } else {
            1.0
        };
    }
    if p.origin.len() >= n {
        g.origin.copy_from_slice(&p.origin[..n]);
    }
    let m = (p.direction.len() as f64).sqrt() as usize;
    if m >= n && m * m == p.direction.len() {
        for i in 0..n {
            for j in 0..n {
                g.direction[i * n + j] = p.direction[i * m + j];
            }
        }
    }
    g
}

/// The label map `[z, y, x]` as the ITK image SimpleITKIO writes: 2D when the input was 2D.
pub(crate) fn segmentation_image(seg: ArrayView3<'_, i16>, p: &ImageProperties) -> ItkImage {
    let (z, y, x) = seg.dim();
    let two_d = is_two_d(p) && z == 1;
    let size = if two_d { vec![x, y] } else { vec![x, y, z] };
    ItkImage {
        geometry: output_geometry(p, size.len()),
        size,
        components: 1,
        pixels: label_pixels(seg),
    }
}

/// Probabilities `[classes, z, y, x]` as a 4D float image (classes on the 4th axis, unit step).
pub(crate) fn probability_image(probs: ArrayView4<'_, f32>, p: &ImageProperties) -> ItkImage {
    let (c, z, y, x) = probs.dim();
    let g3 = output_geometry(p, 3);
    let mut g = ItkGeometry::identity(4);
    for i in 0..3 {
        g.spacing[i] = g3.spacing[i];
        g.origin[i] = g3.origin[i];
        for j in 0..3 {
            g.direction[i * 4 + j] = g3.direction[i * 3 + j];
        }
    }
    ItkImage {
        size: vec![x, y, z, c],
        components: 1,
        geometry: g,
        pixels: f32_pixels(probs.iter()),
    }
}

/// Shortest text that parses back to exactly `v` (as ITK writes numbers, without exponent noise
/// for integers).
pub(crate) fn number(v: f64) -> String {
    if v == 0.0 { "0".into() } else { format!("{v}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn components_become_channels() {
        let values: Vec<u8> = (0..24).collect();
        let image = ItkImage {
            size: vec![4, 2],
            components: 3,
            geometry: ItkGeometry::identity(2),
            pixels: Pixels::new(PixelType::U8, values),
        };
        let f = sitk_file(image.clone(), Path::new("rgb.mha")).unwrap();
        assert_eq!(f.data.shape(), [3, 1, 2, 4]);
        // voxel (x=1, y=1) holds values 15, 16, 17
        assert_eq!(f.data[[0, 0, 1, 1]], 15.0);
        assert_eq!(f.data[[2, 0, 1, 1]], 17.0);
        assert_eq!(f.spacing, [999.0, 1.0, 1.0]);
        let err = sitk_labels(&image, Path::new("rgb.mha")).unwrap_err();
        assert!(err.to_string().contains("one channel"), "{err}");
    }

    #[test]
    fn output_geometry_prefers_itk_spacing_and_keeps_direction() {
        let mut p = ImageProperties {
            spacing: [3.0, 2.0, 1.0],
            origin: vec![1.0, 2.0, 3.0],
            direction: vec![0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            extra: Map::new(),
        };
        let g = output_geometry(&p, 3);
        assert_eq!(g.spacing, [1.0, 2.0, 3.0]);
        assert_eq!(g.direction, p.direction);
        p.extra
            .insert("sitk_spacing".into(), json!([0.5, 0.25, 4.0]));
        assert_eq!(output_geometry(&p, 3).spacing, [0.5, 0.25, 4.0]);
        let seg = Array3::<i16>::from_elem((1, 2, 2), 300);
        let img = segmentation_image(seg.view(), &p);
        assert_eq!(img.size, [2, 2, 1]);
        assert_eq!(img.pixels.kind, PixelType::U16);
        p.direction = vec![1.0, 0.0, 0.0, 1.0];
        assert_eq!(segmentation_image(seg.view(), &p).size, [2, 2]);
    }

    #[test]
    fn labels_must_be_int16_integers() {
        let mut px = Pixels::new(PixelType::F32, 2.5f32.to_le_bytes().to_vec());
        let err = px.labels(Path::new("x.nrrd")).unwrap_err().to_string();
        assert!(err.contains("x.nrrd") && err.contains("2.5"), "{err}");
        px.scale = Some((2.0, 1.0));
        assert_eq!(px.labels(Path::new("x")).unwrap(), [6]);
    }
}
