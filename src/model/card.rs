//! The model card (`README.md`) of an exported model, in the Hugging Face
//! Hub's form: YAML metadata between `---` lines (base model, datasets,
//! pipeline tag, metrics, the tool that made it), then prose and tables a
//! person reads on the Hub or in the folder.
//!
//! The metadata names only what the Hub can resolve: `base_model` and
//! `datasets` are Hub ids or absent (a local folder, an upload or a model of
//! this service has no Hub id, and the Hub rejects a card that names one as
//! if it had). The prose names everything as the user did.

use std::fmt::Write as _;

use serde_json::Value;

/// What a card says about a fine-tuned model.
#[derive(Debug, Clone)]
pub struct ModelCard {
    /// The model it was fine-tuned from, as the user named it (a Hub id, a
    /// folder, a model of this service).
    pub base_model: String,
    /// `base_model`'s Hub id (`gpt2`, `owner/name`, no revision) when it came
    /// from the Hub; `None` otherwise.
    pub hub_base_model: Option<String>,
    /// The training and evaluation data, as named when uploaded.
    pub datasets: Vec<String>,
    /// The Hub dataset ids (`owner/name`) among them, once each.
    pub hub_datasets: Vec<String>,
    /// Class names, by label id.
    pub labels: Vec<String>,
    /// Every hyperparameter of the run (a JSON object).
    pub hyperparameters: Value,
    /// The final evaluation (a JSON object with `accuracy`, `macro_f1`,
    /// `loss`, …), when there was an evaluation set.
    pub metrics: Option<Value>,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Whether the folder is a LoRA adapter on `base_model` (PEFT's layout)
    /// rather than a whole classifier.
    pub adapter: bool,
}

impl ModelCard {
    /// The card as Markdown with YAML front matter.
    pub fn render(&self) -> String {
        let mut out = String::from("---\n");
        let library = if self.adapter { "peft" } else { "transformers" };
        let _ = writeln!(
            out,
            "library_name: {library}\npipeline_tag: text-classification"
        );
        if let Some(base) = &self.hub_base_model {
            let _ = writeln!(out, "base_model: {}", yaml_str(base));
        }
        if !self.hub_datasets.is_empty() {
            out.push_str("datasets:\n");
            for d in &self.hub_datasets {
                let _ = writeln!(out, "- {}", yaml_str(d));
            }
        }
        out.push_str("tags:\n- tuneserve\n- gpt2\n- text-classification\n");
        if self.metrics.is_some() {
            out.push_str("metrics:\n- accuracy\n- f1\n");
        }
        out.push_str("---\n\n");
        self.body(&mut out);
        out
    }

    fn body(&self, out: &mut String) {
        let version = env!("CARGO_PKG_VERSION");
        let loads = if self.adapter {
            format!(
                "It is a LoRA adapter: it loads with `PeftModel.from_pretrained(\
                 GPT2ForSequenceClassification.from_pretrained(\"{}\", num_labels={}), \
                 <this folder>)`",
                self.base_model,
                self.labels.len()
            )
        } else {
            "It loads with `GPT2ForSequenceClassification.from_pretrained(<this folder>)` and \
             `pipeline(\"text-classification\", model=<this folder>)`"
                .to_string()
        };
        let _ = writeln!(
            out,
            "# GPT-2 sequence classifier\n\nFine-tuned from `{}` by tuneserve {version} for \
             {} classes ({}) in {} optimizer steps. {loads}; the tokenizer pads with its \
             end-of-text token.\n",
            self.base_model,
            self.labels.len(),
            self.labels.join(", "),
            self.steps
        );
        if !self.datasets.is_empty() {
            let _ = writeln!(out, "Data: {}.\n", self.datasets.join(", "));
        }
        if let Some(m) = &self.metrics {
            out.push_str("## Evaluation (final)\n\n| metric | value |\n|---|---|\n");
            for key in ["accuracy", "macro_f1", "loss", "examples"] {
                let _ = writeln!(out, "| {key} | {} |", number(m, key));
            }
            out.push('\n');
        }
        out.push_str("## Hyperparameters\n\n| name | value |\n|---|---|\n");
        if let Some(map) = self.hyperparameters.as_object() {
            for (name, value) in map {
                let _ = writeln!(out, "| {name} | {value} |");
            }
        }
    }
}

/// A field of `m`: integers as they are, other numbers to 4 decimals (every
/// row of the table alike), `null` when absent.
fn number(m: &Value, key: &str) -> String {
    match m.get(key) {
        Some(v) if v.is_i64() || v.is_u64() => v.to_string(),
        Some(v) => v
            .as_f64()
            .map_or_else(|| v.to_string(), |x| format!("{x:.4}")),
        None => "null".into(),
    }
}

/// `text` as a double-quoted YAML scalar (JSON strings are valid YAML).
fn yaml_str(text: &str) -> String {
    Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_and_tables() {
        let card = ModelCard {
            base_model: "gpt2".into(),
            hub_base_model: Some("gpt2".into()),
            datasets: vec!["tweets: train".into(), "tweets-test".into()],
            hub_datasets: vec!["mteb/tweet_sentiment_extraction".into()],
            labels: vec!["negative".into(), "positive".into()],
            hyperparameters: serde_json::json!({"epochs": 3, "learning_rate": 5e-5}),
            metrics: Some(
                serde_json::json!({"accuracy": 0.75, "macro_f1": 0.712_345_6,
                                              "loss": 0.5, "examples": 8}),
            ),
            steps: 12,
            adapter: false,
        };
        let text = card.render();
        assert!(
            text.starts_with("---\nlibrary_name: transformers\n"),
            "{text}"
        );
        assert!(text.contains("base_model: \"gpt2\"\n"), "{text}");
        assert!(
            text.contains("datasets:\n- \"mteb/tweet_sentiment_extraction\"\ntags:"),
            "only Hub ids in the metadata: {text}"
        );
        assert!(text.contains("Data: tweets: train, tweets-test."), "{text}");
        assert!(text.contains("| accuracy | 0.7500 |"), "{text}");
        assert!(text.contains("| macro_f1 | 0.7123 |"), "{text}");
        assert!(text.contains("| examples | 8 |"), "{text}");
        assert!(text.contains("| epochs | 3 |"), "{text}");
        assert!(text.contains("2 classes (negative, positive) in 12 optimizer steps"));
    }

    #[test]
    fn no_hub_ids_no_hub_metadata() {
        let card = ModelCard {
            base_model: "/models/small".into(),
            hub_base_model: None,
            datasets: vec!["train.jsonl".into()],
            hub_datasets: vec![],
            labels: vec!["a".into(), "b".into()],
            hyperparameters: serde_json::json!({}),
            metrics: None,
            steps: 1,
            adapter: false,
        };
        let text = card.render();
        let front = text.split("---\n").nth(1).unwrap();
        assert!(!front.contains("base_model"), "{front}");
        assert!(!front.contains("datasets"), "{front}");
        assert!(text.contains("Fine-tuned from `/models/small`"), "{text}");
    }
}
