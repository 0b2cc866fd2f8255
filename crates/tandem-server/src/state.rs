//! What the client API's handlers are given. Each handler takes only the part it needs (axum's
//! `FromRef`): the replicated state, the channel to the active node, the signing keys, this
//! node's health, the credentials that authenticate clients, the agent registry, or this
//! server's events feed.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::active_channel::ActiveChannel;
use crate::credentials::Credentials;
use crate::events::Events;
use crate::health::NodeHealth;
use crate::keys::Keys;
use crate::registry::Registry;
use crate::replicated::Replicated;

/// The secret clients send as `Authorization: Bearer <secret>`.
#[derive(Clone)]
pub struct ApiSecret(pub Arc<str>);

/// The CA certificate (PEM) that clients trust for this API, when the server issues its own
/// certificate from the cluster's API CA (`api_tls = auto`).
#[derive(Clone)]
pub struct ApiCa(pub Option<Arc<str>>);

#[derive(Clone, FromRef)]
pub struct ApiState {
    pub data: Replicated,
    pub active: ActiveChannel,
    pub keys: Keys,
    pub health: NodeHealth,
    pub credentials: Credentials,
    pub registry: Registry,
    pub events: Events,
    pub api_ca: ApiCa,
}
