//! `std:http`: one HTTP request with expectations, retried with backoff
//! until a deadline: smoke tests after a deploy and health checks.
//!
//! `with` keys (or the URL as the first of `args`):
//! - `url` (required), `method` (`GET`), `headers` (`Name: value` lines),
//!   `body` (text) or `body_file` (a path under `/src` or `/in/<stage>`);
//! - `expect_status` (`2xx` by default; `200`, `200,204`, `2xx,304`),
//!   `expect_body_contains`, and `expect_json_pointer` with
//!   `expect_json_equals` (the value at that JSON pointer, a string compared
//!   as is, anything else as JSON text);
//! - `timeout` per attempt (`30s`), `retries` (0), `deadline` (retry until
//!   this long after the start; with no `retries`, as often as fits),
//!   `backoff` (the first pause, `1s`, doubling up to 30s);
//! - `save_body`: a file name under `/out` to keep the last response in.
//!
//! Outputs: `status`, `elapsed_ms` (the attempt that decided), `attempts`.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_sdk::http::{Request, Response, header_lines};
use cairn_sdk::{Invocation, Outcome, Stage, fs};

struct Http;

impl Stage for Http {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        let check = Check::from(&invocation)?;
        let request = request(&invocation)?;
        let started = Instant::now();
        let mut pause = check.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let begun = Instant::now();
            let (response, why) = match request.send() {
                Ok(response) => match check.verdict(&response) {
                    Ok(()) => return finish(&check, &response, begun.elapsed(), attempt),
                    Err(why) => (Some(response), why),
                },
                Err(error) if !error.is_transient() => return Err(error.to_string().into()),
                Err(error) => (None, error.to_string()),
            };
            let within_deadline = check
                .deadline
                .is_none_or(|deadline| started.elapsed() + pause < deadline);
            let attempts_left = match check.retries {
                Some(retries) => attempt <= retries,
                None => check.deadline.is_some(),
            };
            if !(within_deadline && attempts_left) {
                if let (Some(response), Some(name)) = (&response, &check.save_body) {
                    std::fs::write(fs::out().join(name), &response.body)?;
                }
                let tries = if attempt == 1 {
                    String::new()
                } else {
                    format!(" (after {attempt} attempts in {:.1}s)", started.elapsed().as_secs_f64())
                };
                return Err(format!("{why}{tries}").into());
            }
            cairn_sdk::warn!("attempt {attempt}: {why}; retrying in {:.1}s", pause.as_secs_f64());
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    }
}

/// The request the invocation describes.
fn request(invocation: &Invocation) -> cairn_sdk::Result<Request> {
    let url = invocation
        .config("url")
        .or(invocation.args.first().map(String::as_str))
        .ok_or("std:http needs a URL: `with = { url = \"https://...\" }`")?;
    let mut request = Request::new(invocation.config("method").unwrap_or("GET"), url)
        .timeout(duration(invocation, "timeout")?.unwrap_or(Duration::from_secs(30)));
    for (name, value) in header_lines(invocation.config("headers").unwrap_or_default())? {
        request = request.header(&name, &value);
    }
    if let Some(body) = invocation.config("body") {
        request = request.body(body.as_bytes());
    }
    if let Some(file) = invocation.config("body_file") {
        request = request
            .body_file(file)
            .map_err(|error| format!("cannot read `body_file` {file}: {error}"))?;
    }
    Ok(request)
}

/// What a response must be, and how long to keep trying for one.
struct Check {
    statuses: Vec<StatusPattern>,
    body_contains: Option<String>,
    json: Option<(String, String)>,
    retries: Option<u32>,
    deadline: Option<Duration>,
    backoff: Duration,
    save_body: Option<String>,
}

/// `200` or `2xx`.
enum StatusPattern {
    Exact(u16),
    Class(u16),
}

impl Check {
    fn from(invocation: &Invocation) -> cairn_sdk::Result<Self> {
        let statuses = invocation
            .config("expect_status")
            .unwrap_or("2xx")
            .split(',')
            .map(|pattern| {
                let pattern = pattern.trim();
                let bad = || format!("`expect_status` `{pattern}` is not a status like `200` or `2xx`");
                match pattern.strip_suffix("xx") {
                    Some(class) => class.parse::<u16>().map(StatusPattern::Class).map_err(|_| bad()),
                    None => pattern.parse::<u16>().map(StatusPattern::Exact).map_err(|_| bad()),
                }
            })
            .collect::<Result<_, _>>()?;
        let json = match (
            invocation.config("expect_json_pointer"),
            invocation.config("expect_json_equals"),
        ) {
            (Some(pointer), Some(value)) => Some((pointer.to_owned(), value.to_owned())),
            (None, None) => None,
            _ => return Err("`expect_json_pointer` and `expect_json_equals` go together".into()),
        };
        let save_body = invocation.config("save_body").map(str::to_owned);
        if let Some(name) = &save_body
            && (name.is_empty() || Path::new(name).components().count() != 1)
        {
            return Err(format!("`save_body` `{name}` must be a file name (it is written under /out)").into());
        }
        Ok(Self {
            statuses,
            body_contains: invocation.config("expect_body_contains").map(str::to_owned),
            json,
            retries: invocation
                .config("retries")
                .map(|text| {
                    text.parse()
                        .map_err(|_| format!("`retries` `{text}` is not a whole number"))
                })
                .transpose()?,
            deadline: duration(invocation, "deadline")?,
            backoff: duration(invocation, "backoff")?.unwrap_or(Duration::from_secs(1)),
            save_body,
        })
    }

    /// `Ok` when the response meets every expectation, else what it missed.
    fn verdict(&self, response: &Response) -> Result<(), String> {
        let status = response.status;
        let status_ok = self.statuses.iter().any(|pattern| match pattern {
            StatusPattern::Exact(expected) => status == *expected,
            StatusPattern::Class(class) => status / 100 == *class,
        });
        if !status_ok {
            return Err(format!("{} answered {status}{}", response.url, excerpt(response)));
        }
        if let Some(needle) = &self.body_contains
            && !response.text().contains(needle.as_str())
        {
            return Err(format!(
                "{} answered {status} without `{needle}` in its body{}",
                response.url,
                excerpt(response)
            ));
        }
        if let Some((pointer, expected)) = &self.json {
            let document: serde_json::Value = serde_json::from_slice(&response.body).map_err(|error| {
                format!(
                    "{} answered {status} with a body that is not JSON: {error}",
                    response.url
                )
            })?;
            let found = document
                .pointer(pointer)
                .ok_or_else(|| format!("{} answered JSON without `{pointer}`", response.url))?;
            let found_text = match found {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            if &found_text != expected {
                return Err(format!(
                    "{} answered `{pointer}` = {found_text}, expected {expected}",
                    response.url
                ));
            }
        }
        Ok(())
    }
}

fn finish(check: &Check, response: &Response, elapsed: Duration, attempts: u32) -> cairn_sdk::Result<Outcome> {
    if let Some(name) = &check.save_body {
        std::fs::write(fs::out().join(name), &response.body)?;
    }
    let elapsed_ms = elapsed.as_millis();
    cairn_sdk::info!("{} answered {} in {elapsed_ms} ms", response.url, response.status);
    Ok(Outcome::new()
        .summary(format!(
            "{} {} in {elapsed_ms} ms{}",
            response.status,
            response.url,
            if attempts > 1 {
                format!(" (attempt {attempts})")
            } else {
                String::new()
            }
        ))
        .output("status", response.status)
        .output("elapsed_ms", elapsed_ms)
        .output("attempts", attempts))
}

/// The start of a body, for messages.
fn excerpt(response: &Response) -> String {
    let text = response.text();
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let cut: String = text.chars().take(200).collect();
    let more = if cut.len() < text.len() { "…" } else { "" };
    format!(": {cut}{more}")
}

fn duration(invocation: &Invocation, key: &str) -> cairn_sdk::Result<Option<Duration>> {
    invocation
        .config(key)
        .map(|text| {
            humantime::parse_duration(text)
                .map_err(|error| format!("`{key}` `{text}` is not a duration like `30s`: {error}").into())
        })
        .transpose()
}

cairn_sdk::export!(Http);
