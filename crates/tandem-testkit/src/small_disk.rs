//! A small disk for a test to fill: a tmpfs of a fixed size mounted over a folder (a node's data
//! folder, while the node is stopped), keeping what the folder held. Needs root, as the fault
//! suite has; unmounted when dropped, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SmallDisk {
    path: PathBuf,
}

/// Runs a command that must succeed; panics with its output otherwise.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl SmallDisk {
    /// Whether this process may mount file systems (it runs as root).
    pub fn can_mount() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Mounts a tmpfs of `size` (as `mount` spells it: `48m`) over `path`, with the files
    /// `path` held copied onto it.
    pub fn mount_over(path: &Path, size: &str) -> SmallDisk {
        let held = tempfile::tempdir().expect("a temporary folder");
        let from = format!("{}/.", path.display());
        let kept = format!("{}/.", held.path().display());
        run("cp", &["-a", &from, &kept]);
        let options = format!("size={size},mode=0700");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &options,
                "tandem-test",
                &path.display().to_string(),
            ],
        );
        let disk = SmallDisk {
            path: path.to_path_buf(),
        };
        run("cp", &["-a", &kept, &from]);
        disk
    }

    /// Gives the file system a new size, as a bigger disk would.
    pub fn resize(&self, size: &str) {
        let options = format!("remount,size={size}");
        run("mount", &["-o", &options, &self.path.display().to_string()]);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a server that still has files open there must not keep the mount alive.
        let unmounted = Command::new("umount")
            .args(["-l", &self.path.display().to_string()])
            .status();
        if !matches!(unmounted, Ok(status) if status.success()) {
            eprintln!("tandem-testkit: cannot unmount {}", self.path.display());
        }
    }
}
