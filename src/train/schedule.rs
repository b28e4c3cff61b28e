//! Learning-rate schedules as Hugging Face's `get_scheduler`: the learning rate of
//! optimizer step `s` (1-based) is `lr · λ(s − 1)`, so step 1 of a warmup runs at 0.

use super::hyperparams::LrScheduler;

/// The learning rate of optimizer step `step` (1-based) out of `total`.
pub fn learning_rate(
    kind: LrScheduler,
    peak: f64,
    warmup: usize,
    total: usize,
    step: usize,
) -> f64 {
    let current = step.saturating_sub(1) as f64;
    let (warmup, total) = (warmup as f64, total as f64);
    if current < warmup {
        return peak * current / warmup.max(1.0);
    }
    let progress = (current - warmup) / (total - warmup).max(1.0);
    let factor = match kind {
        LrScheduler::Constant => 1.0,
        LrScheduler::Linear => ((total - current) / (total - warmup).max(1.0)).max(0.0),
        LrScheduler::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
    };
    peak * factor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_warmup_matches_hf() {
        let lr = |s| learning_rate(LrScheduler::Linear, 1e-3, 3, 24, s);
        assert_eq!(lr(1), 0.0);
        assert!((lr(2) - 1e-3 / 3.0).abs() < 1e-12);
        assert!((lr(4) - 1e-3).abs() < 1e-12);
        assert!((lr(24) - 1e-3 / 21.0).abs() < 1e-12);
        let cos = |s| learning_rate(LrScheduler::Cosine, 1.0, 0, 10, s);
        assert_eq!(cos(1), 1.0);
        assert!((cos(6) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(LrScheduler::Constant, 0.1, 2, 10, 9), 0.1);
    }
}
