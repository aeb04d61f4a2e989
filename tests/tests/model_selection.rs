//! Model selection end to end on a tiny 2D dataset: two trainers, folds 0 and 1 with `--npz`;
//! `find-best-config` gathers the cross-validation, ensembles the pair, picks the best, determines
//! postprocessing and writes `inference_information.json` / `inference_instructions.txt`;
//! `ensemble`, `determine-postprocessing`, `apply-postprocessing` and `plot-overlay` run on the
//! results.

use std::path::{Path, PathBuf};

use nnunet_tests::{Folders, copy_dir, io_args, read_json, train_args};

fn files_ending(folder: &Path, ending: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(ending))
        .collect();
    names.sort();
    names
}

/// `ensemble -i A B -o OUTPUT`.
fn ensemble_args<'a>(a: &'a Path, b: &'a Path, output: &'a Path) -> Vec<&'a str> {
    let s = |p: &'a Path| p.to_str().unwrap();
    vec!["ensemble", "-i", s(a), s(b), "-o", s(output)]
}

const A: &str = "nnUNetTrainer_1epoch__nnUNetPlans__2d";
const B: &str = "nnUNetTrainerCELoss_5epochs__nnUNetPlans__2d";

#[test]
fn find_best_config_ensemble_postprocessing_and_overlays() {
    let f = Folders::new();
    f.example_dataset("7", &["--cases", "6"], &["40", "40"], "2d");
    for (trainer, iterations) in [
        ("nnUNetTrainer_1epoch", "8"),
        ("nnUNetTrainerCELoss_5epochs", "2"),
    ] {
        for fold in ["0", "1"] {
            let mut args = train_args(["7", "2d", fold], &["-tr", trainer], [iterations, "1"]);
            args.push("--npz");
            f.nnunet(&args);
        }
    }
    let results = f.root.join("results").join("Dataset007_Synthetic2D");
    assert!(results.is_dir(), "{}", results.display());

    let text = f.nnunet(&[
        "find-best-config",
        "-d",
        "7",
        "-c",
        "2d",
        "-tr",
        "nnUNetTrainer_1epoch",
        "nnUNetTrainerCELoss_5epochs",
        "-f",
        "0",
        "1",
        "-np",
        "2",
    ]);
    assert!(text.contains("*Best*"), "{text}");

    // Gathered cross-validation of each model: the validation cases of folds 0 and 1.
    let mut fold_cases = Vec::new();
    for fold in ["fold_0", "fold_1"] {
        fold_cases.extend(files_ending(
            &results.join(A).join(fold).join("validation"),
            ".png",
        ));
    }
    fold_cases.sort();
    assert!(fold_cases.len() >= 2);
    let mut dice = std::collections::BTreeMap::new();
    for model in [A, B] {
        let merged = results.join(model).join("crossval_results_folds_0_1");
        assert_eq!(files_ending(&merged, ".png"), fold_cases, "{model}");
        for file in ["summary.json", "dataset.json", "plans.json"] {
            assert!(merged.join(file).is_file(), "{model}: {file}");
        }
        let summary = read_json(&merged.join("summary.json"));
        assert_eq!(
            summary["metric_per_case"].as_array().unwrap().len(),
            fold_cases.len()
        );
        dice.insert(
            model.to_string(),
            summary["foreground_mean"]["Dice"].as_f64().unwrap(),
        );
    }
    let ensemble_name = format!("ensemble___{A}___{B}___0_1");
    let ensemble = results.join("ensembles").join(&ensemble_name);
    assert_eq!(files_ending(&ensemble, ".png"), fold_cases);
    let ens_summary = read_json(&ensemble.join("summary.json"));
    dice.insert(
        ensemble_name.clone(),
        ens_summary["foreground_mean"]["Dice"].as_f64().unwrap(),
    );

    // inference_information.json: nnU-Net's keys; the best is the highest Dice.
    let info = read_json(&results.join("inference_information.json"));
    let keys: Vec<&String> = info.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "all_results",
            "best_model_or_ensemble",
            "considered_models",
            "dataset_name_or_id",
            "ensembling_allowed",
            "folds"
        ]
    );
    assert_eq!(info["folds"], serde_json::json!([0, 1]));
    assert_eq!(info["dataset_name_or_id"], "7");
    assert_eq!(info["ensembling_allowed"], true);
    let all = info["all_results"].as_object().unwrap();
    assert_eq!(all.len(), 3);
    for (name, d) in &dice {
        assert_eq!(all[name].as_f64().unwrap(), *d, "{name}");
    }
    let best_dice = dice.values().cloned().fold(f64::NEG_INFINITY, f64::max);
    let best = &info["best_model_or_ensemble"];
    assert_eq!(
        best["result_on_crossval_pre_pp"].as_f64().unwrap(),
        best_dice
    );
    let selected = best["selected_model_or_models"].as_array().unwrap();
    let best_is_ensemble = selected.len() == 2;
    if best_is_ensemble {
        assert_eq!(dice[&ensemble_name], best_dice);
    } else {
        assert_eq!(selected.len(), 1);
        let id = format!(
            "{}__nnUNetPlans__2d",
            selected[0]["trainer"].as_str().unwrap()
        );
        assert_eq!(dice[&id], best_dice);
    }
    for m in selected {
        assert_eq!(m["configuration"], "2d");
        assert_eq!(m["plans_identifier"], "nnUNetPlans");
    }
    let pp_file = PathBuf::from(best["postprocessing_file"].as_str().unwrap());
    assert!(pp_file.ends_with("postprocessing.json") && pp_file.is_file());
    let source = pp_file.parent().unwrap();
    let post = read_json(&source.join("postprocessed").join("summary.json"));
    assert_eq!(
        best["result_on_crossval_post_pp"].as_f64().unwrap(),
        post["foreground_mean"]["Dice"].as_f64().unwrap()
    );
    assert!(PathBuf::from(best["some_plans_file"].as_str().unwrap()).is_file());
    let instructions = std::fs::read_to_string(results.join("inference_instructions.txt")).unwrap();
    assert!(
        instructions.starts_with("***Run inference like this:***\n\n"),
        "{instructions}"
    );
    assert!(instructions.contains("nnunet predict -d 7 -i INPUT_FOLDER"));
    assert!(instructions.contains("-f 0 1 "));
    assert!(instructions.contains(&format!(
        "nnunet apply-postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP -pp_pkl_file {}",
        pp_file.display()
    )));
    assert_eq!(
        instructions.contains("nnunet ensemble -i OUTPUT_FOLDER_MODEL_1 OUTPUT_FOLDER_MODEL_2"),
        best_is_ensemble
    );

    // nnunet ensemble on fold 0's validation of both models (with their dataset.json).
    let ea = f.root.join("ens_a");
    let eb = f.root.join("ens_b");
    copy_dir(&results.join(A).join("fold_0").join("validation"), &ea);
    copy_dir(&results.join(B).join("fold_0").join("validation"), &eb);
    for file in ["dataset.json", "plans.json"] {
        std::fs::copy(results.join(A).join(file), ea.join(file)).unwrap();
    }
    let out = f.root.join("ens_out");
    let mut args = ensemble_args(&ea, &eb, &out);
    args.extend(["-np", "2", "--save_npz"]);
    f.nnunet(&args);
    let cases = files_ending(&ea, ".png");
    assert_eq!(files_ending(&out, ".png"), cases);
    assert_eq!(files_ending(&out, ".npz").len(), cases.len());
    assert!(out.join("dataset.json").is_file());
    // The same averages as the cross-validation ensemble made for these cases.
    for case in &cases {
        let a = image::open(out.join(case)).unwrap().to_luma8();
        let b = image::open(ensemble.join(case)).unwrap().to_luma8();
        assert_eq!(a, b, "{case}");
    }
    // A case missing in one folder: the error names the folder and the case.
    let missing = files_ending(&eb, ".npz")[0].clone();
    std::fs::remove_file(eb.join(&missing)).unwrap();
    let bad = f.root.join("ens_bad");
    let err = f.nnunet_fails(&ensemble_args(&ea, &eb, &bad));
    assert!(err.contains(&missing) && err.contains("ens_b"), "{err}");

    // determine-postprocessing / apply-postprocessing with nnU-Net's flags.
    let merged = results.join(A).join("crossval_results_folds_0_1");
    let gt = f
        .root
        .join("pre")
        .join("Dataset007_Synthetic2D")
        .join("gt_segmentations");
    let (merged_str, gt_str) = (merged.to_str().unwrap(), gt.to_str().unwrap());
    f.nnunet(&[
        "determine-postprocessing",
        "-i",
        merged_str,
        "-ref",
        gt_str,
        "-np",
        "2",
    ]);
    let pp = read_json(&merged.join("postprocessing.json"));
    for key in [
        "input_folder",
        "postprocessed",
        "postprocessing_fns",
        "postprocessing_kwargs",
    ] {
        assert!(pp.get(key).is_some(), "{key}");
    }
    assert_eq!(
        files_ending(&merged.join("postprocessed"), ".png"),
        fold_cases
    );
    let pp_out = f.root.join("pp_out");
    let apply = |pp_file: &str, extra: &[&str]| {
        let mut args = io_args(
            "apply-postprocessing",
            &out,
            &pp_out,
            &["-pp_pkl_file", pp_file],
        );
        args.extend_from_slice(extra);
        f.exec(&args)
    };
    let (pp_file, plans) = (
        merged.join("postprocessing.json"),
        results.join(A).join("plans.json"),
    );
    let (ok, text) = apply(
        pp_file.to_str().unwrap(),
        &["-plans_json", plans.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    assert_eq!(files_ending(&pp_out, ".png"), cases);
    let (ok, err) = apply("/nonexistent/postprocessing.json", &[]);
    assert!(!ok, "{err}");
    assert!(err.contains("/nonexistent/postprocessing.json"), "{err}");

    // plot-overlay: one decodable PNG per case of the raw dataset, and one for a single file.
    let overlays = f.root.join("overlays");
    f.nnunet(&["plot-overlay", "-d", "7", "-o", overlays.to_str().unwrap()]);
    let pngs = files_ending(&overlays, ".png");
    assert_eq!(pngs.len(), 6);
    for p in &pngs {
        let img = image::open(overlays.join(p)).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (40, 40));
        // Labels are coloured: some pixel is not grey.
        assert!(
            img.pixels().any(|px| px[0] != px[1] || px[1] != px[2]),
            "{p}"
        );
    }
    let raw = f.root.join("raw").join("Dataset007_Synthetic2D");
    let single = f.root.join("single.png");
    let case = pngs[0].trim_end_matches(".png");
    f.nnunet(&[
        "plot-overlay",
        "-i",
        raw.join("imagesTr")
            .join(format!("{case}_0000.png"))
            .to_str()
            .unwrap(),
        "-s",
        raw.join("labelsTr").join(&pngs[0]).to_str().unwrap(),
        "-o",
        single.to_str().unwrap(),
    ]);
    let a = image::open(&single).unwrap().to_rgb8();
    let b = image::open(overlays.join(&pngs[0])).unwrap().to_rgb8();
    assert_eq!(a, b);
}
