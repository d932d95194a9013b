//! The access-log outbox: events waiting for the cloud's acknowledgement.

use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{
    be_u64, flush_db, lock, Durability, OpenProblem, Result, StoreConfig, StoreError, SyncState,
};

const TREE_EVENT: u8 = b'e';
const KEY_RESERVED: &[u8] = b"r";
const KEY_ACKED: &[u8] = b"a";
/// Sequence numbers reserved on disk at a time.
const SEQ_BLOCK: u64 = 1024;
/// Bytes an event costs on top of its own: its sequence number.
const EVENT_OVERHEAD: u64 = 8;

/// The durable, ordered queue of access-log events (part of a
/// [`Store`](super::Store)).
///
/// # Sequence numbers
///
/// Every event gets the next `u64` sequence number, starting at 1. Numbers
/// are reserved on disk in blocks of 1024 (the reservation is flushed before
/// a number of the block is handed out), so no number handed out is ever
/// given again, even after a crash that lost the event: the next run starts
/// after the reserved block, and [`OpenReport::outbox_skipped`] names the
/// skipped numbers. A clean close records the last number used, so normal
/// restarts continue without a gap. The cloud can therefore tell "never
/// sent" (a gap the hub reported) from "not yet arrived".
///
/// # Durability
///
/// [`Durability::GroupCommit`] (the default): [`append`](Outbox::append)
/// writes into sled's log buffer and returns (microseconds); the store's
/// flusher `fsync`s it within [`StoreConfig::flush_interval`] (25 ms) plus
/// the flush's own time. [`durable_through`](Outbox::durable_through) and
/// [`wait_durable`](Outbox::wait_durable) tell what is on disk. This keeps the
/// card-to-strike path free of `fsync` (tens of milliseconds on an SD card)
/// and meets "no event of a decision made 100 ms before a kill is lost" with
/// room for a slow flush. [`Durability::EveryAppend`] flushes inside every
/// append. Figures: `docs/store.md`.
///
/// # Acknowledgement
///
/// [`ack_through`](Outbox::ack_through) deletes every event up to a sequence
/// number (cumulative). An acknowledgement lost in a crash only makes the
/// events come out of [`peek`](Outbox::peek) again: delivery is at least
/// once, and the cloud de-duplicates by sequence number.
///
/// # Size bound and what happens when it is reached
///
/// The bound ([`StoreConfig::outbox_limit_bytes`], counted as event bytes
/// plus 8 per event) is an alarm threshold, not a place where events are
/// dropped: an access-control log that silently loses denials or forced
/// doors is worse than one that uses more disk. So:
///
/// - from 80 % of the bound, appends report [`OutboxLevel::High`]: raise a
///   "log backlog" alarm (the cloud has not acknowledged for a long time);
/// - from 100 %, [`OutboxLevel::OverLimit`]: the append still succeeds, the
///   caller raises the "log over limit" alarm;
/// - at the hard limit ([`StoreConfig::outbox_hard_limit_bytes`], default
///   twice the bound), appends are refused with [`StoreError::OutboxFull`]
///   and the level is [`OutboxLevel::Full`]. Only here can an event be lost,
///   and not silently: the caller still holds it, raises a "log full" alarm
///   and keeps deciding at the doors. Filling the disk instead would break
///   the whole store (credentials, change sets) and every door with it.
///
/// With the defaults (64 MiB bound) and events of about 100 bytes the bound
/// is over 600,000 events: weeks of heavy traffic without the cloud.
///
/// [`OpenReport::outbox_skipped`]: super::OpenReport::outbox_skipped
pub struct Outbox {
    db: sled::Db,
    tree: sled::Tree,
    state: Mutex<State>,
    sync: Arc<SyncState>,
    durability: Durability,
    limit: u64,
    hard_limit: u64,
}

#[derive(Debug, Clone, Copy)]
struct State {
    next_seq: u64,
    /// Highest seq reserved on disk.
    reserved: u64,
    /// Highest seq acknowledged.
    acked: u64,
    depth: u64,
    bytes: u64,
    /// An append was refused since the last acknowledgement.
    refused: bool,
}

/// How full the outbox is (see [`Outbox`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OutboxLevel {
    /// Below 80 % of the bound.
    Normal,
    /// From 80 % of the bound: raise a backlog alarm.
    High,
    /// At or above the bound: events are still stored; raise an alarm.
    OverLimit,
    /// At the hard limit: appends are refused with [`StoreError::OutboxFull`].
    Full,
}

/// The result of [`Outbox::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The event's sequence number.
    pub seq: u64,
    /// The outbox's level after the append.
    pub level: OutboxLevel,
}

/// The result of [`Outbox::ack_through`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckResult {
    /// Events deleted by this acknowledgement.
    pub removed: u64,
    /// The outbox's level after it.
    pub level: OutboxLevel,
}

/// A summary of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStatus {
    /// Events stored.
    pub depth: u64,
    /// Bytes stored (events plus 8 each).
    pub bytes: u64,
    /// How full.
    pub level: OutboxLevel,
    /// The number the next event gets.
    pub next_seq: u64,
    /// Every event up to this number is on disk.
    pub durable_through: u64,
    /// Highest number acknowledged.
    pub acked_through: u64,
}

impl Outbox {
    /// Loads the outbox's state; returns the numbers skipped after a crash.
    pub(super) fn open(
        db: &sled::Db,
        config: &StoreConfig,
        sync: Arc<SyncState>,
    ) -> Result<(Outbox, Option<RangeInclusive<u64>>), OpenProblem> {
        let tree = db
            .open_tree(super::OUTBOX_TREE)
            .map_err(OpenProblem::from_sled)?;
        let mut depth = 0u64;
        let mut bytes = 0u64;
        let mut last_event = 0u64;
        for item in tree.scan_prefix([TREE_EVENT]) {
            let (k, v) = item.map_err(OpenProblem::from_sled)?;
            let seq =
                event_seq(&k).ok_or_else(|| OpenProblem::Broken("malformed outbox key".into()))?;
            depth += 1;
            bytes += v.len() as u64 + EVENT_OVERHEAD;
            last_event = seq;
        }
        let read_u64 = |key: &[u8]| -> Result<u64, OpenProblem> {
            match tree.get(key).map_err(OpenProblem::from_sled)? {
                None => Ok(0),
                Some(v) => {
                    be_u64(&v).ok_or_else(|| OpenProblem::Broken("malformed outbox counter".into()))
                }
            }
        };
        let reserved = read_u64(KEY_RESERVED)?;
        let acked = read_u64(KEY_ACKED)?;
        let known = last_event.max(acked);
        let skipped = (reserved > known).then(|| known + 1..=reserved);
        let next_seq = reserved.max(known) + 1;
        sync.last_assigned.store(next_seq - 1, Ordering::Release);
        sync.mark_durable(next_seq - 1);
        let outbox = Outbox {
            db: db.clone(),
            tree,
            state: Mutex::new(State {
                next_seq,
                reserved: reserved.max(known),
                acked,
                depth,
                bytes,
                refused: false,
            }),
            sync,
            durability: config.durability,
            limit: config.outbox_limit_bytes,
            hard_limit: config
                .outbox_hard_limit_bytes
                .max(config.outbox_limit_bytes),
        };
        Ok((outbox, skipped))
    }

    /// Stores an event (already encoded by the caller) and returns its
    /// sequence number and the outbox's level. Fails with
    /// [`StoreError::OutboxFull`] at the hard limit (the event is not
    /// stored).
    pub fn append(&self, event: &[u8]) -> Result<Appended> {
        let cost = event.len() as u64 + EVENT_OVERHEAD;
        let mut state = lock(&self.state);
        if state.bytes + cost > self.hard_limit {
            state.refused = true;
            return Err(StoreError::OutboxFull {
                bytes: state.bytes,
                hard_limit: self.hard_limit,
            });
        }
        let seq = state.next_seq;
        if seq > state.reserved {
            // Reserve the next block on disk before handing out its numbers.
            let reserved = seq + SEQ_BLOCK - 1;
            self.tree.insert(KEY_RESERVED, &reserved.to_be_bytes())?;
            flush_db(&self.db, &self.sync)?;
            state.reserved = reserved;
        }
        self.tree.insert(event_key(seq), event)?;
        state.next_seq = seq + 1;
        state.depth += 1;
        state.bytes += cost;
        self.sync.last_assigned.store(seq, Ordering::Release);
        self.sync.dirty.store(true, Ordering::Release);
        let level = self.level(&state);
        drop(state);
        if self.durability == Durability::EveryAppend {
            flush_db(&self.db, &self.sync)?;
        }
        Ok(Appended { seq, level })
    }

    /// Up to `max` events from sequence number `from` on, in order.
    pub fn peek(&self, from: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::with_capacity(max.min(1024));
        if max == 0 {
            return Ok(out);
        }
        let start = event_key(from);
        let end = [TREE_EVENT + 1];
        for item in self.tree.range::<&[u8], _>(&start[..]..&end[..]) {
            let (k, v) = item?;
            let seq = event_seq(&k).ok_or(StoreError::Corrupt { what: "outbox key" })?;
            out.push((seq, v.to_vec()));
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Deletes every event up to and including `seq` (cumulative
    /// acknowledgement). Events after it stay, in order.
    pub fn ack_through(&self, seq: u64) -> Result<AckResult> {
        let mut state = lock(&self.state);
        let seq = seq.min(state.next_seq - 1);
        let mut batch = sled::Batch::default();
        let mut removed = 0u64;
        let mut freed = 0u64;
        for item in self.tree.range(event_key(0)..=event_key(seq)) {
            let (k, v) = item?;
            freed += v.len() as u64 + EVENT_OVERHEAD;
            removed += 1;
            batch.remove(k);
        }
        if seq > state.acked {
            batch.insert(KEY_ACKED, &seq.to_be_bytes());
        } else if removed == 0 {
            return Ok(AckResult {
                removed,
                level: self.level(&state),
            });
        }
        // One batch: the deletions and the watermark survive a crash
        // together or not at all.
        self.tree.apply_batch(batch)?;
        state.acked = state.acked.max(seq);
        state.depth -= removed;
        state.bytes -= freed;
        if removed > 0 {
            state.refused = false;
        }
        self.sync.dirty.store(true, Ordering::Release);
        Ok(AckResult {
            removed,
            level: self.level(&state),
        })
    }

    /// Events stored.
    pub fn depth(&self) -> u64 {
        lock(&self.state).depth
    }

    /// The number the next event gets.
    pub fn next_seq(&self) -> u64 {
        lock(&self.state).next_seq
    }

    /// Every event with a number up to this one is on disk (0: none yet).
    pub fn durable_through(&self) -> u64 {
        *lock(&self.sync.durable)
    }

    /// Waits until event `seq` is on disk; false on timeout.
    pub fn wait_durable(&self, seq: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut durable = lock(&self.sync.durable);
        while *durable < seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            durable = self
                .sync
                .durable_cv
                .wait_timeout(durable, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// A summary: depth, bytes, level, numbers.
    pub fn status(&self) -> OutboxStatus {
        let state = *lock(&self.state);
        OutboxStatus {
            depth: state.depth,
            bytes: state.bytes,
            level: self.level(&state),
            next_seq: state.next_seq,
            durable_through: self.durable_through(),
            acked_through: state.acked,
        }
    }

    /// Makes the next number at least `min` (persisted at once). For the
    /// sync layer after a recovery that could not salvage the old outbox:
    /// the cloud knows the highest number it has seen.
    pub fn raise_next_seq(&self, min: u64) -> Result<()> {
        let mut state = lock(&self.state);
        if min <= state.next_seq {
            return Ok(());
        }
        let reserved = state.reserved.max(min - 1);
        self.tree.insert(KEY_RESERVED, &reserved.to_be_bytes())?;
        flush_db(&self.db, &self.sync)?;
        state.reserved = reserved;
        state.next_seq = min;
        self.sync.last_assigned.store(min - 1, Ordering::Release);
        Ok(())
    }

    /// Records the last number used so that a clean restart skips none.
    pub(super) fn close(&self) -> Result<()> {
        let mut state = lock(&self.state);
        let last = state.next_seq - 1;
        if state.reserved != last {
            self.tree.insert(KEY_RESERVED, &last.to_be_bytes())?;
            state.reserved = last;
            self.sync.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Copies salvaged events (with their numbers) into this outbox, which
    /// must be empty, and continues numbering after `reserved`.
    pub(super) fn restore(&self, events: &[(u64, Vec<u8>)], reserved: u64) -> Result<()> {
        let mut state = lock(&self.state);
        let mut batch = sled::Batch::default();
        let mut bytes = 0u64;
        let mut last = 0u64;
        for (seq, event) in events {
            batch.insert(&event_key(*seq)[..], event.as_slice());
            bytes += event.len() as u64 + EVENT_OVERHEAD;
            last = last.max(*seq);
        }
        let reserved = reserved.max(last).max(state.next_seq - 1);
        batch.insert(KEY_RESERVED, &reserved.to_be_bytes());
        self.tree.apply_batch(batch)?;
        flush_db(&self.db, &self.sync)?;
        state.depth += events.len() as u64;
        state.bytes += bytes;
        state.reserved = reserved;
        state.next_seq = reserved + 1;
        self.sync.last_assigned.store(reserved, Ordering::Release);
        self.sync.mark_durable(reserved);
        Ok(())
    }

    fn level(&self, state: &State) -> OutboxLevel {
        if state.refused || state.bytes >= self.hard_limit {
            OutboxLevel::Full
        } else if state.bytes >= self.limit {
            OutboxLevel::OverLimit
        } else if state.bytes.saturating_mul(5) >= self.limit.saturating_mul(4) {
            OutboxLevel::High
        } else {
            OutboxLevel::Normal
        }
    }
}

/// The outbox of a damaged database, read for salvage.
pub(super) struct Salvaged {
    /// Its events with their numbers, in order.
    pub events: Vec<(u64, Vec<u8>)>,
    /// The highest number it used, reserved or acknowledged.
    pub highest: u64,
}

/// Reads the outbox tree of another (salvaged) database.
pub(super) fn read_all(tree: &sled::Tree) -> Result<Salvaged> {
    let mut events = Vec::new();
    for item in tree.scan_prefix([TREE_EVENT]) {
        let (k, v) = item?;
        if let Some(seq) = event_seq(&k) {
            events.push((seq, v.to_vec()));
        }
    }
    let mut highest = events.last().map_or(0, |(seq, _)| *seq);
    for key in [KEY_RESERVED, KEY_ACKED] {
        if let Some(v) = tree.get(key)? {
            highest = highest.max(be_u64(&v).unwrap_or(0));
        }
    }
    Ok(Salvaged { events, highest })
}

fn event_key(seq: u64) -> [u8; 9] {
    let mut key = [TREE_EVENT; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn event_seq(key: &[u8]) -> Option<u64> {
    match key.split_first() {
        Some((&TREE_EVENT, rest)) => be_u64(rest),
        _ => None,
    }
}
