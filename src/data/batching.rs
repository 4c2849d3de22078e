//! Token id lists to padded tensors, and the grouping of sentences into batches.

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::device::upload;

/// Pads `sequences` to the longest one: `input_ids [batch, seq]` (pad id in the tail) and
/// `attention_mask [batch, seq]` (1 = real token), both Int64 on `device`.
pub fn pad_batch(sequences: &[&[i64]], pad_id: i64, device: Device) -> (Tensor, Tensor) {
    let width = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(sequences.len() * width);
    let mut mask = Vec::with_capacity(sequences.len() * width);
    for seq in sequences {
        ids.extend_from_slice(seq);
        ids.extend(std::iter::repeat_n(pad_id, width - seq.len()));
        mask.extend(std::iter::repeat_n(1i64, seq.len()));
        mask.extend(std::iter::repeat_n(0i64, width - seq.len()));
    }
    let shape = [sequences.len() as i64, width as i64];
    let ids = upload(Tensor::from_slice(&ids).view(shape), device);
    let mask = upload(Tensor::from_slice(&mask).view(shape), device);
    (ids, mask)
}

/// How large a batch may be: a number of rows (`--batch-size`) or of padded tokens
/// (`--batch-tokens`: rows x texts per row x the longest text's tokens), as
/// text-embeddings-inference batches by tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchLimit {
    Rows(usize),
    Tokens(usize),
}

/// As the flag that sets it: `--batch-size 32`, `--batch-tokens 4096`.
impl std::fmt::Display for BatchLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rows(n) => write!(f, "--batch-size {n}"),
            Self::Tokens(n) => write!(f, "--batch-tokens {n}"),
        }
    }
}

impl BatchLimit {
    /// Whether `rows` rows of `texts_per_row` texts each, the longest of `longest` tokens, fit.
    /// One row always fits, however long.
    pub fn fits(self, rows: usize, longest: usize, texts_per_row: usize) -> bool {
        match self {
            Self::Rows(n) => rows <= n,
            Self::Tokens(n) => rows <= 1 || rows * texts_per_row * longest <= n,
        }
    }

    /// Rows a batch of texts of `typical` tokens holds (for sizing chunks and estimates).
    pub fn typical_rows(self, typical: usize, texts_per_row: usize) -> usize {
        match self {
            Self::Rows(n) => n,
            Self::Tokens(n) => (n / (typical.max(1) * texts_per_row.max(1))).max(1),
        }
    }
}

/// Cuts `order` (longest first) into consecutive batches that fit `limit`.
pub fn cut_sorted(order: &[usize], lengths: &[usize], limit: BatchLimit, texts_per_row: usize) -> Vec<Vec<usize>> {
    if let BatchLimit::Rows(n) = limit {
        return order.chunks(n.max(1)).map(<[usize]>::to_vec).collect();
    }
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    // The longest row of `current`, kept as rows join: a budget of a million tokens holds
    // hundreds of thousands of short rows, which rescanning for each would make quadratic.
    let mut longest = 0;
    for &i in order {
        if !current.is_empty() && !limit.fits(current.len() + 1, longest.max(lengths[i]), texts_per_row) {
            batches.push(std::mem::take(&mut current));
            longest = 0;
        }
        longest = longest.max(lengths[i]);
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Moves rows into batches smaller than `min_rows` from batches that can spare them (keeping
/// `min_rows` each), so that a loss comparing a batch's rows with each other (in-batch
/// negatives, CoSENT) never meets a lone row, whose loss is 0: a pass's last batch of one
/// row, say. A row moves only where the batch still fits `limit` and, with `keys`, shares no
/// text with it. A batch no row can join stays short.
pub fn top_up_short_batches(
    batches: &mut [Vec<usize>],
    lengths: &[usize],
    texts_per_row: usize,
    keys: Option<&[Vec<u64>]>,
    limit: BatchLimit,
    min_rows: usize,
) {
    let shares_a_text = |row: usize, batch: &[usize]| {
        keys.is_some_and(|keys| batch.iter().any(|&other| keys[row].iter().any(|k| keys[other].contains(k))))
    };
    for short in 0..batches.len() {
        while batches[short].len() < min_rows {
            let longest = batches[short].iter().map(|&r| lengths[r]).max().unwrap_or(0);
            let size = batches[short].len();
            let joins = |row: usize| {
                limit.fits(size + 1, longest.max(lengths[row]), texts_per_row) && !shares_a_text(row, &batches[short])
            };
            let donor = (0..batches.len())
                .filter(|&d| d != short && batches[d].len() > min_rows)
                .find_map(|d| batches[d].iter().rposition(|&row| joins(row)).map(|at| (d, at)));
            let Some((d, at)) = donor else { break };
            let row = batches[d].remove(at);
            batches[short].push(row);
        }
    }
}

/// Indices grouped into batches that fit `limit`, longest sentences first, so that each
/// batch pads to nearly its own length (inference order does not matter: outputs are put
/// back in input order).
pub fn length_sorted_batches(lengths: &[usize], limit: BatchLimit) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    cut_sorted(&order, lengths, limit, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_last_row_is_joined_by_one_from_a_full_batch() {
        // 40 rows at batch 13: 13, 13, 13, 1 -> the last batch takes a row from another.
        let lengths = vec![5; 40];
        let order: Vec<usize> = (0..40).collect();
        let mut batches = cut_sorted(&order, &lengths, BatchLimit::Rows(13), 1);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [13, 13, 13, 1]);
        top_up_short_batches(&mut batches, &lengths, 1, None, BatchLimit::Rows(13), 2);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [12, 13, 13, 2]);
        let mut rows: Vec<usize> = batches.concat();
        rows.sort();
        assert_eq!(rows, order);
        // Per rank: 2 ranks need 4 rows a batch.
        top_up_short_batches(&mut batches, &lengths, 1, None, BatchLimit::Rows(13), 4);
        assert!(batches.iter().all(|b| b.len() >= 4), "{batches:?}");
    }

    #[test]
    fn a_row_that_shares_a_text_or_breaks_the_budget_does_not_move() {
        // Rows 0-2 share text 9 with row 4, so row 3 is the one that joins it; without row
        // 3, nothing can.
        let keys: Vec<Vec<u64>> = vec![vec![1, 9], vec![2, 9], vec![3, 9], vec![4, 7], vec![5, 9]];
        let lengths = vec![3; 5];
        let mut batches = vec![vec![0, 1, 2, 3], vec![4]];
        top_up_short_batches(&mut batches, &lengths, 2, Some(&keys), BatchLimit::Rows(8), 2);
        assert_eq!(batches, vec![vec![0, 1, 2], vec![4, 3]]);
        let mut batches = vec![vec![0, 1, 2], vec![4]];
        top_up_short_batches(&mut batches, &lengths, 2, Some(&keys), BatchLimit::Rows(8), 2);
        assert_eq!(batches, vec![vec![0, 1, 2], vec![4]], "every spare row shares text 9 with row 4");
        // A token budget that holds one long row alone keeps it alone.
        let lengths = vec![3, 3, 3, 50];
        let mut batches = vec![vec![0, 1, 2], vec![3]];
        top_up_short_batches(&mut batches, &lengths, 1, None, BatchLimit::Tokens(60), 2);
        assert_eq!(batches, vec![vec![0, 1, 2], vec![3]]);
    }

    #[test]
    fn pads_and_masks() {
        let (ids, mask) = pad_batch(&[&[101, 5, 102], &[101, 102]], 0, Device::Cpu);
        assert_eq!(Vec::<Vec<i64>>::try_from(&ids).unwrap(), vec![vec![101, 5, 102], vec![101, 102, 0]]);
        assert_eq!(Vec::<Vec<i64>>::try_from(&mask).unwrap(), vec![vec![1, 1, 1], vec![1, 1, 0]]);
    }

    #[test]
    fn batches_cover_every_index_longest_first() {
        let batches = length_sorted_batches(&[3, 9, 1, 7, 5], BatchLimit::Rows(2));
        assert_eq!(batches, vec![vec![1, 3], vec![4, 0], vec![2]]);
    }

    #[test]
    fn token_budgets_count_padded_tokens() {
        // Lengths 9, 7, 5, 3, 1 under 16 padded tokens: [9] (9 + 9 > 16), [7, 5] (2 x 7 = 14),
        // [3, 1] (2 x 3), then nothing is left.
        let batches = length_sorted_batches(&[3, 9, 1, 7, 5], BatchLimit::Tokens(16));
        assert_eq!(batches, vec![vec![1], vec![3, 4], vec![0, 2]]);
        // A text longer than the budget still gets a batch of its own.
        assert_eq!(length_sorted_batches(&[40], BatchLimit::Tokens(16)), vec![vec![0]]);
        // Two texts per row count twice.
        assert!(!BatchLimit::Tokens(16).fits(2, 5, 2) && BatchLimit::Tokens(20).fits(2, 5, 2));
    }
}
