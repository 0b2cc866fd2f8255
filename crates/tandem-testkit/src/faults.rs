//! Seeded fault schedules for a cluster started with [`Cluster::start_in_namespaces`]: which
//! fault comes when and for how long is drawn from a seed that is printed before the run, so a
//! failing run can be replayed with `TANDEM_FAULT_SEED=<seed>`. Which node a fault hits (the
//! active node, a standby) is decided when it happens and printed then.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::wait::{wait_until, DEADLINE};

/// How long a fault test runs when `TANDEM_FAULT_DURATION` is not set: every fault kind once,
/// then more drawn at random until this much time has passed.
pub const SHORT_PROFILE: Duration = Duration::from_secs(25);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// kill -9 of the active node, restarted after the hold.
    KillLeader,
    /// kill -9 of a standby, restarted after the hold.
    KillStandby,
    /// SIGSTOP of the active node; SIGCONT after the hold, when another node has taken over.
    PauseLeader,
    /// A random minority of the nodes (the active node or not) against the rest.
    PartitionMajorityMinority,
    /// The active node cut off from every other node.
    IsolateLeader,
    /// The active node's packets to every other node are dropped; theirs still reach it.
    OneWayFromLeader,
    /// Every other node's packets to the active node are dropped; its heartbeats still reach
    /// them, but no answer comes back.
    OneWayToLeader,
    /// A share of the packets between any two nodes is dropped (TCP then retransmits: traffic
    /// is delayed by hundreds of milliseconds, and some connections fail).
    LossyLinks,
    /// Traffic between nodes squeezed through a link of a few hundred kbit/s: it queues, and
    /// arrives late.
    SlowLinks,
    /// A server taken out of the cluster (the active node or a standby), stopped and wiped, then
    /// added back empty after the hold, as an operator replaces a server: `DELETE` and `PUT`
    /// on `/v1/cluster/members/{id}`, with the cluster serving throughout.
    MembershipChange,
    /// Mesh: kill -9 of a transit, restarted after the hold.
    KillTransit,
    /// Mesh: kill -9 of an exit, restarted after the hold.
    KillExit,
    /// Mesh: the ingress and a transit cut off from each other.
    CutIngressFromTransit,
    /// Mesh: a transit and an exit cut off from each other.
    CutTransitFromExit,
    /// Mesh: the ingress's packets to a transit are dropped; the transit's still arrive.
    OneWayIngressToTransit,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::KillLeader,
        FaultKind::KillStandby,
        FaultKind::PauseLeader,
        FaultKind::PartitionMajorityMinority,
        FaultKind::IsolateLeader,
        FaultKind::OneWayFromLeader,
        FaultKind::OneWayToLeader,
        FaultKind::LossyLinks,
        FaultKind::SlowLinks,
    ];

    /// The faults of a cluster with membership changes among them: [`FaultKind::ALL`] and
    /// [`FaultKind::MembershipChange`].
    pub const WITH_MEMBERSHIP: [FaultKind; 10] = {
        let mut kinds = [FaultKind::MembershipChange; 10];
        let mut i = 0;
        while i < FaultKind::ALL.len() {
            kinds[i] = FaultKind::ALL[i];
            i += 1;
        }
        kinds
    };

    /// The faults of a mesh of agents (see [`crate::workloads::mesh`]).
    pub const MESH: [FaultKind; 5] = [
        FaultKind::KillTransit,
        FaultKind::KillExit,
        FaultKind::CutIngressFromTransit,
        FaultKind::CutTransitFromExit,
        FaultKind::OneWayIngressToTransit,
    ];
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::KillLeader => "kill -9 active node",
            FaultKind::KillStandby => "kill -9 standby",
            FaultKind::PauseLeader => "SIGSTOP active node",
            FaultKind::PartitionMajorityMinority => "partition majority/minority",
            FaultKind::IsolateLeader => "isolate active node",
            FaultKind::OneWayFromLeader => "one-way partition from active node",
            FaultKind::OneWayToLeader => "one-way partition to active node",
            FaultKind::LossyLinks => "packet loss between nodes",
            FaultKind::SlowLinks => "slow links between nodes",
            FaultKind::MembershipChange => "server removed, wiped and added back",
            FaultKind::KillTransit => "kill -9 transit",
            FaultKind::KillExit => "kill -9 exit",
            FaultKind::CutIngressFromTransit => "cut ingress from transit",
            FaultKind::CutTransitFromExit => "cut transit from exit",
            FaultKind::OneWayIngressToTransit => "one-way ingress to transit",
        })
    }
}

/// One fault: what, how long it lasts, and how long the cluster runs fault-free afterwards.
#[derive(Clone, Debug)]
pub struct ScheduledFault {
    pub kind: FaultKind,
    pub hold: Duration,
    pub calm: Duration,
    /// For [`FaultKind::LossyLinks`] the share of packets dropped in %, for
    /// [`FaultKind::SlowLinks`] the links' rate in kbit/s; otherwise 0.
    pub intensity: u32,
    /// Picks the standby, the minority's members, or the agents hit when the fault happens.
    pub pick: u64,
}

/// Faults in order, drawn from `seed`: every kind of a set once (in a seeded order), then
/// kinds of the set at random until the holds and calms add up to `duration`.
#[derive(Clone, Debug)]
pub struct FaultSchedule {
    pub seed: u64,
    pub duration: Duration,
    pub faults: Vec<ScheduledFault>,
}

/// How many faults of each kind were injected.
pub type FaultCounts = BTreeMap<FaultKind, usize>;

fn parse_duration(text: &str) -> Duration {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("TANDEM_FAULT_DURATION={text:?}: expected e.g. 90s, 30m or 2h"));
    match unit {
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => panic!("TANDEM_FAULT_DURATION={text:?}: the unit must be s, m or h"),
    }
}

impl FaultSchedule {
    /// A schedule of the faults of a cluster ([`FaultKind::ALL`]).
    pub fn new(seed: u64, duration: Duration) -> FaultSchedule {
        FaultSchedule::of_kinds(&FaultKind::ALL, seed, duration)
    }

    /// A schedule of the faults `set`.
    pub fn of_kinds(set: &[FaultKind], seed: u64, duration: Duration) -> FaultSchedule {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut kinds = set.to_vec();
        kinds.shuffle(&mut rng);
        let mut faults = Vec::new();
        let mut planned = Duration::ZERO;
        let mut next = kinds.into_iter();
        while faults.len() < set.len() || planned < duration {
            let kind = next
                .next()
                .unwrap_or_else(|| set[rng.random_range(0..set.len())]);
            let fault = ScheduledFault {
                kind,
                hold: Duration::from_millis(rng.random_range(800..2500)),
                calm: Duration::from_millis(rng.random_range(300..1500)),
                intensity: match kind {
                    FaultKind::LossyLinks => rng.random_range(10..40),
                    FaultKind::SlowLinks => rng.random_range(64..512),
                    _ => 0,
                },
                pick: rng.random(),
            };
            planned += fault.hold + fault.calm;
            faults.push(fault);
        }
        FaultSchedule {
            seed,
            duration,
            faults,
        }
    }

    /// The schedule of a cluster's faults for this run: `TANDEM_FAULT_SEED` (or a fresh seed)
    /// and `TANDEM_FAULT_DURATION` (or [`SHORT_PROFILE`]). Printed, so a failure can be
    /// replayed.
    pub fn from_env() -> FaultSchedule {
        FaultSchedule::from_env_of(&FaultKind::ALL)
    }

    /// Like [`FaultSchedule::from_env`], of the faults `set`.
    pub fn from_env_of(set: &[FaultKind]) -> FaultSchedule {
        let seed = match std::env::var("TANDEM_FAULT_SEED") {
            Ok(text) => text
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("TANDEM_FAULT_SEED={text:?} is not a number")),
            Err(_) => rand::random(),
        };
        let duration = std::env::var("TANDEM_FAULT_DURATION")
            .map(|text| parse_duration(&text))
            .unwrap_or(SHORT_PROFILE);
        let schedule = FaultSchedule::of_kinds(set, seed, duration);
        eprintln!("{schedule}");
        schedule
    }
}

impl fmt::Display for FaultSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "fault schedule: seed {} (replay with TANDEM_FAULT_SEED={} TANDEM_FAULT_DURATION={}s), {} faults:",
            self.seed,
            self.seed,
            self.duration.as_secs(),
            self.faults.len()
        )?;
        for (n, fault) in self.faults.iter().enumerate() {
            let loss = match fault.kind {
                FaultKind::LossyLinks => format!(" ({} %)", fault.intensity),
                FaultKind::SlowLinks => format!(" ({} kbit/s)", fault.intensity),
                _ => String::new(),
            };
            writeln!(
                f,
                "  {n:>3}. {}{loss} for {:?}, then {:?} calm",
                fault.kind, fault.hold, fault.calm
            )?;
        }
        Ok(())
    }
}

/// Fault `n`, injected `at` into the run on what `detail` says: printed, counted, and held.
pub(crate) async fn hold(
    n: usize,
    at: Duration,
    fault: &ScheduledFault,
    detail: &str,
    counts: &mut FaultCounts,
) {
    eprintln!(
        "fault {n} at {:.1}s: {} ({detail}) for {:?}",
        at.as_secs_f64(),
        fault.kind,
        fault.hold
    );
    *counts.entry(fault.kind).or_default() += 1;
    tokio::time::sleep(fault.hold).await;
}

impl Cluster {
    /// Injects every fault of `schedule` in turn and heals it; after each one, waits (with a
    /// deadline) until a leader serves again, and calls `progress` so the caller can check that
    /// its clients still get answers. Answers how many faults of each kind were injected.
    pub async fn run_fault_schedule(
        &mut self,
        schedule: &FaultSchedule,
        mut progress: impl AsyncFnMut(),
    ) -> FaultCounts {
        let started = Instant::now();
        let mut counts = FaultCounts::new();
        for (n, fault) in schedule.faults.iter().enumerate() {
            let leader = self.leader().await;
            let others: Vec<usize> = (0..self.len()).filter(|&i| i != leader).collect();
            let standby = others[(fault.pick % others.len() as u64) as usize];
            let at = started.elapsed();
            let detail = match fault.kind {
                FaultKind::KillLeader => {
                    self.kill(leader);
                    format!("node {leader}")
                }
                FaultKind::KillStandby => {
                    self.kill(standby);
                    format!("node {standby}")
                }
                FaultKind::PauseLeader => {
                    self.pause(leader);
                    format!("node {leader}")
                }
                FaultKind::PartitionMajorityMinority => {
                    let mut shuffled: Vec<usize> = (0..self.len()).collect();
                    shuffled.shuffle(&mut StdRng::seed_from_u64(fault.pick));
                    let minority = shuffled[..(self.len() - 1) / 2].to_vec();
                    let majority: Vec<usize> =
                        (0..self.len()).filter(|i| !minority.contains(i)).collect();
                    self.network()
                        .partition(&[minority.clone(), majority.clone()]);
                    format!("{minority:?} | {majority:?}")
                }
                FaultKind::IsolateLeader => {
                    self.network().partition(&[vec![leader], others.clone()]);
                    format!("node {leader} alone")
                }
                FaultKind::OneWayFromLeader => {
                    for &to in &others {
                        self.network().block(leader, to);
                    }
                    format!("node {leader} -> {others:?} dropped")
                }
                FaultKind::OneWayToLeader => {
                    for &from in &others {
                        self.network().block(from, leader);
                    }
                    format!("{others:?} -> node {leader} dropped")
                }
                FaultKind::LossyLinks => {
                    self.network().lose_packets(fault.intensity);
                    format!("{} % of node-to-node packets dropped", fault.intensity)
                }
                FaultKind::SlowLinks => {
                    self.network().slow_links(fault.intensity);
                    format!("node-to-node traffic at {} kbit/s", fault.intensity)
                }
                FaultKind::MembershipChange => {
                    // Even picks take the active node out, odd ones a standby.
                    let (removed, role) = if fault.pick % 2 == 0 {
                        (leader, "active")
                    } else {
                        (standby, "standby")
                    };
                    self.remove_member(removed).await;
                    self.kill(removed);
                    self.wipe(removed);
                    format!("node {removed} ({role}) removed and wiped")
                }
                mesh => panic!("{mesh} is a fault of a mesh, not of a cluster"),
            };
            hold(n, at, fault, &detail, &mut counts).await;
            match fault.kind {
                FaultKind::KillLeader => self.start_node(leader).await,
                FaultKind::KillStandby => self.start_node(standby).await,
                FaultKind::MembershipChange => {
                    let removed = if fault.pick % 2 == 0 { leader } else { standby };
                    self.start_node(removed).await;
                    self.add_member(removed).await;
                }
                FaultKind::PauseLeader => self.resume(leader),
                _ => self.network().heal(),
            }
            self.leader().await;
            progress().await;
            tokio::time::sleep(fault.calm).await;
        }
        // Every node answers again before the final checks.
        wait_until(DEADLINE, "every node serves after the faults", async || {
            self.current_leader().await.is_some() && self.live_nodes().len() == self.len()
        })
        .await;
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_schedule_and_every_kind_appears() {
        let a = FaultSchedule::new(42, Duration::from_secs(20));
        let b = FaultSchedule::new(42, Duration::from_secs(20));
        assert_eq!(a.to_string(), b.to_string());
        for kind in FaultKind::ALL {
            assert!(a.faults.iter().any(|f| f.kind == kind), "{kind} missing");
        }
        let planned: Duration = a.faults.iter().map(|f| f.hold + f.calm).sum();
        assert!(planned >= Duration::from_secs(20));
        assert_ne!(
            a.to_string(),
            FaultSchedule::new(43, a.duration).to_string()
        );
    }

    #[test]
    fn a_schedule_of_mesh_faults_takes_only_those_and_each_of_them() {
        let mesh = FaultSchedule::of_kinds(&FaultKind::MESH, 42, Duration::from_secs(20));
        for kind in FaultKind::MESH {
            assert!(mesh.faults.iter().any(|f| f.kind == kind), "{kind} missing");
        }
        let membership =
            FaultSchedule::of_kinds(&FaultKind::WITH_MEMBERSHIP, 42, Duration::from_secs(20));
        assert!(membership
            .faults
            .iter()
            .any(|f| f.kind == FaultKind::MembershipChange));
        assert!(mesh
            .faults
            .iter()
            .all(|f| FaultKind::MESH.contains(&f.kind)));
    }

    #[test]
    fn durations_read_as_the_long_profile_spells_them() {
        assert_eq!(parse_duration("30m"), Duration::from_secs(1800));
        assert_eq!(parse_duration("90s"), Duration::from_secs(90));
        assert_eq!(parse_duration("45"), Duration::from_secs(45));
        assert_eq!(parse_duration("2h"), Duration::from_secs(7200));
    }
}
