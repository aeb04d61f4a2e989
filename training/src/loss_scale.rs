//! Dynamic loss scaling for fp16 training (GPU mixed precision), as PyTorch's `GradScaler` with
//! its defaults, which nnU-Net uses on CUDA.
//!
//! fp16 gradients of small losses underflow to zero; the loss is multiplied by a large scale
//! before the backward pass and the gradients divided by it before the optimiser step. A step
//! whose gradients overflowed (inf or NaN) is skipped and the scale halved; after
//! [`GROWTH_INTERVAL`] steps in a row without overflow the scale doubles.

use serde::{Deserialize, Serialize};

/// The scale a run starts with (2^16).
pub(crate) const INITIAL_SCALE: f64 = 65536.0;
/// Factor of the scale after [`GROWTH_INTERVAL`] finite steps in a row.
pub(crate) const GROWTH_FACTOR: f64 = 2.0;
/// Factor of the scale after a step with inf or NaN gradients.
pub(crate) const BACKOFF_FACTOR: f64 = 0.5;
/// Finite steps in a row before the scale grows.
pub(crate) const GROWTH_INTERVAL: u32 = 2000;

/// The loss scaler's state (saved in checkpoints, so a continued run scales as the original).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// What losses are multiplied by before the backward pass.
    pub scale: f64,
    /// Finite steps since the scale last changed.
    pub growth_tracker: u32,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler {
            scale: INITIAL_SCALE,
            growth_tracker: 0,
        }
    }
}

impl LossScaler {
    /// Records a step whose gradients were `finite` (the step was taken) or not (skipped).
    pub fn update(&mut self, finite: bool) {
        if !finite {
            self.scale *= BACKOFF_FACTOR;
            self.growth_tracker = 0;
            return;
        }
        self.growth_tracker += 1;
        if self.growth_tracker == GROWTH_INTERVAL {
            self.scale *= GROWTH_FACTOR;
            self.growth_tracker = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflow_halves_the_scale_and_a_long_finite_run_doubles_it() {
        let mut scaler = LossScaler::default();
        for _ in 0..GROWTH_INTERVAL - 1 {
            scaler.update(true);
        }
        assert_eq!(scaler.scale, INITIAL_SCALE);
        scaler.update(false);
        assert_eq!(
            (scaler.scale, scaler.growth_tracker),
            (INITIAL_SCALE / 2.0, 0)
        );
        for _ in 0..GROWTH_INTERVAL {
            scaler.update(true);
        }
        assert_eq!((scaler.scale, scaler.growth_tracker), (INITIAL_SCALE, 0));
    }
}
