//! Reorientation by axis permutations and flips, as nnU-Net's two reorienting readers do it:
//! `SimpleITKIOWithReorient` (ITK's `DICOMOrient(image, "RAS")`) and `NibabelIOWithReorient`
//! (nibabel's `as_reoriented(io_orientation(affine))`). Neither resamples: voxels are permuted
//! and mirrored, and the geometry follows, so writing a prediction back only undoes the same
//! permutation and flips.
//!
//! Axes are numbered in ITK/NIfTI order (0 = `x`, the fastest); in nnU-Net's `[c, z, y, x]`
//! arrays axis `i` is array axis `3 - i`.

use ndarray::{Array, ArrayView, Axis, CowArray, Dimension};
use nnunet_core::io::ImageProperties;
use serde::{Deserialize, Serialize};

use super::itk::ItkGeometry;

/// Output axis `k` is input axis `source[k]`, reversed when `flip[k]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AxisTransform {
    pub source: [usize; 3],
    pub flip: [bool; 3],
}

impl AxisTransform {
    /// Whether the transform leaves everything as it is.
    pub(crate) fn is_identity(&self) -> bool {
        self.source == [0, 1, 2] && self.flip == [false; 3]
    }

    /// The transform that undoes this one.
    pub(crate) fn inverse(&self) -> AxisTransform {
        let mut inv = AxisTransform {
            source: [0; 3],
            flip: [false; 3],
        };
        for k in 0..3 {
            inv.source[self.source[k]] = k;
            inv.flip[self.source[k]] = self.flip[k];
        }
        inv
    }

    /// The world position of the input voxel that becomes output voxel 0: `origin` moved along
    /// `step(axis)` (one voxel's world step) to the far end of every flipped axis.
    pub(crate) fn new_origin(
        &self,
        origin: [f64; 3],
        step: impl Fn(usize) -> [f64; 3],
        size: [usize; 3],
    ) -> [f64; 3] {
        let mut o = origin;
        for k in 0..3 {
            if self.flip[k] {
                let axis = self.source[k];
                let s = step(axis);
                let n = size[axis].saturating_sub(1) as f64;
                for i in 0..3 {
                    o[i] += n * s[i];
                }
            }
        }
        o
    }

    /// The geometry of the transformed image of `size` (ITK order): spacing and direction columns
    /// permuted (columns negated where flipped), origin at the new first voxel.
    pub(crate) fn geometry(&self, g: &ItkGeometry, size: [usize; 3]) -> ItkGeometry {
        let step = |axis: usize| -> [f64; 3] {
            let s = g.step(axis);
            [s[0], s[1], s[2]]
        };
        let origin = self.new_origin([g.origin[0], g.origin[1], g.origin[2]], step, size);
        let mut out = ItkGeometry::identity(3);
        out.origin = origin.to_vec();
        for k in 0..3 {
            let sign = if self.flip[k] { -1.0 } else { 1.0 };
            out.spacing[k] = g.spacing[self.source[k]];
            for i in 0..3 {
                out.direction[i * 3 + k] = sign * g.direction[i * 3 + self.source[k]];
            }
        }
        out
    }

    /// `a` transformed: its last three axes (`[.., z, y, x]`) permuted and flipped, the leading
    /// ones (channels) untouched.
    pub(crate) fn array<T: Clone, D: Dimension>(&self, a: ArrayView<'_, T, D>) -> Array<T, D> {
        let (n, s) = (a.ndim(), self.source);
        let mut axes = D::zeros(n);
        for (i, axis) in axes.slice_mut().iter_mut().enumerate() {
            *axis = i;
        }
        for k in 0..3 {
            axes[n - 1 - k] = n - 1 - s[k];
        }
        let mut v = a.permuted_axes(axes);
        for k in 0..3 {
            if self.flip[k] {
                v.invert_axis(Axis(n - 1 - k));
            }
        }
        v.as_standard_layout().into_owned()
    }

    /// The transform as JSON, to keep in an image's properties.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The transform from [`AxisTransform::to_json`]'s JSON.
    pub(crate) fn from_json(v: &serde_json::Value) -> Option<AxisTransform> {
        let t: AxisTransform = serde_json::from_value(v.clone()).ok()?;
        let mut seen = [false; 3];
        for &s in &t.source {
            if s > 2 || std::mem::replace(&mut seen[s], true) {
                return None;
            }
        }
        Some(t)
    }
}

/// `a` (`[z, y, x]` or `[c, z, y, x]`) with `undo` applied, or `a` itself without one.
pub(crate) fn undone<'a, T: Clone, D: Dimension>(
    undo: Option<&AxisTransform>,
    a: ArrayView<'a, T, D>,
) -> CowArray<'a, T, D> {
    match undo {
        Some(t) => CowArray::from(t.array(a)),
        None => CowArray::from(a),
    }
}

/// The transform a reorienting reader recorded in `properties` (under `reorientation`).
pub(crate) fn recorded_transform(properties: &ImageProperties) -> Option<AxisTransform> {
    properties
        .extra
        .get("reorientation")
        .and_then(AxisTransform::from_json)
}

/// Implements [`Reader`](nnunet_core::io::Reader) for a reader (`$plain`) and its twin that
/// reorients images on reading and undoes it on writing (`$reoriented`), both handling
/// `$endings`, with the calling module's functions: `read_images(files, reorient)`,
/// `read_segmentation(file, reorient)`, `write_geometry(properties, reorient)` (the properties to
/// write with and the transform undoing the reorientation), and `write_segmentation` /
/// `write_probabilities`, which write the un-reoriented arrays. `data_files` names the function
/// listing a file's data files, if the readers have any. The implementations sit in an anonymous
/// `const` block with their own imports, so they do not depend on the caller's.
macro_rules! reorienting_readers {
    ($plain:ty, $reoriented:ty, $endings:expr $(, data_files: $data_files:path)?) => {
        reorienting_readers!(@impl $plain, false, $endings $(, $data_files)?);
        reorienting_readers!(@impl $reoriented, true, $endings $(, $data_files)?);
    };
    (@impl $reader:ty, $reorient:literal, $endings:expr $(, $data_files:path)?) => {
        const _: () = {
            use std::path::Path;

            use ndarray::{ArrayView3, ArrayView4};
            use nnunet_core::Result;
            use nnunet_core::io::{Image, ImageProperties, Reader, Segmentation};

            use $crate::readers::orientation::undone;

            impl Reader for $reader {
                fn file_endings(&self) -> &[&str] {
                    $endings
                }

                $(
                    fn data_files(&self, file: &Path) -> Result<Vec<std::path::PathBuf>> {
                        $data_files(file)
                    }
                )?

                fn read_images(&self, files: &[&Path]) -> Result<Image> {
                    read_images(files, $reorient)
                }

                fn read_segmentation(&self, file: &Path) -> Result<Segmentation> {
                    read_segmentation(file, $reorient)
                }

                fn write_segmentation(
                    &self,
                    segmentation: ArrayView3<'_, i16>,
                    file: &Path,
                    properties: &ImageProperties,
                ) -> Result<()> {
                    let (properties, undo) = write_geometry(properties, $reorient);
                    let segmentation = undone(undo.as_ref(), segmentation);
                    write_segmentation(segmentation.view(), file, &properties)
                }

                fn write_probabilities(
                    &self,
                    probabilities: ArrayView4<'_, f32>,
                    file: &Path,
                    properties: &ImageProperties,
                ) -> Result<()> {
                    let (properties, undo) = write_geometry(properties, $reorient);
                    let probabilities = undone(undo.as_ref(), probabilities);
                    write_probabilities(probabilities.view(), file, &properties)
                }
            }
        };
    };
}
pub(crate) use reorienting_readers;

/// For each axis (direction column), the world axis it runs along and whether it runs in the
/// positive direction, chosen as ITK's `DICOMOrientation` chooses: greedily by the largest
/// remaining absolute cosine, a tie going to the later entry in row-major order.
pub(crate) fn itk_axis_codes(direction: &[f64]) -> [(usize, bool); 3] {
    let mut cells: Vec<(usize, usize)> = (0..3).flat_map(|r| (0..3).map(move |c| (r, c))).collect();
    let mut codes = [(0, true); 3];
    for _ in 0..3 {
        let Some(&(r, c)) = cells.iter().max_by(|a, b| {
            direction[a.0 * 3 + a.1]
                .abs()
                .total_cmp(&direction[b.0 * 3 + b.1].abs())
        }) else {
            break;
        };
        codes[c] = (r, direction[r * 3 + c] >= 0.0);
        cells.retain(|&(rr, cc)| rr != r && cc != c);
    }
    codes
}

/// ITK's orientation letters (the "to" convention of `DICOMOrientImageFilter`: the identity
/// direction is `LPS`).
pub(crate) fn itk_orientation_code(direction: &[f64]) -> String {
    /// The letters of the negative and positive direction along each LPS world axis.
    const LETTERS: [[char; 2]; 3] = [['R', 'L'], ['A', 'P'], ['I', 'S']];
    itk_axis_codes(direction)
        .iter()
        .map(|&(r, positive)| LETTERS[r][positive as usize])
        .collect()
}

/// The transform of `DICOMOrient(image, "RAS")`: output axis `k` runs along world axis `k`,
/// towards Right, Anterior and Superior (in ITK's LPS world: negative, negative, positive).
pub(crate) fn itk_to_ras(direction: &[f64]) -> AxisTransform {
    let codes = itk_axis_codes(direction);
    let mut t = AxisTransform {
        source: [0, 1, 2],
        flip: [false; 3],
    };
    for (c, &(r, positive)) in codes.iter().enumerate() {
        t.source[r] = c;
        t.flip[r] = positive != (r == 2);
    }
    t
}

/// A 3×3 matrix, row-major.
type Mat3 = [[f64; 3]; 3];

/// The transpose of `m`.
fn transpose(m: &Mat3) -> Mat3 {
    let mut t = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            t[i][j] = m[j][i];
        }
    }
    t
}

/// The inverse of `m`, if it is not singular.
fn inverse(m: &Mat3) -> Option<Mat3> {
    let c = |i: usize, j: usize| {
        let (a, b) = ((i + 1) % 3, (i + 2) % 3);
        let (x, y) = ((j + 1) % 3, (j + 2) % 3);
        m[a][x] * m[b][y] - m[a][y] * m[b][x]
    };
    let det: f64 = (0..3).map(|j| m[0][j] * c(0, j)).sum();
    if det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    let mut inv = [[0.0; 3]; 3];
    for (j, row) in inv.iter_mut().enumerate() {
        for (i, v) in row.iter_mut().enumerate() {
            *v = c(i, j) / det;
        }
    }
    Some(inv)
}

/// The orthogonal matrix nearest to `m` (its polar factor, nibabel's `P @ Qs` from the SVD),
/// by Newton's iteration `X ← (X + X⁻ᵀ) / 2`; `None` for a singular `m`.
fn nearest_orthogonal(m: &Mat3) -> Option<Mat3> {
    let mut x = *m;
    for _ in 0..100 {
        let inv_t = transpose(&inverse(&x)?);
        let mut next = [[0.0; 3]; 3];
        let mut change: f64 = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                next[i][j] = 0.5 * (x[i][j] + inv_t[i][j]);
                change = change.max((next[i][j] - x[i][j]).abs());
            }
        }
        x = next;
        if change < 1e-15 {
            break;
        }
    }
    Some(x)
}

/// nibabel's `io_orientation(affine)`: for each voxel axis, the world (RAS) axis it is closest to
/// and its sign, as the transform reorienting the image to RAS+; `None` when the affine is
/// degenerate (nibabel cannot reorient it either).
pub(crate) fn nibabel_to_ras(affine: &[[f64; 4]; 4]) -> Option<AxisTransform> {
    let mut rs = [[0.0; 3]; 3];
    for j in 0..3 {
        let norm = (0..3).map(|i| affine[i][j].powi(2)).sum::<f64>().sqrt();
        let norm = if norm == 0.0 { 1.0 } else { norm };
        for i in 0..3 {
            rs[i][j] = affine[i][j] / norm;
        }
    }
    let mut r = nearest_orthogonal(&rs)?;
    let mut t = AxisTransform {
        source: [0, 1, 2],
        flip: [false; 3],
    };
    let mut used = [false; 3];
    for in_ax in 0..3 {
        let col: Vec<f64> = (0..3).map(|i| r[i][in_ax]).collect();
        if col.iter().all(|v| v.abs() <= 1e-8) {
            return None;
        }
        let out_ax = (0..3).fold(0, |best, i| {
            if col[i].abs() > col[best].abs() {
                i
            } else {
                best
            }
        });
        if std::mem::replace(&mut used[out_ax], true) {
            return None;
        }
        t.source[out_ax] = in_ax;
        t.flip[out_ax] = col[out_ax] < 0.0;
        r[out_ax] = [0.0; 3];
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    fn geometry(direction: [f64; 9]) -> ItkGeometry {
        ItkGeometry {
            spacing: vec![0.5, 0.7, 2.0],
            origin: vec![1.0, 2.0, 3.0],
            direction: direction.to_vec(),
        }
    }

    #[test]
    fn dicom_orient_to_ras_matches_itk() {
        // Values from SimpleITK 2.5: DICOMOrient(image, "RAS") of a (4, 3, 2) image.
        let id = geometry([1., 0., 0., 0., 1., 0., 0., 0., 1.]);
        assert_eq!(itk_orientation_code(&id.direction), "LPS");
        let t = itk_to_ras(&id.direction);
        let g = t.geometry(&id, [4, 3, 2]);
        assert_eq!(g.origin, [2.5, 3.4, 3.0]);
        assert_eq!(g.direction, [-1., 0., 0., 0., -1., 0., 0., 0., 1.]);
        let psl = geometry([0., 0., 1., 1., 0., 0., 0., 1., 0.]);
        assert_eq!(itk_orientation_code(&psl.direction), "PSL");
        let t = itk_to_ras(&psl.direction);
        let g = t.geometry(&psl, [4, 3, 2]);
        assert_eq!(g.spacing, [2.0, 0.5, 0.7]);
        assert!((g.origin[0] - 3.0).abs() < 1e-12 && (g.origin[1] - 3.5).abs() < 1e-12);
        // a 45 degree rotation about z: ties go to the later cosine
        let c = std::f64::consts::FRAC_1_SQRT_2;
        assert_eq!(
            itk_orientation_code(&[c, -c, 0., c, c, 0., 0., 0., 1.]),
            "LPS"
        );
    }

    #[test]
    fn arrays_round_trip_through_the_inverse() {
        let t = AxisTransform {
            source: [2, 0, 1],
            flip: [true, false, true],
        };
        let a = Array4::from_shape_fn((2, 2, 3, 4), |(c, z, y, x)| c * 1000 + z * 100 + y * 10 + x);
        let b = t.array(a.view());
        // output axis 0 (x) is input z: size 2
        assert_eq!(b.shape(), [2, 3, 4, 2]);
        assert_eq!(t.inverse().array(b.view()), a);
        let s = a.index_axis(Axis(0), 1).to_owned();
        assert_eq!(t.inverse().array(t.array(s.view()).view()), s);
        assert_eq!(t.array(s.view()), b.index_axis(Axis(0), 1));
        assert_eq!(AxisTransform::from_json(&t.to_json()), Some(t));
    }

    #[test]
    fn nibabel_io_orientation() {
        // LAS affine with a small rotation: x flipped, y and z kept
        let a = [
            [-2.0, 0.1, 0.0, 10.0],
            [0.0, 2.0, 0.0, 0.0],
            [0.0, 0.0, 3.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let t = nibabel_to_ras(&a).unwrap();
        assert_eq!(t.source, [0, 1, 2]);
        assert_eq!(t.flip, [true, false, false]);
        // axes swapped: voxel x runs along world z
        let b = [
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, -1.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let t = nibabel_to_ras(&b).unwrap();
        assert_eq!(t.source, [1, 2, 0]);
        assert_eq!(t.flip, [false, true, false]);
        let mut singular = b;
        singular[0][1] = 0.0;
        assert!(nibabel_to_ras(&singular).is_none());
    }
}
