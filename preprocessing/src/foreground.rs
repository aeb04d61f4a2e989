//! Foreground locations per class, stored with each preprocessed case so that training can centre
//! oversampled patches on a class without scanning the case. The draw follows nnU-Net's: one
//! `RandomState(1234)` per case, for each class (or region) `max(min(10000, n), ceil(n / 100))`
//! voxels without replacement out of its `n` voxels.

use std::collections::BTreeMap;

use ndarray::ArrayView3;

use nnunet_core::compat::numpy_random::RandomState;
use nnunet_dataset::LabelOrRegion;

/// Voxels drawn per class at least (or all of them if fewer).
const MIN_SAMPLES: usize = 10_000;
/// Fraction of a class's voxels drawn at least.
const MIN_COVERAGE: f64 = 0.01;
/// Seed of the draw.
const SEED: u32 = 1234;

/// The key of `class` in the properties JSON: the label (`"1"`), or the region's labels joined
/// by commas (`"1,2"`).
fn location_key(class: &LabelOrRegion) -> String {
    let labels: Vec<String> = class.labels().iter().map(i64::to_string).collect();
    labels.join(",")
}

/// The classes nnU-Net collects locations for: every foreground label (or region), and with an
/// ignore label additionally the region of every annotated voxel (`-1` outside the nonzero mask
/// plus all labels), so that training can sample annotated areas.
pub(crate) fn classes_to_sample(labels: &nnunet_dataset::Labels) -> Vec<LabelOrRegion> {
    let mut out = labels.foreground_classes();
    if labels.ignore_label().is_some() {
        let mut all = vec![-1];
        all.extend(labels.all_labels());
        out.push(LabelOrRegion::Region(all));
    }
    out
}

/// Samples voxel locations `[z, y, x]` per class from `seg`. Classes absent from `seg` get an
/// empty list. The result is keyed by [`location_key`], in the order of `classes`.
pub(crate) fn sample_class_locations(
    seg: ArrayView3<'_, i16>,
    classes: &[LabelOrRegion],
) -> Vec<(String, Vec<[u32; 3]>)> {
    // Voxels of every requested label, grouped by label, each group in C order: the same order
    // as a stable sort by label of the C-ordered voxel list.
    let mut by_label: BTreeMap<i64, Vec<[u32; 3]>> = BTreeMap::new();
    for class in classes {
        for &l in class.labels() {
            by_label.entry(l).or_default();
        }
    }
    for ((z, y, x), &v) in seg.indexed_iter() {
        if let Some(list) = by_label.get_mut(&i64::from(v)) {
            list.push([z as u32, y as u32, x as u32]);
        }
    }
    let mut rng = RandomState::new(SEED);
    let mut out = Vec::with_capacity(classes.len());
    for class in classes {
        let blocks: Vec<&Vec<[u32; 3]>> = class
            .labels()
            .iter()
            .filter_map(|l| by_label.get(l))
            .filter(|b| !b.is_empty())
            .collect();
        let total: usize = blocks.iter().map(|b| b.len()).sum();
        if total == 0 {
            out.push((location_key(class), Vec::new()));
            continue;
        }
        let wanted = MIN_SAMPLES
            .min(total)
            .max((total as f64 * MIN_COVERAGE).ceil() as usize);
        let picks = rng.permutation_prefix(total as u64, wanted);
        let mut locations = Vec::with_capacity(picks.len());
        for pick in picks {
            let mut offset = pick as usize;
            for block in &blocks {
                if offset < block.len() {
                    locations.push(block[offset]);
                    break;
                }
                offset -= block.len();
            }
        }
        out.push((location_key(class), locations));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn absent_classes_are_empty_and_small_classes_fully_sampled() {
        let mut seg = Array3::<i16>::zeros((2, 3, 4));
        seg[[1, 2, 3]] = 1;
        seg[[0, 0, 1]] = 1;
        let out = sample_class_locations(
            seg.view(),
            &[LabelOrRegion::Label(1), LabelOrRegion::Label(2)],
        );
        assert_eq!(out[0].0, "1");
        let mut got = out[0].1.clone();
        got.sort();
        assert_eq!(got, vec![[0, 0, 1], [1, 2, 3]]);
        assert!(out[1].1.is_empty());
    }

    #[test]
    fn regions_draw_from_all_their_labels() {
        let mut seg = Array3::<i16>::zeros((1, 1, 6));
        seg[[0, 0, 0]] = 1;
        seg[[0, 0, 5]] = 2;
        let out = sample_class_locations(seg.view(), &[LabelOrRegion::Region(vec![1, 2])]);
        assert_eq!(out[0].0, "1,2");
        assert_eq!(out[0].1.len(), 2);
    }
}
