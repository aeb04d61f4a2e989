//! Reading the expected values of fixture files (JSON written by the scripts next to the
//! fixtures) and comparing with them; included by the fixture tests with `#[path]`, by the others
//! through `common`.

// Each test target uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use nnunet_core::io::ImageProperties;
use serde_json::Value;

/// The folder of the fixture set `set` (`tests/fixtures/<set>`).
pub(crate) fn dir(set: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(set)
}

/// The content of `expected.json` of the fixture set `set`.
pub(crate) fn expected(set: &str) -> Value {
    let text = std::fs::read_to_string(dir(set).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The cases of fixture set `set`: its `expected.json`, an array.
pub(crate) fn expected_cases(set: &str) -> Vec<Value> {
    expected(set).as_array().unwrap().clone()
}

/// A JSON array of numbers.
pub(crate) fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("not a number: {x}")))
        .collect()
}

/// A JSON array of rows of numbers (a matrix), row after row.
pub(crate) fn matrix(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().flat_map(floats).collect()
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

/// `shape` equals `want`'s `shape`, and `spacing` its `spacing` within `tol` (as [`assert_close`]
/// compares); `what` names the case in the messages.
pub(crate) fn assert_shape_and_spacing(
    what: &str,
    shape: &[usize],
    spacing: &[f64],
    want: &Value,
    tol: f64,
) {
    assert_eq!(shape, usizes(&want["shape"]), "{what}");
    let spacing_want = floats(&want["spacing"]);
    assert_close(&format!("{what} spacing"), spacing, &spacing_want, tol);
}

/// `spacing` and the origin and direction of `p` equal `want`'s `spacing`, `origin` and
/// `direction` within `tol` (in that order), as [`assert_close`] compares.
pub(crate) fn assert_geometry(
    what: &str,
    spacing: &[f64],
    p: &ImageProperties,
    want: &Value,
    tol: [f64; 3],
) {
    let [t_spacing, t_origin, t_direction] = tol;
    let spacing_want = floats(&want["spacing"]);
    assert_close(
        &format!("{what} spacing"),
        spacing,
        &spacing_want,
        t_spacing,
    );
    let origin = floats(&want["origin"]);
    assert_close(&format!("{what} origin"), &p.origin, &origin, t_origin);
    let direction = floats(&want["direction"]);
    assert_close(
        &format!("{what} direction"),
        &p.direction,
        &direction,
        t_direction,
    );
}

/// The voxel values `got` equal the JSON numbers `want` exactly (as `f32`).
pub(crate) fn assert_values(what: &str, got: impl Iterator<Item = f32>, want: &Value) {
    let want = floats(want);
    let got: Vec<f32> = got.collect();
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(*g, *w as f32, "{what}: voxel {i}");
    }
}
