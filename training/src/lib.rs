//! Training: the [`Trainer`] extension trait and its settings (from `nnunet-api`), `nnUNetTrainer`
//! and its variants ([`presets`]), and the pipeline's training loop, optimisers, checkpoints,
//! folds and progress plot, and the loading of training batches ([`data_loading`]).

pub mod checkpoint;
pub mod data_loading;
mod loss_scale;
pub mod optimizer;
mod plot;
mod presets;

pub use loss_scale::LossScaler;
pub mod run;
pub mod splits;

/// The optimiser trait and parameter groups of `nnunet-api` (beside this crate's [`optimizer`]).
pub use nnunet_api::training::optimizer as optimizer_api;
pub use nnunet_api::training::*;

/// Which samples of a batch of `batch_size` are forced to contain foreground under nnU-Net's fixed
/// rule: sample `j` is forced unless `j < round(batch_size * (1 - fraction))`, rounding half to even
/// as Python's `round`.
pub fn forced_foreground(batch_size: usize, fraction: f64) -> Vec<bool> {
    let free = (batch_size as f64 * (1.0 - fraction)).round_ties_even();
    (0..batch_size).map(|j| (j as f64) >= free).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_oversampling_rule() {
        assert_eq!(forced_foreground(2, 0.33), [false, true]);
        assert_eq!(
            forced_foreground(12, 0.33),
            [
                false, false, false, false, false, false, false, false, true, true, true, true
            ]
        );
        // round(2.5) = 2 in Python: the last three of five are forced.
        assert_eq!(forced_foreground(5, 0.5), [false, false, true, true, true]);
    }
}
