//! Fused instance normalisation + affine + leaky ReLU on `[n, c, spatial]` data, forward and
//! backward, two passes over a plane each:
//!
//! - forward: statistics (f64 sums), then `y = act((x − mean) · a + β)` with `a = γ·rstd`, `act(z) = z` for `z > 0`, `slope · z` otherwise (slope 1: no activation,
//!   0: ReLU);
//! - backward (from `x`, the saved mean and rstd): `dz = dy · act'(z)`; the sums of `dz` and
//!   `dz · x̂` give `dβ`, `dγ` and the constants of `dx = a·dz + c₁ + c₂·(x − mean)`.
//!
//! Only `x` and two numbers per plane are kept for the backward pass (the generic composition
//! keeps every intermediate). The loops are plain Rust compiled for the detected instruction
//! set.

use rayon::prelude::*;

use crate::isa::Isa;

/// What the backward pass needs besides `x`: mean and 1/std of every (sample, channel) plane.
#[derive(Clone, Debug)]
pub struct NormStats {
    /// Mean per plane (`n · c`).
    pub mean: Vec<f32>,
    /// 1 / sqrt(var + eps) per plane.
    pub rstd: Vec<f32>,
}

/// Gradients of the fused operation.
#[derive(Clone, Debug)]
pub struct NormGrads {
    /// Gradient of the input.
    pub dx: Vec<f32>,
    /// Gradient of γ (per channel).
    pub dgamma: Vec<f32>,
    /// Gradient of β (per channel).
    pub dbeta: Vec<f32>,
}

const LANES: usize = 16;

macro_rules! multiversion {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) -> $ret { $body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret { $body($($arg),*) }
                match Isa::detected() {
                    // SAFETY: the CPU has the features (run-time detection).
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    Isa::Portable => {}
                }
            }
            $body($($arg),*)
        }
    };
}

/// (Σx, Σx²) of a plane in f64.
#[inline(always)]
fn sums_body(x: &[f32]) -> (f64, f64) {
    let mut s = [0f64; LANES];
    let mut q = [0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            let v = c[i] as f64;
            s[i] += v;
            q[i] += v * v;
        }
    }
    for &v in tail {
        s[0] += v as f64;
        q[0] += (v as f64) * (v as f64);
    }
    (s.iter().sum(), q.iter().sum())
}
multiversion!(sums, sums_body, (x: &[f32]) -> (f64, f64));

/// The per-plane constants of the elementwise passes: `z = (x − mean) · a + b`,
/// `dx = a · dz + c1 + c2 · (x − mean)`.
#[derive(Clone, Copy, Default)]
struct Coef {
    mean: f32,
    a: f32,
    b: f32,
    slope: f32,
    c1: f32,
    c2: f32,
}

impl Coef {
    /// (x − mean, dz) for output gradient `g`.
    #[inline(always)]
    fn centred_grad(&self, v: f32, g: f32) -> (f32, f32) {
        let d = v - self.mean;
        let z = d * self.a + self.b;
        (d, if z > 0.0 { g } else { g * self.slope })
    }
}

#[inline(always)]
fn forward_body(x: &[f32], y: &mut [f32], k: Coef) {
    for (o, &v) in y.iter_mut().zip(x) {
        let z = (v - k.mean) * k.a + k.b;
        *o = if z > 0.0 { z } else { z * k.slope };
    }
}
multiversion!(forward_plane, forward_body, (x: &[f32], y: &mut [f32], k: Coef) -> ());

/// (Σdz, Σdz·(x − mean)) of a plane.
#[inline(always)]
fn grad_sums_body(x: &[f32], dy: &[f32], k: Coef) -> (f64, f64) {
    let mut s = [0f32; LANES];
    let mut p = [0f32; LANES];
    let (mut total_s, mut total_p) = (0f64, 0f64);
    for (xc, dc) in x.chunks(LANES * 64).zip(dy.chunks(LANES * 64)) {
        for (xs, ds) in xc.chunks(LANES).zip(dc.chunks(LANES)) {
            for i in 0..xs.len() {
                let (d, dz) = k.centred_grad(xs[i], ds[i]);
                s[i] += dz;
                p[i] += dz * d;
            }
        }
        // Blocks of 1024 values in f32 lanes, blocks summed in f64.
        total_s += s.iter().map(|&v| v as f64).sum::<f64>();
        total_p += p.iter().map(|&v| v as f64).sum::<f64>();
        s = [0.0; LANES];
        p = [0.0; LANES];
    }
    (total_s, total_p)
}
multiversion!(grad_sums, grad_sums_body, (x: &[f32], dy: &[f32], k: Coef) -> (f64, f64));

#[inline(always)]
fn backward_body(x: &[f32], dy: &[f32], dx: &mut [f32], k: Coef) {
    for ((o, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
        let (d, dz) = k.centred_grad(v, g);
        *o = k.a * dz + k.c1 + k.c2 * d;
    }
}
multiversion!(backward_plane, backward_body, (x: &[f32], dy: &[f32], dx: &mut [f32], k: Coef) -> ());

/// `Σ x²` in f64 (for the global gradient norm), in parallel blocks.
pub fn sum_of_squares(x: &[f32]) -> f64 {
    x.par_chunks(1 << 16).map(|c| sums(c).1).sum()
}

/// Forward pass on `x` (`[n, c, s]`, `s = x.len() / (n·c)`): returns `y` and the statistics.
pub fn forward(
    x: &[f32],
    n: usize,
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    slope: f32,
) -> (Vec<f32>, NormStats) {
    let s = x.len() / (n * c).max(1);
    let mut y = crate::zeroed(x.len());
    let mut mean = vec![0f32; n * c];
    let mut rstd = vec![0f32; n * c];
    y.par_chunks_mut(s.max(1))
        .zip(x.par_chunks(s.max(1)))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .enumerate()
        .for_each(|(i, ((yp, xp), (m, r)))| {
            let (sum, sq) = sums(xp);
            let mu = sum / s as f64;
            let var = (sq / s as f64 - mu * mu).max(0.0);
            let rs = 1.0 / (var + eps).sqrt();
            let ch = i % c;
            let a = gamma[ch] as f64 * rs;
            let k = Coef {
                mean: mu as f32,
                a: a as f32,
                b: beta[ch],
                slope,
                ..Coef::default()
            };
            forward_plane(xp, yp, k);
            (*m, *r) = (mu as f32, rs as f32);
        });
    (y, NormStats { mean, rstd })
}

/// Backward pass: `x` the forward input, `dy` the output gradient.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    x: &[f32],
    dy: &[f32],
    n: usize,
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    stats: &NormStats,
    slope: f32,
) -> NormGrads {
    let s = x.len() / (n * c).max(1);
    let mut dx = crate::zeroed(x.len());
    // Per plane: (Σdz, Σdz·x̂).
    let sums: Vec<(f64, f64)> = dx
        .par_chunks_mut(s.max(1))
        .zip(x.par_chunks(s.max(1)).zip(dy.par_chunks(s.max(1))))
        .enumerate()
        .map(|(i, (dxp, (xp, dyp)))| {
            let ch = i % c;
            let (mu, rs) = (stats.mean[i] as f64, stats.rstd[i] as f64);
            let a = gamma[ch] as f64 * rs;
            let mut k = Coef {
                mean: mu as f32,
                a: a as f32,
                b: beta[ch],
                slope,
                ..Coef::default()
            };
            let (sdz, sdzd) = grad_sums(xp, dyp, k);
            // Σ dz·x̂ with x̂ = rstd·(x − mean)
            let sdzh = rs * sdzd;
            let (mdz, mdzh) = (sdz / s as f64, sdzh / s as f64);
            // dx = a·(dz − mean(dz) − x̂·mean(dz·x̂))
            let (c1, c2) = (-a * mdz, -a * mdzh * rs);
            (k.c1, k.c2) = (c1 as f32, c2 as f32);
            backward_plane(xp, dyp, dxp, k);
            (sdz, sdzh)
        })
        .collect();
    let mut dgamma = vec![0f64; c];
    let mut dbeta = vec![0f64; c];
    for (i, (sdz, sdzh)) in sums.into_iter().enumerate() {
        dbeta[i % c] += sdz;
        dgamma[i % c] += sdzh;
    }
    NormGrads {
        dx,
        dgamma: dgamma.into_iter().map(|v| v as f32).collect(),
        dbeta: dbeta.into_iter().map(|v| v as f32).collect(),
    }
}
