//! The Raft log and vote, kept in redb. Every append, vote and truncation is one transaction
//! committed with `Durability::Immediate` (fsync) before openraft is told it is done, so an
//! acknowledged write survives a crash of the process or the machine.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

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
}

/// The durable Raft log. Clones share one database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// The last committed index this node knows of, for status reports; `u64::MAX` means none.
    committed_index: Arc<AtomicU64>,
}

impl LogStore {
    pub fn open(path: &Path) -> Result<Self, LogStoreError> {
        let db = Database::create(path).map_err(|source| LogStoreError::Open {
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
        let store = LogStore {
            db: Arc::new(db),
            committed_index: Arc::new(AtomicU64::new(u64::MAX)),
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

    /// The id of the last entry in the log (or of the last purged one when the log is empty).
    pub async fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        Ok(self.clone().get_log_state().await?.last_log_id)
    }

    /// True when this node has never voted nor stored an entry: it has never been part of a
    /// cluster (or its data folder was wiped).
    pub fn is_empty(&self) -> Result<bool, StorageError> {
        let vote: Option<Vote<NodeId>> = self.read_meta(VOTE_KEY)?;
        let purged: Option<LogId> = self.read_meta(PURGED_KEY)?;
        let txn = self.db.begin_read().map_err(read_err)?;
        let logs = txn.open_table(LOGS).map_err(read_err)?;
        let no_logs = logs.first().map_err(read_err)?.is_none();
        Ok(vote.is_none() && purged.is_none() && no_logs)
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

    /// Runs one durable write transaction on a blocking thread.
    /// With `Durability::Immediate` the commit returns after fsync; `None` is for hints whose
    /// loss is harmless.
    async fn write<F>(
        &self,
        subject: ErrorSubject<NodeId>,
        durability: Durability,
        f: F,
    ) -> Result<(), StorageError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send + 'static,
    {
        let db = self.db.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)?;
            f(&txn)?;
            txn.commit()?;
            Ok(())
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                Err(StorageIOError::new(subject, ErrorVerb::Write, AnyError::new(&e)).into())
            }
            Err(join) => {
                Err(StorageIOError::new(subject, ErrorVerb::Write, AnyError::new(&join)).into())
            }
        }
    }

    async fn write_meta<T: serde::Serialize>(
        &self,
        subject: ErrorSubject<NodeId>,
        key: &'static str,
        value: &T,
    ) -> Result<(), StorageError> {
        let bytes = crate::wire::encode_request(value).map_err(|e| {
            StorageIOError::new(subject.clone(), ErrorVerb::Write, AnyError::new(&e))
        })?;
        self.write(subject, Durability::Immediate, move |txn| {
            txn.open_table(META)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
        .await
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
        let txn = self.db.begin_read().map_err(read_err)?;
        let logs = txn.open_table(LOGS).map_err(read_err)?;
        let mut entries = Vec::new();
        for item in logs.range::<u64>((start, end)).map_err(read_err)? {
            let (_, bytes) = item.map_err(read_err)?;
            entries.push(crate::wire::decode_request(bytes.value()).map_err(read_err)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(PURGED_KEY)?;
        let last = {
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
        self.write_meta(ErrorSubject::Vote, VOTE_KEY, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(VOTE_KEY)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let Some(log_id) = committed else {
            return Ok(());
        };
        self.committed_index.store(log_id.index, Ordering::Relaxed);
        // Not fsynced on its own: it is a hint that lets a restart apply committed entries
        // sooner; losing it costs nothing but a round of replication.
        let bytes = crate::wire::encode_request(&log_id).map_err(read_err)?;
        self.write(ErrorSubject::Store, Durability::None, move |txn| {
            let mut txn_meta = txn.open_table(META)?;
            txn_meta.insert(COMMITTED_KEY, bytes.as_slice())?;
            Ok(())
        })
        .await
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
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = crate::wire::encode_request(&entry).map_err(|e| {
                StorageIOError::<NodeId>::write_log_entry(entry.log_id, AnyError::new(&e))
            })?;
            encoded.push((entry.log_id.index, bytes));
        }
        // One fsynced transaction for the whole batch: group commit.
        let result = self
            .write(ErrorSubject::Logs, Durability::Immediate, move |txn| {
                let mut logs = txn.open_table(LOGS)?;
                for (index, bytes) in &encoded {
                    logs.insert(*index, bytes.as_slice())?;
                }
                Ok(())
            })
            .await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write(ErrorSubject::Logs, Durability::Immediate, move |txn| {
            let mut logs = txn.open_table(LOGS)?;
            logs.retain_in(log_id.index.., |_, _| false)?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let purged = crate::wire::encode_request(&log_id).map_err(read_err)?;
        self.write(ErrorSubject::Logs, Durability::Immediate, move |txn| {
            txn.open_table(META)?
                .insert(PURGED_KEY, purged.as_slice())?;
            let mut logs = txn.open_table(LOGS)?;
            logs.retain_in(..=log_id.index, |_, _| false)?;
            Ok(())
        })
        .await
    }
}
