//! `tandem auth ...`: scoped credentials and the audit log from the command line.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};
use tandem_client::{segment, Client};

use crate::agents_cli::{parse, table, time_text, Output};
use crate::cli::print_json;

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Create a scoped credential; it is printed alone on the last line, and shown only once
    Create {
        #[arg(long)]
        name: String,
        /// What it may do, e.g. kv:read:billing/ or cache:sessions (repeatable; see docs/api.md)
        #[arg(long = "grant", required = true)]
        grants: Vec<String>,
        /// How long it can be used, e.g. 30d [default: until revoked]
        #[arg(long)]
        ttl: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// List the credentials, scoped and agents', with their grants and state (never their secrets)
    Ls {
        #[command(flatten)]
        output: Output,
    },
    /// Revoke a credential by its id or name (an agent's by its id, which revokes the agent);
    /// every server refuses it from then on
    Revoke {
        credential: String,
        #[command(flatten)]
        output: Output,
    },
    /// The audit log: who changed credentials, signing keys, join tokens and agents, and when
    Audit {
        /// Only entries after this sequence number
        #[arg(long)]
        since: Option<u64>,
        #[command(flatten)]
        output: Output,
    },
}

pub async fn run(command: AuthCommand, client: &Client) -> Result<()> {
    match command {
        AuthCommand::Create {
            name,
            grants,
            ttl,
            output,
        } => {
            let mut body = json!({ "name": name, "grants": grants });
            if let Some(ttl) = ttl {
                body["ttl"] = json!(ttl);
            }
            let created: Value = parse(client.post_json("/v1/auth/credentials", &body).await?)?;
            if output.json {
                print_json(&created);
                return Ok(());
            }
            println!(
                "credential {} ({name}): grants {}, expires {}",
                created["id"].as_str().unwrap_or_default(),
                grants.join(", "),
                time_text(created["expires_at_ms"].as_i64()),
            );
            println!("{}", created["credential"].as_str().unwrap_or_default());
        }
        AuthCommand::Ls { output } => {
            let answer: Value = parse(client.get("/v1/auth/credentials").await?)?;
            if output.json {
                print_json(&answer);
                return Ok(());
            }
            print!("{}", credentials_table(&answer));
        }
        AuthCommand::Revoke { credential, output } => {
            let path = format!("/v1/auth/credentials/{}", segment(&credential));
            let answer: Value = parse(client.delete(&path).await?)?;
            if output.json {
                print_json(&answer);
                return Ok(());
            }
            let revoked = &answer["revoked"];
            let what = if revoked["kind"] == "agent" {
                "agent credential"
            } else {
                "credential"
            };
            println!(
                "{what} {} ({}) is revoked",
                text(&revoked["id"]),
                text(&revoked["name"])
            );
        }
        AuthCommand::Audit { since, output } => {
            let query = since.map(|n| format!("?since={n}")).unwrap_or_default();
            let answer: Value = parse(client.get(&format!("/v1/audit{query}")).await?)?;
            if output.json {
                print_json(&answer);
                return Ok(());
            }
            print!("{}", audit_table(&answer));
        }
    }
    Ok(())
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// `GET /v1/auth/credentials` as a table, one row per credential.
fn credentials_table(answer: &Value) -> String {
    let rows = answer["credentials"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let grants: Vec<String> = c["grants"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            vec![
                text(&c["id"]),
                text(&c["kind"]),
                text(&c["name"]),
                text(&c["state"]),
                time_text(c["created_at_ms"].as_i64()),
                time_text(c["expires_at_ms"].as_i64()),
                grants.join(" "),
            ]
        })
        .collect();
    table(
        &[
            "ID", "KIND", "NAME", "STATE", "CREATED", "EXPIRES", "GRANTS",
        ],
        rows,
    )
}

/// `GET /v1/audit` as a table, one row per entry.
fn audit_table(answer: &Value) -> String {
    let rows = answer["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                e["seq"].to_string(),
                time_text(e["at_ms"].as_i64()),
                text(&e["who"]),
                text(&e["action"]),
                e["detail"].to_string(),
            ]
        })
        .collect();
    table(&["SEQ", "AT", "WHO", "ACTION", "DETAIL"], rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credentials_table_shows_state_and_grants() {
        let answer = json!({ "credentials": [{
            "id": "0123456789abcdef", "kind": "scoped", "name": "billing", "state": "active",
            "created_at_ms": 0, "expires_at_ms": null,
            "grants": ["kv:read:billing/", "cache:sessions"],
        }]});
        let text = credentials_table(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID"), "{text}");
        assert!(lines[1].contains("billing"), "{text}");
        assert!(lines[1].contains("never"), "{text}");
        assert!(
            lines[1].ends_with("kv:read:billing/ cache:sessions"),
            "{text}"
        );
    }
}
