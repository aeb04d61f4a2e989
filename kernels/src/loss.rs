//! nnU-Net's default loss, soft Dice + cross-entropy on label targets (`DC_and_CE_loss`), fused:
//! one pass over the logits forward (softmax per voxel, the cross-entropy sum and the Dice sums
//! per sample and class) and one backward (the softmax again, then the gradient of both terms).
//! The generic composition makes a one-hot target, probabilities, log-probabilities and their
//! masked products, forward and backward, about fifty passes over tensors of the logits' size.
//!
//! Definitions (as nnU-Net's `DC_and_CE_loss` with `MemoryEfficientSoftDiceLoss`): voxels that
//! carry the ignore label count nowhere; `CE = Σ ce(v) / max(#counted, 1)` with PyTorch's label
//! smoothing; per Dice term (sample and class, or class over the batch with `batch_dice`), from
//! class `first` on, `dc = (2·I + smooth) / max(G + P + smooth, 1e-8)`; the loss is
//! `weight_ce · CE − weight_dice · mean(dc)`. Sums are in f64.

use rayon::prelude::*;

/// The settings of the fused loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiceCe {
    /// Number of classes (channels of the logits).
    pub classes: usize,
    /// Voxels with this label count nowhere.
    pub ignore: Option<i32>,
    /// First class of the Dice term (1 without background, 0 with).
    pub first: usize,
    /// One Dice term per class over the whole batch instead of one per sample and class.
    pub batch_dice: bool,
    /// Dice smoothing.
    pub smooth: f64,
    /// Weight of the cross-entropy.
    pub weight_ce: f64,
    /// Weight of the Dice term.
    pub weight_dice: f64,
    /// Label smoothing of the cross-entropy.
    pub label_smoothing: f64,
}

/// The sums of a forward pass, which the backward pass needs.
#[derive(Clone, Debug, Default)]
pub struct DiceCeSums {
    /// Σ p·y per (sample, class).
    intersect: Vec<f64>,
    /// Σ p per (sample, class).
    pred: Vec<f64>,
    /// Σ y per (sample, class).
    truth: Vec<f64>,
    /// Σ ce over counted voxels.
    ce: f64,
    /// Number of counted voxels.
    counted: f64,
}

impl DiceCeSums {
    fn zeros(len: usize) -> Self {
        Self {
            intersect: vec![0.0; len],
            pred: vec![0.0; len],
            truth: vec![0.0; len],
            ..Self::default()
        }
    }

    fn add(mut self, o: Self) -> Self {
        for (a, b) in [
            (&mut self.intersect, &o.intersect),
            (&mut self.pred, &o.pred),
            (&mut self.truth, &o.truth),
        ] {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        self.ce += o.ce;
        self.counted += o.counted;
        self
    }
}

/// Voxels per parallel task.
const CHUNK: usize = 4096;

/// One task: sample `b`, voxels `[v0, v0 + len)` of `s` per plane.
fn tasks(n: usize, s: usize) -> impl IndexedParallelIterator<Item = (usize, usize, usize)> {
    let per = s.div_ceil(CHUNK).max(1);
    (0..n * per).into_par_iter().map(move |i| {
        let (b, v0) = (i / per, (i % per) * CHUNK);
        (b, v0, CHUNK.min(s.saturating_sub(v0)))
    })
}

/// Softmax of voxel `v` (logits `z`, planes `s` apart) into `p`; returns the log of the sum
/// of exponentials (`log Σ exp z`).
#[inline(always)]
fn softmax(z: &[f32], v: usize, s: usize, p: &mut [f32]) -> f32 {
    let m = (0..p.len()).fold(f32::NEG_INFINITY, |m, k| m.max(z[k * s + v]));
    let mut sum = 0.0;
    for (k, pk) in p.iter_mut().enumerate() {
        *pk = (z[k * s + v] - m).exp();
        sum += *pk;
    }
    p.iter_mut().for_each(|pk| *pk /= sum);
    m + sum.ln()
}

/// The class of voxel `v`, or `None` where it is ignored.
#[inline(always)]
fn class_of(label: i32, o: &DiceCe) -> Option<usize> {
    (o.ignore != Some(label)).then_some(label as usize)
}

/// Forward pass on `logits` (`[n, classes, s]`) and `labels` (`[n, s]`, each in
/// `0..classes` or the ignore label): the loss and the sums for [`backward`].
pub fn forward(logits: &[f32], labels: &[i32], n: usize, o: &DiceCe) -> (f64, DiceCeSums) {
    let c = o.classes;
    let s = labels.len() / n.max(1);
    let sums = tasks(n, s)
        .map(|(b, v0, len)| {
            let z = &logits[b * c * s..][..c * s];
            let mut part = DiceCeSums::zeros(n * c);
            let mut p = vec![0f32; c];
            for v in v0..v0 + len {
                let Some(t) = class_of(labels[b * s + v], o) else {
                    continue;
                };
                let lse = softmax(z, v, s, &mut p);
                let mut ce = f64::from(lse - z[t * s + v]);
                if o.label_smoothing > 0.0 {
                    let mean_nll = (0..c).map(|k| f64::from(lse - z[k * s + v])).sum::<f64>();
                    ce = (1.0 - o.label_smoothing) * ce + o.label_smoothing * mean_nll / c as f64;
                }
                part.ce += ce;
                part.counted += 1.0;
                for (k, &pk) in p.iter().enumerate().skip(o.first) {
                    part.pred[b * c + k] += f64::from(pk);
                }
                part.intersect[b * c + t] += f64::from(p[t]);
                part.truth[b * c + t] += 1.0;
            }
            part
        })
        .reduce(|| DiceCeSums::zeros(n * c), DiceCeSums::add);
    (loss(&sums, n, o), sums)
}

/// The Dice terms' `(intersect, pred, truth)` sums: per (sample, class), or per class summed
/// over the batch; classes before `first` left out.
fn dice_terms(sums: &DiceCeSums, n: usize, o: &DiceCe) -> Vec<(f64, f64, f64)> {
    let c = o.classes;
    let term = |b: usize, k: usize| {
        let i = b * c + k;
        (sums.intersect[i], sums.pred[i], sums.truth[i])
    };
    let add = |a: (f64, f64, f64), t: (f64, f64, f64)| (a.0 + t.0, a.1 + t.1, a.2 + t.2);
    if o.batch_dice {
        (o.first..c)
            .map(|k| (0..n).map(|b| term(b, k)).fold((0.0, 0.0, 0.0), add))
            .collect()
    } else {
        (0..n)
            .flat_map(|b| (o.first..c).map(move |k| (b, k)))
            .map(|(b, k)| term(b, k))
            .collect()
    }
}

fn loss(sums: &DiceCeSums, n: usize, o: &DiceCe) -> f64 {
    let terms = dice_terms(sums, n, o);
    let dc = terms
        .iter()
        .map(|&(i, p, g)| (2.0 * i + o.smooth) / (g + p + o.smooth).max(1e-8))
        .sum::<f64>()
        / terms.len().max(1) as f64;
    o.weight_ce * sums.ce / sums.counted.max(1.0) - o.weight_dice * dc
}

/// `dL/dp_k = −(weight_dice / T) · (a_k · y_k + c_k)` of one Dice term: its `(a, c)`.
fn dice_slopes(terms: &[(f64, f64, f64)], o: &DiceCe) -> Vec<(f32, f32)> {
    let scale = -o.weight_dice / terms.len().max(1) as f64;
    terms
        .iter()
        .map(|&(i, p, g)| {
            let d = g + p + o.smooth;
            let den = d.max(1e-8);
            let c = if d > 1e-8 {
                -(2.0 * i + o.smooth) / (den * den)
            } else {
                0.0
            };
            ((scale * 2.0 / den) as f32, (scale * c) as f32)
        })
        .collect()
}

/// Backward pass: the gradient of the loss times `grad` with respect to the logits.
pub fn backward(
    logits: &[f32],
    labels: &[i32],
    n: usize,
    o: &DiceCe,
    sums: &DiceCeSums,
    grad: f32,
) -> Vec<f32> {
    let c = o.classes;
    let s = labels.len() / n.max(1);
    let slopes = dice_slopes(&dice_terms(sums, n, o), o);
    let per_sample = c - o.first;
    // The (a, c) of class k in sample b (index into slopes), for k >= first.
    let slope = |b: usize, k: usize| {
        let term = if o.batch_dice { 0 } else { b * per_sample };
        slopes[term + k - o.first]
    };
    let ce_scale = (o.weight_ce / sums.counted.max(1.0)) as f32 * grad;
    let smooth = o.label_smoothing as f32;
    let mut dz: Vec<f32> = crate::zeroed(logits.len());
    let out = crate::SendPtr(dz.as_mut_ptr());
    tasks(n, s).for_each(|(b, v0, len)| {
        let out = &out;
        let z = &logits[b * c * s..][..c * s];
        let (mut p, mut g) = (vec![0f32; c], vec![0f32; c]);
        for v in v0..v0 + len {
            let Some(t) = class_of(labels[b * s + v], o) else {
                continue;
            };
            softmax(z, v, s, &mut p);
            for (k, gk) in g.iter_mut().enumerate().skip(o.first) {
                let (a, ck) = slope(b, k);
                *gk = grad * (ck + if k == t { a } else { 0.0 });
            }
            let pg: f32 = p.iter().zip(&g).map(|(p, g)| p * g).sum();
            for k in 0..c {
                let target = (1.0 - smooth) * f32::from(k == t) + smooth / c as f32;
                let d = ce_scale * (p[k] - target) + p[k] * (g[k] - pg);
                // SAFETY: each task writes its own voxels of its own sample.
                unsafe { *out.0.add((b * c + k) * s + v) = d };
            }
        }
    });
    dz
}
