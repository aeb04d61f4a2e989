//! The convolution kernels against naive f64 loops, in every arithmetic this CPU has: fp32 with
//! AVX-512, AVX2 and portable code; bf16 emulated, with AVX512-BF16 and with AMX (compared with
//! the naive loops on bf16-rounded operands).

mod common;

use common::*;
use nnunet_kernels::precision::round_bf16;
use nnunet_kernels::{Bf16Isa, ConvShape, Isa, Precision, conv, set_precision};

fn cases() -> Vec<ConvShape> {
    vec![
        shape(2, 3, 5, [5, 6, 7], [3, 3, 3], [1, 1, 1], [1, 1, 1]),
        shape(1, 4, 9, [7, 6, 9], [3, 3, 3], [2, 2, 2], [1, 1, 1]),
        shape(2, 2, 3, [1, 13, 9], [1, 3, 3], [1, 2, 2], [0, 1, 1]),
        shape(1, 5, 4, [4, 5, 6], [1, 1, 1], [1, 1, 1], [0, 0, 0]),
        shape(2, 3, 17, [6, 4, 5], [2, 2, 2], [2, 2, 2], [0, 0, 0]),
        shape(1, 16, 8, [1, 9, 40], [1, 3, 3], [1, 1, 1], [0, 1, 1]),
        shape(3, 2, 2, [3, 5, 3], [3, 1, 3], [1, 1, 2], [1, 0, 1]),
        // Wide enough for the AMX paths (32-channel blocks), odd sizes, strides.
        shape(2, 32, 48, [3, 5, 7], [3, 3, 3], [1, 1, 1], [1, 1, 1]),
        shape(1, 64, 32, [5, 6, 7], [3, 3, 3], [2, 2, 2], [1, 1, 1]),
        shape(2, 32, 33, [1, 11, 13], [1, 3, 3], [1, 1, 1], [0, 1, 1]),
        shape(2, 64, 32, [4, 6, 4], [2, 2, 2], [2, 2, 2], [0, 0, 0]),
        shape(1, 40, 18, [1, 7, 9], [1, 3, 3], [1, 2, 2], [0, 1, 1]),
        // Dilation and uneven padding.
        ConvShape {
            dilation: [1, 2, 2],
            pad_begin: [0, 2, 1],
            pad_end: [1, 1, 2],
            ..shape(2, 6, 5, [2, 8, 9], [2, 3, 3], [1, 2, 1], [0, 0, 0])
        },
    ]
}

/// The arithmetics to test: (name, precision, fp32 cap, bf16 cap).
fn modes() -> Vec<(&'static str, Precision, Isa, Bf16Isa)> {
    let mut m = vec![
        (
            "fp32 portable",
            Precision::Fp32,
            Isa::Portable,
            Bf16Isa::Emulated,
        ),
        (
            "bf16 emulated",
            Precision::Bf16,
            Isa::available(),
            Bf16Isa::Emulated,
        ),
    ];
    if Isa::available() >= Isa::Avx2 {
        m.push(("fp32 avx2", Precision::Fp32, Isa::Avx2, Bf16Isa::Emulated));
    }
    if Isa::available() >= Isa::Avx512 {
        m.push((
            "fp32 avx512",
            Precision::Fp32,
            Isa::Avx512,
            Bf16Isa::Emulated,
        ));
    }
    if Bf16Isa::available() >= Bf16Isa::Avx512Bf16 {
        m.push((
            "bf16 avx512_bf16",
            Precision::Bf16,
            Isa::available(),
            Bf16Isa::Avx512Bf16,
        ));
    }
    if Bf16Isa::available() >= Bf16Isa::Amx {
        m.push(("bf16 amx", Precision::Bf16, Isa::available(), Bf16Isa::Amx));
    }
    m
}

fn operands(s: &ConvShape, i: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = random(
        s.batch * s.channels_in * s.input.iter().product::<usize>(),
        i as u64,
    );
    let w = random(s.channels_out * s.channels_in * s.taps(), 100 + i as u64);
    let b = random(s.channels_out, 200 + i as u64);
    let g = random(
        s.batch * s.channels_out * s.output().iter().product::<usize>(),
        300 + i as u64,
    );
    (x, w, b, g)
}

/// One test for all modes: the precision and the caps are process-wide.
#[test]
fn every_arithmetic_matches_naive_loops() {
    for (name, precision, isa, bf16) in modes() {
        set_precision(precision);
        Isa::set_limit(Some(isa));
        Bf16Isa::set_limit(Some(bf16));
        let round = |v: &[f32]| -> Vec<f32> {
            if precision == Precision::Bf16 {
                v.iter().map(|&x| round_bf16(x)).collect()
            } else {
                v.to_vec()
            }
        };
        for (i, s) in cases().into_iter().enumerate() {
            let (x, w, b, g) = operands(&s, i);
            let (xr, wr, gr) = (round(&x), round(&w), round(&g));
            let checks = [
                (
                    "forward",
                    conv::forward(&x, &w, Some(&b), &s),
                    naive_forward(&xr, &wr, Some(&b), &s),
                ),
                (
                    "input grad",
                    conv::input_grad(&g, &w, &s),
                    naive_input_grad(&gr, &wr, &s),
                ),
                (
                    "weight grad",
                    conv::weight_grad(&x, &g, &s),
                    naive_weight_grad(&xr, &gr, &s),
                ),
            ];
            for (what, got, want) in checks {
                let e = rel_err(&got, &want);
                assert!(
                    e < 1e-5,
                    "{name}, {what}, case {i} {s:?}: relative error {e}"
                );
            }
        }
    }
    set_precision(Precision::Fp32);
    Isa::set_limit(None);
    Bf16Isa::set_limit(None);
}
