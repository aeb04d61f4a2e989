//! [`DatasetJson`]: the fields of `dataset.json`, read with one error per malformed field and
//! written back in nnU-Net's key order.

use std::path::Path;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::labels::{LabelValue, Labels};
use crate::partial::Partial;
use nnunet_core::error::{Error, Result};

/// The files of one case in the explicit `dataset` entry of `dataset.json`, as written there
/// (paths relative to the dataset folder, or absolute; `$VARIABLES` allowed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseEntry {
    /// One file per channel, in channel order.
    pub images: Vec<String>,
    /// The label map.
    pub label: String,
}

/// nnU-Net v2's `dataset.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetJson {
    /// `channel_names` in file order: (index key, name). The name selects the normalization.
    pub channel_names: Vec<(String, String)>,
    /// `labels` and `regions_class_order`.
    pub labels: Labels,
    /// `numTraining`.
    pub num_training: usize,
    /// `file_ending`, with its leading dot (`.nii.gz`).
    pub file_ending: String,
    /// The optional explicit list of training cases, in file order.
    pub dataset: Option<Vec<(String, CaseEntry)>>,
    /// The reader named by `overwrite_image_reader_writer` (the string `"None"` and `null` mean
    /// none).
    pub overwrite_image_reader_writer: Option<String>,
    /// Every other key (`name`, `description`, `licence`, …), kept in file order.
    pub other: Vec<(String, serde_json::Value)>,
    /// Whether the channels came under the legacy key `modality`.
    pub(crate) legacy_modality: bool,
}

impl DatasetJson {
    /// A `dataset.json` with the four required fields.
    pub fn new(
        channel_names: Vec<(String, String)>,
        labels: Labels,
        num_training: usize,
        file_ending: impl Into<String>,
    ) -> Self {
        Self {
            channel_names,
            labels,
            num_training,
            file_ending: file_ending.into(),
            dataset: None,
            overwrite_image_reader_writer: None,
            other: Vec::new(),
            legacy_modality: false,
        }
    }

    /// Reads `dataset.json`. An error names the file and every malformed field.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::read(path).map_err(|mut errors| {
            if errors.len() == 1 {
                errors.remove(0)
            } else {
                let reasons: Vec<String> = errors.iter().map(Error::reason).collect();
                Error::dataset_file(path, reasons.join("; "))
            }
        })
    }

    /// Reads `dataset.json`, returning one error per malformed field.
    pub fn read(path: &Path) -> std::result::Result<Self, Vec<Error>> {
        let text = std::fs::read_to_string(path).map_err(|e| vec![Error::io(path, e)])?;
        Self::parse(path, &text)
    }

    /// Parses the text of `dataset.json`; `path` is only used in the errors.
    pub fn parse(path: &Path, text: &str) -> std::result::Result<Self, Vec<Error>> {
        let partial = Partial::parse(text);
        let errors: Vec<Error> = partial
            .errors
            .iter()
            .map(|reason| Error::dataset_file(path, reason.clone()))
            .collect();
        match partial.complete() {
            Some(dj) if errors.is_empty() => Ok(dj),
            _ => Err(errors),
        }
    }

    /// The number of input channels.
    pub fn num_channels(&self) -> usize {
        self.channel_names.len()
    }

    /// Whether the channels were given under the legacy key `modality` instead of
    /// `channel_names`.
    pub fn uses_legacy_modality(&self) -> bool {
        self.legacy_modality
    }
}

impl Serialize for DatasetJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        struct Ordered<'a, V>(&'a [(String, V)]);
        impl<V: Serialize> Serialize for Ordered<'_, V> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
        struct Value<'a>(&'a LabelValue);
        impl Serialize for Value<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                match self.0 {
                    LabelValue::Label(v) => s.serialize_i64(*v),
                    LabelValue::Region(v) => v.serialize(s),
                }
            }
        }
        struct Case<'a>(&'a CaseEntry);
        impl Serialize for Case<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("images", &self.0.images)?;
                map.serialize_entry("label", &self.0.label)?;
                map.end()
            }
        }
        let labels: Vec<(String, Value<'_>)> = self
            .labels
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), Value(v)))
            .collect();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("channel_names", &Ordered(&self.channel_names))?;
        map.serialize_entry("labels", &Ordered(&labels))?;
        if let Some(order) = &self.labels.regions_class_order {
            map.serialize_entry("regions_class_order", order)?;
        }
        map.serialize_entry("numTraining", &self.num_training)?;
        map.serialize_entry("file_ending", &self.file_ending)?;
        if let Some(name) = &self.overwrite_image_reader_writer {
            map.serialize_entry("overwrite_image_reader_writer", name)?;
        }
        if let Some(dataset) = &self.dataset {
            let cases: Vec<(String, Case<'_>)> =
                dataset.iter().map(|(k, c)| (k.clone(), Case(c))).collect();
            map.serialize_entry("dataset", &Ordered(&cases))?;
        }
        for (k, v) in &self.other {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}
