//! Classification metrics from predicted and true class ids: confusion matrix, accuracy,
//! per-class precision/recall/F1/support, macro and weighted averages.
//!
//! Conventions follow scikit-learn with `zero_division=0`: a class that is never predicted
//! has precision 0, a class absent from the data has recall 0, and F1 is 0 whenever
//! precision + recall is 0. Averages run over every class the model knows (scikit-learn's
//! `labels=` argument), so a class absent from the data counts 0 in the macro average and
//! weight 0 in the weighted one.

use serde::Serialize;

/// Counts `[true class][predicted class]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    classes: usize,
    counts: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Average {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl ConfusionMatrix {
    /// Builds the matrix; ids must be below `classes`.
    pub fn from_predictions(classes: usize, truth: &[usize], predicted: &[usize]) -> Self {
        assert_eq!(truth.len(), predicted.len(), "one prediction per example");
        let mut counts = vec![0u64; classes * classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            assert!(t < classes && p < classes, "class id out of range");
            counts[t * classes + p] += 1;
        }
        Self { classes, counts }
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn count(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    /// Rows (true classes) of counts, for tables and JSON.
    pub fn rows(&self) -> Vec<Vec<u64>> {
        self.counts.chunks(self.classes.max(1)).map(<[u64]>::to_vec).collect()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.classes).map(|c| self.count(c, c)).sum();
        ratio(correct, self.total())
    }

    pub fn per_class(&self) -> Vec<ClassMetrics> {
        (0..self.classes)
            .map(|c| {
                let true_positive = self.count(c, c);
                let support: u64 = (0..self.classes).map(|p| self.count(c, p)).sum();
                let predicted: u64 = (0..self.classes).map(|t| self.count(t, c)).sum();
                let precision = ratio(true_positive, predicted);
                let recall = ratio(true_positive, support);
                let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
                ClassMetrics { precision, recall, f1, support }
            })
            .collect()
    }

    /// Unweighted mean over all classes.
    pub fn macro_average(&self) -> Average {
        let per_class = self.per_class();
        let n = per_class.len().max(1) as f64;
        Average {
            precision: per_class.iter().map(|m| m.precision).sum::<f64>() / n,
            recall: per_class.iter().map(|m| m.recall).sum::<f64>() / n,
            f1: per_class.iter().map(|m| m.f1).sum::<f64>() / n,
        }
    }

    /// Mean over classes weighted by support.
    pub fn weighted_average(&self) -> Average {
        let per_class = self.per_class();
        let total = self.total();
        let weighted = |f: fn(&ClassMetrics) -> f64| {
            if total == 0 {
                0.0
            } else {
                per_class.iter().map(|m| f(m) * m.support as f64).sum::<f64>() / total as f64
            }
        };
        Average { precision: weighted(|m| m.precision), recall: weighted(|m| m.recall), f1: weighted(|m| m.f1) }
    }
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    /// Three classes: class 0 (support 3), class 1 (support 2, never predicted),
    /// class 2 (support 1). Predictions: 0,0,2 | 0,2 | 2.
    ///
    ///            pred 0  pred 1  pred 2
    ///   true 0      2       0       1
    ///   true 1      1       0       1
    ///   true 2      0       0       1
    fn fixture() -> ConfusionMatrix {
        ConfusionMatrix::from_predictions(3, &[0, 0, 0, 1, 1, 2], &[0, 0, 2, 0, 2, 2])
    }

    #[test]
    fn counts_and_accuracy() {
        let m = fixture();
        assert_eq!(m.rows(), vec![vec![2, 0, 1], vec![1, 0, 1], vec![0, 0, 1]]);
        close(m.accuracy(), 3.0 / 6.0);
    }

    #[test]
    fn per_class_by_hand() {
        let per = fixture().per_class();
        // class 0: tp 2, predicted 3, support 3 -> p 2/3, r 2/3, f1 2/3
        close(per[0].precision, 2.0 / 3.0);
        close(per[0].recall, 2.0 / 3.0);
        close(per[0].f1, 2.0 / 3.0);
        // class 1: never predicted -> precision 0 (zero_division=0), recall 0/2, f1 0
        assert_eq!((per[1].precision, per[1].recall, per[1].f1, per[1].support), (0.0, 0.0, 0.0, 2));
        // class 2: tp 1, predicted 3, support 1 -> p 1/3, r 1, f1 = 2*(1/3)/(4/3) = 1/2
        close(per[2].precision, 1.0 / 3.0);
        close(per[2].recall, 1.0);
        close(per[2].f1, 1.0 / 2.0);
    }

    #[test]
    fn averages_by_hand() {
        let m = fixture();
        let macro_avg = m.macro_average();
        close(macro_avg.precision, (2.0 / 3.0 + 0.0 + 1.0 / 3.0) / 3.0);
        close(macro_avg.recall, (2.0 / 3.0 + 0.0 + 1.0) / 3.0);
        close(macro_avg.f1, (2.0 / 3.0 + 0.0 + 1.0 / 2.0) / 3.0);
        let weighted = m.weighted_average();
        close(weighted.f1, (3.0 * 2.0 / 3.0 + 2.0 * 0.0 + 1.0 * 1.0 / 2.0) / 6.0);
        close(weighted.recall, m.accuracy());
    }

    #[test]
    fn class_absent_from_data_scores_zero_and_weighs_nothing() {
        // Class 2 is neither in the data nor predicted: P = R = F1 = 0, support 0.
        let m = ConfusionMatrix::from_predictions(3, &[0, 1, 1], &[0, 1, 0]);
        let per = m.per_class();
        assert_eq!((per[2].precision, per[2].recall, per[2].f1, per[2].support), (0.0, 0.0, 0.0, 0));
        // class 0: p 1/2, r 1, f1 2/3; class 1: p 1, r 1/2, f1 2/3
        close(m.macro_average().f1, (2.0 / 3.0 + 2.0 / 3.0 + 0.0) / 3.0);
        close(m.weighted_average().f1, (1.0 * 2.0 / 3.0 + 2.0 * 2.0 / 3.0) / 3.0);
    }

    #[test]
    fn empty_data_is_all_zero_not_nan() {
        let m = ConfusionMatrix::from_predictions(2, &[], &[]);
        assert_eq!(m.accuracy(), 0.0);
        assert_eq!(m.macro_average().f1, 0.0);
        assert_eq!(m.weighted_average().f1, 0.0);
    }
}
