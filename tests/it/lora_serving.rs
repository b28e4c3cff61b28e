//! Many adapters served from one base: the registry loads the base once for
//! all of them and keeps adapters within their memory bound (least recently
//! used out first); the batcher answers requests to different adapters — with
//! different label sets — in shared forward passes, exactly as each adapter
//! alone answers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tuneserve::infer::{BatchLimits, Batcher, BatchingConfig, Registry, ServedModel};
use tuneserve::model::{load, LoadOptions, ModelCard, ModelSource};

use crate::fixtures::{max_abs_diff, repo_path};

/// `n` adapters in `dir`, alternating between the fixtures' two (3 and 5
/// labels), each with its updates scaled differently so no two answer alike.
pub(crate) fn adapters(dir: &Path, n: usize) -> Vec<PathBuf> {
    let base = repo_path("tests/fixtures/gpt2-tiny-parity");
    (0..n)
        .map(|i| {
            let name = ["adapter-r8", "adapter-r4-rslora"][i % 2];
            let fixture = repo_path("tests/fixtures/gpt2-tiny-lora").join(name);
            let mut model = load(&ModelSource::Dir(fixture), &LoadOptions::default()).unwrap();
            let adapter = model.adapter.as_mut().unwrap();
            adapter.base = Some(base.display().to_string());
            let factor = 0.5 + i as f64 / 8.0;
            for (key, t) in adapter.weights.iter_mut() {
                if key.contains("lora_B") {
                    *t = (&*t * factor).unwrap();
                }
            }
            let card = ModelCard {
                base_model: base.display().to_string(),
                hub_base_model: None,
                datasets: vec![],
                hub_datasets: vec![],
                labels: model.config.labels.clone(),
                hyperparameters: serde_json::json!({}),
                metrics: None,
                steps: 0,
                adapter: true,
            };
            let out = dir.join(format!("adapter-{i}"));
            tuneserve::model::export(&model, &out, &card).unwrap();
            out
        })
        .collect()
}

pub(crate) async fn load_all(registry: &Registry, dirs: &[PathBuf]) -> Vec<Arc<ServedModel>> {
    let mut out = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let source = ModelSource::Dir(dir.clone());
        out.push(
            registry
                .get_or_load(&format!("a{i}"), source)
                .await
                .unwrap(),
        );
    }
    out
}

#[tokio::test]
async fn requests_to_sixteen_adapters_share_passes_and_match_each_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = adapters(tmp.path(), 16);
    let registry = Registry::new(candle_core::Device::Cpu, 2);
    let served = load_all(&registry, &dirs).await;
    let base = served[0].base.clone().unwrap();
    assert!(
        served
            .iter()
            .all(|m| Arc::ptr_eq(m.base.as_ref().unwrap(), &base)),
        "one base"
    );
    let (count, bytes) = registry.adapters();
    assert_eq!(count, 16);
    assert!(bytes < 16 * 64 * 1024, "{bytes} bytes of adapters");

    let batcher = Batcher::start(BatchingConfig {
        capacity: 256,
        limits: BatchLimits {
            texts: 32,
            tokens: 4096,
        },
        max_request_tokens: 4096,
    })
    .unwrap();
    let texts = [
        "I love this",
        "worst day ever",
        "the bus comes at noon",
        "so happy 🎉",
    ];
    let requests = (0..64).map(|i| {
        let model = served[i % 16].clone();
        let text = texts[i % texts.len()].to_string();
        let b = batcher.clone();
        async move { (i, b.classify(model, vec![text], true).await.unwrap()) }
    });
    for (i, answer) in futures::future::join_all(requests).await {
        let model = &served[i % 16];
        let alone = model
            .classifier
            .classify(&[texts[i % texts.len()]])
            .unwrap();
        assert_eq!(answer[0].scores.len(), if i % 2 == 0 { 3 } else { 5 });
        let diff = max_abs_diff(&answer[0].logits, &alone[0].logits);
        assert!(diff <= 1e-5, "request {i}: {diff:e} from the adapter alone");
        assert_eq!(answer[0].label, alone[0].label);
    }
}

#[tokio::test]
async fn adapters_beyond_their_memory_are_evicted_and_load_again_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = adapters(tmp.path(), 6);
    let one = Registry::new(candle_core::Device::Cpu, 2);
    let first = load_all(&one, &dirs[..1]).await.remove(0);
    let bound = first.bytes() * 3;
    let registry = Registry::new(candle_core::Device::Cpu, 2).with_adapter_memory(bound);
    let served = load_all(&registry, &dirs).await;
    let (count, bytes) = registry.adapters();
    assert!(
        bytes <= bound && count < 6,
        "{count} adapters, {bytes} bytes (bound {bound})"
    );
    assert!(
        registry.get("a0").is_none(),
        "the least recently used left first"
    );
    let before = served[0].classifier.classify(&["I love this"]).unwrap();
    drop(served);
    let again = registry
        .get_or_load("a0", ModelSource::Dir(dirs[0].clone()))
        .await
        .unwrap();
    let after = again.classifier.classify(&["I love this"]).unwrap();
    assert_eq!(before[0].logits, after[0].logits);
}
