//! Micro-benchmark and parity checks for the patched burn-flex convolutions.
//!
//! `convbench check`            new path vs original burn-flex on many shapes (also `cargo test`)
//! `convbench bench [reps] [filter]`  ms per op, original vs new, alternating, min and median

#![allow(deprecated)]
use burn_backend::TensorData;
use burn_backend::ops::{ConvOptions, ConvTransposeOptions, ModuleOps};
use burn_flex::ops::fastconv::set_enabled;
use burn_flex::{Flex, FlexTensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub x: Vec<usize>,
    pub cout: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub transposed: bool,
    pub bias: bool,
    pub groups: usize,
    pub dil: usize,
}

fn case(name: &str, x: &[usize], cout: usize, k: usize, s: usize, p: usize, transposed: bool) -> Case {
    Case {
        name: name.into(),
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

fn rand_t(shape: &[usize], rng: &mut StdRng) -> FlexTensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    FlexTensor::from_data(TensorData::new(v, shape.to_vec()))
}

fn vals(t: FlexTensor) -> (Vec<usize>, Vec<f32>) {
    let d = t.into_data();
    (d.shape().iter().copied().collect::<Vec<usize>>(), d.to_vec::<f32>().unwrap())
}

pub struct Tensors {
    x: FlexTensor,
    w: FlexTensor,
    b: Option<FlexTensor>,
    g: FlexTensor,
}

fn weight_shape(c: &Case) -> Vec<usize> {
    let nd = c.x.len() - 2;
    let cin = c.x[1];
    let mut w = if c.transposed { vec![cin, c.cout / c.groups] } else { vec![c.cout, cin / c.groups] };
    w.extend(std::iter::repeat_n(c.k, nd));
    w
}

fn out_shape(c: &Case) -> Vec<usize> {
    let mut o = vec![c.x[0], c.cout];
    for &i in &c.x[2..] {
        let ke = c.dil * (c.k - 1) + 1;
        o.push(if c.transposed { (i - 1) * c.s + ke - 2 * c.p } else { (i + 2 * c.p - ke) / c.s + 1 });
    }
    o
}

pub fn make(c: &Case, seed: u64) -> Tensors {
    let mut rng = StdRng::seed_from_u64(seed);
    Tensors {
        x: rand_t(&c.x, &mut rng),
        w: rand_t(&weight_shape(c), &mut rng),
        b: if c.bias { Some(rand_t(&[c.cout], &mut rng)) } else { None },
        g: rand_t(&out_shape(c), &mut rng),
    }
}

fn copts<const N: usize>(c: &Case) -> ConvOptions<N> {
    ConvOptions::new([c.s; N], [c.p; N], [c.dil; N], c.groups)
}
fn topts<const N: usize>(c: &Case) -> ConvTransposeOptions<N> {
    ConvTransposeOptions::new([c.s; N], [c.p; N], [0; N], [c.dil; N], c.groups)
}

pub fn forward(c: &Case, t: &Tensors) -> FlexTensor {
    let (x, w, b) = (t.x.clone(), t.w.clone(), t.b.clone());
    match (c.x.len(), c.transposed) {
        (4, false) => Flex::conv2d(x, w, b, copts::<2>(c)),
        (5, false) => Flex::conv3d(x, w, b, copts::<3>(c)),
        (4, true) => Flex::conv_transpose2d(x, w, b, topts::<2>(c)),
        (5, true) => Flex::conv_transpose3d(x, w, b, topts::<3>(c)),
        _ => unreachable!(),
    }
}

/// (dx, dw, db)
pub fn backward(c: &Case, t: &Tensors) -> (FlexTensor, FlexTensor, Option<FlexTensor>) {
    let (x, w, g) = (t.x.clone(), t.w.clone(), t.g.clone());
    match (c.x.len(), c.transposed) {
        (4, false) => (
            Flex::conv2d_x_backward(x.clone(), w.clone(), g.clone(), copts::<2>(c)),
            Flex::conv2d_weight_backward(x.clone(), w, g.clone(), copts::<2>(c)),
            t.b.clone().map(|b| Flex::conv2d_bias_backward(x, b, g)),
        ),
        (5, false) => (
            Flex::conv3d_x_backward(x.clone(), w.clone(), g.clone(), copts::<3>(c)),
            Flex::conv3d_weight_backward(x.clone(), w, g.clone(), copts::<3>(c)),
            t.b.clone().map(|b| Flex::conv3d_bias_backward(x, b, g)),
        ),
        (4, true) => (
            Flex::conv_transpose2d_x_backward(w.clone(), g.clone(), topts::<2>(c)),
            Flex::conv_transpose2d_weight_backward(x.clone(), w, g.clone(), topts::<2>(c)),
            t.b.clone().map(|b| Flex::conv_transpose2d_bias_backward(x, b, g)),
        ),
        (5, true) => (
            Flex::conv_transpose3d_x_backward(w.clone(), g.clone(), topts::<3>(c)),
            Flex::conv_transpose3d_weight_backward(x.clone(), w, g.clone(), topts::<3>(c)),
            t.b.clone().map(|b| Flex::conv_transpose3d_bias_backward(x, b, g)),
        ),
        _ => unreachable!(),
    }
}

/// max |a - b| / max |b|
fn rel_err(a: FlexTensor, b: FlexTensor, what: &str) -> f32 {
    let (sa, va) = vals(a);
    let (sb, vb) = vals(b);
    assert_eq!(sa, sb, "{what}: shape mismatch");
    let mut m = 0f32;
    let mut r = 1e-12f32;
    for (x, y) in va.iter().zip(&vb) {
        assert!(x.is_finite(), "{what}: non-finite");
        m = m.max((x - y).abs());
        r = r.max(y.abs());
    }
    m / r
}

pub fn check_cases() -> Vec<Case> {
    let mut v = vec![];
    for &(nd, b) in &[(2usize, 1usize), (3, 2)] {
        let sp: Vec<usize> = if nd == 2 { vec![13, 9] } else { vec![7, 6, 9] };
        for &(ci, co) in &[(1, 4), (3, 8), (32, 32), (5, 320), (24, 17)] {
            for &(k, s, p) in &[(3, 1, 1), (3, 2, 1), (1, 1, 0), (2, 2, 0), (3, 1, 0), (1, 2, 0)] {
                let mut x = vec![b, ci];
                x.extend(&sp);
                v.push(case(&format!("{nd}d ci{ci} co{co} k{k} s{s} p{p}"), &x, co, k, s, p, false));
                if (k, s, p) == (2, 2, 0) || (k, s, p) == (3, 2, 1) || (k, s, p) == (3, 1, 1) {
                    v.push(case(&format!("{nd}d T ci{ci} co{co} k{k} s{s} p{p}"), &x, co, k, s, p, true));
                }
            }
        }
    }
    // larger, realistic nnU-Net shapes (chunking across spatial positions)
    v.push(case("3d 16->16 big", &[1, 16, 20, 24, 26], 16, 3, 1, 1, false));
    v.push(case("3d 64->64 s2", &[2, 64, 9, 10, 11], 64, 3, 2, 1, false));
    v.push(case("3d T 64->32 k2", &[2, 64, 8, 10, 10], 32, 2, 2, 0, true));
    v.push(case("2d 32->32 big", &[2, 32, 67, 61], 32, 3, 1, 1, false));
    v.push(case("3d 256->320", &[2, 256, 4, 5, 5], 320, 3, 1, 1, false));
    v.push(case("3d 320->320 s2 deep", &[1, 320, 3, 5, 5], 320, 3, 2, 1, false));
    // anisotropic-ish: k3 but stride 1 with odd small sizes, no bias, groups, dilation
    let mut c = case("3d nobias", &[2, 6, 5, 1, 7], 4, 3, 1, 1, false);
    c.bias = false;
    v.push(c);
    let mut c = case("2d groups2", &[2, 8, 11, 10], 6, 3, 1, 1, false);
    c.groups = 2;
    v.push(c);
    let mut c = case("3d groups2 T", &[1, 8, 4, 5, 6], 6, 3, 2, 1, true);
    c.groups = 2;
    v.push(c);
    let mut c = case("2d dil2", &[2, 5, 12, 11], 7, 3, 1, 2, false);
    c.dil = 2;
    v.push(c);
    v
}

/// Compare new against original for one case. Returns the max relative error.
pub fn check_one(c: &Case) -> f32 {
    let t = make(c, 1234);
    set_enabled(false);
    let f0 = forward(c, &t);
    let (dx0, dw0, db0) = backward(c, &t);
    set_enabled(true);
    let f1 = forward(c, &t);
    let (dx1, dw1, db1) = backward(c, &t);
    let mut e = rel_err(f1, f0, "forward");
    e = e.max(rel_err(dx1, dx0, "dx"));
    e = e.max(rel_err(dw1, dw0, "dw"));
    if let (Some(a), Some(b)) = (db1, db0) {
        e = e.max(rel_err(a, b, "db"));
    }
    e
}

pub fn check_all() {
    let mut worst = 0f32;
    for c in check_cases() {
        let e = check_one(&c);
        println!("{:<40} max rel err {:.2e}", c.name, e);
        assert!(e < 1e-4, "{}: relative error {e}", c.name);
        worst = worst.max(e);
    }
    println!("all ok, worst {worst:.2e}");
}

pub fn bench_cases() -> Vec<Case> {
    let mut v = vec![
        case("3d [2,32,32,40,40] 32->32 k3s1", &[2, 32, 32, 40, 40], 32, 3, 1, 1, false),
        case("3d [2,32,32,40,40] 32->64 k3s2", &[2, 32, 32, 40, 40], 64, 3, 2, 1, false),
        case("3d [2,64,16,20,20] 64->64 k3s1", &[2, 64, 16, 20, 20], 64, 3, 1, 1, false),
        case("3d [2,128,8,10,10] 128->128 k3s1", &[2, 128, 8, 10, 10], 128, 3, 1, 1, false),
        case("3d [2,256,4,5,5] 256->320 k3s1", &[2, 256, 4, 5, 5], 320, 3, 1, 1, false),
        case("3d T [2,64,16,20,20] 64->32 k2s2", &[2, 64, 16, 20, 20], 32, 2, 2, 0, true),
        case("3d [2,32,32,40,40] 32->3 k1 head", &[2, 32, 32, 40, 40], 3, 1, 1, 0, false),
        case("2d [12,32,256,256] 32->32 k3s1", &[12, 32, 256, 256], 32, 3, 1, 1, false),
        case("2d [12,64,128,128] 64->64 k3s1", &[12, 64, 128, 128], 64, 3, 1, 1, false),
        case("2d T [12,64,128,128] 64->32 k2s2", &[12, 64, 128, 128], 32, 2, 2, 0, true),
    ];
    v.iter_mut().for_each(|c| c.bias = true);
    v
}

fn time<F: FnMut()>(mut f: F) -> f64 {
    let t0 = Instant::now();
    f();
    t0.elapsed().as_secs_f64() * 1e3
}

fn stats(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2])
}

fn bench(reps: usize, filter: &str) {
    println!(
        "{:<36} | {:>21} | {:>21} | {:>21} | {:>21}",
        "case", "orig fwd min/med", "new fwd min/med", "orig f+b min/med", "new f+b min/med"
    );
    let mut tot = [0f64; 4];
    for c in bench_cases().into_iter().filter(|c| c.name.contains(filter)) {
        let t = make(&c, 7);
        let mut r: [Vec<f64>; 4] = Default::default();
        for rep in 0..reps + 1 {
            for (i, on) in [(0usize, false), (1, true)] {
                set_enabled(on);
                let tf = time(|| {
                    std::hint::black_box(forward(&c, &t));
                });
                let tb = time(|| {
                    std::hint::black_box(backward(&c, &t));
                });
                if rep > 0 {
                    r[i].push(tf);
                    r[2 + i].push(tf + tb);
                }
            }
        }
        let s: Vec<(f64, f64)> = r.iter_mut().map(|v| stats(v)).collect();
        for i in 0..4 {
            tot[i] += s[i].1;
        }
        println!(
            "{:<36} | {:>9.1} / {:>9.1} | {:>9.1} / {:>9.1} | {:>9.1} / {:>9.1} | {:>9.1} / {:>9.1}   x{:.2} fwd, x{:.2} f+b",
            c.name, s[0].0, s[0].1, s[1].0, s[1].1, s[2].0, s[2].1, s[3].0, s[3].1,
            s[0].1 / s[1].1, s[2].1 / s[3].1
        );
    }
    println!(
        "sum of medians: fwd orig {:.0} new {:.0} (x{:.2}); fwd+bwd orig {:.0} new {:.0} (x{:.2})",
        tot[0], tot[1], tot[0] / tot[1], tot[2], tot[3], tot[2] / tot[3]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(|s| s.as_str()) {
        Some("check") => check_all(),
        Some("bench") => {
            let reps = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
            let filter = args.get(3).cloned().unwrap_or_default();
            bench(reps, &filter);
        }
        Some("new") | Some("orig") => {
            // profile one mode only: convbench new|orig reps filter
            set_enabled(args[1] == "new");
            let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
            let filter = args.get(3).cloned().unwrap_or_default();
            for c in bench_cases().into_iter().filter(|c| c.name.contains(&filter)) {
                let t = make(&c, 7);
                for _ in 0..reps {
                    std::hint::black_box(forward(&c, &t));
                    std::hint::black_box(backward(&c, &t));
                }
            }
        }
        _ => eprintln!("usage: convbench check | bench [reps] [filter] | new|orig [reps] [filter]"),
    }
}

#[cfg(test)]
mod tests {
    /// One test function: the fast path is toggled through a process-wide switch.
    #[test]
    fn new_matches_original() {
        super::check_all();
    }
}
