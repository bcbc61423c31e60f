//! A `cairn:stage` component that exercises every host function, so tests can
//! check what the host does with each. `with.mode` picks the behaviour:
//!
//! - `echo` (default): logs at every level, prints to stdout and stderr,
//!   reports progress, annotates `/src/file.txt:3:7`, writes `/out/echo.txt`,
//!   and returns its invocation as outputs (`stage`, `args`, `config.KEY`,
//!   `inputs`, and `secret.NAME` for `with.secret = "NAME"`, whose value it
//!   also logs so tests can see it masked).
//! - `noop`: returns an empty outcome and does nothing else (for benchmarks).
//! - `fail`: returns an error. `panic`: panics. `spin`: never returns.
//! - `exit`: calls `exit(0)` instead of returning.

use cairn_sdk::{Annotation, Invocation, Level, Outcome, Stage, fs};

struct StageProbe;

impl Stage for StageProbe {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        match invocation.config("mode").unwrap_or("echo") {
            "echo" => echo(&invocation),
            "noop" => Ok(Outcome::new()),
            "fail" => Err("asked to fail".into()),
            "panic" => panic!("asked to panic"),
            "spin" => {
                let mut counter: u64 = 0;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            "exit" => std::process::exit(0),
            other => Err(format!("unknown mode `{other}`").into()),
        }
    }
}

fn echo(invocation: &Invocation) -> cairn_sdk::Result<Outcome> {
    for level in [Level::Trace, Level::Debug, Level::Info, Level::Warn, Level::Error] {
        cairn_sdk::log(level, &format!("level {level:?}"));
    }
    println!("to stdout");
    eprintln!("to stderr");
    cairn_sdk::progress(1, 2);
    cairn_sdk::progress(2, 2);
    cairn_sdk::annotate(Annotation::warning("/src/file.txt", 3, "look here").column(7));
    std::fs::write(fs::out().join("echo.txt"), invocation.args.join("\n"))?;

    let mut outcome = Outcome::new()
        .summary(format!("echoed {} args", invocation.args.len()))
        .output("stage", &invocation.stage)
        .output("args", invocation.args.join(" "))
        .output(
            "inputs",
            fs::inputs()
                .into_iter()
                .map(|(name, _)| name)
                .collect::<Vec<_>>()
                .join(","),
        );
    for (key, value) in &invocation.config {
        outcome = outcome.output(format!("config.{key}"), value);
    }
    if let Some(name) = invocation.config("secret") {
        let state = match cairn_sdk::secret(name) {
            Some(value) => {
                cairn_sdk::info!("the secret is {value}");
                println!("stdout says {value}");
                "granted"
            }
            None => "absent",
        };
        outcome = outcome.output(format!("secret.{name}"), state);
    }
    Ok(outcome)
}

cairn_sdk::export!(StageProbe);
