//! Parity with nnU-Net v2.8.1: every golden plans file under `tests/fixtures/planning/` is
//! re-planned from the fixture's `dataset_fingerprint.json` and `dataset.json` with the flags of the
//! command that wrote it, and compared field for field (key order, int/float types, values).

// Tests report what they measured.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};

use nnunet_core::planning::PlanningInput;
use nnunet_core::{Planner, Registries};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/planning")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The input of a plain `nnUNetPlans` run: SimpleITKIO, DefaultPreprocessor, no target spacing.
fn default_input<'a>(
    dataset_name: &'a str,
    dataset_json: &'a Value,
    fingerprint: &'a Value,
    gpu_memory_target_gb: Option<f64>,
) -> PlanningInput<'a> {
    PlanningInput {
        dataset_name,
        dataset_json,
        fingerprint,
        plans_name: "nnUNetPlans",
        gpu_memory_target_gb,
        overwrite_target_spacing: None,
        reader_name: "SimpleITKIO",
        preprocessor_name: "DefaultPreprocessor",
    }
}

/// Differences between `mine` and `golden`, each with its JSON path.
fn diff(mine: &Value, golden: &Value, path: &str, out: &mut Vec<String>) {
    match (mine, golden) {
        (Value::Object(a), Value::Object(b)) => {
            let ka: Vec<&String> = a.keys().collect();
            let kb: Vec<&String> = b.keys().collect();
            if ka != kb {
                out.push(format!("{path}: keys {ka:?} != golden {kb:?}"));
            }
            for (k, v) in a {
                if let Some(w) = b.get(k) {
                    diff(v, w, &format!("{path}/{k}"), out);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!("{path}: length {} != golden {}", a.len(), b.len()));
            }
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                diff(v, w, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            if a.is_f64() != b.is_f64() {
                let kind = |n: &serde_json::Number| if n.is_f64() { "float" } else { "int" };
                out.push(format!("{path}: {} {a} != golden {} {b}", kind(a), kind(b)));
            } else if a.is_f64() {
                let (x, y) = (a.as_f64().unwrap(), b.as_f64().unwrap());
                if (x - y).abs() > 1e-9 * x.abs().max(y.abs()) {
                    out.push(format!("{path}: {x:?} != golden {y:?}"));
                }
            } else if a != b {
                out.push(format!("{path}: {a} != golden {b}"));
            }
        }
        _ => {
            if mine != golden {
                out.push(format!("{path}: {mine} != golden {golden}"));
            }
        }
    }
}

/// The value following `flag` in a command line.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a [String]> {
    args.iter().position(|a| a == name).map(|i| &args[i + 1..])
}

/// Floats of the golden file that are not bit-identical to ours (informational).
fn inexact(mine: &Value, golden: &Value, path: &str, out: &mut Vec<String>) {
    match (mine, golden) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if let Some(w) = b.get(k) {
                    inexact(v, w, &format!("{path}/{k}"), out);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                inexact(v, w, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(a), Value::Number(b))
            if a.is_f64() && b.is_f64() && a.as_f64() != b.as_f64() =>
        {
            out.push(format!("{path}: {a} vs golden {b}"));
        }
        _ => {}
    }
}

#[test]
fn all_golden_plans_are_reproduced() {
    let registries = Registries::builtin().expect("built-in registries");
    let mut compared = Vec::new();
    let mut failures = Vec::new();
    let mut not_bit_exact = Vec::new();

    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixture folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let params = read_json(&dir.join("dataset_params.json"));
        let fingerprint = read_json(&dir.join("dataset_fingerprint.json"));
        let dataset_json = &params["dataset_json"];
        let dataset_name = params["dataset_name"].as_str().expect("dataset_name");
        let reader = if params["kind"] == "png" {
            "NaturalImage2DIO"
        } else {
            "SimpleITKIO"
        };
        let commands = params["commands"].as_array().expect("commands");
        for command in commands {
            let args: Vec<String> = command
                .as_array()
                .expect("command")
                .iter()
                .map(|a| a.as_str().expect("arg").to_string())
                .collect();
            if args[0] != "nnUNetv2_plan_experiment" {
                continue;
            }
            let planner_name = flag(&args, "-pl").map_or("ExperimentPlanner", |v| v[0].as_str());
            let planner: Box<dyn Planner> = registries
                .planners
                .create(planner_name)
                .expect("planner registered");
            let gpu = flag(&args, "-gpu_memory_target").map(|v| v[0].parse::<f64>().unwrap());
            let spacing = flag(&args, "-overwrite_target_spacing").map(|v| {
                [
                    v[0].parse::<f64>().unwrap(),
                    v[1].parse::<f64>().unwrap(),
                    v[2].parse::<f64>().unwrap(),
                ]
            });
            let plans_name = flag(&args, "-overwrite_plans_name")
                .map_or(planner.default_plans_name().to_string(), |v| v[0].clone());
            let input = PlanningInput {
                plans_name: &plans_name,
                overwrite_target_spacing: spacing,
                reader_name: reader,
                ..default_input(dataset_name, dataset_json, &fingerprint, gpu)
            };
            let golden_path = dir.join(format!("{plans_name}.json"));
            let golden = read_json(&golden_path);
            let mine = planner
                .plan(&input)
                .unwrap_or_else(|e| panic!("{}: {e}", golden_path.display()));
            let label = format!(
                "{}/{plans_name}.json",
                dir.file_name().unwrap().to_string_lossy()
            );
            let mut out = Vec::new();
            diff(&mine, &golden, "", &mut out);
            if !out.is_empty() {
                failures.push(format!("{label}:\n    {}", out.join("\n    ")));
            }
            let mut approx = Vec::new();
            inexact(&mine, &golden, "", &mut approx);
            not_bit_exact.extend(approx.into_iter().map(|a| format!("{label}{a}")));
            compared.push(label);
        }
    }

    println!("compared {} plans files", compared.len());
    for label in &compared {
        println!("  {label}");
    }
    if !not_bit_exact.is_empty() {
        println!("floats within tolerance but not bit-identical:");
        for line in &not_bit_exact {
            println!("  {line}");
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));

    // every plans file in the fixtures was covered
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let name = file.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with("nnUNet") && name.ends_with(".json") {
                on_disk.push(format!(
                    "{}/{name}",
                    dir.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    on_disk.sort();
    let mut covered = compared.clone();
    covered.sort();
    assert_eq!(covered, on_disk, "plans files on disk vs compared");
    assert_eq!(compared.len(), 15);
}

#[test]
fn registered_planners_have_their_default_plans_names() {
    let registries = Registries::builtin().expect("built-in registries");
    for (name, plans) in [
        ("ExperimentPlanner", "nnUNetPlans"),
        ("nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans"),
        ("nnUNetPlannerResEncL", "nnUNetResEncUNetLPlans"),
        ("nnUNetPlannerResEncXL", "nnUNetResEncUNetXLPlans"),
    ] {
        let planner = registries.planners.create(name).expect(name);
        assert_eq!(planner.default_plans_name(), plans);
    }
}

#[test]
fn direct_api_matches_registry() {
    let dir = fixtures().join("Dataset904_TwoChanMasked");
    let params = read_json(&dir.join("dataset_params.json"));
    let fingerprint = read_json(&dir.join("dataset_fingerprint.json"));
    let input = default_input(
        "Dataset904_TwoChanMasked",
        &params["dataset_json"],
        &fingerprint,
        None,
    );
    let direct =
        nnunet_planners::plan_experiment(&nnunet_planners::DEFAULT_PRESET, &input).unwrap();
    assert_eq!(direct, read_json(&dir.join("nnUNetPlans.json")));
    assert_eq!(direct["transpose_forward"], serde_json::json!([2, 0, 1]));
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dir = fixtures().join("Dataset902_MrIso");
    let params = read_json(&dir.join("dataset_params.json"));
    let fingerprint = read_json(&dir.join("dataset_fingerprint.json"));
    let planner = nnunet_planners::ExperimentPlanner::default();
    let base = |dataset_json: &Value, fingerprint: &Value, gpu: Option<f64>| {
        let input = default_input("Dataset902_MrIso", dataset_json, fingerprint, gpu);
        planner.plan(&input).map_err(|e| e.to_string())
    };

    let mut no_training = params["dataset_json"].clone();
    no_training.as_object_mut().unwrap().remove("numTraining");
    let err = base(&no_training, &fingerprint, None).unwrap_err();
    assert!(err.contains("numTraining"), "{err}");

    let mut bad_spacing = fingerprint.clone();
    bad_spacing["spacings"][0] = serde_json::json!([1.0, "x", 1.0]);
    let err = base(&params["dataset_json"], &bad_spacing, None).unwrap_err();
    assert!(err.contains("spacings"), "{err}");

    let err = base(&params["dataset_json"], &fingerprint, Some(0.0)).unwrap_err();
    assert!(err.contains("GPU memory"), "{err}");

    // an absurdly small budget ends in an error instead of a negative patch
    let err = base(&params["dataset_json"], &fingerprint, Some(1e-9)).unwrap_err();
    assert!(err.contains("no patch size fits"), "{err}");
}
