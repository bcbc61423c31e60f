//! OpenTelemetry: a recorded run as OTLP trace data in its JSON encoding
//! (`http/json`), the body of a `POST /v1/traces` that any OpenTelemetry
//! collector, Jaeger or Tempo takes. One trace per run: a root span for the
//! run, a span per stage that ran or was reused (its key, status and
//! whether it was cached as attributes), its phases inside it.
//!
//! Ids are derived from the run's id (itself unique), so exporting a run
//! again yields the same trace, not a second one.

use serde_json::{Value, json};

use crate::Status;
use crate::record::RunRecord;

/// OTLP's `SPAN_KIND_INTERNAL`.
const INTERNAL: u32 = 1;

/// `STATUS_CODE_OK` and `STATUS_CODE_ERROR`.
const OK: u32 = 1;
const ERROR: u32 = 2;

/// The `ExportTraceServiceRequest` of `record`, for a service called
/// `service` with the extra resource attributes `resource`.
pub fn render(record: &RunRecord, service: &str, resource: &[(String, String)]) -> Value {
    let trace = hex_id(&format!("trace\0{}", record.id), 16);
    let root = hex_id(&format!("run\0{}", record.id), 8);
    let started_ns = u128::from(record.started_ms) * 1_000_000;
    let at = |micros: u64| (started_ns + u128::from(micros) * 1_000).to_string();
    let mut spans = vec![json!({
        "traceId": trace,
        "spanId": root,
        "name": format!("cairn {} {}", record.command, record.pipeline),
        "kind": INTERNAL,
        "startTimeUnixNano": at(0),
        "endTimeUnixNano": at(record.duration_ms * 1000),
        "attributes": attributes(&[
            ("cairn.run", json!(record.id)),
            ("cairn.pipeline", json!(record.pipeline)),
            ("cairn.status", json!(record.status)),
            ("vcs.ref.head.revision", json!(record.commit)),
            ("vcs.ref.head.name", json!(record.branch)),
        ]),
        "status": { "code": if record.status == "succeeded" { OK } else { ERROR } },
    })];
    for stage in &record.stages {
        let Some(status) = stage.status.filter(|status| *status != Status::Skipped) else {
            continue;
        };
        let span = hex_id(&format!("stage\0{}\0{}", record.id, stage.name), 8);
        let mut state = json!({ "code": if status == Status::Failed { ERROR } else { OK } });
        if let Some(error) = &stage.error {
            state["message"] = json!(error);
        }
        spans.push(json!({
            "traceId": trace,
            "spanId": span,
            "parentSpanId": root,
            "name": stage.name,
            "kind": INTERNAL,
            "startTimeUnixNano": at(stage.start_us),
            "endTimeUnixNano": at(stage.start_us + stage.duration_us),
            "attributes": attributes(&[
                ("cairn.stage", json!(stage.name)),
                ("cairn.status", json!(status.as_str())),
                ("cairn.cached", json!(status == Status::Cached)),
                ("cairn.key", json!(stage.key.map(|key| key.to_string()))),
                ("cairn.outputs", json!(stage.outputs_digest.map(|digest| digest.to_string()))),
                ("cairn.attempts", json!(stage.attempts)),
            ]),
            "status": state,
        }));
        for phase in &stage.phases {
            spans.push(json!({
                "traceId": trace,
                "spanId": hex_id(&format!("phase\0{}\0{}\0{}", record.id, stage.name, phase.start_us), 8),
                "parentSpanId": span,
                "name": phase.name,
                "kind": INTERNAL,
                "startTimeUnixNano": at(stage.start_us + phase.start_us),
                "endTimeUnixNano": at(stage.start_us + phase.start_us + phase.duration_us),
            }));
        }
    }
    let mut resource_attributes = vec![("service.name".to_owned(), json!(service))];
    resource_attributes.extend(resource.iter().map(|(key, value)| (key.clone(), json!(value))));
    let resource_attributes: Vec<(&str, Value)> = resource_attributes
        .iter()
        .map(|(key, value)| (key.as_str(), value.clone()))
        .collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": attributes(&resource_attributes) },
            "scopeSpans": [{
                "scope": { "name": "cairn", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }],
    })
}

/// OTLP key-value attributes; absent values are left out.
fn attributes(pairs: &[(&str, Value)]) -> Vec<Value> {
    pairs
        .iter()
        .filter_map(|(key, value)| {
            let value = match value {
                Value::String(text) => json!({ "stringValue": text }),
                Value::Bool(flag) => json!({ "boolValue": flag }),
                // int64 travels as a decimal string in OTLP's JSON.
                Value::Number(number) => json!({ "intValue": number.to_string() }),
                _ => return None,
            };
            Some(json!({ "key": key, "value": value }))
        })
        .collect()
}

/// `bytes` bytes of a digest of `seed`, in hex (OTLP's JSON encoding of ids).
fn hex_id(seed: &str, bytes: usize) -> String {
    blake3::hash(seed.as_bytes()).to_hex()[..bytes * 2].to_owned()
}
