//! User SQL cannot step outside the replicated database, change the connection it runs on, or
//! run without bound, and a refusal says what was refused.

mod entries;

use entries::entry;
use tandem_raft::Entry;
use tandem_store::{Applied, Command, Params, ReadError, SqlValue, StateDb, Statement};

fn statement(sql: &str, params: Vec<SqlValue>) -> Statement {
    Statement {
        sql: sql.into(),
        params: Params::Positional(params),
    }
}

fn execute(db: &StateDb, index: u64, sql: &str, params: Vec<SqlValue>) -> Applied {
    let command = Command::Sql {
        statements: vec![statement(sql, params)],
        fence: None,
    };
    let answers = db.apply(&[entry(index, &command)]).expect("apply");
    serde_json::from_value(answers[0].clone()).expect("an apply result")
}

#[test]
fn writes_cannot_attach_files_or_control_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    let outside = dir.path().join("outside.db");
    let attach = execute(
        &db,
        1,
        "ATTACH DATABASE ? AS other",
        vec![SqlValue::Text(outside.display().to_string())],
    );
    let refusal = attach.expect_err("ATTACH with a bound file name is refused");
    assert!(
        refusal.message.contains("does not allow") || refusal.message.contains("ATTACH"),
        "the refusal names what was refused: {}",
        refusal.message
    );
    assert!(
        !outside.exists(),
        "no file was created outside the replicated database"
    );
    let literal = execute(
        &db,
        2,
        &format!("ATTACH DATABASE '{}' AS other", outside.display()),
        vec![],
    );
    assert!(literal.unwrap_err().message.contains("ATTACH"));
    let begin = execute(&db, 3, "BEGIN", vec![]);
    assert!(begin.unwrap_err().message.contains("transaction control"));
    let pragma = execute(&db, 4, "PRAGMA journal_mode = DELETE", vec![]);
    assert!(pragma.unwrap_err().message.contains("PRAGMA journal_mode"));
    let internal = execute(&db, 5, "DELETE FROM _tandem_kv", vec![]);
    assert!(internal.unwrap_err().message.contains("belongs to Tandem"));
}

#[test]
fn queries_cannot_change_their_pooled_connection() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    execute(&db, 1, "CREATE TABLE t (a INTEGER)", vec![]).expect("created");
    for sql in [
        "BEGIN",
        "PRAGMA query_only = 0",
        "PRAGMA read_uncommitted = 1",
        "PRAGMA wal_checkpoint",
        "ATTACH DATABASE 'x.db' AS x",
    ] {
        let refused = db.query(&statement(sql, vec![])).expect_err(sql);
        assert!(!refused.to_string().is_empty(), "{sql}");
    }
    let columns = db
        .query(&statement("PRAGMA table_info(t)", vec![]))
        .expect("schema pragmas are allowed in queries");
    assert_eq!(columns.rows.len(), 1);
    let setting = db
        .query(&statement("PRAGMA read_uncommitted", vec![]))
        .expect("reporting pragmas may be read");
    assert_eq!(setting.rows, vec![vec![SqlValue::Integer(0)]]);
    // A later write is visible to every pooled reader: none is stuck in an old transaction.
    execute(&db, 2, "INSERT INTO t VALUES (7)", vec![]).expect("inserted");
    for _ in 0..8 {
        let rows = db
            .query(&statement("SELECT count(*) FROM t", vec![]))
            .unwrap();
        assert_eq!(rows.rows, vec![vec![SqlValue::Integer(1)]]);
    }
}

/// Counts without end: only the step limit stops it.
const ENDLESS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) ";

fn sql_entry(index: u64, sql: &str) -> Entry {
    entry(
        index,
        &Command::Sql {
            statements: vec![statement(sql, vec![])],
            fence: None,
        },
    )
}

#[test]
fn an_endless_write_is_stopped_and_the_rest_of_its_batch_applies() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    execute(&db, 1, "CREATE TABLE t (a INTEGER)", vec![]).expect("created");
    let batch = [
        sql_entry(2, "INSERT INTO t VALUES (1)"),
        sql_entry(3, &format!("INSERT INTO t {ENDLESS} SELECT x FROM c")),
        sql_entry(4, "INSERT INTO t VALUES (2)"),
    ];
    let answers: Vec<Applied> = db
        .apply(&batch)
        .expect("the batch applies")
        .into_iter()
        .map(|answer| serde_json::from_value(answer).expect("an apply result"))
        .collect();
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    let stopped = answers[1]
        .as_ref()
        .expect_err("the endless insert is rejected");
    assert!(stopped.message.contains("steps"), "{}", stopped.message);
    let rows = db
        .query(&statement("SELECT a FROM t ORDER BY a", vec![]))
        .unwrap();
    assert_eq!(
        rows.rows,
        vec![vec![SqlValue::Integer(1)], vec![SqlValue::Integer(2)]],
        "the commands around the stopped one applied, and it left nothing behind"
    );
}

#[test]
fn an_endless_or_huge_query_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    let endless = db
        .query(&statement(
            &format!("{ENDLESS} SELECT max(x) FROM c"),
            vec![],
        ))
        .expect_err("an endless query is stopped");
    assert!(
        matches!(&endless, ReadError::Rejected(r) if r.message.contains("steps")),
        "{endless}"
    );
    let huge = db
        .query(&statement(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) \
             SELECT zeroblob(1000) FROM c",
            vec![],
        ))
        .expect_err("a 100 MB answer is refused");
    assert!(
        matches!(&huge, ReadError::Rejected(r) if r.message.contains("MiB")),
        "{huge}"
    );
}
