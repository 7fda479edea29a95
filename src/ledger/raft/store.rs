//! Durable raft storage for the ledger in one redb file (`<state dir>/ledger.redb`): the log,
//! the vote, the committed index and the current snapshot. Every write is a redb transaction
//! committed with immediate durability, so the vote and appended entries are on disk (fsync)
//! before openraft is told they are.
//!
//! The state machine keeps [`LedgerState`] in memory and persists it through snapshots: on
//! start it restores the last snapshot and openraft re-applies the committed entries after it
//! (the committed index is saved for exactly that). A snapshot is stored in chunks of 1 MiB,
//! and is encoded, sent, received and decoded through an unnamed file in the raft directory
//! ([`SnapshotFile`]), so a large ledger is never held twice in memory.

// openraft's traits fix the error type (`StorageError`, over 200 bytes); the helpers share it.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::{BufReader, BufWriter, Read, Seek as _, SeekFrom, Write as _};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use super::snapshot::SnapshotFile;
use super::{LedgerNode, LedgerTypes};
use crate::ledger::state::{Command, LedgerState, Outcome};

/// Log entries by index, JSON.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Vote, committed index, last purged id, snapshot: under fixed keys, JSON but for the
/// snapshot's data, kept as it is.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// This node's raft id, beside the raft state it belongs to, so that a wipe and the new id
/// commit in one transaction.
const NODE: TableDefinition<&str, u64> = TableDefinition::new("node");
const NODE_ID: &str = "id";

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
/// A snapshot as earlier versions stored it: [`StoredSnapshot`], its data as a JSON array.
const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_META: &str = "snapshot_meta";
/// A snapshot's data as the version before the chunks stored it, in one value.
const SNAPSHOT_DATA: &str = "snapshot_data";
/// The snapshot's data in chunks of [`CHUNK`] bytes, by their order.
const SNAPSHOT_CHUNKS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshot_chunks");
const CHUNK: usize = 1 << 20;

type NodeId = u64;
type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// Opens (or creates) the ledger's database file.
pub fn open(path: &Path) -> Result<Arc<Database>, redb::DatabaseError> {
    Database::create(path).map(Arc::new)
}

/// Forgets everything raft stored (log, vote, committed index, snapshot) and stores `node_id`
/// as this node's raft id, in one transaction: the node leaves its cluster and starts as a
/// blank raft node under a new id, and a crash leaves either the old id over the old state or
/// the new id over none. Only called once the raft instance over `db` has shut down.
pub fn wipe(db: &Database, node_id: NodeId) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.delete_table(LOG)?;
    txn.delete_table(META)?;
    txn.delete_table(SNAPSHOT_CHUNKS)?;
    txn.open_table(NODE)?.insert(NODE_ID, node_id)?;
    txn.commit()?;
    Ok(())
}

/// This node's raft id as the database holds it; `None` before one was stored.
pub fn node_id(db: &Database) -> Result<Option<NodeId>, redb::Error> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(NODE) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(table.get(NODE_ID)?.map(|id| id.value()))
}

/// Stores this node's raft id (on first start).
pub fn set_node_id(db: &Database, node_id: NodeId) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(NODE)?.insert(NODE_ID, node_id)?;
    txn.commit()?;
    Ok(())
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write(AnyError::new(&e)).into()
}

fn encode<T: Serialize>(value: &T) -> StorageResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(write_err)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StorageResult<T> {
    serde_json::from_slice(bytes).map_err(read_err)
}

fn get_meta<T: DeserializeOwned>(db: &Database, key: &str) -> StorageResult<Option<T>> {
    let txn = db.begin_read().map_err(read_err)?;
    let table = match txn.open_table(META) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    match table.get(key).map_err(read_err)? {
        Some(value) => decode(value.value()).map(Some),
        None => Ok(None),
    }
}

fn put_meta<T: Serialize>(db: &Database, key: &str, value: &T) -> StorageResult<()> {
    let bytes = encode(value)?;
    let txn = db.begin_write().map_err(write_err)?;
    {
        let mut table = txn.open_table(META).map_err(write_err)?;
        table.insert(key, bytes.as_slice()).map_err(write_err)?;
    }
    txn.commit().map_err(write_err)
}

/// Writes `vote` and `entries` into the raft database at `path` as raft would have: for the
/// ledger simulation to start a node from a state that raft reaches only under timing a test
/// cannot arrange.
#[cfg(test)]
pub fn plant(
    path: &Path,
    vote: &Vote<NodeId>,
    entries: &[Entry<LedgerTypes>],
) -> StorageResult<()> {
    let db = open(path).map_err(write_err)?;
    put_meta(&db, VOTE, vote)?;
    let txn = db.begin_write().map_err(write_err)?;
    {
        let mut table = txn.open_table(LOG).map_err(write_err)?;
        for entry in entries {
            table
                .insert(entry.log_id.index, encode(entry)?.as_slice())
                .map_err(write_err)?;
        }
    }
    txn.commit().map_err(write_err)
}

/// Stores a snapshot: its metadata as JSON and its data as it is, read from `data` in chunks
/// (as a JSON array, a large state would take four times its size), replacing an earlier one.
/// A snapshot stored meanwhile of a later log position stays: openraft builds snapshots in a
/// task of their own, and one built before a snapshot was installed may end after it.
fn save_snapshot(
    db: &Database,
    meta: &SnapshotMeta<NodeId, LedgerNode>,
    data: &mut impl Read,
) -> StorageResult<()> {
    let txn = db.begin_write().map_err(write_err)?;
    {
        let table = txn.open_table(META).map_err(write_err)?;
        if let Some(stored) = table.get(SNAPSHOT_META).map_err(write_err)? {
            let stored: SnapshotMeta<NodeId, LedgerNode> = decode(stored.value())?;
            if stored.last_log_id > meta.last_log_id {
                return Ok(());
            }
        }
    }
    let meta = encode(meta)?;
    txn.delete_table(SNAPSHOT_CHUNKS).map_err(write_err)?;
    {
        let mut chunks = txn.open_table(SNAPSHOT_CHUNKS).map_err(write_err)?;
        let mut chunk = vec![0; CHUNK];
        for index in 0.. {
            let filled = fill(data, &mut chunk).map_err(write_err)?;
            if filled == 0 {
                break;
            }
            chunks.insert(index, &chunk[..filled]).map_err(write_err)?;
        }
        let mut table = txn.open_table(META).map_err(write_err)?;
        table
            .insert(SNAPSHOT_META, meta.as_slice())
            .map_err(write_err)?;
        table.remove(SNAPSHOT_DATA).map_err(write_err)?;
        table.remove(SNAPSHOT).map_err(write_err)?;
    }
    txn.commit().map_err(write_err)
}

/// Reads into `chunk` until it is full or `data` ends; the bytes read.
fn fill(data: &mut impl Read, chunk: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < chunk.len() {
        match data.read(&mut chunk[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A stored snapshot: its metadata, and its data in a file at its start, with its length.
type Stored = (SnapshotMeta<NodeId, LedgerNode>, std::fs::File, u64);

/// The stored snapshot, in any form it was stored in: its metadata, and its data copied into
/// an unnamed file in `dir`, at its start, with its length.
fn load_snapshot(db: &Database, dir: &Path) -> StorageResult<Option<Stored>> {
    let txn = db.begin_read().map_err(read_err)?;
    let table = match txn.open_table(META) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let mut file = BufWriter::new(tempfile::tempfile_in(dir).map_err(read_err)?);
    let meta = match table.get(SNAPSHOT_META).map_err(read_err)? {
        Some(meta) => decode(meta.value())?,
        None => match table.get(SNAPSHOT).map_err(read_err)? {
            Some(old) => {
                let old: StoredSnapshot = decode(old.value())?;
                file.write_all(&old.data).map_err(read_err)?;
                return finish(file, old.meta).map(Some);
            }
            None => return Ok(None),
        },
    };
    if let Some(data) = table.get(SNAPSHOT_DATA).map_err(read_err)? {
        file.write_all(data.value()).map_err(read_err)?;
        return finish(file, meta).map(Some);
    }
    let chunks = match txn.open_table(SNAPSHOT_CHUNKS) {
        Ok(chunks) => chunks,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            return Err(read_err(std::io::Error::other(
                "the snapshot's data is missing",
            )));
        }
        Err(e) => return Err(read_err(e)),
    };
    for chunk in chunks.iter().map_err(read_err)? {
        let (_, chunk) = chunk.map_err(read_err)?;
        file.write_all(chunk.value()).map_err(read_err)?;
    }
    finish(file, meta).map(Some)
}

/// The written file at its start, with its length, beside `meta`.
fn finish(
    file: BufWriter<std::fs::File>,
    meta: SnapshotMeta<NodeId, LedgerNode>,
) -> StorageResult<Stored> {
    let mut file = file.into_inner().map_err(|e| read_err(e.into_error()))?;
    let len = file.stream_position().map_err(read_err)?;
    file.seek(SeekFrom::Start(0)).map_err(read_err)?;
    Ok((meta, file, len))
}

/// Decodes a snapshot's data from `file`, from where it is.
fn decode_image(file: &mut std::fs::File) -> StorageResult<MachineImage> {
    serde_json::from_reader(BufReader::new(file)).map_err(read_err)
}

/// The raft log, vote and committed index.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> Self {
        LogStore { db }
    }

    fn last_entry(&self) -> StorageResult<Option<Entry<LedgerTypes>>> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = match txn.open_table(LOG) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(read_err(e)),
        };
        match table.last().map_err(read_err)? {
            Some((_, value)) => decode(value.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Deletes the entries with index in `range`.
    fn delete(&self, range: (Bound<u64>, Bound<u64>)) -> StorageResult<()> {
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut table = txn.open_table(LOG).map_err(write_err)?;
            table.retain_in(range, |_, _| false).map_err(write_err)?;
        }
        txn.commit().map_err(write_err)
    }
}

impl RaftLogReader<LedgerTypes> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<LedgerTypes>>> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = match txn.open_table(LOG) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(read_err(e)),
        };
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        table
            .range::<u64>(bounds)
            .map_err(read_err)?
            .map(|item| {
                let (_, value) = item.map_err(read_err)?;
                decode(value.value())
            })
            .collect()
    }
}

impl RaftLogStorage<LedgerTypes> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<LedgerTypes>> {
        let last_purged: Option<LogId<NodeId>> = get_meta(&self.db, LAST_PURGED)?;
        let last = self.last_entry()?.map(|e| e.log_id).or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        put_meta(&self.db, VOTE, vote)
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        get_meta(&self.db, VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        put_meta(&self.db, COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(get_meta::<Option<LogId<NodeId>>>(&self.db, COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<LedgerTypes>,
    ) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<LedgerTypes>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut table = txn.open_table(LOG).map_err(write_err)?;
            for entry in entries {
                let bytes = encode(&entry)?;
                table
                    .insert(entry.log_id.index, bytes.as_slice())
                    .map_err(write_err)?;
            }
        }
        let committed = txn
            .commit()
            .map_err(|e| std::io::Error::other(e.to_string()));
        let result = committed
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(result);
        committed.map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.delete((Bound::Included(log_id.index), Bound::Unbounded))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        put_meta(&self.db, LAST_PURGED, &log_id)?;
        self.delete((Bound::Unbounded, Bound::Included(log_id.index)))
    }
}

/// A snapshot: its metadata and the serialized [`MachineImage`]. Stored so (JSON) by earlier
/// versions; read from either form ([`load_snapshot`]).
#[derive(Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, LedgerNode>,
    data: Vec<u8>,
}

/// What a snapshot holds: the applied position, the membership and the ledger state.
#[derive(Serialize, Deserialize)]
struct MachineImage {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, LedgerNode>,
    state: Arc<LedgerState>,
}

#[derive(Debug)]
struct Machine {
    /// Shared with readers ([`StateMachineStore::state`]); an entry applied while a reader
    /// holds it copies it first.
    state: Arc<LedgerState>,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, LedgerNode>,
    snapshots_built: u64,
}

/// An applied entry as the state machine reports it: raft index, and the command (`None` for
/// raft's own entries). Boxed because the report channel writes each of its slots when it is
/// made: with the command inline they were 240 bytes each, the channel 240 kB resident in
/// every node whether it leads or not.
pub type Applied = (u64, Option<Box<Command>>);

/// Where the ledger tells what changes: each entry the state machine applies (the leader
/// publishes them to followers), and a count of changes to the readable state (subscribers such
/// as DNS and the data plane wait on it).
#[derive(Debug, Clone)]
pub struct Taps {
    pub applied: broadcast::Sender<Applied>,
    changed: Arc<watch::Sender<u64>>,
}

impl Taps {
    /// `backlog`: applied entries a slow listener may lag behind before it skips.
    pub fn new(backlog: usize) -> Self {
        Taps {
            applied: broadcast::channel(backlog).0,
            changed: Arc::new(watch::channel(0).0),
        }
    }

    /// Counts one change and wakes the subscribers.
    pub fn changed(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The state machine: applies committed entries to [`LedgerState`] and reports them to its
/// [`Taps`].
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    machine: Arc<Mutex<Machine>>,
    db: Arc<Database>,
    /// The raft directory, where snapshots pass through unnamed files.
    dir: Arc<PathBuf>,
    taps: Taps,
}

impl StateMachineStore {
    /// The state machine over `db` (in `dir`), restored from its last snapshot, or empty over
    /// `pool`.
    pub fn open(db: Arc<Database>, dir: &Path, pool: Ipv4Net, taps: Taps) -> StorageResult<Self> {
        let machine = match load_snapshot(&db, dir)? {
            Some((_, mut file, _)) => {
                let image = decode_image(&mut file)?;
                Machine {
                    state: image.state,
                    last_applied: image.last_applied,
                    membership: image.membership,
                    snapshots_built: 0,
                }
            }
            None => Machine {
                state: Arc::new(LedgerState::new(pool)),
                last_applied: None,
                membership: StoredMembership::default(),
                snapshots_built: 0,
            },
        };
        Ok(StateMachineStore {
            machine: Arc::new(Mutex::new(machine)),
            db,
            dir: Arc::new(dir.to_path_buf()),
            taps,
        })
    }

    /// The current ledger state.
    pub fn state(&self) -> Arc<LedgerState> {
        self.lock().state.clone()
    }

    /// The current ledger state with the raft index it is at.
    pub fn state_at(&self) -> (Arc<LedgerState>, u64) {
        let machine = self.lock();
        (
            machine.state.clone(),
            machine.last_applied.map_or(0, |id| id.index),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Machine> {
        // A panic while holding the lock would leave a half-applied entry; nothing in `apply`
        // panics, and poisoning is recovered from the last consistent value.
        self.machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RaftSnapshotBuilder<LedgerTypes> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<LedgerTypes>> {
        let (data, meta) = {
            let mut machine = self.lock();
            machine.snapshots_built += 1;
            let image = MachineImage {
                last_applied: machine.last_applied,
                membership: machine.membership.clone(),
                state: machine.state.clone(),
            };
            let snapshot_id = match machine.last_applied {
                Some(id) => format!("{}-{}-{}", id.leader_id, id.index, machine.snapshots_built),
                None => format!("empty-{}", machine.snapshots_built),
            };
            let meta = SnapshotMeta {
                last_log_id: machine.last_applied,
                last_membership: machine.membership.clone(),
                snapshot_id,
            };
            (image, meta)
        };
        // Encoded outside the lock: a large state takes a while, and entries go on applying.
        let mut file = BufWriter::new(tempfile::tempfile_in(&*self.dir).map_err(write_err)?);
        serde_json::to_writer(&mut file, &data).map_err(write_err)?;
        let mut file = file.into_inner().map_err(|e| write_err(e.into_error()))?;
        let len = file.stream_position().map_err(write_err)?;
        file.seek(SeekFrom::Start(0)).map_err(write_err)?;
        save_snapshot(&self.db, &meta, &mut BufReader::new(&mut file))?;
        file.seek(SeekFrom::Start(0)).map_err(write_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile::over(file, len)),
        })
    }
}

impl RaftStateMachine<LedgerTypes> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, LedgerNode>)> {
        let machine = self.lock();
        Ok((machine.last_applied, machine.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Outcome>>
    where
        I: IntoIterator<Item = Entry<LedgerTypes>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut machine = self.lock();
        let mut outcomes = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            machine.last_applied = Some(entry.log_id);
            let (outcome, command) = match entry.payload {
                EntryPayload::Blank => (Outcome::Done, None),
                EntryPayload::Normal(command) => {
                    let outcome = Arc::make_mut(&mut machine.state).apply(index, &command);
                    (outcome, Some(command))
                }
                EntryPayload::Membership(membership) => {
                    machine.membership = StoredMembership::new(Some(entry.log_id), membership);
                    (Outcome::Done, None)
                }
            };
            // Nobody listening (not the leader, or no publisher yet) is fine.
            let _ = self.taps.applied.send((index, command.map(Box::new)));
            outcomes.push(outcome);
        }
        drop(machine);
        self.taps.changed();
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<SnapshotFile>> {
        Ok(Box::new(
            SnapshotFile::create(&self.dir).map_err(write_err)?,
        ))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, LedgerNode>,
        snapshot: Box<SnapshotFile>,
    ) -> StorageResult<()> {
        let (mut file, _) = snapshot.into_std().await.map_err(read_err)?;
        let image = decode_image(&mut file)?;
        file.seek(SeekFrom::Start(0)).map_err(read_err)?;
        save_snapshot(&self.db, meta, &mut BufReader::new(&mut file))?;
        {
            let mut machine = self.lock();
            machine.state = image.state;
            machine.last_applied = meta.last_log_id;
            machine.membership = meta.last_membership.clone();
        }
        self.taps.changed();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<LedgerTypes>>> {
        Ok(
            load_snapshot(&self.db, &self.dir)?.map(|(meta, file, len)| Snapshot {
                meta,
                snapshot: Box::new(SnapshotFile::over(file, len)),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    /// Fresh stores in a temporary directory that lives as long as the test needs them.
    struct Builder;

    impl StoreBuilder<LedgerTypes, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(&self) -> StorageResult<(tempfile::TempDir, LogStore, StateMachineStore)> {
            let dir = tempfile::tempdir().map_err(write_err)?;
            let db = open(&dir.path().join("ledger.redb")).map_err(write_err)?;
            let pool = "10.1.0.0/24".parse().expect("valid pool");
            let machine = StateMachineStore::open(db.clone(), dir.path(), pool, Taps::new(16))?;
            Ok((dir, LogStore::new(db), machine))
        }
    }

    #[test]
    fn a_wipe_stores_the_new_raft_id_with_the_blank_state() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("ledger.redb")).unwrap();
        assert_eq!(node_id(&db).unwrap(), None);
        set_node_id(&db, 7).unwrap();
        assert_eq!(node_id(&db).unwrap(), Some(7));
        put_meta(&db, VOTE, &1u64).unwrap();
        wipe(&db, 8).unwrap();
        assert_eq!(node_id(&db).unwrap(), Some(8));
        assert_eq!(get_meta::<u64>(&db, VOTE).unwrap(), None);
        drop(db);
        let db = open(&dir.path().join("ledger.redb")).unwrap();
        assert_eq!(node_id(&db).unwrap(), Some(8), "kept across a restart");
    }

    #[test]
    fn the_redb_store_passes_openraft_storage_conformance_suite() {
        Suite::test_all(Builder).unwrap();
    }

    #[test]
    fn a_snapshot_is_stored_in_chunks_and_one_stored_by_an_earlier_version_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("ledger.redb")).unwrap();
        let load = |db: &Database| {
            let (meta, mut file, len) = load_snapshot(db, dir.path()).unwrap().unwrap();
            let mut data = Vec::new();
            file.read_to_end(&mut data).unwrap();
            assert_eq!(len, data.len() as u64);
            (meta.snapshot_id, data)
        };
        assert!(load_snapshot(&db, dir.path()).unwrap().is_none());
        let meta = SnapshotMeta::<NodeId, LedgerNode> {
            snapshot_id: "oldest".into(),
            ..Default::default()
        };
        #[derive(Serialize)]
        struct Earlier<'a> {
            meta: &'a SnapshotMeta<NodeId, LedgerNode>,
            data: &'a [u8],
        }
        let earlier = Earlier {
            meta: &meta,
            data: b"{\"x\":1}",
        };
        put_meta(&db, SNAPSHOT, &earlier).unwrap();
        assert_eq!(load(&db), ("oldest".into(), b"{\"x\":1}".to_vec()));

        // The form before the chunks: the data in one value beside the metadata.
        put_meta(
            &db,
            SNAPSHOT_META,
            &SnapshotMeta {
                snapshot_id: "old".into(),
                ..meta.clone()
            },
        )
        .unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(SNAPSHOT_DATA, &b"raw"[..])
            .unwrap();
        txn.commit().unwrap();
        assert_eq!(load(&db), ("old".into(), b"raw".to_vec()));

        let new = SnapshotMeta {
            snapshot_id: "new".into(),
            ..meta
        };
        let data: Vec<u8> = (0..(5 * CHUNK / 2)).map(|i| (i % 251) as u8).collect();
        save_snapshot(&db, &new, &mut data.as_slice()).unwrap();
        assert_eq!(load(&db), ("new".into(), data.clone()));
        // Stored as it is, not as a JSON array four times its size; the earlier forms are gone.
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(META).unwrap();
        assert!(table.get(SNAPSHOT).unwrap().is_none());
        assert!(table.get(SNAPSHOT_DATA).unwrap().is_none());
        let chunks = txn.open_table(SNAPSHOT_CHUNKS).unwrap();
        let sizes: Vec<usize> = chunks
            .iter()
            .unwrap()
            .map(|c| c.unwrap().1.value().len())
            .collect();
        assert_eq!(sizes, [CHUNK, CHUNK, CHUNK / 2]);
        drop(txn);

        save_snapshot(&db, &new, &mut &b"short"[..]).unwrap();
        assert_eq!(
            load(&db),
            ("new".into(), b"short".to_vec()),
            "no chunk of the last is left"
        );

        let at = |index| Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index));
        let later = SnapshotMeta {
            snapshot_id: "later".into(),
            last_log_id: at(20),
            ..new.clone()
        };
        save_snapshot(&db, &later, &mut &b"later"[..]).unwrap();
        let built_before = SnapshotMeta {
            snapshot_id: "built before".into(),
            last_log_id: at(10),
            ..new
        };
        save_snapshot(&db, &built_before, &mut &b"before"[..]).unwrap();
        assert_eq!(
            load(&db),
            ("later".into(), b"later".to_vec()),
            "a snapshot of an earlier position does not replace a later one"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "only the database has a name in the directory"
        );
    }

    #[tokio::test]
    async fn the_vote_and_the_log_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.redb");
        let vote = Vote::new(3, 7);
        {
            let mut store = LogStore::new(open(&path).unwrap());
            store.save_vote(&vote).await.unwrap();
        }
        let mut store = LogStore::new(open(&path).unwrap());
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
    }
}
