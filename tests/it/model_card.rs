//! The model card's Hub metadata, through both doors (`tuneserve train` and a
//! service job): a base model and data from the Hub (an offline cache made
//! here) are named by their Hub ids in the card's YAML, so the Hub accepts the
//! card; a local folder or an uploaded file appears only in the prose. The
//! evaluation table rounds every number alike.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use tuneserve::model::WeightLayout;

use crate::fixtures::write_tiny_model;
use crate::test_app::tiny_dataset;

const BASE: &str = "tuneserve-tests/tiny-gpt2";
const DATA: &str = "tuneserve-tests/tweets";

/// An offline Hub cache at `home` holding model `BASE` (a random tiny GPT-2)
/// and dataset `DATA` (train and test splits of the tiny dataset).
fn hub_cache(home: &Path) {
    let snapshot = |kind: &str, id: &str| {
        let repo = home.join(format!("hub/{kind}s--{}", id.replace('/', "--")));
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
        let dir = repo.join("snapshots/0123abcd");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    write_tiny_model(&snapshot("model", BASE), 5, WeightLayout::Base);
    let data = snapshot("dataset", DATA);
    std::fs::write(data.join("train.jsonl"), tiny_dataset()).unwrap();
    std::fs::write(data.join("test.jsonl"), tiny_dataset()).unwrap();
}

/// The card's YAML metadata (between the first two `---` lines).
fn front_matter(card: &str) -> &str {
    card.split("---\n").nth(1).expect("front matter")
}

/// The card's metadata names `BASE` and `DATA` by their Hub ids, the two
/// splits of `DATA` once.
fn assert_hub_metadata(card: &str) {
    let meta = front_matter(card);
    assert!(
        meta.contains(&format!("base_model: \"{BASE}\"\n")),
        "{meta}"
    );
    let datasets = format!("datasets:\n- \"{DATA}\"\ntags:");
    assert!(
        meta.contains(&datasets),
        "both splits, one repository, named once: {meta}"
    );
}

/// Every row of the evaluation table rounds alike: 4 decimals, or an integer
/// count.
fn assert_rounded_alike(card: &str) {
    let table = card
        .split("## Evaluation (final)")
        .nth(1)
        .expect("an evaluation table");
    let rows = table.lines().skip_while(|l| !l.starts_with("|---")).skip(1);
    let rows: Vec<&str> = rows.take_while(|l| l.starts_with('|')).collect();
    assert!(rows.len() >= 3, "{table}");
    for row in rows {
        let value = row.split('|').nth(2).unwrap().trim();
        let decimals = value.split_once('.').map(|(_, d)| d.len());
        assert!(
            matches!(decimals, Some(4) | None) && value.parse::<f64>().is_ok(),
            "{row}"
        );
    }
}

fn train(home: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_tuneserve"))
        .arg("train")
        .args(args)
        .args(["--epochs", "1", "--batch-size", "4", "--logging-steps", "1"])
        .env("HF_HOME", home)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "train failed: {stderr}");
}

#[test]
fn train_names_hub_ids_in_the_metadata_and_local_files_only_in_the_prose() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    hub_cache(&home);
    let out = tmp.path().join("from-hub");
    let out_arg = out.to_str().unwrap();
    let eval = format!("{DATA}:test");
    train(
        &home,
        &[
            "--model", BASE, "--train", DATA, "--eval", &eval, "--out", out_arg,
        ],
    );
    let card = std::fs::read_to_string(out.join("model/README.md")).unwrap();
    assert_hub_metadata(&card);
    assert_rounded_alike(&card);

    let base = tmp.path().join("base");
    write_tiny_model(&base, 6, WeightLayout::Base);
    let file = tmp.path().join("train.jsonl");
    std::fs::write(&file, tiny_dataset()).unwrap();
    let out = tmp.path().join("local");
    let (base_arg, file_arg) = (base.to_str().unwrap(), file.to_str().unwrap());
    let out_arg = out.to_str().unwrap();
    let local = ["--model", base_arg, "--train", file_arg, "--eval", file_arg];
    train(&home, &[&local[..], &["--out", out_arg]].concat());
    let card = std::fs::read_to_string(out.join("model/README.md")).unwrap();
    let meta = front_matter(&card);
    assert!(
        !meta.contains("base_model") && !meta.contains("datasets"),
        "{meta}"
    );
    assert!(
        card.contains(&format!("Fine-tuned from `{base_arg}`")),
        "{card}"
    );
    assert!(
        card.contains(&format!("Data: {file_arg}, {file_arg}.")),
        "{card}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_on_hub_imports_names_them_in_its_card_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    hub_cache(&home);
    let env = [("HF_HOME", home.to_str().unwrap()), ("HF_HUB_OFFLINE", "1")];
    let server =
        crate::processes::ServeProcess::start_with_env(&tmp.path().join("data"), &[], &env);
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let request = client.post(format!("{}{path}", server.base)).json(&body);
        async move {
            let resp = request.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, train) = post("/datasets/import", json!({"repo": DATA, "split": "train"})).await;
    assert_eq!((status, &train["hub_repo"]), (201, &json!(DATA)), "{train}");
    let (_, test) = post(
        "/datasets/import",
        json!({"repo": format!("{DATA}@main"), "split": "test"}),
    )
    .await;
    assert_eq!(test["hub_repo"], DATA, "no revision: {test}");
    let (status, job) = post(
        "/jobs",
        json!({"base_model": BASE, "train_dataset": train["id"], "eval_dataset": test["id"],
               "hyperparameters": {"epochs": 1, "batch_size": 4}}),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap();
    let job = crate::processes::wait_finished(&client, &server.base, id, 120).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let model = job["model"].as_str().unwrap();
    let card_url = format!("{}/models/{model}/files/README.md", server.base);
    let card = client
        .get(card_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_hub_metadata(&card);
    assert!(
        card.contains(&format!("Data: {DATA}:train, {DATA}@main:test.")),
        "{card}"
    );
    assert_rounded_alike(&card);
}
