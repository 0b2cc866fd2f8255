//! A state database with a log of its own, and the registry commands the tests send it.
// Not every test file uses every helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use tandem_store::StateReads;

use tandem_registry::{CheckKind, CheckReport, CheckStatus};
use tandem_store::{Applied, Command, RegistryCommand, StateDb};

use crate::entries::apply_at;

pub const T0: i64 = 1_700_000_000_000;

/// A hash standing for a join token's secret (the store compares hashes, it never sees secrets).
pub const SECRET: [u8; 32] = [7; 32];

pub struct Registry {
    pub db: StateDb,
    next_index: u64,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn new() -> Registry {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = StateDb::open(&dir.path().join("state.db")).expect("open");
        Registry {
            db,
            next_index: 1,
            _dir: dir,
        }
    }

    /// Applies `command` as the next entry, stamped at `at_ms`.
    pub fn apply(&mut self, at_ms: i64, command: RegistryCommand) -> Applied {
        self.apply_command(at_ms, Command::Registry(command))
    }

    pub fn apply_command(&mut self, at_ms: i64, command: Command) -> Applied {
        let index = self.next_index;
        self.next_index += 1;
        apply_at(&self.db, index, at_ms, command)
    }

    /// A one-use join token for `pool`, then the agent `name` enrolled with it; answers the
    /// agent's credential id.
    pub fn enrolled(&mut self, name: &str, pool: &str) -> String {
        let token = format!("tok-{name}");
        self.apply(T0, token_create(&token, pool, None, Some(1)))
            .expect("token");
        let credential = format!("cred-{name}");
        self.apply(T0, enroll(&token, name, &credential))
            .expect("enrol");
        credential
    }

    /// An agent enrolled in `pool` and registered with `checks`, answering its credential.
    pub fn registered(&mut self, name: &str, pool: &str, checks: Vec<CheckReport>) -> String {
        let credential = self.enrolled(name, pool);
        self.apply(T0, register(&credential, name, checks))
            .expect("register");
        credential
    }

    /// Every table of the registry, as text, to see that nothing changed.
    pub fn dump(&self) -> String {
        let agents = self.db.registry_agents(None).expect("agents");
        let tokens = self.db.join_tokens().expect("tokens");
        let index = self.db.registry_index(None).expect("index");
        format!("{agents:?}\n{tokens:?}\n{index}")
    }
}

pub fn token_create(
    id: &str,
    pool: &str,
    ttl_ms: Option<u64>,
    uses: Option<u64>,
) -> RegistryCommand {
    RegistryCommand::TokenCreate {
        id: id.into(),
        pool: pool.into(),
        secret_sha256: SECRET.to_vec(),
        ttl_ms,
        uses,
    }
}

pub fn enroll(token_id: &str, name: &str, credential_id: &str) -> RegistryCommand {
    RegistryCommand::Enroll {
        token_id: token_id.into(),
        secret_sha256: SECRET.to_vec(),
        name: name.into(),
        credential_id: credential_id.into(),
        public_jwk: r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#.into(),
        certificate_pem: "-----BEGIN CERTIFICATE-----".into(),
    }
}

pub fn register(credential_id: &str, name: &str, checks: Vec<CheckReport>) -> RegistryCommand {
    RegistryCommand::Register {
        credential_id: credential_id.into(),
        name: name.into(),
        address: "10.0.0.7:8080".into(),
        labels: BTreeMap::from([("zone".into(), "a".into())]),
        version: "1.0.0".into(),
        checks,
    }
}

pub fn report(credential_id: &str, name: &str, checks: Vec<CheckReport>) -> RegistryCommand {
    RegistryCommand::Report {
        credential_id: credential_id.into(),
        name: name.into(),
        checks,
    }
}

pub fn check(name: &str, status: CheckStatus) -> CheckReport {
    CheckReport {
        name: name.into(),
        kind: CheckKind::Http,
        status,
        output: String::new(),
    }
}
