//! Correlation of predicted similarities with gold scores: Pearson's r and Spearman's rho
//! (Pearson's r of the ranks, ties sharing their average rank), as `scipy.stats.pearsonr` and
//! `spearmanr` compute them and sentence-transformers' `EmbeddingSimilarityEvaluator` and
//! MTEB report them. Computed in f64.
//!
//! A correlation is undefined when one side is constant; this module returns 0 then (scipy
//! returns NaN with a warning), so that reports never show NaN for a model that is merely
//! useless. Constant means equal up to float32 rounding: the cosines of identical sentence
//! pairs come out as 1 and 1.0000001, and a correlation of that noise would be a number
//! that means nothing. Gold scores that are all equal are refused when a file is read
//! (`data::scored_pairs`), as are gold scores equal up to that rounding. A NaN among the predictions (a model whose weights overflowed)
//! gives NaN, as scipy does, rather than a plausible number.

/// Pearson's correlation coefficient of `x` and `y` (same length, at least 2); NaN when
/// either holds a NaN.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "one prediction per gold score");
    if has_nan(x) || has_nan(y) {
        return f64::NAN;
    }
    if x.len() < 2 || is_constant(x) || is_constant(y) {
        return 0.0;
    }
    // r does not change with the scale, and sums of squares of scores near 1e200 (or 1e-200)
    // would overflow (or vanish) unscaled.
    let (x, y) = (&scaled(x), &scaled(y));
    let n = x.len() as f64;
    let (mean_x, mean_y) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut cov, mut var_x, mut var_y) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mean_x, b - mean_y);
        cov += dx * dy;
        var_x += dx * dx;
        var_y += dy * dy;
    }
    if var_x == 0.0 || var_y == 0.0 {
        return 0.0;
    }
    (cov / (var_x.sqrt() * var_y.sqrt())).clamp(-1.0, 1.0)
}

fn has_nan(values: &[f64]) -> bool {
    values.iter().any(|v| v.is_nan())
}

/// Whether `values` span no more than a few float32 roundings of their magnitude.
pub fn is_constant(values: &[f64]) -> bool {
    let (low, high) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    high - low <= 8.0 * f32::EPSILON as f64 * low.abs().max(high.abs())
}

/// `values` divided by their largest magnitude, when that is finite and not 0.
fn scaled(values: &[f64]) -> Vec<f64> {
    let largest = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    match largest.is_normal() {
        true => values.iter().map(|v| v / largest).collect(),
        false => values.to_vec(),
    }
}

/// Spearman's rank correlation of `x` and `y`; NaN when either holds a NaN (which ranks would
/// otherwise place as the largest value).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    if has_nan(x) || has_nan(y) {
        return f64::NAN;
    }
    if is_constant(x) || is_constant(y) {
        return 0.0;
    }
    pearson(&ranks(x), &ranks(y))
}

/// 1-based ranks, ties getting the average of the ranks they span (scipy's `rankdata`).
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Ranks start+1 ..= end share their mean.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            out[i] = rank;
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_their_ties() {
        assert_eq!(ranks(&[10.0, 20.0, 10.0, 30.0]), vec![1.5, 3.0, 1.5, 4.0]);
    }

    #[test]
    fn hand_computed_coefficients() {
        // x = 1, 2, 3; y = 1, 3, 2: deviations (-1, 0, 1), (-1, 1, 0); r = 1 / sqrt(2 * 2) = 1/2.
        assert!((pearson(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]) - 0.5).abs() < 1e-15);
        // A monotone but non-linear relation: Spearman 1, Pearson below 1.
        let x = [1.0, 2.0, 3.0, 4.0];
        let y = [1.0, 4.0, 9.0, 100.0];
        assert!((spearman(&x, &y) - 1.0).abs() < 1e-15);
        assert!(pearson(&x, &y) < 0.9);
        assert!((spearman(&x, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-15);
    }

    #[test]
    fn the_scale_of_the_scores_does_not_matter() {
        let x = [0.1, 0.5, 0.2, 0.9];
        let y = [1.0, 3.0, 2.0, 5.0];
        let r = pearson(&x, &y);
        for scale in [1e200, 1e-200, 1e300] {
            let y: Vec<f64> = y.iter().map(|v| v * scale).collect();
            assert!((pearson(&x, &y) - r).abs() < 1e-12, "scale {scale}: {} vs {r}", pearson(&x, &y));
        }
    }

    #[test]
    fn a_nan_prediction_gives_nan_as_scipy_does() {
        let (x, y) = ([f64::NAN, 0.5, 0.2], [1.0, 2.0, 3.0]);
        assert!(pearson(&x, &y).is_nan());
        assert!(spearman(&x, &y).is_nan());
        let all_nan = [f64::NAN; 3];
        assert!(pearson(&all_nan, &y).is_nan() && spearman(&all_nan, &y).is_nan());
    }

    #[test]
    fn cosines_equal_but_for_float32_rounding_are_constant() {
        let one_ulp = 1.0 + f32::EPSILON as f64;
        let x = [1.0, one_ulp, 1.0, one_ulp, 1.0];
        let y = [1.0, 4.0, 2.0, 5.0, 3.0];
        assert_eq!((spearman(&x, &y), pearson(&x, &y)), (0.0, 0.0));
        let x = [0.5, 0.50001, 0.5, 0.50001, 0.5];
        assert!(spearman(&x, &y) > 0.5, "differences far above rounding count");
    }

    #[test]
    fn a_constant_side_gives_zero_not_nan() {
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[5.0, 5.0, 5.0]), 0.0);
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
    }
}
