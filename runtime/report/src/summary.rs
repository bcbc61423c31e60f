//! The table printed at the end of a run: each stage, how it ended, how long
//! it took, and the one line that matters most about it.

use std::sync::Mutex;
use std::time::Duration;

use super::style::{Style, elapsed, paint};
use super::{Event, Status};

struct Row {
    stage: String,
    status: Status,
    duration: Duration,
    detail: String,
}

/// Collects finished stages as they are reported.
#[derive(Default)]
pub(super) struct Summary {
    rows: Mutex<Vec<Row>>,
}

impl Summary {
    /// Remembers a `stage_finished` event; ignores the others.
    pub(super) fn record(&self, event: &Event) {
        if let Event::StageFinished {
            stage,
            status,
            duration_ms,
            error,
            reason,
            summary,
            ..
        } = event
        {
            let detail = error
                .as_ref()
                .or(reason.as_ref())
                .or(summary.as_ref())
                .cloned()
                .unwrap_or_default();
            let row = Row {
                stage: stage.clone(),
                status: *status,
                duration: Duration::from_millis(*duration_ms),
                detail: detail.lines().next().unwrap_or_default().to_owned(),
            };
            if let Ok(mut rows) = self.rows.lock() {
                rows.push(row);
            }
        }
    }

    /// The table and the closing line, for a `pipeline_finished` event.
    pub(super) fn render(&self, finished: &Event) -> String {
        let Event::PipelineFinished {
            status,
            duration_ms,
            succeeded,
            cached,
            failed,
            skipped,
        } = finished
        else {
            return String::new();
        };
        let rows = self
            .rows
            .lock()
            .map(|rows| {
                rows.iter()
                    .map(|row| (row.stage.clone(), row.status, row.duration, row.detail.clone()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let width = rows
            .iter()
            .map(|(stage, ..)| stage.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!("\n{:<width$}  {:<9}  {:>9}\n", "stage", "status", "duration");
        for (stage, row_status, duration, detail) in rows {
            let status_text = format!("{:<9}", row_status.as_str());
            let status_text = match row_status {
                Status::Succeeded | Status::Cached => paint(&status_text, Style::Success),
                Status::Failed => paint(&status_text, Style::Error),
                Status::Skipped => paint(&status_text, Style::Dim),
            };
            let time = if row_status == Status::Skipped {
                "-".to_owned()
            } else {
                elapsed(duration)
            };
            out.push_str(&format!(
                "{stage:<width$}  {status_text}  {time:>9}  {}\n",
                paint(&detail, Style::Dim)
            ));
        }
        let mut counts = vec![format!("{succeeded} succeeded")];
        if *cached > 0 {
            counts.push(format!("{cached} cached"));
        }
        if *failed > 0 {
            counts.push(format!("{failed} failed"));
        }
        if *skipped > 0 {
            counts.push(format!("{skipped} skipped"));
        }
        let verdict = match *status {
            "succeeded" => paint("pipeline succeeded", Style::Success),
            "interrupted" => paint("pipeline interrupted", Style::Error),
            _ => paint("pipeline failed", Style::Error),
        };
        out.push_str(&format!(
            "{verdict}: {} in {}\n",
            counts.join(", "),
            elapsed(Duration::from_millis(*duration_ms))
        ));
        out
    }
}
