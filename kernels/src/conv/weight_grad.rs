//! The fp32 weight-gradient driver: `dW[co][k] = Σ_q g[co][q] · src[koff[k] + q]`, the sum over
//! every output position of every sample. The output gradient is packed transposed per block of
//! positions (`gT[q][co]`, zero at positions that are not outputs) so the micro-kernel
//! broadcasts grid values and multiplies vectors of output channels; the grid rows are read in
//! place. Each worker sums its blocks into its own `[k][co]` accumulator; the workers' sums are
//! added at the end.

use rayon::prelude::*;

use super::shape::OutMap;
use crate::isa::Isa;
use crate::microkernel;

/// Positions per block.
pub(crate) const BLOCK: usize = 256;

/// One weight-gradient problem.
pub(crate) struct Job<'a> {
    /// Offsets of the rows `k` in `src`.
    pub koff: &'a [isize],
    /// The forward operand's grid.
    pub src: &'a [f32],
    /// Positions `[0, q_end)`.
    pub q_end: usize,
    /// Where output positions are in `g` (the forward pass's output map).
    pub map: &'a OutMap,
}

/// Tile shape: `mr` grid rows × `cols` output channels.
#[derive(Clone, Copy)]
struct Tile {
    mr: usize,
    cols: usize,
}

fn tile(isa: Isa, channels: usize) -> Tile {
    let lanes = match isa {
        Isa::Avx512 => 16,
        Isa::Avx2 => 8,
        Isa::Portable => {
            return Tile {
                mr: 4,
                cols: microkernel::portable::GRAD_NR,
            };
        }
    };
    // The widest tile (fewest broadcasts per product) that pads the channels least.
    let options: &[(usize, usize)] = match isa {
        Isa::Avx512 => &[(6, 4), (8, 3), (12, 2), (12, 1)],
        _ => &[(3, 4), (6, 2), (6, 1)],
    };
    let padded = |nv: usize| channels.div_ceil(nv * lanes) * nv * lanes;
    let &(mr, nv) = options
        .iter()
        .min_by_key(|(_, nv)| padded(*nv))
        .expect("options");
    Tile {
        mr,
        cols: nv * lanes,
    }
}

/// `acc[r][c] += Σ_{q<len} rows[r][q] · bt[q][c]` for one tile.
#[allow(clippy::too_many_arguments)]
unsafe fn run_tile(
    isa: Isa,
    t: Tile,
    len: usize,
    rows: &[*const f32],
    bt: *const f32,
    ldb: usize,
    acc: *mut f32,
    ldacc: usize,
) {
    macro_rules! call {
        ($f:path, $mr:literal) => {{
            let r: &[*const f32; $mr] = rows.try_into().expect("tile rows");
            unsafe { $f(len, r, bt, ldb, acc, ldacc) }
        }};
    }
    match (isa, t.mr, t.cols) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 6, 64) => call!(microkernel::avx512::weight_grad::<6, 4>, 6),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 8, 48) => call!(microkernel::avx512::weight_grad::<8, 3>, 8),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 12, 32) => call!(microkernel::avx512::weight_grad::<12, 2>, 12),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 12, 16) => call!(microkernel::avx512::weight_grad::<12, 1>, 12),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, 3, 32) => call!(microkernel::avx2::weight_grad::<3, 4>, 3),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, 6, 16) => call!(microkernel::avx2::weight_grad::<6, 2>, 6),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, 6, 8) => call!(microkernel::avx2::weight_grad::<6, 1>, 6),
        _ => call!(microkernel::portable::weight_grad::<4>, 4),
    }
}

/// Computes `dW` (`[channels][koff.len()]`, row-major) from the output gradient `g`
/// (`[n, channels, out…]`).
pub(crate) fn run(job: &Job, g: &[f32]) -> Vec<f32> {
    let isa = Isa::detected();
    let channels = job.map.channels;
    let t = tile(isa, channels);
    let k = job.koff.len();
    let kpad = k.div_ceil(t.mr) * t.mr;
    let cpad = channels.div_ceil(t.cols) * t.cols;
    let max_off = job.koff.iter().copied().max().unwrap_or(0) as usize;
    let nblocks = job.q_end.div_ceil(BLOCK);
    assert!(
        max_off + nblocks * BLOCK <= job.src.len(),
        "grid too short for the job"
    );
    let ktiles = kpad / t.mr;
    let threads = rayon::current_num_threads();
    let kchunks = if nblocks >= 2 * threads {
        1
    } else {
        (2 * threads).div_ceil(nblocks.max(1)).min(ktiles)
    };
    let per_chunk = ktiles.div_ceil(kchunks);
    let tasks = nblocks * kchunks;
    let workers = threads.min(tasks).max(1);
    let sum = (0..workers)
        .into_par_iter()
        .map(|wk| {
            let mut acc = vec![0f32; kpad * cpad];
            let mut bt = vec![0f32; BLOCK * cpad];
            let mut packed_block = usize::MAX;
            for task in (wk..tasks).step_by(workers) {
                let (b, kc) = (task / kchunks, task % kchunks);
                let (q0, q1) = (b * BLOCK, ((b + 1) * BLOCK).min(job.q_end));
                if packed_block != b {
                    pack_transposed(job.map, g, q0, q1, cpad, &mut bt);
                    packed_block = b;
                }
                for kt in kc * per_chunk..((kc + 1) * per_chunk).min(ktiles) {
                    let rows: Vec<*const f32> = (0..t.mr)
                        .map(|r| {
                            let off = job.koff.get(kt * t.mr + r).copied().unwrap_or(0);
                            // SAFETY: in bounds of the grid (asserted above).
                            unsafe { job.src.as_ptr().offset(off).add(q0) }
                        })
                        .collect();
                    for c0 in (0..cpad).step_by(t.cols) {
                        // SAFETY: rows cover q1 - q0 values, bt holds BLOCK rows of cpad, acc
                        // holds kpad rows of cpad.
                        unsafe {
                            run_tile(
                                isa,
                                t,
                                q1 - q0,
                                &rows,
                                bt.as_ptr().add(c0),
                                cpad,
                                acc.as_mut_ptr().add(kt * t.mr * cpad + c0),
                                cpad,
                            )
                        };
                    }
                }
            }
            acc
        })
        .reduce_with(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        })
        .unwrap_or_else(|| vec![0f32; kpad * cpad]);
    let mut dw = vec![0f32; channels * k];
    for (kk, row) in sum.chunks(cpad).take(k).enumerate() {
        for (co, &v) in row[..channels].iter().enumerate() {
            dw[co * k + kk] = v;
        }
    }
    dw
}

/// `bt[q - q0][co] = g[n][co][position of q]` for output positions, 0 elsewhere.
fn pack_transposed(map: &OutMap, g: &[f32], q0: usize, q1: usize, cpad: usize, bt: &mut [f32]) {
    bt.fill(0.0);
    let [_, gh, gw] = map.grid.dims;
    let gvol = map.grid.volume();
    let [ad, ah, aw] = map.axes;
    let dvol = map.dest_volume();
    for q in q0..q1 {
        let (n, rest) = (q / gvol, q % gvol);
        let (z, y, x) = (rest / (gh * gw), (rest / gw) % gh, rest % gw);
        if z < ad.lo || z >= ad.hi || y < ah.lo || y >= ah.hi || x < aw.lo || x >= aw.hi {
            continue;
        }
        let pos =
            ((ad.start + (z - ad.lo) * ad.step) * map.dest[1] + ah.start + (y - ah.lo) * ah.step)
                * map.dest[2]
                + aw.start
                + (x - aw.lo) * aw.step;
        let row = &mut bt[(q - q0) * cpad..][..map.channels];
        for (co, v) in row.iter_mut().enumerate() {
            *v = g[(n * map.channels + co) * dvol + pos];
        }
    }
}
