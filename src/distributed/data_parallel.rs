//! What data-parallel training needs of the process group, with PyTorch DDP's semantics:
//! rank 0's weights everywhere at the start, each rank's share of every global batch,
//! gradients summed across ranks in buckets before the (identical) optimizer step, and a
//! check at the start that every rank was given the same settings.

use anyhow::{bail, Result};
use tch::{nn::VarStore, Kind, Tensor};

use super::group::{ProcessGroup, Reduce};
use crate::torch_shim::set_grad;

/// Gradient bytes per all-reduce (PyTorch DDP's default `bucket_cap_mb` is 25).
pub const BUCKET_BYTES: i64 = 25 << 20;

/// Rank `rank`'s contiguous share of a global batch's `rows`; the first `len % world` ranks
/// take one row more, so shares differ by at most one row and cover the batch in order.
pub fn share<T>(rows: &[T], rank: usize, world: usize) -> &[T] {
    let (base, extra) = (rows.len() / world, rows.len() % world);
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    &rows[start..start + len]
}

/// Replaces every variable of `vs` with rank 0's (as DDP does when it wraps a model), so a
/// new layer's random start is the same on every rank whatever each rank drew.
pub fn broadcast_weights(group: &ProcessGroup, vs: &VarStore) -> Result<()> {
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (_, tensor) in &mut variables {
            group.broadcast_(tensor, 0, "the broadcast of rank 0's weights")?;
        }
        Ok(())
    })
}

/// Sums, across ranks, the gradients of `parameters` and the step's `scalars` (losses,
/// counts): afterwards every rank holds the same gradients, that of the whole global batch
/// when each rank's loss was weighted by its share of the rows. A parameter that has a
/// gradient on some rank gets the sum on all of them; one that has none anywhere keeps none
/// (the optimizer skips it, as in one process). Returns the summed scalars.
pub fn all_reduce_step(group: &ProcessGroup, parameters: &[Tensor], scalars: &[f64]) -> Result<Vec<f64>> {
    let mut header: Vec<f64> = parameters.iter().map(|p| f64::from(u8::from(p.grad().defined()))).collect();
    header.extend_from_slice(scalars);
    let mut header_tensor = Tensor::from_slice(&header);
    group.all_reduce_(&mut header_tensor, Reduce::Sum, "the all-reduce of the step's losses")?;
    let header = Vec::<f64>::try_from(&header_tensor)?;
    let (flags, sums) = header.split_at(parameters.len());
    let with_gradient: Vec<&Tensor> = parameters.iter().zip(flags).filter(|(_, f)| **f > 0.0).map(|(p, _)| p).collect();
    for bucket in buckets(&with_gradient) {
        all_reduce_bucket(group, bucket)?;
    }
    Ok(sums.to_vec())
}

/// Consecutive runs of parameters of one device whose gradients fit in [`BUCKET_BYTES`].
fn buckets<'a>(parameters: &'a [&'a Tensor]) -> Vec<&'a [&'a Tensor]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, p) in parameters.iter().enumerate() {
        let size = p.numel() as i64 * 4;
        let other_device = i > start && p.device() != parameters[start].device();
        if i > start && (bytes + size > BUCKET_BYTES || other_device) {
            out.push(&parameters[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < parameters.len() {
        out.push(&parameters[start..]);
    }
    out
}

fn all_reduce_bucket(group: &ProcessGroup, bucket: &[&Tensor]) -> Result<()> {
    tch::no_grad(|| {
        let parts: Vec<Tensor> = bucket
            .iter()
            .map(|p| {
                let grad = p.grad();
                if grad.defined() {
                    grad.to_kind(Kind::Float).reshape([-1])
                } else {
                    Tensor::zeros([p.numel() as i64], (Kind::Float, p.device()))
                }
            })
            .collect();
        let mut flat = Tensor::cat(&parts, 0);
        group.all_reduce_(&mut flat, Reduce::Sum, "the gradient all-reduce")?;
        let mut offset = 0;
        for p in bucket {
            let n = p.numel() as i64;
            let summed = flat.narrow(0, offset, n).view(p.size().as_slice());
            offset += n;
            let mut grad = p.grad();
            if grad.defined() {
                grad.copy_(&summed);
            } else {
                set_grad(&mut p.shallow_clone(), &summed.copy());
            }
        }
        Ok(())
    })
}

/// Refuses to start when the ranks were given different settings: each rank's `fields`
/// (name, canonical value) are hashed and gathered, and a field whose hash differs from
/// rank 0's is named, on every rank.
pub fn agree_on_settings(group: &ProcessGroup, fields: &[(String, String)]) -> Result<()> {
    let hashes: Vec<i64> = fields.iter().map(|(_, value)| crate::hash::fnv1a(value.as_bytes()) as i64).collect();
    let gathered = group.all_gather(&Tensor::from_slice(&hashes), "the settings check")?;
    let rank0 = Vec::<i64>::try_from(&gathered[0])?;
    for (rank, tensor) in gathered.iter().enumerate().skip(1) {
        let theirs = Vec::<i64>::try_from(tensor)?;
        let differing: Vec<&str> = fields
            .iter()
            .zip(rank0.iter().zip(&theirs))
            .filter(|(_, (a, b))| a != b)
            .map(|((n, _), _)| n.as_str())
            .collect();
        if !differing.is_empty() {
            let verb = if differing.len() == 1 { "differs" } else { "differ" };
            bail!(
                "rank {}: the ranks were started with different settings: rank {rank}'s {} {verb} from rank 0's; every rank must get the same flags and data files",
                group.rank(),
                differing.join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_batch_in_order_and_differ_by_at_most_one_row() {
        let rows: Vec<usize> = (0..7).collect();
        let shares: Vec<&[usize]> = (0..3).map(|r| share(&rows, r, 3)).collect();
        assert_eq!(shares, vec![&[0, 1, 2][..], &[3, 4][..], &[5, 6][..]]);
        assert_eq!(share(&rows[..1], 1, 2), &[] as &[usize]);
        assert_eq!(share(&rows[..4], 1, 2), &[2, 3]);
    }

    #[test]
    fn buckets_split_by_size_and_keep_order() {
        let big = Tensor::zeros([BUCKET_BYTES / 4 - 10], (Kind::Float, tch::Device::Cpu));
        let small = Tensor::zeros([20], (Kind::Float, tch::Device::Cpu));
        let params = [&small, &big, &small, &small];
        let sizes: Vec<usize> = buckets(&params).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![1, 1, 2]);
    }
}
