//! `tuneserve train` as a user runs it: a JSONL file in, a model folder, metrics
//! and checkpoints out; then `classify` uses the result.

use std::process::Command;

use crate::fixtures::write_tiny_model;
use tuneserve::model::WeightLayout;

fn tuneserve() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tuneserve"))
}

#[test]
fn train_exports_a_model_that_classify_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    write_tiny_model(&base, 9, WeightLayout::Base);
    let data = tmp.path().join("train.jsonl");
    let rows: Vec<String> = (0..18)
        .map(|i| {
            let (text, label) = match i % 3 {
                0 => ("what an awful, sad day", "negative"),
                1 => ("the table is by the window", "neutral"),
                _ => ("a lovely, happy day", "positive"),
            };
            format!("{{\"text\": \"{text} {i}\", \"label\": \"{label}\"}}")
        })
        .collect();
    std::fs::write(&data, rows.join("\n")).unwrap();
    let out = tmp.path().join("run");
    let status = tuneserve()
        .args(["train", "--model"])
        .arg(&base)
        .arg("--train")
        .arg(&data)
        .arg("--eval")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args([
            "--epochs",
            "2",
            "--batch-size",
            "1",
            "--gradient-accumulation-steps",
            "4",
        ])
        .args(["--learning-rate", "1e-3", "--logging-steps", "1"])
        .status()
        .unwrap();
    assert!(status.success());

    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(
        metrics["steps"], 10,
        "18 rows / accumulation 4 → 5 steps an epoch, 2 epochs"
    );
    assert_eq!(
        metrics["labels"],
        serde_json::json!(["negative", "neutral", "positive"])
    );
    assert!(metrics["baseline"]["accuracy"].is_number());
    assert!(metrics["final"]["macro_f1"].is_number());
    assert_eq!(metrics["history"]["steps"].as_array().unwrap().len(), 10);
    assert!(out
        .join("checkpoints/step-10/optimizer.safetensors")
        .is_file());
    for file in ["model.safetensors", "config.json", "tokenizer_config.json"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("model").join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{file} is readable like its siblings");
    }

    let classified = tuneserve()
        .arg("classify")
        .arg("--model")
        .arg(out.join("model"))
        .arg("a lovely day")
        .output()
        .unwrap();
    assert!(classified.status.success());
    let p: serde_json::Value = serde_json::from_slice(&classified.stdout).unwrap();
    let scores = p["scores"].as_object().unwrap();
    assert!(scores.contains_key("positive") && scores.contains_key("negative"));
}

#[test]
fn train_reports_bad_rows_with_line_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("bad.jsonl");
    std::fs::write(
        &data,
        "{\"text\": \"ok\", \"label\": 0}\n{\"text\": \"\", \"label\": 1}\nnot json\n",
    )
    .unwrap();
    let out = tuneserve()
        .args(["train", "--model", "unused-model-id", "--train"])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("run"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}
