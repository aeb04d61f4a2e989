//! Training data loading: patch sampling with nnU-Net's rules, reading from memory maps, the
//! threaded loader's reproducibility, deep-supervision targets and error reporting.

// Tests report what they measured.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ndarray::{Array3, Array4, ArrayView4, s};
use ndarray_npy::WriteNpyExt;
use nnunet_core::augmentation::{Augmentation, AugmentationContext, Sample};
use nnunet_core::io::ImageProperties;
use nnunet_preprocessing::storage::{CaseFiles, CaseProperties, MappedArray, write_case};
use nnunet_training::TrainerSettings;
use nnunet_training::data_loading::{
    Batch, DataLoader, LoaderConfig, Oversampling, PatchSampler, SamplerConfig,
    deep_supervision_scales_from_strides,
};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

fn value(c: usize, z: usize, y: usize, x: usize) -> f32 {
    (1 + c * 100_000 + z * 1000 + y * 100 + x) as f32
}

/// Writes a case of spatial `shape` with label 1 in the box `fg` (`[lo, hi)` per axis), label 2
/// nowhere, and `-1` on the x = 0 face.
fn write_test_case(folder: &Path, case: &str, shape: [usize; 3], fg: Option<[[usize; 2]; 3]>) {
    write_case_with(folder, case, shape, fg, false)
}

fn write_case_with(
    folder: &Path,
    case: &str,
    shape: [usize; 3],
    fg: Option<[[usize; 2]; 3]>,
    ignore: bool,
) {
    let [z, y, x] = shape;
    let data = Array4::from_shape_fn((2, z, y, x), |(c, z, y, x)| value(c, z, y, x));
    let inside =
        |p: [usize; 3], b: [[usize; 2]; 3]| (0..3).all(|d| p[d] >= b[d][0] && p[d] < b[d][1]);
    let seg = Array4::from_shape_fn((1, z, y, x), |(_, zz, yy, xx)| {
        if fg.is_some_and(|b| inside([zz, yy, xx], b)) {
            1
        } else if xx == 0 {
            -1
        } else if ignore {
            // Everything else unannotated.
            3
        } else {
            0
        }
    });
    let mut ones = Vec::new();
    let mut annotated = Vec::new();
    for ((_, zz, yy, xx), &v) in seg.indexed_iter() {
        if v == 1 {
            ones.push([zz as u32, yy as u32, xx as u32]);
        }
        if v == 1 || v == 0 || v == -1 {
            annotated.push([zz as u32, yy as u32, xx as u32]);
        }
    }
    let mut class_locations: BTreeMap<String, Vec<[u32; 3]>> =
        [("1".to_string(), ones), ("2".to_string(), Vec::new())].into();
    if ignore {
        class_locations.insert("-1,0,1,2".into(), annotated);
    }
    let props = CaseProperties {
        image: ImageProperties::default(),
        spacing: [1.0; 3],
        shape_before_cropping: shape,
        bbox_used_for_cropping: [[0, z], [0, y], [0, x]],
        shape_after_cropping_and_before_resampling: shape,
        class_locations,
        source_key: String::new(),
    };
    write_case(
        &CaseFiles::new(folder, case),
        data.view(),
        seg.view(),
        &props,
    )
    .unwrap();
}

fn config(
    folder: &Path,
    cases: &[&str],
    patch: &[usize],
    oversampling: Oversampling,
) -> SamplerConfig {
    SamplerConfig {
        folder: folder.to_path_buf(),
        cases: cases.iter().map(|c| c.to_string()).collect(),
        patch_size: patch.to_vec(),
        final_patch_size: patch.to_vec(),
        oversampling,
        has_ignore_label: false,
        previous_stage_folder: None,
    }
}

/// One test case to write: its name, shape and foreground box (see [`write_test_case`]).
type TestCase<'a> = (&'a str, [usize; 3], Option<[[usize; 2]; 3]>);

/// A temporary folder holding `cases`, written by [`write_test_case`].
fn folder_with(cases: &[TestCase<'_>]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for &(case, shape, fg) in cases {
        write_test_case(dir.path(), case, shape, fg);
    }
    dir
}

/// A sampler over `cases` of `folder` (as [`config`] sets it up), to share with a loader.
fn shared_sampler(
    folder: &Path,
    cases: &[&str],
    patch: &[usize],
    oversampling: Oversampling,
) -> Arc<PatchSampler> {
    Arc::new(PatchSampler::new(config(folder, cases, patch, oversampling)).unwrap())
}

fn loader_config(batch_size: usize, workers: usize, seed: u64) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        num_workers: workers,
        queue_length: 4,
        seed,
        deep_supervision_scales: None,
        augmentations: Arc::from(Vec::<Box<dyn Augmentation>>::new()),
        context: AugmentationContext::default(),
    }
}

/// The reference: the box cut out of the full array, padded with `pad`.
fn crop_reference<T: Copy>(full: ArrayView4<'_, T>, bbox: &[[i64; 2]; 3], pad: T) -> Array4<T> {
    let c = full.dim().0;
    let size: Vec<usize> = bbox.iter().map(|b| (b[1] - b[0]) as usize).collect();
    Array4::from_shape_fn((c, size[0], size[1], size[2]), |(ch, z, y, x)| {
        let p = [
            bbox[0][0] + z as i64,
            bbox[1][0] + y as i64,
            bbox[2][0] + x as i64,
        ];
        let shape = [full.dim().1, full.dim().2, full.dim().3];
        if (0..3).all(|d| p[d] >= 0 && (p[d] as usize) < shape[d]) {
            full[[ch, p[0] as usize, p[1] as usize, p[2] as usize]]
        } else {
            pad
        }
    })
}

fn no_oversampling() -> Oversampling {
    Oversampling::Fixed { fraction: 0.0 }
}

#[test]
fn patches_equal_slices_of_the_full_arrays_with_padding() {
    let dir = folder_with(&[("a", [6, 10, 12], Some([[2, 4], [3, 6], [4, 8]]))]);
    let mut cfg = config(dir.path(), &["a"], &[8, 8, 8], no_oversampling());
    cfg.final_patch_size = vec![4, 6, 8];
    let sampler = PatchSampler::new(cfg).unwrap();
    let files = CaseFiles::new(dir.path(), "a");
    let data = MappedArray::open(&files.data).unwrap();
    let seg = MappedArray::open(&files.seg).unwrap();
    let (data, seg) = (data.view_f32().unwrap(), seg.view_i16().unwrap());
    let mut rng = StdRng::seed_from_u64(3);
    let mut saw_padding = false;
    for _ in 0..200 {
        let forced = rng.random::<bool>();
        let p = sampler.draw(0, forced, &mut rng).unwrap();
        assert_eq!(p.sample.image.shape(), &[2, 8, 8, 8]);
        assert_eq!(p.sample.segmentation.shape(), &[1, 8, 8, 8]);
        assert_eq!(p.sample.image, crop_reference(data, &p.bbox, 0.0));
        assert_eq!(p.sample.segmentation, crop_reference(seg, &p.bbox, -1));
        // The box stays within need_to_pad / 2 of the case (z: need 8 - 4 = 4 -> lower corner
        // in [-2, 0]; y: need 2 -> [-1, 3]; x: need 0 -> [0, 4]).
        if !forced {
            assert!((-2..=0).contains(&p.bbox[0][0]), "{:?}", p.bbox);
            assert!((-1..=3).contains(&p.bbox[1][0]), "{:?}", p.bbox);
            assert!((0..=4).contains(&p.bbox[2][0]), "{:?}", p.bbox);
        }
        saw_padding |= p.bbox.iter().any(|b| b[0] < 0);
        if forced {
            assert!(p.sample.segmentation.iter().any(|v| *v == 1));
        }
    }
    assert!(saw_padding);
    // Explicit boxes, partly and fully outside.
    for bbox in [
        [[-3, 5], [-2, 8], [7, 15]],
        [[4, 12], [9, 17], [-7, 1]],
        [[-20, -12], [0, 8], [0, 8]],
    ] {
        let sample = sampler.read_box(0, &bbox).unwrap();
        assert_eq!(sample.image, crop_reference(data, &bbox, 0.0));
        assert_eq!(sample.segmentation, crop_reference(seg, &bbox, -1));
    }
    // A case smaller than the patch is padded: data 0, segmentation -1.
    write_test_case(dir.path(), "tiny", [3, 4, 5], None);
    let sampler =
        PatchSampler::new(config(dir.path(), &["tiny"], &[8, 8, 8], no_oversampling())).unwrap();
    let p = sampler.draw(0, false, &mut rng).unwrap();
    let n_inside = 3 * 4 * 5;
    assert_eq!(
        p.sample.image.iter().filter(|v| **v != 0.0).count(),
        2 * n_inside
    );
    assert_eq!(
        p.sample.segmentation.iter().filter(|v| **v == -1).count(),
        512 - n_inside + 3 * 4 // the x = 0 face is -1 inside the case too
    );
}

#[test]
fn forced_foreground_fraction_matches_the_rules() {
    let dir = folder_with(&[
        ("a", [20, 20, 20], Some([[0, 2], [0, 2], [0, 2]])),
        ("b", [20, 20, 20], Some([[17, 20], [17, 20], [17, 20]])),
    ]);
    let cases = ["a", "b"];
    let count = |loader: &mut DataLoader, batches: usize| -> (usize, usize, usize) {
        let (mut forced, mut total, mut fg_when_forced) = (0, 0, 0);
        for _ in 0..batches {
            let batch = loader.next_batch().unwrap();
            for (j, f) in batch.forced_foreground.iter().enumerate() {
                total += 1;
                if *f {
                    forced += 1;
                    if batch.targets[0]
                        .slice(s![j, .., .., .., ..])
                        .iter()
                        .any(|v| *v == 1)
                    {
                        fg_when_forced += 1;
                    }
                }
            }
        }
        (forced, total, fg_when_forced)
    };
    // Fixed rule: batch 5, p = 0.33 -> round(3.35) = 3 free, the last 2 forced.
    let settings = TrainerSettings::default();
    let rule = Oversampling::from_settings(&settings, 5);
    assert_eq!(rule, Oversampling::Fixed { fraction: 0.33 });
    let sampler = shared_sampler(dir.path(), &cases, &[6, 6, 6], rule);
    let mut loader = DataLoader::new(Arc::clone(&sampler), loader_config(5, 2, 1)).unwrap();
    for _ in 0..20 {
        let batch = loader.next_batch().unwrap();
        assert_eq!(batch.forced_foreground, [false, false, false, true, true]);
    }
    let (forced, total, fg) = count(&mut loader, 100);
    assert_eq!(forced * 5, total * 2);
    assert_eq!(fg, forced);
    // Unforced patches of a 20^3 case with a 2^3 / 3^3 corner object rarely hit it.
    // Probabilistic: each sample forced with p.
    let mut settings = TrainerSettings {
        probabilistic_oversampling: true,
        ..TrainerSettings::default()
    };
    let rule = Oversampling::from_settings(&settings, 5);
    assert_eq!(rule, Oversampling::Probabilistic { probability: 0.33 });
    let sampler = shared_sampler(dir.path(), &cases, &[6, 6, 6], rule);
    let mut loader = DataLoader::new(sampler, loader_config(5, 2, 7)).unwrap();
    let (forced, total, fg) = count(&mut loader, 800);
    let fraction = forced as f64 / total as f64;
    assert!((fraction - 0.33).abs() < 0.03, "{fraction}");
    assert_eq!(fg, forced);
    // Probabilistic matching the fixed rule: 2 of 5.
    settings.oversampling_matches_fixed_rule = true;
    assert_eq!(
        Oversampling::from_settings(&settings, 5),
        Oversampling::Probabilistic { probability: 0.4 }
    );
}

fn batches(sampler: &Arc<PatchSampler>, cfg: LoaderConfig, n: usize) -> Vec<Batch> {
    let mut loader = DataLoader::new(Arc::clone(sampler), cfg).unwrap();
    (0..n).map(|_| loader.next_batch().unwrap()).collect()
}

/// Changes nothing and draws nothing.
struct Identity;

impl Augmentation for Identity {
    fn apply(
        &self,
        _sample: &mut Sample,
        _context: &AugmentationContext,
        _rng: &mut dyn RngCore,
    ) -> nnunet_core::Result<()> {
        Ok(())
    }
}

/// Adds a random offset to the image: makes the augmentation's randomness visible.
struct Jitter;

impl Augmentation for Jitter {
    fn apply(
        &self,
        sample: &mut Sample,
        _context: &AugmentationContext,
        rng: &mut dyn RngCore,
    ) -> nnunet_core::Result<()> {
        let offset = rng.random::<f32>();
        sample.image.mapv_inplace(|v| v + offset);
        Ok(())
    }
}

#[test]
fn same_seed_same_batches_whatever_the_worker_count() {
    let fg = Some([[1, 3], [2, 5], [3, 4]]);
    let dir = folder_with(&[
        ("a", [10, 12, 9], fg),
        ("b", [11, 12, 9], fg),
        ("c", [12, 12, 9], fg),
    ]);
    let sampler = shared_sampler(
        dir.path(),
        &["a", "b", "c"],
        &[6, 8, 8],
        Oversampling::Probabilistic { probability: 0.5 },
    );
    let with_jitter = |workers: usize, seed: u64| {
        let mut cfg = loader_config(3, workers, seed);
        cfg.augmentations = Arc::from(vec![Box::new(Jitter) as Box<dyn Augmentation>]);
        cfg.queue_length = 2;
        cfg
    };
    let reference = batches(&sampler, with_jitter(0, 42), 12);
    let mut plain = DataLoader::new(Arc::clone(&sampler), loader_config(3, 1, 42)).unwrap();
    let first = plain.next_batch().unwrap();
    for _ in 0..5 {
        let batch = plain.next_batch().unwrap();
        plain.recycle(batch);
    }
    assert_eq!(plain.make_batch(0).unwrap(), first);
    assert_eq!(batches(&sampler, with_jitter(1, 42), 12), reference);
    assert_eq!(batches(&sampler, with_jitter(3, 42), 12), reference);
    assert_ne!(batches(&sampler, with_jitter(3, 43), 12), reference);
    for (i, b) in reference.iter().enumerate() {
        assert_eq!(b.index, i as u64);
    }
    // Recycled buffers change nothing.
    let mut loader = DataLoader::new(Arc::clone(&sampler), with_jitter(2, 42)).unwrap();
    for expected in &reference {
        let batch = loader.next_batch().unwrap();
        assert_eq!(&batch, expected);
        loader.recycle(batch);
    }
    // An identity augmentation gives what no augmentation gives (two collation paths).
    let mut identity = loader_config(3, 2, 42);
    identity.augmentations = Arc::from(vec![Box::new(Identity) as Box<dyn Augmentation>]);
    assert_eq!(
        batches(&sampler, identity, 6),
        batches(&sampler, loader_config(3, 0, 42), 6)
    );
    // Starting later gives the same stream's tail, and make_batch the same batch.
    let mut later = DataLoader::starting_at(Arc::clone(&sampler), with_jitter(2, 42), 5).unwrap();
    assert_eq!(later.next_batch().unwrap(), reference[5]);
    assert_eq!(later.make_batch(7).unwrap(), reference[7]);
    // Dropping a loader with full queues returns (its workers stop).
    let loader = DataLoader::new(Arc::clone(&sampler), with_jitter(3, 1)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    drop(loader);
}

#[test]
fn two_d_patches_are_slices_of_the_3d_case() {
    let dir = folder_with(&[("a", [7, 10, 12], Some([[5, 6], [3, 6], [4, 8]]))]);
    let sampler = PatchSampler::new(config(
        dir.path(),
        &["a"],
        &[8, 16],
        Oversampling::Fixed { fraction: 0.5 },
    ))
    .unwrap();
    assert!(sampler.is_2d());
    let files = CaseFiles::new(dir.path(), "a");
    let data = MappedArray::open(&files.data).unwrap();
    let data = data.view_f32().unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let mut slices = std::collections::BTreeSet::new();
    for i in 0..300 {
        let forced = i % 2 == 0;
        let p = sampler.draw(0, forced, &mut rng).unwrap();
        assert_eq!(p.sample.image.shape(), &[2, 1, 8, 16]);
        assert_eq!(p.sample.segmentation.shape(), &[1, 1, 8, 16]);
        assert_eq!(p.bbox[0][1] - p.bbox[0][0], 1);
        assert!((0..7).contains(&p.bbox[0][0]));
        slices.insert(p.bbox[0][0]);
        assert_eq!(p.sample.image, crop_reference(data, &p.bbox, 0.0));
        if forced {
            assert_eq!(p.bbox[0][0], 5, "the forced slice holds the class");
            assert!(p.sample.segmentation.iter().any(|v| *v == 1));
        }
    }
    assert_eq!(slices.len(), 7);
    // The loader gives [b, c, 1, y, x].
    let sampler = Arc::new(sampler);
    let mut cfg = loader_config(4, 1, 0);
    cfg.deep_supervision_scales =
        Some(deep_supervision_scales_from_strides(&[vec![1, 1], vec![2, 2], vec![2, 2]]).unwrap());
    let batch = DataLoader::new(sampler, cfg).unwrap().next_batch().unwrap();
    assert_eq!(batch.data.shape(), &[4, 2, 1, 8, 16]);
    let shapes: Vec<&[usize]> = batch.targets.iter().map(|t| t.shape()).collect();
    assert_eq!(shapes, [&[4, 1, 1, 8, 16][..], &[4, 1, 1, 4, 8][..]]);
}

#[test]
fn deep_supervision_targets_are_nearest_downsampled() {
    let dir = folder_with(&[("a", [12, 12, 12], Some([[2, 9], [3, 7], [1, 11]]))]);
    let sampler = shared_sampler(
        dir.path(),
        &["a"],
        &[8, 8, 8],
        Oversampling::Fixed { fraction: 1.0 },
    );
    let mut cfg = loader_config(2, 2, 5);
    // the scales of strides [1, 1, 1], [2, 2, 2], [1, 2, 2], [2, 2, 2]
    let scales = vec![vec![1.0; 3], vec![0.5; 3], vec![0.5, 0.25, 0.25]];
    cfg.deep_supervision_scales = Some(scales);
    let batch = DataLoader::new(sampler, cfg).unwrap().next_batch().unwrap();
    let shapes: Vec<&[usize]> = batch.targets.iter().map(|t| t.shape()).collect();
    assert_eq!(
        shapes,
        [
            &[2, 1, 8, 8, 8][..],
            &[2, 1, 4, 4, 4][..],
            &[2, 1, 4, 2, 2][..]
        ]
    );
    // nearest-exact with factor 2 takes the odd voxels.
    let full = &batch.targets[0];
    let half = &batch.targets[1];
    for ((b, c, z, y, x), v) in half.indexed_iter() {
        assert_eq!(*v, full[[b, c, 2 * z + 1, 2 * y + 1, 2 * x + 1]]);
    }
}

#[test]
fn cascade_and_ignore_label() {
    let dir = tempfile::tempdir().unwrap();
    let prev_dir = tempfile::tempdir().unwrap();
    write_case_with(
        dir.path(),
        "a",
        [6, 7, 8],
        Some([[1, 2], [1, 2], [1, 2]]),
        true,
    );
    let prev = Array3::from_shape_fn((6, 7, 8), |(z, y, x)| ((z + y + x) % 3) as i16);
    let file = std::fs::File::create(prev_dir.path().join("a.npy")).unwrap();
    prev.write_npy(file).unwrap();
    let mut cfg = config(dir.path(), &["a"], &[4, 4, 4], no_oversampling());
    cfg.previous_stage_folder = Some(prev_dir.path().to_path_buf());
    cfg.has_ignore_label = true;
    let sampler = PatchSampler::new(cfg).unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let prev4 = prev.clone().insert_axis(ndarray::Axis(0));
    for _ in 0..100 {
        let p = sampler.draw(0, false, &mut rng).unwrap();
        assert_eq!(p.sample.segmentation.shape(), &[2, 4, 4, 4]);
        let expected = crop_reference(prev4.view(), &p.bbox, -1);
        assert_eq!(p.sample.segmentation.slice(s![1..2, .., .., ..]), expected);
        // With an ignore label an unforced box is centred on an annotated voxel (the x = 0 face
        // or the label-1 voxel; everything else is 3 = unannotated here), so it holds one.
        assert!(
            p.sample
                .segmentation
                .slice(s![0, .., .., ..])
                .iter()
                .any(|v| *v == -1 || *v == 1),
            "{:?}",
            p.bbox
        );
    }
}

#[test]
fn errors_name_the_case() {
    let dir = folder_with(&[("good", [6, 6, 6], None), ("broken_case", [6, 6, 6], None)]);
    std::fs::write(dir.path().join("broken_case.npy"), b"not an npy file").unwrap();
    let sampler = shared_sampler(dir.path(), &["broken_case"], &[4, 4, 4], no_oversampling());
    let mut rng = StdRng::seed_from_u64(0);
    let err = sampler.draw(0, false, &mut rng).unwrap_err().to_string();
    assert!(err.contains("broken_case"), "{err}");
    for workers in [0, 2] {
        let mut loader =
            DataLoader::new(Arc::clone(&sampler), loader_config(2, workers, 0)).unwrap();
        for _ in 0..3 {
            let err = loader.next_batch().unwrap_err().to_string();
            assert!(err.contains("broken_case"), "{err}");
        }
    }
    // A missing case too, while the good one loads.
    let sampler = shared_sampler(
        dir.path(),
        &["good", "missing_case"],
        &[4, 4, 4],
        no_oversampling(),
    );
    let mut loader = DataLoader::new(sampler, loader_config(4, 2, 0)).unwrap();
    let mut failures = 0;
    for _ in 0..10 {
        match loader.next_batch() {
            Ok(b) => assert!(b.keys.iter().all(|k| k == "good")),
            Err(e) => {
                failures += 1;
                assert!(e.to_string().contains("missing_case"), "{e}");
            }
        }
    }
    assert!(failures > 0);
}

/// Throughput of the loader without augmentation (`NNUNET_BENCH_DIR` keeps the generated cases
/// for a comparison with the reference). Run with `-- --ignored --nocapture`.
#[test]
#[ignore]
fn loader_throughput() {
    let keep = std::env::var_os("NNUNET_BENCH_DIR").map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let folder = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&folder).unwrap();
    let cases = ["c0", "c1", "c2", "c3"];
    for case in cases {
        if !CaseFiles::new(&folder, case).properties.is_file() {
            write_test_case(
                &folder,
                case,
                [160, 200, 200],
                Some([[60, 90], [80, 120], [70, 110]]),
            );
        }
    }
    for (patch, final_patch, label) in [
        (
            vec![205, 205, 205],
            vec![128, 128, 128],
            "3d train (205^3 from 128^3)",
        ),
        (vec![128, 128, 128], vec![128, 128, 128], "3d val (128^3)"),
    ] {
        let mut cfg = config(
            &folder,
            &cases,
            &patch,
            Oversampling::Fixed { fraction: 0.33 },
        );
        cfg.final_patch_size = final_patch;
        let sampler = Arc::new(PatchSampler::new(cfg).unwrap());
        let mut loader = DataLoader::new(Arc::clone(&sampler), loader_config(2, 0, 0)).unwrap();
        loader.next_batch().unwrap();
        let start = std::time::Instant::now();
        for _ in 0..20 {
            let batch = loader.next_batch().unwrap();
            loader.recycle(batch);
        }
        let per = start.elapsed().as_secs_f64() / 20.0;
        println!(
            "{label}: {:.1} ms per batch of 2 (one thread, recycling)",
            per * 1000.0
        );
        let n = 20;
        let start = std::time::Instant::now();
        for _ in 0..n {
            loader.next_batch().unwrap();
        }
        let per = start.elapsed().as_secs_f64() / n as f64;
        println!(
            "{label}: {:.1} ms per batch of 2 (one thread)",
            per * 1000.0
        );
        let mut lc = loader_config(2, 2, 0);
        lc.queue_length = 2;
        let mut loader = DataLoader::new(Arc::clone(&sampler), lc).unwrap();
        loader.next_batch().unwrap();
        let start = std::time::Instant::now();
        for _ in 0..n {
            let batch = loader.next_batch().unwrap();
            loader.recycle(batch);
        }
        let per = start.elapsed().as_secs_f64() / n as f64;
        println!(
            "{label}: {:.1} ms per batch of 2 (two workers, recycling)",
            per * 1000.0
        );
    }
}
