//! Naive reference convolutions (direct loops in f64) for the parity tests, and the convolution
//! shapes they and `examples/convbench.rs` use.

#![allow(dead_code)]

use nnunet_kernels::ConvShape;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// `len` values uniform in [-1, 1), reproducible from `seed`.
pub(crate) fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A convolution of `n` samples from `cin` to `cout` channels over `input`, with kernel `k`,
/// stride `s`, the same padding `p` on both sides and no dilation.
pub(crate) fn shape(
    n: usize,
    cin: usize,
    cout: usize,
    input: [usize; 3],
    k: [usize; 3],
    s: [usize; 3],
    p: [usize; 3],
) -> ConvShape {
    ConvShape {
        batch: n,
        channels_in: cin,
        channels_out: cout,
        input,
        kernel: k,
        stride: s,
        pad_begin: p,
        pad_end: p,
        dilation: [1, 1, 1],
    }
}

/// Calls `f(n, co, ci, out_index, in_index, w_index)` for every product of the convolution.
pub(crate) fn for_each_product(s: &ConvShape, mut f: impl FnMut(usize, usize, usize)) {
    let out = s.output();
    let [id, ih, iw] = s.input;
    let [kd, kh, kw] = s.kernel;
    let vin = id * ih * iw;
    let vout: usize = out.iter().product();
    for n in 0..s.batch {
        for co in 0..s.channels_out {
            for z in 0..out[0] {
                for y in 0..out[1] {
                    for x in 0..out[2] {
                        let o = ((n * s.channels_out + co) * vout) + (z * out[1] + y) * out[2] + x;
                        for ci in 0..s.channels_in {
                            for a in 0..kd {
                                for b in 0..kh {
                                    for c in 0..kw {
                                        let zi = (z * s.stride[0] + a * s.dilation[0]) as isize
                                            - s.pad_begin[0] as isize;
                                        let yi = (y * s.stride[1] + b * s.dilation[1]) as isize
                                            - s.pad_begin[1] as isize;
                                        let xi = (x * s.stride[2] + c * s.dilation[2]) as isize
                                            - s.pad_begin[2] as isize;
                                        if zi < 0
                                            || yi < 0
                                            || xi < 0
                                            || zi >= id as isize
                                            || yi >= ih as isize
                                            || xi >= iw as isize
                                        {
                                            continue;
                                        }
                                        let i = (n * s.channels_in + ci) * vin
                                            + (zi as usize * ih + yi as usize) * iw
                                            + xi as usize;
                                        let wi = ((co * s.channels_in + ci) * kd + a) * kh * kw
                                            + b * kw
                                            + c;
                                        f(o, i, wi);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The convolution of `x` with `w` (plus `bias`), summed in f64.
pub(crate) fn naive_forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, s: &ConvShape) -> Vec<f32> {
    let out = s.output();
    let vout: usize = out.iter().product();
    let mut acc = vec![0f64; s.batch * s.channels_out * vout];
    for_each_product(s, |o, i, wi| acc[o] += x[i] as f64 * w[wi] as f64);
    acc.iter()
        .enumerate()
        .map(|(o, &v)| (v + bias.map_or(0.0, |b| b[(o / vout) % s.channels_out] as f64)) as f32)
        .collect()
}

/// The gradient of the input from the output gradient `g`, summed in f64.
pub(crate) fn naive_input_grad(g: &[f32], w: &[f32], s: &ConvShape) -> Vec<f32> {
    let mut acc = vec![0f64; s.batch * s.channels_in * s.input.iter().product::<usize>()];
    for_each_product(s, |o, i, wi| acc[i] += g[o] as f64 * w[wi] as f64);
    acc.iter().map(|&v| v as f32).collect()
}

/// The gradient of the weights from the input `x` and output gradient `g`, summed in f64.
pub(crate) fn naive_weight_grad(x: &[f32], g: &[f32], s: &ConvShape) -> Vec<f32> {
    let mut acc = vec![0f64; s.channels_out * s.channels_in * s.taps()];
    for_each_product(s, |o, i, wi| acc[wi] += g[o] as f64 * x[i] as f64);
    acc.iter().map(|&v| v as f32).collect()
}

/// max |a - b| / max(1, max |b|).
pub(crate) fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}
