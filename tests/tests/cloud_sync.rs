//! The MQTT contract end to end: the hub's sync engine (`hub::cloud` on a
//! real store, in-process) against a real Mosquitto with mTLS and the
//! per-hub ACL, and against NATS's MQTT listener; the test plays the cloud
//! with a rumqttc client. See docs/mqtt-api.md.
//!
//! Needs mosquitto and nats-server (scripts/test-env.sh).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::broker::{contract_acl, HOST};
use e2e::{
    mqtt_options, mqtt_tls_options, repo_root, Broker, Certs, Mosquitto, MosquittoOpts, NatsMqtt,
    TempDir, TestClient,
};
use hub::access::{DataSet, Door};
use hub::cloud::{self, convert::Record, reference, CloudState, Hooks};
use hub::events::{EventKind, HubEvent};
use hub::store::{Store, StoreConfig};
use hub_proto::v1 as pb;
use hub_proto::v1::Message;
use hub_sync::driver::{MqttSettings, SyncHandle};
use hub_sync::{SyncConfig, Topics, MAX_PAYLOAD};
use rumqttc::QoS;

/// Generous: only a failing test waits this long.
const T: Duration = Duration::from_secs(20);
const TENANT: &str = "acme";

fn example_data() -> DataSet {
    let path = repo_root().join("hub/examples/data/site.json");
    let text = std::fs::read_to_string(&path).unwrap();
    hub::dataset_file::parse(&path, &text).unwrap()
}

fn sorted(mut d: DataSet) -> DataSet {
    d.doors.sort_by(|a, b| a.id.cmp(&b.id));
    d.users.sort_by(|a, b| a.id.cmp(&b.id));
    d.credentials.sort_by(|a, b| a.id.cmp(&b.id));
    d.access_codes.sort_by(|a, b| a.id.cmp(&b.id));
    d.schedules.sort_by(|a, b| a.id.cmp(&b.id));
    d.holidays.sort_by_key(hub::site_data::holiday_key);
    d.accesses.sort_by(|a, b| a.id.cmp(&b.id));
    d.facilities.sort_by(|a, b| a.id.cmp(&b.id));
    d.events.sort_by(|a, b| a.id.cmp(&b.id));
    d.members.sort_by(|a, b| a.user.cmp(&b.user));
    d
}

fn open_store(path: &Path) -> Arc<Store> {
    Arc::new(Store::open(StoreConfig::new(path)).unwrap().0)
}

fn stored(store: &Store) -> Option<(DataSet, u64)> {
    hub::site_data::load(store).ok()
}

/// The hub: the sync engine on a store, with short timers.
fn start_hub(store: Arc<Store>, mqtt: MqttSettings) -> SyncHandle<CloudState> {
    let mut cfg = SyncConfig::new(Topics::new(TENANT, "hub-1").unwrap());
    cfg.ack_timeout = Duration::from_secs(3);
    cfg.resync_retry = Duration::from_secs(3);
    cfg.outbox_poll = Duration::from_millis(200);
    cloud::run_sync_with(cfg, mqtt, store, Hooks::default())
}

fn hub_tls(port: u16, certs: &Certs) -> MqttSettings {
    let mut m = MqttSettings::tls(HOST, port, "hub-1", certs.rustls_config(Some("hub-1")));
    m.reconnect_delay = Duration::from_millis(200);
    m.keep_alive = Duration::from_secs(2);
    m
}

fn hub_plain(port: u16) -> MqttSettings {
    let mut m = MqttSettings::plain(HOST, port, "hub-1");
    m.reconnect_delay = Duration::from_millis(200);
    m
}

/// What the hub sent.
#[derive(Debug)]
enum Up {
    Events(pb::EventBatch),
    Status(pb::StatusReport),
    Resync(pb::ResyncRequest),
    Result(pb::CommandResult),
    Presence(pb::Presence),
    Health(pb::Health),
}

/// The test's cloud: a client subscribed to hub-1's up topics.
struct Cloud {
    c: TestClient,
    prefix: String,
}

impl Cloud {
    async fn connect(mut opts: rumqttc::MqttOptions, persistent: bool) -> Cloud {
        opts.set_clean_session(!persistent);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let mut c = TestClient::connect(opts);
        c.wait_connected(T).await.expect("cloud connected");
        c.subscribe(&format!("t/{TENANT}/h/hub-1/#"), QoS::AtLeastOnce, T)
            .await;
        Cloud {
            c,
            prefix: format!("t/{TENANT}/h/hub-1/"),
        }
    }

    async fn send(&mut self, level: &str, payload: &[u8]) {
        let topic = format!("{}{level}", self.prefix);
        self.c.publish(&topic, QoS::AtLeastOnce, payload, T).await;
    }

    async fn snapshot(&mut self, data: &DataSet, revision: u64, max: usize) -> usize {
        let chunks = reference::snapshot_chunks(data, revision, &format!("snap-{revision}"), max);
        let n = chunks.len();
        for c in chunks {
            self.send("snapshot", &c.encode_to_vec()).await;
        }
        n
    }

    async fn revision(&mut self, base: u64, revision: u64, changes: Vec<pb::Change>) {
        let r = pb::Revision {
            base_revision: base,
            revision,
            changes,
        };
        self.send("desired", &r.encode_to_vec()).await;
    }

    /// The first message `pick` accepts; others are skipped; connection
    /// errors (a broker restart) are waited out.
    async fn wait<R>(&mut self, what: &str, mut pick: impl FnMut(Up) -> Option<R>) -> R {
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}");
            let Ok(m) = self.c.recv(left).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let level = m.topic.strip_prefix(&self.prefix).unwrap_or("").to_owned();
            let p = &m.payload[..];
            let up = match level.as_str() {
                "events" => Up::Events(pb::EventBatch::decode(p).unwrap()),
                "status" => Up::Status(pb::StatusReport::decode(p).unwrap()),
                "resync" => Up::Resync(pb::ResyncRequest::decode(p).unwrap()),
                "result" => Up::Result(pb::CommandResult::decode(p).unwrap()),
                "presence" => Up::Presence(pb::Presence::decode(p).unwrap()),
                "health" => Up::Health(pb::Health::decode(p).unwrap()),
                _ => continue,
            };
            if let Some(r) = pick(up) {
                return r;
            }
        }
    }

    async fn wait_status(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&pb::EntityStatus) -> bool,
    ) -> pb::EntityStatus {
        self.wait(what, |u| match u {
            Up::Status(r) => r.statuses.into_iter().find(|s| pick(s)),
            _ => None,
        })
        .await
    }

    async fn wait_applied(&mut self, revision: u64) {
        self.wait_status(&format!("revision {revision} applied"), |s| {
            s.kind() == pb::StatusKind::Applied && s.revision == revision
        })
        .await;
    }

    async fn wait_rejected(&mut self, error: pb::ErrorCode) -> pb::EntityStatus {
        self.wait_status(&format!("{error:?} rejection"), |s| {
            s.kind() == pb::StatusKind::Rejected && s.error() == error
        })
        .await
    }

    async fn wait_resync(&mut self) -> pb::ResyncRequest {
        self.wait("a resync request", |u| match u {
            Up::Resync(r) => Some(r),
            _ => None,
        })
        .await
    }

    /// Events until `last` has been seen, de-duplicated by (hub_id, seq),
    /// in arrival order; acknowledges each batch (cumulative) when `ack`.
    async fn collect_events(&mut self, last: u64, ack: bool) -> Vec<u64> {
        let mut seen: Vec<u64> = Vec::new();
        while seen.last() != Some(&last) {
            let batch = self
                .wait("events", |u| match u {
                    Up::Events(b) => Some(b),
                    _ => None,
                })
                .await;
            assert_eq!(batch.hub_id, "hub-1");
            for e in &batch.events {
                if !seen.contains(&e.seq) {
                    seen.push(e.seq);
                }
            }
            if ack {
                if let Some(top) = batch.events.last() {
                    let a = pb::Ack {
                        through_seq: top.seq,
                        resend: false,
                    };
                    self.send("ack", &a.encode_to_vec()).await;
                }
            }
        }
        seen
    }
}

fn upsert(r: Record) -> pb::Change {
    pb::Change {
        op: Some(pb::change::Op::Upsert(cloud::convert::to_proto(&r))),
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

fn append_events(store: &Store, doors: std::ops::RangeInclusive<u64>) {
    for i in doors {
        let mut e = HubEvent::new(EventKind::Decision, "granted: access Staff");
        e.door = Some(format!("door-{i}"));
        e.granted = Some(true);
        e.reason = Some("access".into());
        e.credential = Some("****4567".into());
        e.encode()
            .map(|bytes| store.outbox().append(&bytes))
            .unwrap()
            .unwrap();
    }
}

/// Polls until `f` holds (the hub applies acks asynchronously).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tls_broker(certs: &Certs, persistence: bool) -> Mosquitto {
    Mosquitto::start(
        MosquittoOpts::plain()
            .without_plain()
            .with_tls(certs)
            .acl(contract_acl(TENANT))
            .persistence(persistence),
    )
}

/// First sync, incremental changes and deletes, a gap, bad payloads, a
/// forged change from another hub's certificate, events with acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_mtls_full_sync_cycle() {
    let tmp = TempDir::new("cloud-sync");
    let certs = Certs::generate(&tmp.path().join("certs"));
    let broker = tls_broker(&certs, false);
    let port = broker.tls_port();
    let mut cloud = Cloud::connect(
        mqtt_tls_options("cloud", port, certs.rustls_config(Some("cloud"))),
        false,
    )
    .await;

    let store = open_store(&tmp.path().join("store"));
    let hub = start_hub(store.clone(), hub_tls(port, &certs));

    // A hub without data is online, reports its health and asks for a
    // snapshot.
    let p = cloud
        .wait("presence", |u| match u {
            Up::Presence(p) => Some(p),
            _ => None,
        })
        .await;
    assert_eq!(p.state(), pb::PresenceState::Online);
    let h = cloud
        .wait("health", |u| match u {
            Up::Health(h) => Some(h),
            _ => None,
        })
        .await;
    assert_eq!((h.hub_id.as_str(), h.revision), ("hub-1", None));
    let r = cloud.wait_resync().await;
    assert_eq!((r.reason.as_str(), r.have_revision), ("no_data", None));

    // First sync: a snapshot in several chunks.
    let data = example_data();
    let n = cloud.snapshot(&data, 1, 512).await;
    assert!(n > 1, "the example should need several 512-byte chunks");
    cloud.wait_applied(1).await;
    assert_eq!(stored(&store), Some((sorted(data.clone()), 1)));

    // Incremental: a new door, a renamed one, a deleted holiday.
    let mut next = data.clone();
    next.doors.push(Door::new("side", "Side Door"));
    next.doors[0].name = "Main Entrance".into();
    let gone = next.holidays.remove(0);
    let changes = reference::diff(&data, &next);
    assert!(changes
        .iter()
        .any(|c| matches!(c.op, Some(pb::change::Op::Delete(_)))));
    cloud.revision(1, 2, changes).await;
    cloud.wait_applied(2).await;
    assert_eq!(stored(&store), Some((sorted(next.clone()), 2)));
    assert!(!stored(&store).unwrap().0.holidays.contains(&gone));

    // A gap: the hub rejects it and asks for a snapshot.
    cloud
        .revision(5, 6, vec![upsert(Record::Door(Door::new("x", "X")))])
        .await;
    let s = cloud.wait_rejected(pb::ErrorCode::RevisionGap).await;
    assert_eq!(s.topic, "desired");
    let r = cloud.wait_resync().await;
    assert_eq!(
        (r.reason.as_str(), r.have_revision),
        ("revision_gap", Some(2))
    );
    assert_eq!(stored(&store).map(|s| s.1), Some(2));
    next.doors.push(Door::new("annex", "Annex"));
    cloud.snapshot(&next, 6, MAX_PAYLOAD).await;
    cloud.wait_applied(6).await;
    assert_eq!(stored(&store), Some((sorted(next.clone()), 6)));

    // Bad payloads: an error status each, nothing changed.
    let before = stored(&store);
    cloud.send("desired", b"\xff\x01garbage").await;
    cloud.wait_rejected(pb::ErrorCode::Decode).await;
    cloud.send("desired", &vec![0u8; MAX_PAYLOAD + 1]).await;
    cloud.wait_rejected(pb::ErrorCode::TooLarge).await;
    let mut broken = next.accesses[0].clone();
    broken.users.push("no-such-user".into());
    cloud
        .revision(
            6,
            7,
            vec![
                upsert(Record::Door(Door::new("y", "Y"))),
                upsert(Record::Access(broken.clone())),
            ],
        )
        .await;
    let s = cloud.wait_rejected(pb::ErrorCode::Inconsistent).await;
    assert_eq!(s.key.map(|k| k.id), Some(broken.id.to_string()));
    cloud.send("snapshot", b"\x08").await;
    cloud.wait_rejected(pb::ErrorCode::Decode).await;
    assert_eq!(stored(&store), before);

    // hub-2's certificate cannot change hub-1: the broker drops its
    // publish, so the cloud's own revision 7 is the one applied.
    let mut rogue = TestClient::connect(mqtt_tls_options(
        "hub-2",
        port,
        certs.rustls_config(Some("hub-2")),
    ));
    rogue.wait_connected(T).await.expect("hub-2 connected");
    let forged = pb::Revision {
        base_revision: 6,
        revision: 7,
        changes: vec![upsert(Record::Door(Door::new("forged", "Forged")))],
    };
    rogue
        .publish(
            &format!("t/{TENANT}/h/hub-1/desired"),
            QoS::AtLeastOnce,
            &forged.encode_to_vec(),
            T,
        )
        .await;
    cloud
        .revision(6, 7, vec![delete(pb::EntityKind::Door, "annex")])
        .await;
    cloud.wait_applied(7).await;
    let (now, rev) = stored(&store).unwrap();
    assert_eq!(rev, 7);
    assert!(!now.doors.iter().any(|d| d.id.as_str() == "forged"));
    assert!(!now.doors.iter().any(|d| d.id.as_str() == "annex"));

    // Events: in order, in batches, deleted once acknowledged.
    append_events(&store, 1..=1200);
    hub.outbox_changed();
    let seqs = cloud.collect_events(1200, true).await;
    assert_eq!(seqs, (1..=1200).collect::<Vec<_>>());
    eventually("outbox emptied by the acks", || store.outbox().depth() == 0).await;

    // Commands: a result with the correlation id.
    let cmd = pb::Command {
        correlation_id: "corr-1".into(),
        action: Some(pb::command::Action::MomentaryUnlock(pb::MomentaryUnlock {
            door: "front".into(),
            duration_ms: 3000,
        })),
    };
    cloud.send("cmd", &cmd.encode_to_vec()).await;
    let r = cloud
        .wait("the command result", |u| match u {
            Up::Result(r) if r.correlation_id == "corr-1" => Some(r),
            _ => None,
        })
        .await;
    // No door control is attached to the sync in this test.
    assert_eq!(r.code(), pb::ResultCode::Unsupported);

    hub.shutdown().await.expect("clean shutdown");
    let p = cloud
        .wait("offline presence", |u| match u {
            Up::Presence(p) if p.state() == pb::PresenceState::Offline => Some(p),
            _ => None,
        })
        .await;
    assert_eq!(p.hub_id, "hub-1");
}

/// The broker dies: events appended meanwhile wait in the outbox and are
/// delivered after it is back, each once by key, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_restart_delivers_buffered_events() {
    let tmp = TempDir::new("cloud-sync");
    let certs = Certs::generate(&tmp.path().join("certs"));
    let mut broker = tls_broker(&certs, true);
    let port = broker.tls_port();
    let mut cloud = Cloud::connect(
        mqtt_tls_options("cloud", port, certs.rustls_config(Some("cloud"))),
        true,
    )
    .await;
    let store = open_store(&tmp.path().join("store"));
    let hub = start_hub(store.clone(), hub_tls(port, &certs));
    cloud.wait_resync().await;
    cloud.snapshot(&example_data(), 1, MAX_PAYLOAD).await;
    cloud.wait_applied(1).await;
    append_events(&store, 1..=5);
    hub.outbox_changed();
    assert_eq!(cloud.collect_events(5, true).await, [1, 2, 3, 4, 5]);
    eventually("first events acknowledged", || store.outbox().depth() == 0).await;

    broker.kill();
    append_events(&store, 6..=40);
    hub.outbox_changed();
    // Decisions do not wait for the cloud: the events are in the outbox.
    assert_eq!(store.outbox().depth(), 35);
    broker.start_again();

    let seqs = cloud.collect_events(40, true).await;
    assert_eq!(seqs, (6..=40).collect::<Vec<_>>());
    eventually("all acknowledged", || store.outbox().depth() == 0).await;
    hub.shutdown().await;
}

/// The hub dies with events sent but not acknowledged: after its restart
/// they come again, with the same keys, and the last will said offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_killed_with_unacked_events_resends_them_after_restart() {
    let tmp = TempDir::new("cloud-sync");
    let certs = Certs::generate(&tmp.path().join("certs"));
    let broker = tls_broker(&certs, false);
    let port = broker.tls_port();
    let mut cloud = Cloud::connect(
        mqtt_tls_options("cloud", port, certs.rustls_config(Some("cloud"))),
        false,
    )
    .await;
    let path: PathBuf = tmp.path().join("store");
    let store = open_store(&path);
    let hub = start_hub(store.clone(), hub_tls(port, &certs));
    cloud.wait_resync().await;
    cloud.snapshot(&example_data(), 3, MAX_PAYLOAD).await;
    cloud.wait_applied(3).await;
    append_events(&store, 1..=10);
    hub.outbox_changed();
    // Received, not acknowledged.
    assert_eq!(
        cloud.collect_events(10, false).await,
        (1..=10).collect::<Vec<_>>()
    );
    hub.abort();
    let p = cloud
        .wait("the last will", |u| match u {
            Up::Presence(p) if p.state() == pb::PresenceState::Offline => Some(p),
            _ => None,
        })
        .await;
    assert_eq!(p.hub_id, "hub-1");
    // Close and reopen the store as a restarted hub would.
    eventually("the aborted task released the store", || {
        Arc::strong_count(&store) == 1
    })
    .await;
    Arc::try_unwrap(store).unwrap().close().unwrap();
    let store = open_store(&path);
    assert_eq!(store.outbox().depth(), 10);
    let hub = start_hub(store.clone(), hub_tls(port, &certs));
    // It has data: no resync, and the same events again.
    let seqs = cloud.collect_events(10, true).await;
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    eventually("acknowledged after the restart", || {
        store.outbox().depth() == 0
    })
    .await;
    assert_eq!(stored(&store).map(|s| s.1), Some(3));
    hub.shutdown().await;
}

/// The core sync on NATS's MQTT listener (QoS 0/1 only): snapshot,
/// revision, gap, events with acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_mqtt_core_sync() {
    let tmp = TempDir::new("cloud-sync");
    let broker = NatsMqtt::start();
    let port = broker.port();
    let mut cloud = Cloud::connect(mqtt_options("cloud", port), false).await;
    let store = open_store(&tmp.path().join("store"));
    let hub = start_hub(store.clone(), hub_plain(port));
    cloud.wait_resync().await;
    let data = example_data();
    cloud.snapshot(&data, 1, 512).await;
    cloud.wait_applied(1).await;
    assert_eq!(stored(&store), Some((sorted(data.clone()), 1)));
    let mut next = data.clone();
    next.doors.push(Door::new("side", "Side Door"));
    cloud.revision(1, 2, reference::diff(&data, &next)).await;
    cloud.wait_applied(2).await;
    assert_eq!(stored(&store), Some((sorted(next), 2)));
    cloud.revision(3, 4, vec![]).await;
    cloud.wait_rejected(pb::ErrorCode::RevisionGap).await;
    append_events(&store, 1..=30);
    hub.outbox_changed();
    assert_eq!(
        cloud.collect_events(30, true).await,
        (1..=30).collect::<Vec<_>>()
    );
    eventually("outbox emptied", || store.outbox().depth() == 0).await;
    hub.shutdown().await;
}

/// `hubctl`, the reference cloud, over mTLS: pushes the example data-set
/// file as a snapshot and a revision, sends a command and waits for its
/// result, tails events and acknowledges them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubctl_reference_cloud() {
    let tmp = TempDir::new("cloud-sync");
    let certs = Certs::generate(&tmp.path().join("certs"));
    let broker = tls_broker(&certs, false);
    let port = broker.tls_port();
    let store = open_store(&tmp.path().join("store"));
    let hub = start_hub(store.clone(), hub_tls(port, &certs));
    let cloud_cert = certs.client("cloud");
    let common: Vec<String> = vec![
        "--host".into(),
        HOST.into(),
        "--port".into(),
        port.to_string(),
        "--ca".into(),
        certs.ca.display().to_string(),
        "--cert".into(),
        cloud_cert.cert.display().to_string(),
        "--key".into(),
        cloud_cert.key.display().to_string(),
        "--tenant".into(),
        TENANT.into(),
        "--hub".into(),
        "hub-1".into(),
        "--timeout-s".into(),
        "20".into(),
    ];
    let bin = e2e::hubctl_bin();
    let run = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(&bin);
        cmd.args(&common).args(args).env("RUST_LOG", "warn");
        async move {
            let out = cmd.output().await.expect("run hubctl");
            let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect();
            (
                out.status.code(),
                lines,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let site = repo_root().join("hub/examples/data/site.json");
    let site = site.to_str().unwrap();

    let (code, lines, err) = run(&[
        "snapshot",
        "--file",
        site,
        "--revision",
        "1",
        "--chunk-bytes",
        "200",
    ])
    .await;
    assert_eq!(code, Some(0), "{lines:?} {err}");
    assert!(lines[0]["chunks"].as_u64().unwrap() > 1, "{lines:?}");
    assert_eq!(stored(&store), Some((sorted(example_data()), 1)));

    // A revision as the diff of two files, then a delete by key.
    let mut next = example_data();
    next.doors.push(Door::new("side", "Side Door"));
    let next_path = tmp.path().join("site-v2.json");
    std::fs::write(&next_path, serde_json::to_string(&next).unwrap()).unwrap();
    let (code, lines, err) = run(&[
        "revision",
        "--base",
        "1",
        "--revision",
        "2",
        "--previous",
        site,
        "--file",
        next_path.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, Some(0), "{lines:?} {err}");
    assert_eq!(lines[0]["changes"], 1);
    assert_eq!(stored(&store), Some((sorted(next.clone()), 2)));
    let (code, _, err) = run(&[
        "revision",
        "--base",
        "2",
        "--revision",
        "3",
        "--delete",
        "door:side",
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        stored(&store).map(|s| s.0.doors.len()),
        Some(example_data().doors.len())
    );
    // A gap is reported as a rejection: exit code 1.
    let (code, lines, _) = run(&[
        "revision",
        "--base",
        "7",
        "--revision",
        "8",
        "--delete",
        "door:front",
    ])
    .await;
    assert_eq!(code, Some(1));
    assert!(
        lines
            .iter()
            .any(|l| l["statuses"][0]["error"] == "ERROR_CODE_REVISION_GAP"),
        "{lines:?}"
    );

    // A command: no door control in this test, so UNSUPPORTED (exit 1),
    // answered under its correlation id.
    let (code, lines, _) = run(&[
        "command",
        "--correlation-id",
        "c-42",
        "unlock",
        "--door",
        "front",
    ])
    .await;
    assert_eq!(code, Some(1));
    let result = lines
        .iter()
        .find(|l| l["topic"] == "result")
        .expect("a result line");
    assert_eq!(
        (&result["correlation_id"], &result["code"]),
        (&json_str("c-42"), &json_str("RESULT_CODE_UNSUPPORTED"))
    );

    // Tail with acks.
    append_events(&store, 1..=7);
    hub.outbox_changed();
    let (code, lines, err) = run(&["tail", "--ack", "--for-s", "3"]).await;
    assert_eq!(code, Some(0), "{err}");
    let seqs: Vec<u64> = lines
        .iter()
        .filter(|l| l["topic"] == "events")
        .flat_map(|l| {
            l["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    assert!(lines
        .iter()
        .any(|l| l["sent"] == "ack" && l["through_seq"] == 7));
    assert!(lines.iter().all(|l| l["events"]
        .as_array()
        .is_none_or(|es| es.iter().all(|e| e["credential"] == "****4567"))));
    eventually("acked by hubctl", || store.outbox().depth() == 0).await;
    hub.shutdown().await;
}

fn json_str(s: &str) -> serde_json::Value {
    serde_json::Value::String(s.into())
}
