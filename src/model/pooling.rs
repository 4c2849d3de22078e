//! Pooling: token hidden states to one vector per sentence, ignoring padding.

use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Average of the real tokens' states (sentence-transformers' default).
    #[default]
    Mean,
    /// The first token's state (`[CLS]`).
    Cls,
    /// Element-wise maximum over the real tokens.
    Max,
}

impl Pooling {
    /// `hidden [batch, seq, dim]`, `mask [batch, seq]` (1 = real token) → `[batch, dim]`.
    ///
    /// Padding never contributes: mean divides by the number of real tokens, max sets
    /// padded positions to -1e9 first (as sentence-transformers does), cls reads position 0.
    pub fn forward(self, hidden: &Tensor, mask: &Tensor) -> Tensor {
        match self {
            Pooling::Cls => hidden.select(1, 0),
            Pooling::Mean => {
                let mask = super::cast(&mask.unsqueeze(-1), hidden.kind());
                let summed = (hidden * &mask).sum_dim_intlist(1, false, hidden.kind());
                let counts = mask.sum_dim_intlist(1, false, hidden.kind()).clamp_min(1e-9);
                summed / counts
            }
            Pooling::Max => {
                let padding = mask.unsqueeze(-1).eq(0);
                hidden.masked_fill(&padding, -1e9).amax(1, false)
            }
        }
    }
}

crate::value_names!(Pooling, "pooling", [Mean => "mean", Cls => "cls", Max => "max"]);

/// Scales each row `[batch, dim]` to unit L2 norm (rows of zeros stay zero).
pub fn l2_normalize(x: &Tensor) -> Tensor {
    let norm = x.norm_scalaropt_dim(2.0, [-1], true).clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> (Tensor, Tensor) {
        // Two sentences; the second has one real token and two padded positions holding
        // large values that must not leak into any pooling.
        let hidden = Tensor::from_slice(&[
            1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, //
            10.0, -1.0, 99.0, 99.0, 99.0, 99.0,
        ])
        .view([2, 3, 2]);
        let mask = Tensor::from_slice(&[1i64, 1, 1, 1, 0, 0]).view([2, 3]);
        (hidden, mask)
    }

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        Vec::<Vec<f32>>::try_from(t).unwrap()
    }

    #[test]
    fn mean_ignores_padding() {
        let (h, m) = batch();
        assert_eq!(rows(&Pooling::Mean.forward(&h, &m)), vec![vec![3.0, 4.0], vec![10.0, -1.0]]);
    }

    #[test]
    fn max_ignores_padding() {
        let (h, m) = batch();
        assert_eq!(rows(&Pooling::Max.forward(&h, &m)), vec![vec![5.0, 6.0], vec![10.0, -1.0]]);
    }

    #[test]
    fn cls_takes_first_token() {
        let (h, m) = batch();
        assert_eq!(rows(&Pooling::Cls.forward(&h, &m)), vec![vec![1.0, 2.0], vec![10.0, -1.0]]);
    }

    #[test]
    fn normalize_gives_unit_rows() {
        let x = Tensor::from_slice(&[3.0f32, 4.0, 0.0, 0.0]).view([2, 2]);
        assert_eq!(rows(&l2_normalize(&x)), vec![vec![0.6, 0.8], vec![0.0, 0.0]]);
    }
}
