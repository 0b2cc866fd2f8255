use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use tandem_client::{segment, Client, Reply};
use tandem_server::config::LogFormat;
use tandem_server::{RunningServer, ServerArgs, Settings};

use crate::progress;

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "Tandem keeps a service running when servers fail"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server node (a cluster of one by default, data in ./tandem-data)
    Server(Box<ServerArgs>),
    /// Run an agent: enrol with a join token, register with the servers, run health checks and
    /// report health and load (see docs/agents.md)
    Agent(Box<AgentCommand>),
    /// Show the cluster: one row per server (role, standing, term, applied index, lag, last
    /// contact); --json prints the API's answer
    Status {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        output: crate::agents_cli::Output,
    },
    /// Run a local cluster for development: servers (and agents) of this binary on free ports,
    /// printing the addresses and the secret; Ctrl-C stops all of it
    Dev(crate::dev_cli::DevArgs),
    /// Run SQL: statements that write are replicated; SELECTs return rows
    Sql(SqlArgs),
    /// Key/value store
    Kv {
        #[command(subcommand)]
        command: KvCommand,
        #[command(flatten)]
        target: Target,
    },
    /// TTL cache
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Locks with leases and fencing tokens
    Lock {
        #[command(subcommand)]
        command: LockCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Signing keys and tokens: list, rotate, the public key set, issue and verify
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Measure throughput and latency of a workload against a cluster, or failover times
    Bench {
        // The server flags first: `tandem bench --help` lists them before the bench's own.
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        args: tandem_bench::BenchArgs,
    },
    /// The agent registry: list, show, pick, drain, revoke, join tokens
    Agents {
        #[command(subcommand)]
        command: crate::agents_cli::AgentsCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Scoped credentials for the client API (create, ls, revoke) and the audit log
    Auth {
        #[command(subcommand)]
        command: crate::auth_cli::AuthCommand,
        #[command(flatten)]
        target: Target,
    },
    /// The agents' mesh as they report it: peers and routes
    Mesh {
        #[command(subcommand)]
        command: crate::mesh_cli::MeshCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Membership and the API's CA: add a server (started with --join) or remove one while the
    /// cluster serves, or print the CA that signs the servers' API certificates
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Snapshots, backups and restore
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct AgentCommand {
    #[command(subcommand)]
    action: Option<AgentAction>,
    #[command(flatten)]
    args: tandem_agent::AgentArgs,
}

#[derive(Subcommand)]
enum AgentAction {
    /// Ask the agent running on this machine to drain: it is picked no more, and keeps running
    /// and serving until it is stopped
    Drain {
        /// The agent's local endpoint
        #[arg(
            long,
            env = "TANDEM_AGENT_HEALTH_LISTEN",
            default_value = "127.0.0.1:8080"
        )]
        health_listen: String,
    },
}

/// Which servers to talk to, and how.
#[derive(Args, Clone)]
struct Target {
    /// Server API address; repeat for several (tried in turn, the active node is followed)
    #[arg(
        long = "addr",
        env = "TANDEM_ADDR",
        value_delimiter = ',',
        default_value = "127.0.0.1:8200",
        global = true
    )]
    addrs: Vec<String>,
    /// API secret [default: read from $TANDEM_DATA_DIR/secret-api (./tandem-data) when present]
    #[arg(long, env = "TANDEM_SECRET_API", hide_env_values = true, global = true)]
    secret: Option<String>,
    /// Read consistency: linearizable, active or stale
    #[arg(long, default_value = "linearizable", global = true)]
    consistency: String,
    #[command(flatten)]
    ca: CaFile,
}

/// The CA that servers' API certificates must chain to.
#[derive(Args, Debug, Clone)]
struct CaFile {
    /// PEM file of the CA the servers' API certificates chain to (`tandem cluster ca` prints it); with it, servers are reached over HTTPS [default: plain HTTP]
    #[arg(long = "ca-file", env = "TANDEM_CA_FILE", global = true)]
    path: Option<PathBuf>,
}

impl CaFile {
    /// A client of `addrs` with `secret` that trusts this CA, if one is given.
    fn client(&self, addrs: &[String], secret: Option<String>) -> Result<Client> {
        let client = Client::new(addrs, secret)?;
        let Some(path) = &self.path else {
            return Ok(client);
        };
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA file {}", path.display()))?;
        client
            .with_ca_pem(&pem)
            .with_context(|| format!("{}", path.display()))
    }
}

impl Target {
    fn client(&self) -> Result<Client> {
        self.ca.client(&self.addrs, self.secret_or_default())
    }

    /// `--secret`, or the one a local single node saved in its data folder.
    fn secret_or_default(&self) -> Option<String> {
        self.secret.clone().or_else(|| {
            let data_dir =
                std::env::var("TANDEM_DATA_DIR").unwrap_or_else(|_| "tandem-data".into());
            std::fs::read_to_string(std::path::Path::new(&data_dir).join("secret-api"))
                .ok()
                .map(|s| s.trim().to_string())
        })
    }

    /// The servers for `tandem bench`, with the secret resolved as [`Target::client`] does.
    fn servers(&self) -> tandem_bench::Servers {
        tandem_bench::Servers {
            addrs: self.addrs.clone(),
            secret: self.secret_or_default(),
            consistency: self.consistency.clone(),
        }
    }

    fn read_query(&self) -> String {
        format!("consistency={}", segment(&self.consistency))
    }
}

#[derive(Args)]
struct SqlArgs {
    /// The statement
    sql: String,
    /// Parameters, in order; each is read as JSON when it parses (42, null, "text") and as text otherwise
    params: Vec<String>,
    /// Send as a replicated write even if it looks like a read
    #[arg(long)]
    execute: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum KvCommand {
    /// Print a key's value
    Get { key: String },
    /// Set a key
    Put {
        key: String,
        value: String,
        /// Expire after this long (30s, 5m, 1h)
        #[arg(long)]
        ttl: Option<String>,
        /// Only if the key is at this revision (0: only if absent)
        #[arg(long)]
        if_revision: Option<u64>,
        /// Only while this lock token is current: <lock>:<token>
        #[arg(long)]
        fence: Option<String>,
    },
    /// Delete a key
    Del {
        key: String,
        #[arg(long)]
        if_revision: Option<u64>,
        #[arg(long)]
        fence: Option<String>,
    },
    /// List keys under a prefix
    Ls {
        #[arg(default_value = "")]
        prefix: String,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long)]
        after: Option<String>,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    Get {
        namespace: String,
        key: String,
    },
    Put {
        namespace: String,
        key: String,
        value: String,
        #[arg(long)]
        ttl: Option<String>,
    },
    Del {
        namespace: String,
        key: String,
    },
    /// Print the value and delete it in one step (exactly once across the cluster)
    Take {
        namespace: String,
        key: String,
    },
}

#[derive(Subcommand)]
enum LockCommand {
    /// Show who holds a lock
    Get { name: String },
    /// Acquire: prints the fencing token
    Acquire {
        name: String,
        #[arg(long)]
        holder: String,
        #[arg(long, default_value = "10s")]
        ttl: String,
    },
    Renew {
        name: String,
        #[arg(long)]
        holder: String,
        #[arg(long)]
        token: u64,
        #[arg(long, default_value = "10s")]
        ttl: String,
    },
    Release {
        name: String,
        #[arg(long)]
        holder: String,
        #[arg(long)]
        token: u64,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Every published key with its server and dates, and this server's signing key
    List {
        #[command(flatten)]
        output: crate::agents_cli::Output,
    },
    /// The public key set (JWKS) as verifiers fetch it
    Jwks,
    /// Make, publish and sign with a new key on the server addressed; the old one is retired
    Rotate,
    /// Issue a token signed by the server addressed; prints it
    Issue {
        /// Claims as a JSON object, e.g. '{"sub":"ann"}'
        #[arg(long, default_value = "{}")]
        claims: String,
        /// Lifetime, at most the server's token_duration [default: token_duration]
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Verify a token; prints its claims, or why it was refused
    Verify { token: String },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Add a server: it joins as a learner, catches up, then votes (start it first, with its
    /// own node id, a node-list line for itself, --join and the cluster's secrets)
    Add {
        /// The new server's node id (not in use in this cluster)
        #[arg(long)]
        node_id: u64,
        /// Its cluster port, host:port (the node list's addr_raft)
        #[arg(long)]
        raft_addr: String,
        /// Its client API, host:port
        #[arg(long)]
        api_addr: String,
    },
    /// Remove a server (the active one hands its role over first); then stop it
    Remove {
        /// The node id to remove
        node_id: u64,
    },
    /// Print the CA (PEM) that the API certificates of a cluster with `api_tls = auto` chain to,
    /// for clients' --ca-file (asks the first --addr)
    Ca {
        /// Fetch it over an unverified HTTPS connection, as `curl -k` would: only to bootstrap,
        /// on a network you trust, then compare it with another server's
        #[arg(long)]
        insecure: bool,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Build a Raft snapshot on the node now
    Create(Target),
    /// Download a consistent backup of the whole state (a SQLite file)
    Backup {
        /// Where to write it
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Seed a stopped node's empty data folder from a backup (do this on every node)
    Restore {
        #[arg(long)]
        backup: PathBuf,
        #[arg(long, env = "TANDEM_DATA_DIR", default_value = "./tandem-data")]
        data_dir: PathBuf,
    },
}

/// Exit code for settings that make start-up impossible.
const CONFIG_ERROR: u8 = 2;

pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Server(args) => return serve(*args).await,
        Command::Agent(command) => return agent(*command).await,
        Command::Status { target, output } => match target.client() {
            Ok(client) => {
                let secret = target.secret_or_default();
                let client_of = |addr: String| target.ca.client(&[addr], secret.clone()).ok();
                crate::status_cli::status(&client, client_of, output.json).await
            }
            Err(e) => Err(e),
        },
        Command::Dev(args) => crate::dev_cli::dev(args).await,
        Command::Sql(args) => sql(args).await,
        Command::Kv { command, target } => kv(command, &target).await,
        Command::Cache { command, target } => cache(command, &target).await,
        Command::Lock { command, target } => lock(command, &target).await,
        Command::Keys { command, target } => keys(command, &target).await,
        Command::Agents { command, target } => match target.client() {
            Ok(client) => crate::agents_cli::run(command, &client).await,
            Err(e) => Err(e),
        },
        Command::Auth { command, target } => match target.client() {
            Ok(client) => crate::auth_cli::run(command, &client).await,
            Err(e) => Err(e),
        },
        Command::Mesh { command, target } => match target.client() {
            Ok(client) => crate::mesh_cli::run(command, &client).await,
            Err(e) => Err(e),
        },
        Command::Cluster { command, target } => cluster(command, &target).await,
        Command::Snapshot { command } => snapshot(command).await,
        Command::Bench { target, args } => tandem_bench::run(args, target.servers()).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) {
    init_logging_at(&settings.log_level, settings.log_format);
}

fn init_logging_at(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(args: ServerArgs) -> ExitCode {
    let settings = match Settings::load(&args) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    init_logging(&settings);
    let server = match RunningServer::start(settings).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = tokio::select! {
        _ = wait_for_signal() => ExitCode::SUCCESS,
        reason = server.raft_failed() => {
            tracing::error!(%reason, "Raft stopped on this node; exiting so that it can be restarted");
            ExitCode::FAILURE
        }
    };
    server.shutdown().await;
    code
}

async fn agent(command: AgentCommand) -> ExitCode {
    if let Some(AgentAction::Drain { health_listen }) = command.action {
        return match tandem_agent::drain_local(&health_listen).await {
            Ok(()) => {
                println!("the agent on {health_listen} is draining: it is picked no more");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    let settings = match tandem_agent::AgentSettings::load(&command.args) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    init_logging_at(&settings.log_level, LogFormat::Text);
    match tandem_agent::run_with(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutdown signal received");
}

pub(crate) fn print_json<T: serde::Serialize + ?Sized>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn ok_json(reply: Reply) -> Result<Value> {
    Ok(reply.error_for_status()?.json()?)
}

fn print_raw(reply: Reply) -> Result<()> {
    let reply = reply.error_for_status()?;
    use std::io::Write;
    let mut out = std::io::stdout();
    out.write_all(&reply.body)?;
    if !reply.body.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn looks_like_read(sql: &str) -> bool {
    let first = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(first.as_str(), "select" | "with" | "explain" | "values")
}

async fn sql(args: SqlArgs) -> Result<()> {
    let client = args.target.client()?;
    let params: Vec<Value> = args
        .params
        .iter()
        .map(|p| serde_json::from_str(p).unwrap_or_else(|_| Value::String(p.clone())))
        .collect();
    let body = json!({"sql": args.sql, "params": params});
    let reply = if !args.execute && looks_like_read(&args.sql) {
        client
            .post_json(
                &format!("/v1/sql/query?{}", args.target.read_query()),
                &body,
            )
            .await?
    } else {
        client.post_json("/v1/sql/execute", &body).await?
    };
    print_json(&ok_json(reply)?);
    Ok(())
}

pub(crate) fn write_query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", segment(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

async fn kv(command: KvCommand, target: &Target) -> Result<()> {
    let client = target.client()?;
    match command {
        KvCommand::Get { key } => {
            let reply = client
                .get(&format!("/v1/kv/{}?{}", segment(&key), target.read_query()))
                .await?;
            print_raw(reply)
        }
        KvCommand::Put {
            key,
            value,
            ttl,
            if_revision,
            fence,
        } => {
            let query = write_query(&[
                ("ttl", ttl),
                ("if_revision", if_revision.map(|r| r.to_string())),
                ("fence", fence),
            ]);
            let reply = client
                .put_bytes(
                    &format!("/v1/kv/{}{query}", segment(&key)),
                    value.into_bytes(),
                )
                .await?;
            print_json(&ok_json(reply)?);
            Ok(())
        }
        KvCommand::Del {
            key,
            if_revision,
            fence,
        } => {
            let query = write_query(&[
                ("if_revision", if_revision.map(|r| r.to_string())),
                ("fence", fence),
            ]);
            print_json(&ok_json(
                client
                    .delete(&format!("/v1/kv/{}{query}", segment(&key)))
                    .await?,
            )?);
            Ok(())
        }
        KvCommand::Ls {
            prefix,
            limit,
            after,
        } => {
            let query = write_query(&[
                ("prefix", Some(prefix)),
                ("limit", Some(limit.to_string())),
                ("after", after),
            ]);
            let reply = client
                .get(&format!("/v1/kv{query}&{}", target.read_query()))
                .await?;
            let listing = ok_json(reply)?;
            for key in listing["keys"].as_array().into_iter().flatten() {
                println!("{}", key.as_str().unwrap_or_default());
            }
            Ok(())
        }
    }
}

async fn cache(command: CacheCommand, target: &Target) -> Result<()> {
    let client = target.client()?;
    let path = |ns: &str, key: &str| format!("/v1/cache/{}/{}", segment(ns), segment(key));
    match command {
        CacheCommand::Get { namespace, key } => print_raw(
            client
                .get(&format!(
                    "{}?{}",
                    path(&namespace, &key),
                    target.read_query()
                ))
                .await?,
        ),
        CacheCommand::Put {
            namespace,
            key,
            value,
            ttl,
        } => {
            let query = write_query(&[("ttl", ttl)]);
            let reply = client
                .put_bytes(
                    &format!("{}{query}", path(&namespace, &key)),
                    value.into_bytes(),
                )
                .await?;
            print_json(&ok_json(reply)?);
            Ok(())
        }
        CacheCommand::Del { namespace, key } => {
            print_json(&ok_json(client.delete(&path(&namespace, &key)).await?)?);
            Ok(())
        }
        CacheCommand::Take { namespace, key } => {
            let reply = client
                .send(
                    tandem_client::Method::POST,
                    &format!("{}/take", path(&namespace, &key)),
                    None,
                    "",
                )
                .await?;
            print_raw(reply)
        }
    }
}

async fn lock(command: LockCommand, target: &Target) -> Result<()> {
    let client = target.client()?;
    let (name, action, body) = match command {
        LockCommand::Get { name } => {
            let reply = client
                .get(&format!(
                    "/v1/locks/{}?{}",
                    segment(&name),
                    target.read_query()
                ))
                .await?;
            print_json(&ok_json(reply)?);
            return Ok(());
        }
        LockCommand::Acquire { name, holder, ttl } => {
            (name, "acquire", json!({"holder": holder, "ttl": ttl}))
        }
        LockCommand::Renew {
            name,
            holder,
            token,
            ttl,
        } => (
            name,
            "renew",
            json!({"holder": holder, "token": token, "ttl": ttl}),
        ),
        LockCommand::Release {
            name,
            holder,
            token,
        } => (name, "release", json!({"holder": holder, "token": token})),
    };
    let reply = client
        .post_json(&format!("/v1/locks/{}/{action}", segment(&name)), &body)
        .await?;
    print_json(&ok_json(reply)?);
    Ok(())
}

/// `GET /v1/keys` as tables: one row per published key, the server's own signing key marked;
/// then the key peers, if any.
fn keys_table(answer: &Value) -> String {
    let time = |v: &Value| crate::agents_cli::time_text(v.as_i64()).replace("never", "-");
    let rows = answer["keys"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|key| {
            let signing = key["kid"] == answer["signing_kid"];
            vec![
                key["kid"].as_str().unwrap_or_default().to_string(),
                key["node_id"].to_string(),
                time(&key["published_at_ms"]),
                time(&key["retired_at_ms"]),
                time(&key["remove_at_ms"]),
                if signing { "yes" } else { "" }.to_string(),
            ]
        })
        .collect();
    let mut out = crate::agents_cli::table(
        &[
            "KID",
            "SERVER",
            "PUBLISHED",
            "RETIRED",
            "REMOVED AT",
            "SIGNING",
        ],
        rows,
    );
    let peers = answer["peers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !peers.is_empty() {
        let rows = peers
            .iter()
            .map(|peer| {
                vec![
                    peer["url"].as_str().unwrap_or_default().to_string(),
                    peer["key_count"].to_string(),
                    time(&peer["last_success_ms"]),
                    peer["last_error"].as_str().unwrap_or("-").to_string(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&crate::agents_cli::table(
            &["KEY PEER", "KEYS", "LAST FETCHED", "LAST ERROR"],
            rows,
        ));
    }
    out
}

async fn keys(command: KeysCommand, target: &Target) -> Result<()> {
    let client = target.client()?;
    let reply = match command {
        KeysCommand::List { output } => {
            let answer = ok_json(client.get("/v1/keys").await?)?;
            if output.json {
                print_json(&answer);
            } else {
                print!("{}", keys_table(&answer));
            }
            return Ok(());
        }
        KeysCommand::Jwks => client.get("/.well-known/jwks.json").await?,
        KeysCommand::Rotate => client.post_json("/v1/keys/rotate", &json!({})).await?,
        KeysCommand::Issue { claims, ttl } => {
            let claims: Value = serde_json::from_str(&claims)
                .map_err(|e| anyhow::anyhow!("--claims is not a JSON object: {e}"))?;
            let mut body = json!({ "claims": claims });
            if let Some(ttl) = ttl {
                body["ttl"] = json!(ttl);
            }
            let issued = ok_json(client.post_json("/v1/tokens", &body).await?)?;
            println!("{}", issued["token"].as_str().unwrap_or_default());
            return Ok(());
        }
        KeysCommand::Verify { token } => {
            client
                .post_json("/v1/tokens/verify", &json!({ "token": token }))
                .await?
        }
    };
    print_json(&ok_json(reply)?);
    Ok(())
}

/// How long `cluster add` waits for its answer: the active node waits up to ten minutes for a
/// joining server that keeps answering to catch up (docs/operations.md), and a minute more.
const CLUSTER_ADD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(11 * 60);

async fn cluster(command: ClusterCommand, target: &Target) -> Result<()> {
    let client = || target.client();
    let reply = match command {
        ClusterCommand::Ca { insecure } => return print_api_ca(target, insecure).await,
        ClusterCommand::Add {
            node_id,
            raft_addr,
            api_addr,
        } => {
            let spinner = progress::spinner(&format!(
                "adding node {node_id}: learner, catching up, then voter"
            ));
            let body = json!({ "raft_addr": raft_addr, "api_addr": api_addr });
            let reply = client()?
                .with_request_timeout(CLUSTER_ADD_TIMEOUT)?
                .send(
                    tandem_client::Method::PUT,
                    &format!("/v1/cluster/members/{node_id}"),
                    Some(body.to_string().into_bytes()),
                    "application/json",
                )
                .await;
            spinner.finish_and_clear();
            reply?
        }
        ClusterCommand::Remove { node_id } => {
            client()?
                .delete(&format!("/v1/cluster/members/{node_id}"))
                .await?
        }
    };
    print_json(&ok_json(reply)?);
    Ok(())
}

/// The API CA of the first `--addr`, fetched unverified (`--insecure`) or checked with
/// `--ca-file`.
async fn print_api_ca(target: &Target, insecure: bool) -> Result<()> {
    let pem = if insecure {
        let addr = target.addrs.first().context("give a server with --addr")?;
        tandem_client::fetch_ca_unverified(addr).await?
    } else {
        let reply = target
            .ca
            .client(&target.addrs, None)?
            .get("/v1/cluster/ca")
            .await?;
        String::from_utf8_lossy(&reply.error_for_status()?.body).into_owned()
    };
    print!("{pem}");
    Ok(())
}

async fn snapshot(command: SnapshotCommand) -> Result<()> {
    match command {
        SnapshotCommand::Create(target) => {
            let client = target.client()?;
            let spinner = progress::spinner("building a snapshot on the active server");
            let reply = client
                .send(
                    tandem_client::Method::POST,
                    "/v1/cluster/snapshot",
                    None,
                    "",
                )
                .await;
            spinner.finish_and_clear();
            print_json(&ok_json(reply?)?);
            Ok(())
        }
        SnapshotCommand::Backup { out, target } => {
            let client = target.client()?;
            // Into a file beside the target, renamed when complete: an interrupted download
            // never leaves a file that looks like a backup.
            let partial = out.with_extension("partial");
            let mut file = tokio::fs::File::create(&partial)
                .await
                .with_context(|| format!("cannot create {}", partial.display()))?;
            let bar = progress::bytes(&format!("downloading {}", out.display()));
            let downloaded = client
                .download(
                    &format!("/v1/backup?{}", target.read_query()),
                    &mut file,
                    |done, total| progress::advance(&bar, done, total),
                )
                .await;
            bar.finish_and_clear();
            let (headers, bytes) = match downloaded {
                Ok(done) => done,
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(e.into());
                }
            };
            file.sync_all()
                .await
                .with_context(|| format!("cannot write {}", partial.display()))?;
            std::fs::rename(&partial, &out).with_context(|| {
                format!("cannot move {} to {}", partial.display(), out.display())
            })?;
            let index = headers
                .get("tandem-applied-index")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            eprintln!(
                "wrote {} ({bytes} bytes, up to log index {index})",
                out.display(),
            );
            Ok(())
        }
        SnapshotCommand::Restore { backup, data_dir } => {
            if !backup.is_file() {
                bail!("backup file {} does not exist", backup.display());
            }
            let node_data = ["raft.redb", "state.db", "snapshot"];
            if node_data.iter().any(|name| data_dir.join(name).exists()) {
                bail!(
                    "{} already holds a node's data; restore only into an empty folder (move the old one away first)",
                    data_dir.display()
                );
            }
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            let spinner = progress::spinner(&format!("restoring into {}", data_dir.display()));
            let restored = tandem_server::restore_backup(&backup, &data_dir);
            spinner.finish_and_clear();
            restored?;
            eprintln!(
                "restored {} into {}; restore the same file on every node, then start them all",
                backup.display(),
                data_dir.display()
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_table_marks_the_signing_key_and_lists_key_peers() {
        let answer = json!({
            "signing_kid": "k2",
            "keys": [
                {"kid": "k1", "node_id": 1, "published_at_ms": 0, "retired_at_ms": 1000, "remove_at_ms": 2000},
                {"kid": "k2", "node_id": 1, "published_at_ms": 1000, "retired_at_ms": null, "remove_at_ms": null},
            ],
            "peers": [{"url": "https://idp.example/jwks", "key_count": 0, "last_success_ms": null,
                       "last_error": "timed out"}],
        });
        let text = keys_table(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("KID"), "{text}");
        assert!(
            lines[1].starts_with("k1") && !lines[1].ends_with("yes"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("k2") && lines[2].ends_with("yes"),
            "{text}"
        );
        assert!(lines[4].starts_with("KEY PEER"), "{text}");
        assert!(
            lines[5].starts_with("https://idp.example/jwks") && lines[5].ends_with("timed out"),
            "{text}"
        );
    }
}
