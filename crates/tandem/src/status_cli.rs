//! `tandem status`: one row per server, as each server sees itself (role, standing, term,
//! applied index) and as the active node sees it (last contact), with its lag behind the active
//! node's log. `--json` prints the API's answer of the first server that answers.

use std::time::Duration;

use anyhow::Result;
use serde_json::Value;
use tandem_client::Client;
use tokio::task::JoinSet;

use crate::agents_cli::{parse, table};

/// How long one server may take to describe itself before it is shown as unreachable.
const ASK_EACH: Duration = Duration::from_secs(2);

/// A member of the cluster and what it said about itself (nothing when unreachable).
struct Seen {
    member: Value,
    own: Option<Value>,
}

/// `client_of` makes a client of one server's API address alone.
pub async fn status(
    client: &Client,
    client_of: impl Fn(String) -> Option<Client>,
    json: bool,
) -> Result<()> {
    let cluster: Value = parse(client.get("/v1/cluster").await?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&cluster)?);
        return Ok(());
    }
    let members = cluster["members"].as_array().cloned().unwrap_or_default();
    let mut asks = JoinSet::new();
    for (i, member) in members.iter().enumerate() {
        let addr = member["api_addr"].as_str().unwrap_or_default().to_string();
        let client = client_of(addr);
        asks.spawn(async move { (i, ask(client).await) });
    }
    let mut own: Vec<Option<Value>> = vec![None; members.len()];
    while let Some(done) = asks.join_next().await {
        if let Ok((i, answer)) = done {
            own[i] = answer;
        }
    }
    let seen: Vec<Seen> = members
        .into_iter()
        .zip(own)
        .map(|(member, own)| Seen { member, own })
        .collect();
    print!("{}", render(&seen));
    Ok(())
}

/// `GET /v1/cluster` of one server alone, if it answers.
async fn ask(client: Option<Client>) -> Option<Value> {
    let client = client?.with_deadline(ASK_EACH);
    parse(client.get("/v1/cluster").await.ok()?).ok()
}

/// The table: the active node's view supplies last contact and the log to measure lag against.
fn render(seen: &[Seen]) -> String {
    let active_view = seen
        .iter()
        .filter_map(|s| s.own.as_ref())
        .find(|own| own["standing"] == "active");
    let rows = seen
        .iter()
        .map(|s| {
            let id = s.member["id"].as_u64();
            let text = |v: &Value| match v {
                Value::Null => "-".to_string(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let (role, standing, term, applied) = match &s.own {
                Some(own) => (
                    text(&own["role"]),
                    text(&own["standing"]),
                    text(&own["term"]),
                    text(&own["applied_index"]),
                ),
                None => (
                    "unreachable".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                ),
            };
            let applied_index = s.own.as_ref().and_then(|o| o["applied_index"].as_u64());
            let lag = active_view
                .and_then(|a| a["last_log_index"].as_u64())
                .zip(applied_index)
                .map_or("-".to_string(), |(log, applied)| {
                    log.saturating_sub(applied).to_string()
                });
            let last_contact = active_view
                .and_then(|a| a["members"].as_array())
                .and_then(|ms| ms.iter().find(|m| m["id"].as_u64() == id))
                .and_then(|m| m["last_contact_ms"].as_u64())
                .map_or("-".to_string(), |ms| format!("{ms}ms ago"));
            vec![
                id.map_or("-".to_string(), |id| id.to_string()),
                text(&s.member["api_addr"]),
                text(&s.member["cluster_addr"]),
                role,
                standing,
                term,
                applied,
                lag,
                last_contact,
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "API",
            "CLUSTER",
            "ROLE",
            "STANDING",
            "TERM",
            "APPLIED",
            "LAG",
            "LAST CONTACT",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn member(id: u64, contact: Option<u64>) -> Value {
        json!({"id": id, "api_addr": format!("127.0.0.1:820{id}"),
               "cluster_addr": format!("127.0.0.1:810{id}"), "last_contact_ms": contact})
    }

    #[test]
    fn each_server_shows_its_own_view_its_lag_and_the_active_nodes_last_contact() {
        let active = json!({"role": "leader", "standing": "active", "term": 3,
            "applied_index": 40, "last_log_index": 42,
            "members": [member(1, Some(0)), member(2, Some(120)), member(3, None)]});
        let seen = vec![
            Seen {
                member: member(1, None),
                own: Some(active),
            },
            Seen {
                member: member(2, None),
                own: Some(json!({"role": "follower", "standing": "standby", "term": 3,
                               "applied_index": 37})),
            },
            Seen {
                member: member(3, None),
                own: None,
            },
        ];
        let lines: Vec<Vec<String>> = render(&seen)
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect();
        assert_eq!(
            lines[0],
            [
                "ID", "API", "CLUSTER", "ROLE", "STANDING", "TERM", "APPLIED", "LAG", "LAST",
                "CONTACT"
            ]
        );
        assert_eq!(
            lines[1],
            [
                "1",
                "127.0.0.1:8201",
                "127.0.0.1:8101",
                "leader",
                "active",
                "3",
                "40",
                "2",
                "0ms",
                "ago"
            ]
        );
        assert_eq!(
            lines[2],
            [
                "2",
                "127.0.0.1:8202",
                "127.0.0.1:8102",
                "follower",
                "standby",
                "3",
                "37",
                "5",
                "120ms",
                "ago"
            ]
        );
        assert_eq!(
            lines[3],
            [
                "3",
                "127.0.0.1:8203",
                "127.0.0.1:8103",
                "unreachable",
                "-",
                "-",
                "-",
                "-",
                "-"
            ]
        );
    }
}
