//! What the classification head's logits say: each class's log-probability
//! and the predicted class. One definition for evaluation (whose loss is the
//! negative log-probability of the true class) and for `/classify`.

/// `log softmax(logits)` in f64, computed as `l − logsumexp(l)` so a tiny
/// probability keeps its precision in the loss.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = f64::from(max)
        + logits
            .iter()
            .map(|&l| f64::from(l - max).exp())
            .sum::<f64>()
            .ln();
    logits.iter().map(|&l| f64::from(l) - lse).collect()
}

/// The index of the largest value (the first one on ties; 0 when empty).
pub fn argmax<T: PartialOrd + Copy>(values: &[T]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_sum_to_one_and_keep_order() {
        let lp = log_softmax(&[1.0, 3.0, 2.0]);
        let p: Vec<f64> = lp.iter().map(|x| x.exp()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((p[1] - 0.665_240_955_774_821_6).abs() < 1e-12);
        assert_eq!(argmax(&p), 1);
        assert_eq!(argmax(&[2.0, 2.0]), 0, "ties go to the first");
        let far = log_softmax(&[0.0, -200.0]);
        assert!(
            (far[1] + 200.0).abs() < 1e-9,
            "no underflow to -inf: {}",
            far[1]
        );
    }
}
