//! Token id lists to padded tensors, and the grouping of sentences into batches.

use tch::{Device, Tensor};

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
    let ids = Tensor::from_slice(&ids).view(shape).to_device(device);
    let mask = Tensor::from_slice(&mask).view(shape).to_device(device);
    (ids, mask)
}

/// Indices grouped into batches of at most `batch_size`, longest sentences first, so that
/// each batch pads to nearly its own length (inference order does not matter: outputs are
/// put back in input order).
pub fn length_sorted_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_and_masks() {
        let (ids, mask) = pad_batch(&[&[101, 5, 102], &[101, 102]], 0, Device::Cpu);
        assert_eq!(Vec::<Vec<i64>>::try_from(&ids).unwrap(), vec![vec![101, 5, 102], vec![101, 102, 0]]);
        assert_eq!(Vec::<Vec<i64>>::try_from(&mask).unwrap(), vec![vec![1, 1, 1], vec![1, 1, 0]]);
    }

    #[test]
    fn batches_cover_every_index_longest_first() {
        let batches = length_sorted_batches(&[3, 9, 1, 7, 5], 2);
        assert_eq!(batches, vec![vec![1, 3], vec![4, 0], vec![2]]);
    }
}
