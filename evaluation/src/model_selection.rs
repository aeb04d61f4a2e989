//! Picking the best configuration, as nnU-Net v2.8.1's `nnUNetv2_find_best_configuration`.
//!
//! For every trained model (trainer, plans, configuration) the validation predictions of the
//! requested folds are gathered into `crossval_results_folds_0_1_2_3_4/` and evaluated
//! ([`accumulate_cv_results`]); with ensembling allowed, every pair of models is ensembled on
//! its cross-validation probabilities into `nnUNet_results/DatasetXXX/ensembles/
//! ensemble___A___B___0_1_2_3_4/` and evaluated. The best mean foreground Dice wins (the first on
//! a tie), postprocessing is determined on it, and `inference_information.json` and
//! `inference_instructions.txt` say how to predict with it.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::ensembling::{cases_from_crossvalidation, merge_cases};
use crate::metrics::{Summary, evaluate_dataset_folder};
use crate::postprocessing::{
    DeterminePostprocessing, PostprocessingResult, determine_postprocessing,
};
use nnunet_core::error::{Error, Result};
use nnunet_core::io::Reader;
use nnunet_core::paths::{NnunetPaths, TrainedModel};
use nnunet_core::registry::Registries;
use nnunet_dataset::{DatasetJson, choose_reader};
use nnunet_inference::export::LabelHandling;
use nnunet_preprocessing::plans::Plans;

/// `0_1_2_3_4`, as nnU-Net's `folds_tuple_to_string`.
pub fn folds_string(folds: &[u32]) -> String {
    folds
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join("_")
}

/// `ensemble___A___B___0_1_2_3_4`, as nnU-Net's `get_ensemble_name`.
pub fn ensemble_name(a: &TrainedModel, b: &TrainedModel, folds: &[u32]) -> String {
    format!(
        "ensemble___{}___{}___{}",
        a.identifier(),
        b.identifier(),
        folds_string(folds)
    )
}

/// The reader of a model folder's predictions: the plans' `image_reader_writer` if registered,
/// else the one `dataset.json` selects.
pub fn reader_for(
    registries: &Registries,
    plans_file: &Path,
    dataset_json: &DatasetJson,
) -> Result<Box<dyn Reader>> {
    let plans = Plans::from_file(plans_file)?;
    if let Ok(name) = plans.image_reader_writer()
        && let Ok(entry) = registries.readers.get(name)
    {
        return Ok(entry.create());
    }
    Ok(choose_reader(registries, dataset_json, None)?.create())
}

fn read_dataset_json(path: &Path) -> Result<DatasetJson> {
    if !path.is_file() {
        return Err(Error::evaluation_file(
            path,
            "missing (the dataset.json of the model)",
        ));
    }
    DatasetJson::from_file(path)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).map_err(|e| Error::io(from, e))?;
    Ok(())
}

/// nnU-Net's `accumulate_cv_results`: copies the validation segmentations of `folds` of the model
/// in `model_folder` (with its `dataset.json` and `plans.json`) into `merged_folder` and
/// evaluates them against `reference` (unless nothing was copied and a summary exists). With
/// `overwrite`, `merged_folder` is emptied first and a case in two folds is an error.
pub fn accumulate_cv_results(
    model_folder: &Path,
    merged_folder: &Path,
    folds: &[u32],
    reference: &Path,
    registries: &Registries,
    num_processes: usize,
    overwrite: bool,
) -> Result<Summary> {
    if overwrite && merged_folder.is_dir() {
        std::fs::remove_dir_all(merged_folder).map_err(|e| Error::io(merged_folder, e))?;
    }
    std::fs::create_dir_all(merged_folder).map_err(|e| Error::io(merged_folder, e))?;
    let dataset_json_file = model_folder.join("dataset.json");
    let plans_file = model_folder.join("plans.json");
    let dataset_json = read_dataset_json(&dataset_json_file)?;
    let reader = reader_for(registries, &plans_file, &dataset_json)?;
    copy(&dataset_json_file, &merged_folder.join("dataset.json"))?;
    copy(&plans_file, &merged_folder.join("plans.json"))?;
    let ending = dataset_json.file_ending.as_str();
    let mut copied = false;
    for fold in folds {
        let validation = model_folder.join(format!("fold_{fold}")).join("validation");
        if !validation.is_dir() {
            return Err(Error::evaluation_file(
                &validation,
                format!("fold {fold} of this model is missing; train it"),
            ));
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&validation).map_err(|e| Error::io(&validation, e))? {
            let entry = entry.map_err(|e| Error::io(&validation, e))?;
            if let Ok(name) = entry.file_name().into_string()
                && name.ends_with(ending)
                && entry.path().is_file()
            {
                names.push(name);
            }
        }
        names.sort();
        for name in names {
            let target = merged_folder.join(&name);
            if overwrite && target.is_file() {
                return Err(Error::evaluation_file(
                    validation.join(&name),
                    "more than one fold has a prediction for this case",
                ));
            }
            if overwrite || !target.is_file() {
                copy(&validation.join(&name), &target)?;
                copied = true;
            }
        }
    }
    let summary_file = merged_folder.join("summary.json");
    if copied || !summary_file.is_file() {
        evaluate_dataset_folder(
            reference,
            merged_folder,
            &dataset_json,
            reader.as_ref(),
            num_processes,
        )
    } else {
        Summary::read(&summary_file)
    }
}

/// nnU-Net's `ensemble_crossvalidations`: ensembles the cross-validation probabilities of
/// `models` (their folders) into `output`, with `dataset.json` and `plans.json` of the first.
/// Without `overwrite`, cases already in `output` are kept.
pub fn ensemble_crossvalidations(
    models: &[PathBuf],
    output: &Path,
    folds: &[u32],
    registries: &Registries,
    num_processes: usize,
    overwrite: bool,
) -> Result<()> {
    let first = models
        .first()
        .ok_or_else(|| Error::evaluation("no models to ensemble"))?;
    let dataset_json_file = first.join("dataset.json");
    let plans_file = first.join("plans.json");
    let dataset_json = read_dataset_json(&dataset_json_file)?;
    let reader = reader_for(registries, &plans_file, &dataset_json)?;
    let labels = LabelHandling::from_labels(&dataset_json.labels)?;
    let mut cases = cases_from_crossvalidation(models, folds, output)?;
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    if !overwrite {
        cases.retain(|c| {
            !PathBuf::from(format!(
                "{}{}",
                c.output_truncated.to_string_lossy(),
                dataset_json.file_ending
            ))
            .is_file()
        });
    }
    merge_cases(
        &cases,
        &labels,
        reader.as_ref(),
        &dataset_json.file_ending,
        false,
        num_processes,
        &|| {},
    )?;
    copy(&plans_file, &output.join("plans.json"))?;
    copy(&dataset_json_file, &output.join("dataset.json"))?;
    Ok(())
}

/// What [`find_best_configuration`] considers.
#[derive(Clone, Debug)]
pub struct FindBestSettings {
    /// The dataset as the user gave it (ID or name); written as given.
    pub dataset_name_or_id: String,
    /// The candidate models.
    pub models: Vec<TrainedModel>,
    /// Also ensemble every pair of models.
    pub allow_ensembling: bool,
    /// Worker threads.
    pub num_processes: usize,
    /// Redo the gathered cross-validation and ensembles instead of keeping what exists.
    pub overwrite: bool,
    /// The folds to use.
    pub folds: Vec<u32>,
    /// Used in the instructions (`-np`).
    pub instructions_num_processes: usize,
}

/// The outcome of [`find_best_configuration`].
#[derive(Clone, Debug)]
pub struct BestConfiguration {
    /// `inference_information.json`'s content.
    pub information: Value,
    /// Every candidate (model identifier or ensemble name) and its mean foreground Dice.
    pub all_results: Vec<(String, f64)>,
    /// The winner's name.
    pub best: String,
    /// The lines of `inference_instructions.txt`.
    pub instructions: String,
    /// What postprocessing determination printed.
    pub postprocessing_messages: Vec<String>,
    /// `inference_information.json` and `inference_instructions.txt`.
    pub files: [PathBuf; 2],
    /// Models skipped because their plans have no such configuration (a note each).
    pub skipped: Vec<String>,
}

/// Recursively sorts object keys (Python's `sort_keys=True`).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// A float as JSON: a number, or `null` when it is not finite.
fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// nnU-Net's `filter_available_models`: the models whose plans have their configuration (the
/// others skipped with a note each), each of which must have its output folder.
fn available_models(
    settings: &FindBestSettings,
    dataset: &str,
    preprocessed: &Path,
    results_root: &Path,
) -> Result<(Vec<TrainedModel>, Vec<String>)> {
    let mut models = Vec::new();
    let mut skipped = Vec::new();
    for m in &settings.models {
        let plans_file = preprocessed.join(format!("{}.json", m.plans));
        let plans = Plans::from_file(&plans_file)?;
        if !plans.configuration_names().contains(&m.configuration) {
            skipped.push(format!(
                "Configuration {} not found in plans {} ({}); skipped",
                m.configuration,
                m.plans,
                plans_file.display()
            ));
            continue;
        }
        let folder = results_root.join(m.identifier());
        if !folder.is_dir() {
            return Err(Error::evaluation_file(
                &folder,
                format!(
                    "trained model {} has no output folder; train it (with --npz to allow \
                     ensembling)",
                    m.identifier()
                ),
            ));
        }
        models.push(m.clone());
    }
    if models.is_empty() {
        return Err(Error::evaluation(format!(
            "none of the requested models exists for {dataset}: {}",
            skipped.join("; ")
        )));
    }
    Ok((models, skipped))
}

/// A scored candidate: its name (model identifier or ensemble name), the folder of its
/// cross-validation predictions and their mean foreground Dice.
type Candidate = (String, PathBuf, f64);

/// Gathers and evaluates every model's cross-validation predictions against `reference`.
fn score_models(
    models: &[TrainedModel],
    results_root: &Path,
    reference: &Path,
    registries: &Registries,
    settings: &FindBestSettings,
) -> Result<Vec<Candidate>> {
    let folds_str = folds_string(&settings.folds);
    let mut all = Vec::new();
    for m in models {
        let folder = results_root.join(m.identifier());
        let merged = folder.join(format!("crossval_results_folds_{folds_str}"));
        let summary = accumulate_cv_results(
            &folder,
            &merged,
            &settings.folds,
            reference,
            registries,
            settings.num_processes,
            settings.overwrite,
        )?;
        all.push((m.identifier(), merged, summary.foreground_mean.dice));
    }
    Ok(all)
}

/// Ensembles every pair of models on their cross-validation probabilities into
/// `results_root/ensembles/` and evaluates each against `gt_segmentations`.
fn score_ensembles(
    models: &[TrainedModel],
    results_root: &Path,
    gt_segmentations: &Path,
    registries: &Registries,
    settings: &FindBestSettings,
) -> Result<Vec<Candidate>> {
    let folds = &settings.folds;
    let mut all = Vec::new();
    for i in 0..models.len() {
        for j in i + 1..models.len() {
            let (a, b) = (&models[i], &models[j]);
            let fa = results_root.join(a.identifier());
            let fb = results_root.join(b.identifier());
            let name = ensemble_name(a, b, folds);
            let out = results_root.join("ensembles").join(&name);
            ensemble_crossvalidations(
                &[fa.clone(), fb],
                &out,
                folds,
                registries,
                settings.num_processes,
                settings.overwrite,
            )?;
            let dataset_json = read_dataset_json(&fa.join("dataset.json"))?;
            let reader = reader_for(registries, &fa.join("plans.json"), &dataset_json)?;
            let summary = evaluate_dataset_folder(
                gt_segmentations,
                &out,
                &dataset_json,
                reader.as_ref(),
                settings.num_processes,
            )?;
            all.push((name, out, summary.foreground_mean.dice));
        }
    }
    Ok(all)
}

/// Python's `max()` over the candidates' Dice: the index of the first of the best; NaN never
/// wins over a number.
fn best_candidate(all: &[Candidate]) -> usize {
    let mut best_index = 0;
    for (k, (_, _, d)) in all.iter().enumerate() {
        let current = all[best_index].2;
        if *d > current || (current.is_nan() && !d.is_nan()) {
            best_index = k;
        }
    }
    best_index
}

/// The models behind a candidate's name: both members of an ensemble, or the one model.
fn selected_models(best: &str) -> Vec<TrainedModel> {
    if let Some(rest) = best.strip_prefix("ensemble___") {
        rest.split("___")
            .take(2)
            .filter_map(TrainedModel::from_identifier)
            .collect()
    } else {
        TrainedModel::from_identifier(best).into_iter().collect()
    }
}

/// What the winner's `inference_information.json` says besides the considered models and
/// results: its Dice before and after postprocessing, its files and its models.
struct Winner<'a> {
    selected: &'a [TrainedModel],
    pre_pp: f64,
    post_pp: f64,
    pp_file: &'a Path,
    plans_file: &'a Path,
}

/// The content of `inference_information.json`, keys sorted.
fn inference_information(
    settings: &FindBestSettings,
    models: &[TrainedModel],
    all: &[Candidate],
    winner: &Winner<'_>,
) -> Value {
    let model_dict = |m: &TrainedModel| json!({"plans": m.plans, "configuration": m.configuration, "trainer": m.trainer});
    let mut all_results = Map::new();
    for (name, _, dice) in all {
        all_results.insert(name.clone(), number(*dice));
    }
    sorted(json!({
        "folds": settings.folds,
        "dataset_name_or_id": settings.dataset_name_or_id,
        "considered_models": models.iter().map(model_dict).collect::<Vec<_>>(),
        "ensembling_allowed": settings.allow_ensembling,
        "all_results": all_results,
        "best_model_or_ensemble": {
            "result_on_crossval_pre_pp": number(winner.pre_pp),
            "result_on_crossval_post_pp": number(winner.post_pp),
            "postprocessing_file": winner.pp_file.to_string_lossy(),
            "some_plans_file": winner.plans_file.to_string_lossy(),
            "selected_model_or_models": winner.selected.iter().map(|m| json!({
                "configuration": m.configuration,
                "trainer": m.trainer,
                "plans_identifier": m.plans,
            })).collect::<Vec<_>>(),
        },
    }))
}

/// Determines postprocessing on the winner's cross-validation predictions in `source`.
fn postprocess_winner(
    source: &Path,
    gt_segmentations: &Path,
    registries: &Registries,
    settings: &FindBestSettings,
) -> Result<PostprocessingResult> {
    let dataset_json = read_dataset_json(&source.join("dataset.json"))?;
    let reader = reader_for(registries, &source.join("plans.json"), &dataset_json)?;
    let pp = determine_postprocessing(&DeterminePostprocessing {
        predictions: source,
        reference: gt_segmentations,
        dataset_json: &dataset_json,
        reader: reader.as_ref(),
        num_processes: settings.num_processes,
        keep_postprocessed_files: true,
    })?;
    Ok(pp)
}

/// nnU-Net's `find_best_configuration` (see the module documentation).
pub fn find_best_configuration(
    paths: &NnunetPaths,
    registries: &Registries,
    settings: &FindBestSettings,
) -> Result<BestConfiguration> {
    if settings.folds.is_empty() {
        return Err(Error::evaluation("give at least one fold (-f)"));
    }
    let dataset = paths.dataset_name(&settings.dataset_name_or_id)?;
    let preprocessed = paths.preprocessed()?.join(&dataset);
    let results_root = paths.results()?.join(&dataset);
    let folds = &settings.folds;
    let (models, skipped) = available_models(settings, &dataset, &preprocessed, &results_root)?;

    let raw_labels = paths
        .raw()
        .ok()
        .map(|r| r.join(&dataset).join("labelsTr"))
        .filter(|p| p.is_dir());
    let gt_segmentations = preprocessed.join("gt_segmentations");
    let reference = raw_labels.unwrap_or_else(|| gt_segmentations.clone());
    let mut all = score_models(&models, &results_root, &reference, registries, settings)?;
    if settings.allow_ensembling {
        all.extend(score_ensembles(
            &models,
            &results_root,
            &gt_segmentations,
            registries,
            settings,
        )?);
    }
    let (best, source, pre_pp) = all[best_candidate(&all)].clone();

    let pp = postprocess_winner(&source, &gt_segmentations, registries, settings)?;

    let selected = selected_models(&best);
    let pp_file = source.join("postprocessing.json");
    let plans_file = source.join("plans.json");
    let information = inference_information(
        settings,
        &models,
        &all,
        &Winner {
            selected: &selected,
            pre_pp,
            post_pp: pp.after.foreground_mean.dice,
            pp_file: &pp_file,
            plans_file: &plans_file,
        },
    );
    let info_file = results_root.join("inference_information.json");
    nnunet_core::compat::json::write_json(&info_file, &information)?;
    let instructions = inference_instructions(
        &settings.dataset_name_or_id,
        &selected,
        folds,
        &pp_file,
        &plans_file,
        settings.instructions_num_processes,
    );
    let instructions_file = results_root.join("inference_instructions.txt");
    std::fs::write(&instructions_file, &instructions)
        .map_err(|e| Error::io(&instructions_file, e))?;
    Ok(BestConfiguration {
        information,
        all_results: all.iter().map(|(n, _, d)| (n.clone(), *d)).collect(),
        best,
        instructions,
        postprocessing_messages: pp.messages,
        files: [info_file, instructions_file],
        skipped,
    })
}

/// The text of `inference_instructions.txt` (nnU-Net's `print_inference_instructions`, with
/// nnunet's command names).
pub fn inference_instructions(
    dataset_name_or_id: &str,
    selected: &[TrainedModel],
    folds: &[u32],
    postprocessing_file: &Path,
    plans_file: &Path,
    num_processes: usize,
) -> String {
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line("***Run inference like this:***\n");
    let is_ensemble = selected.len() > 1;
    if is_ensemble {
        line(
            "An ensemble won! What a surprise! Run the following commands to run predictions \
             with the ensemble members:\n",
        );
    }
    let folds_text = folds
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let mut outputs = Vec::new();
    for (j, m) in selected.iter().enumerate() {
        let output = if is_ensemble {
            format!("OUTPUT_FOLDER_MODEL_{}", j + 1)
        } else {
            "OUTPUT_FOLDER".to_string()
        };
        let mut cmd = format!(
            "nnunet predict -d {dataset_name_or_id} -i INPUT_FOLDER -o {output} -f {folds_text} \
             -tr {} -c {} -p {}",
            m.trainer, m.configuration, m.plans
        );
        if is_ensemble {
            cmd.push_str(" --save_probabilities");
        }
        line(&cmd);
        outputs.push(output);
    }
    if is_ensemble {
        line("\nThe run ensembling with:\n");
        line(&format!(
            "nnunet ensemble -i {} -o OUTPUT_FOLDER -np {num_processes}",
            outputs.join(" ")
        ));
    }
    line("\n***Once inference is completed, run postprocessing like this:***\n");
    line(&format!(
        "nnunet apply-postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP -pp_pkl_file {} -np \
         {num_processes} -plans_json {}",
        postprocessing_file.display(),
        plans_file.display()
    ));
    out
}
