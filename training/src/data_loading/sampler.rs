//! Drawing one training patch per batch position, with nnU-Net's `nnUNetDataLoader` semantics.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use memmap2::Mmap;
use ndarray::{Array4, ArrayView4, ArrayViewD, Axis, Ix3, Ix4};
use ndarray_npy::ViewNpyExt;
use rand::{Rng, RngCore};

use crate::{TrainerSettings, forced_foreground};
use nnunet_core::augmentation::Sample;
use nnunet_core::error::{Error, Result};
use nnunet_preprocessing::storage::{CaseFiles, MappedArray, read_properties};

/// Which samples of a batch are forced to contain foreground.
#[derive(Clone, Debug, PartialEq)]
pub enum Oversampling {
    /// nnU-Net's default: sample `j` of a batch of `b` is forced iff
    /// `j >= round(b * (1 - fraction))` (half to even, as Python).
    Fixed {
        /// The share of the batch forced (nnU-Net's `oversample_foreground_percent`).
        fraction: f64,
    },
    /// Each sample is forced with this probability (`uniform() < probability`).
    Probabilistic {
        /// The probability that a sample is forced.
        probability: f64,
    },
}

impl Oversampling {
    /// The rule a trainer's settings ask for. With `oversampling_matches_fixed_rule`, the
    /// probability is the share of samples the fixed rule would force for `batch_size`.
    pub fn from_settings(settings: &TrainerSettings, batch_size: usize) -> Self {
        let p = settings.oversample_foreground_percent;
        if !settings.probabilistic_oversampling {
            return Oversampling::Fixed { fraction: p };
        }
        let probability = if settings.oversampling_matches_fixed_rule && batch_size > 0 {
            let forced = forced_foreground(batch_size, p);
            forced.iter().filter(|f| **f).count() as f64 / batch_size as f64
        } else {
            p
        };
        Oversampling::Probabilistic { probability }
    }

    /// Whether sample `j` of a batch of `batch_size` is forced to contain foreground; the
    /// probabilistic rule draws one uniform number from `rng`.
    pub fn is_forced(&self, j: usize, batch_size: usize, rng: &mut dyn RngCore) -> bool {
        match *self {
            Oversampling::Fixed { fraction } => forced_foreground(batch_size, fraction)
                .get(j)
                .copied()
                .unwrap_or(false),
            Oversampling::Probabilistic { probability } => rng.random::<f64>() < probability,
        }
    }
}

/// What a [`PatchSampler`] samples from and how.
#[derive(Clone, Debug)]
pub struct SamplerConfig {
    /// The preprocessed folder (`nnUNet_preprocessed/<ds>/<data_identifier>`).
    pub folder: PathBuf,
    /// The case identifiers to sample from (the fold's training or validation cases).
    pub cases: Vec<String>,
    /// The patch size sampled: 3 values (`[z, y, x]`), or 2 (`[y, x]`) for a `2d`
    /// configuration. Training passes the larger initial patch size, validation the final one.
    pub patch_size: Vec<usize>,
    /// The patch size the network sees (the plans' `patch_size`); `patch_size - final_patch_size`
    /// is how far a box may reach beyond the case (nnU-Net's `need_to_pad`).
    pub final_patch_size: Vec<usize>,
    /// The forced-foreground rule.
    pub oversampling: Oversampling,
    /// Whether the dataset has an ignore label: unforced samples are then centred on annotated
    /// voxels (the `-1,…` region of `class_locations`), as nnU-Net does.
    pub has_ignore_label: bool,
    /// Cascade: the folder with the previous stage's segmentation of every case, `<case>.npy`,
    /// int16 (or uint8/int8/int32/int64) of shape `[1, z, y, x]` or `[z, y, x]` in the case's
    /// preprocessed geometry. It becomes segmentation channel 1.
    pub previous_stage_folder: Option<PathBuf>,
}

/// One drawn sample and where it came from.
#[derive(Clone, Debug)]
pub struct CasePatch {
    /// The case identifier.
    pub case: String,
    /// Whether the sample was forced to contain foreground.
    pub forced_foreground: bool,
    /// The box, `[lo, hi)` per spatial axis `[z, y, x]`, in the case's voxel coordinates
    /// (may reach outside the case).
    pub bbox: [[i64; 2]; 3],
    /// Image `[c, z, y, x]` and segmentation `[1 (+1 with a cascade), z, y, x]`.
    pub sample: Sample,
}

type Shape4 = (usize, usize, usize, usize);

/// Where [`PatchSampler::draw_into`] put a patch.
pub(crate) struct Drawn {
    pub case: String,
    pub bbox: [[i64; 2]; 3],
    pub image_shape: Shape4,
    pub seg_shape: Shape4,
}

/// An open case: its memory maps and class locations.
struct OpenCase {
    data: MappedArray,
    seg: MappedArray,
    prev: Option<(Mmap, PathBuf)>,
    /// Classes (or regions) with at least one location, in key order, the annotated-voxel region
    /// (key starting with `-1`) excluded.
    foreground: Vec<Vec<[u32; 3]>>,
    /// The annotated-voxel region's locations (ignore label), possibly empty.
    annotated: Vec<[u32; 3]>,
    /// Spatial shape `[z, y, x]`.
    shape: [usize; 3],
}

/// Draws training patches from a preprocessed folder; shareable between threads (cases are
/// opened once, on first use, and their memory maps kept).
pub struct PatchSampler {
    config: SamplerConfig,
    patch: [usize; 3],
    final_patch: [usize; 3],
    is_2d: bool,
    cases: Vec<OnceLock<OpenCase>>,
}

impl std::fmt::Debug for PatchSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatchSampler")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn as_3d(size: &[usize], what: &str) -> Result<[usize; 3]> {
    match *size {
        [y, x] => Ok([1, y, x]),
        [z, y, x] => Ok([z, y, x]),
        _ => Err(Error::training(format!(
            "data loading: the {what} must have 2 or 3 values, not {}",
            size.len()
        ))),
    }
}

impl PatchSampler {
    /// A sampler over `config.cases`; cases are opened lazily, so a missing or broken case is
    /// reported when it is first drawn.
    pub fn new(config: SamplerConfig) -> Result<Self> {
        if config.cases.is_empty() {
            return Err(Error::training(
                "data loading: there are no cases to sample from",
            ));
        }
        if config.patch_size.len() != config.final_patch_size.len() {
            return Err(Error::training(format!(
                "data loading: patch size {:?} and final patch size {:?} differ in dimension",
                config.patch_size, config.final_patch_size
            )));
        }
        let patch = as_3d(&config.patch_size, "patch size")?;
        let final_patch = as_3d(&config.final_patch_size, "final patch size")?;
        if patch.contains(&0) || final_patch.contains(&0) {
            return Err(Error::training(
                "data loading: patch sizes must be positive",
            ));
        }
        let is_2d = config.patch_size.len() == 2;
        let cases = config.cases.iter().map(|_| OnceLock::new()).collect();
        Ok(PatchSampler {
            config,
            patch,
            final_patch,
            is_2d,
            cases,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The case identifiers.
    pub fn cases(&self) -> &[String] {
        &self.config.cases
    }

    /// Whether the patches are 2D slabs (`[c, 1, y, x]`).
    pub fn is_2d(&self) -> bool {
        self.is_2d
    }

    /// The sampled patch size as `[z, y, x]` (`z = 1` for 2D).
    pub fn patch_size_3d(&self) -> [usize; 3] {
        self.patch
    }

    /// Draws a batch as nnU-Net does: `batch_size` cases uniformly with replacement first, then
    /// per position the forced-foreground decision and the patch.
    pub fn draw_batch(&self, batch_size: usize, rng: &mut dyn RngCore) -> Result<Vec<CasePatch>> {
        let n = self.cases.len();
        let picks: Vec<usize> = (0..batch_size).map(|_| rng.random_range(0..n)).collect();
        picks
            .into_iter()
            .enumerate()
            .map(|(j, case)| {
                let forced = self.config.oversampling.is_forced(j, batch_size, rng);
                self.draw(case, forced, rng)
            })
            .collect()
    }

    /// Draws one patch of case number `case` (an index into [`PatchSampler::cases`]).
    pub fn draw(&self, case: usize, force_fg: bool, rng: &mut dyn RngCore) -> Result<CasePatch> {
        let (mut image, mut seg) = (Vec::new(), Vec::new());
        let drawn = self.draw_into(case, force_fg, rng, &mut image, &mut seg)?;
        let invalid =
            |e: ndarray::ShapeError| case_error(&drawn.case, Error::training(e.to_string()));
        Ok(CasePatch {
            forced_foreground: force_fg,
            bbox: drawn.bbox,
            sample: Sample {
                image: Array4::from_shape_vec(drawn.image_shape, image).map_err(invalid)?,
                segmentation: Array4::from_shape_vec(drawn.seg_shape, seg).map_err(invalid)?,
            },
            case: drawn.case,
        })
    }

    /// [`PatchSampler::draw`], appending the image and segmentation values (C order) to `image`
    /// and `seg` instead of allocating arrays: the loader collates this way without a copy.
    pub(crate) fn draw_into(
        &self,
        case: usize,
        force_fg: bool,
        rng: &mut dyn RngCore,
        image: &mut Vec<f32>,
        seg: &mut Vec<i16>,
    ) -> Result<Drawn> {
        let name = self.config.cases.get(case).ok_or_else(|| {
            Error::training(format!("data loading: there is no case number {case}"))
        })?;
        let open = self.open(case)?;
        let class = if force_fg {
            if open.foreground.is_empty() {
                // nnU-Net: a case without foreground falls back to a random box; with an ignore
                // label the annotated region is then the only eligible "class".
                (!open.annotated.is_empty()).then_some(open.annotated.as_slice())
            } else {
                let k = rng.random_range(0..open.foreground.len());
                Some(open.foreground[k].as_slice())
            }
        } else if self.config.has_ignore_label {
            (!open.annotated.is_empty()).then_some(open.annotated.as_slice())
        } else {
            None
        };
        let bbox = choose_bbox(open.shape, self.patch, self.final_patch, class, rng);
        let (image_shape, seg_shape) = self
            .read_into(open, &bbox, image, seg)
            .map_err(|e| case_error(name, e))?;
        Ok(Drawn {
            case: name.clone(),
            bbox,
            image_shape,
            seg_shape,
        })
    }

    /// Reads the box `bbox` (`[lo, hi)` per axis `[z, y, x]`, may reach outside the case) of case
    /// number `case`: data padded with `0`, segmentation with `-1`.
    pub fn read_box(&self, case: usize, bbox: &[[i64; 2]; 3]) -> Result<Sample> {
        let name = self.config.cases.get(case).ok_or_else(|| {
            Error::training(format!("data loading: there is no case number {case}"))
        })?;
        let open = self.open(case)?;
        let (mut image, mut seg) = (Vec::new(), Vec::new());
        let (image_shape, seg_shape) = self
            .read_into(open, bbox, &mut image, &mut seg)
            .map_err(|e| case_error(name, e))?;
        let invalid = |e: ndarray::ShapeError| case_error(name, Error::training(e.to_string()));
        Ok(Sample {
            image: Array4::from_shape_vec(image_shape, image).map_err(invalid)?,
            segmentation: Array4::from_shape_vec(seg_shape, seg).map_err(invalid)?,
        })
    }

    /// Appends the box of the data and the segmentation (plus the previous stage's as a second
    /// channel) to `image` and `seg`; returns their shapes.
    fn read_into(
        &self,
        open: &OpenCase,
        bbox: &[[i64; 2]; 3],
        image: &mut Vec<f32>,
        seg: &mut Vec<i16>,
    ) -> Result<(Shape4, Shape4)> {
        let image_shape = crop_append(open.data.view_f32()?, bbox, 0.0f32, image);
        let mut seg_shape = crop_append(open.seg.view_i16()?, bbox, -1i16, seg);
        if let Some((map, path)) = &open.prev {
            let prev = crop_append(view_prev(map, path)?, bbox, -1i16, seg);
            seg_shape.0 += prev.0;
        }
        Ok((image_shape, seg_shape))
    }

    fn open(&self, case: usize) -> Result<&OpenCase> {
        let cell = &self.cases[case];
        if let Some(open) = cell.get() {
            return Ok(open);
        }
        let name = &self.config.cases[case];
        let open = self.load(name).map_err(|e| case_error(name, e))?;
        // Another thread may have opened it meanwhile; either copy is the same.
        let _ = cell.set(open);
        cell.get()
            .ok_or_else(|| Error::training(format!("training case '{name}' could not be opened")))
    }

    fn load(&self, name: &str) -> Result<OpenCase> {
        let files = CaseFiles::new(&self.config.folder, name);
        let properties = read_properties(&files.properties)?;
        let data = MappedArray::open(&files.data)?;
        let seg = MappedArray::open(&files.seg)?;
        let dshape = data.view_f32()?.dim();
        let shape = [dshape.1, dshape.2, dshape.3];
        let sshape = seg.view_i16()?.dim();
        if [sshape.1, sshape.2, sshape.3] != shape {
            return Err(Error::training_file(
                &files.seg,
                format!(
                    "segmentation shape {:?} does not match the data's {:?}",
                    [sshape.1, sshape.2, sshape.3],
                    shape
                ),
            ));
        }
        if dshape.0 == 0 || sshape.0 == 0 {
            return Err(Error::training_file(
                &files.data,
                "the case has no channels",
            ));
        }
        for (key, locations) in &properties.class_locations {
            if let Some(bad) = locations
                .iter()
                .find(|v| (0..3).any(|d| v[d] as usize >= shape[d]))
            {
                return Err(Error::training_file(
                    &files.properties,
                    format!("class '{key}' has location {bad:?} outside the case {shape:?}"),
                ));
            }
        }
        let prev = match &self.config.previous_stage_folder {
            None => None,
            Some(folder) => {
                let path = folder.join(format!("{name}.npy"));
                let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
                // SAFETY: the previous stage's files are written once and not modified while
                // training reads them.
                let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
                let view = view_prev(&map, &path)?;
                let (_, z, y, x) = view.dim();
                if [z, y, x] != shape {
                    return Err(Error::training_file(
                        &path,
                        format!(
                            "previous stage segmentation shape {:?} does not match the case's {:?}",
                            [z, y, x],
                            shape
                        ),
                    ));
                }
                Some((map, path))
            }
        };
        let mut foreground = Vec::new();
        let mut annotated = Vec::new();
        for (key, locations) in properties.class_locations {
            if key == "-1" || key.starts_with("-1,") {
                annotated = locations;
            } else if !locations.is_empty() {
                foreground.push(locations);
            }
        }
        Ok(OpenCase {
            data,
            seg,
            prev,
            foreground,
            annotated,
            shape,
        })
    }
}

fn case_error(case: &str, e: Error) -> Error {
    Error::training(format!("training case '{case}': {e}"))
}

/// The previous stage's segmentation as `[1, z, y, x]` int16.
fn view_prev<'a>(map: &'a Mmap, path: &Path) -> Result<ArrayView4<'a, i16>> {
    let view: ArrayViewD<'a, i16> = ArrayViewD::view_npy(map).map_err(|e| {
        Error::training_file(
            path,
            format!("not a readable int16 .npy array (previous stage segmentation): {e}"),
        )
    })?;
    match view.ndim() {
        3 => view
            .into_dimensionality::<Ix3>()
            .map(|v| v.insert_axis(Axis(0)))
            .map_err(|_| Error::training_file(path, "expected a 3-D or 4-D array")),
        4 => {
            let v = view
                .into_dimensionality::<Ix4>()
                .map_err(|_| Error::training_file(path, "expected a 3-D or 4-D array"))?;
            if v.dim().0 != 1 {
                return Err(Error::training_file(path, "expected one channel"));
            }
            Ok(v)
        }
        _ => Err(Error::training_file(path, "expected a 3-D or 4-D array")),
    }
}

/// nnU-Net's `get_bbox` for one case of spatial shape `shape` (`[z, y, x]`; `z` of a 2D patch is
/// 1): returns `[lo, hi)` per axis. The box may reach beyond the case by up to half of
/// `need_to_pad = patch - final_patch` (more when the case is smaller than the patch) per side.
/// Without `class`, the lower corner is uniform in its allowed range; with `class` (the voxel
/// locations of the chosen class), a voxel is drawn uniformly and the box centred on it (its
/// lower corner clamped to the allowed minimum only, as in nnU-Net).
pub fn choose_bbox(
    shape: [usize; 3],
    patch: [usize; 3],
    final_patch: [usize; 3],
    class: Option<&[[u32; 3]]>,
    rng: &mut dyn RngCore,
) -> [[i64; 2]; 3] {
    let mut lbs = [0i64; 3];
    let mut ubs = [0i64; 3];
    for d in 0..3 {
        let (s, p) = (shape[d] as i64, patch[d] as i64);
        let mut need = p - final_patch[d] as i64;
        if need + s < p {
            need = p - s;
        }
        lbs[d] = (-need).div_euclid(2);
        ubs[d] = s + need.div_euclid(2) + need.rem_euclid(2) - p;
    }
    let voxel = class
        .filter(|c| !c.is_empty())
        .map(|c| c[rng.random_range(0..c.len())]);
    let mut out = [[0i64; 2]; 3];
    for d in 0..3 {
        let p = patch[d] as i64;
        let lo = match voxel {
            Some(v) => lbs[d].max(i64::from(v[d]) - p / 2),
            None => {
                if ubs[d] > lbs[d] {
                    rng.random_range(lbs[d]..=ubs[d])
                } else {
                    lbs[d]
                }
            }
        };
        out[d] = [lo, lo + p];
    }
    out
}

/// Appends the box of `src` (`[c, z, y, x]`) to `out` in C order, what lies outside the case as
/// `pad`, and returns the box's shape. Every value is written once, row by row, each row as at
/// most three slice operations, so there is no per-voxel bounds check for contiguous input.
fn crop_append<T: Copy>(
    src: ArrayView4<'_, T>,
    bbox: &[[i64; 2]; 3],
    pad: T,
    out: &mut Vec<T>,
) -> Shape4 {
    let (c, sz, sy, sx) = src.dim();
    let shape = [sz, sy, sx];
    let size: [usize; 3] = std::array::from_fn(|d| (bbox[d][1] - bbox[d][0]).max(0) as usize);
    let out_shape = (c, size[0], size[1], size[2]);
    let total = c * size[0] * size[1] * size[2];
    // The overlap of the box and the case, in case coordinates (empty when lo >= hi).
    let lo: [usize; 3] = std::array::from_fn(|d| bbox[d][0].clamp(0, shape[d] as i64) as usize);
    let hi: [usize; 3] = std::array::from_fn(|d| bbox[d][1].clamp(0, shape[d] as i64) as usize);
    if (0..3).any(|d| hi[d] <= lo[d]) {
        out.resize(out.len() + total, pad);
        return out_shape;
    }
    let Some(s) = src.as_slice() else {
        // Not C-contiguous: through ndarray.
        let off: [usize; 3] = std::array::from_fn(|d| (lo[d] as i64 - bbox[d][0]) as usize);
        let mut patch = Array4::from_elem(out_shape, pad);
        let part = src.slice(ndarray::s![.., lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]]);
        patch
            .slice_mut(ndarray::s![
                ..,
                off[0]..off[0] + (hi[0] - lo[0]),
                off[1]..off[1] + (hi[1] - lo[1]),
                off[2]..off[2] + (hi[2] - lo[2])
            ])
            .assign(&part);
        out.extend(patch.iter().copied());
        return out_shape;
    };
    out.reserve(total);
    let pad_left = (lo[2] as i64 - bbox[2][0]) as usize;
    let width = hi[2] - lo[2];
    let pad_right = size[2] - pad_left - width;
    for ch in 0..c {
        for oz in 0..size[0] {
            let z = bbox[0][0] + oz as i64;
            if z < lo[0] as i64 || z >= hi[0] as i64 {
                out.resize(out.len() + size[1] * size[2], pad);
                continue;
            }
            for oy in 0..size[1] {
                let y = bbox[1][0] + oy as i64;
                if y < lo[1] as i64 || y >= hi[1] as i64 {
                    out.resize(out.len() + size[2], pad);
                    continue;
                }
                let start = ((ch * sz + z as usize) * sy + y as usize) * sx + lo[2];
                out.resize(out.len() + pad_left, pad);
                out.extend_from_slice(&s[start..start + width]);
                out.resize(out.len() + pad_right, pad);
            }
        }
    }
    out_shape
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn bbox_ranges_follow_get_bbox() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        // need_to_pad = 4: lower corner in [-2, 10 + 2 - 8] = [-2, 4].
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let b = choose_bbox([10, 10, 10], [8, 8, 8], [4, 4, 4], None, &mut rng);
            seen.insert(b[0][0]);
            assert_eq!(b[0][1] - b[0][0], 8);
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            vec![-2, -1, 0, 1, 2, 3, 4]
        );
        // Case smaller than the patch: need = patch - shape = 5 -> lb = -3, ub = 3 + 2 + 1 - 8 = -2.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let b = choose_bbox([3, 3, 3], [8, 8, 8], [8, 8, 8], None, &mut rng);
            seen.insert(b[1][0]);
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![-3, -2]);
        // Centred on the voxel, the lower corner clamped to lb only.
        let b = choose_bbox(
            [10, 10, 10],
            [8, 8, 8],
            [8, 8, 8],
            Some(&[[9, 0, 5]]),
            &mut rng,
        );
        assert_eq!(b, [[5, 13], [0, 8], [1, 9]]);
    }

    #[test]
    fn crop_pads_outside() {
        let a = Array4::from_shape_fn((1, 2, 2, 2), |(_, z, y, x)| (z * 4 + y * 2 + x) as i16);
        let crop = |v: ArrayView4<'_, i16>| {
            let mut out = Vec::new();
            let shape = crop_append(v, &[[-1, 1], [0, 2], [1, 3]], -1, &mut out);
            Array4::from_shape_vec(shape, out).unwrap()
        };
        let out = crop(a.view());
        assert_eq!(out.shape(), &[1, 2, 2, 2]);
        assert_eq!(out[[0, 0, 0, 0]], -1);
        assert_eq!(out[[0, 1, 0, 0]], 1);
        assert_eq!(out[[0, 1, 1, 0]], 3);
        assert_eq!(out[[0, 1, 1, 1]], -1);
        // The strided fallback gives the same.
        use ndarray::ShapeBuilder;
        let mut f = Array4::zeros((1, 2, 2, 2).f());
        f.assign(&a);
        assert_eq!(crop(f.view()), out);
    }
}
