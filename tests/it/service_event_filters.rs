//! `GET /jobs/{id}/events?kind=&level=` on both backends: a page holds only
//! the entries asked for (as many evaluations as the job's metrics list), a
//! live stream too, and a name that is no kind or level is a 422 naming the
//! parameter.

use futures::StreamExt;
use serde_json::{json, Value};

use crate::test_app::{assert_error, is_terminal, spawn_app_on};
use crate::test_db::{on_both_backends, Backend};

on_both_backends!(events_filter_by_kind_and_level);

async fn events_filter_by_kind_and_level(backend: Backend) {
    let app = spawn_app_on(backend, |_| {}).await;
    let dataset = app.upload_tiny_dataset().await;
    let settings = json!({"epochs": 2, "batch_size": 4, "logging_steps": 1});
    let id = app.submit(&dataset, settings).await;
    let job = app.wait_job(&id, 120, is_terminal).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");

    let owned = app;
    let app = &owned;
    let page = |query: &str| {
        let path = format!("/jobs/{id}/events?{query}");
        async move { app.get(&path).await }
    };
    let (_, all) = page("").await;
    let all = all["data"].as_array().unwrap().clone();
    let (status, evals) = page("kind=eval").await;
    assert_eq!(status, 200, "{evals}");
    let evals = evals["data"].as_array().unwrap().clone();
    let (_, metrics) = app.get(&format!("/jobs/{id}/metrics")).await;
    assert_eq!(evals.len(), metrics["eval"].as_array().unwrap().len());
    assert!(evals
        .iter()
        .all(|e| e["kind"] == "eval" && e["data"]["accuracy"].is_number()));
    let info_steps = page("kind=step&level=info").await.1["data"].clone();
    let steps = all.iter().filter(|e| e["kind"] == "step").count();
    assert_eq!(info_steps.as_array().unwrap().len(), steps, "{info_steps}");
    assert_eq!(
        page("level=error").await.1["data"],
        json!([]),
        "a clean run"
    );
    let after_first = evals[0]["id"].as_i64().unwrap();
    let later = page(&format!("kind=eval&after={after_first}")).await.1;
    assert_eq!(later["data"].as_array().unwrap().len(), evals.len() - 1);

    assert_error(&page("kind=bogus").await, 422, "validation_error", "kind");
    assert_error(&page("level=loud").await, 422, "validation_error", "level");

    // A live stream of a finished job: only the asked-for entries, then its end.
    let resp = app
        .client
        .get(app.url(&format!("/jobs/{id}/events?kind=succeeded")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut body = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert_eq!(body.matches("event: ").count(), 1, "{body}");
    assert!(body.contains("event: succeeded"), "{body}");
    let _: Value =
        serde_json::from_str(body.split("data: ").nth(1).unwrap().lines().next().unwrap()).unwrap();
    owned.stop().await;
}
