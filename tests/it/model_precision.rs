//! bf16 autocast checked on the CPU against fp32: logits, gradients and a few
//! optimizer steps stay within bf16's rounding, while the weights, their
//! gradients and the loss stay f32. The trainer itself refuses bf16 on the CPU.

use candle_core::{DType, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::fixtures::fixture_dir;
use crate::train_parity::{first_rows, reference_hyperparameters};
use tuneserve::data::{Encoded, Padding};
use tuneserve::model::{load, parameter_shapes, LoadOptions, LoadedModel, Mode};
use tuneserve::model::{ModelSource, Precision};
use tuneserve::train::{self, step_gradients, AdamConfig, AdamW, MicroBatch, TrainError};

pub(crate) fn fixture() -> LoadedModel {
    load(&ModelSource::Dir(fixture_dir()), &LoadOptions::default()).unwrap()
}

/// Micro-batches of 4 of the first 32 tweets, padded to the longest.
pub(crate) fn batches(model: &LoadedModel) -> Vec<MicroBatch> {
    let rows = first_rows(32);
    let tok = &model.tokenizer;
    rows.chunks(4)
        .map(|chunk| {
            let ids: Vec<Vec<u32>> = chunk.iter().map(|e| tok.encode(&e.text).unwrap()).collect();
            let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
            let enc = Encoded::pad(&refs, 50256, Padding::Longest, 128);
            let labels: Vec<u32> = chunk.iter().map(|e| e.label as u32).collect();
            MicroBatch::new(enc, labels, &candle_core::Device::Cpu).unwrap()
        })
        .collect()
}

pub(crate) fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn bf16_logits_track_fp32_and_come_back_as_f32() {
    let model = fixture();
    let fp32 = model.build().unwrap();
    let bf16 = model.build().unwrap().with_precision(Precision::Bf16);
    for mb in batches(&model).iter().take(3) {
        let a = fp32.forward(&mb.input, &mut Mode::Eval).unwrap();
        let b = bf16.forward(&mb.input, &mut Mode::Eval).unwrap();
        assert_eq!(b.dtype(), DType::F32);
        let diff = max_abs(&(&a - &b).unwrap());
        // bf16 keeps 8 significant bits: 2⁻⁸ relative, through two layers.
        let tol = 2e-2 * max_abs(&a).max(1.0);
        assert!(
            diff <= tol,
            "bf16 logits differ by {diff:e} (tolerance {tol:e})"
        );
        assert!(diff > 0.0, "bf16 ran in f32: the logits are identical");
    }
}

/// Per-step losses of 3 epochs of 4 optimizer steps (2 micro-batches each) in
/// `precision`, and the dtypes of the gradients seen.
fn train_steps(model: &LoadedModel, precision: Precision) -> (Vec<f64>, Vec<DType>) {
    let (net, varmap) = model.build_trainable().unwrap();
    let net = net.with_precision(precision);
    let map = varmap.data().lock().unwrap().clone();
    let vars: Vec<(String, Var)> = parameter_shapes(&model.config)
        .into_iter()
        .map(|(n, _)| (n.clone(), map[&n].clone()))
        .collect();
    let config = AdamConfig {
        weight_decay: 0.01,
        ..AdamConfig::default()
    };
    let mut opt = AdamW::new(vars.clone(), config).unwrap();
    let (mut losses, mut dtypes) = (Vec::new(), Vec::new());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let batches = batches(model);
    for step in batches.chunks(2).cycle().take(12) {
        let (grads, loss, _) = step_gradients(&net, &vars, step, &mut rng).unwrap();
        dtypes.extend(grads.iter().map(Tensor::dtype));
        opt.step(&grads, 1e-3, 1.0).unwrap();
        losses.push(loss);
    }
    for (_, v) in &vars {
        assert_eq!(v.dtype(), DType::F32, "master weights stay f32");
    }
    (losses, dtypes)
}

#[test]
fn bf16_training_steps_track_fp32_with_f32_master_weights() {
    let model = fixture();
    let (fp32, _) = train_steps(&model, Precision::Fp32);
    let (bf16, dtypes) = train_steps(&model, Precision::Bf16);
    assert!(dtypes.iter().all(|d| *d == DType::F32), "f32 gradients");
    for (step, (a, b)) in fp32.iter().zip(&bf16).enumerate() {
        let rel = (a - b).abs() / a.abs();
        assert!(rel <= 2e-2, "step {}: bf16 loss {b} vs fp32 {a}", step + 1);
    }
    let epoch = |e: usize| bf16[4 * e..4 * e + 4].iter().sum::<f64>();
    assert!(epoch(2) < epoch(0), "bf16 training learns: {bf16:?}");
}

#[test]
fn the_trainer_refuses_bf16_on_the_cpu() {
    let h = train::Hyperparameters {
        precision: Precision::Bf16,
        ..reference_hyperparameters()
    };
    let data = first_rows(8);
    let tmp = tempfile::tempdir().unwrap();
    let spec = train::TrainSpec {
        model: fixture(),
        train: &data,
        eval: None,
        hyperparameters: &h,
        checkpoint_dir: tmp.path().to_path_buf(),
        resume: train::Resume::No,
    };
    match train::run(spec, &mut ()) {
        Err(TrainError::Hyperparameter(e)) => {
            assert_eq!(e.field, "precision");
            assert!(e.reason.contains("needs a GPU"), "{e}");
        }
        other => panic!("expected a refusal, got {:?}", other.map(|o| o.step)),
    }
}
