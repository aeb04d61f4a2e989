//! Target spacing (with nnU-Net's anisotropy rule), the axis transpose, and the shape of a case
//! after resampling. All in untransposed numpy axis order unless stated otherwise.

use crate::numeric::{argmax, per_axis, percentile};

/// nnU-Net's `ANISO_THRESHOLD`.
const ANISO_THRESHOLD: f64 = 3.0;

/// The fullres target spacing (`determine_fullres_target_spacing`).
///
/// The per-axis median spacing, except for anisotropic datasets: if the coarsest axis' median
/// spacing is more than 3x the others' and its median size less than a third of the others', that
/// axis gets the 10th percentile of its spacings instead (but at least the others' spacing plus
/// 1e-5). `spacings` and `shapes` must not be empty.
pub(crate) fn fullres_target_spacing(spacings: &[[f64; 3]], shapes: &[[f64; 3]]) -> [f64; 3] {
    let mut target = per_axis(spacings, |c| percentile(c, 50.0));
    let target_size = per_axis(shapes, |c| percentile(c, 50.0));
    let worst = argmax(&target);
    let others: Vec<usize> = (0..3).filter(|&i| i != worst).collect();
    let max_other_spacing = others
        .iter()
        .map(|&i| target[i])
        .fold(f64::NEG_INFINITY, f64::max);
    let min_other_size = others
        .iter()
        .map(|&i| target_size[i])
        .fold(f64::INFINITY, f64::min);
    let aniso_spacing = target[worst] > ANISO_THRESHOLD * max_other_spacing;
    let aniso_voxels = target_size[worst] * ANISO_THRESHOLD < min_other_size;
    if aniso_spacing && aniso_voxels {
        let column: Vec<f64> = spacings.iter().map(|s| s[worst]).collect();
        let mut t = percentile(&column, 10.0);
        if t < max_other_spacing {
            t = max_other_spacing.max(t) + 1e-5;
        }
        target[worst] = t;
    }
    target
}

/// `(transpose_forward, transpose_backward)`: the coarsest axis (first maximum) goes first, the
/// others follow in ascending order.
pub(crate) fn transpose(target_spacing: &[f64; 3]) -> ([usize; 3], [usize; 3]) {
    let first = argmax(target_spacing);
    let mut forward = [first, 0, 0];
    let mut k = 1;
    for axis in 0..3 {
        if axis != first {
            forward[k] = axis;
            k += 1;
        }
    }
    let mut backward = [0; 3];
    for (position, &axis) in forward.iter().enumerate() {
        backward[axis] = position;
    }
    (forward, backward)
}

/// `compute_new_shape`: `round(old_spacing / new_spacing * old_shape)` per axis (half to even).
pub(crate) fn resampled_shape(shape: &[f64; 3], spacing: &[f64; 3], target: &[f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for i in 0..3 {
        out[i] = (spacing[i] / target[i] * shape[i]).round_ties_even();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spacings `[z, in_plane, in_plane]`, one per `z`.
    fn z_spacings(zs: &[f64], in_plane: f64) -> Vec<[f64; 3]> {
        zs.iter().map(|&z| [z, in_plane, in_plane]).collect()
    }

    #[test]
    fn median_spacing_for_isotropic_data() {
        let spacings = z_spacings(&[1.0, 1.0, 1.25, 1.0], 1.0);
        let shapes = [[48.0, 60.0, 64.0]; 4];
        assert_eq!(fullres_target_spacing(&spacings, &shapes), [1.0, 1.0, 1.0]);
    }

    #[test]
    fn anisotropic_axis_takes_tenth_percentile() {
        // fixture 903: z spacings 1.5 / 5 / 5 with 46 slices of 384^2
        let spacings = z_spacings(&[1.5, 5.0, 5.0], 0.75);
        let shapes = [
            [46.0, 384.0, 384.0],
            [46.0, 400.0, 400.0],
            [46.0, 368.0, 368.0],
        ];
        let t = fullres_target_spacing(&spacings, &shapes);
        assert!((t[0] - 2.2).abs() < 1e-12);
        assert_eq!(&t[1..], &[0.75, 0.75]);
    }

    #[test]
    fn anisotropic_spacing_without_few_slices_keeps_median() {
        let spacings = [[5.0, 1.0, 1.0]; 3];
        let shapes = [[100.0, 120.0, 120.0]; 3];
        assert_eq!(fullres_target_spacing(&spacings, &shapes), [5.0, 1.0, 1.0]);
    }

    #[test]
    fn tenth_percentile_is_kept_above_other_axes() {
        // 10th percentile of [0.5, 0.5, 6, 6, 6] is 0.5, below the in-plane 1.0
        let spacings = z_spacings(&[0.5, 0.5, 6.0, 6.0, 6.0], 1.0);
        let shapes = [[10.0, 200.0, 200.0]; 5];
        let t = fullres_target_spacing(&spacings, &shapes);
        assert_eq!(t[0], 1.0 + 1e-5);
    }

    #[test]
    fn coarse_last_axis_goes_first() {
        assert_eq!(transpose(&[0.9, 0.9, 2.2]), ([2, 0, 1], [1, 2, 0]));
        assert_eq!(transpose(&[1.0, 1.0, 1.0]), ([0, 1, 2], [0, 1, 2]));
        assert_eq!(transpose(&[1.0, 3.0, 1.0]), ([1, 0, 2], [1, 0, 2]));
    }

    #[test]
    fn resampled_shape_rounds_half_to_even() {
        assert_eq!(
            resampled_shape(&[69.0, 10.0, 11.0], &[1.0, 1.0, 1.0], &[2.0, 1.0, 1.0]),
            [34.0, 10.0, 11.0]
        );
    }
}
