//! Classification metrics: accuracy, macro-F1, per-class precision and recall,
//! the confusion matrix and the mean evaluation loss.

use serde::{Deserialize, Serialize};

/// Metrics of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EvalMetrics {
    /// Examples evaluated.
    pub examples: usize,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction predicted right.
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1 scores.
    pub macro_f1: f64,
    /// Precision of each class (0 when the class was never predicted).
    pub precision: Vec<f64>,
    /// Recall of each class (0 when the class never occurs).
    pub recall: Vec<f64>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

impl EvalMetrics {
    /// The value of `which`, oriented so that higher is better (the loss is
    /// negated).
    pub fn score(&self, which: super::BestMetric) -> f64 {
        match which {
            super::BestMetric::Accuracy => self.accuracy,
            super::BestMetric::MacroF1 => self.macro_f1,
            super::BestMetric::EvalLoss => -self.loss,
        }
    }

    /// Computes the metrics of `predicted` against `actual` over `num_labels`
    /// classes; `loss_sum` is the summed cross-entropy of the examples.
    pub fn compute(
        actual: &[usize],
        predicted: &[usize],
        num_labels: usize,
        loss_sum: f64,
    ) -> Self {
        assert_eq!(actual.len(), predicted.len(), "one prediction per example");
        let mut confusion = vec![vec![0usize; num_labels]; num_labels];
        for (&a, &p) in actual.iter().zip(predicted) {
            confusion[a][p] += 1;
        }
        let n = actual.len();
        let correct: usize = (0..num_labels).map(|c| confusion[c][c]).sum();
        let ratio = |num: usize, den: usize| {
            if den == 0 {
                0.0
            } else {
                num as f64 / den as f64
            }
        };
        let precision: Vec<f64> = (0..num_labels)
            .map(|c| {
                ratio(
                    confusion[c][c],
                    (0..num_labels).map(|r| confusion[r][c]).sum(),
                )
            })
            .collect();
        let recall: Vec<f64> = (0..num_labels)
            .map(|c| ratio(confusion[c][c], confusion[c].iter().sum()))
            .collect();
        let f1 = precision.iter().zip(&recall).map(|(&p, &r)| {
            if p + r == 0.0 {
                0.0
            } else {
                2.0 * p * r / (p + r)
            }
        });
        Self {
            examples: n,
            loss: if n == 0 { 0.0 } else { loss_sum / n as f64 },
            accuracy: ratio(correct, n),
            macro_f1: f1.sum::<f64>() / num_labels.max(1) as f64,
            precision,
            recall,
            confusion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_hand_computed_confusion_matrix() {
        // true:      0 0 0 1 1 2 2 2 2 2
        // predicted: 0 0 1 1 2 2 2 0 2 1
        let actual = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2];
        let predicted = [0, 0, 1, 1, 2, 2, 2, 0, 2, 1];
        let m = EvalMetrics::compute(&actual, &predicted, 3, 5.0);
        assert_eq!(
            m.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![1, 1, 3]]
        );
        assert!((m.accuracy - 0.6).abs() < 1e-12);
        assert!((m.loss - 0.5).abs() < 1e-12);
        // precision: 2/3, 1/3, 3/4; recall: 2/3, 1/2, 3/5
        let p = [2.0 / 3.0, 1.0 / 3.0, 0.75];
        let r = [2.0 / 3.0, 0.5, 0.6];
        for c in 0..3 {
            assert!((m.precision[c] - p[c]).abs() < 1e-12);
            assert!((m.recall[c] - r[c]).abs() < 1e-12);
        }
        let f1: f64 = (0..3)
            .map(|c| 2.0 * p[c] * r[c] / (p[c] + r[c]))
            .sum::<f64>()
            / 3.0;
        assert!((m.macro_f1 - f1).abs() < 1e-12);
    }

    #[test]
    fn classes_never_predicted_score_zero() {
        let m = EvalMetrics::compute(&[0, 1], &[0, 0], 3, 0.0);
        assert_eq!(m.precision[1], 0.0);
        assert_eq!(m.recall[2], 0.0);
        assert_eq!(m.accuracy, 0.5);
    }
}
