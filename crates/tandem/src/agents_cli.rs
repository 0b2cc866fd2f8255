//! `tandem agents ...`: the registry from the command line. Tables for people, `--json` for
//! scripts.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tandem_client::{segment, Client};
use tandem_registry::{check_announce_entry, AgentList, AgentRecord, JoinTokenInfo};

use crate::cli::{print_json, write_query};

#[derive(Subcommand)]
pub enum AgentsCommand {
    /// List agents, with their state, load and last heartbeat
    Ls {
        #[arg(long)]
        pool: Option<String>,
        /// passing, warning, critical, down or draining
        #[arg(long)]
        state: Option<String>,
        /// Only agents with this label (key=value)
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Show one agent with its checks
    Show {
        name: String,
        #[command(flatten)]
        output: Output,
    },
    /// Ask for one healthy agent of a pool, as a client would
    Pick {
        pool: String,
        /// random (default) or least-loaded
        #[arg(long)]
        strategy: Option<String>,
        /// Agents to leave out, comma-separated
        #[arg(long)]
        exclude: Option<String>,
        /// Sticky pick: the same key keeps its agent while that agent is up
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Stop picking an agent; it keeps serving what it has and deregisters when it stops
    Drain {
        name: String,
        #[command(flatten)]
        output: Output,
    },
    /// Refuse an agent's credential everywhere and take it out of every pick
    Revoke {
        name: String,
        #[command(flatten)]
        output: Output,
    },
    /// Restrict what an agent may announce in the mesh (every mesh agent refuses the rest)
    Announce {
        name: String,
        /// A CIDR or domain pattern it may announce, like 10.20.0.0/16 or *.internal.example (repeatable)
        #[arg(long, value_parser = announce_entry, required_unless_present = "any")]
        allow: Vec<String>,
        /// Lift the restriction: the agent may announce anything again
        #[arg(long, conflicts_with = "allow")]
        any: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Join tokens, which agents trade for their credential on first start
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a join token for a pool; the token is printed alone on the last line
    Create {
        #[arg(long)]
        pool: String,
        /// How long the token can be used, e.g. 1h [default: 24h]
        #[arg(long)]
        ttl: Option<String>,
        /// How many agents may enrol with it [default: no limit]
        #[arg(long)]
        uses: Option<u64>,
        /// The agents enrolled with it may announce only this in the mesh, a CIDR or domain pattern like 10.20.0.0/16 or *.internal.example (repeatable) [default: anything]
        #[arg(long, value_parser = announce_entry)]
        mesh_announce: Vec<String>,
        #[command(flatten)]
        output: Output,
    },
    /// List the join tokens that can still enrol (never their secrets)
    Ls {
        #[command(flatten)]
        output: Output,
    },
    /// Revoke a join token by its id
    Revoke {
        id: String,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Args, Clone, Copy)]
pub struct Output {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

pub async fn run(command: AgentsCommand, client: &Client) -> Result<()> {
    match command {
        AgentsCommand::Ls {
            pool,
            state,
            label,
            output,
        } => {
            let query = write_query(&[("pool", pool), ("state", state), ("label", label)]);
            let list: AgentList = parse(client.get(&format!("/v1/agents{query}")).await?)?;
            if output.json {
                print_json(&list);
                return Ok(());
            }
            print_agents(&list.agents);
        }
        AgentsCommand::Show { name, output } => {
            let agent: AgentRecord = parse(
                client
                    .get(&format!("/v1/agents/{}", segment(&name)))
                    .await?,
            )?;
            if output.json {
                print_json(&agent);
                return Ok(());
            }
            print_agent(&agent);
        }
        AgentsCommand::Pick {
            pool,
            strategy,
            exclude,
            key,
            output,
        } => {
            let query = write_query(&[("strategy", strategy), ("exclude", exclude), ("key", key)]);
            let path = format!("/v1/pools/{}/pick{query}", segment(&pool));
            let agent: AgentRecord = parse(client.get(&path).await?)?;
            if output.json {
                print_json(&agent);
                return Ok(());
            }
            println!("{} {}", agent.name, agent.address);
        }
        AgentsCommand::Drain { name, output } => {
            let path = format!("/v1/agents/{}/drain", segment(&name));
            let agent: AgentRecord = parse(client.post_json(&path, &json!({})).await?)?;
            if output.json {
                print_json(&agent);
                return Ok(());
            }
            println!("agent {} is draining: it is picked no more", agent.name);
        }
        AgentsCommand::Revoke { name, output } => {
            let path = format!("/v1/agents/{}/revoke", segment(&name));
            let answer: Value = parse(client.post_json(&path, &json!({})).await?)?;
            if output.json {
                print_json(&answer);
                return Ok(());
            }
            println!(
                "agent {name}'s credential is revoked; it needs a new join token to come back"
            );
        }
        AgentsCommand::Announce {
            name,
            allow,
            any,
            output,
        } => {
            let path = format!("/v1/agents/{}/announce", segment(&name));
            let body = json!({ "allow": (!any).then_some(&allow) });
            let answer: Value = parse(client.post_json(&path, &body).await?)?;
            if output.json {
                print_json(&answer);
                return Ok(());
            }
            if any {
                println!("agent {name} may announce anything in the mesh");
            } else {
                println!(
                    "agent {name} may announce only {} in the mesh",
                    allow.join(", ")
                );
            }
        }
        AgentsCommand::Token { command } => token(command, client).await?,
    }
    Ok(())
}

/// A `--mesh-announce` or `--allow` value, checked as the servers check it.
fn announce_entry(text: &str) -> Result<String, String> {
    let entry = text.trim();
    check_announce_entry(entry)?;
    Ok(entry.to_string())
}

async fn token(command: TokenCommand, client: &Client) -> Result<()> {
    match command {
        TokenCommand::Create {
            pool,
            ttl,
            uses,
            mesh_announce,
            output,
        } => {
            let mut body = json!({ "pool": pool });
            if !mesh_announce.is_empty() {
                body["mesh_announce"] = json!(mesh_announce);
            }
            if let Some(ttl) = ttl {
                body["ttl"] = json!(ttl);
            }
            if let Some(uses) = uses {
                body["uses"] = json!(uses);
            }
            let created: Value = parse(client.post_json("/v1/join-tokens", &body).await?)?;
            if output.json {
                print_json(&json!({ "token": created["token"] }));
                return Ok(());
            }
            let uses = created["uses_left"]
                .as_u64()
                .map_or("unlimited".to_string(), |n| n.to_string());
            let announce = if mesh_announce.is_empty() {
                String::new()
            } else {
                format!(", mesh announce only {}", mesh_announce.join(", "))
            };
            println!(
                "join token {} for pool {pool}: expires {}, uses {uses}{announce}",
                created["id"].as_str().unwrap_or_default(),
                time_text(created["expires_at_ms"].as_i64()),
            );
            println!("{}", created["token"].as_str().unwrap_or_default());
        }
        TokenCommand::Ls { output } => {
            let answer: Value = parse(client.get("/v1/join-tokens").await?)?;
            let tokens: Vec<JoinTokenInfo> =
                serde_json::from_value(answer["tokens"].clone()).unwrap_or_default();
            if output.json {
                print_json(&json!({ "tokens": tokens }));
                return Ok(());
            }
            let rows = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.pool.clone(),
                        time_text(Some(t.created_at_ms)),
                        time_text(t.expires_at_ms),
                        t.uses_left
                            .map_or("unlimited".to_string(), |n| n.to_string()),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["ID", "POOL", "CREATED", "EXPIRES", "USES LEFT"], rows)
            );
        }
        TokenCommand::Revoke { id, output } => {
            let path = format!("/v1/join-tokens/{}", segment(&id));
            let answer: Value = parse(client.delete(&path).await?)?;
            if output.json {
                print_json(&answer);
                return Ok(());
            }
            println!("join token {id} is revoked");
        }
    }
    Ok(())
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(reply: tandem_client::Reply) -> Result<T> {
    let reply = reply.error_for_status()?;
    serde_json::from_slice(&reply.body)
        .map_err(|e| anyhow::anyhow!("the server's answer is not what this version expects: {e}"))
}

fn print_agents(agents: &[AgentRecord]) {
    let now = now_ms();
    let rows = agents
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.pool.clone(),
                a.state.as_str().to_string(),
                a.address.clone(),
                a.load.map_or("-".to_string(), |l| format!("{l:.2}")),
                a.last_heartbeat_ms
                    .map_or("-".to_string(), |at| format!("{}ms ago", (now - at).max(0))),
                format!("{}s", ((now - a.state_since_ms) / 1000).max(0)),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "NAME",
                "POOL",
                "STATE",
                "ADDRESS",
                "LOAD",
                "LAST HEARTBEAT",
                "IN STATE"
            ],
            rows
        )
    );
}

fn print_agent(agent: &AgentRecord) {
    let labels: Vec<String> = agent
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("name:      {}", agent.name);
    println!("pool:      {}", agent.pool);
    println!(
        "state:     {} since {}",
        agent.state.as_str(),
        time_text(Some(agent.state_since_ms))
    );
    println!("address:   {}", agent.address);
    println!("labels:    {}", labels.join(", "));
    println!(
        "load:      {}",
        agent.load.map_or("-".to_string(), |l| format!("{l:.2}"))
    );
    println!("heartbeat: {}", time_text(agent.last_heartbeat_ms));
    println!("version:   {}", agent.version);
    let rows = agent
        .checks
        .iter()
        .map(|c| {
            let first_line = c.output.lines().next().unwrap_or_default();
            vec![
                c.name.clone(),
                c.status.as_str().to_string(),
                first_line.to_string(),
            ]
        })
        .collect();
    print!("{}", table(&["CHECK", "STATUS", "OUTPUT"], rows));
}

/// Columns padded to their widest cell.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Unix milliseconds as an RFC 3339 time, or `never`.
pub(crate) fn time_text(at_ms: Option<i64>) -> String {
    at_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map(|ms| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
            )
            .to_string()
        })
        .unwrap_or_else(|| "never".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let text = table(
            &["NAME", "STATE"],
            vec![vec!["gw-long-name".into(), "passing".into()]],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME          STATE");
        assert_eq!(lines[1], "gw-long-name  passing");
    }
}
