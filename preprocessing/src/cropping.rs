//! Cropping to the nonzero region (filled), with the bounding box kept to undo it.
//!
//! As nnU-Net crops (fingerprint and preprocessing alike):
//!
//! 1. The nonzero mask is the OR over all channels of `x != 0` ([`nonzero_mask`]), with holes
//!    filled in 3-D ([`fill_holes`]): a background voxel stays background only if it is connected to
//!    the outside of the array through background voxels sharing a face (6-connectivity), as
//!    `scipy.ndimage.binary_fill_holes` does with its default structure.
//! 2. The bounding box of the mask ([`bbox_from_mask`]) is half-open per axis; an empty mask gives
//!    the whole image.
//! 3. Data and segmentation are cropped to the box, and in the cropped segmentation every voxel
//!    that is background (0) and outside the filled mask becomes [`OUTSIDE_MASK_LABEL`] (-1)
//!    ([`crop_to_nonzero`]).

use ndarray::{Array3, Array4, ArrayView3, ArrayView4, Axis, Slice, Zip, s};

/// The label given to background voxels outside the nonzero mask after cropping.
pub const OUTSIDE_MASK_LABEL: i16 = -1;

/// A half-open box `[lo, hi)` per spatial axis, in array axis order:
/// `[[lo0, hi0], [lo1, hi1], [lo2, hi2]]`, which is also how it serialises (as nnU-Net stores
/// `bbox_used_for_cropping`).
pub type BoundingBox = [[usize; 2]; 3];

/// The box covering a whole array of `shape`.
pub fn full_bbox(shape: [usize; 3]) -> BoundingBox {
    [[0, shape[0]], [0, shape[1]], [0, shape[2]]]
}

/// The size of a box per axis.
pub fn bbox_shape(bbox: &BoundingBox) -> [usize; 3] {
    [
        bbox[0][1] - bbox[0][0],
        bbox[1][1] - bbox[1][0],
        bbox[2][1] - bbox[2][0],
    ]
}

/// A view of the box in a 3-D array.
pub fn bbox_view3<'a, T>(bbox: &BoundingBox, a: ArrayView3<'a, T>) -> ArrayView3<'a, T> {
    a.slice_move(s![
        bbox[0][0]..bbox[0][1],
        bbox[1][0]..bbox[1][1],
        bbox[2][0]..bbox[2][1]
    ])
}

/// A view of the box in every channel of a 4-D `[c, z, y, x]` array.
pub fn bbox_view4<'a, T>(bbox: &BoundingBox, a: ArrayView4<'a, T>) -> ArrayView4<'a, T> {
    a.slice_move(s![
        ..,
        bbox[0][0]..bbox[0][1],
        bbox[1][0]..bbox[1][1],
        bbox[2][0]..bbox[2][1]
    ])
}

/// The 3-D mask of voxels that are nonzero in at least one channel of `data` (`[c, z, y, x]`),
/// with holes filled ([`fill_holes`]).
pub fn nonzero_mask(data: ArrayView4<'_, f32>) -> Array3<bool> {
    let (_, z, y, x) = data.dim();
    let mut mask = Array3::from_elem((z, y, x), false);
    for channel in data.axis_iter(Axis(0)) {
        Zip::from(&mut mask)
            .and(&channel)
            .for_each(|m, &v| *m |= v != 0.0);
    }
    fill_holes(&mut mask);
    mask
}

/// Fills the holes of a 3-D mask in place, as `scipy.ndimage.binary_fill_holes` with its default
/// (face-connected) structure: every `false` voxel that cannot reach the outside of the array
/// through `false` voxels sharing a face becomes `true`. Voxels on the array border touch the
/// outside, so an array with an axis of size 1 or 2 has no holes.
pub fn fill_holes(mask: &mut Array3<bool>) {
    let (nz, ny, nx) = mask.dim();
    if nz < 3 || ny < 3 || nx < 3 {
        return;
    }
    if !mask.is_standard_layout() {
        *mask = mask.as_standard_layout().into_owned();
    }
    let m = mask
        .as_slice_mut()
        .expect("a standard-layout array is contiguous");
    // 0 = background not (yet) reached, 1 = foreground, 2 = background reached from outside.
    let mut state: Vec<u8> = m.iter().map(|&v| v as u8).collect();
    let (sz, sy) = (ny * nx, nx);
    let mut stack: Vec<usize> = Vec::new();
    let seed = |i: usize, state: &mut [u8], stack: &mut Vec<usize>| {
        if state[i] == 0 {
            state[i] = 2;
            stack.push(i);
        }
    };
    for z in 0..nz {
        for y in 0..ny {
            let on_face = z == 0 || z == nz - 1 || y == 0 || y == ny - 1;
            let row = z * sz + y * sy;
            if on_face {
                for x in 0..nx {
                    seed(row + x, &mut state, &mut stack);
                }
            } else {
                seed(row, &mut state, &mut stack);
                seed(row + nx - 1, &mut state, &mut stack);
            }
        }
    }
    while let Some(i) = stack.pop() {
        let z = i / sz;
        let y = (i / sy) % ny;
        let x = i % nx;
        let mut visit = |j: usize| {
            if state[j] == 0 {
                state[j] = 2;
                stack.push(j);
            }
        };
        if x > 0 {
            visit(i - 1);
        }
        if x + 1 < nx {
            visit(i + 1);
        }
        if y > 0 {
            visit(i - sy);
        }
        if y + 1 < ny {
            visit(i + sy);
        }
        if z > 0 {
            visit(i - sz);
        }
        if z + 1 < nz {
            visit(i + sz);
        }
    }
    for (v, s) in m.iter_mut().zip(&state) {
        *v = *s != 2;
    }
}

/// The bounding box of the `true` voxels of `mask`: per axis, from the first to one past the last
/// index whose slice holds a `true` voxel. An empty mask gives the whole array.
pub fn bbox_from_mask(mask: ArrayView3<'_, bool>) -> BoundingBox {
    let (nz, ny, nx) = mask.dim();
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    for ((z, y, x), &v) in mask.indexed_iter() {
        if v {
            for (a, i) in [z, y, x].into_iter().enumerate() {
                lo[a] = lo[a].min(i);
                hi[a] = hi[a].max(i + 1);
            }
        }
    }
    if lo[0] == usize::MAX {
        return full_bbox([nz, ny, nx]);
    }
    [[lo[0], hi[0]], [lo[1], hi[1]], [lo[2], hi[2]]]
}

/// Data and segmentation cropped to the nonzero region.
#[derive(Clone, Debug)]
pub struct Cropped {
    /// The data inside the box, `[c, z, y, x]`.
    pub data: Array4<f32>,
    /// The segmentation inside the box, `[1, z, y, x]` (or `[c, z, y, x]` as given), with
    /// background outside the filled nonzero mask set to [`OUTSIDE_MASK_LABEL`]. Without an input
    /// segmentation: 0 inside the mask, -1 outside.
    pub seg: Array4<i16>,
    /// The box, in the input's voxel coordinates.
    pub bbox: BoundingBox,
}

/// Crops `data` (`[c, z, y, x]`) and `seg` (`[k, z, y, x]`, usually `k = 1`) to the bounding box of
/// the filled nonzero mask of `data`, and marks background outside the mask with -1 in the
/// segmentation (see the module documentation).
///
/// The inputs are consumed: when the box is the whole image they are returned without a copy
/// (the segmentation is marked in place); otherwise only the box is copied into new contiguous
/// arrays and the inputs are freed. Besides that, only the mask (one byte per voxel) is allocated.
///
/// # Panics
/// If the segmentation's spatial shape differs from the data's (check it before; the fingerprint
/// and preprocessing report it as an error naming the case).
pub fn crop_to_nonzero(data: Array4<f32>, seg: Option<Array4<i16>>) -> Cropped {
    let (_, z, y, x) = data.dim();
    if let Some(seg) = &seg {
        assert_eq!(
            seg.shape()[1..],
            [z, y, x],
            "the segmentation's spatial shape must equal the image's"
        );
    }
    let mask = nonzero_mask(data.view());
    let bbox = bbox_from_mask(mask.view());
    let whole = bbox == full_bbox([z, y, x]);
    let cropped_mask = bbox_view3(&bbox, mask.view());
    let data = if whole {
        data
    } else {
        bbox_view4(&bbox, data.view()).to_owned()
    };
    let seg = match seg {
        Some(seg) => {
            let mut out = if whole {
                seg
            } else {
                bbox_view4(&bbox, seg.view()).to_owned()
            };
            for mut channel in out.axis_iter_mut(Axis(0)) {
                Zip::from(&mut channel)
                    .and(&cropped_mask)
                    .for_each(|s, &inside| {
                        if *s == 0 && !inside {
                            *s = OUTSIDE_MASK_LABEL;
                        }
                    });
            }
            out
        }
        None => cropped_mask
            .map(|&inside| if inside { 0 } else { OUTSIDE_MASK_LABEL })
            .insert_axis(Axis(0)),
    };
    Cropped { data, seg, bbox }
}

/// Undoes a crop for one 3-D array: an array of `full_shape` filled with `fill`, with `cropped`
/// placed at `bbox`.
pub fn uncrop<T: Clone>(
    cropped: ArrayView3<'_, T>,
    bbox: &BoundingBox,
    full_shape: [usize; 3],
    fill: T,
) -> Array3<T> {
    let mut out = Array3::from_elem(full_shape, fill);
    out.slice_each_axis_mut(|ax| {
        let r = bbox[ax.axis.index()];
        Slice::from(r[0]..r[1])
    })
    .assign(&cropped);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    #[test]
    fn fill_holes_fills_enclosed_background_only() {
        // A hollow 5x5x5 cube with a 1-voxel cavity, and a tunnel to the border in a second cube.
        let mut m = Array3::from_elem((7, 7, 7), false);
        m.slice_mut(s![1..6, 1..6, 1..6]).fill(true);
        m[[3, 3, 3]] = false;
        m[[2, 2, 2]] = false;
        m[[2, 2, 3]] = false; // a two-voxel cavity
        let mut filled = m.clone();
        fill_holes(&mut filled);
        assert!(filled[[3, 3, 3]] && filled[[2, 2, 2]] && filled[[2, 2, 3]]);
        assert!(!filled[[0, 0, 0]]);
        assert_eq!(filled.iter().filter(|&&v| v).count(), 125);
        // Open the cavity to the outside through face neighbours: nothing is filled.
        let mut open = m.clone();
        for z in 0..4 {
            open[[z, 3, 3]] = false;
        }
        let mut f = open.clone();
        fill_holes(&mut f);
        assert_eq!(f, open);
        // A diagonal-only connection does not count (6-connectivity): cavity at (1,1,1)-ish
        let mut d = Array3::from_elem((5, 5, 5), true);
        d[[2, 2, 2]] = false;
        d[[1, 1, 1]] = false;
        d[[0, 0, 0]] = false;
        fill_holes(&mut d);
        assert!(d[[2, 2, 2]] && d[[1, 1, 1]] && !d[[0, 0, 0]]);
    }

    #[test]
    fn thin_arrays_have_no_holes() {
        let mut m = Array3::from_elem((1, 5, 5), true);
        m[[0, 2, 2]] = false;
        fill_holes(&mut m);
        assert!(!m[[0, 2, 2]]);
    }

    #[test]
    fn bbox_is_half_open_and_full_when_empty() {
        let mut m = Array3::from_elem((4, 5, 6), false);
        assert_eq!(bbox_from_mask(m.view()), full_bbox([4, 5, 6]));
        m[[1, 2, 3]] = true;
        m[[2, 4, 1]] = true;
        let b = bbox_from_mask(m.view());
        assert_eq!(b, [[1, 3], [2, 5], [1, 4]]);
        assert_eq!(bbox_shape(&b), [2, 3, 3]);
        assert_eq!(serde_json::to_string(&b).unwrap(), "[[1,3],[2,5],[1,4]]");
        let back: BoundingBox = serde_json::from_str("[[1,3],[2,5],[1,4]]").unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn crop_marks_background_outside_the_mask() {
        // Two channels; channel 1 extends the mask. A label outside the mask is kept.
        let mut data = Array4::<f32>::zeros((2, 3, 6, 6));
        data.slice_mut(s![0, .., 1..4, 1..4]).fill(1.0);
        data[[1, 1, 4, 4]] = 2.0;
        let mut seg = Array4::<i16>::zeros((1, 3, 6, 6));
        seg[[0, 1, 2, 2]] = 1;
        seg[[0, 0, 4, 1]] = 2; // outside the mask, inside the box
        let c = crop_to_nonzero(data.clone(), Some(seg));
        assert_eq!(c.bbox, [[0, 3], [1, 5], [1, 5]]);
        assert_eq!(c.data.shape(), &[2, 3, 4, 4]);
        assert_eq!(c.seg.shape(), &[1, 3, 4, 4]);
        assert_eq!(c.seg[[0, 1, 1, 1]], 1);
        assert_eq!(c.seg[[0, 0, 3, 0]], 2);
        assert_eq!(c.seg[[0, 0, 0, 0]], 0);
        assert_eq!(c.seg[[0, 0, 3, 3]], -1);
        assert_eq!(c.seg[[0, 1, 3, 3]], 0);
        let none = crop_to_nonzero(data.clone(), None);
        assert_eq!(none.seg[[0, 0, 3, 3]], -1);
        assert_eq!(none.seg[[0, 0, 0, 0]], 0);
        let back = uncrop(c.seg.index_axis(Axis(0), 0), &c.bbox, [3, 6, 6], 0);
        assert_eq!(back[[1, 2, 2]], 1);
        assert_eq!(back[[0, 5, 5]], 0);
        // An image without background is returned whole.
        let full = Array4::<f32>::ones((1, 2, 3, 4));
        let mut seg = Array4::<i16>::zeros((1, 2, 3, 4));
        seg[[0, 1, 1, 1]] = 3;
        let c = crop_to_nonzero(full, Some(seg.clone()));
        assert_eq!(c.bbox, full_bbox([2, 3, 4]));
        assert_eq!(c.seg, seg);
    }

    #[test]
    fn empty_image_is_not_cropped() {
        let data = Array4::<f32>::zeros((1, 2, 3, 4));
        let c = crop_to_nonzero(data, None);
        assert_eq!(c.bbox, full_bbox([2, 3, 4]));
        assert!(c.seg.iter().all(|&v| v == -1));
    }
}
