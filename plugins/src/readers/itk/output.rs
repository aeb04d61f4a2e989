//! Images to write: the ITK image of a prediction, with the geometry of its properties.

use ndarray::{ArrayView3, ArrayView4};
use nnunet_core::io::ImageProperties;
use serde_json::Value;

use super::{ItkGeometry, ItkImage, f32_pixels, label_pixels};

/// Whether `p` describes a 2D image (SimpleITKIO then writes a 2D file).
pub(crate) fn is_two_d(p: &ImageProperties) -> bool {
    p.direction.len() == 4 || p.origin.len() == 2
}

/// The ITK geometry of `n` dimensions to write a prediction with: ITK's spacing as read
/// (`extra["sitk_spacing"]`) or nnU-Net's reversed, the origin and the top-left `n × n` of the
/// direction when present; unit, zero and identity otherwise.
pub(crate) fn output_geometry(p: &ImageProperties, n: usize) -> ItkGeometry {
    let mut g = ItkGeometry::identity(n);
    let sitk: Option<Vec<f64>> = p
        .extra
        .get("sitk_spacing")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_f64).collect());
    let reversed = [p.spacing[2], p.spacing[1], p.spacing[0]];
    for (i, s) in g.spacing.iter_mut().enumerate() {
        let v = match &sitk {
            Some(v) if v.len() >= n => v[i],
            _ => reversed.get(i).copied().unwrap_or(1.0),
        };
        *s = if v.is_finite() && v != 0.0 {
            v.abs()
        } else {
            1.0
        };
    }
    if p.origin.len() >= n {
        g.origin.copy_from_slice(&p.origin[..n]);
    }
    let m = (p.direction.len() as f64).sqrt() as usize;
    if m >= n && m * m == p.direction.len() {
        for i in 0..n {
            for j in 0..n {
                g.direction[i * n + j] = p.direction[i * m + j];
            }
        }
    }
    g
}

/// The label map `[z, y, x]` as the ITK image SimpleITKIO writes: 2D when the input was 2D.
pub(crate) fn segmentation_image(seg: ArrayView3<'_, i16>, p: &ImageProperties) -> ItkImage {
    let (z, y, x) = seg.dim();
    let two_d = is_two_d(p) && z == 1;
    let size = if two_d { vec![x, y] } else { vec![x, y, z] };
    ItkImage {
        geometry: output_geometry(p, size.len()),
        size,
        components: 1,
        pixels: label_pixels(seg),
    }
}

/// Probabilities `[classes, z, y, x]` as a 4D float image (classes on the 4th axis, unit step).
pub(crate) fn probability_image(probs: ArrayView4<'_, f32>, p: &ImageProperties) -> ItkImage {
    let (c, z, y, x) = probs.dim();
    let g3 = output_geometry(p, 3);
    let mut g = ItkGeometry::identity(4);
    for i in 0..3 {
        g.spacing[i] = g3.spacing[i];
        g.origin[i] = g3.origin[i];
        for j in 0..3 {
            g.direction[i * 4 + j] = g3.direction[i * 3 + j];
        }
    }
    ItkImage {
        size: vec![x, y, z, c],
        components: 1,
        geometry: g,
        pixels: f32_pixels(probs.iter()),
    }
}

/// Shortest text that parses back to exactly `v` (as ITK writes numbers, without exponent noise
/// for integers).
pub(crate) fn number(v: f64) -> String {
    if v == 0.0 { "0".into() } else { format!("{v}") }
}
