//! The agent registry's decisions: whether a join token may enrol an agent at a time, whether a
//! credential speaks for an agent, and what a registration, report, down mark or drain makes of
//! an agent's row. Plain functions of the stored rows, the command and the leader's stamp; a
//! backend loads the rows, asks, and stores the rows these answer.

use std::collections::BTreeMap;

use serde::Serialize;
use tandem_registry::{health_of, state_of, AgentState, CheckReport, CheckStatus};

use crate::command::Rejection;
use crate::rules::ttl;

/// How long an expired join token is kept, so that an agent still trying it hears "expired"
/// rather than "not valid".
pub const EXPIRED_TOKEN_KEPT_MS: i64 = 7 * 24 * 3600 * 1000;

/// A join token as stored, with the hash of its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    pub id: String,
    pub pool: String,
    pub secret_sha256: Vec<u8>,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    /// Enrolments left; `None` is unlimited.
    pub uses_left: Option<u64>,
    pub revoked: bool,
}

/// An agent's credential: the public key it signs with, for one name in one pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CredentialRow {
    pub id: String,
    pub name: String,
    pub pool: String,
    /// The agent's public key, a JWK as JSON.
    pub public_jwk: String,
    pub revoked: bool,
}

/// A registered agent as the replicated state holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentRow {
    pub name: String,
    pub pool: String,
    pub credential_id: String,
    pub address: String,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    /// The worst of its checks when it last reported a change.
    pub health: CheckStatus,
    pub checks: Vec<CheckReport>,
    /// When the agent was marked down, while it is.
    pub down_since_ms: Option<i64>,
    pub draining: bool,
    /// Since when the agent has been in [`AgentRow::state`].
    pub state_since_ms: i64,
    pub registered_at_ms: i64,
    /// The registry index of the row's last change.
    pub modify_index: u64,
}

impl AgentRow {
    /// The state shown and used for picks.
    pub fn state(&self) -> AgentState {
        state_of(self.health, self.down_since_ms.is_some(), self.draining)
    }
}

/// What an agent says about itself when it (re)starts.
#[derive(Clone, Copy, Debug)]
pub struct Registering<'a> {
    pub address: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub version: &'a str,
    pub checks: &'a [CheckReport],
}

/// `ms` as a UTC time for messages, or the bare number where it is out of the calendar's range.
pub fn utc_time(ms: i64) -> String {
    // The last second of year 9999: humantime prints only four-digit years.
    const LAST_MS: i64 = 253_402_300_799_999;
    match u64::try_from(ms) {
        Ok(unsigned) if ms <= LAST_MS => {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unsigned);
            humantime::format_rfc3339_seconds(at).to_string()
        }
        _ => format!("{ms} ms after the Unix epoch"),
    }
}

/// Compares secrets' hashes in time that does not depend on where they differ.
pub fn same_hash(stored: &[u8], given: &[u8]) -> bool {
    stored.len() == given.len()
        && stored
            .iter()
            .zip(given)
            .fold(0u8, |differs, (a, b)| differs | (a ^ b))
            == 0
}

fn new_token_hint(pool: &str) -> String {
    format!("create a new one with `tandem agents token create --pool {pool}`")
}

/// An enrolment a join token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redeemed<'a> {
    /// The pool the agent joins: the token's.
    pub pool: &'a str,
    /// The token's uses left once this one is taken; `None` is unlimited.
    pub uses_left: Option<u64>,
}

/// Decides an enrolment with the join token stored as `token` (`None`: no such token) and a
/// secret hashing to `secret_sha256`, at `now_ms`. Nothing about the token is told to a caller
/// without its secret.
pub fn redeem<'a>(
    token: Option<&'a JoinToken>,
    secret_sha256: &[u8],
    now_ms: i64,
) -> Result<Redeemed<'a>, Rejection> {
    let token = match token {
        Some(token) if same_hash(&token.secret_sha256, secret_sha256) => token,
        _ => {
            return Err(Rejection::unauthorized(
                "the join token is not valid; check that it was copied whole, or create a new \
                 one with `tandem agents token create --pool <pool>`",
            ))
        }
    };
    let hint = new_token_hint(&token.pool);
    if token.revoked {
        return Err(Rejection::unauthorized(format!(
            "the join token {} was revoked; {hint}",
            token.id
        )));
    }
    let expired_at = token
        .expires_at_ms
        .filter(|&at| ttl::is_expired(Some(at), now_ms));
    if let Some(at) = expired_at {
        return Err(Rejection::unauthorized(format!(
            "the join token expired at {}; {hint}",
            utc_time(at)
        )));
    }
    let uses_left = match token.uses_left {
        None => None,
        Some(0) => {
            return Err(Rejection::unauthorized(format!(
                "the join token {} is used up (every enrolment it allowed is taken); {hint}",
                token.id
            )))
        }
        Some(left) => Some(left - 1),
    };
    Ok(Redeemed {
        pool: &token.pool,
        uses_left,
    })
}

/// Whether `name` may be enrolled, given the unrevoked credential that holds it, if any.
/// The credential that holds a name, as an enrolment sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameHolder {
    pub credential_id: String,
    pub pool: String,
    pub token_id: String,
    pub public_jwk: String,
}

/// Whether an enrolment repeats one that already succeeded: the same join token and the same
/// public key for the name. An agent whose first attempt's answer was lost (a timeout, a server
/// failover) gets its credential again instead of "name taken", and uses no second token use.
pub fn repeats_enrolment(holder: &NameHolder, token_id: &str, public_jwk: &str) -> bool {
    holder.token_id == token_id && same_public_key(&holder.public_jwk, public_jwk)
}

/// Two JWKs hold the same public key (whatever their key ids).
fn same_public_key(a: &str, b: &str) -> bool {
    let key = |jwk: &str| -> Option<[String; 4]> {
        let value: serde_json::Value = serde_json::from_str(jwk).ok()?;
        let field = |name: &str| value.get(name)?.as_str().map(str::to_string);
        Some([field("kty")?, field("crv")?, field("x")?, field("y")?])
    };
    matches!((key(a), key(b)), (Some(a), Some(b)) if a == b)
}

pub fn check_name_free(name: &str, holder: Option<&str>) -> Result<(), Rejection> {
    match holder {
        None => Ok(()),
        Some(credential_id) => Err(Rejection::conflict(format!(
            "agent name {name} is enrolled already (credential {credential_id}); revoke it first \
             (`tandem agents revoke {name}`) or choose another --name"
        ))),
    }
}

/// The credential `credential_id` (stored as `credential`) if it is unrevoked and speaks for
/// the agent `name`.
pub fn authorize<'a>(
    credential: Option<&'a CredentialRow>,
    credential_id: &str,
    name: &str,
) -> Result<&'a CredentialRow, Rejection> {
    let Some(credential) = credential else {
        return Err(Rejection::unauthorized(format!(
            "credential {credential_id} is not known; enrol again with a new join token"
        )));
    };
    if credential.revoked {
        return Err(Rejection::unauthorized(format!(
            "credential {credential_id} is revoked; enrol again with a new join token"
        )));
    }
    if credential.name != name {
        return Err(Rejection::unauthorized(format!(
            "credential {credential_id} belongs to agent {}, not {name}; run the agent as --name {} \
             or enrol {name} with a join token of its own",
            credential.name, credential.name
        )));
    }
    Ok(credential)
}

/// The refusal of an act on an agent that has no row.
pub fn not_registered(name: &str) -> Rejection {
    Rejection::not_found(format!(
        "agent {name} is not registered (`tandem agents ls` shows those that are)"
    ))
}

/// `after` with its `state_since_ms` kept from `before` while the displayed state stays the
/// same, and `now_ms` once it changes.
fn settled(before: Option<&AgentRow>, mut after: AgentRow, now_ms: i64) -> AgentRow {
    after.state_since_ms = match before {
        Some(before) if before.state() == after.state() => before.state_since_ms,
        _ => now_ms,
    };
    after
}

/// The row of an agent that (re)starts with `credential`, replacing `before`: healthy as its
/// checks say, neither down nor draining.
pub fn registered(
    before: Option<&AgentRow>,
    credential: &CredentialRow,
    registering: Registering<'_>,
    now_ms: i64,
) -> AgentRow {
    let after = AgentRow {
        name: credential.name.clone(),
        pool: credential.pool.clone(),
        credential_id: credential.id.clone(),
        address: registering.address.to_string(),
        labels: registering.labels.clone(),
        version: registering.version.to_string(),
        health: health_of(registering.checks),
        checks: registering.checks.to_vec(),
        down_since_ms: None,
        draining: false,
        state_since_ms: now_ms,
        registered_at_ms: now_ms,
        modify_index: before.map_or(0, |row| row.modify_index),
    };
    settled(before, after, now_ms)
}

fn statuses(checks: &[CheckReport]) -> BTreeMap<&str, CheckStatus> {
    checks
        .iter()
        .map(|check| (check.name.as_str(), check.status))
        .collect()
}

/// The row after a report of `checks`, or `None` when the report changes nothing that is
/// replicated: same health, same checks with the same statuses, and the agent not marked down.
/// A check's output alone does not count, so steady heartbeats cost no Raft entries.
pub fn reported(row: &AgentRow, checks: &[CheckReport], now_ms: i64) -> Option<AgentRow> {
    let health = health_of(checks);
    let unchanged = row.down_since_ms.is_none()
        && row.health == health
        && statuses(&row.checks) == statuses(checks);
    if unchanged {
        return None;
    }
    let after = AgentRow {
        health,
        checks: checks.to_vec(),
        down_since_ms: None,
        ..row.clone()
    };
    Some(settled(Some(row), after, now_ms))
}

/// The row marked down at `now_ms`, or `None` when it is down already.
pub fn marked_down(row: &AgentRow, now_ms: i64) -> Option<AgentRow> {
    if row.down_since_ms.is_some() {
        return None;
    }
    let after = AgentRow {
        down_since_ms: Some(now_ms),
        ..row.clone()
    };
    Some(settled(Some(row), after, now_ms))
}

/// The row draining from `now_ms`, or `None` when it drains already.
pub fn drained(row: &AgentRow, now_ms: i64) -> Option<AgentRow> {
    if row.draining {
        return None;
    }
    let after = AgentRow {
        draining: true,
        ..row.clone()
    };
    Some(settled(Some(row), after, now_ms))
}

/// Whether a deregistration that names `credential_id` (or none) removes `row`: one that names
/// a credential only removes the row that credential registered, so that an agent's old
/// process cannot remove its successor's row.
pub fn deregisters(row: &AgentRow, credential_id: Option<&str>) -> bool {
    credential_id.is_none_or(|id| id == row.credential_id)
}

/// Whether the reaper may remove `row`: only while it is still down (a report since it was
/// marked down keeps it).
pub fn removable(row: &AgentRow) -> bool {
    row.down_since_ms.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::RejectionKind;
    use tandem_registry::CheckKind;

    #[test]
    fn a_repeated_enrolment_has_the_same_token_and_key() {
        let holder = NameHolder {
            credential_id: "cred-1".into(),
            pool: "vpn".into(),
            token_id: "tok".into(),
            public_jwk: r#"{"kty":"EC","crv":"P-256","x":"AA","y":"BB","kid":"cred-1"}"#.into(),
        };
        let same_key = r#"{"kty":"EC","crv":"P-256","x":"AA","y":"BB","kid":"cred-2"}"#;
        let other_key = r#"{"kty":"EC","crv":"P-256","x":"AA","y":"CC","kid":"cred-2"}"#;
        assert!(repeats_enrolment(&holder, "tok", same_key));
        assert!(!repeats_enrolment(&holder, "other", same_key));
        assert!(!repeats_enrolment(&holder, "tok", other_key));
        assert!(!repeats_enrolment(&holder, "tok", "not json"));
    }

    const HASH: [u8; 32] = [7; 32];

    fn token() -> JoinToken {
        JoinToken {
            id: "tok-1".into(),
            pool: "edge".into(),
            secret_sha256: HASH.to_vec(),
            created_at_ms: 1_000,
            expires_at_ms: Some(5_000),
            uses_left: Some(2),
            revoked: false,
        }
    }

    fn credential() -> CredentialRow {
        CredentialRow {
            id: "cred-1".into(),
            name: "gw-1".into(),
            pool: "edge".into(),
            public_jwk: "{}".into(),
            revoked: false,
        }
    }

    fn check(name: &str, status: CheckStatus, output: &str) -> CheckReport {
        CheckReport {
            name: name.into(),
            kind: CheckKind::Tcp,
            status,
            output: output.into(),
        }
    }

    fn agent(checks: &[CheckReport]) -> AgentRow {
        let labels = BTreeMap::new();
        let registering = Registering {
            address: "10.0.0.7:80",
            labels: &labels,
            version: "1.0",
            checks,
        };
        registered(None, &credential(), registering, 100)
    }

    #[test]
    fn a_token_takes_one_use_and_unlimited_stays_unlimited() {
        let stored = token();
        let redeemed = redeem(Some(&stored), &HASH, 2_000).unwrap();
        assert_eq!((redeemed.pool, redeemed.uses_left), ("edge", Some(1)));
        let unlimited = JoinToken {
            uses_left: None,
            ..token()
        };
        let redeemed = redeem(Some(&unlimited), &HASH, 2_000).unwrap();
        assert_eq!(redeemed.uses_left, None);
    }

    #[test]
    fn an_unknown_token_and_a_wrong_secret_say_the_same() {
        let unknown = redeem(None, &HASH, 2_000).unwrap_err();
        let wrong = redeem(Some(&token()), &[8; 32], 2_000).unwrap_err();
        assert_eq!(unknown, wrong);
        assert_eq!(unknown.kind, RejectionKind::Unauthorized);
        assert!(unknown.message.contains("not valid"), "{}", unknown.message);
        let short = redeem(Some(&token()), &HASH[..31], 2_000).unwrap_err();
        assert_eq!(short, unknown);
    }

    #[test]
    fn a_revoked_expired_or_used_up_token_is_refused_with_what_to_do() {
        let revoked = JoinToken {
            revoked: true,
            ..token()
        };
        let refused = redeem(Some(&revoked), &HASH, 2_000).unwrap_err();
        assert!(refused.message.contains("revoked"), "{}", refused.message);

        let expired = redeem(Some(&token()), &HASH, 5_000).unwrap_err();
        assert_eq!(expired.kind, RejectionKind::Unauthorized);
        assert!(
            expired
                .message
                .starts_with("the join token expired at 1970-01-01T00:00:05Z;"),
            "{}",
            expired.message
        );
        assert!(
            expired.message.contains("--pool edge"),
            "{}",
            expired.message
        );
        assert!(redeem(Some(&token()), &HASH, 4_999).is_ok());

        let used_up = JoinToken {
            uses_left: Some(0),
            ..token()
        };
        let refused = redeem(Some(&used_up), &HASH, 2_000).unwrap_err();
        assert!(refused.message.contains("used up"), "{}", refused.message);
    }

    #[test]
    fn times_out_of_the_calendar_print_as_numbers() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert!(utc_time(-1).contains("-1 ms"));
        assert!(utc_time(i64::MAX).contains("ms after"));
    }

    #[test]
    fn a_name_held_by_an_unrevoked_credential_is_a_conflict() {
        assert_eq!(check_name_free("gw-1", None), Ok(()));
        let taken = check_name_free("gw-1", Some("cred-1")).unwrap_err();
        assert_eq!(taken.kind, RejectionKind::Conflict);
        assert!(taken.message.contains("tandem agents revoke gw-1"));
    }

    #[test]
    fn a_credential_speaks_only_for_its_own_name_while_unrevoked() {
        let stored = credential();
        assert_eq!(authorize(Some(&stored), "cred-1", "gw-1"), Ok(&stored));
        for refused in [
            authorize(None, "cred-1", "gw-1"),
            authorize(Some(&stored), "cred-1", "gw-2"),
            authorize(
                Some(&CredentialRow {
                    revoked: true,
                    ..credential()
                }),
                "cred-1",
                "gw-1",
            ),
        ] {
            assert_eq!(refused.unwrap_err().kind, RejectionKind::Unauthorized);
        }
    }

    #[test]
    fn registering_clears_down_and_draining_and_takes_health_from_checks() {
        let before = AgentRow {
            down_since_ms: Some(50),
            draining: true,
            ..agent(&[])
        };
        let checks = [check("a", CheckStatus::Warning, "")];
        let labels = BTreeMap::new();
        let registering = Registering {
            address: "10.0.0.8:80",
            labels: &labels,
            version: "1.1",
            checks: &checks,
        };
        let after = registered(Some(&before), &credential(), registering, 300);
        assert_eq!(after.state(), AgentState::Warning);
        assert_eq!((after.state_since_ms, after.registered_at_ms), (300, 300));
        assert_eq!(after.address, "10.0.0.8:80");
    }

    #[test]
    fn state_since_moves_only_when_the_shown_state_changes() {
        let row = agent(&[check("a", CheckStatus::Passing, "")]);
        assert_eq!(row.state_since_ms, 100);
        // Another passing check: the checks changed, the state did not.
        let more = [
            check("a", CheckStatus::Passing, ""),
            check("b", CheckStatus::Passing, ""),
        ];
        let row = reported(&row, &more, 200).expect("a new check is a change");
        assert_eq!(
            (row.state(), row.state_since_ms),
            (AgentState::Passing, 100)
        );
        let worse = [
            check("a", CheckStatus::Passing, ""),
            check("b", CheckStatus::Critical, ""),
        ];
        let row = reported(&row, &worse, 300).expect("a status change");
        assert_eq!(
            (row.state(), row.state_since_ms),
            (AgentState::Critical, 300)
        );
        // A draining agent that turns critical stays draining, since it started draining.
        let row = drained(&row, 400).unwrap();
        let row = reported(&row, &more, 500).unwrap();
        assert_eq!(
            (row.state(), row.state_since_ms),
            (AgentState::Draining, 400)
        );
    }

    #[test]
    fn a_report_that_changes_nothing_but_output_is_no_change() {
        let row = agent(&[check("a", CheckStatus::Passing, "ok")]);
        assert_eq!(
            reported(&row, &[check("a", CheckStatus::Passing, "still ok")], 200),
            None
        );
        let down = marked_down(&row, 300).unwrap();
        let back = reported(&down, &[check("a", CheckStatus::Passing, "ok")], 400).unwrap();
        assert_eq!(back.down_since_ms, None);
        assert_eq!(
            (back.state(), back.state_since_ms),
            (AgentState::Passing, 400)
        );
    }

    #[test]
    fn down_and_drain_are_changes_once() {
        let row = agent(&[]);
        let down = marked_down(&row, 200).unwrap();
        assert_eq!(
            (down.state(), down.down_since_ms),
            (AgentState::Down, Some(200))
        );
        assert_eq!(marked_down(&down, 300), None);
        assert!(removable(&down) && !removable(&row));
        let draining = drained(&row, 200).unwrap();
        assert_eq!(drained(&draining, 300), None);
    }

    #[test]
    fn a_deregistration_naming_another_credential_keeps_the_row() {
        let row = agent(&[]);
        assert!(deregisters(&row, None));
        assert!(deregisters(&row, Some("cred-1")));
        assert!(!deregisters(&row, Some("cred-0")));
    }
}
