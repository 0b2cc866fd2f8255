//! Tandem's tables in a real PostgreSQL server: the same commands answer the same on SQLite and
//! on PostgreSQL, expiry goes by the database's clock, writers on several connections get
//! revisions in one order, and users' statements run in a schema of their own.

mod agents;
mod entries;

use std::time::Duration;

use serde_json::Value;
use tandem_store::postgres::{self, PgReads, PgTables, PgUserStatements, STATE_TABLES};
use tandem_store::{
    Applied, AuthCommand, Command, Fence, Outcome, Params, SqlAnswer, SqlValue, StateReads,
    Statement,
};
use tandem_testkit::{wait_until, PostgresServer};
use tokio_postgres::{Client, NoTls};

const SCHEMA: &str = "cluster_a";
const USER_SCHEMA: &str = "cluster_a_sql";

/// A connection whose search path leads to the cluster's schema, made (with its tables) by the
/// first call.
async fn connect(server: &PostgresServer) -> Client {
    let (client, connection) = tokio_postgres::connect(&server.url(), NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&SCHEMA])
        .await
        .expect("look for the schema")
        .is_some();
    if !exists {
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {SCHEMA}; CREATE SCHEMA {USER_SCHEMA}; {}",
                STATE_TABLES.replace("{schema}", SCHEMA)
            ))
            .await
            .expect("create Tandem's tables");
    }
    client
        .batch_execute(&format!("SET search_path TO {SCHEMA}"))
        .await
        .expect("search path");
    client
}

/// Applies `commands` in one transaction, from a blocking thread as the server does.
async fn apply(client: Client, commands: Vec<Command>) -> (Client, Vec<Applied>) {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut client = client;
        let tx = runtime.block_on(client.transaction()).expect("begin");
        let answers = {
            let tables = PgTables::new(&tx, runtime.clone());
            let user = PgUserStatements::new(&tables, SCHEMA, USER_SCHEMA);
            postgres::apply(&tables, &user, &commands).expect("apply")
        };
        runtime.block_on(tx.commit()).expect("commit");
        (client, answers)
    })
    .await
    .expect("the apply thread")
}

/// Runs `read` on the tables at the database's clock.
async fn read<T: Send + 'static>(
    client: Client,
    read: impl FnOnce(&dyn StateReads) -> T + Send + 'static,
) -> (Client, T) {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut client = client;
        let tx = runtime.block_on(client.transaction()).expect("begin");
        let answer = read(&PgReads {
            tables: PgTables::new(&tx, runtime.clone()),
        });
        runtime.block_on(tx.commit()).expect("commit");
        (client, answer)
    })
    .await
    .expect("the read thread")
}

/// An answer with the times in it left out, in fields and in messages: the two engines'
/// clocks differ.
fn timeless(applied: &Applied) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|key, _| !key.ends_with("_ms"));
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            Value::String(text) => *text = without_times(text),
            _ => {}
        }
    }
    /// Milliseconds since the epoch have 13 digits.
    fn without_times(text: &str) -> String {
        let mut out = String::new();
        let mut digits = String::new();
        for c in text.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            out.push_str(if digits.len() == 13 {
                "<time>"
            } else {
                &digits
            });
            digits.clear();
            out.push(c);
        }
        out.pop();
        out
    }
    let mut value = serde_json::to_value(applied).expect("an answer as JSON");
    strip(&mut value);
    value
}

fn put(key: &str, value: &str, if_revision: Option<u64>, fence: Option<Fence>) -> Command {
    Command::KvPut {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        ttl_ms: None,
        if_revision,
        fence,
    }
}

/// Commands of every area of the tables, with some that must be refused.
fn script() -> Vec<Command> {
    let fence = |token| {
        Some(Fence {
            lock: "leader".into(),
            token,
        })
    };
    vec![
        put("a", "1", None, None),
        put("b/1", "2", None, None),
        put("b/2", "3", None, None),
        put("a", "4", Some(99), None),
        put("a", "5", Some(1), None),
        Command::KvDelete {
            key: "b/1".into(),
            if_revision: None,
            fence: None,
        },
        Command::CachePut {
            namespace: "sessions".into(),
            key: "s1".into(),
            value: b"v".to_vec(),
            ttl_ms: Some(60_000),
            fence: None,
        },
        Command::CacheTake {
            namespace: "sessions".into(),
            key: "s1".into(),
        },
        Command::CacheTake {
            namespace: "sessions".into(),
            key: "s1".into(),
        },
        Command::LockAcquire {
            name: "leader".into(),
            holder: "h1".into(),
            ttl_ms: 60_000,
        },
        Command::LockAcquire {
            name: "leader".into(),
            holder: "h2".into(),
            ttl_ms: 60_000,
        },
        // The lease's token is the revision it was granted at, the ninth write.
        put("fenced", "ok", None, fence(9)),
        put("fenced", "stale", None, fence(3)),
        Command::LockRelease {
            name: "leader".into(),
            holder: "h1".into(),
            token: 9,
        },
        Command::KeyPublish {
            kid: "k1".into(),
            node_id: 1,
            jwk: r#"{"kid":"k1"}"#.into(),
        },
        Command::KeyPublish {
            kid: "k1".into(),
            node_id: 2,
            jwk: r#"{"kid":"k1"}"#.into(),
        },
        Command::KeyRetire {
            kid: "k1".into(),
            keep_for_ms: 60_000,
        },
        Command::KeyRetire {
            kid: "nope".into(),
            keep_for_ms: 1,
        },
        Command::Audited {
            by: "root".into(),
            command: Box::new(Command::Auth(AuthCommand::Create {
                id: "c1".into(),
                name: "ci".into(),
                secret_sha256: vec![1; 32],
                grants: vec!["kv:read:*".into()],
                ttl_ms: None,
            })),
        },
        Command::Registry(agents::token_create("t1", "edge", None, Some(1))),
        Command::Registry(agents::enroll("t1", "web-1", "cred-1")),
        Command::Registry(agents::enroll("t1", "web-2", "cred-2")),
        Command::Registry(agents::register(
            "cred-1",
            "web-1",
            vec![agents::check("http", tandem_registry::CheckStatus::Passing)],
        )),
        Command::Registry(agents::register("cred-9", "web-9", vec![])),
    ]
}

#[tokio::test]
async fn the_same_commands_answer_the_same_on_sqlite_and_on_postgresql() {
    let server = PostgresServer::start().await;
    let mut registry = agents::Registry::new();
    let on_sqlite: Vec<Applied> = script()
        .into_iter()
        .map(|command| registry.apply_command(agents::T0, command))
        .collect();
    let (client, on_postgres) = apply(connect(&server).await, script()).await;
    assert_eq!(on_sqlite.len(), on_postgres.len());
    for (i, (sqlite, postgres)) in on_sqlite.iter().zip(&on_postgres).enumerate() {
        assert_eq!(
            timeless(sqlite),
            timeless(postgres),
            "command {i} of the script"
        );
    }
    // Refusals are among them, so the comparison covers both ways a command can end.
    assert!(on_postgres.iter().any(|a| a.is_err()));
    assert!(on_postgres.iter().filter(|a| a.is_ok()).count() > 10);

    let (_, read_back) = read(client, |reads| {
        (
            reads.kv_list("", None, 100).expect("list"),
            reads.kv_list("b/", None, 100).expect("list b/"),
            reads
                .kv_get("a")
                .expect("get")
                .map(|e| (e.value, e.revision)),
            reads
                .lock_get("leader")
                .expect("lock")
                .map(|l| (l.holder, l.token)),
            reads.credentials().expect("credentials").len(),
            reads.audit(0, 10).expect("audit").len(),
            reads
                .registry_agents(None)
                .expect("agents")
                .into_iter()
                .map(|a| (a.name, a.pool, a.modify_index))
                .collect::<Vec<_>>(),
            reads.registry_index(Some("edge")).expect("pool index"),
        )
    })
    .await;
    let db = &registry.db;
    let on_sqlite_read = (
        db.kv_list("", None, 100).unwrap(),
        db.kv_list("b/", None, 100).unwrap(),
        db.kv_get("a").unwrap().map(|e| (e.value, e.revision)),
        db.lock_get("leader").unwrap().map(|l| (l.holder, l.token)),
        db.credentials().unwrap().len(),
        db.audit(0, 10).unwrap().len(),
        db.registry_agents(None)
            .unwrap()
            .into_iter()
            .map(|a| (a.name, a.pool, a.modify_index))
            .collect::<Vec<_>>(),
        db.registry_index(Some("edge")).unwrap(),
    );
    assert_eq!(read_back, on_sqlite_read);
    assert_eq!(read_back.0, ["a", "b/2", "fenced"]);
}

#[tokio::test]
async fn entries_expire_by_the_database_clock() {
    let server = PostgresServer::start().await;
    let ttl = Command::KvPut {
        key: "short".into(),
        value: b"lived".to_vec(),
        ttl_ms: Some(300),
        if_revision: None,
        fence: None,
    };
    let (client, answers) = apply(connect(&server).await, vec![ttl]).await;
    assert!(matches!(answers[0], Ok(Outcome::KvWritten { revision: 1 })));
    let (client, seen) = read(client, |reads| reads.kv_get("short").expect("get")).await;
    assert_eq!(seen.expect("live at first").value, b"lived");
    let url = server.url();
    wait_until(Duration::from_secs(10), "the entry expires", async || {
        // Each look is a read of its own, at the database's clock then.
        let (_, seen) = read(connect_to(&url).await, |reads| {
            reads.kv_get("short").expect("get")
        })
        .await;
        seen.is_none()
    })
    .await;
    let (_, answers) = apply(client, vec![Command::Expire]).await;
    assert!(
        matches!(answers[0], Ok(Outcome::Expired { removed: 1 })),
        "the expiry sweep removes the entry: {answers:?}"
    );
}

async fn connect_to(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("SET search_path TO {SCHEMA}"))
        .await
        .expect("search path");
    client
}

#[tokio::test]
async fn writers_on_several_connections_get_revisions_in_one_order() {
    let server = PostgresServer::start().await;
    // Made before the writers start, so they do not race to create the schema.
    drop(connect(&server).await);
    let writers = (0..4).map(|writer| {
        let url = server.url();
        tokio::spawn(async move {
            let mut client = connect_to(&url).await;
            let mut revisions = Vec::new();
            for i in 0..25 {
                let command = put(&format!("w{writer}/{i}"), "x", None, None);
                let (c, answers) = apply(client, vec![command]).await;
                client = c;
                match answers[0] {
                    Ok(Outcome::KvWritten { revision }) => revisions.push(revision),
                    ref other => panic!("a write was refused: {other:?}"),
                }
            }
            revisions
        })
    });
    let mut revisions = Vec::new();
    for writer in writers {
        revisions.extend(writer.await.expect("a writer"));
    }
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=100).collect::<Vec<u64>>());
}

fn statement(sql: &str, params: Vec<SqlValue>) -> Statement {
    Statement {
        sql: sql.into(),
        params: Params::Positional(params),
    }
}

#[tokio::test]
async fn users_statements_run_in_a_schema_of_their_own() {
    let server = PostgresServer::start().await;
    let create = Command::Sql {
        statements: vec![
            statement(
                "CREATE TABLE people (id bigint PRIMARY KEY, name text NOT NULL, score float8)",
                vec![],
            ),
            statement(
                "INSERT INTO people (id, name, score) VALUES ($1, $2, $3), (2, 'bo', NULL)",
                vec![
                    SqlValue::Integer(1),
                    SqlValue::Text("al".into()),
                    SqlValue::Real(1.5),
                ],
            ),
        ],
        fence: None,
    };
    // The second statement fails, so neither of the two applies.
    let failing = Command::Sql {
        statements: vec![
            statement("INSERT INTO people (id, name) VALUES (3, 'cy')", vec![]),
            statement("INSERT INTO people (id, name) VALUES (1, 'dup')", vec![]),
        ],
        fence: None,
    };
    let tandem_tables = Command::Sql {
        statements: vec![statement("SELECT * FROM _tandem_kv", vec![])],
        fence: None,
    };
    let named = Command::Sql {
        statements: vec![Statement {
            sql: "SELECT :a".into(),
            params: Params::Named(vec![(":a".into(), SqlValue::Integer(1))]),
        }],
        fence: None,
    };
    let each = Command::SqlEach {
        statements: vec![
            statement(
                "SELECT id, name, score, id > 1 AS later FROM people ORDER BY id",
                vec![],
            ),
            statement("SELECT * FROM missing", vec![]),
            statement(
                "UPDATE people SET score = $1 WHERE id = $2",
                vec![SqlValue::Integer(7), SqlValue::Integer(2)],
            ),
            statement("SELECT now()", vec![]),
        ],
        all_or_nothing: false,
    };
    let (_, answers) = apply(
        connect(&server).await,
        vec![create, failing, tandem_tables, named, each],
    )
    .await;
    let Ok(Outcome::Sql { results }) = &answers[0] else {
        panic!("the table and its rows: {:?}", answers[0]);
    };
    assert_eq!(results[1].rows_affected, 2);
    let refusal = answers[1].as_ref().expect_err("a duplicate key");
    assert!(
        refusal
            .message
            .starts_with("statement 2: duplicate key value"),
        "{}",
        refusal.message
    );
    let refusal = answers[2]
        .as_ref()
        .expect_err("Tandem's tables are not the user's");
    assert!(
        refusal.message.contains("does not exist"),
        "{}",
        refusal.message
    );
    let refusal = answers[3].as_ref().expect_err("named parameters");
    assert!(
        refusal.message.contains("numbered parameters"),
        "{}",
        refusal.message
    );
    let Ok(Outcome::SqlAnswers { answers }) = &answers[4] else {
        panic!("answers one by one: {:?}", answers[4]);
    };
    let SqlAnswer::Rows(rows) = &answers[0].0 else {
        panic!("rows: {:?}", answers[0]);
    };
    assert_eq!(rows.columns, ["id", "name", "score", "later"]);
    assert_eq!(rows.types, ["int8", "text", "float8", "bool"]);
    assert_eq!(
        rows.rows,
        vec![
            vec![
                SqlValue::Integer(1),
                SqlValue::Text("al".into()),
                SqlValue::Real(1.5),
                SqlValue::Integer(0)
            ],
            vec![
                SqlValue::Integer(2),
                SqlValue::Text("bo".into()),
                SqlValue::Null,
                SqlValue::Integer(1)
            ],
        ],
        "the failed request left no row behind"
    );
    assert!(matches!(&answers[1].0, SqlAnswer::Failed(m) if m.contains("does not exist")));
    assert!(matches!(&answers[2].0, SqlAnswer::Changed(r) if r.rows_affected == 1));
    assert!(
        matches!(&answers[3].0, SqlAnswer::Failed(m) if m.contains("::text")),
        "a column of a type answers cannot carry names the cast: {:?}",
        answers[3]
    );
}
