use super::*;
use tandem_store::command::StatementResult;

fn uri(s: &str) -> Uri {
    s.parse().unwrap()
}

fn positional(sql: &str, values: Vec<SqlValue>) -> Statement {
    Statement {
        sql: sql.into(),
        params: Params::Positional(values),
    }
}

#[test]
fn statements_come_as_strings_or_arrays_with_parameters() {
    let body = br#"[
        "CREATE TABLE foo (id INTEGER PRIMARY KEY, name TEXT)",
        ["INSERT INTO foo(name, age) VALUES(?, ?)", "fiona", 20],
        ["INSERT INTO foo(name, age) VALUES(:name, :age)", {"name": "fiona", "age": 20.5}],
        ["INSERT INTO foo(data) VALUES(?)", [83, 81, 76]],
        ["INSERT INTO foo(data) VALUES(?)", "x'68656C6C6F'"],
        ["SELECT ?", true, null],
        ""
    ]"#;
    let parsed = statements(body, false).unwrap();
    assert_eq!(parsed.len(), 6, "the empty statement is skipped");
    assert_eq!(
        parsed[0],
        positional(
            "CREATE TABLE foo (id INTEGER PRIMARY KEY, name TEXT)",
            vec![]
        )
    );
    assert_eq!(
        parsed[1],
        positional(
            "INSERT INTO foo(name, age) VALUES(?, ?)",
            vec![SqlValue::Text("fiona".into()), SqlValue::Integer(20)]
        )
    );
    assert_eq!(
        parsed[2].params,
        Params::Named(vec![
            (":age".into(), SqlValue::Real(20.5)),
            (":name".into(), SqlValue::Text("fiona".into())),
        ])
    );
    assert_eq!(
        parsed[3].params,
        Params::Positional(vec![SqlValue::Blob(b"SQL".to_vec())])
    );
    assert_eq!(
        parsed[4].params,
        Params::Positional(vec![SqlValue::Blob(b"hello".to_vec())])
    );
    assert_eq!(
        parsed[5].params,
        Params::Positional(vec![SqlValue::Integer(1), SqlValue::Null])
    );
    assert_eq!(
        statements(b"SELECT * FROM foo", true).unwrap(),
        vec![positional("SELECT * FROM foo", vec![])]
    );
}

#[test]
fn malformed_bodies_are_refused_with_the_reason() {
    let refused = |body: &[u8]| statements(body, false).unwrap_err();
    assert!(refused(b"[\"SELECT 1\"")
        .message
        .starts_with("bad JSON body"));
    assert!(refused(b"{\"sql\": \"SELECT 1\"}")
        .message
        .contains("JSON array of statements, not an object"));
    assert!(refused(b"[]").message.starts_with("no statements"));
    assert!(refused(b"[[\"\"]]").message.starts_with("no statements"));
    assert!(refused(b"[42]").message.contains("statement 1"));
    assert!(refused(b"[[]]").message.contains("empty"));
    assert!(refused(b"[[1, 2]]")
        .message
        .contains("starts with the SQL string"));
    assert!(refused(b"[\"a\", [\"SELECT ?\", [1, 256]]]")
        .message
        .starts_with("statement 2: a blob parameter"));
    assert!(refused(b"[[\"SELECT ?\", 1, {\"a\": 2}]]")
        .message
        .contains("not both"));
    assert!(refused(b"[[\"SELECT :a\", {\"a\": {\"b\": 1}}]]")
        .message
        .contains("cannot be an object"));
    assert_eq!(refused(b"\xff").status, StatusCode::BAD_REQUEST);
    assert!(statements(b"\xff", true).is_err());
}

#[test]
fn flags_are_parsed_and_unknown_ones_refused() {
    let flags = Flags::parse(
        "query",
        &uri("/db/query?pretty&timings&associative&level=none&freshness=1s&freshness_strict&q=SELECT%201"),
    )
    .unwrap();
    assert!(flags.pretty && flags.timings && flags.associative && flags.freshness_strict);
    assert_eq!(flags.level, Level::None);
    assert_eq!(flags.freshness, Some(Duration::from_secs(1)));
    assert_eq!(flags.q.as_deref(), Some("SELECT 1"));
    assert!(
        Flags::parse(
            "execute",
            &uri("/db/execute?transaction&redirect&timeout=5s")
        )
        .unwrap()
        .transaction
    );
    let refused = |endpoint: &str, u: &str| Flags::parse(endpoint, &uri(u)).unwrap_err().message;
    assert!(refused("execute", "/db/execute?bogus").contains("unknown query parameter \"bogus\""));
    assert!(refused("execute", "/db/execute?level=none").contains("unknown query parameter"));
    assert!(refused("execute", "/db/execute?queue").contains("queued writes are not supported"));
    assert!(refused("query", "/db/query?freshness_strict").contains("requires freshness"));
    assert!(refused("query", "/db/query?freshness=soon").contains("not a duration"));
    assert!(refused("query", "/db/query?q=").contains("q is empty"));
    assert!(refused("execute", "/db/execute?timeout=x").contains("not a duration"));
    assert!(refused("execute", "/db/execute?retries=two").contains("not a whole number"));
}

#[test]
fn levels_map_onto_tandems_read_paths() {
    let level = |u: &str| Flags::parse("query", &uri(u)).unwrap().level;
    assert_eq!(level("/db/query").consistency(), Consistency::Active);
    assert_eq!(
        level("/db/query?level=none").consistency(),
        Consistency::Stale
    );
    assert_eq!(
        level("/db/query?level=weak").consistency(),
        Consistency::Active
    );
    assert_eq!(
        level("/db/query?level=auto").consistency(),
        Consistency::Active
    );
    assert_eq!(
        level("/db/query?level=linearizable").consistency(),
        Consistency::Linearizable
    );
    assert_eq!(
        level("/db/query?level=strong").consistency(),
        Consistency::Linearizable
    );
    // rqlite reads an unknown level as its default.
    assert_eq!(level("/db/query?level=bogus"), Level::Weak);
    assert!(reads_locally(&uri("/db/query?q=x&level=none")));
    assert!(!reads_locally(&uri("/db/query?q=none")));
}

fn rows(columns: &[&str], types: &[&str], values: Vec<Vec<SqlValue>>) -> SqlAnswer {
    SqlAnswer::Rows(QueryRows {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        types: types.iter().map(|t| t.to_string()).collect(),
        rows: values,
    })
}

fn changed(last_insert_id: i64, rows_affected: u64) -> SqlAnswer {
    SqlAnswer::Changed(StatementResult {
        rows_affected,
        last_insert_id,
    })
}

#[test]
fn answers_take_rqlites_shapes() {
    let fiona = vec![
        SqlValue::Integer(1),
        SqlValue::Text("fiona".into()),
        SqlValue::Blob(vec![0xde, 0xad]),
    ];
    let answers = vec![
        (changed(0, 0), 0.5),
        (changed(1, 1), 0.25),
        (
            rows(
                &["id", "name", "data"],
                &["integer", "text", "blob"],
                vec![fiona],
            ),
            0.125,
        ),
        (rows(&["id"], &["integer"], vec![]), 0.0),
        (SqlAnswer::Failed("no such table: bar".into()), 0.0),
    ];
    let plain = results_body(&answers, Shape::default(), 1.0);
    assert_eq!(
        plain,
        json!({"results": [
            {},
            {"last_insert_id": 1, "rows_affected": 1},
            {"columns": ["id", "name", "data"], "types": ["integer", "text", "blob"],
             "values": [[1, "fiona", "3q0="]]},
            {"columns": ["id"], "types": ["integer"]},
            {"error": "no such table: bar"},
        ]})
    );
    let shape = Shape {
        associative: true,
        timings: true,
        blob_array: true,
        execute: false,
    };
    let associative = results_body(&answers, shape, 1.0);
    assert_eq!(
        associative,
        json!({"results": [
            {"rows": null, "time": 0.5},
            {"last_insert_id": 1, "rows_affected": 1, "rows": null, "time": 0.25},
            {"types": {"id": "integer", "name": "text", "data": "blob"},
             "rows": [{"id": 1, "name": "fiona", "data": [222, 173]}], "time": 0.125},
            {"types": {"id": "integer"}, "rows": [], "time": 0.0},
            {"error": "no such table: bar"},
        ], "time": 1.0})
    );
    let execute = Shape {
        execute: true,
        ..Shape::default()
    };
    assert_eq!(
        results_body(&answers[2..3], execute, 0.0),
        json!({"results": [{}]}),
        "/db/execute answers a SELECT with counts, not rows"
    );
}

#[test]
fn pretty_answers_are_indented_by_four_spaces() {
    let body = json!({"results": [{}]});
    assert_eq!(encode(&body, false), br#"{"results":[{}]}"#);
    assert_eq!(
        String::from_utf8(encode(&body, true)).unwrap(),
        "{\n    \"results\": [\n        {}\n    ]\n}"
    );
}

#[test]
fn freshness_follows_rqlites_rule() {
    let second = Duration::from_secs(1);
    let seen = |contact_ms, caught_up, last_write_ms| Freshness {
        contact_ms,
        caught_up,
        last_write_ms,
    };
    assert!(
        !is_stale_read(true, seen(None, false, None), second, true),
        "the active node"
    );
    assert!(!is_stale_read(
        false,
        seen(Some(200), false, Some(5000)),
        second,
        false
    ));
    assert!(is_stale_read(
        false,
        seen(Some(2000), true, None),
        second,
        false
    ));
    assert!(is_stale_read(false, seen(None, true, None), second, false));
    assert!(is_stale_read(
        false,
        seen(Some(200), false, Some(5000)),
        second,
        true
    ));
    assert!(!is_stale_read(
        false,
        seen(Some(200), true, Some(5000)),
        second,
        true
    ));
    assert!(!is_stale_read(
        false,
        seen(Some(200), false, Some(500)),
        second,
        true
    ));
    assert!(!is_stale_read(
        false,
        seen(None, true, None),
        Duration::ZERO,
        true
    ));
}

#[test]
fn readyz_says_what_is_missing() {
    assert_eq!(
        readyz(Standing::Unavailable, true),
        (StatusCode::OK, "[+]node ok")
    );
    assert_eq!(
        readyz(Standing::Standby, false),
        (StatusCode::OK, "[+]node ok\n[+]leader ok\n[+]store ok")
    );
    assert_eq!(
        readyz(Standing::Unavailable, false).0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(readyz(Standing::StandbyCutOff, false)
        .1
        .ends_with("leader not contactable"));
    assert_eq!(
        readyz(Standing::Removed, false),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "[+]node ok\n[+]removed from the cluster"
        )
    );
}

#[test]
fn nodes_come_as_a_map_or_with_ver_2_as_a_list() {
    let node = |id, voter, reachable, leader| NodeEntry {
        id,
        cluster_addr: format!("h{id}:8100"),
        api_addr: format!("h{id}:8200"),
        voter,
        reachable,
        leader,
    };
    let nodes = [
        node(2, true, false, false),
        node(1, true, true, true),
        node(3, false, true, false),
    ];
    let legacy = nodes_body(&nodes, &Flags::default(), "v", "http");
    assert_eq!(
        legacy,
        json!({
            "1": {"id": "1", "api_addr": "http://h1:8200", "addr": "h1:8100", "version": "v",
                  "voter": true, "reachable": true, "leader": true},
            "2": {"id": "2", "api_addr": "http://h2:8200", "addr": "h2:8100", "version": "v",
                  "voter": true, "reachable": false, "leader": false,
                  "error": "not heard from lately"},
        })
    );
    let flags = Flags {
        nodes_v2: true,
        nonvoters: true,
        ..Flags::default()
    };
    let listed = nodes_body(&nodes, &flags, "v", "http");
    let ids: Vec<&str> = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3"]);
}

#[test]
fn a_status_key_picks_one_part() {
    let status = json!({"store": {"leader": {"addr": "h1:8100"}}});
    assert_eq!(
        status_part(status.clone(), Some("store.leader")),
        json!({"addr": "h1:8100"})
    );
    assert_eq!(
        status_part(status.clone(), Some("store.nothing")),
        json!({})
    );
    assert_eq!(status_part(status.clone(), None), status);
}
