//! Padding never changes a text's logits: batched equals one-by-one.

use crate::fixtures::{gpt2_tokenizer, max_abs_diff, tiny_config, tweets};
use candle_core::Device;
use tuneserve::data::Padding;
use tuneserve::model::{random_weights, BatchInput, Gpt2ForSequenceClassification, Mode};

fn model() -> Gpt2ForSequenceClassification {
    let cfg = tiny_config(&["a", "b", "c"]);
    let weights = random_weights(&cfg, 7, &Device::Cpu).unwrap();
    let vb = candle_nn::VarBuilder::from_tensors(weights, candle_core::DType::F32, &Device::Cpu);
    Gpt2ForSequenceClassification::new(&cfg, vb).unwrap()
}

fn logits(
    model: &Gpt2ForSequenceClassification,
    padding: Padding,
    texts: &[&str],
) -> Vec<Vec<f32>> {
    let tok = gpt2_tokenizer().with_settings(50256, 96, padding);
    let enc = tok.encode_batch(texts).unwrap();
    if padding == Padding::MaxLength {
        assert_eq!(enc.seq_len, 96);
    }
    let input = BatchInput::new(&enc, &Device::Cpu).unwrap();
    model
        .forward(&input, &mut Mode::Eval)
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn check(padding: Padding) {
    let model = model();
    let mut texts = tweets(12);
    texts.push("a".into());
    texts.push("ends with the pad token <|endoftext|>".into());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let lengths: Vec<usize> = refs
        .iter()
        .map(|t| gpt2_tokenizer().encode(t).unwrap().len())
        .collect();
    assert!(lengths.iter().min() < lengths.iter().max(), "mixed lengths");
    let batched = logits(&model, padding, &refs);
    for (i, text) in refs.iter().enumerate() {
        let single = logits(&model, padding, &[text]);
        let diff = max_abs_diff(&batched[i], &single[0]);
        assert!(diff <= 1e-5, "{padding:?} {text:?}: {diff:e}");
    }
}

#[test]
fn batched_equals_single_with_longest_padding() {
    check(Padding::Longest);
}

#[test]
fn batched_equals_single_with_max_length_padding() {
    check(Padding::MaxLength);
}
