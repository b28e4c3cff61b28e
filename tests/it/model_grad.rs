//! Gradients reach every parameter through one backward pass.

use crate::common::{tweets, write_tiny_model};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use tuneserve::model::{
    load, parameter_shapes, BatchInput, LoadOptions, Mode, ModelSource, WeightLayout,
};

#[test]
fn every_parameter_gets_a_nonzero_gradient() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_model(tmp.path(), 11, WeightLayout::Classifier);
    let loaded = load(
        &ModelSource::Dir(tmp.path().into()),
        &LoadOptions::default(),
    )
    .unwrap();
    let (model, varmap) = loaded.build_trainable().unwrap();

    let texts = tweets(4);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let enc = loaded
        .tokenizer
        .with_settings(50256, 64, Default::default())
        .encode_batch(&refs)
        .unwrap();
    let input = BatchInput::new(&enc, &Device::Cpu).unwrap();
    let labels = Tensor::new(&[0u32, 1, 2, 1], &Device::Cpu).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let logits = model.forward(&input, &mut Mode::Train(&mut rng)).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
    let grads = loss.backward().unwrap();

    let vars = varmap.data().lock().unwrap();
    let mut bad = Vec::new();
    for (name, _) in parameter_shapes(&loaded.config) {
        let var = vars
            .get(&name)
            .unwrap_or_else(|| panic!("{name} is not a variable"));
        match grads.get(var) {
            None => bad.push(format!("{name}: no gradient")),
            Some(g) => {
                let norm = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                if !(norm > 0.0 && norm.is_finite()) {
                    bad.push(format!("{name}: gradient norm² {norm}"));
                }
            }
        }
    }
    assert_eq!(vars.len(), parameter_shapes(&loaded.config).len());
    assert!(
        bad.is_empty(),
        "parameters without a gradient:\n{}",
        bad.join("\n")
    );
}
