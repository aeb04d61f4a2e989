//! Finding the cases of a layout and drawing the test cases.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nnunet_core::io::required_file;
use nnunet_core::{Error, Result};
use nnunet_training::splits::case_groups;
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::{Case, FolderConversion, IMAGE_ENDINGS, Layout, TestSplit};
use crate::conversion::{file_name, sorted_paths};

/// Whether `path` ends in one of the [`IMAGE_ENDINGS`] (case-insensitive).
fn has_image_ending(path: &Path) -> bool {
    let name = path.to_string_lossy().to_lowercase();
    IMAGE_ENDINGS.iter().any(|e| name.ends_with(e))
}

/// The file name of `path` without its image ending; `None` without one.
pub(super) fn stem_without_ending(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let lower = name.to_lowercase();
    IMAGE_ENDINGS
        .iter()
        .find(|e| lower.ends_with(*e))
        .map(|e| name[..name.len() - e.len()].to_string())
}

/// The entries of `dir` whose names do not start with `.`, sorted.
pub(super) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    sorted_paths(dir, |p| !file_name(p).is_some_and(|n| n.starts_with('.')))
}

/// The image files directly in `dir`, sorted.
pub(super) fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_file() && has_image_ending(p))
        .collect())
}

/// The file of `files` whose name without its ending is `stem`.
fn file_with_stem(files: &[PathBuf], stem: &str) -> Option<PathBuf> {
    files
        .iter()
        .find(|f| stem_without_ending(f).as_deref() == Some(stem))
        .cloned()
}

/// The cases of `layout`.
fn find_cases(layout: &Layout) -> Result<Vec<Case>> {
    let cases = match layout {
        Layout::PerCase {
            root,
            image_name,
            label_name,
            roi_name,
        } => per_case_cases(root, image_name, label_name, roi_name.as_deref())?,
        Layout::Split {
            images,
            labels,
            label_suffix,
            rois,
            roi_suffix,
        } => split_cases(
            images,
            labels.as_deref().map(|l| (l, label_suffix.as_str())),
            rois.as_deref().map(|r| (r, roi_suffix.as_str())),
        )?,
    };
    Ok(cases)
}

/// The cases of a [`Layout::PerCase`] layout: every folder of `root` holding `image_name`.
fn per_case_cases(
    root: &Path,
    image_name: &str,
    label_name: &str,
    roi_name: Option<&str>,
) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
        let image = dir.join(image_name);
        if !image.is_file() {
            continue;
        }
        let label = dir.join(label_name);
        let id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let roi = match roi_name {
            Some(name) => Some(required_roi(dir.join(name), &id)?),
            None => None,
        };
        cases.push(Case {
            id,
            image,
            label: label.is_file().then_some(label),
            roi,
        });
    }
    if cases.is_empty() {
        return Err(Error::dataset(format!(
            "{}: no case folder holds an image named {image_name}",
            root.display()
        )));
    }
    Ok(cases)
}

/// The region of interest `file` of case `id`, which must exist.
fn required_roi(file: PathBuf, id: &str) -> Result<PathBuf> {
    required_file(file, || {
        format!("the region of interest of case '{id}' (every case needs one)")
    })
}

/// The cases of a [`Layout::Split`] layout: every image of `images`, with the label and region
/// of interest named after it plus the suffix, in their folders.
fn split_cases(
    images: &Path,
    labels: Option<(&Path, &str)>,
    rois: Option<(&Path, &str)>,
) -> Result<Vec<Case>> {
    let label_files = labels.map(|(dir, _)| image_files(dir)).transpose()?;
    let roi_files = rois.map(|(dir, _)| image_files(dir)).transpose()?;
    // An image folder that also holds the masks: their files are not images.
    let not_an_image = |stem: &str| {
        [labels, rois]
            .into_iter()
            .flatten()
            .any(|(dir, suffix)| dir == images && !suffix.is_empty() && stem.ends_with(suffix))
    };
    let mut cases = Vec::new();
    for image in image_files(images)? {
        let id = stem_without_ending(&image).expect("filtered by ending");
        if not_an_image(&id) {
            continue;
        }
        let label = match (labels, &label_files) {
            (Some((_, suffix)), Some(files)) => file_with_stem(files, &format!("{id}{suffix}")),
            _ => None,
        };
        let roi = match (rois, &roi_files) {
            (Some((dir, suffix)), Some(files)) => Some(
                file_with_stem(files, &format!("{id}{suffix}")).ok_or_else(|| {
                    Error::dataset_file(
                        dir.join(format!("{id}{suffix}.png")),
                        format!(
                            "missing: the region of interest of case '{id}' ({id}{suffix} with \
                             an image ending; every case needs one)"
                        ),
                    )
                })?,
            ),
            _ => None,
        };
        cases.push(Case {
            id,
            image,
            label,
            roi,
        });
    }
    if cases.is_empty() {
        return Err(Error::dataset(format!(
            "{}: no image files ({})",
            images.display(),
            IMAGE_ENDINGS.join(", ")
        )));
    }
    Ok(cases)
}

/// The labelled cases of the training layout that the test split makes test cases.
pub(super) fn drawn_test_cases(split: &TestSplit, cases: &[Case]) -> Result<BTreeSet<String>> {
    let labelled: Vec<String> = cases
        .iter()
        .filter(|c| c.label.is_some())
        .map(|c| c.id.clone())
        .collect();
    match split {
        TestSplit::None => Ok(BTreeSet::new()),
        TestSplit::Cases(names) => {
            for name in names {
                if !cases.iter().any(|c| &c.id == name) {
                    return Err(Error::dataset(format!(
                        "test case '{name}' is not among the cases found"
                    )));
                }
            }
            Ok(names.iter().cloned().collect())
        }
        TestSplit::Fraction {
            fraction,
            seed,
            group_by,
        } => {
            if !(0.0..1.0).contains(fraction) {
                return Err(Error::dataset(format!(
                    "the test fraction must be at least 0 and below 1, got {fraction} (a separate \
                     test folder is given with --test-input)"
                )));
            }
            let groups = match group_by {
                Some(pattern) => case_groups(&labelled, pattern)?,
                None => labelled.clone(),
            };
            let mut distinct: Vec<&String> =
                groups.iter().collect::<BTreeSet<_>>().into_iter().collect();
            distinct.shuffle(&mut rand::rngs::StdRng::seed_from_u64(*seed));
            let n = (distinct.len() as f64 * fraction).round() as usize;
            let chosen: BTreeSet<&String> = distinct.into_iter().take(n).collect();
            Ok(labelled
                .iter()
                .zip(&groups)
                .filter(|(_, g)| chosen.contains(g))
                .map(|(id, _)| id.clone())
                .collect())
        }
    }
}

/// The cases of the training layout and of the test layout; a case name in both is an error.
pub(super) fn all_cases(job: &FolderConversion) -> Result<(Vec<Case>, Vec<Case>)> {
    let cases = find_cases(&job.layout)?;
    let extra_test = match &job.test_layout {
        Some(layout) => find_cases(layout)?,
        None => Vec::new(),
    };
    if let Some(twice) = extra_test
        .iter()
        .find(|t| cases.iter().any(|c| c.id == t.id))
    {
        return Err(Error::dataset_file(
            &twice.image,
            format!(
                "the test case '{}' has the name of a training case; case names must be unique",
                twice.id
            ),
        ));
    }
    if job.roi_as_ignore && !job.layout.has_rois() {
        return Err(Error::dataset(
            "--roi-as-ignore needs the regions of interest (--roi-name, or --rois with \
             --roi-suffix)",
        ));
    }
    Ok((cases, extra_test))
}

/// The images to convert: the image files directly in `input` (case = file name without its
/// ending), or, with `image_name`, `input/<case>/<image_name>`.
pub(super) fn images_to_convert(
    input: &Path,
    image_name: Option<&str>,
) -> Result<Vec<(String, PathBuf)>> {
    let found: Vec<(String, PathBuf)> = match image_name {
        Some(name) => sorted_entries(input)?
            .into_iter()
            .filter(|d| d.join(name).is_file())
            .filter_map(|d| {
                let id = d.file_name()?.to_str()?.to_string();
                Some((id, d.join(name)))
            })
            .collect(),
        None => image_files(input)?
            .into_iter()
            .filter_map(|f| Some((stem_without_ending(&f)?, f)))
            .collect(),
    };
    if found.is_empty() {
        return Err(Error::dataset_file(
            input,
            match image_name {
                Some(name) => format!("no case folder holds an image named {name}"),
                None => format!("no image files ({})", IMAGE_ENDINGS.join(", ")),
            },
        ));
    }
    for pair in found.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(Error::dataset_file(
                &pair[1].1,
                format!(
                    "has the name of {} without its ending; the cases would have the same name",
                    pair[0].1.display()
                ),
            ));
        }
    }
    Ok(found)
}
