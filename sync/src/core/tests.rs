//! Unit tests of the state machine with an in-memory hub.

use std::collections::BTreeMap;

use hub_proto::v1::{
    change, command, entity, AccessEvent, Change, Door, Entity, EntityKey, EntityKind, Health,
    Site, Time,
};

use super::*;
use crate::local::entity_key;

type Records = BTreeMap<(i32, String), Entity>;

/// An in-memory hub: records by key, a revision, an outbox.
#[derive(Default)]
struct Mem {
    revision: Option<u64>,
    records: Records,
    pending: Option<(u64, Records)>,
    outbox: Vec<AccessEvent>,
    commands: Vec<Command>,
    /// Status changes the next `statuses(false)` reports (and forgets).
    changed: Vec<EntityStatus>,
    /// How often statuses were asked for.
    status_checks: usize,
}

fn key_of(e: &Entity) -> (i32, String) {
    let k = entity_key(e).unwrap();
    (k.kind, k.id)
}

impl LocalState for Mem {
    fn revision(&self) -> Option<u64> {
        self.revision
    }
    fn apply_revision(&mut self, r: &Revision) -> Result<Vec<EntityStatus>, LocalError> {
        let mut next = self.records.clone();
        for c in &r.changes {
            match c.op.as_ref().unwrap() {
                change::Op::Upsert(e) => {
                    if let Some(entity::Kind::Door(d)) = &e.kind {
                        if d.name.is_empty() {
                            return Err(LocalError::rejected(
                                ErrorCode::Invalid,
                                entity_key(e),
                                "door without a name",
                            ));
                        }
                    }
                    next.insert(key_of(e), e.clone());
                }
                change::Op::Delete(k) => {
                    next.remove(&(k.kind, k.id.clone()));
                }
            }
        }
        self.records = next;
        self.revision = Some(r.revision);
        Ok(Vec::new())
    }
    fn snapshot_begin(&mut self, revision: u64) -> Result<(), LocalError> {
        self.pending = Some((revision, BTreeMap::new()));
        Ok(())
    }
    fn snapshot_chunk(&mut self, entities: Vec<Entity>) -> Result<(), LocalError> {
        let (_, p) = self.pending.as_mut().unwrap();
        for e in entities {
            p.insert(key_of(&e), e);
        }
        Ok(())
    }
    fn snapshot_commit(&mut self) -> Result<Vec<EntityStatus>, LocalError> {
        let (r, p) = self.pending.take().unwrap();
        self.records = p;
        self.revision = Some(r);
        Ok(Vec::new())
    }
    fn snapshot_abort(&mut self) {
        self.pending = None;
    }
    fn outbox_peek(&mut self, from: u64, max: usize) -> Result<Vec<AccessEvent>, LocalError> {
        Ok(self
            .outbox
            .iter()
            .filter(|e| e.seq >= from)
            .take(max)
            .cloned()
            .collect())
    }
    fn outbox_ack(&mut self, through: u64) -> Result<(), LocalError> {
        self.outbox.retain(|e| e.seq > through);
        Ok(())
    }
    fn health(&mut self) -> Health {
        Health {
            revision: self.revision,
            outbox_depth: self.outbox.len() as u64,
            ..Health::default()
        }
    }
    fn statuses(&mut self, _all: bool) -> Vec<EntityStatus> {
        self.status_checks += 1;
        std::mem::take(&mut self.changed)
    }
    fn command(&mut self, c: &Command) -> CommandResult {
        self.commands.push(c.clone());
        CommandResult {
            code: ResultCode::Ok as i32,
            ..CommandResult::default()
        }
    }
    fn now(&self) -> Time {
        Time {
            seconds: 1_700_000_000,
            nanos: 0,
        }
    }
}

struct Harness {
    core: SyncCore,
    mem: Mem,
    now: Instant,
    topics: Topics,
}

impl Harness {
    fn new() -> Self {
        let topics = Topics::new("acme", "hub-1").unwrap();
        let mut cfg = SyncConfig::new(topics.clone());
        cfg.max_batch_events = 3;
        cfg.max_inflight_batches = 2;
        Harness {
            core: SyncCore::new(cfg),
            mem: Mem::default(),
            now: Instant::now(),
            topics,
        }
    }
    fn connect(&mut self) -> Vec<Publish> {
        self.core.handle_connected(&mut self.mem, self.now);
        self.drain()
    }
    fn send(&mut self, kind: Kind, payload: &[u8]) -> Vec<Publish> {
        let topic = self.topics.topic(kind);
        self.core
            .handle_message(&mut self.mem, &topic, payload, self.now);
        self.drain()
    }
    fn advance(&mut self, d: Duration) -> Vec<Publish> {
        self.now += d;
        self.core.handle_timeout(&mut self.mem, self.now);
        self.drain()
    }
    fn drain(&mut self) -> Vec<Publish> {
        std::iter::from_fn(|| self.core.poll_publish()).collect()
    }
    fn door_names(&self) -> Vec<String> {
        self.mem
            .records
            .values()
            .filter_map(|e| match &e.kind {
                Some(entity::Kind::Door(d)) => Some(d.name.clone()),
                _ => None,
            })
            .collect()
    }
}

fn on(ps: &[Publish], kind: &str) -> Vec<Publish> {
    ps.iter()
        .filter(|p| p.topic.ends_with(&format!("/{kind}")))
        .cloned()
        .collect()
}

fn statuses(ps: &[Publish]) -> Vec<EntityStatus> {
    on(ps, "status")
        .iter()
        .flat_map(|p| StatusReport::decode(&p.payload[..]).unwrap().statuses)
        .collect()
}

fn resyncs(ps: &[Publish]) -> Vec<ResyncRequest> {
    on(ps, "resync")
        .iter()
        .map(|p| ResyncRequest::decode(&p.payload[..]).unwrap())
        .collect()
}

fn door(id: &str, name: &str) -> Entity {
    Entity {
        kind: Some(entity::Kind::Door(Door {
            id: id.into(),
            name: name.into(),
            ..Door::default()
        })),
    }
}

fn site() -> Entity {
    Entity {
        kind: Some(entity::Kind::Site(Site {
            id: "s".into(),
            ..Site::default()
        })),
    }
}

fn chunk(id: &str, revision: u64, index: u32, count: u32, entities: Vec<Entity>) -> Vec<u8> {
    SnapshotChunk {
        snapshot_id: id.into(),
        revision,
        chunk_index: index,
        chunk_count: count,
        entities,
    }
    .encode_to_vec()
}

fn revision(base: u64, rev: u64, changes: Vec<change::Op>) -> Vec<u8> {
    Revision {
        base_revision: base,
        revision: rev,
        changes: changes
            .into_iter()
            .map(|op| Change { op: Some(op) })
            .collect(),
    }
    .encode_to_vec()
}

fn event(seq: u64) -> AccessEvent {
    AccessEvent {
        seq,
        door: "front".into(),
        granted: true,
        ..AccessEvent::default()
    }
}

fn sent_seqs(ps: &[Publish]) -> Vec<Vec<u64>> {
    on(ps, "events")
        .iter()
        .map(|p| {
            let b = EventBatch::decode(&p.payload[..]).unwrap();
            assert_eq!(b.hub_id, "hub-1");
            b.events.iter().map(|e| e.seq).collect()
        })
        .collect()
}

fn ack(through: u64) -> Vec<u8> {
    Ack {
        through_seq: through,
        resend: false,
    }
    .encode_to_vec()
}

fn resend_after(through: u64) -> Vec<u8> {
    Ack {
        through_seq: through,
        resend: true,
    }
    .encode_to_vec()
}

#[test]
fn a_hub_without_data_announces_itself_and_asks_for_a_snapshot() {
    let mut h = Harness::new();
    let out = h.connect();
    let presence = on(&out, "presence");
    assert_eq!(presence.len(), 1);
    assert!(presence[0].retain);
    let p = Presence::decode(&presence[0].payload[..]).unwrap();
    assert_eq!(p.state(), PresenceState::Online);
    assert_eq!(on(&out, "health").len(), 1);
    let r = resyncs(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].reason.as_str(), r[0].have_revision),
        ("no_data", None)
    );

    // Asked again after the retry interval, not before.
    assert!(resyncs(&h.advance(Duration::from_secs(29))).is_empty());
    assert_eq!(resyncs(&h.advance(Duration::from_secs(1))).len(), 1);

    // The last will says offline, retained.
    let will = h.core.last_will(&h.mem);
    assert!(will.retain && will.topic == "t/acme/h/hub-1/presence");
    let p = Presence::decode(&will.payload[..]).unwrap();
    assert_eq!(p.state(), PresenceState::Offline);
}

#[test]
fn chunked_snapshot_then_revisions() {
    let mut h = Harness::new();
    h.connect();
    let out = h.send(
        Kind::Snapshot,
        &chunk("s1", 5, 0, 2, vec![site(), door("front", "Front")]),
    );
    assert!(out.is_empty(), "nothing before the last chunk: {out:?}");
    assert_eq!(h.mem.revision, None);
    // A repeated chunk is ignored.
    assert!(h
        .send(
            Kind::Snapshot,
            &chunk("s1", 5, 0, 2, vec![site(), door("front", "Front")])
        )
        .is_empty());
    let out = h.send(
        Kind::Snapshot,
        &chunk("s1", 5, 1, 2, vec![door("back", "Back")]),
    );
    assert_eq!(h.mem.revision, Some(5));
    assert_eq!(h.door_names(), ["Back", "Front"]);
    let s = statuses(&out);
    assert_eq!((s[0].kind(), s[0].revision), (StatusKind::Applied, 5));
    // No more resync requests once the snapshot is in.
    assert!(resyncs(&h.advance(Duration::from_secs(60))).is_empty());

    // Incremental: upsert and delete.
    let out = h.send(
        Kind::Desired,
        &revision(
            5,
            6,
            vec![
                change::Op::Upsert(door("side", "Side")),
                change::Op::Delete(EntityKey {
                    kind: EntityKind::Door as i32,
                    id: "back".into(),
                }),
            ],
        ),
    );
    assert_eq!(h.mem.revision, Some(6));
    assert_eq!(h.door_names(), ["Front", "Side"]);
    assert_eq!(statuses(&out)[0].kind(), StatusKind::Applied);

    // The same revision again (QoS 1 repeat): ignored, nothing published.
    let again = h.send(
        Kind::Desired,
        &revision(5, 6, vec![change::Op::Upsert(door("x", "X"))]),
    );
    assert!(again.is_empty());
    assert_eq!(h.door_names(), ["Front", "Side"]);
}

#[test]
fn a_gap_asks_for_a_snapshot_and_changes_nothing() {
    let mut h = Harness::new();
    h.connect();
    h.send(Kind::Snapshot, &chunk("s1", 5, 0, 1, vec![site()]));
    let out = h.send(
        Kind::Desired,
        &revision(7, 8, vec![change::Op::Upsert(door("x", "X"))]),
    );
    assert_eq!(h.mem.revision, Some(5));
    assert!(h.door_names().is_empty());
    let s = statuses(&out);
    assert_eq!(
        (s[0].kind(), s[0].error(), s[0].topic.as_str()),
        (StatusKind::Rejected, ErrorCode::RevisionGap, "desired")
    );
    let r = resyncs(&out);
    assert_eq!(
        (r[0].reason.as_str(), r[0].have_revision),
        ("revision_gap", Some(5))
    );
    // A second gap while waiting does not ask again at once.
    let out = h.send(
        Kind::Desired,
        &revision(8, 9, vec![change::Op::Upsert(door("x", "X"))]),
    );
    assert!(resyncs(&out).is_empty());
    // The snapshot ends it.
    h.send(Kind::Snapshot, &chunk("s2", 9, 0, 1, vec![site()]));
    assert_eq!(h.mem.revision, Some(9));
    assert!(resyncs(&h.advance(Duration::from_secs(120))).is_empty());
}

#[test]
fn bad_payloads_are_rejected_and_change_nothing() {
    let mut h = Harness::new();
    h.connect();
    h.send(
        Kind::Snapshot,
        &chunk("s1", 5, 0, 1, vec![site(), door("front", "Front")]),
    );
    let cases: Vec<(Kind, Vec<u8>, ErrorCode)> = vec![
        (Kind::Desired, b"\xff\xff\xff".to_vec(), ErrorCode::Decode),
        (
            Kind::Desired,
            vec![0u8; MAX_PAYLOAD + 1],
            ErrorCode::TooLarge,
        ),
        (Kind::Desired, revision(5, 5, vec![]), ErrorCode::Invalid),
        (
            Kind::Desired,
            Revision {
                base_revision: 5,
                revision: 6,
                changes: vec![Change { op: None }],
            }
            .encode_to_vec(),
            ErrorCode::Invalid,
        ),
        (
            Kind::Desired,
            revision(
                5,
                6,
                vec![
                    change::Op::Upsert(door("side", "Side")),
                    change::Op::Upsert(door("bad", "")),
                ],
            ),
            ErrorCode::Invalid,
        ),
        (
            Kind::Snapshot,
            chunk("s2", 9, 2, 2, vec![]),
            ErrorCode::Invalid,
        ),
        (
            Kind::Snapshot,
            chunk("", 9, 0, 1, vec![]),
            ErrorCode::Invalid,
        ),
        (
            Kind::Snapshot,
            chunk("old", 4, 0, 1, vec![]),
            ErrorCode::Stale,
        ),
        (Kind::Cmd, b"\x0a\xff".to_vec(), ErrorCode::Decode),
        (Kind::Ack, b"\x08".to_vec(), ErrorCode::Decode),
    ];
    for (kind, payload, error) in cases {
        let out = h.send(kind, &payload);
        let s = statuses(&out);
        assert_eq!(s.len(), 1, "{kind} {error:?}: {out:?}");
        assert_eq!((s[0].kind(), s[0].error()), (StatusKind::Rejected, error));
        assert_eq!(s[0].topic, kind.level());
        assert!(!s[0].reason.is_empty());
        assert_eq!(h.mem.revision, Some(5), "{kind} {error:?}");
        assert_eq!(h.door_names(), ["Front"], "{kind} {error:?}");
    }
    // The record at fault is named.
    let out = h.send(
        Kind::Desired,
        &revision(5, 6, vec![change::Op::Upsert(door("bad", ""))]),
    );
    let s = statuses(&out);
    assert_eq!(s[0].key.as_ref().unwrap().id, "bad");
}

#[test]
fn only_this_hubs_topics_are_read() {
    let mut h = Harness::new();
    h.connect();
    while h.core.poll_event().is_some() {}
    let forged = chunk("s1", 5, 0, 1, vec![site(), door("x", "X")]);
    for topic in [
        "t/acme/h/hub-2/snapshot",
        "t/other/h/hub-1/snapshot",
        "t/acme/h/hub-1/events",
        "t/acme/h/hub-1/snapshot/x",
    ] {
        h.core.handle_message(&mut h.mem, topic, &forged, h.now);
        assert_eq!(
            h.core.poll_event(),
            Some(SyncEvent::Ignored {
                topic: topic.into()
            })
        );
    }
    assert!(h.drain().is_empty());
    assert_eq!(h.mem.revision, None);
}

#[test]
fn a_broken_snapshot_keeps_the_old_data_and_asks_again() {
    let mut h = Harness::new();
    h.connect();
    h.send(
        Kind::Snapshot,
        &chunk("s1", 5, 0, 1, vec![site(), door("front", "Front")]),
    );
    // Chunk 1 of 3 lost: chunk 2 breaks it.
    h.send(Kind::Snapshot, &chunk("s2", 9, 0, 3, vec![site()]));
    let out = h.send(Kind::Snapshot, &chunk("s2", 9, 2, 3, vec![]));
    assert_eq!(statuses(&out)[0].error(), ErrorCode::SnapshotBroken);
    assert_eq!(resyncs(&out)[0].reason, "snapshot_broken");
    assert_eq!(
        (h.mem.revision, h.door_names()),
        (Some(5), vec!["Front".into()])
    );
    assert!(h.mem.pending.is_none());

    // A snapshot that stops arriving is dropped after the timeout.
    h.send(Kind::Snapshot, &chunk("s3", 10, 0, 2, vec![site()]));
    assert!(h.core.poll_timeout().is_some());
    let out = h.advance(Duration::from_secs(61));
    assert_eq!(statuses(&out)[0].error(), ErrorCode::SnapshotBroken);
    assert_eq!(resyncs(&out).len(), 1);
    assert_eq!(
        (h.mem.revision, h.door_names()),
        (Some(5), vec!["Front".into()])
    );
    // Its late chunk is not taken as the start of something.
    assert!(h
        .send(Kind::Snapshot, &chunk("s3", 10, 1, 2, vec![]))
        .is_empty());
}

#[test]
fn events_drain_in_order_with_cumulative_acks() {
    let mut h = Harness::new();
    h.mem.outbox = (1..=10).map(event).collect();
    let out = h.connect();
    // Two batches of three in flight.
    assert_eq!(sent_seqs(&out), [vec![1, 2, 3], vec![4, 5, 6]]);
    // Acks are cumulative; an ack opens the window.
    let out = h.send(Kind::Ack, &ack(3));
    assert_eq!(sent_seqs(&out), [vec![7, 8, 9]]);
    assert_eq!(h.mem.outbox.first().map(|e| e.seq), Some(4));
    // An ack past what was sent deletes only what was sent.
    let out = h.send(Kind::Ack, &ack(100));
    assert_eq!(sent_seqs(&out), [vec![10]]);
    assert_eq!(h.mem.outbox.first().map(|e| e.seq), Some(10));
    h.send(Kind::Ack, &ack(10));
    assert!(h.mem.outbox.is_empty());

    // New events go out when the hub says so.
    h.mem.outbox.push(event(11));
    h.core.handle_outbox_changed(&mut h.mem, h.now);
    assert_eq!(sent_seqs(&h.drain()), [vec![11]]);
}

#[test]
fn unacked_events_go_again_after_a_reconnect_or_a_timeout() {
    let mut h = Harness::new();
    h.mem.outbox = (1..=4).map(event).collect();
    let out = h.connect();
    assert_eq!(sent_seqs(&out), [vec![1, 2, 3], vec![4]]);
    h.send(Kind::Ack, &ack(2));
    h.core.handle_disconnected(h.now);
    // Offline: nothing goes out, events stay.
    h.mem.outbox.push(event(5));
    h.core.handle_outbox_changed(&mut h.mem, h.now);
    assert!(sent_seqs(&h.drain()).is_empty());
    // Back: from the first unacknowledged one, same keys.
    let out = h.connect();
    assert_eq!(sent_seqs(&out), [vec![3, 4, 5]]);
    // No ack for 30 s: again.
    assert!(sent_seqs(&h.advance(Duration::from_secs(29))).is_empty());
    assert_eq!(
        sent_seqs(&h.advance(Duration::from_secs(1))),
        [vec![3, 4, 5]]
    );
}

#[test]
fn a_cloud_that_missed_events_asks_for_them_again() {
    let mut h = Harness::new();
    h.mem.outbox = (1..=5).map(event).collect();
    let out = h.connect();
    assert_eq!(sent_seqs(&out), [vec![1, 2, 3], vec![4, 5]]);
    // The cloud (reconnected without a persistent session) holds nothing:
    // everything goes again at once, same keys, nothing deleted.
    let out = h.send(Kind::Ack, &resend_after(0));
    assert_eq!(sent_seqs(&out), [vec![1, 2, 3], vec![4, 5]]);
    assert_eq!(h.mem.outbox.len(), 5);
    // It holds 1 and 2: those are deleted, the rest sent again.
    let out = h.send(Kind::Ack, &resend_after(2));
    assert_eq!(sent_seqs(&out), [vec![3, 4, 5]]);
    assert_eq!(h.mem.outbox.first().map(|e| e.seq), Some(3));
    // A resend request never deletes what was not sent.
    let out = h.send(Kind::Ack, &resend_after(99));
    assert!(sent_seqs(&out).is_empty());
    assert!(h.mem.outbox.is_empty());
}

#[test]
fn big_events_are_split_into_payloads_under_the_limit() {
    let mut h = Harness::new();
    h.core.cfg.max_batch_events = 1000;
    h.core.cfg.max_inflight_batches = 100;
    h.mem.outbox = (1..=40)
        .map(|s| AccessEvent {
            message: "x".repeat(10_000),
            ..event(s)
        })
        .collect();
    let out = h.connect();
    let batches = on(&out, "events");
    assert!(batches.len() >= 4);
    assert!(batches.iter().all(|p| p.payload.len() <= MAX_PAYLOAD));
    let all: Vec<u64> = sent_seqs(&out).concat();
    assert_eq!(all, (1..=40).collect::<Vec<_>>());
}

#[test]
fn commands_get_results_by_correlation_id() {
    let mut h = Harness::new();
    h.connect();
    let unlock = Command {
        correlation_id: "c-1".into(),
        action: Some(command::Action::MomentaryUnlock(
            hub_proto::v1::MomentaryUnlock {
                door: "front".into(),
                duration_ms: 3000,
            },
        )),
    };
    let out = h.send(Kind::Cmd, &unlock.encode_to_vec());
    let r = CommandResult::decode(&on(&out, "result")[0].payload[..]).unwrap();
    assert_eq!(
        (r.correlation_id.as_str(), r.hub_id.as_str(), r.code()),
        ("c-1", "hub-1", ResultCode::Ok)
    );
    assert_eq!(h.mem.commands, [unlock]);

    // Resync: the hub asks for a snapshot.
    let out = h.send(
        Kind::Cmd,
        &Command {
            correlation_id: "c-2".into(),
            action: Some(command::Action::Resync(hub_proto::v1::Resync {})),
        }
        .encode_to_vec(),
    );
    assert_eq!(resyncs(&out)[0].reason, "command");
    // Status request: health and result.
    let out = h.send(
        Kind::Cmd,
        &Command {
            correlation_id: "c-3".into(),
            action: Some(command::Action::StatusRequest(
                hub_proto::v1::StatusRequest {},
            )),
        }
        .encode_to_vec(),
    );
    assert_eq!(on(&out, "health").len(), 1);
    // No action: invalid, with the correlation id.
    let out = h.send(
        Kind::Cmd,
        &Command {
            correlation_id: "c-4".into(),
            action: None,
        }
        .encode_to_vec(),
    );
    let r = CommandResult::decode(&on(&out, "result")[0].payload[..]).unwrap();
    assert_eq!(
        (r.correlation_id.as_str(), r.code()),
        ("c-4", ResultCode::Invalid)
    );
}

fn unlock(id: &str) -> Command {
    Command {
        correlation_id: id.into(),
        action: Some(command::Action::MomentaryUnlock(
            hub_proto::v1::MomentaryUnlock {
                door: "front".into(),
                duration_ms: 0,
            },
        )),
    }
}

#[test]
fn a_repeated_correlation_id_gets_the_same_result_and_is_not_carried_out_again() {
    let mut h = Harness::new();
    h.connect();
    let first = h.send(Kind::Cmd, &unlock("c-1").encode_to_vec());
    let first = on(&first, "result");
    assert_eq!(h.mem.commands.len(), 1);
    // QoS 1 redelivery of the same command.
    let again = h.send(Kind::Cmd, &unlock("c-1").encode_to_vec());
    let again = on(&again, "result");
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].payload, first[0].payload,
        "the same result, byte for byte"
    );
    assert_eq!(h.mem.commands.len(), 1, "carried out once");
    let events: Vec<SyncEvent> = std::iter::from_fn(|| h.core.poll_event()).collect();
    assert!(events.contains(&SyncEvent::CommandRepeated {
        correlation_id: "c-1".into()
    }));
    // Another id is carried out.
    h.send(Kind::Cmd, &unlock("c-2").encode_to_vec());
    assert_eq!(h.mem.commands.len(), 2);
}

#[test]
fn the_recent_command_table_is_bounded() {
    let mut h = Harness::new();
    h.connect();
    for i in 0..=RECENT_COMMANDS {
        h.send(Kind::Cmd, &unlock(&format!("c-{i}")).encode_to_vec());
    }
    assert_eq!(h.mem.commands.len(), RECENT_COMMANDS + 1);
    // The newest ids are remembered...
    h.send(
        Kind::Cmd,
        &unlock(&format!("c-{RECENT_COMMANDS}")).encode_to_vec(),
    );
    assert_eq!(h.mem.commands.len(), RECENT_COMMANDS + 1);
    // ...the oldest fell out of the table and counts as new.
    h.send(Kind::Cmd, &unlock("c-0").encode_to_vec());
    assert_eq!(h.mem.commands.len(), RECENT_COMMANDS + 2);
}

#[test]
fn a_status_change_goes_out_with_the_event_that_came_with_it() {
    let mut h = Harness::new();
    h.connect();
    let used = EntityStatus {
        key: Some(EntityKey {
            kind: EntityKind::AccessCode as i32,
            id: "code-once".into(),
        }),
        kind: StatusKind::CodeRemoved as i32,
        reason: "used".into(),
        ..EntityStatus::default()
    };
    // Offline: nothing is asked or sent.
    h.core.handle_disconnected(h.now);
    h.mem.changed.push(used.clone());
    h.mem.outbox.push(event(1));
    h.core.handle_outbox_changed(&mut h.mem, h.now);
    assert!(h.drain().is_empty());
    assert_eq!(h.mem.changed.len(), 1);
    // Online: the change goes with the next event, before the status pass.
    h.connect();
    h.mem.outbox.push(event(2));
    h.core.handle_outbox_changed(&mut h.mem, h.now);
    let out = h.drain();
    assert_eq!(statuses(&out), [used]);
    assert_eq!(sent_seqs(&out), [vec![2]]);
}

#[test]
fn a_burst_of_events_checks_statuses_once_and_once_more_at_the_window_end() {
    let mut h = Harness::new();
    h.connect();
    h.advance(Duration::from_secs(1));
    let checks = h.mem.status_checks;
    let used = EntityStatus {
        key: Some(EntityKey {
            kind: EntityKind::AccessCode as i32,
            id: "code-once".into(),
        }),
        kind: StatusKind::CodeRemoved as i32,
        reason: "used".into(),
        ..EntityStatus::default()
    };
    // 50 events within 50 ms: the first wake checks, the rest do not.
    for seq in 1..=50 {
        if seq == 10 {
            // A code used in the middle of the burst.
            h.mem.changed.push(used.clone());
        }
        h.mem.outbox.push(event(seq));
        h.core.handle_outbox_changed(&mut h.mem, h.now);
        h.now += Duration::from_millis(1);
    }
    let out = h.drain();
    assert_eq!(h.mem.status_checks, checks + 1);
    assert!(statuses(&out).is_empty());
    // The window's end is a deadline: the change goes out then.
    let deadline = h.core.poll_timeout().unwrap();
    assert!(deadline <= h.now + STATUS_CHECK_EVERY, "{deadline:?}");
    let out = h.advance(deadline - h.now);
    assert_eq!(statuses(&out), [used]);
    assert_eq!(h.mem.status_checks, checks + 2);
}
