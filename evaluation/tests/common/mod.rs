//! Shared by the evaluation test targets: the fixture folders, copying a folder, and a test
//! [`Reader`] made of two functions (one reading a label map, one writing it).

use std::path::{Path, PathBuf};

use ndarray::ArrayView3;
use nnunet_core::io::{Image, ImageProperties, Reader, Segmentation};
use nnunet_core::{Error, Result};

/// The fixture folder `tests/fixtures/<name>` of the workspace.
pub(crate) fn fixtures(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// Copies the files of `from` into `to`, made if missing.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Writes one label map `[z, y, x]` to a file.
pub(crate) type WriteLabels = fn(ArrayView3<'_, i16>, &Path) -> Result<()>;

/// A test reader of label maps: `read` reads one (its labels also serve as the image), `write`
/// writes one where given; probabilities are not written.
pub(crate) struct LabelReader {
    /// The file endings it reads.
    pub(crate) endings: &'static [&'static str],
    /// Reads one label map, `[1, z, y, x]`.
    pub(crate) read: fn(&Path) -> Result<Segmentation>,
    /// Writes one label map; `None` refuses.
    pub(crate) write: Option<WriteLabels>,
}

impl Reader for LabelReader {
    fn file_endings(&self) -> &[&str] {
        self.endings
    }

    fn read_images(&self, files: &[&Path]) -> Result<Image> {
        let seg = (self.read)(files[0])?;
        Ok(Image {
            data: seg.data.mapv(f32::from),
            properties: seg.properties,
        })
    }

    fn read_segmentation(&self, file: &Path) -> Result<Segmentation> {
        (self.read)(file)
    }

    fn write_segmentation(
        &self,
        segmentation: ArrayView3<'_, i16>,
        file: &Path,
        _properties: &ImageProperties,
    ) -> Result<()> {
        match self.write {
            Some(write) => write(segmentation, file),
            None => Err(Error::invalid_file(file, "the test reader does not write")),
        }
    }
}
