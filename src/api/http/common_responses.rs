//! The errors routes answer besides their own, written into the OpenAPI
//! document once (`components.responses`) and referenced from every
//! operation where they can happen: 401 behind the API key, 408 and 414
//! everywhere, 413 where there is a body, 422 where there are query
//! parameters (one that does not parse, or an unknown one), 429 with
//! `Retry-After` where the route already says it can be overloaded. (405
//! belongs to no operation: it answers the methods a path has none for; the
//! API's description says it.)

use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, Ref, RefOr};

use crate::api::middleware::MAX_URI_BYTES;

/// Adds the shared error responses (see the module's documentation).
pub(super) struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, response) in shared() {
            components.responses.insert(name.into(), RefOr::T(response));
        }
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            operations.into_iter().flatten().for_each(add_to);
        }
    }
}

fn add_to(op: &mut Operation) {
    let protected = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    let has_query = op
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query));
    let responses = &mut op.responses.responses;
    let mut add = |status: &str, name: &str| {
        responses
            .entry(status.into())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    };
    add("408", "RequestTimeout");
    add("414", "UriTooLong");
    if protected {
        add("401", "Unauthorized");
    }
    if has_body {
        add("413", "PayloadTooLarge");
    }
    if has_query {
        add("422", "InvalidQuery");
    }
    if let Some(overloaded) = responses.get_mut("429") {
        *overloaded = RefOr::Ref(Ref::from_response_name("Overloaded"));
    }
}

/// The shared responses, by component name.
fn shared() -> [(&'static str, Response); 6] {
    let error = |description: String| {
        Response::builder().description(description).content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
    };
    let text = |description: &str| {
        let schema = ObjectBuilder::new().schema_type(Type::String).build();
        Header::builder()
            .schema(schema)
            .description(Some(description))
            .build()
    };
    let seconds = ObjectBuilder::new().schema_type(Type::Integer).build();
    let retry_after = Header::builder()
        .schema(seconds)
        .description(Some("Seconds to wait before trying again"))
        .build();
    [
        (
            "Unauthorized",
            error("Missing or wrong API key: send `Authorization: Bearer <key>` (the scheme in any case)".into())
                .header("WWW-Authenticate", text("`Bearer`"))
                .build(),
        ),
        (
            "RequestTimeout",
            error("No answer within the server's request timeout (a body sent too slowly included)".into()).build(),
        ),
        (
            "PayloadTooLarge",
            error("The body is larger than `--max-json-bytes` (`--max-dataset-bytes` for uploads)".into()).build(),
        ),
        (
            "InvalidQuery",
            error("A query parameter does not parse, is out of range or is unknown (`error.param` names it)".into()).build(),
        ),
        (
            "UriTooLong",
            error(format!("The URI (path and query) is longer than {MAX_URI_BYTES} bytes")).build(),
        ),
        (
            "Overloaded",
            error("Too much work waiting (the inference queue is full); retry after `Retry-After` seconds".into())
                .header("Retry-After", retry_after)
                .build(),
        ),
    ]
}
