//! Registry credentials where docker keeps them, so `docker login`, CI
//! secrets written as a docker config, and `cairn login` all work:
//! `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), its
//! `auths` entries (basic `auth`, or a `registrytoken` sent as a bearer
//! token), and the credential helpers it names (`credHelpers`, `credsStore`).
//!
//! cairn rewrites only the entry it logs into and keeps everything else in
//! the file as it was.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Value, json};

use super::OciError;
use cairn_core::cache_dir::write_atomically;

/// What cairn sends a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Nothing: public repositories.
    Anonymous,
    /// HTTP basic auth (also how token services take a password).
    Basic {
        /// The user.
        username: String,
        /// The password or access token.
        password: String,
    },
    /// A bearer token, sent as is.
    Bearer(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Anonymous => formatter.write_str("Anonymous"),
            Credential::Basic { username, .. } => write!(formatter, "Basic({username}, <redacted>)"),
            Credential::Bearer(_) => formatter.write_str("Bearer(<redacted>)"),
        }
    }
}

/// A credential and where it came from, for error messages.
#[derive(Clone, Debug)]
pub struct Found {
    /// The credential.
    pub credential: Credential,
    /// The file or helper it was read from (empty for anonymous).
    pub source: String,
}

impl Found {
    /// `anonymous access`, `the credentials of user \`ci\` from ...`: for
    /// "the registry refused ...".
    pub fn describe(&self) -> String {
        match &self.credential {
            Credential::Anonymous => "anonymous access".to_owned(),
            Credential::Basic { username, .. } => {
                format!("the credentials of user `{username}` from {}", self.source)
            }
            Credential::Bearer(_) => format!("the token from {}", self.source),
        }
    }
}

/// The docker config file cairn reads and `cairn login` writes.
pub fn config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(folder) if !folder.is_empty() => PathBuf::from(folder).join("config.json"),
        _ => dirs::home_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".docker")
            .join("config.json"),
    }
}

/// The credential for `host`: its credential helper's, else its `auths`
/// entry's, else anonymous.
pub fn lookup(host: &str) -> Result<Found, OciError> {
    let path = config_path();
    let config = read_config(&path)?;
    let anonymous = Found {
        credential: Credential::Anonymous,
        source: String::new(),
    };
    if let Some(helper) = helper_for(&config, host) {
        match helper_get(&helper, host) {
            Ok(Some(credential)) => {
                return Ok(Found {
                    credential,
                    source: format!("the credential helper `docker-credential-{helper}`"),
                });
            }
            Ok(None) => {}
            Err(problem) => tracing::warn!(
                "cannot ask the credential helper `docker-credential-{helper}` (named in {}) for `{host}`: {problem}",
                path.display()
            ),
        }
    }
    let Some(entry) = auth_entry(&config, host) else {
        return Ok(anonymous);
    };
    let credential_error = |problem: String| OciError::Credentials {
        path: path.clone(),
        problem: format!("the entry for `{host}` {problem}"),
    };
    let source = format!("`{}`", path.display());
    if let Some(token) = entry["registrytoken"].as_str().filter(|token| !token.is_empty()) {
        return Ok(Found {
            credential: Credential::Bearer(token.to_owned()),
            source,
        });
    }
    if entry["identitytoken"].as_str().is_some_and(|token| !token.is_empty()) {
        return Err(credential_error(
            "holds an identity token (an OAuth refresh token), which cairn cannot exchange\nhint: log in with a \
             user and a password or access token: `cairn login HOST --username USER --password-stdin`"
                .to_owned(),
        ));
    }
    let (username, password) = match entry["auth"].as_str().filter(|auth| !auth.is_empty()) {
        Some(auth) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    credential_error("has an `auth` value that is not base64 of `user:password`".to_owned())
                })?;
            let (username, password) = decoded.split_once(':').ok_or_else(|| {
                credential_error("has an `auth` value without a `:` between user and password".to_owned())
            })?;
            (username.to_owned(), password.to_owned())
        }
        None => match (entry["username"].as_str(), entry["password"].as_str()) {
            (Some(username), Some(password)) => (username.to_owned(), password.to_owned()),
            _ => return Ok(anonymous),
        },
    };
    Ok(Found {
        credential: Credential::Basic { username, password },
        source,
    })
}

/// Saves `credential` for `host` (through the configured credential store,
/// else in the config file) and returns where it went.
pub fn store(host: &str, credential: &Credential) -> Result<String, OciError> {
    let path = config_path();
    let mut config = read_config(&path)?;
    if let Some(helper) = helper_for(&config, host) {
        let (username, secret) = match credential {
            Credential::Basic { username, password } => (username.as_str(), password.as_str()),
            Credential::Bearer(token) => ("<token>", token.as_str()),
            Credential::Anonymous => return Ok(String::new()),
        };
        let request = json!({ "ServerURL": host, "Username": username, "Secret": secret }).to_string();
        helper_call(&helper, "store", &request).map_err(|problem| OciError::Credentials {
            path: path.clone(),
            problem: format!("the credential helper `docker-credential-{helper}` could not store them: {problem}"),
        })?;
        return Ok(format!("the credential helper `docker-credential-{helper}`"));
    }
    let entry = match credential {
        Credential::Basic { username, password } => json!({
            "auth": base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")),
        }),
        Credential::Bearer(token) => json!({ "registrytoken": token }),
        Credential::Anonymous => return Ok(String::new()),
    };
    if !config["auths"].is_object() {
        config["auths"] = json!({});
    }
    config["auths"][host] = entry;
    write_config(&path, &config)?;
    Ok(format!("`{}`", path.display()))
}

/// Forgets `host`'s credentials; whether there were any in the config file.
pub fn erase(host: &str) -> Result<bool, OciError> {
    let path = config_path();
    let mut config = read_config(&path)?;
    if let Some(helper) = helper_for(&config, host) {
        let _ = helper_call(&helper, "erase", host);
    }
    let keys: Vec<String> = config["auths"]
        .as_object()
        .map(|auths| auths.keys().filter(|key| same_registry(key, host)).cloned().collect())
        .unwrap_or_default();
    let Some(auths) = config["auths"].as_object_mut() else {
        return Ok(false);
    };
    for key in &keys {
        auths.remove(key);
    }
    if !keys.is_empty() {
        write_config(&path, &config)?;
    }
    Ok(!keys.is_empty())
}

fn read_config(path: &Path) -> Result<Value, OciError> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(config) if config.is_object() => Ok(config),
            Ok(_) => Err(OciError::Credentials {
                path: path.to_owned(),
                problem: "it is not a JSON object".to_owned(),
            }),
            Err(error) => Err(OciError::Credentials {
                path: path.to_owned(),
                problem: format!("it is not valid JSON: {error}"),
            }),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(error) => Err(OciError::Credentials {
            path: path.to_owned(),
            problem: error.to_string(),
        }),
    }
}

/// Writes the config file (created readable by its owner only).
fn write_config(path: &Path, config: &Value) -> Result<(), OciError> {
    let error = |problem: String| OciError::Credentials {
        path: path.to_owned(),
        problem,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|io| error(io.to_string()))?;
    }
    let mut text = serde_json::to_vec_pretty(config).map_err(|json| error(json.to_string()))?;
    text.push(b'\n');
    write_atomically(path, &text).map_err(|io| error(io.to_string()))
}

/// Whether an `auths` key (`host`, `https://host/v1/`) names `host`.
fn same_registry(key: &str, host: &str) -> bool {
    let normalize = |text: &str| {
        let text = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .unwrap_or(text);
        let text = text.split('/').next().unwrap_or(text).to_ascii_lowercase();
        match text.as_str() {
            "docker.io" | "registry-1.docker.io" => "index.docker.io".to_owned(),
            _ => text,
        }
    };
    normalize(key) == normalize(host)
}

fn auth_entry<'a>(config: &'a Value, host: &str) -> Option<&'a Value> {
    config["auths"]
        .as_object()?
        .iter()
        .find(|(key, _)| same_registry(key, host))
        .map(|(_, entry)| entry)
}

/// The credential helper for `host`: its `credHelpers` entry, else `credsStore`.
fn helper_for(config: &Value, host: &str) -> Option<String> {
    let specific = config["credHelpers"]
        .as_object()
        .and_then(|helpers| helpers.iter().find(|(key, _)| same_registry(key, host)))
        .and_then(|(_, helper)| helper.as_str());
    specific
        .or_else(|| config["credsStore"].as_str())
        .filter(|helper| !helper.is_empty())
        .map(str::to_owned)
}

/// `docker-credential-HELPER get`: the stored credential, or none.
fn helper_get(helper: &str, host: &str) -> Result<Option<Credential>, String> {
    let output = match helper_call(helper, "get", host) {
        Ok(output) => output,
        Err(problem) if problem.to_ascii_lowercase().contains("not found") => return Ok(None),
        Err(problem) => return Err(problem),
    };
    let answer: Value = serde_json::from_slice(&output).map_err(|error| format!("its answer is not JSON: {error}"))?;
    let username = answer["Username"].as_str().unwrap_or_default();
    let secret = answer["Secret"].as_str().unwrap_or_default();
    Ok(match (username, secret) {
        (_, "") => None,
        ("<token>", _) => Some(Credential::Bearer(secret.to_owned())),
        (username, secret) => Some(Credential::Basic {
            username: username.to_owned(),
            password: secret.to_owned(),
        }),
    })
}

/// Runs a credential helper with `input` on stdin; its stdout, or why it failed.
fn helper_call(helper: &str, action: &str, input: &str) -> Result<Vec<u8>, String> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start `{program}`: {error}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|error| format!("cannot write to `{program}`: {error}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| format!("`{program}` failed: {error}"))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        let said = String::from_utf8_lossy(if output.stdout.is_empty() {
            &output.stderr
        } else {
            &output.stdout
        })
        .trim()
        .to_owned();
        Err(if said.is_empty() {
            format!("`{program}` exited with {}", output.status)
        } else {
            said
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auths_keys_match_with_or_without_scheme_and_path() {
        assert!(same_registry("https://index.docker.io/v1/", "docker.io"));
        assert!(same_registry("localhost:5000", "localhost:5000"));
        assert!(same_registry("http://LOCALHOST:5000", "localhost:5000"));
        assert!(!same_registry("localhost:5000", "localhost:5001"));
        assert!(!same_registry("ghcr.io", "ghcr.io.evil.example"));
    }

    #[test]
    fn helpers_are_chosen_per_host_then_globally() {
        let config =
            json!({ "credsStore": "desktop", "credHelpers": { "123.dkr.ecr.us-east-1.amazonaws.com": "ecr-login" } });
        assert_eq!(
            helper_for(&config, "123.dkr.ecr.us-east-1.amazonaws.com").as_deref(),
            Some("ecr-login")
        );
        assert_eq!(helper_for(&config, "ghcr.io").as_deref(), Some("desktop"));
        assert_eq!(helper_for(&json!({}), "ghcr.io"), None);
    }
}
