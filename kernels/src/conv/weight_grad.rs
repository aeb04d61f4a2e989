//! The weight-gradient driver: `dWᵀ[k][co] = Σ_q B[k][q] · g[co][q]`, the sum over every output
//! position of every sample, `B`'s rows read in place from the forward operand's grid. The
//! output gradient is packed transposed per block of positions (`gT[q][co]`, zero at positions
//! that are not outputs; as bf16 position pairs for the bf16 kernels). Each worker sums its
//! blocks into its own `[k][co]` accumulator; the workers' sums are added at the end. The
//! micro-kernel call for one tile is a closure that knows the operands' layout.

use rayon::prelude::*;

use super::arith::pair;
use super::shape::OutMap;

/// Positions per block (a multiple of 32, the AMX step).
pub(crate) const BLOCK: usize = 256;
/// The unit in which blocks are counted when runs of output rows are joined across padding
/// ([`OutMap::live_blocks`]): besides its positions, each block costs a load and store of every
/// accumulator tile, so a gap is skipped only where that saves whole units of this many positions.
const STEP: usize = 32;

/// The transposed output gradient of one block.
pub(crate) struct Packed {
    /// `gT[q - q0][co]`, `cpad` columns.
    pub f32s: Vec<f32>,
    /// `gT` as bf16 pairs of positions: `[(q - q0) / 2][co]`, `cpad` columns.
    pub pairs: Vec<u32>,
}

/// The micro-kernel of one arithmetic: `tile(kt, c0, q0, len, packed, acc, ldacc)` adds rows
/// `[kt·mr, kt·mr + mr)` × channels `[c0, c0 + cols)` over positions `[q0, q0 + len)` to `acc`.
pub(crate) struct GradTiler<'a> {
    pub mr: usize,
    pub cols: usize,
    pub pairs: bool,
    #[allow(clippy::type_complexity)]
    pub tile: &'a (dyn Fn(usize, usize, usize, usize, &Packed, *mut f32, usize) + Sync),
}

/// Runs the weight gradient of `krows` grid rows for output gradient `g` (`[n, channels, out…]`,
/// laid out as `map` says); returns `acc[kpad][cpad]` with `kpad`, `cpad` the padded sizes.
pub(crate) fn run(
    t: &GradTiler,
    krows: usize,
    q_end: usize,
    map: &OutMap,
    g: &[f32],
) -> (Vec<f32>, usize) {
    let channels = map.channels;
    let kpad = krows.div_ceil(t.mr) * t.mr;
    let cpad = channels.div_ceil(t.cols) * t.cols;
    let blocks = map.live_blocks(q_end, BLOCK, STEP);
    let nblocks = blocks.len();
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
            let mut packed = Packed {
                f32s: vec![0f32; BLOCK * cpad],
                pairs: Vec::new(),
            };
            let mut packed_block = usize::MAX;
            for task in (wk..tasks).step_by(workers) {
                let (b, kc) = (task / kchunks, task % kchunks);
                let (q0, q1) = blocks[b];
                if packed_block != b {
                    pack_transposed(map, g, q0, q1, cpad, &mut packed.f32s);
                    if t.pairs {
                        to_pairs(&packed.f32s, cpad, &mut packed.pairs);
                    }
                    packed_block = b;
                }
                for kt in kc * per_chunk..((kc + 1) * per_chunk).min(ktiles) {
                    for c0 in (0..cpad).step_by(t.cols) {
                        let a = acc[kt * t.mr * cpad + c0..].as_mut_ptr();
                        (t.tile)(kt, c0, q0, q1 - q0, &packed, a, cpad);
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
    (sum, cpad)
}

/// `bt[q - q0][co] = g[n][co][position of q]` for output positions, 0 elsewhere. Copied in tiles
/// of 16 channels × 16 positions: `bt`'s rows lie `cpad` values apart and `g`'s channels a plane
/// apart, both often a multiple of 4 KiB, so a whole row or column at a time lands in few cache
/// sets; a tile reads one cache line per channel and keeps its 16 destination lines.
fn pack_transposed(map: &OutMap, g: &[f32], q0: usize, q1: usize, cpad: usize, bt: &mut [f32]) {
    const TILE: usize = 16;
    bt.fill(0.0);
    let step = map.axes[2].step;
    let dvol = map.dest_volume();
    map.for_each_run(q0, q1, |n, base, row0, len| {
        for c0 in (0..map.channels).step_by(TILE) {
            for j0 in (0..len).step_by(TILE) {
                let j1 = (j0 + TILE).min(len);
                for co in c0..(c0 + TILE).min(map.channels) {
                    let src = &g[(n * map.channels + co) * dvol + base..];
                    for j in j0..j1 {
                        bt[(row0 + j) * cpad + co] = src[j * step];
                    }
                }
            }
        }
    });
}

/// Rows `2i` and `2i + 1` of `bt` (`cpad` columns) as bf16 pairs, row `i` of `pairs` (an odd
/// last row pairs with zeros). Whole pairs of rows go through one branch-free loop, which
/// vectorises.
fn to_pairs(bt: &[f32], cpad: usize, pairs: &mut Vec<u32>) {
    let rows = bt.len() / cpad;
    pairs.resize(rows.div_ceil(2) * cpad, 0);
    let (whole, last) = pairs.split_at_mut(rows / 2 * cpad);
    for (out, two) in whole.chunks_exact_mut(cpad).zip(bt.chunks_exact(2 * cpad)) {
        let (lo, hi) = two.split_at(cpad);
        for ((o, &l), &h) in out.iter_mut().zip(lo).zip(hi) {
            *o = pair(l, h);
        }
    }
    let lo = &bt[rows / 2 * 2 * cpad..][..last.len()];
    for (o, &l) in last.iter_mut().zip(lo) {
        *o = pair(l, 0.0);
    }
}
