//! Linear warm-up then linear decay, as HF's `get_linear_schedule_with_warmup`.

/// Multiplier of every group's base learning rate at optimizer step `step` (0-based):
/// `step / warmup` while warming up, then falling linearly to 0 at `total`.
/// As in HF, the first step of a warm-up has factor 0.
pub fn linear_warmup_decay(step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return step as f64 / warmup.max(1) as f64;
    }
    let remaining = total.saturating_sub(step) as f64;
    let span = total.saturating_sub(warmup).max(1) as f64;
    (remaining / span).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_zero() {
        let f: Vec<f64> = (0..=10).map(|s| linear_warmup_decay(s, 4, 10)).collect();
        assert_eq!(&f[..5], &[0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(f[7], 0.5);
        assert_eq!(f[10], 0.0);
    }

    #[test]
    fn no_warmup_starts_at_full_rate() {
        assert_eq!(linear_warmup_decay(0, 0, 10), 1.0);
        assert_eq!(linear_warmup_decay(5, 0, 10), 0.5);
    }
}
