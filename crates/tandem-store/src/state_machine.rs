//! openraft's view of the state: applies committed entries to the [`StateDb`], builds snapshots
//! (a consistent copy of the database file) and installs the ones a leader sends.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tandem_raft::openraft::storage::RaftStateMachine;
use tandem_raft::openraft::{
    AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageIOError,
};
use tandem_raft::write_stages::{self, CommitClock};
use tandem_raft::{
    Entry, LogId, Snapshot, SnapshotFile, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use tokio::sync::Mutex;

use crate::db::StateDb;
use crate::error::StoreError;

const STATE_FILE: &str = "state.db";
const SNAPSHOT_DIR: &str = "snapshot";
const SNAPSHOT_DATA: &str = "current.db";
const SNAPSHOT_META: &str = "current.json";
/// Files that only live while a snapshot is built or received, or a backup is sent; any found
/// at start-up were left by a crash.
const SNAPSHOT_BUILDING: &str = "building.db";
const SNAPSHOT_RECEIVING: &str = "receiving.db";
const BACKUP_PREFIX: &str = "backup-";

fn storage_error(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Message(String);
    StorageIOError::new(
        ErrorSubject::StateMachine,
        verb,
        AnyError::new(&Message(e.to_string())),
    )
    .into()
}

/// Moves the file at `from`, fsynced, to `to`, so that after a crash `to` is either the old
/// file or the new one.
fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::File::open(from)?.sync_all()?;
    std::fs::rename(from, to)?;
    if let Some(dir) = to.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Writes `bytes` to `path` so that after a crash the file is either the old one or the new one.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("partial");
    std::fs::File::create(&temporary)?.write_all(bytes)?;
    rename_durably(&temporary, path)
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The longest pause between two tries of an apply that found the disk full.
const DISK_FULL_RETRY_MAX: Duration = Duration::from_secs(1);

/// Applies `entries`, waiting for room while the disk is full: SQLite rolls the transaction back
/// on SQLITE_FULL, so trying again later is safe, and an error here would stop Raft on this node
/// (and again after every restart, until space returned).
fn apply_when_there_is_room(
    db: &StateDb,
    entries: &[Entry],
) -> Result<Vec<serde_json::Value>, StoreError> {
    let mut pause = Duration::from_millis(10);
    let mut stalled = false;
    loop {
        match db.apply(entries) {
            Err(e) if e.is_disk_full() => {
                if !stalled {
                    stalled = true;
                    tracing::warn!(error = %e, "the disk is full: applying committed entries waits for room");
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(DISK_FULL_RETRY_MAX);
            }
            applied => {
                if stalled {
                    tracing::info!("the disk has room again: applying resumes");
                }
                return applied;
            }
        }
    }
}

/// Where the current snapshot lives: the database copy and its metadata, side by side.
#[derive(Clone)]
struct SnapshotFiles {
    dir: PathBuf,
    /// One snapshot is written or installed at a time.
    busy: Arc<Mutex<()>>,
    /// Tells apart backups taken in the same millisecond.
    backups: Arc<AtomicU64>,
}

impl SnapshotFiles {
    fn data(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_DATA)
    }
    fn meta(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_META)
    }

    /// Removes what a crash left half made: a snapshot being built or received, a backup
    /// being sent, metadata being written.
    fn remove_leftovers(&self) -> Result<(), StoreError> {
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let leftover = name.starts_with(SNAPSHOT_BUILDING)
                || name.starts_with(SNAPSHOT_RECEIVING)
                || name.starts_with(BACKUP_PREFIX)
                || name.ends_with(".partial");
            if leftover {
                remove_if_present(&entry.path())?;
            }
        }
        Ok(())
    }

    fn read_meta(&self) -> Result<Option<SnapshotMeta>, StoreError> {
        match std::fs::read(self.meta()) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        what: "snapshot metadata",
                        detail: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes the database file at `data` the current snapshot, moving it into place, data first
    /// so the metadata never names missing data. The previous snapshot's file is replaced: a
    /// peer still being sent it keeps reading it through its open handle.
    fn save(&self, meta: &SnapshotMeta, data: &Path) -> Result<u64, StoreError> {
        let bytes = std::fs::metadata(data)?.len();
        rename_durably(data, &self.data())?;
        let meta_json = serde_json::to_vec(meta).map_err(|e| StoreError::Corrupt {
            what: "snapshot metadata",
            detail: e.to_string(),
        })?;
        write_durably(&self.meta(), &meta_json)?;
        Ok(bytes)
    }

    /// A name for a backup that no other backup has.
    fn next_backup(&self) -> PathBuf {
        let n = self.backups.fetch_add(1, Ordering::Relaxed);
        let taken_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        self.dir.join(format!("{BACKUP_PREFIX}{taken_ms}-{n}.db"))
    }
}

/// The state machine as openraft drives it. Clones share the database.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<StateDb>,
    snapshots: SnapshotFiles,
    /// When the entries it is asked to apply were committed (see [`StateMachine::timing_commits_by`]).
    commits: CommitClock,
    apply_seconds: metrics::Histogram,
    commit_to_apply_seconds: metrics::Histogram,
}

impl StateMachine {
    /// Opens (or creates) the state in `data_dir`. If the last snapshot is ahead of the
    /// database — the database lost its unsynced tail in a power cut — the snapshot is restored.
    pub fn open(data_dir: &Path) -> Result<StateMachine, StoreError> {
        let dir = data_dir.join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&dir)?;
        let db = StateDb::open(&data_dir.join(STATE_FILE))?;
        let snapshots = SnapshotFiles {
            dir,
            busy: Arc::new(Mutex::new(())),
            backups: Arc::new(AtomicU64::new(0)),
        };
        snapshots.remove_leftovers()?;
        if let Some(meta) = snapshots.read_meta()? {
            let (applied, _) = db.applied_state()?;
            if meta.last_log_id > applied {
                tracing::warn!(
                    snapshot = ?meta.last_log_id, applied = ?applied,
                    "state database is behind the last snapshot; restoring the snapshot"
                );
                db.replace_with(&snapshots.data())?;
            }
        }
        Ok(StateMachine {
            db: Arc::new(db),
            snapshots,
            commits: CommitClock::default(),
            apply_seconds: metrics::histogram!(write_stages::APPLY),
            commit_to_apply_seconds: metrics::histogram!(write_stages::COMMIT_TO_APPLY),
        })
    }

    /// Times the wait between commit and apply by the commits `clock` notes (the Raft log's).
    pub fn timing_commits_by(mut self, clock: CommitClock) -> StateMachine {
        self.commits = clock;
        self
    }

    pub fn db(&self) -> Arc<StateDb> {
        self.db.clone()
    }

    /// A consistent copy of the state in a file open for reading, and the log id it reflects.
    /// The file has no name left on disk: its space is freed when the handle is dropped, however
    /// the download that reads it ends.
    pub fn backup(&self) -> Result<(std::fs::File, Option<LogId>), StoreError> {
        let path = self.snapshots.next_backup();
        let copied = self.db.copy_to(&path).and_then(|()| {
            let applied = StateDb::applied_state_in(&path)?.0;
            Ok((std::fs::File::open(&path)?, applied))
        });
        remove_if_present(&path)?;
        copied
    }

    /// Prepares a backup file to seed a new cluster: its rows stay, its Raft position goes.
    pub fn prepare_restore(backup: &Path, data_dir: &Path) -> Result<(), StoreError> {
        let target = data_dir.join(STATE_FILE);
        std::fs::copy(backup, &target)?;
        StateDb::forget_raft_state(&target)
    }

    async fn blocking<T: Send + 'static>(
        verb: ErrorVerb,
        f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StorageError> {
        match tokio::task::spawn_blocking(f).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(storage_error(verb, e)),
            Err(join) => Err(storage_error(verb, join)),
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let db = self.db.clone();
        Self::blocking(ErrorVerb::Read, move || db.applied_state()).await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<serde_json::Value>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let db = self.db.clone();
        let (commits, apply_seconds, waited_seconds) = (
            self.commits.clone(),
            self.apply_seconds.clone(),
            self.commit_to_apply_seconds.clone(),
        );
        Self::blocking(ErrorVerb::Write, move || {
            // openraft applies up to exactly the index it has just saved as committed.
            let committed = entries.last().map(|e| e.log_id.index);
            if let Some(waited) = committed.and_then(|index| commits.since_committed(index)) {
                waited_seconds.record(waited);
            }
            let started = std::time::Instant::now();
            let applied = apply_when_there_is_room(&db, &entries);
            apply_seconds.record(started.elapsed());
            metrics::counter!("tandem_raft_applied_entries_total").increment(entries.len() as u64);
            applied
        })
        .await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        // Removed first, not truncated: a new file, whatever still holds the old one open.
        let path = self.snapshots.dir.join(SNAPSHOT_RECEIVING);
        let created = async {
            remove_if_present(&path)?;
            SnapshotFile::create(&path).await
        };
        match created.await {
            Ok(file) => Ok(Box::new(file)),
            Err(e) => Err(storage_error(ErrorVerb::Write, e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let _busy = self.snapshots.busy.lock().await;
        let received = snapshot
            .sync_and_close()
            .await
            .map_err(|e| storage_error(ErrorVerb::Write, e))?;
        let db = self.db.clone();
        let files = self.snapshots.clone();
        let meta = meta.clone();
        Self::blocking(ErrorVerb::Write, move || {
            // A file that is not the one this node received into belongs to whoever made it (a
            // snapshot handed over in-process): it is copied in, never moved away.
            let receiving = files.dir.join(SNAPSHOT_RECEIVING);
            if received != receiving {
                std::fs::copy(&received, &receiving)?;
            }
            let bytes = files.save(&meta, &receiving)?;
            db.replace_with(&files.data())?;
            tracing::info!(last_log_id = ?meta.last_log_id, bytes, "installed snapshot");
            metrics::counter!("tandem_raft_snapshots_total", "how" => "installed").increment(1);
            metrics::gauge!("tandem_raft_snapshot_bytes").set(bytes as f64);
            Ok(())
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let _busy = self.snapshots.busy.lock().await;
        let files = self.snapshots.clone();
        let Some(meta) = Self::blocking(ErrorVerb::Read, move || files.read_meta()).await? else {
            return Ok(None);
        };
        let snapshot = SnapshotFile::open(&self.snapshots.data())
            .await
            .map_err(|e| storage_error(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(snapshot),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let _busy = self.snapshots.busy.lock().await;
        let db = self.db.clone();
        let files = self.snapshots.clone();
        let meta = Self::blocking(ErrorVerb::Write, move || {
            // Written by SQLite page by page, never held whole in memory.
            let building = files.dir.join(SNAPSHOT_BUILDING);
            remove_if_present(&building)?;
            db.copy_to(&building)?;
            let (last_log_id, last_membership) = StateDb::applied_state_in(&building)?;
            let taken_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            let meta = SnapshotMeta {
                last_log_id,
                last_membership,
                snapshot_id: format!(
                    "{}-{taken_ms}",
                    last_log_id.map(|id| id.index).unwrap_or_default()
                ),
            };
            let bytes = files.save(&meta, &building)?;
            tracing::info!(last_log_id = ?meta.last_log_id, bytes, "built snapshot");
            metrics::counter!("tandem_raft_snapshots_total", "how" => "built").increment(1);
            metrics::gauge!("tandem_raft_snapshot_bytes").set(bytes as f64);
            Ok(meta)
        })
        .await?;
        let snapshot = SnapshotFile::open(&self.snapshots.data())
            .await
            .map_err(|e| storage_error(ErrorVerb::Read, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(snapshot),
        })
    }
}
