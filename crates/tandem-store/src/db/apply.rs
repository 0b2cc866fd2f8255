//! What applying one command works with, and how it can fail.

use rusqlite::Connection;

use crate::command::Rejection;
use crate::error::{ReadError, StoreError};

/// The store's counters while a batch of entries is applied; each command's savepoint puts
/// them back as they were when the command is rejected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counters {
    /// The write counter, from which key revisions and fencing tokens come.
    pub revision: u64,
    /// The agent registry's index, which blocking watches wait on.
    pub registry_index: u64,
}

/// One command being applied: its savepoint, the leader's stamp, and the store's counters.
pub(super) struct Applying<'a> {
    pub conn: &'a Connection,
    pub now: i64,
    pub revision: &'a mut u64,
    pub registry_index: &'a mut u64,
}

impl Applying<'_> {
    /// Counts one change to the agent registry, answering its index.
    pub fn count_registry_change(&mut self) -> u64 {
        *self.registry_index += 1;
        *self.registry_index
    }

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
