//! Host tools (`run =`, `tools = [...]`) under the real bubblewrap: every row
//! of the tool sandbox proven both ways, every bound crossed, the errors a
//! host without a tool or without bubblewrap gets, and tool identities in
//! the stage key.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;

use crate::support::*;

/// Whether a process whose command line holds `needle` (NUL-separated, as
/// in `/proc/PID/cmdline`) is alive on the host.
fn process_alive(needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|window| window == needle.as_bytes()))
    })
}

#[test]
fn a_tool_sees_what_it_is_granted_and_nothing_else() {
    let outside = tempfile::tempdir().expect("temp dir");
    std::fs::write(outside.path().join("other-checkout.txt"), "not yours").expect("write");
    let dir = pipeline_dir(
        &format!(
            r#"
            # Each stage exits 3 where the sandbox let it see or do what it
            # must not, and 0 where the row held.
            [stages.granted-input]
            run = "cat /src/a.txt"
            tools = ["cat"]
            inputs = ["a.txt"]

            [stages.undeclared-input]
            run = "if [ -e /src/b.txt ]; then exit 3; fi"
            inputs = ["a.txt"]

            [stages.host-files]
            run = """
            for path in /etc/passwd /root {outside}/other-checkout.txt {checkout}/b.txt; do
              if [ -e "$path" ]; then echo "sees $path"; exit 3; fi
            done
            """

            [stages.write-src]
            run = "if ( : > /src/new.txt ) 2>/dev/null; then exit 3; fi; echo ok > /out/written.txt"
            inputs = ["a.txt"]

            [stages.environment]
            run = "if [ -n \"$CAIRN_TEST_HOST_VARIABLE\" ]; then exit 3; fi; echo \"HOME=$HOME PATH=$PATH DECLARED=$DECLARED SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH\""
            env = {{ DECLARED = "yes" }}

            [stages.not-granted]
            run = "git --version"

            [stages.not-granted-argv]
            run = ["git", "--version"]

            [stages.other-granted-argv]
            run = ["git", "--version"]
            tools = ["cat"]

            [stages.after]
            run = "echo still fine"
            "#,
            outside = outside.path().display(),
            checkout = "{checkout}",
        ),
        &[("a.txt", "granted\n"), ("b.txt", "not declared\n")],
    );
    let text = std::fs::read_to_string(dir.path().join("cairn.toml")).expect("read");
    std::fs::write(
        dir.path().join("cairn.toml"),
        text.replace("{checkout}", &dir.path().display().to_string()),
    )
    .expect("write");
    let (_, events) = run_json(dir.path(), &["-j", "1"]);
    let statuses = statuses(&events);
    for stage in [
        "granted-input",
        "undeclared-input",
        "host-files",
        "write-src",
        "environment",
        "after",
    ] {
        assert_eq!(statuses[stage], "succeeded", "{stage}: {events:#?}");
    }
    assert_eq!(stage_stdout(&events, "granted-input"), ["granted"]);
    assert_eq!(
        stage_stdout(&events, "environment"),
        ["HOME=/tmp PATH=/tools/bin DECLARED=yes SOURCE_DATE_EPOCH=0"]
    );
    assert!(!dir.path().join("new.txt").exists(), "the checkout was not written to");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cairn-out/write-src/written.txt")).expect("published"),
        "ok\n"
    );
    assert_eq!(statuses["not-granted"], "failed");
    let error = stage_error(&events, "not-granted");
    assert!(error.contains("status 127: a command was not found"), "{error}");
    assert!(error.contains("tools = [...]"), "the fix is named: {error}");
    // An argv names its program directly: refused before anything runs,
    // with the line that grants it.
    assert_eq!(
        stage_error(&events, "not-granted-argv"),
        "returned an error: the tool `git` is not granted to stage `not-granted-argv` (it has none)\n\
         hint: add it to the stage: `tools = [\"git\"]`"
    );
    assert_eq!(
        stage_error(&events, "other-granted-argv"),
        "returned an error: the tool `git` is not granted to stage `other-granted-argv` (it has \"cat\")\n\
         hint: add it to the stage: `tools = [\"cat\", \"git\"]`"
    );
}

#[test]
fn the_host_environment_never_reaches_a_tool() {
    let dir = pipeline_dir(
        r#"
        [stages.env]
        run = "if [ -n \"$CAIRN_TEST_HOST_VARIABLE\" ]; then exit 3; fi"
        "#,
        &[],
    );
    let mut command = cairn(dir.path());
    command.env("CAIRN_TEST_HOST_VARIABLE", "visible");
    let (finished, events) = run_json_with(command, &[]);
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert_eq!(statuses(&events)["env"], "succeeded");
}

#[test]
fn a_tool_reaches_the_network_only_when_granted() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let port = listener.local_addr().expect("address").port();
    let connect = format!(
        "node -e \"require('net').connect({port}, '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(2))\""
    );
    let dir = pipeline_dir(
        &format!(
            r#"
            [stages.refused]
            run = '''{connect}'''
            tools = ["node"]

            [stages.granted]
            run = '''{connect}'''
            tools = ["node"]
            network = ["127.0.0.1:{port}"]
            "#
        ),
        &[],
    );
    let (_, events) = run_json(dir.path(), &[]);
    let statuses = statuses(&events);
    assert_eq!(statuses["granted"], "succeeded", "{events:#?}");
    assert_eq!(statuses["refused"], "failed", "{events:#?}");
    assert!(stage_error(&events, "refused").contains("status 2"));
    drop(listener);
    let explained = finish(cairn(dir.path()).args(["explain", "granted"]));
    assert!(
        explained.stdout.contains("a tool's grant is all or nothing"),
        "explain says so: {explained:?}"
    );
}

#[test]
fn nothing_a_tool_started_outlives_its_stage() {
    let dir = pipeline_dir(
        r#"
        [stages.background]
        run = "sleep 4711001 & echo started"
        tools = ["sleep"]

        [stages.tree]
        run = "sleep 4711002 & sleep 4711003 & sleep 4711004"
        tools = ["sleep"]
        timeout = "2s"

        [stages.after]
        needs = ["background"]
        run = "echo still fine"
        "#,
        &[],
    );
    let (_, events) = run_json(dir.path(), &[]);
    let statuses = statuses(&events);
    assert_eq!(statuses["background"], "succeeded");
    assert_eq!(statuses["after"], "succeeded");
    assert_eq!(statuses["tree"], "failed");
    assert!(
        stage_error(&events, "tree").contains("2s"),
        "the time bound: {}",
        stage_error(&events, "tree")
    );
    // The kernel ends a PID namespace's processes as its first one dies;
    // give it a moment before looking.
    let gone = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !(4711001..=4711004).any(|seconds| process_alive(&format!("sleep\0{seconds}")))
    });
    assert!(gone, "a tool's process outlived its stage");
}

#[test]
fn a_fork_bomb_stops_at_the_process_limit() {
    let dir = pipeline_dir(
        r#"
        [stages.bomb]
        run = "bomb() { bomb | bomb; }; bomb"
        timeout = "60s"

        [stages.after]
        run = "echo still fine"
        needs = []
        "#,
        &[],
    );
    let (_, events) = run_json(dir.path(), &["-j", "1"]);
    let statuses = statuses(&events);
    assert_eq!(statuses["bomb"], "failed", "{events:#?}");
    assert_eq!(statuses["after"], "succeeded");
    let logged: Vec<&str> = events_of(&events, "stage_log")
        .into_iter()
        .filter(|event| event["stage"] == "bomb")
        .filter_map(|event| event["text"].as_str())
        .collect();
    assert!(
        logged.iter().any(|line| line.contains("process limit")),
        "the log says which bound held: {logged:?}"
    );
}

#[test]
fn memory_and_output_bounds_hold_for_tools() {
    let dir = pipeline_dir(
        r#"
        [stages.memory]
        run = "node -e \"const kept = []; for (;;) kept.push(Buffer.alloc(1 << 20, 1))\""
        tools = ["node"]
        memory = "160MiB"

        [stages.output]
        run = "head -c 3000000 /dev/zero > /out/big"
        tools = ["head"]
        max_output = "1MiB"

        [stages.after]
        run = "echo still fine"
        "#,
        &[],
    );
    let (_, events) = run_json(dir.path(), &["-j", "1"]);
    let statuses = statuses(&events);
    assert_eq!(statuses["memory"], "failed", "{events:#?}");
    assert_eq!(statuses["output"], "failed", "{events:#?}");
    assert_eq!(statuses["after"], "succeeded");
    assert!(
        stage_error(&events, "output").contains("output"),
        "{}",
        stage_error(&events, "output")
    );
    let memory_log: Vec<&str> = events_of(&events, "stage_log")
        .into_iter()
        .filter(|event| event["stage"] == "memory")
        .filter_map(|event| event["text"].as_str())
        .collect();
    assert!(
        memory_log.iter().any(|line| line.contains("memory bound")) || stage_error(&events, "memory").contains("137"),
        "killed by the memory bound: {memory_log:?} {}",
        stage_error(&events, "memory")
    );
}

#[test]
fn a_granted_secret_is_in_a_tools_environment_and_masked_in_its_log() {
    let dir = pipeline_dir(
        r#"
        [stages.echo]
        run = "echo token=$TOKEN"
        secrets = ["TOKEN"]

        [stages.ungranted]
        run = "echo token=$TOKEN"
        "#,
        &[],
    );
    let mut command = cairn(dir.path());
    command.env("TOKEN", "hunter2-secret");
    let (finished, events) = run_json_with(command, &[]);
    assert!(!finished.stdout.contains("hunter2-secret"), "{finished:?}");
    assert_eq!(
        stage_stdout(&events, "echo"),
        [format!("token={}", cairn::sandbox::MASK)]
    );
    assert_eq!(stage_stdout(&events, "ungranted"), ["token="]);
    assert_eq!(
        files_containing(&cache_for(dir.path()), b"hunter2-secret"),
        Vec::<String>::new()
    );
}

#[test]
fn a_missing_tool_is_named_at_its_place_in_the_file() {
    let dir = pipeline_dir(
        r#"
[stages.build]
run = "make"
tools = ["make", "cairn-no-such-tool"]
"#,
        &[],
    );
    let finished = finish(cairn(dir.path()).arg("run"));
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(
        finished.stderr.contains("cairn.toml:4:18"),
        "the place is named: {finished:?}"
    );
    assert!(
        finished
            .stderr
            .contains("the tool `cairn-no-such-tool` is not on the PATH"),
        "{finished:?}"
    );
}

#[test]
fn a_host_without_bubblewrap_is_told_how_to_install_it() {
    let dir = pipeline_dir("[stages.hello]\nrun = \"echo hello\"\n", &[]);
    let finished = finish(
        cairn(dir.path())
            .env("CAIRN_BWRAP", dir.path().join("no-bwrap-here"))
            .arg("run"),
    );
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(finished.stderr.contains("apt-get install bubblewrap"), "{finished:?}");

    // A bubblewrap that cannot make namespaces (user namespaces disabled)
    // fails the stage with what it said and what to do; nothing runs
    // unsandboxed.
    let refusing = dir.path().join("refusing-bwrap");
    let mut script = std::fs::File::create(&refusing).expect("create");
    writeln!(
        script,
        "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1"
    )
    .expect("write");
    drop(script);
    make_executable(&refusing);
    let mut command = cairn(dir.path());
    command.env("CAIRN_BWRAP", &refusing);
    let (_, events) = run_json_with(command, &[]);
    let error = stage_error(&events, "hello");
    assert!(error.contains("No permissions to creating new namespace"), "{error}");
    assert!(error.contains("user namespaces"), "{error}");
    assert!(stage_stdout(&events, "hello").is_empty(), "the command never ran");
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn an_edited_tool_reruns_its_stage_and_explain_names_it() {
    let dir = pipeline_dir(
        r#"
        [stages.lint]
        run = "lint.sh"
        tools = ["./ci/lint.sh"]
        "#,
        &[("ci/lint.sh", "#!/bin/sh\necho linted\n")],
    );
    make_executable(&dir.path().join("ci/lint.sh"));
    let (_, first) = run_json(dir.path(), &[]);
    assert_eq!(statuses(&first)["lint"], "succeeded", "{first:#?}");
    let (_, second) = run_json(dir.path(), &[]);
    assert_eq!(statuses(&second)["lint"], "cached");
    std::fs::write(dir.path().join("ci/lint.sh"), "#!/bin/sh\necho linted strictly\n").expect("edit");
    let (_, third) = run_json(dir.path(), &[]);
    assert_eq!(statuses(&third)["lint"], "succeeded");
    assert_eq!(stage_stdout(&third, "lint"), ["linted strictly"]);
    let explained = finish(cairn(dir.path()).args(["explain", "lint"]));
    assert!(explained.stdout.contains("the tool `lint.sh` changed"), "{explained:?}");
}

#[test]
fn the_same_toolchain_at_another_path_gives_the_same_key() {
    // Two installations of one toolchain (a `bin` beside a `lib`), at two
    // paths, each first on the PATH of one checkout; one cache.
    let installs = tempfile::tempdir().expect("temp dir");
    for name in ["one", "two"] {
        let root = installs.path().join(name);
        std::fs::create_dir_all(root.join("lib")).expect("lib");
        std::fs::create_dir_all(root.join("bin")).expect("bin");
        std::fs::write(root.join("lib/greeting"), "hello from the toolchain\n").expect("lib file");
        std::fs::write(
            root.join("bin/greet"),
            "#!/bin/sh\nhere=$(dirname \"$(readlink -f \"$0\")\")\nwhile read -r line; do echo \"$line\"; done < \"$here/../lib/greeting\"\n",
        )
        .expect("tool");
        make_executable(&root.join("bin/greet"));
    }
    let pipeline = r#"
        [stages.greet]
        run = "greet"
        tools = ["greet", "dirname", "readlink"]
    "#;
    let first = pipeline_dir(pipeline, &[]);
    let second = pipeline_dir(pipeline, &[]);
    let cache = cache_for(first.path());
    let path_with = |name: &str| {
        format!(
            "{}:{}",
            installs.path().join(name).join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    };
    let run = |dir: &Path, install: &str| {
        let mut command = cairn(dir);
        command.env("CAIRN_CACHE", &cache).env("PATH", path_with(install));
        run_json_with(command, &[]).1
    };
    let ran = run(first.path(), "one");
    assert_eq!(statuses(&ran)["greet"], "succeeded", "{ran:#?}");
    assert_eq!(stage_stdout(&ran, "greet"), ["hello from the toolchain"]);
    let hit = run(second.path(), "two");
    assert_eq!(statuses(&hit)["greet"], "cached", "{hit:#?}");
    assert_eq!(
        finished_stage(&ran, "greet")["key"],
        finished_stage(&hit, "greet")["key"]
    );

    // A toolchain whose files differ is another toolchain.
    std::fs::write(installs.path().join("two/lib/greeting"), "hello from another\n").expect("edit");
    let other = run(second.path(), "two");
    assert_eq!(statuses(&other)["greet"], "succeeded");
    assert_eq!(stage_stdout(&other, "greet"), ["hello from another"]);
}

#[test]
fn junit_reports_become_counts_and_annotations() {
    let report = r#"<?xml version="1.0"?>
<testsuites><testsuite name="unit">
<testcase classname="tests.test_math" name="test_add" file="tests/test_math.py" line="3"/>
<testcase classname="tests.test_math" name="test_sub" file="tests/test_math.py" line="7"><failure message="assert 1 == 2"/></testcase>
<testcase classname="tests.test_math" name="test_later"><skipped/></testcase>
</testsuite></testsuites>
"#;
    let dir = pipeline_dir(
        r#"
        [stages.failing]
        run = "cat /src/report.xml > /out/junit.xml; exit 1"
        tools = ["cat"]
        inputs = ["report.xml"]
        reports = { junit = "junit.xml" }

        [stages.passing]
        run = "printf '<testsuite><testcase name=\"a\"/><testcase name=\"b\"/></testsuite>' > /out/junit.xml"
        reports = { junit = "junit.xml" }

        [stages.malformed]
        run = "printf '<testsuite><testcase' > /out/junit.xml"
        reports = { junit = ["junit.xml", "missing.xml"] }
        "#,
        &[("report.xml", report)],
    );
    let exported = tempfile::tempdir().expect("a folder for cairn's own reports");
    let junit = exported.path().join("cairn-junit.xml");
    let (_, events) = run_json(dir.path(), &["--junit", junit.to_str().expect("utf-8")]);
    // cairn's own JUnit report carries the cases the stages' reports listed.
    let text = std::fs::read_to_string(&junit).expect("--junit wrote its report");
    let document = roxmltree::Document::parse(&text).expect("JUnit XML");
    let suite_of = |document: &roxmltree::Document<'_>, stage: &str| -> Vec<(String, String)> {
        document
            .descendants()
            .find(|node| {
                node.has_tag_name("testsuite")
                    && node
                        .attribute("name")
                        .is_some_and(|name| name.ends_with(&format!("/{stage}")))
            })
            .unwrap_or_else(|| panic!("a suite for `{stage}`'s own cases"))
            .children()
            .filter(|node| node.has_tag_name("testcase"))
            .map(|case| {
                let result = case
                    .first_element_child()
                    .map_or("passed".to_owned(), |child| child.tag_name().name().to_owned());
                (case.attribute("name").unwrap_or_default().to_owned(), result)
            })
            .collect()
    };
    assert_eq!(
        suite_of(&document, "failing"),
        [
            ("test_add".to_owned(), "passed".to_owned()),
            ("test_sub".to_owned(), "failure".to_owned()),
            ("test_later".to_owned(), "skipped".to_owned())
        ],
        "{text}"
    );
    assert_eq!(
        events_of(&events, "stage_tests").len(),
        2,
        "failing and passing list their cases"
    );
    let failing = finished_stage(&events, "failing");
    assert_eq!(failing["status"], "failed");
    assert_eq!(
        failing["tests"],
        serde_json::json!({"passed": 1, "failed": 1, "skipped": 1})
    );
    assert!(
        failing["error"]
            .as_str()
            .unwrap_or_default()
            .ends_with("1 passed, 1 failed, 1 skipped"),
        "{failing}"
    );
    let annotation = events_of(&events, "stage_annotation")
        .into_iter()
        .find(|event| event["stage"] == "failing")
        .expect("the failed case is annotated");
    assert_eq!(annotation["path"], "tests/test_math.py");
    assert_eq!(annotation["line"], 7);
    assert_eq!(
        annotation["message"],
        "test tests.test_math.test_sub failed: assert 1 == 2"
    );

    let passing = finished_stage(&events, "passing");
    assert_eq!(passing["status"], "succeeded");
    assert!(
        passing["summary"].as_str().unwrap_or_default().ends_with("2 passed"),
        "{passing}"
    );
    assert_eq!(passing["outputs"]["tests_passed"], "2");

    let malformed = finished_stage(&events, "malformed");
    assert_eq!(
        malformed["status"], "succeeded",
        "a bad report is no crash: {malformed}"
    );
    let warnings: Vec<&str> = events_of(&events, "stage_log")
        .into_iter()
        .filter(|event| event["stage"] == "malformed")
        .filter_map(|event| event["text"].as_str())
        .collect();
    assert!(
        warnings.iter().any(|line| line.contains("is not JUnit XML")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|line| line.contains("wrote no test report `/out/missing.xml`")),
        "{warnings:?}"
    );

    // A reused result keeps its counts, and its cases (read again from
    // the report it published).
    let (_, again) = run_json(dir.path(), &["--junit", junit.to_str().expect("utf-8")]);
    let text = std::fs::read_to_string(&junit).expect("--junit wrote its report");
    let document = roxmltree::Document::parse(&text).expect("JUnit XML");
    assert_eq!(suite_of(&document, "passing").len(), 2, "{text}");
    assert_eq!(finished_stage(&again, "passing")["status"], "cached");
    assert_eq!(finished_stage(&again, "passing")["tests"]["passed"], 2);
}
