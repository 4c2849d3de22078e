//! The losses of the embedding tasks, as sentence-transformers defines them. Inputs are fp32
//! embeddings; every loss compares them by cosine similarity.

use tch::{Kind, Tensor};

use crate::model::pooling::l2_normalize;

/// sentence-transformers' default scale for CoSENT and MultipleNegativesRankingLoss.
pub const DEFAULT_SCALE: f64 = 20.0;

/// Cosine similarity of matching rows: `[n, d]`, `[n, d]` → `[n]`.
pub fn pairwise_cosine(a: &Tensor, b: &Tensor) -> Tensor {
    (l2_normalize(a) * l2_normalize(b)).sum_dim_intlist(-1, false, Kind::Float)
}

/// CoSENT (Su, 2022; sentence-transformers' `CoSENTLoss`): for every two pairs whose gold scores
/// are ordered `score_i < score_j`, penalise `cos_i > cos_j`:
/// `log(1 + Σ exp(scale (cos_i − cos_j)))`. Only the order of the scores matters, so any score
/// range works. `cosines`, `scores`: `[n]`.
pub fn cosent(cosines: &Tensor, scores: &Tensor, scale: f64) -> Tensor {
    let s = cosines * scale;
    // differences[i][j] = s_i - s_j, kept where score_i < score_j.
    let differences = s.unsqueeze(1) - s.unsqueeze(0);
    let ordered = scores.unsqueeze(1).lt_tensor(&scores.unsqueeze(0)).to_kind(Kind::Float);
    let masked = differences - (ordered.ones_like() - ordered) * 1e12;
    // The leading 0 is the "1 +" inside the log.
    let zero = Tensor::zeros([1], (masked.kind(), masked.device()));
    Tensor::cat(&[zero, masked.flatten(0, -1)], 0).logsumexp([0], false)
}

/// Cosine-MSE (sentence-transformers' `CosineSimilarityLoss`): mean squared error between the
/// cosine and the score mapped onto [0, 1] by the training range `low..high`.
pub fn cosine_mse(cosines: &Tensor, scores: &Tensor, (low, high): (f64, f64)) -> Tensor {
    let targets = (scores - low) / (high - low);
    (cosines - targets).square().mean(Kind::Float)
}

/// MultipleNegativesRankingLoss: each anchor `[n, d]` must pick its own positive among all
/// `candidates` `[m, d]` (the `n` positives first, then any hard negatives): cross-entropy over
/// `scale * cos(anchor_i, candidate_j)`, target `j = i`.
pub fn multiple_negatives_ranking(anchors: &Tensor, candidates: &Tensor, scale: f64) -> Tensor {
    multiple_negatives_ranking_from(anchors, candidates, scale, 0)
}

/// As [`multiple_negatives_ranking`], with anchor `i`'s own positive at candidate
/// `first + i` (a rank's anchors among every rank's candidates).
pub fn multiple_negatives_ranking_from(anchors: &Tensor, candidates: &Tensor, scale: f64, first: i64) -> Tensor {
    let scores = l2_normalize(anchors).matmul(&l2_normalize(candidates).tr()) * scale;
    let n = anchors.size()[0];
    let targets = Tensor::arange_start(first, first + n, (Kind::Int64, anchors.device()));
    scores.cross_entropy_for_logits(&targets)
}

/// SetFit's objective over the pairs of a batch (small-data mode): cosine-MSE of every two
/// rows of `embeddings` `[n, d]` against 1 when their `classes` `[n]` match and 0 when they do
/// not, the mean over same-class pairs and the mean over different-class pairs weighted equally
/// (as SetFit's oversampling balances them); a kind of pair the batch lacks is left out.
pub fn label_pair_cosine(embeddings: &Tensor, classes: &Tensor) -> Tensor {
    let e = l2_normalize(embeddings);
    let cosines = e.matmul(&e.tr());
    let n = embeddings.size()[0];
    let upper = Tensor::ones([n, n], (Kind::Float, embeddings.device())).triu(1);
    let same = classes.unsqueeze(1).eq_tensor(&classes.unsqueeze(0)).to_kind(Kind::Float) * &upper;
    let different = &upper - &same;
    // Without reading anything back to the host: a kind of pair the batch lacks has error 0
    // over max(0, 1) pairs and does not count among the kinds present.
    let mean_error = |mask: &Tensor, target: f64| {
        let pairs = mask.sum(Kind::Float);
        let mean = ((&cosines - target).square() * mask).sum(Kind::Float) / pairs.clamp_min(1.0);
        (mean, pairs.clamp_max(1.0))
    };
    let (same_error, has_same) = mean_error(&same, 1.0);
    let (different_error, has_different) = mean_error(&different, 0.0);
    (same_error + different_error) / (has_same + has_different).clamp_min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(t: &Tensor) -> f64 {
        t.double_value(&[])
    }

    #[test]
    fn cosent_by_hand() {
        // cos = (0.9, 0.1), scores (1, 3): pair 0 is less similar but scored higher cosine, so
        // the loss is log(1 + exp(20 (0.9 - 0.1))) = log(1 + e^16).
        let cos = Tensor::from_slice(&[0.9f32, 0.1]);
        let loss = cosent(&cos, &Tensor::from_slice(&[1.0f32, 3.0]), 20.0);
        assert!((value(&loss) - (1.0 + 16f64.exp()).ln()).abs() < 1e-4, "{}", value(&loss));
        // The right order gives log(1 + e^-16), and equal scores contribute nothing: log 1.
        let loss = cosent(&cos, &Tensor::from_slice(&[3.0f32, 1.0]), 20.0);
        assert!((value(&loss) - (1.0 + (-16f64).exp()).ln()).abs() < 1e-6);
        let loss = cosent(&cos, &Tensor::from_slice(&[2.0f32, 2.0]), 20.0);
        assert!(value(&loss).abs() < 1e-6);
    }

    #[test]
    fn cosine_mse_maps_scores_onto_the_unit_range() {
        // Range 0..5: scores 5 and 0 become 1 and 0; cos 0.5 and 0.5 → ((0.5)^2 + (0.5)^2) / 2.
        let loss = cosine_mse(&Tensor::from_slice(&[0.5f32, 0.5]), &Tensor::from_slice(&[5.0f32, 0.0]), (0.0, 5.0));
        assert!((value(&loss) - 0.25).abs() < 1e-7);
    }

    #[test]
    fn label_pairs_by_hand() {
        // Rows 0 and 1 share a class and are orthogonal (cos 0, target 1: error 1); row 2 equals
        // row 0 (cos 1 with it, target 0: error 1) and is orthogonal to row 1 (error 0):
        // same-class mean 1, different-class mean 1/2, loss (1 + 1/2) / 2.
        let e = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 2.0, 0.0]).view([3, 2]);
        let loss = label_pair_cosine(&e, &Tensor::from_slice(&[0i64, 0, 1]));
        assert!((value(&loss) - 0.75).abs() < 1e-6, "{}", value(&loss));
        // One class only: the same-class part alone.
        let loss = label_pair_cosine(&e, &Tensor::from_slice(&[4i64, 4, 4]));
        assert!((value(&loss) - 2.0 / 3.0).abs() < 1e-6, "{}", value(&loss));
        let single = label_pair_cosine(&e.narrow(0, 0, 1), &Tensor::from_slice(&[0i64]));
        assert_eq!(value(&single), 0.0);
    }

    #[test]
    fn ranking_loss_by_hand() {
        // Two anchors equal to their positives and orthogonal to each other: logits
        // [[20, 0], [0, 20]], loss = log(1 + e^-20) per row.
        let a = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
        let loss = multiple_negatives_ranking(&a, &a, 20.0);
        assert!((value(&loss) - (1.0 + (-20f64).exp()).ln()).abs() < 1e-7);
        // A hard negative equal to anchor 0 makes row 0 a tie: log(2 + e^-20).
        let candidates = Tensor::cat(&[&a, &a.narrow(0, 0, 1)], 0);
        let loss = multiple_negatives_ranking(&a, &candidates, 20.0);
        let expected = ((2.0 + (-20f64).exp()).ln() + (1.0 + 2.0 * (-20f64).exp()).ln()) / 2.0;
        assert!((value(&loss) - expected).abs() < 1e-6, "{} vs {expected}", value(&loss));
    }
}
