//! The agent registry's shared language and decisions. The wire types are what agents, servers
//! and clients exchange; the rules (an agent's state, who is down, which agent a client gets)
//! are plain functions of the registry's rows, the heartbeats and a time, with no sockets or
//! clocks, so the server's loops, every storage backend and the tests decide alike.
#![forbid(unsafe_code)]

pub mod directory;
pub mod liveness;
pub mod pick;
pub mod route_switch;
pub mod state;
pub mod wire;

pub use directory::{mesh_peers, MeshMember};
pub use liveness::{due_changes, Liveness, LivenessChange, LivenessPolicy};
pub use pick::{pick, rendezvous_weight, Candidate, PickRequest, Strategy};
pub use route_switch::{route_switches, RouteSwitch};
pub use state::{health_of, state_of};
pub use wire::*;
