//! The dataset fingerprint: shapes after cropping, spacings and foreground intensity statistics.
//!
//! This is what `nnUNetv2_extract_fingerprint` writes to `dataset_fingerprint.json`, computed so
//! that every number is bit-identical to nnU-Net v2's:
//!
//! * Each case is read, cropped to its filled nonzero region
//!   ([`crop_to_nonzero`]), and its shape after
//!   cropping, spacing and `cropped size / original size` are recorded.
//! * Foreground voxels are those with a label > 0 in the cropped segmentation. Per case, one
//!   numpy `RandomState(1234)` draws, channel after channel, `total_samples / n_cases` (integer
//!   division, `1e8 / n` in nnU-Net) foreground values with replacement (masked rejection, see
//!   [`nnunet_core::compat::numpy_random`]).
//! * Per channel, the samples of all cases are concatenated in case order and summarised as
//!   numpy does on the float32 array: mean and std with float32 pairwise sums, min, max, and the
//!   0.5/50/99.5 linear percentiles (see [`nnunet_core::compat::statistics`]). If some case has no foreground,
//!   numpy's concatenation promotes the samples to float64 and so do we.
//!
//! Memory stays bounded: the up to 1e8 samples per channel are never stored. Per case only the
//! cropped foreground values of each channel (in C order) and the random generator state every
//! 65536 draws are kept (or the samples themselves when there are fewer samples than foreground
//! voxels). Order statistics come from a value histogram built in the per-case pass; the mean and
//! std passes replay the draws from the checkpoints, in parallel along numpy's pairwise-sum tree.

use std::path::Path;

use ndarray::{ArrayView3, Axis, Zip};
use serde::{Deserialize, Serialize};

use crate::cropping::{bbox_shape, crop_to_nonzero};
use nnunet_core::compat::numpy_random::RandomState;
use nnunet_core::compat::statistics::{
    ValueHistogram, mean_f64_from_sum, mean_from_sum, median_f64, pairwise_sum_parallel,
    squared_deviation, std_f64_from_sum_of_squares, std_from_sum_of_squares,
};
use nnunet_core::error::{Error, Result};
use nnunet_core::io::Reader;
use nnunet_core::parallel::try_map_ordered;
use nnunet_dataset::{DatasetJson, TrainingCase, training_cases};

/// nnU-Net's total number of foreground samples per channel (`10e7`), spread over the cases.
pub const DEFAULT_TOTAL_SAMPLES: u64 = 100_000_000;

/// The seed of each case's `RandomState` for foreground sampling.
pub const SAMPLING_SEED: u32 = 1234;

/// Draws between two saved generator states when replaying samples.
const CHECKPOINT_INTERVAL: u64 = 1 << 16;

/// The file name nnU-Net gives the fingerprint in the preprocessed dataset folder.
pub const FINGERPRINT_FILE: &str = "dataset_fingerprint.json";

/// Foreground intensity statistics of one channel (fields in nnU-Net's sorted key order). Mean
/// and std are float32 values, the percentiles float64 interpolations.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntensityProperties {
    /// The largest sampled value.
    pub max: f64,
    /// The mean of the samples (a float32 value).
    pub mean: f64,
    /// The 50th percentile.
    pub median: f64,
    /// The smallest sampled value.
    pub min: f64,
    /// The 0.5th percentile.
    pub percentile_00_5: f64,
    /// The 99.5th percentile.
    pub percentile_99_5: f64,
    /// The standard deviation (ddof 0, a float32 value).
    pub std: f64,
}

/// The dataset fingerprint, as in `dataset_fingerprint.json` (fields in sorted key order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Per channel, in channel order; stored in JSON as an object keyed `"0"`, `"1"`, … (sorted as
    /// strings, as Python's `sort_keys` does).
    #[serde(with = "channel_map")]
    pub foreground_intensity_properties_per_channel: Vec<IntensityProperties>,
    /// The median over cases of `voxels after cropping / voxels before cropping`.
    pub median_relative_size_after_cropping: f64,
    /// Per case, the spatial shape after cropping, in array axis order.
    pub shapes_after_crop: Vec<[usize; 3]>,
    /// Per case, the spacing reported by the reader, in array axis order.
    pub spacings: Vec<[f64; 3]>,
}

mod channel_map {
    use std::collections::BTreeMap;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::IntensityProperties;

    pub(super) fn serialize<S: Serializer>(
        v: &[IntensityProperties],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<String, &IntensityProperties> = v
            .iter()
            .enumerate()
            .map(|(i, p)| (i.to_string(), p))
            .collect();
        map.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<IntensityProperties>, D::Error> {
        let map: BTreeMap<String, IntensityProperties> = BTreeMap::deserialize(d)?;
        let mut indexed = Vec::with_capacity(map.len());
        for (k, v) in map {
            let i: usize = k.parse().map_err(|_| {
                D::Error::custom(format!("channel key '{k}' is not a channel index"))
            })?;
            indexed.push((i, v));
        }
        indexed.sort_by_key(|(i, _)| *i);
        for (expected, (i, _)) in indexed.iter().enumerate() {
            if *i != expected {
                return Err(D::Error::custom(format!(
                    "channel keys must be 0..{}; channel {expected} is missing",
                    indexed.len()
                )));
            }
        }
        Ok(indexed.into_iter().map(|(_, v)| v).collect())
    }
}

impl Fingerprint {
    /// The JSON text nnU-Net writes (`json.dump(..., sort_keys=True, indent=4)`): keys sorted at
    /// every level, four-space indentation. Numbers are written in their shortest round-trip form.
    pub fn to_json_string(&self) -> String {
        nnunet_core::compat::json::to_indented_string(self)
            .expect("serialising a fingerprint to memory cannot fail")
    }

    /// Parses the text of a `dataset_fingerprint.json`.
    pub fn from_json_str(text: &str) -> std::result::Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("not a valid dataset fingerprint: {e}"))
    }

    /// The fingerprint as a JSON value, keys in sorted order.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a fingerprint is representable as JSON")
    }

    /// Reads a `dataset_fingerprint.json`; an error names the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text).map_err(|reason| Error::dataset_file(path, reason))
    }

    /// Writes the fingerprint as JSON to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json_string()).map_err(|e| Error::io(path, e))
    }

    /// The number of channels.
    pub fn num_channels(&self) -> usize {
        self.foreground_intensity_properties_per_channel.len()
    }
}

/// What [`extract_fingerprint`] reports while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FingerprintProgress {
    /// `done` of `total` cases have been read and analysed.
    CaseDone {
        /// Cases finished so far.
        done: usize,
        /// All cases.
        total: usize,
    },
    /// The statistics of `channel` (0-based) of `channels` are being computed.
    Statistics {
        /// The channel being summarised.
        channel: usize,
        /// All channels.
        channels: usize,
    },
}

/// A progress callback for [`FingerprintOptions`].
pub type ProgressCallback<'a> = &'a (dyn Fn(FingerprintProgress) + Sync);

/// A progress callback that drives an [`indicatif::ProgressBar`] of one step per case: it sets the
/// length, advances per case, and shows the statistics phase in the message.
pub fn progress_bar_callback(
    bar: &indicatif::ProgressBar,
) -> impl Fn(FingerprintProgress) + Sync + '_ {
    move |p| match p {
        FingerprintProgress::CaseDone { done, total } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
        FingerprintProgress::Statistics { channel, channels } => {
            bar.set_message(format!(
                "intensity statistics, channel {}/{channels}",
                channel + 1
            ));
        }
    }
}

/// Settings of [`extract_fingerprint`].
#[derive(Clone, Copy)]
pub struct FingerprintOptions<'a> {
    /// Worker threads (nnU-Net's `-np`); at least 1.
    pub num_processes: usize,
    /// Foreground samples per channel over the whole dataset; each case draws
    /// `total_samples / n_cases`. nnU-Net uses [`DEFAULT_TOTAL_SAMPLES`].
    pub total_samples: u64,
    /// Called as cases finish and statistics are computed.
    pub progress: Option<ProgressCallback<'a>>,
}

impl Default for FingerprintOptions<'_> {
    fn default() -> Self {
        Self {
            num_processes: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            total_samples: DEFAULT_TOTAL_SAMPLES,
            progress: None,
        }
    }
}

impl std::fmt::Debug for FingerprintOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FingerprintOptions")
            .field("num_processes", &self.num_processes)
            .field("total_samples", &self.total_samples)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Computes the fingerprint of `cases` (in this order), each with `num_channels` channels, read
/// with `reader` on `num_processes` threads, as `nnUNetv2_extract_fingerprint` does.
/// `on_case_done` is called once per case read and analysed (from worker threads).
pub fn extract_fingerprint(
    cases: &[TrainingCase],
    reader: &dyn Reader,
    num_channels: usize,
    num_processes: usize,
    on_case_done: &(dyn Fn() + Sync),
) -> Result<Fingerprint> {
    let progress = |p: FingerprintProgress| {
        if let FingerprintProgress::CaseDone { done, .. } = p
            && done > 0
        {
            on_case_done();
        }
    };
    let options = FingerprintOptions {
        num_processes,
        total_samples: DEFAULT_TOTAL_SAMPLES,
        progress: Some(&progress),
    };
    extract_fingerprint_with(cases, reader, num_channels, &options)
}

/// Computes the fingerprint of the raw dataset in `dataset_folder` (its training cases as
/// [`training_cases`] finds them, with the channels of `dataset.json`) with `reader`.
pub fn extract_dataset_fingerprint(
    dataset_folder: &Path,
    dataset_json: &DatasetJson,
    reader: &dyn Reader,
    options: &FingerprintOptions<'_>,
) -> Result<Fingerprint> {
    let cases = training_cases(dataset_folder, dataset_json)?;
    if cases.is_empty() {
        return Err(Error::dataset(format!(
            "{}: no training cases found (expected imagesTr/<case>_0000{} files or a 'dataset' \
             entry in dataset.json)",
            dataset_folder.display(),
            dataset_json.file_ending
        )));
    }
    extract_fingerprint_with(&cases, reader, dataset_json.num_channels(), options)
}

/// [`extract_fingerprint`] with all settings: the number of samples and a progress callback that
/// also reports the statistics phase.
pub fn extract_fingerprint_with(
    cases: &[TrainingCase],
    reader: &dyn Reader,
    num_channels: usize,
    options: &FingerprintOptions<'_>,
) -> Result<Fingerprint> {
    if cases.is_empty() {
        return Err(Error::dataset("a fingerprint needs at least one case"));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.num_processes.max(1))
        .build()
        .map_err(|e| Error::dataset(format!("cannot start worker threads: {e}")))?;
    let per_case = options.total_samples / cases.len() as u64;
    let total = cases.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    if let Some(p) = options.progress {
        p(FingerprintProgress::CaseDone { done: 0, total });
    }
    let analyses: Vec<CaseAnalysis> = pool.install(|| {
        try_map_ordered(cases, |case| {
            let a = analyze_case(case, num_channels, reader, per_case)?;
            let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if let Some(p) = options.progress {
                p(FingerprintProgress::CaseDone { done: d, total });
            }
            Ok(a)
        })
    })?;

    let mut properties = Vec::with_capacity(num_channels);
    for channel in 0..num_channels {
        if let Some(p) = options.progress {
            p(FingerprintProgress::Statistics {
                channel,
                channels: num_channels,
            });
        }
        let streams: Vec<&ChannelSamples> = analyses.iter().map(|a| &a.channels[channel]).collect();
        let props = pool
            .install(|| channel_statistics(&streams, options.num_processes.max(1)))
            .ok_or_else(|| {
                Error::dataset(format!(
                    "channel {channel} has no foreground voxels in any case (no voxel with a \
                     label > 0 inside the nonzero region), so its intensity statistics cannot be \
                     computed; check the label maps in labelsTr"
                ))
            })?;
        properties.push(props);
    }
    let relative: Vec<f64> = analyses.iter().map(|a| a.relative_size).collect();
    Ok(Fingerprint {
        foreground_intensity_properties_per_channel: properties,
        median_relative_size_after_cropping: median_f64(&relative),
        shapes_after_crop: analyses.iter().map(|a| a.shape_after_crop).collect(),
        spacings: analyses.iter().map(|a| a.spacing).collect(),
    })
}

/// The samples of one channel of one case, kept in a form that can be replayed from any position.
#[derive(Debug)]
struct ChannelSamples {
    /// How many samples this case contributes (0 without foreground).
    count: u64,
    source: SampleSource,
    /// Every sampled value with its multiplicity.
    histogram: ValueHistogram,
}

#[derive(Debug)]
enum SampleSource {
    /// The samples themselves (used when there are no more samples than foreground voxels).
    Stored(Vec<f32>),
    /// The foreground values and the generator state before every
    /// [`CHECKPOINT_INTERVAL`]-th draw.
    Replay {
        foreground: Vec<f32>,
        checkpoints: Vec<RandomState>,
    },
}

/// What the fingerprint keeps of one case.
#[derive(Debug)]
struct CaseAnalysis {
    shape_after_crop: [usize; 3],
    spacing: [f64; 3],
    relative_size: f64,
    channels: Vec<ChannelSamples>,
}

fn case_error(case: &TrainingCase, e: Error) -> Error {
    Error::dataset(format!("case '{}': {e}", case.id))
}

fn analyze_case(
    case: &TrainingCase,
    num_channels: usize,
    reader: &dyn Reader,
    per_case: u64,
) -> Result<CaseAnalysis> {
    let files: Vec<&Path> = case.images.iter().map(|p| p.as_path()).collect();
    let image = reader
        .read_images(&files)
        .map_err(|e| case_error(case, e))?;
    let seg = reader
        .read_segmentation(&case.label)
        .map_err(|e| case_error(case, e))?;
    let spacing = image.properties.spacing;
    let data = image.data;
    let first = case
        .images
        .first()
        .map(|p| p.as_path())
        .unwrap_or(Path::new(""));
    if data.shape()[0] != num_channels {
        return Err(Error::dataset_file(
            first,
            format!(
                "case '{}' has {} image channel(s) but dataset.json declares {num_channels} \
                 (channel_names)",
                case.id,
                data.shape()[0]
            ),
        ));
    }
    if seg.data.shape()[1..] != data.shape()[1..] {
        return Err(Error::dataset_file(
            &case.label,
            format!(
                "the label map of case '{}' has shape {:?} but its images have {:?}",
                case.id,
                &seg.data.shape()[1..],
                &data.shape()[1..]
            ),
        ));
    }
    let shape_before: usize = data.shape()[1..].iter().product();
    let cropped = crop_to_nonzero(data, Some(seg.data));
    let shape_after = bbox_shape(&cropped.bbox);
    let foreground_mask = cropped.seg.index_axis(Axis(0), 0).map(|&l| l > 0);
    let mut rng = RandomState::new(SAMPLING_SEED);
    let channels = cropped
        .data
        .axis_iter(Axis(0))
        .map(|channel| sample_channel(channel, foreground_mask.view(), per_case, &mut rng))
        .collect();
    Ok(CaseAnalysis {
        shape_after_crop: shape_after,
        spacing,
        relative_size: shape_after.iter().product::<usize>() as f64 / shape_before as f64,
        channels,
    })
}

/// Draws the samples of one channel (continuing `rng`) and keeps what is needed to replay them.
fn sample_channel(
    channel: ArrayView3<'_, f32>,
    mask: ArrayView3<'_, bool>,
    per_case: u64,
    rng: &mut RandomState,
) -> ChannelSamples {
    let mut foreground = Vec::new();
    Zip::from(&channel).and(&mask).for_each(|&v, &m| {
        if m {
            foreground.push(v);
        }
    });
    if foreground.is_empty() || per_case == 0 {
        return ChannelSamples {
            count: 0,
            source: SampleSource::Stored(Vec::new()),
            histogram: ValueHistogram::default(),
        };
    }
    let n = foreground.len() as u64;
    let mut counts = vec![0u64; foreground.len()];
    let store = per_case <= n;
    let source = if store {
        let mut samples = Vec::with_capacity(per_case as usize);
        rng.for_each_choice(n, per_case, |i| {
            counts[i as usize] += 1;
            samples.push(foreground[i as usize]);
        });
        SampleSource::Stored(samples)
    } else {
        let mut checkpoints = Vec::with_capacity(per_case.div_ceil(CHECKPOINT_INTERVAL) as usize);
        let mut drawn = 0u64;
        while drawn < per_case {
            checkpoints.push(rng.clone());
            let chunk = CHECKPOINT_INTERVAL.min(per_case - drawn);
            rng.for_each_choice(n, chunk, |i| counts[i as usize] += 1);
            drawn += chunk;
        }
        SampleSource::Replay {
            foreground: Vec::new(),
            checkpoints,
        }
    };
    let histogram = ValueHistogram::from_counts(
        foreground
            .iter()
            .zip(&counts)
            .map(|(&v, &c)| (v, c))
            .collect(),
    );
    let source = match source {
        SampleSource::Replay { checkpoints, .. } => SampleSource::Replay {
            foreground,
            checkpoints,
        },
        stored => stored,
    };
    ChannelSamples {
        count: per_case,
        source,
        histogram,
    }
}

/// A cursor over the samples of one channel, concatenated over cases.
struct Cursor<'a> {
    streams: &'a [&'a ChannelSamples],
    /// The current case and the position within its samples.
    case: usize,
    offset: u64,
    /// The generator of the current case, positioned at `offset` (replayed cases only).
    rng: Option<RandomState>,
}

impl<'a> Cursor<'a> {
    /// A cursor at sample `start` of the concatenation.
    fn new(streams: &'a [&'a ChannelSamples], start: u64) -> Self {
        let mut case = 0;
        let mut offset = start;
        while case < streams.len() && offset >= streams[case].count {
            offset -= streams[case].count;
            case += 1;
        }
        let mut cursor = Self {
            streams,
            case,
            offset,
            rng: None,
        };
        cursor.position_rng();
        cursor
    }

    /// Restores the generator of the current case at the current offset.
    fn position_rng(&mut self) {
        self.rng = None;
        let Some(stream) = self.streams.get(self.case) else {
            return;
        };
        if let SampleSource::Replay {
            foreground,
            checkpoints,
        } = &stream.source
        {
            let k = self.offset / CHECKPOINT_INTERVAL;
            let mut rng = checkpoints[k as usize].clone();
            let skip = self.offset - k * CHECKPOINT_INTERVAL;
            rng.for_each_choice(foreground.len() as u64, skip, |_| {});
            self.rng = Some(rng);
        }
    }

    /// Writes the next `out.len()` samples into `out`.
    fn fill(&mut self, mut out: &mut [f32]) {
        while !out.is_empty() {
            let stream = self.streams[self.case];
            let available = (stream.count - self.offset) as usize;
            let take = available.min(out.len());
            let (head, tail) = out.split_at_mut(take);
            match &stream.source {
                SampleSource::Stored(samples) => {
                    let start = self.offset as usize;
                    head.copy_from_slice(&samples[start..start + take]);
                }
                SampleSource::Replay { foreground, .. } => {
                    let rng = self.rng.as_mut().expect("replay cursor has a generator");
                    let mut slots = head.iter_mut();
                    rng.for_each_choice(foreground.len() as u64, take as u64, |i| {
                        if let Some(slot) = slots.next() {
                            *slot = foreground[i as usize];
                        }
                    });
                }
            }
            self.offset += take as u64;
            out = tail;
            if self.offset == stream.count {
                self.case += 1;
                self.offset = 0;
                self.position_rng();
            }
        }
    }
}

/// The statistics of one channel from its per-case samples, or `None` without any sample.
///
/// nnU-Net concatenates the per-case sample arrays with `np.concatenate`; a case without
/// foreground contributes an empty Python list, which numpy promotes to float64, so then the
/// whole channel is summarised in float64 (pairwise float64 sums, float64 percentile
/// differences). Otherwise everything is float32 as described in [`nnunet_core::compat::statistics`].
fn channel_statistics(streams: &[&ChannelSamples], threads: usize) -> Option<IntensityProperties> {
    let histogram = ValueHistogram::merge(streams.iter().map(|s| &s.histogram));
    let n = histogram.len() as usize;
    if n == 0 {
        return None;
    }
    let float64 = streams.iter().any(|s| s.count == 0);
    // Leaves of the parallel sum: a few per thread, at least 1 M samples each.
    let grain = (n / (threads * 4)).max(1 << 20);
    let (mean, std, percentile): (f64, f64, fn(&ValueHistogram, f64) -> f64) = if float64 {
        let open = |map: fn(f32, f64) -> f64, m: f64| {
            move |start: usize| {
                let mut c = Cursor::new(streams, start as u64);
                let mut buf = [0f32; 128];
                move |out: &mut [f64]| {
                    let b = &mut buf[..out.len()];
                    c.fill(b);
                    for (o, &v) in out.iter_mut().zip(b.iter()) {
                        *o = map(v, m);
                    }
                }
            }
        };
        let sum: f64 = pairwise_sum_parallel(n, &open(|v, _| v as f64, 0.0), grain);
        let mean = mean_f64_from_sum(sum, n);
        let sum_sq: f64 = pairwise_sum_parallel(
            n,
            &open(|v, m| (v as f64 - m) * (v as f64 - m), mean),
            grain,
        );
        (
            mean,
            std_f64_from_sum_of_squares(sum_sq, n),
            ValueHistogram::percentile_f64,
        )
    } else {
        let sum: f32 = pairwise_sum_parallel(
            n,
            &|start: usize| {
                let mut c = Cursor::new(streams, start as u64);
                move |out: &mut [f32]| c.fill(out)
            },
            grain,
        );
        let mean = mean_from_sum(sum, n);
        let sum_sq: f32 = pairwise_sum_parallel(
            n,
            &|start: usize| {
                let mut c = Cursor::new(streams, start as u64);
                move |out: &mut [f32]| {
                    c.fill(out);
                    for v in out.iter_mut() {
                        *v = squared_deviation(*v, mean);
                    }
                }
            },
            grain,
        );
        (
            mean as f64,
            std_from_sum_of_squares(sum_sq, n) as f64,
            ValueHistogram::percentile,
        )
    };
    Some(IntensityProperties {
        max: histogram.max()? as f64,
        mean,
        median: percentile(&histogram, 50.0),
        min: histogram.min()? as f64,
        percentile_00_5: percentile(&histogram, 0.5),
        percentile_99_5: percentile(&histogram, 99.5),
        std,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnunet_core::compat::statistics::{
        mean_f32, pairwise_sum, percentile_linear_f64, percentile_linear_sorted, std_f32,
    };

    /// Builds the streams of one channel from explicit foregrounds and checks the streamed
    /// statistics against the materialised sample array.
    fn check(foregrounds: &[Vec<f32>], per_case: u64) {
        let mut samples_all = Vec::new();
        let mut streams = Vec::new();
        for fg in foregrounds {
            let mut rng = RandomState::new(SAMPLING_SEED);
            // A second channel continues the generator: sample a dummy channel first.
            let (z, y, x) = (1, 1, fg.len());
            let data = ndarray::Array3::from_shape_vec((z, y, x), fg.clone()).unwrap();
            let mask = ndarray::Array3::from_elem((z, y, x), true);
            let _ = sample_channel(data.view(), mask.view(), 7, &mut rng);
            let mut reference = rng.clone();
            streams.push(sample_channel(data.view(), mask.view(), per_case, &mut rng));
            if !fg.is_empty() {
                reference.for_each_choice(fg.len() as u64, per_case, |i| {
                    samples_all.push(fg[i as usize])
                });
            }
        }
        let refs: Vec<&ChannelSamples> = streams.iter().collect();
        let got = channel_statistics(&refs, 2).unwrap();
        let mut sorted = samples_all.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(got.min, sorted[0] as f64);
        assert_eq!(got.max, *sorted.last().unwrap() as f64);
        if foregrounds.iter().any(|f| f.is_empty()) {
            // numpy promotes to float64 (concatenation with an empty list).
            let v: Vec<f64> = samples_all.iter().map(|&x| x as f64).collect();
            let n = v.len();
            let mean = pairwise_sum(&v) / n as f64;
            let sq: Vec<f64> = v.iter().map(|x| (x - mean) * (x - mean)).collect();
            assert_eq!(got.mean, mean);
            assert_eq!(got.std, (pairwise_sum(&sq) / n as f64).sqrt());
            let s64: Vec<f64> = sorted.iter().map(|&x| x as f64).collect();
            for (p, g) in [
                (50.0, got.median),
                (0.5, got.percentile_00_5),
                (99.5, got.percentile_99_5),
            ] {
                assert_eq!(g, percentile_linear_f64(n, p, |k| s64[k]));
            }
        } else {
            assert_eq!(got.mean, mean_f32(&samples_all) as f64);
            assert_eq!(got.std, std_f32(&samples_all) as f64);
            assert_eq!(got.median, percentile_linear_sorted(&sorted, 50.0));
            assert_eq!(got.percentile_00_5, percentile_linear_sorted(&sorted, 0.5));
            assert_eq!(got.percentile_99_5, percentile_linear_sorted(&sorted, 99.5));
        }
        // Cursors started anywhere agree with the materialised samples.
        for start in [0usize, 1, 99_999, 150_000, samples_all.len() - 3] {
            let mut c = Cursor::new(&refs, start as u64);
            let mut out = vec![0f32; 3];
            c.fill(&mut out);
            assert_eq!(out, samples_all[start..start + 3], "start {start}");
        }
    }

    #[test]
    fn streamed_statistics_equal_materialised_ones() {
        let fg = |n: usize, k: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7919 + k * 31) % 1013) as f32 * 0.37 - 20.0)
                .collect()
        };
        // Replayed (fewer voxels than samples) and stored samples, all float32.
        check(&[fg(300, 0), fg(5000, 1), fg(1_000_000, 2)], 200_000);
        // With an empty case in between: float64 statistics.
        check(
            &[fg(300, 0), Vec::new(), fg(5000, 1), fg(1_000_000, 2)],
            200_000,
        );
    }

    #[test]
    fn fingerprint_json_round_trip_with_sorted_keys() {
        let p = IntensityProperties {
            max: 2.0,
            mean: 1.5,
            median: 1.0,
            min: 0.0,
            percentile_00_5: 0.25,
            percentile_99_5: 1.75,
            std: 0.5,
        };
        let fp = Fingerprint {
            foreground_intensity_properties_per_channel: vec![p; 11],
            median_relative_size_after_cropping: 0.75,
            shapes_after_crop: vec![[1, 2, 3]],
            spacings: vec![[999.0, 1.0, 0.8999999761581421]],
        };
        let text = fp.to_json_string();
        assert!(text.starts_with("{\n    \"foreground_intensity_properties_per_channel\": {\n        \"0\": {\n            \"max\": 2.0,"));
        let keys: Vec<usize> = ["\"0\"", "\"1\"", "\"10\"", "\"2\""]
            .iter()
            .map(|k| text.find(k).unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(Fingerprint::from_json_str(&text).unwrap(), fp);
        let ints = r#"{"foreground_intensity_properties_per_channel": {"0": {"max": 1, "mean": 1,
            "median": 1, "min": 1, "percentile_00_5": 1, "percentile_99_5": 1, "std": 0}},
            "median_relative_size_after_cropping": 1.0, "shapes_after_crop": [[1, 4, 4]],
            "spacings": [[999, 1, 1]]}"#;
        assert_eq!(
            Fingerprint::from_json_str(ints).unwrap().spacings,
            [[999.0, 1.0, 1.0]]
        );
        let gap = r#"{"foreground_intensity_properties_per_channel": {"1": {"max": 1, "mean": 1,
            "median": 1, "min": 1, "percentile_00_5": 1, "percentile_99_5": 1, "std": 0}},
            "median_relative_size_after_cropping": 1.0, "shapes_after_crop": [],
            "spacings": []}"#;
        assert!(Fingerprint::from_json_str(gap).is_err());
    }
}
