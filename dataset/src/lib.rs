//! The raw dataset format of nnU-Net v2: `dataset.json`, the training cases of a raw dataset
//! folder, and choosing the [`Reader`] for a dataset.
//!
//! A raw dataset folder holds `dataset.json` and either `imagesTr/<case>_XXXX<ending>` (one file per
//! channel, `XXXX` the four-digit channel index) with `labelsTr/<case><ending>`, or an explicit
//! `dataset` entry in `dataset.json` listing each case's files.
//!
//! `dataset.json` is read with the order of its keys kept: the order of `channel_names` is the
//! order nnU-Net assigns normalizations in, and the order of `labels` is the order of regions.

pub mod integrity;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

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

/// The value of one entry of `labels`: a label, or a region (a list of labels, for region-based
/// training).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelValue {
    /// One integer label.
    Label(i64),
    /// A list of labels. It makes the dataset region-based when it has more than one entry.
    Region(Vec<i64>),
}

impl LabelValue {
    fn values(&self) -> &[i64] {
        match self {
            LabelValue::Label(v) => std::slice::from_ref(v),
            LabelValue::Region(v) => v,
        }
    }
}

/// The `labels` of `dataset.json` with `regions_class_order`, checked as nnU-Net's label manager
/// checks them: `background` is label 0, region-based labels come with a `regions_class_order` of
/// one entry per region, and an `ignore` label is an integer one above every other label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels {
    entries: Vec<(String, LabelValue)>,
    regions_class_order: Option<Vec<i64>>,
}

impl Labels {
    /// Checks and builds the labels; every rule broken is listed in the error.
    pub fn new(
        entries: Vec<(String, LabelValue)>,
        regions_class_order: Option<Vec<i64>>,
    ) -> Result<Self> {
        let labels = Self {
            entries,
            regions_class_order,
        };
        let problems = labels.problems();
        if problems.is_empty() {
            Ok(labels)
        } else {
            Err(Error::Invalid(problems.join("; ")))
        }
    }

    /// Every broken rule, in nnU-Net's order of checking.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        for (name, _) in &self.entries {
            if !seen.insert(name.as_str()) {
                problems.push(format!("label '{name}' is declared more than once"));
            }
        }
        match self.get("background") {
            None => problems.push(
                "no 'background' label is declared (it must be label 0: \"background\": 0)".into(),
            ),
            Some(LabelValue::Region(v)) => problems.push(format!(
                "the background label must be the integer 0, not a list (got {v:?})"
            )),
            Some(LabelValue::Label(v)) if *v != 0 => {
                problems.push(format!("the background label must be 0 (got {v})"))
            }
            Some(_) => {}
        }
        for (name, value) in &self.entries {
            if let LabelValue::Region(v) = value
                && v.is_empty()
            {
                problems.push(format!("label '{name}' is an empty list"));
            }
        }
        if let Some(LabelValue::Region(v)) = self.get("ignore") {
            problems.push(format!(
                "the ignore label must be an integer, not a region (got {v:?})"
            ));
        }
        if self.is_region_based() {
            let regions = self.regions().len();
            match &self.regions_class_order {
                None => problems.push(
                    "the labels are region-based (some label is a list of labels), so \
                     dataset.json needs 'regions_class_order'"
                        .into(),
                ),
                Some(order) if order.len() != regions => problems.push(format!(
                    "'regions_class_order' has {} entries but there are {regions} regions \
                     (it needs one entry per region)",
                    order.len()
                )),
                Some(_) => {}
            }
        }
        if let Some(LabelValue::Label(ignore)) = self.get("ignore") {
            let max = self.all_labels().last().copied();
            if let Some(max) = max
                && *ignore != max + 1
            {
                problems.push(format!(
                    "the ignore label must be the highest label, one above all others ({}), \
                     not {ignore}",
                    max + 1
                ));
            }
        }
        problems
    }

    fn get(&self, name: &str) -> Option<&LabelValue> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The entries in the order of `dataset.json`.
    pub fn entries(&self) -> &[(String, LabelValue)] {
        &self.entries
    }

    /// `regions_class_order`, if given.
    pub fn regions_class_order(&self) -> Option<&[i64]> {
        self.regions_class_order.as_deref()
    }

    /// Whether some label (other than `ignore`, which must be an integer) is a list of more than
    /// one label.
    pub fn is_region_based(&self) -> bool {
        self.entries
            .iter()
            .any(|(n, v)| n != "ignore" && matches!(v, LabelValue::Region(r) if r.len() > 1))
    }

    /// The ignore label (the entry named `ignore`), if any.
    pub fn ignore_label(&self) -> Option<i64> {
        match self.get("ignore") {
            Some(LabelValue::Label(v)) => Some(*v),
            _ => None,
        }
    }

    /// Every label value except the ignore label, sorted and unique (regions flattened).
    pub fn all_labels(&self) -> Vec<i64> {
        let set: BTreeSet<i64> = self
            .entries
            .iter()
            .filter(|(n, _)| n != "ignore")
            .flat_map(|(_, v)| v.values().iter().copied())
            .collect();
        set.into_iter().collect()
    }

    /// [`Labels::all_labels`] without the background 0: the labels a cascade stage gets as one-hot
    /// input channels (nnU-Net's `foreground_labels`).
    pub fn foreground_labels(&self) -> Vec<i64> {
        self.all_labels().into_iter().filter(|l| *l != 0).collect()
    }

    /// The label values a label map may contain: [`Labels::all_labels`] and the ignore label.
    pub fn expected_values(&self) -> Vec<i64> {
        let mut values = self.all_labels();
        if let Some(ignore) = self.ignore_label() {
            values.push(ignore);
            values.sort_unstable();
            values.dedup();
        }
        values
    }

    /// The name of the entry whose label or region is exactly `values` (`[1]` finds `"liver": 1`
    /// and `"liver": [1]`).
    pub fn name_of(&self, values: &[i64]) -> Option<&str> {
        self.entries
            .iter()
            .find(|(_, v)| v.values() == values)
            .map(|(name, _)| name.as_str())
    }

    /// The regions of a region-based dataset, in `dataset.json` order: every entry except
    /// `ignore` and background (0 or lists of only 0).
    pub fn regions(&self) -> Vec<Vec<i64>> {
        self.entries
            .iter()
            .filter(|(n, _)| n != "ignore")
            .map(|(_, v)| v.values().to_vec())
            .filter(|v| !v.iter().all(|x| *x == 0) || v.is_empty())
            .collect()
    }
}

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
    legacy_modality: bool,
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
                let reasons: Vec<String> = errors
                    .iter()
                    .map(|e| match e {
                        Error::InvalidFile { reason, .. } => reason.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                Error::invalid_file(path, reasons.join("; "))
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
            .map(|reason| Error::invalid_file(path, reason.clone()))
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

/// A JSON value that keeps the order (and duplicates) of object keys.
#[derive(Clone, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> std::result::Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> std::result::Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Json, D::Error> {
                Json::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> std::result::Result<Json, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Json, E> {
                Ok(Json::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Json, E> {
                Ok(Json::Int(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<Json, E> {
                Ok(Json::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Json, E> {
                Ok(Json::String(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Json, E> {
                Ok(Json::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    entries.push((k, v));
                }
                Ok(Json::Object(entries))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl Json {
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Int(_) | Json::Float(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "a list",
            Json::Object(_) => "an object",
        }
    }

    /// An integer, also from a float with no fractional part (as Python's `int()` would take it).
    fn as_int(&self) -> Option<i64> {
        match self {
            Json::Int(v) => i64::try_from(*v).ok(),
            Json::Float(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Some(*v as i64),
            _ => None,
        }
    }

    fn into_value(self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Int(i) => i64::try_from(i)
                .map(Value::from)
                .or_else(|_| u64::try_from(i).map(Value::from))
                .unwrap_or(Value::Null),
            Json::Float(f) => serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Json::String(s) => Value::String(s),
            Json::Array(a) => Value::Array(a.into_iter().map(Json::into_value).collect()),
            Json::Object(o) => {
                Value::Object(o.into_iter().map(|(k, v)| (k, v.into_value())).collect())
            }
        }
    }
}

/// `dataset.json` as far as it could be read, with one error per malformed field. The checks of
/// the dataset use what could be read even when some fields are broken.
#[derive(Debug, Default)]
pub(crate) struct Partial {
    pub channel_names: Option<Vec<(String, String)>>,
    pub legacy_modality: bool,
    pub labels: Option<Labels>,
    pub num_training: Option<usize>,
    pub file_ending: Option<String>,
    pub dataset: Option<Vec<(String, CaseEntry)>>,
    pub overwrite_image_reader_writer: Option<String>,
    pub other: Vec<(String, serde_json::Value)>,
    /// Whether the key `dataset` is present (even if malformed).
    pub has_dataset: bool,
    /// One message per malformed or missing field, naming the field.
    pub errors: Vec<String>,
}

const REQUIRED: [&str; 4] = ["labels", "channel_names", "numTraining", "file_ending"];

impl Partial {
    pub(crate) fn parse(text: &str) -> Self {
        let mut p = Partial::default();
        let json: Json = match serde_json::from_str(text) {
            Ok(j) => j,
            Err(e) => {
                p.errors.push(format!("not valid JSON: {e}"));
                return p;
            }
        };
        let Json::Object(entries) = json else {
            p.errors.push(format!(
                "must be a JSON object with the fields {}, but is {}",
                REQUIRED.join(", "),
                json.kind()
            ));
            return p;
        };
        let mut seen = BTreeSet::new();
        for (key, _) in &entries {
            if !seen.insert(key.as_str()) {
                p.errors
                    .push(format!("field '{key}' appears more than once"));
            }
        }
        let take = |name: &str| -> Option<Json> {
            entries
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        // channel_names, or the legacy modality.
        let channels = match (take("channel_names"), take("modality")) {
            (Some(v), _) => Some(("channel_names", v)),
            (None, Some(v)) => {
                p.legacy_modality = true;
                Some(("modality", v))
            }
            (None, None) => None,
        };
        match channels {
            None => p.errors.push(
                "missing required field 'channel_names' (for example {\"0\": \"CT\"})".into(),
            ),
            Some((field, value)) => match parse_channel_names(field, value) {
                Ok(c) => p.channel_names = Some(c),
                Err(e) => p.errors.push(e),
            },
        }
        // regions_class_order, then labels.
        let mut order_ok = true;
        let regions_class_order = match take("regions_class_order") {
            None | Some(Json::Null) => None,
            Some(Json::Array(items)) => {
                let ints: Option<Vec<i64>> = items.iter().map(Json::as_int).collect();
                if ints.is_none() {
                    order_ok = false;
                    p.errors.push(
                        "field 'regions_class_order' must be a list of integer labels".into(),
                    );
                }
                ints
            }
            Some(other) => {
                order_ok = false;
                p.errors.push(format!(
                    "field 'regions_class_order' must be a list of integer labels, not {}",
                    other.kind()
                ));
                None
            }
        };
        match take("labels") {
            None => p.errors.push(
                "missing required field 'labels' (for example {\"background\": 0, \"tumor\": 1})"
                    .into(),
            ),
            Some(value) => match parse_label_entries(value) {
                Ok(entries) => {
                    let labels = Labels {
                        entries,
                        regions_class_order,
                    };
                    let mut problems = labels.problems();
                    if !order_ok {
                        // Already reported; do not also complain that it is missing.
                        problems.retain(|m| !m.contains("needs 'regions_class_order'"));
                    }
                    if problems.is_empty() {
                        p.labels = Some(labels);
                    }
                    p.errors
                        .extend(problems.into_iter().map(|m| format!("field 'labels': {m}")));
                }
                Err(e) => p.errors.push(e),
            },
        }
        match take("numTraining") {
            None => p
                .errors
                .push("missing required field 'numTraining' (the number of training cases)".into()),
            Some(v) => match v.as_int().and_then(|n| usize::try_from(n).ok()) {
                Some(n) => p.num_training = Some(n),
                None => p.errors.push(format!(
                    "field 'numTraining' must be a non-negative integer, not {}",
                    describe(&v)
                )),
            },
        }
        match take("file_ending") {
            None => p.errors.push(
                "missing required field 'file_ending' (for example \".nii.gz\" or \".png\")".into(),
            ),
            Some(Json::String(s)) if s.len() > 1 && s.starts_with('.') => p.file_ending = Some(s),
            Some(v) => p.errors.push(format!(
                "field 'file_ending' must be a file ending with its leading dot, such as \
                 \".nii.gz\" or \".png\", not {}",
                describe(&v)
            )),
        }
        match take("overwrite_image_reader_writer") {
            None | Some(Json::Null) => {}
            Some(Json::String(s)) if s == "None" => {}
            Some(Json::String(s)) if !s.trim().is_empty() => {
                p.overwrite_image_reader_writer = Some(s)
            }
            Some(v) => p.errors.push(format!(
                "field 'overwrite_image_reader_writer' must be the name of a reader (see `nnunet \
                 list readers`), not {}",
                describe(&v)
            )),
        }
        if let Some(v) = take("dataset") {
            p.has_dataset = true;
            let (cases, errors) = parse_dataset(v);
            p.dataset = cases;
            p.errors.extend(errors);
        }
        let known = [
            "channel_names",
            "modality",
            "labels",
            "regions_class_order",
            "numTraining",
            "file_ending",
            "overwrite_image_reader_writer",
            "dataset",
        ];
        let mut kept = BTreeSet::new();
        for (k, v) in entries {
            if !known.contains(&k.as_str()) && kept.insert(k.clone()) {
                p.other.push((k, v.into_value()));
            }
        }
        p
    }

    /// The full `dataset.json`, when every required field could be read.
    fn complete(self) -> Option<DatasetJson> {
        Some(DatasetJson {
            channel_names: self.channel_names?,
            labels: self.labels?,
            num_training: self.num_training?,
            file_ending: self.file_ending?,
            dataset: self.dataset,
            overwrite_image_reader_writer: self.overwrite_image_reader_writer,
            other: self.other,
            legacy_modality: self.legacy_modality,
        })
    }
}

/// A short description of a JSON value for messages: strings and numbers are quoted as given.
fn describe(v: &Json) -> String {
    match v {
        Json::String(s) => format!("the string \"{s}\""),
        Json::Int(i) => format!("{i}"),
        Json::Float(f) => format!("{f}"),
        other => other.kind().to_string(),
    }
}

fn parse_channel_names(
    field: &str,
    value: Json,
) -> std::result::Result<Vec<(String, String)>, String> {
    let example = "an object from channel index to name, such as {\"0\": \"T2\", \"1\": \"ADC\"}";
    let Json::Object(entries) = value else {
        return Err(format!(
            "field '{field}' must be {example}, not {}",
            value.kind()
        ));
    };
    if entries.is_empty() {
        return Err(format!("field '{field}' is empty; it must be {example}"));
    }
    let mut out = Vec::with_capacity(entries.len());
    let mut seen = BTreeSet::new();
    for (k, v) in entries {
        if !seen.insert(k.clone()) {
            return Err(format!(
                "field '{field}': channel '{k}' appears more than once"
            ));
        }
        match v {
            Json::String(name) => out.push((k, name)),
            other => {
                return Err(format!(
                    "field '{field}': the name of channel '{k}' must be a string, not {}",
                    describe(&other)
                ));
            }
        }
    }
    Ok(out)
}

fn parse_label_entries(value: Json) -> std::result::Result<Vec<(String, LabelValue)>, String> {
    let Json::Object(entries) = value else {
        return Err(format!(
            "field 'labels' must be an object from label name to integer label (or list of \
             labels for a region), such as {{\"background\": 0, \"tumor\": 1}}, not {}",
            value.kind()
        ));
    };
    let mut out = Vec::with_capacity(entries.len());
    for (name, v) in entries {
        let parsed = match &v {
            Json::Array(items) => items
                .iter()
                .map(Json::as_int)
                .collect::<Option<Vec<i64>>>()
                .map(LabelValue::Region),
            other => other.as_int().map(LabelValue::Label),
        };
        match parsed {
            Some(p) => out.push((name, p)),
            None => {
                return Err(format!(
                    "field 'labels': label '{name}' must be an integer or a list of integers, not {}",
                    describe(&v)
                ));
            }
        }
    }
    Ok(out)
}

/// The cases of the `dataset` field that could be read (`None` if it is not an object), and one
/// message per malformed case.
fn parse_dataset(value: Json) -> (Option<Vec<(String, CaseEntry)>>, Vec<String>) {
    let Json::Object(entries) = value else {
        return (
            None,
            vec![format!(
                "field 'dataset' must be an object from case name to {{\"images\": [...], \"label\": \
             ...}}, not {}",
                value.kind()
            )],
        );
    };
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(entries.len());
    let mut seen = BTreeSet::new();
    for (case, v) in entries {
        if !seen.insert(case.clone()) {
            errors.push(format!(
                "field 'dataset': case '{case}' is listed more than once"
            ));
            continue;
        }
        let Json::Object(fields) = v else {
            errors.push(format!(
                "field 'dataset': case '{case}' must be an object {{\"images\": [...], \"label\": \
                 ...}}, not {}",
                v.kind()
            ));
            continue;
        };
        let get = |k: &str| fields.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v);
        let images = match get("images") {
            Some(Json::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|i| match i {
                    Json::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<String>>>(),
            _ => None,
        };
        let label = match get("label") {
            Some(Json::String(s)) => Some(s.clone()),
            _ => None,
        };
        if images.is_none() {
            errors.push(format!(
                "field 'dataset': case '{case}' needs \"images\": a non-empty list of file paths, \
                 one per channel"
            ));
        }
        if label.is_none() {
            errors.push(format!(
                "field 'dataset': case '{case}' needs \"label\": the path of its label map"
            ));
        }
        if let (Some(images), Some(label)) = (images, label) {
            out.push((case, CaseEntry { images, label }));
        }
    }
    (Some(out), errors)
}

/// One training case of a raw dataset: its channel files in channel order and its label map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainingCase {
    /// The case identifier (`hippocampus_001`).
    pub id: String,
    /// The image files, in channel order.
    pub images: Vec<PathBuf>,
    /// The label map (it may not exist).
    pub label: PathBuf,
}

/// The case identifier of an `imagesTr` file name `<case>_XXXX<ending>`, if it has that form.
pub(crate) fn channel_file_case_id<'a>(name: &'a str, ending: &str) -> Option<(&'a str, u32)> {
    let stem = name.strip_suffix(ending)?;
    let (case, index) = stem.rsplit_once('_')?;
    if index.len() == 4 && index.bytes().all(|b| b.is_ascii_digit()) {
        Some((case, index.parse().ok()?))
    } else {
        None
    }
}

/// The file names in `folder` (not sub-folders), sorted; an error names the folder.
pub(crate) fn file_names(folder: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(folder).map_err(|e| Error::io(folder, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(folder, e))?;
        if entry.path().is_dir() {
            continue;
        }
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The training cases of the raw dataset in `folder`, as nnU-Net finds them: the explicit
/// `dataset` entry of `dataset.json` (paths relative to `folder` unless absolute, `$VARIABLES`
/// expanded) or, without it, the files `imagesTr/<case>_XXXX<ending>` sorted by case, each with
/// `labelsTr/<case><ending>`. Files are not checked for existence.
pub fn training_cases(folder: &Path, dataset_json: &DatasetJson) -> Result<Vec<TrainingCase>> {
    match &dataset_json.dataset {
        Some(d) => Ok(explicit_cases(folder, d)),
        None => folder_cases(folder, &dataset_json.file_ending),
    }
}

pub(crate) fn explicit_cases(folder: &Path, dataset: &[(String, CaseEntry)]) -> Vec<TrainingCase> {
    let resolve = |p: &str| {
        let expanded = PathBuf::from(expand_vars(p));
        if expanded.is_absolute() {
            expanded
        } else {
            folder.join(expanded)
        }
    };
    dataset
        .iter()
        .map(|(id, c)| TrainingCase {
            id: id.clone(),
            images: c.images.iter().map(|p| resolve(p)).collect(),
            label: resolve(&c.label),
        })
        .collect()
}

pub(crate) fn folder_cases(folder: &Path, ending: &str) -> Result<Vec<TrainingCase>> {
    let images = folder.join("imagesTr");
    let labels = folder.join("labelsTr");
    let mut cases: Vec<TrainingCase> = Vec::new();
    for name in file_names(&images)? {
        let Some((id, _)) = channel_file_case_id(&name, ending) else {
            continue;
        };
        // Names are sorted, so the files of one case are adjacent and in channel order.
        match cases.last_mut() {
            Some(case) if case.id == id => case.images.push(images.join(&name)),
            _ => cases.push(TrainingCase {
                id: id.to_string(),
                images: vec![images.join(&name)],
                label: labels.join(format!("{id}{ending}")),
            }),
        }
    }
    // Sorting by file name may interleave case ids that are prefixes of each other
    // (`a_0000`, `a_b_0000`, `a_0001`): merge them.
    cases.sort_by(|a, b| a.id.cmp(&b.id));
    let mut merged: Vec<TrainingCase> = Vec::with_capacity(cases.len());
    for case in cases {
        match merged.last_mut() {
            Some(last) if last.id == case.id => {
                last.images.extend(case.images);
                last.images.sort();
            }
            _ => merged.push(case),
        }
    }
    Ok(merged)
}

/// Expands `$NAME` and `${NAME}` from the environment; unknown variables are left as written
/// (as Python's `os.path.expandvars` does).
fn expand_vars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match std::env::var(name).ok().filter(|_| !name.is_empty()) {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[pos..pos + 1 + consumed]),
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

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
        return Err(Error::Invalid(format!(
            "no reader handles the file ending '{file_ending}' (see `nnunet list readers`; a \
             plugin may add one)"
        )));
    };
    if tried.is_empty() {
        return Err(Error::invalid_file(
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
                Ok(Err(Error::InvalidFile { reason, .. })) => reason,
                Ok(Err(e)) => e.to_string(),
                Err(panic) => panic,
            };
            format!("{name}: {why}")
        })
        .collect();
    Err(Error::invalid_file(
        file,
        format!(
            "no reader for '{file_ending}' can read this file ({})",
            reasons.join("; ")
        ),
    ))
}

/// Runs `f`, turning a panic into its message so that a bad file never takes the program down.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("the reader failed unexpectedly: {msg}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "channel_names": {"1": "T2", "0": "ADC"},
        "labels": {"background": 0, "peripheral": 1, "transition": 2},
        "numTraining": 32,
        "file_ending": ".nii.gz",
        "name": "Prostate"
    }"#;

    fn parse(text: &str) -> std::result::Result<DatasetJson, Vec<String>> {
        DatasetJson::parse(Path::new("/data/Dataset005/dataset.json"), text)
            .map_err(|e| e.into_iter().map(|e| e.to_string()).collect())
    }

    /// The single error of `text`, which must name the file and `field`.
    fn error(text: &str, field: &str) -> String {
        let errors = parse(text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = errors.into_iter().next().unwrap();
        assert!(e.starts_with("/data/Dataset005/dataset.json: "), "{e}");
        assert!(e.contains(&format!("'{field}'")), "{e}");
        e
    }

    fn with(field: &str, value: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        v[field] = serde_json::from_str(value).unwrap();
        v.to_string()
    }

    fn without(field: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        v.as_object_mut().unwrap().remove(field);
        v.to_string()
    }

    #[test]
    fn good_file_keeps_channel_order() {
        let dj = parse(GOOD).unwrap();
        assert_eq!(
            dj.channel_names,
            vec![("1".into(), "T2".into()), ("0".into(), "ADC".into())]
        );
        assert_eq!(dj.num_channels(), 2);
        assert_eq!(dj.num_training, 32);
        assert_eq!(dj.file_ending, ".nii.gz");
        assert_eq!(dj.labels.all_labels(), vec![0, 1, 2]);
        assert!(!dj.labels.is_region_based());
        assert_eq!(dj.labels.ignore_label(), None);
        assert_eq!(
            dj.other,
            vec![("name".into(), serde_json::json!("Prostate"))]
        );
        assert!(!dj.uses_legacy_modality());
        // Written back with the order kept.
        let text = serde_json::to_string(&dj).unwrap();
        assert!(
            text.starts_with(r#"{"channel_names":{"1":"T2","0":"ADC"},"labels":{"background":0,"#),
            "{text}"
        );
        assert_eq!(parse(&text).unwrap(), dj);
    }

    #[test]
    fn legacy_modality_is_accepted() {
        let text = GOOD.replace("channel_names", "modality");
        let dj = parse(&text).unwrap();
        assert!(dj.uses_legacy_modality());
        assert_eq!(dj.channel_names[0], ("1".into(), "T2".into()));
    }

    #[test]
    fn each_missing_field_has_its_own_error() {
        for field in ["channel_names", "labels", "numTraining", "file_ending"] {
            let e = error(&without(field), field);
            assert!(e.contains("missing required field"), "{e}");
        }
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        v.as_object_mut().unwrap().remove("labels");
        v.as_object_mut().unwrap().remove("numTraining");
        let errors = parse(&v.to_string()).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn each_malformed_field_has_its_own_error() {
        let e = error(&with("numTraining", "\"ten\""), "numTraining");
        assert!(e.contains("non-negative integer"), "{e}");
        error(&with("numTraining", "-3"), "numTraining");
        error(&with("numTraining", "2.5"), "numTraining");
        assert_eq!(parse(&with("numTraining", "4.0")).unwrap().num_training, 4);
        let e = error(&with("file_ending", "3"), "file_ending");
        assert!(e.contains("leading dot"), "{e}");
        error(&with("file_ending", "\"nii.gz\""), "file_ending");
        error(&with("channel_names", "[\"CT\"]"), "channel_names");
        error(&with("channel_names", "{}"), "channel_names");
        let e = error(&with("channel_names", "{\"0\": 5}"), "channel_names");
        assert!(e.contains("channel '0'"), "{e}");
        error(&with("labels", "[0, 1]"), "labels");
        let e = error(
            &with("labels", r#"{"background": 0, "a": "one"}"#),
            "labels",
        );
        assert!(e.contains("label 'a'"), "{e}");
        error(
            &with("overwrite_image_reader_writer", "7"),
            "overwrite_image_reader_writer",
        );
        error(
            &with("regions_class_order", "\"1,2\""),
            "regions_class_order",
        );
        error(&with("dataset", "[1]"), "dataset");
        let e = error(
            &with("dataset", r#"{"c1": {"images": ["a.png"]}}"#),
            "dataset",
        );
        assert!(e.contains("case 'c1'") && e.contains("\"label\""), "{e}");
        let e = parse("{\"labels\": ").unwrap_err().remove(0);
        assert!(e.contains("not valid JSON"), "{e}");
        let e = parse("[1, 2]").unwrap_err().remove(0);
        assert!(e.contains("must be a JSON object"), "{e}");
    }

    #[test]
    fn several_malformed_fields_are_all_reported() {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        v["numTraining"] = serde_json::json!("x");
        v["file_ending"] = serde_json::json!(null);
        v["labels"] = serde_json::json!({"tumor": 1});
        let errors = parse(&v.to_string()).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        let e = DatasetJson::from_file(Path::new("/nonexistent/dataset.json")).unwrap_err();
        assert!(
            e.to_string().starts_with("/nonexistent/dataset.json: "),
            "{e}"
        );
    }

    #[test]
    fn overwrite_reader_none_means_none() {
        let dj = parse(&with("overwrite_image_reader_writer", "\"None\"")).unwrap();
        assert_eq!(dj.overwrite_image_reader_writer, None);
        let dj = parse(&with("overwrite_image_reader_writer", "null")).unwrap();
        assert_eq!(dj.overwrite_image_reader_writer, None);
        let dj = parse(&with("overwrite_image_reader_writer", "\"NibabelIO\"")).unwrap();
        assert_eq!(
            dj.overwrite_image_reader_writer.as_deref(),
            Some("NibabelIO")
        );
    }

    fn label_error(labels: &str, order: Option<&str>) -> String {
        let mut text = with("labels", labels);
        if let Some(order) = order {
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["regions_class_order"] = serde_json::from_str(order).unwrap();
            text = v.to_string();
        }
        error(&text, "labels")
    }

    #[test]
    fn background_rules() {
        let e = label_error(r#"{"tumor": 1}"#, None);
        assert!(e.contains("no 'background' label"), "{e}");
        let e = label_error(r#"{"background": [0], "tumor": 1}"#, None);
        assert!(e.contains("not a list"), "{e}");
        let e = label_error(r#"{"background": 1, "tumor": 2}"#, None);
        assert!(e.contains("must be 0 (got 1)"), "{e}");
    }

    #[test]
    fn region_labels() {
        let labels = r#"{"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                         "enhancing tumor": 3}"#;
        let e = label_error(labels, None);
        assert!(e.contains("needs 'regions_class_order'"), "{e}");
        let e = label_error(labels, Some("[1, 2]"));
        assert!(e.contains("has 2 entries but there are 3 regions"), "{e}");
        let mut v: serde_json::Value = serde_json::from_str(&with("labels", labels)).unwrap();
        v["regions_class_order"] = serde_json::json!([1, 2, 3]);
        let dj = parse(&v.to_string()).unwrap();
        assert!(dj.labels.is_region_based());
        assert_eq!(
            dj.labels.regions(),
            vec![vec![1, 2, 3], vec![2, 3], vec![3]]
        );
        assert_eq!(dj.labels.regions_class_order(), Some(&[1, 2, 3][..]));
        assert_eq!(dj.labels.all_labels(), vec![0, 1, 2, 3]);
        // A one-element list is not a region.
        let dj = parse(&with("labels", r#"{"background": 0, "a": [1]}"#)).unwrap();
        assert!(!dj.labels.is_region_based());
        // Serialized with regions_class_order at the top level.
        let text = serde_json::to_string(&parse(&v.to_string()).unwrap()).unwrap();
        assert!(text.contains(r#""regions_class_order":[1,2,3]"#), "{text}");
    }

    #[test]
    fn ignore_label_rules() {
        let dj = parse(&with("labels", r#"{"background": 0, "a": 1, "ignore": 2}"#)).unwrap();
        assert_eq!(dj.labels.ignore_label(), Some(2));
        assert_eq!(dj.labels.all_labels(), vec![0, 1]);
        assert_eq!(dj.labels.expected_values(), vec![0, 1, 2]);
        let e = label_error(r#"{"background": 0, "a": 1, "ignore": 5}"#, None);
        assert!(e.contains("ignore label must be the highest"), "{e}");
        let e = label_error(r#"{"background": 0, "ignore": 1, "a": 2}"#, None);
        assert!(e.contains("ignore label must be the highest"), "{e}");
        let e = label_error(r#"{"background": 0, "a": 1, "ignore": [2, 3]}"#, None);
        assert!(e.contains("ignore label must be an integer"), "{e}");
        // Region-based with an ignore label: the ignore entry is not a region.
        let mut v: serde_json::Value = serde_json::from_str(&with(
            "labels",
            r#"{"background": 0, "wt": [1, 2], "tc": 2, "ignore": 3}"#,
        ))
        .unwrap();
        v["regions_class_order"] = serde_json::json!([1, 2]);
        let dj = parse(&v.to_string()).unwrap();
        assert_eq!(dj.labels.regions(), vec![vec![1, 2], vec![2]]);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let text = GOOD.replace(r#""transition": 2"#, r#""transition": 2, "peripheral": 3"#);
        let e = error(&text, "labels");
        assert!(e.contains("'peripheral' is declared more than once"), "{e}");
        let text = with(
            "dataset",
            r#"{"a": {"images": ["x.png"], "label": "y.png"}}"#,
        )
        .replace(
            r#""dataset":{"#,
            r#""dataset":{"a": {"images": ["z.png"], "label": "w.png"},"#,
        );
        let e = error(&text, "dataset");
        assert!(e.contains("case 'a' is listed more than once"), "{e}");
    }

    #[test]
    fn explicit_cases_resolve_paths() {
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var("NNUNET_TEST_DATA_ROOT", "/mnt/data") };
        let text = with(
            "dataset",
            r#"{"b": {"images": ["imgs/b0.png", "$NNUNET_TEST_DATA_ROOT/b1.png"], "label": "/abs/b.png"},
                "a": {"images": ["${NNUNET_TEST_DATA_ROOT}/a.png", "$UNSET_VAR_XYZ/a1.png"], "label": "l/a.png"}}"#,
        );
        let dj = parse(&text).unwrap();
        let cases = training_cases(Path::new("/raw/D1"), &dj).unwrap();
        assert_eq!(cases[0].id, "b");
        assert_eq!(
            cases[0].images,
            vec![
                PathBuf::from("/raw/D1/imgs/b0.png"),
                PathBuf::from("/mnt/data/b1.png")
            ]
        );
        assert_eq!(cases[0].label, PathBuf::from("/abs/b.png"));
        assert_eq!(cases[1].images[0], PathBuf::from("/mnt/data/a.png"));
        assert_eq!(
            cases[1].images[1],
            PathBuf::from("/raw/D1/$UNSET_VAR_XYZ/a1.png")
        );
        assert_eq!(cases[1].label, PathBuf::from("/raw/D1/l/a.png"));
    }

    #[test]
    fn folder_cases_follow_nnunet_naming() {
        let tmp = tempfile::tempdir().unwrap();
        let images = tmp.path().join("imagesTr");
        std::fs::create_dir_all(&images).unwrap();
        for name in [
            "b_0001.png",
            "b_0000.png",
            "a_0000.png",
            "a_b_0000.png",
            "a_0001.png",
            "notes.txt",
            "c.png",
            "d_000.png",
        ] {
            std::fs::write(images.join(name), b"").unwrap();
        }
        let dj = parse(&with("file_ending", "\".png\"")).unwrap();
        let cases = training_cases(tmp.path(), &dj).unwrap();
        let ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "a_b", "b"]);
        assert_eq!(
            cases[0].images,
            vec![images.join("a_0000.png"), images.join("a_0001.png")]
        );
        assert_eq!(cases[2].label, tmp.path().join("labelsTr/b.png"));
        let err = training_cases(Path::new("/nonexistent"), &dj).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/imagesTr"), "{err}");
    }
}
