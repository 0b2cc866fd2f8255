//! Every server keeps an events feed (`GET /v1/events`): a standby saw the cluster elect its
//! first active node, and a reader waiting with `since` and `wait` hears at once that the active
//! node moved after it was killed; the active server reports an agent whose mesh route changed.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tandem_testkit::{free_ports, join_token, loopback_mesh_args, AgentProcess, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

fn events_of(reply: &Value) -> Vec<Value> {
    reply["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_standby_reports_the_active_node_and_wakes_a_waiting_reader_when_it_moves() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let leader_id = cluster.node_id(leader);
    let standby = (0..3).find(|&i| i != leader).expect("a standby");

    // The first election, as the standby saw it: the active node it names is the leader.
    let mut seen = Value::Null;
    tandem_testkit::wait_for(
        DEADLINE,
        "the standby's feed to name the active node",
        async || {
            seen = cluster.get(standby, "/v1/events").await.json();
            events_of(&seen)
                .iter()
                .any(|e| e["kind"] == "active_changed" && e["detail"]["active"] == leader_id)
                .then_some(())
        },
    )
    .await;
    let events = events_of(&seen);
    assert!(
        events
            .iter()
            .all(|e| e["node_id"] == cluster.node_id(standby)),
        "{seen}"
    );
    assert!(events
        .windows(2)
        .all(|w| w[0]["id"].as_u64() < w[1]["id"].as_u64()));
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "leader_elected" && e["detail"]["leader"] == leader_id),
        "{seen}"
    );
    let last = seen["last_id"].as_u64().expect("last_id");

    // Nothing after the last id: a read without wait answers at once with none.
    let quiet = cluster
        .get(standby, &format!("/v1/events?since={last}"))
        .await;
    assert_eq!(
        quiet.header("x-tandem-index"),
        Some(last.to_string().as_str())
    );
    assert!(events_of(&quiet.json()).is_empty());

    // A reader waiting for what comes next hears the kill's consequence.
    let path = format!("/v1/events?since={last}&wait=20s");
    let waiting = {
        let url = format!("{}{path}", cluster.api_url(standby));
        let http = cluster.http().clone();
        tokio::spawn(async move {
            let reply = http
                .get(url)
                .bearer_auth(tandem_testkit::API_SECRET)
                .send()
                .await
                .expect("an answer");
            reply.json::<Value>().await.expect("json")
        })
    };
    cluster.kill(leader);
    let woken = tokio::time::timeout(Duration::from_secs(25), waiting)
        .await
        .expect("the waiting reader is answered")
        .expect("the reader");
    assert!(
        !events_of(&woken).is_empty(),
        "woken with an event: {woken}"
    );

    let mut since = last;
    let mut moved = Value::Null;
    tandem_testkit::wait_for(DEADLINE, "the feed to name a new active node", async || {
        let reply = cluster
            .get(standby, &format!("/v1/events?since={since}&wait=5s"))
            .await
            .json();
        since = reply["last_id"].as_u64().unwrap_or(since);
        moved = events_of(&reply).into_iter().find(|e| {
            e["kind"] == "active_changed"
                && e["detail"]["active"]
                    .as_u64()
                    .is_some_and(|id| id != leader_id)
        })?;
        Some(())
    })
    .await;
    let new_active = moved["detail"]["active"].as_u64().expect("an id");
    assert_eq!(
        moved["detail"]["api_addr"].as_str(),
        Some(cluster.api_addr(cluster.index_of(new_active))),
        "{moved}"
    );
}

#[tokio::test]
async fn bad_queries_are_refused_and_the_feed_needs_the_secret() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;
    for bad in ["since=yesterday", "wait=forever", "colour=blue"] {
        let reply = cluster.get(0, &format!("/v1/events?{bad}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {reply:?}");
    }
    let anonymous = cluster
        .http()
        .get(format!("{}/v1/events", cluster.api_url(0)))
        .send()
        .await
        .expect("an answer");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_agent_losing_its_route_is_an_event_on_the_active_server() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    let token = join_token(&cluster, "edge", serde_json::json!({})).await;
    let ports = free_ports(2).expect("free ports");
    let mut exit_args = loopback_mesh_args(ports[0], &[]);
    exit_args.extend(["--exit-route".into(), "10.77.0.0/16".into()]);
    let peer_args = loopback_mesh_args(ports[1], &[ports[0]]);
    let start = |name: &str, args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        AgentProcess::start(tandem(), &cluster, name, "edge", Some(&token), &args)
    };
    let mut exit = start("exit-e", &exit_args);
    let _peer = start("peer-e", &peer_args);
    // The servers have heard the peer's route to the exit.
    tandem_testkit::wait_for(DEADLINE, "the peer's route in GET /v1/mesh", async || {
        let mesh = cluster.get(0, "/v1/mesh").await.json();
        mesh["agents"]
            .as_array()?
            .iter()
            .any(|a| a["name"] == "peer-e" && a["routes"].as_array().is_some_and(|r| !r.is_empty()))
            .then_some(())
    })
    .await;

    exit.kill();
    let switch = tandem_testkit::wait_for(DEADLINE, "a route_changed event", async || {
        let feed = cluster.get(0, "/v1/events").await.json();
        events_of(&feed).into_iter().find(|e| {
            e["kind"] == "route_changed"
                && e["detail"]["agent"] == "peer-e"
                && e["detail"]["to"].is_null()
        })
    })
    .await;
    assert_eq!(switch["detail"]["dest"], "10.77.0.0/16", "{switch}");
    assert_eq!(switch["detail"]["from"], "exit-e via exit-e", "{switch}");
}
