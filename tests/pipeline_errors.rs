//! Golden tests: every broken pipeline in `tests/pipelines/broken/` gets the
//! message recorded next to it (`NAME.stderr`), with `cairn.toml:LINE:COL`
//! and what to change. After changing a message on purpose, rewrite the
//! goldens with `CAIRN_BLESS=1 cargo test pipeline_errors` and review
//! the diff.

use std::path::PathBuf;

use crate::support::*;

#[test]
fn every_broken_pipeline_reports_its_golden_message() {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/pipelines/broken");
    let bless = std::env::var_os("CAIRN_BLESS").is_some();
    let mut pipelines: Vec<PathBuf> = std::fs::read_dir(&folder)
        .expect("the folder of broken pipelines")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "toml"))
        .collect();
    pipelines.sort();
    assert!(pipelines.len() >= 20, "{pipelines:?}");

    let mut mismatches = Vec::new();
    for pipeline in &pipelines {
        let name = pipeline.file_name().expect("a name").to_string_lossy().into_owned();
        let finished = finish(cairn(&folder).args(["validate", "-f", &name]));
        let actual = format!("exit code {}\n{}", finished.code.unwrap_or(-1), finished.stderr);
        let golden = pipeline.with_extension("stderr");
        if bless {
            std::fs::write(&golden, &actual).expect("write the golden file");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != actual {
            mismatches.push(format!(
                "--- {}\n+++ actual\n{expected}\n---\n{actual}",
                golden.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} golden files differ (rerun with CAIRN_BLESS=1 to accept):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
