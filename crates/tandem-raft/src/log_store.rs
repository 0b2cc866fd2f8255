//! The Raft log and vote, kept in redb. Appends return at once; one writer thread takes every
//! write that is waiting — appends, votes, truncations — into one transaction committed with
//! `Durability::Immediate` (one fsync: group commit), and only then tells openraft the entries
//! are flushed, so an acknowledged write survives a crash of the process or the machine.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::write_stages::{self, CommitClock};
use crate::{Entry, LogId, NodeId, StorageError, TypeConfig};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const PURGED_KEY: &str = "last_purged";

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("cannot open the Raft log at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("the Raft log at {path} is unreadable: {source}")]
    Init {
        path: String,
        #[source]
        source: redb::Error,
    },
    #[error("cannot start the writer of the Raft log at {path}: {source}")]
    Writer {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Entries appended but not yet on disk, by index: readers see them before the writer has
/// flushed them, as openraft requires of `append`.
type Unflushed = Arc<Mutex<BTreeMap<u64, Entry>>>;

/// A log write (transaction and fsync) this slow is worth a warning: it is more than twice a
/// default heartbeat, and every commit waits for it.
const SLOW_LOG_WRITE: Duration = Duration::from_millis(250);

/// At most this many writes go into one transaction, to bound its size.
const MAX_WRITES_PER_COMMIT: usize = 4096;

/// A write the writer thread carries out, in the order it was asked for.
enum LogWrite {
    Append {
        entries: Vec<(LogId, Vec<u8>)>,
        flushed: LogFlushed<TypeConfig>,
        /// When Raft handed the entries over, for the log-append stage of a write.
        appended_at: Instant,
    },
    Meta {
        key: &'static str,
        bytes: Vec<u8>,
        /// False for hints whose loss is harmless: they ride along with the next fsync.
        durable: bool,
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
    /// Removes the entries from this index on.
    Truncate {
        from: u64,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Removes the entries up to and including this one, and remembers it as the last purged.
    Purge {
        upto: u64,
        last_purged: Vec<u8>,
        done: oneshot::Sender<Result<(), String>>,
    },
}

impl LogWrite {
    fn durable(&self) -> bool {
        !matches!(self, LogWrite::Meta { durable: false, .. })
    }
}

/// Free space a commit leaves on the log's file system beyond twice the bytes it writes: room
/// for the pages redb copies and for the file to grow.
const LOG_WRITE_HEADROOM: u64 = 4 << 20;
/// The longest pause between two looks at a file system that had no room for a commit.
const NO_ROOM_PAUSE_MAX: Duration = Duration::from_secs(1);

impl LogWrite {
    fn bytes(&self) -> u64 {
        match self {
            LogWrite::Append { entries, .. } => {
                entries.iter().map(|(_, bytes)| bytes.len() as u64).sum()
            }
            LogWrite::Meta { bytes, .. }
            | LogWrite::Purge {
                last_purged: bytes, ..
            } => bytes.len() as u64,
            LogWrite::Truncate { .. } => 0,
        }
    }
}

/// Bytes free for this process (not counting blocks kept for root) on the file system that
/// holds `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stats = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(stats
        .blocks_available()
        .saturating_mul(stats.fragment_size()))
}

/// Waits until the file system of `dir` has room for a commit of `bytes`. redb refuses every
/// later operation once a write has failed, and openraft stops on a failed log write: a node
/// whose disk filled would stop, and stop again after each restart. Waiting instead leaves it a
/// follower that lags (or a leader that commits nothing) until space returns.
fn wait_for_room(dir: &Path, bytes: u64) {
    let needed = bytes.saturating_mul(2).saturating_add(LOG_WRITE_HEADROOM);
    let mut pause = Duration::from_millis(10);
    let mut stalled = false;
    // A file system that cannot be asked is not waited for: the commit will tell.
    while let Some(free) = free_bytes(dir).ok().filter(|free| *free < needed) {
        if !stalled {
            stalled = true;
            tracing::warn!(
                free_bytes = free,
                needed_bytes = needed,
                dir = %dir.display(),
                "no room on disk for the Raft log: its writes wait until space is freed"
            );
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(NO_ROOM_PAUSE_MAX);
    }
    if stalled {
        tracing::info!(dir = %dir.display(), "the disk has room again: Raft log writes resume");
    }
}

/// The writer thread: waits for a write, takes every other one already waiting, commits them in
/// one transaction and then reports each one's outcome. Ends when every [`LogStore`] is dropped.
fn run_writer(
    db: Arc<Database>,
    dir: PathBuf,
    unflushed: Unflushed,
    writes: mpsc::Receiver<LogWrite>,
    append_seconds: metrics::Histogram,
) {
    // Served from the start, so an alert on its increase has a series to watch.
    let slow_writes = metrics::counter!("tandem_raft_slow_log_writes_total");
    slow_writes.increment(0);
    while let Ok(first) = writes.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_WRITES_PER_COMMIT {
            match writes.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        wait_for_room(&dir, batch.iter().map(LogWrite::bytes).sum());
        let started = Instant::now();
        let result = commit(&db, &batch).map_err(|e| e.to_string());
        let took = started.elapsed();
        metrics::histogram!("tandem_raft_log_write_seconds").record(took);
        if took >= SLOW_LOG_WRITE {
            slow_writes.increment(1);
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                writes = batch.len(),
                "writing the Raft log to disk was slow; the disk is slow or overloaded, every commit waits for it, and a leader this slow may lose its role"
            );
        }
        let appended: usize = batch
            .iter()
            .map(|write| match write {
                LogWrite::Append { entries, .. } => entries.len(),
                _ => 0,
            })
            .sum();
        metrics::counter!("tandem_raft_log_entries_written_total").increment(appended as u64);
        if result.is_ok() {
            let mut unflushed = lock(&unflushed);
            for write in &batch {
                if let LogWrite::Append { entries, .. } = write {
                    for (log_id, _) in entries {
                        // A truncation may have replaced the entry at this index since.
                        if unflushed.get(&log_id.index).map(|e| e.log_id) == Some(*log_id) {
                            unflushed.remove(&log_id.index);
                        }
                    }
                }
            }
        }
        for write in batch {
            match write {
                LogWrite::Append {
                    flushed,
                    appended_at,
                    ..
                } => {
                    append_seconds.record(appended_at.elapsed());
                    flushed.log_io_completed(result.clone().map_err(std::io::Error::other))
                }
                LogWrite::Meta { done, .. } => {
                    if let Some(done) = done {
                        let _ = done.send(result.clone());
                    }
                }
                LogWrite::Truncate { done, .. } | LogWrite::Purge { done, .. } => {
                    let _ = done.send(result.clone());
                }
            }
        }
    }
}

fn commit(db: &Database, batch: &[LogWrite]) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    let durability = if batch.iter().any(LogWrite::durable) {
        Durability::Immediate
    } else {
        Durability::None
    };
    txn.set_durability(durability)?;
    {
        let mut logs = txn.open_table(LOGS)?;
        let mut meta = txn.open_table(META)?;
        for write in batch {
            match write {
                LogWrite::Append { entries, .. } => {
                    for (log_id, bytes) in entries {
                        logs.insert(log_id.index, bytes.as_slice())?;
                    }
                }
                LogWrite::Meta { key, bytes, .. } => {
                    meta.insert(*key, bytes.as_slice())?;
                }
                LogWrite::Truncate { from, .. } => {
                    logs.retain_in(*from.., |_, _| false)?;
                }
                LogWrite::Purge {
                    upto, last_purged, ..
                } => {
                    meta.insert(PURGED_KEY, last_purged.as_slice())?;
                    logs.retain_in(..=*upto, |_, _| false)?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

fn lock(unflushed: &Unflushed) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
    // The map holds no invariant a panicking holder could break half-way.
    unflushed.lock().unwrap_or_else(|p| p.into_inner())
}

/// The durable Raft log. Clones share one database and one writer thread.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    unflushed: Unflushed,
    writer: mpsc::Sender<LogWrite>,
    /// The last committed index this node knows of, for status reports; `u64::MAX` means none.
    committed_index: Arc<AtomicU64>,
    /// When each recent commit was saved, for the state machine's commit-to-apply stage.
    commits: CommitClock,
}

/// Memory redb may keep for pages of the log. Its default (1 GiB) lets a long-running server's
/// memory grow with every entry it ever wrote, though only the entries not yet in a snapshot
/// are read again, nearly all of them just after they were written: a few MiB hold those. At
/// 16 MiB every server held about 12 MiB more after a million writes, for no measurable gain in
/// write throughput (docs/benchmarks.md, "Large state").
const LOG_CACHE_BYTES: usize = 4 * 1024 * 1024;

impl LogStore {
    pub fn open(path: &Path) -> Result<Self, LogStoreError> {
        let db = Database::builder()
            .set_cache_size(LOG_CACHE_BYTES)
            .create(path)
            .map_err(|source| LogStoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let init = || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            txn.open_table(LOGS)?;
            txn.open_table(META)?;
            txn.commit()?;
            Ok(())
        };
        init().map_err(|source| LogStoreError::Init {
            path: path.display().to_string(),
            source,
        })?;
        let db = Arc::new(db);
        let unflushed = Unflushed::default();
        let (writer, writes) = mpsc::channel();
        {
            let (db, unflushed) = (db.clone(), unflushed.clone());
            // Taken once: the writer thread records without looking the histogram up each time.
            let append_seconds = metrics::histogram!(write_stages::LOG_APPEND);
            // The folder, not the file: statvfs asks about the file system that holds it.
            let dir = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            };
            std::thread::Builder::new()
                .name("raft-log-writer".into())
                .spawn(move || run_writer(db, dir, unflushed, writes, append_seconds))
                .map_err(|source| LogStoreError::Writer {
                    path: path.display().to_string(),
                    source,
                })?;
        }
        let store = LogStore {
            db,
            unflushed,
            writer,
            committed_index: Arc::new(AtomicU64::new(u64::MAX)),
            commits: CommitClock::default(),
        };
        if let Ok(Some(committed)) = store.read_meta::<LogId>(COMMITTED_KEY) {
            store
                .committed_index
                .store(committed.index, Ordering::Relaxed);
        }
        Ok(store)
    }

    /// The highest log index known to be committed, as last saved by this node.
    pub fn committed_index(&self) -> Option<u64> {
        match self.committed_index.load(Ordering::Relaxed) {
            u64::MAX => None,
            index => Some(index),
        }
    }

    /// When recent commits were saved; the state machine reads it to time commit → apply.
    pub fn commit_clock(&self) -> CommitClock {
        self.commits.clone()
    }

    /// The id of the last entry in the log (or of the last purged one when the log is empty).
    pub async fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        Ok(self.clone().get_log_state().await?.last_log_id)
    }

    /// True when this node has never voted nor stored an entry: it has never been part of a
    /// cluster (or its data folder was wiped).
    pub fn is_empty(&self) -> Result<bool, StorageError> {
        let vote: Option<Vote<NodeId>> = self.read_meta(VOTE_KEY)?;
        let purged: Option<LogId> = self.read_meta(PURGED_KEY)?;
        let unflushed = lock(&self.unflushed).is_empty();
        let txn = self.db.begin_read().map_err(read_err)?;
        let logs = txn.open_table(LOGS).map_err(read_err)?;
        let no_logs = logs.first().map_err(read_err)?.is_none();
        Ok(vote.is_none() && purged.is_none() && unflushed && no_logs)
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(META).map_err(read_err)?;
        match table.get(key).map_err(read_err)? {
            Some(bytes) => Ok(Some(
                crate::wire::decode_request(bytes.value()).map_err(read_err)?,
            )),
            None => Ok(None),
        }
    }

    /// Hands `write` to the writer thread.
    fn queue(&self, subject: &ErrorSubject<NodeId>, write: LogWrite) -> Result<(), StorageError> {
        self.writer.send(write).map_err(|_| {
            StorageIOError::new(
                subject.clone(),
                ErrorVerb::Write,
                AnyError::error("the Raft log writer has stopped"),
            )
            .into()
        })
    }

    /// Hands `write` to the writer thread and waits until it is on disk.
    async fn write_and_wait(
        &self,
        subject: ErrorSubject<NodeId>,
        write: impl FnOnce(oneshot::Sender<Result<(), String>>) -> LogWrite,
    ) -> Result<(), StorageError> {
        let (done, result) = oneshot::channel();
        self.queue(&subject, write(done))?;
        let outcome = match result.await {
            Ok(outcome) => outcome,
            Err(_) => Err("the Raft log writer has stopped".into()),
        };
        outcome
            .map_err(|e| StorageIOError::new(subject, ErrorVerb::Write, AnyError::error(e)).into())
    }

    fn encode<T: serde::Serialize>(
        subject: &ErrorSubject<NodeId>,
        value: &T,
    ) -> Result<Vec<u8>, StorageError> {
        crate::wire::encode_request(value).map_err(|e| {
            StorageIOError::new(subject.clone(), ErrorVerb::Write, AnyError::new(&e)).into()
        })
    }
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::<NodeId>::new(ErrorSubject::Logs, ErrorVerb::Read, AnyError::new(&e)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => Bound::Included(i),
            Bound::Excluded(&i) => Bound::Excluded(i),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(i),
            Bound::Excluded(&i) => Bound::Excluded(i),
            Bound::Unbounded => Bound::Unbounded,
        };
        // Unflushed entries first: the writer removes them only once they are in the database,
        // so each entry is found in one place or the other.
        let unflushed: Vec<Entry> = lock(&self.unflushed)
            .range((start, end))
            .map(|(_, entry)| entry.clone())
            .collect();
        let txn = self.db.begin_read().map_err(read_err)?;
        let logs = txn.open_table(LOGS).map_err(read_err)?;
        let mut entries = BTreeMap::new();
        for item in logs.range::<u64>((start, end)).map_err(read_err)? {
            let (index, bytes) = item.map_err(read_err)?;
            let entry: Entry = crate::wire::decode_request(bytes.value()).map_err(read_err)?;
            entries.insert(index.value(), entry);
        }
        entries.extend(unflushed.into_iter().map(|e| (e.log_id.index, e)));
        Ok(entries.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(PURGED_KEY)?;
        // The unflushed entries, when there are any, are the log's tail.
        let last_unflushed = lock(&self.unflushed)
            .last_key_value()
            .map(|(_, e)| e.log_id);
        let last = match last_unflushed {
            Some(log_id) => Some(log_id),
            None => {
                let txn = self.db.begin_read().map_err(read_err)?;
                let logs = txn.open_table(LOGS).map_err(read_err)?;
                let last_bytes = logs
                    .last()
                    .map_err(read_err)?
                    .map(|(_, bytes)| bytes.value().to_vec());
                match last_bytes {
                    Some(bytes) => {
                        let entry: Entry = crate::wire::decode_request(&bytes).map_err(read_err)?;
                        Some(entry.log_id)
                    }
                    None => None,
                }
            }
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let bytes = Self::encode(&ErrorSubject::Vote, vote)?;
        self.write_and_wait(ErrorSubject::Vote, |done| LogWrite::Meta {
            key: VOTE_KEY,
            bytes,
            durable: true,
            done: Some(done),
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(VOTE_KEY)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let Some(log_id) = committed else {
            return Ok(());
        };
        self.committed_index.store(log_id.index, Ordering::Relaxed);
        self.commits.committed(log_id.index);
        metrics::gauge!("tandem_raft_commit_index").set(log_id.index as f64);
        // Not waited for nor fsynced on its own: it is a hint that lets a restart apply
        // committed entries sooner; losing it costs nothing but a round of replication.
        let bytes = Self::encode(&ErrorSubject::Store, &log_id)?;
        self.queue(
            &ErrorSubject::Store,
            LogWrite::Meta {
                key: COMMITTED_KEY,
                bytes,
                durable: false,
                done: None,
            },
        )
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.read_meta(COMMITTED_KEY)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let appended_at = Instant::now();
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut encoded = Vec::with_capacity(entries.len());
        for entry in &entries {
            let bytes = crate::wire::encode_request(entry).map_err(|e| {
                StorageIOError::<NodeId>::write_log_entry(entry.log_id, AnyError::new(&e))
            })?;
            encoded.push((entry.log_id, bytes));
        }
        lock(&self.unflushed).extend(entries.into_iter().map(|e| (e.log_id.index, e)));
        // Returns before the fsync; the writer calls back once these entries are on disk,
        // together with every other write that queued up meanwhile.
        self.queue(
            &ErrorSubject::Logs,
            LogWrite::Append {
                entries: encoded,
                flushed: callback,
                appended_at,
            },
        )
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        drop(lock(&self.unflushed).split_off(&log_id.index));
        self.write_and_wait(ErrorSubject::Logs, |done| LogWrite::Truncate {
            from: log_id.index,
            done,
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let last_purged = Self::encode(&ErrorSubject::Logs, &log_id)?;
        lock(&self.unflushed).retain(|index, _| *index > log_id.index);
        self.write_and_wait(ErrorSubject::Logs, |done| LogWrite::Purge {
            upto: log_id.index,
            last_purged,
            done,
        })
        .await
    }
}
