//! Reading the expected values of fixture files (JSON written by the scripts next to the
//! fixtures) and comparing with them; included by the fixture tests with `#[path]`.

use serde_json::Value;

/// A JSON array of numbers.
pub(crate) fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("not a number: {x}")))
        .collect()
}

/// A JSON array of non-negative integers.
pub(crate) fn usizes(v: &Value) -> Vec<usize> {
    floats(v).iter().map(|&x| x as usize).collect()
}

/// `got` equals `want` within `tol` times `1 + |want|`, element by element.
pub(crate) fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: {got:?} vs {want:?}"
        );
    }
}
