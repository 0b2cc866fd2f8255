//! The replicated state machine: commands, queries, and the SQLite database that holds the
//! user's SQL tables together with Tandem's key/value store, TTL cache and locks.
#![forbid(unsafe_code)]
// openraft's StorageError is large, and its traits dictate that type.
#![allow(clippy::result_large_err)]

pub mod command;
mod db;
mod guard;
pub mod sql;
mod state_machine;

pub use command::{Applied, Command, Fence, Outcome, Params, Rejection, RejectionKind, Statement};
pub use db::{KvEntry, LockState, PublishedKey, QueryRows, ReadError, StateDb, StoreError};
pub use sql::SqlValue;
pub use state_machine::StateMachine;
