//! Reading plans files (`nnUNetPlans.json`, …): typed access to what preprocessing, training and
//! prediction need, with `inherits_from` resolved as nnU-Net resolves it. The JSON itself stays the
//! source of truth, so that fields we do not interpret survive a round trip.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::fingerprint::IntensityProperties;
use crate::resampling::ResamplingSettings;
use nnunet_core::compat::json::write_json;
use nnunet_core::error::{Error, Result};

/// A plans file.
#[derive(Clone, Debug)]
pub struct Plans {
    json: Map<String, Value>,
    path: PathBuf,
}

/// One configuration of a plans file (`2d`, `3d_fullres`, …) with its parents merged in.
#[derive(Clone, Debug)]
pub struct Configuration {
    /// The configuration's name.
    pub name: String,
    /// Its resolved JSON (parent fields overwritten by the child's).
    pub json: Map<String, Value>,
    path: PathBuf,
}

impl Plans {
    /// Reads a plans file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::plans_file(path, format!("not valid JSON: {e}")))?;
        Self::from_value(value, path)
    }

    /// Plans from a JSON value; `path` names it in error messages.
    pub fn from_value(value: Value, path: &Path) -> Result<Self> {
        match value {
            Value::Object(json) => {
                let plans = Plans {
                    json,
                    path: path.to_path_buf(),
                };
                plans.configurations_object()?;
                Ok(plans)
            }
            _ => Err(Error::plans_file(
                path,
                "a plans file must hold a JSON object",
            )),
        }
    }

    /// The whole JSON.
    pub fn json(&self) -> &Map<String, Value> {
        &self.json
    }

    /// The file the plans were read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn invalid(&self, what: impl Into<String>) -> Error {
        Error::plans_file(&self.path, what)
    }

    fn configurations_object(&self) -> Result<&Map<String, Value>> {
        self.json
            .get("configurations")
            .and_then(Value::as_object)
            .ok_or_else(|| self.invalid("no 'configurations' object"))
    }

    /// `plans_name`.
    pub fn plans_name(&self) -> Result<&str> {
        self.str_field("plans_name")
    }

    /// `dataset_name`.
    pub fn dataset_name(&self) -> Result<&str> {
        self.str_field("dataset_name")
    }

    /// `image_reader_writer`: the reader the plans were made with.
    pub fn image_reader_writer(&self) -> Result<&str> {
        self.str_field("image_reader_writer")
    }

    fn str_field(&self, key: &str) -> Result<&str> {
        self.json
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| self.invalid(format!("'{key}' is missing or not a string")))
    }

    /// `transpose_forward`: the axis order preprocessing moves the data into.
    pub fn transpose_forward(&self) -> Result<[usize; 3]> {
        self.axis_permutation("transpose_forward")
    }

    /// `transpose_backward`: the inverse of [`Plans::transpose_forward`].
    pub fn transpose_backward(&self) -> Result<[usize; 3]> {
        self.axis_permutation("transpose_backward")
    }

    fn axis_permutation(&self, key: &str) -> Result<[usize; 3]> {
        let values = self
            .json
            .get(key)
            .map(usize_list)
            .ok_or_else(|| self.invalid(format!("'{key}' is missing")))?
            .ok_or_else(|| self.invalid(format!("'{key}' must be a list of axis indices")))?;
        let mut out = [0; 3];
        let mut seen = [false; 3];
        if values.len() != 3 {
            return Err(self.invalid(format!("'{key}' must list 3 axes, not {}", values.len())));
        }
        for (slot, &axis) in out.iter_mut().zip(&values) {
            if axis > 2 || seen[axis] {
                return Err(self.invalid(format!(
                    "'{key}' {values:?} is not a permutation of 0, 1, 2"
                )));
            }
            seen[axis] = true;
            *slot = axis;
        }
        Ok(out)
    }

    /// Names of the configurations, in file order.
    pub fn configuration_names(&self) -> Vec<String> {
        self.configurations_object()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A configuration with `inherits_from` resolved (the child's fields overwrite the parent's);
    /// an unknown name lists the known ones, and an inheritance cycle is an error.
    pub fn configuration(&self, name: &str) -> Result<Configuration> {
        let configurations = self.configurations_object()?;
        let mut chain: Vec<&str> = Vec::new();
        let mut current = name;
        loop {
            if chain.contains(&current) {
                return Err(self.invalid(format!(
                    "configuration '{name}' inherits in a cycle: {} -> {current}",
                    chain.join(" -> ")
                )));
            }
            let Some(entry) = configurations.get(current) else {
                let known = configurations
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(if chain.is_empty() {
                    self.invalid(format!("has no configuration '{name}' (it has: {known})"))
                } else {
                    self.invalid(format!(
                        "configuration '{}' inherits from '{current}', which does not exist",
                        chain[chain.len() - 1]
                    ))
                });
            };
            chain.push(current);
            match entry.get("inherits_from").and_then(Value::as_str) {
                Some(parent) => current = parent,
                None => break,
            }
        }
        let mut json = Map::new();
        for config in chain.iter().rev() {
            if let Some(Value::Object(fields)) = configurations.get(*config) {
                for (k, v) in fields {
                    json.insert(k.clone(), v.clone());
                }
            }
        }
        json.remove("inherits_from");
        Ok(Configuration {
            name: name.to_string(),
            json,
            path: self.path.clone(),
        })
    }

    /// The foreground intensity statistics of channel `channel`.
    pub fn intensity_properties(&self, channel: usize) -> Result<IntensityProperties> {
        let all = self
            .json
            .get("foreground_intensity_properties_per_channel")
            .and_then(Value::as_object)
            .ok_or_else(|| self.invalid("no 'foreground_intensity_properties_per_channel'"))?;
        let props = all
            .get(&channel.to_string())
            .and_then(Value::as_object)
            .ok_or_else(|| {
                self.invalid(format!(
                    "no foreground intensity properties for channel {channel}"
                ))
            })?;
        let get = |key: &str| {
            props.get(key).and_then(Value::as_f64).ok_or_else(|| {
                self.invalid(format!(
                    "foreground intensity properties of channel {channel} lack '{key}'"
                ))
            })
        };
        Ok(IntensityProperties {
            mean: get("mean")?,
            median: get("median")?,
            std: get("std")?,
            min: get("min")?,
            max: get("max")?,
            percentile_00_5: get("percentile_00_5")?,
            percentile_99_5: get("percentile_99_5")?,
        })
    }
}

impl Configuration {
    fn invalid(&self, what: impl Into<String>) -> Error {
        Error::plans_file(
            &self.path,
            format!("configuration '{}': {}", self.name, what.into()),
        )
    }

    fn field(&self, key: &str) -> Result<&Value> {
        self.json
            .get(key)
            .ok_or_else(|| self.invalid(format!("'{key}' is missing")))
    }

    /// `data_identifier`: the folder of the preprocessed data.
    pub fn data_identifier(&self) -> Result<&str> {
        self.field("data_identifier")?
            .as_str()
            .ok_or_else(|| self.invalid("'data_identifier' must be a string"))
    }

    /// `spacing`: the target spacing, in transposed order (2 values for `2d`).
    pub fn spacing(&self) -> Result<Vec<f64>> {
        let v = self.field("spacing")?;
        v.as_array()
            .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
            .filter(|s| (2..=3).contains(&s.len()) && s.iter().all(|x| *x > 0.0))
            .ok_or_else(|| self.invalid("'spacing' must list 2 or 3 positive numbers"))
    }

    /// `patch_size` (2 or 3 values).
    pub fn patch_size(&self) -> Result<Vec<usize>> {
        usize_list(self.field("patch_size")?)
            .filter(|s| (2..=3).contains(&s.len()) && s.iter().all(|x| *x > 0))
            .ok_or_else(|| self.invalid("'patch_size' must list 2 or 3 positive integers"))
    }

    /// `batch_size`.
    pub fn batch_size(&self) -> Result<usize> {
        self.field("batch_size")?
            .as_u64()
            .filter(|b| *b > 0)
            .map(|b| b as usize)
            .ok_or_else(|| self.invalid("'batch_size' must be a positive integer"))
    }

    /// `normalization_schemes`, one per channel.
    pub fn normalization_schemes(&self) -> Result<Vec<String>> {
        self.field("normalization_schemes")?
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| self.invalid("'normalization_schemes' must be a list of names"))
    }

    /// `use_mask_for_norm`, one per channel.
    pub fn use_mask_for_norm(&self) -> Result<Vec<bool>> {
        self.field("use_mask_for_norm")?
            .as_array()
            .and_then(|a| a.iter().map(Value::as_bool).collect::<Option<Vec<_>>>())
            .ok_or_else(|| self.invalid("'use_mask_for_norm' must be a list of booleans"))
    }

    /// The resampling arguments stored under `key` (`resampling_fn_data_kwargs`, …).
    pub fn resampling_kwargs(&self, key: &str) -> Result<ResamplingSettings> {
        let obj = self
            .field(key)?
            .as_object()
            .ok_or_else(|| self.invalid(format!("'{key}' must be an object")))?;
        let order = |name: &str, default: usize| -> Result<usize> {
            match obj.get(name) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .filter(|o| *o <= 5)
                    .map(|o| o as usize)
                    .ok_or_else(|| self.invalid(format!("'{key}.{name}' must be 0 to 5"))),
            }
        };
        let force_separate_z = match obj.get("force_separate_z") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                return Err(self.invalid(format!(
                    "'{key}.force_separate_z' must be true, false or null"
                )));
            }
        };
        Ok(ResamplingSettings {
            order: order("order", 3)?,
            order_z: order("order_z", 0)?,
            force_separate_z,
        })
    }

    /// `batch_dice`.
    pub fn batch_dice(&self) -> bool {
        self.json
            .get("batch_dice")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// `previous_stage` (cascade), if any.
    pub fn previous_stage(&self) -> Option<&str> {
        self.json.get("previous_stage").and_then(Value::as_str)
    }

    /// `next_stage`: the configurations fed by this one's predictions (a name or a list of
    /// names in the plans; empty when there is none).
    pub fn next_stages(&self) -> Vec<String> {
        match self.json.get("next_stage") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether this is a 2D configuration (its spacing has 2 values).
    pub fn is_2d(&self) -> Result<bool> {
        Ok(self.spacing()?.len() == 2)
    }
}

/// Writes new plans to `path`. As in nnU-Net, configurations of an existing plans file there that
/// the new plans do not have (custom configurations a user added) are kept, after the new ones.
pub fn write_plans_merged(path: &Path, mut plans: Value) -> Result<()> {
    if path.is_file()
        && let Ok(old) = Plans::from_file(path)
        && let (Ok(old_configs), Some(Value::Object(new_configs))) =
            (old.configurations_object(), plans.get_mut("configurations"))
    {
        for (name, config) in old_configs {
            if !new_configs.contains_key(name) {
                new_configs.insert(name.clone(), config.clone());
            }
        }
    }
    write_json(path, &plans)
}

/// A JSON list of non-negative integers (integral floats such as `64.0` accepted).
fn usize_list(v: &Value) -> Option<Vec<usize>> {
    v.as_array()?
        .iter()
        .map(|x| {
            x.as_u64().map(|u| u as usize).or_else(|| {
                x.as_f64()
                    .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                    .map(|f| f as usize)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plans() -> Plans {
        Plans::from_value(
            json!({
                "plans_name": "nnUNetPlans",
                "transpose_forward": [2, 0, 1],
                "transpose_backward": [1, 2, 0],
                "configurations": {
                    "3d_lowres": {"data_identifier": "low", "spacing": [2.0, 2.0, 2.0], "next_stage": "3d_cascade_fullres"},
                    "3d_fullres": {"data_identifier": "full", "spacing": [1.0, 1.0, 1.0], "batch_size": 2},
                    "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
                    "loop_a": {"inherits_from": "loop_b"},
                    "loop_b": {"inherits_from": "loop_a"}
                }
            }),
            Path::new("plans.json"),
        )
        .unwrap()
    }

    #[test]
    fn inheritance_is_resolved() {
        let p = plans();
        let c = p.configuration("3d_cascade_fullres").unwrap();
        assert_eq!(c.data_identifier().unwrap(), "full");
        assert_eq!(c.batch_size().unwrap(), 2);
        assert!(c.next_stages().is_empty());
        let low = p.configuration("3d_lowres").unwrap();
        assert_eq!(low.next_stages(), ["3d_cascade_fullres"]);
        assert_eq!(c.previous_stage(), Some("3d_lowres"));
        assert!(!c.json.contains_key("inherits_from"));
        assert_eq!(p.transpose_forward().unwrap(), [2, 0, 1]);
    }

    #[test]
    fn cycles_and_unknown_names_are_errors() {
        let p = plans();
        let e = p.configuration("loop_a").unwrap_err().to_string();
        assert!(e.contains("cycle"), "{e}");
        let e = p.configuration("2d").unwrap_err().to_string();
        assert!(e.contains("3d_fullres"), "{e}");
    }
}
