//! Reductions with numpy semantics: float32 pairwise sums, mean/std and linear percentiles.
//!
//! nnU-Net computes its intensity statistics with numpy on float32 arrays. To give bit-identical
//! numbers this module follows numpy's algorithms exactly:
//!
//! * `np.sum` of a contiguous float32 array is a pairwise sum in float32 with blocks of 128
//!   elements summed with 8 accumulators ([`pairwise_sum_f32`]). The same sum can be computed from
//!   a stream of values ([`pairwise_sum_f32_stream`]) or in parallel from sources that can start at
//!   any position ([`pairwise_sum_f32_parallel`]), with the same result bit for bit.
//! * `np.mean` is `float32(float64(sum) / n)`; `np.std` (ddof 0) sums the float32 squares of the
//!   float32 differences to that mean the same way and takes a float32 square root.
//! * `np.percentile(v, p)` (method `linear`) interpolates between two order statistics with the
//!   difference taken in float32 and the interpolation in float64 ([`percentile_linear`]). The
//!   order statistics can come from a sorted slice or a [`ValueHistogram`].
//! * `np.median` of float64 values ([`median_f64`]).
//!
//! The pairwise sums are generic over `f32`/`f64` ([`PairwiseFloat`]); float64 versions of the
//! mean, std and percentile exist because numpy promotes to float64 when float32 samples are
//! concatenated with an empty list (a case without foreground in nnU-Net's fingerprint).

/// numpy's block size for pairwise summation.
const BLOCK: usize = 128;

/// The float types numpy sums pairwise here: `f32` and `f64`.
pub trait PairwiseFloat:
    Copy + Send + Sync + Default + PartialEq + std::fmt::Debug + std::ops::Add<Output = Self>
{
}

impl PairwiseFloat for f32 {}
impl PairwiseFloat for f64 {}

/// Sums at most [`BLOCK`] values as numpy's pairwise sum does at a leaf.
#[inline]
fn leaf_sum<T: PairwiseFloat>(a: &[T]) -> T {
    let n = a.len();
    if n < 8 {
        let mut res = T::default();
        for &x in a {
            res = res + x;
        }
        return res;
    }
    let mut r = [T::default(); 8];
    r.copy_from_slice(&a[..8]);
    let full = n - n % 8;
    let mut i = 8;
    while i < full {
        for (k, acc) in r.iter_mut().enumerate() {
            *acc = *acc + a[i + k];
        }
        i += 8;
    }
    let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for &x in &a[full..] {
        res = res + x;
    }
    res
}

/// Where numpy splits a pairwise sum of `n > 128` values: the left part's length.
#[inline]
fn split(n: usize) -> usize {
    let half = n / 2;
    half - half % 8
}

/// `np.sum(values)` of a contiguous float32 or float64 array: numpy's pairwise summation in that
/// type.
pub fn pairwise_sum<T: PairwiseFloat>(values: &[T]) -> T {
    let n = values.len();
    if n <= BLOCK {
        leaf_sum(values)
    } else {
        let n2 = split(n);
        pairwise_sum(&values[..n2]) + pairwise_sum(&values[n2..])
    }
}

/// `np.sum(values)` for a contiguous float32 array: numpy's pairwise summation in float32.
pub fn pairwise_sum_f32(values: &[f32]) -> f32 {
    pairwise_sum(values)
}

/// A sequential source of values: each call fills `out` with the next `out.len()` values.
pub trait ValueSource<T> {
    /// Writes the next `out.len()` values of the sequence into `out`.
    fn fill(&mut self, out: &mut [T]);
}

impl<T, F: FnMut(&mut [T])> ValueSource<T> for F {
    fn fill(&mut self, out: &mut [T]) {
        self(out)
    }
}

fn stream_rec<T: PairwiseFloat, S: ValueSource<T> + ?Sized>(
    n: usize,
    source: &mut S,
    buf: &mut [T; BLOCK],
) -> T {
    if n <= BLOCK {
        let b = &mut buf[..n];
        source.fill(b);
        leaf_sum(b)
    } else {
        let n2 = split(n);
        let left = stream_rec(n2, source, buf);
        left + stream_rec(n - n2, source, buf)
    }
}

/// The pairwise sum of the next `n` values of `source`, equal bit for bit to [`pairwise_sum`] of
/// those values, without holding more than 128 of them.
pub fn pairwise_sum_stream<T: PairwiseFloat, S: ValueSource<T> + ?Sized>(
    n: usize,
    source: &mut S,
) -> T {
    let mut buf = [T::default(); BLOCK];
    stream_rec(n, source, &mut buf)
}

/// [`pairwise_sum_stream`] for float32 values.
pub fn pairwise_sum_f32_stream<S: ValueSource<f32> + ?Sized>(n: usize, source: &mut S) -> f32 {
    pairwise_sum_stream(n, source)
}

/// The pairwise sum of values `0..n` of a sequence, computed in parallel (with `rayon::join`, so
/// inside the current rayon pool). `open(start)` must return a source positioned at value
/// `start`. Sub-sums of at most `grain` values are computed sequentially from one source. The
/// result equals [`pairwise_sum`] of the whole sequence bit for bit.
pub fn pairwise_sum_parallel<T, S, F>(n: usize, open: &F, grain: usize) -> T
where
    T: PairwiseFloat,
    S: ValueSource<T>,
    F: Fn(usize) -> S + Sync,
{
    fn rec<T: PairwiseFloat, S: ValueSource<T>, F: Fn(usize) -> S + Sync>(
        start: usize,
        n: usize,
        open: &F,
        grain: usize,
    ) -> T {
        if n <= grain.max(BLOCK) {
            let mut source = open(start);
            pairwise_sum_stream(n, &mut source)
        } else {
            let n2 = split(n);
            let (a, b) = rayon::join(
                || rec(start, n2, open, grain),
                || rec(start + n2, n - n2, open, grain),
            );
            a + b
        }
    }
    rec(0, n, open, grain)
}

/// [`pairwise_sum_parallel`] for float32 values.
pub fn pairwise_sum_f32_parallel<S, F>(n: usize, open: &F, grain: usize) -> f32
where
    S: ValueSource<f32>,
    F: Fn(usize) -> S + Sync,
{
    pairwise_sum_parallel(n, open, grain)
}

/// `np.mean` of `n` float32 values from their float32 pairwise sum: `float32(float64(sum) / n)`.
pub fn mean_from_sum(sum: f32, n: usize) -> f32 {
    (sum as f64 / n as f64) as f32
}

/// `np.std` (ddof 0) of `n` float32 values from the float32 pairwise sum of `(x - mean)^2`, each
/// term computed in float32: `sqrt_f32(float32(float64(sum_sq) / n))`.
pub fn std_from_sum_of_squares(sum_sq: f32, n: usize) -> f32 {
    ((sum_sq as f64 / n as f64) as f32).sqrt()
}

/// The float32 term `(x - mean)^2` that `np.std` sums.
#[inline]
pub fn squared_deviation(x: f32, mean: f32) -> f32 {
    let d = x - mean;
    d * d
}

/// `np.mean` of `n` float64 values from their pairwise sum.
pub fn mean_f64_from_sum(sum: f64, n: usize) -> f64 {
    sum / n as f64
}

/// `np.std` (ddof 0) of `n` float64 values from the pairwise sum of `(x - mean)^2`.
pub fn std_f64_from_sum_of_squares(sum_sq: f64, n: usize) -> f64 {
    (sum_sq / n as f64).sqrt()
}

/// `np.mean(values)` of a float32 array (NaN for an empty one).
pub fn mean_f32(values: &[f32]) -> f32 {
    mean_from_sum(pairwise_sum_f32(values), values.len())
}

/// `np.std(values)` (ddof 0) of a float32 array (NaN for an empty one).
pub fn std_f32(values: &[f32]) -> f32 {
    let mean = mean_f32(values);
    let mut it = values.iter().map(|&x| squared_deviation(x, mean));
    let sum_sq = pairwise_sum_f32_stream(values.len(), &mut |out: &mut [f32]| {
        for o in out {
            *o = it.next().unwrap_or(0.0);
        }
    });
    std_from_sum_of_squares(sum_sq, values.len())
}

/// `np.percentile(v, p)` with the default `linear` method, for `n` values whose `k`-th smallest
/// (0-based) is `order_statistic(k)`, with `p` in percent as a float64 (so the result is float64):
/// the virtual index is `(n - 1) * p / 100`; the two neighbouring order statistics `a <= b` are
/// interpolated with their difference taken in float32. Returns NaN for `n == 0`.
pub fn percentile_linear(n: usize, p: f64, order_statistic: impl Fn(usize) -> f32) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    let (lo, hi, g) = virtual_index(n, p);
    let a = order_statistic(lo);
    let b = order_statistic(hi);
    let d = (b - a) as f64;
    if g >= 0.5 {
        b as f64 - d * (1.0 - g)
    } else {
        a as f64 + d * g
    }
}

/// The `linear` method's neighbours of the virtual index `(n - 1) * p / 100` (`n > 0`, `p` in
/// percent): the order statistics below and above it, and its fractional part.
fn virtual_index(n: usize, p: f64) -> (usize, usize, f64) {
    let h = (n - 1) as f64 * (p / 100.0);
    let (lo, hi) = if h >= (n - 1) as f64 {
        (n - 1, n - 1)
    } else if h < 0.0 {
        (0, 0)
    } else {
        let lo = h.floor() as usize;
        (lo, lo + 1)
    };
    (lo, hi, h - lo as f64)
}

/// [`percentile_linear`] for float64 data: the same interpolation with the difference of the two
/// order statistics taken in float64 (`np.percentile` of a float64 array).
pub fn percentile_linear_f64(n: usize, p: f64, order_statistic: impl Fn(usize) -> f64) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    let (lo, hi, g) = virtual_index(n, p);
    let (a, b) = (order_statistic(lo), order_statistic(hi));
    let d = b - a;
    if g >= 0.5 {
        b - d * (1.0 - g)
    } else {
        a + d * g
    }
}

/// [`percentile_linear`] of a slice that is sorted ascending.
pub fn percentile_linear_sorted(sorted: &[f32], p: f64) -> f64 {
    percentile_linear(sorted.len(), p, |k| sorted[k])
}

/// `np.median` of float64 values: the middle value, or the mean of the two middle values
/// (`(a + b) / 2`). NaN for an empty slice.
pub fn median_f64(values: &[f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The distinct float32 values of a multiset, sorted ascending, with how often each occurs: the
/// order statistics of a large sample without storing the sample.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValueHistogram {
    values: Vec<f32>,
    /// `cumulative[i]` = number of samples `<= values[i]`.
    cumulative: Vec<u64>,
}

impl ValueHistogram {
    /// Builds the histogram from `(value, count)` pairs in any order; equal values are merged and
    /// zero counts dropped. Values are ordered with [`f32::total_cmp`].
    pub fn from_counts(mut pairs: Vec<(f32, u64)>) -> Self {
        pairs.retain(|&(_, c)| c > 0);
        pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let mut values = Vec::with_capacity(pairs.len());
        let mut cumulative: Vec<u64> = Vec::with_capacity(pairs.len());
        let mut total = 0u64;
        for (v, c) in pairs {
            total += c;
            if values
                .last()
                .is_some_and(|&last: &f32| last.to_bits() == v.to_bits())
            {
                *cumulative.last_mut().expect("non-empty") = total;
            } else {
                values.push(v);
                cumulative.push(total);
            }
        }
        Self { values, cumulative }
    }

    /// Merges several histograms.
    pub fn merge<'a>(parts: impl IntoIterator<Item = &'a ValueHistogram>) -> Self {
        let mut pairs = Vec::new();
        for h in parts {
            pairs.extend(h.iter());
        }
        Self::from_counts(pairs)
    }

    /// The `(value, count)` pairs, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (f32, u64)> + '_ {
        self.values.iter().enumerate().map(|(i, &v)| {
            let before = if i == 0 { 0 } else { self.cumulative[i - 1] };
            (v, self.cumulative[i] - before)
        })
    }

    /// The number of samples.
    pub fn len(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `k`-th smallest sample (0-based); `k < len()`.
    pub fn order_statistic(&self, k: u64) -> f32 {
        let i = self.cumulative.partition_point(|&c| c <= k);
        self.values[i]
    }

    /// The smallest sample.
    pub fn min(&self) -> Option<f32> {
        self.values.first().copied()
    }

    /// The largest sample.
    pub fn max(&self) -> Option<f32> {
        self.values.last().copied()
    }

    /// `np.percentile` (linear) of the samples as a float32 array, `p` in percent.
    pub fn percentile(&self, p: f64) -> f64 {
        percentile_linear(self.len() as usize, p, |k| self.order_statistic(k as u64))
    }

    /// `np.percentile` (linear) of the samples widened to a float64 array, `p` in percent.
    pub fn percentile_f64(&self, p: f64) -> f64 {
        percentile_linear_f64(self.len() as usize, p, |k| {
            self.order_statistic(k as u64) as f64
        })
    }
}

/// numpy's pairwise summation of float64 (`np.sum` on a contiguous array), so that means are
/// bit-identical to nnU-Net's.
pub fn numpy_sum(values: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = values.len();
    if n < 8 {
        let mut res = 0.0;
        for v in values {
            res += v;
        }
        res
    } else if n <= BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&values[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += values[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for v in &values[i..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum(&values[..n2]) + numpy_sum(&values[n2..])
    }
}

/// `np.nanmean`: the mean of the values that are not NaN (NaN if there are none).
pub fn nanmean(values: &[f64]) -> f64 {
    let replaced: Vec<f64> = values
        .iter()
        .map(|v| if v.is_nan() { 0.0 } else { *v })
        .collect();
    let count = values.iter().filter(|v| !v.is_nan()).count();
    numpy_sum(&replaced) / count as f64
}

/// `np.mean` (NaN for no values).
pub fn np_mean(values: &[f64]) -> f64 {
    numpy_sum(values) / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test sequence, identical in numpy:
    /// `((i * 7919 % 10007).astype(float64) / 37.0 - 100.0).astype(float32)`.
    fn xs(n: usize) -> Vec<f32> {
        (0..n as i64)
            .map(|i| ((i * 7919 % 10007) as f64 / 37.0 - 100.0) as f32)
            .collect()
    }

    /// numpy 2.4's golden values for [`xs`], written one row per line by
    /// `core/tests/fixtures/make_statistics.py`, each row's numbers flattened: `float32` rows
    /// `n, np.sum(v, dtype=float32), np.mean(v), np.std(v)`, `percentiles` rows
    /// `n, np.percentile(v, (0.5, 50, 99.5))` and `float64` rows `n, sum, mean, std,
    /// percentiles` of `v.astype(float64)`. Numbers go through `str::parse` (correctly rounded).
    fn golden(table: &str) -> Vec<Vec<f64>> {
        let text = include_str!("../../tests/fixtures/statistics.json");
        let start = text.find(&format!("\"{table}\"")).unwrap();
        text[start..]
            .lines()
            .skip(1)
            .take_while(|line| line.trim_start().starts_with('['))
            .map(|line| {
                line.split(|c: char| "[], ".contains(c))
                    .filter(|t| !t.is_empty())
                    .map(|t| t.parse().unwrap())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn pairwise_sum_mean_std_match_numpy() {
        assert_eq!(pairwise_sum_f32(&[]), 0.0);
        for row in golden("float32") {
            let n = row[0] as usize;
            let [sum, mean, std] = [1, 2, 3].map(|k| row[k] as f32);
            let v = xs(n);
            assert_eq!(pairwise_sum_f32(&v), sum, "sum n={n}");
            assert_eq!(mean_f32(&v), mean, "mean n={n}");
            assert_eq!(std_f32(&v), std, "std n={n}");
        }
    }

    /// A reader of `v` from `start` on, filling each slice it is given with the next values.
    fn reader_from<T: Copy>(v: &[T], start: usize) -> impl FnMut(&mut [T]) + '_ {
        let mut pos = start;
        move |out: &mut [T]| {
            out.copy_from_slice(&v[pos..pos + out.len()]);
            pos += out.len();
        }
    }

    #[test]
    fn streamed_and_parallel_sums_equal_the_plain_sum() {
        for row in golden("float32") {
            let (n, sum) = (row[0] as usize, row[1] as f32);
            let v = xs(n);
            let streamed = pairwise_sum_f32_stream(n, &mut reader_from(&v, 0));
            assert_eq!(streamed, sum, "stream n={n}");
            for grain in [1, 200, 4096] {
                assert_eq!(
                    pairwise_sum_f32_parallel(n, &|start| reader_from(&v, start), grain),
                    sum,
                    "parallel n={n} grain={grain}"
                );
            }
        }
    }

    #[test]
    fn percentiles_match_numpy() {
        for row in golden("percentiles") {
            let (n, want) = (row[0] as usize, [row[1], row[2], row[3]]);
            let mut v = xs(n);
            let hist = ValueHistogram::from_counts(v.iter().map(|&x| (x, 1)).collect());
            v.sort_by(f32::total_cmp);
            for (p, w) in [0.5, 50.0, 99.5].into_iter().zip(want) {
                assert_eq!(percentile_linear_sorted(&v, p), w, "n={n} p={p}");
                assert_eq!(hist.percentile(p), w, "histogram n={n} p={p}");
            }
        }
        assert!(percentile_linear_sorted(&[], 50.0).is_nan());
    }

    #[test]
    fn float64_statistics_match_numpy() {
        for row in golden("float64") {
            let n = row[0] as usize;
            let [sum, mean, std] = [row[1], row[2], row[3]];
            let pct = [row[4], row[5], row[6]];
            let v: Vec<f64> = xs(n).into_iter().map(f64::from).collect();
            let s = pairwise_sum(&v);
            assert_eq!(s, sum, "sum n={n}");
            let m = mean_f64_from_sum(s, n);
            assert_eq!(m, mean, "mean n={n}");
            let sq: Vec<f64> = v.iter().map(|x| (x - m) * (x - m)).collect();
            assert_eq!(
                std_f64_from_sum_of_squares(pairwise_sum(&sq), n),
                std,
                "std n={n}"
            );
            let hist = ValueHistogram::from_counts(xs(n).into_iter().map(|x| (x, 1)).collect());
            for (p, w) in [0.5, 50.0, 99.5].into_iter().zip(pct) {
                assert_eq!(hist.percentile_f64(p), w, "n={n} p={p}");
            }
            let open = |start| reader_from(&v, start);
            assert_eq!(pairwise_sum_parallel(n, &open, 1000), sum, "parallel n={n}");
        }
    }

    #[test]
    fn histogram_counts() {
        let h = ValueHistogram::from_counts(vec![(3.0, 2), (1.0, 1), (3.0, 1), (2.0, 0)]);
        assert_eq!(h.len(), 4);
        assert_eq!(h.iter().collect::<Vec<_>>(), [(1.0, 1), (3.0, 3)]);
        assert_eq!(
            (0..4).map(|k| h.order_statistic(k)).collect::<Vec<_>>(),
            [1.0, 3.0, 3.0, 3.0]
        );
        assert_eq!((h.min(), h.max()), (Some(1.0), Some(3.0)));
        let m = ValueHistogram::merge([&h, &h]);
        assert_eq!(m.len(), 8);
        assert_eq!(m.percentile(50.0), 3.0);
        assert!(ValueHistogram::default().is_empty());
    }

    #[test]
    fn median_matches_numpy() {
        assert_eq!(median_f64(&[0.3, 0.1, 0.7, 0.2]), 0.25);
        assert_eq!(median_f64(&[0.1, 0.2, 0.35]), 0.2);
        assert!(median_f64(&[]).is_nan());
    }
}
