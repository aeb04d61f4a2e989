//! Helpers shared by the readers' unit tests.

use std::fmt::Debug;
use std::path::Path;

use nnunet_core::Result;
use nnunet_core::io::Reader;

use super::itk::{ItkGeometry, ItkImage, PixelType, Pixels};

/// Writes `bytes` as `dir/name` and checks that `read` refuses it with an error naming the file
/// and containing `want`.
pub(crate) fn assert_read_error<T: Debug>(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    want: &str,
    read: impl Fn(&Path) -> Result<T>,
) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = read(&path).unwrap_err().to_string();
    assert!(err.contains(name) && err.contains(want), "{name}: {err}");
}

/// [`assert_read_error`] for every `(name, bytes, want)` of `cases`.
pub(crate) fn assert_read_errors<T: Debug>(
    dir: &Path,
    read: impl Fn(&Path) -> Result<T>,
    cases: &[(&str, &[u8], &str)],
) {
    for &(name, bytes, want) in cases {
        assert_read_error(dir, name, bytes, want, &read);
    }
}

/// Checks that `result` is an error whose message contains each of `wanted`; returns the message.
#[track_caller]
pub(crate) fn assert_error<T: Debug>(result: Result<T>, wanted: &[&str]) -> String {
    let err = result.unwrap_err().to_string();
    assert!(wanted.iter().all(|w| err.contains(w)), "{err}");
    err
}

/// Checks that `reader` refuses the case `files` with an error containing each of `wanted`;
/// returns the message.
#[track_caller]
pub(crate) fn assert_images_error(reader: &dyn Reader, files: &[&Path], wanted: &[&str]) -> String {
    assert_error(reader.read_images(files), wanted)
}

/// A file a reader must refuse: its name, its contents (`None`: missing) and what the error
/// must contain.
pub(crate) type Unreadable<'a> = (&'a str, Option<&'a [u8]>, &'a [&'a str]);

/// Checks that `reader` refuses each file `(name, contents, wanted)` in `dir`, written with
/// `contents` or left missing (`None`), with an error containing each of `wanted`.
pub(crate) fn assert_files_refused(reader: &dyn Reader, dir: &Path, cases: &[Unreadable<'_>]) {
    for &(name, contents, wanted) in cases {
        let file = dir.join(name);
        if let Some(bytes) = contents {
            std::fs::write(&file, bytes).unwrap();
        }
        assert_images_error(reader, &[&file], wanted);
    }
}

/// A 3D geometry with `spacing` and `origin` (ITK order) and the identity direction.
pub(crate) fn geometry3(spacing: [f64; 3], origin: [f64; 3]) -> ItkGeometry {
    let mut g = ItkGeometry::identity(3);
    g.spacing = spacing.to_vec();
    g.origin = origin.to_vec();
    g
}

/// A one-component `int16` image of `size` (ITK order) holding `values`, little-endian.
pub(crate) fn i16_image(
    size: Vec<usize>,
    geometry: ItkGeometry,
    values: impl IntoIterator<Item = i16>,
) -> ItkImage {
    let bytes = values.into_iter().flat_map(i16::to_le_bytes).collect();
    ItkImage {
        size,
        components: 1,
        geometry,
        pixels: Pixels::new(PixelType::I16, bytes),
    }
}
