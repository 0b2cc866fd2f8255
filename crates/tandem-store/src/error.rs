//! How the store fails: its own errors, and a read's (a wrong request, or the store).

use crate::command::Rejection;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database holds an unreadable {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("state database file: {0}")]
    Io(#[from] std::io::Error),
    #[error("PostgreSQL: {}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// A committed entry holds a command this version cannot read: a newer version proposed it.
    /// Applying stops there rather than skip it and let this server's data differ from the
    /// others'.
    #[error("log entry {index} holds a command this version of Tandem cannot read ({detail}); a newer version wrote it: upgrade this server (see the upgrade rule in docs/operations.md)")]
    NewerEntry { index: u64, detail: String },
}

impl StoreError {
    /// The disk (or the quota of the user running the server) had no room for the write.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            | StoreError::Open {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => e.code == rusqlite::ErrorCode::DiskFull,
            StoreError::Io(e) => e.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }
}

/// What PostgreSQL said, with the server's own message when it sent one (the error's display
/// alone says only "db error").
pub fn postgres_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    }
}

/// Why a read failed: the request was wrong, or the store was.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Store(#[from] StoreError),
}
