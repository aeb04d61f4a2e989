//! `nnunet make-splits -d DATASET [--group-by REGEX]`: writes the dataset's cross-validation
//! folds, `nnUNet_preprocessed/DatasetXXX/splits_final.json`, with nnU-Net's seeded 5-fold split,
//! over groups of cases when `--group-by` names them (`'^(Image_\d+)'` keeps a patient's left and
//! right eye in one fold), so that no patient is in both the training and the validation cases.

use std::path::Path;

use nnunet_dataset::DatasetJson;
use nnunet_dataset::training_cases;
use nnunet_training::splits::{
    Split, case_groups, crossval_splits, grouped_crossval_splits, write_splits,
};

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Dataset ID or name.
    #[arg(short = 'd', value_name = "DATASET")]
    dataset: String,
    /// A regular expression whose first group (or whole match) names a case's group; the cases of
    /// a group stay in one fold.
    #[arg(long = "group-by", value_name = "REGEX")]
    group_by: Option<String>,
    /// Number of folds.
    #[arg(long = "folds", default_value_t = 5)]
    folds: usize,
    /// Seed of the split (nnU-Net's is 12345).
    #[arg(long = "seed", default_value_t = 12345)]
    seed: u32,
    /// Replace an existing splits_final.json (folds already trained on the old one then no longer
    /// match it).
    #[arg(long)]
    overwrite: bool,
}

/// The training cases of the dataset: from nnUNet_raw when it holds the dataset, else from the
/// preprocessed `gt_segmentations`.
fn case_identifiers(ctx: &Context, name: &str, preprocessed: &Path) -> anyhow::Result<Vec<String>> {
    if let Ok(raw) = ctx.paths.raw()
        && raw.join(name).join("dataset.json").is_file()
    {
        let folder = raw.join(name);
        let dataset_json = DatasetJson::from_file(&folder.join("dataset.json"))?;
        return Ok(training_cases(&folder, &dataset_json)?
            .into_iter()
            .map(|c| c.id)
            .collect());
    }
    let gt = preprocessed.join("gt_segmentations");
    let dataset_json = DatasetJson::from_file(&preprocessed.join("dataset.json")).map_err(|e| {
        anyhow::anyhow!(
            "{e}; make-splits reads the training cases from nnUNet_raw or from a preprocessed \
             dataset"
        )
    })?;
    let ending = dataset_json.file_ending;
    let mut ids: Vec<String> = std::fs::read_dir(&gt)
        .map_err(|e| anyhow::anyhow!("{}: {e}", gt.display()))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(&ending).map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Runs `nnunet make-splits`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let name = ctx.paths.dataset_name(&args.dataset)?;
    let preprocessed = ctx.paths.preprocessed()?.join(&name);
    let file = preprocessed.join("splits_final.json");
    if file.exists() && !args.overwrite {
        anyhow::bail!(
            "{}: exists already; pass --overwrite to replace it (folds trained on it then no \
             longer match their validation cases)",
            file.display()
        );
    }
    let ids = case_identifiers(ctx, &name, &preprocessed)?;
    let splits: Vec<Split> = match &args.group_by {
        Some(pattern) => {
            let groups = case_groups(&ids, pattern)?;
            grouped_crossval_splits(&ids, &groups, args.folds, args.seed)?
        }
        None => crossval_splits(&ids, args.folds, args.seed)?,
    };
    std::fs::create_dir_all(&preprocessed)
        .map_err(|e| anyhow::anyhow!("{}: {e}", preprocessed.display()))?;
    write_splits(&file, &splits)?;
    let mut out = std::io::stdout().lock();
    for (i, split) in splits.iter().enumerate() {
        crate::output::line(
            &mut out,
            format_args!(
                "fold {i}: {} training, {} validation case(s)",
                split.train.len(),
                split.val.len()
            ),
        )?;
    }
    crate::output::line(
        &mut out,
        format_args!("wrote {} ({} cases)", file.display(), ids.len()),
    )
}
