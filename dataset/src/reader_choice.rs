//! Choosing the [`Reader`] for a dataset, in nnU-Net's order of preference.

use std::path::Path;

use crate::catch;
use crate::dataset_json::DatasetJson;
use nnunet_core::error::{Error, Result};
use nnunet_core::io::Reader;
use nnunet_core::registry::{Entry, Registries};

/// The readers nnU-Net tries, in its order, when `dataset.json` does not name one.
pub const READER_PREFERENCE: [&str; 5] = [
    "NaturalImage2DIO",
    "SimpleITKIO",
    "Tiff3DIO",
    "NibabelIO",
    "NibabelIOWithReorient",
];

/// Readers that are only used when `overwrite_image_reader_writer` names them (as in nnU-Net).
const OPT_IN_READERS: [&str; 1] = ["SimpleITKIOWithReorient"];

/// Whether `file` ends with one of `reader`'s endings, ignoring case.
fn has_ending(reader: &dyn Reader, ending: &str) -> bool {
    let ending = ending.to_lowercase();
    reader
        .file_endings()
        .iter()
        .any(|e| e.to_lowercase() == ending)
}

/// The reader for a dataset, as nnU-Net chooses it: the one `overwrite_image_reader_writer` names
/// (an unknown name is an error listing the nearest known names), or else the first reader that
/// handles `file_ending` (ignoring case) and, when `example` is given, can read it. Readers are
/// tried in nnU-Net's order ([`READER_PREFERENCE`]), then every other registered reader by name
/// (except those nnU-Net only uses on request, such as `SimpleITKIOWithReorient`).
pub fn choose_reader<'r>(
    registries: &'r Registries,
    dataset_json: &DatasetJson,
    example: Option<&Path>,
) -> Result<&'r Entry<dyn Reader>> {
    choose_reader_for(
        registries,
        dataset_json.overwrite_image_reader_writer.as_deref(),
        &dataset_json.file_ending,
        example,
    )
}

/// As [`choose_reader`], from the parts of `dataset.json` it uses: a reader name that overrides the
/// choice, and the file ending.
pub fn choose_reader_for<'r>(
    registries: &'r Registries,
    overwrite: Option<&str>,
    file_ending: &str,
    example: Option<&Path>,
) -> Result<&'r Entry<dyn Reader>> {
    if let Some(name) = overwrite {
        return registries.readers.get(name);
    }
    let preferred = READER_PREFERENCE
        .iter()
        .filter_map(|n| registries.readers.get(n).ok());
    let others = registries.readers.entries().filter(|e| {
        !READER_PREFERENCE.contains(&e.name.as_str()) && !OPT_IN_READERS.contains(&e.name.as_str())
    });
    let mut tried = Vec::new();
    for entry in preferred.chain(others) {
        let reader = entry.create();
        if !has_ending(reader.as_ref(), file_ending) {
            continue;
        }
        match example {
            None => return Ok(entry),
            Some(file) => {
                if catch(|| reader.can_read(file)).unwrap_or(false) {
                    return Ok(entry);
                }
                tried.push((entry.name.clone(), reader));
            }
        }
    }
    let Some(file) = example else {
        return Err(Error::dataset(format!(
            "no reader handles the file ending '{file_ending}' (see `nnunet list readers`; a \
             plugin may add one)"
        )));
    };
    if tried.is_empty() {
        return Err(Error::dataset_file(
            file,
            format!(
                "no reader handles the file ending '{file_ending}' (see `nnunet list readers`; a \
                 plugin may add one)"
            ),
        ));
    }
    let reasons: Vec<String> = tried
        .iter()
        .map(|(name, reader)| {
            let why = match catch(|| reader.read_images(&[file])) {
                Ok(Ok(_)) => "it declined the file".to_string(),
                Ok(Err(e)) => e.reason(),
                Err(panic) => panic,
            };
            format!("{name}: {why}")
        })
        .collect();
    Err(Error::dataset_file(
        file,
        format!(
            "no reader for '{file_ending}' can read this file ({})",
            reasons.join("; ")
        ),
    ))
}
