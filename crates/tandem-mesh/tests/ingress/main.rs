//! The SOCKS5 and port-forward ingresses on 127.0.0.1 over a stand-in mesh dialer that counts
//! its dials, one file per behaviour.

mod support;

mod client_reset_closes_mesh_stream_test;
mod connection_cap_test;
mod dial_errors_map_to_reply_codes_test;
mod forward_carries_bytes_test;
mod forward_closes_client_when_dial_fails_test;
mod garbage_is_cut_off_test;
mod mesh_stream_error_closes_client_test;
mod no_route_is_answered_at_once_without_a_dial_around_test;
mod password_auth_test;
mod silent_client_is_cut_off_test;
mod socks5_connect_round_trips_test;
mod stopping_the_ingress_closes_its_connections_test;
mod unsupported_command_test;
