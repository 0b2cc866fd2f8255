//! User SQL cannot step outside the replicated database or change the connection it runs on,
//! and a refusal says what was refused.

mod entries;

use entries::entry;
use tandem_store::{Applied, Command, Params, SqlValue, StateDb, Statement};

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
        "ATTACH DATABASE 'x.db' AS x",
    ] {
        let refused = db.query(&statement(sql, vec![])).expect_err(sql);
        assert!(!refused.to_string().is_empty(), "{sql}");
    }
    let columns = db
        .query(&statement("PRAGMA table_info(t)", vec![]))
        .expect("schema pragmas are allowed in queries");
    assert_eq!(columns.rows.len(), 1);
    // A later write is visible to every pooled reader: none is stuck in an old transaction.
    execute(&db, 2, "INSERT INTO t VALUES (7)", vec![]).expect("inserted");
    for _ in 0..8 {
        let rows = db
            .query(&statement("SELECT count(*) FROM t", vec![]))
            .unwrap();
        assert_eq!(rows.rows, vec![vec![SqlValue::Integer(1)]]);
    }
}
