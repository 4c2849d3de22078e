//! One training batch of a task, and how its texts are grouped for the encoder.
//!
//! Every text of a batch goes through the encoder padded to the longest text of its forward
//! pass, so one long text pads all the others and sets the step's activation memory (with
//! attention, more than linearly in the length). The texts are therefore forwarded in groups
//! of similar length when that saves at least a quarter of a group's padding: short queries
//! apart from long passages, or the one long sentence of a pairs batch apart from the rest.
//! A forward costs about as much as 100 tokens on a 2-core CPU and far more on a launch-bound
//! GPU, so texts of similar lengths (STS-B's columns, a length-grouped classification batch)
//! stay in one forward, and a batch takes at most [`MAX_FORWARDS`]. Measured in
//! docs/benchmarks.md ("How a pairs batch goes through the encoder").

use tch::Tensor;

/// The most forward passes one batch is split into.
pub const MAX_FORWARDS: usize = 4;

/// One training batch of a task: its texts' token ids and what the loss needs besides.
pub struct TrainBatch<'a> {
    /// The batch's texts; for pair kinds the first column's rows, then the second's (then the
    /// third's), each `rows` long.
    pub texts: Vec<&'a [i64]>,
    /// What the loss compares the outputs with: class ids `[rows]` (Int64) or scores `[rows]`
    /// (Float); none for pairs, whose targets are the diagonal.
    pub targets: Option<Tensor>,
    /// Rows (examples) in the batch.
    pub rows: usize,
}

/// How a batch's texts go through the encoder: groups, each padded to its own longest text,
/// and where each text's output lands when the groups' outputs are concatenated.
#[derive(Debug, PartialEq)]
pub struct ForwardGroups<'a> {
    /// The groups in forward order; within a group, texts keep their batch order.
    pub groups: Vec<Vec<&'a [i64]>>,
    /// For each text in batch order, its row in the concatenated outputs; `None` when that
    /// is batch order (one group).
    pub order: Option<Vec<i64>>,
}

impl ForwardGroups<'_> {
    /// Tokens once each group is padded to its own longest text.
    pub fn padded_tokens(&self) -> usize {
        self.groups.iter().map(|g| g.len() * g.iter().map(|t| t.len()).max().unwrap_or(0)).sum()
    }
}

impl<'a> TrainBatch<'a> {
    /// The texts of `columns` (each one token list per row, in batch order), column by column.
    pub(super) fn of_columns(columns: Vec<Vec<&'a [i64]>>, targets: Option<Tensor>) -> Self {
        let rows = columns.first().map(Vec::len).unwrap_or(0);
        Self { texts: columns.into_iter().flatten().collect(), targets, rows }
    }

    /// Real tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.texts.iter().map(|t| t.len()).sum()
    }

    /// The texts in groups of similar length (see the module's doc): the batch's texts,
    /// longest first, are cut where a cut saves the most padding, as long as it saves a
    /// quarter of the padding of the group it cuts.
    pub fn forward_groups(&self) -> ForwardGroups<'a> {
        let mut longest_first: Vec<usize> = (0..self.texts.len()).collect();
        longest_first.sort_by_key(|&i| std::cmp::Reverse(self.texts[i].len()));
        let lengths: Vec<usize> = longest_first.iter().map(|&i| self.texts[i].len()).collect();
        let mut cuts = vec![0, lengths.len()];
        while cuts.len() <= MAX_FORWARDS {
            let best = cuts
                .windows(2)
                .filter_map(|w| worthwhile_cut(&lengths[w[0]..w[1]]).map(|(at, saved)| (w[0] + at, saved)));
            match best.max_by_key(|&(_, saved)| saved) {
                Some((at, _)) => cuts.insert(cuts.partition_point(|&c| c < at), at),
                None => break,
            }
        }
        if cuts.len() == 2 {
            return ForwardGroups { groups: vec![self.texts.clone()], order: None };
        }
        let mut groups = Vec::with_capacity(cuts.len() - 1);
        let mut order = vec![0i64; self.texts.len()];
        let mut row = 0;
        for w in cuts.windows(2) {
            let mut members = longest_first[w[0]..w[1]].to_vec();
            members.sort_unstable();
            for &i in &members {
                order[i] = row;
                row += 1;
            }
            groups.push(members.iter().map(|&i| self.texts[i]).collect());
        }
        ForwardGroups { groups, order: Some(order) }
    }

    /// Tokens once padded as the encoder takes them.
    pub fn padded_tokens(&self) -> usize {
        self.forward_groups().padded_tokens()
    }
}

/// For lengths sorted longest first: the cut (index of the first text after it) that saves
/// the most padding, and the tokens it saves, if that is at least a quarter of the group's.
fn worthwhile_cut(lengths: &[usize]) -> Option<(usize, usize)> {
    let whole = lengths.len() * lengths.first().copied().unwrap_or(0);
    let (at, cost) =
        (1..lengths.len()).map(|k| (k, k * lengths[0] + (lengths.len() - k) * lengths[k])).min_by_key(|&(_, c)| c)?;
    (4 * cost <= 3 * whole).then_some((at, whole - cost))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_of_similar_length_go_through_the_encoder_together() {
        let (short, long): (&[i64], &[i64]) = (&[1, 2, 3, 4, 5, 6], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let similar = TrainBatch::of_columns(vec![vec![long, short], vec![short, long]], None);
        let groups = similar.forward_groups();
        assert_eq!(groups, ForwardGroups { groups: vec![vec![long, short, short, long]], order: None });
        assert_eq!((groups.padded_tokens(), similar.tokens()), (4 * 8, 28));
    }

    #[test]
    fn a_long_text_goes_apart_and_outputs_come_back_in_batch_order() {
        let (short, long): (&[i64], &[i64]) = (&[1, 2], &[1, 2, 3, 4, 5, 6, 7, 8]);
        // Rows (short, long) and (short, short): the long text alone, then the three short ones.
        let batch = TrainBatch::of_columns(vec![vec![short, short], vec![long, short]], None);
        let groups = batch.forward_groups();
        assert_eq!(groups.groups, vec![vec![long], vec![short, short, short]]);
        assert_eq!(groups.order, Some(vec![1, 2, 0, 3]));
        assert_eq!(groups.padded_tokens(), 8 + 3 * 2);
    }

    #[test]
    fn a_batch_takes_at_most_max_forwards() {
        let texts: Vec<Vec<i64>> = (0..10).map(|k| vec![0; 1 << k]).collect();
        let batch = TrainBatch::of_columns(vec![texts.iter().map(Vec::as_slice).collect()], None);
        let groups = batch.forward_groups();
        assert_eq!(groups.groups.len(), MAX_FORWARDS);
        let order = groups.order.unwrap();
        let concatenated: Vec<&[i64]> = groups.groups.concat();
        for (i, text) in batch.texts.iter().enumerate() {
            assert_eq!(concatenated[order[i] as usize], *text);
        }
    }
}
