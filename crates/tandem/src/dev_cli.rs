//! `tandem dev`: a local cluster in one command. Servers (and agents, if asked) of this binary on
//! free 127.0.0.1 ports, their data and logs in a temporary folder (or `--data-dir`, kept and
//! reused), the addresses and the secret printed with a line to try. A process that exits (say,
//! one killed to watch a failover) is reported and the others keep running; Ctrl-C or SIGTERM
//! stops every process it started and waits for them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tandem_bench::local::{server_args, Folder, Processes, StopSignal};
use tandem_client::Client;
use tokio::signal::unix::{signal, SignalKind};

use crate::agents_cli::parse;

#[derive(Args)]
pub struct DevArgs {
    /// How many servers: 1, 3 or 5
    #[arg(long, default_value_t = 3)]
    servers: usize,
    /// How many agents to enrol, in the pool `dev` (at most 16)
    #[arg(long, default_value_t = 0)]
    agents: usize,
    /// Keep the data and logs in this folder, and use the cluster it holds on the next start,
    /// instead of a temporary folder removed at exit
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// The pool the agents join.
const POOL: &str = "dev";
const MAX_AGENTS: usize = 16;
/// How long the servers may take to elect an active node, and the agents to register.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// The layout of a dev cluster, kept in its folder: a reused folder keeps its ports, because
/// the servers' membership holds them.
const LAYOUT_FILE: &str = "dev.json";

#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct Layout {
    servers: usize,
    agents: usize,
    /// Per server its cluster port, then its API port; then each agent's health port.
    ports: Vec<u16>,
}

impl Layout {
    fn cluster_addrs(&self) -> Vec<String> {
        (0..self.servers)
            .map(|i| local(self.ports[2 * i]))
            .collect()
    }

    fn api_addrs(&self) -> Vec<String> {
        (0..self.servers)
            .map(|i| local(self.ports[2 * i + 1]))
            .collect()
    }

    fn health_addr(&self, agent: usize) -> String {
        local(self.ports[2 * self.servers + agent])
    }
}

fn local(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

pub async fn dev(args: DevArgs) -> Result<()> {
    if ![1, 3, 5].contains(&args.servers) {
        bail!(
            "--servers {} is not a cluster size Tandem runs: use 1, 3 or 5",
            args.servers
        );
    }
    if args.agents > MAX_AGENTS {
        bail!(
            "--agents {} is too many for one machine: at most {MAX_AGENTS}",
            args.agents
        );
    }
    let folder = match &args.data_dir {
        Some(path) => Folder::kept(path, false)?,
        None => Folder::temporary("tandem-dev-")?,
    };
    let layout = layout(folder.path(), &args)?;
    let (secret_raft, _) =
        tandem_server::config::load_or_generate_secret(folder.path(), "secret-raft")
            .context("cannot keep the cluster secret in the data folder")?;
    let (secret_api, _) =
        tandem_server::config::load_or_generate_secret(folder.path(), "secret-api")
            .context("cannot keep the API secret in the data folder")?;
    let program = std::env::current_exe().context("cannot find this binary")?;
    let kept = matches!(folder, Folder::Kept(_));
    let mut processes = Processes::new(program, folder, None);
    let started = start(&mut processes, &layout, &secret_raft, &secret_api).await;
    let (leader, agent_names) = match started {
        Ok(started) => started,
        Err(e) => {
            let dir = processes.keep_folder();
            return Err(e.context(format!("the data and logs are kept in {}", dir.display())));
        }
    };
    print_summary(&processes, &layout, leader, &secret_api, &agent_names, kept);
    let why = stopped(&mut processes).await?;
    eprintln!("tandem dev: {why}; stopping everything");
    processes.stop_all(StopSignal::Term)?;
    if kept {
        eprintln!(
            "tandem dev: stopped; the data stays in {}",
            processes.dir().display()
        );
    } else {
        eprintln!("tandem dev: stopped; the temporary folder is removed");
    }
    Ok(())
}

/// Starts the servers and waits for an active one, then enrols and starts the agents and waits
/// until they are registered. Answers the active server's id and the agents' names.
async fn start(
    processes: &mut Processes,
    layout: &Layout,
    secret_raft: &str,
    secret_api: &str,
) -> Result<(u64, Vec<String>)> {
    let (cluster, api) = (layout.cluster_addrs(), layout.api_addrs());
    for i in 0..layout.servers {
        let args = server_args(i, &cluster, &api, processes.dir(), secret_raft, secret_api);
        processes.add(format!("server-{}", i + 1), args);
    }
    processes.spawn_all()?;
    let client = Client::new(&api, Some(secret_api.to_string()))?.with_deadline(START_DEADLINE);
    let leader = wait_for(processes, "an active server", async || {
        let reply = client.get("/v1/sys/leader").await.ok()?;
        let answer: Value = reply.json().ok()?;
        answer["leader_id"].as_u64()
    })
    .await?;

    let mut agent_names = Vec::new();
    if layout.agents > 0 {
        let token: Value = parse(
            client
                .post_json("/v1/join-tokens", &json!({ "pool": POOL }))
                .await?,
        )?;
        let token = token["token"]
            .as_str()
            .ok_or_else(|| anyhow!("the servers answered no join token"))?
            .to_string();
        for a in 0..layout.agents {
            let name = format!("dev-agent-{}", a + 1);
            let data_dir = processes.dir().join(&name);
            let args = vec![
                "agent".into(),
                "--servers".into(),
                api.join(","),
                "--pool".into(),
                POOL.into(),
                "--name".into(),
                name.clone(),
                // No service of its own here: the health endpoint stands in for one.
                "--address".into(),
                layout.health_addr(a),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--health-listen".into(),
                layout.health_addr(a),
                "--join-token".into(),
                token.clone(),
            ];
            let i = processes.add(name.clone(), args);
            processes.spawn(i)?;
            agent_names.push(name);
        }
        let want = layout.agents;
        wait_for(processes, "the agents to register", async || {
            let reply = client.get(&format!("/v1/agents?pool={POOL}")).await.ok()?;
            let answer: Value = reply.json().ok()?;
            let registered = answer["agents"].as_array().map_or(0, Vec::len);
            (registered >= want).then_some(())
        })
        .await?;
    }
    Ok((leader, agent_names))
}

/// The layout the folder holds, or a new one on free ports (saved in the folder).
fn layout(dir: &Path, args: &DevArgs) -> Result<Layout> {
    let path = dir.join(LAYOUT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let held: Layout = serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is damaged; use another --data-dir", path.display())
            })?;
            if held.servers != args.servers || held.agents != args.agents {
                bail!(
                    "{} holds a dev cluster of {} servers and {} agents: start it with --servers {} --agents {}, or use another --data-dir",
                    dir.display(),
                    held.servers,
                    held.agents,
                    held.servers,
                    held.agents
                );
            }
            Ok(held)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let ports = tandem_bench::local::free_ports(2 * args.servers + args.agents)
                .context("cannot find free ports on 127.0.0.1")?;
            let layout = Layout {
                servers: args.servers,
                agents: args.agents,
                ports,
            };
            std::fs::write(&path, serde_json::to_vec_pretty(&layout)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(layout)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Polls `found` until it answers, while every process runs; a process that exits first, or
/// the deadline, ends the wait with the reason.
async fn wait_for<T>(
    processes: &mut Processes,
    what: &str,
    mut found: impl AsyncFnMut() -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    loop {
        if let Some(value) = found().await {
            return Ok(value);
        }
        if let Some((i, status)) = processes.exited() {
            bail!(
                "{} exited ({status}) while waiting for {what}; its log: {}",
                processes.name(i),
                processes.log_path(i).display()
            );
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "no {what} within {START_DEADLINE:?}; the logs are in {}",
                processes.dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_summary(
    processes: &Processes,
    layout: &Layout,
    leader: u64,
    secret_api: &str,
    agents: &[String],
    kept: bool,
) {
    let api = layout.api_addrs();
    let cluster = layout.cluster_addrs();
    println!(
        "tandem dev: {} servers and {} agents on 127.0.0.1",
        layout.servers, layout.agents
    );
    for i in 0..layout.servers {
        let active = if i as u64 + 1 == leader {
            "  (active)"
        } else {
            ""
        };
        println!(
            "  server {}  api http://{}  cluster {}  pid {}{active}",
            i + 1,
            api[i],
            cluster[i],
            pid_text(processes.pid(i)),
        );
    }
    for (a, name) in agents.iter().enumerate() {
        println!(
            "  agent {name}  health http://{}/health  pid {}",
            layout.health_addr(a),
            pid_text(processes.pid(layout.servers + a)),
        );
    }
    let folder = if kept {
        "kept"
    } else {
        "removed when tandem dev stops"
    };
    println!("data and logs: {} ({folder})", processes.dir().display());
    println!("API secret: {secret_api}");
    println!("try:");
    println!(
        "  export TANDEM_ADDR={} TANDEM_SECRET_API={secret_api}",
        api.join(",")
    );
    println!("  tandem status && tandem kv put hello world && tandem kv get hello");
    println!("Ctrl-C stops everything.");
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map_or_else(|| "-".to_string(), |pid| pid.to_string())
}

/// Waits for Ctrl-C, SIGTERM or the last process to exit, reporting each process that exits
/// meanwhile; says why it stopped waiting.
async fn stopped(processes: &mut Processes) -> Result<String> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let mut every = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok("interrupted".into()),
            _ = terminate.recv() => return Ok("terminated".into()),
            _ = every.tick() => {
                while let Some((i, status)) = processes.exited() {
                    eprintln!(
                        "tandem dev: {} exited ({status}); its log: {}",
                        processes.name(i),
                        processes.log_path(i).display()
                    );
                }
                if processes.running() == 0 {
                    return Ok("every process has exited".into());
                }
            }
        }
    }
}
