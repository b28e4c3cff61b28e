//! The command line as a user runs it: init-model, then classify; health
//! against a running service.

use std::process::Command;

use crate::fixtures::tokenizer_dir;

fn tuneserve() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tuneserve"))
}

#[test]
fn init_model_then_classify_prints_json_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    let status = tuneserve()
        .args(["init-model", "--preset", "tiny", "--seed", "4", "--out"])
        .arg(&model)
        .arg("--tokenizer")
        .arg(tokenizer_dir())
        .status()
        .unwrap();
    assert!(status.success());
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(model.join(file).is_file(), "{file} missing");
    }

    let input = tmp.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"first from file\"}\n\"second from file\"\n",
    )
    .unwrap();
    let out = tuneserve()
        .arg("classify")
        .arg("--model")
        .arg(&model)
        .arg("--input")
        .arg(&input)
        .args(["what a lovely day", "this is awful"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    for line in &lines {
        let scores = line["scores"].as_object().unwrap();
        assert_eq!(scores.len(), 2, "a base model gets the default two labels");
        let total: f64 = scores.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-5);
        let id = line["label_id"].as_u64().unwrap() as usize;
        assert_eq!(line["label"], format!("LABEL_{id}"));
        assert_eq!(line["logits"].as_array().unwrap().len(), 2);
        assert_eq!(line["score"], scores[line["label"].as_str().unwrap()]);
    }
}

#[test]
fn classify_rejects_empty_text_and_bad_input_lines() {
    let fixture = crate::fixtures::fixture_dir();
    let out = tuneserve()
        .arg("classify")
        .arg("--model")
        .arg(&fixture)
        .args(["fine", ""])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("input 1 is empty"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "{\"text\": \"ok\"}\n{\"txt\": 1}\n").unwrap();
    let out = tuneserve()
        .arg("classify")
        .arg("--model")
        .arg(&fixture)
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in.jsonl:2: no string field `text`"), "{err}");
}

#[test]
fn help_documents_every_flag() {
    for (cmd, flags) in [
        (
            "init-model",
            &[
                "--preset",
                "--tokenizer",
                "--seed",
                "--n-positions",
                "--out",
            ][..],
        ),
        (
            "classify",
            &[
                "--model",
                "--input",
                "--batch-size",
                "--max-length",
                "--device",
            ][..],
        ),
        ("health", &["--url", "--timeout-secs", "TUNESERVE_PORT"][..]),
    ] {
        let out = tuneserve().args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        for flag in flags {
            assert!(help.contains(flag), "{cmd} --help lacks {flag}");
        }
    }
}

#[test]
fn bench_reports_the_matmul_probe_phases_and_a_text() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    let status = tuneserve()
        .args(["init-model", "--preset", "tiny", "--out"])
        .arg(&model)
        .arg("--tokenizer")
        .arg(tokenizer_dir())
        .status()
        .unwrap();
    assert!(status.success());
    let out_json = tmp.path().join("bench.json");
    let out = tuneserve()
        .arg("bench")
        .arg("--model")
        .arg(&model)
        .args([
            "--warmup",
            "0",
            "--iters",
            "1",
            "--text",
            "what a lovely day",
        ])
        .arg("--out")
        .arg(&out_json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("matmul 2048^3 fp32"), "{stdout}");
    assert!(stdout.contains("text of 4 tokens"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    assert!(json["matmul_fp32_gflops"].as_f64().unwrap() > 0.0);
    let m = &json["models"][0];
    for phase in ["forward", "backward", "optimizer"] {
        assert!(m["train_step"]["phase_median_s"][phase].as_f64().unwrap() > 0.0);
    }
    assert_eq!(m["text"]["tokens"], 4);
    assert!(m["text"]["texts_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn init_model_without_a_tokenizer_ships_gpt2s_own() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    let out = tuneserve()
        .args(["init-model", "--preset", "tiny", "--out"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shipped = std::fs::read(model.join("tokenizer.json")).unwrap();
    let reference = tuneserve::data::TextTokenizer::load(
        &tuneserve::data::TokenizerFiles::in_dir(&tokenizer_dir()).unwrap(),
    )
    .unwrap();
    let built_in = tuneserve::data::TextTokenizer::gpt2().unwrap();
    for text in [
        "Hello world",
        " what a great game tonight<|endoftext|>",
        "😀 日本",
    ] {
        assert_eq!(
            built_in.encode(text).unwrap(),
            reference.encode(text).unwrap()
        );
    }
    assert!(
        shipped.len() > 1_000_000,
        "the full GPT-2 vocabulary is written"
    );
}

/// `classify` on a PEFT adapter folder, and on `merge`'s plain classifier of
/// it: the same labels (the base's, PEFT saves none) and logits.
#[test]
fn an_adapter_classifies_as_its_merged_classifier() {
    let adapter = crate::fixtures::repo_path("tests/fixtures/gpt2-tiny-lora/adapter-r8");
    let tmp = tempfile::tempdir().unwrap();
    let merged = tmp.path().join("merged");
    let status = tuneserve()
        .arg("merge")
        .arg("--model")
        .arg(&adapter)
        .arg("--out")
        .arg(&merged)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(merged.join("model.safetensors").is_file());
    let classify = |model: &std::path::Path| -> serde_json::Value {
        let out = tuneserve()
            .arg("classify")
            .arg("--model")
            .arg(model)
            .arg("I love this")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (a, m) = (classify(&adapter), classify(&merged));
    assert_eq!(a["label"], m["label"]);
    assert!(
        a["scores"]["positive"].is_number(),
        "the base's labels: {a}"
    );
    let logits = |v: &serde_json::Value| -> Vec<f32> {
        serde_json::from_value(v["logits"].clone()).unwrap()
    };
    assert!(crate::fixtures::max_abs_diff(&logits(&a), &logits(&m)) < 1e-5);
    let out = tuneserve()
        .arg("merge")
        .arg("--model")
        .arg(&merged)
        .arg("--out")
        .arg(tmp.path().join("again"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a LoRA adapter"));
}

/// `health` as the container's health check runs it: exit 0 and `ok` while
/// `/health` says ok (at `--url`, or on `TUNESERVE_PORT` by default); an
/// error naming what it got when the service is degraded or not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exits_zero_only_when_the_service_says_ok() {
    let app = crate::test_app::spawn_app().await;
    let port = app.base.rsplit(':').next().unwrap().to_string();
    let run = |args: Vec<String>, port: Option<String>| {
        tokio::task::spawn_blocking(move || {
            let mut cmd = tuneserve();
            cmd.arg("health")
                .args(args)
                .env_remove("TUNESERVE_HEALTH_URL");
            match port {
                Some(port) => cmd.env("TUNESERVE_PORT", port),
                None => cmd.env_remove("TUNESERVE_PORT"),
            };
            cmd.output().unwrap()
        })
    };

    for (args, port) in [
        (vec!["--url".to_string(), app.base.clone()], None),
        (
            vec!["--url".to_string(), format!("{}/health", app.base)],
            None,
        ),
        (vec![], Some(port)),
    ] {
        let out = run(args.clone(), port).await.unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    }

    // A service that answers, but not `ok`.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let degraded = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = [0u8; 4096];
        let _ = conn.read(&mut head).unwrap();
        let body = r#"{"status":"degraded","storage":{"writable":false,"problem":"the database refuses writes"}}"#;
        write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let out = run(vec!["--url".into(), degraded.clone()], None)
        .await
        .unwrap();
    server.join().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{degraded}/health: degraded: the database refuses writes"
        )),
        "{err}"
    );

    // Nothing listening: the port of a listener just closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(vec![], Some(closed.to_string())).await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot reach http://127.0.0.1:{closed}/health")),
        "{err}"
    );
    let out = run(vec![], Some("eighty".into())).await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TUNESERVE_PORT=\"eighty\" is not a port"),
        "{err}"
    );
}
