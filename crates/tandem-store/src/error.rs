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
}

/// Why a read failed: the request was wrong, or the store was.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Store(#[from] StoreError),
}
