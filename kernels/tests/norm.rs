//! The fused instance norm + affine + leaky ReLU against a straightforward f64 implementation.

mod common;

use common::{random, rel_err};
use nnunet_kernels::norm;

#[allow(clippy::too_many_arguments)]
/// f64 reference: y and, for the output gradient dy, (dx, dgamma, dbeta).
fn reference(
    x: &[f32],
    dy: &[f32],
    n: usize,
    c: usize,
    g: &[f32],
    b: &[f32],
    eps: f64,
    slope: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let s = x.len() / (n * c);
    let (mut y, mut dx) = (vec![0f32; x.len()], vec![0f32; x.len()]);
    let (mut dg, mut db) = (vec![0f64; c], vec![0f64; c]);
    for i in 0..n * c {
        let ch = i % c;
        let p: Vec<f64> = x[i * s..(i + 1) * s].iter().map(|&v| v as f64).collect();
        let mean = p.iter().sum::<f64>() / s as f64;
        let var = p.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / s as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        let xh: Vec<f64> = p.iter().map(|v| (v - mean) * rstd).collect();
        let z: Vec<f64> = xh.iter().map(|h| g[ch] as f64 * h + b[ch] as f64).collect();
        let dz: Vec<f64> = (0..s)
            .map(|j| dy[i * s + j] as f64 * if z[j] > 0.0 { 1.0 } else { slope })
            .collect();
        for j in 0..s {
            y[i * s + j] = (if z[j] > 0.0 { z[j] } else { slope * z[j] }) as f32;
        }
        db[ch] += dz.iter().sum::<f64>();
        dg[ch] += (0..s).map(|j| dz[j] * xh[j]).sum::<f64>();
        let dxh: Vec<f64> = dz.iter().map(|d| d * g[ch] as f64).collect();
        let m1 = dxh.iter().sum::<f64>() / s as f64;
        let m2 = (0..s).map(|j| dxh[j] * xh[j]).sum::<f64>() / s as f64;
        for j in 0..s {
            dx[i * s + j] = (rstd * (dxh[j] - m1 - xh[j] * m2)) as f32;
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (y, dx, f(dg), f(db))
}

#[test]
fn fused_norm_matches_reference() {
    for (case, &(n, c, s, slope)) in [
        (2, 3, 1000, 0.01f32),
        (1, 4, 37, 1.0),
        (3, 2, 4096, 0.0),
        (2, 5, 3, 0.01),
    ]
    .iter()
    .enumerate()
    {
        let seed = 10 * case as u64;
        // An offset mean, as convolution outputs have.
        let x: Vec<f32> = random(n * c * s, seed)
            .iter()
            .map(|v| 3.0 + 2.0 * v)
            .collect();
        let dy = random(n * c * s, seed + 1);
        let g: Vec<f32> = random(c, seed + 2).iter().map(|v| 1.0 + v).collect();
        let b = random(c, seed + 3);
        let (y, stats) = norm::forward(&x, n, c, &g, &b, 1e-5, slope);
        let grads = norm::backward(&x, &dy, n, c, &g, &b, &stats, slope);
        let (ry, rdx, rdg, rdb) = reference(&x, &dy, n, c, &g, &b, 1e-5, slope as f64);
        for (name, got, want) in [
            ("y", &y, &ry),
            ("dx", &grads.dx, &rdx),
            ("dgamma", &grads.dgamma, &rdg),
            ("dbeta", &grads.dbeta, &rdb),
        ] {
            let e = rel_err(got, want);
            assert!(e < 2e-5, "case {case} {name}: relative error {e}");
        }
    }
}
