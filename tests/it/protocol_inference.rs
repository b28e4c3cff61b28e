//! The Hugging Face inference convention (`POST /predict`, `POST /`,
//! `POST /models/{id}`, `GET /info`): its shapes and parameters checked
//! against `/classify`'s answers for the same texts, then `huggingface_hub`'s
//! own `InferenceClient` (from PyPI, in the contract tests' venv) against a
//! live server.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::contract::{python_tools, run_ok, tool};
use crate::test_app::{assert_error, spawn_app_with, TestApp};

const TEXTS: [&str; 3] = [
    "I love this, it is great",
    "the meeting is at noon",
    "worst day ever, so sad",
];

/// The contract tests' venv when it can import every one of `modules`; like
/// [`python_tools`], `None` (after saying why) only outside CI.
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let venv = python_tools()?;
    let import = format!("import {}", modules.join(", "));
    let ok = std::process::Command::new(venv.join("bin/python"))
        .args(["-c", &import])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(venv);
    }
    let why = format!(
        "{} cannot `{import}` (run `.ci/python-tools.sh`)",
        venv.display()
    );
    let required = std::env::var("TUNESERVE_REQUIRE_PYTHON_TOOLS").is_ok_and(|v| v == "1");
    assert!(!required, "TUNESERVE_REQUIRE_PYTHON_TOOLS=1, but {why}");
    eprintln!("skipping: {why}");
    None
}

/// A service preloaded with a tiny random classifier (`negative`, `neutral`,
/// `positive`; 128 positions), with `key` as its API key when given.
async fn serving_app(key: Option<&str>) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("tiny");
    crate::fixtures::write_tiny_model(&model_dir, 5, tuneserve::model::WeightLayout::Classifier);
    let source = model_dir.display().to_string();
    let key = key.map(str::to_string);
    let app = spawn_app_with(|c| {
        c.model = Some(source);
        c.api_key = key;
    })
    .await;
    (app, dir)
}

/// `/classify`'s scores for each text as `(label, score)`, best first.
async fn classify(app: &TestApp, body: Value) -> Vec<Vec<(String, f64)>> {
    let (status, got) = app.post("/classify", &body).await;
    assert_eq!(status, 200, "{got}");
    let predictions = got["predictions"].as_array().unwrap();
    predictions
        .iter()
        .map(|p| {
            let mut pairs: Vec<(String, f64)> = (p["scores"].as_object().unwrap().iter())
                .map(|(l, s)| (l.clone(), s.as_f64().unwrap()))
                .collect();
            pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
            pairs
        })
        .collect()
}

/// A ranked list answered by the convention's routes, as pairs.
fn pairs(list: &Value) -> Vec<(String, f64)> {
    let list = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"));
    list.iter()
        .map(|e| {
            let label = e["label"].as_str().unwrap().to_string();
            (label, e["score"].as_f64().unwrap())
        })
        .collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[tokio::test]
async fn the_convention_answers_classify_s_predictions_in_its_shapes() {
    let (app, _dir) = serving_app(None).await;
    let expected = classify(&app, json!({"inputs": TEXTS})).await;
    let logits = classify(&app, json!({"inputs": TEXTS, "raw_scores": true})).await;

    // TEI's /predict: one text is one ranked list, a list is a list of them.
    let (status, one) = app.post("/predict", &json!({"inputs": TEXTS[0]})).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(pairs(&one), expected[0], "{one}");
    let (_, many) = app.post("/predict", &json!({"inputs": TEXTS})).await;
    let many: Vec<_> = many.as_array().unwrap().iter().map(pairs).collect();
    assert_eq!(many, expected);

    // POST / and POST /models/{id}: one list per input, one text too; the
    // parameters the Inference API's clients send (empty, or with keys of
    // other tasks) are taken.
    let (_, info) = app.get("/info").await;
    let model = info["model_id"].as_str().unwrap().to_string();
    for path in ["/".to_string(), format!("/models/{model}")] {
        for body in [
            json!({"inputs": TEXTS[1], "parameters": {}}),
            json!({"inputs": TEXTS[1], "parameters": {"wait_for_model": true}}),
        ] {
            let (status, got) = app.post(&path, &body).await;
            assert_eq!(status, 200, "{path}: {got}");
            let lists = got.as_array().unwrap();
            assert_eq!(lists.len(), 1, "{got}");
            assert_eq!(pairs(&lists[0]), expected[1], "{path}");
        }
        let (_, got) = app.post(&path, &json!({"inputs": TEXTS})).await;
        let got: Vec<_> = got.as_array().unwrap().iter().map(pairs).collect();
        assert_eq!(got, expected, "{path}");
    }

    // top_k, sigmoid, and the raw logits (either spelling).
    let body = json!({"inputs": TEXTS, "parameters": {"top_k": 2}});
    let (_, top) = app.post("/predict", &body).await;
    let top: Vec<_> = top.as_array().unwrap().iter().map(pairs).collect();
    let want: Vec<_> = expected.iter().map(|l| l[..2].to_vec()).collect();
    assert_eq!(top, want);
    for body in [
        json!({"inputs": TEXTS, "raw_scores": true}),
        json!({"inputs": TEXTS, "parameters": {"function_to_apply": "none"}}),
    ] {
        let (_, raw) = app.post("/predict", &body).await;
        let raw: Vec<_> = raw.as_array().unwrap().iter().map(pairs).collect();
        assert_eq!(raw, logits, "{body}");
    }
    let body = json!({"inputs": TEXTS, "parameters": {"function_to_apply": "sigmoid"}});
    let (_, sig) = app.post("/predict", &body).await;
    for (got, raw) in sig.as_array().unwrap().iter().zip(&logits) {
        let got = pairs(got);
        for ((label, score), (raw_label, logit)) in got.iter().zip(raw) {
            assert_eq!(label, raw_label, "sigmoid keeps the logits' order");
            assert!((score - sigmoid(*logit)).abs() < 1e-6, "{got:?} {raw:?}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_convention_refuses_what_it_cannot_do_naming_the_field() {
    let (app, _dir) = serving_app(None).await;
    let cases = [
        (
            json!({"inputs": "a", "parameters": {"top_k": 0}}),
            "parameters.top_k",
        ),
        (
            json!({"inputs": "a", "parameters": {"function_to_apply": "tanh"}}),
            "parameters.function_to_apply",
        ),
        (
            json!({"inputs": "a", "raw_scores": true, "parameters": {"function_to_apply": "softmax"}}),
            "raw_scores",
        ),
        (json!({"inputs": "a", "temperature": 1}), "temperature"),
        (json!({"inputs": ["fine", " "]}), "inputs[1]"),
        (
            json!({"inputs": "word ".repeat(400), "truncate": false}),
            "inputs[0]",
        ),
    ];
    for (body, param) in cases {
        for path in ["/predict", "/"] {
            let got = app.post(path, &body).await;
            assert_error(&got, 422, "validation_error", "");
            assert_eq!(got.1["error"]["param"], param, "{path} {body}: {}", got.1);
        }
    }
    let got = app
        .post("/models/model-nope", &json!({"inputs": "a"}))
        .await;
    assert_error(&got, 404, "not_found", "model-nope");
    // GET / is still the dashboard.
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    app.stop().await;
}

#[tokio::test]
async fn info_describes_the_model_and_the_limits() {
    let empty = spawn_app_with(|_| {}).await;
    let (status, info) = empty.get("/info").await;
    assert_eq!(status, 200, "{info}");
    assert!(
        info["model_id"].is_null() && info["model_type"].is_null(),
        "{info}"
    );
    let got = empty.post("/", &json!({"inputs": "a"})).await;
    assert_error(&got, 503, "unavailable", "no model");
    empty.stop().await;

    let (app, _dir) = serving_app(None).await;
    let (_, info) = app.get("/info").await;
    let (_, health) = app.get("/health").await;
    assert_eq!(info["model_id"], health["latest_model"], "{info}");
    let classes = &info["model_type"]["classifier"];
    assert_eq!(
        classes["id2label"],
        json!({"0": "negative", "1": "neutral", "2": "positive"})
    );
    assert_eq!(classes["label2id"]["positive"], 2);
    assert_eq!(
        info["max_input_length"], 128,
        "the tiny model's n_positions"
    );
    assert_eq!(info["max_client_batch_size"], 64, "--max-inputs' default");
    assert_eq!(info["max_batch_requests"], 32);
    assert_eq!(info["model_dtype"], "float32");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huggingface_hub_s_inference_client_classifies_as_classify_does() {
    let Some(venv) = python_with(&["huggingface_hub"]) else {
        return;
    };
    const KEY: &str = "hub-client-key";
    let (app, _dir) = serving_app(Some(KEY)).await;
    let auth = format!("Bearer {KEY}");
    let call = |body: Value| {
        let request = app.client.post(app.url("/classify")).json(&body);
        request.header("authorization", auth.clone()).send()
    };
    let scores = |body: Value| async {
        let got: Value = call(body).await.unwrap().json().await.unwrap();
        assert!(got["predictions"].is_array(), "{got}");
        got
    };
    let probabilities = scores(json!({"inputs": TEXTS})).await;
    let logits = scores(json!({"inputs": TEXTS, "raw_scores": true})).await;
    let model = probabilities["model"].as_str().unwrap().to_string();

    let mut client = tool(&venv, "python");
    client
        .arg("tests/protocols/hf_inference_client.py")
        .args([&app.base, KEY, &model])
        .args(TEXTS)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HOME", app.dir.path().join("hf-home"))
        .env_remove("HF_TOKEN");
    let out = run_ok("huggingface_hub's InferenceClient", client).await;
    let got: Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap();
    assert_eq!(got["huggingface_hub"], "2.4.0", "the pinned version");
    assert_eq!(got["without_key"], 401, "{got}");

    let ranked = |p: &Value, k: usize| {
        let mut pairs: Vec<(String, f64)> = (p["scores"].as_object().unwrap().iter())
            .map(|(l, s)| (l.clone(), s.as_f64().unwrap()))
            .collect();
        pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
        pairs.truncate(k);
        pairs
    };
    let as_pairs = |v: &Value| -> Vec<(String, f64)> {
        (v.as_array().unwrap().iter())
            .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_f64().unwrap()))
            .collect()
    };
    for (i, p) in probabilities["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(as_pairs(&got["base_url"][i]), ranked(p, 3), "text {i}");
        assert_eq!(as_pairs(&got["model_url"][i]), ranked(p, 3), "text {i}");
        assert_eq!(as_pairs(&got["top_k_2"][i]), ranked(p, 2), "text {i}");
        let raw = ranked(&logits["predictions"][i], 3);
        for ((label, score), (raw_label, logit)) in as_pairs(&got["sigmoid"][i]).iter().zip(&raw) {
            assert_eq!(label, raw_label);
            assert!((score - sigmoid(*logit)).abs() < 1e-6, "{got}");
        }
    }
    app.stop().await;
}
