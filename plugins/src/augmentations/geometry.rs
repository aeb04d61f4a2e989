//! nnU-Net's `configure_rotation_dummyDA_mirroring_and_inital_patch_size` and
//! batchgenerators' `get_patch_size`.

use nnunet_api::training::{AugmentationSettings, PipelineKind};
use nnunet_core::{Error, Result};

/// Anisotropy threshold for the pseudo-2D scheme (`ANISO_THRESHOLD`).
pub const ANISO_THRESHOLD: f64 = 3.0;

/// Everything the augmentation geometry of a configuration depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct DaGeometry {
    /// Rotation range in radians, symmetric: `(-a, a)`.
    pub rotation: (f64, f64),
    /// Whether 3D patches are augmented slice-wise in 2D (pseudo-2D).
    pub do_dummy_2d: bool,
    /// Mirror axes of training, in patch dimensions (2D: 0 = y, 1 = x; 3D: 0 = z, 1 = y, 2 = x).
    pub mirror_axes: Vec<usize>,
    /// Mirror axes allowed for test-time augmentation (same numbering).
    pub inference_mirror_axes: Vec<usize>,
    /// Patch size the training loader samples before the spatial transform crops it to the
    /// final patch size.
    pub initial_patch_size: Vec<usize>,
}

fn deg(d: f64) -> f64 {
    d / 360.0 * 2.0 * std::f64::consts::PI
}

/// The rotation range, dummy-2D flag, mirror axes and initial patch size for a final
/// `patch_size` (2 or 3 entries) under `settings`, as nnU-Net's trainer (and its `NoDA`,
/// `NoMirroring`, `onlyMirror01`, `noDummy2DDA` and `DA5` variants) computes them.
pub fn configure_rotation_dummy_da_mirroring_and_initial_patch_size(
    patch_size: &[usize],
    settings: &AugmentationSettings,
) -> Result<DaGeometry> {
    let dim = patch_size.len();
    if !(dim == 2 || dim == 3) || patch_size.contains(&0) {
        return Err(Error::training(format!(
            "the patch size must have 2 or 3 non-zero entries, got {patch_size:?}"
        )));
    }
    let max = *patch_size.iter().max().unwrap_or(&1) as f64;
    let min = *patch_size.iter().min().unwrap_or(&1) as f64;
    let (rotation, do_dummy_2d) = if dim == 2 {
        let a = if max / min > 1.5 {
            deg(15.0)
        } else {
            deg(180.0)
        };
        ((-a, a), false)
    } else {
        let dummy = settings.allow_dummy_2d && max / patch_size[0] as f64 > ANISO_THRESHOLD;
        let a = if dummy { deg(180.0) } else { deg(30.0) };
        ((-a, a), dummy)
    };
    let mirror_axes = settings.mirror_axes.axes(dim);
    let min_scale = match settings.pipeline {
        PipelineKind::DA5 => 0.7,
        _ => 0.85,
    };
    let initial_patch_size = match settings.pipeline {
        PipelineKind::None => patch_size.to_vec(),
        _ => {
            let mut ips = get_patch_size(patch_size, rotation, min_scale);
            if do_dummy_2d {
                ips[0] = patch_size[0];
            }
            ips
        }
    };
    let mirror_axes = if settings.pipeline == PipelineKind::None {
        Vec::new()
    } else {
        mirror_axes
    };
    Ok(DaGeometry {
        rotation,
        do_dummy_2d,
        inference_mirror_axes: mirror_axes.clone(),
        mirror_axes,
        initial_patch_size,
    })
}

/// batchgenerators' `get_patch_size(final_patch_size, rot, rot, rot, (min_scale, ...))`: the
/// patch that still covers `patch_size` after rotating about every axis by up to the rotation
/// range (capped at 90°) and scaling by `min_scale`.
pub fn get_patch_size(patch_size: &[usize], rotation: (f64, f64), min_scale: f64) -> Vec<usize> {
    let rot = rotation.0.abs().max(rotation.1.abs()).min(deg(90.0));
    let coords: Vec<f64> = patch_size.iter().map(|&p| p as f64).collect();
    let mut shape = coords.clone();
    let (c, s) = (rot.cos(), rot.sin());
    let mut take = |m: [[f64; 3]; 3]| {
        // row vector times matrix
        for (j, out) in shape.iter_mut().enumerate() {
            let v: f64 = (0..3).map(|i| coords[i] * m[i][j]).sum();
            *out = out.max(v.abs());
        }
    };
    if coords.len() == 3 {
        take([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]);
        take([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]);
        take([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]);
    } else {
        let m = [[c, -s], [s, c]];
        for j in 0..2 {
            let v: f64 = (0..2).map(|i| coords[i] * m[i][j]).sum();
            shape[j] = shape[j].max(v.abs());
        }
    }
    shape
        .iter()
        .map(|&v| (v / min_scale).trunc() as usize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnunet_api::training::MirrorAxes;

    #[test]
    fn verified_examples() {
        let base = AugmentationSettings::default();
        let da5 = AugmentationSettings {
            pipeline: PipelineKind::DA5,
            ..Default::default()
        };
        type Case<'a> = (&'a [usize], bool, &'a [usize], &'a [usize]);
        let cases: [Case; 6] = [
            (&[128, 128, 128], false, &[205, 205, 205], &[249, 249, 249]),
            (&[64, 160, 192], false, &[159, 275, 233], &[193, 335, 283]),
            (&[20, 256, 256], true, &[20, 301, 301], &[20, 365, 365]),
            (&[40, 192, 160], true, &[40, 225, 225], &[40, 274, 274]),
            (&[512, 512], false, &[602, 602], &[731, 731]),
            (&[256, 128], false, &[329, 150], &[400, 182]),
        ];
        for (ps, dummy, initial, initial_da5) in cases {
            let g =
                configure_rotation_dummy_da_mirroring_and_initial_patch_size(ps, &base).unwrap();
            assert_eq!(g.do_dummy_2d, dummy, "{ps:?}");
            assert_eq!(g.initial_patch_size, initial, "{ps:?}");
            assert_eq!(g.mirror_axes, (0..ps.len()).collect::<Vec<_>>());
            let g = configure_rotation_dummy_da_mirroring_and_initial_patch_size(ps, &da5).unwrap();
            assert_eq!(g.initial_patch_size, initial_da5, "DA5 {ps:?}");
        }
    }

    #[test]
    fn rotation_rules_and_variants() {
        let base = AugmentationSettings::default();
        let g = configure_rotation_dummy_da_mirroring_and_initial_patch_size(&[256, 128], &base)
            .unwrap();
        assert!((g.rotation.1 - deg(15.0)).abs() < 1e-12);
        let g =
            configure_rotation_dummy_da_mirroring_and_initial_patch_size(&[20, 256, 256], &base)
                .unwrap();
        assert!((g.rotation.1 - deg(180.0)).abs() < 1e-12);
        let no_dummy = AugmentationSettings {
            allow_dummy_2d: false,
            ..Default::default()
        };
        let g = configure_rotation_dummy_da_mirroring_and_initial_patch_size(
            &[20, 256, 256],
            &no_dummy,
        )
        .unwrap();
        assert!(!g.do_dummy_2d);
        assert!((g.rotation.1 - deg(30.0)).abs() < 1e-12);
        let noda = AugmentationSettings {
            pipeline: PipelineKind::None,
            ..Default::default()
        };
        let g =
            configure_rotation_dummy_da_mirroring_and_initial_patch_size(&[64, 160, 192], &noda)
                .unwrap();
        assert_eq!(g.initial_patch_size, vec![64, 160, 192]);
        assert!(g.mirror_axes.is_empty() && g.inference_mirror_axes.is_empty());
        let only01 = AugmentationSettings {
            mirror_axes: MirrorAxes::Only {
                axes_2d: vec![0],
                axes_3d: vec![0, 1],
            },
            ..Default::default()
        };
        let g =
            configure_rotation_dummy_da_mirroring_and_initial_patch_size(&[64, 160, 192], &only01)
                .unwrap();
        assert_eq!(g.mirror_axes, vec![0, 1]);
        assert!(configure_rotation_dummy_da_mirroring_and_initial_patch_size(&[4], &base).is_err());
    }
}
