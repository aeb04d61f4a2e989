//! JSON as nnU-Net writes and reads it, in one place: serde_json with four-space indentation
//! (`json.dump(..., indent=4)` of plans, fingerprints and `dataset.json`), files nnU-Net writes
//! with Python's own number and string spelling (`summary.json`, `postprocessing.json`: see
//! [`JsonValue`]), and reading such files, whose bare `NaN`/`Infinity` tokens serde_json refuses.
//!
//! Python's float `repr` and string escapes are written by hand here: nnU-Net's files are compared
//! byte for byte, and serde_json spells both differently.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// `value` as serde_json text with four-space indentation (as Python's `indent=4`), without a
/// trailing newline.
pub fn to_indented_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut text = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut text, formatter);
    value.serialize(&mut serializer)?;
    Ok(String::from_utf8(text).expect("serde_json writes UTF-8"))
}

/// Writes JSON as nnU-Net does (4-space indentation) with a trailing newline, through a temporary
/// file and a rename so that an interrupted write never leaves a truncated file.
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = to_indented_string(value)
        .map_err(|e| Error::invalid_file(path, format!("cannot write JSON: {e}")))?;
    text.push('\n');
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    crate::io::write_atomically(path, |out| std::io::Write::write_all(out, text.as_bytes()))
}

/// Marks the strings [`quote_numbers`] made from bare number tokens.
const NUMBER_MARK: char = '\u{0}';

/// `text` with every bare token outside strings that starts like a number (a digit, `-`, or
/// Python's `NaN` and `Infinity`) replaced by what `replace` returns for it (kept where `None`).
fn map_bare_numbers(text: &str, mut replace: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '-' || c.is_ascii_digit() || c == 'N' || c == 'I' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || matches!(d, '.' | '+' | '-') {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let token = &text[i..end];
            match replace(token) {
                Some(replacement) => out.push_str(&replacement),
                None => out.push_str(token),
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

/// Turns every bare number token outside strings (including Python's `NaN`, `Infinity` and
/// `-Infinity`) into a string of its text behind a U+0000 mark, so that serde_json parses the
/// file and [`parse_float`] reads each number exactly with Rust's correctly rounded parser.
pub fn quote_numbers(text: &str) -> String {
    map_bare_numbers(text, |token| Some(format!("\"\\u0000{token}\"")))
}

/// Replaces the bare tokens `NaN`, `Infinity`, `-Infinity` (outside strings) by `null`.
pub fn non_finite_to_null(text: &str) -> String {
    map_bare_numbers(text, |token| {
        matches!(token, "NaN" | "Infinity" | "-Infinity").then(|| "null".to_string())
    })
}

/// The number behind a string that [`quote_numbers`] made (`None` for anything else).
pub fn parse_float(value: &Value) -> Option<f64> {
    let token = value.as_str()?.strip_prefix(NUMBER_MARK)?;
    match token {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ if token.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
            token.parse::<f64>().ok().filter(|x| x.is_finite())
        }
        _ => None,
    }
}

/// A JSON value written as Python's `json.dump(obj, indent=4, sort_keys=True)` writes it (the
/// files nnU-Net writes and users compare: `summary.json`, `postprocessing.json`).
#[derive(Clone, Debug)]
pub enum JsonValue {
    /// An integer, written without a decimal point.
    Int(i64),
    /// A float, written as Python's `repr` writes it (`NaN`, `Infinity` for non-finite values).
    Float(f64),
    /// A string, written with Python's `ensure_ascii=True` escaping.
    Str(String),
    /// A list, one item per line.
    Array(Vec<JsonValue>),
    /// An object; its keys are written sorted, whatever their order here.
    Object(Vec<(String, JsonValue)>),
}

impl JsonValue {
    /// The value as Python's `json.dump(indent=4, sort_keys=True)` text, without a newline.
    pub fn to_python_text(&self) -> String {
        let mut out = String::new();
        self.write_python(&mut out, 0);
        out
    }

    fn write_python(&self, out: &mut String, level: usize) {
        let indent = |out: &mut String, level: usize| {
            out.push('\n');
            out.push_str(&" ".repeat(4 * level));
        };
        match self {
            JsonValue::Int(v) => out.push_str(&v.to_string()),
            JsonValue::Float(v) => out.push_str(&python_float_repr(*v)),
            JsonValue::Str(s) => python_json_string(s, out),
            JsonValue::Array(items) if items.is_empty() => out.push_str("[]"),
            JsonValue::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    indent(out, level + 1);
                    item.write_python(out, level + 1);
                }
                indent(out, level);
                out.push(']');
            }
            JsonValue::Object(entries) if entries.is_empty() => out.push_str("{}"),
            JsonValue::Object(entries) => {
                let mut sorted: Vec<&(String, JsonValue)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                out.push('{');
                for (i, (key, value)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    indent(out, level + 1);
                    python_json_string(key, out);
                    out.push_str(": ");
                    value.write_python(out, level + 1);
                }
                indent(out, level);
                out.push('}');
            }
        }
    }
}

/// A string as Python's `json` writes it with `ensure_ascii=True`.
pub(crate) fn python_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// A float as Python's `repr` (and so `json`) writes it: the shortest digits that read back to
/// the same value, in positional notation for exponents from -5 to 15 and scientific otherwise
/// (`1e-05`, `1.5e+16`); `NaN`, `Infinity`, `-Infinity` for the non-finite values.
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let decpt = exponent + 1;
    let body = if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            format!("0.{}{digits}", "0".repeat((-decpt) as usize))
        } else if decpt as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(decpt as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(decpt as usize);
            format!("{a}.{b}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let esign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{esign}{:02}", exponent.abs())
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        for (x, s) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (12.5, "12.5"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.8191309811264968, "0.8191309811264968"),
            (2.0 / 3.0, "0.6666666666666666"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(python_float_repr(x), s, "{x}");
        }
    }

    #[test]
    fn numbers_outside_strings_are_read_exactly() {
        let text = r#"{"a": NaN, "b": [-Infinity, Infinity], "NaN": "x NaN \" NaN"}"#;
        let v: Value = serde_json::from_str(&quote_numbers(text)).unwrap();
        assert!(parse_float(&v["a"]).unwrap().is_nan());
        assert_eq!(parse_float(&v["b"][0]), Some(f64::NEG_INFINITY));
        assert_eq!(v["NaN"], "x NaN \" NaN");
    }

    #[test]
    fn json_strings_escape_like_python() {
        let mut out = String::new();
        python_json_string("a\"b\\c\nü😀\u{7f}", &mut out);
        assert_eq!(out, r#""a\"b\\c\n\u00fc\ud83d\ude00\u007f""#);
    }

    #[test]
    fn non_finite_tokens_become_null_outside_strings() {
        let text = r#"{"a": NaN, "b": [-Infinity, 1.5e-3], "NaN": "Infinity"}"#;
        assert_eq!(
            non_finite_to_null(text),
            r#"{"a": null, "b": [null, 1.5e-3], "NaN": "Infinity"}"#
        );
    }
}
