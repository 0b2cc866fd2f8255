//! `tandem mesh ...`: the mesh as the agents report it to the active server, every agent's
//! peers and paths. Tables for people, `--json` for scripts.

use anyhow::Result;
use clap::Subcommand;
use tandem_client::Client;
use tandem_registry::{MeshAgent, MeshView};

use crate::agents_cli::{now_ms, parse, table, Output};
use crate::cli::print_json;

#[derive(Subcommand)]
pub enum MeshCommand {
    /// Every agent's mesh peers, with their state and round-trip time
    Peers {
        /// Only this agent's peers
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Every agent's stored paths, the selected one and the backups
    Routes {
        /// Only this agent's paths
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        output: Output,
    },
}

pub async fn run(command: MeshCommand, client: &Client) -> Result<()> {
    let (agent, output, peers) = match command {
        MeshCommand::Peers { agent, output } => (agent, output, true),
        MeshCommand::Routes { agent, output } => (agent, output, false),
    };
    let mut view: MeshView = parse(client.get("/v1/mesh").await?)?;
    if let Some(name) = &agent {
        view.agents.retain(|a| &a.name == name);
    }
    if output.json {
        print_json(&view);
        return Ok(());
    }
    let text = if peers {
        peers_table(&view.agents)
    } else {
        routes_table(&view.agents)
    };
    print!("{text}");
    if view.agents.is_empty() {
        eprintln!("no agent reports a mesh; agents started with --mesh-listen report theirs every heartbeat");
    }
    Ok(())
}

fn heard(agent: &MeshAgent, now: i64) -> String {
    format!("{}ms ago", (now - agent.last_heartbeat_ms).max(0))
}

fn peers_table(agents: &[MeshAgent]) -> String {
    let now = now_ms();
    let rows = agents
        .iter()
        .flat_map(|agent| {
            agent.peers.iter().map(move |peer| {
                vec![
                    agent.name.clone(),
                    peer.id.clone().unwrap_or_else(|| "-".into()),
                    peer.address.clone(),
                    peer.state.clone(),
                    peer.rtt_ms.map_or("-".into(), |rtt| format!("{rtt:.1}")),
                    heard(agent, now),
                ]
            })
        })
        .collect();
    table(
        &["AGENT", "PEER", "ADDRESS", "STATE", "RTT MS", "REPORTED"],
        rows,
    )
}

fn routes_table(agents: &[MeshAgent]) -> String {
    let now = now_ms();
    let rows = agents
        .iter()
        .flat_map(|agent| {
            agent.routes.iter().map(move |route| {
                vec![
                    agent.name.clone(),
                    route.dest.clone(),
                    route.origin.clone(),
                    route.next_hop.clone(),
                    route.path.join(">"),
                    route.metric.to_string(),
                    route.weight.to_string(),
                    route.state.clone(),
                    heard(agent, now),
                ]
            })
        })
        .collect();
    table(
        &[
            "AGENT", "DEST", "ORIGIN", "NEXT HOP", "PATH", "METRIC", "WEIGHT", "STATE", "REPORTED",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_registry::{AgentState, MeshPeer, MeshRoute};

    fn agent() -> MeshAgent {
        MeshAgent {
            name: "ingress".into(),
            pool: "edge".into(),
            state: AgentState::Passing,
            last_heartbeat_ms: now_ms(),
            peers: vec![MeshPeer {
                id: Some("exit-a".into()),
                address: "127.0.0.1:4433".into(),
                rtt_ms: Some(0.25),
                state: "up".into(),
            }],
            routes: vec![MeshRoute {
                dest: "10.0.0.0/8".into(),
                origin: "exit-a".into(),
                next_hop: "exit-a".into(),
                path: vec!["exit-a".into()],
                metric: 1,
                weight: 100,
                state: "selected".into(),
            }],
        }
    }

    #[test]
    fn peers_and_routes_print_one_row_each() {
        let peers = peers_table(&[agent()]);
        let lines: Vec<&str> = peers.lines().collect();
        assert!(lines[0].starts_with("AGENT"));
        assert!(lines[1].starts_with("ingress"), "{peers}");
        assert!(lines[1].contains("exit-a") && lines[1].contains("up") && lines[1].contains("0.2"));
        let routes = routes_table(&[agent()]);
        let lines: Vec<&str> = routes.lines().collect();
        assert_eq!(lines.len(), 2, "{routes}");
        assert!(lines[1].contains("10.0.0.0/8") && lines[1].contains("selected"));
    }
}
