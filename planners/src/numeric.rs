//! The few numpy reductions the planner needs, evaluated the way numpy evaluates them so that the
//! results match nnU-Net to the last bit.

use nnunet_core::compat::statistics::percentile_linear_f64;

/// `np.percentile(values, percent)` with the default `linear` method: virtual index
/// `(n - 1) * percent / 100`, then numpy's two-sided lerp. `values` must not be empty.
pub(crate) fn percentile(values: &[f64], percent: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile_linear_f64(sorted.len(), percent, |k| sorted[k])
}

/// `np.median(values)`: the middle value, or the mean `(a + b) / 2` of the two middle values.
pub(crate) use nnunet_core::compat::statistics::median_f64 as median;

/// Applies `f` to every column (axis 0 reduction) of a list of rows of equal length.
pub(crate) fn per_axis(rows: &[[f64; 3]], f: impl Fn(&[f64]) -> f64) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (axis, value) in out.iter_mut().enumerate() {
        let column: Vec<f64> = rows.iter().map(|row| row[axis]).collect();
        *value = f(&column);
    }
    out
}

/// `np.prod` of a float64 array: a left-to-right product.
pub(crate) fn prod(values: &[f64]) -> f64 {
    values.iter().fold(1.0, |acc, &v| acc * v)
}

/// Index of the first maximum (`np.argmax`).
pub(crate) fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        // np.percentile([1.5, 5, 5], 10) == 2.2 (up to the float ops numpy does)
        assert_eq!(percentile(&[5.0, 1.5, 5.0], 10.0), 1.5 + 3.5 * 0.2);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
        assert_eq!(percentile(&[7.0], 50.0), 7.0);
    }

    #[test]
    fn median_of_even_count_is_mean_of_middle() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    }

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    }
}
