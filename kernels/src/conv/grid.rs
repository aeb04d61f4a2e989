//! Copies between NCDHW tensors and the padded, phase-split grids of [`super::shape::Grid`].

use rayon::prelude::*;

use super::shape::{Grid, OutMap};
use crate::SendPtr;

/// Extra elements after a grid so that vector loads past the last position stay in bounds.
pub(crate) const SLACK: usize = 1024;

/// Fills a grid from `x` (`[n, channels, input…]`), padded by `pad_begin` before the data: each
/// grid channel holds `G` consecutive channels of `x` (missing ones read as 0), `convert` makes
/// the grid's element. Positions outside the data are zero. `extra` elements (plus [`SLACK`])
/// follow the grid.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fill<T: Copy + Default + Send + Sync, const G: usize>(
    grid: &Grid,
    x: &[f32],
    channels: usize,
    input: [usize; 3],
    pad_begin: [usize; 3],
    extra: usize,
    convert: impl Fn([f32; G]) -> T + Sync,
) -> Vec<T> {
    let plane = grid.plane();
    let mut dst = crate::zeroed(grid.len() + extra + SLACK);
    let s_in: usize = input.iter().product();
    dst[..grid.len()]
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(pc, out)| {
            let (p, c) = (pc / grid.c, pc % grid.c);
            let phase = phase_of(grid, p);
            for n in 0..grid.n {
                let rows: [Option<&[f32]>; G] = std::array::from_fn(|j| {
                    let ch = c * G + j;
                    (ch < channels).then(|| &x[(n * channels + ch) * s_in..][..s_in])
                });
                let out = &mut out[n * grid.volume()..(n + 1) * grid.volume()];
                fill_sample(grid, phase, &rows, input, pad_begin, out, &convert);
            }
        });
    dst
}

fn phase_of(grid: &Grid, p: usize) -> [usize; 3] {
    let [_, ph, pw] = grid.phases;
    [p / (ph * pw), (p / pw) % ph, p % pw]
}

/// Input coordinate of grid coordinate `m` along one axis, if inside the data.
#[inline(always)]
fn source(m: usize, stride: usize, phase: usize, pad: usize, len: usize) -> Option<usize> {
    let padded = m * stride + phase;
    (padded >= pad && padded - pad < len).then(|| padded - pad)
}

fn fill_sample<T: Copy, const G: usize>(
    grid: &Grid,
    phase: [usize; 3],
    src: &[Option<&[f32]>; G],
    input: [usize; 3],
    pad: [usize; 3],
    out: &mut [T],
    convert: &impl Fn([f32; G]) -> T,
) {
    let [gd, gh, gw] = grid.dims;
    let [sd, sh, sw] = grid.phases;
    // The grid columns that hold data: x' in [x0, x1), input column sw·x' + phase - pad.
    let x0 = pad[2].saturating_sub(phase[2]).div_ceil(sw).min(gw);
    let x1 = (input[2] + pad[2])
        .saturating_sub(phase[2])
        .div_ceil(sw)
        .min(gw)
        .max(x0);
    if x1 == x0 {
        return;
    }
    let xi0 = x0 * sw + phase[2] - pad[2];
    // All G source rows present: the common case, without a per-value check.
    let full: Option<[&[f32]; G]> = src
        .iter()
        .all(Option::is_some)
        .then(|| std::array::from_fn(|g| src[g].unwrap_or_default()));
    for z in 0..gd {
        let Some(zi) = source(z, sd, phase[0], pad[0], input[0]) else {
            continue;
        };
        for y in 0..gh {
            let Some(yi) = source(y, sh, phase[1], pad[1], input[1]) else {
                continue;
            };
            let row = (zi * input[1] + yi) * input[2];
            let dst = &mut out[(z * gh + y) * gw..][x0..x1];
            let start = row + xi0;
            match full {
                Some(full) if sw == 1 => {
                    let rows: [&[f32]; G] = std::array::from_fn(|g| &full[g][start..][..dst.len()]);
                    for (j, d) in dst.iter_mut().enumerate() {
                        *d = convert(std::array::from_fn(|g| rows[g][j]));
                    }
                }
                _ => {
                    for (j, d) in dst.iter_mut().enumerate() {
                        let i = start + j * sw;
                        *d = convert(std::array::from_fn(|g| src[g].map_or(0.0, |r| r[i])));
                    }
                }
            }
        }
    }
}

/// Writes rows `[row0, row0 + rows)` of a kernel output block (`block[r][q - q0]`, rows `ld`
/// apart, positions `[q0, q1)`) to `dest` (`[n, channels, dest…]`), adding `bias[row]`.
///
/// # Safety
/// `dest` holds the whole destination; no other thread writes these rows and positions.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn scatter(
    map: &OutMap,
    block: &[f32],
    ld: usize,
    row0: usize,
    rows: usize,
    q0: usize,
    q1: usize,
    bias: Option<&[f32]>,
    dest: SendPtr<f32>,
) {
    let step = map.axes[2].step;
    let dvol = map.dest_volume();
    map.for_each_run(q0, q1, |n, base, first, len| {
        for r in 0..rows {
            let ch = row0 + r;
            let add = bias.map_or(0.0, |b| b[ch]);
            let src = &block[r * ld + first..][..len];
            unsafe {
                let d = dest.0.add((n * map.channels + ch) * dvol + base);
                for (j, &v) in src.iter().enumerate() {
                    *d.add(j * step) = v + add;
                }
            }
        }
    });
}
