//! Unit tests of the store. The crash test (a real process killed with
//! SIGKILL) is `hub/tests/outbox_crash.rs`.

use super::*;
use std::sync::atomic::AtomicUsize;
use tempfile::TempDir;

fn config(dir: &TempDir) -> StoreConfig {
    StoreConfig::new(dir.path().join("store"))
}

/// sled itself, on a closed store (its lock may linger a moment).
fn raw_sled(path: &Path) -> sled::Db {
    for _ in 0..200 {
        match sled::open(path) {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    sled::open(path).unwrap()
}

fn open(dir: &TempDir) -> (Store, OpenReport) {
    Store::open(config(dir)).unwrap()
}

fn snapshot(store: &Store, revision: u64, records: &[(&str, &str, u32)]) -> SnapshotInfo {
    let mut w = store.begin_snapshot(revision).unwrap();
    for (collection, key, value) in records {
        w.put(collection, key, value).unwrap();
    }
    w.commit().unwrap()
}

fn data_trees(store: &Store) -> Vec<String> {
    let mut names: Vec<String> = store
        .db
        .tree_names()
        .iter()
        .filter_map(|n| std::str::from_utf8(n).ok())
        .filter(|n| n.starts_with(DATA_PREFIX))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

fn corrupt_dirs(dir: &TempDir) -> Vec<PathBuf> {
    std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect()
}

#[test]
fn tree_names_and_meta_values_round_trip() {
    let name = tree_name(0x2a, "door:groups");
    assert_eq!(name, "data:000000000000002a:door:groups");
    assert_eq!(parse_tree_name(name.as_bytes()), Some((42, "door:groups")));
    assert_eq!(parse_tree_name(b"data:2a:x"), None);
    assert_eq!(parse_tree_name(b"outbox"), None);
    for (gen, rev) in [(0, None), (7, Some(0)), (u64::MAX, Some(u64::MAX))] {
        assert_eq!(decode_current(&encode_current(gen, rev)), Some((gen, rev)));
    }
    assert_eq!(decode_current(b"short"), None);
    let mut bad = encode_current(1, None);
    bad[8] = 2;
    assert_eq!(decode_current(&bad), None);
}

#[test]
fn fresh_store_is_empty_and_clean() {
    let dir = TempDir::new().unwrap();
    let (store, report) = open(&dir);
    assert!(report.recovery.is_none() && report.outbox_skipped.is_none());
    assert!(!report.needs_alarm() && !report.needs_full_resync());
    assert_eq!(store.revision(), None);
    assert_eq!(store.get::<u32>("credentials", b"x").unwrap(), None);
    assert_eq!(store.outbox().next_seq(), 1);
    assert_eq!(store.outbox().depth(), 0);
    assert_eq!(store.outbox().status().level, OutboxLevel::Normal);
}

#[test]
fn snapshot_replaces_the_whole_data_set() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let info = snapshot(
        &store,
        5,
        &[
            ("credentials", "a", 1),
            ("credentials", "b", 2),
            ("doors", "d1", 10),
        ],
    );
    assert_eq!((info.revision, info.records), (5, 3));
    assert_eq!(store.revision(), Some(5));
    assert_eq!(store.get::<u32>("credentials", "b").unwrap(), Some(2));
    {
        let view = store.view();
        assert_eq!(view.collections(), ["credentials", "doors"]);
        assert_eq!(view.len("credentials"), 2);
        let all: Vec<(Vec<u8>, u32)> = view.iter("credentials").collect::<Result<_>>().unwrap();
        assert_eq!(all, [(b"a".to_vec(), 1), (b"b".to_vec(), 2)]);
        assert!(view.is_empty("schedules"));
    }

    // The second snapshot has no doors and other credentials.
    snapshot(&store, 9, &[("credentials", "c", 3)]);
    assert_eq!(store.revision(), Some(9));
    assert_eq!(store.get::<u32>("credentials", "a").unwrap(), None);
    assert_eq!(store.get::<u32>("credentials", "c").unwrap(), Some(3));
    assert_eq!(store.get::<u32>("doors", "d1").unwrap(), None);
    assert_eq!(store.view().collections(), ["credentials"]);
    // The old generation's trees are gone.
    assert_eq!(data_trees(&store), [tree_name(2, "credentials")]);

    // It survives a restart.
    drop(store);
    let (store, report) = open(&dir);
    assert_eq!(report.discarded_generations, 0);
    assert_eq!(store.revision(), Some(9));
    assert_eq!(store.get::<u32>("credentials", "c").unwrap(), Some(3));
    assert_eq!(store.get::<u32>("credentials", "a").unwrap(), None);
}

#[test]
fn an_unfinished_snapshot_is_invisible_and_discarded() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    snapshot(&store, 1, &[("credentials", "a", 1)]);

    // Dropped without commit.
    let mut w = store.begin_snapshot(2).unwrap();
    w.put("credentials", "b", &2u32).unwrap();
    assert!(matches!(
        store.begin_snapshot(3),
        Err(StoreError::SnapshotInProgress)
    ));
    assert_eq!(store.get::<u32>("credentials", "b").unwrap(), None);
    drop(w);
    assert_eq!(data_trees(&store), [tree_name(1, "credentials")]);

    // Interrupted as by a crash: the writer never finishes.
    let mut w = store.begin_snapshot(3).unwrap();
    w.put("credentials", "c", &3u32).unwrap();
    w.put("doors", "d", &4u32).unwrap();
    store.flush().unwrap();
    // What a crash leaves: the trees written, no commit, no clean-up.
    let trees = std::mem::take(&mut w.trees);
    std::mem::forget(w);
    drop(trees);
    drop(store);
    let (store, report) = open(&dir);
    assert_eq!(report.discarded_generations, 1);
    assert_eq!(store.revision(), Some(1));
    assert_eq!(store.get::<u32>("credentials", "a").unwrap(), Some(1));
    assert_eq!(store.get::<u32>("credentials", "c").unwrap(), None);
    assert_eq!(data_trees(&store), [tree_name(1, "credentials")]);
    // The next snapshot works (and takes a fresh generation number).
    let info = snapshot(&store, 4, &[("credentials", "e", 5)]);
    assert!(info.generation > 1);
    assert_eq!(store.get::<u32>("credentials", "e").unwrap(), Some(5));
}

#[test]
fn change_sets_apply_atomically_and_check_revisions() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);

    // No snapshot yet: nothing to apply to.
    let mut early = ChangeSet::new(0, 1);
    early.upsert("credentials", "x", &1u32).unwrap();
    assert!(matches!(
        store.apply(&early),
        Err(StoreError::RevisionMismatch {
            base: 0,
            current: None
        })
    ));

    snapshot(&store, 10, &[("credentials", "a", 1), ("doors", "d1", 1)]);
    let mut change = ChangeSet::new(10, 11);
    change
        .upsert("credentials", "b", &2u32)
        .unwrap()
        .upsert("schedules", "s1", &7u32) // a collection new to this generation
        .unwrap()
        .delete("credentials", "a")
        .delete("doors", "absent");
    assert_eq!(change.len(), 4);
    store.apply(&change).unwrap();
    assert_eq!(store.revision(), Some(11));
    assert_eq!(store.get::<u32>("credentials", "a").unwrap(), None);
    assert_eq!(store.get::<u32>("credentials", "b").unwrap(), Some(2));
    assert_eq!(store.get::<u32>("schedules", "s1").unwrap(), Some(7));

    // Wrong base, not newer, bad collection: nothing changes.
    let mut stale = ChangeSet::new(10, 12);
    stale.upsert("credentials", "z", &9u32).unwrap();
    assert!(matches!(
        store.apply(&stale),
        Err(StoreError::RevisionMismatch {
            base: 10,
            current: Some(11)
        })
    ));
    assert!(matches!(
        store.apply(&ChangeSet::new(11, 11)),
        Err(StoreError::RevisionNotNewer { .. })
    ));
    assert!(matches!(
        ChangeSet::new(11, 12).upsert("", "k", &1u32),
        Err(StoreError::InvalidCollection { len: 0 })
    ));
    let mut bad = ChangeSet::new(11, 12);
    bad.upsert("credentials", "z", &9u32)
        .unwrap()
        .delete("", "k");
    assert!(matches!(
        store.apply(&bad),
        Err(StoreError::InvalidCollection { len: 0 })
    ));
    assert_eq!(store.get::<u32>("credentials", "z").unwrap(), None);
    assert_eq!(store.revision(), Some(11));

    drop(store);
    let (store, _) = open(&dir);
    assert_eq!(store.revision(), Some(11));
    assert_eq!(store.get::<u32>("schedules", "s1").unwrap(), Some(7));
    assert_eq!(store.get::<u32>("credentials", "a").unwrap(), None);
}

#[test]
fn a_view_with_a_change_set_sees_the_change_and_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    snapshot(
        &store,
        3,
        &[("c", "a", 1), ("c", "b", 2), ("c", "d", 4), ("x", "k", 9)],
    );
    let mut change = ChangeSet::new(3, 4);
    change.upsert("c", b"b", &20u32).unwrap();
    change.delete("c", b"d");
    change.upsert("c", b"c", &3u32).unwrap();
    change.upsert("c", b"e", &5u32).unwrap();
    change.delete("c", b"e");
    change.upsert("new", b"n", &7u32).unwrap();
    {
        let view = store.view_with(&change).unwrap();
        assert_eq!(view.revision(), Some(4));
        let got: Vec<(Vec<u8>, u32)> = view.iter("c").map(Result::unwrap).collect();
        assert_eq!(
            got,
            [(b"a".to_vec(), 1), (b"b".to_vec(), 20), (b"c".to_vec(), 3)]
        );
        assert_eq!(view.get::<u32>("c", b"d").unwrap(), None);
        assert_eq!(view.get::<u32>("c", b"b").unwrap(), Some(20));
        assert_eq!(view.get::<u32>("x", b"k").unwrap(), Some(9));
        assert_eq!(view.get::<u32>("new", b"n").unwrap(), Some(7));
        assert_eq!((view.len("c"), view.len("new")), (3, 1));
        assert_eq!(view.collections(), ["c", "new", "x"]);
    }
    // Nothing written.
    assert_eq!(store.revision(), Some(3));
    assert_eq!(store.get::<u32>("c", b"d").unwrap(), Some(4));
    assert_eq!(store.get::<u32>("new", b"n").unwrap(), None);
    // The wrong base is refused as `apply` refuses it.
    assert!(matches!(
        store.view_with(&ChangeSet::new(2, 4)).err(),
        Some(StoreError::RevisionMismatch { base: 2, .. })
    ));
    // Applied, the store reads what the view said.
    store.apply(&change).unwrap();
    let view = store.view();
    let got: Vec<(Vec<u8>, u32)> = view.iter("c").map(Result::unwrap).collect();
    assert_eq!(got.len(), 3);
    assert_eq!(view.get::<u32>("c", b"b").unwrap(), Some(20));
}

#[test]
fn a_staged_snapshot_is_readable_before_commit_and_refuses_repeated_keys() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let store = Arc::new(store);
    snapshot(&store, 1, &[("c", "old", 1)]);
    let mut w = Store::begin_shared_snapshot(&store, 2).unwrap();
    assert!(w.put_new("c", b"a", &10u32).unwrap());
    assert!(w.put_new("c", b"b", &11u32).unwrap());
    assert!(!w.put_new("c", b"a", &12u32).unwrap());
    {
        let staged = w.view();
        assert_eq!(staged.revision(), Some(2));
        assert_eq!(staged.get::<u32>("c", b"a").unwrap(), Some(10));
        assert_eq!(staged.get::<u32>("c", b"old").unwrap(), None);
        assert_eq!(staged.len("c"), 2);
    }
    // The current data set is untouched until the commit; one at a time.
    assert_eq!(store.get::<u32>("c", b"old").unwrap(), Some(1));
    assert!(matches!(
        store.begin_snapshot(3).err(),
        Some(StoreError::SnapshotInProgress)
    ));
    assert_eq!(w.records(), 2);
    w.commit().unwrap();
    assert_eq!(store.revision(), Some(2));
    assert_eq!(store.get::<u32>("c", b"a").unwrap(), Some(10));
    assert_eq!(store.get::<u32>("c", b"old").unwrap(), None);
    // A dropped shared writer discards its records.
    let mut w = Store::begin_shared_snapshot(&store, 3).unwrap();
    w.put_new("c", b"z", &1u32).unwrap();
    drop(w);
    assert_eq!(store.revision(), Some(2));
    assert_eq!(store.get::<u32>("c", b"z").unwrap(), None);
    assert_eq!(data_trees(&store).len(), 1);
}

#[test]
fn records_are_generic_serde_values() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Credential {
        holder: String,
        pin: Option<u32>,
        doors: Vec<u16>,
    }
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let cred = Credential {
        holder: "h-17".into(),
        pin: Some(1234),
        doors: vec![1, 4],
    };
    let mut w = store.begin_snapshot(1).unwrap();
    w.put("credentials", 0x00c0_ffee_u32.to_be_bytes(), &cred)
        .unwrap();
    w.commit().unwrap();
    let back: Credential = store
        .get("credentials", 0x00c0_ffee_u32.to_be_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(back, cred);
    // The wrong type is a decode error naming the collection only.
    let err = store
        .get::<Vec<String>>("credentials", 0x00c0_ffee_u32.to_be_bytes())
        .unwrap_err();
    assert!(matches!(&err, StoreError::Decode { collection, .. } if collection == "credentials"));
    assert!(!err.to_string().contains("h-17"));
}

/// Writers replace and change the data set while readers check that every
/// view sees one revision throughout: every record of both collections holds
/// the view's revision.
#[test]
fn views_never_see_half_a_change() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let records = |rev: u64| {
        let mut w = store.begin_snapshot(rev).unwrap();
        for i in 0..50u32 {
            w.put("a", i.to_be_bytes(), &rev).unwrap();
            w.put("b", i.to_be_bytes(), &rev).unwrap();
        }
        w.commit().unwrap();
    };
    records(1);
    let done = AtomicBool::new(false);
    let views = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    let view = store.view();
                    let rev = view.revision().unwrap();
                    for collection in ["a", "b"] {
                        let values: Vec<u64> =
                            view.iter::<u64>(collection).map(|r| r.unwrap().1).collect();
                        assert_eq!(values.len(), 50, "collection {collection}");
                        assert!(values.iter().all(|&v| v == rev), "mixed revisions");
                    }
                    views.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for rev in 1..31 {
            if rev % 3 == 1 {
                records(rev + 1);
            } else {
                let mut change = ChangeSet::new(rev, rev + 1);
                for i in 0..50u32 {
                    change.upsert("a", i.to_be_bytes(), &(rev + 1)).unwrap();
                    change.upsert("b", i.to_be_bytes(), &(rev + 1)).unwrap();
                }
                store.apply(&change).unwrap();
            }
        }
        done.store(true, Ordering::Release);
    });
    assert!(views.load(Ordering::Relaxed) > 0);
}

#[test]
fn outbox_appends_peeks_and_acks_in_order() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let outbox = store.outbox();
    for i in 1..=10u64 {
        let appended = outbox.append(format!("event {i}").as_bytes()).unwrap();
        assert_eq!(appended.seq, i);
        assert_eq!(appended.level, OutboxLevel::Normal);
    }
    assert_eq!(outbox.depth(), 10);
    let first = outbox.peek(0, 3).unwrap();
    assert_eq!(
        first,
        [
            (1, b"event 1".to_vec()),
            (2, b"event 2".to_vec()),
            (3, b"event 3".to_vec())
        ]
    );
    assert_eq!(outbox.peek(9, 100).unwrap().len(), 2);
    assert!(outbox.peek(11, 100).unwrap().is_empty());
    assert!(outbox.peek(0, 0).unwrap().is_empty());

    let ack = outbox.ack_through(4).unwrap();
    assert_eq!(ack.removed, 4);
    assert_eq!(outbox.depth(), 6);
    assert_eq!(outbox.peek(0, 1).unwrap()[0].0, 5);
    // Acknowledging again or below removes nothing.
    assert_eq!(outbox.ack_through(3).unwrap().removed, 0);
    assert_eq!(outbox.status().acked_through, 4);

    // A clean restart continues without a gap.
    drop(store);
    let (store, report) = open(&dir);
    assert!(report.outbox_skipped.is_none());
    let outbox = store.outbox();
    assert_eq!(outbox.depth(), 6);
    assert_eq!(outbox.next_seq(), 11);
    assert_eq!(outbox.durable_through(), 10);
    assert_eq!(outbox.append(b"event 11").unwrap().seq, 11);

    // Acknowledging everything keeps the numbering (never reused).
    assert_eq!(outbox.ack_through(u64::MAX).unwrap().removed, 7);
    assert_eq!(outbox.depth(), 0);
    drop(store);
    let (store, _) = open(&dir);
    assert_eq!(store.outbox().append(b"event 12").unwrap().seq, 12);
}

#[test]
fn outbox_levels_and_the_hard_limit() {
    let dir = TempDir::new().unwrap();
    let mut cfg = config(&dir);
    // 10 events of 92 + 8 bytes make the bound; 15 the hard limit.
    cfg.outbox_limit_bytes = 1000;
    cfg.outbox_hard_limit_bytes = 1500;
    let (store, _) = Store::open(cfg).unwrap();
    let outbox = store.outbox();
    let event = [7u8; 92];
    let levels: Vec<OutboxLevel> = (0..15)
        .map(|_| outbox.append(&event).unwrap().level)
        .collect();
    assert_eq!(levels[6], OutboxLevel::Normal); // 700 bytes
    assert_eq!(levels[7], OutboxLevel::High); // 800 bytes: 80 %
    assert_eq!(levels[8], OutboxLevel::High);
    assert_eq!(levels[9], OutboxLevel::OverLimit); // 1000 bytes: still stored
    assert_eq!(levels[13], OutboxLevel::OverLimit);
    assert_eq!(levels[14], OutboxLevel::Full); // 1500 bytes
    let err = outbox.append(&event).unwrap_err();
    assert!(matches!(
        err,
        StoreError::OutboxFull {
            bytes: 1500,
            hard_limit: 1500
        }
    ));
    assert_eq!(outbox.depth(), 15);
    assert_eq!(outbox.status().level, OutboxLevel::Full);
    // Acknowledged events make room again; the refused event took no number.
    assert_eq!(outbox.ack_through(10).unwrap().level, OutboxLevel::Normal);
    assert_eq!(outbox.append(&event).unwrap().seq, 16);
}

#[test]
fn durability_modes() {
    let dir = TempDir::new().unwrap();
    let mut cfg = config(&dir);
    cfg.durability = Durability::EveryAppend;
    let (store, _) = Store::open(cfg).unwrap();
    for _ in 0..3 {
        let seq = store.outbox().append(b"e").unwrap().seq;
        assert_eq!(store.outbox().durable_through(), seq);
    }
    drop(store);

    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    // The first append reserves a block of numbers and flushes; the next
    // waits for the group commit.
    store.outbox().append(b"e").unwrap();
    let seq = store.outbox().append(b"e").unwrap().seq;
    assert!(store.outbox().wait_durable(seq, Duration::from_secs(2)));
    assert!(store.outbox().durable_through() >= seq);
    assert!(!store
        .outbox()
        .wait_durable(seq + 1, Duration::from_millis(50)));
}

#[test]
fn raised_numbering_is_persisted() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    store.outbox().append(b"e").unwrap();
    store.outbox().raise_next_seq(5000).unwrap();
    store.outbox().raise_next_seq(10).unwrap(); // lower: ignored
    assert_eq!(store.outbox().append(b"e").unwrap().seq, 5000);
    drop(store);
    let (store, _) = open(&dir);
    assert_eq!(store.outbox().next_seq(), 5001);
}

#[test]
fn a_locked_store_is_an_error_and_stays_in_place() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    store.outbox().append(b"kept").unwrap();
    let mut cfg = config(&dir);
    cfg.lock_timeout = Duration::from_millis(100);
    let err = Store::open(cfg).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(corrupt_dirs(&dir).is_empty());
    assert_eq!(store.outbox().depth(), 1);
}

/// Overwrites every byte of a file with garbage, keeping its length.
fn garble(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len() as usize;
    let mut x = 0x9e37_79b9_u32;
    let junk: Vec<u8> = (0..len.max(64))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(path, junk).unwrap();
}

/// A store with data, events and a clean close, for the corruption tests.
fn populated(dir: &TempDir) -> PathBuf {
    let (store, _) = open(dir);
    snapshot(&store, 3, &[("credentials", "a", 1)]);
    for i in 0..5u8 {
        store.outbox().append(&[i; 20]).unwrap();
    }
    store.outbox().ack_through(1).unwrap();
    store.close().unwrap();
    dir.path().join("store")
}

fn assert_fresh_after_recovery(dir: &TempDir, store: &Store, report: &OpenReport) -> Recovery {
    let recovery = report.recovery.clone().expect("a recovery report");
    assert!(report.needs_alarm() && report.needs_full_resync());
    assert!(recovery.moved_to.exists(), "old files kept");
    assert!(
        recovery
            .moved_to
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("store.corrupt-"),
        "{}",
        recovery.moved_to.display()
    );
    assert_eq!(corrupt_dirs(dir).len(), 1);
    assert_eq!(store.revision(), None, "the data set needs a resync");
    // The fresh store works.
    snapshot(store, 1, &[("credentials", "n", 1)]);
    assert_eq!(store.get::<u32>("credentials", "n").unwrap(), Some(1));
    recovery
}

#[test]
fn a_garbled_database_is_moved_aside() {
    for file in ["db", "conf"] {
        let dir = TempDir::new().unwrap();
        let path = populated(&dir);
        garble(&path.join(file));
        let (store, report) = open(&dir);
        let recovery = assert_fresh_after_recovery(&dir, &store, &report);
        assert!(!recovery.cause.is_empty());
        if file == "db" {
            // sled reads a garbled log as an empty database: nothing to
            // salvage. Numbering restarts above anything the old store
            // could have used.
            assert!(recovery.salvage_error.is_some(), "{recovery:?}");
            assert!(!recovery.seq_continuity);
            assert!(store.outbox().next_seq() > 1_000_000_000_000_000);
        } else {
            // Without its conf file sled reads the old log again.
            assert_eq!(recovery.salvage_error, None);
            assert_eq!(recovery.salvaged_events, 4);
            assert_eq!(store.outbox().next_seq(), 6);
        }
        let seq = store.outbox().append(b"after").unwrap().seq;
        assert!(seq > 5);
        drop(store);
        // And it opens normally afterwards.
        let (store, report) = open(&dir);
        assert!(report.recovery.is_none());
        assert_eq!(store.revision(), Some(1));
        assert_eq!(store.outbox().peek(0, 100).unwrap().last().unwrap().0, seq);
    }
}

#[test]
fn a_truncated_database_is_moved_aside() {
    let dir = TempDir::new().unwrap();
    let path = populated(&dir);
    std::fs::write(path.join("db"), b"").unwrap();
    for entry in std::fs::read_dir(&path).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with("snap.") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let (store, report) = open(&dir);
    let recovery = assert_fresh_after_recovery(&dir, &store, &report);
    assert!(recovery.cause.contains("header"), "{}", recovery.cause);
}

#[test]
fn a_store_path_that_is_a_file_is_moved_aside() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("store"), b"not a directory").unwrap();
    let (store, report) = open(&dir);
    assert_fresh_after_recovery(&dir, &store, &report);
}

#[test]
fn another_format_is_moved_aside() {
    let dir = TempDir::new().unwrap();
    let path = populated(&dir);
    {
        let db = raw_sled(&path);
        db.open_tree(META_TREE)
            .unwrap()
            .insert(KEY_FORMAT, &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let (store, report) = open(&dir);
    let recovery = assert_fresh_after_recovery(&dir, &store, &report);
    assert!(recovery.cause.contains("format 99"), "{}", recovery.cause);
    // A newer format's outbox layout is unknown: not salvaged.
    assert!(recovery.salvage_error.is_some());
}

#[test]
fn outbox_events_are_salvaged_when_sled_can_read_them() {
    let dir = TempDir::new().unwrap();
    let path = populated(&dir);
    {
        // Damage the store's own metadata, not sled's files.
        let db = raw_sled(&path);
        db.open_tree(META_TREE)
            .unwrap()
            .insert(KEY_CURRENT, b"bad")
            .unwrap();
        db.flush().unwrap();
    }
    let (store, report) = open(&dir);
    let recovery = assert_fresh_after_recovery(&dir, &store, &report);
    assert_eq!(recovery.salvage_error, None);
    assert!(recovery.seq_continuity);
    assert_eq!(recovery.salvaged_events, 4);
    let events = store.outbox().peek(0, 100).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(seqs, [2, 3, 4, 5]);
    assert_eq!(events[0].1, [1u8; 20]);
    assert_eq!(store.outbox().append(b"next").unwrap().seq, 6);
}

#[test]
fn code_uses_are_kept_apart_from_the_data_set() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    assert!(store.code_uses().unwrap().is_empty());
    assert!(store.record_code_use("code-a", 1_000).unwrap());
    // The first use stays.
    assert!(!store.record_code_use("code-a", 2_000).unwrap());
    assert!(store.record_code_use("code-b", 3_000).unwrap());
    // Neither a snapshot nor a change set touches them.
    snapshot(&store, 1, &[("doors", "d1", 1)]);
    let mut change = ChangeSet::new(1, 2);
    change.upsert("doors", b"d2", &2u32).unwrap();
    store.apply(&change).unwrap();
    snapshot(&store, 3, &[("doors", "d3", 3)]);
    let expected = vec![("code-a".to_owned(), 1_000), ("code-b".to_owned(), 3_000)];
    assert_eq!(store.code_uses().unwrap(), expected);
    assert_eq!(store.view().collections(), ["doors"]);
    // A restart keeps them.
    store.close().unwrap();
    let (store, _) = open(&dir);
    assert_eq!(store.code_uses().unwrap(), expected);
    // Forgetting the codes the data set no longer has.
    assert_eq!(store.forget_code_uses(|id| id == "code-b").unwrap(), 1);
    assert_eq!(store.code_uses().unwrap(), [("code-b".to_owned(), 3_000)]);
    assert_eq!(store.forget_code_uses(|_| true).unwrap(), 0);
}
