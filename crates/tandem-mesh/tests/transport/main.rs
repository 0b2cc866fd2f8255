//! The mesh transport between real quinn endpoints on 127.0.0.1, one file per behaviour.

mod support;
#[path = "../common/udp_relay.rs"]
mod udp_relay;

mod control_garbage_is_cut_off_test;
mod flow_carries_bytes_both_ways_test;
mod flow_open_refused_when_exit_cannot_dial_test;
mod peer_from_another_ca_is_refused_test;
mod peers_exchange_route_messages_test;
mod revoked_peer_is_refused_test;
mod silent_peer_is_dead_within_idle_timeout_test;
