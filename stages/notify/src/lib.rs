//! `std:notify`: posts a message to a chat webhook, in the JSON body Slack
//! and Mattermost incoming webhooks both take (`{"text": ...}`). The
//! natural `if` stage after a failure.
//!
//! `with` keys: `url` (required: the webhook; a token in its path is a
//! secret, so prefer a webhook that takes `http_auth`), `text` (default: a
//! line built from `status` and `pipeline`), `status` (`succeeded`,
//! `failed`...: `${{ stages.NAME.result }}`), `pipeline`, `channel`,
//! `username`, `icon_emoji`. The webhook must answer 2xx.
//!
//! Outputs: `status` (the webhook's HTTP status).

use cairn_sdk::http::Request;
use cairn_sdk::{Invocation, Outcome, Stage};

struct Notify;

impl Stage for Notify {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        let url = invocation
            .config("url")
            .ok_or("std:notify needs the webhook: `with = { url = \"https://...\" }`")?;
        let text = match invocation.config("text") {
            Some(text) => text.to_owned(),
            None => default_text(&invocation),
        };
        let mut message = serde_json::Map::new();
        message.insert("text".into(), text.clone().into());
        for key in ["channel", "username", "icon_emoji"] {
            if let Some(value) = invocation.config(key) {
                message.insert(key.into(), value.into());
            }
        }
        let response = Request::post(url)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&message)?)
            .send()?;
        if !response.is_success() {
            return Err(format!("the webhook answered {}: {}", response.status, response.text().trim()).into());
        }
        Ok(Outcome::new()
            .summary(format!("posted: {text}"))
            .output("status", response.status))
    }
}

/// `pipeline: failed` style line, with a mark for the status.
fn default_text(invocation: &Invocation) -> String {
    let status = invocation.config("status").unwrap_or("finished");
    let mark = match status {
        "succeeded" | "cached" => "✅",
        "failed" => "❌",
        "skipped" => "⏭️",
        _ => "ℹ️",
    };
    let pipeline = invocation.config("pipeline").unwrap_or(&invocation.stage);
    format!("{mark} {pipeline}: {status}")
}

cairn_sdk::export!(Notify);
