//! An nnunet-rs plugin for thin tubular structures (vessels, neurons, airways): nnU-Net's Dice +
//! cross-entropy plus the soft clDice term of Shit et al., "clDice - a Novel Topology-Preserving
//! Loss Function for Tubular Structure Segmentation" (CVPR 2021), as an `nnUNetTrainer` subclass
//! overriding the loss.
//!
//! Soft skeletons come from iterated soft erosion (min pooling over the 3x3(x3) cross) and soft
//! opening (erosion, then max pooling over the 3x3(x3) box). The clDice term compares the
//! prediction's skeleton with the reference's foreground (topology precision) and the
//! reference's skeleton with the prediction (topology sensitivity), over the foreground classes of
//! the highest-resolution output, and is logged as `train_cldice` / `val_cldice` every epoch.
//!
//! ```sh
//! cargo build --release -p cldice_trainer
//! nnunet --plugin target/release/libcldice_trainer.so train 4 2d 0 -tr nnUNetTrainerClDice
//! ```

use nnunet_api::burn::tensor::activation::{relu, softmax};
use nnunet_api::burn::tensor::{Int, Tensor};
use nnunet_api::loss::Target;
use nnunet_api::training::{Batch, StepContext, scalar};
use nnunet_api::{Error, Result, Trainer};

/// Skeletonisation iterations (the paper's `iter_`).
const ITERATIONS: usize = 3;
/// Weight of the clDice term next to Dice + cross-entropy.
const WEIGHT: f64 = 1.0;
/// Smoothing of the topology precision and sensitivity.
const SMOOTH: f64 = 1.0;

/// `nnUNetTrainer` with loss = DC + CE (deep supervision as nnU-Net's) + soft clDice.
struct ClDiceTrainer;

impl Trainer for ClDiceTrainer {
    fn loss(
        &mut self,
        step: &mut dyn StepContext,
        outputs: Vec<Tensor<5>>,
        batch: &Batch,
    ) -> Result<Tensor<1>> {
        let logits = outputs
            .first()
            .cloned()
            .ok_or_else(|| Error::Invalid("the network returned no output".into()))?;
        let base = step.loss(outputs, batch)?;
        let Some(Target::Labels(labels)) = step.targets(batch).into_iter().next() else {
            return Err(Error::Invalid(
                "nnUNetTrainerClDice needs label targets (not regions)".into(),
            ));
        };
        let cldice = soft_cldice(logits, labels, ITERATIONS);
        step.log("cldice", scalar(&cldice));
        Ok(base + cldice * WEIGHT)
    }
}

/// The soft clDice loss of `logits` `[b, c, z, y, x]` against integer `labels` `[b, 1, z, y, x]`
/// over the foreground classes; voxels whose label is not a class (the ignore label) count
/// nowhere.
pub fn soft_cldice(logits: Tensor<5>, labels: Tensor<5, Int>, iterations: usize) -> Tensor<1> {
    let classes = logits.dims()[1];
    let one_hot: Vec<Tensor<5>> = (0..classes)
        .map(|k| labels.clone().equal_elem(k as i64).float())
        .collect();
    let truth = Tensor::cat(one_hot, 1);
    let valid = truth.clone().sum_dim(1);
    let probabilities = softmax(logits, 1) * valid;
    let foreground = |t: Tensor<5>| t.narrow(1, 1, classes - 1);
    let (prediction, truth) = (foreground(probabilities), foreground(truth));
    let skeleton_prediction = soft_skeleton(prediction.clone(), iterations);
    let skeleton_truth = soft_skeleton(truth.clone(), iterations);
    let ratio = |a: Tensor<5>, b: Tensor<5>, skeleton: Tensor<5>| {
        ((a * b).sum().add_scalar(SMOOTH)) / skeleton.sum().add_scalar(SMOOTH)
    };
    let precision = ratio(skeleton_prediction.clone(), truth, skeleton_prediction);
    let sensitivity = ratio(skeleton_truth.clone(), prediction, skeleton_truth);
    let harmonic = (precision.clone() * sensitivity.clone() * 2.0) / (precision + sensitivity);
    harmonic.neg().add_scalar(1.0)
}

/// The soft skeleton of probabilities `x`: what each of `iterations` erosions removes beyond the
/// opening of the eroded map, accumulated.
pub fn soft_skeleton(x: Tensor<5>, iterations: usize) -> Tensor<5> {
    let mut image = x.clone();
    let mut skeleton = relu(x - soft_open(image.clone()));
    for _ in 0..iterations {
        image = soft_erode(image);
        let delta = relu(image.clone() - soft_open(image.clone()));
        skeleton = skeleton.clone() + relu(delta.clone() - skeleton * delta);
    }
    skeleton
}

/// Soft erosion: the minimum over the cross of each voxel and its direct neighbours.
fn soft_erode(x: Tensor<5>) -> Tensor<5> {
    (2..5)
        .map(|axis| neighbourhood_max(x.clone().neg(), axis).neg())
        .reduce(|a, b| a.min_pair(b))
        .expect("three spatial axes")
}

/// Soft dilation: the maximum over the 3x3(x3) box (separable).
fn soft_dilate(x: Tensor<5>) -> Tensor<5> {
    (2..5).fold(x, neighbourhood_max)
}

/// Soft opening: erosion, then dilation.
fn soft_open(x: Tensor<5>) -> Tensor<5> {
    soft_dilate(soft_erode(x))
}

/// The maximum of each voxel and its two neighbours along `axis` (max pooling with kernel 3,
/// stride 1 and padding that never wins); an axis of length 1 (2D data's z) is left as it is.
fn neighbourhood_max(x: Tensor<5>, axis: usize) -> Tensor<5> {
    let n = x.dims()[axis];
    if n == 1 {
        return x;
    }
    let previous = Tensor::cat(
        vec![
            x.clone().narrow(axis, 0, 1),
            x.clone().narrow(axis, 0, n - 1),
        ],
        axis,
    );
    let next = Tensor::cat(
        vec![
            x.clone().narrow(axis, 1, n - 1),
            x.clone().narrow(axis, n - 1, 1),
        ],
        axis,
    );
    x.max_pair(previous).max_pair(next)
}

// What the plugin registers with the host, and the entry point that does it.
nnunet_api::export_plugin! {
    trainer "nnUNetTrainerClDice",
        "nnUNetTrainer with Dice + CE + soft clDice (3 skeleton iterations) for thin tubular structures; logs train_cldice/val_cldice (example plugin)",
        || Box::new(ClDiceTrainer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnunet_api::burn::tensor::{Device, TensorData};

    /// A one-channel 2D map `[1, 1, 1, h, w]` of `rows`: 1 at `#`, 0 elsewhere.
    fn image(rows: &[&str], device: &Device) -> Tensor<5> {
        let (h, w) = (rows.len(), rows[0].len());
        let values: Vec<f32> = rows
            .iter()
            .flat_map(|r| r.chars().map(|c| if c == '#' { 1.0 } else { 0.0 }))
            .collect();
        Tensor::from_data(TensorData::new(values, [1, 1, 1, h, w]), device)
    }

    /// The values of `t` in row-major order.
    fn values(t: Tensor<5>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// Confident two-class logits `[1, 2, 1, h, w]`: foreground at the `#` of `rows`.
    fn logits(rows: &[&str], device: &Device) -> Tensor<5> {
        Tensor::cat(
            vec![
                image(rows, device).neg().add_scalar(1.0),
                image(rows, device),
            ],
            1,
        ) * 20.0
    }

    #[test]
    fn the_skeleton_of_a_thick_bar_is_its_middle_line() {
        let device = Device::flex();
        let bar = image(
            &[
                ".........",
                "#########",
                "#########",
                "#########",
                ".........",
            ],
            &device,
        );
        let skeleton = values(soft_skeleton(bar, 3));
        let row = |r: usize| &skeleton[r * 9..(r + 1) * 9];
        assert!(row(2)[2..7].iter().all(|&v| v == 1.0), "{skeleton:?}");
        assert!(row(1)[2..7].iter().all(|&v| v == 0.0), "{skeleton:?}");
        assert!(row(0).iter().chain(row(4)).all(|&v| v == 0.0));
    }

    #[test]
    fn cldice_is_low_for_the_reference_and_high_for_a_broken_vessel() {
        let device = Device::flex();
        let rows = [".....", "#####", "....."];
        let labels = image(&rows, &device).int();
        let perfect = logits(&rows, &device);
        let broken = logits(&[".....", "##.##", "....."], &device);
        let good = scalar(&soft_cldice(perfect, labels.clone(), 3));
        let bad = scalar(&soft_cldice(broken, labels, 3));
        assert!(good < 1e-3, "{good}");
        assert!(bad > good + 0.05, "{bad} vs {good}");
    }
}
