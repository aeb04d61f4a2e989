//! The arithmetic of a convolution: which grid layout and micro-kernel a direct convolution or a
//! weight gradient uses, from the process precision and the CPU.
//!
//! | mode | grid element | direct kernel | weight-gradient kernel |
//! |---|---|---|---|
//! | fp32 | f32 | broadcast weights × vectors of positions (AVX-512, AVX2, portable) | broadcast grid values × vectors of channels |
//! | bf16, emulated | f32 rounded to bf16 | as fp32 | as fp32 |
//! | bf16, AVX512-BF16 | channel pairs (u32) | `vdpbf16ps` over channel pairs | `vdpbf16ps` over position pairs |
//! | bf16, AMX | channel pairs, padded to 32 channels | 32 × 32 tiles over (tap, 32 channels) steps | 32 × 32 tiles over 32-position steps |

use std::sync::OnceLock;

use rayon::prelude::*;

use super::direct::{self, Tiler, check_reach};
use super::grid::fill;
use super::shape::{Grid, OutMap};
use super::weight_grad::{self, GradTiler};
use crate::isa::{Bf16Isa, Isa};
use crate::microkernel;
use crate::precision::{Precision, precision, round_bf16, to_bf16};

/// How products are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Fp32(Isa),
    Emulated(Isa),
    Pairs,
    Amx,
}

fn mode() -> Mode {
    let isa = Isa::detected();
    match (precision(), Bf16Isa::detected()) {
        (Precision::Fp32, _) => Mode::Fp32(isa),
        (Precision::Bf16, Bf16Isa::Emulated) => Mode::Emulated(isa),
        (Precision::Bf16, Bf16Isa::Avx512Bf16) => Mode::Pairs,
        (Precision::Bf16, Bf16Isa::Amx) => Mode::Amx,
    }
}

/// A kernel tap: the grid phase it reads and its shift in grid positions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tap {
    pub phase: [usize; 3],
    pub shift: [usize; 3],
}

/// A convolution operand (`[n, channels, dims…]`) with its grid geometry; the grid itself is
/// filled on first use in the layout the arithmetic needs, then shared by every job on it.
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    pub channels: usize,
    pub dims: [usize; 3],
    pub pad: [usize; 3],
    pub grid: Grid,
    /// Elements after the grid that jobs may read (largest shift + one block).
    pub extra: usize,
    f32s: OnceLock<Vec<f32>>,
    plain: OnceLock<Vec<u16>>,
    pairs: OnceLock<(Grid, Vec<u32>)>,
}

impl<'a> Operand<'a> {
    pub(super) fn new(
        data: &'a [f32],
        channels: usize,
        dims: [usize; 3],
        pad: [usize; 3],
        grid: Grid,
        max_shift: [usize; 3],
    ) -> Self {
        let extra = grid.flat(0, max_shift) + direct::overreach(48).max(weight_grad::BLOCK);
        let (f32s, plain, pairs) = (OnceLock::new(), OnceLock::new(), OnceLock::new());
        Operand {
            data,
            channels,
            dims,
            pad,
            grid,
            extra,
            f32s,
            plain,
            pairs,
        }
    }

    /// The operand's data in `grid` (its own or a channel-pair one), each group of `G`
    /// channels made one element by `convert`.
    fn fill_grid<T: Copy + Default + Send + Sync, const G: usize>(
        &self,
        grid: &Grid,
        convert: impl Fn([f32; G]) -> T + Sync,
    ) -> Vec<T> {
        let (data, channels, extra) = (self.data, self.channels, self.extra);
        fill(grid, data, channels, self.dims, self.pad, extra, convert)
    }

    fn f32s(&self, round: bool) -> &[f32] {
        self.f32s.get_or_init(|| {
            let f = |[v]: [f32; 1]| if round { round_bf16(v) } else { v };
            self.fill_grid(&self.grid, f)
        })
    }

    fn plain(&self) -> &[u16] {
        self.plain
            .get_or_init(|| self.fill_grid(&self.grid, |[v]| to_bf16(v)))
    }

    /// The channel-pair grid, its pair count rounded up to a multiple of `multiple`.
    fn pairs(&self, multiple: usize) -> &(Grid, Vec<u32>) {
        self.pairs.get_or_init(|| {
            let c = self.channels.div_ceil(2).div_ceil(multiple) * multiple;
            let grid = Grid { c, ..self.grid };
            let data = self.fill_grid(&grid, |[a, b]: [f32; 2]| pair(a, b));
            (grid, data)
        })
    }
}

/// `lo` and `hi` rounded to bf16, as one pair (`lo` in the low half).
#[inline(always)]
pub(super) fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | ((to_bf16(hi) as u32) << 16)
}

/// The weights of a direct job: `w(row, channel, tap index)`.
/// A strided view: `w(row, channel, tap) = data[row · row_stride + channel · channel_stride +
/// taps[tap]]`.
pub(crate) struct Weights<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub channel_stride: usize,
    pub taps: &'a [usize],
}

impl Weights<'_> {
    /// The weight of `row`, `channel` and tap index `tap` (AMX packs tile by tile).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn at(&self, row: usize, channel: usize, tap: usize) -> f32 {
        self.data[row * self.row_stride + channel * self.channel_stride + self.taps[tap]]
    }

    /// The weights of `row` and `channel`, in tap order.
    #[inline(always)]
    fn taps_of(&self, row: usize, channel: usize) -> impl Iterator<Item = f32> + '_ {
        let base = &self.data[row * self.row_stride + channel * self.channel_stride..];
        self.taps.iter().map(move |&t| base[t])
    }
}

/// One direct convolution: `rows` outputs from `src` through `taps`, positions `[0, q_end)`.
pub(crate) struct DirectJob<'a> {
    pub src: &'a Operand<'a>,
    pub taps: &'a [Tap],
    pub rows: usize,
    pub w: Weights<'a>,
    pub q_end: usize,
    pub map: &'a OutMap,
    pub bias: Option<&'a [f32]>,
}

/// Grid offsets of every (channel, tap) row, channel-major: row `c · taps + t`.
fn channel_offsets(grid: &Grid, taps: &[Tap], channels: usize) -> Vec<isize> {
    (0..channels)
        .flat_map(|c| {
            taps.iter()
                .map(move |t| grid.offset(t.phase, c, t.shift) as isize)
        })
        .collect()
}

/// Runs `job` through the direct driver with one arithmetic's tiles of `mr` rows × `nr`
/// positions, each computed by `tile`.
fn run_job(
    job: &DirectJob,
    mr: usize,
    nr: usize,
    tile: &(dyn Fn(usize, usize, *mut f32, usize) + Sync),
    dest: &mut [f32],
) {
    let tiler = Tiler { mr, nr, tile };
    direct::run(&tiler, job.rows, job.q_end, job.map, job.bias, dest);
}

/// A direct micro-kernel: `(k, packed weights, grid row start, row offsets, c, ldc)`.
type DirectKernel<A, B> = unsafe fn(usize, *const A, *const B, *const isize, *mut f32, usize);

/// Runs `job` with a direct micro-kernel of `mr` rows × `nr` positions over `data`, reading the
/// `k` grid rows at offsets `koff` with `packed` (`k · mr` weights per block of rows).
///
/// The caller picks a `kernel` whose CPU features are present (mode detection).
fn run_direct_kernel<A: Sync, B: Sync>(
    job: &DirectJob,
    packed: &[A],
    data: &[B],
    koff: &[isize],
    (mr, nr): (usize, usize),
    kernel: DirectKernel<A, B>,
    dest: &mut [f32],
) {
    let k = koff.len();
    check_reach(koff, job.q_end, nr, data.len());
    let tile = |mb: usize, q: usize, c: *mut f32, ldc: usize| {
        // SAFETY: packed holds k·mr values per block; reads stay in the grid (checked above);
        // the driver gives a tile of mr rows × nr values; the CPU has the kernel's features.
        unsafe {
            kernel(
                k,
                packed[mb * k * mr..].as_ptr(),
                data.as_ptr().add(q),
                koff.as_ptr(),
                c,
                ldc,
            )
        }
    };
    run_job(job, mr, nr, &tile, dest);
}

/// Runs a direct convolution in the process's arithmetic, writing into `dest`.
pub(crate) fn direct(job: &DirectJob, dest: &mut [f32]) {
    match mode() {
        Mode::Fp32(isa) => direct_f32(job, isa, false, dest),
        Mode::Emulated(isa) => direct_f32(job, isa, true, dest),
        #[cfg(target_arch = "x86_64")]
        Mode::Amx if job.src.channels >= 16 && job.rows >= 16 => direct_amx(job, dest),
        #[cfg(target_arch = "x86_64")]
        Mode::Pairs | Mode::Amx => direct_pairs(job, dest),
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("bf16 instructions exist on x86-64 only"),
    }
}

/// The fp32 direct micro-kernel of `isa`, with its tile rows and positions.
fn fp32_direct_kernel(isa: Isa) -> (usize, usize, DirectKernel<f32, f32>) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            use microkernel::avx512 as k;
            (k::DIRECT_MR, k::LANES * k::DIRECT_NV, k::direct)
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            use microkernel::avx2 as k;
            (k::DIRECT_MR, k::LANES * k::DIRECT_NV, k::direct)
        }
        _ => {
            use microkernel::portable as k;
            (k::DIRECT_MR, k::DIRECT_NR, k::direct)
        }
    }
}

fn direct_f32(job: &DirectJob, isa: Isa, round: bool, dest: &mut [f32]) {
    let src = job.src;
    let data = src.f32s(round);
    let nt = job.taps.len();
    let koff = channel_offsets(&src.grid, job.taps, src.channels);
    let (mr, nr, f) = fp32_direct_kernel(isa);
    let packed = direct::pack(job.rows, (src.channels, nt), mr, |r, c, out| {
        for (o, v) in out.iter_mut().zip(job.w.taps_of(r, c)) {
            *o = if round { round_bf16(v) } else { v };
        }
    });
    run_direct_kernel(job, &packed, data, &koff, (mr, nr), f, dest);
}

#[cfg(target_arch = "x86_64")]
fn direct_pairs(job: &DirectJob, dest: &mut [f32]) {
    use microkernel::avx512bf16 as m;
    let (grid, data) = job.src.pairs(1);
    let nt = job.taps.len();
    let koff = channel_offsets(grid, job.taps, grid.c);
    let channels = job.src.channels;
    let (mr, nr) = (m::DIRECT_MR, 16 * m::DIRECT_NV);
    let packed = direct::pack(job.rows, (grid.c, nt), mr, |r, cp, out| {
        let lo = job.w.taps_of(r, 2 * cp);
        if 2 * cp + 1 < channels {
            let hi = job.w.taps_of(r, 2 * cp + 1);
            out.iter_mut()
                .zip(lo.zip(hi))
                .for_each(|(o, (l, h))| *o = pair(l, h));
        } else {
            out.iter_mut().zip(lo).for_each(|(o, l)| *o = pair(l, 0.0));
        }
    });
    // The CPU has AVX512-BF16 (mode detection).
    run_direct_kernel(job, &packed, data, &koff, (mr, nr), m::direct, dest);
}

#[cfg(target_arch = "x86_64")]
fn direct_amx(job: &DirectJob, dest: &mut [f32]) {
    use microkernel::amx as m;
    let (grid, data) = job.src.pairs(16);
    let blocks = grid.c / 16;
    // Steps: (tap, block of 16 channel pairs); B rows are consecutive pairs, one plane apart.
    let steps: Vec<(usize, usize)> = (0..job.taps.len())
        .flat_map(|t| (0..blocks).map(move |b| (t, b)))
        .collect();
    let soff: Vec<isize> = steps
        .iter()
        .map(|&(t, b)| grid.offset(job.taps[t].phase, 16 * b, job.taps[t].shift) as isize)
        .collect();
    let packed = pack_amx(job, &steps);
    let (mr, nr) = (m::DIRECT_MR, m::DIRECT_NR);
    check_reach(&soff, job.q_end, nr, data.len());
    let (s, b_stride) = (steps.len(), grid.plane() * 4);
    let tile = |mb: usize, q: usize, c: *mut f32, ldc: usize| {
        // SAFETY: AMX is available (mode detection); packed holds s·STEP_A values per block; the
        // B rows of every step lie inside the padded pair grid (checked above).
        unsafe {
            m::direct(
                s,
                packed[mb * s * m::STEP_A..].as_ptr(),
                data.as_ptr().add(q),
                soff.as_ptr(),
                c,
                ldc,
                b_stride,
            )
        }
    };
    run_job(job, mr, nr, &tile, dest);
}

/// Weights as AMX tiles: per block of 32 rows, per step, two 16-row tiles of 16 channel pairs.
#[cfg(target_arch = "x86_64")]
fn pack_amx(job: &DirectJob, steps: &[(usize, usize)]) -> Vec<u16> {
    use microkernel::amx::STEP_A;
    let mblocks = job.rows.div_ceil(32);
    let channels = job.src.channels;
    let mut packed = crate::zeroed(mblocks * steps.len() * STEP_A);
    packed
        .par_chunks_mut(512)
        .enumerate()
        .for_each(|(i, tile)| {
            let (mb, rest) = (i / (2 * steps.len()), i % (2 * steps.len()));
            let ((t, b), half) = (steps[rest / 2], rest % 2);
            for r in 0..16 {
                let row = mb * 32 + half * 16 + r;
                if row >= job.rows {
                    break;
                }
                for p in 0..32 {
                    let c = 32 * b + p;
                    if c < channels {
                        tile[r * 32 + p] = to_bf16(job.w.at(row, c, t));
                    }
                }
            }
        });
    packed
}

/// One weight gradient: the forward operand `src` read through `taps`, the output gradient `g`
/// laid out as `map` says. Returns `dW[co][c · taps + t]`.
pub(crate) fn weight_grad(
    src: &Operand,
    taps: &[Tap],
    q_end: usize,
    map: &OutMap,
    g: &[f32],
) -> Vec<f32> {
    let nt = taps.len();
    let k = src.channels * nt;
    let co = map.channels;
    let by_channel = channel_offsets(&src.grid, taps, src.channels);
    match mode() {
        Mode::Fp32(isa) => {
            let (acc, cpad) = grad_f32(src.f32s(false), &by_channel, isa, q_end, map, g);
            transpose(&acc, cpad, (k, co), |r| r)
        }
        Mode::Emulated(isa) => {
            let g: Vec<f32> = g.iter().map(|&v| round_bf16(v)).collect();
            let (acc, cpad) = grad_f32(src.f32s(true), &by_channel, isa, q_end, map, &g);
            transpose(&acc, cpad, (k, co), |r| r)
        }
        #[cfg(target_arch = "x86_64")]
        Mode::Amx if src.channels.is_multiple_of(32) => {
            let (acc, cpad) = grad_amx(src, taps, q_end, map, g);
            let c = src.channels;
            transpose(&acc, cpad, (k, co), move |r| (r % c) * nt + r / c)
        }
        #[cfg(target_arch = "x86_64")]
        Mode::Pairs | Mode::Amx => {
            let (acc, cpad) = grad_pairs(src.plain(), &by_channel, q_end, map, g);
            transpose(&acc, cpad, (k, co), |r| r)
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("bf16 instructions exist on x86-64 only"),
    }
}

/// `dW[co][row_to_k(row)] = acc[row][co]` for the first `k` rows of `acc` (`cpad` columns), in
/// parallel blocks of 16 output channels (one cache line of `acc` per row), 16 rows at a time:
/// the rows of `dW` lie `k` values apart, so writing one row of `acc` at a time touched a new cache
/// line per value, in few cache sets.
fn transpose(
    acc: &[f32],
    cpad: usize,
    (k, co): (usize, usize),
    row_to_k: impl Fn(usize) -> usize + Sync,
) -> Vec<f32> {
    const BLOCK: usize = 16;
    let mut dw = crate::zeroed(co * k);
    dw.par_chunks_mut(BLOCK * k)
        .enumerate()
        .for_each(|(b, out)| {
            for row0 in (0..k).step_by(BLOCK) {
                for (j, out) in out.chunks_exact_mut(k).enumerate() {
                    for row in row0..(row0 + BLOCK).min(k) {
                        out[row_to_k(row)] = acc[row * cpad + b * BLOCK + j];
                    }
                }
            }
        });
    dw
}

/// Tile shape (rows, vectors of `lanes` channels) that pads `channels` least, widest first.
fn grad_tile(options: &[(usize, usize)], lanes: usize, channels: usize) -> (usize, usize) {
    let padded = |nv: usize| channels.div_ceil(nv * lanes) * nv * lanes;
    *options
        .iter()
        .min_by_key(|(_, nv)| padded(*nv))
        .expect("tile options")
}

/// A weight-gradient tile: `(kt, c0, q0, len, packed, acc, ld)` as [`GradTiler::tile`] takes it.
type GradTile<'a> =
    dyn Fn(usize, usize, usize, usize, &weight_grad::Packed, *mut f32, usize) + Sync + 'a;

/// Runs the weight gradient of the grid rows at offsets `koff` (of a grid of `len` values) with
/// tiles of `mr` rows × `cols` channels computed by `tile` (over gradient position pairs where
/// `pairs`); returns `acc` and its padded column count as [`weight_grad::run`] does. Checks
/// first that blocks reading up to `q_end` stay inside the grid.
fn run_grad(
    (mr, cols, pairs): (usize, usize, bool),
    tile: &GradTile,
    (koff, len): (&[isize], usize),
    q_end: usize,
    map: &OutMap,
    g: &[f32],
) -> (Vec<f32>, usize) {
    check_reach(koff, q_end, weight_grad::BLOCK / direct::TILES, len);
    let t = GradTiler {
        mr,
        cols,
        pairs,
        tile,
    };
    weight_grad::run(&t, koff.len(), q_end, map, g)
}

/// Pointers to the `MR` grid rows of row tile `kt` (offsets `koff`), each at position `q0`.
fn row_pointers<T, const MR: usize>(
    data: &[T],
    koff: &[isize],
    kt: usize,
    q0: usize,
) -> [*const T; MR] {
    // Rows past the end (padding) read row 0: their results are dropped.
    std::array::from_fn(|r| {
        let off = koff.get(kt * MR + r).copied().unwrap_or(0);
        // SAFETY: in bounds of the grid (checked by the caller).
        unsafe { data.as_ptr().offset(off).add(q0) }
    })
}

fn grad_f32(
    data: &[f32],
    koff: &[isize],
    isa: Isa,
    q_end: usize,
    map: &OutMap,
    g: &[f32],
) -> (Vec<f32>, usize) {
    macro_rules! with {
        ($f:path, $mr:literal, $nv:literal, $lanes:literal) => {{
            let tile: &GradTile = &|kt, c0, q0, len, p, acc, ld| {
                let rows = row_pointers::<f32, $mr>(data, koff, kt, q0);
                let cpad = ld;
                // SAFETY: rows cover len values, the packed block holds BLOCK rows of cpad, acc
                // holds mr rows of ld; the CPU has the kernel's features (detection).
                unsafe { $f(len, &rows, p.f32s[c0..].as_ptr(), cpad, acc, ld) }
            };
            run_grad(
                ($mr, $nv * $lanes, false),
                tile,
                (koff, data.len()),
                q_end,
                map,
                g,
            )
        }};
    }
    let co = map.channels;
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => match grad_tile(&[(6, 4), (8, 3), (12, 2), (12, 1)], 16, co) {
            (6, 4) => with!(microkernel::avx512::weight_grad::<6, 4>, 6, 4, 16),
            (8, 3) => with!(microkernel::avx512::weight_grad::<8, 3>, 8, 3, 16),
            (12, 2) => with!(microkernel::avx512::weight_grad::<12, 2>, 12, 2, 16),
            _ => with!(microkernel::avx512::weight_grad::<12, 1>, 12, 1, 16),
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => match grad_tile(&[(3, 4), (6, 2), (6, 1)], 8, co) {
            (3, 4) => with!(microkernel::avx2::weight_grad::<3, 4>, 3, 4, 8),
            (6, 2) => with!(microkernel::avx2::weight_grad::<6, 2>, 6, 2, 8),
            _ => with!(microkernel::avx2::weight_grad::<6, 1>, 6, 1, 8),
        },
        _ => with!(microkernel::portable::weight_grad::<4>, 4, 1, 16),
    }
}

#[cfg(target_arch = "x86_64")]
fn grad_pairs(
    data: &[u16],
    koff: &[isize],
    q_end: usize,
    map: &OutMap,
    g: &[f32],
) -> (Vec<f32>, usize) {
    use microkernel::avx512bf16 as m;
    macro_rules! with {
        ($mr:literal, $nv:literal) => {{
            let tile: &GradTile = &|kt, c0, q0, len, p, acc, ld| {
                let rows = row_pointers::<u16, $mr>(data, koff, kt, q0);
                // SAFETY: as in grad_f32; pairs past `len` multiply zero gradients.
                unsafe {
                    m::weight_grad::<$mr, $nv>(
                        len.div_ceil(2),
                        &rows,
                        p.pairs[c0..].as_ptr(),
                        ld,
                        acc,
                        ld,
                    )
                }
            };
            run_grad(
                ($mr, $nv * 16, true),
                tile,
                (koff, data.len()),
                q_end,
                map,
                g,
            )
        }};
    }
    match grad_tile(&[(6, 4), (8, 3), (12, 2), (12, 1)], 16, map.channels) {
        (6, 4) => with!(6, 4),
        (8, 3) => with!(8, 3),
        (12, 2) => with!(12, 2),
        _ => with!(12, 1),
    }
}

/// AMX weight gradient; rows ordered (tap, channel) so a tile's 32 rows are 32 channels of one
/// tap, one plane apart.
#[cfg(target_arch = "x86_64")]
fn grad_amx(
    src: &Operand,
    taps: &[Tap],
    q_end: usize,
    map: &OutMap,
    g: &[f32],
) -> (Vec<f32>, usize) {
    use microkernel::amx as m;
    let data = src.plain();
    let c = src.channels;
    let by_tap: Vec<isize> = taps
        .iter()
        .flat_map(|t| (0..c).map(move |ch| src.grid.offset(t.phase, ch, t.shift) as isize))
        .collect();
    let a_stride = src.grid.plane() * 2;
    let tile: &GradTile = &|kt, c0, q0, len, p, acc, ld| {
        let a = by_tap[kt * 32] as usize + q0;
        // SAFETY: AMX is available (mode detection); the tile's 32 rows are channels
        // 32·j .. 32·j + 32 of one tap (channels % 32 == 0), positions read up to q0 + BLOCK
        // (checked); the packed pairs hold BLOCK / 2 rows of ld.
        unsafe {
            m::weight_grad(
                len.div_ceil(32),
                data[a..].as_ptr(),
                a_stride,
                p.pairs[c0..].as_ptr(),
                ld * 4,
                acc,
                ld,
            )
        }
    };
    run_grad((32, 32, true), tile, (&by_tap, data.len()), q_end, map, g)
}
