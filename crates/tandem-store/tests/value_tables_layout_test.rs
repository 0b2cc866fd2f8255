//! The tables that hold users' values keep values of a kilobyte or two in their leaf pages, and a
//! state database made by an earlier release, with those tables WITHOUT ROWID, is rebuilt when it
//! is opened, every row kept and every read answering as before.

mod entries;

use entries::entry;
use rusqlite::Connection;
use tandem_store::StateReads;
use tandem_store::{Command, StateDb};

/// The two tables as releases before this layout created them.
const EARLIER_LAYOUT: &str = "
CREATE TABLE _tandem_kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, revision INTEGER NOT NULL, expires_at INTEGER
) WITHOUT ROWID;
CREATE INDEX _tandem_kv_expiry ON _tandem_kv(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE _tandem_cache (
    namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, expires_at INTEGER,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX _tandem_cache_expiry ON _tandem_cache(expires_at) WHERE expires_at IS NOT NULL;
";

/// Whether `table` is a table WITHOUT ROWID in the database at `path`.
fn without_rowid(path: &std::path::Path, table: &str) -> bool {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
            [table],
            |row| row.get(0),
        )
        .unwrap()
}

fn index_exists(path: &std::path::Path, index: &str) -> bool {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?1",
            [index],
            |row| row.get::<_, i64>(0),
        )
        .unwrap()
        == 1
}

#[test]
fn a_database_of_the_earlier_layout_is_rebuilt_keeping_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let earlier = Connection::open(&path).unwrap();
        earlier.execute_batch(EARLIER_LAYOUT).unwrap();
        earlier
            .execute_batch(
                "INSERT INTO _tandem_kv VALUES ('config/a', x'0102', 3, NULL);
                 INSERT INTO _tandem_kv VALUES ('config/b', x'03', 4, 9999999999999);
                 INSERT INTO _tandem_cache VALUES ('sessions', 'abc', x'04', NULL);",
            )
            .unwrap();
    }
    assert!(without_rowid(&path, "_tandem_kv"));

    let db = StateDb::open(&path).unwrap();
    for table in ["_tandem_kv", "_tandem_cache"] {
        assert!(!without_rowid(&path, table), "{table} was not rebuilt");
    }
    for index in ["_tandem_kv_expiry", "_tandem_cache_expiry"] {
        assert!(index_exists(&path, index), "{index} is missing");
    }
    let a = db.kv_get("config/a").unwrap().expect("config/a kept");
    assert_eq!(
        (a.value, a.revision, a.expires_at_ms),
        (vec![1, 2], 3, None)
    );
    let b = db.kv_get("config/b").unwrap().expect("config/b kept");
    assert_eq!((b.revision, b.expires_at_ms), (4, Some(9_999_999_999_999)));
    assert_eq!(
        db.kv_list("config/", None, 10).unwrap(),
        vec!["config/a".to_string(), "config/b".to_string()]
    );
    assert_eq!(db.cache_get("sessions", "abc").unwrap(), Some(vec![4]));

    // Writes go on as before, and a second open changes nothing.
    let put = Command::KvPut {
        key: "config/c".into(),
        value: b"5".to_vec(),
        ttl_ms: None,
        if_revision: Some(0),
        fence: None,
    };
    db.apply(&[entry(1, &put)]).unwrap();
    drop(db);
    let reopened = StateDb::open(&path).unwrap();
    assert_eq!(reopened.kv_get("config/c").unwrap().unwrap().value, b"5");
    assert_eq!(reopened.kv_list("config/", None, 10).unwrap().len(), 3);
}

#[test]
fn values_of_one_and_a_half_kilobytes_take_little_more_than_their_size() {
    const KEYS: u64 = 2_000;
    const VALUE_BYTES: usize = 1_500;
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    let entries: Vec<_> = (0..KEYS)
        .map(|i| {
            let put = Command::KvPut {
                key: format!("bench/{i}"),
                value: vec![(i % 251) as u8; VALUE_BYTES],
                ttl_ms: None,
                if_revision: None,
                fence: None,
            };
            entry(i + 1, &put)
        })
        .collect();
    db.apply(&entries).unwrap();
    // A compact copy, as a snapshot or a backup holds the state.
    let copy = dir.path().join("copy.db");
    db.copy_to(&copy).unwrap();
    let bytes = std::fs::metadata(&copy).unwrap().len();
    let values = KEYS * VALUE_BYTES as u64;
    // Each such row spilled into an overflow page of its own before: about 3.1 times.
    assert!(
        bytes < values * 3 / 2,
        "{bytes} bytes on disk for {values} bytes of values"
    );
}
