//! The `labels` of `dataset.json` and the rules nnU-Net's label manager checks them by.

use std::collections::BTreeSet;
use std::fmt;

use nnunet_core::error::{Error, Result};

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
    pub(crate) entries: Vec<(String, LabelValue)>,
    pub(crate) regions_class_order: Option<Vec<i64>>,
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
            Err(Error::dataset(problems.join("; ")))
        }
    }

    /// Every broken rule, in nnU-Net's order of checking.
    pub(crate) fn problems(&self) -> Vec<String> {
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

    /// The foreground classes, as nnU-Net evaluates them: the regions in `dataset.json` order
    /// when the labels are region-based (an integer entry stays a label), otherwise the
    /// foreground labels, sorted; never `ignore` or background.
    pub fn foreground_classes(&self) -> Vec<LabelOrRegion> {
        if !self.is_region_based() {
            let labels = self.foreground_labels().into_iter();
            return labels.map(LabelOrRegion::Label).collect();
        }
        self.entries
            .iter()
            .filter(|(name, _)| name != "ignore")
            .filter_map(|(_, value)| match value {
                LabelValue::Label(0) => None,
                LabelValue::Label(v) => Some(LabelOrRegion::Label(*v)),
                LabelValue::Region(v) if !v.is_empty() && v.iter().all(|x| *x == 0) => None,
                LabelValue::Region(v) => Some(LabelOrRegion::Region(v.clone())),
            })
            .collect()
    }
}

/// One class of a dataset: a label, or a region (the union of several labels). What a metric is
/// computed on and what training samples locations of.
///
/// The two are distinct even with one label: `Label(3)` is nnU-Net's integer key `"3"`,
/// `Region(vec![3])` its tuple key `"(3,)"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LabelOrRegion {
    /// One label value.
    Label(i64),
    /// A set of label values; the mask is their union.
    Region(Vec<i64>),
}

impl LabelOrRegion {
    /// The label values whose union is the mask.
    pub fn labels(&self) -> &[i64] {
        match self {
            LabelOrRegion::Label(v) => std::slice::from_ref(v),
            LabelOrRegion::Region(v) => v,
        }
    }

    /// The key nnU-Net writes in `summary.json`: Python's `str()` of the int or tuple.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// Parses a key of `summary.json` back (`"1"`, `"(1, 2)"`, `"(3,)"`).
    pub fn from_key(key: &str) -> Option<Self> {
        let key = key.trim();
        if let Ok(v) = key.parse::<i64>() {
            return Some(LabelOrRegion::Label(v));
        }
        let inner = key.strip_prefix('(')?.strip_suffix(')')?;
        let values = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<i64>().ok())
            .collect::<Option<Vec<_>>>()?;
        Some(LabelOrRegion::Region(values))
    }

    /// Whether nnU-Net leaves this entry out of the foreground mean (only the integer label 0).
    pub fn is_background(&self) -> bool {
        matches!(self, LabelOrRegion::Label(0))
    }
}

impl fmt::Display for LabelOrRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelOrRegion::Label(v) => write!(f, "{v}"),
            LabelOrRegion::Region(v) if v.len() == 1 => write!(f, "({},)", v[0]),
            LabelOrRegion::Region(v) => {
                let parts: Vec<String> = v.iter().map(i64::to_string).collect();
                write!(f, "({})", parts.join(", "))
            }
        }
    }
}
