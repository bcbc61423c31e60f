//! OpenTelemetry export: with `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, a run's trace is sent over
//! OTLP/HTTP when it ends, read from the standard variables. A collector
//! that cannot be reached is a warning, never a failed run; header values
//! (tokens) are never printed.

use std::time::Duration;

use anyhow::Context;

use cairn::report::export::otlp;
use cairn::report::record::RunRecord;
use cairn::report::{Style, paint};

/// Where and how to send traces, from the environment; `None` when
/// nothing asks for an export.
#[derive(Debug)]
struct Exporter {
    endpoint: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
    service: String,
    resource: Vec<(String, String)>,
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

/// `key=value,key=value`, values percent-decoded, as the specification writes lists.
fn pairs(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8_lossy();
            Some((key.trim().to_owned(), value.into_owned()))
        })
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

impl Exporter {
    fn from_env() -> anyhow::Result<Option<Self>> {
        if variable("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true"))
            || variable("OTEL_TRACES_EXPORTER").is_some_and(|value| value == "none")
        {
            return Ok(None);
        }
        let endpoint = match (
            variable("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            variable("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(traces), _) => traces,
            (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        let protocol =
            variable("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| variable("OTEL_EXPORTER_OTLP_PROTOCOL"));
        if protocol.as_deref() == Some("grpc") {
            anyhow::bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL is `grpc`; cairn sends OTLP over HTTP\nhint: point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port (4318) and set OTEL_EXPORTER_OTLP_PROTOCOL=http/json"
            );
        }
        let timeout =
            match variable("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT").or_else(|| variable("OTEL_EXPORTER_OTLP_TIMEOUT")) {
                Some(millis) => Duration::from_millis(
                    millis
                        .trim()
                        .parse()
                        .with_context(|| format!("OTEL_EXPORTER_OTLP_TIMEOUT is `{millis}`, not milliseconds"))?,
                ),
                None => Duration::from_secs(10),
            };
        let headers = variable("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .or_else(|| variable("OTEL_EXPORTER_OTLP_HEADERS"))
            .map(|text| pairs(&text))
            .unwrap_or_default();
        let mut resource = variable("OTEL_RESOURCE_ATTRIBUTES")
            .map(|text| pairs(&text))
            .unwrap_or_default();
        let service = variable("OTEL_SERVICE_NAME")
            .or_else(|| {
                let position = resource.iter().position(|(key, _)| key == "service.name")?;
                Some(resource.remove(position).1)
            })
            .unwrap_or_else(|| "cairn".to_owned());
        Ok(Some(Self {
            endpoint,
            headers,
            timeout,
            service,
            resource,
        }))
    }

    async fn send(&self, record: &RunRecord) -> anyhow::Result<()> {
        cairn::oci::registry::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let body = serde_json::to_vec(&otlp::render(record, &self.service, &self.resource))?;
        let mut request = client
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request.send().await?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "the collector answered {status}");
        Ok(())
    }
}

/// Sends `record`'s trace where the environment says, if it says so.
pub(crate) fn export(record: &RunRecord) {
    let exporter = match Exporter::from_env() {
        Ok(Some(exporter)) => exporter,
        Ok(None) => return,
        Err(error) => {
            eprintln!("{} no trace exported: {error:#}", paint("warning:", Style::Warn));
            return;
        }
    };
    let sent = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(exporter.send(record)));
    if let Err(error) = sent {
        // Only the endpoint: the headers may hold a token.
        eprintln!(
            "{} cannot export run {}'s trace to {}: {error:#}",
            paint("warning:", Style::Warn),
            record.id,
            exporter.endpoint
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_lists_are_split_and_percent_decoded() {
        assert_eq!(
            super::pairs("Authorization=Bearer%20abc, x-tenant = acme,broken"),
            [
                ("Authorization".to_owned(), "Bearer abc".to_owned()),
                ("x-tenant".to_owned(), "acme".to_owned())
            ]
        );
    }
}
