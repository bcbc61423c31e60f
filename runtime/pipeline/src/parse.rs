//! From the text of `cairn.toml` to a checked [`Pipeline`].
//!
//! The file is walked key by key over toml's spanned document rather than
//! deserialized with serde, so every problem can be reported at its exact
//! place, unknown keys can get a "did you mean", and as many problems as
//! possible are reported in one go.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::expression::{Condition, Reference, SyntaxError, Template};
use super::graph::Graph;
use super::{
    ClockGrant, DEFAULT_APPROVAL_TIMEOUT, Diagnostic, Environment, InputGlob, Pipeline, RandomGrant, Remote,
    SourceFile, Stage, ToolName, Uses, did_you_mean,
};
use cairn_core::units::{ByteSize, HumanDuration};
use cairn_core::{Limits, NetworkEntry, Origin};

const TOP_KEYS: &[&str] = &["pipeline", "defaults", "limits", "environments", "remote", "stages"];
const REMOTE_KEYS: &[&str] = &["url", "read_only", "replicas", "execute"];
const ENVIRONMENT_KEYS: &[&str] = &[
    "url",
    "secrets",
    "branches",
    "requires",
    "approval",
    "approval_timeout",
    "rollback",
];
const LIMIT_KEYS: &[&str] = &["matrix", "stages"];

/// Stages one matrix may expand to, unless `[limits] matrix` says more: as
/// GitHub Actions caps a matrix at 256 jobs.
pub const MAX_MATRIX: u32 = 256;

/// Stages a pipeline may have after matrices expand, unless `[limits]
/// stages` says more.
pub const MAX_STAGES: u32 = 10_000;

/// The most bytes of `args`, `with` and `env` (keys and values, as
/// written) one stage may hand its component: they are copied into every
/// run's key, events and sandbox.
pub const MAX_INVOCATION: usize = 1024 * 1024;

/// The longest stage name, matrix values included, in bytes: it names a
/// folder in `cairn-out/` (with room for the temporary names beside it), and
/// every file system takes 255 bytes.
pub const MAX_NAME: usize = 200;
const PIPELINE_KEYS: &[&str] = &["name"];
const DEFAULT_KEYS: &[&str] = &[
    "timeout",
    "memory",
    "max_output",
    "max_log",
    "max_entries",
    "retries",
    "env",
];
const STAGE_KEYS: &[&str] = &[
    "uses",
    "inputs",
    "args",
    "with",
    "env",
    "needs",
    "secrets",
    "network",
    "http_auth",
    "clock",
    "random",
    "timeout",
    "memory",
    "max_output",
    "max_log",
    "max_entries",
    "cache",
    "if",
    "matrix",
    "retries",
    "run",
    "tools",
    "reports",
    "environment",
    "verify",
    "on_change",
];
const REPORT_KEYS: &[&str] = &["junit"];

type Value<'i> = Spanned<DeValue<'i>>;

/// Parses and checks `file`, whose stage paths are relative to `root`.
pub(super) fn parse(file: SourceFile, root: &Path) -> Result<Pipeline, Vec<Diagnostic>> {
    let text = file.text.clone();
    let document = match DeTable::parse(&text) {
        Ok(document) => document,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            let message = error.message().trim().to_owned();
            let mut diagnostic = Diagnostic::error(message.clone(), span);
            if message == "duplicate key" {
                diagnostic = diagnostic.with_hint("a stage or key can be defined once; rename or merge the second one");
            }
            return Err(vec![diagnostic]);
        }
    };
    let mut checker = Checker {
        root,
        errors: Vec::new(),
        resolved: HashMap::new(),
    };
    let pipeline = checker.pipeline(document.get_ref(), file);
    if checker.errors.is_empty() {
        Ok(pipeline)
    } else {
        checker
            .errors
            .sort_by_key(|diagnostic| diagnostic.span.as_ref().map_or(0, |span| span.start));
        Err(checker.errors)
    }
}

/// Bounds on what a pipeline file may expand to (`[limits]`).
struct ExpansionLimits {
    /// Stages one matrix may expand to.
    matrix: u32,
    /// Stages after every matrix expands.
    stages: u32,
}

/// The settings `[defaults]` gives every stage.
#[derive(Default)]
struct Defaults {
    limits: Limits,
    retries: u32,
    env: Vec<(String, Spanned<String>)>,
}

/// One `[stages.NAME]` table, before matrix expansion and cross-checks.
struct RawStage {
    name: Spanned<String>,
    uses: Option<(Uses, Range<usize>)>,
    inputs: Vec<Spanned<String>>,
    args: Vec<Spanned<String>>,
    with: Vec<(String, Spanned<String>)>,
    env: Vec<(String, Spanned<String>)>,
    needs: Vec<Spanned<String>>,
    secrets: Vec<Spanned<String>>,
    network: Vec<Spanned<String>>,
    http_auth: Vec<(String, Spanned<String>)>,
    clock: ClockGrant,
    random: RandomGrant,
    limits: Limits,
    cache: Option<bool>,
    condition: Option<(Condition, Range<usize>)>,
    matrix: Vec<(Spanned<String>, Vec<String>)>,
    retries: u32,
    tools: Vec<Spanned<String>>,
    junit: Vec<String>,
    environment: Option<Spanned<String>>,
    verify: Option<Spanned<bool>>,
    on_change: Vec<Spanned<String>>,
}

struct Checker<'a> {
    root: &'a Path,
    errors: Vec<Diagnostic>,
    /// Each distinct `uses` text resolved once: pipelines with many stages
    /// name few components.
    resolved: HashMap<String, Uses>,
}

impl Checker<'_> {
    fn error(&mut self, diagnostic: Diagnostic) {
        self.errors.push(diagnostic);
    }

    fn pipeline(&mut self, document: &DeTable<'_>, file: SourceFile) -> Pipeline {
        self.check_keys(document, TOP_KEYS, "at the top level");
        let mut name = self
            .root
            .canonicalize()
            .ok()
            .and_then(|root| root.file_name().map(|name| name.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "pipeline".to_owned());
        if let Some(table) = self.table_at(document, "pipeline") {
            self.check_keys(table, PIPELINE_KEYS, "in [pipeline]");
            if let Some(value) = table.get("name")
                && let Some(text) = self.string(value, "`name`")
            {
                name = text.into_inner();
            }
        }
        let defaults = match self.table_at(document, "defaults") {
            Some(table) => self.defaults(table),
            None => Defaults::default(),
        };
        let limits = match self.table_at(document, "limits") {
            Some(table) => self.expansion_limits(table),
            None => ExpansionLimits {
                matrix: MAX_MATRIX,
                stages: MAX_STAGES,
            },
        };
        let environments = self.environments(document);
        let remote = self.remote(document);
        let mut raw_stages = Vec::new();
        match document.get("stages") {
            // Said only when nothing else is wrong: a misspelled `[stage.x]`
            // already got its did-you-mean.
            None if !self.errors.is_empty() => {}
            None => self.error(
                Diagnostic::error("the pipeline has no stages", 0..0)
                    .with_hint("add a stage: `[stages.hello]` with `uses = \"std:wc\"`"),
            ),
            Some(value) => match value.get_ref() {
                DeValue::Table(stages) => {
                    let mut entries: Vec<_> = stages.iter().collect();
                    entries.sort_by_key(|(key, _)| key.span().start);
                    for (key, value) in entries {
                        let name = Spanned::new(key.span(), key.get_ref().to_string());
                        if let Some(stage) = self.stage(name, value, &defaults, &limits) {
                            raw_stages.push(stage);
                        }
                    }
                }
                _ => self.error(self.type_error("`stages`", "a table of stages", value)),
            },
        }
        let stages = self.expand(raw_stages, &environments);
        let environments: BTreeMap<String, Environment> = environments
            .into_iter()
            .map(|(name, (environment, _))| (name, environment))
            .collect();
        if stages.len() > limits.stages as usize {
            self.error(
                Diagnostic::error(
                    format!(
                        "the pipeline has {} stages after its matrices expand; at most {} are allowed",
                        stages.len(),
                        limits.stages
                    ),
                    0..0,
                )
                .with_hint("raise the bound with `stages = N` in a `[limits]` table"),
            );
            // A graph of this size is not what anyone meant; stop here.
            return Pipeline {
                name,
                root: self.root.to_owned(),
                file,
                stages: Vec::new(),
                environments,
                remote,
            };
        }
        let graph = Graph::new(&stages);
        if let Err(cycle) = &graph {
            let first = stages
                .iter()
                .find(|stage| stage.name == cycle[0])
                .map_or(0..0, |stage| stage.span.clone());
            self.error(
                Diagnostic::error(format!("the stages form a cycle: {}", cycle.join(" → ")), first)
                    .with_hint("each stage needs the next; remove one of these `needs`"),
            );
        }
        Pipeline {
            name,
            root: self.root.to_owned(),
            file,
            stages,
            environments,
            remote,
        }
    }

    /// `[remote]`: the shared cache runs use by default.
    fn remote(&mut self, document: &DeTable<'_>) -> Remote {
        let mut remote = Remote {
            replicas: 1,
            ..Remote::default()
        };
        let Some(table) = self.table_at(document, "remote") else {
            return remote;
        };
        self.check_keys(table, REMOTE_KEYS, "in [remote]");
        if let Some(value) = table.get("url")
            && let Some(url) = self.string(value, "`url`")
        {
            let text = url.get_ref();
            if !(text.starts_with("nats://") || text.starts_with("tls://")) {
                self.error(
                    Diagnostic::error("`url` must name a NATS server", url.span())
                        .with_hint("write `url = \"nats://HOST:4222\"` (or `tls://` for TLS)"),
                );
            } else if text
                .split("://")
                .nth(1)
                .is_some_and(|rest| rest.split('/').next().unwrap_or_default().contains('@'))
            {
                self.error(
                    Diagnostic::error("`url` carries credentials, which do not belong in a file under version control", url.span())
                        .with_hint("remove them and set CAIRN_NATS_USER and CAIRN_NATS_PASSWORD (or CAIRN_NATS_TOKEN) where cairn runs"),
                );
            }
            remote.url = Some(url.into_inner());
        }
        if let Some(value) = table.get("read_only") {
            remote.read_only = self.boolean(value, "`read_only`");
        }
        if let Some(value) = table.get("execute") {
            remote.execute = self.boolean(value, "`execute`");
        }
        if let Some(value) = table.get("replicas")
            && let Some(replicas) = self.count_up_to(value, "`replicas`", 5)
        {
            remote.replicas = replicas.max(1);
        }
        remote
    }

    /// `[environments.NAME]` tables, each with where it is written.
    fn environments(&mut self, document: &DeTable<'_>) -> BTreeMap<String, (Environment, Range<usize>)> {
        let mut environments = BTreeMap::new();
        let Some(table) = self.table_at(document, "environments") else {
            return BTreeMap::new();
        };
        for (key, value) in table {
            let name = key.get_ref().to_string();
            let DeValue::Table(settings) = value.get_ref() else {
                self.error(self.type_error(&format!("`environments.{name}`"), "a table", value));
                continue;
            };
            self.check_keys(settings, ENVIRONMENT_KEYS, &format!("in [environments.{name}]"));
            let url = settings
                .get("url")
                .and_then(|value| self.string(value, "`url`"))
                .map(Spanned::into_inner);
            let mut list = |key: &str| {
                settings
                    .get(key)
                    .map(|value| self.string_list(value, &format!("`{key}`")))
                    .unwrap_or_default()
            };
            let secrets = list("secrets");
            let branches = list("branches");
            let requires = list("requires");
            for branch in &branches {
                if let Err(error) = globset::Glob::new(branch.get_ref()) {
                    self.error(Diagnostic::error(
                        format!("`{}` is not a valid branch pattern: {}", branch.get_ref(), error.kind()),
                        branch.span(),
                    ));
                }
            }
            let approval = settings
                .get("approval")
                .is_some_and(|value| self.boolean(value, "`approval`"));
            let approval_timeout = match settings.get("approval_timeout") {
                Some(value) => {
                    if !approval {
                        self.error(
                            Diagnostic::error(
                                format!("[environments.{name}] sets `approval_timeout` but asks for no approval"),
                                value.span(),
                            )
                            .with_hint("add `approval = true`, or remove `approval_timeout`"),
                        );
                    }
                    self.parsed::<HumanDuration>(value, "`approval_timeout`")
                        .map_or(DEFAULT_APPROVAL_TIMEOUT, |duration| duration.0)
                }
                None => DEFAULT_APPROVAL_TIMEOUT,
            };
            let auto_rollback = settings
                .get("rollback")
                .is_some_and(|value| self.choice(value, "`rollback`", &[("auto", true), ("manual", false)]));
            let environment = Environment {
                name: name.clone(),
                url,
                secrets: secrets.into_iter().map(Spanned::into_inner).collect(),
                branches: branches.into_iter().map(Spanned::into_inner).collect(),
                requires: Vec::new(),
                approval,
                approval_timeout,
                auto_rollback,
            };
            environments.insert(name, (environment, key.span(), requires));
        }
        let names: Vec<String> = environments.keys().cloned().collect();
        let environments: BTreeMap<String, (Environment, Range<usize>)> = environments
            .into_iter()
            .map(|(name, (mut environment, span, requires))| {
                for required in requires {
                    if *required.get_ref() == name {
                        self.error(Diagnostic::error(
                            format!("environment `{name}` requires itself"),
                            required.span(),
                        ));
                    } else if !names.contains(required.get_ref()) {
                        let mut diagnostic = Diagnostic::error(
                            format!(
                                "`requires` names `{}`, which is not an environment of this pipeline",
                                required.get_ref()
                            ),
                            required.span(),
                        );
                        diagnostic = match did_you_mean(required.get_ref(), names.iter().map(String::as_str)) {
                            Some(close) => diagnostic.with_hint(format!("did you mean `{close}`?")),
                            None => {
                                diagnostic.with_hint(format!("declare it: `[environments.{}]`", required.get_ref()))
                            }
                        };
                        self.error(diagnostic);
                    } else {
                        environment.requires.push(required.into_inner());
                    }
                }
                (name, (environment, span))
            })
            .collect();
        let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, (environment, span)) in &environments {
            for secret in &environment.secrets {
                if let Some(other) = owners.insert(secret, name) {
                    self.error(
                        Diagnostic::error(
                            format!("the secret `{secret}` belongs to both `{other}` and `{name}`"),
                            span.clone(),
                        )
                        .with_hint("an environment's secrets are its own: give each environment a secret of its own"),
                    );
                }
            }
        }
        environments
    }

    fn defaults(&mut self, table: &DeTable<'_>) -> Defaults {
        self.check_keys(table, DEFAULT_KEYS, "in [defaults]");
        let mut defaults = Defaults::default();
        self.limits(table, &mut defaults.limits);
        if let Some(value) = table.get("retries") {
            defaults.retries = self.count(value, "`retries`").unwrap_or(0);
        }
        if let Some(value) = table.get("env") {
            defaults.env = self.scalar_table(value, "`env`");
        }
        defaults
    }

    fn limits(&mut self, table: &DeTable<'_>, limits: &mut Limits) {
        if let Some(value) = table.get("timeout")
            && let Some(duration) = self.parsed::<HumanDuration>(value, "`timeout`")
        {
            limits.timeout = duration.0;
        }
        for (key, field) in [
            ("memory", &mut limits.memory),
            ("max_output", &mut limits.max_output),
            ("max_log", &mut limits.max_log),
        ] {
            if let Some(value) = table.get(key)
                && let Some(size) = self.parsed::<ByteSize>(value, &format!("`{key}`"))
            {
                *field = size;
            }
        }
        if let Some(value) = table.get("max_entries") {
            limits.max_entries = self
                .count_up_to(value, "`max_entries`", u32::MAX)
                .map_or(limits.max_entries, u64::from);
        }
    }

    fn stage(
        &mut self,
        name: Spanned<String>,
        value: &Value<'_>,
        defaults: &Defaults,
        expansion: &ExpansionLimits,
    ) -> Option<RawStage> {
        if name.get_ref().len() > MAX_NAME {
            self.error(
                Diagnostic::error(
                    format!(
                        "the stage name `{}…` is {} bytes long; stage names are at most {MAX_NAME}",
                        name.get_ref().chars().take(20).collect::<String>(),
                        name.get_ref().len()
                    ),
                    name.span(),
                )
                .with_hint("a stage's name names its folder in cairn-out/: choose a shorter one"),
            );
            return None;
        }
        if !valid_stage_name(name.get_ref()) {
            self.error(
                Diagnostic::error(format!("`{}` cannot name a stage", name.get_ref()), name.span())
                    .with_hint("use letters, digits, `-` and `_`"),
            );
        }
        let DeValue::Table(table) = value.get_ref() else {
            self.error(self.type_error(&format!("stage `{}`", name.get_ref()), "a table", value));
            return None;
        };
        let context = format!("in stage `{}`", name.get_ref());
        self.check_keys(table, STAGE_KEYS, &context);
        let list = |checker: &mut Self, key: &str| {
            table
                .get(key)
                .map(|value| checker.string_list(value, &format!("`{key}`")))
                .unwrap_or_default()
        };
        let mut args = list(self, "args");
        let uses = match (table.get("uses"), table.get("run")) {
            (Some(_), Some(run)) => {
                self.error(
                    Diagnostic::error(
                        format!("stage `{}` has both `uses` and `run`", name.get_ref()),
                        run.span(),
                    )
                    .with_hint("`run` is short for `uses = \"std:run\"`: keep one of the two"),
                );
                None
            }
            (Some(value), None) => self.string(value, "`uses`").and_then(|uses| self.uses(&uses)),
            (None, Some(run)) => {
                if let Some(first) = table.get("args") {
                    self.error(
                        Diagnostic::error("a `run` stage takes no `args`", first.span())
                            .with_hint("put the arguments in `run` itself"),
                    );
                }
                args = self.command(run);
                Some((Uses::Standard("run".to_owned()), run.span()))
            }
            (None, None) => {
                self.error(
                    Diagnostic::error(format!("stage `{}` has no `uses`", name.get_ref()), name.span()).with_hint(
                        "say which component runs it: `uses = \"std:wc\"`, a `.wasm` file, a stage folder, \
                         or a host command with `run = \"...\"`",
                    ),
                );
                None
            }
        };
        let mut tools = list(self, "tools");
        // A `run` string is a shell command: the shell is one of its tools.
        if let Some(run) = table.get("run")
            && matches!(run.get_ref(), DeValue::String(_))
            && !tools.iter().any(|tool| tool.get_ref().rsplit('/').next() == Some("sh"))
        {
            tools.push(Spanned::new(run.span(), "sh".to_owned()));
        }
        let mut tool_names = HashMap::new();
        for tool in &tools {
            let name = tool.get_ref().rsplit('/').next().unwrap_or_default();
            if let Some(first) = tool_names.insert(name.to_owned(), tool.get_ref().clone())
                && valid_tool(tool.get_ref())
            {
                self.error(
                    Diagnostic::error(
                        format!(
                            "`{}` and `{first}` are both granted as the tool `{name}`",
                            tool.get_ref()
                        ),
                        tool.span(),
                    )
                    .with_hint("a tool is called by its file name: grant one of the two"),
                );
            }
            if !valid_tool(tool.get_ref()) {
                self.error(
                    Diagnostic::error(
                        match tool.get_ref().as_str() {
                            "" => "an empty string cannot name a tool".to_owned(),
                            name => format!("`{name}` cannot name a tool"),
                        },
                        tool.span(),
                    )
                    .with_hint(
                        "a tool is a program's name on the PATH (`cargo`) or a path relative to this file \
                         (`./ci/lint.sh`)",
                    ),
                );
            }
        }
        let junit = self
            .table_at(table, "reports")
            .map(|reports| self.reports(reports))
            .unwrap_or_default();
        let inputs = list(self, "inputs");
        for glob in &inputs {
            if let Err(error) = globset::Glob::new(glob.get_ref()) {
                self.error(Diagnostic::error(
                    format!("`{}` is not a valid glob: {}", glob.get_ref(), error.kind()),
                    glob.span(),
                ));
            }
        }
        let mut limits = defaults.limits;
        self.limits(table, &mut limits);
        let mut env = defaults.env.clone();
        if let Some(value) = table.get("env") {
            for (key, value) in self.scalar_table(value, "`env`") {
                env.retain(|(existing, _)| *existing != key);
                env.push((key, value));
            }
        }
        let with = table
            .get("with")
            .map(|value| self.scalar_table(value, "`with`"))
            .unwrap_or_default();
        let invocation_size: usize = args.iter().map(|arg| arg.get_ref().len()).sum::<usize>()
            + [&with, &env]
                .iter()
                .flat_map(|pairs| pairs.iter())
                .map(|(key, value)| key.len() + value.get_ref().len())
                .sum::<usize>();
        if invocation_size > MAX_INVOCATION {
            self.error(
                Diagnostic::error(
                    format!(
                        "stage `{}` hands its component {invocation_size} bytes of `args`, `with` and `env`; \
                         at most {MAX_INVOCATION} ({}) are allowed",
                        name.get_ref(),
                        ByteSize(MAX_INVOCATION as u64)
                    ),
                    name.span(),
                )
                .with_hint("pass large data as an input file (`inputs`) rather than as arguments"),
            );
        }
        Some(RawStage {
            uses,
            inputs,
            args,
            with,
            env,
            needs: list(self, "needs"),
            secrets: list(self, "secrets"),
            network: list(self, "network"),
            http_auth: table
                .get("http_auth")
                .map(|value| self.scalar_table(value, "`http_auth`"))
                .unwrap_or_default(),
            clock: match table.get("clock") {
                Some(value) => self.choice(
                    value,
                    "`clock`",
                    &[("pinned", ClockGrant::Pinned), ("real", ClockGrant::Real)],
                ),
                None => ClockGrant::Pinned,
            },
            random: match table.get("random") {
                Some(value) => self.choice(
                    value,
                    "`random`",
                    &[("seeded", RandomGrant::Seeded), ("secure", RandomGrant::Secure)],
                ),
                None => RandomGrant::Seeded,
            },
            limits,
            cache: table.get("cache").map(|value| self.boolean(value, "`cache`")),
            condition: table.get("if").and_then(|value| self.condition(value)),
            matrix: table
                .get("matrix")
                .map(|value| self.matrix(value, expansion.matrix))
                .unwrap_or_default(),
            retries: table
                .get("retries")
                .and_then(|value| self.count(value, "`retries`"))
                .unwrap_or(defaults.retries),
            tools,
            junit,
            environment: table
                .get("environment")
                .and_then(|value| self.string(value, "`environment`")),
            verify: table
                .get("verify")
                .map(|value| Spanned::new(value.span(), self.boolean(value, "`verify`"))),
            on_change: list(self, "on_change"),
            name,
        })
    }

    /// `run`: a string runs under `sh -ec`, a list is the argv itself.
    fn command(&mut self, run: &Value<'_>) -> Vec<Spanned<String>> {
        if let DeValue::String(text) = run.get_ref() {
            if text.trim().is_empty() {
                self.error(Diagnostic::error("`run` is empty", run.span()).with_hint("write the command to run"));
            }
            let spanned = |text: &str| Spanned::new(run.span(), text.to_owned());
            // `-e`: a failing command fails the script, as in GitHub Actions.
            return vec![
                spanned("sh"),
                spanned("-ec"),
                Spanned::new(run.span(), text.to_string()),
            ];
        }
        let argv = self.string_list(run, "`run`");
        if argv.is_empty() && matches!(run.get_ref(), DeValue::Array(_)) {
            self.error(
                Diagnostic::error("`run` is an empty list", run.span()).with_hint("list the program and its arguments"),
            );
        }
        argv
    }

    /// `reports = { junit = "junit.xml" }` (or a list of files), relative to `/out`.
    fn reports(&mut self, table: &DeTable<'_>) -> Vec<String> {
        self.check_keys(table, REPORT_KEYS, "in `reports`");
        let Some(junit) = table.get("junit") else {
            return Vec::new();
        };
        let files = match junit.get_ref() {
            DeValue::String(_) => self.string(junit, "`reports.junit`").into_iter().collect(),
            _ => self.string_list(junit, "`reports.junit`"),
        };
        files
            .into_iter()
            .filter_map(|file| {
                let path = Path::new(file.get_ref());
                let inside = !file.get_ref().is_empty()
                    && path
                        .components()
                        .all(|part| matches!(part, std::path::Component::Normal(_) | std::path::Component::CurDir));
                if inside {
                    Some(file.into_inner())
                } else {
                    self.error(
                        Diagnostic::error(
                            format!("`{}` is not a path inside the stage's `/out`", file.get_ref()),
                            file.span(),
                        )
                        .with_hint("name the report relative to `/out`, for example `junit.xml`"),
                    );
                    None
                }
            })
            .collect()
    }

    /// `uses`, resolved once per distinct text.
    fn uses(&mut self, uses: &Spanned<String>) -> Option<(Uses, Range<usize>)> {
        if let Some(resolved) = self.resolved.get(uses.get_ref()) {
            return Some((resolved.clone(), uses.span()));
        }
        let resolved = self.resolve_uses(uses)?;
        self.resolved.insert(uses.get_ref().clone(), resolved.0.clone());
        Some(resolved)
    }

    /// Classifies `uses` and checks that what it names exists.
    fn resolve_uses(&mut self, uses: &Spanned<String>) -> Option<(Uses, Range<usize>)> {
        match Uses::parse(uses.get_ref(), self.root) {
            Ok(resolved) => Some((resolved, uses.span())),
            Err(error) => {
                self.error(Diagnostic::error(error.message, uses.span()).with_hint(error.hint));
                None
            }
        }
    }

    fn condition(&mut self, value: &Value<'_>) -> Option<(Condition, Range<usize>)> {
        let text = self.string(value, "`if`")?;
        match Condition::parse(text.get_ref()) {
            Ok(condition) => Some((condition, text.span())),
            Err(error) => {
                let span = inner_span(&text, &error);
                self.error(Diagnostic::error(format!("invalid `if`: {}", error.message), span));
                None
            }
        }
    }

    /// `[limits]`: bounds a pipeline raises (or lowers) for itself.
    fn expansion_limits(&mut self, table: &DeTable<'_>) -> ExpansionLimits {
        self.check_keys(table, LIMIT_KEYS, "in [limits]");
        let mut bound = |key: &str, default: u32, most: u32| {
            table
                .get(key)
                .and_then(|value| self.count_up_to(value, &format!("`limits.{key}`"), most))
                .unwrap_or(default)
        };
        ExpansionLimits {
            matrix: bound("matrix", MAX_MATRIX, 100_000),
            stages: bound("stages", MAX_STAGES, 1_000_000),
        }
    }

    fn matrix(&mut self, value: &Value<'_>, most: u32) -> Vec<(Spanned<String>, Vec<String>)> {
        let DeValue::Table(table) = value.get_ref() else {
            self.error(self.type_error(
                "`matrix`",
                "a table of lists, like `{ target = [\"a\", \"b\"] }`",
                value,
            ));
            return Vec::new();
        };
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        let mut matrix = Vec::new();
        for (key, values) in entries {
            let what = format!("`matrix.{}`", key.get_ref());
            let DeValue::Array(items) = values.get_ref() else {
                self.error(self.type_error(&what, "a list of values", values));
                continue;
            };
            if items.is_empty() {
                self.error(Diagnostic::error(
                    format!("{what} is empty, so the stage would never run"),
                    values.span(),
                ));
                continue;
            }
            let items: Vec<String> = items
                .iter()
                .filter_map(|item| self.scalar(item, &what))
                .map(Spanned::into_inner)
                .collect();
            matrix.push((Spanned::new(key.span(), key.get_ref().to_string()), items));
        }
        let entries = matrix
            .iter()
            .try_fold(1u64, |product, (_, items)| product.checked_mul(items.len() as u64))
            .unwrap_or(u64::MAX);
        if entries > u64::from(most) {
            self.error(
                Diagnostic::error(
                    format!("`matrix` expands to {entries} stages; a matrix may have at most {most}"),
                    value.span(),
                )
                .with_hint("split the stage, or raise the bound with `matrix = N` in a `[limits]` table"),
            );
            return Vec::new();
        }
        matrix
    }

    /// Expands matrices, resolves `needs`, and checks every reference.
    fn expand(
        &mut self,
        raw_stages: Vec<RawStage>,
        environments: &BTreeMap<String, (Environment, Range<usize>)>,
    ) -> Vec<Stage> {
        let owners: BTreeMap<&str, &str> = environments
            .iter()
            .flat_map(|(name, (environment, _))| {
                environment
                    .secrets
                    .iter()
                    .map(move |secret| (secret.as_str(), name.as_str()))
            })
            .collect();
        let names: BTreeSet<&str> = raw_stages.iter().map(|stage| stage.name.get_ref().as_str()).collect();
        let mut expanded_names: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for stage in &raw_stages {
            let entries = matrix_entries(&stage.matrix);
            let names: Vec<String> = entries
                .iter()
                .map(|entry| entry_name(stage.name.get_ref(), entry))
                .collect();
            if let Some(long) = names.iter().find(|name| name.len() > MAX_NAME) {
                self.error(
                    Diagnostic::error(
                        format!(
                            "the matrix entry `{}…` of stage `{}` is named with {} bytes; stage names are at most {MAX_NAME}",
                            long.chars().take(40).collect::<String>(),
                            stage.name.get_ref(),
                            long.len()
                        ),
                        stage.name.span(),
                    )
                    .with_hint("an entry's name holds its matrix values: shorten the values or the stage's name"),
                );
            }
            expanded_names.insert(stage.name.get_ref().clone(), names);
        }
        let matrix_stages: BTreeSet<&str> = raw_stages
            .iter()
            .filter(|stage| !stage.matrix.is_empty())
            .map(|stage| stage.name.get_ref().as_str())
            .collect();

        let handlers: BTreeSet<&str> = raw_stages
            .iter()
            .flat_map(|stage| stage.on_change.iter().map(|name| name.get_ref().as_str()))
            .collect();
        let mut stages = Vec::new();
        for raw in &raw_stages {
            let base = raw.name.get_ref();
            let on_change = self.on_change(raw, &expanded_names, &names);
            let mut needs = Vec::new();
            let mut needed_bases = BTreeSet::new();
            for need in &raw.needs {
                let target = need.get_ref();
                if target == base {
                    self.error(Diagnostic::error(format!("stage `{base}` needs itself"), need.span()));
                } else if let Some(expanded) = expanded_names.get(target) {
                    needs.extend(expanded.iter().cloned());
                    needed_bases.insert(target.as_str());
                } else {
                    let mut diagnostic = Diagnostic::error(
                        format!("`needs` names `{target}`, which is not a stage of this pipeline"),
                        need.span(),
                    );
                    if let Some(close) = did_you_mean(target, names.iter().copied()) {
                        diagnostic = diagnostic.with_hint(format!("did you mean `{close}`?"));
                    }
                    self.error(diagnostic);
                }
            }
            let environment = self.stage_environment(raw, environments);
            let matrix_keys: BTreeSet<&str> = raw.matrix.iter().map(|(key, _)| key.get_ref().as_str()).collect();
            let check_reference = |checker: &mut Self,
                                   reference: &Reference,
                                   span: Range<usize>,
                                   in_condition: bool| {
                match reference {
                    Reference::Matrix(key) if !matrix_keys.contains(key.as_str()) => checker.error(Diagnostic::error(
                        format!("`matrix.{key}` is not a matrix key of stage `{base}`"),
                        span.clone(),
                    )),
                    Reference::Env(_) | Reference::Branch if !in_condition => checker.error(
                        Diagnostic::error(format!("`{reference}` can only be used in `if`"), span.clone())
                            .with_hint("a stage's inputs must be declared: set the value in `env` or `with` instead"),
                    ),
                    Reference::Environment(field) => match environment {
                        None => checker.error(
                            Diagnostic::error(
                                format!("`{reference}` is read by stage `{base}`, which has no `environment`"),
                                span.clone(),
                            )
                            .with_hint("add `environment = \"NAME\"` to the stage"),
                        ),
                        Some(environment) if field == "url" && environment.url.is_none() => checker.error(
                            Diagnostic::error(
                                format!("environment `{}` has no `url` for `{reference}` to read", environment.name),
                                span.clone(),
                            )
                            .with_hint(format!("add `url = \"https://...\"` to [environments.{}]", environment.name)),
                        ),
                        Some(_) => {}
                    },
                    Reference::Monitor(_) if !handlers.contains(base.as_str()) => checker.error(
                        Diagnostic::error(
                            format!("`{reference}` is read by stage `{base}`, which no `on_change` names"),
                            span.clone(),
                        )
                        .with_hint(format!(
                            "`cairn monitor` fills it in for the stages a check names in `on_change = [\"{base}\"]`"
                        )),
                    ),
                    Reference::Secret(name) => checker.error(
                        Diagnostic::error(format!("`{reference}` can only be used in `http_auth`"), span.clone())
                            .with_hint(format!(
                                "grant it with `secrets = [\"{name}\"]` and read it with `host.secret`, or let the \
                                 host send it with `http_auth = {{ \"https://ORIGIN\" = \"Bearer ${{{{ secrets.{name} }}}}\" }}`"
                            )),
                    ),
                    _ => {}
                }
                if let Some(stage) = reference.stage() {
                    if !needed_bases.contains(stage) {
                        checker.error(
                            Diagnostic::error(
                                format!("`{reference}` reads stage `{stage}`, which `{base}` does not need"),
                                span,
                            )
                            .with_hint(format!("add `\"{stage}\"` to the `needs` of `{base}`")),
                        );
                    } else if matrix_stages.contains(stage) && matches!(reference, Reference::StageOutput { .. }) {
                        checker.error(Diagnostic::error(
                            format!("`{reference}` is ambiguous: `{stage}` is a matrix with several entries"),
                            span,
                        ));
                    }
                }
            };
            let templates = |checker: &mut Self, values: &[&Spanned<String>]| -> Vec<Template> {
                values
                    .iter()
                    .filter_map(|value| match Template::parse(value.get_ref()) {
                        Ok(template) => {
                            for reference in template.references() {
                                check_reference(checker, reference, value.span(), false);
                            }
                            Some(template)
                        }
                        Err(error) => {
                            checker.error(Diagnostic::error(error.message.clone(), inner_span(value, &error)));
                            None
                        }
                    })
                    .collect()
            };
            let in_environment = raw.environment.as_ref().map(|name| name.get_ref().as_str());
            let owned_secret = |checker: &mut Self, secret: &str, span: Range<usize>| {
                if let Some(owner) = owners.get(secret)
                    && in_environment != Some(*owner)
                {
                    checker.error(
                        Diagnostic::error(
                            format!("the secret `{secret}` belongs to environment `{owner}`, and stage `{base}` is not in it"),
                            span,
                        )
                        .with_hint(format!("deploy from a stage with `environment = \"{owner}\"`")),
                    );
                }
            };
            for secret in &raw.secrets {
                owned_secret(self, secret.get_ref(), secret.span());
            }
            for (_, credential) in &raw.http_auth {
                if let Ok(template) = Template::parse(credential.get_ref()) {
                    for reference in template.references() {
                        if let Reference::Secret(secret) = reference {
                            owned_secret(self, secret, credential.span());
                        }
                    }
                }
            }
            let origins = self.network(&raw.network);
            let http_auth = self.http_auth(&raw.http_auth, &origins);
            let args = templates(self, &raw.args.iter().collect::<Vec<_>>());
            let with_values = templates(self, &raw.with.iter().map(|(_, value)| value).collect::<Vec<_>>());
            let env_values = templates(self, &raw.env.iter().map(|(_, value)| value).collect::<Vec<_>>());
            if let Some((condition, span)) = &raw.condition {
                for reference in condition.references() {
                    check_reference(self, reference, span.clone(), true);
                }
            }
            if let Some((Uses::Output { stage: producer, .. }, span)) = &raw.uses
                && !needed_bases.contains(producer.as_str())
            {
                self.error(
                    Diagnostic::error(
                        format!("`uses` reads the outputs of `{producer}`, which `{base}` does not need"),
                        span.clone(),
                    )
                    .with_hint(format!("add `\"{producer}\"` to the `needs` of `{base}`")),
                );
            }
            let Some((uses, _)) = &raw.uses else { continue };
            if args.len() != raw.args.len() || with_values.len() != raw.with.len() || env_values.len() != raw.env.len()
            {
                continue;
            }
            for entry in matrix_entries(&raw.matrix) {
                let substitute = |template: &Template| {
                    template.substitute(&|reference| match reference {
                        Reference::Matrix(key) => entry.iter().find(|(k, _)| k == key).map(|(_, value)| value.clone()),
                        Reference::Environment(field) => environment.and_then(|environment| match field.as_str() {
                            "name" => Some(environment.name.clone()),
                            _ => environment.url.clone(),
                        }),
                        _ => None,
                    })
                };
                stages.push(Stage {
                    name: entry_name(base, &entry),
                    base_name: base.clone(),
                    matrix: entry.clone(),
                    span: raw.name.span(),
                    uses: uses.clone(),
                    inputs: raw
                        .inputs
                        .iter()
                        .map(|glob| InputGlob {
                            pattern: glob.get_ref().clone(),
                            span: glob.span(),
                        })
                        .collect(),
                    args: args.iter().map(substitute).collect(),
                    with: raw
                        .with
                        .iter()
                        .map(|(key, _)| key.clone())
                        .zip(with_values.iter().map(substitute))
                        .collect(),
                    env: raw
                        .env
                        .iter()
                        .map(|(key, _)| key.clone())
                        .zip(env_values.iter().map(substitute))
                        .collect(),
                    needs: needs.clone(),
                    secrets: raw.secrets.iter().map(|secret| secret.get_ref().clone()).collect(),
                    network: raw.network.iter().map(|entry| entry.get_ref().clone()).collect(),
                    http_auth: http_auth.clone(),
                    clock: raw.clock,
                    random: raw.random,
                    limits: raw.limits,
                    cache: raw.cache,
                    condition: raw.condition.as_ref().map(|(condition, _)| condition.clone()),
                    retries: raw.retries,
                    tools: raw
                        .tools
                        .iter()
                        .map(|tool| ToolName {
                            name: tool.get_ref().clone(),
                            span: tool.span(),
                        })
                        .collect(),
                    junit: raw.junit.clone(),
                    environment: environment.map(|environment| environment.name.clone()),
                    verify: raw.verify.as_ref().is_some_and(|verify| *verify.get_ref()),
                    on_change: on_change.clone(),
                });
            }
        }
        stages
    }

    /// A stage's `on_change`, each name expanded to its matrix entries and
    /// checked: it must name another stage.
    fn on_change(
        &mut self,
        raw: &RawStage,
        expanded_names: &BTreeMap<String, Vec<String>>,
        names: &BTreeSet<&str>,
    ) -> Vec<String> {
        let base = raw.name.get_ref();
        let mut handlers = Vec::new();
        for handler in &raw.on_change {
            let target = handler.get_ref();
            if target == base {
                self.error(Diagnostic::error(
                    format!("stage `{base}` names itself in `on_change`"),
                    handler.span(),
                ));
            } else if let Some(expanded) = expanded_names.get(target) {
                handlers.extend(expanded.iter().cloned());
            } else {
                let mut diagnostic = Diagnostic::error(
                    format!("`on_change` names `{target}`, which is not a stage of this pipeline"),
                    handler.span(),
                );
                if let Some(close) = did_you_mean(target, names.iter().copied()) {
                    diagnostic = diagnostic.with_hint(format!("did you mean `{close}`?"));
                }
                self.error(diagnostic);
            }
        }
        handlers
    }

    /// The environment a stage names, checked: it must exist, and a stage
    /// there always runs, so `cache = true` contradicts it.
    fn stage_environment<'e>(
        &mut self,
        raw: &RawStage,
        environments: &'e BTreeMap<String, (Environment, Range<usize>)>,
    ) -> Option<&'e Environment> {
        if let Some(verify) = &raw.verify
            && *verify.get_ref()
            && raw.environment.is_none()
        {
            self.error(
                Diagnostic::error(
                    format!(
                        "stage `{}` verifies a deployment, but deploys to no environment",
                        raw.name.get_ref()
                    ),
                    verify.span(),
                )
                .with_hint("add `environment = \"NAME\"`: `verify` checks that environment's deployment"),
            );
        }
        let name = raw.environment.as_ref()?;
        let Some((environment, _)) = environments.get(name.get_ref()) else {
            let mut diagnostic = Diagnostic::error(
                format!(
                    "`environment` names `{}`, which is not an environment of this pipeline",
                    name.get_ref()
                ),
                name.span(),
            );
            diagnostic = match did_you_mean(name.get_ref(), environments.keys().map(String::as_str)) {
                Some(close) => diagnostic.with_hint(format!("did you mean `{close}`?")),
                None => diagnostic.with_hint(format!("declare it: `[environments.{}]`", name.get_ref())),
            };
            self.error(diagnostic);
            return None;
        };
        if raw.cache == Some(true) {
            self.error(
                Diagnostic::error(
                    format!(
                        "stage `{}` deploys to `{}`, so it always runs: `cache = true` cannot hold",
                        raw.name.get_ref(),
                        environment.name
                    ),
                    name.span(),
                )
                .with_hint("remove `cache = true`"),
            );
        }
        Some(environment)
    }

    /// Reads each `network` entry, reporting a malformed one at its place;
    /// returns the HTTP origins granted.
    fn network(&mut self, entries: &[Spanned<String>]) -> Vec<Origin> {
        entries
            .iter()
            .filter_map(|entry| match NetworkEntry::parse(entry.get_ref()) {
                Ok(NetworkEntry::Http(origin)) => Some(origin),
                Ok(NetworkEntry::Socket(_)) => None,
                Err(reason) => {
                    self.error(
                        Diagnostic::error(format!("`{}` cannot be granted", entry.get_ref()), entry.span())
                            .with_hint(reason),
                    );
                    None
                }
            })
            .collect()
    }

    /// `http_auth = { "https://origin" = "Bearer ${{ secrets.NAME }}" }`:
    /// each origin must be one `network` grants, and each value may read
    /// secrets only. Keyed by the origin written the way `network` reads it.
    fn http_auth(&mut self, entries: &[(String, Spanned<String>)], granted: &[Origin]) -> BTreeMap<String, Template> {
        let mut credentials = BTreeMap::new();
        for (key, value) in entries {
            let origin = match Origin::parse(key) {
                Ok(origin) => origin,
                Err(reason) => {
                    self.error(
                        Diagnostic::error(format!("`http_auth` key `{key}` is not an HTTP origin"), value.span())
                            .with_hint(reason),
                    );
                    continue;
                }
            };
            if !granted.contains(&origin) {
                self.error(
                    Diagnostic::error(
                        format!("`http_auth` gives a credential for {origin}, which `network` does not grant"),
                        value.span(),
                    )
                    .with_hint(format!("add `\"{origin}\"` to the stage's `network`")),
                );
                continue;
            }
            let template = match Template::parse(value.get_ref()) {
                Ok(template) => template,
                Err(error) => {
                    self.error(Diagnostic::error(error.message.clone(), inner_span(value, &error)));
                    continue;
                }
            };
            let mut secrets = 0;
            for reference in template.references() {
                if matches!(reference, Reference::Secret(_)) {
                    secrets += 1;
                } else {
                    self.error(Diagnostic::error(
                        format!("`http_auth` can read secrets only, not `{reference}`"),
                        value.span(),
                    ));
                }
            }
            if secrets == 0 {
                self.error(
                    Diagnostic::error(
                        format!("the credential for {origin} reads no secret: it would be written in the pipeline"),
                        value.span(),
                    )
                    .with_hint("write it as `\"Bearer ${{ secrets.NAME }}\"` and pass NAME's value as a secret"),
                );
                continue;
            }
            credentials.insert(origin.to_string(), template);
        }
        credentials
    }

    fn check_keys(&mut self, table: &DeTable<'_>, known: &[&str], context: &str) {
        for key in table.keys() {
            let name = key.get_ref().as_ref();
            if known.contains(&name) {
                continue;
            }
            let mut diagnostic = Diagnostic::error(format!("unknown key `{name}` {context}"), key.span());
            diagnostic = match did_you_mean(name, known.iter().copied()) {
                Some(close) => diagnostic.with_hint(format!("did you mean `{close}`?")),
                None => diagnostic.with_hint(format!("the keys here are {}", known.join(", "))),
            };
            self.error(diagnostic);
        }
    }

    fn table_at<'t, 'i>(&mut self, table: &'t DeTable<'i>, key: &str) -> Option<&'t DeTable<'i>> {
        let value = table.get(key)?;
        match value.get_ref() {
            DeValue::Table(inner) => Some(inner),
            _ => {
                self.error(self.type_error(&format!("`{key}`"), "a table", value));
                None
            }
        }
    }

    fn type_error(&self, what: &str, expected: &str, value: &Value<'_>) -> Diagnostic {
        Diagnostic::error(
            format!("{what} must be {expected}, not {}", kind(value.get_ref())),
            value.span(),
        )
    }

    fn string(&mut self, value: &Value<'_>, what: &str) -> Option<Spanned<String>> {
        match value.get_ref() {
            DeValue::String(text) => Some(Spanned::new(value.span(), text.to_string())),
            _ => {
                self.error(self.type_error(what, "a string", value));
                None
            }
        }
    }

    /// A string, number or boolean, as text (for `with`, `env` and matrix values).
    fn scalar(&mut self, value: &Value<'_>, what: &str) -> Option<Spanned<String>> {
        let text = match value.get_ref() {
            DeValue::String(text) => text.to_string(),
            DeValue::Integer(integer) => integer.to_string(),
            DeValue::Float(float) => float.to_string(),
            DeValue::Boolean(boolean) => boolean.to_string(),
            _ => {
                self.error(self.type_error(what, "a string, number or boolean", value));
                return None;
            }
        };
        Some(Spanned::new(value.span(), text))
    }

    fn string_list(&mut self, value: &Value<'_>, what: &str) -> Vec<Spanned<String>> {
        match value.get_ref() {
            DeValue::Array(items) => items
                .iter()
                .filter_map(|item| self.string(item, &format!("each of {what}")))
                .collect(),
            _ => {
                self.error(self.type_error(what, "a list of strings", value));
                Vec::new()
            }
        }
    }

    fn scalar_table(&mut self, value: &Value<'_>, what: &str) -> Vec<(String, Spanned<String>)> {
        let DeValue::Table(table) = value.get_ref() else {
            self.error(self.type_error(what, "a table", value));
            return Vec::new();
        };
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        entries
            .into_iter()
            .filter_map(|(key, item)| {
                let text = self.scalar(item, &format!("`{}` in {what}", key.get_ref()))?;
                Some((key.get_ref().to_string(), text))
            })
            .collect()
    }

    fn boolean(&mut self, value: &Value<'_>, what: &str) -> bool {
        match value.get_ref() {
            DeValue::Boolean(boolean) => *boolean,
            _ => {
                self.error(self.type_error(what, "`true` or `false`", value));
                true
            }
        }
    }

    fn count(&mut self, value: &Value<'_>, what: &str) -> Option<u32> {
        self.count_up_to(value, what, 100)
    }

    /// A whole number from 0 to `most`.
    fn count_up_to(&mut self, value: &Value<'_>, what: &str, most: u32) -> Option<u32> {
        let DeValue::Integer(integer) = value.get_ref() else {
            self.error(self.type_error(what, &format!("a whole number from 0 to {most}"), value));
            return None;
        };
        let number = i64::from_str_radix(integer.as_str(), integer.radix()).ok();
        match number
            .and_then(|number| u32::try_from(number).ok())
            .filter(|number| *number <= most)
        {
            Some(number) => Some(number),
            None => {
                let message = format!("{what} must be a whole number from 0 to {most}, not {integer}");
                self.error(Diagnostic::error(message, value.span()));
                None
            }
        }
    }

    fn choice<T: Copy>(&mut self, value: &Value<'_>, what: &str, choices: &[(&str, T)]) -> T {
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        if let DeValue::String(text) = value.get_ref()
            && let Some((_, choice)) = choices.iter().find(|(name, _)| *name == text.as_ref())
        {
            return *choice;
        }
        let expected = format!("\"{}\"", names.join("\" or \""));
        let diagnostic = match value.get_ref() {
            DeValue::String(text) => {
                Diagnostic::error(format!("{what} must be {expected}, not \"{text}\""), value.span())
            }
            _ => self.type_error(what, &expected, value),
        };
        self.error(diagnostic);
        choices[0].1
    }

    fn parsed<T: std::str::FromStr<Err = cairn_core::units::UnitError> + FromInteger>(
        &mut self,
        value: &Value<'_>,
        what: &str,
    ) -> Option<T> {
        let result = match value.get_ref() {
            DeValue::String(text) => text.parse::<T>().map_err(|error| format!("{what}: {error}")),
            DeValue::Integer(integer) => u64::from_str_radix(integer.as_str(), integer.radix())
                .map(T::from_integer)
                .map_err(|_| format!("{what} must not be negative")),
            other => Err(format!("{what} must be {}, not {}", T::EXAMPLE, kind(other))),
        };
        match result {
            Ok(parsed) => Some(parsed),
            Err(message) => {
                self.error(Diagnostic::error(message, value.span()));
                None
            }
        }
    }
}

/// How an integer in the file is read for a unit (seconds, bytes).
trait FromInteger {
    const EXAMPLE: &'static str;
    fn from_integer(value: u64) -> Self;
}

impl FromInteger for HumanDuration {
    const EXAMPLE: &'static str = "a duration such as \"30s\"";
    fn from_integer(value: u64) -> Self {
        HumanDuration(std::time::Duration::from_secs(value))
    }
}

impl FromInteger for ByteSize {
    const EXAMPLE: &'static str = "a size such as \"256MiB\"";
    fn from_integer(value: u64) -> Self {
        ByteSize(value)
    }
}

fn kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a number",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// A program's name (no `/`), or a path to one relative to the pipeline
/// file (`./ci/lint.sh`); never empty, never a flag.
fn valid_tool(tool: &str) -> bool {
    !tool.is_empty()
        && !tool.starts_with('-')
        && !tool.ends_with('/')
        && !tool.chars().any(|c| c.is_control() || c.is_whitespace())
        && (tool.contains('/') || (tool != "." && tool != ".."))
}

fn valid_stage_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// Every combination of matrix values, keys in file order; one empty entry
/// for a stage without a matrix.
fn matrix_entries(matrix: &[(Spanned<String>, Vec<String>)]) -> Vec<Vec<(String, String)>> {
    let mut entries = vec![Vec::new()];
    for (key, values) in matrix {
        entries = entries
            .into_iter()
            .flat_map(|entry| {
                values.iter().map(move |value| {
                    let mut next = entry.clone();
                    next.push((key.get_ref().clone(), value.clone()));
                    next
                })
            })
            .collect();
    }
    entries
}

/// `build[os=linux,target=x86]`, or `build` for a stage without a matrix.
fn entry_name(base: &str, entry: &[(String, String)]) -> String {
    if entry.is_empty() {
        return base.to_owned();
    }
    let values: Vec<String> = entry.iter().map(|(key, value)| format!("{key}={value}")).collect();
    format!("{base}[{}]", values.join(","))
}

/// The span of a syntax error inside a string value: one character past the
/// opening quote plus the error's offset, when that stays inside the value.
fn inner_span(value: &Spanned<String>, error: &SyntaxError) -> Range<usize> {
    let span = value.span();
    let start = span.start + 1 + error.offset;
    if start < span.end { start..start + 1 } else { span }
}
