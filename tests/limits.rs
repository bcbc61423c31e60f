//! Bounds on what a pipeline file may expand to, raised where a pipeline
//! needs more (the refusals themselves are golden files in
//! `tests/pipelines/broken/`).

use crate::support::*;

#[test]
fn a_pipeline_may_raise_its_matrix_and_stage_bounds() {
    let values: Vec<String> = (0..300).map(|index| index.to_string()).collect();
    let matrix = format!("matrix = {{ shard = [{}] }}", values.join(", "));
    let refused = folder(&[("cairn.toml", &format!("[stages.test]\nuses = \"std:wc\"\n{matrix}\n"))]);
    let finished = finish(cairn(refused.path()).arg("validate"));
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(
        finished
            .stderr
            .contains("`matrix` expands to 300 stages; a matrix may have at most 256"),
        "{finished:?}"
    );

    let raised = folder(&[(
        "cairn.toml",
        &format!("[limits]\nmatrix = 300\n\n[stages.test]\nuses = \"std:wc\"\n{matrix}\n"),
    )]);
    let finished = finish(cairn(raised.path()).arg("validate"));
    assert_eq!(finished.code, Some(0), "{finished:?}");

    let lowered = folder(&[(
        "cairn.toml",
        &format!("[limits]\nmatrix = 300\nstages = 100\n\n[stages.test]\nuses = \"std:wc\"\n{matrix}\n"),
    )]);
    let finished = finish(cairn(lowered.path()).arg("validate"));
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(
        finished
            .stderr
            .contains("the pipeline has 300 stages after its matrices expand; at most 100 are allowed"),
        "{finished:?}"
    );
}

#[test]
fn a_stage_handing_its_component_megabytes_of_arguments_is_refused_where_it_is() {
    let big = "x".repeat(1_100_000);
    let dir = folder(&[(
        "cairn.toml",
        &format!("[stages.ok]\nuses = \"std:wc\"\n\n[stages.big]\nuses = \"std:wc\"\nwith = {{ blob = \"{big}\" }}\n"),
    )]);
    let finished = finish(cairn(dir.path()).arg("validate"));
    assert_eq!(finished.code, Some(2), "{finished:?}");
    assert!(
        finished.stderr.starts_with(
            "cairn.toml:4:9: error: stage `big` hands its component 1100004 bytes of `args`, `with` and `env`; \
             at most 1048576 (1 MiB) are allowed"
        ),
        "{}",
        &finished.stderr[..300.min(finished.stderr.len())]
    );
}
