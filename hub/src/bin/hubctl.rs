//! `hubctl`: a reference cloud for one hub, over the MQTT contract
//! (docs/mqtt-api.md). Pushes a data set (a JSON data-set file, see
//! docs/dataset-format.md) as a snapshot or as a revision, sends commands
//! and waits for their result, and tails what the hub publishes
//! (events, statuses, presence, health, resync requests, results) while
//! acknowledging events. Output: JSON lines on stdout; logs on stderr.
//!
//! Exit codes: 0 done (applied, command OK), 1 the hub rejected it or the
//! command did not succeed, 2 usage, connection or timeout errors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use hub::access::DataSet;
use hub::cloud::reference;
use hub_proto::v1 as pb;
use hub_proto::v1::Message;
use hub_sync::driver::{tls_config, TlsFiles};
use hub_sync::{Kind, Topics, MAX_PAYLOAD};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// The reference cloud for one hub (JSON lines on stdout).
#[derive(Debug, Parser)]
#[command(name = "hubctl", version)]
struct Cli {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(long, default_value_t = 8883)]
    port: u16,
    /// CA certificate (PEM) of the broker; with --cert and --key: mTLS.
    /// Without all three: plain MQTT.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The cloud's client certificate (PEM).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// The cloud's private key (PEM).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Tenant id.
    #[arg(long)]
    tenant: String,
    /// Hub id.
    #[arg(long)]
    hub: String,
    /// MQTT client id (default: `hubctl-PID`).
    #[arg(long)]
    client_id: Option<String>,
    /// Keep the MQTT session (clean session off), for `tail`.
    #[arg(long)]
    persistent: bool,
    /// How long to wait for the hub's answer, seconds.
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
    /// What to do.
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Push a data-set file as a full snapshot, wait until applied.
    Snapshot {
        /// The data-set JSON file.
        #[arg(long)]
        file: PathBuf,
        /// Its revision.
        #[arg(long)]
        revision: u64,
        /// Snapshot id (default: `snap-REVISION-PID`).
        #[arg(long)]
        snapshot_id: Option<String>,
        /// Largest chunk, bytes.
        #[arg(long, default_value_t = MAX_PAYLOAD)]
        chunk_bytes: usize,
    },
    /// Push a revision, wait until applied: the diff from --previous to
    /// --file, and/or --upsert files and --delete keys.
    Revision {
        /// The hub's current revision.
        #[arg(long)]
        base: u64,
        /// The new revision.
        #[arg(long)]
        revision: u64,
        /// The data set the hub has now (with --file: send the diff).
        #[arg(long, requires = "file")]
        previous: Option<PathBuf>,
        /// The data set wanted (with --previous).
        #[arg(long, requires = "previous")]
        file: Option<PathBuf>,
        /// A data-set file whose records (all but the site) are upserted.
        #[arg(long)]
        upsert: Vec<PathBuf>,
        /// A record to delete, `kind:id` (kinds: door, user, credential,
        /// access_code, schedule, holiday, access, facility, event, member;
        /// a holiday's id is `YYYY-MM-DD/name`).
        #[arg(long)]
        delete: Vec<String>,
    },
    /// Send a command and wait for its result.
    Command {
        /// Correlation id (default: `cmd-PID-MILLISECONDS`).
        #[arg(long)]
        correlation_id: Option<String>,
        /// The command.
        #[command(subcommand)]
        action: Action,
    },
    /// Print what the hub publishes; with --ack, acknowledge events.
    Tail {
        /// Acknowledge events (cumulative) as they arrive.
        #[arg(long)]
        ack: bool,
        /// Stop after this many seconds (default: run until killed).
        #[arg(long)]
        for_s: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Momentary unlock.
    Unlock {
        /// Door id.
        #[arg(long)]
        door: String,
        /// Duration (0: the door's default).
        #[arg(long, default_value_t = 0)]
        duration_ms: u32,
    },
    /// Lockdown on or off, of a door or (without --door) the site.
    Lockdown {
        /// Door id.
        #[arg(long)]
        door: Option<String>,
        /// Turn it off instead of on.
        #[arg(long)]
        off: bool,
    },
    /// Door mode.
    DoorMode {
        /// Door id.
        #[arg(long)]
        door: String,
        /// The mode.
        #[arg(long, value_enum)]
        mode: Mode,
    },
    /// Reader LED, buzzer, text.
    Reader {
        /// Reader id.
        #[arg(long)]
        reader: String,
        /// LED colour.
        #[arg(long, value_enum)]
        led: Option<Led>,
        /// Beeps.
        #[arg(long, default_value_t = 0)]
        beeps: u32,
        /// Display text.
        #[arg(long, default_value = "")]
        text: String,
        /// How long, ms.
        #[arg(long, default_value_t = 0)]
        duration_ms: u32,
    },
    /// Ask the hub to request a full snapshot.
    Resync,
    /// Ask the hub for its health and statuses.
    Status,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Normal,
    Unlocked,
    Locked,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Led {
    Off,
    Red,
    Green,
    Amber,
    Blue,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hub::init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hubctl: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("hubctl: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn print(v: Value) {
    println!("{v}");
}

fn load(path: &PathBuf) -> anyhow::Result<DataSet> {
    Ok(hub::dataset_file::load(path)?.into_data())
}

/// A connection: requests go through `client`, incoming publishes arrive
/// on `rx` (the event loop runs in its own task).
struct Conn {
    client: AsyncClient,
    rx: mpsc::Receiver<Result<(String, Vec<u8>), String>>,
    topics: Topics,
    timeout: Duration,
}

async fn connect(cli: &Cli) -> anyhow::Result<Conn> {
    let topics = Topics::new(&cli.tenant, &cli.hub)?;
    let id = cli
        .client_id
        .clone()
        .unwrap_or_else(|| format!("hubctl-{}", std::process::id()));
    let mut opts = MqttOptions::new(id, cli.host.clone(), cli.port);
    opts.set_keep_alive(Duration::from_secs(10))
        .set_clean_session(!cli.persistent)
        .set_max_packet_size(4 * MAX_PAYLOAD, 2 * MAX_PAYLOAD);
    match (&cli.ca, &cli.cert, &cli.key) {
        (Some(ca), Some(cert), Some(key)) => {
            let tls = tls_config(&TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            })?;
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        }
        (None, None, None) => {}
        _ => bail!("--ca, --cert and --key go together"),
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let (tx, mut rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            let item = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => Ok((String::new(), Vec::new())),
                Ok(Event::Incoming(Packet::Publish(p))) => Ok((p.topic, p.payload.to_vec())),
                Ok(_) => continue,
                Err(e) => Err(e.to_string()),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() {
                return;
            }
            if failed {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let timeout = Duration::from_secs(cli.timeout_s);
    // The first item is the CONNACK (an empty topic) or an error.
    match tokio::time::timeout(timeout, rx.recv()).await {
        Ok(Some(Ok(_))) => {}
        Ok(Some(Err(e))) => bail!("cannot connect to {}:{}: {e}", cli.host, cli.port),
        _ => bail!("no answer from {}:{}", cli.host, cli.port),
    }
    for kind in Kind::UP {
        client
            .subscribe(topics.topic(kind), QoS::AtLeastOnce)
            .await?;
    }
    Ok(Conn {
        client,
        rx,
        topics,
        timeout,
    })
}

impl Conn {
    async fn send(&self, kind: Kind, payload: Vec<u8>) -> anyhow::Result<()> {
        if payload.len() > MAX_PAYLOAD {
            bail!(
                "a {kind} message of {} bytes is over the {MAX_PAYLOAD}-byte limit",
                payload.len()
            );
        }
        self.client
            .publish(self.topics.topic(kind), QoS::AtLeastOnce, false, payload)
            .await?;
        Ok(())
    }

    /// Next message from the hub, printed as a JSON line; `None` after the
    /// deadline.
    async fn next(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<Option<(Kind, Vec<u8>)>> {
        loop {
            let item = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Ok(None),
                Ok(None) => bail!("the MQTT connection task ended"),
                Ok(Some(item)) => item,
            };
            let (topic, payload) = match item {
                Ok(m) if m.0.is_empty() => continue,
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("MQTT connection: {e} (retrying)");
                    continue;
                }
            };
            let Some(kind) = self.topics.parse(&topic) else {
                continue;
            };
            print(describe(kind, &payload));
            return Ok(Some((kind, payload)));
        }
    }

    /// Waits for APPLIED `revision` (true) or a rejection of it (false).
    async fn wait_applied(&mut self, revision: u64, topic: Kind) -> anyhow::Result<bool> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        while let Some((kind, payload)) = self.next(deadline).await? {
            if kind != Kind::Status {
                continue;
            }
            let Ok(report) = pb::StatusReport::decode(&payload[..]) else {
                continue;
            };
            for s in report.statuses {
                if s.kind() == pb::StatusKind::Applied && s.revision == revision {
                    return Ok(true);
                }
                if s.kind() == pb::StatusKind::Rejected
                    && s.topic == topic.level()
                    && (s.revision == revision || s.revision == 0)
                {
                    return Ok(false);
                }
            }
        }
        Err(anyhow!("no answer from the hub within {:?}", self.timeout))
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let mut conn = connect(&cli).await?;
    match &cli.command {
        Cmd::Snapshot {
            file,
            revision,
            snapshot_id,
            chunk_bytes,
        } => {
            let data = load(file)?;
            let id = snapshot_id
                .clone()
                .unwrap_or_else(|| format!("snap-{revision}-{}", std::process::id()));
            let chunks =
                reference::snapshot_chunks(&data, *revision, &id, (*chunk_bytes).min(MAX_PAYLOAD));
            print(
                json!({"sent": "snapshot", "snapshot_id": id, "revision": revision, "chunks": chunks.len()}),
            );
            for c in chunks {
                conn.send(Kind::Snapshot, c.encode_to_vec()).await?;
            }
            conn.wait_applied(*revision, Kind::Snapshot).await
        }
        Cmd::Revision {
            base,
            revision,
            previous,
            file,
            upsert,
            delete,
        } => {
            let mut changes = Vec::new();
            if let (Some(previous), Some(file)) = (previous, file) {
                changes.extend(reference::diff(&load(previous)?, &load(file)?));
            }
            for f in upsert {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                let data = hub::dataset_file::parse(f, &text)?;
                changes.extend(reference::upserts(&data));
            }
            for d in delete {
                changes.push(pb::Change {
                    op: Some(pb::change::Op::Delete(parse_key(d)?)),
                });
            }
            let r = pb::Revision {
                base_revision: *base,
                revision: *revision,
                changes,
            };
            print(
                json!({"sent": "revision", "base_revision": base, "revision": revision, "changes": r.changes.len()}),
            );
            conn.send(Kind::Desired, r.encode_to_vec()).await?;
            conn.wait_applied(*revision, Kind::Desired).await
        }
        Cmd::Command {
            correlation_id,
            action,
        } => {
            let correlation_id = correlation_id.clone().unwrap_or_else(|| {
                format!(
                    "cmd-{}-{}",
                    std::process::id(),
                    jiff::Timestamp::now().as_millisecond()
                )
            });
            let cmd = pb::Command {
                correlation_id: correlation_id.clone(),
                action: Some(to_action(action)),
            };
            conn.send(Kind::Cmd, cmd.encode_to_vec()).await?;
            let deadline = tokio::time::Instant::now() + conn.timeout;
            while let Some((kind, payload)) = conn.next(deadline).await? {
                if kind != Kind::Result {
                    continue;
                }
                if let Ok(r) = pb::CommandResult::decode(&payload[..]) {
                    if r.correlation_id == correlation_id {
                        return Ok(r.code() == pb::ResultCode::Ok);
                    }
                }
            }
            Err(anyhow!(
                "no result for {correlation_id} within {:?}",
                conn.timeout
            ))
        }
        Cmd::Tail { ack, for_s } => {
            let deadline = tokio::time::Instant::now()
                + for_s.map_or(Duration::from_secs(100 * 365 * 86_400), Duration::from_secs);
            // Acknowledge only what we hold without a gap since the first
            // event we saw; ask for everything unacknowledged at start and
            // after a gap (events sent while nobody listened are gone).
            let mut acked: Option<u64> = None;
            if *ack {
                conn.send(Kind::Ack, resend_from(0)).await?;
                print(json!({"sent": "ack", "through_seq": 0, "resend": true}));
            }
            while let Some((kind, payload)) = conn.next(deadline).await? {
                if !*ack || kind != Kind::Events {
                    continue;
                }
                let Ok(batch) = pb::EventBatch::decode(&payload[..]) else {
                    continue;
                };
                let mut top = acked;
                for e in &batch.events {
                    match top {
                        Some(t) if e.seq <= t => {} // a repeat
                        Some(t) if e.seq == t + 1 => top = Some(e.seq),
                        None => top = Some(e.seq),
                        Some(_) => break, // a gap
                    }
                }
                let gap = batch
                    .events
                    .last()
                    .is_some_and(|e| top.is_none_or(|t| e.seq > t));
                if top > acked {
                    acked = top;
                    let through_seq = top.unwrap_or(0);
                    conn.send(
                        Kind::Ack,
                        pb::Ack {
                            through_seq,
                            resend: false,
                        }
                        .encode_to_vec(),
                    )
                    .await?;
                    print(json!({"sent": "ack", "through_seq": through_seq}));
                }
                if gap {
                    let through_seq = acked.unwrap_or(0);
                    conn.send(Kind::Ack, resend_from(through_seq)).await?;
                    print(json!({"sent": "ack", "through_seq": through_seq, "resend": true}));
                }
            }
            Ok(true)
        }
    }
}

/// An ack asking the hub to send everything after `through_seq` again.
fn resend_from(through_seq: u64) -> Vec<u8> {
    pb::Ack {
        through_seq,
        resend: true,
    }
    .encode_to_vec()
}

fn parse_key(text: &str) -> anyhow::Result<pb::EntityKey> {
    use pb::EntityKind as K;
    let (kind, id) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("--delete {text:?}: expected kind:id"))?;
    let kind = match kind {
        "door" => K::Door,
        "user" => K::User,
        "credential" => K::Credential,
        "access_code" => K::AccessCode,
        "schedule" => K::Schedule,
        "holiday" => K::Holiday,
        "access" => K::Access,
        "facility" => K::Facility,
        "event" => K::Event,
        "member" => K::Member,
        other => bail!("--delete: unknown kind {other:?}"),
    };
    if id.is_empty() {
        bail!("--delete {text:?}: empty id");
    }
    Ok(pb::EntityKey {
        kind: kind as i32,
        id: id.to_owned(),
    })
}

fn to_action(a: &Action) -> pb::command::Action {
    use pb::command::Action as A;
    match a {
        Action::Unlock { door, duration_ms } => A::MomentaryUnlock(pb::MomentaryUnlock {
            door: door.clone(),
            duration_ms: *duration_ms,
        }),
        Action::Lockdown { door, off } => A::Lockdown(pb::Lockdown {
            door: door.clone().unwrap_or_default(),
            on: !off,
        }),
        Action::DoorMode { door, mode } => A::DoorMode(pb::DoorMode {
            door: door.clone(),
            mode: match mode {
                Mode::Normal => pb::DoorModeKind::Normal,
                Mode::Unlocked => pb::DoorModeKind::Unlocked,
                Mode::Locked => pb::DoorModeKind::Locked,
            } as i32,
        }),
        Action::Reader {
            reader,
            led,
            beeps,
            text,
            duration_ms,
        } => A::ReaderOutput(pb::ReaderOutput {
            reader: reader.clone(),
            led: led.map_or(pb::LedColor::Unspecified, |l| match l {
                Led::Off => pb::LedColor::Off,
                Led::Red => pb::LedColor::Red,
                Led::Green => pb::LedColor::Green,
                Led::Amber => pb::LedColor::Amber,
                Led::Blue => pb::LedColor::Blue,
            }) as i32,
            beeps: *beeps,
            text: text.clone(),
            duration_ms: *duration_ms,
        }),
        Action::Resync => A::Resync(pb::Resync {}),
        Action::Status => A::StatusRequest(pb::StatusRequest {}),
    }
}

fn time(t: Option<pb::Time>) -> Value {
    t.and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
        .map_or(Value::Null, |t| Value::String(t.to_string()))
}

fn key(k: Option<&pb::EntityKey>) -> Value {
    k.map_or(
        Value::Null,
        |k| json!({"kind": k.kind().as_str_name(), "id": k.id}),
    )
}

/// One JSON line for a message from the hub.
fn describe(kind: Kind, p: &[u8]) -> Value {
    let bad = |e: prost::DecodeError| json!({"topic": kind.level(), "error": e.to_string()});
    match kind {
        Kind::Events => match pb::EventBatch::decode(p) {
            Ok(b) => {
                json!({"topic": "events", "hub_id": b.hub_id, "events": b.events.iter().map(|e| json!({
                "seq": e.seq, "time": time(e.time), "kind": e.kind().as_str_name(), "door": e.door,
                "reader": e.reader, "credential": e.credential_masked, "user": e.user,
                "granted": e.granted, "reason": e.reason().as_str_name(), "message": e.message,
                "reason_key": e.reason_key, "method": e.method,
            })).collect::<Vec<_>>()})
            }
            Err(e) => bad(e),
        },
        Kind::Status => match pb::StatusReport::decode(p) {
            Ok(r) => {
                json!({"topic": "status", "hub_id": r.hub_id, "time": time(r.time), "statuses": r.statuses.iter().map(|s| json!({
                "kind": s.kind().as_str_name(), "key": key(s.key.as_ref()), "reason": s.reason,
                "error": s.error().as_str_name(), "revision": s.revision, "topic": s.topic,
            })).collect::<Vec<_>>()})
            }
            Err(e) => bad(e),
        },
        Kind::Resync => match pb::ResyncRequest::decode(p) {
            Ok(r) => {
                json!({"topic": "resync", "hub_id": r.hub_id, "have_revision": r.have_revision, "reason": r.reason})
            }
            Err(e) => bad(e),
        },
        Kind::Result => match pb::CommandResult::decode(p) {
            Ok(r) => {
                json!({"topic": "result", "hub_id": r.hub_id, "correlation_id": r.correlation_id,
                "code": r.code().as_str_name(), "message": r.message, "time": time(r.time)})
            }
            Err(e) => bad(e),
        },
        Kind::Presence => match pb::Presence::decode(p) {
            Ok(r) => {
                json!({"topic": "presence", "hub_id": r.hub_id, "state": r.state().as_str_name(),
                "since": time(r.since), "version": r.version})
            }
            Err(e) => bad(e),
        },
        Kind::Health => match pb::Health::decode(p) {
            Ok(h) => json!({"topic": "health", "hub_id": h.hub_id, "clock": time(h.clock),
                "revision": h.revision, "outbox_depth": h.outbox_depth,
                "readers": h.readers.iter().map(|r| json!({"id": r.id, "online": r.online, "secure_channel": r.secure_channel})).collect::<Vec<_>>(),
                "doors": h.doors.iter().map(|d| json!({"id": d.id, "open": d.open, "unlocked": d.unlocked, "lockdown": d.lockdown})).collect::<Vec<_>>(),
                "alarms": h.alarms,
                "cache": h.cache.map(|c| json!({"doors": c.doors, "users": c.users, "credentials": c.credentials,
                    "access_codes": c.access_codes, "schedules": c.schedules, "holidays": c.holidays,
                    "accesses": c.accesses, "facilities": c.facilities, "events": c.events, "members": c.members})),
            }),
            Err(e) => bad(e),
        },
        _ => json!({"topic": kind.level(), "bytes": p.len()}),
    }
}
