//! Batches from a [`PatchSampler`]: sample, augment, collate, deep-supervision targets; produced
//! by background worker threads into a bounded queue, reproducibly.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ndarray::{Array5, ArrayView5};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;

use super::sampler::PatchSampler;
use nnunet_core::augmentation::{Augmentation, AugmentationContext};
use nnunet_core::error::{Error, Result};
use nnunet_preprocessing::plans::Configuration;

/// One training batch (the type trainers see, from `nnunet-api`).
pub use nnunet_api::training::Batch;

/// How a [`DataLoader`] makes batches.
#[derive(Clone)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Background worker threads; `0` makes every batch in the calling thread.
    pub num_workers: usize,
    /// Ready batches held at most (rounded up to a multiple of the worker count); memory is
    /// bounded by this plus one batch in progress per worker, plus the buffers of up to
    /// `queue_length + 2 * num_workers + 2` batches handed back with [`DataLoader::recycle`].
    pub queue_length: usize,
    /// Batch `i` depends only on `(seed, i)`.
    pub seed: u64,
    /// Deep-supervision scales per output, `[z, y, x]` factors (or `[y, x]` for 2D), the first
    /// usually all ones (see [`deep_supervision_scales`]); `None` gives one full-resolution
    /// target.
    pub deep_supervision_scales: Option<Vec<Vec<f64>>>,
    /// Applied to every sample in order.
    pub augmentations: Arc<[Box<dyn Augmentation>]>,
    /// What the augmentations know about the data: dimensionality, mirror axes, ignore label.
    pub context: AugmentationContext,
}

impl std::fmt::Debug for LoaderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoaderConfig")
            .field("batch_size", &self.batch_size)
            .field("num_workers", &self.num_workers)
            .field("queue_length", &self.queue_length)
            .field("seed", &self.seed)
            .field("deep_supervision_scales", &self.deep_supervision_scales)
            .field("augmentations", &self.augmentations.len())
            .field("context", &self.context)
            .finish()
    }
}

/// What the workers share.
struct Producer {
    sampler: Arc<PatchSampler>,
    config: LoaderConfig,
    pool: Pool,
}

/// Buffers of returned batches ([`DataLoader::recycle`]): reusing them spares the kernel from
/// mapping and zeroing fresh pages for every batch, which otherwise dominates the loader's time.
struct Pool {
    f32s: Mutex<Vec<Vec<f32>>>,
    i16s: Mutex<Vec<Vec<i16>>>,
    max: usize,
}

impl Pool {
    fn take<T>(list: &Mutex<Vec<Vec<T>>>) -> Vec<T> {
        let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
        // The largest buffer, so that it most likely needs no reallocation.
        let best = (0..list.len()).max_by_key(|&i| list[i].capacity());
        let mut v = best.map(|i| list.swap_remove(i)).unwrap_or_default();
        v.clear();
        v
    }

    fn put<T>(list: &Mutex<Vec<Vec<T>>>, v: Vec<T>, max: usize) {
        let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() < max && v.capacity() > 0 {
            list.push(v);
        }
    }
}

struct Worker {
    receiver: Receiver<Result<Batch>>,
    handle: Option<JoinHandle<()>>,
}

/// An endless stream of batches (nnU-Net's loaders are infinite; an epoch is a number of
/// iterations). Dropping it stops the workers.
pub struct DataLoader {
    producer: Arc<Producer>,
    workers: Vec<Worker>,
    stop: Arc<AtomicBool>,
    first_index: u64,
    next_index: u64,
}

impl std::fmt::Debug for DataLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataLoader")
            .field("config", &self.producer.config)
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

/// The random generator of batch `index` of a loader seeded with `seed`.
pub fn batch_rng(seed: u64, index: u64) -> StdRng {
    fn splitmix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let mut key = [0u8; 32];
    for (k, chunk) in key.chunks_mut(8).enumerate() {
        let word =
            splitmix(splitmix(seed ^ (k as u64).wrapping_mul(0x5851_f42d_4c95_7f2d)) ^ index);
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    StdRng::from_seed(key)
}

impl DataLoader {
    /// Starts the loader (and its workers) at batch 0.
    pub fn new(sampler: Arc<PatchSampler>, config: LoaderConfig) -> Result<Self> {
        Self::starting_at(sampler, config, 0)
    }

    /// Starts the loader at batch `first` (to resume a run where it stopped).
    pub fn starting_at(
        sampler: Arc<PatchSampler>,
        config: LoaderConfig,
        first: u64,
    ) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::training(
                "data loading: the batch size must be positive",
            ));
        }
        if let Some(scales) = &config.deep_supervision_scales {
            let dims_ok = |s: &Vec<f64>| {
                (s.len() == 3 || (s.len() == 2 && sampler.is_2d()))
                    && s.iter().all(|x| x.is_finite() && *x > 0.0)
            };
            if scales.is_empty() || !scales.iter().all(dims_ok) {
                return Err(Error::training(format!(
                    "data loading: invalid deep supervision scales {scales:?}"
                )));
            }
        }
        let n = config.num_workers;
        let capacity = config.queue_length.div_ceil(n.max(1)).max(1);
        let max = config.queue_length + 2 * n + 2;
        let producer = Arc::new(Producer {
            sampler,
            config,
            pool: Pool {
                f32s: Mutex::new(Vec::new()),
                i16s: Mutex::new(Vec::new()),
                // Data and every target of this many batches.
                max,
            },
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(n);
        for w in 0..n {
            let (sender, receiver) = sync_channel(capacity);
            let producer = Arc::clone(&producer);
            let stop = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name(format!("nnunet-loader-{w}"))
                .spawn(move || work(&producer, &stop, sender, first + w as u64, n as u64))
                .map_err(|e| Error::training(format!("cannot start a data loading worker: {e}")))?;
            workers.push(Worker {
                receiver,
                handle: Some(handle),
            });
        }
        Ok(DataLoader {
            producer,
            workers,
            stop,
            first_index: first,
            next_index: first,
        })
    }

    /// The index of the batch [`DataLoader::next_batch`] returns next.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// The next batch, in index order. A case that cannot be read gives an `Err` naming it; the
    /// stream goes on after it.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let index = self.next_index;
        self.next_index += 1;
        if self.workers.is_empty() {
            return self.producer.batch(index);
        }
        // Worker w makes batches first + w, first + w + n, …
        let w = ((index - self.first_index) % self.workers.len() as u64) as usize;
        self.workers[w].receiver.recv().map_err(|_| {
            Error::training(format!(
                "data loading worker {w} stopped unexpectedly before batch {index}"
            ))
        })?
    }

    /// Hands a used batch's memory back for later batches (optional; a trainer calls it when
    /// done with a batch). Without it, every batch allocates fresh memory.
    pub fn recycle(&self, batch: Batch) {
        let pool = &self.producer.pool;
        let (data, _) = batch.data.into_raw_vec_and_offset();
        Pool::put(&pool.f32s, data, pool.max);
        for target in batch.targets {
            let (seg, _) = target.into_raw_vec_and_offset();
            Pool::put(&pool.i16s, seg, pool.max * 4);
        }
    }

    /// Makes batch `index` in the calling thread, independently of the stream.
    pub fn make_batch(&self, index: u64) -> Result<Batch> {
        self.producer.batch(index)
    }
}

impl Iterator for DataLoader {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_batch())
    }
}

impl Drop for DataLoader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let mut handles = Vec::with_capacity(self.workers.len());
        // Dropping the receivers makes a worker's pending send fail, so none stays blocked.
        for worker in self.workers.drain(..) {
            handles.extend(worker.handle);
        }
        for handle in handles {
            let _ = handle.join();
        }
    }
}

fn work(
    producer: &Producer,
    stop: &AtomicBool,
    sender: SyncSender<Result<Batch>>,
    first: u64,
    step: u64,
) {
    // With several workers the cores are busy with whole batches: the transforms' own parallel
    // loops then only add thread wake-ups, so each worker runs them on a one-thread pool.
    let local_pool = (step >= 2)
        .then(|| rayon::ThreadPoolBuilder::new().num_threads(1).build().ok())
        .flatten();
    let make = |index: u64| match &local_pool {
        Some(pool) => pool.install(|| producer.batch(index)),
        None => producer.batch(index),
    };
    let mut index = first;
    while !stop.load(Ordering::SeqCst) {
        let batch = catch_unwind(AssertUnwindSafe(|| make(index))).unwrap_or_else(|_| {
            Err(Error::training(format!(
                "data loading panicked while making batch {index}"
            )))
        });
        if sender.send(batch).is_err() {
            break;
        }
        index += step;
    }
}

/// The shape of one sample's image or segmentation, `(c, z, y, x)`.
type Shape4 = (usize, usize, usize, usize);

/// A batch being collated: every sample's voxels appended in order (each output value written
/// once), the shapes of the first sample, and each sample's case and oversampling decision.
struct Collation {
    data: Vec<f32>,
    seg: Vec<i16>,
    image_shape: Option<Shape4>,
    seg_shape: Option<Shape4>,
    keys: Vec<String>,
    forced: Vec<bool>,
}

impl Producer {
    /// Makes batch `index`: nnU-Net picks the batch's cases first, then per sample the
    /// oversampling decision, the patch and its augmentation.
    fn batch(&self, index: u64) -> Result<Batch> {
        let config = &self.config;
        let b = config.batch_size;
        let mut rng = batch_rng(config.seed, index);
        let n = self.sampler.cases().len();
        let picks: Vec<usize> = (0..b)
            .map(|_| rand::Rng::random_range(&mut rng, 0..n))
            .collect();
        let mut batch = Collation {
            data: Pool::take(&self.pool.f32s),
            seg: Pool::take(&self.pool.i16s),
            image_shape: None,
            seg_shape: None,
            keys: Vec::with_capacity(b),
            forced: Vec::with_capacity(b),
        };
        for (j, case) in picks.into_iter().enumerate() {
            let force = self.sampler.config().oversampling.is_forced(j, b, &mut rng);
            if config.augmentations.is_empty() {
                self.read_sample(&mut batch, j, case, force, &mut rng)?;
            } else {
                self.augmented_sample(&mut batch, case, force, &mut rng)?;
            }
            batch.forced.push(force);
        }
        let (Some(i), Some(g)) = (batch.image_shape, batch.seg_shape) else {
            return Err(Error::training("data loading: empty batch"));
        };
        let invalid = |e: ndarray::ShapeError| Error::training(format!("data loading: {e}"));
        let data = Array5::from_shape_vec((b, i.0, i.1, i.2, i.3), batch.data).map_err(invalid)?;
        let seg = Array5::from_shape_vec((b, g.0, g.1, g.2, g.3), batch.seg).map_err(invalid)?;
        let targets = match &config.deep_supervision_scales {
            None => vec![seg],
            Some(scales) => deep_supervision_targets(seg, scales)?,
        };
        Ok(Batch {
            index,
            data,
            targets,
            keys: batch.keys,
            forced_foreground: batch.forced,
        })
    }

    /// Sample `j` of `batch` when nothing changes the patch: read straight into the batch.
    fn read_sample(
        &self,
        batch: &mut Collation,
        j: usize,
        case: usize,
        force: bool,
        rng: &mut StdRng,
    ) -> Result<()> {
        let b = self.config.batch_size;
        let drawn = self
            .sampler
            .draw_into(case, force, rng, &mut batch.data, &mut batch.seg)?;
        if j == 0 {
            batch.data.reserve_exact(batch.data.len() * (b - 1));
            batch.seg.reserve_exact(batch.seg.len() * (b - 1));
        }
        let first_image = *batch.image_shape.get_or_insert(drawn.image_shape);
        let first_seg = *batch.seg_shape.get_or_insert(drawn.seg_shape);
        if first_image != drawn.image_shape || first_seg != drawn.seg_shape {
            return Err(Error::training(format!(
                "training case '{}': patch shape {:?} differs from the batch's {first_image:?}",
                drawn.case, drawn.image_shape
            )));
        }
        batch.keys.push(drawn.case);
        Ok(())
    }

    /// A sample drawn, augmented in order and appended to `batch`.
    fn augmented_sample(
        &self,
        batch: &mut Collation,
        case: usize,
        force: bool,
        rng: &mut StdRng,
    ) -> Result<()> {
        let config = &self.config;
        let patch = self.sampler.draw(case, force, rng)?;
        let mut sample = patch.sample;
        for augmentation in config.augmentations.iter() {
            augmentation
                .apply(&mut sample, &config.context, rng)
                .map_err(|e| {
                    Error::training(format!("augmenting training case '{}': {e}", patch.case))
                })?;
        }
        let image_dim = sample.image.dim();
        let seg_dim = sample.segmentation.dim();
        if (image_dim.1, image_dim.2, image_dim.3) != (seg_dim.1, seg_dim.2, seg_dim.3) {
            return Err(Error::training(format!(
                "training case '{}': image {:?} and segmentation {:?} differ in shape after augmentation",
                patch.case, image_dim, seg_dim
            )));
        }
        let first_image = *batch.image_shape.get_or_insert(image_dim);
        let first_seg = *batch.seg_shape.get_or_insert(seg_dim);
        if first_image != image_dim || first_seg != seg_dim {
            return Err(Error::training(format!(
                "training case '{}': sample shape {image_dim:?} differs from the batch's {first_image:?}",
                patch.case
            )));
        }
        append(&mut batch.data, sample.image, config.batch_size);
        append(&mut batch.seg, sample.segmentation, config.batch_size);
        batch.keys.push(patch.case);
        Ok(())
    }
}

/// The deep-supervision targets of the collated segmentation `seg`, one per scale.
fn deep_supervision_targets(seg: Array5<i16>, scales: &[Vec<f64>]) -> Result<Vec<Array5<i16>>> {
    let mut out: Vec<Option<Array5<i16>>> = Vec::with_capacity(scales.len());
    for s in scales {
        let factors = match s.as_slice() {
            [y, x] => [1.0, *y, *x],
            [z, y, x] => [*z, *y, *x],
            _ => {
                return Err(Error::training(format!(
                    "data loading: invalid deep supervision scale {s:?}"
                )));
            }
        };
        out.push((factors != [1.0; 3]).then(|| downsample_seg_nearest_exact(seg.view(), factors)));
    }
    // Full-resolution targets are the collated segmentation itself (the last one moved, the
    // others copies).
    let mut remaining = out.iter().filter(|t| t.is_none()).count();
    let mut full = Some(seg);
    Ok(out
        .into_iter()
        .map(|t| {
            t.unwrap_or_else(|| {
                remaining -= 1;
                if remaining == 0 {
                    full.take().unwrap_or_default()
                } else {
                    full.clone().unwrap_or_default()
                }
            })
        })
        .collect())
}

/// Appends `array`'s values in C order to `buffer`; the first array of a batch becomes the buffer
/// itself (grown to hold `batch` such arrays), so it is not copied.
fn append<T: Copy>(buffer: &mut Vec<T>, array: ndarray::Array4<T>, batch: usize) {
    if buffer.capacity() == 0 && array.is_standard_layout() {
        let len = array.len();
        let (values, offset) = array.into_raw_vec_and_offset();
        if offset.unwrap_or(0) == 0 && values.len() == len {
            *buffer = values;
            buffer.reserve_exact(len * batch.saturating_sub(1));
            return;
        }
        let start = offset.unwrap_or(0);
        buffer.extend_from_slice(values.get(start..start + len).unwrap_or(&[]));
        return;
    }
    if buffer.capacity() == 0 {
        buffer.reserve_exact(array.len() * batch);
    }
    match array.as_slice() {
        Some(values) => buffer.extend_from_slice(values),
        None => buffer.extend(array.iter().copied()),
    }
}

/// batchgeneratorsv2's `DownsampleSegForDSTransform` for one scale: the spatial shape becomes
/// `round(shape * factor)` (half to even) per axis, sampled with torch's `nearest-exact`
/// (`src = min(floor((dst + 0.5) * in / out), in - 1)`, in torch's float precision). All-ones
/// factors return a copy.
pub fn downsample_seg_nearest_exact(seg: ArrayView5<'_, i16>, factors: [f64; 3]) -> Array5<i16> {
    let (b, c, z, y, x) = seg.dim();
    if factors.iter().all(|f| *f == 1.0) {
        return seg.to_owned();
    }
    let input = [z, y, x];
    let out_shape: [usize; 3] =
        std::array::from_fn(|d| (input[d] as f64 * factors[d]).round_ties_even().max(0.0) as usize);
    let index_map = |d: usize| -> Vec<usize> {
        let (n_in, n_out) = (input[d], out_shape[d]);
        let scale = n_in as f32 / n_out as f32;
        (0..n_out)
            .map(|i| {
                let src = (((i as f64 + 0.5) * f64::from(scale)) as f32).floor() as usize;
                src.min(n_in.saturating_sub(1))
            })
            .collect()
    };
    let (iz, iy, ix) = (index_map(0), index_map(1), index_map(2));
    let mut out = Array5::zeros((b, c, out_shape[0], out_shape[1], out_shape[2]));
    let src = seg.as_standard_layout();
    let (Some(s), Some(o)) = (src.as_slice(), out.as_slice_mut()) else {
        return out;
    };
    let mut oi = 0;
    for plane in 0..b * c {
        for &sz in &iz {
            for &sy in &iy {
                let row = &s[((plane * z + sz) * y + sy) * x..][..x];
                let dst = &mut o[oi..oi + ix.len()];
                for (d, &sx) in dst.iter_mut().zip(&ix) {
                    *d = row[sx];
                }
                oi += ix.len();
            }
        }
    }
    out
}

/// nnU-Net's `_get_deep_supervision_scales`: `1 / cumprod(strides)` per stage, the last stage
/// dropped. `strides` are the encoder's per-stage strides (each one value per spatial axis).
pub fn deep_supervision_scales_from_strides(strides: &[Vec<usize>]) -> Result<Vec<Vec<f64>>> {
    let dims = strides.first().map(Vec::len).unwrap_or(0);
    if strides.is_empty()
        || !(2..=3).contains(&dims)
        || strides.iter().any(|s| s.len() != dims || s.contains(&0))
    {
        return Err(Error::training(format!(
            "deep supervision: invalid strides {strides:?}"
        )));
    }
    let mut product = vec![1.0f64; dims];
    let mut out = Vec::with_capacity(strides.len());
    for s in strides {
        for (p, v) in product.iter_mut().zip(s) {
            *p *= *v as f64;
        }
        out.push(product.iter().map(|p| 1.0 / p).collect());
    }
    out.pop();
    Ok(out)
}

/// The deep-supervision scales of a configuration, from `architecture.arch_kwargs.strides` (or the
/// older `pool_op_kernel_sizes`); a stride given as a single number applies to every axis.
pub fn deep_supervision_scales(configuration: &Configuration) -> Result<Vec<Vec<f64>>> {
    let json = &configuration.json;
    let value = json
        .get("architecture")
        .and_then(|a| a.get("arch_kwargs"))
        .and_then(|k| k.get("strides"))
        .or_else(|| json.get("pool_op_kernel_sizes"))
        .ok_or_else(|| {
            Error::training(format!(
                "configuration '{}' has no architecture.arch_kwargs.strides",
                configuration.name
            ))
        })?;
    let dims = json
        .get("patch_size")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(3);
    let invalid = || {
        Error::training(format!(
            "configuration '{}': strides must be a list of positive integers or lists of them",
            configuration.name
        ))
    };
    let strides = value
        .as_array()
        .ok_or_else(invalid)?
        .iter()
        .map(|s| match s {
            Value::Number(n) => n.as_u64().map(|v| vec![v as usize; dims]),
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_u64().map(|v| v as usize))
                .collect::<Option<Vec<_>>>(),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(invalid)?;
    deep_supervision_scales_from_strides(&strides)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_match_nnunet() {
        let s = deep_supervision_scales_from_strides(&[
            vec![1, 1, 1],
            vec![2, 2, 2],
            vec![1, 2, 2],
            vec![2, 2, 2],
        ])
        .unwrap();
        assert_eq!(
            s,
            vec![
                vec![1.0, 1.0, 1.0],
                vec![0.5, 0.5, 0.5],
                vec![0.5, 0.25, 0.25]
            ]
        );
    }

    #[test]
    fn nearest_exact_downsampling() {
        // 5 -> round(2.5) = 2; scale 2.5: dst 0 -> floor(1.25) = 1, dst 1 -> floor(3.75) = 3.
        let seg = Array5::from_shape_fn((1, 1, 1, 1, 5), |(.., x)| x as i16);
        let out = downsample_seg_nearest_exact(seg.view(), [1.0, 1.0, 0.5]);
        assert_eq!(out.as_slice().unwrap(), &[1, 3]);
        let seg = Array5::from_shape_fn((1, 1, 1, 1, 6), |(.., x)| x as i16);
        let out = downsample_seg_nearest_exact(seg.view(), [1.0, 1.0, 0.5]);
        assert_eq!(out.as_slice().unwrap(), &[1, 3, 5]);
    }

    #[test]
    fn batch_rngs_differ() {
        use rand::RngCore;
        let a = batch_rng(1, 0).next_u64();
        assert_eq!(a, batch_rng(1, 0).next_u64());
        assert_ne!(a, batch_rng(1, 1).next_u64());
        assert_ne!(a, batch_rng(2, 0).next_u64());
    }
}
