//! Last touches on the generated OpenAPI document, so that linters (Redocly,
//! Spectral) and client generators read it without complaint:
//!
//! * every operation says its security: the open ones (`/health`, `/metrics`,
//!   which probes and scrapers call without a key) an explicit `security: []`;
//! * a property that utoipa wraps in a one-item `oneOf` (an inline enum or
//!   object that carries its own description or default) is the item itself,
//!   with that description and default moved onto it.

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, Schema};
use utoipa::openapi::RefOr;

/// Applies the touches the module's documentation lists.
pub(super) struct Tidy;

impl utoipa::Modify for Tidy {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            operations
                .into_iter()
                .flatten()
                .for_each(open_unless_guarded);
        }
        if let Some(components) = openapi.components.as_mut() {
            components
                .schemas
                .values_mut()
                .for_each(unwrap_single_one_of);
        }
    }
}

/// An operation with no security requirement is open: say so (`[]`).
fn open_unless_guarded(op: &mut Operation) {
    op.security.get_or_insert_with(Vec::new);
}

/// Replaces every one-item `oneOf` holding an inline schema, at any depth of
/// `schema`, by that schema.
fn unwrap_single_one_of(schema: &mut RefOr<Schema>) {
    let RefOr::T(inner) = schema else { return };
    if let Schema::OneOf(one) = inner {
        if let [RefOr::T(Schema::Object(item))] = one.items.as_slice() {
            let mut item: Object = item.clone();
            item.description = one.description.take().or(item.description);
            item.default = one.default.take().or(item.default);
            *inner = Schema::Object(item);
        }
    }
    match inner {
        Schema::Object(o) => o.properties.values_mut().for_each(unwrap_single_one_of),
        Schema::Array(a) => {
            if let utoipa::openapi::schema::ArrayItems::RefOrSchema(items) = &mut a.items {
                unwrap_single_one_of(items);
            }
        }
        Schema::OneOf(one) => one.items.iter_mut().for_each(unwrap_single_one_of),
        Schema::AllOf(all) => all.items.iter_mut().for_each(unwrap_single_one_of),
        Schema::AnyOf(any) => any.items.iter_mut().for_each(unwrap_single_one_of),
        _ => {}
    }
}
