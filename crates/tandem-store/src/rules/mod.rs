//! The rules every backend of the replicated state shares: when an entry expires, who holds a
//! lock, whether a fencing token is current, whether a compare-and-set matches, whether a join
//! token may enrol an agent and what a report changes, and what a scoped credential may do. Plain functions of the stored rows, the
//! command and the leader's stamp (no database, no clock), so that the SQLite state machine and
//! any other backend decide alike. A backend loads the rows, asks the rule, and stores what it
//! answers.

pub mod fence;
pub mod grants;
pub mod lease;
pub mod registry;
pub mod revision;
pub mod ttl;
