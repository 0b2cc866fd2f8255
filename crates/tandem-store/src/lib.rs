//! The replicated state machine: commands, queries, and the SQLite database that holds the
//! user's SQL tables together with Tandem's key/value store, TTL cache, locks, signing keys,
//! agent registry, scoped credentials and audit log. The rules those obey (expiry, leases,
//! fencing, compare-and-set, enrolment, grants) are plain code in [`rules`], for every backend.
//!
//! Tandem's own tables are read and written through [`tables::Tables`], in SQL that every engine
//! holding them speaks, so the code that applies commands and serves reads is written once.
//!
//! Modules depend only downwards: `state_machine` → `db` → `guard`, `tables`, `error`, `rules` →
//! `command` → `sql`.
#![forbid(unsafe_code)]
// openraft's StorageError is large, and its traits dictate that type.
#![allow(clippy::result_large_err)]

pub mod command;
mod db;
mod error;
mod guard;
pub mod postgres;
pub mod rules;
pub mod sql;
mod state_machine;
pub mod tables;

pub use command::SqlAnswer;
pub use command::{
    Applied, AuthCommand, Command, Fence, MembershipChange, Outcome, Params, RegistryCommand,
    Rejection, RejectionKind, Statement, TokenSpec, ROOT,
};
pub use db::{
    AgentCredentialRecord, AuditEntry, CredentialRecord, KvEntry, PublishedKey, QueryRows, StateDb,
    StateReads, TablesRead,
};
pub use error::{postgres_message, ReadError, StoreError};
pub use rules::lease::LockState;
pub use rules::registry::{AgentRow, CredentialRow};
pub use sql::SqlValue;
pub use state_machine::StateMachine;
