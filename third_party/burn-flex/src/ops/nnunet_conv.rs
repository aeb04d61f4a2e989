//! nnU-Net-rs patch: 2D/3D convolutions (forward, input, weight and bias gradients, transposed)
//! of f32 tensors with groups 1 go to the `nnunet-kernels` crate (direct convolution on padded
//! grids, AVX-512 / AVX2 / portable chosen at run time, optional bf16 products); every other
//! case (other dtypes, groups > 1, 1D) keeps burn-flex's own code. See NNUNET_CHANGES.md.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use burn_backend::DType;
use burn_backend::ops::{ConvOptions, ConvTransposeOptions};
use burn_std::{Bytes, Shape};
use nnunet_kernels::{ConvShape, conv};

use crate::{FlexTensor, Layout};

/// Whether the patched path is on (default; `BURN_FLEX_NNUNET_CONV=0` turns it off).
pub fn enabled() -> bool {
    match crate::nnunet_shared::state().nnunet_conv.load(Ordering::Relaxed) {
        0 => false,
        1 => true,
        _ => {
            let on = !matches!(std::env::var("BURN_FLEX_NNUNET_CONV").as_deref(), Ok("0"));
            crate::nnunet_shared::state().nnunet_conv.store(on as u8, Ordering::Relaxed);
            on
        }
    }
}

/// Turns the patched path on or off at run time (parity tests, benchmarks).
pub fn set_enabled(on: bool) {
    crate::nnunet_shared::state().nnunet_conv.store(on as u8, Ordering::Relaxed);
}

/// Whether the patched path takes a convolution of these tensors.
pub(crate) fn handles(dtypes: &[DType], groups: usize) -> bool {
    enabled() && groups == 1 && dtypes.iter().all(|d| *d == DType::F32)
}

fn dims(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().iter().copied().collect()
}

/// The last three of `dims` as (depth, height, width), depth 1 for rank-4 tensors.
fn spatial(dims: &[usize]) -> [usize; 3] {
    let s = &dims[2..];
    if s.len() == 2 { [1, s[0], s[1]] } else { [s[0], s[1], s[2]] }
}

fn lift<const N: usize>(a: [usize; N], fill: usize) -> [usize; 3] {
    let mut r = [fill; 3];
    r[3 - N..].copy_from_slice(&a);
    r
}

fn values(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

fn make(v: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(v), Layout::contiguous(Shape::from(shape)), DType::F32)
}

/// `[batch, channels, spatial…]` with the spatial rank of the input (`rank` 4 or 5).
fn nd_shape(batch: usize, channels: usize, sp: [usize; 3], rank: usize) -> Vec<usize> {
    let mut v = alloc::vec![batch, channels];
    v.extend_from_slice(&sp[5 - rank..]);
    v
}

fn conv_shape<const N: usize>(x: &[usize], w: &[usize], o: &ConvOptions<N>) -> ConvShape {
    ConvShape {
        batch: x[0],
        channels_in: x[1],
        channels_out: w[0],
        input: spatial(x),
        kernel: spatial(w),
        stride: lift(o.stride, 1),
        pad_begin: lift(o.padding_begin(), 0),
        pad_end: lift(o.padding_end(), 0),
        dilation: lift(o.dilation, 1),
    }
}

/// The convolution whose input gradient a transposed convolution is: from the transposed
/// output (`out` positions, `w[1]` channels) back to its input (`x`).
fn adjoint_shape<const N: usize>(x: &[usize], w: &[usize], out: [usize; 3], o: &ConvTransposeOptions<N>) -> ConvShape {
    let pad = lift(o.padding, 0);
    ConvShape {
        batch: x[0],
        channels_in: w[1],
        channels_out: w[0],
        input: out,
        kernel: spatial(w),
        stride: lift(o.stride, 1),
        pad_begin: pad,
        pad_end: pad,
        dilation: lift(o.dilation, 1),
    }
}

fn transposed_output<const N: usize>(x: &[usize], w: &[usize], o: &ConvTransposeOptions<N>) -> [usize; 3] {
    let (ins, k) = (spatial(x), spatial(w));
    let (s, p, op, d) = (lift(o.stride, 1), lift(o.padding, 0), lift(o.padding_out, 0), lift(o.dilation, 1));
    core::array::from_fn(|a| (ins[a] - 1) * s[a] + d[a] * (k[a] - 1) + op[a] + 1 - 2 * p[a])
}

/// Convolution forward.
pub(crate) fn conv_forward<const N: usize>(x: FlexTensor, w: FlexTensor, bias: Option<FlexTensor>, o: &ConvOptions<N>) -> FlexTensor {
    let (x, w, bias) = (values(&x), values(&w), bias.map(|b| values(&b)));
    let (xd, wd) = (dims(&x), dims(&w));
    let s = conv_shape(&xd, &wd, o);
    let y = conv::forward(x.storage(), w.storage(), bias.as_ref().map(|b| b.storage()), &s);
    make(y, nd_shape(s.batch, s.channels_out, s.output(), xd.len()))
}

/// Convolution input gradient.
pub(crate) fn conv_x_backward<const N: usize>(x: FlexTensor, w: FlexTensor, g: FlexTensor, o: &ConvOptions<N>) -> FlexTensor {
    let (w, g) = (values(&w), values(&g));
    let xd = dims(&x);
    let s = conv_shape(&xd, &dims(&w), o);
    make(conv::input_grad(g.storage(), w.storage(), &s), xd)
}

/// Convolution weight gradient.
pub(crate) fn conv_weight_backward<const N: usize>(x: FlexTensor, w: FlexTensor, g: FlexTensor, o: &ConvOptions<N>) -> FlexTensor {
    let (x, g) = (values(&x), values(&g));
    let wd = dims(&w);
    let s = conv_shape(&dims(&x), &wd, o);
    make(conv::weight_grad(x.storage(), g.storage(), &s), wd)
}

/// Bias gradient of a convolution or transposed convolution.
pub(crate) fn bias_backward(bias: FlexTensor, g: FlexTensor) -> FlexTensor {
    let g = values(&g);
    let gd = dims(&g);
    make(conv::bias_grad(g.storage(), gd[0], gd[1]), dims(&bias))
}

/// Transposed convolution forward: the input gradient of its adjoint convolution.
pub(crate) fn conv_transpose_forward<const N: usize>(
    x: FlexTensor,
    w: FlexTensor,
    bias: Option<FlexTensor>,
    o: &ConvTransposeOptions<N>,
) -> FlexTensor {
    let (x, w) = (values(&x), values(&w));
    let (xd, wd) = (dims(&x), dims(&w));
    let out = transposed_output(&xd, &wd, o);
    let s = adjoint_shape(&xd, &wd, out, o);
    let mut y = conv::input_grad(x.storage(), w.storage(), &s);
    if let Some(b) = bias {
        let b = values(&b);
        let per: usize = out.iter().product();
        for (i, plane) in y.chunks_mut(per).enumerate() {
            let v = b.storage::<f32>()[i % wd[1]];
            plane.iter_mut().for_each(|e| *e += v);
        }
    }
    make(y, nd_shape(xd[0], wd[1], out, xd.len()))
}

/// Transposed convolution weight gradient: the weight gradient of its adjoint convolution, with
/// the output gradient as its input and the transposed input as its output gradient.
pub(crate) fn conv_transpose_weight_backward<const N: usize>(
    x: FlexTensor,
    w: FlexTensor,
    g: FlexTensor,
    o: &ConvTransposeOptions<N>,
) -> FlexTensor {
    let (x, g) = (values(&x), values(&g));
    let (xd, wd, gd) = (dims(&x), dims(&w), dims(&g));
    let s = adjoint_shape(&xd, &wd, spatial(&gd), o);
    make(conv::weight_grad(g.storage(), x.storage(), &s), wd)
}
