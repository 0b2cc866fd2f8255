//! Locks in Tandem's tables: loads a lock's row, asks [`crate::rules::lease`] or
//! [`crate::rules::fence`], and stores what it answers.

use crate::command::{Fence, Outcome};
use crate::db::apply::{ApplyError, Applying};
use crate::error::StoreError;
use crate::rules::lease::{self, Acquisition, LockState};
use crate::rules::{fence, ttl};
use crate::tables::{params, Tables};

/// The lock as stored, whether or not its lease still runs.
pub(super) fn row(conn: &dyn Tables, name: &str) -> Result<Option<LockState>, StoreError> {
    conn.query_row(
        "SELECT holder, token, expires_at FROM _tandem_locks WHERE name = ?1",
        params![name],
        |mut r| {
            Ok(LockState {
                name: name.to_string(),
                holder: r.get(0)?,
                token: r.get(1)?,
                expires_at_ms: r.get(2)?,
            })
        },
    )
}

fn store(conn: &dyn Tables, lock: &LockState) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO _tandem_locks (name, holder, token, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE
         SET holder = excluded.holder, token = excluded.token, expires_at = excluded.expires_at",
        params![
            &lock.name,
            lock.holder.as_deref(),
            lock.token as i64,
            lock.expires_at_ms
        ],
    )?;
    Ok(())
}

/// Refuses the write unless its fence, if it has one, is current.
pub(super) fn check_fence(
    conn: &dyn Tables,
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
    conn: &dyn Tables,
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
pub(super) fn expire(conn: &dyn Tables, now: i64) -> Result<u64, StoreError> {
    conn.execute(
        "UPDATE _tandem_locks SET holder = NULL, expires_at = NULL WHERE expires_at <= ?1",
        params![ttl::expired_through(now)],
    )
}
