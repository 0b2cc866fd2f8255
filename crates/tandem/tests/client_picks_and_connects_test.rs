//! The client library's pick loop: it hands a picked agent to the caller's connect function, and
//! when that fails picks again without the agents that failed, never trying one twice. A pool
//! with no healthy agent is an immediate answer, not a retried outage.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tandem_client::{PickError, PickOptions};
use tandem_testkit::{join_token, wait_for_agent_states, AgentProcess, Cluster};
use tokio::time::Instant;

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_agents_are_excluded_until_one_connects() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let token = join_token(&cluster, "db", json!({})).await;
    let names = ["p-1", "p-2", "p-3"];
    let _agents: Vec<AgentProcess> = names
        .iter()
        .map(|name| AgentProcess::start(tandem(), &cluster, name, "db", Some(&token), &[]))
        .collect();
    wait_for_agent_states(&cluster, &names, "passing").await;
    let client = cluster.client();

    for _ in 0..10 {
        let tried = Arc::new(Mutex::new(Vec::new()));
        let seen = tried.clone();
        let connected = client
            .connect_via_pool("db", &PickOptions::default(), move |agent| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(agent.name.clone());
                    if agent.name == "p-3" {
                        Ok(agent.address)
                    } else {
                        Err(format!("{} refused the connection", agent.name))
                    }
                }
            })
            .await
            .expect("p-3 connects");
        assert_eq!(connected, "p-3.test:51820");
        let tried = tried.lock().unwrap().clone();
        assert_eq!(tried.last().map(String::as_str), Some("p-3"));
        let mut unique = tried.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            tried.len(),
            "an agent was tried twice: {tried:?}"
        );
    }

    let all_fail = client
        .connect_via_pool("db", &PickOptions::default(), |agent| async move {
            Err::<(), _>(format!("{} is unreachable", agent.name))
        })
        .await;
    match all_fail {
        Err(PickError::AllFailed(failures)) => assert_eq!(failures.len(), 3),
        other => panic!("expected every agent to fail: {other:?}"),
    }

    let started = Instant::now();
    let empty = client
        .connect_via_pool("nobody", &PickOptions::default(), |_| async {
            Ok::<(), String>(())
        })
        .await;
    assert!(
        matches!(empty, Err(PickError::NoHealthyAgent(_))),
        "{empty:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a pool without agents is not retried"
    );
}
