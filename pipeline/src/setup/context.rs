//! Reading what a run needs: plans, dataset, folds, trainer settings and the network's spec.

use std::path::PathBuf;

use nnunet_core::network::NetworkSpec;
use nnunet_core::paths::TrainedModel;
use nnunet_core::{Error, Registries, Result};
use nnunet_dataset::DatasetJson;
use nnunet_inference::cascade::{
    cascade_labels, network_input_channels, predicted_next_stage_folder,
};
use nnunet_plugins::augmentations::geometry::configure_rotation_dummy_da_mirroring_and_initial_patch_size;
use nnunet_preprocessing::plans::{Configuration, Plans};
use nnunet_preprocessing::storage::stored_cases;
use nnunet_training::splits::{Split, fold_cases};
use nnunet_training::{MirrorAxes, NormKind, TrainerSettings, settings_of};

use super::{RunContext, RunRequest, fold_folder};

/// Reads the request's plans file; returns the plans, the requested configuration and its
/// preprocessed data folder.
fn read_plans(request: &RunRequest) -> Result<(Plans, Configuration, PathBuf)> {
    let plans_file = request
        .preprocessed_folder
        .join(format!("{}.json", request.plans_identifier));
    if !plans_file.is_file() {
        return Err(Error::training_file(
            &plans_file,
            "no such plans file; run `nnunet plan-and-preprocess -d ID` first (or pass -p with \
             the plans you made)",
        ));
    }
    let plans = Plans::from_file(&plans_file)?;
    let configuration = plans.configuration(&request.configuration)?;
    let data_folder = request
        .preprocessed_folder
        .join(configuration.data_identifier()?);
    Ok((plans, configuration, data_folder))
}

/// Network class name as registered: the last component of `network_class_name`.
pub fn architecture_name(configuration: &Configuration) -> Result<(String, serde_json::Value)> {
    let architecture = configuration
        .json
        .get("architecture")
        .ok_or_else(|| Error::training("the plans configuration has no 'architecture' entry"))?;
    let class = architecture
        .get("network_class_name")
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            Error::training("the plans configuration has no architecture.network_class_name")
        })?;
    let kwargs = architecture.get("arch_kwargs").cloned().ok_or_else(|| {
        Error::training("the plans configuration has no architecture.arch_kwargs")
    })?;
    Ok((
        class.rsplit('.').next().unwrap_or(class).to_string(),
        kwargs,
    ))
}

/// Number of network outputs: classes (labels without the ignore label) or regions.
pub fn output_channels(dataset_json: &DatasetJson) -> usize {
    let labels = &dataset_json.labels;
    if labels.is_region_based() {
        labels.regions().len()
    } else {
        labels.all_labels().len()
    }
}

/// The settings of the requested trainer changed by the request's overrides; epochs and
/// iterations per epoch must be positive.
fn requested_settings(registries: &Registries, request: &RunRequest) -> Result<TrainerSettings> {
    let trainer = registries.trainers.create(&request.trainer)?;
    let mut settings = settings_of(trainer.as_ref());
    request.overrides.apply(&mut settings);
    if settings.num_epochs == 0 || settings.num_iterations_per_epoch == 0 {
        return Err(Error::training(
            "the number of epochs and of iterations per epoch must be positive",
        ));
    }
    Ok(settings)
}

/// The spatial axes mirrored at inference: those of the training augmentation, none when the
/// settings switch mirroring off.
fn inference_mirror_axes(
    configuration: &Configuration,
    settings: &TrainerSettings,
) -> Result<Vec<usize>> {
    let geometry = configure_rotation_dummy_da_mirroring_and_initial_patch_size(
        &configuration.patch_size()?,
        &settings.augmentation,
    )?;
    Ok(match settings.augmentation.mirror_axes {
        MirrorAxes::None => Vec::new(),
        _ => geometry.mirror_axes.clone(),
    })
}

/// Reads plans, dataset and folds and resolves the trainer's settings for `request`.
pub fn run_context(registries: &Registries, request: &RunRequest) -> Result<RunContext> {
    let (plans, configuration, data_folder) = read_plans(request)?;
    if !data_folder.is_dir() {
        return Err(Error::training_file(
            &data_folder,
            format!(
                "not preprocessed yet; run `nnunet preprocess -d ID -plans_name {} -c {}`",
                request.plans_identifier, request.configuration
            ),
        ));
    }
    let dataset_json = DatasetJson::from_file(&request.preprocessed_folder.join("dataset.json"))?;
    let settings = requested_settings(registries, request)?;
    let cases = stored_cases(&data_folder)?;
    if cases.is_empty() {
        return Err(Error::training_file(
            &data_folder,
            "holds no preprocessed cases",
        ));
    }
    let split = fold_cases(
        &request.preprocessed_folder.join("splits_final.json"),
        &cases,
        request.fold,
    )?;
    if split.val.is_empty() {
        return Err(Error::training(format!(
            "fold {} has no validation cases",
            request.fold
        )));
    }
    let output_folder = fold_folder(
        &request.results_folder,
        &request.trainer,
        &request.plans_identifier,
        &request.configuration,
        request.fold,
    );
    let cascade_labels = cascade_labels(&configuration, &dataset_json)?;
    let previous_stage_folder = match configuration.previous_stage() {
        Some(previous) => Some(previous_stage_predictions(request, previous, &split)?),
        None => None,
    };
    let (network_class_name, arch_kwargs) = architecture_name(&configuration)?;
    let labels = &dataset_json.labels;
    let spec = NetworkSpec {
        arch_kwargs,
        input_channels: network_input_channels(&configuration, &dataset_json)?,
        output_channels: output_channels(&dataset_json),
        deep_supervision: settings.enable_deep_supervision,
        is_2d: configuration.is_2d()?,
        batch_norm: settings.norm == NormKind::Batch,
    };
    let inference_mirror_axes = inference_mirror_axes(&configuration, &settings)?;
    Ok(RunContext {
        regions: labels.is_region_based(),
        ignore_label: labels.ignore_label(),
        plans,
        configuration,
        dataset_json,
        data_folder,
        split,
        settings,
        output_folder,
        spec,
        network_class_name,
        inference_mirror_axes,
        cascade_labels,
        previous_stage_folder,
    })
}

/// The previous stage's segmentations for a cascade stage, checked to cover every case of the
/// fold: `Trainer__Plans__<previous>/predicted_next_stage/<configuration>`, written by the final
/// validation of the previous stage's folds.
fn previous_stage_predictions(
    request: &RunRequest,
    previous: &str,
    split: &Split,
) -> Result<PathBuf> {
    let previous_model = request.results_folder.join(
        TrainedModel::new(&request.trainer, &request.plans_identifier, previous).identifier(),
    );
    let folder = predicted_next_stage_folder(&previous_model, &request.configuration);
    let missing: Vec<&String> = split
        .train
        .iter()
        .chain(&split.val)
        .filter(|case| !folder.join(format!("{case}.npy")).is_file())
        .collect();
    if let Some(first) = missing.first() {
        return Err(Error::training_file(
            folder.join(format!("{first}.npy")),
            format!(
                "missing ({} of the fold's cases have no prediction of the previous stage): \
                 '{}' is a cascade stage and trains on the cross-validation predictions of \
                 '{previous}'. Train every fold of '{previous}' with the same trainer and plans \
                 first (`nnunet train DATASET {previous} FOLD -tr {} -p {}` for folds 0 to 4); \
                 each fold's final validation writes its cases there",
                missing.len(),
                request.configuration,
                request.trainer,
                request.plans_identifier
            ),
        ));
    }
    Ok(folder)
}
