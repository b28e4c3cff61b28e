//! Gradients reach every parameter through one backward pass.

use crate::fixtures::{tweets, write_tiny_model};
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

/// The trainer's path — the Conv1D layers' gradients summed by the model's
/// gradient sink — gives the step gradients candle's autograd gives, for every
/// parameter, over 8 micro-batches of 4 tweets (dropout on, the same draws).
#[test]
fn the_gradient_sink_matches_autograd_over_a_step() {
    use crate::model_precision::{batches, fixture, max_abs};
    use rand_chacha::ChaCha8Rng;
    use tuneserve::train::step_gradients;

    let model = fixture();
    let micro = batches(&model);
    let (with_sink, sink_vars) = model.build_trainable_ordered().unwrap();
    assert!(with_sink.gradient_sink().is_some());
    let (plain, varmap) = model.build_trainable().unwrap();
    assert!(plain.gradient_sink().is_none());
    let plain_vars: Vec<_> = {
        let map = varmap.data().lock().unwrap();
        sink_vars
            .iter()
            .map(|(name, _)| (name.clone(), map[name].clone()))
            .collect()
    };
    let grads = |net, vars| {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (g, loss, _) = step_gradients(net, vars, &micro, &mut rng).unwrap();
        (g, loss)
    };
    let (a, loss_a) = grads(&with_sink, &sink_vars);
    let (b, loss_b) = grads(&plain, &plain_vars);
    assert_eq!(loss_a, loss_b, "the forward passes are the same");
    for (((name, _), a), b) in sink_vars.iter().zip(&a).zip(&b) {
        assert_eq!(a.dims(), b.dims(), "{name}");
        let (scale, diff) = (max_abs(b), max_abs(&(a - b).unwrap()));
        assert!(
            diff <= 1e-5 * scale.max(1.0),
            "{name}: {diff:e} (scale {scale:e})"
        );
    }
}

/// Evaluation during training runs on the variables' storage without
/// autograd: the same logits, and no graph kept alive behind them.
#[test]
fn the_evaluation_network_gives_the_same_logits_without_a_graph() {
    use crate::model_precision::{batches, fixture};

    let model = fixture();
    let (net, vars) = model.build_trainable_ordered().unwrap();
    let eval = tuneserve::train::evaluation_network(&net, &vars).unwrap();
    let input = &batches(&model)[0].input;
    let tracked = net.forward(input, &mut Mode::Eval).unwrap();
    let plain = eval.forward(input, &mut Mode::Eval).unwrap();
    assert!(tracked.track_op() && !plain.track_op());
    assert_eq!(
        tracked.to_vec2::<f32>().unwrap(),
        plain.to_vec2::<f32>().unwrap()
    );
}
