//! Batches in which no two rows share a text, for tasks whose rows are each other's
//! negatives (a repeated anchor in one batch would be a false negative of itself).
//!
//! A row that would share a text waits for a later batch. Done naively (each batch takes
//! what it can, the rest wait) the waiting rows pile up at the end of a pass, in batches of
//! one or two rows that train nothing, whenever a text recurs in many rows (an anchor with
//! several positives). Two rules prevent that: a batch left short by waiting rows is
//! completed from the next length-sorted chunk instead of being cut (as
//! sentence-transformers' `NoDuplicatesBatchSampler` fills batches from all the remaining
//! rows), and a text that recurs in as many rows as there are batches left goes first, so
//! that every remaining batch takes one of its rows.

use std::collections::{HashMap, HashSet};

use crate::data::batching::BatchLimit;

/// Rows of one pass, as the sampler sees them.
pub struct DistinctTextRows<'a> {
    /// Token count of each row.
    pub lengths: &'a [usize],
    /// Texts per row, for token budgets.
    pub texts_per_row: usize,
    /// Per row, keys of its texts.
    pub keys: &'a [Vec<u64>],
}

/// Cuts `chunks` (the pass's rows, each chunk sorted longest first) into batches that fit
/// `limit`, about `typical_rows` rows each, in which no two rows share a key; every row
/// comes exactly once.
pub fn batches_with_distinct_texts(
    chunks: Vec<Vec<usize>>,
    rows: &DistinctTextRows,
    limit: BatchLimit,
    typical_rows: usize,
) -> Vec<Vec<usize>> {
    let mut counts = KeyCounts::of(chunks.iter().flatten().map(|&row| &rows.keys[row]));
    let mut rows_left: usize = chunks.iter().map(Vec::len).sum();
    let last_chunk = chunks.len().saturating_sub(1);
    // Waiting rows are carried into the next chunk up to a chunk's worth: beyond that,
    // batches that cannot fill (fewer distinct texts than the limit) are cut as they are,
    // or every batch would rescan the whole pass.
    let carry_limit = chunks.first().map_or(0, Vec::len);
    let mut pending: Vec<usize> = Vec::new();
    let mut batches = Vec::new();
    for (c, chunk) in chunks.into_iter().enumerate() {
        pending.extend(chunk);
        while !pending.is_empty() {
            let batches_left = rows_left.div_ceil(typical_rows.max(1));
            let any_urgent = counts.highest() >= batches_left;
            let urgent = |key: &u64| any_urgent && counts.rows_of(*key) >= batches_left;
            let (batch, full) = fill_batch(&pending, rows, limit, any_urgent, urgent);
            if !full && c != last_chunk && pending.len() <= carry_limit {
                break; // the next chunk completes it
            }
            let taken: HashSet<usize> = batch.iter().copied().collect();
            pending.retain(|row| !taken.contains(row));
            for row in &batch {
                counts.remove(&rows.keys[*row]);
            }
            rows_left -= batch.len();
            batches.push(batch);
        }
    }
    batches
}

/// The most rows any one text is in: a pass needs at least this many batches, since a batch
/// holds each text once.
pub fn most_rows_with_one_text(keys: &[Vec<u64>]) -> usize {
    KeyCounts::of(keys.iter()).highest()
}

/// One batch from `pending` (in order, after the rows with an urgent key): its rows, and
/// whether `limit` closed it (false: `pending` ran out first).
fn fill_batch(
    pending: &[usize],
    rows: &DistinctTextRows,
    limit: BatchLimit,
    any_urgent: bool,
    urgent: impl Fn(&u64) -> bool,
) -> (Vec<usize>, bool) {
    let mut batch =
        BatchBuilder { rows, limit, members: Vec::new(), taken: HashSet::new(), texts: HashSet::new(), longest: 0 };
    for &row in pending.iter().filter(|_| any_urgent) {
        if rows.keys[row].iter().any(&urgent) {
            batch.try_add(row);
        }
    }
    for &row in pending {
        if !batch.taken.contains(&row) && batch.try_add(row) == Added::Full {
            return (batch.members, true);
        }
    }
    (batch.members, false)
}

#[derive(PartialEq)]
enum Added {
    Yes,
    SharesAText,
    Full,
}

struct BatchBuilder<'a> {
    rows: &'a DistinctTextRows<'a>,
    limit: BatchLimit,
    members: Vec<usize>,
    taken: HashSet<usize>,
    texts: HashSet<u64>,
    longest: usize,
}

impl BatchBuilder<'_> {
    fn try_add(&mut self, row: usize) -> Added {
        let longest = self.longest.max(self.rows.lengths[row]);
        if !self.limit.fits(self.members.len() + 1, longest, self.rows.texts_per_row) {
            return Added::Full;
        }
        if self.rows.keys[row].iter().any(|k| self.texts.contains(k)) {
            return Added::SharesAText;
        }
        self.texts.extend(self.rows.keys[row].iter().copied());
        self.members.push(row);
        self.taken.insert(row);
        self.longest = longest;
        Added::Yes
    }
}

fn distinct(keys: &[u64]) -> HashSet<u64> {
    keys.iter().copied().collect()
}

/// How many of the pass's remaining rows hold each key, and the highest such count (kept
/// by a histogram of the counts, so that finding it costs nothing while no key is urgent).
struct KeyCounts {
    rows_of_key: HashMap<u64, usize>,
    /// `keys_with_count[c]`: keys held by exactly `c` remaining rows.
    keys_with_count: Vec<usize>,
    highest: usize,
}

impl KeyCounts {
    fn of<'a>(rows: impl Iterator<Item = &'a Vec<u64>>) -> Self {
        let mut rows_of_key: HashMap<u64, usize> = HashMap::new();
        for keys in rows {
            for key in distinct(keys) {
                *rows_of_key.entry(key).or_default() += 1;
            }
        }
        let highest = rows_of_key.values().copied().max().unwrap_or(0);
        let mut keys_with_count = vec![0; highest + 1];
        for &c in rows_of_key.values() {
            keys_with_count[c] += 1;
        }
        Self { rows_of_key, keys_with_count, highest }
    }

    fn rows_of(&self, key: u64) -> usize {
        self.rows_of_key[&key]
    }

    fn highest(&self) -> usize {
        self.highest
    }

    /// Counts one row (its `keys`) out of the remaining ones.
    fn remove(&mut self, keys: &[u64]) {
        for key in distinct(keys) {
            let count = self.rows_of_key.get_mut(&key).expect("every row's keys are counted");
            self.keys_with_count[*count] -= 1;
            *count -= 1;
            self.keys_with_count[*count] += 1;
        }
        while self.highest > 0 && self.keys_with_count[self.highest] == 0 {
            self.highest -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// `anchors` anchors with `positives` distinct positives each: row keys (anchor, positive).
    fn anchors_with_positives(anchors: u64, positives: u64) -> Vec<Vec<u64>> {
        (0..anchors).flat_map(|a| (0..positives).map(move |p| vec![a, 1000 + a * positives + p])).collect()
    }

    fn cut(keys: &[Vec<u64>], lengths: &[usize], limit: BatchLimit, chunk_rows: usize, seed: u64) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..keys.len()).collect();
        Rng::new(seed).shuffle(&mut order);
        let chunks: Vec<Vec<usize>> = order
            .chunks(chunk_rows)
            .map(|c| {
                let mut c = c.to_vec();
                c.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
                c
            })
            .collect();
        let rows = DistinctTextRows { lengths, texts_per_row: 2, keys };
        let typical = match limit {
            BatchLimit::Rows(n) => n,
            BatchLimit::Tokens(n) => n / (2 * lengths.iter().sum::<usize>() / lengths.len()),
        };
        batches_with_distinct_texts(chunks, &rows, limit, typical)
    }

    fn assert_every_row_once_and_distinct(batches: &[Vec<usize>], keys: &[Vec<u64>]) {
        let mut seen: Vec<usize> = batches.concat();
        seen.sort();
        assert_eq!(seen, (0..keys.len()).collect::<Vec<_>>());
        for batch in batches {
            let texts: Vec<u64> = batch.iter().flat_map(|&r| keys[r].clone()).collect();
            assert_eq!(distinct(&texts).len(), texts.len(), "a text repeats in {batch:?}");
        }
    }

    #[test]
    fn anchors_with_several_positives_fill_every_batch() {
        // 10 anchors x 4 positives, batch 8: 5 full batches exist, each with 8 of the 10
        // anchors. Rows of one anchor have similar lengths, so they sit together in the
        // length-sorted order, as in real data.
        for seed in 0..20 {
            let keys = anchors_with_positives(10, 4);
            let lengths: Vec<usize> = keys.iter().map(|k| 5 + k[0] as usize * 3).collect();
            let batches = cut(&keys, &lengths, BatchLimit::Rows(8), 40, seed);
            assert_every_row_once_and_distinct(&batches, &keys);
            let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
            assert_eq!(sizes, vec![8; 5], "seed {seed}");
        }
    }

    #[test]
    fn short_batches_are_completed_from_the_next_chunk() {
        // 30 anchors x 4 positives, chunks of 16 rows: a chunk alone cannot fill its batches.
        let keys = anchors_with_positives(30, 4);
        let lengths: Vec<usize> = keys.iter().map(|k| 5 + (k[0] % 7) as usize).collect();
        let batches = cut(&keys, &lengths, BatchLimit::Rows(8), 16, 3);
        assert_every_row_once_and_distinct(&batches, &keys);
        assert_eq!(batches.len(), 15);
        assert!(batches.iter().all(|b| b.len() == 8), "{:?}", batches.iter().map(Vec::len).collect::<Vec<_>>());
    }

    #[test]
    fn token_budgets_bound_every_batch() {
        let keys = anchors_with_positives(40, 3);
        let lengths: Vec<usize> = keys.iter().map(|k| 4 + (k[1] % 13) as usize).collect();
        let batches = cut(&keys, &lengths, BatchLimit::Tokens(200), 50, 7);
        assert_every_row_once_and_distinct(&batches, &keys);
        for b in &batches {
            let padded = b.len() * 2 * b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(padded <= 200, "{padded} padded tokens in {b:?}");
        }
        let short = batches.iter().filter(|b| b.len() < 4).count();
        assert!(short <= 1, "{:?}", batches.iter().map(Vec::len).collect::<Vec<_>>());
    }

    #[test]
    fn rows_without_shared_texts_are_cut_in_order() {
        // No key repeats: the batches are the sorted chunks cut in order, as for other tasks.
        let keys: Vec<Vec<u64>> = (0..64u64).map(|i| vec![i, 500 + i]).collect();
        let lengths: Vec<usize> = (0..64).map(|i| 3 + i % 9).collect();
        let chunks: Vec<Vec<usize>> = vec![(0..32).collect(), (32..64).collect()];
        let rows = DistinctTextRows { lengths: &lengths, texts_per_row: 2, keys: &keys };
        let batches = batches_with_distinct_texts(chunks, &rows, BatchLimit::Rows(8), 8);
        let expected: Vec<Vec<usize>> = (0..8).map(|b| (b * 8..b * 8 + 8).collect()).collect();
        assert_eq!(batches, expected);
    }

    #[test]
    fn few_distinct_anchors_give_batches_of_one_row_per_anchor() {
        // Labels as anchors: 4 anchors over 40,000 rows at batch 32, so no batch can fill.
        // (Waiting rows once piled up over the whole pass, and each batch rescanned them:
        // this took minutes; it now takes about a second.)
        let keys: Vec<Vec<u64>> = (0..40_000u64).map(|r| vec![r % 4, 100 + r]).collect();
        let lengths = vec![6; keys.len()];
        let batches = cut(&keys, &lengths, BatchLimit::Rows(32), 1600, 2);
        assert_every_row_once_and_distinct(&batches, &keys);
        assert!(batches.iter().all(|b| b.len() == 4));
    }

    #[test]
    fn a_text_in_more_rows_than_batches_is_spread_over_all_of_them() {
        // Anchor 0 in 12 rows of 40 at batch 8 (5 batches): it cannot fit, so its last 8
        // rows come alone; every batch before holds one of its rows.
        let mut keys: Vec<Vec<u64>> = (0..12u64).map(|p| vec![0, 100 + p]).collect();
        keys.extend((0..28u64).map(|i| vec![1 + i, 200 + i]));
        let lengths = vec![6; keys.len()];
        let batches = cut(&keys, &lengths, BatchLimit::Rows(8), 40, 1);
        assert_every_row_once_and_distinct(&batches, &keys);
        let holding_anchor_0 = batches.iter().filter(|b| b.iter().any(|&r| keys[r][0] == 0)).count();
        assert_eq!(holding_anchor_0, 12);
        assert_eq!(batches.len(), 12);
    }
}
