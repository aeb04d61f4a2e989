//! Parity of the patched burn-flex convolutions (`nnunet-kernels`) with burn-flex's original
//! implementation: forward, input, weight and bias gradients of 2D/3D convolutions and transposed
//! convolutions at the kernel sizes, strides and paddings nnU-Net plans (plus odd sizes, no bias,
//! groups and dilation, which must fall back to the original path), in fp32 and with bf16 products.

// Tests report what they measured.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use burn_backend::TensorData;
use burn_backend::ops::{ConvOptions, ConvTransposeOptions, ModuleOps};
use burn_flex::ops::nnunet_conv::set_enabled;
use burn_flex::{Flex, FlexTensor};
use rand::{Rng, SeedableRng, rngs::StdRng};

#[derive(Clone, Debug)]
struct Case {
    x: Vec<usize>,
    cout: usize,
    k: usize,
    s: usize,
    p: usize,
    transposed: bool,
    bias: bool,
    groups: usize,
    dil: usize,
}

fn case(x: &[usize], cout: usize, (k, s, p): (usize, usize, usize), transposed: bool) -> Case {
    Case {
        x: x.to_vec(),
        cout,
        k,
        s,
        p,
        transposed,
        bias: true,
        groups: 1,
        dil: 1,
    }
}

struct Tensors {
    x: FlexTensor,
    w: FlexTensor,
    b: Option<FlexTensor>,
    g: FlexTensor,
}

fn random(shape: &[usize], rng: &mut StdRng) -> FlexTensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    FlexTensor::from_data(TensorData::new(v, shape.to_vec()))
}

fn weight_shape(c: &Case) -> Vec<usize> {
    let cin = c.x[1];
    let mut w = if c.transposed {
        vec![cin, c.cout / c.groups]
    } else {
        vec![c.cout, cin / c.groups]
    };
    w.extend(std::iter::repeat_n(c.k, c.x.len() - 2));
    w
}

fn out_shape(c: &Case) -> Vec<usize> {
    let reach = c.dil * (c.k - 1) + 1;
    let mut o = vec![c.x[0], c.cout];
    for &i in &c.x[2..] {
        o.push(if c.transposed {
            (i - 1) * c.s + reach - 2 * c.p
        } else {
            (i + 2 * c.p - reach) / c.s + 1
        });
    }
    o
}

fn tensors(c: &Case) -> Tensors {
    let mut rng = StdRng::seed_from_u64(1234);
    Tensors {
        x: random(&c.x, &mut rng),
        w: random(&weight_shape(c), &mut rng),
        b: c.bias.then(|| random(&[c.cout], &mut rng)),
        g: random(&out_shape(c), &mut rng),
    }
}

fn conv<const N: usize>(c: &Case) -> ConvOptions<N> {
    ConvOptions::new([c.s; N], [c.p; N], [c.dil; N], c.groups)
}

fn transposed<const N: usize>(c: &Case) -> ConvTransposeOptions<N> {
    ConvTransposeOptions::new([c.s; N], [c.p; N], [0; N], [c.dil; N], c.groups)
}

/// Forward, input gradient, weight gradient and bias gradient.
fn run(c: &Case, t: &Tensors) -> Vec<(&'static str, FlexTensor)> {
    let (x, w, b, g) = (t.x.clone(), t.w.clone(), t.b.clone(), t.g.clone());
    // The same three passes for each kind of convolution; the transposed input gradient does not
    // take `x`.
    macro_rules! passes {
        ($fwd:ident, $dx:ident($($dx_arg:ident),+), $dw:ident, $options:expr) => {
            vec![
                ("forward", Flex::$fwd(x.clone(), w.clone(), b, $options)),
                ("dx", Flex::$dx($($dx_arg.clone(),)+ $options)),
                ("dw", Flex::$dw(x.clone(), w.clone(), g.clone(), $options)),
            ]
        };
    }
    let mut out = match (c.x.len(), c.transposed) {
        (4, false) => passes!(
            conv2d,
            conv2d_x_backward(x, w, g),
            conv2d_weight_backward,
            conv::<2>(c)
        ),
        (4, true) => passes!(
            conv_transpose2d,
            conv_transpose2d_x_backward(w, g),
            conv_transpose2d_weight_backward,
            transposed::<2>(c)
        ),
        (5, false) => passes!(
            conv3d,
            conv3d_x_backward(x, w, g),
            conv3d_weight_backward,
            conv::<3>(c)
        ),
        _ => passes!(
            conv_transpose3d,
            conv_transpose3d_x_backward(w, g),
            conv_transpose3d_weight_backward,
            transposed::<3>(c)
        ),
    };
    if let Some(b) = t.b.clone() {
        let db = match (c.x.len(), c.transposed) {
            (4, false) => Flex::conv2d_bias_backward(x, b, g),
            (4, true) => Flex::conv_transpose2d_bias_backward(x, b, g),
            (5, false) => Flex::conv3d_bias_backward(x, b, g),
            _ => Flex::conv_transpose3d_bias_backward(x, b, g),
        };
        out.push(("db", db));
    }
    out
}

/// max |a - b| / max |b|.
fn relative_error(a: FlexTensor, b: FlexTensor, what: &str) -> f32 {
    let (a, b) = (a.into_data(), b.into_data());
    assert_eq!(a.shape(), b.shape(), "{what}: shapes differ");
    let (a, b) = (
        a.try_to_vec::<f32>().expect("f32"),
        b.try_to_vec::<f32>().expect("f32"),
    );
    let (mut diff, mut scale) = (0f32, 1e-12f32);
    for (x, y) in a.iter().zip(&b) {
        assert!(x.is_finite(), "{what}: not finite");
        diff = diff.max((x - y).abs());
        scale = scale.max(y.abs());
    }
    diff / scale
}

fn cases() -> Vec<Case> {
    let mut v = vec![];
    for (nd, batch) in [(2usize, 1usize), (3, 2)] {
        let spatial: &[usize] = if nd == 2 { &[13, 9] } else { &[7, 6, 9] };
        for (ci, co) in [(1, 4), (32, 32), (5, 48), (24, 17)] {
            let mut x = vec![batch, ci];
            x.extend(spatial);
            for ksp in [(3, 1, 1), (3, 2, 1), (1, 1, 0), (2, 2, 0), (3, 1, 0)] {
                v.push(case(&x, co, ksp, false));
                if ksp != (1, 1, 0) && ksp != (3, 1, 0) {
                    v.push(case(&x, co, ksp, true));
                }
            }
        }
    }
    // nnU-Net-sized: several blocks of positions and rows, anisotropic 1×3×3 planes.
    v.push(case(&[1, 16, 20, 24, 26], 16, (3, 1, 1), false));
    v.push(case(&[2, 64, 9, 10, 11], 64, (3, 2, 1), false));
    v.push(case(&[2, 64, 8, 10, 10], 32, (2, 2, 0), true));
    v.push(case(&[2, 32, 67, 61], 32, (3, 1, 1), false));
    v.push(case(&[1, 256, 4, 5, 5], 320, (3, 1, 1), false));
    v.push(case(&[2, 32, 1, 30, 31], 32, (3, 1, 1), false));
    let mut c = case(&[2, 6, 5, 1, 7], 4, (3, 1, 1), false);
    c.bias = false;
    v.push(c);
    let mut c = case(&[2, 8, 11, 10], 6, (3, 1, 1), false);
    c.groups = 2;
    v.push(c);
    let mut c = case(&[2, 5, 12, 11], 7, (3, 1, 2), false);
    c.dil = 2;
    v.push(c);
    v
}

/// The worst relative error of the patched path against the original over all cases.
fn worst_error(tolerance: f32) -> f32 {
    let mut worst = 0f32;
    for c in cases() {
        let t = tensors(&c);
        set_enabled(false);
        let original = run(&c, &t);
        set_enabled(true);
        let patched = run(&c, &t);
        for ((what, new), (_, old)) in patched.into_iter().zip(original) {
            let e = relative_error(new, old, what);
            assert!(e < tolerance, "{c:?} {what}: relative error {e:.2e}");
            worst = worst.max(e);
        }
    }
    worst
}

#[test]
fn patched_convolutions_equal_the_original_in_fp32_and_within_bf16_rounding() {
    nnunet_kernels::set_precision(nnunet_kernels::Precision::Fp32);
    let fp32 = worst_error(1e-5);
    // bf16 products (8 significant bits) with fp32 sums: errors of a few 2^-9 of the scale.
    nnunet_kernels::set_precision(nnunet_kernels::Precision::Bf16);
    let bf16 = worst_error(3e-2);
    nnunet_kernels::set_precision(nnunet_kernels::Precision::Fp32);
    println!("worst relative error: fp32 {fp32:.2e}, bf16 {bf16:.2e}");
    assert!(bf16 > fp32, "bf16 products were not used");
}
