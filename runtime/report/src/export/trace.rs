//! `--trace FILE`: the run in the Chrome trace event format, which
//! Perfetto (ui.perfetto.dev) and `chrome://tracing` open. One lane per job
//! slot, a span per stage with its phases inside it, cached stages marked.

use serde_json::{Value, json};

use crate::Status;
use crate::record::{RunRecord, lanes};

/// The trace of `record`, as JSON.
pub fn render(record: &RunRecord) -> Value {
    let lanes = lanes(&record.stages);
    let mut events = vec![json!({
        "name": "process_name", "ph": "M", "pid": 1,
        "args": { "name": format!("cairn {} `{}` ({})", record.command, record.pipeline, record.id) },
    })];
    let used = lanes.iter().copied().max().map_or(0, |lane| lane + 1);
    for lane in 0..used {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": 1, "tid": lane + 1,
            "args": { "name": format!("job slot {}", lane + 1) },
        }));
    }
    for (stage, lane) in record.stages.iter().zip(&lanes) {
        let Some(status) = stage.status else { continue };
        if status == Status::Skipped {
            continue;
        }
        let cached = status == Status::Cached;
        events.push(json!({
            "name": stage.name,
            "cat": if cached { "stage,cached" } else { "stage" },
            "ph": "X",
            "pid": 1,
            "tid": lane + 1,
            "ts": stage.start_us,
            "dur": stage.duration_us.max(1),
            "args": {
                "status": status.as_str(),
                "cached": cached,
                "key": stage.key.map(|key| key.to_string()),
                "outputs": stage.outputs_digest.map(|digest| digest.to_string()),
                "attempts": stage.attempts,
                "error": stage.error,
            },
        }));
        for phase in &stage.phases {
            events.push(json!({
                "name": phase.name,
                "cat": "phase",
                "ph": "X",
                "pid": 1,
                "tid": lane + 1,
                "ts": stage.start_us + phase.start_us,
                "dur": phase.duration_us,
                "args": { "stage": stage.name },
            }));
        }
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "run": record.id,
            "pipeline": record.pipeline,
            "status": record.status,
            "commit": record.commit,
        },
    })
}
