//! What applying one command works with, and how it can fail.

use rusqlite::Connection;

use crate::command::Rejection;
use crate::error::{ReadError, StoreError};

/// One command being applied: its savepoint, the leader's stamp, and the store's write counter,
/// from which key revisions and fencing tokens come.
pub(super) struct Applying<'a> {
    pub conn: &'a Connection,
    pub now: i64,
    pub revision: &'a mut u64,
}

impl Applying<'_> {
    /// Counts one write, answering its revision.
    pub fn count_write(&mut self) -> u64 {
        *self.revision += 1;
        *self.revision
    }

    /// The revision the next write will get.
    pub fn next_revision(&self) -> u64 {
        *self.revision + 1
    }
}

pub(super) enum ApplyError {
    Rejected(Rejection),
    /// A user statement ran out of steps; SQLite has rolled back the whole transaction.
    Stopped(Rejection),
    Store(StoreError),
}

impl From<rusqlite::Error> for ApplyError {
    fn from(e: rusqlite::Error) -> Self {
        ApplyError::Store(StoreError::Sqlite(e))
    }
}

impl From<Rejection> for ApplyError {
    fn from(r: Rejection) -> Self {
        ApplyError::Rejected(r)
    }
}

impl From<ApplyError> for ReadError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Rejected(r) | ApplyError::Stopped(r) => ReadError::Rejected(r),
            ApplyError::Store(s) => ReadError::Store(s),
        }
    }
}
