//! Connections through the mesh under faults: clients keep opening SOCKS5 connections through
//! the ingress of a [`MeshTopology`] and fetch bytes of a seeded [`pattern`] from the target
//! while transits and exits are killed and restarted and links between agents are cut. Every
//! connection must either bring exactly the bytes the target sent or fail with an error (a
//! SOCKS5 refusal, a reset, an early end); none may stall longer than two of the mesh's
//! dead-peer times plus a margin, and none may deliver a wrong byte.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::faults::{FaultCounts, FaultKind, FaultSchedule};
use crate::history::{RunReport, Violation};
use crate::mesh::{
    bytes_path, paced_path, pattern, selected_paths, MeshTopology, DEAD_PEER, EXITS, INGRESS,
    SOCKS_PASSWORD, SOCKS_USER, TRANSITS,
};

/// What a connection may wait for any one step beyond the time the mesh takes to reset it, on a
/// busy two-core machine.
pub const STALL_MARGIN: Duration = Duration::from_secs(3);
/// The longest any one step of a connection may take before it counts as hung. A hop that dies
/// is found dead, and the streams through it reset, within the dead-peer time. But a path has two
/// hops that can die, the transit and the exit, and the schedule may kill the second before the
/// first one's death is found: an exit killed, then 2.9 s later the transit that was about to
/// find it dead. Then the reset comes from the ingress finding the transit dead, up to two
/// dead-peer times after the connection's last byte. A third death cannot add to that, because
/// the ingress is never killed.
pub const STALL_LIMIT: Duration = DEAD_PEER.saturating_mul(2).saturating_add(STALL_MARGIN);
/// Clients fetch at once (short connections, many of them) or paced (connections of 0.2 to
/// 2.5 s, which faults catch in the middle).
const LENS: std::ops::RangeInclusive<usize> = 1024..=256 * 1024;
const PACED_LENS: std::ops::RangeInclusive<usize> = 40 * 1024..=512 * 1024;

/// How one connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte came, right.
    Complete,
    /// It failed with an error at `stage`.
    Failed { stage: &'static str, error: String },
    /// `stage` made no progress for [`STALL_LIMIT`].
    Hung { stage: &'static str },
    /// A byte differs from what the target sent, or more came than it sent.
    WrongBytes { offset: usize, detail: String },
}

/// One connection: what it asked for, when (µs since the run began), and how it ended.
#[derive(Clone, Debug)]
pub struct MeshConnection {
    pub client: usize,
    pub len: usize,
    pub seed: u64,
    pub call: u64,
    pub ret: u64,
    /// The longest wait for any one step, and that step.
    pub longest_stall: Duration,
    pub longest_stall_at: &'static str,
    pub outcome: Outcome,
}

/// Where the clients connect.
#[derive(Clone)]
struct Endpoints {
    socks: String,
    target: SocketAddr,
}

/// Runs `clients` clients through `mesh` while `schedule`'s faults (of [`FaultKind::MESH`])
/// happen, stops them once the faults are healed and the mesh carries traffic again, and
/// answers every connection they made.
pub async fn run_under_faults(
    mesh: &mut MeshTopology,
    schedule: &FaultSchedule,
    clients: usize,
) -> RunReport<MeshConnection> {
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(Vec::new()));
    let endpoints = Endpoints {
        socks: mesh.socks_addr(),
        target: mesh.target.addr(),
    };
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let rng = StdRng::seed_from_u64(schedule.seed ^ ((client as u64 + 1) << 32));
            let (endpoints, stop, history) = (endpoints.clone(), stop.clone(), history.clone());
            tokio::spawn(client_loop(client, rng, endpoints, started, stop, history))
        })
        .collect();
    let faults = inject(mesh, schedule).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a client task does not panic");
    }
    let history = std::mem::take(&mut *history.lock().unwrap_or_else(|p| p.into_inner()));
    RunReport { history, faults }
}

async fn client_loop(
    client: usize,
    mut rng: StdRng,
    endpoints: Endpoints,
    started: Instant,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<MeshConnection>>>,
) {
    let micros = |at: Instant| at.duration_since(started).as_micros() as u64;
    while !stop.load(Ordering::Relaxed) {
        // Half the clients fetch paced.
        let paced = client.is_multiple_of(2);
        let len = rng.random_range(if paced { PACED_LENS } else { LENS });
        let seed = rng.random();
        let path = if paced {
            paced_path(len, seed)
        } else {
            bytes_path(len, seed)
        };
        let call = Instant::now();
        let mut fetch = Fetch::default();
        let outcome = match fetch.run(&endpoints, &path, len, seed).await {
            Ok(()) => Outcome::Complete,
            Err(outcome) => outcome,
        };
        let failed = outcome != Outcome::Complete;
        let connection = MeshConnection {
            client,
            len,
            seed,
            call: micros(call),
            ret: micros(Instant::now()),
            longest_stall: fetch.longest_stall,
            longest_stall_at: fetch.longest_stall_at,
            outcome,
        };
        history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(connection);
        if failed {
            // A failing mesh answers at once; do not spin on it.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One connection through SOCKS5, every step bounded by [`STALL_LIMIT`].
#[derive(Default)]
struct Fetch {
    longest_stall: Duration,
    longest_stall_at: &'static str,
}

impl Fetch {
    async fn step<T>(
        &mut self,
        stage: &'static str,
        step: impl std::future::Future<Output = std::io::Result<T>>,
    ) -> Result<T, Outcome> {
        let began = Instant::now();
        let result = tokio::time::timeout(STALL_LIMIT, step).await;
        if began.elapsed() > self.longest_stall {
            self.longest_stall = began.elapsed();
            self.longest_stall_at = stage;
        }
        match result {
            Err(_) => Err(Outcome::Hung { stage }),
            Ok(Err(e)) => Err(Outcome::Failed {
                stage,
                error: e.to_string(),
            }),
            Ok(Ok(value)) => Ok(value),
        }
    }

    async fn run(
        &mut self,
        endpoints: &Endpoints,
        path: &str,
        len: usize,
        seed: u64,
    ) -> Result<(), Outcome> {
        let failed = |stage, error: String| Outcome::Failed { stage, error };
        let mut stream = self
            .step(
                "connect to the ingress",
                TcpStream::connect(&endpoints.socks),
            )
            .await?;
        let mut reply = [0u8; 2];
        self.step("SOCKS5 greeting", stream.write_all(&[5, 1, 2]))
            .await?;
        self.step("SOCKS5 greeting", stream.read_exact(&mut reply))
            .await?;
        if reply != [5, 2] {
            return Err(failed("SOCKS5 greeting", format!("answered {reply:?}")));
        }
        let mut auth = vec![1, SOCKS_USER.len() as u8];
        auth.extend_from_slice(SOCKS_USER.as_bytes());
        auth.push(SOCKS_PASSWORD.len() as u8);
        auth.extend_from_slice(SOCKS_PASSWORD.as_bytes());
        self.step("SOCKS5 authentication", stream.write_all(&auth))
            .await?;
        self.step("SOCKS5 authentication", stream.read_exact(&mut reply))
            .await?;
        if reply != [1, 0] {
            return Err(failed(
                "SOCKS5 authentication",
                format!("answered {reply:?}"),
            ));
        }
        let SocketAddr::V4(target) = endpoints.target else {
            return Err(failed("SOCKS5 connect", "the target is not IPv4".into()));
        };
        let mut connect = vec![5, 1, 0, 1];
        connect.extend_from_slice(&target.ip().octets());
        connect.extend_from_slice(&target.port().to_be_bytes());
        self.step("SOCKS5 connect", stream.write_all(&connect))
            .await?;
        let mut head = [0u8; 4];
        self.step("SOCKS5 connect", stream.read_exact(&mut head))
            .await?;
        if head[1] != 0 {
            return Err(failed("SOCKS5 connect", format!("reply code {}", head[1])));
        }
        let bound_len = match head[3] {
            1 => 4 + 2,
            4 => 16 + 2,
            _ => {
                return Err(failed(
                    "SOCKS5 connect",
                    format!("address type {}", head[3]),
                ))
            }
        };
        let mut bound = vec![0u8; bound_len];
        self.step("SOCKS5 connect", stream.read_exact(&mut bound))
            .await?;

        let request = format!("GET {path} HTTP/1.1\r\nhost: {target}\r\nconnection: close\r\n\r\n");
        self.step("request", stream.write_all(request.as_bytes()))
            .await?;
        let mut received = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let body_at = loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let n = self.step("response head", stream.read(&mut buf)).await?;
            if n == 0 {
                return Err(failed("response head", "the connection ended".into()));
            }
            received.extend_from_slice(&buf[..n]);
        };
        if !received.starts_with(b"HTTP/1.1 200 ") {
            let head = String::from_utf8_lossy(&received[..body_at]).into_owned();
            return Err(Outcome::WrongBytes {
                offset: 0,
                detail: format!("not the target's answer: {head:?}"),
            });
        }
        let expected = pattern(seed, len);
        let mut body = received.split_off(body_at);
        loop {
            if body.len() > len {
                return Err(Outcome::WrongBytes {
                    offset: len,
                    detail: format!("{} bytes came, {len} were sent", body.len()),
                });
            }
            if let Some(offset) = body.iter().zip(&expected).position(|(a, b)| a != b) {
                return Err(Outcome::WrongBytes {
                    offset,
                    detail: format!("byte {offset} of {len} differs"),
                });
            }
            let n = self.step("body", stream.read(&mut buf)).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        if body.len() < len {
            return Err(failed(
                "body",
                format!("the connection ended after {} of {len} bytes", body.len()),
            ));
        }
        Ok(())
    }
}

/// Injects every fault of `schedule` in turn and heals it (a killed agent is started again);
/// after each, waits until the mesh carries traffic again before the calm. Answers how many
/// faults of each kind were injected.
async fn inject(mesh: &mut MeshTopology, schedule: &FaultSchedule) -> FaultCounts {
    let started = Instant::now();
    let mut counts = FaultCounts::new();
    for (n, fault) in schedule.faults.iter().enumerate() {
        // Three faults in four hit the exit and transit in use, the others the spare ones.
        let in_use = selected_paths(&mesh.ingress_healthz().await).pop();
        let hit_in_use = fault.pick % 4 != 0;
        let exit = one_of(EXITS, in_use.as_ref().map(|p| p.0.as_str()), hit_in_use);
        let transit = one_of(TRANSITS, in_use.as_ref().map(|p| p.1.as_str()), hit_in_use);
        let ns = |name: &str| mesh.namespace_of(name);
        let at = started.elapsed();
        let (detail, killed) = match fault.kind {
            FaultKind::KillTransit => {
                mesh.kill(transit);
                (transit.to_string(), Some(transit))
            }
            FaultKind::KillExit => {
                mesh.kill(exit);
                (exit.to_string(), Some(exit))
            }
            FaultKind::CutIngressFromTransit => {
                mesh.network()
                    .partition(&[vec![ns(INGRESS)], vec![ns(transit)]]);
                (format!("{INGRESS} | {transit}"), None)
            }
            FaultKind::CutTransitFromExit => {
                mesh.network()
                    .partition(&[vec![ns(transit)], vec![ns(exit)]]);
                (format!("{transit} | {exit}"), None)
            }
            FaultKind::OneWayIngressToTransit => {
                mesh.network().block(ns(INGRESS), ns(transit));
                (format!("{INGRESS} -> {transit} dropped"), None)
            }
            cluster => panic!("{cluster} is a fault of a cluster, not of a mesh"),
        };
        crate::faults::hold(n, at, fault, &detail, &mut counts).await;
        match killed {
            Some(agent) => mesh.restart(agent),
            None => mesh.network().heal(),
        }
        mesh.wait_for_traffic("the mesh to carry traffic again")
            .await;
        tokio::time::sleep(fault.calm).await;
    }
    counts
}

/// Of two agents, the one in use when `hit_in_use`, else the other.
fn one_of(pair: [&'static str; 2], in_use: Option<&str>, hit_in_use: bool) -> &'static str {
    let used = pair.iter().position(|n| Some(*n) == in_use).unwrap_or(0);
    pair[if hit_in_use { used } else { 1 - used }]
}

/// Every connection completed with the right bytes or failed with an error; none hung, none
/// delivered a wrong byte.
pub fn check(history: &[MeshConnection]) -> Result<(), Violation<MeshConnection>> {
    let bad = history
        .iter()
        .find(|c| matches!(c.outcome, Outcome::Hung { .. } | Outcome::WrongBytes { .. }));
    match bad {
        None => Ok(()),
        Some(connection) => Err(Violation {
            message: match &connection.outcome {
                Outcome::Hung { stage } => format!(
                    "a connection made no progress at {stage} for {STALL_LIMIT:?} (twice the dead-peer time of {DEAD_PEER:?}, and a margin)"
                ),
                other => format!("a connection delivered wrong bytes: {other:?}"),
            },
            smallest: vec![connection.clone()],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(outcome: Outcome) -> MeshConnection {
        MeshConnection {
            client: 0,
            len: 10,
            seed: 1,
            call: 0,
            ret: 1,
            longest_stall: Duration::ZERO,
            longest_stall_at: "",
            outcome,
        }
    }

    #[test]
    fn completed_and_failed_connections_pass_hung_and_wrong_ones_do_not() {
        let good = vec![
            connection(Outcome::Complete),
            connection(Outcome::Failed {
                stage: "body",
                error: "reset".into(),
            }),
        ];
        assert!(check(&good).is_ok());
        for bad in [
            Outcome::Hung { stage: "body" },
            Outcome::WrongBytes {
                offset: 3,
                detail: "byte 3 of 10 differs".into(),
            },
        ] {
            let mut history = good.clone();
            history.push(connection(bad));
            assert!(check(&history).is_err());
        }
    }
}
