//! An order-keeping JSON value, so that `dataset.json` keeps the order (and duplicates) of its
//! keys while it is read.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value that keeps the order (and duplicates) of object keys.
#[derive(Clone, Debug)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// `Visitor` methods that turn one scalar into a [`Json`] with the given constructor.
macro_rules! scalar_visitors {
    ($($name:ident($t:ty) => $make:expr),* $(,)?) => {$(
        fn $name<E>(self, v: $t) -> std::result::Result<Json, E> {
            Ok($make(v))
        }
    )*};
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
            scalar_visitors! {
                visit_bool(bool) => Json::Bool,
                visit_i64(i64) => |v: i64| Json::Int(v.into()),
                visit_u64(u64) => |v: u64| Json::Int(v.into()),
                visit_f64(f64) => Json::Float,
                visit_str(&str) => |v: &str| Json::String(v.to_string()),
                visit_string(String) => Json::String,
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
    /// What kind of value it is, for messages (`a string`, `an object`, …).
    pub(crate) fn kind(&self) -> &'static str {
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
    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Json::Int(v) => i64::try_from(*v).ok(),
            Json::Float(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Some(*v as i64),
            _ => None,
        }
    }

    /// The value as a [`serde_json::Value`] (integers beyond the `i64`/`u64` range become `null`).
    pub(crate) fn into_value(self) -> serde_json::Value {
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
