//! Locks in SQLite: loads a lock's row, asks [`crate::rules::lease`] or
//! [`crate::rules::fence`], and stores what it answers.

use rusqlite::{params, Connection, OptionalExtension};

use crate::command::{Fence, Outcome};
use crate::db::apply::{ApplyError, Applying};
use crate::rules::lease::{self, Acquisition, LockState};
use crate::rules::{fence, ttl};

/// The lock as stored, whether or not its lease still runs.
pub(super) fn row(conn: &Connection, name: &str) -> rusqlite::Result<Option<LockState>> {
    conn.prepare_cached("SELECT holder, token, expires_at FROM _tandem_locks WHERE name = ?1")?
        .query_row([name], |r| {
            Ok(LockState {
                name: name.to_string(),
                holder: r.get(0)?,
                token: r.get::<_, i64>(1)? as u64,
                expires_at_ms: r.get(2)?,
            })
        })
        .optional()
}

fn store(conn: &Connection, lock: &LockState) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO _tandem_locks (name, holder, token, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        lock.name,
        lock.holder,
        lock.token as i64,
        lock.expires_at_ms
    ])?;
    Ok(())
}

/// Refuses the write unless its fence, if it has one, is current.
pub(super) fn check_fence(
    conn: &Connection,
    fence: &Option<Fence>,
    now: i64,
) -> Result<(), ApplyError> {
    let Some(fence) = fence else { return Ok(()) };
    let lock = row(conn, &fence.lock)?;
    Ok(fence::check_current(fence, lock.as_ref(), now)?)
}

pub(super) fn acquire(
    applying: &mut Applying<'_>,
    name: &str,
    holder: &str,
    ttl_ms: u64,
) -> Result<Outcome, ApplyError> {
    let current = row(applying.conn, name)?;
    let acquisition = lease::acquire(
        current.as_ref(),
        name,
        holder,
        ttl_ms,
        applying.now,
        applying.next_revision(),
    )?;
    if let Acquisition::Granted(_) = acquisition {
        applying.count_write();
    }
    leased(applying.conn, name, holder, acquisition.lease())
}

pub(super) fn renew(
    applying: &mut Applying<'_>,
    name: &str,
    holder: &str,
    token: u64,
    ttl_ms: u64,
) -> Result<Outcome, ApplyError> {
    let current = row(applying.conn, name)?;
    let lease = lease::renew(current.as_ref(), name, holder, token, ttl_ms, applying.now)?;
    leased(applying.conn, name, holder, lease)
}

/// Stores `lease` as held by `holder`, answering it.
fn leased(
    conn: &Connection,
    name: &str,
    holder: &str,
    lease: lease::Lease,
) -> Result<Outcome, ApplyError> {
    store(conn, &lease.held_by(name, holder))?;
    Ok(Outcome::Lease {
        token: lease.token,
        expires_at_ms: lease.expires_at_ms,
    })
}

pub(super) fn release(
    applying: &mut Applying<'_>,
    name: &str,
    holder: &str,
    token: u64,
) -> Result<Outcome, ApplyError> {
    let current = row(applying.conn, name)?;
    store(
        applying.conn,
        &lease::release(current.as_ref(), name, holder, token, applying.now)?,
    )?;
    Ok(Outcome::Released)
}

/// Frees every lock whose lease has run out by `now`, keeping its token; answers how many.
pub(super) fn expire(conn: &Connection, now: i64) -> rusqlite::Result<u64> {
    Ok(conn
        .prepare_cached(
            "UPDATE _tandem_locks SET holder = NULL, expires_at = NULL WHERE expires_at <= ?1",
        )?
        .execute([ttl::expired_through(now)])? as u64)
}
