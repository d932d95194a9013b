//! Cloud sync over MQTT, measured from outside: the real `hub run` process
//! (release build) synced through a real Mosquitto (mutual TLS, the
//! contract's ACL) by a cloud played here with `rumqttc` and
//! `hub::cloud::reference`. Only the hub's external behaviour is observed:
//! MQTT messages, the HTTP check API, `GET /api/v1/events` and
//! `/proc/<pid>/status`, so the bench keeps working whatever the hub's
//! internals become.
//!
//! Phases (docs/benchmarks.md, "Cloud sync over MQTT"):
//!
//! 1. `snapshot`: the scale data set (`hub::access::scale`, 1,000,000
//!    credentials, 100,000 users, 10,000 accesses, 1,000 codes) published as
//!    a chunked snapshot to a hub with an empty store; timed from the first
//!    chunk published until the hub's `APPLIED` status for the revision has
//!    arrived AND the HTTP check grants the holder of the last credential.
//!    The hub's `VmHWM` (peak RSS) is read after the apply.
//! 2. `change`: with the small data set (10,000 credentials) and then the
//!    full one loaded, one revision per sample upserting one record that
//!    adds a card, and the HTTP check (`check_only`) polled on a keep-alive
//!    connection as fast as it answers until that card is granted.
//! 3. `backlog`: broker stopped, N entries recorded through the HTTP check
//!    (`check_only: false`), broker started again; timed until the cloud has
//!    received and acknowledged all of them in order and the hub's event
//!    list is empty.
//! 4. `sustain`: entries recorded as fast as the hub takes them (two
//!    keep-alive connections) while the cloud acknowledges; events per
//!    second reaching the cloud and the outbox depth every second.
//!
//! Run: `cargo bench -p e2e --bench sync_bench`. Environment:
//! `SYNC_BROKER_NODELAY=1` (Mosquitto's `set_tcp_nodelay true`),
//! `SYNC_CREDENTIALS` (default 1,000,000; users, accesses and codes scale
//! with it, 10:100:1000), `SYNC_SMALL_CREDENTIALS` (10,000), `SYNC_SAMPLES`
//! (200), `SYNC_BACKLOG` (100,000), `SYNC_SUSTAIN_S` (20), `SYNC_PHASES`
//! (comma list, default `snapshot,change,backlog,sustain`). A quick run:
//! `SYNC_CREDENTIALS=20000 SYNC_SAMPLES=20 SYNC_BACKLOG=5000
//! SYNC_SUSTAIN_S=3 cargo bench -p e2e --bench sync_bench`. Without
//! `--bench` (i.e. under `cargo test --benches`) it does nothing.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::broker::{contract_acl, Broker, Certs, Mosquitto, MosquittoOpts, TempDir, HOST};
use e2e::{hub_daemon_with, hub_release_bin, write_secret, JsonProc};
use hub::access::scale::{self, Spec};
use hub::access::{DataSet, Secret, User};
use hub::cloud::reference;
use hub_proto::v1 as pb;
use hub_proto::v1::Message;
use hub_sync::{Kind, Topics, MAX_PAYLOAD};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};

const TENANT: &str = "acme";
const HUB: &str = "hub-1";
const API_KEY: &str = "bench-api-key";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The scale spec for `credentials` (the issue's ratios).
fn spec(credentials: u64) -> Spec {
    Spec {
        credentials,
        users: (credentials / 10).max(30),
        accesses: (credentials / 100).max(1),
        codes: (credentials / 1000).max(1),
    }
}

/// The scale data set, open at any hour: the generator's weekday schedule
/// would deny most of the day, and the HTTP check decides on the wall clock.
fn data_set(spec: Spec) -> DataSet {
    let mut data = scale::data_set(spec);
    for a in &mut data.accesses {
        a.schedule = None;
    }
    data
}

/// User `u` with a card (Hive `door_access_id`) `card`.
fn user_with_card(u: u64, card: &str) -> DataSet {
    let mut user = User::new(format!("u{u}"), "First", "Last");
    user.door_access_id = Some(Secret::from(card));
    DataSet {
        users: vec![user],
        ..DataSet::default()
    }
}

// ---- HTTP on a keep-alive connection -------------------------------------------------

/// One keep-alive HTTP/1.1 connection to the hub's API: a bench needs the
/// round trip, not a TCP handshake per request (`e2e::http` closes each).
struct Api {
    addr: String,
    conn: BufReader<TcpStream>,
}

impl Api {
    fn connect(addr: &str) -> Api {
        let s = TcpStream::connect(addr).expect("connect to the API");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Api {
            addr: addr.to_string(),
            conn: BufReader::new(s),
        }
    }

    /// Sends one request; returns the status and the JSON body. Reconnects
    /// once when the server closed the connection.
    fn call(&mut self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        match self.try_call(method, path, body) {
            Ok(r) => r,
            Err(_) => {
                *self = Api::connect(&self.addr.clone());
                self.try_call(method, path, body).expect("HTTP request")
            }
        }
    }

    fn try_call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> std::io::Result<(u16, Value)> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nX-API-Key: {API_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.conn.get_mut().write_all(req.as_bytes())?;
        let mut status = 0u16;
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if self.conn.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(rest) = l.strip_prefix("HTTP/1.1 ") {
                status = rest.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            } else if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut buf = vec![0; len];
        self.conn.read_exact(&mut buf)?;
        Ok((status, serde_json::from_slice(&buf).unwrap_or(Value::Null)))
    }

    fn check(&mut self, door: &str, who: (&str, &str), check_only: bool) -> Value {
        let mut body = json!({"door_id": door, "check_only": check_only});
        body[who.0] = json!(who.1);
        let (status, answer) = self.call("POST", "/api/v1/access/check", Some(&body));
        assert!(status == 200 || status == 503, "{status} {answer}");
        answer
    }

    fn granted(&mut self, door: &str, who: (&str, &str)) -> bool {
        self.check(door, who, true)["success"] == true
    }

    /// The first event still in the hub's outbox (`None`: empty).
    fn first_unacked(&mut self) -> Option<u64> {
        let (status, page) = self.call("GET", "/api/v1/events?after=0&limit=1", None);
        assert_eq!(status, 200, "{page}");
        page["events"]
            .as_array()
            .and_then(|e| e.first())
            .and_then(|e| e["seq"].as_u64())
    }
}

// ---- the cloud -------------------------------------------------------------------------

/// What the cloud task saw; read by the bench thread.
#[derive(Default)]
struct Seen {
    /// Revisions reported APPLIED, with when the report arrived.
    applied: Vec<(u64, Instant)>,
    /// Snapshot requests (`resync`) received.
    resyncs: u64,
    /// Rejections (status lines), to fail loudly.
    rejected: Vec<String>,
    /// Highest sequence number received without a gap (and acknowledged).
    acked: Option<u64>,
    /// Events taken, in order (when `record` is on).
    taken: Vec<u64>,
    record: bool,
    /// Event counts: taken, repeats, batches, gaps (resend asked).
    n_taken: u64,
    repeats: u64,
    batches: u64,
    gaps: u64,
    first_event_at: Option<Instant>,
    last_event_at: Option<Instant>,
}

/// The cloud's MQTT client (persistent session, QoS 1) and its task, which
/// acknowledges events like `hubctl tail --ack`: cumulatively, only without
/// a gap, asking for a resend after a gap.
struct Cloud {
    client: AsyncClient,
    topics: Topics,
    seen: Arc<Mutex<Seen>>,
}

impl Cloud {
    fn start(rt: &tokio::runtime::Runtime, certs: &Certs, port: u16) -> Cloud {
        let topics = Topics::new(TENANT, HUB).unwrap();
        let mut opts = MqttOptions::new("bench-cloud", HOST, port);
        opts.set_keep_alive(Duration::from_secs(10))
            .set_clean_session(false)
            .set_max_packet_size(4 * MAX_PAYLOAD, 2 * MAX_PAYLOAD);
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            certs.rustls_config(Some("cloud")),
        )));
        let _guard = rt.enter();
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        let seen = Arc::new(Mutex::new(Seen::default()));
        // The event loop must never wait on its own request queue (full
        // while a snapshot is being published): subscriptions and acks go
        // through a queue of their own, in order.
        let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Option<pb::Ack>>();
        let (out_client, out_topics) = (client.clone(), topics.clone());
        rt.spawn(async move {
            while let Some(item) = out_rx.recv().await {
                let _ = match item {
                    None => {
                        let filters = Kind::UP.iter().map(|k| {
                            rumqttc::SubscribeFilter::new(out_topics.topic(*k), QoS::AtLeastOnce)
                        });
                        out_client.subscribe_many(filters).await
                    }
                    Some(ack) => {
                        out_client
                            .publish(
                                out_topics.topic(Kind::Ack),
                                QoS::AtLeastOnce,
                                false,
                                ack.encode_to_vec(),
                            )
                            .await
                    }
                };
            }
        });
        let (task_seen, task_topics) = (seen.clone(), topics.clone());
        rt.spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        eprintln!("sync_bench: cloud connected");
                        let _ = out_tx.send(None);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Some(kind) = task_topics.parse(&p.topic) else {
                            continue;
                        };
                        for ack in on_message(&task_seen, kind, &p.payload) {
                            let _ = out_tx.send(Some(ack));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("sync_bench: cloud connection: {e} (retrying)");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Cloud {
            client,
            topics,
            seen,
        }
    }

    fn publish(&self, rt: &tokio::runtime::Runtime, kind: Kind, payload: Vec<u8>) {
        rt.block_on(
            self.client
                .publish(self.topics.topic(kind), QoS::AtLeastOnce, false, payload),
        )
        .expect("queue a publish");
    }

    fn applied_at(&self, revision: u64) -> Option<Instant> {
        let seen = self.seen.lock().unwrap();
        assert!(
            seen.rejected.is_empty(),
            "hub rejected: {:?}",
            seen.rejected
        );
        seen.applied
            .iter()
            .find(|(r, _)| *r == revision)
            .map(|(_, t)| *t)
    }

    fn wait_applied(&self, revision: u64, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = self.applied_at(revision) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "revision {revision} not applied within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Forgets the events seen (a new hub numbers from 1 again).
    fn reset_events(&self) {
        let mut seen = self.seen.lock().unwrap();
        seen.acked = None;
        seen.taken.clear();
        seen.resyncs = 0;
    }

    /// Waits for the hub's request for a snapshot: it is connected and
    /// subscribed (a chunk published earlier would be lost).
    fn wait_resync(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.seen.lock().unwrap().resyncs == 0 {
            assert!(
                Instant::now() < deadline,
                "no resync request within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn acked(&self) -> Option<u64> {
        self.seen.lock().unwrap().acked
    }
}

/// Handles one message from the hub; returns the acks to send.
fn on_message(seen: &Mutex<Seen>, kind: Kind, payload: &[u8]) -> Vec<pb::Ack> {
    let now = Instant::now();
    let mut seen = seen.lock().unwrap();
    match kind {
        Kind::Status => {
            if let Ok(report) = pb::StatusReport::decode(payload) {
                for s in report.statuses {
                    match s.kind() {
                        pb::StatusKind::Applied => seen.applied.push((s.revision, now)),
                        pb::StatusKind::Rejected => seen
                            .rejected
                            .push(format!("{} rev {}: {}", s.topic, s.revision, s.reason)),
                        _ => {}
                    }
                }
            }
            Vec::new()
        }
        Kind::Events => {
            let Ok(batch) = pb::EventBatch::decode(payload) else {
                return Vec::new();
            };
            seen.batches += 1;
            seen.first_event_at.get_or_insert(now);
            seen.last_event_at = Some(now);
            let before = seen.acked;
            let mut gap = false;
            for e in &batch.events {
                match seen.acked {
                    Some(t) if e.seq <= t => seen.repeats += 1,
                    Some(t) if e.seq != t + 1 => {
                        gap = true;
                        break;
                    }
                    _ => {
                        seen.acked = Some(e.seq);
                        seen.n_taken += 1;
                        if seen.record {
                            seen.taken.push(e.seq);
                        }
                    }
                }
            }
            let mut acks = Vec::new();
            if seen.acked > before {
                acks.push(pb::Ack {
                    through_seq: seen.acked.unwrap_or(0),
                    resend: false,
                });
            }
            if gap {
                seen.gaps += 1;
                acks.push(pb::Ack {
                    through_seq: seen.acked.unwrap_or(0),
                    resend: true,
                });
            }
            acks
        }
        Kind::Resync => {
            seen.resyncs += 1;
            Vec::new()
        }
        _ => Vec::new(),
    }
}

// ---- the hub ---------------------------------------------------------------------------

struct Setup {
    rt: tokio::runtime::Runtime,
    certs: Certs,
    broker: Mosquitto,
    // Last: removed after the hub and the broker are gone.
    tmp: TempDir,
}

impl Setup {
    fn new() -> Setup {
        let tmp = TempDir::new("sync-bench");
        let certs = Certs::generate_for(&tmp.path().join("certs"), &[HUB, "cloud"]);
        let mut opts = MosquittoOpts::plain()
            .without_plain()
            .with_tls(&certs)
            .persistence(true)
            .acl(contract_acl(TENANT));
        if env_u64("SYNC_BROKER_NODELAY", 0) == 1 {
            // Mosquitto leaves Nagle's algorithm on by default.
            opts.extra_conf.push_str("set_tcp_nodelay true\n");
        }
        let broker = Mosquitto::start(opts);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Setup {
            rt,
            certs,
            broker,
            tmp,
        }
    }

    /// A `hub run` with a fresh store in `name/`; returns it, its API
    /// address and pid.
    fn hub(&self, name: &str) -> Hub {
        let dir = self.tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let hub_cert = self.certs.client(HUB);
        let key = dir.join("hub.key");
        write_secret(&key, &std::fs::read_to_string(&hub_cert.key).unwrap());
        write_secret(&dir.join("api.key"), API_KEY);
        let config = dir.join("hub.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[site]
id = "scale"
time_zone = "Europe/Berlin"

[storage]
path = "store"

[api]
listen = "127.0.0.1:0"
api_key_file = "api.key"

[mqtt]
url = "mqtts://{HOST}:{port}"
tenant = "{TENANT}"
hub_id = "{HUB}"
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "hub.key"
keepalive_s = 5
"#,
                port = self.broker.tls_port(),
                ca = self.certs.ca.display(),
                cert = hub_cert.cert.display(),
            ),
        )
        .unwrap();
        let (proc_, api) = hub_daemon_with(&hub_release_bin(), &config);
        Hub {
            pid: proc_.id(),
            proc_,
            api,
            dir,
        }
    }

    fn cloud(&self) -> Cloud {
        Cloud::start(&self.rt, &self.certs, self.broker.tls_port())
    }
}

struct Hub {
    proc_: JsonProc,
    pid: u32,
    api: String,
    #[allow(dead_code)]
    dir: PathBuf,
}

impl Hub {
    /// `VmRSS` and `VmHWM` in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn store_mib(&self) -> f64 {
        dir_bytes(&self.dir.join("store")) as f64 / (1 << 20) as f64
    }

    fn stop(self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let _ = self.proc_.close(Duration::from_secs(30));
    }
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

// ---- phases ----------------------------------------------------------------------------

/// The holder of the last card credential, and the door where it is
/// granted.
fn probe_user(spec: Spec) -> (String, String) {
    let c = spec.cards() - 1;
    let u = c % spec.users;
    (format!("u{u}"), format!("d{}", scale::grant_door(u)))
}

/// Publishes `data` as snapshot `revision`; returns the time from the
/// first chunk until APPLIED has arrived and the probe user is granted.
fn load_snapshot(setup: &Setup, cloud: &Cloud, hub: &Hub, spec: Spec, revision: u64) -> Duration {
    let t = Instant::now();
    let data = data_set(spec);
    let chunks: Vec<Vec<u8>> =
        reference::snapshot_chunks(&data, revision, &format!("bench-{revision}"), MAX_PAYLOAD)
            .iter()
            .map(|c| c.encode_to_vec())
            .collect();
    drop(data);
    let bytes: usize = chunks.iter().map(Vec::len).sum();
    println!(
        "  data set of {} credentials: {} chunks, {:.1} MiB encoded (generated in {:.1} s)",
        spec.credentials,
        chunks.len(),
        bytes as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );
    let (user, door) = probe_user(spec);
    let mut api = Api::connect(&hub.api);
    assert!(
        !api.granted(&door, ("id", &user)),
        "granted before the snapshot"
    );
    cloud.wait_resync(Duration::from_secs(30));
    let (rss0, hwm0) = hub.memory_kib();
    let t0 = Instant::now();
    for c in chunks {
        cloud.publish(&setup.rt, Kind::Snapshot, c);
    }
    let published = t0.elapsed();
    let mut granted_at = None;
    let deadline = t0 + Duration::from_secs(600);
    let applied_at = loop {
        if granted_at.is_none() && api.granted(&door, ("id", &user)) {
            granted_at = Some(Instant::now());
        }
        if let Some(a) = cloud.applied_at(revision) {
            break a;
        }
        assert!(Instant::now() < deadline, "snapshot not applied in 600 s");
        std::thread::sleep(Duration::from_millis(5));
    };
    let granted_at = granted_at.unwrap_or_else(|| {
        while !api.granted(&door, ("id", &user)) {
            assert!(Instant::now() < deadline, "probe user never granted");
            std::thread::sleep(Duration::from_millis(1));
        }
        Instant::now()
    });
    let done = applied_at.max(granted_at);
    let (rss1, hwm1) = hub.memory_kib();
    println!(
        "  snapshot rev {revision}: chunks queued in {:.2} s; APPLIED after {:.2} s, granted after {:.2} s => {:.2} s",
        published.as_secs_f64(),
        (applied_at - t0).as_secs_f64(),
        (granted_at - t0).as_secs_f64(),
        (done - t0).as_secs_f64()
    );
    println!(
        "  hub memory: before VmRSS {} MiB (VmHWM {} MiB), after VmRSS {} MiB, peak VmHWM {} MiB; store {:.0} MiB",
        rss0 / 1024,
        hwm0 / 1024,
        rss1 / 1024,
        hwm1 / 1024,
        hub.store_mib()
    );
    done - t0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `samples` revisions after `base`, each upserting one user with a new
/// card; returns the next base revision.
fn change_to_enforce(
    setup: &Setup,
    cloud: &Cloud,
    hub: &Hub,
    spec: Spec,
    base: u64,
    samples: u64,
) -> u64 {
    let mut api = Api::connect(&hub.api);
    let mut latencies = Vec::new();
    let mut applied = Vec::new();
    let (mut polls, mut poll_time) = (0u64, Duration::ZERO);
    let mut rev = base;
    for i in 0..samples {
        let u = (i * 7919 + 13) % spec.users;
        let card = format!("77{:07}", i + base * 1000);
        let door = format!("d{}", scale::grant_door(u));
        let who = ("door_access_id", card.as_str());
        assert!(!api.granted(&door, who), "card {card} granted before");
        let r = pb::Revision {
            base_revision: rev,
            revision: rev + 1,
            changes: reference::upserts(&user_with_card(u, &card)),
        };
        let payload = r.encode_to_vec();
        let t0 = Instant::now();
        cloud.publish(&setup.rt, Kind::Desired, payload);
        loop {
            let p0 = Instant::now();
            let ok = api.granted(&door, who);
            poll_time += p0.elapsed();
            polls += 1;
            if ok {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "card {card} never granted"
            );
        }
        latencies.push(t0.elapsed());
        if (i + 1) % 20 == 0 {
            eprintln!(
                "sync_bench: change {}/{samples} at {} credentials, last {}",
                i + 1,
                spec.credentials,
                ms(t0.elapsed())
            );
        }
        rev += 1;
        let a = cloud.wait_applied(rev, Duration::from_secs(30));
        applied.push(a - t0);
    }
    latencies.sort();
    applied.sort();
    println!(
        "  change to enforce at {} credentials, {} samples: p50 {}, p99 {}, max {}; APPLIED status at the cloud: p50 {}, p99 {}; poll resolution (mean check round trip) {:.0} us",
        spec.credentials,
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap()),
        ms(percentile(&applied, 0.5)),
        ms(percentile(&applied, 0.99)),
        poll_time.as_secs_f64() * 1e6 / polls.max(1) as f64
    );
    rev
}

/// Waits until the cloud has everything and the hub's outbox is empty.
fn wait_drained(cloud: &Cloud, api: &mut Api, through: u64, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if cloud.acked() >= Some(through) && api.first_unacked().is_none() {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "not drained within {timeout:?}: cloud acked {:?}, hub's first unacked {:?}",
            cloud.acked(),
            api.first_unacked()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn backlog(setup: &mut Setup, cloud: &Cloud, hub: &Hub, spec: Spec, n: u64) {
    let mut api = Api::connect(&hub.api);
    let (user, door) = probe_user(spec);
    // Start from an empty outbox: everything so far acknowledged.
    let entry = api.check(&door, ("id", &user), false);
    let first = entry["entry_seq"].as_u64().expect("entry_seq");
    wait_drained(cloud, &mut api, first, Duration::from_secs(60));

    setup.broker.stop();
    let t = Instant::now();
    let mut seqs = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let a = api.check(&door, ("id", &user), false);
        seqs.push(a["entry_seq"].as_u64().expect("entry recorded"));
    }
    let made = t.elapsed();
    let (lo, hi) = (seqs[0], *seqs.last().unwrap());
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    println!(
        "  {n} entries recorded with the broker down in {:.1} s ({:.0}/s), seq {lo}..={hi}; hub store {:.0} MiB",
        made.as_secs_f64(),
        n as f64 / made.as_secs_f64(),
        hub.store_mib()
    );
    {
        let mut seen = cloud.seen.lock().unwrap();
        seen.taken.clear();
        seen.record = true;
        seen.first_event_at = None;
        (seen.repeats, seen.gaps, seen.batches) = (0, 0, 0);
    }
    let t0 = Instant::now();
    setup.broker.start_again();
    let up = t0.elapsed();
    let done = wait_drained(cloud, &mut api, hi, Duration::from_secs(600));
    let seen = {
        let mut s = cloud.seen.lock().unwrap();
        s.record = false;
        (
            std::mem::take(&mut s.taken),
            s.repeats,
            s.gaps,
            s.batches,
            s.first_event_at,
        )
    };
    let (taken, repeats, gaps, batches, first_at) = seen;
    let ours: BTreeSet<u64> = seqs.iter().copied().collect();
    let got: Vec<u64> = taken.iter().copied().filter(|s| ours.contains(s)).collect();
    let in_order = taken.windows(2).all(|w| w[1] == w[0] + 1);
    let unique = got.iter().collect::<BTreeSet<_>>().len() == got.len();
    assert_eq!(got.len(), seqs.len(), "every entry reached the cloud");
    assert!(in_order && unique, "in order, no duplicates");
    let first_at = first_at.unwrap_or(done);
    println!(
        "  backlog of {n}: broker up after {:.2} s; first batch {:.2} s; all acked and outbox empty {:.2} s after the broker start ({:.2} s from the first batch, {:.0} events/s); {} taken in order, none twice; {batches} batches, {repeats} repeats dropped, {gaps} resends asked",
        up.as_secs_f64(),
        (first_at - t0).as_secs_f64(),
        (done - t0).as_secs_f64(),
        (done - first_at).as_secs_f64(),
        n as f64 / (done - first_at).as_secs_f64().max(1e-9),
        got.len()
    );
}

fn sustain(cloud: &Cloud, hub: &Hub, spec: Spec, secs: u64) {
    let (user, door) = probe_user(spec);
    let stop = Arc::new(AtomicBool::new(false));
    let top = Arc::new(AtomicU64::new(0));
    let made = Arc::new(AtomicU64::new(0));
    let full = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, top, made, full) = (stop.clone(), top.clone(), made.clone(), full.clone());
            let (addr, user, door) = (hub.api.clone(), user.clone(), door.clone());
            std::thread::spawn(move || {
                let mut api = Api::connect(&addr);
                while !stop.load(Ordering::Relaxed) {
                    let a = api.check(&door, ("id", &user), false);
                    match a["entry_seq"].as_u64() {
                        Some(s) => {
                            top.fetch_max(s, Ordering::Relaxed);
                            made.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            full.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let mut api = Api::connect(&hub.api);
    let taken0 = cloud.seen.lock().unwrap().n_taken;
    let t0 = Instant::now();
    let mut trend = Vec::new();
    for s in 1..=secs {
        std::thread::sleep((t0 + Duration::from_secs(s)).saturating_duration_since(Instant::now()));
        let depth = match (api.first_unacked(), top.load(Ordering::Relaxed)) {
            (Some(f), t) if t >= f => t - f + 1,
            _ => 0,
        };
        trend.push(depth);
    }
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    let elapsed = t0.elapsed();
    let taken = cloud.seen.lock().unwrap().n_taken - taken0;
    let made = made.load(Ordering::Relaxed);
    let last = top.load(Ordering::Relaxed);
    let done = wait_drained(cloud, &mut api, last, Duration::from_secs(600));
    println!(
        "  sustained {secs} s: {made} entries recorded ({:.0}/s), {taken} events acked by the cloud in that time ({:.0}/s), {} refused (outbox full); outbox depth each second: {trend:?}; drained {:.2} s after the producers stopped",
        made as f64 / elapsed.as_secs_f64(),
        taken as f64 / elapsed.as_secs_f64(),
        full.load(Ordering::Relaxed),
        (done - t0 - elapsed).as_secs_f64()
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("sync_bench: run it with `cargo bench -p e2e --bench sync_bench`");
        return;
    }
    let full = spec(env_u64("SYNC_CREDENTIALS", 1_000_000));
    let small = spec(env_u64("SYNC_SMALL_CREDENTIALS", 10_000));
    let samples = env_u64("SYNC_SAMPLES", 200);
    let backlog_n = env_u64("SYNC_BACKLOG", 100_000);
    let sustain_s = env_u64("SYNC_SUSTAIN_S", 20);
    let phases =
        std::env::var("SYNC_PHASES").unwrap_or_else(|_| "snapshot,change,backlog,sustain".into());
    let on = |p: &str| phases.split(',').any(|x| x.trim() == p);
    println!(
        "sync_bench: full {full:?}, small {small:?}, {samples} samples, backlog {backlog_n}, sustain {sustain_s} s, phases {phases}"
    );
    let bin = hub_release_bin();
    println!("hub binary: {}", bin.display());
    let mut setup = Setup::new();
    let cloud = setup.cloud();

    // Small data set: change-to-enforce, backlog, sustained rate.
    if on("change") || on("backlog") || on("sustain") {
        cloud.reset_events();
        let hub = setup.hub("small");
        println!("[small data set]");
        load_snapshot(&setup, &cloud, &hub, small, 1);
        if on("change") {
            change_to_enforce(&setup, &cloud, &hub, small, 1, samples);
        }
        if on("backlog") {
            backlog(&mut setup, &cloud, &hub, small, backlog_n);
        }
        if on("sustain") {
            sustain(&cloud, &hub, small, sustain_s);
        }
        hub.stop();
    }
    // Full data set: snapshot apply, change-to-enforce.
    if on("snapshot") || on("change") {
        cloud.reset_events();
        let hub = setup.hub("full");
        println!("[full data set]");
        load_snapshot(&setup, &cloud, &hub, full, 1_000);
        if on("change") {
            change_to_enforce(&setup, &cloud, &hub, full, 1_000, samples);
        }
        hub.stop();
    }
}
