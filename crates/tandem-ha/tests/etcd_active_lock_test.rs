//! `ha_storage = etcd` against a real three-member etcd cluster: one holder of the leader key,
//! standbys that name it, a token (the key's create revision) that grows with each new holder,
//! a dead holder replaced within about one TTL, a step-down handed over at once, and a dead
//! etcd member that changes nothing but the member the servers talk to.

use std::sync::Arc;
use std::time::Duration;

use tandem_ha::etcd::EtcdLockSettings;
use tandem_ha::{HaBackend, LeasedHa};
use tandem_testkit::{wait_until, EtcdCluster};

mod common;
use common::{node, the_active, WITHIN};

/// A short lease, above the shortest etcd grants (1 s with the test cluster's timings).
const TTL: Duration = Duration::from_secs(2);

fn start(etcd: &EtcdCluster, id: u64) -> Arc<LeasedHa> {
    start_with_ttl(etcd, id, TTL)
}

fn start_with_ttl(etcd: &EtcdCluster, id: u64, ttl: Duration) -> Arc<LeasedHa> {
    tandem_ha::etcd::start(
        node(id),
        EtcdLockSettings {
            endpoints: etcd.endpoints(),
            prefix: "/tandem-test/".into(),
            ttl,
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_holder_replaced_when_it_dies_or_steps_down() {
    let etcd = EtcdCluster::start(3).await;
    let nodes = [start(&etcd, 1), start(&etcd, 2), start(&etcd, 3)];
    let refs: Vec<&Arc<LeasedHa>> = nodes.iter().collect();
    let (index, first_token) = the_active(&refs).await;
    let holder = index as u64 + 1;
    for (i, n) in nodes.iter().enumerate().filter(|(i, _)| *i != index) {
        wait_until(WITHIN, "a standby to name the active node", async || {
            n.view().other_active().map(|a| a.id) == Some(holder)
        })
        .await;
        assert!(!n.view().is_self, "node {} also active", i + 1);
    }

    // A step-down hands the key over at once: the standbys watch the key.
    let asked = tokio::time::Instant::now();
    nodes[index]
        .step_down()
        .await
        .expect("a standby takes over");
    assert!(
        asked.elapsed() < TTL / 4,
        "the handover took {:?}",
        asked.elapsed()
    );
    let (next, second_token) = the_active(&refs).await;
    assert_ne!(next, index);
    assert!(second_token > first_token);

    // The holder dies without a word: a standby takes over once its lease runs out.
    let mut nodes: Vec<Option<Arc<LeasedHa>>> = nodes.into_iter().map(Some).collect();
    drop(nodes[next].take());
    let died = tokio::time::Instant::now();
    let living: Vec<&Arc<LeasedHa>> = nodes.iter().flatten().collect();
    let (_, third_token) = the_active(&living).await;
    assert!(third_token > second_token);
    assert!(
        died.elapsed() < TTL * 3,
        "took {:?} with a TTL of {TTL:?}",
        died.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_member_costs_a_retry_not_the_role() {
    let mut etcd = EtcdCluster::start(3).await;
    // The default lock TTL: an etcd election after a member dies fits within it.
    let ttl = Duration::from_secs(3);
    let (a, b) = (start_with_ttl(&etcd, 1, ttl), start_with_ttl(&etcd, 2, ttl));
    let (index, token) = the_active(&[&a, &b]).await;
    // Both servers talk to the first member first: kill it.
    etcd.kill(0);
    let watched = tokio::time::Instant::now();
    while watched.elapsed() < ttl * 2 {
        let holders: Vec<bool> = [&a, &b].iter().map(|n| n.view().is_self).collect();
        assert!(
            holders[index],
            "the holder lost the role when one member died"
        );
        assert!(!holders[1 - index], "two holders");
        assert_eq!([&a, &b][index].view().fencing_token, token);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    etcd.restart(0).await;
}
