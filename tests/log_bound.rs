//! The log bound: a stage printing a gigabyte keeps at most `max_log` of it
//! and the host's memory stays flat. Run in a process of its own (the test
//! binary again, with only this test), so that the process's peak memory
//! measures this one stage and not the tests running beside it.

use crate::support::*;
use cairn::Limits;
use cairn::units::ByteSize;

/// The peak resident memory of this process since the last reset, in bytes.
fn peak_resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number");
    kib * 1024
}

#[test]
fn printing_gigabytes_keeps_the_log_and_host_memory_bounded() {
    in_own_process(
        "log_bound::printing_gigabytes_keeps_the_log_and_host_memory_bounded",
        || {
            tokio::runtime::Runtime::new()
                .expect("a runtime")
                .block_on(print_gigabytes())
        },
    );
}

async fn print_gigabytes() {
    let probe = probe().await;
    let mut sandbox = sandbox(&["flood", "1024"]);
    sandbox.limits = Limits {
        max_log: ByteSize::mib(1),
        ..Limits::default()
    };
    // Reset the peak so it measures this run alone.
    std::fs::write("/proc/self/clear_refs", "5").expect("resettable peak RSS");
    let before = peak_resident_bytes();
    let run = run(&probe, &sandbox).await;
    let growth = peak_resident_bytes().saturating_sub(before);
    assert_succeeded(&run);

    let kept: u64 = run.log.lines.iter().map(|line| line.text.len() as u64 + 1).sum();
    assert!(kept <= ByteSize::mib(1).0 + 1024, "kept {kept} bytes");
    assert!(
        run.log.dropped_bytes >= ByteSize::mib(1022).0,
        "counted what it dropped: {}",
        run.log.dropped_bytes
    );
    let notice = run.log.lines.last().expect("lines");
    assert!(notice.text.contains("reached its limit of 1 MiB"), "{}", notice.text);
    assert!(
        growth < ByteSize::mib(64).0,
        "1 GiB of output grew the host by {}",
        ByteSize(growth)
    );
    assert_runtime_still_healthy().await;
}
