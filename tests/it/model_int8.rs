//! int8 and bf16 inference against fp32: on the tiny fixture, the logits of
//! every int8 and bf16 kernel this CPU can run stay within a stated distance
//! of fp32's (and differ from them: the narrow path really ran); on a model
//! fine-tuned here on the tweets, predictions agree with fp32's on 1000 test
//! tweets; packed models report their smaller size, refuse training, and
//! serve LoRA adapters on a shared packed base.

use crate::fixtures::{fixture_dir, tweets, tweets_file};
use crate::train_parity::{first_rows, reference_hyperparameters};
use serde_json::Value;
use tuneserve::infer::Classifier;
use tuneserve::model::{
    load, with_bgemm_isa, with_qgemm_isa, Bf16Isa, InferPrecision, LoadOptions, LoadedModel,
    ModelSource, QIsa,
};
use tuneserve::train;

fn fixture() -> LoadedModel {
    load(&ModelSource::Dir(fixture_dir()), &LoadOptions::default()).unwrap()
}

fn logits(model: &LoadedModel, texts: &[String]) -> Vec<Vec<f32>> {
    let clf = Classifier::new(model, None).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let rows = clf.encode(&refs, true).unwrap();
    let limits = tuneserve::infer::BatchLimits::whole(16);
    let preds = clf.classify_ids(&rows, limits).unwrap();
    preds.into_iter().map(|p| p.logits).collect()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// int8: per-channel weights and per-row activations each carry at most
/// half a step of 1/127 of their range; through the fixture's two blocks a
/// logit moves by well under 0.02 of the logits' scale (0.004 measured).
/// bf16 keeps 8 significant bits (2⁻⁹ relative per operand): under 0.005
/// (0.001 measured).
#[test]
fn int8_and_bf16_logits_track_fp32_on_every_kernel() {
    let model = fixture();
    let texts = tweets(48);
    let base = logits(&model, &texts);
    let scale = base.iter().flatten().fold(1f32, |m, v| m.max(v.abs()));
    let int8 = model.clone().pack(InferPrecision::Int8).unwrap();
    for isa in QIsa::ALL.into_iter().filter(|i| i.available()) {
        let got = with_qgemm_isa(isa, || logits(&int8, &texts));
        let d = max_diff(&base, &got);
        eprintln!("int8 {isa:?}: max |Δ logit| {d:.4} (logits up to {scale:.2})");
        assert!(d <= 0.02 * scale, "int8 {isa:?}: max |Δ logit| {d}");
        assert!(d > 0.0, "int8 {isa:?} gave fp32's logits exactly");
    }
    let bf16 = model.clone().pack(InferPrecision::Bf16).unwrap();
    for isa in Bf16Isa::ALL.into_iter().filter(|i| i.available()) {
        let got = with_bgemm_isa(isa, || logits(&bf16, &texts));
        let d = max_diff(&base, &got);
        eprintln!("bf16 {isa:?}: max |Δ logit| {d:.4}");
        assert!(d <= 0.005 * scale, "bf16 {isa:?}: max |Δ logit| {d}");
        assert!(d > 0.0, "bf16 {isa:?} gave fp32's logits exactly");
    }
    let missing: Vec<String> = (QIsa::ALL
        .iter()
        .filter(|i| !i.available())
        .map(|i| format!("{i:?}")))
    .chain(
        Bf16Isa::ALL
            .iter()
            .filter(|i| !i.available())
            .map(|i| format!("{i:?}")),
    )
    .collect();
    if !missing.is_empty() {
        eprintln!("kernels NOT tested, this CPU lacks them: {missing:?}");
    }
}

/// Test tweets with their labels.
fn test_tweets(n: usize) -> (Vec<String>, Vec<usize>) {
    let text = std::fs::read_to_string(tweets_file("test.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| !v["text"].as_str().unwrap().trim().is_empty())
        .take(n)
        .map(|v| {
            (
                v["text"].as_str().unwrap().to_string(),
                v["label"].as_u64().unwrap() as usize,
            )
        })
        .unzip()
}

fn softmax(row: &[f32]) -> Vec<f32> {
    let m = row.iter().fold(f32::MIN, |a, &b| a.max(b));
    let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn argmax(row: &[f32]) -> usize {
    tuneserve::model::argmax(row)
}

/// `(agreement among rows whose fp32 top two differ by more than 0.02, mean
/// |Δp|, accuracy of a, accuracy of b)`.
fn compare(a: &[Vec<f32>], b: &[Vec<f32>], labels: &[usize]) -> (f64, f64, f64, f64) {
    let (mut clear, mut agree, mut dp, mut n) = (0, 0, 0f64, 0);
    for (x, y) in a.iter().zip(b) {
        let (px, py) = (softmax(x), softmax(y));
        let mut sorted = px.clone();
        sorted.sort_by(|p, q| q.total_cmp(p));
        if sorted[0] - sorted[1] > 0.02 {
            clear += 1;
            agree += usize::from(argmax(x) == argmax(y));
        }
        dp += px
            .iter()
            .zip(&py)
            .map(|(p, q)| f64::from((p - q).abs()))
            .sum::<f64>();
        n += px.len();
    }
    let acc = |rows: &[Vec<f32>]| {
        rows.iter()
            .zip(labels)
            .filter(|(r, &l)| argmax(r) == l)
            .count() as f64
            / labels.len() as f64
    };
    (
        agree as f64 / clear.max(1) as f64,
        dp / n as f64,
        acc(a),
        acc(b),
    )
}

#[test]
fn a_fine_tuned_model_predicts_the_same_in_int8_and_bf16() {
    let model = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let data = first_rows(400);
    let hp = train::Hyperparameters {
        epochs: 1,
        batch_size: 8,
        gradient_accumulation_steps: 1,
        ..reference_hyperparameters()
    };
    let spec = train::TrainSpec {
        model: model.clone(),
        train: &data,
        eval: None,
        hyperparameters: &hp,
        checkpoint_dir: tmp.path().to_path_buf(),
        resume: train::Resume::No,
    };
    let trained = train::run(spec, &mut ()).unwrap().model();
    let (texts, labels) = test_tweets(1000);
    let fp32 = logits(&trained, &texts);
    for (precision, least) in [(InferPrecision::Int8, 0.995), (InferPrecision::Bf16, 0.999)] {
        let narrow = logits(&trained.clone().pack(precision).unwrap(), &texts);
        let (agree, dp, acc_a, acc_b) = compare(&fp32, &narrow, &labels);
        eprintln!(
            "{precision}: agreement {agree:.4} (clear rows), mean |Δp| {dp:.5}, max |Δ logit| \
             {:.4}, accuracy fp32 {acc_a:.3} / {precision} {acc_b:.3}",
            max_diff(&fp32, &narrow)
        );
        assert!(agree >= least, "{precision}: argmax agreement {agree}");
        assert!(dp <= 0.01, "{precision}: mean |Δp| {dp}");
        assert!(
            (acc_a - acc_b).abs() <= 0.005,
            "{precision}: accuracy {acc_a} vs {acc_b}"
        );
    }
}

#[test]
fn packed_models_hold_fewer_bytes_and_refuse_training() {
    let model = fixture();
    let fp32 = Classifier::new(&model, None).unwrap().weight_bytes();
    let int8 = model.clone().pack(InferPrecision::Int8).unwrap();
    let bf16 = model.clone().pack(InferPrecision::Bf16).unwrap();
    let (i, b) = (
        Classifier::new(&int8, None).unwrap().weight_bytes(),
        Classifier::new(&bf16, None).unwrap().weight_bytes(),
    );
    let cfg = &model.config;
    let conv = 12 * cfg.n_embd * cfg.n_embd * cfg.n_layer; // 3e² + e² + 2·4e² per block
    eprintln!("bytes held: fp32 {fp32}, int8 {i}, bf16 {b} (Conv1D weights {conv} values)");
    assert!(
        fp32 - i >= conv * 3 - conv / 4,
        "int8 saves 3 of 4 bytes per weight"
    );
    assert!(
        fp32 - b >= conv * 2 - conv / 4,
        "bf16 saves 2 of 4 bytes per weight"
    );
    assert_eq!(int8.precision(), InferPrecision::Int8);
    let err = match int8.build_trainable() {
        Ok(_) => panic!("a packed model built for training"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("int8"), "{err}");
    assert!(int8.pack(InferPrecision::Bf16).is_err());
}

/// Adapters on an int8 base: the base is packed once and shared, each
/// adapter's deltas stay f32, and a mixed pass answers as each one alone.
#[tokio::test]
async fn lora_adapters_serve_on_one_shared_int8_base() {
    use crate::lora_serving::{adapters, load_all};
    use tuneserve::infer::{BatchLimits, Batcher, BatchingConfig, Registry};
    let tmp = tempfile::tempdir().unwrap();
    let dirs = adapters(tmp.path(), 4);
    let fp32 = load_all(&Registry::new(candle_core::Device::Cpu, 2), &dirs).await;
    let registry = Registry::new(candle_core::Device::Cpu, 2).with_precision(InferPrecision::Int8);
    let served = load_all(&registry, &dirs).await;
    let base = served[0].base.clone().unwrap();
    assert_eq!(base.precision(), InferPrecision::Int8);
    assert!(served
        .iter()
        .all(|m| std::sync::Arc::ptr_eq(m.base.as_ref().unwrap(), &base)));
    let batcher = Batcher::start(BatchingConfig {
        capacity: 64,
        limits: BatchLimits {
            texts: 32,
            tokens: 4096,
        },
        max_request_tokens: 4096,
    })
    .unwrap();
    let text = "worst day ever, the bus never came";
    let mut answers = Vec::new();
    for (model, reference) in served.iter().zip(&fp32) {
        assert_eq!(model.classifier.precision(), InferPrecision::Int8);
        let alone = model.classifier.classify(&[text]).unwrap().remove(0);
        let want = reference.classifier.classify(&[text]).unwrap().remove(0);
        let d = crate::fixtures::max_abs_diff(&alone.logits, &want.logits);
        assert!(
            d <= 0.05 * want.logits.iter().fold(1f32, |m, v| m.max(v.abs())),
            "{d}"
        );
        let mixed = batcher.classify(model.clone(), vec![text.to_string()], true);
        answers.push((alone, mixed.await.unwrap().remove(0)));
    }
    for (alone, mixed) in &answers {
        assert!(crate::fixtures::max_abs_diff(&alone.logits, &mixed.logits) <= 1e-5);
    }
    assert_ne!(
        answers[0].0.logits[..3],
        answers[2].0.logits[..3],
        "adapters differ"
    );
}

/// The service in int8: `/health` and `/models/{id}` say so and count the
/// packed bytes, and `/classify` answers close to fp32.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_serves_int8_and_says_so() {
    use crate::test_app::spawn_app_with;
    let source = fixture_dir().display().to_string();
    let fp32_bytes = Classifier::new(&fixture(), None).unwrap().weight_bytes();
    let app = spawn_app_with(|c| {
        c.model = Some(source.clone());
        c.infer_precision = InferPrecision::Int8;
    })
    .await;
    let (status, health) = app.get("/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["infer_precision"], "int8");
    let held = health["loaded_model_bytes"].as_u64().unwrap() as usize;
    assert!(held > 0 && held < fp32_bytes, "{held} of {fp32_bytes}");
    let (_, model) = app.get("/models/gpt2-tiny-parity").await;
    assert_eq!(model["precision"], "int8", "{model}");
    assert_eq!(model["loaded_bytes"].as_u64().unwrap() as usize, held);
    let (status, answer) = app
        .post(
            "/classify",
            &serde_json::json!({"inputs": "so happy today"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let want = softmax(&logits(&fixture(), &["so happy today".to_string()]).remove(0));
    let scores = &answer["predictions"][0]["scores"];
    let got: Vec<f32> = ["negative", "neutral", "positive"]
        .iter()
        .map(|l| scores[l].as_f64().unwrap() as f32)
        .collect();
    let d = crate::fixtures::max_abs_diff(&got, &want);
    assert!(
        d > 0.0 && d <= 0.02,
        "int8 /classify differs from fp32 by {d} in probability"
    );
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The gauge is the process's (other tests' registries set it too): it
    // is there; its value is `Registry::footprint`, which /health showed.
    let name = tuneserve::metric_names::LOADED_MODEL_BYTES;
    assert!(metrics.lines().any(|l| l.starts_with(name)), "no {name}");
    app.stop().await;
}

#[tokio::test]
async fn int8_on_a_gpu_device_is_refused_at_startup() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = tuneserve::api::ServeConfig::new(tmp.path());
    config.infer_precision = InferPrecision::Int8;
    config.infer_device = "cuda:0".into();
    let err = match tuneserve::api::Application::build(config).await {
        Ok(_) => panic!("int8 on cuda:0 started"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("CPU only") && err.contains("--infer-precision"),
        "{err}"
    );
}
