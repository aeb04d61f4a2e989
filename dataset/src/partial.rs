//! Reading `dataset.json` field by field, collecting one error per malformed field instead of
//! stopping at the first.

use std::collections::BTreeSet;

use crate::dataset_json::{CaseEntry, DatasetJson};
use crate::json::Json;
use crate::labels::{LabelValue, Labels};

/// `dataset.json` as far as it could be read, with one error per malformed field. The checks of
/// the dataset use what could be read even when some fields are broken.
#[derive(Debug, Default)]
pub(crate) struct Partial {
    /// `channel_names` (or the legacy `modality`), if valid.
    pub channel_names: Option<Vec<(String, String)>>,
    /// Whether the channels were given under the legacy key `modality`.
    pub legacy_modality: bool,
    /// `labels` with `regions_class_order`, if both are valid.
    pub labels: Option<Labels>,
    /// `numTraining`, if valid.
    pub num_training: Option<usize>,
    /// `file_ending`, if valid.
    pub file_ending: Option<String>,
    /// The cases of the explicit `dataset` entry that could be read.
    pub dataset: Option<Vec<(String, CaseEntry)>>,
    /// The reader named by `overwrite_image_reader_writer`, if any.
    pub overwrite_image_reader_writer: Option<String>,
    /// Every key not read above, in file order.
    pub other: Vec<(String, serde_json::Value)>,
    /// Whether the key `dataset` is present (even if malformed).
    pub has_dataset: bool,
    /// One message per malformed or missing field, naming the field.
    pub errors: Vec<String>,
}

/// The fields every `dataset.json` needs.
const REQUIRED: [&str; 4] = ["labels", "channel_names", "numTraining", "file_ending"];

/// The keys [`Partial`] reads itself; every other key is kept in [`Partial::other`].
const KNOWN: [&str; 8] = [
    "channel_names",
    "modality",
    "labels",
    "regions_class_order",
    "numTraining",
    "file_ending",
    "overwrite_image_reader_writer",
    "dataset",
];

/// The value of the last entry named `name` (the one a JSON reader keeps).
fn take(entries: &[(String, Json)], name: &str) -> Option<Json> {
    entries
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

impl Partial {
    /// Reads the text of `dataset.json`, every field on its own.
    pub(crate) fn parse(text: &str) -> Self {
        let mut p = Partial::default();
        let Some(entries) = p.read_object(text) else {
            return p;
        };
        p.read_channels(&entries);
        p.read_labels(&entries);
        p.read_num_training(&entries);
        p.read_file_ending(&entries);
        p.read_reader_name(&entries);
        if let Some(v) = take(&entries, "dataset") {
            p.has_dataset = true;
            let (cases, errors) = parse_dataset(v);
            p.dataset = cases;
            p.errors.extend(errors);
        }
        let mut kept = BTreeSet::new();
        for (k, v) in entries {
            if !KNOWN.contains(&k.as_str()) && kept.insert(k.clone()) {
                p.other.push((k, v.into_value()));
            }
        }
        p
    }

    /// The top-level entries of the JSON object in `text`, in file order; `None` (with an error)
    /// when it is not valid JSON or not an object. Keys given twice are errors.
    fn read_object(&mut self, text: &str) -> Option<Vec<(String, Json)>> {
        let json: Json = match serde_json::from_str(text) {
            Ok(j) => j,
            Err(e) => {
                self.errors.push(format!("not valid JSON: {e}"));
                return None;
            }
        };
        let Json::Object(entries) = json else {
            self.errors.push(format!(
                "must be a JSON object with the fields {}, but is {}",
                REQUIRED.join(", "),
                json.kind()
            ));
            return None;
        };
        let mut seen = BTreeSet::new();
        for (key, _) in &entries {
            if !seen.insert(key.as_str()) {
                self.errors
                    .push(format!("field '{key}' appears more than once"));
            }
        }
        Some(entries)
    }

    /// `channel_names`, or the legacy `modality`.
    fn read_channels(&mut self, entries: &[(String, Json)]) {
        let channels = match (take(entries, "channel_names"), take(entries, "modality")) {
            (Some(v), _) => Some(("channel_names", v)),
            (None, Some(v)) => {
                self.legacy_modality = true;
                Some(("modality", v))
            }
            (None, None) => None,
        };
        match channels {
            None => self.errors.push(
                "missing required field 'channel_names' (for example {\"0\": \"CT\"})".into(),
            ),
            Some((field, value)) => match parse_channel_names(field, value) {
                Ok(c) => self.channel_names = Some(c),
                Err(e) => self.errors.push(e),
            },
        }
    }

    /// `regions_class_order`, if present: the list, and whether it is valid (an error is recorded
    /// when it is not).
    fn read_regions_class_order(&mut self, entries: &[(String, Json)]) -> (Option<Vec<i64>>, bool) {
        match take(entries, "regions_class_order") {
            None | Some(Json::Null) => (None, true),
            Some(Json::Array(items)) => {
                let ints: Option<Vec<i64>> = items.iter().map(Json::as_int).collect();
                if ints.is_none() {
                    self.errors.push(
                        "field 'regions_class_order' must be a list of integer labels".into(),
                    );
                }
                let ok = ints.is_some();
                (ints, ok)
            }
            Some(other) => {
                self.errors.push(format!(
                    "field 'regions_class_order' must be a list of integer labels, not {}",
                    other.kind()
                ));
                (None, false)
            }
        }
    }

    /// `regions_class_order`, then `labels`, checked together by the label rules.
    fn read_labels(&mut self, entries: &[(String, Json)]) {
        let (regions_class_order, order_ok) = self.read_regions_class_order(entries);
        match take(entries, "labels") {
            None => self.errors.push(
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
                        self.labels = Some(labels);
                    }
                    self.errors
                        .extend(problems.into_iter().map(|m| format!("field 'labels': {m}")));
                }
                Err(e) => self.errors.push(e),
            },
        }
    }

    /// `numTraining`: a non-negative integer.
    fn read_num_training(&mut self, entries: &[(String, Json)]) {
        match take(entries, "numTraining") {
            None => self
                .errors
                .push("missing required field 'numTraining' (the number of training cases)".into()),
            Some(v) => match v.as_int().and_then(|n| usize::try_from(n).ok()) {
                Some(n) => self.num_training = Some(n),
                None => self.errors.push(format!(
                    "field 'numTraining' must be a non-negative integer, not {}",
                    describe(&v)
                )),
            },
        }
    }

    /// `file_ending`: a file ending with its leading dot.
    fn read_file_ending(&mut self, entries: &[(String, Json)]) {
        match take(entries, "file_ending") {
            None => self.errors.push(
                "missing required field 'file_ending' (for example \".nii.gz\" or \".png\")".into(),
            ),
            Some(Json::String(s)) if s.len() > 1 && s.starts_with('.') => {
                self.file_ending = Some(s)
            }
            Some(v) => self.errors.push(format!(
                "field 'file_ending' must be a file ending with its leading dot, such as \
                 \".nii.gz\" or \".png\", not {}",
                describe(&v)
            )),
        }
    }

    /// `overwrite_image_reader_writer`: a reader name; `null` and `"None"` mean none.
    fn read_reader_name(&mut self, entries: &[(String, Json)]) {
        match take(entries, "overwrite_image_reader_writer") {
            None | Some(Json::Null) => {}
            Some(Json::String(s)) if s == "None" => {}
            Some(Json::String(s)) if !s.trim().is_empty() => {
                self.overwrite_image_reader_writer = Some(s)
            }
            Some(v) => self.errors.push(format!(
                "field 'overwrite_image_reader_writer' must be the name of a reader (see `nnunet \
                 list readers`), not {}",
                describe(&v)
            )),
        }
    }

    /// The full `dataset.json`, when every required field could be read.
    pub(crate) fn complete(self) -> Option<DatasetJson> {
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

/// `channel_names` (or `modality`, named by `field`): a non-empty object of channel names.
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

/// The entries of `labels`: an object from name to an integer label or a list of them.
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
