//! Fuzz targets for what a pull request can write: `cairn.toml` and the
//! conditions in it. Property tests over mutated corpus files (the
//! examples and the broken pipelines of `tests/pipelines/broken/`); any
//! input must give a pipeline or located errors, never a panic or a hang.
//! `cargo xtask fuzz CASES` runs them longer; proptest keeps what it finds
//! in `proptest-regressions/` as regression cases.

use cairn_core::mutate::{edits, mutate};
use proptest::prelude::*;

use crate::expression::{Condition, Template};

const CORPUS: &[&str] = &[
    include_str!("../../../examples/site/cairn.toml"),
    include_str!("../../../examples/polyglot/cairn.toml"),
    include_str!("../../../tests/pipelines/broken/bad_condition.toml"),
    include_str!("../../../tests/pipelines/broken/cycle.toml"),
    include_str!("../../../tests/pipelines/broken/matrix_too_large.toml"),
    include_str!("../../../tests/pipelines/broken/reference_without_needs.toml"),
    include_str!("../../../tests/pipelines/broken/condition_too_deep.toml"),
    include_str!("../../../tests/pipelines/broken/limits_not_a_number.toml"),
];

proptest! {
    #[test]
    fn fuzz_pipeline_files(seed in 0..CORPUS.len(), edits in edits()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cairn.toml");
        std::fs::write(&path, mutate(CORPUS[seed].as_bytes(), &edits)).expect("write");
        if let Err(crate::LoadFailure::Invalid { diagnostics, .. }) = crate::load(&path) {
            prop_assert!(!diagnostics.is_empty());
        }
    }

    #[test]
    fn fuzz_conditions(text in r#"[()!&|=a-zA-Z0-9._' ,${}"-]{0,400}"#) {
        if let Ok(condition) = Condition::parse(&text) {
            let _ = condition.evaluate(&|_| Some("value".to_owned())).truthy();
            let _ = condition.references();
        }
        if let Ok(template) = Template::parse(&text) {
            let _ = template.render(&|_| Some("value".to_owned()));
        }
    }
}
