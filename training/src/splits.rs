//! Cross-validation folds: nnU-Net's `splits_final.json` (a list of `{"train": [...], "val":
//! [...]}`), made on first use with the reference's seeded 5-fold split and honoured when the
//! user supplies one.

use std::path::Path;

use serde::{Deserialize, Serialize};

use nnunet_core::compat::numpy_random::RandomState;
use nnunet_core::error::{Error, Result};

/// One fold: training and validation case identifiers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// The training cases.
    pub train: Vec<String>,
    /// The validation cases.
    pub val: Vec<String>,
}

/// Which fold to train: one of the cross-validation folds, or `all` cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// Cross-validation fold `n` (`fold_n`).
    Index(usize),
    /// Every case trains and validates (`fold_all`).
    All,
}

impl Fold {
    /// Parses `0`..`N` or `all`.
    pub fn parse(text: &str) -> Result<Self> {
        if text == "all" {
            return Ok(Fold::All);
        }
        text.parse().map(Fold::Index).map_err(|_| {
            Error::training(format!(
                "fold '{text}' is neither a number (0, 1, …) nor 'all'"
            ))
        })
    }

    /// The folder name in the results layout (`fold_0`, `fold_all`).
    pub fn folder_name(&self) -> String {
        match self {
            Fold::Index(i) => format!("fold_{i}"),
            Fold::All => "fold_all".to_string(),
        }
    }
}

impl std::fmt::Display for Fold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fold::Index(i) => write!(f, "{i}"),
            Fold::All => f.write_str("all"),
        }
    }
}

/// sklearn's `KFold(n_splits, shuffle=True, random_state=seed)` over `identifiers` sorted by code
/// point, as nnU-Net's `generate_crossval_split`.
pub fn crossval_splits(identifiers: &[String], n_splits: usize, seed: u32) -> Result<Vec<Split>> {
    let mut ids = identifiers.to_vec();
    ids.sort();
    let n = ids.len();
    if n < n_splits {
        return Err(Error::training(format!(
            "{n} training cases cannot be split into {n_splits} folds; nnU-Net needs at least \
             {n_splits} cases (or train fold 'all')"
        )));
    }
    let mut rng = RandomState::new(seed);
    let order = rng.permutation_prefix(n as u64, n);
    let mut splits = Vec::with_capacity(n_splits);
    let mut start = 0;
    for k in 0..n_splits {
        let size = n / n_splits + usize::from(k < n % n_splits);
        let mut in_val = vec![false; n];
        for &i in &order[start..start + size] {
            in_val[i as usize] = true;
        }
        start += size;
        let (val, train): (Vec<_>, Vec<_>) = ids.iter().zip(&in_val).partition(|(_, v)| **v);
        splits.push(Split {
            train: train.into_iter().map(|(id, _)| id.clone()).collect(),
            val: val.into_iter().map(|(id, _)| id.clone()).collect(),
        });
    }
    Ok(splits)
}

/// The group of each identifier under `pattern` (a regular expression): its first capture group
/// if it has one, else the whole match (`^(Image_\d+)` puts `Image_01L` and `Image_01R` in the
/// group `Image_01`). An identifier the pattern does not match is an error naming it.
pub fn case_groups(identifiers: &[String], pattern: &str) -> Result<Vec<String>> {
    let regex = regex::Regex::new(pattern).map_err(|e| {
        Error::training(format!(
            "--group-by '{pattern}' is not a valid pattern: {e}"
        ))
    })?;
    identifiers
        .iter()
        .map(|id| {
            let captures = regex.captures(id).ok_or_else(|| {
                Error::training(format!(
                    "case '{id}' does not match --group-by '{pattern}' (every case needs a group)"
                ))
            })?;
            let group = captures.get(1).or_else(|| captures.get(0));
            Ok(group.map_or_else(String::new, |m| m.as_str().to_string()))
        })
        .collect()
}

/// nnU-Net's cross-validation ([`crossval_splits`]) over groups of cases instead of cases: the
/// distinct groups, sorted, are split into `n_splits` folds with `seed`, and each fold holds the
/// cases of its groups, so that the cases of one group (one patient's images) are never split.
/// `groups[i]` is the group of `identifiers[i]`.
pub fn grouped_crossval_splits(
    identifiers: &[String],
    groups: &[String],
    n_splits: usize,
    seed: u32,
) -> Result<Vec<Split>> {
    let mut distinct: Vec<String> = groups.to_vec();
    distinct.sort();
    distinct.dedup();
    if distinct.len() < n_splits {
        return Err(Error::training(format!(
            "{} group(s) of cases cannot be split into {n_splits} folds (each fold validates on \
             at least one group)",
            distinct.len()
        )));
    }
    let group_splits = crossval_splits(&distinct, n_splits, seed)?;
    let cases_of = |chosen: &[String]| -> Vec<String> {
        let mut cases: Vec<String> = identifiers
            .iter()
            .zip(groups)
            .filter(|(_, g)| chosen.contains(g))
            .map(|(id, _)| id.clone())
            .collect();
        cases.sort();
        cases
    };
    Ok(group_splits
        .iter()
        .map(|split| Split {
            train: cases_of(&split.train),
            val: cases_of(&split.val),
        })
        .collect())
}

/// Writes `splits` as nnU-Net's `splits_final.json`.
pub fn write_splits(path: &Path, splits: &[Split]) -> Result<()> {
    let value = serde_json::to_value(splits)
        .map_err(|e| Error::training(format!("cannot encode the splits: {e}")))?;
    nnunet_core::compat::json::write_json(path, &value)
}

/// The fold's training and validation cases. Reads `splits_file`, writing the default 5-fold
/// split there first if it does not exist. A fold beyond the file's folds gets nnU-Net's random
/// 80:20 split seeded with `12345 + fold`. `all` trains and validates on every case.
pub fn fold_cases(splits_file: &Path, identifiers: &[String], fold: Fold) -> Result<Split> {
    let mut sorted = identifiers.to_vec();
    sorted.sort();
    let index = match fold {
        Fold::All => {
            return Ok(Split {
                train: sorted.clone(),
                val: sorted,
            });
        }
        Fold::Index(i) => i,
    };
    let splits = if splits_file.is_file() {
        read_splits(splits_file)?
    } else {
        let splits = crossval_splits(&sorted, 5, 12345)?;
        write_splits(splits_file, &splits)?;
        splits
    };
    if let Some(split) = splits.get(index) {
        let known: std::collections::HashSet<&String> = identifiers.iter().collect();
        if let Some(missing) = split
            .train
            .iter()
            .chain(&split.val)
            .find(|c| !known.contains(c))
        {
            return Err(Error::training_file(
                splits_file,
                format!("fold {index} names case '{missing}', which is not preprocessed"),
            ));
        }
        return Ok(split.clone());
    }
    // nnU-Net's fallback for folds beyond the file: a seeded random 80:20 split.
    let n = sorted.len();
    let n_train = (n as f64 * 0.8) as usize;
    let mut rng = RandomState::new(12345u32.wrapping_add(index as u32));
    let train_idx = rng.permutation_prefix(n as u64, n_train);
    let mut is_train = vec![false; n];
    for &i in &train_idx {
        is_train[i as usize] = true;
    }
    Ok(Split {
        train: train_idx
            .iter()
            .map(|&i| sorted[i as usize].clone())
            .collect(),
        val: (0..n)
            .filter(|&i| !is_train[i])
            .map(|i| sorted[i].clone())
            .collect(),
    })
}

/// Reads a `splits_final.json`.
pub fn read_splits(path: &Path) -> Result<Vec<Split>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::training_file(
            path,
            format!("not a list of {{\"train\": [...], \"val\": [...]}} folds: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("case_{i:03}")).collect()
    }

    #[test]
    fn kfold_matches_sklearn() {
        // sklearn KFold(5, shuffle=True, random_state=12345) on 10 items: shuffled order
        // [0 7 3 9 6 4 1 8 5 2], val folds {0,7}, {3,9}, {4,6}, {1,8}, {2,5}.
        let s = crossval_splits(&ids(10), 5, 12345).unwrap();
        let val: Vec<Vec<String>> = s.iter().map(|f| f.val.clone()).collect();
        let expect = [[0, 7], [3, 9], [4, 6], [1, 8], [2, 5]];
        for (got, want) in val.iter().zip(expect) {
            let want: Vec<String> = want.iter().map(|&i| format!("case_{i:03}")).collect();
            assert_eq!(got, &want);
        }
        assert_eq!(s[0].train.len(), 8);
        assert!(s[0].train.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn groups_stay_together() {
        let ids: Vec<String> = (0..12)
            .map(|i| format!("Image_{:02}{}", i / 2, if i % 2 == 0 { "L" } else { "R" }))
            .collect();
        let groups = case_groups(&ids, r"^(Image_\d+)").unwrap();
        assert_eq!(groups[0], "Image_00");
        assert_eq!(groups[1], "Image_00");
        let splits = grouped_crossval_splits(&ids, &groups, 5, 12345).unwrap();
        // The folds over the six groups are sklearn's folds over six items, eyes kept together.
        let by_groups = crossval_splits(
            &(0..6).map(|i| format!("Image_{i:02}")).collect::<Vec<_>>(),
            5,
            12345,
        )
        .unwrap();
        for (split, groups) in splits.iter().zip(&by_groups) {
            let expect: Vec<String> = groups
                .val
                .iter()
                .flat_map(|g| [format!("{g}L"), format!("{g}R")])
                .collect();
            assert_eq!(split.val, expect);
            assert_eq!(split.train.len() + split.val.len(), 12);
        }
        let err = case_groups(&["other".to_string()], r"^(Image_\d+)")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'other'"), "{err}");
        assert!(case_groups(&ids, "(").is_err());
        assert!(grouped_crossval_splits(&ids[..4], &groups[..4], 5, 12345).is_err());
    }

    #[test]
    fn too_few_cases_is_an_error() {
        assert!(crossval_splits(&ids(3), 5, 12345).is_err());
    }

    #[test]
    fn writes_then_reads_splits() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("splits_final.json");
        let a = fold_cases(&file, &ids(7), Fold::Index(1)).unwrap();
        assert!(file.is_file());
        let b = fold_cases(&file, &ids(7), Fold::Index(1)).unwrap();
        assert_eq!(a, b);
        let all = fold_cases(&file, &ids(7), Fold::All).unwrap();
        assert_eq!(all.train.len(), 7);
        let extra = fold_cases(&file, &ids(7), Fold::Index(7)).unwrap();
        assert_eq!(extra.train.len() + extra.val.len(), 7);
        assert_eq!(extra.train.len(), 5);
    }
}
