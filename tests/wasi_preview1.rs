//! WASI preview1 conformance: core modules run as they are, on wasmtime's
//! preview1 implementation, through `cairn stage run` with each case's args,
//! env, folders and expected exit status and output.
//!
//! Two kinds of case: modules written here in WAT that call
//! `wasi_snapshot_preview1` directly, the way AssemblyScript and other
//! libc-free toolchains do (the preview1 component adapter trapped on the
//! first two: "assertion failed at adapter line ..."), and the Rust probe
//! built for `wasm32-wasip1`, which goes through wasi-libc like C and most
//! languages do.

use std::path::Path;

use cairn_test_programs::PROBE_PREVIEW1;

use crate::support::*;

/// Imports and helpers shared by the WAT cases: `$print(ptr, len)` writes
/// to stdout; memory 16..48 is scratch for it; data starts at 1024.
const PRELUDE: &str = r#"
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 16) (local.get $ptr))
    (i32.store (i32.const 20) (local.get $len))
    (if (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32))
      (then (call $proc_exit (i32.const 99)))))
  ;; Turns the NULs of [ptr, ptr+len) into newlines and prints it.
  (func $print_lines (param $ptr i32) (param $len i32) (local $at i32)
    (local.set $at (local.get $ptr))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $at) (i32.add (local.get $ptr) (local.get $len))))
      (if (i32.eqz (i32.load8_u (local.get $at))) (then (i32.store8 (local.get $at) (i32.const 10))))
      (local.set $at (i32.add (local.get $at) (i32.const 1)))
      (br $next)))
    (call $print (local.get $ptr) (local.get $len)))
"#;

/// One module: the prelude plus `body`.
fn module(body: &str) -> Vec<u8> {
    wat::parse_str(format!("(module {PRELUDE} {body})")).expect("valid WAT")
}

/// `cairn stage run` of `wasm` (written to `dir`) with `flags`, then `args`.
fn stage_run(dir: &Path, wasm: &[u8], flags: &[&str], args: &[&str]) -> Finished {
    let path = dir.join("case.wasm");
    std::fs::write(&path, wasm).expect("write the module");
    finish(
        cairn(dir)
            .args(["stage", "run"])
            .arg(&path)
            .args(flags)
            .arg("--")
            .args(args),
    )
}

#[test]
fn arguments_are_read_with_args_get_directly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = module(
        r#"(func (export "_start")
             (if (call $args_sizes_get (i32.const 0) (i32.const 4)) (then (call $proc_exit (i32.const 10))))
             (if (call $args_get (i32.const 64) (i32.const 1024)) (then (call $proc_exit (i32.const 11))))
             (call $print_lines (i32.const 1024) (i32.load (i32.const 4))))"#,
    );
    let finished = stage_run(dir.path(), &wasm, &[], &["one", "two words", "", "three"]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let lines: Vec<&str> = finished.stdout.split('\n').collect();
    assert_eq!(lines[1..], ["one", "two words", "", "three", ""], "{finished:?}");
}

#[test]
fn the_environment_is_read_with_environ_get_directly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = module(
        r#"(func (export "_start")
             (if (call $environ_sizes_get (i32.const 0) (i32.const 4)) (then (call $proc_exit (i32.const 10))))
             (if (call $environ_get (i32.const 64) (i32.const 1024)) (then (call $proc_exit (i32.const 11))))
             (call $print_lines (i32.const 1024) (i32.load (i32.const 4))))"#,
    );
    let finished = stage_run(
        dir.path(),
        &wasm,
        &["--env", "FIRST=1", "--env", "SECOND=two words", "--env", "EMPTY="],
        &[],
    );
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let mut lines: Vec<&str> = finished.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["EMPTY=", "FIRST=1", "SECOND=two words"],
        "nothing of the host's: {finished:?}"
    );
}

#[test]
fn proc_exit_carries_its_whole_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = module(r#"(func (export "_start") (call $proc_exit (i32.const 42)))"#);
    let finished = stage_run(dir.path(), &wasm, &[], &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert!(finished.stderr.contains("exited with status 42"), "{finished:?}");

    let wasm = module(r#"(func (export "_start") (call $proc_exit (i32.const 0)))"#);
    let finished = stage_run(dir.path(), &wasm, &[], &[]);
    assert_eq!(finished.code, Some(0), "exit(0) is success: {finished:?}");
}

#[test]
fn the_preopens_are_exactly_the_granted_folders() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("src")).expect("mkdir");
    // Walks descriptors from 3 until fd_prestat_get says there are no more,
    // printing each preopen's name.
    let wasm = module(
        r#"(func (export "_start") (local $fd i32) (local $len i32)
             (local.set $fd (i32.const 3))
             (block $done (loop $next
               (br_if $done (call $fd_prestat_get (local.get $fd) (i32.const 64)))
               (local.set $len (i32.load (i32.const 68)))
               (if (call $fd_prestat_dir_name (local.get $fd) (i32.const 1024) (local.get $len))
                 (then (call $proc_exit (i32.const 12))))
               (i32.store8 (i32.add (i32.const 1024) (local.get $len)) (i32.const 10))
               (call $print (i32.const 1024) (i32.add (local.get $len) (i32.const 1)))
               (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
               (br $next))))"#,
    );
    let finished = stage_run(dir.path(), &wasm, &["--src", "src"], &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    let mut preopens: Vec<&str> = finished.stdout.lines().collect();
    preopens.sort();
    // `/` is the read-only skeleton that lets a program list or enter the root.
    assert_eq!(preopens, ["/", "/out", "/src", "/tmp"], "{finished:?}");
}

#[test]
fn the_wall_clock_is_pinned_unless_granted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Exits 0 when the realtime clock reads SOURCE_DATE_EPOCH (0), 3 otherwise.
    let wasm = module(
        r#"(func (export "_start")
             (if (call $clock_time_get (i32.const 0) (i64.const 0) (i32.const 64)) (then (call $proc_exit (i32.const 10))))
             (if (i64.ne (i64.load (i32.const 64)) (i64.const 0)) (then (call $proc_exit (i32.const 3)))))"#,
    );
    let pinned = stage_run(dir.path(), &wasm, &[], &[]);
    assert_eq!(pinned.code, Some(0), "{pinned:?}");
    let real = stage_run(dir.path(), &wasm, &["--clock", "real"], &[]);
    assert!(real.stderr.contains("exited with status 3"), "{real:?}");
}

/// The Rust probe for `wasm32-wasip1` (through wasi-libc), one case each:
/// its arguments, what the run must exit with, and what stdout must hold.
#[test]
fn a_wasi_libc_program_sees_exactly_its_sandbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("src/docs")).expect("mkdir");
    std::fs::write(dir.path().join("src/docs/a.md"), "hello").expect("write");
    let cases: &[(&[&str], i32, &str)] = &[
        (&["read", "/src/docs/a.md"], 0, "read 5 bytes"),
        (&["list", "/src/docs"], 0, "a.md"),
        // wasi-libc's working folder on preview1 is `/` (no initial-cwd call).
        (&["cwd"], 0, "/"),
        (&["write", "/out/x.txt", "x"], 0, ""),
        (&["mkdir", "/tmp/a/b/c"], 0, ""),
        (&["write", "/src/new.txt", "x"], 1, "error:"),
        (&["read", "/etc/passwd"], 1, "error:"),
        (&["read", "/src/../../etc/passwd"], 1, "error:"),
        (&["env"], 0, "ONLY=this"),
        (&["args", "a", "b c"], 0, "a\nb c"),
        (&["clock"], 0, "wall 0.000000000"),
        (&["exit", "7"], 1, ""),
    ];
    for (args, code, stdout) in cases {
        let finished = finish(
            cairn(dir.path())
                .args([
                    "stage",
                    "run",
                    PROBE_PREVIEW1,
                    "--src",
                    "src",
                    "--env",
                    "ONLY=this",
                    "--",
                ])
                .args(*args),
        );
        assert_eq!(finished.code, Some(*code), "{args:?}: {finished:?}");
        assert!(finished.stdout.contains(stdout), "{args:?}: {finished:?}");
    }
    // Randomness is seeded: the same bytes on every run.
    let random = || finish(cairn(dir.path()).args(["stage", "run", PROBE_PREVIEW1, "--", "random"])).stdout;
    assert_eq!(random(), random());
}

#[test]
fn an_abort_that_is_not_a_rust_panic_is_not_called_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = module(r#"(func (export "_start") unreachable)"#);
    let finished = stage_run(dir.path(), &wasm, &[], &[]);
    assert_eq!(finished.code, Some(1), "{finished:?}");
    assert!(
        finished
            .stderr
            .contains("trapped: wasm trap: wasm `unreachable` instruction executed"),
        "{finished:?}"
    );
    assert!(finished.stderr.contains("the way most languages abort"), "{finished:?}");
    assert!(!finished.stderr.contains("panic"), "{finished:?}");
}

#[test]
fn output_without_a_final_newline_is_passed_on_as_written() {
    // "hel" and "lo" in two writes, no newline: `cairn stage run` prints
    // exactly "hello", as the upstream testsuite's fd_write-to-stdout expects.
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = module(
        r#"(data (i32.const 1024) "hello")
           (func (export "_start")
             (call $print (i32.const 1024) (i32.const 3))
             (call $print (i32.const 1027) (i32.const 2)))"#,
    );
    let finished = stage_run(dir.path(), &wasm, &[], &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(finished.stdout, "hello");
}
