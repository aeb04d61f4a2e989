//! `summary.json`: the aggregate of the cases (numpy-exact means), its text and its parsing.

use std::path::{Path, PathBuf};

use serde_json::Value;

use nnunet_core::compat::json::{JsonValue, parse_float, quote_numbers};
use nnunet_core::compat::statistics::{nanmean, np_mean};
use nnunet_core::error::{Error, Result};

use super::{CaseMetrics, LabelOrRegion, METRIC_NAMES, MeanMetrics, Metrics, unique};

/// nnU-Net's `summary.json`: the metrics of every case, their mean per label or region and the
/// foreground mean.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// One entry per case, in the order the cases were evaluated (sorted by file name).
    pub metric_per_case: Vec<CaseMetrics>,
    /// Mean over cases per label or region (NaN skipped).
    pub mean: Vec<(LabelOrRegion, MeanMetrics)>,
    /// Mean of [`Summary::mean`] over every entry but label 0.
    pub foreground_mean: MeanMetrics,
}

impl Summary {
    /// Aggregates per-case metrics as nnU-Net does. Every case must hold every entry of `regions`.
    pub fn from_cases(cases: Vec<CaseMetrics>, regions: &[LabelOrRegion]) -> Self {
        let regions = unique(regions);
        let mean: Vec<(LabelOrRegion, MeanMetrics)> = regions
            .into_iter()
            .map(|region| {
                let per_case: Vec<[f64; 8]> = cases
                    .iter()
                    .filter_map(|c| c.metrics.iter().find(|(r, _)| *r == region))
                    .map(|(_, m)| m.as_floats())
                    .collect();
                let mut out = [0.0; 8];
                for (k, o) in out.iter_mut().enumerate() {
                    let column: Vec<f64> = per_case.iter().map(|m| m[k]).collect();
                    *o = nanmean(&column);
                }
                (region, MeanMetrics::from_floats(out))
            })
            .collect();
        let mut fg = [0.0; 8];
        for (k, o) in fg.iter_mut().enumerate() {
            let column: Vec<f64> = mean
                .iter()
                .filter(|(r, _)| !r.is_background())
                .map(|(_, m)| m.as_floats()[k])
                .collect();
            *o = np_mean(&column);
        }
        Summary {
            metric_per_case: cases,
            mean,
            foreground_mean: MeanMetrics::from_floats(fg),
        }
    }

    /// The mean metrics of one label or region.
    pub fn mean_of(&self, region: &LabelOrRegion) -> Option<&MeanMetrics> {
        self.mean.iter().find(|(r, _)| r == region).map(|(_, m)| m)
    }

    /// The text nnU-Net's `save_summary_json` writes (no trailing newline).
    pub fn to_json(&self) -> String {
        let metrics_obj = |m: &[JsonValue; 8]| {
            JsonValue::Object(
                METRIC_NAMES
                    .iter()
                    .zip(m.iter())
                    .map(|(n, v)| (n.to_string(), v.clone()))
                    .collect(),
            )
        };
        let mean_obj = |m: &MeanMetrics| metrics_obj(&m.as_floats().map(JsonValue::Float));
        let case_obj = |m: &Metrics| {
            metrics_obj(&[
                JsonValue::Float(m.dice),
                JsonValue::Float(m.iou),
                JsonValue::Int(m.tp as i64),
                JsonValue::Int(m.fp as i64),
                JsonValue::Int(m.fn_ as i64),
                JsonValue::Int(m.tn as i64),
                JsonValue::Int(m.n_pred as i64),
                JsonValue::Int(m.n_ref as i64),
            ])
        };
        let per_case = self
            .metric_per_case
            .iter()
            .map(|c| {
                JsonValue::Object(vec![
                    (
                        "metrics".into(),
                        JsonValue::Object(
                            c.metrics
                                .iter()
                                .map(|(r, m)| (r.key(), case_obj(m)))
                                .collect(),
                        ),
                    ),
                    (
                        "prediction_file".into(),
                        JsonValue::Str(c.prediction_file.to_string_lossy().into_owned()),
                    ),
                    (
                        "reference_file".into(),
                        JsonValue::Str(c.reference_file.to_string_lossy().into_owned()),
                    ),
                ])
            })
            .collect();
        let root = JsonValue::Object(vec![
            ("foreground_mean".into(), mean_obj(&self.foreground_mean)),
            (
                "mean".into(),
                JsonValue::Object(
                    self.mean
                        .iter()
                        .map(|(r, m)| (r.key(), mean_obj(m)))
                        .collect(),
                ),
            ),
            ("metric_per_case".into(), JsonValue::Array(per_case)),
        ]);
        root.to_python_text()
    }

    /// Writes [`Summary::to_json`] to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()).map_err(|e| Error::io(path, e))
    }

    /// Reads a `summary.json` written by nnU-Net or by [`Summary::write_json`] (bare `NaN`,
    /// `Infinity` and `-Infinity` accepted).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text).map_err(|reason| Error::evaluation_file(path, reason))
    }

    /// Parses the text of a `summary.json`; the error says what is wrong.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let value: Value = serde_json::from_str(&quote_numbers(text))
            .map_err(|e| format!("not valid JSON: {e}"))?;
        let root = value
            .as_object()
            .ok_or("the summary must be a JSON object")?;
        let get = |key: &str| root.get(key).ok_or(format!("no '{key}' entry"));
        let foreground_mean = parse_mean(get("foreground_mean")?, "foreground_mean")?;
        let mean = get("mean")?
            .as_object()
            .ok_or("'mean' must be an object")?
            .iter()
            .map(|(k, v)| Ok((parse_key(k)?, parse_mean(v, &format!("mean/{k}"))?)))
            .collect::<std::result::Result<Vec<_>, String>>()?;
        let metric_per_case = get("metric_per_case")?
            .as_array()
            .ok_or("'metric_per_case' must be a list")?
            .iter()
            .enumerate()
            .map(|(i, case)| parse_case(case, i))
            .collect::<std::result::Result<Vec<_>, String>>()?;
        Ok(Summary {
            metric_per_case,
            mean,
            foreground_mean,
        })
    }
}

/// A `summary.json` key as a label or region; the error names the key.
fn parse_key(key: &str) -> std::result::Result<LabelOrRegion, String> {
    LabelOrRegion::from_key(key)
        .ok_or_else(|| format!("'{key}' is neither a label (\"1\") nor a region (\"(1, 2)\")"))
}

/// A number as [`quote_numbers`] left it (`NaN`, `Infinity` and `-Infinity` included).
fn metric_values(value: &Value, at: &str) -> std::result::Result<[f64; 8], String> {
    let obj = value
        .as_object()
        .ok_or(format!("'{at}' must be an object"))?;
    let mut out = [0.0; 8];
    for (o, name) in out.iter_mut().zip(METRIC_NAMES) {
        let v = obj.get(name).ok_or(format!("'{at}' has no '{name}'"))?;
        *o = parse_float(v).ok_or(format!("'{at}/{name}' is not a number"))?;
    }
    Ok(out)
}

/// The mean metrics at `at` of a `summary.json`.
fn parse_mean(value: &Value, at: &str) -> std::result::Result<MeanMetrics, String> {
    metric_values(value, at).map(MeanMetrics::from_floats)
}

/// Entry `i` of `metric_per_case`: its files and its metrics (counts must be whole numbers).
fn parse_case(case: &Value, i: usize) -> std::result::Result<CaseMetrics, String> {
    let at = format!("metric_per_case[{i}]");
    let obj = case
        .as_object()
        .ok_or(format!("'{at}' must be an object"))?;
    let file = |key: &str| {
        obj.get(key)
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .ok_or(format!("'{at}' has no '{key}' text"))
    };
    let metrics = obj
        .get("metrics")
        .and_then(Value::as_object)
        .ok_or(format!("'{at}' has no 'metrics' object"))?
        .iter()
        .map(|(k, v)| {
            let here = format!("{at}/metrics/{k}");
            let f = metric_values(v, &here)?;
            let count = |x: f64, name: &str| {
                if x >= 0.0 && x.fract() == 0.0 && x < 2f64.powi(63) {
                    Ok(x as u64)
                } else {
                    Err(format!("'{here}/{name}' must be a count, not {x}"))
                }
            };
            let m = Metrics {
                dice: f[0],
                iou: f[1],
                tp: count(f[2], "TP")?,
                fp: count(f[3], "FP")?,
                fn_: count(f[4], "FN")?,
                tn: count(f[5], "TN")?,
                n_pred: count(f[6], "n_pred")?,
                n_ref: count(f[7], "n_ref")?,
            };
            Ok((parse_key(k)?, m))
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    Ok(CaseMetrics {
        reference_file: file("reference_file")?,
        prediction_file: file("prediction_file")?,
        metrics,
    })
}
