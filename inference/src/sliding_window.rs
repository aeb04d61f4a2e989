//! Sliding-window prediction of a preprocessed case, as nnU-Net v2.8.1's
//! `nnUNetPredictor.predict_sliding_window_return_logits` does it:
//!
//! 1. The case is padded (constant 0, content centred, the extra voxel of an odd padding after
//!    it) to at least the patch size. A 2D configuration pads only `y` and `x` and predicts every
//!    `z` slice on its own.
//! 2. Tiles start at [`compute_steps`] along every axis (every slice along `z` in 2D), visited in
//!    the reference's order.
//! 3. Each tile's logits are, with test-time mirroring, the mean of the prediction of the tile and
//!    of every combination of flips along the mirror axes (each flipped back).
//! 4. The logits are weighted by [`compute_gaussian`] (or by 1), summed, and divided by the
//!    summed weights; the padding is cropped away.
//!
//! The difference to the reference: accumulation is in `f32` (the reference accumulates in
//! `float16`, with a `float16` Gaussian). The padding is never materialised: tiles are cut from
//! the unpadded case with zeros outside it, and only voxels inside it are accumulated, which gives
//! the same result.

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array3, Array4, ArrayD, ArrayView4, IxDyn};

use nnunet_core::error::{Error, Result};
use nnunet_core::network::Network;
use nnunet_preprocessing::plans::Configuration;

/// The Gaussian importance map of a tile, as `compute_gaussian` of nnU-Net: a centred unit
/// impulse (at `size / 2` per axis) smoothed as `scipy.ndimage.gaussian_filter` does (sigma
/// `size * sigma_scale` per axis, constant mode, truncated at 4 sigma), scaled so that its
/// maximum is `value_scaling_factor`, with zeros replaced by the smallest nonzero value.
/// nnU-Net predicts with `sigma_scale = 1/8` and `value_scaling_factor = 10`.
pub fn compute_gaussian(
    tile: &[usize],
    sigma_scale: f64,
    value_scaling_factor: f64,
) -> Result<ArrayD<f32>> {
    if tile.is_empty() || tile.contains(&0) {
        return Err(Error::inference(format!(
            "compute_gaussian: the tile size {tile:?} must have positive sizes"
        )));
    }
    if !(sigma_scale.is_finite() && sigma_scale > 0.0) {
        return Err(Error::inference(format!(
            "compute_gaussian: sigma_scale must be positive, not {sigma_scale}"
        )));
    }
    if !(value_scaling_factor.is_finite() && value_scaling_factor > 0.0) {
        return Err(Error::inference(format!(
            "compute_gaussian: value_scaling_factor must be positive, not {value_scaling_factor}"
        )));
    }
    // The filter of an impulse is separable: one normalised 1-D kernel per axis, centred on the
    // impulse, multiplied together in axis order (as the sequential 1-D passes of scipy).
    let profiles: Vec<Vec<f64>> = tile
        .iter()
        .map(|&size| {
            let sigma = size as f64 * sigma_scale;
            let radius = (4.0 * sigma + 0.5) as i64;
            let sigma2 = sigma * sigma;
            let kernel: Vec<f64> = (-radius..=radius)
                .map(|x| (-0.5 / sigma2 * (x * x) as f64).exp())
                .collect();
            let sum: f64 = kernel.iter().sum();
            let centre = (size / 2) as i64;
            (0..size as i64)
                .map(|p| {
                    let offset = p - centre;
                    if offset.abs() <= radius {
                        kernel[(offset + radius) as usize] / sum
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let mut map = ArrayD::<f64>::from_elem(IxDyn(tile), 1.0);
    for (index, value) in map.indexed_iter_mut() {
        for (axis, profile) in profiles.iter().enumerate() {
            *value *= profile[index[axis]];
        }
    }
    let max = map.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let divisor = max / value_scaling_factor;
    let mut out = map.mapv(|v| (v / divisor) as f32);
    let smallest = out
        .iter()
        .copied()
        .filter(|v| *v != 0.0)
        .fold(f32::INFINITY, f32::min);
    if smallest.is_finite() {
        out.mapv_inplace(|v| if v == 0.0 { smallest } else { v });
    }
    Ok(out)
}

/// The start of every tile along every axis, as `compute_steps_for_sliding_window` of nnU-Net:
/// along an axis of `image` voxels with tiles of `tile` voxels, `ceil((image - tile) /
/// (tile * step_size)) + 1` tiles spread evenly from 0 to `image - tile` (positions rounded half
/// to even). The image must be at least as large as the tile and `0 < step_size <= 1`.
pub fn compute_steps(
    image_size: &[usize],
    tile_size: &[usize],
    step_size: f64,
) -> Result<Vec<Vec<usize>>> {
    if image_size.len() != tile_size.len() {
        return Err(Error::inference(format!(
            "sliding window: image size {image_size:?} and tile size {tile_size:?} have different \
             numbers of axes"
        )));
    }
    if !(step_size > 0.0 && step_size <= 1.0) {
        return Err(Error::inference(format!(
            "sliding window: the step size must be in (0, 1], not {step_size}"
        )));
    }
    if tile_size.contains(&0) {
        return Err(Error::inference(format!(
            "sliding window: the tile size {tile_size:?} must have positive sizes"
        )));
    }
    image_size
        .iter()
        .zip(tile_size)
        .map(|(&image, &tile)| {
            if image < tile {
                return Err(Error::inference(format!(
                    "sliding window: the image ({image_size:?}) must be at least as large as the \
                     tile ({tile_size:?}); pad it first"
                )));
            }
            let target_step = tile as f64 * step_size;
            let max_step = image - tile;
            let num_steps = (max_step as f64 / target_step).ceil() as usize + 1;
            let actual_step = if num_steps > 1 {
                max_step as f64 / (num_steps - 1) as f64
            } else {
                99_999_999_999.0
            };
            Ok((0..num_steps)
                .map(|i| (actual_step * i as f64).round_ties_even() as usize)
                .collect())
        })
        .collect()
}

/// How [`predict_sliding_window`] tiles and averages.
#[derive(Clone, Debug, PartialEq)]
pub struct SlidingWindowSettings {
    /// The configuration's patch size: 3 values (`[z, y, x]`), or 2 (`[y, x]`) for a 2D
    /// configuration, whose network then predicts every `z` slice on its own.
    pub patch_size: Vec<usize>,
    /// Tile step as a fraction of the patch size, in `(0, 1]` (nnU-Net: 0.5).
    pub step_size: f64,
    /// Weight tiles with the Gaussian importance map (otherwise uniformly).
    pub use_gaussian: bool,
    /// Spatial axes of the patch (`0..patch_size.len()`) to mirror for test-time augmentation,
    /// as the model was trained (`inference_allowed_mirroring_axes`); empty disables it. Every
    /// non-empty combination of these axes costs one more forward pass per tile.
    pub mirror_axes: Vec<usize>,
    /// Tiles stacked into one forward pass (at least 1).
    pub tiles_per_batch: usize,
}

/// Tiles per forward pass are chosen so that a batch holds about this many voxels.
const VOXELS_PER_BATCH: usize = 1 << 18;

impl SlidingWindowSettings {
    /// nnU-Net's defaults for `patch_size`: step 0.5, Gaussian weighting, mirroring along every
    /// axis of the patch, and as many tiles per forward pass as fit in about 2^18 voxels (one
    /// for typical 3D patches, a few for small 2D ones).
    pub fn new(patch_size: Vec<usize>) -> Self {
        let voxels: usize = patch_size.iter().product::<usize>().max(1);
        SlidingWindowSettings {
            mirror_axes: (0..patch_size.len()).collect(),
            patch_size,
            step_size: 0.5,
            use_gaussian: true,
            tiles_per_batch: (VOXELS_PER_BATCH / voxels).clamp(1, 8),
        }
    }

    /// The defaults of [`SlidingWindowSettings::new`] for a plans configuration's patch size,
    /// with the given mirror axes.
    pub fn from_configuration(
        configuration: &Configuration,
        mirror_axes: Vec<usize>,
    ) -> Result<Self> {
        let mut settings = Self::new(configuration.patch_size()?);
        settings.mirror_axes = mirror_axes;
        Ok(settings)
    }

    /// Checks the patch size, step size, mirror axes and tiles per batch.
    fn check(&self) -> Result<()> {
        if !(2..=3).contains(&self.patch_size.len()) || self.patch_size.contains(&0) {
            return Err(Error::inference(format!(
                "sliding window: the patch size {:?} must have 2 or 3 positive sizes",
                self.patch_size
            )));
        }
        if !(self.step_size > 0.0 && self.step_size <= 1.0) {
            return Err(Error::inference(format!(
                "sliding window: the step size must be in (0, 1], not {}",
                self.step_size
            )));
        }
        for (i, &axis) in self.mirror_axes.iter().enumerate() {
            if axis >= self.patch_size.len() {
                return Err(Error::inference(format!(
                    "sliding window: mirror axis {axis} does not exist in a {}D patch",
                    self.patch_size.len()
                )));
            }
            if self.mirror_axes[..i].contains(&axis) {
                return Err(Error::inference(format!(
                    "sliding window: mirror axis {axis} is listed twice in {:?}",
                    self.mirror_axes
                )));
            }
        }
        if self.tiles_per_batch == 0 {
            return Err(Error::inference(
                "sliding window: tiles_per_batch must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Every non-empty combination of `axes`, by size and then in order
/// (`itertools.combinations` for sizes 1, 2, …).
fn axis_combinations(axes: &[usize]) -> Vec<Vec<usize>> {
    fn extend(
        axes: &[usize],
        start: usize,
        size: usize,
        current: &mut Vec<usize>,
        out: &mut Vec<Vec<usize>>,
    ) {
        if current.len() == size {
            out.push(current.clone());
            return;
        }
        for i in start..axes.len() {
            current.push(axes[i]);
            extend(axes, i + 1, size, current, out);
            current.pop();
        }
    }
    let mut out = Vec::new();
    for size in 1..=axes.len() {
        extend(axes, 0, size, &mut Vec::new(), &mut out);
    }
    out
}

/// `t` flipped along every axis of `dims`.
fn flip_all(mut t: Tensor<5>, dims: &[usize]) -> Tensor<5> {
    for &d in dims {
        t = t.flip([d]);
    }
    t
}

/// The first output of `network` for `input`, checked to be `[n, classes, tile…]`.
fn forward_checked(network: &dyn Network, input: Tensor<5>) -> Result<Tensor<5>> {
    let [n, _, t0, t1, t2] = input.dims();
    let output = network
        .forward(input)
        .into_iter()
        .next()
        .ok_or_else(|| Error::inference("sliding window: the network returned no output"))?;
    let dims = output.dims();
    if dims[0] != n || dims[2..] != [t0, t1, t2] || dims[1] == 0 {
        return Err(Error::inference(format!(
            "sliding window: the network turned a batch of shape [{n}, _, {t0}, {t1}, {t2}] into \
             {dims:?}; it must keep the batch and spatial sizes (is deep supervision off?)"
        )));
    }
    Ok(output)
}

/// Where the tiles of a case go: the tile size, the case's shape and padding, and every tile's
/// start in the padded case.
struct TileGrid {
    /// The case's shape `[z, y, x]`.
    shape: [usize; 3],
    /// The tile's shape `[z, y, x]` (`z = 1` in 2D).
    tile: [usize; 3],
    /// The padding before the case along every axis.
    pad_below: [usize; 3],
    /// Every tile's start in the padded case, in the reference's order.
    starts: Vec<[usize; 3]>,
}

impl TileGrid {
    /// The tiles of a case of `shape` under `settings` (already checked).
    fn new(shape: [usize; 3], settings: &SlidingWindowSettings) -> Result<Self> {
        let is_2d = settings.patch_size.len() == 2;
        let tile: [usize; 3] = if is_2d {
            [1, settings.patch_size[0], settings.patch_size[1]]
        } else {
            [
                settings.patch_size[0],
                settings.patch_size[1],
                settings.patch_size[2],
            ]
        };
        // A 2D configuration pads and tiles only y and x; z is visited slice by slice.
        let padded: [usize; 3] = std::array::from_fn(|a| shape[a].max(tile[a]));
        let pad_below: [usize; 3] = std::array::from_fn(|a| (padded[a] - shape[a]) / 2);
        let steps: Vec<Vec<usize>> = if is_2d {
            let mut s = vec![(0..shape[0]).collect::<Vec<_>>()];
            s.extend(compute_steps(&padded[1..], &tile[1..], settings.step_size)?);
            s
        } else {
            compute_steps(&padded, &tile, settings.step_size)?
        };
        let mut starts: Vec<[usize; 3]> = Vec::new();
        for &s0 in &steps[0] {
            for &s1 in &steps[1] {
                for &s2 in &steps[2] {
                    starts.push([s0, s1, s2]);
                }
            }
        }
        Ok(TileGrid {
            shape,
            tile,
            pad_below,
            starts,
        })
    }

    /// The number of voxels of a tile.
    fn tile_voxels(&self) -> usize {
        self.tile[0] * self.tile[1] * self.tile[2]
    }

    /// For every axis: the part of the tile at `start` inside the case, as (tile offset, case
    /// offset, length).
    fn overlap(&self, start: [usize; 3]) -> [(usize, usize, usize); 3] {
        std::array::from_fn(|a| {
            let lo = start[a].max(self.pad_below[a]);
            let hi = (start[a] + self.tile[a]).min(self.pad_below[a] + self.shape[a]);
            (lo - start[a], lo - self.pad_below[a], hi.saturating_sub(lo))
        })
    }

    /// Calls `visit(tile index, case index)` for every voxel of the tile at `start` that lies
    /// inside the case, in `z`, `y`, `x` order.
    fn for_each_inside(&self, start: [usize; 3], mut visit: impl FnMut([usize; 3], [usize; 3])) {
        let [(t0, c0, l0), (t1, c1, l1), (t2, c2, l2)] = self.overlap(start);
        for dz in 0..l0 {
            for dy in 0..l1 {
                for dx in 0..l2 {
                    visit([t0 + dz, t1 + dy, t2 + dx], [c0 + dz, c1 + dy, c2 + dx]);
                }
            }
        }
    }

    /// The tiles at `batch` cut from `data` (zeros outside the case), as the flat values of a
    /// `[n, channels, tile…]` batch.
    fn gather(&self, data: ArrayView4<'_, f32>, batch: &[[usize; 3]]) -> Vec<f32> {
        let channels = data.shape()[0];
        let tile = self.tile;
        let tile_voxels = self.tile_voxels();
        let mut input = vec![0f32; batch.len() * channels * tile_voxels];
        for (i, &start) in batch.iter().enumerate() {
            let [(t0, c0, l0), (t1, c1, l1), (t2, c2, l2)] = self.overlap(start);
            for c in 0..channels {
                let base = (i * channels + c) * tile_voxels;
                for dz in 0..l0 {
                    for dy in 0..l1 {
                        let row = base + ((t0 + dz) * tile[1] + t1 + dy) * tile[2] + t2;
                        let out = &mut input[row..row + l2];
                        for (dx, v) in out.iter_mut().enumerate() {
                            *v = data[[c, c0 + dz, c1 + dy, c2 + dx]];
                        }
                    }
                }
            }
        }
        input
    }
}

/// The logits of one batch `x`: the network's prediction, with test-time mirroring the mean over
/// the batch and each of its flips along `combinations` (flipped back).
fn forward_mirrored(
    network: &dyn Network,
    x: Tensor<5>,
    combinations: &[Vec<usize>],
) -> Result<Tensor<5>> {
    let mut prediction = forward_checked(network, x.clone())?;
    for dims in combinations {
        let mirrored = forward_checked(network, flip_all(x.clone(), dims))?;
        prediction = prediction + flip_all(mirrored, dims);
    }
    if !combinations.is_empty() {
        prediction = prediction.div_scalar((combinations.len() + 1) as f32);
    }
    Ok(prediction)
}

/// The weighted sums of the tiles' logits and of their weights over the case.
struct Accumulator {
    /// The summed weighted logits `[classes, z, y, x]`, from the first batch on.
    logits: Option<Array4<f32>>,
    /// The summed weights `[z, y, x]`.
    weights: Array3<f32>,
    /// The Gaussian importance map of a tile (uniform weights when `None`).
    gaussian: Option<Array3<f32>>,
}

impl Accumulator {
    /// Adds the logits `values` (`[n, classes, tile…]`, flat) of the tiles at `batch`, weighted,
    /// and their weights.
    fn add(
        &mut self,
        grid: &TileGrid,
        batch: &[[usize; 3]],
        classes: usize,
        values: &[f32],
    ) -> Result<()> {
        let [nz, ny, nx] = grid.shape;
        let acc = self
            .logits
            .get_or_insert_with(|| Array4::zeros((classes, nz, ny, nx)));
        if acc.shape()[0] != classes {
            return Err(Error::inference(format!(
                "sliding window: the network returned {classes} classes after {} before",
                acc.shape()[0]
            )));
        }
        let tile = grid.tile;
        let tile_voxels = grid.tile_voxels();
        let gaussian = self.gaussian.as_ref();
        for (i, &start) in batch.iter().enumerate() {
            for k in 0..classes {
                let base = (i * classes + k) * tile_voxels;
                grid.for_each_inside(start, |[tz, ty, tx], [cz, cy, cx]| {
                    let v = values[base + (tz * tile[1] + ty) * tile[2] + tx];
                    let w = gaussian.map_or(1.0, |g| g[[tz, ty, tx]]);
                    acc[[k, cz, cy, cx]] += v * w;
                });
            }
            grid.for_each_inside(start, |t, c| {
                self.weights[c] += gaussian.map_or(1.0, |g| g[t]);
            });
        }
        Ok(())
    }

    /// The summed logits divided by the summed weights; non-finite logits are an error.
    fn finish(self) -> Result<Array4<f32>> {
        let mut logits = self
            .logits
            .ok_or_else(|| Error::inference("sliding window: no tiles"))?;
        for mut class in logits.outer_iter_mut() {
            class.zip_mut_with(&self.weights, |v, &w| *v /= w);
        }
        if logits.iter().any(|v| !v.is_finite()) {
            return Err(Error::inference(
                "sliding window: the network produced non-finite logits (inf or NaN)",
            ));
        }
        Ok(logits)
    }
}

/// Predicts the logits of a preprocessed case `data` (`[channels, z, y, x]`, the configuration's
/// axis order and spacing) by sliding-window inference, as nnU-Net does (see the module
/// documentation). Returns the averaged logits `[classes, z, y, x]` of the case's shape.
///
/// `network` must have deep supervision switched off and live on `device`, which should not
/// track gradients (no `.autodiff()`). `progress(done, total)` is called after every forward
/// batch with the number of tiles done and the total.
pub fn predict_sliding_window(
    network: &dyn Network,
    data: ArrayView4<'_, f32>,
    settings: &SlidingWindowSettings,
    device: &Device,
    progress: &dyn Fn(usize, usize),
) -> Result<Array4<f32>> {
    settings.check()?;
    let (channels, nz, ny, nx) = data.dim();
    let shape = [nz, ny, nx];
    if channels == 0 || shape.contains(&0) {
        return Err(Error::inference(format!(
            "sliding window: cannot predict an empty case of shape {:?}",
            data.shape()
        )));
    }
    let grid = TileGrid::new(shape, settings)?;
    let tile = grid.tile;
    let gaussian: Option<Array3<f32>> = if settings.use_gaussian {
        let g = compute_gaussian(&settings.patch_size, 1.0 / 8.0, 10.0)?;
        Some(
            g.into_shape_with_order(tile)
                .map_err(|e| Error::inference(format!("sliding window: {e}")))?,
        )
    } else {
        None
    };
    let dim_offset = if settings.patch_size.len() == 2 { 3 } else { 2 };
    let combinations: Vec<Vec<usize>> = axis_combinations(&settings.mirror_axes)
        .into_iter()
        .map(|c| c.into_iter().map(|a| a + dim_offset).collect())
        .collect();

    let total = grid.starts.len();
    let mut accumulator = Accumulator {
        logits: None,
        weights: Array3::<f32>::zeros(shape),
        gaussian,
    };
    let mut done = 0;
    for batch in grid.starts.chunks(settings.tiles_per_batch) {
        let n = batch.len();
        let x = Tensor::<5>::from_data(
            TensorData::new(
                grid.gather(data, batch),
                [n, channels, tile[0], tile[1], tile[2]],
            ),
            device,
        );
        let prediction = forward_mirrored(network, x, &combinations)?;
        let classes = prediction.dims()[1];
        let values: Vec<f32> = prediction
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| {
                Error::inference(format!("sliding window: cannot read the logits: {e:?}"))
            })?;
        accumulator.add(&grid, batch, classes, &values)?;
        done += n;
        progress(done, total);
    }
    accumulator.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_follow_itertools_order() {
        assert_eq!(
            axis_combinations(&[0, 1, 2]),
            vec![
                vec![0],
                vec![1],
                vec![2],
                vec![0, 1],
                vec![0, 2],
                vec![1, 2],
                vec![0, 1, 2]
            ]
        );
        assert!(axis_combinations(&[]).is_empty());
    }

    #[test]
    fn bad_settings_are_errors() {
        let mut s = SlidingWindowSettings::new(vec![4, 4]);
        assert_eq!(s.mirror_axes, vec![0, 1]);
        s.mirror_axes = vec![2];
        assert!(s.check().is_err());
        s.mirror_axes = vec![1, 1];
        assert!(s.check().is_err());
        s.mirror_axes = vec![];
        s.step_size = 0.0;
        assert!(s.check().is_err());
        assert!(compute_steps(&[3], &[4], 0.5).is_err());
        assert!(compute_gaussian(&[0, 3], 0.125, 10.0).is_err());
    }
}
