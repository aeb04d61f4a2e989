//! Ensembling: the average of several models' class probabilities for the same cases, as
//! nnU-Net v2.8.1's `ensemble_folders` and `ensemble_crossvalidations`.
//!
//! Every case's `<case>.npz` (key `probabilities`, `[classes, z, y, x]` float32) is read from each
//! input, summed in float32 in the order the inputs are given and divided by their number; the
//! average becomes a segmentation with the dataset's label handling (argmax, or regions above 0.5
//! in `regions_class_order`) and is written by the dataset's reader with the geometry in the
//! `<case>.json` next to the first input's `.npz`. With `save_probabilities`, the average and the
//! properties are written too.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::Array4;
use ndarray_npy::ReadNpyExt;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::inference::export::{LabelHandling, write_probabilities_npz};
use crate::io::Reader;
use crate::preprocessing::storage::read_properties;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// One member of a zip archive, from the central directory.
struct ZipMember {
    name: String,
    method: u16,
    compressed_size: u64,
    local_offset: u64,
}

/// The members listed in the central directory of a zip archive (ZIP64 aware).
fn zip_members(bytes: &[u8]) -> std::result::Result<Vec<ZipMember>, String> {
    const EOCD: u32 = 0x0605_4b50;
    let search_from = bytes.len().saturating_sub(22 + 65_535);
    let eocd = (search_from..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(bytes, i) == Some(EOCD))
        .ok_or("not a zip archive (no end of central directory record)")?;
    let mut count = u16_at(bytes, eocd + 10).ok_or("truncated archive")? as u64;
    let mut cd_offset = u32_at(bytes, eocd + 16).ok_or("truncated archive")? as u64;
    if (count == 0xFFFF || cd_offset == 0xFFFF_FFFF) && eocd >= 20 {
        // ZIP64 end of central directory locator, then record.
        if u32_at(bytes, eocd - 20) == Some(0x0706_4b50) {
            let record = u64_at(bytes, eocd - 12).ok_or("truncated archive")? as usize;
            if u32_at(bytes, record) != Some(0x0606_4b50) {
                return Err("broken ZIP64 end of central directory record".into());
            }
            count = u64_at(bytes, record + 32).ok_or("truncated archive")?;
            cd_offset = u64_at(bytes, record + 48).ok_or("truncated archive")?;
        }
    }
    let mut members = Vec::new();
    let mut at = usize::try_from(cd_offset).map_err(|_| "archive too large")?;
    for _ in 0..count {
        if u32_at(bytes, at) != Some(0x0201_4b50) {
            return Err("broken central directory".into());
        }
        let truncated = || "truncated central directory".to_string();
        let method = u16_at(bytes, at + 10).ok_or_else(truncated)?;
        let mut compressed_size = u32_at(bytes, at + 20).ok_or_else(truncated)? as u64;
        let mut uncompressed_size = u32_at(bytes, at + 24).ok_or_else(truncated)? as u64;
        let name_len = u16_at(bytes, at + 28).ok_or_else(truncated)? as usize;
        let extra_len = u16_at(bytes, at + 30).ok_or_else(truncated)? as usize;
        let comment_len = u16_at(bytes, at + 32).ok_or_else(truncated)? as usize;
        let mut local_offset = u32_at(bytes, at + 42).ok_or_else(truncated)? as u64;
        let name = bytes
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(truncated)?;
        let name = String::from_utf8_lossy(name).into_owned();
        let extra = bytes
            .get(at + 46 + name_len..at + 46 + name_len + extra_len)
            .ok_or_else(truncated)?;
        // ZIP64 extended information: the fields whose 32-bit value is 0xFFFFFFFF, in order.
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e).unwrap_or(0);
            let size = u16_at(extra, e + 2).unwrap_or(0) as usize;
            if id == 1 {
                let mut f = e + 4;
                if uncompressed_size == 0xFFFF_FFFF {
                    uncompressed_size = u64_at(extra, f).ok_or_else(truncated)?;
                    f += 8;
                }
                if compressed_size == 0xFFFF_FFFF {
                    compressed_size = u64_at(extra, f).ok_or_else(truncated)?;
                    f += 8;
                }
                if local_offset == 0xFFFF_FFFF {
                    local_offset = u64_at(extra, f).ok_or_else(truncated)?;
                }
            }
            e += 4 + size;
        }
        let _ = uncompressed_size;
        members.push(ZipMember {
            name,
            method,
            compressed_size,
            local_offset,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(members)
}

/// Reads the array `probabilities` of an nnU-Net `.npz` (float32 or float16/float64 converted to
/// float32, `[classes, z, y, x]`), stored (`np.savez`, nnunet) or deflated (`np.savez_compressed`,
/// nnU-Net).
pub fn read_probabilities_npz(path: &Path) -> Result<Array4<f32>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, e))?;
    let members = zip_members(&bytes).map_err(|e| Error::invalid_file(path, e))?;
    let member = members
        .iter()
        .find(|m| m.name == "probabilities.npy")
        .ok_or_else(|| {
            Error::invalid_file(
                path,
                format!(
                    "no array 'probabilities' in the archive (it holds: {})",
                    members
                        .iter()
                        .map(|m| m.name.trim_end_matches(".npy"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
    if member.method != 0 && member.method != 8 {
        return Err(Error::invalid_file(
            path,
            format!(
                "the array 'probabilities' uses zip method {}; nnunet reads stored (np.savez) and \
                 deflated (np.savez_compressed) .npz files",
                member.method
            ),
        ));
    }
    let local = usize::try_from(member.local_offset)
        .map_err(|_| Error::invalid_file(path, "archive too large"))?;
    if u32_at(&bytes, local) != Some(0x0403_4b50) {
        return Err(Error::invalid_file(path, "broken zip member header"));
    }
    let name_len = u16_at(&bytes, local + 26).unwrap_or(0) as usize;
    let extra_len = u16_at(&bytes, local + 28).unwrap_or(0) as usize;
    let start = local + 30 + name_len + extra_len;
    let end = start + member.compressed_size as usize;
    let raw = bytes
        .get(start..end)
        .ok_or_else(|| Error::invalid_file(path, "the archive is truncated"))?;
    let inflated;
    let data: &[u8] = if member.method == 8 {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(raw)
            .read_to_end(&mut out)
            .map_err(|e| {
                Error::invalid_file(path, format!("cannot inflate 'probabilities': {e}"))
            })?;
        inflated = out;
        &inflated
    } else {
        raw
    };
    let not_npy = |e: String| {
        Error::invalid_file(
            path,
            format!("'probabilities' is not a 4D float array [classes, z, y, x]: {e}"),
        )
    };
    if let Ok(a) = Array4::<f32>::read_npy(data) {
        return Ok(a);
    }
    if let Ok(a) = Array4::<f64>::read_npy(data) {
        return Ok(a.mapv(|v| v as f32));
    }
    Array4::<f32>::read_npy(data).map_err(|e| not_npy(e.to_string()))
}

/// One ensembled case: the `.npz` of every member and where the result goes (without ending).
#[derive(Clone, Debug)]
pub struct EnsembleCase {
    /// The members' `<case>.npz`; the properties are read from the `.json` next to the first.
    pub npz_files: Vec<PathBuf>,
    /// The output path without its ending (`OUT/<case>`).
    pub output_truncated: PathBuf,
}

/// `path` with its `.npz` replaced by `suffix`.
fn sibling(npz: &Path, suffix: &str) -> PathBuf {
    let s = npz.to_string_lossy();
    PathBuf::from(format!("{}{suffix}", s.strip_suffix(".npz").unwrap_or(&s)))
}

/// The mean of the members' probabilities (float32, summed in the given order).
pub fn average_probabilities(files: &[PathBuf]) -> Result<Array4<f32>> {
    let (first, rest) = files
        .split_first()
        .ok_or_else(|| Error::Invalid("ensembling needs at least one .npz file".into()))?;
    let mut sum = read_probabilities_npz(first)?;
    for f in rest {
        let p = read_probabilities_npz(f)?;
        if p.shape() != sum.shape() {
            return Err(Error::invalid_file(
                f,
                format!(
                    "probabilities of shape {:?}, but {} has {:?}",
                    p.shape(),
                    first.display(),
                    sum.shape()
                ),
            ));
        }
        sum += &p;
    }
    let n = files.len() as f32;
    sum.mapv_inplace(|v| v / n);
    Ok(sum)
}

/// Ensembles one case: averages, converts with `labels`, writes `<output><file_ending>` with
/// `reader` (and `<output>.npz` + `<output>.json` when `save_probabilities`).
pub fn merge_case(
    case: &EnsembleCase,
    labels: &LabelHandling,
    reader: &dyn Reader,
    file_ending: &str,
    save_probabilities: bool,
) -> Result<PathBuf> {
    let first = case
        .npz_files
        .first()
        .ok_or_else(|| Error::Invalid("ensembling needs at least one .npz file".into()))?;
    let properties_file = sibling(first, ".json");
    if !properties_file.is_file() {
        return Err(Error::invalid_file(
            first,
            format!(
                "the case's properties {} are missing (predictions written with --npz / \
                 --save_probabilities have them)",
                properties_file.display()
            ),
        ));
    }
    let properties = read_properties(&properties_file)?;
    let probabilities = average_probabilities(&case.npz_files)?;
    if probabilities.shape()[0] != labels.num_heads() {
        return Err(Error::invalid_file(
            first,
            format!(
                "{} probability channels, but the dataset's labels need {}",
                probabilities.shape()[0],
                labels.num_heads()
            ),
        ));
    }
    let seg = labels.probabilities_to_segmentation(probabilities.view());
    if let Some(parent) = case.output_truncated.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let out = PathBuf::from(format!(
        "{}{file_ending}",
        case.output_truncated.to_string_lossy()
    ));
    reader.write_segmentation(seg.view(), &out, &properties.image)?;
    if save_probabilities {
        let npz = PathBuf::from(format!("{}.npz", case.output_truncated.to_string_lossy()));
        write_probabilities_npz(&npz, probabilities.view())?;
        let json = PathBuf::from(format!("{}.json", case.output_truncated.to_string_lossy()));
        std::fs::copy(&properties_file, &json).map_err(|e| Error::io(&json, e))?;
    }
    Ok(out)
}

/// Ensembles every case on `num_processes` threads; `progress` is called once per case.
pub fn merge_cases(
    cases: &[EnsembleCase],
    labels: &LabelHandling,
    reader: &dyn Reader,
    file_ending: &str,
    save_probabilities: bool,
    num_processes: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(num_processes)
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start {num_processes} threads: {e}")))?;
    pool.install(|| {
        cases.par_iter().try_for_each(|case| {
            merge_case(case, labels, reader, file_ending, save_probabilities)?;
            progress();
            Ok(())
        })
    })
}

/// The `.npz` file names in `folder`, sorted.
pub fn npz_files(folder: &Path) -> Result<BTreeSet<String>> {
    if !folder.is_dir() {
        return Err(Error::invalid_file(folder, "no such folder"));
    }
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(folder).map_err(|e| Error::io(folder, e))? {
        let entry = entry.map_err(|e| Error::io(folder, e))?;
        if let Ok(name) = entry.file_name().into_string()
            && name.ends_with(".npz")
            && entry.path().is_file()
        {
            out.insert(name);
        }
    }
    Ok(out)
}

/// The cases to ensemble from folders of predictions (as nnU-Net's `ensemble_folders`): every
/// folder must hold the same `.npz` files; an error names the folder and what it lacks.
pub fn cases_from_folders(inputs: &[PathBuf], output: &Path) -> Result<Vec<EnsembleCase>> {
    if inputs.is_empty() {
        return Err(Error::Invalid(
            "give at least one folder to ensemble".into(),
        ));
    }
    let per_folder = inputs
        .iter()
        .map(|f| npz_files(f))
        .collect::<Result<Vec<_>>>()?;
    let all: BTreeSet<String> = per_folder.iter().flatten().cloned().collect();
    if all.is_empty() {
        return Err(Error::invalid_file(
            &inputs[0],
            "no probabilities (.npz files) to ensemble; predict with --save_probabilities (or \
             train with --npz)",
        ));
    }
    for (folder, files) in inputs.iter().zip(&per_folder) {
        let missing: Vec<&String> = all.difference(files).collect();
        if !missing.is_empty() {
            return Err(Error::invalid_file(
                folder,
                format!(
                    "{} case(s) that other folders have are missing here: {} (every folder \
                     must hold the probabilities of the same cases)",
                    missing.len(),
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(all
        .iter()
        .map(|name| EnsembleCase {
            npz_files: inputs.iter().map(|f| f.join(name)).collect(),
            output_truncated: output.join(name.trim_end_matches(".npz")),
        })
        .collect())
}

/// The cases to ensemble from the cross-validation of trained models (as nnU-Net's
/// `ensemble_crossvalidations`): each model's `fold_N/validation/*.npz` for the `folds`; every
/// model must have every case once.
pub fn cases_from_crossvalidation(
    model_folders: &[PathBuf],
    folds: &[u32],
    output: &Path,
) -> Result<Vec<EnsembleCase>> {
    let mut mappings: Vec<std::collections::BTreeMap<String, PathBuf>> = Vec::new();
    for model in model_folders {
        let mut mapping = std::collections::BTreeMap::new();
        for fold in folds {
            let validation = model.join(format!("fold_{fold}")).join("validation");
            if !validation.is_dir() {
                return Err(Error::invalid_file(
                    &validation,
                    format!(
                        "fold {fold} of this model is missing; train every requested fold \
                         (with --npz)"
                    ),
                ));
            }
            let files = npz_files(&validation)?;
            if files.is_empty() {
                return Err(Error::invalid_file(
                    &validation,
                    "no .npz files; rerun the validation with --npz (nnunet train ... --val --npz)",
                ));
            }
            for name in files {
                if mapping.contains_key(&name) {
                    return Err(Error::invalid_file(
                        &validation,
                        format!("case {name} is in more than one fold of this model"),
                    ));
                }
                mapping.insert(name.clone(), validation.join(&name));
            }
        }
        mappings.push(mapping);
    }
    let all: BTreeSet<String> = mappings.iter().flat_map(|m| m.keys().cloned()).collect();
    for (model, mapping) in model_folders.iter().zip(&mappings) {
        let missing: Vec<&str> = all
            .iter()
            .filter(|n| !mapping.contains_key(*n))
            .map(|s| s.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(Error::invalid_file(
                model,
                format!(
                    "the cross-validation of this model lacks predictions that the other models \
                     have: {}",
                    missing.join(", ")
                ),
            ));
        }
    }
    Ok(all
        .iter()
        .map(|name| EnsembleCase {
            npz_files: mappings.iter().map(|m| m[name].clone()).collect(),
            output_truncated: output.join(name.trim_end_matches(".npz")),
        })
        .collect())
}
