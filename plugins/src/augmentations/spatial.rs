//! `SpatialTransform`: rotation and scaling about the patch centre, resampled onto the final
//! patch size (a centre crop of the larger sampled patch), as batchgeneratorsv2's
//! `SpatialTransform` with nnU-Net's parameters (no elastic deformation, no random crop).

use ndarray::{Array4, ArrayView3, Axis};
use nnunet_core::augmentation::Sample;
use nnunet_core::{Error, Result};
use nnunet_preprocessing::resampling::CornerVotes;
use rand::{Rng, RngCore};
use rayon::prelude::*;

use super::apply::{RandomTransform, Run};
use super::{RandomScalar, chance, spatial_shape};

/// Rotation and scaling with centre crop to `patch_size`.
#[derive(Clone, Debug)]
pub struct SpatialTransform {
    /// Output spatial size `[z, y, x]` (`z = 1` for 2D); `None` keeps the input's size.
    pub patch_size: Option<[usize; 3]>,
    /// Probability of a rotation.
    pub p_rotation: f64,
    /// Angle (radians) per rotated axis.
    pub rotation: RandomScalar,
    /// Probability that a rotation turns about a given axis (the others keep angle 0).
    pub p_rot_per_axis: f64,
    /// Probability of a scaling.
    pub p_scaling: f64,
    /// Scale factor; larger values make objects smaller.
    pub scaling: RandomScalar,
    /// Probability that one scale factor serves all axes.
    pub p_synchronize_scaling_across_axes: f64,
    /// Transform every z slice in-plane with one 2D affine (nnU-Net's dummy-2D scheme for
    /// anisotropic 3D patches). 2D data (`context.is_2d`) is always transformed in-plane.
    pub pseudo_2d: bool,
    /// Nearest-neighbour label maps instead of label-wise linear interpolation.
    pub segmentation_nearest: bool,
    /// Nearest-neighbour images instead of (bi/tri)linear interpolation.
    pub image_nearest: bool,
    /// Label given to voxels sampled outside the input.
    pub padding_value_seg: i16,
}

impl SpatialTransform {
    /// nnU-Net's default training spatial transform: p_rotation 0.2 with angles uniform in
    /// `rotation`, p_scaling 0.2 with one scale U(0.7, 1.4) for all axes.
    pub fn new(patch_size: Option<[usize; 3]>, rotation: (f64, f64), pseudo_2d: bool) -> Self {
        Self {
            patch_size,
            p_rotation: 0.2,
            rotation: RandomScalar::Uniform(rotation.0, rotation.1),
            p_rot_per_axis: 1.0,
            p_scaling: 0.2,
            scaling: RandomScalar::Uniform(0.7, 1.4),
            p_synchronize_scaling_across_axes: 1.0,
            pseudo_2d,
            segmentation_nearest: false,
            image_nearest: false,
            padding_value_seg: -1,
        }
    }

    /// [`Self::new`] with ±30° rotations (nnU-Net's 3D default).
    pub fn nnunet_default(patch_size: Option<[usize; 3]>, pseudo_2d: bool) -> Self {
        let a = 30f64.to_radians();
        Self::new(patch_size, (-a, a), pseudo_2d)
    }

    /// No rotation, no scaling: a pure centre crop.
    pub fn crop_only(patch_size: Option<[usize; 3]>) -> Self {
        Self {
            p_rotation: 0.0,
            p_scaling: 0.0,
            ..Self::nnunet_default(patch_size, false)
        }
    }
}

/// `p = m · o + t` maps output voxel `o = (z, y, x)` to input coordinates.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    m: [[f64; 3]; 3],
    t: [f64; 3],
    /// z is an integer offset (in-plane transform): no interpolation across slices.
    in_plane: bool,
}

impl Mapping {
    /// The rotation/scaling about the patch centres: output centre to input centre (for an
    /// in-plane transform, z is shifted by `z_offset` instead).
    fn new(
        angles: &[f64],
        scales: &[f64],
        in_shape: [usize; 3],
        out_shape: [usize; 3],
        z_offset: isize,
        in_plane: bool,
    ) -> Self {
        let a = if in_plane {
            let (c, s) = (angles[1].cos(), angles[1].sin());
            let r = [[c, -s], [s, c]];
            let mut m = [[0.0; 3]; 3];
            m[0][0] = 1.0;
            for i in 0..2 {
                for j in 0..2 {
                    m[i + 1][j + 1] = r[i][j] * scales[j];
                }
            }
            m
        } else {
            affine_3d(
                [angles[0], angles[1], angles[2]],
                [scales[0], scales[1], scales[2]],
            )
        };
        let half_out: [f64; 3] = std::array::from_fn(|d| (out_shape[d] as f64 - 1.0) / 2.0);
        let mut t = [0.0; 3];
        for d in 0..3 {
            if in_plane && d == 0 {
                t[0] = z_offset as f64;
                continue;
            }
            t[d] = (in_shape[d] as f64 - 1.0) / 2.0
                - (0..3).map(|k| a[d][k] * half_out[k]).sum::<f64>();
        }
        Mapping { m: a, t, in_plane }
    }

    /// The input coordinates of output voxel `o`.
    #[inline]
    fn at(&self, o: [f64; 3]) -> [f64; 3] {
        let mut p = self.t;
        for (d, pd) in p.iter_mut().enumerate() {
            *pd += self.m[d][0] * o[0] + self.m[d][1] * o[1] + self.m[d][2] * o[2];
        }
        p
    }
}

/// The 3x3 matrix product `a · b`.
fn mat_mul(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    r
}

/// The 3D affine `Rz · Ry · Rx · S` of batchgeneratorsv2 (`create_affine_matrix_3d`).
fn affine_3d(angles: [f64; 3], scales: [f64; 3]) -> [[f64; 3]; 3] {
    let (c0, s0) = (angles[0].cos(), angles[0].sin());
    let (c1, s1) = (angles[1].cos(), angles[1].sin());
    let (c2, s2) = (angles[2].cos(), angles[2].sin());
    let rx = [[1.0, 0.0, 0.0], [0.0, c0, -s0], [0.0, s0, c0]];
    let ry = [[c1, 0.0, s1], [0.0, 1.0, 0.0], [-s1, 0.0, c1]];
    let rz = [[c2, -s2, 0.0], [s2, c2, 0.0], [0.0, 0.0, 1.0]];
    let s = [
        [scales[0], 0.0, 0.0],
        [0.0, scales[1], 0.0],
        [0.0, 0.0, scales[2]],
    ];
    mat_mul(mat_mul(mat_mul(rz, ry), rx), s)
}

impl SpatialTransform {
    /// The input and output spatial shapes, checked: image and segmentation agree and neither
    /// shape is empty.
    fn shapes(&self, sample: &Sample) -> Result<([usize; 3], [usize; 3])> {
        let in_shape = spatial_shape(&sample.image);
        if spatial_shape(&sample.segmentation) != in_shape {
            return Err(Error::training(format!(
                "SpatialTransform: image spatial shape {:?} differs from segmentation {:?}",
                in_shape,
                spatial_shape(&sample.segmentation)
            )));
        }
        let out_shape = self.patch_size.unwrap_or(in_shape);
        if out_shape.contains(&0) || in_shape.contains(&0) {
            return Err(Error::training(format!(
                "SpatialTransform: empty patch (input {in_shape:?}, output {out_shape:?})"
            )));
        }
        Ok((in_shape, out_shape))
    }

    /// Draws, in the reference's order, the angles and scales of `dim` axes; `None` when
    /// neither a rotation nor a scaling happens.
    fn draw(&self, rng: &mut dyn RngCore, dim: usize) -> Option<(Vec<f64>, Vec<f64>)> {
        let do_rotation = chance(rng, self.p_rotation);
        let do_scale = chance(rng, self.p_scaling);
        let mut angles = vec![0.0; dim];
        if do_rotation {
            for a in angles.iter_mut() {
                *a = self.rotation.sample(rng);
            }
            if self.p_rot_per_axis < 1.0 {
                for a in angles.iter_mut() {
                    if rng.random::<f64>() > self.p_rot_per_axis {
                        *a = 0.0;
                    }
                }
            }
        }
        let mut scales = vec![1.0; dim];
        if do_scale {
            if rng.random::<f64>() <= self.p_synchronize_scaling_across_axes {
                let s = self.scaling.sample(rng);
                scales.iter_mut().for_each(|v| *v = s);
            } else {
                for s in scales.iter_mut() {
                    *s = self.scaling.sample(rng);
                }
            }
        }
        (do_rotation || do_scale).then_some((angles, scales))
    }
}

impl RandomTransform for SpatialTransform {
    fn transform(&self, run: Run<'_>) -> Result<()> {
        let sample = run.sample;
        let (in_shape, out_shape) = self.shapes(sample)?;
        let in_plane = self.pseudo_2d || run.context.is_2d;
        let drawn = self.draw(run.rng, if in_plane { 2 } else { 3 });

        // crop offset of the centre crop: centre floor(S/2), start centre - P//2
        let crop_start: [isize; 3] =
            std::array::from_fn(|d| (in_shape[d] / 2) as isize - (out_shape[d] / 2) as isize);
        let mapping = drawn.map(|(angles, scales)| {
            Mapping::new(
                &angles,
                &scales,
                in_shape,
                out_shape,
                crop_start[0],
                in_plane,
            )
        });

        let image = transform_channels(&sample.image, out_shape, |src, out| match mapping {
            None => crop_channel(src, out, out_shape, crop_start, 0.0),
            Some(map) => {
                let voxel = image_voxel(map.in_plane, self.image_nearest);
                resample(src, out, out_shape, &map, voxel)
            }
        })?;
        let pad = self.padding_value_seg;
        let seg = transform_channels(&sample.segmentation, out_shape, |src, out| match mapping {
            None => crop_channel(src, out, out_shape, crop_start, pad),
            Some(map) => {
                let voxel = seg_voxel(map.in_plane, pad, self.segmentation_nearest);
                resample(src, out, out_shape, &map, voxel)
            }
        })?;
        sample.image = image;
        sample.segmentation = seg;
        Ok(())
    }
}

/// A new `[c, out_shape]` array whose channels `f` fills from the input's channels.
fn transform_channels<T: Copy + Default + Send + Sync>(
    input: &Array4<T>,
    out_shape: [usize; 3],
    f: impl Fn(ArrayView3<T>, &mut [T]),
) -> Result<Array4<T>> {
    let c = input.shape()[0];
    let n = out_shape[0] * out_shape[1] * out_shape[2];
    let mut data = vec![T::default(); c * n];
    for (ch, out) in data.chunks_mut(n.max(1)).enumerate().take(c) {
        f(input.index_axis(Axis(0), ch), out);
    }
    Array4::from_shape_vec((c, out_shape[0], out_shape[1], out_shape[2]), data)
        .map_err(|e| Error::training(format!("SpatialTransform: {e}")))
}

/// Copy of the window starting at `start` (padding with `pad` outside the input).
fn crop_channel<T: Copy + Send + Sync>(
    src: ArrayView3<T>,
    out: &mut [T],
    out_shape: [usize; 3],
    start: [isize; 3],
    pad: T,
) {
    let src = src.as_standard_layout();
    let s = src.shape();
    let (sz, sy, sx) = (s[0] as isize, s[1] as isize, s[2] as isize);
    let Some(data) = src.as_slice() else { return };
    let px = out_shape[2];
    out.par_chunks_mut(px).enumerate().for_each(|(row, o)| {
        let oz = (row / out_shape[1]) as isize;
        let oy = (row % out_shape[1]) as isize;
        let iz = oz + start[0];
        let iy = oy + start[1];
        if iz < 0 || iz >= sz || iy < 0 || iy >= sy {
            o.fill(pad);
            return;
        }
        let base = ((iz * sy + iy) * sx) as usize;
        for (ox, v) in o.iter_mut().enumerate() {
            let ix = ox as isize + start[2];
            *v = if ix >= 0 && ix < sx {
                data[base + ix as usize]
            } else {
                pad
            };
        }
    });
}

/// The corner offsets `[dz, dy, dx]` of a linear interpolation with fractional parts `f`, and
/// their weights, z slowest; only `dz = 0` in-plane. Returns the number of corners written.
#[inline]
fn corner_weights(f: [f64; 3], in_plane: bool, out: &mut [([usize; 3], f64); 8]) -> usize {
    let nz = if in_plane { 1 } else { 2 };
    let mut n = 0;
    for dz in 0..nz {
        let wz = if in_plane {
            1.0
        } else if dz == 0 {
            1.0 - f[0]
        } else {
            f[0]
        };
        for dy in 0..2 {
            let wy = if dy == 0 { 1.0 - f[1] } else { f[1] };
            for dx in 0..2 {
                let wx = if dx == 0 { 1.0 - f[2] } else { f[2] };
                out[n] = ([dz, dy, dx], wz * wy * wx);
                n += 1;
            }
        }
    }
    n
}

/// Corner indices and weights of the linear interpolation at `p` (out-of-range corners get
/// index `None`). Returns the number of corners written.
#[inline]
fn corners(
    p: [f64; 3],
    shape: [isize; 3],
    in_plane: bool,
    out: &mut [(Option<usize>, f64); 8],
) -> usize {
    let fl: [f64; 3] = std::array::from_fn(|d| p[d].floor());
    let fr: [f64; 3] = std::array::from_fn(|d| p[d] - fl[d]);
    let i0: [isize; 3] = std::array::from_fn(|d| fl[d] as isize);
    let mut cw = [([0usize; 3], 0.0); 8];
    let n = corner_weights(fr, in_plane, &mut cw);
    for (o, &(d, w)) in out.iter_mut().zip(&cw[..n]) {
        let [z, y, x]: [isize; 3] = std::array::from_fn(|k| i0[k] + d[k] as isize);
        let inside = z >= 0 && z < shape[0] && y >= 0 && y < shape[1] && x >= 0 && x < shape[2];
        let idx = inside.then(|| ((z * shape[1] + y) * shape[2] + x) as usize);
        *o = (idx, w);
    }
    n
}

/// Index of the nearest voxel (`grid_sample` nearest: round half to even), if inside.
#[inline]
fn nearest(p: [f64; 3], shape: [isize; 3]) -> Option<usize> {
    let r: [isize; 3] = std::array::from_fn(|d| p[d].round_ties_even() as isize);
    if (0..3).all(|d| r[d] >= 0 && r[d] < shape[d]) {
        Some(((r[0] * shape[1] + r[1]) * shape[2] + r[2]) as usize)
    } else {
        None
    }
}

/// When every corner of the linear interpolation at `p` lies inside the input: the index of
/// the lowest corner and the fractional parts.
#[inline]
fn interior(p: [f64; 3], shape: [isize; 3], in_plane: bool) -> Option<(usize, [f64; 3])> {
    let fl = [p[0].floor(), p[1].floor(), p[2].floor()];
    let i = [fl[0] as isize, fl[1] as isize, fl[2] as isize];
    let zmax = if in_plane { shape[0] - 1 } else { shape[0] - 2 };
    if i[0] < 0 || i[0] > zmax || i[1] < 0 || i[1] > shape[1] - 2 || i[2] < 0 || i[2] > shape[2] - 2
    {
        return None;
    }
    let f = [p[0] - fl[0], p[1] - fl[1], p[2] - fl[2]];
    Some((((i[0] * shape[1] + i[1]) * shape[2] + i[2]) as usize, f))
}

/// Fills `out` (one channel of `out_shape`) in parallel over rows: each output voxel gets
/// `voxel(data, shape, p)` of the input channel `src` (`data` its values, `shape` its shape) at
/// the input coordinates `p` that `map` gives it.
fn resample<T: Copy + Send + Sync>(
    src: ArrayView3<T>,
    out: &mut [T],
    out_shape: [usize; 3],
    map: &Mapping,
    voxel: impl Fn(&[T], [isize; 3], [f64; 3]) -> T + Sync,
) {
    let src = src.as_standard_layout();
    let s = src.shape();
    let shape = [s[0] as isize, s[1] as isize, s[2] as isize];
    let Some(data) = src.as_slice() else { return };
    out.par_chunks_mut(out_shape[2])
        .enumerate()
        .for_each(|(row, o)| {
            let oz = (row / out_shape[1]) as f64;
            let oy = (row % out_shape[1]) as f64;
            for (ox, v) in o.iter_mut().enumerate() {
                *v = voxel(data, shape, map.at([oz, oy, ox as f64]));
            }
        });
}

/// An image channel's value at input coordinates `p` (the `voxel` of [`resample`]):
/// (bi/tri)linear (only in-plane when `in_plane`), or nearest with `nearest_mode`; 0 outside.
fn image_voxel(in_plane: bool, nearest_mode: bool) -> impl Fn(&[f32], [isize; 3], [f64; 3]) -> f32 {
    move |data, shape, p| {
        if nearest_mode {
            return nearest(p, shape).map_or(0.0, |i| data[i]);
        }
        if let Some((b, f)) = interior(p, shape, in_plane) {
            let sx = shape[2] as usize;
            let sy = sx * shape[1] as usize;
            let lerp2 = |b: usize| {
                let r0 = data[b] as f64 * (1.0 - f[2]) + data[b + 1] as f64 * f[2];
                let r1 = data[b + sx] as f64 * (1.0 - f[2]) + data[b + sx + 1] as f64 * f[2];
                r0 * (1.0 - f[1]) + r1 * f[1]
            };
            return if in_plane {
                lerp2(b) as f32
            } else {
                (lerp2(b) * (1.0 - f[0]) + lerp2(b + sy) * f[0]) as f32
            };
        }
        let mut cs = [(None, 0.0); 8];
        let n = corners(p, shape, in_plane, &mut cs);
        let mut acc = 0.0f64;
        for &(idx, w) in &cs[..n] {
            if let Some(i) = idx {
                acc += w * data[i] as f64;
            }
        }
        acc as f32
    }
}

/// Rounds to the nearest float16 value (ties to even), for the reference's float16 label scores.
#[inline]
fn f16_round(v: f32) -> f32 {
    let b = v.to_bits();
    let lsb = (b >> 13) & 1;
    f32::from_bits(b.wrapping_add(0x0FFF + lsb) & !0x1FFF)
}

/// Label-wise linear interpolation: per output voxel the label with the largest interpolated
/// indicator (scores scaled by 1000 and rounded to float16 as in the reference), ties settled
/// by the nearest neighbour when its label is among the tied ones, else the lowest label.
/// Outside the input counts as the padding label. Only in-plane when `in_plane`; nearest
/// neighbour with `nearest_mode`. The `voxel` of [`resample`] for a label map.
fn seg_voxel(
    in_plane: bool,
    pad: i16,
    nearest_mode: bool,
) -> impl Fn(&[i16], [isize; 3], [f64; 3]) -> i16 {
    move |data, shape, p| {
        let nn = || nearest(p, shape).map_or(pad, |i| data[i]);
        if nearest_mode {
            return nn();
        }
        let mut lw = [(0i16, 0f64); 8];
        let n = if let Some((b, f)) = interior(p, shape, in_plane) {
            match interior_labels(data, shape, b, f, in_plane, &mut lw) {
                Some(n) => n,
                None => return data[b],
            }
        } else {
            let mut cs = [(None, 0.0); 8];
            let n = corners(p, shape, in_plane, &mut cs);
            for (o, &(idx, w)) in lw.iter_mut().zip(&cs[..n]) {
                *o = (idx.map_or(pad, |i| data[i]), w);
            }
            n
        };
        vote(&lw[..n], pad, nn)
    }
}

/// The labels and weights of the interpolation corners from `b` (the lowest corner) with
/// fractional parts `f`, all inside the input, written to `lw`; returns their number, or
/// `None` when every corner has the label at `b`.
fn interior_labels(
    data: &[i16],
    shape: [isize; 3],
    b: usize,
    f: [f64; 3],
    in_plane: bool,
    lw: &mut [(i16, f64); 8],
) -> Option<usize> {
    let sx = shape[2] as usize;
    let sy = sx * shape[1] as usize;
    let l = data[b];
    let same2 =
        |b: usize| data[b] == l && data[b + 1] == l && data[b + sx] == l && data[b + sx + 1] == l;
    if same2(b) && (in_plane || same2(b + sy)) {
        return None;
    }
    let mut cw = [([0usize; 3], 0.0); 8];
    let n = corner_weights(f, in_plane, &mut cw);
    for (o, &([dz, dy, dx], w)) in lw.iter_mut().zip(&cw[..n]) {
        *o = (data[b + dz * sy + dy * sx + dx], w);
    }
    Some(n)
}

/// The label with the largest summed weight among the corners `lw` (float16 scores, ties to
/// the nearest neighbour's label `nn()` when it is among the tied ones, else the lowest).
fn vote(lw: &[(i16, f64)], pad: i16, nn: impl FnOnce() -> i16) -> i16 {
    let mut votes = CornerVotes::default();
    for &(l, w) in lw {
        votes.add(l, w);
    }
    let (labels, scores) = votes.parts();
    let k = labels.len();
    let mut best = f32::NEG_INFINITY;
    let mut best_label = pad;
    let mut tied = false;
    let mut q = [0f32; 8];
    for j in 0..k {
        q[j] = f16_round((scores[j] * 1000.0) as f32);
        if q[j] > best || (q[j] == best && labels[j] < best_label) {
            tied = q[j] == best;
            best = q[j];
            best_label = labels[j];
        } else if q[j] == best {
            tied = true;
        }
    }
    if !tied {
        return best_label;
    }
    // a tie: the nearest neighbour settles it if its label is among the tied ones
    let nn = nn();
    let nn_score = (0..k)
        .find(|&j| labels[j] == nn)
        .map_or(f32::NEG_INFINITY, |j| q[j]);
    if nn_score == best { nn } else { best_label }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_rounding() {
        assert_eq!(f16_round(600.0), 600.0);
        assert_eq!(f16_round(600.2), 600.0);
        assert_eq!(f16_round(600.3), 600.5);
        assert_eq!(f16_round(500.2), 500.25);
        assert_eq!(f16_round(1.0), 1.0);
    }

    #[test]
    fn affine_identity() {
        let a = affine_3d([0.0; 3], [1.0; 3]);
        for (i, row) in a.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert_eq!(*v, if i == j { 1.0 } else { 0.0 });
            }
        }
    }
}
