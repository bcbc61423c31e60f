//! A `cairn:stage` component that exercises every host function, so tests can
//! check what the host does with each. `with.mode` picks the behaviour:
//!
//! - `echo` (default): logs at every level, prints to stdout and stderr,
//!   reports progress, annotates `/src/file.txt:3:7`, writes `/out/echo.txt`,
//!   and returns its invocation as outputs (`stage`, `args`, `config.KEY`,
//!   `inputs`, and `secret.NAME` for `with.secret = "NAME"`, whose value it
//!   also logs so tests can see it masked).
//! - `noop`: returns an empty outcome and does nothing else (for benchmarks).
//! - `slow`: logs `working on it`, reports progress 1 of 2, sleeps
//!   `with.ms` milliseconds (default 2000), reports 2 of 2 and returns (for
//!   watching a stage while it runs).
//! - `fail`: returns an error. `panic`: panics. `spin`: never returns.
//! - `exit`: calls `exit(0)` instead of returning.
//! - `big`: returns an output `big` of `with.size` bytes, and fails with an
//!   error of that size when `with.fail` is set.
//! - `list-in`: returns `listed`, the names `read_dir("/in")` gives, sorted.
//! - `leak`: reads the secret `with.secret` and puts its value where
//!   `with.place` says: `error`, `summary`, `output`, `output-name`,
//!   `annotation`, `file`, `file-name` or `link` (under `/out`).
//! - `fetch`: GETs each URL of `args` with the SDK's HTTP helper and shows
//!   everything it got back: status, headers and body on stdout, in
//!   `/out/fetch-N.txt` and as outputs `status.N` (or `error.N`); with
//!   `with.secret = "NAME"` it also asks `host.secret` and prints every
//!   environment variable, the way a stage hunting for a credential would.

use cairn_sdk::{Annotation, Invocation, Level, Outcome, Stage, fs};

struct StageProbe;

impl Stage for StageProbe {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        match invocation.config("mode").unwrap_or("echo") {
            "echo" => echo(&invocation),
            "noop" => Ok(Outcome::new()),
            "slow" => {
                println!("working on it");
                cairn_sdk::progress(1, 2);
                let ms = invocation.config("ms").and_then(|ms| ms.parse().ok()).unwrap_or(2000);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                cairn_sdk::progress(2, 2);
                Ok(Outcome::new().summary("slept"))
            }
            "fail" => Err("asked to fail".into()),
            "panic" => panic!("asked to panic"),
            "spin" => {
                let mut counter: u64 = 0;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            "exit" => std::process::exit(0),
            "list-in" => {
                let mut names: Vec<String> = std::fs::read_dir("/in")?
                    .map(|entry| entry.map(|entry| entry.file_name().to_string_lossy().into_owned()))
                    .collect::<Result<_, _>>()?;
                names.sort();
                Ok(Outcome::new().output("listed", names.join(",")))
            }
            "leak" => leak(&invocation),
            "fetch" => fetch(&invocation),
            "big" => {
                let size: usize = invocation
                    .config("size")
                    .unwrap_or("0")
                    .parse()
                    .map_err(|_| "`size` is a number")?;
                let text = "x".repeat(size);
                if invocation.config("fail").is_some() {
                    return Err(text.into());
                }
                Ok(Outcome::new().output("big", text))
            }
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

/// Puts a granted secret's value where `with.place` says, the way a
/// careless or hostile stage would.
fn leak(invocation: &Invocation) -> cairn_sdk::Result<Outcome> {
    let name = invocation.config("secret").unwrap_or("TOKEN");
    let value = cairn_sdk::secret(name).ok_or("the secret was not granted")?;
    let out = fs::out();
    let outcome = Outcome::new().summary("leaked");
    match invocation.config("place").unwrap_or("summary") {
        "error" => Err(format!("failed with {value}").into()),
        "summary" => Ok(Outcome::new().summary(format!("the token is {value}"))),
        "output" => Ok(outcome.output("token", &value)),
        "output-name" => Ok(outcome.output(format!("key-{value}"), "x")),
        "annotation" => {
            cairn_sdk::annotate(Annotation::error("/src/file.txt", 1, format!("found {value}")));
            Ok(outcome)
        }
        "file" => {
            std::fs::create_dir_all(out.join("config"))?;
            std::fs::write(out.join("config/app.env"), format!("TOKEN={value}\n"))?;
            Ok(outcome)
        }
        "file-name" => {
            std::fs::write(out.join(format!("{value}.txt")), "x")?;
            Ok(outcome)
        }
        "link" => {
            let (out, _) = cairn_sdk::bindings::wasi::filesystem::preopens::get_directories()
                .into_iter()
                .find(|(_, path)| path == "/out")
                .ok_or("no /out preopen")?;
            out.symlink_at(&value, "link")
                .map_err(|code| format!("cannot link: {code:?}"))?;
            Ok(outcome)
        }
        other => Err(format!("unknown place `{other}`").into()),
    }
}

/// Shows all a stage can learn from its requests (see the module's doc).
fn fetch(invocation: &Invocation) -> cairn_sdk::Result<Outcome> {
    let mut outcome = Outcome::new().summary(format!("fetched {} URLs", invocation.args.len()));
    if let Some(name) = invocation.config("secret") {
        let found = cairn_sdk::secret(name);
        println!("host.secret({name}) = {found:?}");
        outcome = outcome.output("secret", found.unwrap_or_else(|| "none".to_owned()));
        for (key, value) in std::env::vars() {
            println!("env {key}={value}");
        }
    }
    for (index, url) in invocation.args.iter().enumerate() {
        let shown = match cairn_sdk::http::Request::get(url).send() {
            Ok(response) => {
                outcome = outcome.output(format!("status.{index}"), response.status);
                let mut shown = format!("{} {}\n", response.status, response.url);
                for (name, value) in &response.headers {
                    shown.push_str(&format!("{name}: {value}\n"));
                }
                shown.push_str(&response.text());
                shown
            }
            Err(error) => {
                outcome = outcome.output(format!("error.{index}"), error.to_string());
                format!("error: {error}")
            }
        };
        println!("{shown}");
        std::fs::write(fs::out().join(format!("fetch-{index}.txt")), &shown)?;
    }
    Ok(outcome)
}

cairn_sdk::export!(StageProbe);
