//! `/metrics` holds every metric docs/metrics.md lists, in the Prometheus text format as an
//! independent parser reads it, each moving when its event happens; the Grafana dashboard uses
//! no other name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use reqwest::Method;
use serde_json::{json, Value};
use tandem_testkit::{
    free_ports, join_token, loopback_mesh_args, wait_for, wait_for_agent_states, AgentProcess,
    Cluster, HttpTarget, DEADLINE,
};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

fn repo_file(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The metric names in the reference table of docs/metrics.md.
fn documented() -> BTreeSet<String> {
    repo_file("docs/metrics.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `tandem_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("tandem_{name}"))
        .collect()
}

/// Each metric's total on one server: counters and gauges summed over their labels,
/// histograms by their observation count.
type Totals = BTreeMap<String, f64>;

async fn scrape(cluster: &Cluster, i: usize) -> Totals {
    let text = cluster.get(i, "/metrics").await.text();
    let lines = text.lines().map(|line| Ok(line.to_string()));
    let parsed =
        prometheus_parse::Scrape::parse(lines).expect("/metrics parses as Prometheus text");
    let mut totals = Totals::new();
    for sample in parsed.samples {
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => 0.0,
        };
        *totals.entry(sample.metric).or_default() += value;
    }
    totals
}

fn moved(before: &Totals, after: &Totals, name: &str) -> bool {
    after.get(name).copied().unwrap_or(0.0) > before.get(name).copied().unwrap_or(0.0)
}

/// The events of `kind` a server counted.
async fn events_of(cluster: &Cluster, i: usize, kind: &str) -> f64 {
    let text = cluster.get(i, "/metrics").await.text();
    let prefix = format!("tandem_events_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn every_documented_metric_is_served_and_moves_with_its_event() {
    // One key peer that answers and one that does not: both of its metrics appear.
    let jwks = HttpTarget::start("127.0.0.1:0", r#"{"keys":[]}"#).await;
    let closed = free_ports(1).expect("a free port")[0];
    let peers = format!("{}jwks,http://127.0.0.1:{closed}/jwks", jwks.url());
    let mut cluster = Cluster::start(
        tandem(),
        3,
        &["--key-peers", &peers, "--key-peers-refresh", "1s"],
    )
    .await;
    let leader = cluster.leader().await;
    let standby = (0..3).find(|&i| i != leader).expect("a standby");
    let before = (
        scrape(&cluster, leader).await,
        scrape(&cluster, standby).await,
    );

    // Writes: one forwarded by a standby, one redirected, one refused by the state machine.
    assert!(cluster
        .put(standby, "/v1/kv/m", "1")
        .await
        .status
        .is_success());
    let redirected = cluster
        .http()
        .put(format!("{}/v1/kv/m", cluster.api_url(standby)))
        .bearer_auth(tandem_testkit::API_SECRET)
        .header("x-tandem-no-request-forwarding", "1")
        .body("2")
        .send()
        .await
        .expect("an answer");
    assert_eq!(redirected.status(), reqwest::StatusCode::TEMPORARY_REDIRECT);
    let refused = cluster.put(leader, "/v1/kv/m?if_revision=999", "3").await;
    assert_eq!(refused.status, reqwest::StatusCode::CONFLICT, "{refused:?}");
    // Tokens and keys.
    // The leader signs once its first key is published.
    let token = wait_for(DEADLINE, "a token", async || {
        let issued = cluster
            .post_json(leader, "/v1/tokens", &json!({"claims": {"sub": "m"}}))
            .await
            .json();
        issued["token"].as_str().map(str::to_string)
    })
    .await;
    for token in [token.as_str(), "not.a.token"] {
        let _ = cluster
            .post_json(leader, "/v1/tokens/verify", &json!({ "token": token }))
            .await;
    }
    assert!(cluster
        .post_json(leader, "/v1/keys/rotate", &json!({}))
        .await
        .status
        .is_success());
    assert!(cluster
        .send(leader, Method::POST, "/v1/cluster/snapshot", None)
        .await
        .status
        .is_success());
    // An exit and an agent peering with it: reports, state changes, a pick, and the mesh
    // gauges (the second agent's route to the exit is a route change).
    let token = join_token(&cluster, "metrics", json!({})).await;
    let ports = free_ports(2).expect("free ports");
    let mut exit_args = loopback_mesh_args(ports[0], &[]);
    exit_args.extend(["--exit-route".into(), "10.99.0.0/16".into()]);
    let peer_args = loopback_mesh_args(ports[1], &[ports[0]]);
    let mut agents = Vec::new();
    for (name, args) in [("exit-m", exit_args), ("peer-m", peer_args)] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        agents.push(AgentProcess::start(
            tandem(),
            &cluster,
            name,
            "metrics",
            Some(&token),
            &args,
        ));
    }
    wait_for(DEADLINE, "the agent to be picked", async || {
        let reply = cluster.get(leader, "/v1/pools/metrics/pick").await;
        reply.status.is_success().then_some(())
    })
    .await;
    let mut after = (Totals::new(), Totals::new());
    wait_for(
        DEADLINE,
        "the agent's mesh and the key peers to show",
        async || {
            after = (
                scrape(&cluster, leader).await,
                scrape(&cluster, standby).await,
            );
            let has = |name: &str| after.0.contains_key(name);
            (after.0.get("tandem_mesh_route_changes") >= Some(&1.0)
                && after.0.get("tandem_mesh_bytes_total") > Some(&0.0)
                && has("tandem_key_peer_last_success_timestamp_seconds")
                && has("tandem_key_peer_fetch_failures_total"))
            .then_some(())
        },
    )
    .await;

    let served: BTreeSet<&String> = after.0.keys().chain(after.1.keys()).collect();
    let documented = documented();
    assert!(
        documented.len() > 20,
        "the reference lists the metrics: {documented:?}"
    );
    for name in &documented {
        assert!(served.contains(name), "{name} is documented but not served");
    }
    for name in [
        "tandem_raft_proposals_total",
        "tandem_raft_log_write_seconds",
        "tandem_raft_log_entries_written_total",
        "tandem_raft_apply_seconds",
        "tandem_raft_applied_entries_total",
        "tandem_raft_snapshots_total",
        "tandem_raft_snapshot_index",
        "tandem_raft_commit_index",
        "tandem_raft_applied_index",
        "tandem_raft_last_log_index",
        "tandem_api_requests_total",
        "tandem_api_request_seconds",
        "tandem_events_total",
        "tandem_signing_key_rotations_total",
        "tandem_tokens_issued_total",
        "tandem_tokens_verified_total",
        "tandem_key_peer_fetch_failures_total",
        "tandem_agents",
        "tandem_agent_reports_total",
        "tandem_agent_state_changes_total",
        "tandem_agent_picks_total",
        "tandem_mesh_route_changes",
        "tandem_mesh_bytes_total",
    ] {
        assert!(
            moved(&before.0, &after.0, name),
            "{name} did not move on the leader: {:?} -> {:?}",
            before.0.get(name),
            after.0.get(name)
        );
    }
    assert!(
        moved(&before.1, &after.1, "tandem_api_routed_total"),
        "the standby counts what it forwarded and redirected"
    );
    assert_eq!(after.0.get("tandem_ha_is_active"), Some(&1.0));
    assert_eq!(after.1.get("tandem_ha_is_active"), Some(&0.0));
    assert_eq!(after.0.get("tandem_raft_is_leader"), Some(&1.0));
    let leader_id = cluster.node_id(leader) as f64;
    assert_eq!(after.1.get("tandem_ha_active_node"), Some(&leader_id));

    // Per-agent series are the active server's alone, and only for agents that are not down:
    // a killed agent's disappear once it is marked down, a live one's stay.
    let agent_series = |text: &str, agent: &str| {
        let label = format!("{{agent=\"{agent}\"");
        text.lines()
            .filter(|line| line.starts_with("tandem_mesh_") && line.contains(&label))
            .count()
    };
    let standby_text = cluster.get(standby, "/metrics").await.text();
    assert_eq!(
        agent_series(&standby_text, "exit-m") + agent_series(&standby_text, "peer-m"),
        0,
        "a standby holds no heartbeats, so serves no per-agent series:\n{standby_text}"
    );
    let leader_text = cluster.get(leader, "/metrics").await.text();
    assert_eq!(agent_series(&leader_text, "peer-m"), 4, "{leader_text}");
    agents[1].kill();
    let leader_text = wait_for(
        DEADLINE,
        "the killed agent's series to leave /metrics",
        async || {
            let text = cluster.get(leader, "/metrics").await.text();
            (agent_series(&text, "peer-m") == 0).then_some(text)
        },
    )
    .await;
    assert_eq!(agent_series(&leader_text, "exit-m"), 4, "{leader_text}");
    wait_for_agent_states(&cluster, &["peer-m"], "down").await;

    // A new leader: the standby counts the election and a new term.
    let elections = events_of(&cluster, standby, "leader_elected").await;
    let term = after.1.get("tandem_raft_term").copied().unwrap_or(0.0);
    cluster.kill(leader);
    wait_for(DEADLINE, "the standby to count an election", async || {
        (events_of(&cluster, standby, "leader_elected").await > elections).then_some(())
    })
    .await;
    let later = scrape(&cluster, standby).await;
    assert!(later.get("tandem_raft_term").copied().unwrap_or(0.0) > term);
    assert!(later.get("tandem_ha_fencing_token").copied().unwrap_or(0.0) > 0.0);
}

#[test]
fn the_grafana_dashboard_uses_only_documented_metrics() {
    let dashboard: Value = serde_json::from_str(&repo_file("deploy/grafana/tandem.json"))
        .expect("the dashboard is JSON");
    let documented = documented();
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            for (at, _) in expr.match_indices("tandem_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(&name)
                    .to_string();
                used.insert(base);
            }
        }
    }
    for name in &used {
        assert!(
            documented.contains(name),
            "the dashboard uses {name}, which docs/metrics.md does not list"
        );
    }
    assert!(
        used.len() >= 20,
        "the dashboard shows most metrics: {used:?}"
    );
}
