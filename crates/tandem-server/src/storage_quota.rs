//! A full disk is a state, not a crash. As etcd does with its space quota and NOSPACE alarm,
//! writes that would add data are refused early, with 507, while the data folder holds more
//! than `storage_quota` or its file system has less free than `storage_reserve`; reads, deletes,
//! renewals and expiry go on, and writes resume by themselves once a sample finds room again.
//! [`storage_full`] decides; [`sample_storage`] measures the disk now and then.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};
use tandem_store::{Command, StateDb};
use tokio::sync::watch;

use crate::error::ApiError;

/// How often the disk is measured: a `statvfs` and a `stat` of each file in the data folder.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The error code of a write refused because storage is full.
pub const STORAGE_FULL: &str = "storage_full";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageLimits {
    /// Most bytes the data folder may hold; 0 means no quota.
    pub quota: u64,
    /// Least free bytes left on the data folder's file system.
    pub reserve: u64,
}

/// What a sample found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageUse {
    /// Bytes the data folder holds, less the pages the state database has free for reuse.
    pub used: u64,
    /// Bytes free for this process on the data folder's file system.
    pub free: u64,
}

/// Why writes are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageFull {
    Quota { used: u64, quota: u64 },
    Disk { free: u64, reserve: u64 },
}

/// Decides whether storage is full. The quota is checked first: it is the limit an operator
/// chose, and raising it is the remedy to name.
pub fn storage_full(limits: StorageLimits, usage: StorageUse) -> Option<StorageFull> {
    if limits.quota > 0 && usage.used >= limits.quota {
        return Some(StorageFull::Quota {
            used: usage.used,
            quota: limits.quota,
        });
    }
    if usage.free <= limits.reserve {
        return Some(StorageFull::Disk {
            free: usage.free,
            reserve: limits.reserve,
        });
    }
    None
}

impl StorageFull {
    pub fn cause(&self) -> &'static str {
        match self {
            StorageFull::Quota { .. } => "quota",
            StorageFull::Disk { .. } => "disk",
        }
    }

    /// What is full and what to do, for the error a refused write gets.
    pub fn message(&self, data_dir: &Path) -> String {
        let dir = data_dir.display();
        let then = "writes are refused until there is room again (reads, deletes and lease renewals still work)";
        match self {
            StorageFull::Quota { used, quota } => format!(
                "storage quota exceeded: the data folder {dir} holds {}, storage_quota is {}; {then}: delete keys or rows, or raise storage_quota (TANDEM_STORAGE_QUOTA)",
                mib(*used),
                mib(*quota)
            ),
            StorageFull::Disk { free, reserve } => format!(
                "disk nearly full: the file system of the data folder {dir} has {} free, storage_reserve is {}; {then}: free space on that disk or grow it, delete keys or rows and take a snapshot (`tandem snapshot`)",
                mib(*free),
                mib(*reserve)
            ),
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// The last sample and what was decided from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStatus {
    /// `None` until the first sample.
    pub usage: Option<StorageUse>,
    pub full: Option<StorageFull>,
}

/// Lets writes through or refuses them, from the last sample. Cheap to clone.
#[derive(Clone)]
pub struct StorageGuard(Arc<GuardParts>);

struct GuardParts {
    data_dir: PathBuf,
    limits: StorageLimits,
    status: watch::Sender<StorageStatus>,
}

impl StorageGuard {
    pub fn new(data_dir: PathBuf, limits: StorageLimits) -> StorageGuard {
        metrics::gauge!("tandem_storage_quota_bytes").set(limits.quota as f64);
        metrics::gauge!("tandem_storage_reserve_bytes").set(limits.reserve as f64);
        metrics::gauge!("tandem_storage_full").set(0.0);
        // Served at 0 from the start, so that a rate over them works before the first refusal.
        for cause in ["quota", "disk"] {
            metrics::counter!("tandem_storage_refused_writes_total", "cause" => cause).increment(0);
        }
        StorageGuard(Arc::new(GuardParts {
            data_dir,
            limits,
            status: watch::Sender::new(StorageStatus::default()),
        }))
    }

    /// Refuses `command` with 507 when storage is full and the command may add data.
    pub fn admit(&self, command: &Command) -> Result<(), ApiError> {
        let Some(full) = self.0.status.borrow().full else {
            return Ok(());
        };
        if !command.adds_data() {
            return Ok(());
        }
        metrics::counter!("tandem_storage_refused_writes_total", "cause" => full.cause())
            .increment(1);
        Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            STORAGE_FULL,
            full.message(&self.0.data_dir),
        ))
    }

    /// Takes a new sample: decides, updates the gauges, and logs when the state changes.
    pub fn record(&self, usage: StorageUse) {
        let full = storage_full(self.0.limits, usage);
        let was = self.0.status.borrow().full;
        match (was, full) {
            (None, Some(now)) => {
                tracing::warn!(cause = now.cause(), "{}", now.message(&self.0.data_dir))
            }
            (Some(_), None) => tracing::info!(
                used_bytes = usage.used,
                free_bytes = usage.free,
                "storage has room again; writes are accepted"
            ),
            _ => {}
        }
        metrics::gauge!("tandem_storage_used_bytes").set(usage.used as f64);
        metrics::gauge!("tandem_storage_free_bytes").set(usage.free as f64);
        metrics::gauge!("tandem_storage_full").set(f64::from(u8::from(full.is_some())));
        self.0.status.send_replace(StorageStatus {
            usage: Some(usage),
            full,
        });
    }

    pub fn status(&self) -> StorageStatus {
        *self.0.status.borrow()
    }

    /// The state as `/v1/sys/health` and `/healthz` show it.
    pub fn report(&self) -> Value {
        let status = self.status();
        json!({
            "full": status.full.is_some(),
            "cause": status.full.map(|f| f.cause()),
            "used_bytes": status.usage.map(|u| u.used),
            "free_bytes": status.usage.map(|u| u.free),
            "quota_bytes": self.0.limits.quota,
            "reserve_bytes": self.0.limits.reserve,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.0.data_dir
    }
}

/// Measures the data folder: the bytes its files hold (the state database's free pages left
/// out) and the bytes free on its file system.
pub fn measure(data_dir: &Path, db: &StateDb) -> std::io::Result<StorageUse> {
    let free = tandem_raft::free_bytes(data_dir)?;
    let files = folder_bytes(data_dir)?;
    let reusable = db.reusable_bytes().unwrap_or(0);
    Ok(StorageUse {
        used: files.saturating_sub(reusable),
        free,
    })
}

/// The sum of the sizes of the files under `dir`; symbolic links are not followed, and files
/// that vanish while it looks (a snapshot being replaced) count as empty.
fn folder_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && folder != dir => continue,
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                folders.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
}

/// Samples the disk every [`SAMPLE_EVERY`] until `stopped`.
pub async fn sample_storage(
    guard: StorageGuard,
    db: Arc<StateDb>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        let (dir, db_now) = (guard.data_dir().to_path_buf(), db.clone());
        match tokio::task::spawn_blocking(move || measure(&dir, &db_now)).await {
            Ok(Ok(usage)) => {
                failing = false;
                guard.record(usage);
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %e, data_dir = %guard.data_dir().display(), "cannot measure the data folder's storage; keeping the last sample");
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn limits(quota: u64, reserve: u64) -> StorageLimits {
        StorageLimits { quota, reserve }
    }

    fn usage(used: u64, free: u64) -> StorageUse {
        StorageUse { used, free }
    }

    #[test]
    fn room_under_the_quota_and_above_the_reserve() {
        assert_eq!(
            storage_full(limits(100 * MIB, 10 * MIB), usage(50 * MIB, 500 * MIB)),
            None
        );
    }

    #[test]
    fn the_quota_is_reached_at_its_size() {
        assert_eq!(
            storage_full(limits(100 * MIB, 10 * MIB), usage(100 * MIB, 500 * MIB)),
            Some(StorageFull::Quota {
                used: 100 * MIB,
                quota: 100 * MIB
            })
        );
        assert_eq!(
            storage_full(limits(100 * MIB, 10 * MIB), usage(100 * MIB - 1, 500 * MIB)),
            None
        );
    }

    #[test]
    fn a_zero_quota_is_no_quota() {
        assert_eq!(
            storage_full(limits(0, 10 * MIB), usage(u64::MAX, 500 * MIB)),
            None
        );
    }

    #[test]
    fn the_disk_is_full_at_the_reserve() {
        assert_eq!(
            storage_full(limits(0, 10 * MIB), usage(MIB, 10 * MIB)),
            Some(StorageFull::Disk {
                free: 10 * MIB,
                reserve: 10 * MIB
            })
        );
        assert_eq!(
            storage_full(limits(0, 10 * MIB), usage(MIB, 10 * MIB + 1)),
            None
        );
        // Without a reserve, only a disk with nothing free is full.
        assert_eq!(
            storage_full(limits(0, 0), usage(MIB, 0)),
            Some(StorageFull::Disk {
                free: 0,
                reserve: 0
            })
        );
        assert_eq!(storage_full(limits(0, 0), usage(MIB, 1)), None);
    }

    #[test]
    fn the_quota_is_named_before_the_disk() {
        let full = storage_full(limits(100 * MIB, 10 * MIB), usage(200 * MIB, MIB));
        assert_eq!(full.map(|f| f.cause()), Some("quota"));
    }

    #[test]
    fn messages_name_the_cause_the_setting_and_the_remedy() {
        let dir = Path::new("/var/lib/tandem");
        let quota = StorageFull::Quota {
            used: 101 * MIB,
            quota: 100 * MIB,
        }
        .message(dir);
        assert!(quota.contains("storage quota exceeded"), "{quota}");
        assert!(quota.contains("/var/lib/tandem"), "{quota}");
        assert!(quota.contains("storage_quota is 100.0 MiB"), "{quota}");
        assert!(quota.contains("raise storage_quota"), "{quota}");
        let disk = StorageFull::Disk {
            free: 3 * MIB,
            reserve: 16 * MIB,
        }
        .message(dir);
        assert!(disk.contains("disk nearly full"), "{disk}");
        assert!(disk.contains("3.0 MiB free"), "{disk}");
        assert!(disk.contains("storage_reserve is 16.0 MiB"), "{disk}");
    }

    #[test]
    fn the_guard_refuses_what_adds_data_while_full_and_recovers() {
        let guard = StorageGuard::new("/data".into(), limits(100 * MIB, 10 * MIB));
        let acquire = Command::LockAcquire {
            name: "job".into(),
            holder: "a".into(),
            ttl_ms: 1000,
        };
        let expire = Command::Expire;
        assert!(
            guard.admit(&acquire).is_ok(),
            "nothing sampled yet: no refusal"
        );
        guard.record(usage(150 * MIB, 500 * MIB));
        let refused = guard.admit(&acquire).unwrap_err();
        assert_eq!(refused.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(refused.code, STORAGE_FULL);
        assert!(guard.admit(&expire).is_ok());
        assert_eq!(guard.report()["cause"], "quota");
        guard.record(usage(50 * MIB, 500 * MIB));
        assert!(guard.admit(&acquire).is_ok());
        assert_eq!(guard.report()["full"], false);
    }

    #[test]
    fn folder_bytes_adds_up_files_in_sub_folders() {
        let dir = std::env::temp_dir().join(format!("tandem-folder-bytes-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("snapshot")).unwrap();
        std::fs::write(dir.join("a"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.join("snapshot").join("b"), vec![0u8; 24]).unwrap();
        let total = folder_bytes(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(total.unwrap(), 1024);
    }
}
