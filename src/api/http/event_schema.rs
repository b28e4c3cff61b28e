//! The OpenAPI schema of a job log entry ([`super::events::JobEvent`]): one
//! object per shape of `data`, told apart by `kind` (a discriminator), so a
//! generated client types `data` by kind — after `if (e.kind === "eval")`,
//! `e.data.accuracy` is a number. The shapes are the types the writers build
//! ([`crate::store::event_data`]); which kind carries which is the exhaustive
//! match in [`data_of`], so a new kind cannot be left out.

use std::borrow::Cow;
use std::collections::BTreeMap;

use strum::VariantArray;
use utoipa::openapi::schema::{
    Discriminator, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::events::{EventHead, JobEvent};
use crate::store::event_data::{
    CheckpointData, CheckpointSkippedData, CreatedData, ErrorData, EvalData, ExportRetryData,
    PlanData, StartedData, SucceededData, TrackingData, WebhookData,
};
use crate::store::EventKind;
use crate::train::StepLog;

/// A `data` schema: its name, and how to register it with what it refers to.
#[derive(Clone, Copy)]
struct Data {
    name: fn() -> Cow<'static, str>,
    schema: fn() -> RefOr<Schema>,
    refers_to: fn(&mut Vec<(String, RefOr<Schema>)>),
    /// The kind carries it only sometimes (`created`: only from `/v1`,
    /// with metadata), else `null`.
    optional: bool,
}

fn data<T: ToSchema>() -> Option<Data> {
    Some(Data {
        name: T::name,
        schema: T::schema,
        refers_to: T::schemas,
        optional: false,
    })
}

/// What an entry of `kind` carries: the shape's name (the entry's schema is
/// `JobEvent` + it) and its `data`; `None` for no data.
struct Shape {
    name: &'static str,
    data: Option<Data>,
}

fn data_of(kind: EventKind) -> Shape {
    use EventKind as K;
    let shape = |name, data| Shape { name, data };
    match kind {
        K::Created => shape(
            "Created",
            data::<CreatedData>().map(|d| Data {
                optional: true,
                ..d
            }),
        ),
        K::Started => shape("Started", data::<StartedData>()),
        K::Plan => shape("Plan", data::<PlanData>()),
        K::Step => shape("Step", data::<StepLog>()),
        K::Eval => shape("Eval", data::<EvalData>()),
        K::Checkpoint => shape("Checkpoint", data::<CheckpointData>()),
        K::CheckpointSkipped => shape("CheckpointSkipped", data::<CheckpointSkippedData>()),
        K::ExportRetry => shape("ExportRetry", data::<ExportRetryData>()),
        K::Succeeded => shape("Succeeded", data::<SucceededData>()),
        K::Error => shape("Error", data::<ErrorData>()),
        K::WebhookDelivered | K::WebhookFailed => shape("Webhook", data::<WebhookData>()),
        K::Tracking => shape("Tracking", data::<TrackingData>()),
        K::Resumed
        | K::EarlyStopped
        | K::CancelRequested
        | K::Cancelled
        | K::Retried
        | K::Interrupted
        | K::LeaseExpired => shape("Note", None),
    }
}

/// The shapes in a fixed order, each with the kinds that have it.
fn shapes() -> Vec<(Shape, Vec<EventKind>)> {
    let mut out: Vec<(Shape, Vec<EventKind>)> = Vec::new();
    for &kind in EventKind::VARIANTS {
        let shape = data_of(kind);
        match out.iter_mut().find(|(s, _)| s.name == shape.name) {
            Some((_, kinds)) => kinds.push(kind),
            None => out.push((shape, vec![kind])),
        }
    }
    out
}

fn schema_name(shape: &Shape) -> String {
    format!("JobEvent{}", shape.name)
}

/// The entry's object for `shape`: the common fields, `kind` limited to
/// `kinds`, and `data` as the shape says.
fn variant(shape: &Shape, kinds: &[EventKind]) -> Schema {
    let RefOr::T(Schema::Object(head)) = EventHead::schema() else {
        unreachable!("EventHead derives an object schema")
    };
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let kind = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names.clone()))
        .description(Some("What happened (also the SSE event's name)."));
    let mut object = ObjectBuilder::new().property("kind", kind).required("kind");
    for (name, property) in head.properties {
        object = object.property(name, property);
    }
    for name in head.required {
        object = object.required(name);
    }
    let data: RefOr<Schema> = match &shape.data {
        Some(d) if !d.optional => Ref::from_schema_name((d.name)()).into(),
        Some(d) => OneOfBuilder::new()
            .item(Ref::from_schema_name((d.name)()))
            .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::Null)))
            .into(),
        None => ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Null))
            .description(Some("Always null: this kind carries no data."))
            .into(),
    };
    let description = match &shape.data {
        Some(_) => format!("A `{}` entry of a job's log.", names.join("` or `")),
        None => format!("A `{}` entry of a job's log: no data.", names.join("`, `")),
    };
    object
        .property("data", data)
        .required("data")
        .description(Some(description))
        .into()
}

impl ToSchema for JobEvent {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        for (shape, kinds) in shapes() {
            schemas.push((schema_name(&shape), variant(&shape, &kinds).into()));
        }
        for data in shapes().into_iter().filter_map(|(shape, _)| shape.data) {
            schemas.push(((data.name)().into_owned(), (data.schema)()));
            (data.refers_to)(schemas);
        }
        // The discriminator's names, also the `kind` query parameter's.
        schemas.push((EventKind::name().into_owned(), EventKind::schema()));
        EventHead::schemas(schemas);
    }
}

/// One of the shapes, by `kind`.
impl PartialSchema for JobEvent {
    fn schema() -> RefOr<Schema> {
        let mut mapping = BTreeMap::new();
        let mut one_of = OneOfBuilder::new().description(Some(
            "One entry of a job's log; over SSE, the `data` of an event named by its \
             `kind`. Its `data` has the shape its `kind` gives (null for the kinds \
             that carry none).",
        ));
        for (shape, kinds) in shapes() {
            let name = schema_name(&shape);
            for kind in kinds {
                mapping.insert(
                    kind.as_str().to_string(),
                    format!("#/components/schemas/{name}"),
                );
            }
            one_of = one_of.item(Ref::from_schema_name(name));
        }
        let mut discriminator = Discriminator::new("kind");
        discriminator.mapping = mapping;
        one_of.discriminator(Some(discriminator)).into()
    }
}
