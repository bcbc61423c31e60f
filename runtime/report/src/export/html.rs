//! `cairn report`: one self-contained HTML file of a run, to open from
//! `file://` or attach to a ticket. Its styles and script are inline and
//! it fetches nothing; the run's record is embedded as JSON and drawn by
//! the script (graph, timeline by job slot, each stage's details).

use crate::record::{RunRecord, lanes};

/// The page, with `/*RECORD*/` where the record goes.
const TEMPLATE: &str = include_str!("report.html");

/// The report of `record`.
pub fn render(record: &RunRecord) -> Result<String, serde_json::Error> {
    // What the page shows but the record derives, worked out here once
    // (the trace lays out its lanes the same way), not again in the script.
    let mut page = serde_json::to_value(record)?;
    if let Some(stages) = page["stages"].as_array_mut() {
        for ((value, stage), lane) in stages.iter_mut().zip(&record.stages).zip(lanes(&record.stages)) {
            value["lane"] = lane.into();
            if let Some(why) = stage.explanation() {
                value["why"] = why.as_ref().into();
            }
        }
    }
    let json = serde_json::to_string(&page)?;
    // Inside a <script> element, `</` could end it early and `<!--` open a
    // comment: JSON allows both escaped.
    let json = json.replace("</", "<\\/").replace("<!--", "<\\u0021--");
    Ok(TEMPLATE.replacen("/*RECORD*/", &json, 1))
}
