//! In-batch negatives from every rank (`--gather-across-ranks`), as sentence-transformers'
//! `gather_across_devices`: each rank's anchors are contrasted with the positives and
//! negatives of the whole global batch, and the gradient of every candidate goes back to the
//! rank that computed it, so the step is the one-process step on the global batch.
//!
//! How: the candidates are gathered (no gradient) into a leaf `G`; this rank's weighted loss
//! gives `dL_r/dG`; the ranks sum those, so each holds `d(sum_r L_r)/dG`; the rows of `G`
//! this rank computed then receive their slice of that sum through a surrogate term
//! `sum(C * grad)`, whose gradient with respect to the live candidates `C` is exactly it.

use anyhow::Result;
use tch::{Kind, Tensor};

use super::data_parallel::share;
use super::group::{ProcessGroup, Reduce};
use crate::tasks::losses::multiple_negatives_ranking_from;

/// One global batch of a pairs task as the ranks split it.
pub struct RankShares<'a> {
    group: &'a ProcessGroup,
    /// Rows of each rank's share, in rank order.
    rows: Vec<usize>,
}

/// What a rank backpropagates, and the loss it reports.
pub struct Objective {
    /// This rank's loss weighted by its share of the rows (0-dim, left on the device; summed
    /// across ranks for the log).
    pub weighted_loss: Tensor,
    /// The tensor to call `backward()` on; `None` when this rank's share is empty.
    pub backward: Option<Tensor>,
}

impl<'a> RankShares<'a> {
    pub fn new(group: &'a ProcessGroup, batch_rows: usize) -> Self {
        let all: Vec<usize> = (0..batch_rows).collect();
        let rows = (0..group.world()).map(|r| share(&all, r, group.world()).len()).collect();
        Self { group, rows }
    }

    fn total(&self) -> usize {
        self.rows.iter().sum()
    }

    /// Rows of the ranks before this one (where this rank's rows sit in the global batch).
    fn offset(&self) -> usize {
        self.rows[..self.group.rank()].iter().sum()
    }

    /// Every rank's `local` rows `[rows[rank], dim]`, in rank order `[total, dim]`: padded to
    /// the largest share for the all-gather, which needs one shape everywhere.
    fn gather(&self, local: &Tensor, dim: i64) -> Result<Tensor> {
        let widest = *self.rows.iter().max().unwrap_or(&0) as i64;
        let padded = Tensor::zeros([widest, dim], (Kind::Float, local.device()));
        if local.size()[0] > 0 {
            padded.narrow(0, 0, local.size()[0]).copy_(&local.detach());
        }
        let parts = self.group.all_gather(&padded, "the gather of in-batch negatives")?;
        let kept: Vec<Tensor> = parts.iter().zip(&self.rows).map(|(p, &n)| p.narrow(0, 0, n as i64)).collect();
        Ok(Tensor::cat(&kept, 0))
    }

    /// The in-batch-negatives objective over every rank's candidates. `embeddings` are this
    /// rank's `[columns * rows, dim]` (anchors, positives, then negatives, as the pairs task
    /// lays them out; `[0, dim]` for an empty share); `weight` scales the loss in the step
    /// (task weight / accumulation). Every rank must call this for the batch, also with an
    /// empty share: it runs collectives.
    pub fn objective(
        &self,
        embeddings: &Tensor,
        columns: usize,
        dim: i64,
        scale: f64,
        weight: f64,
    ) -> Result<Objective> {
        let (mine, offset, total) = (self.rows[self.group.rank()] as i64, self.offset() as i64, self.total() as i64);
        let column = |k: i64| embeddings.narrow(0, k * mine, mine);
        let mut gathered = Vec::with_capacity(columns - 1);
        for k in 1..columns as i64 {
            gathered.push(self.gather(&column(k), dim)?);
        }
        let candidates = Tensor::cat(&gathered, 0).set_requires_grad(true);
        let share = mine as f64 / total as f64;
        let (weighted_loss, mut grad) = if mine > 0 {
            // Reported before the task weight, which may be 0.
            let unweighted = multiple_negatives_ranking_from(&column(0), &candidates, scale, offset) * share;
            let loss = &unweighted * weight;
            let grad = Tensor::run_backward(&[&loss], &[&candidates], true, false).remove(0);
            (unweighted.detach(), Some((loss, grad)))
        } else {
            (Tensor::from(0f32), None)
        };
        let mut summed = match &grad {
            Some((_, g)) => g.detach().contiguous(),
            None => candidates.zeros_like().detach(),
        };
        self.group.all_reduce_(&mut summed, Reduce::Sum, "the all-reduce of in-batch negatives' gradients")?;
        let Some((loss, _)) = grad.take() else { return Ok(Objective { weighted_loss, backward: None }) };
        let own: Vec<Tensor> = (0..columns as i64 - 1).map(|k| summed.narrow(0, k * total + offset, mine)).collect();
        let live = embeddings.narrow(0, mine, (columns as i64 - 1) * mine);
        let surrogate = loss + (live * Tensor::cat(&own, 0)).sum(Kind::Float);
        Ok(Objective { weighted_loss, backward: Some(surrogate) })
    }
}
