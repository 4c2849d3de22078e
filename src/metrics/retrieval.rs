//! Retrieval metrics, as sentence-transformers' `InformationRetrievalEvaluator` computes them:
//! each query's candidates ranked by score, then the mean over queries of MRR@k (the reciprocal
//! rank of the first relevant candidate within the top k, else 0) and recall@k (the share of
//! the query's relevant candidates within the top k).

use serde::{Deserialize, Serialize};

/// Where each query's relevant candidates ranked: `ranks[q]` holds the 1-based ranks of query
/// `q`'s relevant candidates among all candidates, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalRanks {
    pub ranks: Vec<Vec<usize>>,
    /// Per query, the index of its best-ranked relevant candidate.
    pub best_relevant: Vec<usize>,
    /// Per query, the index of the candidate ranked first (relevant or not).
    pub top: Vec<usize>,
    /// Queries with a score that is not a number (NaN embeddings).
    pub nan_queries: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetrievalScores {
    pub mrr_at_10: f64,
    pub recall_at_1: f64,
    pub recall_at_10: f64,
}

impl RetrievalRanks {
    /// Ranks from a `[queries][candidates]` score matrix (row-major) and each query's relevant
    /// candidate indices. Candidates with equal scores rank in index order.
    pub fn from_scores(scores: &[f32], candidates: usize, relevant: &[Vec<usize>]) -> Self {
        let mut ranks = Self { ranks: Vec::new(), best_relevant: Vec::new(), top: Vec::new(), nan_queries: 0 };
        ranks.extend(scores, candidates, relevant);
        ranks
    }

    /// Adds the ranks of more queries (a chunk of the score matrix, as in `from_scores`).
    pub fn extend(&mut self, scores: &[f32], candidates: usize, relevant: &[Vec<usize>]) {
        for (q, wanted) in relevant.iter().enumerate() {
            // A NaN score (a broken model's) ranks below every number: compared as it is, it
            // is never below another, so every relevant candidate would rank first.
            let scored = &scores[q * candidates..(q + 1) * candidates];
            self.nan_queries += usize::from(scored.iter().any(|s| s.is_nan()));
            let row: Vec<f32> = scored.iter().map(|&s| if s.is_nan() { f32::NEG_INFINITY } else { s }).collect();
            // A candidate's rank: 1 + the candidates ahead of it (higher score, or equal and
            // earlier).
            let rank_of =
                |r: usize| 1 + row.iter().enumerate().filter(|&(c, &s)| s > row[r] || (s == row[r] && c < r)).count();
            let mut ranked: Vec<(usize, usize)> = wanted.iter().map(|&c| (rank_of(c), c)).collect();
            ranked.sort_unstable();
            self.best_relevant.push(ranked.first().map_or(0, |&(_, c)| c));
            self.ranks.push(ranked.into_iter().map(|(rank, _)| rank).collect());
            // The first of the highest scores (`max_by` would keep the last).
            let top = row.iter().enumerate().fold(0, |best, (c, &s)| if s > row[best] { c } else { best });
            self.top.push(top);
        }
    }

    pub fn mrr_at(&self, k: usize) -> f64 {
        self.mean(|ranks| ranks.first().filter(|&&r| r <= k).map(|&r| 1.0 / r as f64).unwrap_or(0.0))
    }

    pub fn recall_at(&self, k: usize) -> f64 {
        self.mean(|ranks| ranks.iter().filter(|&&r| r <= k).count() as f64 / ranks.len().max(1) as f64)
    }

    pub fn scores(&self) -> RetrievalScores {
        RetrievalScores { mrr_at_10: self.mrr_at(10), recall_at_1: self.recall_at(1), recall_at_10: self.recall_at(10) }
    }

    fn mean(&self, per_query: impl Fn(&[usize]) -> f64) -> f64 {
        if self.ranks.is_empty() {
            return 0.0;
        }
        self.ranks.iter().map(|r| per_query(r)).sum::<f64>() / self.ranks.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_scores_rank_last() {
        // Query 0 wants candidate 0, whose score is NaN; query 1 scores everything NaN.
        let ranks =
            RetrievalRanks::from_scores(&[f32::NAN, 0.1, 0.2, f32::NAN, f32::NAN, f32::NAN], 3, &[vec![0], vec![2]]);
        assert_eq!(ranks.ranks, vec![vec![3], vec![3]]);
        assert_eq!(ranks.top, vec![2, 0]);
        assert_eq!(ranks.nan_queries, 2);
        assert!(ranks.mrr_at(10) < 0.5);
    }

    #[test]
    fn hand_computed_ranks_and_means() {
        // Two queries over three candidates. Query 0 wants candidate 2, which scores highest
        // (rank 1); query 1 wants candidates 0 and 2, ranked 3 and 2.
        let scores = [0.1, 0.2, 0.9, 0.1, 0.8, 0.5];
        let ranks = RetrievalRanks::from_scores(&scores, 3, &[vec![2], vec![0, 2]]);
        assert_eq!(ranks.ranks, vec![vec![1], vec![2, 3]]);
        assert_eq!(ranks.best_relevant, vec![2, 2]);
        assert_eq!(ranks.top, vec![2, 1]);
        // MRR@10 = (1/1 + 1/2) / 2 = 3/4; recall@1 = (1 + 0) / 2 = 1/2; recall@10 = 1.
        assert_eq!(ranks.mrr_at(10), 0.75);
        assert_eq!(ranks.recall_at(1), 0.5);
        assert_eq!(ranks.recall_at(10), 1.0);
        // A relevant candidate beyond k counts 0.
        assert_eq!(ranks.mrr_at(1), 0.5);
    }

    #[test]
    fn ties_keep_index_order() {
        let ranks = RetrievalRanks::from_scores(&[0.5, 0.5], 2, &[vec![1]]);
        assert_eq!(ranks.ranks, vec![vec![2]]);
        assert_eq!(ranks.top, vec![0]);
    }
}
