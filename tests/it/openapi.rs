//! The committed `openapi.yaml` must match what the code generates.
//! Regenerate with `UPDATE_OPENAPI=1 cargo test --release openapi`.

use std::path::Path;

#[test]
fn committed_openapi_yaml_is_up_to_date() {
    let generated = tuneserve::api::http::openapi()
        .to_yaml()
        .expect("the OpenAPI document serialises");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.yaml");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.yaml is out of date with the code: regenerate it with \
         `UPDATE_OPENAPI=1 cargo test --release openapi` and commit the result"
    );
}
