//! Postprocessing: keep only the largest connected component, and nnU-Net's choice of when to.
//!
//! As nnU-Net v2.8.1 (`remove_connected_components.py`): components are found with full
//! connectivity (scikit-image's `label` with `connectivity=None`: 26 neighbours in 3D, 8 in a 2D
//! slice) on the `[z, y, x]` label map; every component of the largest size is kept (ties keep
//! them all) and the voxels of the others become background (0).
//!
//! [`determine_postprocessing`] evaluates the raw predictions, then tries "remove all but the
//! largest component of the union of all foreground labels": it is kept when the mean foreground
//! Dice rises strictly and no label or region's mean Dice falls. With more than one label or
//! region it then tries each one on its own (in `dataset.json` order, each on top of what was
//! kept so far) and keeps those that raise that label's mean Dice strictly. The result is written
//! as nnU-Net's `postprocessing.json` (which nnU-Net writes next to its pickle): the Dice before
//! and after and the list of operations with their arguments, which [`Postprocessing::read`]
//! reads back, so this JSON replaces nnU-Net's `postprocessing.pkl`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ndarray::{Array3, ArrayView3};

use crate::metrics::{
    LabelOrRegion, MeanMetrics, Summary, evaluate_dataset_folder, evaluation_targets,
};
use nnunet_core::compat::json::{JsonValue, non_finite_to_null, python_float_repr};
use nnunet_core::error::{Error, Result};
use nnunet_core::io::Reader;
use nnunet_core::parallel::try_map_ordered;
use nnunet_dataset::DatasetJson;

/// nnU-Net's name of the one postprocessing function.
pub const KEEP_LARGEST_COMPONENT_FN: &str = "remove_all_but_largest_component_from_segmentation";

/// Labels every connected component of `mask` with full connectivity (26 neighbours), numbered
/// 1, 2, … in the raster order of their first voxel; returns the labels and the size of each
/// component (`sizes[k - 1]` is the size of component `k`).
pub fn label_components(mask: ArrayView3<'_, bool>) -> (Array3<u32>, Vec<u64>) {
    let (nz, ny, nx) = mask.dim();
    let mask = mask.as_standard_layout();
    let m = mask.as_slice().expect("standard layout is contiguous");
    let mut labels = vec![0u32; m.len()];
    let mut sizes: Vec<u64> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    for start in 0..m.len() {
        if !m[start] || labels[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32 + 1;
        labels[start] = id;
        stack.push(start);
        let mut size = 0u64;
        while let Some(i) = stack.pop() {
            size += 1;
            let (z, y, x) = (i / (ny * nx), (i / nx) % ny, i % nx);
            for zz in z.saturating_sub(1)..(z + 2).min(nz) {
                for yy in y.saturating_sub(1)..(y + 2).min(ny) {
                    for xx in x.saturating_sub(1)..(x + 2).min(nx) {
                        let j = (zz * ny + yy) * nx + xx;
                        if m[j] && labels[j] == 0 {
                            labels[j] = id;
                            stack.push(j);
                        }
                    }
                }
            }
        }
        sizes.push(size);
    }
    let labels = Array3::from_shape_vec((nz, ny, nx), labels).expect("shape matches");
    (labels, sizes)
}

/// The voxels of `mask` that belong to its largest component(s) (all components of the largest
/// size are kept; an empty mask gives an empty result).
pub fn largest_component_mask(mask: ArrayView3<'_, bool>) -> Array3<bool> {
    let (labels, sizes) = label_components(mask);
    let Some(&largest) = sizes.iter().max() else {
        return Array3::from_elem(mask.dim(), false);
    };
    let keep: Vec<bool> = std::iter::once(false)
        .chain(sizes.iter().map(|&s| s == largest))
        .collect();
    labels.mapv(|l| keep[l as usize])
}

/// What one postprocessing step works on: nnU-Net's `labels_or_regions` argument, either a list
/// (of labels or regions) or one label or region. The mask is the union of every label named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// A list, as nnU-Net's first step (all foreground labels) passes it.
    List(Vec<LabelOrRegion>),
    /// One label or region, as nnU-Net's per-class steps pass it.
    One(LabelOrRegion),
}

impl Selection {
    /// Every label value whose voxels are in the mask.
    pub fn label_values(&self) -> Vec<i64> {
        let mut out: Vec<i64> = match self {
            Selection::List(items) => items.iter().flat_map(|i| i.labels().to_vec()).collect(),
            Selection::One(item) => item.labels().to_vec(),
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The selection as nnU-Net writes `labels_or_regions`: a label, a list of labels, or lists for
    /// regions.
    fn to_py(&self) -> JsonValue {
        let one = |item: &LabelOrRegion| match item {
            LabelOrRegion::Label(v) => JsonValue::Int(*v),
            LabelOrRegion::Region(v) => {
                JsonValue::Array(v.iter().map(|&x| JsonValue::Int(x)).collect())
            }
        };
        match self {
            Selection::List(items) => JsonValue::Array(items.iter().map(one).collect()),
            Selection::One(item) => one(item),
        }
    }

    /// Parses `labels_or_regions` back; the error says what is wrong.
    fn from_json(value: &serde_json::Value) -> std::result::Result<Self, String> {
        let int = |v: &serde_json::Value| {
            v.as_i64()
                .ok_or_else(|| format!("{v} is not a label (an integer)"))
        };
        match value {
            serde_json::Value::Number(_) => Ok(Selection::One(LabelOrRegion::Label(int(value)?))),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    serde_json::Value::Array(region) => Ok(LabelOrRegion::Region(
                        region
                            .iter()
                            .map(int)
                            .collect::<std::result::Result<_, _>>()?,
                    )),
                    other => Ok(LabelOrRegion::Label(int(other)?)),
                })
                .collect::<std::result::Result<Vec<_>, String>>()
                .map(Selection::List),
            other => Err(format!(
                "'labels_or_regions' must be a label or a list of labels or regions, not {other}"
            )),
        }
    }
}

/// Removes, from `segmentation`, every component of the mask of `selection` but the largest
/// (setting those voxels to `background`); other labels are untouched. As nnU-Net's
/// `remove_all_but_largest_component_from_segmentation`.
pub fn keep_largest_component(
    segmentation: ArrayView3<'_, i16>,
    selection: &Selection,
    background: i16,
) -> Array3<i16> {
    let values: HashSet<i64> = selection.label_values().into_iter().collect();
    let mask = segmentation.mapv(|v| values.contains(&(v as i64)));
    let keep = largest_component_mask(mask.view());
    let mut out = segmentation.to_owned();
    ndarray::Zip::from(&mut out)
        .and(&mask)
        .and(&keep)
        .for_each(|o, &m, &k| {
            if m && !k {
                *o = background;
            }
        });
    out
}

/// A chosen postprocessing: the steps (each "keep the largest component of this selection"),
/// applied in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Postprocessing {
    /// The steps, in the order they are applied.
    pub steps: Vec<Selection>,
}

impl Postprocessing {
    /// Applies every step to a label map `[z, y, x]`.
    pub fn apply(&self, segmentation: ArrayView3<'_, i16>) -> Array3<i16> {
        let mut seg = segmentation.to_owned();
        for step in &self.steps {
            seg = keep_largest_component(seg.view(), step, 0);
        }
        seg
    }

    /// Reads the steps from nnU-Net's `postprocessing.json` (its `postprocessing_fns` and
    /// `postprocessing_kwargs`). A `.pkl` file is refused with a note to pass the `.json`.
    pub fn read(path: &Path) -> Result<Self> {
        if path.extension().is_some_and(|e| e == "pkl") {
            return Err(Error::evaluation_file(
                path,
                "nnunet does not read pickles; pass the postprocessing.json next to it (nnU-Net \
                 and nnunet both write one with the same steps)",
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: serde_json::Value = serde_json::from_str(&non_finite_to_null(&text))
            .map_err(|e| Error::evaluation_file(path, format!("not valid JSON: {e}")))?;
        let bad = |reason: String| Error::evaluation_file(path, reason);
        let fns = value
            .get("postprocessing_fns")
            .and_then(|v| v.as_array())
            .ok_or_else(|| {
                bad("no 'postprocessing_fns' list (is this a postprocessing.json?)".into())
            })?;
        let kwargs = value
            .get("postprocessing_kwargs")
            .and_then(|v| v.as_array())
            .ok_or_else(|| bad("no 'postprocessing_kwargs' list".into()))?;
        if fns.len() != kwargs.len() {
            return Err(bad(format!(
                "{} postprocessing functions but {} sets of arguments",
                fns.len(),
                kwargs.len()
            )));
        }
        let mut steps = Vec::new();
        for (i, (f, k)) in fns.iter().zip(kwargs).enumerate() {
            if f.as_str() != Some(KEEP_LARGEST_COMPONENT_FN) {
                return Err(bad(format!(
                    "postprocessing function {i} is {f}; the only one that exists is \
                     '{KEEP_LARGEST_COMPONENT_FN}'"
                )));
            }
            let selection = k
                .get("labels_or_regions")
                .ok_or_else(|| bad(format!("arguments {i} have no 'labels_or_regions'")))?;
            steps.push(
                Selection::from_json(selection).map_err(|e| bad(format!("arguments {i}: {e}")))?,
            );
        }
        Ok(Postprocessing { steps })
    }
}

/// A pool of `num_processes` worker threads (0: one per core).
fn thread_pool(num_processes: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(num_processes)
        .build()
        .map_err(|e| Error::evaluation(format!("cannot start {num_processes} threads: {e}")))
}

/// Reads each file, applies `postprocessing` and writes it under the same name into `output`.
fn postprocess_files(
    input: &Path,
    names: &[String],
    output: &Path,
    postprocessing: &Postprocessing,
    reader: &dyn Reader,
    pool: &rayon::ThreadPool,
) -> Result<()> {
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    pool.install(|| {
        try_map_ordered(names, |name| {
            let seg = reader.read_segmentation(&input.join(name))?;
            let processed = postprocessing.apply(seg.data.index_axis(ndarray::Axis(0), 0));
            reader.write_segmentation(processed.view(), &output.join(name), &seg.properties)
        })
    })?;
    Ok(())
}

/// nnU-Net's `apply_postprocessing_to_folder`: applies `postprocessing` to every file of `input`
/// ending with `file_ending` and writes the results into `output`; returns how many.
pub fn apply_postprocessing_to_folder(
    input: &Path,
    output: &Path,
    postprocessing: &Postprocessing,
    reader: &dyn Reader,
    file_ending: &str,
    num_processes: usize,
) -> Result<usize> {
    crate::metrics::require_folder(input, "the predictions")?;
    let names = crate::metrics::files_with_ending(input, file_ending)?;
    if names.is_empty() {
        return Err(Error::evaluation_file(
            input,
            format!("no segmentations (files ending with '{file_ending}') to postprocess"),
        ));
    }
    let pool = thread_pool(num_processes)?;
    postprocess_files(input, &names, output, postprocessing, reader, &pool)?;
    Ok(names.len())
}

/// What [`determine_postprocessing`] works on.
pub struct DeterminePostprocessing<'a> {
    /// The predicted segmentations (with their `summary.json`, if already evaluated).
    pub predictions: &'a Path,
    /// The reference segmentations.
    pub reference: &'a Path,
    /// The dataset's `dataset.json` (labels, regions, ignore label, file ending).
    pub dataset_json: &'a DatasetJson,
    /// Reads and writes the segmentations.
    pub reader: &'a dyn Reader,
    /// Worker threads (at least 1).
    pub num_processes: usize,
    /// Keep `predictions/postprocessed/` (the postprocessed predictions and their summary).
    pub keep_postprocessed_files: bool,
}

/// What [`determine_postprocessing`] found.
#[derive(Clone, Debug)]
pub struct PostprocessingResult {
    /// The steps chosen.
    pub postprocessing: Postprocessing,
    /// The evaluation of the raw predictions.
    pub before: Summary,
    /// The evaluation after the chosen steps.
    pub after: Summary,
    /// What was tried and decided, one line each (nnU-Net prints these).
    pub messages: Vec<String>,
    /// `postprocessing.json` in the predictions folder.
    pub json_file: PathBuf,
}

/// Python's `round(x, 5)` as its `repr` (`NaN` for NaN), for messages.
fn round5(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else {
        python_float_repr((x * 1e5).round() / 1e5)
    }
}

/// The state of [`determine_postprocessing`]'s search: the job, the files and what is scored.
struct Search<'a> {
    job: &'a DeterminePostprocessing<'a>,
    /// The labels or regions evaluated.
    targets: Vec<LabelOrRegion>,
    /// Every foreground label (the first step's selection).
    foreground_labels: Vec<LabelOrRegion>,
    /// The predictions' file names.
    names: Vec<String>,
    pool: rayon::ThreadPool,
    /// `postprocessed/temp`, where the steps tried are written.
    temp: PathBuf,
    /// What was tried and decided.
    messages: Vec<String>,
}

impl<'a> Search<'a> {
    /// Checks the job's folders and labels and lists the predictions.
    fn new(job: &'a DeterminePostprocessing<'a>) -> Result<Self> {
        let predictions = job.predictions;
        if !predictions.is_dir() {
            return Err(Error::evaluation_file(
                predictions,
                "no such folder (the predictions)",
            ));
        }
        let labels = &job.dataset_json.labels;
        let targets = evaluation_targets(labels);
        if targets.is_empty() {
            return Err(Error::evaluation(
                "dataset.json has no foreground labels to postprocess",
            ));
        }
        let foreground_labels: Vec<LabelOrRegion> = labels
            .foreground_labels()
            .into_iter()
            .filter(|&v| Some(v) != labels.ignore_label())
            .map(LabelOrRegion::Label)
            .collect();
        let ending = job.dataset_json.file_ending.as_str();
        let names = crate::metrics::files_with_ending(predictions, ending)?;
        if names.is_empty() {
            return Err(Error::evaluation_file(
                predictions,
                format!("no predictions (files ending with '{ending}')"),
            ));
        }
        let mut messages = Vec::new();
        if job.reference.is_dir() {
            let refs = crate::metrics::files_with_ending(job.reference, ending)?;
            if refs.iter().any(|r| !names.contains(r)) {
                messages.push(
                    "WARNING: not all files of the reference folder have a prediction; \
                     postprocessing should be determined on the entire dataset"
                        .to_string(),
                );
            }
        }
        Ok(Search {
            job,
            targets,
            foreground_labels,
            names,
            pool: thread_pool(job.num_processes)?,
            temp: predictions.join("postprocessed").join("temp"),
            messages,
        })
    }

    /// Evaluates the predictions in `folder` and writes their `summary.json` there.
    fn evaluate(&self, folder: &Path) -> Result<Summary> {
        evaluate_dataset_folder(
            self.job.reference,
            folder,
            self.job.dataset_json,
            self.job.reader,
            self.job.num_processes,
        )
    }

    /// Applies `step` alone to the files of `source`, writes them to `here` and evaluates them.
    fn try_step(&self, source: &Path, here: &Path, step: &Selection) -> Result<Summary> {
        let single = Postprocessing {
            steps: vec![step.clone()],
        };
        postprocess_files(
            source,
            &self.names,
            here,
            &single,
            self.job.reader,
            &self.pool,
        )?;
        self.evaluate(here)
    }

    /// Tries keeping the largest component of all foreground together; returns the folder and
    /// summary the per-label steps start from (the step's, if chosen, else the predictions').
    fn try_all_foreground(
        &mut self,
        baseline: &Summary,
        chosen: &mut Postprocessing,
    ) -> Result<(PathBuf, Summary)> {
        let here = self.temp.join("keep_largest_fg");
        let step = Selection::List(self.foreground_labels.clone());
        let pp = self.try_step(self.job.predictions, &here, &step)?;
        let mut do_this = pp.foreground_mean.dice > baseline.foreground_mean.dice;
        if do_this {
            for (region, m) in &pp.mean {
                if baseline.mean_of(region).is_some_and(|b| m.dice < b.dice) {
                    do_this = false;
                    break;
                }
            }
        }
        Ok(if do_this {
            self.messages.push(format!(
                "Results were improved by removing all but the largest foreground region. Mean \
                 dice before: {} after: {}",
                round5(baseline.foreground_mean.dice),
                round5(pp.foreground_mean.dice)
            ));
            chosen.steps.push(step);
            (here.clone(), pp)
        } else {
            self.messages.push(
                "Removing all but the largest foreground region did not improve results!".into(),
            );
            (self.job.predictions.to_path_buf(), baseline.clone())
        })
    }

    /// Tries keeping the largest component of each label or region on its own, on top of
    /// `source`; a step that raises that target's mean Dice is chosen and becomes the source.
    fn try_each_target(
        &mut self,
        source: &mut PathBuf,
        source_summary: &mut Summary,
        chosen: &mut Postprocessing,
    ) -> Result<()> {
        let best = self.temp.join("keep_largest_perClassOrRegion_currentBest");
        for target in self.targets.clone() {
            let here = self.temp.join("keep_largest_perClassOrRegion");
            let step = Selection::One(target.clone());
            let pp = self.try_step(source, &here, &step)?;
            let before = source_summary.mean_of(&target).map_or(f64::NAN, |m| m.dice);
            let after = pp.mean_of(&target).map_or(f64::NAN, |m| m.dice);
            if after > before {
                self.messages.push(format!(
                    "Results were improved by removing all but the largest component for \
                     {target}. Dice before: {} after: {}",
                    round5(before),
                    round5(after)
                ));
                if best.is_dir() {
                    std::fs::remove_dir_all(&best).map_err(|e| Error::io(&best, e))?;
                }
                std::fs::rename(&here, &best).map_err(|e| Error::io(&here, e))?;
                *source = best.clone();
                *source_summary = pp;
                chosen.steps.push(step);
            } else {
                self.messages.push(format!(
                    "Removing all but the largest component for {target} did not improve \
                     results! Dice before: {} after: {}",
                    round5(before),
                    round5(after)
                ));
                std::fs::remove_dir_all(&here).map_err(|e| Error::io(&here, e))?;
            }
        }
        Ok(())
    }
}

/// Copies every file of `source` (the chosen predictions) into `output_folder`.
fn copy_files(source: &Path, output_folder: &Path) -> Result<()> {
    std::fs::create_dir_all(output_folder).map_err(|e| Error::io(output_folder, e))?;
    for entry in std::fs::read_dir(source).map_err(|e| Error::io(source, e))? {
        let entry = entry.map_err(|e| Error::io(source, e))?;
        if entry.path().is_file() {
            let to = output_folder.join(entry.file_name());
            std::fs::copy(entry.path(), &to).map_err(|e| Error::io(&to, e))?;
        }
    }
    Ok(())
}

/// nnU-Net's `determine_postprocessing` (see the module documentation). Writes
/// `predictions/summary.json` if missing, `predictions/postprocessed/` (its files and
/// `summary.json`) and `predictions/postprocessing.json`.
pub fn determine_postprocessing(job: &DeterminePostprocessing<'_>) -> Result<PostprocessingResult> {
    let predictions = job.predictions;
    let mut search = Search::new(job)?;
    let summary_file = predictions.join("summary.json");
    let baseline = if summary_file.is_file() {
        Summary::read(&summary_file)?
    } else {
        search.evaluate(predictions)?
    };
    let output_folder = predictions.join("postprocessed");
    let mut chosen = Postprocessing::default();
    let (mut source, mut source_summary) = search.try_all_foreground(&baseline, &mut chosen)?;
    if search.targets.len() > 1 {
        search.try_each_target(&mut source, &mut source_summary, &mut chosen)?;
    }

    // The chosen predictions (every file of the source folder) into postprocessed/.
    copy_files(&source, &output_folder)?;
    let json_file = predictions.join("postprocessing.json");
    std::fs::write(
        &json_file,
        postprocessing_json(&baseline, &source_summary, &chosen),
    )
    .map_err(|e| Error::io(&json_file, e))?;
    let temp = &search.temp;
    if temp.is_dir() {
        std::fs::remove_dir_all(temp).map_err(|e| Error::io(temp, e))?;
    }
    if !job.keep_postprocessed_files {
        std::fs::remove_dir_all(&output_folder).map_err(|e| Error::io(&output_folder, e))?;
    }
    Ok(PostprocessingResult {
        postprocessing: chosen,
        before: baseline,
        after: source_summary,
        messages: search.messages,
        json_file,
    })
}

/// Mean metrics as a `summary.json` object.
fn mean_py(m: &MeanMetrics) -> JsonValue {
    JsonValue::Object(
        [
            ("Dice", m.dice),
            ("IoU", m.iou),
            ("TP", m.tp),
            ("FP", m.fp),
            ("FN", m.fn_),
            ("TN", m.tn),
            ("n_pred", m.n_pred),
            ("n_ref", m.n_ref),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), JsonValue::Float(v)))
        .collect(),
    )
}

/// The foreground mean and the means of a summary, as `postprocessing.json` holds them.
fn summary_py(s: &Summary) -> JsonValue {
    JsonValue::Object(vec![
        ("foreground_mean".into(), mean_py(&s.foreground_mean)),
        (
            "mean".into(),
            JsonValue::Object(s.mean.iter().map(|(r, m)| (r.key(), mean_py(m))).collect()),
        ),
    ])
}

/// The text of nnU-Net's `postprocessing.json`.
pub fn postprocessing_json(before: &Summary, after: &Summary, pp: &Postprocessing) -> String {
    let root = JsonValue::Object(vec![
        ("input_folder".into(), summary_py(before)),
        ("postprocessed".into(), summary_py(after)),
        (
            "postprocessing_fns".into(),
            JsonValue::Array(
                pp.steps
                    .iter()
                    .map(|_| JsonValue::Str(KEEP_LARGEST_COMPONENT_FN.into()))
                    .collect(),
            ),
        ),
        (
            "postprocessing_kwargs".into(),
            JsonValue::Array(
                pp.steps
                    .iter()
                    .map(|s| JsonValue::Object(vec![("labels_or_regions".into(), s.to_py())]))
                    .collect(),
            ),
        ),
    ]);
    root.to_python_text()
}
