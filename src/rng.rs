//! A small seeded random generator (SplitMix64) for data order and task sampling.
//!
//! Its whole state is one `u64`, so a run can save it and resume the exact same sequence;
//! libtorch's generator is only used for weight initialisation and dropout.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed ^ 0x5851_f42d_4c95_7f2d }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0), without modulo bias.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        let n = n as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }

    /// A seed for libtorch's generator for the `index`-th draw of a run seeded `seed` (a
    /// training batch's dropout masks). Both are mixed through the generator, so neighbouring
    /// seeds do not share draws shifted by one, as `seed + index` would (seed 42's batch 1 and
    /// seed 43's batch 0); each step is a bijection, so one seed's indices never collide.
    pub fn derived_seed(seed: u64, index: u64) -> i64 {
        let mixed_seed = Rng::new(seed).next_u64();
        Rng::new(mixed_seed ^ index).next_u64() as i64
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_state_resumes() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let _ = a.next_u64();
        let saved = a.clone();
        let x = a.next_u64();
        let _ = b.next_u64();
        assert_eq!(b.next_u64(), x);
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64(), "the seed matters");
        // As a checkpoint keeps it: through JSON.
        let mut resumed: Rng = serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap();
        assert_eq!(resumed.next_u64(), x);
    }

    #[test]
    fn derived_seeds_of_neighbouring_seeds_and_draws_all_differ() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..64 {
            for index in 0..64 {
                assert!(
                    seen.insert(Rng::derived_seed(seed, index)),
                    "seed {seed}, draw {index} repeats an earlier one"
                );
            }
        }
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut rng = Rng::new(1);
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            counts[rng.below(4)] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut rng = Rng::new(3);
        let mut v: Vec<usize> = (0..100).collect();
        rng.shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
