//! The mesh's routing core: which path a connection takes, decided in plain code.
//!
//! Agents speak a path-vector protocol. An exit originates an [`Advertisement`] of the CIDRs and
//! domain patterns it can reach; every agent that accepts it stores the path, and relays its best
//! path to each origin to its other peers with its own id appended. A [`Withdrawal`] removes
//! routes at once when a peer dies or an exit gives a route up; a TTL is only the backstop.
//!
//! This crate holds the decisions and none of the I/O, in the shape of openraft's engine: a
//! [`RouteTable`] takes inputs (a message from a peer, a peer gone, the time) and returns an
//! [`Output`] — which destinations changed their chosen path, and which messages to send to
//! which peers. A runtime owns the sockets and the clock (milliseconds on a monotonic clock,
//! passed in as `now_ms`), sends what it is told at once, and calls [`RouteTable::expire`] at
//! [`RouteTable::next_deadline`].
//!
//! - [`advert`]: the versioned wire messages, their limits and checks.
//! - [`policy`]: which origin may announce which destinations.
//! - [`proof`]: how origins sign their advertisements and every agent checks them.
//! - [`select`]: the order of paths and the hold-down rule, as pure functions.
//! - [`relay`]: what to tell the peers when the path relayed for an origin changes.
//! - [`path`] and [`output`]: what the table reports.
//! - [`table`]: the [`RouteTable`] that ties them together.
//! - [`dial`]: how an ingress asks the runtime for a stream through the mesh.
//! - [`transport`]: the I/O between agents — QUIC peering, the control stream that carries these
//!   messages, and flows; a runtime wires it to the table.
#![forbid(unsafe_code)]

pub mod advert;
pub mod dial;
pub mod ingress;
pub mod output;
pub mod path;
pub mod policy;
pub mod proof;
pub mod relay;
pub mod runtime;
pub mod select;
pub mod table;
pub mod transport;

pub use advert::{
    decode, encode, AdvertError, Advertisement, AgentId, Destination, DomainPattern, Message,
    OriginProof, RouteSpec, Withdrawal, DEFAULT_WEIGHT, MAX_CLOCK_SKEW_MS, MAX_MESSAGE_BYTES,
    MAX_PATH_LEN, MAX_ROUTES, MAX_TTL_MS, PROTOCOL_VERSION,
};
pub use dial::{DialError, DialFuture, MeshDialer, MeshStream};
pub use output::{Outgoing, Output, SelectionChange};
pub use path::{PathId, PathState, PathView, SelectedRoute};
pub use policy::{AllowAll, AllowList, AnnouncePolicy, Restrictions};
pub use proof::{AgentProofs, OriginProofs};
pub use table::{RouteTable, TableConfig};
