//! nnU-Net's augmentation transforms and pipelines: identities, label integrity, probabilities,
//! reproducibility.

// Tests report what they measured.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use ndarray::{Array4, Axis};
use nnunet_core::augmentation::{AugmentationContext, Sample};
use nnunet_core::{Augmentation, Registries};
use nnunet_plugins::augmentations::cascade::ChannelSelection;
use nnunet_plugins::augmentations::*;
use nnunet_training::{AugmentationSettings, PipelineKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A random sample: smooth-ish image channels and a blocky label map with labels `0..n_labels`
/// and -1 around a border (outside the nonzero region).
fn random_sample(
    seed: u64,
    c: usize,
    shape: [usize; 3],
    n_labels: i16,
    seg_channels: usize,
) -> Sample {
    random_sample_blocks(seed, c, shape, n_labels, seg_channels, 4)
}

/// [`random_sample`] with label blocks of `block` voxels per side.
fn random_sample_blocks(
    seed: u64,
    c: usize,
    shape: [usize; 3],
    n_labels: i16,
    seg_channels: usize,
    block: usize,
) -> Sample {
    let mut rng = StdRng::seed_from_u64(seed);
    let image = Array4::from_shape_fn((c, shape[0], shape[1], shape[2]), |_| {
        rng.random::<f32>() * 4.0 - 1.0
    });
    let nb = [
        shape[0] / block + 1,
        shape[1] / block + 1,
        shape[2] / block + 1,
    ];
    let blocks: Vec<i16> = (0..seg_channels * nb[0] * nb[1] * nb[2])
        .map(|_| rng.random_range(0..n_labels))
        .collect();
    let segmentation = Array4::from_shape_fn(
        (seg_channels, shape[0], shape[1], shape[2]),
        |(s, z, y, x)| {
            if x < 2 && y < 3 {
                -1
            } else {
                blocks[((s * nb[0] + z / block) * nb[1] + y / block) * nb[2] + x / block]
            }
        },
    );
    Sample {
        image,
        segmentation,
    }
}

/// The context of a single transform: all axes mirrored (y and x in 2D), no ignore label.
fn ctx(is_2d: bool) -> AugmentationContext {
    AugmentationContext {
        is_2d,
        mirror_axes: if is_2d { vec![1, 2] } else { vec![0, 1, 2] },
        ignore_label: None,
    }
}

/// Every label of `sample` is one of `allowed`.
fn assert_labels(sample: &Sample, allowed: &[i16], what: &str) {
    for &v in sample.segmentation.iter() {
        assert!(allowed.contains(&v), "{what}: label {v} not in {allowed:?}");
    }
}

/// Channels `channels` of `image` hold only 0 and 1 (one-hot encodings).
fn assert_binary_channels(image: &Array4<f32>, channels: std::ops::Range<usize>) {
    for c in channels {
        assert!(
            image
                .index_axis(Axis(0), c)
                .iter()
                .all(|&v| v == 0.0 || v == 1.0)
        );
    }
}

/// `$ty::da5($arg)` (a DA5 transform's defaults) with the given fields replaced.
macro_rules! da5 {
    ($ty:ident($($arg:expr)?) { $($field:ident $(: $value:expr)?),* $(,)? }) => {
        $ty {
            $($field $(: $value)?,)*
            ..$ty::da5($($arg)?)
        }
    };
}

/// The training pipeline of `settings` in `pctx`, from the built-in registries.
fn build_pipeline(
    settings: &AugmentationSettings,
    pctx: &PipelineContext,
) -> Vec<Box<dyn Augmentation>> {
    let registries = Registries::builtin().unwrap();
    training_pipeline(settings, pctx, &registries).unwrap()
}

/// Applies every transform of `pipeline` to `sample`, with one generator seeded by `seed`.
fn run_pipeline(
    pipeline: &[Box<dyn Augmentation>],
    sample: &mut Sample,
    context: &AugmentationContext,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    for t in pipeline {
        t.apply(sample, context, &mut rng).unwrap();
    }
}

/// `run` gives the same sample twice for each of the first `seeds` seeds, and a different image
/// for another seed at least once.
fn assert_reproducible(run: impl Fn(u64) -> Sample, seeds: u64) {
    for seed in 0..seeds {
        let (a, b) = (run(seed), run(seed));
        assert_eq!(a.image, b.image);
        assert_eq!(a.segmentation, b.segmentation);
    }
    assert!((0..seeds).any(|seed| run(seed).image != run(seed + 100).image));
}

#[test]
fn spatial_identity_parameters_are_exact_identity() {
    for (is_2d, shape) in [(false, [12, 14, 10]), (true, [1, 20, 18])] {
        let sample = random_sample(1, 2, shape, 4, 2);
        let context = ctx(is_2d);
        let mut rng = StdRng::seed_from_u64(0);
        // crop path
        let mut s = sample.clone();
        SpatialTransform::crop_only(None)
            .apply(&mut s, &context, &mut rng)
            .unwrap();
        assert_eq!(s.image, sample.image);
        assert_eq!(s.segmentation, sample.segmentation);
        // resampling path with rotation 0 and scale 1
        let mut t = SpatialTransform::nnunet_default(Some(shape), false);
        t.p_rotation = 1.0;
        t.rotation = RandomScalar::Fixed(0.0);
        t.p_scaling = 1.0;
        t.scaling = RandomScalar::Fixed(1.0);
        for nearest in [false, true] {
            t.segmentation_nearest = nearest;
            t.image_nearest = nearest;
            let mut s = sample.clone();
            t.apply(&mut s, &context, &mut rng).unwrap();
            assert_eq!(s.image, sample.image, "2d {is_2d} nearest {nearest}");
            assert_eq!(
                s.segmentation, sample.segmentation,
                "2d {is_2d} nearest {nearest}"
            );
        }
    }
}

#[test]
fn spatial_centre_crop_and_padding() {
    let sample = random_sample(2, 1, [10, 12, 14], 3, 1);
    let mut s = sample.clone();
    let mut rng = StdRng::seed_from_u64(0);
    SpatialTransform::crop_only(Some([6, 8, 10]))
        .apply(&mut s, &ctx(false), &mut rng)
        .unwrap();
    assert_eq!(s.image.shape(), &[1, 6, 8, 10]);
    // centre floor(S/2) - P//2 = 2, 2, 2
    assert_eq!(s.image[[0, 0, 0, 0]], sample.image[[0, 2, 2, 2]]);
    assert_eq!(
        s.segmentation[[0, 5, 7, 9]],
        sample.segmentation[[0, 7, 9, 11]]
    );
    // larger output: padded with 0 (image) and -1 (segmentation)
    let mut s = sample.clone();
    SpatialTransform::crop_only(Some([12, 12, 14]))
        .apply(&mut s, &ctx(false), &mut rng)
        .unwrap();
    assert_eq!(s.image[[0, 0, 5, 5]], 0.0);
    assert_eq!(s.segmentation[[0, 0, 5, 5]], -1);
    assert_eq!(s.image[[0, 1, 5, 5]], sample.image[[0, 0, 5, 5]]);
}

#[test]
fn spatial_rotation_by_90_degrees_permutes_in_plane() {
    // 2D, square patch, rotation of exactly 90°: a pure permutation of the pixels.
    let sample = random_sample(3, 1, [1, 8, 8], 3, 1);
    let mut t = SpatialTransform::nnunet_default(Some([1, 8, 8]), false);
    t.p_rotation = 1.0;
    t.rotation = RandomScalar::Fixed(std::f64::consts::FRAC_PI_2);
    t.p_scaling = 0.0;
    let mut s = sample.clone();
    t.apply(&mut s, &ctx(true), &mut StdRng::seed_from_u64(0))
        .unwrap();
    let mut a: Vec<i64> = sample
        .image
        .iter()
        .map(|v| (*v * 1e5).round() as i64)
        .collect();
    let mut b: Vec<i64> = s.image.iter().map(|v| (*v * 1e5).round() as i64).collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    let mut a: Vec<i16> = sample.segmentation.iter().copied().collect();
    let mut b: Vec<i16> = s.segmentation.iter().copied().collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
}

#[test]
fn intensity_identity_parameters_leave_data_unchanged() {
    let sample = random_sample(4, 2, [6, 10, 12], 3, 1);
    let context = ctx(false);
    let mut noise = GaussianNoiseTransform::nnunet_default();
    noise.p = 1.0;
    noise.noise_variance = RandomScalar::Fixed(0.0);
    let mut bright = MultiplicativeBrightnessTransform::nnunet_default();
    bright.p = 1.0;
    bright.multiplier_range = RandomScalar::Fixed(1.0);
    let mut contrast = ContrastTransform::nnunet_default();
    contrast.p = 1.0;
    contrast.contrast_range = RandomScalar::Fixed(1.0);
    let mut lowres = SimulateLowResolutionTransform::nnunet_default(false);
    lowres.p = 1.0;
    lowres.p_per_channel = 1.0;
    lowres.scale = RandomScalar::Fixed(1.0);
    let mut blur = GaussianBlurTransform::nnunet_default();
    blur.p = 1.0;
    blur.p_per_channel = 1.0;
    blur.blur_sigma = RandomScalar::Fixed(0.0);
    let exact: Vec<Box<dyn Augmentation>> = vec![
        Box::new(noise),
        Box::new(bright),
        Box::new(lowres),
        Box::new(blur),
    ];
    for t in exact {
        let mut s = sample.clone();
        t.apply(&mut s, &context, &mut StdRng::seed_from_u64(9))
            .unwrap();
        assert_eq!(s.image, sample.image);
        assert_eq!(s.segmentation, sample.segmentation);
    }
    let mut gamma = GammaTransform::nnunet_default(true);
    gamma.p = 1.0;
    gamma.gamma = RandomScalar::Fixed(1.0);
    let approx: Vec<Box<dyn Augmentation>> = vec![Box::new(contrast), Box::new(gamma)];
    for t in approx {
        let mut s = sample.clone();
        t.apply(&mut s, &context, &mut StdRng::seed_from_u64(9))
            .unwrap();
        for (a, b) in s.image.iter().zip(sample.image.iter()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}

#[test]
fn mirroring_twice_is_identity() {
    let sample = random_sample(5, 2, [5, 6, 7], 3, 2);
    for axes in [vec![0], vec![1, 2], vec![0, 1, 2]] {
        let mut s = sample.clone();
        MirrorTransform::flip(&mut s, &axes).unwrap();
        assert_ne!(s.image, sample.image);
        MirrorTransform::flip(&mut s, &axes).unwrap();
        assert_eq!(s.image, sample.image);
        assert_eq!(s.segmentation, sample.segmentation);
    }
    // random mirroring with one seed, twice: the same axes
    let t = MirrorTransform::new(None);
    let mut s = sample.clone();
    t.apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(3))
        .unwrap();
    t.apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(3))
        .unwrap();
    assert_eq!(s.image, sample.image);
    assert!(MirrorTransform::flip(&mut s, &[3]).is_err());
}

/// Every transform with probability 1, for label checks.
fn all_transforms_always(dummy: bool) -> Vec<(&'static str, Box<dyn Augmentation>)> {
    let mut spatial = SpatialTransform::new(Some([6, 12, 12]), (-3.0, 3.0), dummy);
    spatial.p_rotation = 1.0;
    spatial.p_scaling = 1.0;
    let mut spatial_nn = spatial.clone();
    spatial_nn.segmentation_nearest = true;
    let mut noise = GaussianNoiseTransform::nnunet_default();
    noise.p = 1.0;
    let mut blur = GaussianBlurTransform::nnunet_default();
    blur.p = 1.0;
    let mut bright = MultiplicativeBrightnessTransform::nnunet_default();
    bright.p = 1.0;
    let mut contrast = ContrastTransform::nnunet_default();
    contrast.p = 1.0;
    let mut lowres = SimulateLowResolutionTransform::nnunet_default(dummy);
    lowres.p = 1.0;
    let mut g1 = GammaTransform::nnunet_default(true);
    g1.p = 1.0;
    let mut g2 = GammaTransform::nnunet_default(false);
    g2.p = 1.0;
    vec![
        ("spatial", Box::new(spatial)),
        ("spatial nearest", Box::new(spatial_nn)),
        ("noise", Box::new(noise)),
        ("blur", Box::new(blur)),
        ("brightness", Box::new(bright)),
        ("contrast", Box::new(contrast)),
        ("lowres", Box::new(lowres)),
        ("gamma inv", Box::new(g1)),
        ("gamma", Box::new(g2)),
        ("mirror", Box::new(MirrorTransform::new(None))),
        (
            "mask",
            Box::new(MaskImageTransform {
                apply_to_channels: None,
                channel_idx_in_seg: 0,
                set_outside_to: 0.0,
            }),
        ),
    ]
}

#[test]
fn segmentation_stays_within_labels_after_every_transform() {
    for (is_2d, shape, dummy) in [
        (false, [8, 16, 16], false),
        (false, [6, 18, 18], true),
        (true, [1, 18, 18], false),
    ] {
        let context = ctx(is_2d);
        for seed in 0..6u64 {
            for (name, t) in all_transforms_always(dummy) {
                let mut s = random_sample(seed, 2, shape, 4, 2);
                t.apply(&mut s, &context, &mut StdRng::seed_from_u64(seed))
                    .unwrap();
                assert_labels(&s, &[-1, 0, 1, 2, 3], name);
                assert!(s.image.iter().all(|v| v.is_finite()), "{name}");
            }
            let mut s = random_sample(seed, 2, shape, 4, 2);
            RemoveLabelTransform::new(-1, 0)
                .apply(&mut s, &context, &mut StdRng::seed_from_u64(seed))
                .unwrap();
            assert_labels(&s, &[0, 1, 2, 3], "remove label");
        }
    }
}

fn pipeline_context(patch: Vec<usize>, settings: &AugmentationSettings) -> PipelineContext {
    let is_2d = patch.len() == 2;
    let geometry =
        configure_rotation_dummy_da_mirroring_and_initial_patch_size(&patch, settings).unwrap();
    PipelineContext {
        patch_size: patch,
        is_2d,
        geometry,
        use_mask_for_norm: vec![true, false],
        cascade_foreground_labels: None,
        regions: None,
        ignore_label: None,
    }
}

fn initial_zyx(ctx: &PipelineContext) -> [usize; 3] {
    let ips = &ctx.geometry.initial_patch_size;
    if ctx.is_2d {
        [1, ips[0], ips[1]]
    } else {
        [ips[0], ips[1], ips[2]]
    }
}

#[test]
fn default_pipeline_output_shape_and_labels() {
    let settings = AugmentationSettings::default();
    for patch in [vec![8, 16, 16], vec![4, 20, 24], vec![16, 24]] {
        let pctx = pipeline_context(patch.clone(), &settings);
        let pipeline = build_pipeline(&settings, &pctx);
        let actx = pctx.augmentation_context();
        let out = pctx.patch_zyx().unwrap();
        for seed in 0..20u64 {
            let mut s = random_sample(seed, 2, initial_zyx(&pctx), 3, 1);
            run_pipeline(&pipeline, &mut s, &actx, seed);
            assert_eq!(&s.image.shape()[1..], &out[..]);
            assert_eq!(&s.segmentation.shape()[1..], &out[..]);
            assert_labels(&s, &[0, 1, 2], "default pipeline");
            assert!(s.image.iter().all(|v| v.is_finite()));
        }
    }
}

#[test]
fn cascade_and_region_pipelines() {
    let settings = AugmentationSettings::default();
    let mut pctx = pipeline_context(vec![8, 16, 16], &settings);
    pctx.cascade_foreground_labels = Some(vec![1, 2]);
    pctx.regions = Some(vec![vec![1, 2], vec![2]]);
    pctx.ignore_label = Some(3);
    let actx = pctx.augmentation_context();
    for kind in [PipelineKind::Default, PipelineKind::None] {
        let settings = AugmentationSettings {
            pipeline: kind,
            ..Default::default()
        };
        let pipeline = build_pipeline(&settings, &pctx);
        for seed in 0..10u64 {
            let shape = if kind == PipelineKind::None {
                [8, 16, 16]
            } else {
                initial_zyx(&pctx)
            };
            let mut s = random_sample(seed, 2, shape, 4, 2);
            run_pipeline(&pipeline, &mut s, &actx, seed);
            // 2 image channels + 2 one-hot channels; 2 regions + ignore
            assert_eq!(s.image.shape(), &[4, 8, 16, 16]);
            assert_eq!(s.segmentation.shape(), &[3, 8, 16, 16]);
            assert_labels(&s, &[0, 1], "regions");
            assert_binary_channels(&s.image, 2..4);
        }
    }
    let val = validation_pipeline(&settings, &pctx).unwrap();
    assert_eq!(val.len(), 3);
}

#[test]
fn noda_and_da5_and_extra() {
    let registries = Registries::builtin().unwrap();
    let noda = AugmentationSettings {
        pipeline: PipelineKind::None,
        ..Default::default()
    };
    let pctx = pipeline_context(vec![8, 16, 16], &noda);
    assert_eq!(pctx.geometry.initial_patch_size, vec![8, 16, 16]);
    let p = training_pipeline(&noda, &pctx, &registries).unwrap();
    assert_eq!(p.len(), 1); // RemoveLabel only
    let da5 = AugmentationSettings {
        pipeline: PipelineKind::DA5,
        ..Default::default()
    };
    // DA5 is available: spatial, rot90, transpose, 2 x OneOf, noise, brightness, lowres,
    // 2 x gamma, rectangles, gradient, local gamma, sharpening, mask, remove label (the NoDA
    // geometry of this context has no mirror axes)
    assert_eq!(
        training_pipeline(&da5, &pctx, &registries).unwrap().len(),
        16
    );
    let extra = AugmentationSettings {
        extra: vec!["GaussianNoiseTransform".into()],
        ..noda.clone()
    };
    assert_eq!(
        training_pipeline(&extra, &pctx, &registries).unwrap().len(),
        2
    );
    let bad = AugmentationSettings {
        extra: vec!["GaussianNoiseTransfrom".into()],
        ..noda
    };
    let err = training_pipeline(&bad, &pctx, &registries)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("did you mean GaussianNoiseTransform"), "{err}");
}

/// The transforms of nnU-Net 2.8.1 that the registry must hold.
const TRANSFORMS: [&str; 23] = [
    "SpatialTransform",
    "GaussianNoiseTransform",
    "GaussianBlurTransform",
    "MultiplicativeBrightnessTransform",
    "ContrastTransform",
    "SimulateLowResolutionTransform",
    "GammaTransform",
    "MirrorTransform",
    "MaskImageTransform",
    "RemoveLabelTransform",
    "MoveSegAsOneHotToDataTransform",
    "ApplyRandomBinaryOperatorTransform",
    "RemoveRandomConnectedComponentFromOneHotEncodingTransform",
    "ConvertSegmentationToRegionsTransform",
    "Rot90Transform",
    "TransposeAxesTransform",
    "MedianFilterTransform",
    "BrightnessAdditiveTransform",
    "BlankRectangleTransform",
    "BrightnessGradientAdditiveTransform",
    "LocalGammaTransform",
    "SharpeningTransform",
    "OneOfTransform",
];

#[test]
fn all_transforms_are_registered() {
    let registries = Registries::builtin().unwrap();
    let mut missing = TRANSFORMS.to_vec();
    missing.retain(|name| !registries.augmentations.contains(name));
    assert!(missing.is_empty(), "not registered: {missing:?}");
}

/// Fraction of `n` seeds for which `t` changes the sample.
fn fire_rate(t: &dyn Augmentation, n: u64) -> f64 {
    let sample = random_sample(77, 1, [4, 12, 12], 3, 1);
    let mut fired = 0;
    for seed in 0..n {
        let mut s = sample.clone();
        t.apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(seed))
            .unwrap();
        if s.image != sample.image || s.segmentation != sample.segmentation {
            fired += 1;
        }
    }
    fired as f64 / n as f64
}

#[test]
fn probabilities_match() {
    let n = 3000;
    let tol = 0.03;
    let cases: Vec<(Box<dyn Augmentation>, f64)> = vec![
        (Box::new(GaussianNoiseTransform::nnunet_default()), 0.1),
        (
            Box::new(MultiplicativeBrightnessTransform::nnunet_default()),
            0.15,
        ),
        (Box::new(ContrastTransform::nnunet_default()), 0.15),
        (Box::new(GammaTransform::nnunet_default(false)), 0.3),
        // p 0.2 times p_per_channel 0.5 with one channel
        (Box::new(GaussianBlurTransform::nnunet_default()), 0.1),
        // rotation or scaling: 1 - 0.8 * 0.8
        (
            Box::new(SpatialTransform::nnunet_default(None, false)),
            0.36,
        ),
        // three axes, each flipped with 0.5: 1 - 0.125
        (Box::new(MirrorTransform::new(None)), 0.875),
    ];
    for (t, p) in cases {
        let rate = fire_rate(t.as_ref(), n);
        assert!((rate - p).abs() < tol, "rate {rate} vs p {p}");
    }
}

#[test]
fn same_seed_same_output() {
    let settings = AugmentationSettings::default();
    let mut pctx = pipeline_context(vec![8, 16, 16], &settings);
    pctx.cascade_foreground_labels = Some(vec![1, 2]);
    let pipeline = build_pipeline(&settings, &pctx);
    let actx = pctx.augmentation_context();
    let run = |seed: u64| {
        let mut s = random_sample(11, 2, initial_zyx(&pctx), 3, 2);
        run_pipeline(&pipeline, &mut s, &actx, seed);
        s
    };
    assert_reproducible(run, 10);
}

#[test]
fn cascade_transforms_keep_one_hot() {
    let context = ctx(false);
    for seed in 0..8u64 {
        let mut s = random_sample(seed, 1, [6, 14, 14], 3, 2);
        MoveSegAsOneHotToDataTransform {
            source_channel_idx: 1,
            all_labels: Some(vec![1, 2]),
            remove_channel_from_source: true,
        }
        .apply(&mut s, &context, &mut StdRng::seed_from_u64(seed))
        .unwrap();
        let mut op =
            ApplyRandomBinaryOperatorTransform::nnunet_default(ChannelSelection::Last(2), 1.0);
        op.p = 1.0;
        op.apply(&mut s, &context, &mut StdRng::seed_from_u64(seed))
            .unwrap();
        let mut cc =
            RemoveRandomConnectedComponentTransform::nnunet_default(ChannelSelection::Last(2), 1.0);
        cc.p = 1.0;
        cc.apply(&mut s, &context, &mut StdRng::seed_from_u64(seed))
            .unwrap();
        for z in 0..6 {
            for y in 0..14 {
                for x in 0..14 {
                    let a = s.image[[1, z, y, x]];
                    let b = s.image[[2, z, y, x]];
                    assert!(a == 0.0 || a == 1.0);
                    assert!(b == 0.0 || b == 1.0);
                    assert!(a + b <= 1.0, "overlapping one-hot channels");
                }
            }
        }
    }
}

#[test]
fn errors_not_panics_on_bad_input() {
    let mut s = random_sample(1, 1, [4, 8, 8], 2, 1);
    s.segmentation = Array4::zeros((1, 4, 8, 7));
    let t = SpatialTransform::crop_only(Some([4, 8, 8]));
    assert!(
        t.apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(0))
            .is_err()
    );
    let mut s = random_sample(1, 1, [4, 8, 8], 2, 1);
    assert!(
        MoveSegAsOneHotToDataTransform {
            source_channel_idx: 1,
            all_labels: None,
            remove_channel_from_source: true,
        }
        .apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(0))
        .is_err()
    );
    let op = ApplyRandomBinaryOperatorTransform {
        p: 1.0,
        ..ApplyRandomBinaryOperatorTransform::nnunet_default(ChannelSelection::Last(3), 1.0)
    };
    assert!(
        op.apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(0))
            .is_err()
    );
}

/// Throughput of the default 3D pipeline on a realistic patch (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn benchmark_default_pipeline() {
    let settings = AugmentationSettings::default();
    let mut pctx = pipeline_context(vec![128, 128, 128], &settings);
    pctx.use_mask_for_norm = vec![false];
    let pipeline = build_pipeline(&settings, &pctx);
    let actx = pctx.augmentation_context();
    let block: usize = std::env::var("BENCH_BLOCK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut total = std::time::Duration::ZERO;
    let mut sums = vec![0u128; pipeline.len()];
    let n = 40;
    for seed in 0..n {
        let mut s = random_sample_blocks(seed, 1, initial_zyx(&pctx), 3, 1, block);
        let t0 = std::time::Instant::now();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut times = Vec::new();
        for t in &pipeline {
            let t1 = std::time::Instant::now();
            t.apply(&mut s, &actx, &mut rng).unwrap();
            times.push(t1.elapsed().as_millis());
        }
        total += t0.elapsed();
        for (a, t) in sums.iter_mut().zip(&times) {
            *a += *t;
        }
    }
    eprintln!("mean per sample: {:?}", total / n as u32);
    eprintln!("total ms per transform: {sums:?}");
}

/// Time of the spatial transform alone (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn benchmark_spatial() {
    let s0 = random_sample(1, 1, [205, 205, 205], 3, 1);
    for (seg_nn, img_nn) in [(false, false), (true, false), (true, true)] {
        let mut t = SpatialTransform::nnunet_default(Some([128, 128, 128]), false);
        t.p_rotation = 1.0;
        t.p_scaling = 1.0;
        t.segmentation_nearest = seg_nn;
        t.image_nearest = img_nn;
        let mut s = s0.clone();
        let t0 = std::time::Instant::now();
        t.apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(1))
            .unwrap();
        eprintln!(
            "seg nearest {seg_nn} image nearest {img_nn}: {:?}",
            t0.elapsed()
        );
    }
}

/// The one-channel image of the comparisons with the reference: a smooth function of position.
fn reference_image([zz, yy, xx]: [usize; 3]) -> Array4<f32> {
    Array4::from_shape_fn((1, zz, yy, xx), |(_, z, y, x)| {
        ((0.3 * z as f64).sin() + (0.2 * y as f64).cos() + 0.1 * x as f64) as f32
    })
}

/// The statistics compared with the reference: the sum of `image`, and the sum of each value
/// times its flat index, modulo 7.
fn image_statistics(image: &Array4<f32>) -> (f64, f64) {
    let sum = image.iter().map(|&v| v as f64).sum();
    let weighted = image
        .iter()
        .enumerate()
        .map(|(i, &v)| (v as f64 * i as f64).rem_euclid(7.0))
        .sum();
    (sum, weighted)
}

/// The statistics `got` (sum, weighted sum) equal the reference's `want`: the sum within 0.01,
/// the weighted sum within `weighted_tol`.
fn assert_statistics(
    what: impl std::fmt::Display,
    (got_sum, got_weighted): (f64, f64),
    (sum, weighted): (f64, f64),
    weighted_tol: f64,
) {
    assert!((got_sum - sum).abs() < 1e-2, "{what}: {got_sum} vs {sum}");
    assert!(
        (got_weighted - weighted).abs() < weighted_tol,
        "{what}: {got_weighted} vs {weighted}"
    );
}

/// Statistics of the reference `SpatialTransform` (batchgeneratorsv2, torch) on the same data
/// and fixed rotation 0.3 rad per axis and scale 1.1 per axis (computed with the installed
/// reference; see the report).
#[test]
fn spatial_matches_reference_statistics() {
    let (zz, yy, xx) = (14, 17, 19);
    let image = reference_image([zz, yy, xx]);
    let segmentation = Array4::from_shape_fn((1, zz, yy, xx), |(_, z, y, x)| {
        ((z / 3 + y / 4 + x / 5) % 3) as i16
    });
    let sample = Sample {
        image,
        segmentation,
    };
    type Expected = (bool, [usize; 3], f64, f64, i64, [usize; 4]);
    let cases: [Expected; 2] = [
        (
            false,
            [10, 12, 13],
            2204.765625,
            5419.763621731196,
            1513,
            [27, 503, 520, 510],
        ),
        (
            true,
            [14, 12, 13],
            2756.01708984375,
            7619.208870291477,
            2229,
            [0, 708, 723, 753],
        ),
    ];
    for (in_plane, patch, sum, weighted, seg_sum, counts) in cases {
        let mut t = SpatialTransform::new(Some(patch), (0.3, 0.3), in_plane);
        t.p_rotation = 1.0;
        t.p_scaling = 1.0;
        t.scaling = RandomScalar::Fixed(1.1);
        let mut s = sample.clone();
        t.apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(0))
            .unwrap();
        let (got_sum, got_weighted) = image_statistics(&s.image);
        let got_seg: i64 = s.segmentation.iter().map(|&v| v as i64).sum();
        let mut got_counts = [0usize; 4];
        for &v in s.segmentation.iter() {
            got_counts[(v + 1) as usize] += 1;
        }
        assert_statistics(in_plane, (got_sum, got_weighted), (sum, weighted), 1.0);
        assert_eq!(got_counts, counts, "{in_plane}");
        assert_eq!(got_seg, seg_sum, "{in_plane}");
    }
}

/// Intensity transforms with fixed parameters against statistics of the reference
/// (batchgeneratorsv2, torch) on the same image.
#[test]
fn intensity_matches_reference_statistics() {
    let (zz, yy, xx) = (14, 17, 19);
    let image = reference_image([zz, yy, xx]);
    let sample = Sample {
        segmentation: Array4::zeros((1, zz, yy, xx)),
        image,
    };
    let mut blur = GaussianBlurTransform::nnunet_default();
    (blur.p, blur.p_per_channel, blur.blur_sigma) = (1.0, 1.0, RandomScalar::Fixed(0.8));
    let mut lowres = SimulateLowResolutionTransform::nnunet_default(false);
    (lowres.p, lowres.p_per_channel, lowres.scale) = (1.0, 1.0, RandomScalar::Fixed(0.6));
    let mut gamma = GammaTransform::nnunet_default(true);
    (gamma.p, gamma.gamma) = (1.0, RandomScalar::Fixed(1.3));
    let mut contrast = ContrastTransform::nnunet_default();
    (contrast.p, contrast.contrast_range) = (1.0, RandomScalar::Fixed(1.2));
    let cases: Vec<(Box<dyn Augmentation>, f64, f64, f32)> = vec![
        (
            Box::new(blur),
            5772.69720516447,
            15884.110091926064,
            1.994_846_2,
        ),
        (
            Box::new(lowres),
            5649.932419377321,
            15873.246611800278,
            2.014_254_8,
        ),
        (
            Box::new(gamma),
            5725.869581878185,
            15880.34370970726,
            2.063_985_8,
        ),
        (
            Box::new(contrast),
            5720.036025226116,
            15673.135405182838,
            2.175_11,
        ),
    ];
    for (i, (t, sum, weighted, probe)) in cases.into_iter().enumerate() {
        let mut s = sample.clone();
        t.apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(0))
            .unwrap();
        let (got_sum, got_weighted) = image_statistics(&s.image);
        let got_probe = s.image[[0, 3, 5, 7]];
        assert!(
            (got_probe - probe).abs() < 1e-5,
            "{i}: {got_probe} vs {probe}"
        );
        assert_statistics(i, (got_sum, got_weighted), (sum, weighted), 2.0);
    }
}

// ---------------------------------------------------------------------------------------------
// DA5

fn da5_settings() -> AugmentationSettings {
    AugmentationSettings {
        pipeline: PipelineKind::DA5,
        ..Default::default()
    }
}

#[test]
fn da5_identity_parameters_leave_data_unchanged() {
    for (is_2d, shape) in [(false, [6, 10, 10]), (true, [1, 12, 12])] {
        let sample = random_sample(4, 2, shape, 3, 1);
        let context = ctx(is_2d);
        let (p, p_per_channel) = (1.0, 1.0);
        let median = da5!(MedianFilterTransform() { p, p_per_channel, filter_size: (1, 2) });
        let no_strength = RandomScalar::Fixed(0.0);
        let sharpen = da5!(SharpeningTransform() { p, p_per_channel, strength: no_strength });
        let mut oneof =
            OneOfTransform::new(vec![Box::new(median.clone()), Box::new(sharpen.clone())]);
        oneof.p = 1.0;
        let no_gradient = SplitScalar::Scalar(RandomScalar::Fixed(0.0));
        let exact: Vec<(&str, Box<dyn Augmentation>)> = vec![
            (
                "rot90",
                Box::new(da5!(Rot90Transform(None) { p, num_rot_per_combination: vec![0] })),
            ),
            (
                "transpose",
                Box::new(da5!(TransposeAxesTransform(Some(vec![1])) { p })),
            ),
            ("median", Box::new(median)),
            (
                "brightness additive",
                Box::new(da5!(BrightnessAdditiveTransform() { p, p_per_channel, sigma: 0.0 })),
            ),
            (
                "rectangles",
                Box::new(da5!(BlankRectangleTransform(None) { p, p_per_channel: 0.0 })),
            ),
            (
                "gradient",
                Box::new(da5!(BrightnessGradientAdditiveTransform() {
                    p,
                    p_per_channel,
                    max_strength: no_gradient
                })),
            ),
            ("sharpening", Box::new(sharpen)),
            ("one of", Box::new(oneof)),
        ];
        for (name, t) in exact {
            for seed in 0..4 {
                let mut s = sample.clone();
                t.apply(&mut s, &context, &mut StdRng::seed_from_u64(seed))
                    .unwrap();
                assert_eq!(s.image, sample.image, "{name}");
                assert_eq!(s.segmentation, sample.segmentation, "{name}");
            }
        }
        let mut gamma = LocalGammaTransform::da5();
        gamma.p = 1.0;
        gamma.p_per_channel = 1.0;
        gamma.gamma = SplitScalar::Scalar(RandomScalar::Fixed(1.0));
        let mut s = sample.clone();
        gamma
            .apply(&mut s, &context, &mut StdRng::seed_from_u64(1))
            .unwrap();
        for (a, b) in s.image.iter().zip(sample.image.iter()) {
            assert!((a - b).abs() < 1e-5, "local gamma: {a} vs {b}");
        }
        // a constant image is a fixed point of median filter and sharpening
        let mut flat = sample.clone();
        flat.image.fill(0.75);
        let mut median = MedianFilterTransform::da5();
        median.p = 1.0;
        let mut sharpen = SharpeningTransform::da5();
        sharpen.p = 1.0;
        for t in [&median as &dyn Augmentation, &sharpen] {
            for seed in 0..4 {
                let mut s = flat.clone();
                t.apply(&mut s, &context, &mut StdRng::seed_from_u64(seed))
                    .unwrap();
                assert!(s.image.iter().all(|&v| (v - 0.75).abs() < 1e-6));
            }
        }
    }
}

#[test]
fn rot90_four_times_is_identity_and_transpose_twice_is_identity() {
    let sample = random_sample(5, 2, [6, 6, 6], 3, 2);
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        let mut s = sample.clone();
        Rot90Transform::rotate(&mut s, 1, a, b).unwrap();
        assert_ne!(s.image, sample.image);
        for _ in 0..3 {
            Rot90Transform::rotate(&mut s, 1, a, b).unwrap();
        }
        assert_eq!(s.image, sample.image);
        assert_eq!(s.segmentation, sample.segmentation);
        let mut s = sample.clone();
        Rot90Transform::rotate(&mut s, 3, a, b).unwrap();
        Rot90Transform::rotate(&mut s, 1, a, b).unwrap();
        assert_eq!(s.image, sample.image);
        let mut s = sample.clone();
        Rot90Transform::rotate(&mut s, 2, a, b).unwrap();
        Rot90Transform::rotate(&mut s, 2, a, b).unwrap();
        assert_eq!(s.image, sample.image);

        let mut s = sample.clone();
        TransposeAxesTransform::permute(&mut s, &[a, b], &[b, a]).unwrap();
        assert_ne!(s.image, sample.image);
        TransposeAxesTransform::permute(&mut s, &[a, b], &[b, a]).unwrap();
        assert_eq!(s.image, sample.image);
        assert_eq!(s.segmentation, sample.segmentation);
    }
    // torch.rot90 / np.rot90 convention: [[1, 2], [3, 4]] -> [[2, 4], [1, 3]]
    let mut s = Sample {
        image: Array4::from_shape_vec((1, 1, 2, 2), vec![1.0, 2.0, 3.0, 4.0]).unwrap(),
        segmentation: Array4::from_shape_vec((1, 1, 2, 2), vec![1, 2, 3, 4]).unwrap(),
    };
    Rot90Transform::rotate(&mut s, 1, 1, 2).unwrap();
    assert_eq!(
        s.image.iter().copied().collect::<Vec<_>>(),
        [2.0, 4.0, 1.0, 3.0]
    );
    assert_eq!(
        s.segmentation.iter().copied().collect::<Vec<_>>(),
        [2, 4, 1, 3]
    );
    // transposing y/x of a 2D sample
    let mut s = Sample {
        image: Array4::from_shape_vec((1, 1, 2, 2), vec![1.0, 2.0, 3.0, 4.0]).unwrap(),
        segmentation: Array4::from_shape_vec((1, 1, 2, 2), vec![1, 2, 3, 4]).unwrap(),
    };
    TransposeAxesTransform::permute(&mut s, &[1, 2], &[2, 1]).unwrap();
    assert_eq!(
        s.image.iter().copied().collect::<Vec<_>>(),
        [1.0, 3.0, 2.0, 4.0]
    );
    // random rotations act on the allowed axes only: z untouched for 2D, shape kept
    let rot = da5!(Rot90Transform(None) { p: 1.0 });
    let flat = random_sample(6, 1, [1, 8, 8], 3, 1);
    for seed in 0..8 {
        let mut s = flat.clone();
        rot.apply(&mut s, &ctx(true), &mut StdRng::seed_from_u64(seed))
            .unwrap();
        assert_eq!(s.image.shape(), &[1, 1, 8, 8]);
        let mut sorted_a: Vec<f32> = s.image.iter().copied().collect();
        let mut sorted_b: Vec<f32> = flat.image.iter().copied().collect();
        sorted_a.sort_by(f32::total_cmp);
        sorted_b.sort_by(f32::total_cmp);
        assert_eq!(sorted_a, sorted_b);
    }
    // a 3D patch (4, 8, 8): only y/x are rotated, z stays
    let s3 = random_sample(7, 1, [4, 8, 8], 3, 1);
    for seed in 0..8 {
        let mut s = s3.clone();
        rot.apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(seed))
            .unwrap();
        assert_eq!(s.image.shape(), &[1, 4, 8, 8]);
        let mut t = s3.clone();
        let tr = da5!(TransposeAxesTransform(None) { p: 1.0 });
        tr.apply(&mut t, &ctx(false), &mut StdRng::seed_from_u64(seed))
            .unwrap();
        assert_eq!(t.image.shape(), &[1, 4, 8, 8]);
        // every z slice keeps its own values
        for z in 0..4 {
            let sum = |x: &Sample| x.image.index_axis(Axis(1), z).sum();
            assert!((sum(&s) - sum(&s3)).abs() < 1e-3);
            assert!((sum(&t) - sum(&s3)).abs() < 1e-3);
        }
    }
}

/// Every DA5 transform with probability 1 (and p per channel 1).
fn da5_transforms_always(patch: &[usize]) -> Vec<(&'static str, Box<dyn Augmentation>)> {
    let (p, p_per_channel) = (1.0, 1.0);
    let rot = da5!(Rot90Transform(None) { p });
    let transpose = da5!(TransposeAxesTransform(None) { p });
    let median = da5!(MedianFilterTransform() { p, p_per_channel });
    let bright = da5!(BrightnessAdditiveTransform() { p, p_per_channel });
    let rect = da5!(BlankRectangleTransform(Some(patch)) { p, p_per_channel });
    let gradient = da5!(BrightnessGradientAdditiveTransform() { p, p_per_channel });
    let gamma = da5!(LocalGammaTransform() { p, p_per_channel });
    let sharpen = da5!(SharpeningTransform() { p, p_per_channel });
    vec![
        ("rot90", Box::new(rot)),
        ("transpose", Box::new(transpose)),
        ("median", Box::new(median)),
        ("brightness additive", Box::new(bright)),
        ("rectangles", Box::new(rect)),
        ("gradient", Box::new(gradient)),
        ("local gamma", Box::new(gamma)),
        ("sharpening", Box::new(sharpen)),
        ("one of filter", Box::new(OneOfTransform::da5_filter())),
        ("one of contrast", Box::new(OneOfTransform::da5_contrast())),
    ]
}

#[test]
fn da5_transforms_keep_labels_and_shape() {
    for (is_2d, shape, patch) in [
        (false, [8, 16, 16], vec![8, 16, 16]),
        (false, [4, 18, 18], vec![4, 18, 18]),
        (false, [10, 10, 10], vec![10, 10, 10]),
        (true, [1, 18, 18], vec![18, 18]),
        (true, [1, 4, 5], vec![4, 5]),
    ] {
        let context = ctx(is_2d);
        for seed in 0..6u64 {
            for (name, t) in da5_transforms_always(&patch) {
                let mut s = random_sample(seed, 2, shape, 4, 2);
                t.apply(&mut s, &context, &mut StdRng::seed_from_u64(seed))
                    .unwrap();
                assert_labels(&s, &[-1, 0, 1, 2, 3], name);
                assert_eq!(&s.image.shape()[1..], &shape[..], "{name}");
                assert_eq!(&s.segmentation.shape()[1..], &shape[..], "{name}");
                assert!(s.image.iter().all(|v| v.is_finite()), "{name}");
            }
        }
    }
}

#[test]
fn da5_pipeline_output_shape_and_labels() {
    for (settings, name) in [
        (da5_settings(), "DA5"),
        (
            AugmentationSettings {
                segmentation_nearest: true,
                ..da5_settings()
            },
            "DA5Segord0",
        ),
        (
            AugmentationSettings {
                segmentation_nearest: true,
                image_nearest: true,
                ..da5_settings()
            },
            "DA5ord0",
        ),
    ] {
        // 3D, 3D all-equal, dummy-2D, 2D square and 2D non-square (no rot90/transpose)
        for patch in [
            vec![8, 16, 16],
            vec![12, 12, 12],
            vec![4, 20, 20],
            vec![16, 16],
            vec![16, 24],
        ] {
            let mut pctx = pipeline_context(patch.clone(), &settings);
            if patch == vec![4, 20, 20] {
                assert!(pctx.geometry.do_dummy_2d, "{patch:?}");
            }
            if patch == vec![8, 16, 16] {
                pctx.cascade_foreground_labels = Some(vec![1, 2]);
            }
            let pipeline = build_pipeline(&settings, &pctx);
            let actx = pctx.augmentation_context();
            let out = pctx.patch_zyx().unwrap();
            for seed in 0..12u64 {
                let seg_c = if pctx.cascade_foreground_labels.is_some() {
                    2
                } else {
                    1
                };
                let mut s = random_sample(seed, 2, initial_zyx(&pctx), 3, seg_c);
                run_pipeline(&pipeline, &mut s, &actx, seed);
                assert_eq!(&s.image.shape()[1..], &out[..], "{name} {patch:?}");
                assert_eq!(&s.segmentation.shape()[1..], &out[..], "{name} {patch:?}");
                assert_eq!(s.segmentation.shape()[0], 1);
                assert_labels(&s, &[0, 1, 2], name);
                assert!(s.image.iter().all(|v| v.is_finite()), "{name} {patch:?}");
                if pctx.cascade_foreground_labels.is_some() {
                    assert_eq!(s.image.shape()[0], 4);
                    assert_binary_channels(&s.image, 2..4);
                }
            }
        }
    }
    // regions on top
    let settings = da5_settings();
    let mut pctx = pipeline_context(vec![8, 16, 16], &settings);
    pctx.regions = Some(vec![vec![1, 2], vec![2]]);
    pctx.ignore_label = Some(3);
    let pipeline = build_pipeline(&settings, &pctx);
    let actx = pctx.augmentation_context();
    for seed in 0..6u64 {
        let mut s = random_sample(seed, 2, initial_zyx(&pctx), 4, 1);
        run_pipeline(&pipeline, &mut s, &actx, seed);
        assert_eq!(s.segmentation.shape(), &[3, 8, 16, 16]);
        assert_labels(&s, &[0, 1], "DA5 regions");
    }
}

#[test]
fn da5_pipeline_composition() {
    let settings = da5_settings();
    // 17 with equal axes, mirror axes and a mask channel; no equal axes: no rot90 /
    // transpose; no mask without use_mask_for_norm
    let mut pctx = pipeline_context(vec![8, 12, 16], &settings);
    pctx.use_mask_for_norm = vec![false];
    assert_eq!(build_pipeline(&settings, &pctx).len(), 14);
    let pctx = pipeline_context(vec![16, 24], &settings);
    assert_eq!(build_pipeline(&settings, &pctx).len(), 15);
    let pctx = pipeline_context(vec![16, 16], &settings);
    assert_eq!(build_pipeline(&settings, &pctx).len(), 17);
}

#[test]
fn da5_same_seed_same_output() {
    let settings = da5_settings();
    for patch in [vec![8, 16, 16], vec![16, 16]] {
        let mut pctx = pipeline_context(patch, &settings);
        if !pctx.is_2d {
            pctx.cascade_foreground_labels = Some(vec![1, 2]);
        }
        let pipeline = build_pipeline(&settings, &pctx);
        let actx = pctx.augmentation_context();
        let seg_c = if pctx.is_2d { 1 } else { 2 };
        let run = |seed: u64| {
            let mut s = random_sample(11, 2, initial_zyx(&pctx), 3, seg_c);
            run_pipeline(&pipeline, &mut s, &actx, seed);
            s
        };
        assert_reproducible(run, 8);
    }
}

#[test]
fn da5_probabilities_match() {
    let n = 3000;
    let tol = 0.03;
    let cases: Vec<(&str, Box<dyn Augmentation>, f64)> = vec![
        (
            "rot90",
            Box::new(da5!(Rot90Transform(None) { num_rot_per_combination: vec![1] })),
            0.5,
        ),
        // a random order of two axes is a swap half of the time
        (
            "transpose",
            Box::new(TransposeAxesTransform::da5(None)),
            0.25,
        ),
        (
            "median",
            Box::new(da5!(MedianFilterTransform() { p_per_channel: 1.0 })),
            0.2,
        ),
        (
            "brightness additive",
            Box::new(da5!(BrightnessAdditiveTransform() { p_per_channel: 1.0 })),
            0.1,
        ),
        (
            "rectangles",
            Box::new(da5!(BlankRectangleTransform(Some(&[4, 12, 12])) { p_per_channel: 1.0 })),
            0.4,
        ),
        (
            "gradient",
            Box::new(da5!(BrightnessGradientAdditiveTransform() { p_per_channel: 1.0 })),
            0.3,
        ),
        (
            "local gamma",
            Box::new(da5!(LocalGammaTransform() { p_per_channel: 1.0 })),
            0.3,
        ),
        (
            "sharpening",
            Box::new(da5!(SharpeningTransform() { p_per_channel: 1.0 })),
            0.2,
        ),
        // one of two transforms of p 0.2 (each with p per channel 0.5, one channel)
        ("one of", Box::new(OneOfTransform::da5_filter()), 0.1),
    ];
    for (name, t, p) in cases {
        let rate = fire_rate(t.as_ref(), n);
        assert!((rate - p).abs() < tol, "{name}: {rate} vs {p}");
    }
}

#[test]
fn da5_errors_not_panics_on_bad_input() {
    let mut s = random_sample(1, 1, [4, 8, 8], 2, 1);
    let t = TransposeAxesTransform {
        p: 1.0,
        allowed_axes: Some(vec![0, 1]),
    };
    assert!(
        t.apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(0))
            .is_err()
    );
    let t = da5!(BlankRectangleTransform(Some(&[8, 8])) { p: 1.0 });
    assert!(
        t.apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(0))
            .is_err()
    );
    let t = da5!(Rot90Transform(None) { p: 1.0, allowed_axes: Some(vec![1, 3]) });
    assert!(
        t.apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(0))
            .is_err()
    );
    s.segmentation = Array4::zeros((1, 4, 8, 7));
    let t = da5!(Rot90Transform(None) { p: 1.0 });
    assert!(
        t.apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(0))
            .is_err()
    );
    // tiny patches: empty size ranges and axes shorter than 6 do not panic
    let mut s = random_sample(2, 1, [2, 3, 3], 2, 1);
    for (name, t) in da5_transforms_always(&[2, 3, 3]) {
        t.apply(&mut s, &ctx(false), &mut StdRng::seed_from_u64(0))
            .unwrap();
        assert!(s.image.iter().all(|v| v.is_finite()), "{name}");
    }
}

/// Median filter and sharpening against scipy's `median_filter` / batchgeneratorsv2's
/// `SharpeningTransform` (values computed with the reference venv).
#[test]
fn da5_median_and_sharpening_match_reference() {
    let values: Vec<f32> = (0..60)
        .map(|i| ((i * 7) % 13) as f32 * 0.5 - (i % 3) as f32)
        .collect();
    let vol = Sample {
        image: Array4::from_shape_vec((1, 3, 4, 5), values.clone()).unwrap(),
        segmentation: Array4::zeros((1, 3, 4, 5)),
    };
    let plane = Sample {
        image: Array4::from_shape_vec((1, 1, 4, 5), values[..20].to_vec()).unwrap(),
        segmentation: Array4::zeros((1, 1, 4, 5)),
    };
    let m4_3d = [
        2.0, 2.5, 2.0, 2.0, 3.5, 2.0, 2.0, 2.0, 2.0, 2.0, 2.5, 2.5, 2.5, 2.0, 1.5, 2.5, 2.5, 2.5,
        2.0, 1.0, 2.0, 2.5, 2.0, 2.0, 2.5, 2.5, 2.5, 2.0, 2.0, 1.5, 2.5, 2.5, 2.5, 2.0, 1.5, 2.5,
        2.5, 2.5, 1.5, 1.5, 2.0, 2.5, 2.0, 2.0, 2.5, 2.5, 2.5, 2.0, 2.0, 1.5, 2.5, 2.5, 2.5, 1.5,
        1.5, 3.0, 3.0, 2.5, 1.5, 1.5,
    ];
    let m3_2d = [
        1.5, 1.5, 2.5, 0.0, 0.0, 1.5, 2.5, 2.5, 1.5, 1.5, 1.5, 2.5, 3.0, 1.5, 1.5, 1.5, 1.5, 3.0,
        0.5, 0.5,
    ];
    let sh3 = [
        -4.0, 6.5, -12.0, 12.5, -7.75, 5.0, -0.25, 10.75, -6.0, 14.75, 0.5, 7.75, 7.75, -10.5, 1.5,
        -2.75, 6.0, -10.75, 13.75, -1.75, 5.75, 3.75, 11.5, -5.25, 15.5, 4.0, -16.25, 11.25,
        -10.25, 0.25, -3.75, 10.0, -11.5, 19.25, -1.0, 7.0, 1.75, 14.25, -4.0, -2.75, 4.75, -10.75,
        10.5, -6.25, 2.5, -1.75, 13.5, -8.0, 18.0, -0.75, 7.75, 5.75, -7.75, 0.0, -2.0, 4.25, -9.5,
        11.75, -3.5, 7.0,
    ];
    let sh2 = [
        -2.5, 6.25, -9.0, 10.75, -4.75, 4.75, -2.0, 10.5, -6.25, 13.0, 0.25, 7.5, 6.0, -7.5, 1.25,
        -1.25, 5.75, -7.75, 12.0, -2.0,
    ];
    let median = |size: usize| MedianFilterTransform {
        p: 1.0,
        filter_size: (size, size + 1),
        p_same_for_each_channel: 0.0,
        p_per_channel: 1.0,
    };
    let sharpen = SharpeningTransform {
        p: 1.0,
        strength: RandomScalar::Fixed(0.5),
        p_per_channel: 1.0,
        ..SharpeningTransform::da5()
    };
    type Case<'a> = (&'a Sample, Box<dyn Augmentation>, bool, &'a [f32]);
    let cases: Vec<Case> = vec![
        (&vol, Box::new(median(4)), false, &m4_3d),
        (&plane, Box::new(median(3)), true, &m3_2d),
        (&vol, Box::new(sharpen.clone()), false, &sh3),
        (&plane, Box::new(sharpen), true, &sh2),
    ];
    for (i, (sample, t, is_2d, expected)) in cases.into_iter().enumerate() {
        let mut s = sample.clone();
        t.apply(&mut s, &ctx(is_2d), &mut StdRng::seed_from_u64(0))
            .unwrap();
        for (a, b) in s.image.iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "case {i}: {a} vs {b}");
        }
    }
}
