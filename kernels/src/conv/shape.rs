//! The geometry of a convolution and of the zero-padded, phase-split grids the kernels read.

/// A convolution on `[batch, channels, depth, height, width]` data (2D: depth 1), groups 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Samples.
    pub batch: usize,
    /// Input channels.
    pub channels_in: usize,
    /// Output channels.
    pub channels_out: usize,
    /// Input size (depth, height, width).
    pub input: [usize; 3],
    /// Kernel size.
    pub kernel: [usize; 3],
    /// Stride.
    pub stride: [usize; 3],
    /// Zero padding before the first element.
    pub pad_begin: [usize; 3],
    /// Zero padding after the last element.
    pub pad_end: [usize; 3],
    /// Dilation.
    pub dilation: [usize; 3],
}

impl ConvShape {
    /// Output size (depth, height, width).
    pub fn output(&self) -> [usize; 3] {
        std::array::from_fn(|a| {
            let padded = self.input[a] + self.pad_begin[a] + self.pad_end[a];
            let span = self.dilation[a] * (self.kernel[a] - 1) + 1;
            if padded < span {
                0
            } else {
                (padded - span) / self.stride[a] + 1
            }
        })
    }

    /// Kernel taps per channel pair.
    pub fn taps(&self) -> usize {
        self.kernel.iter().product()
    }

    /// Whether the kernels handle it (positive sizes; any stride, padding and dilation).
    pub fn supported(&self) -> bool {
        let positive = |v: &[usize; 3]| v.iter().all(|&x| x > 0);
        self.batch > 0
            && self.channels_in > 0
            && self.channels_out > 0
            && positive(&self.input)
            && positive(&self.kernel)
            && positive(&self.stride)
            && positive(&self.dilation)
            && positive(&self.output())
    }

    /// Kernel tap `t` as (kd, kh, kw).
    pub(crate) fn tap(&self, t: usize) -> [usize; 3] {
        let [_, kh, kw] = self.kernel;
        [t / (kh * kw), (t / kw) % kh, t % kw]
    }

    /// Position of tap `t` in padded input coordinates relative to `stride · output`.
    pub(crate) fn tap_reach(&self, t: usize) -> [usize; 3] {
        let k = self.tap(t);
        std::array::from_fn(|a| k[a] * self.dilation[a])
    }
}

/// A zero-padded copy of `[n, c, d, h, w]` data split into `phases` (the stride): element
/// `(p, c, n, z, y, x)` holds padded position `(stride·z + p_d, stride·y + p_h, stride·x + p_w)`.
/// Laid out `[phase][c][n][z][y][x]`, so along a row of output positions every kernel tap reads
/// a contiguous run: the kernels take their operands straight from it, without im2col.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub phases: [usize; 3],
    pub dims: [usize; 3],
    pub n: usize,
    pub c: usize,
}

impl Grid {
    pub(super) fn volume(&self) -> usize {
        self.dims.iter().product()
    }

    /// Elements of one channel of one phase (all samples).
    pub(super) fn plane(&self) -> usize {
        self.n * self.volume()
    }

    pub(super) fn phase_count(&self) -> usize {
        self.phases.iter().product()
    }

    pub(super) fn len(&self) -> usize {
        self.phase_count() * self.c * self.plane()
    }

    /// Flat index of grid position `(n, z, y, x)` within one channel plane.
    pub(super) fn flat(&self, n: usize, p: [usize; 3]) -> usize {
        let [_, h, w] = self.dims;
        n * self.volume() + (p[0] * h + p[1]) * w + p[2]
    }

    /// Offset of the row of channel `c`, phase `phase`, shifted by grid position `shift`.
    pub(super) fn offset(&self, phase: [usize; 3], c: usize, shift: [usize; 3]) -> usize {
        let [_, ph, pw] = self.phases;
        let p = (phase[0] * ph + phase[1]) * pw + phase[2];
        (p * self.c + c) * self.plane() + self.flat(0, shift)
    }

    /// Number of flat positions from the first to one past the last of the region
    /// `[0, n) × [0, out)`.
    pub(super) fn span(&self, out: [usize; 3]) -> usize {
        if out.contains(&0) {
            return 0;
        }
        self.flat(self.n - 1, [out[0] - 1, out[1] - 1, out[2] - 1]) + 1
    }
}

/// The grid a convolution reads its input from: the input padded by `pad_begin` (and at least
/// `pad_end`), split by stride, large enough that every output position of a row reads its taps
/// without wrapping into the next row.
pub(crate) fn input_grid(s: &ConvShape) -> Grid {
    let out = s.output();
    let dims = std::array::from_fn(|a| {
        let padded = s.input[a] + s.pad_begin[a] + s.pad_end[a];
        let reach = (s.dilation[a] * (s.kernel[a] - 1)) / s.stride[a];
        padded.div_ceil(s.stride[a]).max(out[a] + reach)
    });
    Grid {
        phases: s.stride,
        dims,
        n: s.batch,
        c: s.channels_in,
    }
}

/// Where grid coordinates land in the destination, per axis: coordinate `m` in `[lo, hi)`
/// goes to `start + (m - lo) · step`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Axis {
    pub lo: usize,
    pub hi: usize,
    pub start: usize,
    pub step: usize,
}

impl Axis {
    pub(super) fn identity(len: usize) -> Axis {
        Axis {
            lo: 0,
            hi: len,
            start: 0,
            step: 1,
        }
    }
}

/// How a kernel's output rows (one per output channel, indexed by grid position) are written to
/// an NCDHW destination of spatial size `dest`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutMap {
    pub grid: Grid,
    pub axes: [Axis; 3],
    pub dest: [usize; 3],
    pub channels: usize,
}

impl OutMap {
    pub(super) fn dest_volume(&self) -> usize {
        self.dest.iter().product()
    }

    /// The blocks (at most `block` positions each) that cover every grid position in `[0, q_end)`
    /// on a row that lands in the destination. The rows outside the axes' ranges (the padding
    /// between planes and between samples) are skipped where that saves work: kernels compute
    /// whole tiles of `tile` positions, so two runs of rows are joined, gap and all, when that
    /// takes no more tiles than computing them apart.
    pub(super) fn live_blocks(
        &self,
        q_end: usize,
        block: usize,
        tile: usize,
    ) -> Vec<(usize, usize)> {
        let tiles = |len: usize| len.div_ceil(tile);
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for (start, end) in self.live_rows(q_end) {
            match ranges.last_mut() {
                Some(last)
                    if tiles(end - last.0) <= tiles(last.1 - last.0) + tiles(end - start) =>
                {
                    last.1 = end
                }
                _ => ranges.push((start, end)),
            }
        }
        ranges
            .into_iter()
            .flat_map(|(start, end)| {
                (start..end)
                    .step_by(block)
                    .map(move |q| (q, (q + block).min(end)))
            })
            .collect()
    }

    /// The runs of grid positions in `[0, q_end)` on rows inside the axes' ranges, one per
    /// sample and plane, in order.
    fn live_rows(&self, q_end: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let [ad, ah, _] = self.axes;
        let len = ah.hi.saturating_sub(ah.lo) * self.grid.dims[2];
        (0..self.grid.n)
            .flat_map(move |n| (ad.lo..ad.hi).map(move |z| (n, z)))
            .filter_map(move |(n, z)| {
                let start = self.grid.flat(n, [z, ah.lo, 0]);
                let end = (start + len).min(q_end);
                (start < end).then_some((start, end))
            })
    }

    /// Calls `f(n, base, first, len)` for each run of grid positions `[q0, q1)` along a grid row
    /// that lands in the destination: sample `n`, the destination offset `base` of the run's
    /// first position within one channel (successive positions `axes[2].step` apart), that
    /// position's index relative to `q0`, and the run's length.
    #[inline(always)]
    pub(super) fn for_each_run(
        &self,
        q0: usize,
        q1: usize,
        mut f: impl FnMut(usize, usize, usize, usize),
    ) {
        let [_, gh, gw] = self.grid.dims;
        let gvol = self.grid.volume();
        let [ad, ah, aw] = self.axes;
        let mut q = q0;
        while q < q1 {
            let x = q % gw;
            let run_end = (q - x + gw).min(q1);
            let (n, rest) = (q / gvol, q % gvol);
            let (z, y) = (rest / (gh * gw), (rest / gw) % gh);
            let (xa, xb) = (x.max(aw.lo), (x + run_end - q).min(aw.hi));
            if z >= ad.lo && z < ad.hi && y >= ah.lo && y < ah.hi && xa < xb {
                let dz = ad.start + (z - ad.lo) * ad.step;
                let dy = ah.start + (y - ah.lo) * ah.step;
                let base =
                    (dz * self.dest[1] + dy) * self.dest[2] + aw.start + (xa - aw.lo) * aw.step;
                f(n, base, xa + q - x - q0, xb - xa);
            }
            q = run_end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocks are disjoint, in order, at most `block` long, and cover exactly the positions
    /// before `q_end` on rows inside the axes' ranges.
    #[test]
    fn live_blocks_cover_the_rows_that_land_and_skip_the_rest() {
        let grid = Grid {
            phases: [1; 3],
            dims: [4, 5, 6],
            n: 2,
            c: 1,
        };
        let axis = |lo, hi| Axis {
            lo,
            hi,
            start: 0,
            step: 1,
        };
        let map = OutMap {
            grid,
            axes: [axis(0, 3), axis(1, 4), axis(0, 6)],
            dest: [3, 3, 6],
            channels: 1,
        };
        let q_end = grid.flat(1, [2, 3, 5]) + 1;
        let blocks = map.live_blocks(q_end, 7, 1);
        let mut covered = vec![false; q_end];
        let mut last_end = 0;
        for &(q0, q1) in &blocks {
            assert!(q0 >= last_end && q0 < q1 && q1 - q0 <= 7 && q1 <= q_end);
            covered[q0..q1].iter_mut().for_each(|c| *c = true);
            last_end = q1;
        }
        for (q, &c) in covered.iter().enumerate() {
            let (z, y) = ((q % 120) / 30, (q % 30) / 6);
            assert_eq!(c, z < 3 && (1..4).contains(&y), "position {q}");
        }
        // Consecutive live rows share blocks: 6 live planes of 3 rows of 6 = 18 positions each.
        assert_eq!(blocks.len(), 6 * 3);
        // With tiles of 16 positions, skipping the 12-position gaps between planes saves no
        // tile, skipping the 42 between the samples does.
        let joined = map.live_blocks(q_end, 1000, 16);
        assert_eq!(joined, vec![(6, 84), (126, q_end)]);
    }
}
