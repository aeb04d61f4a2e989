//! Label maps: batchgenerators' `resize_segmentation` (per-label indicator interpolation with an
//! argmax) and nnU-Net's thresholded interpolation along a separate axis.

use ndarray::{Array3, ArrayView3};
use rayon::prelude::*;

use super::spline::{Taps, nearest_indices, nearest_resize, resample_axis};
use super::{resize_volume, shape3};

/// The sorted distinct values of a label map.
fn unique_labels(vol: ArrayView3<i16>) -> Vec<i16> {
    let mut seen = vec![false; 1 << 16];
    for &v in vol.iter() {
        seen[(v as i32 + 32768) as usize] = true;
    }
    seen.iter()
        .enumerate()
        .filter(|(_, s)| **s)
        .map(|(i, _)| (i as i32 - 32768) as i16)
        .collect()
}

/// batchgenerators 0.25.5 `resize_segmentation(seg, new_shape, order)` of one volume: order 0 is
/// nearest neighbour; otherwise each label's indicator is resized (clipped) and each voxel takes
/// the label with the highest score, exact ties going to the nearest-neighbour label if it is
/// among them, else to the smallest tied label.
///
/// Order 1 is evaluated per voxel with scipy's exact products and summation order; higher orders
/// go through [`resize_volume`] per label (ties there are only as exact as the spline).
pub fn resize_segmentation(
    seg: ArrayView3<i16>,
    new_shape: [usize; 3],
    order: usize,
) -> Array3<i16> {
    let (d0, d1, d2) = seg.dim();
    if d0 == 0 || d1 == 0 || d2 == 0 || new_shape.contains(&0) {
        return Array3::zeros(new_shape);
    }
    if order == 0 {
        return nearest_resize(seg, new_shape);
    }
    let labels = unique_labels(seg);
    if labels.len() == 1 {
        return Array3::from_elem(new_shape, labels[0]);
    }
    if order == 1 {
        linear_label_argmax(seg, new_shape)
    } else {
        spline_label_argmax(seg, new_shape, order, &labels)
    }
}

/// Order-1 label resize, per output voxel over the 2^3 corner taps.
fn linear_label_argmax(seg: ArrayView3<i16>, new_shape: [usize; 3]) -> Array3<i16> {
    let seg = seg.as_standard_layout();
    let (d0, d1, d2) = seg.dim();
    let dims = [d0, d1, d2];
    let taps: [Taps; 3] = std::array::from_fn(|a| Taps::new(dims[a], new_shape[a], 1));
    let nn: [Vec<usize>; 3] = std::array::from_fn(|a| nearest_indices(dims[a], new_shape[a]));
    let mut out = Array3::<i16>::zeros(new_shape);
    let plane = new_shape[1] * new_shape[2];
    let (Some(src), Some(dst)) = (seg.as_slice(), out.as_slice_mut()) else {
        unreachable!("standard layout");
    };
    dst.par_chunks_mut(plane).enumerate().for_each(|(z, p)| {
        for (y, row) in p.chunks_mut(new_shape[2]).enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                let k = [z, y, x];
                let mut votes = CornerVotes::default();
                // corners in scipy's order (last axis fastest); product w0 * w1 * w2
                for c in 0..8 {
                    let f = [(c >> 2) & 1, (c >> 1) & 1, c & 1];
                    let i = taps[0].idx[k[0] * 2 + f[0]];
                    let j = taps[1].idx[k[1] * 2 + f[1]];
                    let l = taps[2].idx[k[2] * 2 + f[2]];
                    let p = taps[0].w[k[0]][f[0]] * taps[1].w[k[1]][f[1]] * taps[2].w[k[2]][f[2]];
                    let label = src[(i * d1 + j) * d2 + l];
                    votes.add(label, p);
                }
                let nn_label = src[(nn[0][z] * d1 + nn[1][y]) * d2 + nn[2][x]];
                let (labels, scores) = votes.parts();
                *v = pick_label(labels, scores, nn_label);
            }
        }
    });
    out
}

/// The distinct labels among up to eight interpolation corners with their summed weights, in
/// order of first appearance: the candidates of a linear resize of a label map.
#[derive(Clone, Copy, Debug, Default)]
pub struct CornerVotes {
    labels: [i16; 8],
    scores: [f64; 8],
    len: usize,
}

impl CornerVotes {
    /// Adds `weight` to `label`'s score; a label not seen yet takes the next of the 8 places.
    pub fn add(&mut self, label: i16, weight: f64) {
        match self.labels[..self.len].iter().position(|&l| l == label) {
            Some(j) => self.scores[j] += weight,
            None => {
                self.labels[self.len] = label;
                self.scores[self.len] = weight;
                self.len += 1;
            }
        }
    }

    /// The labels and their scores, index for index.
    pub fn parts(&mut self) -> (&[i16], &mut [f64]) {
        (&self.labels[..self.len], &mut self.scores[..self.len])
    }
}

/// The argmax with batchgenerators' tie rule over the candidate labels of one voxel (scores are
/// clipped to 1 first, as skimage clips each indicator).
fn pick_label(labels: &[i16], scores: &mut [f64], nn_label: i16) -> i16 {
    let mut best = f64::NEG_INFINITY;
    for s in scores.iter_mut() {
        if *s > 1.0 {
            *s = 1.0;
        }
        if *s > best {
            best = *s;
        }
    }
    let mut winner = i16::MAX;
    for (&l, &s) in labels.iter().zip(scores.iter()) {
        if s == best {
            if l == nn_label && s > 0.0 {
                return l;
            }
            winner = winner.min(l);
        }
    }
    winner
}

/// Label resize for spline orders above 1: each indicator through [`resize_volume`].
fn spline_label_argmax(
    seg: ArrayView3<i16>,
    new_shape: [usize; 3],
    order: usize,
    labels: &[i16],
) -> Array3<i16> {
    let nn = nearest_resize(seg, new_shape);
    let mut best = Array3::<f64>::from_elem(new_shape, f64::NEG_INFINITY);
    let mut win = Array3::<i16>::zeros(new_shape);
    let mut nn_top = Array3::<bool>::from_elem(new_shape, false);
    for &label in labels {
        let indicator = seg.mapv(|v| if v == label { 1.0 } else { 0.0 });
        let score = resize_volume(indicator.view(), new_shape, order);
        ndarray::Zip::from(&score)
            .and(&mut best)
            .and(&mut win)
            .and(&mut nn_top)
            .and(&nn)
            .for_each(|&s, b, w, t, &n| {
                let is_nn = n == label;
                if s > *b {
                    *b = s;
                    *w = label;
                    *t = is_nn && s > 0.0;
                } else if s == *b && is_nn && s > 0.0 {
                    *t = true;
                }
            });
    }
    ndarray::Zip::from(&mut win)
        .and(&nn_top)
        .and(&nn)
        .for_each(|w, &t, &n| {
            if t {
                *w = n;
            }
        });
    win
}

/// Separate-axis label interpolation with `order_z > 0` (nnU-Net: per label, the indicator is
/// interpolated along `axis` and the label written where it exceeds 0.5, ascending labels, on a
/// zero background).
pub(super) fn threshold_labels_along_axis(
    seg: ArrayView3<i16>,
    axis: usize,
    m: usize,
    order_z: usize,
) -> Array3<i16> {
    let labels = unique_labels(seg);
    let mut out_shape = shape3(&seg);
    out_shape[axis] = m;
    let mut out = Array3::<i16>::zeros(out_shape);
    for label in labels {
        let indicator = seg.mapv(|v| if v == label { 1.0 } else { 0.0 });
        let score = resample_axis(indicator.view(), axis, m, order_z);
        ndarray::Zip::from(&mut out).and(&score).for_each(|o, &s| {
            if s > 0.5 {
                *o = label;
            }
        });
    }
    out
}
