//! Every bound, crossed on purpose: the stage fails with an error naming the
//! bound and its value, and the next stage in the same process runs normally.

use std::time::{Duration, Instant};

use crate::support::*;
use cairn::sandbox::BoundExceeded;
use cairn::units::ByteSize;
use cairn::{Limits, StageFailure};

fn limits(change: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    change(&mut limits);
    limits
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_the_time_limit() {
    let probe = probe().await;
    let mut sandbox = sandbox(&["spin"]);
    sandbox.limits = limits(|limits| limits.timeout = Duration::from_millis(300));
    let started = Instant::now();
    let run = run(&probe, &sandbox).await;
    assert!(
        matches!(run.result, Err(StageFailure::Bound(BoundExceeded::Time(limit))) if limit == Duration::from_millis(300)),
        "{:?}",
        run.result
    );
    assert!(started.elapsed() < Duration::from_secs(30), "stopped, not left running");
    let message = run.result.expect_err("failed").to_string();
    assert_eq!(message, "exceeded its time limit of 300ms");
    assert_runtime_still_healthy().await;
}

#[tokio::test]
async fn a_stage_spinning_inside_run_is_stopped_too() {
    let stage = stage_probe().await;
    let mut sandbox = cairn::Sandbox::new("spin", [0; 32]);
    sandbox.invocation.config.insert("mode".into(), "spin".into());
    sandbox.limits = limits(|limits| limits.timeout = Duration::from_millis(200));
    let run = run(&stage, &sandbox).await;
    assert!(
        matches!(run.result, Err(StageFailure::Bound(BoundExceeded::Time(_)))),
        "{:?}",
        run.result
    );
    assert_runtime_still_healthy().await;
}

#[tokio::test]
async fn a_stage_blocked_in_the_host_is_stopped_at_the_time_limit() {
    let probe = probe().await;
    let mut sandbox = sandbox(&["sleep", "60000"]);
    sandbox.limits = limits(|limits| limits.timeout = Duration::from_millis(300));
    let started = Instant::now();
    let run = run(&probe, &sandbox).await;
    assert!(
        matches!(run.result, Err(StageFailure::Bound(BoundExceeded::Time(_)))),
        "{:?}",
        run.result
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_runtime_still_healthy().await;
}

#[tokio::test]
async fn allocating_past_the_memory_limit_is_stopped() {
    let probe = probe().await;
    let mut sandbox = sandbox(&["alloc", "200"]);
    sandbox.limits = limits(|limits| limits.memory = ByteSize::mib(64));
    let run = run(&probe, &sandbox).await;
    match &run.result {
        Err(StageFailure::Bound(BoundExceeded::Memory { limit, requested })) => {
            assert_eq!(*limit, ByteSize::mib(64));
            assert!(requested > limit);
        }
        other => panic!("expected the memory bound, got {other:?}"),
    }
    let message = run.result.expect_err("failed").to_string();
    assert!(message.starts_with("exceeded its memory limit of 64 MiB"), "{message}");

    // Within the limit the same program succeeds.
    let mut enough = crate::support::sandbox(&["alloc", "16"]);
    enough.limits = limits(|limits| limits.memory = ByteSize::mib(64));
    assert_succeeded(&crate::support::run(&probe, &enough).await);
    assert_runtime_still_healthy().await;
}

#[tokio::test]
async fn writing_past_the_output_limit_fails_the_stage() {
    let probe = probe().await;
    let mut sandbox = sandbox(&["fill", "/out/big.bin", "64"]);
    sandbox.limits = limits(|limits| limits.max_output = ByteSize::mib(8));
    let run = run(&probe, &sandbox).await;
    match &run.result {
        Err(StageFailure::Bound(BoundExceeded::Output { limit, written })) => {
            assert_eq!(*limit, ByteSize::mib(8));
            assert!(written > limit);
        }
        other => panic!("expected the output bound, got {other:?}"),
    }
    assert!(
        run.result
            .expect_err("failed")
            .to_string()
            .contains("output limit of 8 MiB")
    );

    let mut scratch = crate::support::sandbox(&["fill", "/tmp/big.bin", "64"]);
    scratch.limits = limits(|limits| limits.max_output = ByteSize::mib(8));
    let run = crate::support::run(&probe, &scratch).await;
    assert!(
        matches!(run.result, Err(StageFailure::Bound(BoundExceeded::Scratch { .. }))),
        "{:?}",
        run.result
    );
    assert_runtime_still_healthy().await;
}

#[tokio::test]
async fn creating_entries_past_the_entry_limit_fails_the_stage() {
    let probe = probe().await;
    // Empty files, which no byte bound sees: stopped while the stage runs.
    let mut scratch = sandbox(&["many", "/tmp/x", "1000000"]);
    scratch.limits = limits(|limits| {
        limits.max_entries = 2_000;
        limits.timeout = Duration::from_secs(120);
    });
    let started = Instant::now();
    let stopped = run(&probe, &scratch).await;
    match &stopped.result {
        Err(StageFailure::Bound(BoundExceeded::Entries { limit, folder, created })) => {
            assert_eq!((*limit, *folder), (2_000, "/tmp"));
            assert!(*created > 2_000);
        }
        other => panic!("expected the entry bound, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "stopped early, not by the time bound"
    );
    let failure = stopped.result.expect_err("failed");
    assert!(
        failure
            .to_string()
            .starts_with("created more than its entry limit of 2000 entries in /tmp")
    );
    assert_eq!(
        failure.hint(),
        Some("raise `max_entries` for the stage (`--max-entries` for `cairn stage run`) if it needs more")
    );

    // Too quick for the watcher: counted after the run too.
    let mut out = sandbox(&["many", "/out", "300"]);
    out.limits = limits(|limits| limits.max_entries = 100);
    let caught = run(&probe, &out).await;
    assert!(
        matches!(
            caught.result,
            Err(StageFailure::Bound(BoundExceeded::Entries { folder: "/out", .. }))
        ),
        "{:?}",
        caught.result
    );
    assert_runtime_still_healthy().await;
}

#[tokio::test]
async fn a_small_output_just_over_the_limit_is_caught_after_the_run() {
    // Too quick for the watcher: the check after the stage returns catches it.
    let probe = probe().await;
    let mut sandbox = sandbox(&["fill", "/out/two.bin", "2"]);
    sandbox.limits = limits(|limits| limits.max_output = ByteSize::mib(1));
    let run = run(&probe, &sandbox).await;
    assert!(
        matches!(run.result, Err(StageFailure::Bound(BoundExceeded::Output { .. }))),
        "{:?}",
        run.result
    );
}

#[tokio::test]
async fn unbounded_recursion_is_reported_as_a_stack_overflow() {
    let probe = probe().await;
    // One recursion lives on the wasm call stack, the other on the shadow
    // stack in linear memory; both are the same mistake to the user.
    for action in ["recurse", "recurse-with-locals"] {
        let run = run(&probe, &sandbox(&[action])).await;
        match &run.result {
            Err(failure @ StageFailure::StackOverflow { backtrace }) => {
                assert!(failure.to_string().starts_with("overflowed its stack"), "{failure}");
                assert!(
                    backtrace.contains("recurse"),
                    "the backtrace names the function: {backtrace}"
                );
            }
            other => panic!("{action}: expected a stack overflow, got {other:?}"),
        }
        assert_runtime_still_healthy().await;
    }
}

#[tokio::test]
async fn a_panic_is_a_trap_whose_message_is_in_the_log() {
    let probe = probe().await;
    let run = run(&probe, &sandbox(&["panic", "the sky is falling"])).await;
    let failure = run.result.as_ref().expect_err("panicked");
    assert!(
        matches!(failure, StageFailure::Trap { message, .. } if message.contains("unreachable")),
        "{failure:?}"
    );
    assert!(failure.hint().is_some_and(|hint| hint.contains("panic message")));
    assert!(
        run.log
            .lines
            .iter()
            .any(|line| line.text.contains("the sky is falling")),
        "{:#?}",
        run.log.lines
    );
    assert_runtime_still_healthy().await;
}

#[tokio::test]
async fn a_stage_that_returns_an_error_or_exits_fails_with_its_reason() {
    let stage = stage_probe().await;
    for (mode, expected) in [
        ("fail", "returned an error: asked to fail"),
        ("exit", "called exit(0) instead of returning from `run`"),
        ("nonsense", "returned an error: unknown mode `nonsense`"),
    ] {
        let mut sandbox = cairn::Sandbox::new(mode, [0; 32]);
        sandbox.invocation.config.insert("mode".into(), mode.into());
        let run = run(&stage, &sandbox).await;
        assert_eq!(run.result.expect_err("fails").to_string(), expected);
    }
}
