//! Network topology from spacing and patch size (nnU-Net's `get_pool_and_conv_props`): how often
//! each axis is pooled, the strides and kernel sizes per stage, and the patch size padded to a
//! multiple of the total downsampling.

/// The topology of a U-Net for one patch size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Topology {
    /// Number of poolings per axis.
    pub pools_per_axis: Vec<u32>,
    /// Stride of every stage (`pool_op_kernel_sizes`); the first stage has stride 1 everywhere.
    pub strides: Vec<Vec<i64>>,
    /// Convolution kernel size of every stage; the bottleneck is always 3.
    pub kernel_sizes: Vec<Vec<i64>>,
    /// The patch size rounded up to a multiple of [`Topology::divisible_by`].
    pub patch_size: Vec<i64>,
    /// `2 ** pools_per_axis`: what every axis of the patch must be divisible by.
    pub divisible_by: Vec<i64>,
}

impl Topology {
    /// Number of stages (`len(strides)`, the number of poolings plus one).
    pub(crate) fn n_stages(&self) -> usize {
        self.strides.len()
    }
}

/// nnU-Net's `get_pool_and_conv_props`.
///
/// Axes are pooled together while their feature map edge stays at least `2 * min_feature_map_size`
/// and their spacing is within a factor 2 of the finest poolable spacing; a single remaining axis
/// needs `3 * min_feature_map_size`. A kernel becomes 3 (and stays 3) once its axis' spacing is
/// within a factor 2 of the finest spacing, judged before that stage's pooling. The patch (which may
/// be fractional, e.g. a clipped median of 34.5) is padded up to the next multiple of the
/// downsampling factor.
pub(crate) fn pool_and_conv_props(
    spacing: &[f64],
    patch_size: &[f64],
    min_feature_map_size: f64,
    max_numpool: u32,
) -> Topology {
    let dim = spacing.len();
    let mut current_spacing = spacing.to_vec();
    let mut current_size = patch_size.to_vec();
    let mut strides = vec![vec![1i64; dim]];
    let mut kernel_sizes = Vec::new();
    let mut pools_per_axis = vec![0u32; dim];
    let mut kernel = vec![1i64; dim];

    loop {
        let poolable: Vec<usize> = (0..dim)
            .filter(|&i| current_size[i] >= 2.0 * min_feature_map_size)
            .collect();
        if poolable.is_empty() {
            break;
        }
        let min_spacing = poolable
            .iter()
            .map(|&i| current_spacing[i])
            .fold(f64::INFINITY, f64::min);
        let valid: Vec<usize> = poolable
            .into_iter()
            .filter(|&i| current_spacing[i] / min_spacing < 2.0)
            .filter(|&i| pools_per_axis[i] < max_numpool)
            .collect();
        if valid.len() == 1 && current_size[valid[0]] < 3.0 * min_feature_map_size {
            break;
        }
        if valid.is_empty() {
            break;
        }
        let min_all = current_spacing
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        for d in 0..dim {
            if kernel[d] != 3 && current_spacing[d] / min_all < 2.0 {
                kernel[d] = 3;
            }
        }
        let mut stride = vec![1i64; dim];
        for &v in &valid {
            stride[v] = 2;
            pools_per_axis[v] += 1;
            current_spacing[v] *= 2.0;
            current_size[v] = (current_size[v] / 2.0).ceil();
        }
        strides.push(stride);
        kernel_sizes.push(kernel.clone());
    }

    let divisible_by: Vec<i64> = pools_per_axis.iter().map(|&n| 1i64 << n.min(62)).collect();
    let patch_size = patch_size
        .iter()
        .zip(&divisible_by)
        .map(|(&p, &d)| pad_to_multiple(p, d as f64) as i64)
        .collect();
    kernel_sizes.push(vec![3; dim]);
    Topology {
        pools_per_axis,
        strides,
        kernel_sizes,
        patch_size,
        divisible_by,
    }
}

/// nnU-Net's `pad_shape` for one axis: the next multiple of `d` at or above `p`.
fn pad_to_multiple(p: f64, d: f64) -> f64 {
    let rem = p % d;
    let padded = p + d - rem;
    if rem == 0.0 { padded - d } else { padded }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotropic_3d_pools_every_axis() {
        let t = pool_and_conv_props(&[1.0, 1.0, 1.0], &[128.0, 128.0, 112.0], 4.0, 999_999);
        assert_eq!(t.pools_per_axis, vec![5, 5, 4]);
        assert_eq!(t.n_stages(), 6);
        assert_eq!(t.strides[0], vec![1, 1, 1]);
        assert_eq!(t.strides[1], vec![2, 2, 2]);
        assert_eq!(t.strides[5], vec![2, 2, 1]);
        assert_eq!(t.patch_size, vec![128, 128, 112]);
        assert_eq!(t.divisible_by, vec![32, 32, 16]);
        assert!(t.kernel_sizes.iter().all(|k| k == &vec![3, 3, 3]));
        // a single axis left (8 < 3 * 4) is not pooled alone
        let t = pool_and_conv_props(&[1.0, 1.0, 1.0], &[56.0, 56.0, 64.0], 4.0, 999_999);
        assert_eq!(t.pools_per_axis, vec![3, 3, 3]);
    }

    #[test]
    fn anisotropic_first_kernel_is_flat() {
        // z spacing >= 2x in-plane: z is neither pooled nor convolved at first.
        let t = pool_and_conv_props(&[2.2, 0.9, 0.9], &[28.0, 32.0, 40.0], 4.0, 999_999);
        assert_eq!(t.kernel_sizes[0], vec![1, 3, 3]);
        assert_eq!(t.strides[1], vec![1, 2, 2]);
        assert_eq!(t.pools_per_axis, vec![2, 3, 3]);
        assert_eq!(t.divisible_by, vec![4, 8, 8]);
        assert_eq!(t.kernel_sizes.last(), Some(&vec![3, 3, 3]));
    }

    #[test]
    fn fractional_patch_is_padded_up() {
        // 34.5 with 3 pools becomes 40, a multiple that already fits stays as it is.
        assert_eq!(pad_to_multiple(34.5, 8.0), 40.0);
        assert_eq!(pad_to_multiple(48.0, 16.0), 48.0);
        assert_eq!(pad_to_multiple(49.0, 16.0), 64.0);
    }

    #[test]
    fn tiny_patch_is_not_pooled() {
        let t = pool_and_conv_props(&[1.0, 1.0], &[7.0, 7.0], 4.0, 999_999);
        assert_eq!(t.n_stages(), 1);
        assert_eq!(t.kernel_sizes, vec![vec![3, 3]]);
        assert_eq!(t.patch_size, vec![7, 7]);
    }
}
