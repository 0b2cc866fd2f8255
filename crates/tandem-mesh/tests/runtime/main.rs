//! Real mesh runtimes in one process on 127.0.0.1, one file per behaviour.

mod support;
#[path = "../common/udp_relay.rs"]
mod udp_relay;

mod dead_transit_fails_over_to_the_other_test;
mod exit_refuses_a_destination_it_does_not_advertise_test;
mod forged_adverts_are_refused_test;
mod no_route_fails_at_once_without_dialing_test;
mod peers_and_restrictions_change_while_running_test;
mod silent_transit_is_suspected_and_skipped_test;
mod stream_through_a_dead_transit_is_reset_test;
mod traffic_flows_ingress_transit_exit_test;
mod traffic_is_counted_test;
mod withdrawn_exit_routes_leave_the_ingress_test;
