//! A real PostgreSQL server for one test: `initdb` in a temporary folder, then `postgres` on a
//! free port of 127.0.0.1, with trust authentication for the `postgres` user. PostgreSQL refuses
//! to run as root, so when the test runs as root (as CI does) both run as the `postgres` user
//! that Debian's package creates. The server can be killed and started again on the same data,
//! as a database restart in production would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::process::free_ports;
use crate::wait::{wait_until, DEADLINE};

/// Where Debian installs PostgreSQL's programs, one folder per major version, off PATH.
const DEBIAN_POSTGRES_LIB: &str = "/usr/lib/postgresql";
/// The unprivileged user PostgreSQL runs as when the test runs as root.
const POSTGRES_USER: &str = "postgres";
/// What the server logs once it accepts connections.
const READY_LINE: &str = "database system is ready to accept connections";

/// The folder with `initdb` and `postgres`: the one on PATH, else Debian's newest version.
fn postgres_bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
    });
    if let Some(dir) = on_path {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_POSTGRES_LIB)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed: no initdb and postgres on PATH or in {DEBIAN_POSTGRES_LIB}/*/bin (apt-get install postgresql, or run scripts/test, which installs it)"
        )
    })
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A numeric id of the `postgres` user (`-u`) or its group (`-g`).
fn postgres_id(flag: &str) -> u32 {
    let output = Command::new("id")
        .args([flag, POSTGRES_USER])
        .output()
        .unwrap_or_else(|e| panic!("cannot run id: {e}"));
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!("there is no {POSTGRES_USER} user to run PostgreSQL as (PostgreSQL refuses root); install Debian's postgresql package")
        })
}

/// A command that runs `program` as the user PostgreSQL accepts.
fn command_as_postgres_user(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                &format!("--reuid={}", postgres_id("-u")),
                &format!("--regid={}", postgres_id("-g")),
                "--clear-groups",
                "--",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

pub struct PostgresServer {
    /// Holds the data folder, the socket folder and the log; removed when the server is dropped.
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PostgresServer {
    /// Creates a database cluster and starts a server on it; answers once it accepts
    /// connections.
    pub async fn start() -> PostgresServer {
        let dir = TempDir::new().expect("a temporary folder for PostgreSQL");
        if running_as_root() {
            std::os::unix::fs::chown(dir.path(), Some(postgres_id("-u")), Some(postgres_id("-g")))
                .expect("give the PostgreSQL folder to the postgres user");
        }
        let bin = postgres_bin_dir();
        let output = command_as_postgres_user(&bin.join("initdb"))
            .args([
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
            ])
            .args(["--no-sync", "--pgdata"])
            .arg(dir.path().join("data"))
            .output()
            .expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let port = free_ports(1).expect("a free port")[0];
        let mut server = PostgresServer {
            dir,
            bin,
            port,
            child: None,
        };
        server.start_again().await;
        server
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Starts the server on the data it had; answers once it accepts connections.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "PostgreSQL is already running");
        let log_path = self.log_path();
        let _ = std::fs::remove_file(&log_path);
        let log = std::fs::File::create(&log_path).expect("create the PostgreSQL log");
        if running_as_root() {
            std::os::unix::fs::chown(&log_path, Some(postgres_id("-u")), None)
                .expect("give the log to the postgres user");
        }
        let child = command_as_postgres_user(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            // Tests start many servers; durability across a machine crash is not under test.
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let log_path = self.log_path();
        wait_until(DEADLINE, "PostgreSQL to accept connections", async || {
            std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains(READY_LINE))
        })
        .await;
    }

    /// A connection URL for the `postgres` superuser and its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once, as a crash would (SIGQUIT: every backend exits without a
    /// checkpoint, and the next start recovers from the write-ahead log).
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGQUIT);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's log so far, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.crash();
    }
}
