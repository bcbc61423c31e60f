//! Looking back at runs: `cairn runs` lists them, `cairn show` details one
//! (or one of its stages), `cairn report` writes one as an HTML page; and
//! what a run writes for other tools as it ends (`--trace`, `--junit`,
//! `--sarif`, GitHub Actions' annotations and step summary).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use cairn::CacheDir;
use cairn::report::export::{codequality, github, html, junit, sarif, trace};
use cairn::report::record::{RunRecord, StageRecord};
use cairn::report::{Style, elapsed, paint, place};
use cairn::runs::{RunHistory, RunSummary};

use super::args::PipelineLocation;
use super::{Status, terminal};

/// Files a run writes for other tools as it ends (and the OpenTelemetry
/// export the environment asks for): shared by every command that runs
/// stages.
#[derive(Debug, Args, Default)]
pub(crate) struct ExportArgs {
    /// Write a Chrome trace of the run to FILE (open it in ui.perfetto.dev).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,

    /// Write a JUnit XML report of the run to FILE: a case per stage, and the stages' own test cases.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,

    /// Write the run's annotations to FILE as SARIF 2.1.0.
    #[arg(long, value_name = "FILE")]
    sarif: Option<PathBuf>,

    /// Write the run's annotations to FILE as a GitLab code quality report.
    #[arg(long, value_name = "FILE")]
    codequality: Option<PathBuf>,
}

impl ExportArgs {
    /// Writes what was asked for, and GitHub's annotations and summary on
    /// GitHub Actions. `json`: stdout is for events, so workflow commands
    /// go to stderr.
    pub(crate) fn write(&self, record: &RunRecord, json: bool) -> anyhow::Result<()> {
        if let Some(path) = &self.trace {
            write_file(
                path,
                serde_json::to_string(&trace::render(record))?.as_bytes(),
                "--trace",
            )?;
        }
        if let Some(path) = &self.junit {
            write_file(path, junit::render(record).as_bytes(), "--junit")?;
        }
        if let Some(path) = &self.sarif {
            write_file(
                path,
                serde_json::to_string_pretty(&sarif::render(record))?.as_bytes(),
                "--sarif",
            )?;
        }
        if let Some(path) = &self.codequality {
            write_file(
                path,
                serde_json::to_string_pretty(&codequality::render(record))?.as_bytes(),
                "--codequality",
            )?;
        }
        super::otel::export(record);
        if std::env::var("GITHUB_ACTIONS").is_ok_and(|value| value == "true") {
            let commands = github::workflow_commands(record);
            if json {
                eprint!("{commands}");
            } else {
                print!("{commands}");
            }
            if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|path| !path.is_empty()) {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&summary)
                    .with_context(|| format!("cannot open GITHUB_STEP_SUMMARY `{}`", Path::new(&summary).display()))?;
                file.write_all(github::step_summary(record).as_bytes())
                    .with_context(|| {
                        format!(
                            "cannot append to GITHUB_STEP_SUMMARY `{}`",
                            Path::new(&summary).display()
                        )
                    })?;
            }
        }
        Ok(())
    }
}

/// Writes a report file whole or not at all.
fn write_file(path: &Path, bytes: &[u8], option: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("{option}: cannot create `{}`", parent.display()))?;
    }
    cairn::cache_dir::write_atomically(path, bytes)
        .and_then(|()| {
            // A report is for others to read, as any file a tool writes.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        })
        .with_context(|| format!("{option}: cannot write `{}`", path.display()))
}

/// The pipeline file's canonical path, as runs record it.
fn pipeline_file(location: &PipelineLocation) -> String {
    let path = location.path();
    std::fs::canonicalize(&path).unwrap_or(path).display().to_string()
}

#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    #[command(flatten)]
    location: PipelineLocation,

    /// List the runs of every pipeline on this machine, not only this one's.
    #[arg(long)]
    all: bool,

    /// Print the runs as a JSON array on stdout.
    #[arg(long)]
    json: bool,
}

impl RunsArgs {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        let history = RunHistory::open(&CacheDir::from_env()?);
        let (mut runs, broken) = history.list();
        for error in &broken {
            eprintln!("{} {error}", paint("warning:", Style::Warn));
        }
        if !self.all {
            let file = pipeline_file(&self.location);
            runs.retain(|run| run.file == file);
        }
        if self.json {
            terminal::print_out(&format!("{}\n", serde_json::to_string_pretty(&runs)?))?;
            return Ok(Status::Success);
        }
        if runs.is_empty() {
            eprintln!(
                "no runs recorded{}",
                if self.all {
                    ""
                } else {
                    " for this pipeline (--all lists every pipeline's)"
                }
            );
            return Ok(Status::Success);
        }
        let mut text = String::new();
        for run in &runs {
            text.push_str(&run_line(run, self.all));
        }
        terminal::print_out(&text)?;
        eprintln!(
            "{} kept in {} ({}); keep more or fewer with CAIRN_KEEP_RUNS and CAIRN_KEEP_DAYS",
            if runs.len() == 1 {
                "1 run".to_owned()
            } else {
                format!("{} runs", runs.len())
            },
            history.folder().display(),
            bytesize::ByteSize(history.disk_usage()).display().si()
        );
        Ok(Status::Success)
    }
}

/// One line of `cairn runs`.
fn run_line(run: &RunSummary, with_pipeline: bool) -> String {
    let started = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(run.started_ms));
    let status = paint(
        &format!("{:<11}", run.status),
        match run.status.as_str() {
            "succeeded" => Style::Success,
            "failed" => Style::Error,
            _ => Style::Warn,
        },
    );
    let commit = run
        .commit
        .as_deref()
        .map_or("-".to_owned(), |commit| commit.chars().take(9).collect());
    let branch = run.branch.as_deref().unwrap_or("-");
    let pipeline = if with_pipeline {
        format!("  {}", run.pipeline)
    } else {
        String::new()
    };
    format!(
        "{}  {started}  {status} {:>8}  {commit} {branch}  {} ran, {} cached, {} failed, {} skipped{}{pipeline}\n",
        run.id,
        elapsed(Duration::from_millis(run.duration_ms)),
        run.succeeded,
        run.cached,
        run.failed,
        run.skipped,
        if run.command == "run" {
            String::new()
        } else {
            format!("  ({})", run.command)
        },
    )
}

/// A recorded run, by id, or the pipeline's newest.
fn load(location: &PipelineLocation, run: Option<&str>) -> anyhow::Result<RunRecord> {
    let history = RunHistory::open(&CacheDir::from_env()?);
    let file = pipeline_file(location);
    Ok(history.load(run.filter(|run| *run != "last"), Some(&file))?)
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The run's id, or enough of its start to tell it (default: the newest).
    run: Option<String>,

    /// Show this stage of the run: its log, annotations, outputs, key and timings.
    stage: Option<String>,

    #[command(flatten)]
    location: PipelineLocation,

    /// Print the record (or the stage's) as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl ShowArgs {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        let record = load(&self.location, self.run.as_deref())?;
        let Some(name) = &self.stage else {
            if self.json {
                terminal::print_out(&format!("{}\n", serde_json::to_string_pretty(&record)?))?;
            } else {
                terminal::print_out(&run_text(&record))?;
            }
            return Ok(Status::Success);
        };
        let Some(stage) = record.stage(name) else {
            let names = record.stages.iter().map(|stage| stage.name.as_str());
            let hint = cairn::pipeline::did_you_mean(name, names)
                .map(|close| format!("; did you mean `{close}`?"))
                .unwrap_or_default();
            anyhow::bail!("run {} has no stage `{name}`{hint}", record.id);
        };
        // What went into its key, while the workspace remembers it.
        let parts = stage.key.and_then(|key| {
            let root = cairn::pipeline::root_of(Path::new(&record.file));
            cairn::explain::key_parts(&CacheDir::from_env().ok()?, &root, &stage.name, &key)
        });
        if self.json {
            let mut value = serde_json::to_value(stage)?;
            if let Some(parts) = &parts {
                value["key_parts"] = serde_json::to_value(parts)?;
            }
            terminal::print_out(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
        } else {
            let mut text = stage_text(stage);
            if let Some(parts) = &parts {
                text.push_str("key parts:\n");
                for line in serde_json::to_string_pretty(parts)?.lines() {
                    text.push_str(&format!("  {line}\n"));
                }
            } else if stage.key.is_some() {
                text.push_str("key parts: no longer remembered (the workspace keeps its stages' last two keys)\n");
            }
            terminal::print_out(&text)?;
        }
        Ok(Status::Success)
    }
}

/// `cairn show RUN`.
fn run_text(record: &RunRecord) -> String {
    let mut text = format!(
        "run {} ({}) of pipeline `{}`: {}\nstarted {} · took {}{}{}\n",
        record.id,
        record.command,
        record.pipeline,
        record.status,
        humantime::format_rfc3339_seconds(record.started()),
        elapsed(Duration::from_millis(record.duration_ms)),
        record
            .branch
            .as_deref()
            .map(|branch| format!(" · branch {branch}"))
            .unwrap_or_default(),
        record
            .commit
            .as_deref()
            .map(|commit| format!(" · commit {commit}"))
            .unwrap_or_default(),
    );
    for line in &record.deployments {
        text.push_str(&format!("{line}\n"));
    }
    for stage in &record.stages {
        let about = stage
            .error
            .as_deref()
            .or(stage.reason.as_deref())
            .or(stage.summary.as_deref())
            .unwrap_or("");
        text.push_str(&format!(
            "  {:<10} {:<24} {:>8}  {about}\n",
            stage.status_name(),
            stage.name,
            elapsed(Duration::from_micros(stage.duration_us))
        ));
    }
    text.push_str(&format!(
        "`cairn show {} STAGE` shows a stage's log; `cairn report {} -o report.html` writes a page to share\n",
        record.id, record.id
    ));
    text
}

/// `cairn show RUN STAGE`.
fn stage_text(stage: &StageRecord) -> String {
    let mut text = format!(
        "stage `{}`: {} in {}{}\n",
        stage.name,
        stage.status_name(),
        elapsed(Duration::from_micros(stage.duration_us)),
        if stage.attempts > 1 {
            format!(" ({} attempts)", stage.attempts)
        } else {
            String::new()
        }
    );
    let mut field = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            text.push_str(&format!("{name}: {value}\n"));
        }
    };
    field("error", stage.error.clone());
    field("hint", stage.hint.clone());
    field("skipped", stage.reason.clone());
    field("summary", stage.summary.clone());
    field("environment", stage.environment.clone());
    field("key", stage.key.map(|key| key.to_string()));
    field("outputs digest", stage.outputs_digest.map(|digest| digest.to_string()));
    field("tests", stage.tests.map(|tests| tests.to_string()));
    if !stage.phases.is_empty() {
        let phases: Vec<String> = stage
            .phases
            .iter()
            .map(|phase| format!("{} {}", phase.name, elapsed(Duration::from_micros(phase.duration_us))))
            .collect();
        text.push_str(&format!("timings: {}\n", phases.join(", ")));
    }
    if let Some(why) = stage.explanation() {
        text.push_str(&format!("why: {}\n", why.trim_end()));
    }
    for (name, value) in &stage.outputs {
        text.push_str(&format!("output {name} = {value}\n"));
    }
    for annotation in &stage.annotations {
        text.push_str(&format!(
            "{}: {}: {}\n",
            place(&annotation.path, annotation.line, annotation.column),
            annotation.severity,
            annotation.message
        ));
    }
    if !stage.log.is_empty() {
        text.push_str("log:\n");
        if stage.log_left_out > 0 {
            text.push_str(&format!("  ({} earlier lines left out)\n", stage.log_left_out));
        }
        for line in &stage.log {
            text.push_str(&format!("  {}\n", line.text));
        }
    }
    text
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The run's id (default: the pipeline's newest).
    run: Option<String>,

    #[command(flatten)]
    location: PipelineLocation,

    /// Where to write the page.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        default_value = "cairn-report.html"
    )]
    output: PathBuf,
}

impl ReportArgs {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        let record = load(&self.location, self.run.as_deref())?;
        let page = html::render(&record).context("cannot write the run's record into the page")?;
        write_file(&self.output, page.as_bytes(), "-o")?;
        eprintln!(
            "{} wrote the report of run {} to {}",
            paint("ok:", Style::Success),
            record.id,
            self.output.display()
        );
        Ok(Status::Success)
    }
}
