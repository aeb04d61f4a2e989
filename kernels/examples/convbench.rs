//! Times the convolution kernels on nnU-Net-sized shapes: `cargo run --release -p nnunet-kernels --example convbench`.
//! `PRECISION=bf16` computes in bf16.

// Tests report what they measured.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Instant;

use nnunet_kernels::conv;

// The convolution shapes of the parity tests' helpers.
#[path = "../tests/common/mod.rs"]
mod common;
use common::shape;

/// The best of three timed runs of `f` (after one warm-up run), in milliseconds.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best * 1e3
}

fn main() {
    let precision = std::env::var("PRECISION")
        .ok()
        .and_then(|p| nnunet_kernels::Precision::parse(&p))
        .unwrap_or(nnunet_kernels::Precision::Fp32);
    nnunet_kernels::set_precision(precision);
    println!("{}", precision.describe());
    let shapes = [
        (
            "3d 32->32 k3 40x56x40",
            shape(2, 32, 32, [40, 56, 40], [3; 3], [1; 3], [1; 3]),
        ),
        (
            "3d 64->64 k3 20x28x20",
            shape(2, 64, 64, [20, 28, 20], [3; 3], [1; 3], [1; 3]),
        ),
        (
            "3d 32->64 k3 s2",
            shape(2, 32, 64, [40, 56, 40], [3; 3], [2; 3], [1; 3]),
        ),
        (
            "3d 128->128 k3 10x14x10",
            shape(2, 128, 128, [10, 14, 10], [3; 3], [1; 3], [1; 3]),
        ),
        (
            "3d 256->256 k3 5x7x5",
            shape(2, 256, 256, [5, 7, 5], [3; 3], [1; 3], [1; 3]),
        ),
        (
            "2d 32->32 k3 320x256",
            shape(2, 32, 32, [1, 320, 256], [1, 3, 3], [1; 3], [0, 1, 1]),
        ),
        (
            "3d 320->320 k3 5x7x5 s2",
            shape(2, 320, 320, [5, 7, 5], [3; 3], [2; 3], [1; 3]),
        ),
        (
            "2d 256->256 k3 40x32",
            shape(2, 256, 256, [1, 40, 32], [1, 3, 3], [1; 3], [0, 1, 1]),
        ),
        (
            "2d 512->512 k3 20x16",
            shape(2, 512, 512, [1, 20, 16], [1, 3, 3], [1; 3], [0, 1, 1]),
        ),
        (
            "2d 512->512 k3 10x8",
            shape(2, 512, 512, [1, 10, 8], [1, 3, 3], [1; 3], [0, 1, 1]),
        ),
        (
            "2d 512->512 k3 5x4",
            shape(2, 512, 512, [1, 5, 4], [1, 3, 3], [1; 3], [0, 1, 1]),
        ),
    ];
    for (name, s) in shapes {
        let x = vec![0.5f32; s.batch * s.channels_in * s.input.iter().product::<usize>()];
        let w = vec![0.01f32; s.channels_out * s.channels_in * s.taps()];
        let flop = 2.0
            * (s.batch * s.channels_out * s.channels_in * s.taps()) as f64
            * s.output().iter().product::<usize>() as f64;
        let g = vec![0.01f32; s.batch * s.channels_out * s.output().iter().product::<usize>()];
        let f = time(|| {
            std::hint::black_box(conv::forward(&x, &w, None, &s));
        });
        let dx = time(|| {
            std::hint::black_box(conv::input_grad(&g, &w, &s));
        });
        let dw = time(|| {
            std::hint::black_box(conv::weight_grad(&x, &g, &s));
        });
        let gf = |ms: f64| flop / ms / 1e6;
        println!(
            "{name:24} fwd {f:7.2} ms {:5.0} | dx {dx:7.2} ms {:5.0} | dw {dw:7.2} ms {:5.0} | f+b {:7.2} ms {:5.0} GFLOP/s",
            gf(f),
            gf(dx),
            gf(dw),
            f + dx + dw,
            3.0 * gf(f + dx + dw)
        );
    }
}
