//! The transport's settings and the QUIC transport configuration built from them.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};

/// Where an agent listens for peers unless told otherwise.
pub const DEFAULT_MESH_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 4433);

/// How the mesh's QUIC connections behave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportSettings {
    /// A ping is sent this often on an otherwise quiet connection.
    pub keep_alive: Duration,
    /// A peer silent this long is dead; its connection and every flow on it fail. Both peers
    /// propose one and the shorter wins, so keep `keep_alive` well below it on every agent.
    pub idle_timeout: Duration,
    /// The control stream's greeting and each flow's first frame must arrive within this.
    pub header_timeout: Duration,
    /// Flows (TCP connections) one peer may have open towards this agent at once.
    pub max_flows_per_peer: u32,
    /// Bytes one flow may have in flight towards this agent (its QUIC receive window); a slow
    /// reader stops its sender here.
    pub flow_window: u32,
    /// Bytes all flows of one peer may have in flight towards this agent together.
    pub connection_window: u32,
    /// The kernel buffer asked for the UDP socket, each way. The kernel's default (about
    /// 200 KiB) overflows under a burst of full-size packets and drops them, which QUIC then
    /// takes for congestion.
    pub udp_buffer: u32,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(3),
            header_timeout: Duration::from_secs(3),
            max_flows_per_peer: 4096,
            flow_window: 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
            udp_buffer: 4 * 1024 * 1024,
        }
    }
}

/// A transport setting out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("mesh keep_alive {keep_alive:?} must be above zero and below idle_timeout {idle_timeout:?} (e.g. 1s and 3s)")]
    KeepAlive {
        keep_alive: Duration,
        idle_timeout: Duration,
    },
    #[error("mesh idle_timeout {0:?} is out of range; use 1s to 1h")]
    IdleTimeout(Duration),
    #[error("mesh header_timeout must be above zero")]
    GreetingTimeout,
    #[error("mesh {what} must be above zero")]
    Zero { what: &'static str },
}

impl TransportSettings {
    pub fn check(&self) -> Result<(), SettingsError> {
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.idle_timeout) {
            return Err(SettingsError::IdleTimeout(self.idle_timeout));
        }
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return Err(SettingsError::KeepAlive {
                keep_alive: self.keep_alive,
                idle_timeout: self.idle_timeout,
            });
        }
        if self.header_timeout.is_zero() {
            return Err(SettingsError::GreetingTimeout);
        }
        for (what, value) in [
            ("max_flows_per_peer", self.max_flows_per_peer),
            ("flow_window", self.flow_window),
            ("connection_window", self.connection_window),
            ("udp_buffer", self.udp_buffer),
        ] {
            if value == 0 {
                return Err(SettingsError::Zero { what });
            }
        }
        Ok(())
    }

    /// The QUIC transport configuration: never without an idle timeout (a `None` would let a
    /// dead peer's futures hang forever), no unidirectional streams, bounded windows.
    pub(crate) fn quic(&self) -> Result<Arc<TransportConfig>, SettingsError> {
        self.check()?;
        let idle = IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| SettingsError::IdleTimeout(self.idle_timeout))?;
        let mut config = TransportConfig::default();
        config
            .keep_alive_interval(Some(self.keep_alive))
            .max_idle_timeout(Some(idle))
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_flows_per_peer))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .stream_receive_window(VarInt::from_u32(self.flow_window))
            .receive_window(VarInt::from_u32(self.connection_window))
            .send_window(u64::from(self.connection_window));
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_detect_a_dead_peer_in_three_seconds() {
        let settings = TransportSettings::default();
        assert_eq!(settings.check(), Ok(()));
        assert_eq!(settings.idle_timeout, Duration::from_secs(3));
        assert!(settings.quic().is_ok());
    }

    #[test]
    fn a_keep_alive_not_below_the_idle_timeout_is_refused() {
        let settings = TransportSettings {
            keep_alive: Duration::from_secs(3),
            ..TransportSettings::default()
        };
        assert!(matches!(
            settings.check(),
            Err(SettingsError::KeepAlive { .. })
        ));
        let settings = TransportSettings {
            idle_timeout: Duration::ZERO,
            ..TransportSettings::default()
        };
        assert!(matches!(
            settings.check(),
            Err(SettingsError::IdleTimeout(_))
        ));
    }
}
