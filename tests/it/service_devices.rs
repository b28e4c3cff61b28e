//! The devices the service uses: `/health` lists each with its role and
//! memory, and a GPU device in a build without CUDA is refused at startup
//! with a message saying how to build one.

use crate::test_app::spawn_app_with;
use serde_json::json;

#[tokio::test]
async fn health_lists_each_device_once_with_its_roles_and_memory() {
    let app = spawn_app_with(|c| c.devices = vec!["cpu".into(), "cpu".into()]).await;
    let (status, health) = app.get("/health").await;
    assert_eq!(status, 200);
    // Beside the storage probe, not instead of it.
    assert_eq!(health["storage"]["writable"], json!(true), "{health}");
    // Two workers on the CPU, which also classifies: one device.
    let devices = health["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{health}");
    let cpu = &devices[0];
    let roles = (&cpu["name"], &cpu["training"], &cpu["inference"]);
    assert_eq!(roles, (&json!("cpu"), &json!(true), &json!(true)));
    let total = cpu["memory_total_bytes"].as_u64().unwrap();
    let free = cpu["memory_free_bytes"].as_u64().unwrap();
    assert!(total > 0 && free <= total, "{cpu}");
    assert!(
        cpu["description"].as_str().unwrap().starts_with("cpu ("),
        "{cpu}"
    );
    app.stop().await;
}

#[tokio::test]
#[cfg(not(feature = "cuda"))]
async fn a_gpu_device_needs_a_cuda_build() {
    let dir = tempfile::tempdir().unwrap();
    for (devices, infer) in [(vec!["cpu", "cuda:0"], "cpu"), (vec!["cpu"], "cuda:1")] {
        let mut config = tuneserve::api::ServeConfig::new(dir.path());
        config.port = 0;
        config.devices = devices.iter().map(|d| d.to_string()).collect();
        config.infer_device = infer.into();
        let err = tuneserve::api::Application::build(config).await.err();
        let err = err.expect("a CPU-only build refuses a GPU").to_string();
        assert!(
            err.contains("built without CUDA") && err.contains("--features cuda"),
            "{err}"
        );
    }
}
