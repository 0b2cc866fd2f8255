//! What user SQL may touch, and how much work it may do. Tandem keeps its own tables in the same
//! database as the user's so that one transaction can span both; this authorizer keeps user
//! statements away from them and from anything that would break the transaction the state
//! machine wraps around each command.

use std::sync::{Arc, Mutex};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

/// Tandem's own tables start with this; user SQL may neither read nor change them.
pub const INTERNAL_PREFIX: &str = "_tandem";

/// Switches user-SQL checks on while a user statement is prepared, and keeps the reason of the
/// last denial so the error can say what was refused.
#[derive(Clone, Default)]
pub struct SqlGuard {
    state: Arc<Mutex<GuardState>>,
    checks_left: Arc<ProgressChecks>,
}

/// The most SQLite virtual-machine steps one user statement may take: about a tenth of a second
/// of work on one core, since a write holds up every write after it. A count of steps rather than
/// a time, so that every replica stops a runaway write (a recursive query without an end) at the
/// same step and rejects it alike; SQLite is bundled, so every replica of one release counts the
/// same steps.
pub const STATEMENT_STEP_LIMIT: u64 = 10_000_000;
/// SQLite calls the progress handler once per this many steps.
const STEPS_PER_CHECK: i32 = 1_000;

/// The progress checks the running user statement has left; `None` while none runs, so that
/// Tandem's own statements are never stopped.
#[derive(Default)]
struct ProgressChecks(Mutex<Option<u64>>);

impl ProgressChecks {
    /// Counts one check, and answers whether the statement must stop.
    fn spend(&self) -> bool {
        match &mut *self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            None => false,
            Some(0) => true,
            Some(left) => {
                *left -= 1;
                false
            }
        }
    }

    fn set(&self, checks: Option<u64>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = checks;
    }
}

/// While it lives, the user statement on its connection runs under [`STATEMENT_STEP_LIMIT`].
pub struct StepLimit<'a>(&'a ProgressChecks);

impl Drop for StepLimit<'_> {
    fn drop(&mut self) {
        self.0.set(None);
    }
}

#[derive(Default)]
struct GuardState {
    active: Option<Mode>,
    denial: Option<String>,
    /// The statement last prepared under the checks inserts rows.
    inserts: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A replicated write: no transaction control, pragmas, attachments or random values.
    Write,
    /// A read on one node: only Tandem's tables are off limits.
    Read,
}

fn table_of<'a>(action: &AuthAction<'a>) -> Option<&'a str> {
    use AuthAction::*;
    match *action {
        Read { table_name, .. }
        | Insert { table_name }
        | Update { table_name, .. }
        | Delete { table_name }
        | CreateTable { table_name }
        | CreateTempTable { table_name }
        | DropTable { table_name }
        | DropTempTable { table_name }
        | AlterTable { table_name, .. }
        | CreateIndex { table_name, .. }
        | CreateTempIndex { table_name, .. }
        | DropIndex { table_name, .. }
        | DropTempIndex { table_name, .. }
        | CreateTrigger { table_name, .. }
        | CreateTempTrigger { table_name, .. }
        | DropTrigger { table_name, .. }
        | DropTempTrigger { table_name, .. }
        | Analyze { table_name }
        | CreateVtable { table_name, .. }
        | DropVtable { table_name, .. } => Some(table_name),
        _ => None,
    }
}

impl SqlGuard {
    /// Switches the checks on (`Some`) for the statement about to be prepared, forgetting any
    /// earlier refusal, or off (`None`) again, keeping the refusal for [`SqlGuard::take_denial`].
    pub fn set(&self, mode: Option<Mode>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if mode.is_some() {
            state.denial = None;
            state.inserts = false;
        }
        state.active = mode;
    }

    /// The reason for the last refusal since the checks were switched on, if any.
    pub fn take_denial(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .denial
            .take()
    }

    pub fn install(&self, conn: &mut rusqlite::Connection) -> rusqlite::Result<()> {
        let guard = self.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| guard.decide(&ctx)))?;
        let checks_left = self.checks_left.clone();
        // Answering true interrupts the statement.
        conn.progress_handler(STEPS_PER_CHECK, Some(move || checks_left.spend()))
    }

    /// Limits the work of the user statement about to run, until the answer is dropped. A
    /// statement stopped by the limit fails with [`rusqlite::ErrorCode::OperationInterrupted`].
    pub fn limit_steps(&self) -> StepLimit<'_> {
        self.checks_left
            .set(Some(STATEMENT_STEP_LIMIT / STEPS_PER_CHECK as u64));
        StepLimit(&self.checks_left)
    }

    /// Whether the statement last prepared under the checks inserts rows: only such a one
    /// has a last inserted row id of its own (the connection's would otherwise show an earlier
    /// statement's, or one of Tandem's own rows).
    pub fn inserts(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).inserts
    }

    fn decide(&self, ctx: &AuthContext<'_>) -> Authorization {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mode) = state.active else {
            return Authorization::Allow;
        };
        // CREATE writes the schema table, which is no row of the user's.
        if matches!(ctx.action, AuthAction::Insert { table_name } if !table_name.starts_with("sqlite_"))
        {
            state.inserts = true;
        }
        let denial = refusal(mode, &ctx.action);
        match denial {
            Some(reason) => {
                state.denial = Some(reason);
                Authorization::Deny
            }
            None => Authorization::Allow,
        }
    }
}

/// Pragmas a read may run: they only describe the schema.
const SCHEMA_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
];

/// Pragmas a read may query (never set): they only report a setting of the connection or the
/// database. SQLAlchemy asks for `read_uncommitted` when it connects, and rqlite's
/// documentation reads `foreign_keys`.
const REPORTING_PRAGMAS: &[&str] = &[
    "read_uncommitted",
    "foreign_keys",
    "user_version",
    "application_id",
    "schema_version",
    "encoding",
    "page_size",
    "page_count",
    "freelist_count",
    "compile_options",
    "database_list",
    "collation_list",
    "function_list",
    "pragma_list",
];

/// Whether a read may run `PRAGMA name` (with `value` when it sets one).
fn read_may_use_pragma(name: &str, value: Option<&str>) -> bool {
    let name = name.to_ascii_lowercase();
    SCHEMA_PRAGMAS.contains(&name.as_str())
        || (value.is_none() && REPORTING_PRAGMAS.contains(&name.as_str()))
}

fn refusal(mode: Mode, action: &AuthAction<'_>) -> Option<String> {
    if let Some(table) = table_of(action) {
        if table.starts_with(INTERNAL_PREFIX) {
            return Some(format!(
                "table {table} belongs to Tandem; use the key/value, cache and lock APIs instead"
            ));
        }
    }
    // Neither a write nor a read may change the connection it runs on: reads share pooled
    // connections, writes share the transaction the state machine wraps around a command.
    match action {
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
            Some(match mode {
                Mode::Write => "transaction control is not allowed: the statements of one request already run in one transaction".into(),
                Mode::Read => "transaction control is not allowed in a query: every query sees the latest state".into(),
            })
        }
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
            Some("ATTACH and DETACH are not allowed: every replica must hold the same database".into())
        }
        // An action this build of SQLite does not name (an ATTACH with a bound file name is
        // one): refused rather than guessed at.
        AuthAction::Unknown { code, .. } => {
            Some(format!("this statement needs an operation Tandem does not allow (SQLite action {code})"))
        }
        AuthAction::Pragma { pragma_name, pragma_value } => match mode {
            Mode::Write => Some(format!("PRAGMA {pragma_name} is not allowed in a replicated write")),
            Mode::Read if read_may_use_pragma(pragma_name, *pragma_value) => None,
            Mode::Read => Some(format!(
                "PRAGMA {pragma_name} is not allowed; queries may use {}, and read (not set) {}",
                SCHEMA_PRAGMAS.join(", "),
                REPORTING_PRAGMAS.join(", ")
            )),
        },
        AuthAction::Function { function_name }
            if mode == Mode::Write
                && matches!(function_name.to_ascii_lowercase().as_str(), "random" | "randomblob") =>
        {
            Some(format!(
                "{function_name}() gives a different value on each replica; pass the value as a parameter"
            ))
        }
        _ => None,
    }
}
