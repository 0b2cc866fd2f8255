//! The agent's credential: its private key and what the servers issued for it at enrolment,
//! kept in `credential.json` in the data folder (mode 0600 from the moment it is created), and
//! the short-lived assertions signed with it that authenticate every later request.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use tandem_client::{Client, Reply};
use tandem_keys::{issue_token, SigningAlgorithm, SigningKey};
use tandem_registry::Enrollment;

use crate::reporter::backoff_delay;
use crate::status::Shared;
use crate::AgentError;

pub const CREDENTIAL_FILE: &str = "credential.json";
/// Who signs an agent's assertions, as their `iss` claim says.
pub const ASSERTION_ISSUER: &str = "tandem-agent";
/// How long one assertion is valid.
pub const ASSERTION_TTL_SECS: u64 = 300;
/// How old an assertion may get before a new one is signed.
pub const ASSERTION_REUSE_SECS: u64 = 60;

/// What `credential.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    pub name: String,
    pub pool: String,
    pub credential_id: String,
    /// The ES256 private key, PKCS#8 DER in standard base64.
    pub private_key_pkcs8: String,
    pub certificate_pem: String,
    pub ca_certificate_pem: String,
}

impl StoredCredential {
    /// What the servers answered an enrolment with, and the key it was made for.
    pub fn from_enrolment(
        answer: tandem_registry::Credential,
        key: &SigningKey,
    ) -> StoredCredential {
        StoredCredential {
            name: answer.name,
            pool: answer.pool,
            credential_id: answer.credential_id,
            private_key_pkcs8: STANDARD.encode(key.pkcs8()),
            certificate_pem: answer.certificate_pem,
            ca_certificate_pem: answer.ca_certificate_pem,
        }
    }

    /// The signing key, with the credential's id as its key id.
    pub fn signing_key(&self) -> Result<SigningKey, String> {
        let pkcs8 = STANDARD
            .decode(self.private_key_pkcs8.trim())
            .map_err(|e| format!("its private key is not base64: {e}"))?;
        SigningKey::from_pkcs8(SigningAlgorithm::Es256, self.credential_id.clone(), pkcs8)
            .map_err(|e| e.to_string())
    }

    /// Refuses a start whose name or pool differ from the credential's: the credential speaks
    /// for one agent of one pool only.
    pub fn check_matches(&self, name: &str, pool: Option<&str>, path: &Path) -> Result<(), String> {
        let fix = format!(
            "to enrol as another agent, remove {} and start with a new --join-token",
            path.display()
        );
        if self.name != name {
            return Err(format!(
                "this agent enrolled as {:?}, but is now started as {name:?}; start it with --name {} or, {fix}",
                self.name, self.name
            ));
        }
        match pool {
            Some(pool) if pool != self.pool => Err(format!(
                "this agent enrolled in pool {:?}, but is now started with --pool {pool}; start it with --pool {} or, {fix}",
                self.pool, self.pool
            )),
            _ => Ok(()),
        }
    }
}

/// Creates the data folder (mode 0700) when it does not exist yet.
pub fn ensure_data_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create the data folder {}: {e}", dir.display()))
}

pub fn credential_path(dir: &Path) -> PathBuf {
    dir.join(CREDENTIAL_FILE)
}

/// The stored credential, if the agent has enrolled.
pub fn load(dir: &Path) -> Result<Option<StoredCredential>, String> {
    let path = credential_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        format!(
            "{} is damaged ({e}); remove it and enrol again with a new --join-token",
            path.display()
        )
    })
}

/// Writes `file_name` in `dir` through a temporary file created new with mode 0600 (so the
/// content is never readable by others, even for a moment) and renamed into place.
pub fn write_private(dir: &Path, file_name: &str, content: &[u8]) -> std::io::Result<()> {
    let path = dir.join(file_name);
    let temporary = dir.join(format!(".{file_name}.new"));
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(content)?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path)
}

pub fn save(dir: &Path, credential: &StoredCredential) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(credential).map_err(|e| e.to_string())?;
    write_private(dir, CREDENTIAL_FILE, &text)
        .map_err(|e| format!("cannot write {}: {e}", credential_path(dir).display()))
}

/// Should a new assertion be signed? When none is held, when the held one is
/// [`ASSERTION_REUSE_SECS`] old, or when the clock went back since it was signed.
pub fn needs_new_assertion(signed_at_secs: Option<u64>, now_secs: u64) -> bool {
    match signed_at_secs {
        None => true,
        Some(signed) => now_secs < signed || now_secs - signed >= ASSERTION_REUSE_SECS,
    }
}

/// Signs the agent's assertions, reusing one for up to a minute (servers remember an assertion
/// they verified, so a reused one costs them no signature check).
pub struct Assertions {
    key: SigningKey,
    name: String,
    held: Mutex<Option<(u64, String)>>,
}

impl Assertions {
    pub fn new(key: SigningKey, name: String) -> Assertions {
        Assertions {
            key,
            name,
            held: Mutex::new(None),
        }
    }

    /// An assertion signed at `now_secs` or less than a minute before.
    pub fn at(&self, now_secs: u64) -> Result<String, String> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((signed, token)) = held.as_ref() {
            if !needs_new_assertion(Some(*signed), now_secs) {
                return Ok(token.clone());
            }
        }
        let mut claims = tandem_keys::Claims::new();
        claims.insert("sub".into(), self.name.clone().into());
        let token = issue_token(
            &self.key,
            ASSERTION_ISSUER,
            claims,
            now_secs,
            ASSERTION_TTL_SECS,
        )
        .map_err(|e| format!("cannot sign an assertion: {e}"))?;
        *held = Some((now_secs, token.clone()));
        Ok(token)
    }

    /// The bearer value for a request now; should signing ever fail, the last assertion (the
    /// server then says why it refuses it).
    pub fn bearer(&self) -> String {
        match self.at(now_secs()) {
            Ok(token) => token,
            Err(e) => {
                tracing::error!("{e}");
                self.held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|(_, token)| token.clone())
                    .unwrap_or_default()
            }
        }
    }
}

/// What an enrolment reply means.
#[derive(Debug)]
pub enum EnrolOutcome {
    Enrolled(tandem_registry::Credential),
    /// Refused for good (a wrong, expired or used-up token, a name taken): trying again with the
    /// same token cannot help.
    Refused(String),
    /// Worth trying again: the servers could not answer usefully now.
    Retry(String),
}

pub fn enrolment_outcome(reply: &Reply) -> EnrolOutcome {
    let status = reply.status;
    if status.is_success() {
        return match serde_json::from_slice(&reply.body) {
            Ok(credential) => EnrolOutcome::Enrolled(credential),
            Err(e) => EnrolOutcome::Retry(format!("the enrolment answer is not a credential: {e}")),
        };
    }
    let copy = Reply {
        status,
        headers: reply.headers.clone(),
        body: reply.body.clone(),
    };
    let why = copy
        .error_for_status()
        .err()
        .map_or_else(|| format!("HTTP {status}"), |e| e.to_string());
    let passing_trouble = matches!(status.as_u16(), 408 | 429) || status.is_server_error();
    if passing_trouble {
        EnrolOutcome::Retry(why)
    } else {
        EnrolOutcome::Refused(why)
    }
}

/// Trades the join token for a credential: tries until a server answers, backing off while none
/// does; a refusal ends it.
pub async fn enrol(
    client: &Client,
    enrollment: &Enrollment,
    shared: &Shared,
) -> Result<tandem_registry::Credential, AgentError> {
    let body = serde_json::to_value(enrollment)
        .map_err(|e| AgentError::Credential(format!("cannot encode the enrolment: {e}")))?;
    let mut failures: u32 = 0;
    loop {
        let why = match client.post_json("/v1/agent/enroll", &body).await {
            Ok(reply) => match enrolment_outcome(&reply) {
                EnrolOutcome::Enrolled(credential) => return Ok(credential),
                EnrolOutcome::Refused(why) => return Err(AgentError::Enrolment(why)),
                EnrolOutcome::Retry(why) => why,
            },
            Err(e) => e.to_string(),
        };
        if failures == 0 {
            tracing::warn!("cannot enrol yet: {why}; retrying with backoff");
        }
        shared.unreachable(why);
        tokio::time::sleep(backoff_delay(failures, rand::random::<f64>())).await;
        failures = failures.saturating_add(1);
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn credential(key: &SigningKey) -> StoredCredential {
        StoredCredential::from_enrolment(
            tandem_registry::Credential {
                name: "gw-1".into(),
                pool: "vpn".into(),
                credential_id: "cred-1".into(),
                certificate_pem: "CERT".into(),
                ca_certificate_pem: "CA".into(),
            },
            key,
        )
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_credential_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        ensure_data_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(load(&data).unwrap(), None);

        let key = SigningKey::generate(SigningAlgorithm::Es256, "pending".into()).unwrap();
        let stored = credential(&key);
        save(&data, &stored).unwrap();
        assert_eq!(mode(&credential_path(&data)), 0o600);
        let again = load(&data).unwrap().unwrap();
        assert_eq!(again, stored);
        let key_again = again.signing_key().unwrap();
        assert_eq!(key_again.kid(), "cred-1");
        assert_eq!(
            key_again.public_jwk().algorithm,
            key.public_jwk().algorithm,
            "the same key"
        );
        // Saving again replaces the file and keeps it private.
        save(&data, &stored).unwrap();
        assert_eq!(mode(&credential_path(&data)), 0o600);

        std::fs::write(credential_path(&data), "{").unwrap();
        assert!(load(&data)
            .unwrap_err()
            .contains("remove it and enrol again"));
    }

    #[test]
    fn a_start_as_another_agent_is_refused() {
        let key = SigningKey::generate(SigningAlgorithm::Es256, "pending".into()).unwrap();
        let stored = credential(&key);
        let path = Path::new("/data/credential.json");
        assert!(stored.check_matches("gw-1", Some("vpn"), path).is_ok());
        assert!(stored.check_matches("gw-1", None, path).is_ok());
        let err = stored.check_matches("gw-2", None, path).unwrap_err();
        assert!(
            err.contains("\"gw-1\"") && err.contains("remove /data/credential.json"),
            "{err}"
        );
        let err = stored.check_matches("gw-1", Some("web"), path).unwrap_err();
        assert!(err.contains("--pool vpn"), "{err}");
    }

    #[test]
    fn enrolment_refusals_stop_and_troubles_retry() {
        let reply = |status: u16, body: &str| Reply {
            status: tandem_client::StatusCode::from_u16(status).unwrap(),
            headers: Default::default(),
            body: body.as_bytes().to_vec(),
        };
        let refusal = r#"{"error": {"code": "join_token_invalid", "message": "the join token is not valid"}}"#;
        for status in [400, 401, 403, 409] {
            match enrolment_outcome(&reply(status, refusal)) {
                EnrolOutcome::Refused(why) => {
                    assert!(why.starts_with("the join token is not valid"), "{why}")
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        for status in [429, 500, 503] {
            assert!(matches!(
                enrolment_outcome(&reply(status, "busy")),
                EnrolOutcome::Retry(_)
            ));
        }
        let credential = r#"{"name": "gw-1", "pool": "vpn", "credential_id": "c", "certificate_pem": "C", "ca_certificate_pem": "A"}"#;
        assert!(matches!(
            enrolment_outcome(&reply(200, credential)),
            EnrolOutcome::Enrolled(c) if c.name == "gw-1"
        ));
        assert!(matches!(
            enrolment_outcome(&reply(200, "{}")),
            EnrolOutcome::Retry(_)
        ));
    }

    #[test]
    fn assertions_are_reused_for_a_minute_and_verify() {
        assert!(needs_new_assertion(None, 100));
        assert!(!needs_new_assertion(Some(100), 159));
        assert!(needs_new_assertion(Some(100), 160));
        assert!(needs_new_assertion(Some(100), 99));

        let key = SigningKey::generate(SigningAlgorithm::Es256, "cred-1".into()).unwrap();
        let jwk = key.public_jwk().clone();
        let assertions = Assertions::new(key, "gw-1".into());
        let first = assertions.at(1_000).unwrap();
        assert_eq!(assertions.at(1_059).unwrap(), first);
        let second = assertions.at(1_060).unwrap();
        assert_ne!(second, first);

        let now = now_secs();
        let token = assertions.at(now).unwrap();
        let claims =
            tandem_keys::verify_token(&token, |kid| (kid == "cred-1").then(|| jwk.clone()))
                .unwrap();
        assert_eq!(claims["sub"], "gw-1");
        assert_eq!(claims["iss"], ASSERTION_ISSUER);
        assert_eq!(claims["exp"], now + ASSERTION_TTL_SECS);
    }
}
