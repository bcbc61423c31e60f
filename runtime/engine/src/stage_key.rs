//! The stage key: one digest of everything a stage can observe.
//!
//! Two runs with the same key see the same bytes and the same grants, so the
//! first run's outputs stand for the second's. The key is computed from
//! [`KeyParts`] through one canonical, versioned encoding (field tags and
//! length-prefixed values in a fixed order), and nothing host-specific enters
//! it: no absolute path, user, host name, OS or architecture, and no secret
//! value. Upstream stages contribute the digest of their *outputs*, not their
//! keys, so an upstream that rebuilds to identical bytes does not rerun what
//! depends on it (early cutoff).
//!
//! Changing the encoding changes every key: the test at the bottom pins the
//! key of a known stage so that happens only on purpose (bump
//! [`KEY_VERSION`] then).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use cairn_core::Digest;

use crate::scheduler::StageError;
use cairn_pipeline::RandomGrant;
use cairn_pipeline::expression::{Reference, Template};
use cairn_sandbox::{Clock, Invocation, Limits, Random, Sandbox};

/// Part of every key; bump it when the encoding or the meaning of a part changes.
pub const KEY_VERSION: u32 = 3;

/// What a stage can observe, field by field. Kept with each run so
/// `cairn explain` can say which part changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyParts {
    /// The stage's name, which it sees as `invocation.stage` and `argv[0]`.
    pub stage: String,
    /// The digest of the component's bytes (which also fix its world).
    pub component: Digest,
    /// `component` or `core-module`.
    pub format: String,
    /// Arguments, after references were resolved.
    pub args: Vec<String>,
    /// The `with` table, resolved.
    pub config: BTreeMap<String, String>,
    /// The environment, resolved.
    pub env: BTreeMap<String, String>,
    /// The names (never the values) of granted secrets, sorted.
    pub secrets: Vec<String>,
    /// Granted HTTP origins and `host:port` pairs, sorted.
    pub network: Vec<String>,
    /// `http_auth`: by origin, the credential's template as written
    /// (`Bearer ${{ secrets.TOKEN }}`), which names secrets, never their values.
    pub http_auth: BTreeMap<String, String>,
    /// The clock granted (a pinned one with its `SOURCE_DATE_EPOCH`).
    pub clock: Clock,
    /// The randomness granted (a seeded one is seeded from the key).
    pub random: RandomGrant,
    /// The tree digest of `/src`.
    pub inputs: Digest,
    /// The outputs tree digest of each needed stage, by name.
    pub needs: BTreeMap<String, Digest>,
    /// The identity of each granted host tool, by name: what it is (its
    /// executable and toolchain), never where it is.
    pub tools: BTreeMap<String, Digest>,
    /// The identity of the sandbox host tools run in (`bwrap`), when the
    /// stage is granted tools.
    pub tool_sandbox: Option<Digest>,
}

impl KeyParts {
    /// The key.
    pub fn key(&self) -> Digest {
        let mut encoder = Encoder(blake3::Hasher::new_derive_key("cairn 2026 stage key"));
        encoder.field("version", &[&KEY_VERSION.to_le_bytes()]);
        encoder.field("stage", &[self.stage.as_bytes()]);
        encoder.field("component", &[self.component.as_bytes()]);
        encoder.field("format", &[self.format.as_bytes()]);
        encoder.list("args", self.args.iter().map(|arg| vec![arg.as_bytes()]));
        encoder.list(
            "config",
            self.config
                .iter()
                .map(|(key, value)| vec![key.as_bytes(), value.as_bytes()]),
        );
        encoder.list(
            "env",
            self.env
                .iter()
                .map(|(key, value)| vec![key.as_bytes(), value.as_bytes()]),
        );
        encoder.list("secrets", self.secrets.iter().map(|name| vec![name.as_bytes()]));
        encoder.list("network", self.network.iter().map(|entry| vec![entry.as_bytes()]));
        encoder.list(
            "http-auth",
            self.http_auth
                .iter()
                .map(|(origin, credential)| vec![origin.as_bytes(), credential.as_bytes()]),
        );
        encoder.field("clock", &[clock_text(self.clock).as_bytes()]);
        encoder.field("random", &[random_text(self.random).as_bytes()]);
        encoder.field("inputs", &[self.inputs.as_bytes()]);
        encoder.list(
            "needs",
            self.needs
                .iter()
                .map(|(name, outputs)| vec![name.as_bytes(), &outputs.as_bytes()[..]]),
        );
        encoder.list(
            "tools",
            self.tools
                .iter()
                .map(|(name, identity)| vec![name.as_bytes(), &identity.as_bytes()[..]]),
        );
        encoder.field(
            "tool-sandbox",
            &[self
                .tool_sandbox
                .as_ref()
                .map_or(&[][..], |digest| &digest.as_bytes()[..])],
        );
        Digest::from_hasher(&encoder.0)
    }

    /// Why a result of this stage cannot stand for a later run even when
    /// the key is the same: it observes something the key cannot name (the
    /// network's answers, the real time, secure randomness). `None` for a
    /// pure stage.
    pub fn impurity(&self) -> Option<&'static str> {
        if !self.network.is_empty() {
            Some("it is granted network access")
        } else if self.clock == Clock::Real {
            Some("it reads the real clock")
        } else if self.random == RandomGrant::Secure {
            Some("it reads secure randomness")
        } else {
            None
        }
    }

    /// The sandbox these parts describe: every grant a stage can observe is
    /// taken from here, the value its key is computed from, so nothing can
    /// reach a stage without entering its key. `placement` adds only where
    /// the keyed content lies on this host and the values behind the keyed
    /// secret names. `key` is these parts' key (it seeds the randomness).
    pub fn sandbox(&self, key: &Digest, placement: Placement) -> Result<Sandbox, StageError> {
        // Destructured without `..`: a part added to the key must be
        // considered here, and a grant added to the sandbox must come from a
        // part (the test below builds one from each).
        let KeyParts {
            stage,
            component: _,
            format: _,
            args,
            config,
            env,
            secrets,
            network,
            http_auth,
            clock,
            random,
            inputs: _,
            needs,
            tools,
            tool_sandbox: _,
        } = self;
        let Placement {
            src,
            mut needed,
            mut secret,
            mut tool,
            limits,
        } = placement;
        let mut value_of = |name: &str| {
            secret(name).ok_or_else(|| {
                StageError::with_hint(
                    format!("the secret `{name}` is not set"),
                    format!("export {name}=... before `cairn run`, or put it in a --secrets-file"),
                )
            })
        };
        let secrets = secrets
            .iter()
            .map(|name| value_of(name).map(|value| (name.clone(), value)))
            .collect::<Result<BTreeMap<_, _>, StageError>>()?;
        let http_auth = http_auth
            .iter()
            .map(|(origin, credential)| Ok((origin.clone(), render_credential(credential, &mut value_of)?)))
            .collect::<Result<BTreeMap<_, _>, StageError>>()?;
        Ok(Sandbox {
            invocation: Invocation {
                stage: stage.clone(),
                args: args.clone(),
                config: config.clone(),
            },
            env: env.clone(),
            src,
            inputs: needs
                .keys()
                .filter_map(|name| needed(name).map(|folder| (name.clone(), folder)))
                .collect(),
            secrets,
            network: network.clone(),
            http_auth,
            // Only `cairn stage run --dir` shows host folders read-write.
            dirs: Vec::new(),
            tools: tools
                .keys()
                .map(|name| {
                    tool(name).ok_or_else(|| StageError::from(format!("the tool `{name}` was not found on this host")))
                })
                .collect::<Result<_, _>>()?,
            clock: *clock,
            random: match random {
                RandomGrant::Seeded => Random::Seeded(*key.as_bytes()),
                RandomGrant::Secure => Random::Secure,
            },
            limits,
        })
    }

    /// What differs from `before`, part by part, in words. Inputs and
    /// upstream outputs are named by part; [`crate::explain`] opens the trees.
    pub fn changes_since(&self, before: &KeyParts) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut scalar = |part: &'static str, now: &str, then: &str| {
            if now != then {
                changes.push(Change::Value {
                    part,
                    before: then.to_owned(),
                    after: now.to_owned(),
                });
            }
        };
        scalar("stage", &self.stage, &before.stage);
        scalar("component", &self.component.to_string(), &before.component.to_string());
        scalar("format", &self.format, &before.format);
        scalar("args", &format!("{:?}", self.args), &format!("{:?}", before.args));
        scalar("secrets", &self.secrets.join(", "), &before.secrets.join(", "));
        scalar("network", &self.network.join(", "), &before.network.join(", "));
        let credentials = |parts: &KeyParts| {
            parts
                .http_auth
                .iter()
                .map(|(origin, credential)| format!("{origin} = {credential}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        scalar("http_auth", &credentials(self), &credentials(before));
        scalar("clock", &clock_text(self.clock), &clock_text(before.clock));
        scalar("random", random_text(self.random), random_text(before.random));
        let sandbox_text = |digest: Option<Digest>| digest.map_or("none".to_owned(), |digest| digest.short());
        scalar(
            "tool sandbox",
            &sandbox_text(self.tool_sandbox),
            &sandbox_text(before.tool_sandbox),
        );
        for (name, then, now) in differing(&self.tools, &before.tools) {
            changes.push(Change::Tool {
                name,
                before: then.copied(),
                after: now.copied(),
            });
        }
        for (part, now, then) in [("with", &self.config, &before.config), ("env", &self.env, &before.env)] {
            for (key, then, now) in differing(now, then) {
                changes.push(Change::Entry {
                    part,
                    key,
                    before: then.cloned(),
                    after: now.cloned(),
                });
            }
        }
        if self.inputs != before.inputs {
            changes.push(Change::Inputs {
                before: before.inputs,
                after: self.inputs,
            });
        }
        for (stage, then, now) in differing(&self.needs, &before.needs) {
            changes.push(Change::Upstream {
                stage,
                before: then.copied(),
                after: now.copied(),
            });
        }
        changes
    }
}

/// The keys whose values differ between `now` and `then` (present in one
/// only, or different), in key order, with the value before and after.
fn differing<'a, V: PartialEq>(
    now: &'a BTreeMap<String, V>,
    then: &'a BTreeMap<String, V>,
) -> Vec<(String, Option<&'a V>, Option<&'a V>)> {
    now.keys()
        .chain(then.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|key| now.get(*key) != then.get(*key))
        .map(|key| (key.clone(), then.get(key), now.get(key)))
        .collect()
}

/// Looks up, by name, something the key names only by name.
pub type Lookup<'a, T> = Box<dyn FnMut(&str) -> Option<T> + 'a>;

/// Where what a stage's key names lies on this host. Nothing here is a
/// grant of its own: each item stands for content or names the key already
/// covers.
pub struct Placement<'a> {
    /// The snapshot of the keyed input tree, shown at `/src`.
    pub src: Option<std::path::PathBuf>,
    /// The folder holding a needed stage's keyed outputs, by name (`None`
    /// when it published none).
    pub needed: Lookup<'a, std::path::PathBuf>,
    /// The value of a keyed secret name, if set.
    pub secret: Lookup<'a, String>,
    /// Where a keyed tool is on this host, by name.
    pub tool: Lookup<'a, cairn_sandbox::ToolGrant>,
    /// The bounds: they decide whether a stage finishes, not what it
    /// produces, so they are not keyed.
    pub limits: Limits,
}

/// The clock as the key and `cairn explain` name it.
fn clock_text(clock: Clock) -> String {
    match clock {
        Clock::Pinned { source_date_epoch } => format!("pinned:{source_date_epoch}"),
        Clock::Real => "real".to_owned(),
    }
}

/// The randomness as the key and `cairn explain` name it.
fn random_text(random: RandomGrant) -> &'static str {
    match random {
        RandomGrant::Seeded => "seeded",
        RandomGrant::Secure => "secure",
    }
}

/// One way a stage's key parts differ between two runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A single-valued part.
    Value {
        /// The part's name.
        part: &'static str,
        /// Its value before.
        before: String,
        /// Its value now.
        after: String,
    },
    /// An entry of `with` or `env`.
    Entry {
        /// `with` or `env`.
        part: &'static str,
        /// The entry's key.
        key: String,
        /// The value before, if it was set.
        before: Option<String>,
        /// The value now, if it is set.
        after: Option<String>,
    },
    /// The input files.
    Inputs {
        /// The input tree before.
        before: Digest,
        /// The input tree now.
        after: Digest,
    },
    /// A granted host tool.
    Tool {
        /// The tool's name.
        name: String,
        /// Its identity before, if it was granted then.
        before: Option<Digest>,
        /// Its identity now, if it is granted now.
        after: Option<Digest>,
    },
    /// What a needed stage produced.
    Upstream {
        /// The needed stage.
        stage: String,
        /// Its outputs tree before, if it was needed then.
        before: Option<Digest>,
        /// Its outputs tree now, if it is needed now.
        after: Option<Digest>,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |value: &Option<String>| {
            value
                .as_ref()
                .map_or("(unset)".to_owned(), |value| format!("`{value}`"))
        };
        match self {
            Change::Value { part, before, after } => write!(formatter, "{part} changed: `{before}` → `{after}`"),
            Change::Entry {
                part,
                key,
                before,
                after,
            } => {
                write!(
                    formatter,
                    "{part} `{key}` changed: {} → {}",
                    shown(before),
                    shown(after)
                )
            }
            Change::Inputs { .. } => formatter.write_str("its input files changed"),
            Change::Tool {
                name,
                before: Some(_),
                after: Some(_),
            } => write!(
                formatter,
                "the tool `{name}` changed (another version, or its files were edited)"
            ),
            Change::Tool { name, before: None, .. } => write!(formatter, "it is now granted the tool `{name}`"),
            Change::Tool { name, .. } => write!(formatter, "it is no longer granted the tool `{name}`"),
            Change::Upstream {
                stage,
                before: Some(_),
                after: Some(_),
            } => write!(formatter, "the outputs of `{stage}` changed"),
            Change::Upstream {
                stage, before: None, ..
            } => write!(formatter, "it now needs `{stage}`"),
            Change::Upstream { stage, .. } => write!(formatter, "it no longer needs `{stage}`"),
        }
    }
}

/// Feeds tagged, length-prefixed fields to the hasher, so no two different
/// sets of parts encode to the same bytes.
struct Encoder(blake3::Hasher);

impl Encoder {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn field(&mut self, tag: &str, values: &[&[u8]]) {
        self.bytes(tag.as_bytes());
        self.0.update(&(values.len() as u64).to_le_bytes());
        for value in values {
            self.bytes(value);
        }
    }

    fn list<'a>(&mut self, tag: &str, items: impl ExactSizeIterator<Item = Vec<&'a [u8]>>) {
        self.bytes(tag.as_bytes());
        self.0.update(&(items.len() as u64).to_le_bytes());
        for item in items {
            self.0.update(&(item.len() as u64).to_le_bytes());
            for value in item {
                self.bytes(value);
            }
        }
    }
}

/// A credential's template with its secrets' values: the header value the
/// host adds (the template was checked to read secrets only).
fn render_credential(
    credential: &str,
    value_of: &mut dyn FnMut(&str) -> Result<String, StageError>,
) -> Result<String, StageError> {
    let template = Template::parse(credential).map_err(|error| StageError::from(error.message))?;
    let mut values = BTreeMap::new();
    for reference in template.references() {
        if let Reference::Secret(name) = reference {
            values.insert(reference.clone(), value_of(name)?);
        }
    }
    template
        .render(&|reference| values.get(reference).cloned())
        .map_err(|reference| StageError::from(format!("`${{{{ {reference} }}}}` cannot be used in `http_auth`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> KeyParts {
        KeyParts {
            stage: "lint".into(),
            component: Digest::of(b"component"),
            format: "component".into(),
            args: vec!["--strict".into()],
            config: BTreeMap::from([("level".into(), "warn".into())]),
            env: BTreeMap::from([("RUST_LOG".into(), "info".into())]),
            secrets: vec!["TOKEN".into()],
            network: vec!["https://deploy.example.com".into()],
            http_auth: BTreeMap::from([(
                "https://deploy.example.com".into(),
                "Bearer ${{ secrets.DEPLOY }}".into(),
            )]),
            clock: Clock::Pinned { source_date_epoch: 0 },
            random: RandomGrant::Seeded,
            inputs: Digest::of(b"inputs"),
            needs: BTreeMap::from([("build".into(), Digest::of(b"outputs"))]),
            tools: BTreeMap::from([("cargo".into(), Digest::of(b"toolchain"))]),
            tool_sandbox: Some(Digest::of(b"bwrap")),
        }
    }

    /// One change to each part of [`known`], several for some.
    fn variants() -> Vec<fn(&mut KeyParts)> {
        vec![
            |parts| parts.stage = "lint2".into(),
            |parts| parts.component = Digest::of(b"other"),
            |parts| parts.format = "core-module".into(),
            |parts| parts.args.push("x".into()),
            |parts| parts.args = vec!["--stri".into(), "ct".into()],
            |parts| {
                parts.config.insert("level".into(), "error".into());
            },
            |parts| {
                parts.env.insert("A".into(), "".into());
            },
            |parts| parts.secrets.push("OTHER".into()),
            |parts| parts.network.push("example.com:443".into()),
            |parts| {
                parts.http_auth.insert(
                    "https://deploy.example.com".into(),
                    "Bearer ${{ secrets.OTHER }}".into(),
                );
            },
            |parts| parts.clock = Clock::Real,
            |parts| parts.clock = Clock::Pinned { source_date_epoch: 1 },
            |parts| parts.random = RandomGrant::Secure,
            |parts| parts.inputs = Digest::of(b"other inputs"),
            |parts| {
                parts.needs.insert("build".into(), Digest::of(b"new outputs"));
            },
            |parts| {
                parts.tools.insert("cargo".into(), Digest::of(b"another toolchain"));
            },
            |parts| {
                parts.tools.insert("node".into(), Digest::of(b"node"));
            },
            |parts| parts.tool_sandbox = Some(Digest::of(b"another bwrap")),
        ]
    }

    #[test]
    fn the_key_of_a_known_stage_is_pinned() {
        // Changing this digest changes every key in every cache: bump
        // KEY_VERSION and update it only on purpose.
        assert_eq!(
            known().key().to_string(),
            "blake3:6c76f35835078596e8d747e6691ae182e0a848dfd2c41fc7fc4cf6cdc2fc12ac"
        );
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = known().key();
        let variants = variants();
        for (index, change) in variants.iter().enumerate() {
            let mut parts = known();
            change(&mut parts);
            assert_ne!(parts.key(), base, "variant {index} must change the key");
            assert!(
                !parts.changes_since(&known()).is_empty(),
                "variant {index} is explained"
            );
        }
    }

    #[test]
    fn changes_are_explained_in_words() {
        let mut parts = known();
        parts.env.insert("RUST_LOG".into(), "debug".into());
        parts.needs.insert("build".into(), Digest::of(b"rebuilt"));
        let changes: Vec<String> = parts.changes_since(&known()).iter().map(ToString::to_string).collect();
        assert_eq!(
            changes,
            [
                "env `RUST_LOG` changed: `info` → `debug`",
                "the outputs of `build` changed"
            ]
        );
    }

    fn placement() -> Placement<'static> {
        Placement {
            src: Some("/host/src".into()),
            needed: Box::new(|name| Some(format!("/host/out/{name}").into())),
            secret: Box::new(|name| Some(format!("value of {name}"))),
            tool: Box::new(|name| {
                Some(cairn_sandbox::ToolGrant {
                    name: name.to_owned(),
                    executable: format!("/host/bin/{name}").into(),
                    root: None,
                })
            }),
            limits: Limits::default(),
        }
    }

    #[test]
    fn every_grant_of_the_sandbox_comes_from_the_key() {
        let parts = known();
        let key = parts.key();
        let sandbox = parts.sandbox(&key, placement()).expect("every secret is set");
        // Exhaustive on purpose: a grant added to `Sandbox` does not compile
        // here until it is said where it comes from.
        let Sandbox {
            invocation,
            env,
            src,
            inputs,
            secrets,
            network,
            http_auth,
            tools,
            dirs,
            clock,
            random,
            limits,
        } = sandbox;
        assert_eq!(invocation.stage, parts.stage);
        assert_eq!(invocation.args, parts.args);
        assert_eq!(invocation.config, parts.config);
        assert_eq!(env, parts.env);
        assert_eq!(
            src.as_deref(),
            Some(std::path::Path::new("/host/src")),
            "placement: the keyed input tree"
        );
        assert_eq!(
            inputs.keys().collect::<Vec<_>>(),
            parts.needs.keys().collect::<Vec<_>>()
        );
        assert_eq!(
            secrets.keys().collect::<Vec<_>>(),
            parts.secrets.iter().collect::<Vec<_>>()
        );
        assert_eq!(network, parts.network);
        assert_eq!(
            http_auth.get("https://deploy.example.com").map(String::as_str),
            Some("Bearer value of DEPLOY"),
            "placement: the credential's secret values"
        );
        assert_eq!(
            tools.iter().map(|tool| &tool.name).collect::<Vec<_>>(),
            parts.tools.keys().collect::<Vec<_>>(),
            "placement: where each keyed tool is"
        );
        assert!(
            dirs.is_empty(),
            "a pipeline stage is never shown a host folder read-write"
        );
        assert_eq!(clock, parts.clock);
        assert_eq!(random, Random::Seeded(*key.as_bytes()));
        assert_eq!(limits, Limits::default(), "bounds are not grants");

        // And each part that the sandbox shows changes what it shows.
        let shown = |parts: &KeyParts| {
            let sandbox = parts.sandbox(&parts.key(), placement()).expect("every secret is set");
            format!("{sandbox:?}")
        };
        let base = shown(&parts);
        // Every change of the key changes the sandbox: most parts are shown
        // as they are, and seeded randomness follows the whole key.
        let variants = variants();
        for (index, change) in variants.iter().enumerate() {
            let mut changed = known();
            change(&mut changed);
            assert_ne!(shown(&changed), base, "variant {index} must change the sandbox");
        }
    }

    #[test]
    fn a_secret_that_is_not_set_is_named() {
        let parts = known();
        let mut placement = placement();
        placement.secret = Box::new(|_| None);
        let error = parts.sandbox(&parts.key(), placement).expect_err("TOKEN is not set");
        assert_eq!(error.message, "the secret `TOKEN` is not set");
        assert!(error.hint.is_some_and(|hint| hint.starts_with("export TOKEN=")));
    }

    #[test]
    fn impure_grants_are_named() {
        let pure = || KeyParts {
            network: Vec::new(),
            http_auth: BTreeMap::new(),
            ..known()
        };
        assert_eq!(pure().impurity(), None);
        let mut parts = pure();
        parts.network.push("example.com:443".into());
        assert_eq!(parts.impurity(), Some("it is granted network access"));
        let mut parts = pure();
        parts.clock = Clock::Real;
        assert_eq!(parts.impurity(), Some("it reads the real clock"));
        let mut parts = pure();
        parts.random = RandomGrant::Secure;
        assert_eq!(parts.impurity(), Some("it reads secure randomness"));
    }
}
