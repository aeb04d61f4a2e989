//! Convolutions on NCDHW slices: forward, input gradient, weight gradient (2D = depth 1).
//!
//! Every case is one formulation: the operand is copied once into a zero-padded grid split by
//! stride ([`shape::Grid`]); along a row of output positions each kernel tap then reads a
//! contiguous run of the grid, so the micro-kernels load it in place. The input gradient of a
//! strided convolution splits into one such convolution per stride phase; a transposed
//! convolution is the input gradient of its adjoint.

mod direct;
mod grid;
mod shape;
mod weight_grad;

pub use shape::ConvShape;
use shape::{Axis, Grid, OutMap, input_grid};

/// Offsets of the rows `(ci, tap)` of the forward operand in `grid`, `ci`-major.
fn forward_offsets(s: &ConvShape, grid: &Grid) -> Vec<isize> {
    let taps = s.taps();
    let mut koff = Vec::with_capacity(s.channels_in * taps);
    for ci in 0..s.channels_in {
        for t in 0..taps {
            let reach = s.tap_reach(t);
            let phase = std::array::from_fn(|a| reach[a] % s.stride[a]);
            let shift = std::array::from_fn(|a| reach[a] / s.stride[a]);
            koff.push(grid.offset(phase, ci, shift) as isize);
        }
    }
    koff
}

/// The largest grid shift of any tap of `s`, as a flat offset.
fn max_shift(s: &ConvShape, grid: &Grid) -> usize {
    let shift = std::array::from_fn(|a| (s.dilation[a] * (s.kernel[a] - 1)) / s.stride[a]);
    grid.flat(0, shift)
}

/// Forward convolution: `x` `[batch, cin, input…]`, `w` `[cout, cin, kernel…]` →
/// `[batch, cout, output…]`.
pub fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: &ConvShape) -> Vec<f32> {
    let out = s.output();
    let mut dest = vec![0f32; s.batch * s.channels_out * out.iter().product::<usize>()];
    let grid = input_grid(s);
    let extra = max_shift(s, &grid) + direct::overreach();
    let src = grid::fill(&grid, x, s.input, s.pad_begin, extra, |v| v);
    let koff = forward_offsets(s, &grid);
    let job = direct::Job {
        rows: s.channels_out,
        koff: &koff,
        src: &src,
        q_end: grid.span(out),
    };
    let map = OutMap {
        grid,
        axes: out.map(Axis::identity),
        dest: out,
        channels: s.channels_out,
    };
    direct::run(&job, w, &map, bias, &mut dest);
    dest
}

/// Input gradient: `g` `[batch, cout, output…]`, `w` `[cout, cin, kernel…]` →
/// `[batch, cin, input…]`. One direct convolution of the padded output gradient per stride
/// phase of the input, each with the taps of that phase.
pub fn input_grad(g: &[f32], w: &[f32], s: &ConvShape) -> Vec<f32> {
    let out = s.output();
    let mut dest = vec![0f32; s.batch * s.channels_in * s.input.iter().product::<usize>()];
    let reach = |a: usize| (s.dilation[a] * (s.kernel[a] - 1)) / s.stride[a];
    let pad: [usize; 3] = std::array::from_fn(reach);
    // Positions m of phase r along axis a cover padded input s·m + r; those in the data are
    // [lo, hi).
    let bounds = |a: usize, r: usize| {
        let lo = (s.pad_begin[a].saturating_sub(r)).div_ceil(s.stride[a]);
        let hi = (s.pad_begin[a] + s.input[a])
            .saturating_sub(r)
            .div_ceil(s.stride[a]);
        (lo, hi.max(lo))
    };
    let dims = std::array::from_fn(|a| {
        let widest = (0..s.stride[a]).map(|r| bounds(a, r).1).max().unwrap_or(0);
        widest.max(out[a]) + pad[a]
    });
    let grid = Grid {
        phases: [1; 3],
        dims,
        n: s.batch,
        c: s.channels_out,
    };
    let extra = grid.flat(0, pad) + direct::overreach();
    let src = grid::fill(&grid, g, out, pad, extra, |v| v);
    let taps = s.taps();
    let [sd, sh, sw] = s.stride;
    for phase in 0..sd * sh * sw {
        let r = [phase / (sh * sw), (phase / sw) % sh, phase % sw];
        let class: Vec<usize> = (0..taps)
            .filter(|&t| (0..3).all(|a| s.tap_reach(t)[a] % s.stride[a] == r[a]))
            .collect();
        let axes: [Axis; 3] = std::array::from_fn(|a| {
            let (lo, hi) = bounds(a, r[a]);
            Axis {
                lo,
                hi,
                start: (s.stride[a] * lo + r[a]).saturating_sub(s.pad_begin[a]),
                step: s.stride[a],
            }
        });
        if class.is_empty() || axes.iter().any(|ax| ax.lo >= ax.hi) {
            continue;
        }
        let mut koff = Vec::with_capacity(s.channels_out * class.len());
        let mut wr = vec![0f32; s.channels_in * s.channels_out * class.len()];
        let kr = s.channels_out * class.len();
        for co in 0..s.channels_out {
            for (j, &t) in class.iter().enumerate() {
                let reach = s.tap_reach(t);
                let shift = std::array::from_fn(|a| pad[a] - reach[a] / s.stride[a]);
                koff.push(grid.offset([0; 3], co, shift) as isize);
                for ci in 0..s.channels_in {
                    wr[ci * kr + co * class.len() + j] = w[(co * s.channels_in + ci) * taps + t];
                }
            }
        }
        let end = std::array::from_fn(|a| axes[a].hi);
        let job = direct::Job {
            rows: s.channels_in,
            koff: &koff,
            src: &src,
            q_end: grid.span(end),
        };
        let map = OutMap {
            grid,
            axes,
            dest: s.input,
            channels: s.channels_in,
        };
        direct::run(&job, &wr, &map, None, &mut dest);
    }
    dest
}

/// Weight gradient: `x` `[batch, cin, input…]`, `g` `[batch, cout, output…]` →
/// `[cout, cin, kernel…]`.
pub fn weight_grad(x: &[f32], g: &[f32], s: &ConvShape) -> Vec<f32> {
    let out = s.output();
    let grid = input_grid(s);
    let extra = max_shift(s, &grid) + weight_grad::BLOCK;
    let src = grid::fill(&grid, x, s.input, s.pad_begin, extra, |v| v);
    let koff = forward_offsets(s, &grid);
    let map = OutMap {
        grid,
        axes: out.map(Axis::identity),
        dest: out,
        channels: s.channels_out,
    };
    let job = weight_grad::Job {
        koff: &koff,
        src: &src,
        q_end: grid.span(out),
        map: &map,
    };
    weight_grad::run(&job, g)
}

/// Bias gradient: the sum of `g` `[batch, cout, output…]` over samples and positions.
pub fn bias_grad(g: &[f32], batch: usize, channels: usize) -> Vec<f32> {
    let per = g.len() / (batch * channels).max(1);
    let mut sums = vec![0f64; channels];
    for (i, plane) in g.chunks(per.max(1)).enumerate() {
        sums[i % channels] += plane.iter().map(|&v| v as f64).sum::<f64>();
    }
    sums.into_iter().map(|v| v as f32).collect()
}
