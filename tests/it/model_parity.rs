//! The classifier reproduces Hugging Face's logits on the Hugging Face fixture.

use crate::fixtures::{fixture_dir, max_abs_diff};
use serde_json::Value;
use tuneserve::infer::Classifier;
use tuneserve::model::{load, LoadOptions, ModelSource, WeightLayout};

struct Item {
    text: String,
    input_ids: Vec<u32>,
    pool_index: usize,
    logits: Vec<f32>,
}

/// The fixture's items whose logits Hugging Face defines (the empty text is not).
fn expected() -> Vec<Item> {
    let text = std::fs::read_to_string(fixture_dir().join("expected_logits.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let items: Vec<Item> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| !i["hf_undefined"].as_bool().unwrap_or(false))
        .map(|i| Item {
            text: i["text"].as_str().unwrap().to_string(),
            input_ids: serde_json::from_value(i["input_ids"].clone()).unwrap(),
            pool_index: i["pool_index"].as_u64().unwrap() as usize,
            logits: serde_json::from_value(i["logits"].clone()).unwrap(),
        })
        .collect();
    assert_eq!(items.len(), 19, "the fixture has 19 defined texts");
    items
}

fn classifier() -> Classifier {
    let source = ModelSource::Dir(fixture_dir());
    let loaded = load(&source, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.layout, WeightLayout::Classifier);
    assert!(
        !loaded.new_head,
        "the fixture's own score head must be used"
    );
    Classifier::new(&loaded, None).unwrap()
}

#[test]
fn tokenizer_and_pooling_match_hf() {
    let clf = classifier();
    let pad = 50256; // the fixture's pad_token_id
    for item in expected() {
        let ids = clf.encode(&[&item.text], true).unwrap().remove(0);
        assert_eq!(ids, item.input_ids, "token ids of {:?}", item.text);
        let pool = tuneserve::data::pool_index(&ids, pad);
        assert_eq!(pool, item.pool_index, "pool index of {:?}", item.text);
    }
}

/// Classifies every fixture text in one batch; each row's logits must match
/// Hugging Face's within 1e-4.
fn assert_batched_logits_match_hf() {
    let clf = classifier();
    let items = expected();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let preds = clf.classify(&texts).unwrap();
    for (item, pred) in items.iter().zip(&preds) {
        let diff = max_abs_diff(&pred.logits, &item.logits);
        assert!(diff <= 1e-4, "{:?}: max abs diff {diff:e}", item.text);
    }
}

#[test]
fn logits_match_hf_batched() {
    assert_batched_logits_match_hf();
}

#[test]
fn logits_match_hf_one_by_one() {
    let clf = classifier();
    for item in expected() {
        let pred = &clf.classify(&[item.text.as_str()]).unwrap()[0];
        let diff = max_abs_diff(&pred.logits, &item.logits);
        assert!(diff <= 1e-4, "{:?}: max abs diff {diff:e}", item.text);
    }
}

#[test]
fn logits_match_hf_on_the_gpu_code_path() {
    // candle's composed ops, as a GPU runs them, forced on the CPU.
    tuneserve::simd::composed_ops(assert_batched_logits_match_hf);
}
