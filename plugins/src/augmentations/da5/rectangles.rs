//! Blank rectangles: random axis-aligned boxes of randomly chosen channels filled with a value.

use nnunet_core::{Error, Result};
use rand::RngCore;

use super::super::apply::{RandomTransform, Run};
use super::super::uniform;
use super::{image_channels, randint};

/// A box as its `[lo, hi)` bounds per sample axis (z, y, x).
type Bounds = ([usize; 3], [usize; 3]);

/// The value a blank rectangle is filled with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RectangleValue {
    /// The mean of the channel inside the rectangle (`torch.mean`, DA5).
    Mean,
    /// This value.
    Fixed(f64),
    /// Uniform in `[lo, hi)`, per rectangle.
    Uniform(f64, f64),
}

/// Fills random axis-aligned boxes of randomly chosen channels with a value.
#[derive(Clone, Debug)]
pub struct BlankRectangleTransform {
    /// Probability that the transform runs.
    pub p: f64,
    /// Side length range `[lo, hi)` per spatial axis of the data (2 entries, y/x, for 2D; 3
    /// for 3D). `None` uses DA5's rule `[max(1, s / 10), s / 3)` on the sample's shape.
    pub rectangle_size: Option<Vec<(usize, usize)>>,
    /// What the rectangles are filled with.
    pub rectangle_value: RectangleValue,
    /// Number of rectangles per channel, uniform integer in `[lo, hi)`.
    pub num_rectangles: (usize, usize),
    /// One side length (drawn from the first range) for all axes.
    pub force_square: bool,
    /// Probability that a channel gets rectangles.
    pub p_per_channel: f64,
}

/// DA5's rectangle sizes for a patch: `[max(1, s / 10), s / 3)` per axis.
pub fn da5_rectangle_size(patch_size: &[usize]) -> Vec<(usize, usize)> {
    patch_size
        .iter()
        .map(|&s| ((s / 10).max(1), s / 3))
        .collect()
}

impl BlankRectangleTransform {
    /// DA5: p 0.4, 1-4 rectangles filled with their mean, p per channel 0.5. `patch_size` as
    /// in the plans (2 or 3 entries); `None` derives the sizes from each sample.
    pub fn da5(patch_size: Option<&[usize]>) -> Self {
        Self {
            p: 0.4,
            rectangle_size: patch_size.map(da5_rectangle_size),
            rectangle_value: RectangleValue::Mean,
            num_rectangles: (1, 5),
            force_square: false,
            p_per_channel: 0.5,
        }
    }
}

impl BlankRectangleTransform {
    /// The side length ranges for a sample of spatial `shape`, one per axis in `axes`.
    fn ranges(&self, shape: [usize; 3], axes: &[usize]) -> Result<Vec<(usize, usize)>> {
        let ranges = match &self.rectangle_size {
            Some(r) => r.clone(),
            None => da5_rectangle_size(&axes.iter().map(|&a| shape[a]).collect::<Vec<_>>()),
        };
        if ranges.len() != axes.len() {
            return Err(Error::training(format!(
                "BlankRectangleTransform: {} rectangle size ranges for {}D data",
                ranges.len(),
                axes.len()
            )));
        }
        Ok(ranges)
    }

    /// Draws the boxes of every channel (none for the channels not drawn).
    fn draw_boxes(
        &self,
        run: &mut Run<'_>,
        ranges: &[(usize, usize)],
        axes: &[usize],
    ) -> Vec<Vec<Bounds>> {
        let c = run.channels;
        let shape = run.shape;
        let apply = run.channel_mask(self.p_per_channel);
        let rng = &mut *run.rng;
        let counts: Vec<usize> = (0..c)
            .map(|_| randint(rng, self.num_rectangles.0, self.num_rectangles.1))
            .collect();
        let mut boxes: Vec<Vec<Bounds>> = vec![Vec::new(); c];
        for ch in 0..c {
            if !apply[ch] {
                continue;
            }
            for _ in 0..counts[ch] {
                let sizes: Vec<usize> = if self.force_square {
                    vec![randint(rng, ranges[0].0, ranges[0].1); axes.len()]
                } else {
                    ranges.iter().map(|r| randint(rng, r.0, r.1)).collect()
                };
                let mut lb = [0usize; 3];
                let mut ub = shape;
                for (k, &a) in axes.iter().enumerate() {
                    let size = sizes[k].min(shape[a]);
                    lb[a] = randint(rng, 0, shape[a] - size + 1);
                    ub[a] = lb[a] + size;
                }
                boxes[ch].push((lb, ub));
            }
        }
        boxes
    }
}

/// Fills the box `(lb, ub)` of one channel (`data`, spatial `shape`) with `value`; an empty
/// box filled with its mean stays as it is.
fn fill_box(
    data: &mut [f32],
    shape: [usize; 3],
    (lb, ub): Bounds,
    value: RectangleValue,
    rng: &mut dyn RngCore,
) {
    let idx = |z: usize, y: usize, x: usize| (z * shape[1] + y) * shape[2] + x;
    let fill = match value {
        RectangleValue::Fixed(v) => v as f32,
        RectangleValue::Uniform(lo, hi) => uniform(rng, lo, hi) as f32,
        RectangleValue::Mean => {
            let (mut sum, mut n) = (0.0f64, 0usize);
            for z in lb[0]..ub[0] {
                for y in lb[1]..ub[1] {
                    for x in lb[2]..ub[2] {
                        sum += data[idx(z, y, x)] as f64;
                        n += 1;
                    }
                }
            }
            if n == 0 {
                return;
            }
            (sum / n as f64) as f32
        }
    };
    for z in lb[0]..ub[0] {
        for y in lb[1]..ub[1] {
            data[idx(z, y, lb[2])..idx(z, y, ub[2].max(lb[2]))].fill(fill);
        }
    }
}

impl RandomTransform for BlankRectangleTransform {
    fn transform(&self, mut run: Run<'_>) -> Result<()> {
        let axes = run.axes();
        let ranges = self.ranges(run.shape, &axes)?;
        let boxes = self.draw_boxes(&mut run, &ranges, &axes);
        for (ch, data) in image_channels(&mut run.sample.image)?.enumerate() {
            for &b in &boxes[ch] {
                fill_box(data, run.shape, b, self.rectangle_value, run.rng);
            }
        }
        Ok(())
    }
}
