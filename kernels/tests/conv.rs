//! The convolution kernels against naive loops, on every instruction set this CPU has.

mod common;

use common::*;
use nnunet_kernels::conv;

fn cases() -> Vec<nnunet_kernels::ConvShape> {
    vec![
        shape(2, 3, 5, [5, 6, 7], [3, 3, 3], [1, 1, 1], [1, 1, 1]),
        shape(1, 4, 9, [7, 6, 9], [3, 3, 3], [2, 2, 2], [1, 1, 1]),
        shape(2, 2, 3, [1, 13, 9], [1, 3, 3], [1, 2, 2], [0, 1, 1]),
        shape(1, 5, 4, [4, 5, 6], [1, 1, 1], [1, 1, 1], [0, 0, 0]),
        shape(2, 3, 17, [6, 4, 5], [2, 2, 2], [2, 2, 2], [0, 0, 0]),
        shape(1, 16, 8, [1, 9, 40], [1, 3, 3], [1, 1, 1], [0, 1, 1]),
        shape(3, 2, 2, [3, 5, 3], [3, 1, 3], [1, 1, 2], [1, 0, 1]),
    ]
}

#[test]
fn forward_matches_naive() {
    for (i, s) in cases().into_iter().enumerate() {
        let x = random(
            s.batch * s.channels_in * s.input.iter().product::<usize>(),
            i as u64,
        );
        let w = random(s.channels_out * s.channels_in * s.taps(), 100 + i as u64);
        let b = random(s.channels_out, 200 + i as u64);
        let got = conv::forward(&x, &w, Some(&b), &s);
        let want = naive_forward(&x, &w, Some(&b), &s);
        let e = rel_err(&got, &want);
        assert!(e < 1e-5, "case {i} {s:?}: relative error {e}");
    }
}

#[test]
fn input_grad_matches_naive() {
    for (i, s) in cases().into_iter().enumerate() {
        let g = random(
            s.batch * s.channels_out * s.output().iter().product::<usize>(),
            300 + i as u64,
        );
        let w = random(s.channels_out * s.channels_in * s.taps(), 100 + i as u64);
        let got = conv::input_grad(&g, &w, &s);
        let want = naive_input_grad(&g, &w, &s);
        let e = rel_err(&got, &want);
        assert!(e < 1e-5, "case {i} {s:?}: relative error {e}");
    }
}

#[test]
fn weight_grad_matches_naive() {
    for (i, s) in cases().into_iter().enumerate() {
        let x = random(
            s.batch * s.channels_in * s.input.iter().product::<usize>(),
            i as u64,
        );
        let g = random(
            s.batch * s.channels_out * s.output().iter().product::<usize>(),
            300 + i as u64,
        );
        let got = conv::weight_grad(&x, &g, &s);
        let want = naive_weight_grad(&x, &g, &s);
        let e = rel_err(&got, &want);
        assert!(e < 1e-5, "case {i} {s:?}: relative error {e}");
    }
}
