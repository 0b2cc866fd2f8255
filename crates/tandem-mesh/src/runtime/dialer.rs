//! The ingress side: a stream to `host:port` over the best path, the next path when an open
//! is refused or not acknowledged in time, and never a dial around the mesh.

use std::net::IpAddr;

use super::config::join_host_port;
use super::decide::open_timeout;
use super::splice::FlowStream;
use super::MeshRuntime;
use crate::advert::Destination;
use crate::dial::{DialError, DialFuture, MeshDialer, MeshStream};
use crate::path::PathView;
use crate::transport::{FlowError, OpenErrorKind};

impl MeshRuntime {
    /// The destination `host` matches and its paths, the chosen one first.
    fn paths_to(&self, host: &str) -> Option<(Destination, Vec<PathView>)> {
        let now = self.inner.core.now_ms();
        let state = self.inner.core.lock();
        let dest = match host.parse::<IpAddr>() {
            Ok(addr) => state.table.match_ip(addr),
            Err(_) => state.table.match_domain(host),
        }?;
        let paths = state.table.paths_for(&dest, now);
        Some((dest, paths))
    }

    async fn open(&self, host: &str, port: u16) -> Result<Box<dyn MeshStream>, DialError> {
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let target = join_host_port(host, port);
        let no_route = || DialError {
            kind: OpenErrorKind::NoRoute,
            reason: format!("no mesh route to {host}"),
        };
        let Some((dest, paths)) = self.paths_to(host) else {
            return Err(no_route());
        };
        if paths.is_empty() {
            return Err(no_route());
        }
        let core = &self.inner.core;
        // The exit's own answer about the destination beats a hop that could not be used.
        let mut answer: Option<DialError> = None;
        let mut hop_failure: Option<DialError> = None;
        for path in paths {
            let route = &path.route;
            if route.exits_here {
                return match self.inner.exits.dial(&target).await {
                    Ok(tcp) => Ok(Box::new(tcp)),
                    Err((kind, reason)) => Err(DialError { kind, reason }),
                };
            }
            let next_hop = route.next_hop.clone();
            let Some(conn) = core.connection(&next_hop) else {
                hop_failure = Some(DialError {
                    kind: OpenErrorKind::NoRoute,
                    reason: format!("no connection to {next_hop}"),
                });
                continue;
            };
            // The agents after the next hop, towards the origin.
            let onward: Vec<_> = route.path.iter().rev().skip(1).cloned().collect();
            let wait = open_timeout(conn.rtt());
            match tokio::time::timeout(wait, conn.open_flow(&target, onward)).await {
                Ok(Ok(flow)) => {
                    core.change(|table, now| table.acknowledged(&next_hop, now));
                    return Ok(Box::new(FlowStream::new(flow)));
                }
                Ok(Err(FlowError::Refused { kind, reason, peer })) => {
                    tracing::debug!(%dest, %peer, %kind, "mesh open refused: {reason}");
                    let refusal = DialError { kind, reason };
                    if kind == OpenErrorKind::NoRoute {
                        hop_failure = Some(refusal);
                    } else {
                        answer.get_or_insert(refusal);
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(%dest, %next_hop, "mesh open failed: {e}");
                    hop_failure = Some(DialError {
                        kind: OpenErrorKind::NoRoute,
                        reason: e.to_string(),
                    });
                }
                Err(_) => {
                    tracing::info!(%dest, %next_hop, ?wait, "mesh open not acknowledged in time; suspecting the next hop");
                    core.change(|table, now| table.suspect(&next_hop, now));
                    hop_failure = Some(DialError {
                        kind: OpenErrorKind::TimedOut,
                        reason: format!("{next_hop} did not acknowledge the open within {wait:?}"),
                    });
                }
            }
        }
        Err(answer.or(hop_failure).unwrap_or_else(no_route))
    }
}

impl MeshDialer for MeshRuntime {
    fn dial<'a>(&'a self, host: &'a str, port: u16) -> DialFuture<'a> {
        Box::pin(self.open(host, port))
    }
}
