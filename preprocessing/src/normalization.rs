//! Intensity normalisation per channel, with nnU-Net's schemes and float32 arithmetic:
//! `ZScoreNormalization` (optionally inside the nonzero mask only), `CTNormalization` (clip to the
//! dataset's 0.5/99.5 percentiles, then the dataset's mean and std), `NoNormalization`,
//! `RescaleTo01Normalization` and `RGBTo01Normalization`.

use ndarray::{ArrayView3, ArrayViewMut3, Zip};

use crate::fingerprint::IntensityProperties;
use nnunet_core::compat::statistics;
use nnunet_core::error::{Error, Result};

/// A normalisation scheme, by the class name the plans use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `ZScoreNormalization`: subtract the case's mean, divide by its std (optionally inside the
    /// nonzero mask only).
    ZScore,
    /// `CTNormalization`: clip to the dataset's 0.5/99.5 percentiles, then subtract the dataset's
    /// mean and divide by its std.
    Ct,
    /// `NoNormalization`: values stay as they are.
    NoNormalization,
    /// `RescaleTo01Normalization`: the case's minimum to 0, its maximum to 1.
    RescaleTo01,
    /// `RGBTo01Normalization`: 8-bit values `0..255` divided by 255.
    RgbTo01,
}

impl Scheme {
    /// The scheme a plans file names (`ZScoreNormalization`, `CTNormalization`, …).
    pub fn from_plans_name(name: &str) -> Result<Self> {
        Ok(match name {
            "ZScoreNormalization" => Scheme::ZScore,
            "CTNormalization" => Scheme::Ct,
            "NoNormalization" => Scheme::NoNormalization,
            "RescaleTo01Normalization" => Scheme::RescaleTo01,
            "RGBTo01Normalization" => Scheme::RgbTo01,
            other => {
                return Err(Error::dataset(format!(
                    "unknown normalization scheme '{other}' (known: ZScoreNormalization, \
                     CTNormalization, NoNormalization, RescaleTo01Normalization, RGBTo01Normalization)"
                )));
            }
        })
    }

    /// The scheme for a channel name in `dataset.json`, as the planner chooses it: `CT`, `noNorm`,
    /// `zscore`, `rescale_to_0_1` and `rgb_to_0_1` (any case); anything else is z-score.
    pub fn for_channel_name(channel_name: &str) -> Self {
        match channel_name.to_lowercase().as_str() {
            "ct" => Scheme::Ct,
            "nonorm" => Scheme::NoNormalization,
            "rescale_to_0_1" => Scheme::RescaleTo01,
            "rgb_to_0_1" => Scheme::RgbTo01,
            _ => Scheme::ZScore,
        }
    }

    /// The class name written to plans.
    pub fn plans_name(self) -> &'static str {
        match self {
            Scheme::ZScore => "ZScoreNormalization",
            Scheme::Ct => "CTNormalization",
            Scheme::NoNormalization => "NoNormalization",
            Scheme::RescaleTo01 => "RescaleTo01Normalization",
            Scheme::RgbTo01 => "RGBTo01Normalization",
        }
    }

    /// Whether, with `use_mask_for_norm`, the voxels outside the mask stay zero (only z-score).
    pub fn keeps_outside_of_mask_at_zero(self) -> bool {
        self == Scheme::ZScore
    }
}

const EPS: f32 = 1e-8;

/// Normalises one channel in place. `mask_source` is the cropped segmentation (`-1` outside the
/// nonzero region); it is used when `use_mask` is set (z-score only). `properties` are the
/// dataset's intensity statistics of the channel (needed by CT). `channel` names the channel in
/// error messages.
pub fn normalize_channel(
    mut image: ArrayViewMut3<'_, f32>,
    mask_source: Option<ArrayView3<'_, i16>>,
    scheme: Scheme,
    use_mask: bool,
    properties: Option<&IntensityProperties>,
    channel: usize,
) -> Result<()> {
    match scheme {
        Scheme::ZScore => match (use_mask, mask_source) {
            (true, Some(seg)) => {
                let values: Vec<f32> =
                    Zip::from(&image)
                        .and(&seg)
                        .fold(Vec::new(), |mut acc, &v, &s| {
                            if s >= 0 {
                                acc.push(v);
                            }
                            acc
                        });
                if values.is_empty() {
                    return Ok(());
                }
                let (mean, std) = mean_std(&values);
                let div = std.max(EPS);
                Zip::from(&mut image).and(&seg).for_each(|v, &s| {
                    if s >= 0 {
                        *v = (*v - mean) / div;
                    }
                });
            }
            _ => {
                let values = contiguous(&image);
                let (mean, std) = mean_std(&values);
                let div = std.max(EPS);
                image.mapv_inplace(|v| (v - mean) / div);
            }
        },
        Scheme::Ct => {
            let p = properties.ok_or_else(|| {
                Error::dataset(format!(
                    "CTNormalization of channel {channel} needs the dataset's intensity properties"
                ))
            })?;
            let (lo, hi) = (p.percentile_00_5 as f32, p.percentile_99_5 as f32);
            let mean = p.mean as f32;
            let div = (p.std as f32).max(EPS);
            image.mapv_inplace(|v| (v.clamp(lo, hi) - mean) / div);
        }
        Scheme::NoNormalization => {}
        Scheme::RescaleTo01 => {
            let min = image.iter().copied().fold(f32::INFINITY, f32::min);
            if min.is_finite() {
                image.mapv_inplace(|v| v - min);
                let max = image.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let div = max.max(EPS);
                image.mapv_inplace(|v| v / div);
            }
        }
        Scheme::RgbTo01 => {
            let (min, max) = image
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            if min < 0.0 || max > 255.0 {
                return Err(Error::dataset(format!(
                    "RGBTo01Normalization of channel {channel}: values must lie in 0..255 (8-bit \
                     RGB), found {min}..{max}; use another channel name in dataset.json"
                )));
            }
            image.mapv_inplace(|v| v / 255.0);
        }
    }
    Ok(())
}

/// The values of a view in C order, as one contiguous vector (borrowed when possible).
fn contiguous<'a>(image: &'a ArrayViewMut3<'_, f32>) -> std::borrow::Cow<'a, [f32]> {
    match image.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(image.iter().copied().collect()),
    }
}

/// Mean and standard deviation (ddof 0) with numpy's float32 semantics.
fn mean_std(values: &[f32]) -> (f32, f32) {
    (statistics::mean_f32(values), statistics::std_f32(values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn channel_names_map_like_the_planner() {
        assert_eq!(Scheme::for_channel_name("CT"), Scheme::Ct);
        assert_eq!(Scheme::for_channel_name("noNorm"), Scheme::NoNormalization);
        assert_eq!(Scheme::for_channel_name("T2"), Scheme::ZScore);
        assert_eq!(Scheme::for_channel_name("RGB_to_0_1"), Scheme::RgbTo01);
        for s in [
            Scheme::ZScore,
            Scheme::Ct,
            Scheme::NoNormalization,
            Scheme::RescaleTo01,
            Scheme::RgbTo01,
        ] {
            assert_eq!(Scheme::from_plans_name(s.plans_name()).unwrap(), s);
        }
    }

    #[test]
    fn zscore_with_mask_leaves_outside_untouched() {
        let mut img = Array3::from_shape_vec((1, 1, 4), vec![0.0, 2.0, 4.0, 0.0]).unwrap();
        let seg = Array3::from_shape_vec((1, 1, 4), vec![-1i16, 0, 1, -1]).unwrap();
        normalize_channel(
            img.view_mut(),
            Some(seg.view()),
            Scheme::ZScore,
            true,
            None,
            0,
        )
        .unwrap();
        assert_eq!(img.as_slice().unwrap(), &[0.0, -1.0, 1.0, 0.0]);
    }

    #[test]
    fn ct_clips_then_standardises() {
        let mut img = Array3::from_shape_vec((1, 1, 3), vec![-2000.0, 50.0, 3000.0]).unwrap();
        let p = IntensityProperties {
            mean: 50.0,
            std: 10.0,
            percentile_00_5: -100.0,
            percentile_99_5: 200.0,
            min: -2000.0,
            max: 3000.0,
            median: 50.0,
        };
        normalize_channel(img.view_mut(), None, Scheme::Ct, false, Some(&p), 0).unwrap();
        assert_eq!(img.as_slice().unwrap(), &[-15.0, 0.0, 15.0]);
    }

    #[test]
    fn rgb_out_of_range_is_an_error() {
        let mut img = Array3::from_elem((1, 1, 2), 300.0f32);
        assert!(normalize_channel(img.view_mut(), None, Scheme::RgbTo01, false, None, 1).is_err());
    }
}
