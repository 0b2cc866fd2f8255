//! Replays every saved fuzz input (fuzz/regressions/<target>/) through the same parsers the fuzz
//! targets call, on the stable toolchain: none may panic, and each input that once found a bug
//! must now be refused with the error that names the problem.

#[path = "../../../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

const REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/regressions");

/// The saved inputs of one target, by file name.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(REGRESSIONS).join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("a readable input"))
        })
        .collect()
}

/// Feeds every saved input of `target` to `parse`, which answers `None` for bytes the server
/// would never receive, or the message of the error the input was refused with. A seed
/// (`seed-*`) must be accepted; an input that found a bug must be refused with the message that
/// `findings` gives for its file.
fn replay(
    target: &str,
    findings: &[(&str, &str)],
    parse: impl Fn(&[u8]) -> Option<Result<(), String>>,
) {
    for (name, data) in inputs(target) {
        let answer = parse(&data);
        let expected = findings.iter().find(|(file, _)| *file == name);
        match (expected, answer) {
            (Some((_, expected)), Some(Err(error))) => assert!(
                error.contains(expected),
                "{target}/{name}: refused with {error:?}; expected {expected:?}"
            ),
            (Some((_, expected)), answer) => {
                panic!("{target}/{name}: answered {answer:?}; expected the error {expected:?}")
            }
            (None, Some(Err(error))) if name.starts_with("seed-") => {
                panic!("{target}/{name}: a seed is refused: {error}")
            }
            (None, None) if name.starts_with("seed-") => {
                panic!("{target}/{name}: a seed is not laid out as the target reads it")
            }
            (None, _) => {}
        }
    }
}

#[test]
fn node_list_inputs_parse_or_are_refused() {
    replay("node_list", &[], |data| {
        harness::node_list(data).map(|answer| answer.map(drop))
    });
}

#[test]
fn config_file_inputs_parse_or_are_refused() {
    let findings = [("k8s-ordinal-overflow", "too large for a node id")];
    replay("config_file", &findings, |data| {
        harness::config_file(data).map(|answer| answer.map(drop).map_err(|e| e.0))
    });
}

fn api_error(e: tandem_server::ApiError) -> String {
    format!("{}: {}", e.code, e.message)
}

#[test]
fn api_request_inputs_parse_or_are_refused() {
    replay("api_request", &[], |data| {
        harness::api_request(data).map(|answer| answer.map(drop).map_err(api_error))
    });
}

#[test]
fn cluster_request_inputs_decode_or_are_refused() {
    let findings = [
        ("append-skips-an-index", "does not follow"),
        ("append-after-the-last-index", "does not follow"),
        ("append-goes-back-a-term", "does not follow"),
    ];
    replay("cluster_request", &findings, |data| {
        harness::cluster_request(data).map(|answer| answer.map(drop).map_err(api_error))
    });
}

#[test]
fn sql_statement_inputs_run_or_are_refused() {
    let target = harness::SqlTarget::new();
    let findings = [("endless-recursive-query", "steps of work")];
    replay("sql_statement", &findings, |data| {
        target.run(data).map(|outcome| match outcome {
            harness::SqlOutcome::Refused(rejection) => Err(rejection.message),
            // A read of a write is refused by design; only the replicated write must succeed.
            harness::SqlOutcome::Ran { write, read } => match (write, read) {
                (Err(rejection), _) => Err(rejection.message),
                (Ok(_), Err(tandem_store::ReadError::Store(e))) => Err(e.to_string()),
                (Ok(_), _) => Ok(()),
            },
        })
    });
}
