//! The additional transforms of nnU-Net's stronger `nnUNetTrainerDA5` pipeline
//! (batchgeneratorsv2): 90° rotations and axis transposes of equal-length axes ([`axes`]),
//! median filter and Laplacian sharpening ([`filters`]), additive brightness ([`brightness`]),
//! blank rectangles ([`rectangles`]), local brightness gradients and local gamma ([`local`]),
//! and the `OneOf` combinator ([`one_of`]).
//!
//! Samples are `[c, z, y, x]`; 2D data (`context.is_2d`) is treated as `[c, y, x]`, so nothing
//! is drawn or filtered along its singleton z axis.

mod axes;
mod brightness;
mod filters;
mod local;
mod one_of;
mod rectangles;

pub use axes::{Rot90Transform, TransposeAxesTransform, equal_length_axes};
pub use brightness::BrightnessAdditiveTransform;
pub use filters::{MedianFilterTransform, SharpeningTransform};
pub use local::{
    BrightnessGradientAdditiveTransform, LocalGammaTransform, LocalScale, SplitScalar,
};
pub use one_of::OneOfTransform;
pub use rectangles::{BlankRectangleTransform, RectangleValue, da5_rectangle_size};

use ndarray::Array4;
use nnunet_core::{Error, Result};
use rand::{Rng, RngCore};

/// `np.random.randint(lo, hi)`: uniform integer in `[lo, hi)`; `lo` when the range is empty.
fn randint(rng: &mut dyn RngCore, lo: usize, hi: usize) -> usize {
    if hi <= lo + 1 {
        lo
    } else {
        rng.random_range(lo..hi)
    }
}

/// The image as contiguous per-channel slices of `z * y * x` values.
fn image_channels(image: &mut Array4<f32>) -> Result<std::slice::ChunksMut<'_, f32>> {
    if !image.is_standard_layout() {
        *image = image.as_standard_layout().into_owned();
    }
    let n: usize = image.shape()[1..].iter().product();
    let data = image
        .as_slice_mut()
        .ok_or_else(|| Error::training("image is not contiguous"))?;
    Ok(data.chunks_mut(n.max(1)))
}
