//! The planner's VRAM proxy (nnU-Net's `compute_conv_feature_map_size`): the number of feature map
//! elements a U-Net produces for one patch, summed over encoder, decoder and segmentation layer.

use crate::NetworkFamily;

/// A U-Net as far as the estimate needs it.
pub(crate) struct NetworkShape<'a> {
    /// Which encoder (plain or residual).
    pub family: NetworkFamily,
    /// Features per stage.
    pub features: &'a [i64],
    /// Stride of every stage.
    pub strides: &'a [Vec<i64>],
    /// Convolutions (plain) or residual blocks (ResEnc) per encoder stage.
    pub blocks_encoder: &'a [i64],
    /// Convolutions per decoder stage.
    pub blocks_decoder: &'a [i64],
    /// Number of output classes (`len(dataset.json["labels"])`).
    pub n_classes: i64,
}

/// Number of feature map elements of `net` for `patch`. Sizes use floor division by the strides;
/// input channels do not count; the decoder is built without deep supervision.
pub(crate) fn feature_map_elements(net: &NetworkShape<'_>, patch: &[i64]) -> i64 {
    let mut sizes: Vec<Vec<i64>> = Vec::with_capacity(net.strides.len());
    let mut size = patch.to_vec();
    for stride in net.strides {
        size = size.iter().zip(stride).map(|(s, st)| s / st).collect();
        sizes.push(size.clone());
    }
    let voxels = |s: &[i64]| s.iter().product::<i64>();
    let n = net.features.len().min(sizes.len());
    let mut total = 0i64;

    let stages = || {
        net.features
            .iter()
            .zip(&sizes)
            .zip(net.blocks_encoder)
            .take(n)
    };
    match net.family {
        NetworkFamily::PlainConvUNet => {
            for ((&f, size), &blocks) in stages() {
                total += blocks * f * voxels(size);
            }
        }
        NetworkFamily::ResidualEncoderUNet => {
            // stem
            total += net.features[0] * voxels(patch);
            let mut prev_channels = net.features[0];
            let mut prev_size: &[i64] = patch;
            for ((&f, size), &blocks) in stages() {
                let v = voxels(size);
                total += 2 * f * v;
                if prev_channels != f || prev_size != size.as_slice() {
                    total += f * v; // 1x1 projection on the skip path
                }
                total += (blocks - 1) * 2 * f * v;
                prev_channels = f;
                prev_size = size;
            }
        }
    }

    // decoder: per level a transposed conv output plus its convolutions
    for (j, &blocks) in net
        .blocks_decoder
        .iter()
        .take(n.saturating_sub(1))
        .enumerate()
    {
        let level = n - 2 - j;
        let fv = net.features[level] * voxels(&sizes[level]);
        total += blocks * fv + fv;
    }
    total + net.n_classes * voxels(&sizes[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feature-map elements of a two-stage 32/64-feature network of `family` on an 8×8 patch.
    fn two_stage_count(
        family: NetworkFamily,
        blocks_encoder: &[i64],
        blocks_decoder: &[i64],
        n_classes: i64,
    ) -> i64 {
        let strides = vec![vec![1, 1], vec![2, 2]];
        let net = NetworkShape {
            family,
            features: &[32, 64],
            strides: &strides,
            blocks_encoder,
            blocks_decoder,
            n_classes,
        };
        feature_map_elements(&net, &[8, 8])
    }

    #[test]
    fn plain_two_stage_count() {
        // encoder 2*32*64 + 2*64*16, decoder 2*32*64 + 32*64, seg 3*64
        let expected = 2 * 32 * 64 + 2 * 64 * 16 + 2 * 32 * 64 + 32 * 64 + 3 * 64;
        let count = two_stage_count(NetworkFamily::PlainConvUNet, &[2, 2], &[2], 3);
        assert_eq!(count, expected);
    }

    #[test]
    fn resenc_adds_stem_and_projection() {
        let stem = 32 * 64;
        let stage0 = 2 * 32 * 64;
        let stage1 = 2 * 64 * 16 + 64 * 16 + 2 * 2 * 64 * 16;
        let decoder = 32 * 64 + 32 * 64;
        let count = two_stage_count(NetworkFamily::ResidualEncoderUNet, &[1, 3], &[1], 2);
        assert_eq!(count, stem + stage0 + stage1 + decoder + 2 * 64);
    }
}
