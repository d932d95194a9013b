//! The hub's persistent store: the cloud's data set and the access-log outbox,
//! on [`sled`].
//!
//! # Role
//!
//! The hub decides at the door from a local copy of the cloud's data set
//! (credentials, schedules, doors…) and queues what happened (grants, denies,
//! alarms) until the cloud has acknowledged it. This module keeps both on
//! disk. It does not know the access model: records are any
//! `serde::Serialize` value, stored with [`postcard`] under a byte key in a
//! named *collection*; outbox events are opaque byte strings that the caller
//! has already encoded. Nothing here logs a key, a record or an event.
//!
//! # Use
//!
//! ```no_run
//! # fn main() -> Result<(), hub::store::StoreError> {
//! use hub::store::{ChangeSet, Store, StoreConfig};
//!
//! let (store, report) = Store::open(StoreConfig::new("/var/lib/hub/store"))?;
//! if report.needs_alarm() {
//!     // raise an alarm event; if report.needs_full_resync(), ask the cloud
//!     // for a full snapshot
//! }
//!
//! // The cloud's full snapshot, revision 7: invisible until `commit`.
//! let mut snapshot = store.begin_snapshot(7)?;
//! snapshot.put("credentials", b"card:1234", &("alice", 3u8))?;
//! snapshot.put("doors", b"door:1", &"front")?;
//! snapshot.commit()?;
//!
//! // An incremental change from revision 7 to 8, across collections.
//! let mut change = ChangeSet::new(7, 8);
//! change.upsert("credentials", b"card:5678", &("bob", 1u8))?;
//! change.delete("credentials", b"card:1234");
//! store.apply(&change)?;
//!
//! // Reads: one record, or a consistent view over several.
//! let bob: Option<(String, u8)> = store.get("credentials", b"card:5678")?;
//! let view = store.view();
//! let door: Option<String> = view.get("doors", b"door:1")?;
//! drop(view);
//!
//! // The outbox: durable within the group-commit interval.
//! let appended = store.outbox().append(b"encoded event")?;
//! let batch = store.outbox().peek(0, 100)?;
//! store.outbox().ack_through(appended.seq)?;
//! # let _ = (bob, door, batch);
//! # Ok(()) }
//! ```
//!
//! # Layout on disk
//!
//! One sled database in one directory (`sled` files `conf`, `db`, `snap.*`,
//! `blobs/`). Trees:
//!
//! | tree | keys | values |
//! |---|---|---|
//! | `meta` | `format` | store format, u32 big-endian ([`FORMAT`]) |
//! | | `current` | the current generation (u64 BE), a flag and the revision (u64 BE): 17 bytes |
//! | `data:<gen>:<collection>` | the record's key | the record, postcard |
//! | `outbox` | `e` + seq (u64 BE) | an event's bytes |
//! | | `r` | highest seq reserved (u64 BE) |
//! | | `a` | highest seq acknowledged (u64 BE) |
//! | `code_uses` | an access code's id | when this hub used the one-time code: ms since the epoch, i64 BE |
//!
//! `<gen>` is 16 lower-case hex digits, so every collection of one generation
//! shares the prefix `data:<gen>:`.
//!
//! # Atomicity
//!
//! - **Full snapshot** ([`Store::begin_snapshot`]): records go into the trees
//!   of a *new* generation, which no reader looks at. [`SnapshotWriter::commit`]
//!   flushes them, then flips the single `meta/current` key to the new
//!   generation (a single-key insert is atomic in sled), flushes again and only
//!   then drops the old generation's trees. A crash before the flip leaves the
//!   old data set (the next open drops the half-written generation); after it,
//!   the new one. Readers hold a read lock for the length of a [`View`]; the
//!   flip takes the write lock for the in-memory switch only, so a view sees
//!   one generation throughout.
//! - **Change set** ([`Store::apply`]): one sled transaction over `meta` and
//!   the touched collection trees writes every upsert and delete together with
//!   the new revision in `meta/current`. sled seals a transaction's writes as
//!   one batch in its log, so recovery finds all of them or none. The
//!   transaction runs under the same write lock as the flip, so no view sees
//!   part of it. The change set names the revision it applies to; a mismatch
//!   is an error ([`StoreError::RevisionMismatch`]) and the caller resyncs.
//! - **Outbox**: see [`Outbox`] for sequence numbers, durability (group
//!   commit) and the size bound.
//! - **Code uses** ([`Store::record_code_use`]): the hub's own record of
//!   one-time access codes it used, outside the generations, so a snapshot
//!   or change set never touches it; flushed before the call returns. The
//!   caller merges it into every view it builds
//!   ([`crate::site_data::load_view`]).
//!
//! # Durability and the flusher
//!
//! sled's own periodic flush is off. A flusher thread owned by the [`Store`]
//! calls `flush` (write the log buffer, `fsync`) every
//! [`StoreConfig::flush_interval`] when anything was written: group commit for
//! the outbox, the change sets and acknowledgements. A snapshot commit flushes
//! synchronously. [`Store::flush`] forces one. [`Durability::EveryAppend`]
//! flushes inside every append instead (costly; see `docs/store.md`).
//!
//! # Cache
//!
//! [`StoreConfig::cache_capacity`] defaults to 2 MiB (sled's default is
//! 1 GiB): a small board has 512 MiB to 8 GiB for everything, and the hub
//! decides from its in-memory view, not from the store. Lookups that miss
//! the cache read one page from disk (the OS page cache usually has it).
//!
//! # Opening a broken database
//!
//! [`Store::open`] never leaves the hub without a store because the files are
//! damaged: it renames the directory to `<path>.corrupt-<UTC time>`, opens a
//! fresh store, salvages the outbox from a copy of the old database when sled
//! can still open it, and says so in the [`OpenReport`]. A database locked by
//! another process, a full disk or a read-only file system are errors instead
//! (moving the files would not help).

mod outbox;
mod recovery;

pub use outbox::{AckResult, Appended, Outbox, OutboxLevel, OutboxStatus};
pub use recovery::Recovery;

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::Transactional;

/// On-disk format of this store, kept in `meta/format`. A database with
/// another format is treated like a damaged one (moved aside, fresh store).
pub const FORMAT: u32 = 1;

/// Longest collection name, in bytes.
pub const MAX_COLLECTION_NAME: usize = 128;

const META_TREE: &str = "meta";
const OUTBOX_TREE: &str = "outbox";
const CODE_USES_TREE: &str = "code_uses";
const DATA_PREFIX: &str = "data:";
const KEY_FORMAT: &[u8] = b"format";
const KEY_CURRENT: &[u8] = b"current";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is open in another process (or another `Store` in this
    /// one); nothing was moved or changed.
    #[error("the store at {path} is locked by another process")]
    Locked {
        /// The store's directory.
        path: PathBuf,
    },
    /// The database could not be opened and could not be replaced by a fresh
    /// one either (for example the parent directory is not writable).
    #[error("cannot open the store at {path}: {reason}")]
    Unrecoverable {
        /// The store's directory.
        path: PathBuf,
        /// What failed, without record contents.
        reason: String,
    },
    /// sled reported an I/O error, corruption or a bug while working.
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    /// A file-system operation of the store itself failed.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A record could not be serialized with postcard.
    #[error("cannot encode a record for collection {collection:?}: {source}")]
    Encode {
        /// The collection it was meant for.
        collection: String,
        /// The serializer's error.
        source: postcard::Error,
    },
    /// A stored record does not deserialize into the requested type.
    #[error("cannot decode a record of collection {collection:?}: {source}")]
    Decode {
        /// The collection it came from.
        collection: String,
        /// The deserializer's error.
        source: postcard::Error,
    },
    /// A collection name is empty or longer than [`MAX_COLLECTION_NAME`].
    #[error("invalid collection name ({len} bytes; 1 to {MAX_COLLECTION_NAME} allowed)")]
    InvalidCollection {
        /// The name's length in bytes.
        len: usize,
    },
    /// A change set was made for another revision than the store's.
    #[error("change set applies to revision {base}, the store is at {current:?}")]
    RevisionMismatch {
        /// The revision the change set starts from.
        base: u64,
        /// The store's revision (`None`: no snapshot loaded yet).
        current: Option<u64>,
    },
    /// A change set's revision is not above the revision it starts from.
    #[error("change set revision {revision} is not above its base {base}")]
    RevisionNotNewer {
        /// The revision the change set starts from.
        base: u64,
        /// The revision it would produce.
        revision: u64,
    },
    /// Another snapshot is being written; one at a time.
    #[error("another snapshot is being written")]
    SnapshotInProgress,
    /// The outbox reached its hard limit: the event was NOT stored. The
    /// caller keeps it and raises an alarm (see [`Outbox`]).
    #[error("outbox full: {bytes} bytes stored, hard limit {hard_limit}")]
    OutboxFull {
        /// Bytes the outbox holds.
        bytes: u64,
        /// The configured hard limit.
        hard_limit: u64,
    },
    /// Store metadata that sled returned is malformed (detected after open).
    #[error("store metadata is malformed: {what}")]
    Corrupt {
        /// Which item.
        what: &'static str,
    },
}

/// Shorthand for results of this module.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// When outbox events reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Group commit: the flusher thread flushes every
    /// [`StoreConfig::flush_interval`] if anything was written. An event is
    /// on disk at most one interval plus two flush durations after its
    /// append. The default.
    GroupCommit,
    /// Every append flushes before it returns (one `fsync` per event).
    EveryAppend,
}

/// How to open a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The store's directory (created when missing).
    pub path: PathBuf,
    /// sled's page cache in bytes. Default 2 MiB.
    pub cache_capacity: u64,
    /// Group-commit interval of the flusher thread. Default 25 ms.
    pub flush_interval: Duration,
    /// Outbox durability. Default [`Durability::GroupCommit`].
    pub durability: Durability,
    /// The outbox's size bound in bytes (events plus 8 bytes each):
    /// [`OutboxLevel::High`] from 80 %, [`OutboxLevel::OverLimit`] from
    /// 100 %. Appends still succeed above it. Default 64 MiB.
    pub outbox_limit_bytes: u64,
    /// Where appends are refused ([`StoreError::OutboxFull`]) to keep the
    /// disk from filling up. Default twice `outbox_limit_bytes`.
    pub outbox_hard_limit_bytes: u64,
    /// How long [`Store::open`] retries a database locked by another
    /// process before [`StoreError::Locked`] (a previous hub process may
    /// still be exiting). Default 2 s.
    pub lock_timeout: Duration,
}

impl StoreConfig {
    /// The defaults for a Raspberry Pi-class board, at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cache_capacity: 2 * 1024 * 1024,
            flush_interval: Duration::from_millis(25),
            durability: Durability::GroupCommit,
            outbox_limit_bytes: 64 * 1024 * 1024,
            outbox_hard_limit_bytes: 128 * 1024 * 1024,
            lock_timeout: Duration::from_secs(2),
        }
    }

    fn sled_config(&self) -> sled::Config {
        sled::Config::new()
            .path(&self.path)
            .cache_capacity(self.cache_capacity)
            .mode(sled::Mode::LowSpace)
            // The store's flusher thread does this (it knows what is durable).
            .flush_every_ms(None)
    }
}

/// What [`Store::open`] found.
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct OpenReport {
    /// Set when the database could not be opened and was replaced.
    pub recovery: Option<Recovery>,
    /// Sequence numbers the outbox skips because the previous run ended
    /// without closing the store (a crash or power cut): they were reserved,
    /// and events appended in the last moments before the crash that had not
    /// reached the disk had numbers among them. `None` after a clean close.
    pub outbox_skipped: Option<RangeInclusive<u64>>,
    /// Half-written or superseded generations dropped while opening.
    pub discarded_generations: usize,
}

impl OpenReport {
    /// The caller should queue an alarm event: the database was replaced.
    pub fn needs_alarm(&self) -> bool {
        self.recovery.is_some()
    }

    /// The data set is gone: ask the cloud for a full snapshot.
    pub fn needs_full_resync(&self) -> bool {
        self.recovery.is_some()
    }
}

/// The persistent store. See the [module documentation](self).
///
/// Share it with `Arc<Store>`; every method takes `&self`.
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    code_uses: sled::Tree,
    data: RwLock<DataState>,
    /// Serialises change sets and snapshot commits.
    writer: Mutex<()>,
    snapshot_active: AtomicBool,
    outbox: Outbox,
    sync: Arc<SyncState>,
    flusher: Option<Flusher>,
    closed: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// The current generation in memory.
struct DataState {
    generation: u64,
    revision: Option<u64>,
    trees: BTreeMap<String, sled::Tree>,
}

impl Store {
    /// Opens (or creates) the store. A damaged database is moved aside and
    /// replaced by a fresh store, with its outbox salvaged when possible; the
    /// report says so. Errors: [`StoreError::Locked`], or
    /// [`StoreError::Unrecoverable`] / [`StoreError::Io`] when not even a
    /// fresh store can be made.
    pub fn open(config: StoreConfig) -> Result<(Store, OpenReport)> {
        recovery::open_or_recover(config)
    }

    /// Opens without any recovery: the raw result.
    fn open_plain(config: &StoreConfig) -> Result<(Store, OpenReport), OpenProblem> {
        let existed = recovery::looks_like_database(&config.path);
        let db = recovery::open_sled(config)?;
        let meta = db.open_tree(META_TREE).map_err(OpenProblem::from_sled)?;
        match meta.get(KEY_FORMAT).map_err(OpenProblem::from_sled)? {
            Some(v) if v.as_ref() == FORMAT.to_be_bytes() => {}
            Some(v) => {
                return Err(OpenProblem::Broken(format!(
                    "store format {} (this build reads {FORMAT})",
                    be_u32(&v).map_or_else(|| "unreadable".to_owned(), |f| f.to_string())
                )))
            }
            None if existed => {
                return Err(OpenProblem::Broken(
                    "the database has lost its store header".into(),
                ))
            }
            None => {
                meta.insert(KEY_FORMAT, &FORMAT.to_be_bytes())
                    .map_err(OpenProblem::from_sled)?;
                db.flush().map_err(OpenProblem::from_sled)?;
            }
        }
        let (generation, revision) = match meta.get(KEY_CURRENT).map_err(OpenProblem::from_sled)? {
            Some(v) => decode_current(&v)
                .ok_or_else(|| OpenProblem::Broken("meta/current is malformed".into()))?,
            None => (0, None),
        };

        // Drop every generation but the current one: half-written snapshots
        // and old generations a crash kept from being dropped.
        let mut trees = BTreeMap::new();
        let mut discarded = std::collections::BTreeSet::new();
        for name in db.tree_names() {
            let Some((gen, collection)) = parse_tree_name(&name) else {
                continue;
            };
            if gen == generation {
                let tree = db.open_tree(&name).map_err(OpenProblem::from_sled)?;
                trees.insert(collection.to_owned(), tree);
            } else {
                db.drop_tree(&name).map_err(OpenProblem::from_sled)?;
                discarded.insert(gen);
            }
        }

        let code_uses = db
            .open_tree(CODE_USES_TREE)
            .map_err(OpenProblem::from_sled)?;
        let sync = Arc::new(SyncState::default());
        let (outbox, outbox_skipped) = Outbox::open(&db, config, Arc::clone(&sync))?;
        // Both modes need it: change sets and acknowledgements are group
        // committed either way.
        let flusher = Flusher::start(db.clone(), Arc::clone(&sync), config.flush_interval)
            .map_err(|source| {
                OpenProblem::Fatal(StoreError::Io {
                    context: "starting the store's flusher thread".into(),
                    source,
                })
            })?;
        let store = Store {
            db,
            meta,
            code_uses,
            data: RwLock::new(DataState {
                generation,
                revision,
                trees,
            }),
            writer: Mutex::new(()),
            snapshot_active: AtomicBool::new(false),
            outbox,
            sync,
            flusher: Some(flusher),
            closed: false,
        };
        Ok((
            store,
            OpenReport {
                recovery: None,
                outbox_skipped,
                discarded_generations: discarded.len(),
            },
        ))
    }

    /// The outbox of access-log events.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The revision of the data set (`None`: no snapshot loaded yet).
    pub fn revision(&self) -> Option<u64> {
        self.read_data().revision
    }

    /// A consistent view of the data set: no change set or snapshot becomes
    /// visible while it lives (they wait). Keep it short; it is not `Send`.
    pub fn view(&self) -> View<'_> {
        View {
            source: Source::Current(self.read_data()),
            overlay: None,
        }
    }

    /// The data set as it would be after `change`: the current records with
    /// the change set's laid over them, at its revision. Nothing is written;
    /// [`Store::apply`] does that (after the view is dropped: it holds the
    /// read lock). Fails like [`Store::apply`] when the store is not at the
    /// change set's base revision or a collection name is invalid.
    pub fn view_with(&self, change: &ChangeSet) -> Result<View<'_>> {
        if change.revision <= change.base {
            return Err(StoreError::RevisionNotNewer {
                base: change.base,
                revision: change.revision,
            });
        }
        let data = self.read_data();
        if data.revision != Some(change.base) {
            return Err(StoreError::RevisionMismatch {
                base: change.base,
                current: data.revision,
            });
        }
        let mut collections: BTreeMap<String, BTreeMap<Vec<u8>, Option<Vec<u8>>>> = BTreeMap::new();
        for op in &change.ops {
            check_collection(&op.collection)?;
            // A later op on the same key wins, as in `apply`.
            collections
                .entry(op.collection.clone())
                .or_default()
                .insert(op.key.clone(), op.value.clone());
        }
        Ok(View {
            source: Source::Current(data),
            overlay: Some(Overlay {
                revision: change.revision,
                collections,
            }),
        })
    }

    /// One record, decoded (`None` when absent).
    pub fn get<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<T>> {
        self.view().get(collection, key)
    }

    /// Starts a full snapshot at `revision`. Records put into the writer are
    /// invisible until [`SnapshotWriter::commit`]; dropping the writer
    /// without commit discards them. One snapshot at a time; change sets may
    /// still be applied meanwhile (the commit replaces them).
    pub fn begin_snapshot(&self, revision: u64) -> Result<SnapshotWriter<'_>> {
        self.snapshot_writer(StoreRef::Borrowed(self), revision)
    }

    /// [`Store::begin_snapshot`] for a writer that keeps the store alive
    /// itself (to keep it across calls, as the cloud sync does between
    /// snapshot chunks).
    pub fn begin_shared_snapshot(
        store: &Arc<Store>,
        revision: u64,
    ) -> Result<SnapshotWriter<'static>> {
        store.snapshot_writer(StoreRef::Shared(Arc::clone(store)), revision)
    }

    fn snapshot_writer<'a>(
        &self,
        store: StoreRef<'a>,
        revision: u64,
    ) -> Result<SnapshotWriter<'a>> {
        if self.snapshot_active.swap(true, Ordering::AcqRel) {
            return Err(StoreError::SnapshotInProgress);
        }
        let current = self.read_data().generation;
        let highest = self
            .db
            .tree_names()
            .iter()
            .filter_map(|n| parse_tree_name(n).map(|(g, _)| g))
            .max()
            .unwrap_or(0);
        Ok(SnapshotWriter {
            store,
            generation: current.max(highest) + 1,
            revision,
            trees: BTreeMap::new(),
            records: 0,
            committed: false,
        })
    }

    /// Applies a change set atomically: every upsert and delete and the new
    /// revision, or nothing. The store must be at `change.base_revision()`.
    pub fn apply(&self, change: &ChangeSet) -> Result<()> {
        if change.revision <= change.base {
            return Err(StoreError::RevisionNotNewer {
                base: change.base,
                revision: change.revision,
            });
        }
        let _writer = lock(&self.writer);
        let mut data = self.data.write().unwrap_or_else(PoisonError::into_inner);
        if data.revision != Some(change.base) {
            return Err(StoreError::RevisionMismatch {
                base: change.base,
                current: data.revision,
            });
        }
        // Trees of the current generation for every touched collection
        // (creating an empty tree is harmless if the transaction fails).
        let mut names: Vec<&str> = change.ops.iter().map(|op| op.collection.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        for name in &names {
            check_collection(name)?;
        }
        let mut trees = vec![self.meta.clone()];
        for name in &names {
            let tree = match data.trees.get(*name) {
                Some(tree) => tree.clone(),
                None => {
                    let tree = self.db.open_tree(tree_name(data.generation, name))?;
                    data.trees.insert((*name).to_owned(), tree.clone());
                    tree
                }
            };
            trees.push(tree);
        }
        let index: Vec<usize> = change
            .ops
            .iter()
            .map(|op| {
                names
                    .binary_search(&op.collection.as_str())
                    .map_or(0, |i| i + 1)
            })
            .collect();
        let expected = encode_current(data.generation, data.revision);
        let next = encode_current(data.generation, Some(change.revision));
        let result = trees.as_slice().transaction(|tx| {
            let meta = &tx[0];
            let now = meta.get(KEY_CURRENT)?;
            // Another writer cannot be here (we hold the writer lock); this
            // guards against a meta key that does not match memory.
            if now.as_deref().unwrap_or(&encode_current(0, None)[..]) != &expected[..] {
                return sled::transaction::abort(());
            }
            for (op, &i) in change.ops.iter().zip(&index) {
                let tree = &tx[i];
                match &op.value {
                    Some(value) => {
                        tree.insert(op.key.as_slice(), value.as_slice())?;
                    }
                    None => {
                        tree.remove(op.key.as_slice())?;
                    }
                }
            }
            meta.insert(KEY_CURRENT, &next[..])?;
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(sled::transaction::TransactionError::Abort(())) => {
                return Err(StoreError::Corrupt {
                    what: "meta/current differs from the open store",
                })
            }
            Err(sled::transaction::TransactionError::Storage(e)) => return Err(e.into()),
        }
        data.revision = Some(change.revision);
        self.sync.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Records that this hub used the one-time access code `id` at `at_ms`
    /// (ms since the epoch), durably (flushed before it returns: a use
    /// lost in a crash would open the door again). An earlier record of
    /// the same code stays. Returns false when there was one.
    pub fn record_code_use(&self, id: &str, at_ms: i64) -> Result<bool> {
        let fresh = self
            .code_uses
            .compare_and_swap(
                id.as_bytes(),
                None as Option<&[u8]>,
                Some(&at_ms.to_be_bytes()),
            )?
            .is_ok();
        if fresh {
            self.flush()?;
        }
        Ok(fresh)
    }

    /// Every recorded code use: (code id, ms since the epoch), by id. A
    /// record that does not decode (not UTF-8, not 8 bytes) is skipped.
    pub fn code_uses(&self) -> Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        for item in self.code_uses.iter() {
            let (key, value) = item?;
            let (Ok(id), Ok(ms)) = (
                std::str::from_utf8(&key),
                <[u8; 8]>::try_from(value.as_ref()),
            ) else {
                continue;
            };
            out.push((id.to_owned(), i64::from_be_bytes(ms)));
        }
        Ok(out)
    }

    /// Drops the use records of the codes `keep` says no to (codes the
    /// cloud deleted). Returns how many went. Group committed like a
    /// change set.
    pub fn forget_code_uses(&self, mut keep: impl FnMut(&str) -> bool) -> Result<usize> {
        let mut gone = 0;
        for item in self.code_uses.iter().keys() {
            let key = item?;
            if !std::str::from_utf8(&key).is_ok_and(&mut keep) {
                self.code_uses.remove(&key)?;
                gone += 1;
            }
        }
        if gone > 0 {
            self.sync.dirty.store(true, Ordering::Release);
        }
        Ok(gone)
    }

    /// Flushes everything written so far to disk (`fsync`) now.
    pub fn flush(&self) -> Result<()> {
        flush_db(&self.db, &self.sync)
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    /// Closes the store: records the outbox's last sequence number (so a
    /// clean restart skips none) and flushes. Dropping the store does the
    /// same but can only log errors.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let outbox = self.outbox.close();
        if let Some(flusher) = self.flusher.take() {
            flusher.stop();
        }
        outbox?;
        self.flush()
    }

    fn read_data(&self) -> RwLockReadGuard<'_, DataState> {
        self.data.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "store: closing failed");
        }
    }
}

/// A consistent read-only view of the data set (see [`Store::view`]): the
/// current data set, the current one with a [`ChangeSet`] laid over it
/// ([`Store::view_with`]), or a snapshot being written
/// ([`SnapshotWriter::view`]).
pub struct View<'a> {
    source: Source<'a>,
    overlay: Option<Overlay>,
}

enum Source<'a> {
    Current(RwLockReadGuard<'a, DataState>),
    Staged {
        revision: u64,
        trees: &'a BTreeMap<String, sled::Tree>,
    },
}

/// A change set's records by collection and key (`None`: deleted), and the
/// revision it produces.
struct Overlay {
    revision: u64,
    collections: BTreeMap<String, Changes>,
}

impl View<'_> {
    /// The data set's revision (`None`: no snapshot loaded yet).
    pub fn revision(&self) -> Option<u64> {
        if let Some(o) = &self.overlay {
            return Some(o.revision);
        }
        match &self.source {
            Source::Current(data) => data.revision,
            Source::Staged { revision, .. } => Some(*revision),
        }
    }

    fn trees(&self) -> &BTreeMap<String, sled::Tree> {
        match &self.source {
            Source::Current(data) => &data.trees,
            Source::Staged { trees, .. } => trees,
        }
    }

    fn changes(&self, collection: &str) -> Option<&Changes> {
        self.overlay.as_ref()?.collections.get(collection)
    }

    /// One record, decoded (`None` when absent).
    pub fn get<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<T>> {
        match self.get_raw(collection, key)? {
            Some(bytes) => decode(collection, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// One record's stored bytes (postcard).
    pub fn get_raw(&self, collection: &str, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        if let Some(change) = self.changes(collection).and_then(|c| c.get(key.as_ref())) {
            return Ok(change.clone());
        }
        match self.trees().get(collection) {
            Some(tree) => Ok(tree.get(key)?.map(|v| v.to_vec())),
            None => Ok(None),
        }
    }

    /// Every record of a collection in key order, as stored (postcard).
    pub fn iter_raw(
        &self,
        collection: &str,
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec)>> + '_ {
        Merge {
            stored: self
                .trees()
                .get(collection)
                .map(|tree| tree.iter().peekable()),
            changes: self.changes(collection).map(|c| c.iter().peekable()),
        }
    }

    /// Every record of a collection in key order, decoded.
    pub fn iter<T: DeserializeOwned>(
        &self,
        collection: &str,
    ) -> impl Iterator<Item = Result<(Vec<u8>, T)>> + '_ {
        let name = collection.to_owned();
        self.iter_raw(collection).map(move |item| {
            let (k, v) = item?;
            Ok((k.to_vec(), decode(&name, &v)?))
        })
    }

    /// The stored record with the greatest key at or below `key`, else the
    /// collection's first record (`None`: the collection is empty). For a
    /// collection kept in ranges (a record per range, keyed by its lowest
    /// key). Reads the stored records only, not a change set laid over them
    /// ([`Store::view_with`]).
    pub fn floor_or_first_raw(
        &self,
        collection: &str,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<(sled::IVec, sled::IVec)>> {
        let Some(tree) = self.trees().get(collection) else {
            return Ok(None);
        };
        match tree.range(..=key.as_ref()).next_back() {
            Some(found) => Ok(Some(found?)),
            None => Ok(tree.first()?),
        }
    }

    /// Number of records in a collection (walks the collection).
    pub fn len(&self, collection: &str) -> usize {
        match self.changes(collection) {
            None => self.trees().get(collection).map_or(0, sled::Tree::len),
            Some(_) => self.iter_raw(collection).count(),
        }
    }

    /// Whether a collection holds no record.
    pub fn is_empty(&self, collection: &str) -> bool {
        self.iter_raw(collection).next().is_none()
    }

    /// The collections of the data set (some may be empty).
    pub fn collections(&self) -> Vec<String> {
        let mut names: Vec<String> = self.trees().keys().cloned().collect();
        if let Some(o) = &self.overlay {
            names.extend(o.collections.keys().cloned());
            names.sort_unstable();
            names.dedup();
        }
        names
    }
}

/// A change set's records of one collection by key (`None`: deleted).
type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;
type ChangesIter<'a> =
    std::iter::Peekable<std::collections::btree_map::Iter<'a, Vec<u8>, Option<Vec<u8>>>>;

/// A collection's stored records merged with a change set's, in key order.
struct Merge<'a> {
    stored: Option<std::iter::Peekable<sled::Iter>>,
    changes: Option<ChangesIter<'a>>,
}

impl Iterator for Merge<'_> {
    type Item = Result<(sled::IVec, sled::IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let next_change = self
                .changes
                .as_mut()
                .and_then(|c| c.peek().map(|(k, _)| *k));
            let order = match (self.stored.as_mut().and_then(|s| s.peek()), next_change) {
                (None, None) => return None,
                (Some(Err(_)), _) | (Some(Ok(_)), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(Ok((stored, _))), Some(changed)) => stored.as_ref().cmp(changed.as_slice()),
            };
            if order != std::cmp::Ordering::Greater {
                let stored = self.stored.as_mut().and_then(Iterator::next);
                if order == std::cmp::Ordering::Less {
                    return stored.map(|r| r.map_err(StoreError::from));
                }
            }
            // The change replaces (or deletes) the stored record.
            let (key, value) = self.changes.as_mut().and_then(Iterator::next)?;
            if let Some(value) = value {
                return Some(Ok((key.as_slice().into(), value.as_slice().into())));
            }
        }
    }
}

/// Writes a full snapshot (see [`Store::begin_snapshot`]).
pub struct SnapshotWriter<'a> {
    store: StoreRef<'a>,
    generation: u64,
    revision: u64,
    trees: BTreeMap<String, sled::Tree>,
    records: u64,
    committed: bool,
}

/// The store a [`SnapshotWriter`] writes to.
enum StoreRef<'a> {
    Borrowed(&'a Store),
    Shared(Arc<Store>),
}

impl std::ops::Deref for StoreRef<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        match self {
            StoreRef::Borrowed(store) => store,
            StoreRef::Shared(store) => store,
        }
    }
}

/// What a committed snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its generation number on disk.
    pub generation: u64,
    /// The data set's revision.
    pub revision: u64,
    /// Records written (a key written twice counts twice).
    pub records: u64,
}

impl SnapshotWriter<'_> {
    /// Adds (or overwrites) one record.
    pub fn put<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: impl AsRef<[u8]>,
        value: &T,
    ) -> Result<()> {
        let bytes = encode(collection, value)?;
        self.put_raw(collection, key, bytes)
    }

    /// Adds one record unless the snapshot already has one under `key`.
    /// Returns `false` (and writes nothing) for a key already put: a
    /// snapshot that names one id twice is malformed.
    pub fn put_new<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: impl AsRef<[u8]>,
        value: &T,
    ) -> Result<bool> {
        let bytes = encode(collection, value)?;
        let tree = self.tree(collection)?;
        let key = key.as_ref();
        let fresh = tree
            .compare_and_swap(key, None as Option<&[u8]>, Some(bytes))?
            .is_ok();
        if fresh {
            self.records += 1;
        }
        Ok(fresh)
    }

    /// The store the snapshot is written to.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The records put so far, as a [`View`] at the snapshot's revision (to
    /// check them before [`SnapshotWriter::commit`]).
    pub fn view(&self) -> View<'_> {
        View {
            source: Source::Staged {
                revision: self.revision,
                trees: &self.trees,
            },
            overlay: None,
        }
    }

    /// Every record put so far into a collection, in key order; the
    /// iterator does not borrow the writer (to rewrite a staging collection
    /// into another, then [`SnapshotWriter::remove`] it).
    pub fn records_of(
        &self,
        collection: &str,
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec)>> + 'static {
        self.trees
            .get(collection)
            .map(sled::Tree::iter)
            .into_iter()
            .flatten()
            .map(|item| item.map_err(StoreError::from))
    }

    /// Drops a collection and its records from the snapshot.
    pub fn remove(&mut self, collection: &str) -> Result<()> {
        if self.trees.remove(collection).is_some() {
            self.store
                .db
                .drop_tree(tree_name(self.generation, collection))?;
        }
        Ok(())
    }

    fn tree(&mut self, collection: &str) -> Result<&sled::Tree> {
        if !self.trees.contains_key(collection) {
            check_collection(collection)?;
            let tree = self
                .store
                .db
                .open_tree(tree_name(self.generation, collection))?;
            self.trees.insert(collection.to_owned(), tree);
        }
        self.trees.get(collection).ok_or(StoreError::Corrupt {
            what: "a snapshot tree vanished",
        })
    }

    /// Adds one record already encoded with postcard.
    pub fn put_raw(
        &mut self,
        collection: &str,
        key: impl AsRef<[u8]>,
        bytes: impl Into<sled::IVec>,
    ) -> Result<()> {
        self.tree(collection)?.insert(key.as_ref(), bytes)?;
        self.records += 1;
        Ok(())
    }

    /// Records put so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Makes the snapshot the current data set, atomically, then drops the
    /// previous generation.
    pub fn commit(mut self) -> Result<SnapshotInfo> {
        let store = &*self.store;
        // The new generation on disk before anything points at it.
        store.flush()?;
        let old = {
            let _writer = lock(&store.writer);
            let mut data = store.data.write().unwrap_or_else(PoisonError::into_inner);
            store.meta.insert(
                KEY_CURRENT,
                &encode_current(self.generation, Some(self.revision))[..],
            )?;
            std::mem::replace(
                &mut *data,
                DataState {
                    generation: self.generation,
                    revision: Some(self.revision),
                    trees: std::mem::take(&mut self.trees),
                },
            )
        };
        self.committed = true;
        store.snapshot_active.store(false, Ordering::Release);
        // The flip on disk before the old generation goes.
        store.flush()?;
        for name in old.trees.keys() {
            store.db.drop_tree(tree_name(old.generation, name))?;
        }
        store.sync.dirty.store(true, Ordering::Release);
        Ok(SnapshotInfo {
            generation: self.generation,
            revision: self.revision,
            records: self.records,
        })
    }
}

impl Drop for SnapshotWriter<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for name in self.trees.keys() {
            if let Err(e) = self.store.db.drop_tree(tree_name(self.generation, name)) {
                // The next open drops it.
                tracing::warn!(error = %e, "store: discarding an unfinished snapshot failed");
            }
        }
        self.store.snapshot_active.store(false, Ordering::Release);
    }
}

/// An incremental change from one revision to the next: upserts and
/// deletes across collections, applied all together by [`Store::apply`].
#[derive(Debug, Clone)]
pub struct ChangeSet {
    base: u64,
    revision: u64,
    ops: Vec<Op>,
}

#[derive(Debug, Clone)]
struct Op {
    collection: String,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

impl ChangeSet {
    /// A change from `base_revision` (the store must be there) to `revision`.
    pub fn new(base_revision: u64, revision: u64) -> Self {
        Self {
            base: base_revision,
            revision,
            ops: Vec::new(),
        }
    }

    /// The revision the change starts from.
    pub fn base_revision(&self) -> u64 {
        self.base
    }

    /// The revision after the change.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Number of upserts and deletes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the change set has no operation (it still moves the revision).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Inserts or replaces a record.
    pub fn upsert<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: impl AsRef<[u8]>,
        value: &T,
    ) -> Result<&mut Self> {
        check_collection(collection)?;
        let bytes = encode(collection, value)?;
        self.ops.push(Op {
            collection: collection.to_owned(),
            key: key.as_ref().to_vec(),
            value: Some(bytes),
        });
        Ok(self)
    }

    /// Removes a record (absent records are fine). An invalid collection
    /// name makes [`Store::apply`] fail.
    pub fn delete(&mut self, collection: &str, key: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push(Op {
            collection: collection.to_owned(),
            key: key.as_ref().to_vec(),
            value: None,
        });
        self
    }
}

// ---------------------------------------------------------------------------
// The flusher (group commit).

/// What the flusher and the outbox share.
#[derive(Default)]
struct SyncState {
    /// Something was written since the last flush began.
    dirty: AtomicBool,
    /// Highest outbox seq whose insert has returned.
    last_assigned: AtomicU64,
    /// Highest outbox seq known to be on disk.
    durable: Mutex<u64>,
    durable_cv: Condvar,
    /// Flushes that failed (logged; retried at the next tick).
    flush_errors: AtomicU64,
}

impl SyncState {
    fn mark_durable(&self, seq: u64) {
        let mut durable = lock(&self.durable);
        if seq > *durable {
            *durable = seq;
            self.durable_cv.notify_all();
        }
    }
}

/// Flushes `db` and records what became durable.
fn flush_db(db: &sled::Db, sync: &SyncState) -> Result<()> {
    sync.dirty.store(false, Ordering::Release);
    let target = sync.last_assigned.load(Ordering::Acquire);
    match db.flush() {
        Ok(_) => {
            sync.mark_durable(target);
            Ok(())
        }
        Err(e) => {
            sync.dirty.store(true, Ordering::Release);
            sync.flush_errors.fetch_add(1, Ordering::Relaxed);
            Err(e.into())
        }
    }
}

struct Flusher {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Flusher {
    fn start(db: sled::Db, sync: Arc<SyncState>, interval: Duration) -> std::io::Result<Flusher> {
        let (stop, stopped) = mpsc::channel::<()>();
        let interval = interval.max(Duration::from_millis(1));
        let thread = std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || {
                let mut next = Instant::now() + interval;
                loop {
                    let wait = next.saturating_duration_since(Instant::now());
                    match stopped.recv_timeout(wait) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                    // Keep the cadence; after a slow flush start again now.
                    next = (next + interval).max(Instant::now());
                    if sync.dirty.load(Ordering::Acquire) {
                        if let Err(e) = flush_db(&db, &sync) {
                            tracing::error!(error = %e, "store: group-commit flush failed");
                        }
                    }
                }
            })?;
        Ok(Flusher { stop, thread })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

// ---------------------------------------------------------------------------
// Helpers.

/// Why a plain open failed.
#[derive(Debug)]
enum OpenProblem {
    /// Another process holds the database.
    Locked,
    /// Moving the files would not help (disk full, read-only file system).
    Fatal(StoreError),
    /// The database is damaged, unreadable or of another format.
    Broken(String),
}

impl OpenProblem {
    fn from_sled(e: sled::Error) -> Self {
        recovery::classify(e)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn check_collection(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_COLLECTION_NAME {
        return Err(StoreError::InvalidCollection { len: name.len() });
    }
    Ok(())
}

fn encode<T: Serialize + ?Sized>(collection: &str, value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|source| StoreError::Encode {
        collection: collection.to_owned(),
        source,
    })
}

fn decode<T: DeserializeOwned>(collection: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|source| StoreError::Decode {
        collection: collection.to_owned(),
        source,
    })
}

fn tree_name(generation: u64, collection: &str) -> String {
    format!("{DATA_PREFIX}{generation:016x}:{collection}")
}

/// `data:<gen>:<collection>` → (gen, collection).
fn parse_tree_name(name: &[u8]) -> Option<(u64, &str)> {
    let rest = std::str::from_utf8(name).ok()?.strip_prefix(DATA_PREFIX)?;
    let (gen, collection) = rest.split_once(':')?;
    if gen.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(gen, 16).ok()?, collection))
}

fn encode_current(generation: u64, revision: Option<u64>) -> [u8; 17] {
    let mut out = [0u8; 17];
    out[..8].copy_from_slice(&generation.to_be_bytes());
    if let Some(r) = revision {
        out[8] = 1;
        out[9..].copy_from_slice(&r.to_be_bytes());
    }
    out
}

fn decode_current(bytes: &[u8]) -> Option<(u64, Option<u64>)> {
    if bytes.len() != 17 {
        return None;
    }
    let generation = be_u64(&bytes[..8])?;
    let revision = match bytes[8] {
        0 => None,
        1 => Some(be_u64(&bytes[9..])?),
        _ => return None,
    };
    Some((generation, revision))
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn be_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// The store's path with a suffix appended to its last component.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests;
