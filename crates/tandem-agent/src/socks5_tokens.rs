//! Tandem tokens as SOCKS5 passwords (`--socks5-tokens`). A client gives a token the cluster
//! issued (`POST /v1/tokens`) as its password. It is verified here, against the key set the
//! servers publish (`GET /v1/keys/jwks`), which the agent fetches every [`KEYS_EVERY`] and,
//! at most every [`ASK_AGAIN_AFTER`], when a token names a key it has not seen. So no
//! connection waits on the servers, except the first with a key this agent has not seen.
//!
//! RFC 1929 gives the password at most 255 bytes, and a token is longer (about 280 bytes with
//! an ES256 signature and a key id), so a client splits it at its first dot ([`given_token`]):
//! the user name is the token's header, the password the rest (`payload.signature`). A token
//! short enough may also be the whole password, with any user name.
//!
//! A token is accepted when its signature verifies, it has not expired, and its claims allow
//! this ingress ([`socks5_allowed`]): `"socks5": true` for every ingress of the cluster, or a
//! list naming this agent or `"pool:<its pool>"`. If it is the whole password and has a `sub`,
//! the user name must be that.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use serde_json::Value;
use tandem_client::Client;
use tandem_keys::{Claims, Jwk, JwkSet, VerifyError, VerifyingKeys};
use tokio::time::Instant;

/// How often the key set is fetched again.
pub const KEYS_EVERY: Duration = Duration::from_secs(60);
/// A token naming an unknown key makes the agent fetch the key set, but not again within this
/// long: a flood of forged tokens costs the servers one request per interval.
pub const ASK_AGAIN_AFTER: Duration = Duration::from_secs(5);

/// The claim that lets a token open SOCKS5 connections.
pub const SOCKS5_CLAIM: &str = "socks5";

/// A token as a SOCKS5 client gave it.
#[derive(Debug, PartialEq, Eq)]
pub struct GivenToken {
    pub token: String,
    /// The user name given beside a whole token; `None` when the user name is part of it.
    pub user: Option<String>,
}

/// The token in a SOCKS5 user name and password: the whole password when it has a JWT's three
/// parts, else the user name (the token's header, without a dot) and the password
/// (`payload.signature`) joined by a dot; `None` when they hold no token.
pub fn given_token(username: &str, password: &str) -> Option<GivenToken> {
    let dots = |text: &str| text.bytes().filter(|b| *b == b'.').count();
    match dots(password) {
        2 => Some(GivenToken {
            token: password.to_owned(),
            user: Some(username.to_owned()),
        }),
        1 if !username.is_empty() && dots(username) == 0 => Some(GivenToken {
            token: format!("{username}.{password}"),
            user: None,
        }),
        _ => None,
    }
}

/// Whether `claims` let the SOCKS5 ingress of agent `agent` in pool `pool` take a client that
/// gave `user` beside the token (`None`: the token was split over user name and password);
/// else why not (without anything from the token but its claim's shape).
pub fn socks5_allowed(
    claims: &Claims,
    user: Option<&str>,
    agent: &str,
    pool: &str,
) -> Result<(), &'static str> {
    let allowed = match claims.get(SOCKS5_CLAIM) {
        None => return Err("the token has no socks5 claim"),
        Some(Value::Bool(allowed)) => *allowed,
        Some(Value::Array(names)) => {
            let pool_entry = format!("pool:{pool}");
            names
                .iter()
                .filter_map(Value::as_str)
                .any(|name| name == agent || name == pool_entry)
        }
        Some(_) => {
            return Err("the token's socks5 claim is neither true nor a list of agents and pools")
        }
    };
    if !allowed {
        return Err("the token's socks5 claim does not allow this ingress");
    }
    match (claims.get("sub"), user) {
        (Some(Value::String(sub)), Some(user)) if sub != user => {
            Err("the user name is not the token's sub")
        }
        _ => Ok(()),
    }
}

/// Whether a key set fetched last at `last` may be fetched again now for an unknown key.
pub fn may_ask_again(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= ASK_AGAIN_AFTER)
}

/// The servers' public keys as last fetched, and what verifies a token with them.
pub struct TokenKeys {
    agent: String,
    pool: String,
    /// Decoded once per fetch, not once per token.
    keys: RwLock<Arc<VerifyingKeys>>,
    /// Set once the agent has its client to the servers (after the mesh has started).
    client: OnceLock<Arc<Client>>,
    /// When the key set was last asked for; held while a fetch runs, so that connections with
    /// the same unknown key wait for one fetch instead of each making one.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl TokenKeys {
    pub fn new(agent: &str, pool: &str) -> TokenKeys {
        TokenKeys {
            agent: agent.to_owned(),
            pool: pool.to_owned(),
            keys: RwLock::new(Arc::default()),
            client: OnceLock::new(),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// Gives the client to fetch the key set with.
    pub fn set_client(&self, client: Arc<Client>) {
        let _ = self.client.set(client);
    }

    fn current(&self) -> Arc<VerifyingKeys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_keys(&self, keys: Vec<Jwk>) {
        let decoded = Arc::new(VerifyingKeys::new(&JwkSet { keys }));
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = decoded;
    }

    /// Whether the user name and password hold a token that lets the client in. A refusal is
    /// logged with its reason and the token's `sub`; the token itself never is.
    pub async fn accepts(&self, username: &str, password: &str) -> bool {
        let Some(given) = given_token(username, password) else {
            tracing::info!(
                reason = "no token in the user name and password",
                "socks5 token refused"
            );
            return false;
        };
        let mut verified = self.current().verify(&given.token);
        if matches!(verified, Err(VerifyError::UnknownKey(_))) && self.fetch_for_unknown().await {
            verified = self.current().verify(&given.token);
        }
        let (sub, refusal) = match &verified {
            Ok(claims) => {
                let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("-");
                match socks5_allowed(claims, given.user.as_deref(), &self.agent, &self.pool) {
                    Ok(()) => {
                        tracing::debug!(%sub, "socks5 token accepted");
                        return true;
                    }
                    Err(why) => (sub.to_owned(), why.to_string()),
                }
            }
            Err(e @ VerifyError::UnknownKey(_)) => ("-".to_owned(), format!("{}: {e}", e.code())),
            Err(e) => ("-".to_owned(), e.code().to_string()),
        };
        tracing::info!(%sub, reason = %refusal, "socks5 token refused");
        false
    }

    /// Fetches the key set for a token with an unknown key, unless it was fetched a moment
    /// ago; answers whether it may now hold more keys.
    async fn fetch_for_unknown(&self) -> bool {
        let mut last = self.last_fetch.lock().await;
        if !may_ask_again(*last, Instant::now()) {
            return false;
        }
        *last = Some(Instant::now());
        self.fetch().await.is_ok()
    }

    /// Fetches the key set every [`KEYS_EVERY`], the first time at once, until aborted.
    pub async fn follow(self: Arc<Self>) {
        let mut every = tokio::time::interval(KEYS_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            *self.last_fetch.lock().await = Some(Instant::now());
            if let Err(why) = self.fetch().await {
                tracing::warn!(
                    "the servers' token keys were not fetched: {why}; keeping the last ones"
                );
            }
        }
    }

    async fn fetch(&self) -> Result<(), String> {
        let client = self
            .client
            .get()
            .ok_or("no connection to the servers yet")?;
        let reply = client
            .get("/v1/keys/jwks")
            .await
            .and_then(|reply| reply.error_for_status())
            .map_err(|e| e.to_string())?;
        let keys = tandem_keys::parse_jwks(&reply.body)?;
        tracing::debug!(keys = keys.len(), "token keys fetched");
        self.set_keys(keys);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tandem_keys::{issue_token, SigningAlgorithm, SigningKey};

    use super::*;

    fn claims(value: Value) -> Claims {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_socks5_claim_allows_every_ingress_or_those_it_names() {
        let allowed =
            |c: Value, user: &str| socks5_allowed(&claims(c), Some(user), "ingress-a", "edge");
        assert_eq!(allowed(json!({"socks5": true}), "anyone"), Ok(()));
        assert_eq!(allowed(json!({"socks5": ["ingress-a"]}), "u"), Ok(()));
        assert_eq!(allowed(json!({"socks5": ["x", "pool:edge"]}), "u"), Ok(()));
        assert!(allowed(json!({}), "u")
            .unwrap_err()
            .contains("no socks5 claim"));
        assert!(allowed(json!({"socks5": false}), "u")
            .unwrap_err()
            .contains("does not allow"));
        assert!(
            allowed(json!({"socks5": ["ingress-b", "pool:core", 7]}), "u")
                .unwrap_err()
                .contains("does not allow")
        );
        assert!(allowed(json!({"socks5": "yes"}), "u")
            .unwrap_err()
            .contains("neither true nor a list"));
    }

    #[test]
    fn the_user_name_must_be_the_sub_when_there_is_one() {
        let c = claims(json!({"socks5": true, "sub": "ann"}));
        assert_eq!(socks5_allowed(&c, Some("ann"), "i", "p"), Ok(()));
        assert!(socks5_allowed(&c, Some("bob"), "i", "p")
            .unwrap_err()
            .contains("not the token's sub"));
        // Split over user name and password: the sub is the identity, nothing to compare.
        assert_eq!(socks5_allowed(&c, None, "i", "p"), Ok(()));
    }

    #[test]
    fn a_token_is_the_whole_password_or_split_at_its_first_dot() {
        assert_eq!(
            given_token("ann", "h.p.s"),
            Some(GivenToken {
                token: "h.p.s".into(),
                user: Some("ann".into())
            })
        );
        assert_eq!(
            given_token("h", "p.s"),
            Some(GivenToken {
                token: "h.p.s".into(),
                user: None
            })
        );
        assert_eq!(given_token("ann", "s3cret"), None);
        assert_eq!(given_token("", "p.s"), None);
        assert_eq!(given_token("a.b", "p.s"), None);
        assert_eq!(given_token("ann", "a.b.c.d"), None);
    }

    #[test]
    fn unknown_keys_are_asked_for_at_most_every_few_seconds() {
        let now = Instant::now();
        assert!(may_ask_again(None, now));
        assert!(!may_ask_again(Some(now), now + Duration::from_secs(1)));
        assert!(may_ask_again(Some(now), now + ASK_AGAIN_AFTER));
    }

    fn now_secs() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    #[tokio::test]
    async fn tokens_verify_against_the_fetched_keys() {
        let key = SigningKey::generate(SigningAlgorithm::Es256, "k1".into()).expect("key");
        let keys = TokenKeys::new("ingress-a", "edge");
        keys.set_keys(vec![key.public_jwk().clone()]);
        let sign = |c: Value, iat: u64, ttl: u64| {
            issue_token(&key, "tandem", claims(c), iat, ttl).expect("token")
        };
        let good = sign(json!({"socks5": true, "sub": "ann"}), now_secs(), 60);
        assert!(keys.accepts("ann", &good).await);
        assert!(!keys.accepts("bob", &good).await);
        let (header, rest) = good.split_once('.').expect("a JWT");
        assert!(keys.accepts(header, rest).await);
        assert!(!keys.accepts(header, &rest.replacen('.', ".x", 1)).await);
        let expired = sign(json!({"socks5": true}), now_secs() - 100, 10);
        assert!(!keys.accepts("ann", &expired).await);
        let no_claim = sign(json!({"sub": "ann"}), now_secs(), 60);
        assert!(!keys.accepts("ann", &no_claim).await);
        assert!(!keys.accepts("ann", "not-a-token").await);
        // Another cluster's key: unknown here, and with no client there is nothing to fetch.
        let stranger = SigningKey::generate(SigningAlgorithm::Es256, "k9".into()).expect("key");
        let foreign = issue_token(
            &stranger,
            "tandem",
            claims(json!({"socks5": true})),
            now_secs(),
            60,
        )
        .expect("token");
        assert!(!keys.accepts("ann", &foreign).await);
    }
}
