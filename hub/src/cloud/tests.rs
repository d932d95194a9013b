//! The cloud sync's local side on a real store.

use std::sync::Mutex;

use hub_proto::v1::Message;
use hub_sync::LocalState;

use super::*;
use crate::access::{fixture, DataSet, Door};
use crate::store::StoreConfig;

fn open(dir: &tempfile::TempDir) -> Arc<Store> {
    Arc::new(
        Store::open(StoreConfig::new(dir.path().join("store")))
            .unwrap()
            .0,
    )
}

fn by_key(mut d: DataSet) -> DataSet {
    d.doors.sort_by(|a, b| a.id.cmp(&b.id));
    d.users.sort_by(|a, b| a.id.cmp(&b.id));
    d.credentials.sort_by(|a, b| a.id.cmp(&b.id));
    d.access_codes.sort_by(|a, b| a.id.cmp(&b.id));
    d.schedules.sort_by(|a, b| a.id.cmp(&b.id));
    d.holidays.sort_by_key(site_data::holiday_key);
    d.accesses.sort_by(|a, b| a.id.cmp(&b.id));
    d.facilities.sort_by(|a, b| a.id.cmp(&b.id));
    d.events.sort_by(|a, b| a.id.cmp(&b.id));
    d.members.sort_by(|a, b| a.user.cmp(&b.user));
    d
}

fn entities(data: &DataSet) -> Vec<pb::Entity> {
    convert::records(data)
        .iter()
        .map(convert::to_proto)
        .collect()
}

fn state(store: Arc<Store>) -> (CloudState, Arc<Mutex<Vec<u64>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let hooks = Hooks {
        on_new_data: Box::new(move |_, r| s.lock().unwrap().push(r)),
        clock: Box::new(fixture::now),
        ..Hooks::default()
    };
    (CloudState::new(store, hooks), seen)
}

fn snapshot(s: &mut CloudState, data: &DataSet, revision: u64) -> Vec<pb::EntityStatus> {
    s.snapshot_begin(revision).unwrap();
    let all = entities(data);
    for chunk in all.chunks(7) {
        s.snapshot_chunk(chunk.to_vec()).unwrap();
    }
    s.snapshot_commit().unwrap()
}

fn upsert(r: Record) -> pb::Change {
    pb::Change {
        op: Some(pb::change::Op::Upsert(convert::to_proto(&r))),
    }
}

fn delete(kind: pb::EntityKind, id: &str) -> pb::Change {
    pb::Change {
        op: Some(pb::change::Op::Delete(pb::EntityKey {
            kind: kind as i32,
            id: id.into(),
        })),
    }
}

#[test]
fn every_record_of_the_fixture_survives_the_protobuf_round_trip() {
    let data = fixture::data();
    let mut back = DataSet::default();
    for e in entities(&data) {
        let bytes = e.encode_to_vec();
        let e = pb::Entity::decode(&bytes[..]).unwrap();
        convert::push(&mut back, convert::from_proto(e).unwrap());
    }
    assert_eq!(back, data);
}

#[test]
fn invalid_entities_are_named() {
    let bad = pb::Entity {
        kind: Some(pb::entity::Kind::AccessCode(pb::AccessCode {
            id: "c1".into(),
            door: "front".into(),
            code: "1234".into(),
            ..Default::default()
        })),
    };
    let e = convert::from_proto(bad).unwrap_err();
    assert_eq!(e.key().unwrap().id, "c1");
    assert!(e.to_string().contains("created_at"), "{e}");
    assert!(!e.to_string().contains("1234"));
    let bad = pb::Entity {
        kind: Some(pb::entity::Kind::Schedule(pb::Schedule {
            id: "s".into(),
            intervals: vec![pb::WeeklyInterval {
                days: vec![9],
                start_second: 0,
                end_second: 90_000,
            }],
            ..Default::default()
        })),
    };
    assert!(convert::from_proto(bad).is_err());
    assert_eq!(
        convert::from_proto(pb::Entity { kind: None }),
        Err(ConvertError::Empty)
    );
}

#[test]
fn snapshot_then_revision_on_the_store() {
    let dir = tempfile::TempDir::new().unwrap();
    let store = open(&dir);
    let (mut s, seen) = state(store.clone());
    assert_eq!(s.revision(), None);
    let statuses = snapshot(&mut s, &fixture::data(), 10);
    assert_eq!(s.revision(), Some(10));
    assert_eq!(*seen.lock().unwrap(), [10]);
    let (loaded, rev) = site_data::load(&store).unwrap();
    assert_eq!((rev, loaded), (10, by_key(fixture::data())));
    // Every access code's status is reported, failures with their reason.
    let find = |id: &str| {
        statuses
            .iter()
            .find(|s| s.key.as_ref().is_some_and(|k| k.id == id))
            .cloned()
            .unwrap()
    };
    assert_eq!(find("code-guest").kind(), pb::StatusKind::CodeSet);
    assert_eq!(
        (find("code-dup").kind(), find("code-dup").reason),
        (
            pb::StatusKind::CodeFailed,
            "duplicate_pin:code-guest".into()
        )
    );
    assert_eq!(find("code-deleted").reason, "deleted");

    // A revision: a new door, a deleted code, a changed site.
    let mut site = fixture::data().site;
    site.lockdown = true;
    let r = pb::Revision {
        base_revision: 10,
        revision: 11,
        changes: vec![
            upsert(Record::Door(Door::new("side", "Side Door"))),
            upsert(Record::Site(site)),
            delete(pb::EntityKind::AccessCode, "code-guest"),
            delete(pb::EntityKind::Holiday, "2026-12-25/Christmas Day"),
        ],
    };
    let statuses = s.apply_revision(&r).unwrap();
    assert_eq!(s.revision(), Some(11));
    let (loaded, rev) = site_data::load(&store).unwrap();
    assert_eq!(rev, 11);
    assert!(loaded.site.lockdown);
    assert!(loaded.doors.iter().any(|d| d.id.as_str() == "side"));
    assert!(!loaded
        .access_codes
        .iter()
        .any(|c| c.id.as_str() == "code-guest"));
    assert!(loaded.holidays.is_empty());
    assert!(statuses
        .iter()
        .any(|s| s.kind() == pb::StatusKind::CodeRemoved && s.reason == "deleted"));
    assert_eq!(s.view().map(|v| v.counts().doors), Some(loaded.doors.len()));

    // A revision that would break the data set changes nothing.
    let mut bad = fixture::data().accesses[0].clone();
    bad.users.push("nobody".into());
    let r = pb::Revision {
        base_revision: 11,
        revision: 12,
        changes: vec![
            upsert(Record::Door(Door::new("other", "Other"))),
            upsert(Record::Access(bad.clone())),
        ],
    };
    let err = s.apply_revision(&r).unwrap_err();
    let LocalError::Rejected { error, key, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(error, pb::ErrorCode::Inconsistent);
    assert_eq!(key.unwrap().id, bad.id.to_string());
    assert_eq!(s.revision(), Some(11));
    assert_eq!(site_data::load(&store).unwrap(), (loaded, 11));
    assert_eq!(*seen.lock().unwrap(), [10, 11]);

    // Reopened: the state starts from the store.
    drop(s);
    let (s, _) = state(store);
    assert_eq!(s.revision(), Some(11));
}

#[test]
fn a_snapshot_without_a_site_or_with_bad_data_keeps_the_old_one() {
    let dir = tempfile::TempDir::new().unwrap();
    let store = open(&dir);
    let (mut s, _) = state(store.clone());
    snapshot(&mut s, &fixture::data(), 3);
    s.snapshot_begin(4).unwrap();
    s.snapshot_chunk(entities(&fixture::data())[1..].to_vec())
        .unwrap();
    assert!(s.snapshot_commit().is_err());
    let mut dup = fixture::data();
    dup.doors.push(dup.doors[0].clone());
    s.snapshot_begin(5).unwrap();
    s.snapshot_chunk(entities(&dup)).unwrap();
    assert!(s.snapshot_commit().is_err());
    assert_eq!(s.revision(), Some(3));
    assert_eq!(site_data::load(&store).unwrap().1, 3);
}

#[test]
fn outbox_events_come_back_with_their_sequence_numbers() {
    let dir = tempfile::TempDir::new().unwrap();
    let store = open(&dir);
    let (mut s, _) = state(store.clone());
    let log = crate::events::EventLog::new(store.clone());
    for door in ["a", "b", "c"] {
        let mut e = HubEvent::new(EventKind::Decision, "granted");
        e.door = Some(door.into());
        log.append(&e).unwrap();
    }
    store.outbox().append(b"\xff\xff").unwrap();
    let got = s.outbox_peek(2, 10).unwrap();
    let seqs: Vec<_> = got.iter().map(|e| (e.seq, e.door.as_str())).collect();
    assert_eq!(seqs, [(2, "b"), (3, "c"), (4, "")]);
    assert_eq!(got[2].kind(), pb::EventKind::Alarm);
    s.outbox_ack(3).unwrap();
    assert_eq!(store.outbox().depth(), 1);
    assert_eq!(s.health().outbox_depth, 1);
}

#[test]
fn snapshot_chunks_stay_under_the_limit_and_diff_turns_one_data_set_into_another() {
    let data = fixture::data();
    let chunks = reference::snapshot_chunks(&data, 4, "snap-1", 1024);
    assert!(chunks.len() > 2);
    for (i, c) in chunks.iter().enumerate() {
        assert!(c.encoded_len() <= 1024 || c.entities.len() == 1);
        assert_eq!(
            (c.chunk_index as usize, c.chunk_count as usize),
            (i, chunks.len())
        );
    }
    let dir = tempfile::TempDir::new().unwrap();
    let store = open(&dir);
    let (mut s, _) = state(store.clone());
    s.snapshot_begin(4).unwrap();
    for c in chunks {
        s.snapshot_chunk(c.entities).unwrap();
    }
    s.snapshot_commit().unwrap();
    // The store holds the data set; the sync only its view of it.
    assert_eq!(site_data::load(&store).unwrap(), (by_key(data.clone()), 4));
    assert_eq!(s.view().unwrap().data().doors, by_key(data.clone()).doors);

    let mut new = data.clone();
    new.doors.retain(|d| d.id.as_str() != "lobby");
    new.doors[0].name = "Renamed".into();
    new.holidays.clear();
    let changes = reference::diff(&data, &new);
    assert_eq!(changes.len(), 3);
    s.apply_revision(&pb::Revision {
        base_revision: 4,
        revision: 5,
        changes,
    })
    .unwrap();
    assert_eq!(s.view().unwrap().data().doors, by_key(new.clone()).doors);
    assert_eq!(site_data::load(&store).unwrap(), (by_key(new), 5));
}

#[test]
fn log_events_map_onto_the_contract() {
    let mut granted = HubEvent::new(EventKind::Decision, "membership Standard Monthly");
    granted.door = Some("front".into());
    granted.reader = Some("front-in".into());
    granted.credential = Some("****4567".into());
    granted.user = Some("201".into());
    granted.granted = Some(true);
    granted.reason = Some("membership".into());
    granted.method = Some("card".into());
    let e = access_event(7, &granted);
    assert_eq!(e.seq, 7);
    assert_eq!(e.kind(), pb::EventKind::Access);
    assert_eq!(e.reason(), pb::ReasonCode::Granted);
    assert_eq!(
        (e.reason_key.as_str(), e.door.as_str(), e.reader.as_str()),
        ("membership", "front", "front-in")
    );
    assert_eq!(
        (e.credential_masked.as_str(), e.user.as_str()),
        ("****4567", "201")
    );
    assert!(e.granted && e.method == "card");
    assert_eq!(
        e.time
            .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000),
        Some(granted.at_ms)
    );

    let mut expired = granted.clone();
    expired.granted = Some(false);
    expired.reason = Some("membership_expired".into());
    let e = access_event(8, &expired);
    assert_eq!(e.reason(), pb::ReasonCode::Expired);
    assert!(!e.granted);

    let mut held = HubEvent::new(EventKind::AlarmCleared, "door front: held_open cleared");
    held.reason = Some("held_open".into());
    let e = access_event(9, &held);
    assert_eq!(
        (e.kind(), e.reason_key.as_str()),
        (pb::EventKind::DoorHeld, "cleared")
    );
    assert_eq!(e.reason(), pb::ReasonCode::Unspecified);

    let refused = HubEvent::new(EventKind::Refused, "PIN entry timed out");
    let e = access_event(10, &refused);
    assert_eq!(
        (e.kind(), e.reason_key.as_str()),
        (pb::EventKind::Access, "refused")
    );
    assert_eq!(e.reason(), pb::ReasonCode::Other);

    let e = access_event(11, &HubEvent::new(EventKind::StoreRecovered, "replaced"));
    assert_eq!(
        (e.kind(), e.reason_key.as_str()),
        (pb::EventKind::Alarm, "store_recovered")
    );

    let mut outbox = HubEvent::new(EventKind::AlarmRaised, "outbox_high raised");
    outbox.reason = Some("outbox_high".into());
    let e = access_event(12, &outbox);
    assert_eq!(
        (e.kind(), e.reason_key.as_str()),
        (pb::EventKind::Alarm, "outbox_high:raised")
    );
}

#[test]
fn the_daemon_gets_the_syncs_own_view_and_revisions_go_through_the_store() {
    use crate::access::{decide, CardNumber, Direction, Request};
    let dir = tempfile::TempDir::new().unwrap();
    let store = open(&dir);
    let handed = Arc::new(Mutex::new(Vec::<Arc<View>>::new()));
    let h = handed.clone();
    let hooks = Hooks {
        on_new_data: Box::new(move |view, _| h.lock().unwrap().push(view)),
        // After the contractors' temporary access ended.
        clock: Box::new(|| fixture::at("2026-06-21T00:00")),
        ..Hooks::default()
    };
    let mut s = CloudState::new(store.clone(), hooks);
    let statuses = snapshot(&mut s, &fixture::data(), 1);
    assert!(statuses
        .iter()
        .any(|st| st.kind() == pb::StatusKind::AccessExpired
            && st.key.as_ref().is_some_and(|k| k.id == "contractors")));
    // One view in the process: the daemon's is the sync's.
    assert!(Arc::ptr_eq(
        s.view().unwrap(),
        handed.lock().unwrap().last().unwrap()
    ));
    let counts = s.view().unwrap().counts();
    assert_eq!(
        (counts.users, counts.credentials, counts.accesses),
        (
            fixture::data().users.len(),
            fixture::data().credentials.len(),
            fixture::data().accesses.len()
        )
    );
    assert_eq!(
        s.health().cache.unwrap().credentials,
        counts.credentials as u64
    );

    // A new card for user 201: in force in the view handed over, and in the
    // store.
    let card = |number| Request::card("front", Direction::In, CardNumber::new(Some(12), number));
    let mut new_card = fixture::data().credentials[0].clone();
    assert_eq!(new_card.id.as_str(), "c-ann-card");
    new_card.id = "c-ann-card-2".into();
    new_card.code = Some("12:55555".into());
    let now = fixture::now();
    assert!(!decide(&card(55555), s.view().unwrap(), now).granted);
    s.apply_revision(&pb::Revision {
        base_revision: 1,
        revision: 2,
        changes: vec![upsert(Record::Credential(new_card.clone()))],
    })
    .unwrap();
    let view = handed.lock().unwrap().last().unwrap().clone();
    assert!(Arc::ptr_eq(s.view().unwrap(), &view));
    assert!(decide(&card(55555), &view, now).granted);
    assert_eq!(
        s.view().unwrap().counts().credentials,
        counts.credentials + 1
    );
    let stored = site_data::credential(&store, "c-ann-card-2").unwrap();
    assert_eq!(stored, Some(new_card.clone()));

    // A second credential with the same card: refused, nothing changes.
    let mut clash = new_card.clone();
    clash.id = "c-clash".into();
    let err = s
        .apply_revision(&pb::Revision {
            base_revision: 2,
            revision: 3,
            changes: vec![
                delete(pb::EntityKind::Credential, "c-ann-card"),
                upsert(Record::Credential(clash)),
            ],
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            LocalError::Rejected {
                error: pb::ErrorCode::Inconsistent,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!((s.revision(), store.revision()), (Some(2), Some(2)));
    assert!(Arc::ptr_eq(s.view().unwrap(), &view));
    assert_eq!(handed.lock().unwrap().len(), 2);
    let kept = site_data::credential(&store, "c-ann-card").unwrap();
    assert!(kept.is_some());

    // A snapshot with a credential of an unknown user: refused after its
    // last chunk, the old data set stays in force.
    let mut bad = fixture::data();
    bad.credentials[0].user = "nobody".into();
    s.snapshot_begin(9).unwrap();
    s.snapshot_chunk(entities(&bad)).unwrap();
    let err = s.snapshot_commit().unwrap_err();
    assert!(
        matches!(
            err,
            LocalError::Rejected {
                error: pb::ErrorCode::Inconsistent,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!((s.revision(), store.revision()), (Some(2), Some(2)));
    assert_eq!(
        site_data::load_view(&store).unwrap().0.counts().credentials,
        counts.credentials + 1
    );
    assert!(decide(&card(55555), s.view().unwrap(), now).granted);
    // And a good one after it goes through.
    snapshot(&mut s, &fixture::data(), 10);
    assert_eq!(store.revision(), Some(10));
    assert!(!decide(&card(55555), s.view().unwrap(), now).granted);
}

#[test]
fn a_one_time_code_used_here_stays_used_and_the_cloud_hears_it() {
    use crate::access::{decide, decide_entry, Direction, Pin, Request};
    let dir = tempfile::TempDir::new().unwrap();
    let store = open(&dir);
    let (mut s, _) = state(store.clone());
    snapshot(&mut s, &fixture::data(), 1);
    let is_once = |st: &pb::EntityStatus| st.key.as_ref().is_some_and(|k| k.id == "code-once");
    let used = |statuses: &[pb::EntityStatus]| {
        statuses
            .iter()
            .filter(|st| is_once(st))
            .map(|st| (st.kind(), st.reason.clone()))
            .collect::<Vec<_>>()
    };
    let removed_used = vec![(pb::StatusKind::CodeRemoved, "used".to_owned())];
    assert!(used(&s.statuses(false)).is_empty());

    // The daemon's path: decided on the shared view (marked there at
    // once), then recorded in the store.
    let request = Request::pin("front", Direction::In, Pin::parse("8642").unwrap());
    let now = fixture::now();
    let view = s.view().unwrap().clone();
    let first = decide_entry(&request, &view, now);
    assert!(first.granted && first.code_consumed);
    assert!(store
        .record_code_use("code-once", first.at.as_millisecond())
        .unwrap());
    assert!(!decide(&request, &view, now).granted);
    // The next status pass reports it, once.
    assert_eq!(used(&s.statuses(false)), removed_used);
    assert!(used(&s.statuses(false)).is_empty());

    // A revision that sends the code again, still unused in the cloud's
    // record: it stays used here and says so.
    let once = fixture::data()
        .access_codes
        .into_iter()
        .find(|c| c.id.as_str() == "code-once")
        .unwrap();
    assert_eq!(once.used_at, None);
    let statuses = s
        .apply_revision(&pb::Revision {
            base_revision: 1,
            revision: 2,
            changes: vec![upsert(Record::AccessCode(once))],
        })
        .unwrap();
    assert_eq!(used(&statuses), removed_used);
    let message = decide(&request, s.view().unwrap(), now).message();
    assert_eq!(
        message,
        "one-time access code Courier already used 2026-06-03 10:00"
    );

    // A snapshot that still carries it unused.
    let statuses = snapshot(&mut s, &fixture::data(), 3);
    assert_eq!(used(&statuses), removed_used);
    assert!(!decide(&request, s.view().unwrap(), now).granted);

    // A restart.
    drop(s);
    let (mut s, _) = state(store.clone());
    assert!(!decide(&request, s.view().unwrap(), now).granted);
    assert_eq!(s.view().unwrap().code_used_at("code-once"), Some(now));

    // The cloud deletes the code: its use record goes with it.
    s.apply_revision(&pb::Revision {
        base_revision: 3,
        revision: 4,
        changes: vec![delete(pb::EntityKind::AccessCode, "code-once")],
    })
    .unwrap();
    assert!(store.code_uses().unwrap().is_empty());
}
