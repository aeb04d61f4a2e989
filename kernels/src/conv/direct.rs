//! The fp32 direct-convolution driver: `out[row][q] = Σ_k W[row][k] · src[koff[k] + q]` over a
//! flat range of grid positions `q`, i.e. a GEMM whose right operand is read in place from a
//! padded grid (no im2col). Serves the forward pass and the input gradient.
//!
//! Work is split into blocks of positions (and, when there are few, of rows) run on rayon; a
//! block's weights stay in L1 while its tiles sweep the positions.

use rayon::prelude::*;

use super::grid::scatter;
use super::shape::OutMap;
use crate::SendPtr;
use crate::isa::Isa;
use crate::microkernel;

/// Tiles per block of positions.
const TILES: usize = 8;

type DirectFn = unsafe fn(usize, *const f32, *const f32, *const isize, *mut f32, usize);

/// A micro-kernel with its tile size.
#[derive(Clone, Copy)]
struct Kernel {
    mr: usize,
    nr: usize,
    f: DirectFn,
}

fn kernel(isa: Isa) -> Kernel {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            use microkernel::avx512 as k;
            Kernel {
                mr: k::DIRECT_MR,
                nr: 16 * k::DIRECT_NV,
                f: k::direct,
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            use microkernel::avx2 as k;
            Kernel {
                mr: k::DIRECT_MR,
                nr: 8 * k::DIRECT_NV,
                f: k::direct,
            }
        }
        _ => {
            use microkernel::portable as k;
            Kernel {
                mr: k::DIRECT_MR,
                nr: k::DIRECT_NR,
                f: k::direct,
            }
        }
    }
}

/// One direct convolution (or one phase class of an input gradient).
pub(crate) struct Job<'a> {
    /// Output rows (channels).
    pub rows: usize,
    /// Offsets of the right operand's rows in `src`.
    pub koff: &'a [isize],
    /// The grid the right operand is read from.
    pub src: &'a [f32],
    /// Positions `[0, q_end)` to compute.
    pub q_end: usize,
}

/// The number of grid elements a job reads past `q_end` + the largest offset.
pub(crate) fn overreach() -> usize {
    let k = kernel(Isa::detected());
    k.nr * TILES
}

/// Runs `job` with weights `w[row][k]` (row-major, `rows × koff.len()`), writing through `map`
/// into `dest` and adding `bias`.
pub(crate) fn run(job: &Job, w: &[f32], map: &OutMap, bias: Option<&[f32]>, dest: &mut [f32]) {
    let kern = kernel(Isa::detected());
    let k = job.koff.len();
    if job.q_end == 0 || job.rows == 0 {
        return;
    }
    let max_off = job.koff.iter().copied().max().unwrap_or(0).max(0) as usize;
    assert!(job.koff.iter().all(|&o| o >= 0), "negative grid offset");
    let qb = kern.nr * TILES;
    let nblocks = job.q_end.div_ceil(qb);
    assert!(
        max_off + nblocks * qb <= job.src.len(),
        "grid too short for the job"
    );
    let packed = pack(w, job.rows, k, kern.mr);
    let mblocks = job.rows.div_ceil(kern.mr);
    let threads = rayon::current_num_threads();
    let mchunks = if nblocks >= 2 * threads {
        1
    } else {
        (2 * threads).div_ceil(nblocks).min(mblocks)
    };
    let per_chunk = mblocks.div_ceil(mchunks);
    let dest = SendPtr(dest.as_mut_ptr());
    (0..nblocks * mchunks).into_par_iter().for_each_init(
        || vec![0f32; kern.mr * qb],
        |buf, task| {
            let (b, mc) = (task / mchunks, task % mchunks);
            let (q0, q1) = (b * qb, ((b + 1) * qb).min(job.q_end));
            let tiles = (q1 - q0).div_ceil(kern.nr);
            for mb in mc * per_chunk..((mc + 1) * per_chunk).min(mblocks) {
                let a = packed[mb * k * kern.mr..].as_ptr();
                for t in 0..tiles {
                    // SAFETY: `a` holds k·mr values, the grid covers every read (asserted above),
                    // `buf` holds mr rows of qb.
                    unsafe {
                        (kern.f)(
                            k,
                            a,
                            job.src.as_ptr().add(q0 + t * kern.nr),
                            job.koff.as_ptr(),
                            buf.as_mut_ptr().add(t * kern.nr),
                            qb,
                        )
                    };
                }
                let rows = kern.mr.min(job.rows - mb * kern.mr);
                // SAFETY: blocks own disjoint (row, position) sets of the destination.
                unsafe { scatter(map, buf, qb, mb * kern.mr, rows, q0, q1, bias, dest) };
            }
        },
    );
}

/// Packs row-major `w[rows][k]` into blocks of `mr` rows, `k`-major within a block
/// (`packed[(block · k + kk) · mr + r]`), zero rows past the end.
fn pack(w: &[f32], rows: usize, k: usize, mr: usize) -> Vec<f32> {
    let blocks = rows.div_ceil(mr);
    let mut packed = vec![0f32; blocks * k * mr];
    for (b, chunk) in packed.chunks_mut(k * mr).enumerate() {
        for r in 0..mr.min(rows - b * mr) {
            let row = &w[(b * mr + r) * k..][..k];
            for (kk, &v) in row.iter().enumerate() {
                chunk[kk * mr + r] = v;
            }
        }
    }
    packed
}
