//! Convolutions on NCDHW slices: forward, input gradient, weight gradient (2D = depth 1).
//!
//! Every case is one formulation: the operand is copied once into a zero-padded grid split by
//! stride ([`shape::Grid`]); along a row of output positions each kernel tap then reads a
//! contiguous run of the grid, so the micro-kernels load it in place. The input gradient of a
//! strided convolution splits into one such convolution per stride phase; a transposed
//! convolution is the input gradient of its adjoint. The kernels run over blocks of grid
//! positions that skip the padding planes and rows between outputs where that saves whole tiles
//! ([`shape::OutMap::live_blocks`]; on a 10×14×10 output 27% of the grid is such padding).

mod arith;
mod direct;
mod grid;
mod shape;
mod weight_grad;

use arith::{DirectJob, Operand, Tap, Weights};
use rayon::prelude::*;
pub use shape::ConvShape;
use shape::{Axis, Grid, OutMap, input_grid};

/// The taps of `s` on its input grid (phase and shift of each), in kernel order.
fn forward_taps(s: &ConvShape) -> Vec<Tap> {
    (0..s.taps())
        .map(|t| {
            let reach = s.tap_reach(t);
            Tap {
                phase: std::array::from_fn(|a| reach[a] % s.stride[a]),
                shift: std::array::from_fn(|a| reach[a] / s.stride[a]),
            }
        })
        .collect()
}

/// The largest grid shift of any tap of `s`.
fn max_shift(s: &ConvShape) -> [usize; 3] {
    std::array::from_fn(|a| (s.dilation[a] * (s.kernel[a] - 1)) / s.stride[a])
}

/// The forward operand: `x` on the padded, stride-split input grid.
fn input_operand<'a>(x: &'a [f32], s: &ConvShape) -> Operand<'a> {
    Operand::new(
        x,
        s.channels_in,
        s.input,
        s.pad_begin,
        input_grid(s),
        max_shift(s),
    )
}

/// Where the forward outputs of `s` are on its input grid.
fn output_map(s: &ConvShape, grid: Grid) -> OutMap {
    let out = s.output();
    OutMap {
        grid,
        axes: out.map(Axis::identity),
        dest: out,
        channels: s.channels_out,
    }
}

/// Forward convolution: `x` `[batch, cin, input…]`, `w` `[cout, cin, kernel…]` →
/// `[batch, cout, output…]`.
pub fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: &ConvShape) -> Vec<f32> {
    let out = s.output();
    let mut dest = crate::zeroed(s.batch * s.channels_out * out.iter().product::<usize>());
    let src = input_operand(x, s);
    let taps = forward_taps(s);
    let (cin, nt) = (s.channels_in, taps.len());
    let identity: Vec<usize> = (0..nt).collect();
    let weights = Weights {
        data: w,
        row_stride: cin * nt,
        channel_stride: nt,
        taps: &identity,
    };
    let map = output_map(s, src.grid);
    let job = DirectJob {
        src: &src,
        taps: &taps,
        rows: s.channels_out,
        w: weights,
        q_end: src.grid.span(out),
        map: &map,
        bias,
    };
    arith::direct(&job, &mut dest);
    dest
}

/// Input gradient: `g` `[batch, cout, output…]`, `w` `[cout, cin, kernel…]` →
/// `[batch, cin, input…]`. One direct convolution of the padded output gradient per stride
/// phase of the input, each with the taps of that phase.
pub fn input_grad(g: &[f32], w: &[f32], s: &ConvShape) -> Vec<f32> {
    let out = s.output();
    let mut dest = crate::zeroed(s.batch * s.channels_in * s.input.iter().product::<usize>());
    let pad = max_shift(s);
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
    let src = Operand::new(g, s.channels_out, out, pad, grid, pad);
    let all = s.taps();
    let [sd, sh, sw] = s.stride;
    for phase in 0..sd * sh * sw {
        let r = [phase / (sh * sw), (phase / sw) % sh, phase % sw];
        let class: Vec<usize> = (0..all)
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
        let taps: Vec<Tap> = class
            .iter()
            .map(|&t| {
                let reach = s.tap_reach(t);
                Tap {
                    phase: [0; 3],
                    shift: std::array::from_fn(|a| pad[a] - reach[a] / s.stride[a]),
                }
            })
            .collect();
        let cin = s.channels_in;
        let weights = Weights {
            data: w,
            row_stride: all,
            channel_stride: cin * all,
            taps: &class,
        };
        let end = axes.map(|ax| ax.hi);
        let map = OutMap {
            grid,
            axes,
            dest: s.input,
            channels: cin,
        };
        let job = DirectJob {
            src: &src,
            taps: &taps,
            rows: cin,
            w: weights,
            q_end: grid.span(end),
            map: &map,
            bias: None,
        };
        arith::direct(&job, &mut dest);
    }
    dest
}

/// Weight gradient: `x` `[batch, cin, input…]`, `g` `[batch, cout, output…]` →
/// `[cout, cin, kernel…]`.
pub fn weight_grad(x: &[f32], g: &[f32], s: &ConvShape) -> Vec<f32> {
    let src = input_operand(x, s);
    let map = output_map(s, src.grid);
    arith::weight_grad(&src, &forward_taps(s), src.grid.span(s.output()), &map, g)
}

/// Bias gradient: the sum of `g` `[batch, cout, output…]` over samples and positions (in f64,
/// planes in parallel).
pub fn bias_grad(g: &[f32], batch: usize, channels: usize) -> Vec<f32> {
    let per = (g.len() / (batch * channels).max(1)).max(1);
    let planes: Vec<f64> = g.par_chunks(per).map(plane_sum).collect();
    let mut sums = vec![0f64; channels];
    for (i, s) in planes.into_iter().enumerate() {
        sums[i % channels] += s;
    }
    sums.into_iter().map(|v| v as f32).collect()
}

/// The f64 sum of `plane`, in eight interleaved partial sums (so that it vectorises).
fn plane_sum(plane: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = plane.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v as f64;
        }
    }
    lanes.iter().sum::<f64>() + rest
}
