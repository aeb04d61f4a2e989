//! Training losses, registered under nnU-Net's class names.
//!
//! | name | nnU-Net | used by |
//! |---|---|---|
//! | `DC_and_CE_loss` | soft Dice (softmax, no background) + cross-entropy | `nnUNetTrainer` (label targets) |
//! | `DC_and_BCE_loss` | soft Dice (sigmoid, all regions) + binary cross-entropy | `nnUNetTrainer` (region targets) |
//! | `RobustCrossEntropyLoss` | cross-entropy alone | `nnUNetTrainerCELoss` |
//! | `MemoryEfficientSoftDiceLoss` | soft Dice alone | `nnUNetTrainerDiceLoss` |
//! | `TopKLoss` | mean cross-entropy of the hardest k % voxels | `nnUNetTrainerTopk10Loss(LS01)` |
//! | `DC_and_topk_loss` | soft Dice + top-k cross-entropy | `nnUNetTrainerDiceTopK10Loss` |
//!
//! nnU-Net's soft Dice is negative (a perfect prediction gives about -1). All values are
//! differentiable with respect to the logits; targets are constants.
//!
//! Where the reference fails or returns NaN, these losses do something defined instead: a
//! cross-entropy over a batch whose voxels are all ignored is 0 (as in `DC_and_CE_loss`, which
//! skips the term), and the Dice alone honours the ignore label the way `DC_and_CE_loss` does
//! (the reference's Dice-only trainer cannot run with an ignore label).

use nnunet_core::burn::tensor::activation::{log_sigmoid, log_softmax, sigmoid, softmax};
use nnunet_core::burn::tensor::{Int, Tensor, TensorData};
use nnunet_core::fused::{self, DiceCe};
use nnunet_core::loss::{Loss, LossSettings, Target};
use nnunet_core::{Error, Result};

/// `DC_and_CE_loss`: `weight_ce * CE + weight_dice * Dice` on label targets.
#[derive(Clone, Copy, Debug, Default)]
pub struct DcAndCeLoss;

/// `DC_and_BCE_loss`: `weight_ce * BCE + weight_dice * Dice` on region targets.
#[derive(Clone, Copy, Debug, Default)]
pub struct DcAndBceLoss;

/// `RobustCrossEntropyLoss`: mean cross-entropy over the voxels that are not ignored.
#[derive(Clone, Copy, Debug, Default)]
pub struct RobustCrossEntropyLoss;

/// `MemoryEfficientSoftDiceLoss` alone: softmax for label targets, sigmoid for region targets.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryEfficientSoftDiceLoss;

/// `TopKLoss`: the mean cross-entropy of the `topk_percent` % highest per-voxel values.
#[derive(Clone, Copy, Debug, Default)]
pub struct TopKLoss;

/// `DC_and_topk_loss`: `weight_ce * TopK + weight_dice * Dice` on label targets.
#[derive(Clone, Copy, Debug, Default)]
pub struct DcAndTopkLoss;

/// Registers each loss under its nnU-Net name and defines [`NAMES`] and [`create`] from the
/// same list.
macro_rules! losses {
    ($($name:literal => $loss:ident, $description:literal;)*) => {
        $(nnunet_core::register!(Loss, $name, $description, || Box::new($loss));)*

        /// nnU-Net's names of the losses defined here, as registered.
        pub const NAMES: [&str; [$($name),*].len()] = [$($name),*];

        /// The loss registered under `name`, built directly (without the registry), or `None`
        /// for a name not defined here.
        pub fn create(name: &str) -> Option<Box<dyn Loss>> {
            Some(match name {
                $($name => Box::new($loss),)*
                _ => return None,
            })
        }
    };
}

losses! {
    "DC_and_CE_loss" => DcAndCeLoss,
        "soft Dice (softmax, background excluded) + cross-entropy: nnU-Net's default";
    "DC_and_BCE_loss" => DcAndBceLoss,
        "soft Dice (sigmoid) + binary cross-entropy: the default for region-based training";
    "RobustCrossEntropyLoss" => RobustCrossEntropyLoss,
        "cross-entropy alone";
    "MemoryEfficientSoftDiceLoss" => MemoryEfficientSoftDiceLoss,
        "soft Dice alone (softmax for labels, sigmoid for regions)";
    "TopKLoss" => TopKLoss,
        "cross-entropy averaged over the hardest topk_percent % of voxels";
    "DC_and_topk_loss" => DcAndTopkLoss,
        "soft Dice (softmax, background excluded) + top-k cross-entropy";
}

impl Loss for DcAndCeLoss {
    fn forward(&self, logits: Tensor<5>, target: &Target, s: &LossSettings) -> Result<Tensor<1>> {
        match fused_settings(&logits, s) {
            Some(settings) => fused_dice_ce(logits, target, s, settings),
            None => composed_dice_ce(logits, target, s),
        }
    }
}

/// `DC_and_CE_loss` in one fused CPU operation.
fn fused_dice_ce(
    logits: Tensor<5>,
    target: &Target,
    s: &LossSettings,
    settings: DiceCe,
) -> Result<Tensor<1>> {
    check_settings(s)?;
    let labels = fused_labels(&logits, label_target(target, "DC_and_CE_loss")?, s)?;
    Ok(fused::dice_ce_loss(logits, labels, settings))
}

/// `DC_and_CE_loss` as burn operations (any backend).
fn composed_dice_ce(logits: Tensor<5>, target: &Target, s: &LossSettings) -> Result<Tensor<1>> {
    let labels = checked_labels(&logits, target, s, "DC_and_CE_loss")?;
    combine(
        s,
        || softmax_dice(logits.clone(), &labels, s),
        || mean_cross_entropy(logits.clone(), &labels, s.label_smoothing),
    )
}

impl Loss for DcAndTopkLoss {
    fn forward(&self, logits: Tensor<5>, target: &Target, s: &LossSettings) -> Result<Tensor<1>> {
        let labels = checked_labels(&logits, target, s, "DC_and_topk_loss")?;
        combine(
            s,
            || softmax_dice(logits.clone(), &labels, s),
            || topk_cross_entropy(logits.clone(), &labels, s),
        )
    }
}

impl Loss for RobustCrossEntropyLoss {
    fn forward(&self, logits: Tensor<5>, target: &Target, s: &LossSettings) -> Result<Tensor<1>> {
        let labels = checked_labels(&logits, target, s, "RobustCrossEntropyLoss")?;
        mean_cross_entropy(logits, &labels, s.label_smoothing)
    }
}

impl Loss for TopKLoss {
    fn forward(&self, logits: Tensor<5>, target: &Target, s: &LossSettings) -> Result<Tensor<1>> {
        let labels = checked_labels(&logits, target, s, "TopKLoss")?;
        topk_cross_entropy(logits, &labels, s)
    }
}

impl Loss for MemoryEfficientSoftDiceLoss {
    fn forward(&self, logits: Tensor<5>, target: &Target, s: &LossSettings) -> Result<Tensor<1>> {
        check_settings(s)?;
        match target {
            Target::Labels(t) => {
                let labels = prepare_labels(&logits, t, s)?;
                softmax_dice(logits, &labels, s)
            }
            Target::Regions(t) => {
                let regions = prepare_regions(&logits, t, s)?;
                Ok(sigmoid_dice(logits, &regions, s))
            }
        }
    }
}

impl Loss for DcAndBceLoss {
    fn forward(&self, logits: Tensor<5>, target: &Target, s: &LossSettings) -> Result<Tensor<1>> {
        check_settings(s)?;
        let t = match target {
            Target::Regions(t) => t,
            Target::Labels(_) => {
                return Err(Error::training(
                    "DC_and_BCE_loss needs region targets; use DC_and_CE_loss for label targets",
                ));
            }
        };
        let regions = prepare_regions(&logits, t, s)?;
        combine(
            s,
            || Ok(sigmoid_dice(logits.clone(), &regions, s)),
            || Ok(binary_cross_entropy(logits.clone(), &regions)),
        )
    }
}

/// `weight_ce * ce + weight_dice * dice`, computing only the terms whose weight is not zero.
fn combine(
    s: &LossSettings,
    dice: impl FnOnce() -> Result<Tensor<1>>,
    ce: impl FnOnce() -> Result<Tensor<1>>,
) -> Result<Tensor<1>> {
    let dice = if s.weight_dice != 0.0 {
        Some(dice()?.mul_scalar(s.weight_dice))
    } else {
        None
    };
    let ce = if s.weight_ce != 0.0 {
        Some(ce()?.mul_scalar(s.weight_ce))
    } else {
        None
    };
    match (ce, dice) {
        (Some(c), Some(d)) => Ok(c + d),
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (None, None) => Err(Error::training(
            "loss weights: weight_ce and weight_dice are both 0, nothing to optimise",
        )),
    }
}

/// Errors unless the settings are usable (finite weights, `smooth >= 0`, `topk_percent` in
/// `(0, 100]`, `label_smoothing` in `[0, 1]`).
fn check_settings(s: &LossSettings) -> Result<()> {
    let bad = |what: &str, v: f64| Err(Error::training(format!("loss settings: {what} = {v}")));
    if !(s.smooth.is_finite() && s.smooth >= 0.0) {
        return bad("smooth (must be finite and >= 0)", s.smooth);
    }
    if !s.weight_ce.is_finite() {
        return bad("weight_ce (must be finite)", s.weight_ce);
    }
    if !s.weight_dice.is_finite() {
        return bad("weight_dice (must be finite)", s.weight_dice);
    }
    if !(s.topk_percent > 0.0 && s.topk_percent <= 100.0) {
        return bad("topk_percent (must be in (0, 100])", s.topk_percent);
    }
    if !(0.0..=1.0).contains(&s.label_smoothing) {
        return bad("label_smoothing (must be in [0, 1])", s.label_smoothing);
    }
    Ok(())
}

/// The label target, or an error naming `loss` for region targets.
fn label_target<'a>(target: &'a Target, loss: &str) -> Result<&'a Tensor<5, Int>> {
    match target {
        Target::Labels(t) => Ok(t),
        Target::Regions(_) => Err(Error::training(format!(
            "{loss} needs label targets; region-based training uses DC_and_BCE_loss \
             (or MemoryEfficientSoftDiceLoss)"
        ))),
    }
}

/// The start of the losses on label targets: checks the settings, then the label target of
/// `loss` against the logits.
fn checked_labels(
    logits: &Tensor<5>,
    target: &Target,
    s: &LossSettings,
    loss: &str,
) -> Result<Labels> {
    check_settings(s)?;
    prepare_labels(logits, label_target(target, loss)?, s)
}

/// The settings of the fused CPU loss where it computes `DC_and_CE_loss` (f32 logits on the
/// CPU, both terms weighted, a Dice term with at least one class); `None` elsewhere.
fn fused_settings(logits: &Tensor<5>, s: &LossSettings) -> Option<DiceCe> {
    let classes = logits.dims()[1];
    let first = usize::from(!s.do_bg);
    let usable = fused::supported(logits) && s.weight_ce != 0.0 && s.weight_dice != 0.0;
    // The kernel takes i32 labels; an ignore label outside i32 goes the generic way.
    let ignore = match s.ignore_label {
        Some(i) => Some(i32::try_from(i).ok()?),
        None => None,
    };
    (usable && classes > first).then_some(DiceCe {
        classes,
        ignore,
        first,
        batch_dice: s.batch_dice,
        smooth: s.smooth,
        weight_ce: s.weight_ce,
        weight_dice: s.weight_dice,
        label_smoothing: s.label_smoothing,
    })
}

/// The label target as flat `i32` values for the fused loss, checked as [`prepare_labels`]
/// checks it.
fn fused_labels(
    logits: &Tensor<5>,
    labels: &Tensor<5, Int>,
    s: &LossSettings,
) -> Result<fused::Labels> {
    let [b, c, z, y, x] = logits.dims();
    check_label_shape(logits.dims(), labels.dims())?;
    let values = labels
        .to_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| Error::training(format!("cannot read the label target: {e:?}")))?;
    let valid = |v: i64| (0..c as i64).contains(&v) || s.ignore_label == Some(v);
    let n_bad = values.iter().filter(|&&v| !valid(v)).count();
    if n_bad > 0 {
        return Err(bad_labels(n_bad, c, s));
    }
    debug_assert_eq!(values.len(), b * z * y * x);
    // Checked: classes (< c) and the ignore label, which `fused_settings` took only in i32.
    Ok(values.into_iter().map(|v| v as i32).collect())
}

/// Errors unless a `[b, 1, z, y, x]` label target fits `[b, c, z, y, x]` logits.
fn check_label_shape(logits: [usize; 5], labels: [usize; 5]) -> Result<()> {
    let [b, c, z, y, x] = logits;
    let [tb, tc, tz, ty, tx] = labels;
    if c == 0 || tc != 1 || [tb, tz, ty, tx] != [b, z, y, x] {
        return Err(Error::training(format!(
            "label target of shape [{tb}, {tc}, {tz}, {ty}, {tx}] does not fit logits of shape \
             [{b}, {c}, {z}, {y}, {x}] (expected [{b}, 1, {z}, {y}, {x}])"
        )));
    }
    Ok(())
}

/// The error for `n_bad` target voxels outside the classes of `c`-channel logits.
fn bad_labels(n_bad: usize, c: usize, s: &LossSettings) -> Error {
    let allowed = match s.ignore_label {
        Some(i) => format!("0..{c} or the ignore label {i}"),
        None => format!("0..{c}"),
    };
    Error::training(format!(
        "{n_bad} target voxels have labels outside {allowed} for logits with {c} channels"
    ))
}

/// A label target checked against the logits, on the logits' device.
struct Labels {
    /// `[b, 1, z, y, x]` class indices, ignored voxels set to 0.
    index: Tensor<5, Int>,
    /// `[b, 1, z, y, x]`: 1 where the voxel counts, 0 where it carries the ignore label. `None`
    /// without an ignore label.
    valid: Option<Tensor<5>>,
}

/// Checks `labels` (shape, range; the ignore label allowed) against the logits and moves them
/// to the logits' device.
fn prepare_labels(logits: &Tensor<5>, labels: &Tensor<5, Int>, s: &LossSettings) -> Result<Labels> {
    check_label_shape(logits.dims(), labels.dims())?;
    let c = logits.dims()[1];
    let device = logits.device();
    let labels = labels.clone().to_device(&device);
    let out_of_range = labels
        .clone()
        .lower_elem(0)
        .bool_or(labels.clone().greater_equal_elem(c as i64));
    let (index, valid, bad) = match s.ignore_label {
        Some(ignore) => {
            let ignored = labels.clone().equal_elem(ignore);
            let bad = out_of_range.bool_and(ignored.clone().bool_not());
            let valid = ignored.clone().bool_not().float();
            (labels.mask_fill(ignored, 0), Some(valid), bad)
        }
        None => (labels, None, out_of_range),
    };
    let n_bad: i64 = bad
        .int()
        .sum()
        .try_into_scalar()
        .map_err(|e| Error::training(format!("cannot read the label target: {e}")))?;
    if n_bad > 0 {
        return Err(bad_labels(n_bad as usize, c, s));
    }
    Ok(Labels { index, valid })
}

/// A region target checked against the logits, on the logits' device.
struct Regions {
    /// `[b, regions, z, y, x]` (the ignore channel removed).
    target: Tensor<5>,
    /// `[b, 1, z, y, x]`: 1 where the voxel counts. `None` without an ignore label.
    mask: Option<Tensor<5>>,
}

/// Checks a region target (with the ignore mask as last channel when there is an ignore label)
/// against the logits and moves it to the logits' device.
fn prepare_regions(logits: &Tensor<5>, t: &Tensor<5>, s: &LossSettings) -> Result<Regions> {
    let [b, c, z, y, x] = logits.dims();
    let [tb, tc, tz, ty, tx] = t.dims();
    let expected = c + usize::from(s.ignore_label.is_some());
    if c == 0 || tc != expected || [tb, tz, ty, tx] != [b, z, y, x] {
        let why = if s.ignore_label.is_some() {
            " (one channel per region plus the ignore mask last)"
        } else {
            ""
        };
        return Err(Error::training(format!(
            "region target of shape [{tb}, {tc}, {tz}, {ty}, {tx}] does not fit logits of shape \
             [{b}, {c}, {z}, {y}, {x}] (expected [{b}, {expected}, {z}, {y}, {x}]{why})"
        )));
    }
    let t = t.clone().to_device(&logits.device());
    if s.ignore_label.is_some() {
        // As nnU-Net: a voxel counts wherever `1 - ignore_channel` is nonzero.
        let mask = t.clone().narrow(1, c, 1).not_equal_elem(1.0).float();
        Ok(Regions {
            target: t.narrow(1, 0, c),
            mask: Some(mask),
        })
    } else {
        Ok(Regions {
            target: t,
            mask: None,
        })
    }
}

/// nnU-Net's `MemoryEfficientSoftDiceLoss` on probabilities and a (one-hot or region) target of
/// the same shape, with an optional `[b, 1, ...]` voxel mask: `-mean(dc)` with
/// `dc = (2 I + smooth) / max(G + P + smooth, 1e-8)` per sample and channel, or per channel over
/// the whole batch with `batch_dice`.
fn soft_dice(
    probs: Tensor<5>,
    onehot: Tensor<5>,
    mask: Option<Tensor<5>>,
    batch_dice: bool,
    smooth: f64,
) -> Tensor<1> {
    let (probs, onehot_masked) = match mask {
        Some(m) => (probs * m.clone(), onehot.clone() * m),
        None => (probs, onehot.clone()),
    };
    let axes = [2usize, 3, 4];
    let mut intersect = (probs.clone() * onehot).sum_dims(&axes);
    let mut sum_pred = probs.sum_dims(&axes);
    let mut sum_gt = onehot_masked.sum_dims(&axes);
    if batch_dice {
        intersect = intersect.sum_dim(0);
        sum_pred = sum_pred.sum_dim(0);
        sum_gt = sum_gt.sum_dim(0);
    }
    let numerator = intersect.mul_scalar(2.0).add_scalar(smooth);
    let denominator = (sum_gt + sum_pred).add_scalar(smooth).clamp_min(1e-8);
    (numerator / denominator).mean().neg()
}

/// The soft Dice of sigmoid probabilities against region targets, ignored voxels masked.
fn sigmoid_dice(logits: Tensor<5>, regions: &Regions, s: &LossSettings) -> Tensor<1> {
    soft_dice(
        sigmoid(logits),
        regions.target.clone(),
        regions.mask.clone(),
        s.batch_dice,
        s.smooth,
    )
}

/// The soft Dice of softmax probabilities against one-hot labels; background dropped unless
/// `do_bg`; ignored voxels masked.
fn softmax_dice(logits: Tensor<5>, labels: &Labels, s: &LossSettings) -> Result<Tensor<1>> {
    let c = logits.dims()[1];
    let first = usize::from(!s.do_bg);
    if c <= first {
        return Err(Error::training(format!(
            "the Dice term without background needs at least 2 classes, the logits have {c}"
        )));
    }
    let probs = softmax(logits, 1).narrow(1, first, c - first);
    let onehot = Tensor::cat(
        (first..c)
            .map(|k| labels.index.clone().equal_elem(k as i64).float())
            .collect(),
        1,
    );
    Ok(soft_dice(
        probs,
        onehot,
        labels.valid.clone(),
        s.batch_dice,
        s.smooth,
    ))
}

/// Per-voxel cross-entropy `[b, 1, z, y, x]` (PyTorch's, with label smoothing `ls`), zero where
/// ignored.
fn voxel_cross_entropy(logits: Tensor<5>, labels: &Labels, ls: f64) -> Tensor<5> {
    let c = logits.dims()[1];
    let logp = log_softmax(logits, 1);
    let nll = logp.clone().gather(1, labels.index.clone()).neg();
    let ce = if ls > 0.0 {
        nll.mul_scalar(1.0 - ls) + logp.sum_dim(1).neg().mul_scalar(ls / c as f64)
    } else {
        nll
    };
    match &labels.valid {
        Some(v) => ce * v.clone(),
        None => ce,
    }
}

/// Mean cross-entropy over the voxels that are not ignored (0 when all are).
fn mean_cross_entropy(logits: Tensor<5>, labels: &Labels, ls: f64) -> Result<Tensor<1>> {
    let ce = voxel_cross_entropy(logits, labels, ls);
    Ok(match &labels.valid {
        Some(v) => ce.sum() / v.clone().sum().clamp_min(1.0),
        None => ce.mean(),
    })
}

/// nnU-Net's `TopKLoss`: the mean of the `int(n * k / 100)` largest per-voxel cross-entropies
/// among all `n` voxels of the batch (ignored voxels count, with value 0).
fn topk_cross_entropy(logits: Tensor<5>, labels: &Labels, s: &LossSettings) -> Result<Tensor<1>> {
    let ce = voxel_cross_entropy(logits, labels, s.label_smoothing);
    let n = ce.shape().num_elements();
    let k = (n as f64 * s.topk_percent / 100.0) as usize;
    if k == 0 {
        return Err(Error::training(format!(
            "TopKLoss: {}% of {n} voxels selects none; the output is too small for this k",
            s.topk_percent
        )));
    }
    let flat: Tensor<1> = ce.reshape([n]);
    let values = flat
        .clone()
        .detach()
        .try_into_vec_as::<f32>()
        .map_err(|e| Error::training(format!("TopKLoss: cannot read the cross-entropy: {e}")))?;
    let mut order: Vec<usize> = (0..n).collect();
    // Partition (linear time) so that the k largest values come first.
    order.select_nth_unstable_by(k - 1, |&a, &b| values[b].total_cmp(&values[a]));
    let mut select = vec![0f32; n];
    for &i in &order[..k] {
        select[i] = 1.0;
    }
    let select = Tensor::<1>::from_data(TensorData::new(select, [n]), &flat.device());
    Ok((flat * select).sum().div_scalar(k as f64))
}

/// `BCEWithLogits`: the mean over all elements, or with an ignore mask nnU-Net's
/// `sum(bce * mask) / max(sum(mask), 1e-8)` (the mask summed over voxels, not channels).
fn binary_cross_entropy(logits: Tensor<5>, regions: &Regions) -> Tensor<1> {
    // -(t log s(x) + (1 - t) log(1 - s(x))) = (1 - t) x - log s(x)
    let one_minus_t = regions.target.clone().neg().add_scalar(1.0);
    let bce = one_minus_t * logits.clone() - log_sigmoid(logits);
    match &regions.mask {
        Some(m) => (bce * m.clone()).sum() / m.clone().sum().clamp_min(1e-8),
        None => bce.mean(),
    }
}

#[cfg(test)]
mod tests;
