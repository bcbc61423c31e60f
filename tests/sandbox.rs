//! Every row of the sandbox table, proven both ways: what is granted works,
//! and what is not granted is refused. The probe guest tries each thing and
//! reports what happened.

use std::net::TcpListener;

use crate::support::*;
use cairn::observer::{Level, LogSource};
use cairn::sandbox::{Clock, Random};
use cairn::{StageFailure, sandbox::MASK};

#[tokio::test]
async fn src_is_readable_when_granted_and_absent_otherwise() {
    let probe = probe().await;
    let src = folder(&[("file.txt", "twelve bytes")]);

    let mut granted = sandbox(&["read", "/src/file.txt"]);
    granted.src = Some(src.path().to_owned());
    let run = run(&probe, &granted).await;
    assert_succeeded(&run);
    assert_eq!(stdout(&run), ["read 12 bytes"]);

    let refused = crate::support::run(&probe, &sandbox(&["read", "/src/file.txt"])).await;
    assert!(refusal(&refused).contains("NotFound"), "{}", refusal(&refused));
}

#[tokio::test]
async fn src_and_inputs_are_read_only() {
    let probe = probe().await;
    let src = folder(&[("file.txt", "original")]);
    let upstream = folder(&[("artifact.txt", "original")]);
    for target in [
        "/src/file.txt",
        "/src/new.txt",
        "/in/build/artifact.txt",
        "/in/build/new.txt",
    ] {
        let mut sandbox = sandbox(&["write", target, "changed"]);
        sandbox.src = Some(src.path().to_owned());
        sandbox.inputs.insert("build".into(), upstream.path().to_owned());
        let run = run(&probe, &sandbox).await;
        let refusal = refusal(&run);
        assert!(
            refusal.contains("ReadOnlyFilesystem") || refusal.contains("PermissionDenied"),
            "{target}: {refusal}"
        );
    }
    assert_eq!(read_tree(src.path()).len(), 1, "nothing was created in /src");
    assert_eq!(
        std::fs::read_to_string(src.path().join("file.txt")).expect("read"),
        "original"
    );
    assert_eq!(
        std::fs::read_to_string(upstream.path().join("artifact.txt")).expect("read"),
        "original"
    );
}

#[tokio::test]
async fn inputs_are_visible_at_in_name() {
    let probe = probe().await;
    let upstream = folder(&[("dist/app.js", "console.log(1)")]);
    let mut granted = sandbox(&["cat", "/in/build/dist/app.js"]);
    granted.inputs.insert("build".into(), upstream.path().to_owned());
    let run = run(&probe, &granted).await;
    assert_succeeded(&run);
    assert_eq!(stdout(&run), ["console.log(1)"]);

    let refused = crate::support::run(&probe, &sandbox(&["cat", "/in/build/dist/app.js"])).await;
    assert!(refusal(&refused).contains("NotFound"));
}

#[tokio::test]
async fn out_is_writable_and_becomes_the_output() {
    let probe = probe().await;
    let run = run(
        &probe,
        &sandbox(&[
            "mkdir",
            "/out/reports",
            "&&",
            "write",
            "/out/reports/a.txt",
            "alpha",
            "&&",
            "write",
            "/out/b.txt",
            "beta",
        ]),
    )
    .await;
    assert_succeeded(&run);
    let tree = read_tree(run.outputs());
    assert_eq!(tree.get("reports/a.txt").map(Vec::as_slice), Some(&b"alpha"[..]));
    assert_eq!(tree.get("b.txt").map(Vec::as_slice), Some(&b"beta"[..]));
    assert_eq!(run.output_totals.files, 2);
    assert_eq!(run.output_totals.bytes, 9);
}

#[tokio::test]
async fn tmp_is_writable_scratch_that_starts_empty() {
    let probe = probe().await;
    let first = run(
        &probe,
        &sandbox(&["write", "/tmp/scratch.txt", "x", "&&", "read", "/tmp/scratch.txt"]),
    )
    .await;
    assert_succeeded(&first);
    assert!(read_tree(first.outputs()).is_empty(), "/tmp is not an output");
    let second = run(&probe, &sandbox(&["list", "/tmp"])).await;
    assert_succeeded(&second);
    assert!(
        stdout(&second).is_empty(),
        "a new run sees an empty /tmp: {:?}",
        stdout(&second)
    );
}

#[tokio::test]
async fn nothing_else_of_the_host_file_system_is_reachable() {
    let probe = probe().await;
    let src = folder(&[("file.txt", "x")]);
    let host_file = src.path().join("file.txt");
    let host_path = host_file.to_str().expect("utf-8 path");
    for args in [
        vec!["read", "/etc/passwd"],
        vec!["list", "/etc"],
        vec!["read", host_path],
        vec!["read", "../../../../etc/passwd"],
    ] {
        let mut sandbox = sandbox(&args);
        sandbox.src = Some(src.path().to_owned());
        let run = run(&probe, &sandbox).await;
        let refusal = refusal(&run);
        assert!(
            refusal.contains("NotFound") || refusal.contains("PermissionDenied"),
            "{args:?}: {refusal}"
        );
    }
    // `/` is an empty skeleton: the sandbox's own folders, nothing of the host.
    let mut sandbox = sandbox(&["list", "/"]);
    sandbox.src = Some(src.path().to_owned());
    let run = run(&probe, &sandbox).await;
    assert_succeeded(&run);
    assert_eq!(stdout(&run), ["in", "out", "src", "tmp"]);
}

#[tokio::test]
async fn climbing_out_of_every_preopen_is_refused() {
    let probe = probe().await;
    let src = folder(&[("file.txt", "x")]);
    let upstream = folder(&[("file.txt", "x")]);
    for preopen in ["/src", "/in/up", "/out", "/tmp"] {
        for path in [
            format!("{preopen}/../../etc/passwd"),
            format!("{preopen}/.."),
            format!("{preopen}/sub/../../.."),
        ] {
            let action = if path.ends_with("passwd") { "read" } else { "list" };
            let mut sandbox = sandbox(&[action, &path]);
            sandbox.src = Some(src.path().to_owned());
            sandbox.inputs.insert("up".into(), upstream.path().to_owned());
            let run = run(&probe, &sandbox).await;
            let refusal = refusal(&run);
            assert!(
                refusal.contains("PermissionDenied") || refusal.contains("NotFound"),
                "{action} {path}: {refusal}"
            );
        }
    }
}

#[tokio::test]
async fn symlinks_in_src_pointing_outside_are_not_followed() {
    let probe = probe().await;
    let src = folder(&[("file.txt", "x")]);
    std::os::unix::fs::symlink("/etc/passwd", src.path().join("passwd")).expect("symlink");
    std::os::unix::fs::symlink("../../../../../../etc", src.path().join("etc")).expect("symlink");
    for path in ["/src/passwd", "/src/etc/passwd"] {
        let mut sandbox = sandbox(&["read", path]);
        sandbox.src = Some(src.path().to_owned());
        let run = run(&probe, &sandbox).await;
        assert!(refusal(&run).contains("PermissionDenied"), "{path}: {}", refusal(&run));
    }
}

#[tokio::test]
async fn a_symlink_planted_in_out_pointing_outside_fails_the_stage() {
    let probe = probe().await;
    for target in ["../../../../etc/passwd", "sub/../../x"] {
        let run = run(&probe, &sandbox(&["symlink", target, "/out/link"])).await;
        match &run.result {
            Err(StageFailure::InvalidOutput(error)) => {
                let message = error.to_string();
                assert!(
                    message.contains("/out/link") && message.contains("outside /out"),
                    "{message}"
                );
            }
            other => panic!("a link to {target} must fail the stage, got {other:?}"),
        }
    }
    // WASI refuses to even create a link with an absolute target.
    let run = run(&probe, &sandbox(&["symlink", "/etc/passwd", "/out/link"])).await;
    assert!(refusal(&run).contains("not-permitted"), "{}", refusal(&run));
}

#[tokio::test]
async fn a_symlink_within_out_is_kept_as_a_link() {
    let probe = probe().await;
    let run = run(
        &probe,
        &sandbox(&[
            "write",
            "/out/target.txt",
            "data",
            "&&",
            "symlink",
            "target.txt",
            "/out/link",
        ]),
    )
    .await;
    assert_succeeded(&run);
    let link = run.outputs().join("link");
    assert!(std::fs::symlink_metadata(&link).expect("exists").is_symlink());
    assert_eq!(std::fs::read_link(&link).expect("a link").to_str(), Some("target.txt"));
}

#[tokio::test]
async fn the_environment_is_exactly_what_was_declared() {
    let probe = probe().await;
    assert!(
        std::env::var_os("PATH").is_some(),
        "the test process itself has an environment"
    );
    let mut sandbox = sandbox(&["env"]);
    sandbox.env.insert("RUST_LOG".into(), "info".into());
    sandbox.env.insert("GREETING".into(), "hello world".into());
    let run = run(&probe, &sandbox).await;
    assert_succeeded(&run);
    assert_eq!(stdout(&run), ["GREETING=hello world", "RUST_LOG=info"]);

    let bare = crate::support::run(&probe, &crate::support::sandbox(&["env"])).await;
    assert_succeeded(&bare);
    assert!(
        stdout(&bare).is_empty(),
        "no host variable leaks in: {:?}",
        stdout(&bare)
    );
}

#[tokio::test]
async fn connecting_is_refused_unless_the_address_is_granted() {
    let probe = probe().await;
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let address = listener.local_addr().expect("bound").to_string();

    let (refused, recorder) = run_with(&probe, &sandbox(&["connect", &address])).await;
    assert!(refusal(&refused).contains("PermissionDenied"), "{}", refusal(&refused));
    let notices = recorder.lines.lock().expect("not poisoned").clone();
    assert!(
        notices.iter().any(|line| line.source == LogSource::Host
            && line.level == Level::Warn
            && line.text.contains(&format!("network = [\"{address}\"]"))),
        "the refusal says what to grant: {notices:#?}"
    );

    let mut granted = sandbox(&["connect", &address]);
    granted.network = vec![address.clone()];
    let run = run(&probe, &granted).await;
    assert_succeeded(&run);
    assert_eq!(stdout(&run), [format!("connected to {address}")]);
    listener.set_nonblocking(true).expect("nonblocking");
    assert!(listener.accept().is_ok(), "the connection really reached the listener");

    // A grant for one port does not open another.
    let other = TcpListener::bind("127.0.0.1:0").expect("a second port");
    let mut wrong_port = sandbox(&["connect", &other.local_addr().expect("bound").to_string()]);
    wrong_port.network = vec![address];
    assert!(refusal(&crate::support::run(&probe, &wrong_port).await).contains("PermissionDenied"));
}

#[tokio::test]
async fn a_network_grant_without_a_port_is_rejected_before_running() {
    let probe = probe().await;
    let mut sandbox = sandbox(&["connect", "127.0.0.1:80"]);
    sandbox.network = vec!["localhost".into()];
    let error = runtime()
        .run(&probe, &sandbox, std::sync::Arc::new(cairn::observer::Silent))
        .await
        .expect_err("no port");
    assert!(error.to_string().contains("a host and port for sockets"), "{error}");
}

#[tokio::test]
async fn the_clock_is_pinned_unless_the_real_one_is_granted() {
    let probe = probe().await;
    let first = run(&probe, &sandbox(&["clock"])).await;
    let second = run(&probe, &sandbox(&["clock"])).await;
    assert_succeeded(&first);
    assert_eq!(stdout(&first), stdout(&second), "identical on two runs");
    assert_eq!(stdout(&first)[0], "wall 0.000000000", "SOURCE_DATE_EPOCH defaults to 0");

    let mut pinned = sandbox(&["clock"]);
    pinned.clock = Clock::Pinned {
        source_date_epoch: 1_700_000_000,
    };
    assert_eq!(stdout(&run(&probe, &pinned).await)[0], "wall 1700000000.000000000");

    let mut real = sandbox(&["clock"]);
    real.clock = Clock::Real;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let line = stdout(&run(&probe, &real).await)[0].clone();
    let seconds: u64 = line
        .trim_start_matches("wall ")
        .split('.')
        .next()
        .and_then(|secs| secs.parse().ok())
        .expect("seconds");
    assert!(seconds.abs_diff(now) < 60, "the real clock reads now: {line}");
}

#[tokio::test]
async fn randomness_is_seeded_unless_secure_randomness_is_granted() {
    let probe = probe().await;
    let first = stdout(&run(&probe, &sandbox(&["random"])).await);
    let second = stdout(&run(&probe, &sandbox(&["random"])).await);
    assert_eq!(first, second, "identical on two runs with the same seed");
    assert_eq!(first.len(), 3);

    let mut other_seed = sandbox(&["random"]);
    other_seed.random = Random::Seeded([8; 32]);
    assert_ne!(
        stdout(&run(&probe, &other_seed).await),
        first,
        "another seed, other numbers"
    );

    let mut secure = sandbox(&["random"]);
    secure.random = Random::Secure;
    let one = stdout(&run(&probe, &secure).await);
    let two = stdout(&run(&probe, &secure).await);
    assert_ne!(one[0], two[0], "secure randomness differs between runs");
}

#[tokio::test]
async fn a_stage_receives_its_invocation_and_returns_outputs() {
    let stage = stage_probe().await;
    let upstream = folder(&[("x", "y")]);
    let mut sandbox = cairn::Sandbox::new("lint", [1; 32]);
    sandbox.invocation.args = vec!["--strict".into(), "two words".into()];
    sandbox.invocation.config.insert("level".into(), "warn".into());
    sandbox.inputs.insert("build".into(), upstream.path().to_owned());
    let (run, recorder) = run_with(&stage, &sandbox).await;
    assert_succeeded(&run);
    let outcome = run.result.as_ref().expect("succeeded");
    assert_eq!(outcome.summary.as_deref(), Some("echoed 2 args"));
    assert_eq!(outcome.outputs["stage"], "lint");
    assert_eq!(outcome.outputs["args"], "--strict two words");
    assert_eq!(outcome.outputs["config.level"], "warn");
    assert_eq!(outcome.outputs["inputs"], "build");
    assert_eq!(
        std::fs::read_to_string(run.outputs().join("echo.txt")).expect("written"),
        "--strict\ntwo words"
    );

    let levels: Vec<(LogSource, Level, String)> = run
        .log
        .lines
        .iter()
        .map(|line| (line.source, line.level, line.text.clone()))
        .collect();
    for level in [Level::Trace, Level::Debug, Level::Info, Level::Warn, Level::Error] {
        let expected = (LogSource::Host, level, format!("level {level:?}"));
        assert!(levels.contains(&expected), "{expected:?} in {levels:#?}");
    }
    assert!(levels.contains(&(LogSource::Stdout, Level::Info, "to stdout".into())));
    assert!(levels.contains(&(LogSource::Stderr, Level::Warn, "to stderr".into())));
    assert_eq!(*recorder.progress.lock().expect("not poisoned"), [(1, 2), (2, 2)]);
    assert_eq!(run.annotations.len(), 1);
    assert_eq!(run.annotations[0].to_string(), "/src/file.txt:3:7: warn: look here");
    assert_eq!(*recorder.annotations.lock().expect("not poisoned"), run.annotations);
}

#[tokio::test]
async fn secrets_are_granted_by_name_and_masked_in_every_log_line() {
    let stage = stage_probe().await;
    let mut granted = cairn::Sandbox::new("deploy", [1; 32]);
    granted.invocation.config.insert("secret".into(), "TOKEN".into());
    granted.secrets.insert("TOKEN".into(), "s3cr3t-value".into());
    let run = run(&stage, &granted).await;
    assert_succeeded(&run);
    assert_eq!(
        run.result.as_ref().expect("succeeded").outputs["secret.TOKEN"],
        "granted"
    );
    let texts: Vec<&str> = run.log.lines.iter().map(|line| line.text.as_str()).collect();
    assert!(texts.contains(&format!("the secret is {MASK}").as_str()), "{texts:#?}");
    assert!(texts.contains(&format!("stdout says {MASK}").as_str()), "{texts:#?}");
    assert!(texts.iter().all(|text| !text.contains("s3cr3t-value")), "{texts:#?}");

    let mut withheld = cairn::Sandbox::new("deploy", [1; 32]);
    withheld.invocation.config.insert("secret".into(), "TOKEN".into());
    let run = crate::support::run(&stage, &withheld).await;
    assert_eq!(
        run.result.as_ref().expect("succeeded").outputs["secret.TOKEN"],
        "absent"
    );
}
