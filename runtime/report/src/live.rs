//! The live terminal view: one line per running stage with its progress and
//! last log line, a line per finished stage, and the summary table.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::style::{Style, elapsed, paint};
use super::summary::Summary;
use super::{Event, Reporter, Status};
use cairn_core::observer::Level;

/// Log lines kept per running stage, shown if it fails.
const TAIL_LINES: usize = 20;

/// Draws running stages as redrawn lines on stderr.
pub struct LiveReporter {
    verbose: bool,
    multi: MultiProgress,
    stages: Mutex<HashMap<String, Running>>,
    summary: Summary,
}

struct Running {
    bar: ProgressBar,
    tail: VecDeque<String>,
}

impl LiveReporter {
    /// A live view on stderr; `verbose` also shows `debug` and `trace` logs.
    pub fn new(verbose: bool) -> Self {
        Self {
            verbose,
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
            stages: Mutex::new(HashMap::new()),
            summary: Summary::default(),
        }
    }

    fn print(&self, text: &str) {
        let _ = self.multi.println(text);
    }

    fn spinner_style() -> ProgressStyle {
        ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed:>4} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
    }

    fn bar_style() -> ProgressStyle {
        ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed:>4} [{bar:20}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }
}

impl Reporter for LiveReporter {
    fn event(&self, event: &Event) {
        self.summary.record(event);
        let Ok(mut stages) = self.stages.lock() else {
            return;
        };
        match event {
            Event::PipelineStarted {
                pipeline,
                stages: names,
                jobs,
            } => {
                self.print(&format!(
                    "pipeline `{pipeline}`: {} stages, {jobs} at a time",
                    names.len()
                ));
            }
            Event::StageStarted { stage, attempt } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(Self::spinner_style());
                bar.set_prefix(stage.clone());
                if *attempt > 1 {
                    bar.set_message(format!("retrying (attempt {attempt})"));
                }
                bar.enable_steady_tick(Duration::from_millis(100));
                if let Some(previous) = stages.insert(
                    stage.clone(),
                    Running {
                        bar,
                        tail: VecDeque::new(),
                    },
                ) {
                    previous.bar.finish_and_clear();
                }
            }
            Event::StageLog {
                stage,
                source,
                level,
                text,
            } => {
                if let Some(running) = stages.get_mut(stage) {
                    if !super::shown(*source, *level, self.verbose) {
                        return;
                    }
                    running.bar.set_message(text.clone());
                    if running.tail.len() == TAIL_LINES {
                        running.tail.pop_front();
                    }
                    running.tail.push_back(text.clone());
                }
            }
            Event::StageProgress { stage, done, total } => {
                if let Some(running) = stages.get(stage)
                    && *total > 0
                {
                    if running.bar.length() != Some(*total) {
                        running.bar.set_style(Self::bar_style());
                        running.bar.set_length(*total);
                    }
                    running.bar.set_position(*done);
                }
            }
            Event::StageAnnotation {
                stage,
                path,
                line,
                column,
                severity,
                message,
            } => {
                let style = if *severity >= Level::Error {
                    Style::Error
                } else {
                    Style::Warn
                };
                self.print(&format!(
                    "  {} {}: {}: {message}",
                    paint(stage, Style::Bold),
                    super::place(path, *line, *column),
                    paint(severity.as_str(), style)
                ));
            }
            Event::StageFinished {
                stage,
                status,
                duration_ms,
                error,
                hint,
                reason,
                summary,
                ..
            } => {
                let running = stages.remove(stage);
                if let Some(running) = &running {
                    running.bar.finish_and_clear();
                }
                let took = paint(&elapsed(Duration::from_millis(*duration_ms)), Style::Dim);
                let line = match status {
                    Status::Succeeded | Status::Cached => format!(
                        "{} {} {took} {}",
                        paint("✓", Style::Success),
                        paint(stage, Style::Bold),
                        summary.as_deref().unwrap_or("")
                    ),
                    Status::Failed => {
                        let mut text = format!(
                            "{} {} {took} {}",
                            paint("✗", Style::Error),
                            paint(stage, Style::Bold),
                            paint(error.as_deref().unwrap_or("failed"), Style::Error)
                        );
                        for line in running.iter().flat_map(|running| running.tail.iter()) {
                            text.push_str(&format!("\n    {}", paint(line, Style::Dim)));
                        }
                        if let Some(hint) = hint {
                            text.push_str(&format!("\n  {}", paint(&format!("hint: {hint}"), Style::Hint)));
                        }
                        text
                    }
                    Status::Skipped => paint(
                        &format!("- {stage} skipped: {}", reason.as_deref().unwrap_or("")),
                        Style::Dim,
                    ),
                };
                self.print(&line);
            }
            Event::StageTests { .. } => {}
            Event::PipelineFinished { .. } => {
                for (_, running) in stages.drain() {
                    running.bar.finish_and_clear();
                }
                self.print(self.summary.render(event).trim_end());
            }
            Event::Deployment { .. } | Event::ApprovalRequested { .. } => {
                if let Some((text, style)) = super::deployment_lines(event) {
                    self.print(&paint(&text, style));
                }
            }
        }
    }
}
