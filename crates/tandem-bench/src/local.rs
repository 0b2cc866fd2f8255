//! Processes on this machine, each with its own arguments and log file in one folder: started,
//! stopped with a signal, started again, and killed when dropped so that nothing outlives its
//! owner. Behind `tandem bench failover` (a 3-node cluster of this binary or of etcd) and
//! `tandem dev` (servers and agents of this binary).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
pub use tandem_testkit::free_ports;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StopSignal {
    /// A crash: SIGKILL
    Kill,
    /// A graceful stop: SIGTERM (the active node hands over before exiting)
    Term,
}

/// Where the processes keep their data and logs: a temporary folder, removed with the
/// processes, or one that stays.
pub enum Folder {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Folder {
    /// A new temporary folder named `prefix...`.
    pub fn temporary(prefix: &str) -> Result<Folder> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .context("cannot make a temporary folder")?;
        Ok(Folder::Temporary(dir))
    }

    /// `path`, made if missing; with `fresh`, it must not exist yet.
    pub fn kept(path: &Path, fresh: bool) -> Result<Folder> {
        if fresh && path.exists() {
            bail!("{} already exists; name a new folder", path.display());
        }
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot make the folder {}", path.display()))?;
        Ok(Folder::Kept(path.to_path_buf()))
    }

    pub fn path(&self) -> &Path {
        match self {
            Folder::Temporary(dir) => dir.path(),
            Folder::Kept(path) => path,
        }
    }
}

/// One process to run: its name (which names its log file) and its arguments.
struct Spec {
    name: String,
    args: Vec<String>,
}

/// Processes of one program, logging to `<folder>/<name>.log` (appended across restarts).
pub struct Processes {
    program: PathBuf,
    dir: Folder,
    /// `TANDEM_LOG_LEVEL` for every process, when set.
    log_level: Option<&'static str>,
    specs: Vec<Spec>,
    children: Vec<Option<Child>>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Processes {
    pub fn new(program: PathBuf, dir: Folder, log_level: Option<&'static str>) -> Processes {
        Processes {
            program,
            dir,
            log_level,
            specs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Adds a process (not started yet); answers its index.
    pub fn add(&mut self, name: impl Into<String>, args: Vec<String>) -> usize {
        self.specs.push(Spec {
            name: name.into(),
            args,
        });
        self.children.push(None);
        self.specs.len() - 1
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the folder after the processes are gone, even a temporary one (to read the logs
    /// of a failure); answers where it is.
    pub fn keep_folder(&mut self) -> PathBuf {
        let placeholder = Folder::Kept(PathBuf::new());
        let path = match std::mem::replace(&mut self.dir, placeholder) {
            Folder::Temporary(dir) => dir.keep(),
            Folder::Kept(path) => path,
        };
        self.dir = Folder::Kept(path.clone());
        path
    }

    pub fn name(&self, i: usize) -> &str {
        &self.specs[i].name
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.specs[i].name))
    }

    /// The process id of process `i` while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    /// Starts process `i`.
    pub fn spawn(&mut self, i: usize) -> Result<()> {
        let log_path = self.log_path(i);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut command = Command::new(&self.program);
        // Settings in the caller's environment are not theirs: each gets its own as flags.
        for (key, _) in std::env::vars() {
            if key.starts_with("TANDEM_") {
                command.env_remove(key);
            }
        }
        // A process group of its own: a terminal's Ctrl-C reaches the owner alone, which then
        // stops every process in order.
        command
            .process_group(0)
            .args(&self.specs[i].args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(level) = self.log_level {
            command.env("TANDEM_LOG_LEVEL", level);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// Starts every process added.
    pub fn spawn_all(&mut self) -> Result<()> {
        for i in 0..self.specs.len() {
            self.spawn(i)?;
        }
        Ok(())
    }

    /// Stops process `i` with `signal` and waits until it has exited (at once if it already
    /// has).
    pub fn stop(&mut self, i: usize, signal: StopSignal) -> Result<()> {
        let Some(mut child) = self.children[i].take() else {
            bail!("{} is not running", self.specs[i].name);
        };
        if child.try_wait()?.is_none() {
            let pid = Pid::from_raw(i32::try_from(child.id())?);
            let signal = match signal {
                StopSignal::Kill => Signal::SIGKILL,
                StopSignal::Term => Signal::SIGTERM,
            };
            match kill(pid, signal) {
                // It exited after the look above.
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => return Err(e.into()),
            }
            child.wait()?;
        }
        Ok(())
    }

    /// Stops every running process with `signal`, the last added first.
    pub fn stop_all(&mut self, signal: StopSignal) -> Result<()> {
        for i in (0..self.specs.len()).rev() {
            if self.children[i].is_some() {
                self.stop(i, signal)?;
            }
        }
        Ok(())
    }

    /// A process that has exited on its own (its index), with its status; it counts as not
    /// running from then on, so each exit is answered once.
    pub fn exited(&mut self) -> Option<(usize, std::process::ExitStatus)> {
        let (i, status) = self
            .children
            .iter_mut()
            .enumerate()
            .find_map(|(i, child)| Some((i, child.as_mut()?.try_wait().ok()??)))?;
        self.children[i] = None;
        Some((i, status))
    }

    /// How many processes run.
    pub fn running(&self) -> usize {
        self.children.iter().flatten().count()
    }
}

/// The `tandem server` arguments of node `i` (0-based) of a cluster whose node `j` has its
/// cluster port at `cluster[j]` and its API at `api[j]`, with its data in `<dir>/n<id>`.
pub fn server_args(
    i: usize,
    cluster: &[String],
    api: &[String],
    dir: &Path,
    secret_raft: &str,
    secret_api: &str,
) -> Vec<String> {
    let nodes: Vec<String> = cluster
        .iter()
        .zip(api)
        .enumerate()
        .map(|(j, (cluster, api))| format!("{} {cluster} {api}", j + 1))
        .collect();
    vec![
        "server".into(),
        "--node-id".into(),
        (i + 1).to_string(),
        "--nodes".into(),
        nodes.join("\n"),
        "--data-dir".into(),
        dir.join(format!("n{}", i + 1)).display().to_string(),
        "--secret-raft".into(),
        secret_raft.into(),
        "--secret-api".into(),
        secret_api.into(),
    ]
}
