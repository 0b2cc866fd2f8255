//! Token signing keys. Every server holds its own private key and publishes the public half
//! through the replicated state; the merged set (every server's keys plus those of configured
//! peers) verifies a token from any of them.
//!
//! This crate holds what needs no sockets or clocks of its own: generating keys and their ids,
//! storing private keys on disk (optionally encrypted), issuing and verifying tokens, merging
//! key sets, and deciding when a server rotates or retires a key.
#![forbid(unsafe_code)]

mod algorithm;
mod error;
mod jwks;
mod key_id;
mod rotation;
mod signing_key;
mod token;
mod vault;

pub use algorithm::SigningAlgorithm;
pub use error::KeyError;
pub use jwks::{merge_jwks, parse_jwks, public_jwk_from_json};
pub use key_id::{check_instance_id, new_key_id};
pub use rotation::{departed_keys, plan_rotation, OwnKey, Publish, RotationPlan};
pub use signing_key::SigningKey;
pub use token::{
    issue_token, token_key_id, verify_token, Claims, VerifyError, VerifyingKeys, SERVER_SET_CLAIMS,
};
pub use vault::{KeyEncryption, KeyVault};

/// The JWK and JWKS types the API serves.
pub use jsonwebtoken::jwk::{Jwk, JwkSet};
