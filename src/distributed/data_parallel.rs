//! What data-parallel training needs of the process group, with PyTorch DDP's semantics:
//! rank 0's weights everywhere at the start, each rank's share of every global batch, and a
//! check at the start that every rank was given the same settings (the gradients' sum across
//! ranks is `gradient_sync`'s); and rank 0's input sent to the others.

use anyhow::{bail, Result};
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::group::ProcessGroup;

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

/// Rank 0's `bytes` on every rank (the others' own are ignored); `None` everywhere when rank
/// 0 has none to send (it failed, and says why itself).
pub fn broadcast_from_rank0(group: &ProcessGroup, bytes: Option<Vec<u8>>, what: &str) -> Result<Option<Vec<u8>>> {
    broadcast_bytes(group, 0, bytes, what)
}

/// Rank `root`'s `bytes` on every rank (the others' own are ignored); `None` everywhere when
/// `root` has none to send.
fn broadcast_bytes(group: &ProcessGroup, root: usize, bytes: Option<Vec<u8>>, what: &str) -> Result<Option<Vec<u8>>> {
    let mut len = Tensor::from_slice(&[bytes.as_ref().map_or(-1, |b| b.len() as i64)]);
    group.broadcast_(&mut len, root, what)?;
    let len = i64::try_from(&len)?;
    if len < 0 {
        return Ok(None);
    }
    let mut data = match bytes {
        Some(bytes) if group.rank() == root => Tensor::from_slice(&bytes),
        _ => Tensor::zeros([len], (Kind::Uint8, Device::Cpu)),
    };
    group.broadcast_(&mut data, root, what)?;
    Ok(Some(Vec::<u8>::try_from(&data)?))
}

/// Refuses to start when the ranks were given different settings: each rank's `fields`
/// (name, canonical value) are hashed and gathered, and the fields of the first rank whose
/// hashes differ from rank 0's are named on every rank, with both values when they are short.
pub fn agree_on_settings(group: &ProcessGroup, fields: &[(String, String)]) -> Result<()> {
    agree_on_field_names(group, fields)?;
    let hashes: Vec<i64> = fields.iter().map(|(_, value)| crate::hash::fnv1a(value.as_bytes()) as i64).collect();
    let gathered = group.all_gather(&Tensor::from_slice(&hashes), "the settings check")?;
    let rank0 = Vec::<i64>::try_from(&gathered[0])?;
    for (rank, tensor) in gathered.iter().enumerate().skip(1) {
        let theirs = Vec::<i64>::try_from(tensor)?;
        let differing: Vec<&(String, String)> =
            fields.iter().zip(rank0.iter().zip(&theirs)).filter(|(_, (a, b))| a != b).map(|(f, _)| f).collect();
        if differing.is_empty() {
            continue;
        }
        let values: Vec<&str> = differing.iter().map(|(_, v)| v.as_str()).collect();
        let (of_rank0, of_rank) = exchange_lists(group, rank, &values, "sending the differing settings")?;
        let names: Vec<&str> = differing.iter().map(|(n, _)| n.as_str()).collect();
        let verb = if names.len() == 1 { "differs" } else { "differ" };
        let listed = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => names.join(""),
        };
        bail!(
            "rank {}: the ranks were started with different settings: rank {rank}'s {listed} {verb} from rank 0's{}; every rank must get the same flags and data files",
            group.rank(),
            both_values(&names, &of_rank, &of_rank0)
        );
    }
    Ok(())
}

/// Refuses ranks whose lists of settings name different things (another `--task`, a dev
/// file more), before the values are gathered position by position: an all-gather of
/// unequal sizes aborts the process inside Gloo, where no error can be caught.
fn agree_on_field_names(group: &ProcessGroup, fields: &[(String, String)]) -> Result<()> {
    let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
    // In name order: the same names in another order are as many values, which the
    // position-by-position comparison then names.
    let mut sorted = names.clone();
    sorted.sort_unstable();
    let digest = crate::hash::fnv1a(sorted.join("\n").as_bytes()) as i64;
    let gathered = group.all_gather(&Tensor::from_slice(&[digest]), "the settings check")?;
    let digests = gathered.iter().map(i64::try_from).collect::<Result<Vec<i64>, _>>()?;
    let Some(rank) = digests.iter().position(|d| *d != digests[0]) else { return Ok(()) };
    let (of_rank0, of_rank) = exchange_lists(group, rank, &names, "sending the settings' names")?;
    bail!(
        "rank {}: the ranks were started with different settings: {}; every rank must get the same flags and data files",
        group.rank(),
        names_only_one_has(rank, &of_rank, &of_rank0)
    )
}

/// Rank 0's `mine` and rank `rank`'s, on every rank (each rank joins both broadcasts).
fn exchange_lists(group: &ProcessGroup, rank: usize, mine: &[&str], what: &str) -> Result<(Vec<String>, Vec<String>)> {
    let bytes = serde_json::to_vec(mine)?;
    let of_rank0 = serde_json::from_slice(&broadcast_bytes(group, 0, Some(bytes.clone()), what)?.unwrap_or_default())?;
    let of_rank = serde_json::from_slice(&broadcast_bytes(group, rank, Some(bytes), what)?.unwrap_or_default())?;
    Ok((of_rank0, of_rank))
}

/// "rank 1 has task 'q' dev file, which rank 0 has not" (either way round, or both).
fn names_only_one_has(rank: usize, theirs: &[String], rank0: &[String]) -> String {
    let only = |a: &[String], b: &[String]| a.iter().filter(|n| !b.contains(n)).cloned().collect::<Vec<_>>().join(", ");
    let mut said = Vec::new();
    for (has, has_not, names) in [(rank, 0, only(theirs, rank0)), (0, rank, only(rank0, theirs))] {
        if !names.is_empty() {
            said.push(format!("rank {has} has {names}, which rank {has_not} has not"));
        }
    }
    match said.is_empty() {
        true => format!("rank {rank} gives some settings more times than rank 0"),
        false => said.join("; "),
    }
}

/// ` (7 against 5)`, or ` (--a 7 against 5, --b x against y)`, for values short enough to
/// read (a data file's fingerprint is not).
fn both_values(names: &[&str], theirs: &[String], rank0: &[String]) -> String {
    let shown: Vec<String> = names
        .iter()
        .zip(theirs.iter().zip(rank0))
        .filter(|(_, (a, b))| a.len() <= 60 && b.len() <= 60)
        .map(|(name, (a, b))| {
            let (a, b) = (a.trim_matches('"'), b.trim_matches('"'));
            if names.len() == 1 {
                format!("{a} against {b}")
            } else {
                format!("{name} {a} against {b}")
            }
        })
        .collect();
    if shown.is_empty() {
        String::new()
    } else {
        format!(" ({})", shown.join(", "))
    }
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
}
