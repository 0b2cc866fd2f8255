//! The statements of a `SqlEach` command (rqlite's requests) answer one by one: a failing one
//! leaves the others, unless all or nothing was asked for; reads answer their rows, with their
//! columns' declared types even when there are no rows; only a statement that inserts reports
//! a last inserted row id.

mod entries;

use entries::entry;
use tandem_store::{Command, Outcome, Params, SqlAnswer, SqlValue, StateDb, Statement};

fn each(db: &StateDb, index: u64, sqls: &[&str], all_or_nothing: bool) -> Vec<SqlAnswer> {
    let command = Command::SqlEach {
        statements: sqls
            .iter()
            .map(|sql| Statement {
                sql: sql.to_string(),
                params: Params::Positional(vec![]),
            })
            .collect(),
        all_or_nothing,
    };
    let answers = db.apply(&[entry(index, &command)]).expect("apply");
    let applied: Result<Outcome, tandem_store::Rejection> =
        serde_json::from_value(answers[0].clone()).expect("an apply result");
    match applied.expect("the command applies") {
        Outcome::SqlAnswers { answers } => answers.into_iter().map(|(a, _)| a).collect(),
        other => panic!("{other:?}"),
    }
}

fn changed(answer: &SqlAnswer) -> (i64, u64) {
    match answer {
        SqlAnswer::Changed(r) => (r.last_insert_id, r.rows_affected),
        other => panic!("not a change: {other:?}"),
    }
}

fn names(db: &StateDb) -> Vec<Vec<SqlValue>> {
    db.query(&Statement {
        sql: "SELECT name FROM t ORDER BY name".into(),
        params: Params::Positional(vec![]),
    })
    .unwrap()
    .rows
}

#[test]
fn statements_answer_one_by_one_or_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    let answers = each(
        &db,
        1,
        &[
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
            "INSERT INTO t (name) VALUES ('a')",
            "INSERT INTO t (name) VALUES (NULL)",
            "UPDATE t SET name = 'b' WHERE id = 1",
            "SELECT id, name, length(name) AS n FROM t",
            "SELECT * FROM t WHERE id > 5",
        ],
        false,
    );
    assert_eq!(
        changed(&answers[0]),
        (0, 0),
        "CREATE inserts no row of the user's"
    );
    assert_eq!(changed(&answers[1]), (1, 1));
    assert!(matches!(&answers[2], SqlAnswer::Failed(m) if m.contains("NOT NULL")));
    assert_eq!(
        changed(&answers[3]),
        (0, 1),
        "an UPDATE has no inserted row id"
    );
    let SqlAnswer::Rows(rows) = &answers[4] else {
        panic!("{:?}", answers[4])
    };
    assert_eq!(rows.columns, ["id", "name", "n"]);
    assert_eq!(rows.types, ["integer", "text", "integer"]);
    let SqlAnswer::Rows(empty) = &answers[5] else {
        panic!("{:?}", answers[5])
    };
    assert_eq!((empty.columns.len(), empty.types.len()), (2, 2));
    assert!(empty.rows.is_empty());
    assert_eq!(names(&db), vec![vec![SqlValue::Text("b".into())]]);

    let answers = each(
        &db,
        2,
        &[
            "INSERT INTO t (name) VALUES ('c')",
            "INSERT INTO t (name) VALUES (NULL)",
            "INSERT INTO t (name) VALUES ('d')",
        ],
        true,
    );
    assert_eq!(
        answers.len(),
        2,
        "the request ends at the failure: {answers:?}"
    );
    assert_eq!(changed(&answers[0]), (2, 1));
    assert_eq!(
        names(&db),
        vec![vec![SqlValue::Text("b".into())]],
        "c was undone"
    );
}
