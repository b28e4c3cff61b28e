//! The committed `openapi.yaml` must match what the code generates.
//! Regenerate with `UPDATE_OPENAPI=1 cargo test --release openapi`.

use std::path::Path;

#[test]
fn committed_openapi_yaml_is_up_to_date() {
    let generated = tuneserve::api::openapi_yaml();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.yaml");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    assert!(
        generated.contains("- 'no'\n"),
        "`no` is quoted (YAML 1.1 reads it as false)"
    );
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.yaml is out of date with the code: regenerate it with \
         `UPDATE_OPENAPI=1 cargo test --release openapi` and commit the result"
    );
}

/// The errors every route can answer are in the document where they can
/// happen: 401 behind the key, 408 and 414 everywhere, 413 with a body,
/// 422 with query parameters, 429 with `Retry-After`.
#[test]
fn shared_errors_are_documented_where_they_happen() {
    let doc = serde_json::to_value(tuneserve::api::openapi()).unwrap();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = &op["responses"];
            let has = |status: &str| responses.get(status).is_some();
            let at = format!("{method} {path}");
            assert!(has("408") && has("414"), "{at}");
            let protected = op["security"].as_array().is_some_and(|s| !s.is_empty());
            assert_eq!(has("401"), protected, "{at}");
            if op.get("requestBody").is_some() {
                assert!(has("413"), "{at}");
            }
            let mut params = op["parameters"].as_array().into_iter().flatten();
            if params.any(|p| p["in"] == "query") {
                assert!(has("422"), "{at}: a query parameter can fail to parse");
            }
            operations += 1;
        }
    }
    assert!(operations >= 14, "{operations} operations");
    let overloaded = &doc["paths"]["/classify"]["post"]["responses"]["429"]["$ref"];
    assert_eq!(overloaded, "#/components/responses/Overloaded");
    let headers = &doc["components"]["responses"]["Overloaded"]["headers"];
    assert!(headers.get("Retry-After").is_some(), "{headers}");
}
