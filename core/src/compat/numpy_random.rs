//! numpy's legacy `RandomState` (MT19937) draws, for bit parity with nnU-Net's sampling.
//!
//! Only what nnU-Net's fingerprint and preprocessing use is provided:
//!
//! * seeding with an integer (`RandomState(seed)`), which is MT19937's `init_genrand`;
//! * `randint(0, n)` with the masked rejection sampling of the legacy generator
//!   ([`RandomState::randint_below`]), which is also what `choice(a, size, replace=True)` draws;
//! * `choice(total, n, replace=False)`, which the legacy generator implements as the first `n`
//!   entries of `permutation(total)`, a Fisher–Yates shuffle ([`RandomState::permutation_prefix`]).
//!
//! The generator state is small (2.5 KB) and [`Clone`], so a stream of draws can be checkpointed and
//! replayed from any checkpoint.

/// Number of 32-bit words in the MT19937 state.
const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// numpy's legacy `np.random.RandomState` with an MT19937 bit generator.
#[derive(Clone)]
pub struct RandomState {
    key: [u32; N],
    pos: usize,
}

impl std::fmt::Debug for RandomState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RandomState")
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

/// The smallest all-ones bit mask covering `max`.
#[inline]
fn mask_for(max: u64) -> u64 {
    let mut mask = max;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    mask
}

impl RandomState {
    /// `np.random.RandomState(seed)` for an integer seed (MT19937 `init_genrand`).
    pub fn new(seed: u32) -> Self {
        let mut key = [0u32; N];
        key[0] = seed;
        for i in 1..N {
            let prev = key[i - 1];
            key[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self { key, pos: N }
    }

    /// Regenerates the 624 state words.
    fn generate(&mut self) {
        let k = &mut self.key;
        let twist = |a: u32, b: u32, c: u32| -> u32 {
            let y = (a & UPPER_MASK) | (b & LOWER_MASK);
            c ^ (y >> 1) ^ if y & 1 == 1 { MATRIX_A } else { 0 }
        };
        for i in 0..N - M {
            k[i] = twist(k[i], k[i + 1], k[i + M]);
        }
        for i in N - M..N - 1 {
            k[i] = twist(k[i], k[i + 1], k[i + M - N]);
        }
        k[N - 1] = twist(k[N - 1], k[0], k[M - 1]);
        self.pos = 0;
    }

    /// The next 32-bit output (`genrand_int32`).
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        if self.pos == N {
            self.generate();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// The next 64-bit output: the first 32-bit draw in the high half, the second in the low half.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        let lo = self.next_u32() as u64;
        (hi << 32) | lo
    }

    /// A uniform integer in `[0, max]` by masked rejection, as numpy's legacy bounded integers:
    /// one 32-bit draw per attempt while `max` fits in 32 bits, one 64-bit draw otherwise.
    #[inline]
    pub fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mask = mask_for(max);
        if max <= u32::MAX as u64 {
            if max == u32::MAX as u64 {
                return self.next_u32() as u64;
            }
            let mask = mask as u32;
            let max = max as u32;
            loop {
                let v = self.next_u32() & mask;
                if v <= max {
                    return v as u64;
                }
            }
        } else {
            if max == u64::MAX {
                return self.next_u64();
            }
            loop {
                let v = self.next_u64() & mask;
                if v <= max {
                    return v;
                }
            }
        }
    }

    /// `randint(0, n)`: a uniform integer in `[0, n)`. `n` must be positive.
    #[inline]
    pub fn randint_below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "randint_below(0)");
        self.interval(n.saturating_sub(1))
    }

    /// A 32-bit specialisation of [`RandomState::randint_below`] for `1 <= n <= 2^32`, the hot
    /// path of foreground sampling.
    #[inline]
    fn randint_below_u32(&mut self, max: u32, mask: u32) -> u32 {
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// Fills `out` with `choice(n, len(out), replace=True)`: indices into a population of `n`
    /// elements (`n > 0`), drawn as numpy's legacy `choice` with replacement draws them.
    pub fn choice_with_replacement(&mut self, n: u64, out: &mut [u64]) {
        assert!(n > 0, "choice from an empty population");
        let max = n - 1;
        if max > 0 && max < u32::MAX as u64 {
            let max32 = max as u32;
            let mask = mask_for(max) as u32;
            for o in out {
                *o = self.randint_below_u32(max32, mask) as u64;
            }
        } else {
            for o in out {
                *o = self.interval(max);
            }
        }
    }

    /// Calls `f` with each of `count` indices of `choice(n, count, replace=True)` (`n > 0`), in
    /// order, without storing them.
    #[inline]
    pub fn for_each_choice(&mut self, n: u64, count: u64, mut f: impl FnMut(u64)) {
        assert!(n > 0, "choice from an empty population");
        let max = n - 1;
        if max > 0 && max < u32::MAX as u64 {
            let max32 = max as u32;
            let mask = mask_for(max) as u32;
            for _ in 0..count {
                f(self.randint_below_u32(max32, mask) as u64);
            }
        } else {
            for _ in 0..count {
                f(self.interval(max));
            }
        }
    }

    /// `choice(total, n, replace=False)` of the legacy generator: the first `n` entries of
    /// `permutation(total)`, where the permutation is a Fisher–Yates shuffle of `0..total` that
    /// swaps position `i` (from `total - 1` down to 1) with a masked-rejection draw in `[0, i]`.
    ///
    /// All `total - 1` draws are made (as numpy makes them), so the generator ends in the same
    /// state as numpy's. Needs `n <= total`; memory is 4 bytes per element of `total` (8 beyond
    /// 2^32).
    pub fn permutation_prefix(&mut self, total: u64, n: usize) -> Vec<u64> {
        assert!(
            n as u64 <= total,
            "cannot take {n} samples without replacement from {total}"
        );
        if total <= u32::MAX as u64 + 1 {
            let mut arr: Vec<u32> = (0..total).map(|i| i as u32).collect();
            for i in (1..total as usize).rev() {
                let j = self.interval(i as u64) as usize;
                arr.swap(i, j);
            }
            arr.truncate(n);
            arr.into_iter().map(u64::from).collect()
        } else {
            let mut arr: Vec<u64> = (0..total).collect();
            for i in (1..total as usize).rev() {
                let j = self.interval(i as u64) as usize;
                arr.swap(i, j);
            }
            arr.truncate(n);
            arr
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values generated with numpy 2.4 (`np.random.RandomState`).

    #[test]
    fn raw_32_bit_outputs() {
        // rs.randint(0, 2**32, size=5, dtype=np.uint64) takes the raw 32-bit draws.
        let mut rs = RandomState::new(1234);
        let got: Vec<u32> = (0..5).map(|_| rs.next_u32()).collect();
        assert_eq!(
            got,
            [822569775, 2137449171, 2671936806, 3512589365, 1880026316]
        );
        let mut rs = RandomState::new(0);
        let got: Vec<u32> = (0..3).map(|_| rs.next_u32()).collect();
        assert_eq!(got, [2357136044, 2546248239, 3071714933]);
        // Past one state regeneration.
        let mut rs = RandomState::new(1234);
        for _ in 0..2000 {
            rs.next_u32();
        }
        assert_eq!(rs.pos, 2000 - 3 * N);
    }

    #[test]
    fn randint_masked() {
        let mut rs = RandomState::new(1234);
        let got: Vec<u64> = (0..10).map(|_| rs.randint_below(100)).collect();
        assert_eq!(got, [47, 83, 38, 53, 76, 24, 15, 49, 23, 26]);
    }

    #[test]
    fn randint_64_bit_path() {
        let mut rs = RandomState::new(1234);
        let got: Vec<u64> = (0..5).map(|_| rs.randint_below((1 << 33) + 5)).collect();
        assert_eq!(
            got,
            [2629000564, 3312965625, 682106748, 2090933724, 5716667728]
        );
        let mut rs = RandomState::new(5);
        let got: Vec<u64> = (0..3).map(|_| rs.randint_below(1 << 40)).collect();
        assert_eq!(got, [425438759118, 1030067709629, 989404716150]);
    }

    #[test]
    fn choice_with_replacement_continues_the_stream() {
        // rs.choice(np.arange(7) * 1.5, 12, replace=True), then rs.choice(np.arange(1000), 5).
        let mut rs = RandomState::new(1234);
        let mut idx = [0u64; 12];
        rs.choice_with_replacement(7, &mut idx);
        let values: Vec<f64> = idx.iter().map(|&i| i as f64 * 1.5).collect();
        assert_eq!(
            values,
            [4.5, 9.0, 7.5, 6.0, 6.0, 0.0, 1.5, 1.5, 1.5, 3.0, 9.0, 4.5]
        );
        let mut more = Vec::new();
        rs.for_each_choice(1000, 5, |i| more.push(i));
        assert_eq!(more, [158, 748, 892, 794, 374]);
        // A population of one draws nothing.
        let mut rs = RandomState::new(1234);
        let mut one = [9u64; 3];
        rs.choice_with_replacement(1, &mut one);
        assert_eq!(one, [0, 0, 0]);
        assert_eq!(rs.next_u32(), 822569775);
    }

    #[test]
    fn choice_without_replacement() {
        let mut rs = RandomState::new(1234);
        assert_eq!(rs.permutation_prefix(20, 7), [3, 13, 2, 16, 14, 5, 4]);
        assert_eq!(rs.permutation_prefix(1000, 5), [356, 206, 670, 630, 780]);
        let mut rs = RandomState::new(1234);
        assert_eq!(
            rs.permutation_prefix(10, 10),
            [7, 2, 9, 1, 0, 8, 4, 5, 6, 3]
        );
        let mut rs = RandomState::new(1234);
        assert!(rs.permutation_prefix(0, 0).is_empty());
        assert_eq!(rs.permutation_prefix(1, 1), [0]);
    }
}
