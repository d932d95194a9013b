//! The real `hub run` process synced by the reference cloud (`hubctl`)
//! through a real Mosquitto with mutual TLS and the contract's per-hub ACL.
//!
//! The hub starts with an empty store and no data-set file: every check is
//! denied. `hubctl snapshot` pushes the example data set; the hub's HTTP
//! check then grants Ann at the front door, and that entry goes up to the
//! cloud (`hubctl tail --ack`) with its sequence number and masked fields;
//! once acknowledged it leaves the hub's outbox. A revision deleting Ann is
//! enforced at once; SIGTERM stops the hub cleanly.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::broker::TempDir;
use e2e::cloud::{events_of, Cloud};
use e2e::{http, hub_daemon, hub_events, repo_root, write_secret};
use serde_json::{json, Value};

const TENANT: &str = "acme";
const HUB: &str = "hub-1";
const API_KEY: &str = "cloud-test-key";

fn write_config(dir: &Path, cloud: &Cloud) -> std::path::PathBuf {
    write_config_with(dir, cloud, "")
}

/// The config with `extra` TOML (buses, readers, doors, web) appended.
fn write_config_with(dir: &Path, cloud: &Cloud, extra: &str) -> std::path::PathBuf {
    write_secret(&dir.join("api.key"), API_KEY);
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[site]
id = "demo-site"
time_zone = "Europe/Berlin"

[storage]
path = "store"

[api]
listen = "127.0.0.1:0"
api_key_file = "api.key"
{}{extra}"#,
            cloud.mqtt_section(dir)
        ),
    )
    .unwrap();
    config
}

fn check(api: &str, user: &str) -> Value {
    let body = json!({"door_id": "front", "id": user});
    let (status, answer) = http(api, "POST", "/api/v1/access/check", API_KEY, Some(&body))
        .expect("POST /api/v1/access/check");
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Polls `f` until it holds (the hub applies data asynchronously).
fn eventually(what: &str, f: impl FnMut() -> bool) {
    e2e::eventually(what, Duration::from_secs(20), f);
}

#[test]
fn hub_process_synced_by_the_reference_cloud_over_mtls() {
    let tmp = TempDir::new("hub-cloud");
    let (_broker, cloud) = Cloud::start(tmp.path(), TENANT, HUB);
    let config = write_config(tmp.path(), &cloud);
    let (hub, api) = hub_daemon(&config);

    // No data yet: denied.
    assert_eq!(check(&api, "201")["success"], false);

    let site = repo_root().join("hub/examples/data/site.json");
    let site = site.to_str().unwrap();
    let out = cloud.run(&["snapshot", "--file", site, "--revision", "1"]);
    assert_eq!(out.code, Some(0), "{out:?}");

    // The snapshot is in force in the running hub.
    eventually("the snapshot enforced", || {
        check(&api, "201")["success"] == true
    });
    let granted = check(&api, "201");
    assert_eq!(granted["user"]["id"], "201", "{granted}");
    let seq = granted["entry_seq"].as_u64().expect("entry_seq");

    // The entry reaches the cloud, in order, and is acknowledged.
    let out = cloud.run(&["tail", "--ack", "--for-s", "4"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines = out.lines;
    let events = events_of(&lines);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    let entry = events
        .iter()
        .find(|e| e["seq"] == seq)
        .unwrap_or_else(|| panic!("entry {seq} not sent: {lines:?}"));
    assert_eq!(entry["door"], "front", "{entry}");
    assert_eq!(entry["granted"], true, "{entry}");
    assert_eq!(entry["user"], "201", "{entry}");
    assert!(
        lines.iter().any(|l| l["sent"] == "ack"),
        "hubctl acknowledged: {lines:?}"
    );
    // Acknowledged events leave the hub's outbox.
    eventually("the outbox emptied up to the ack", || {
        hub_events(&api, API_KEY)
            .iter()
            .all(|e| e["seq"].as_u64().unwrap() > seq)
    });

    // A revision deleting Ann is enforced by the running hub.
    let out = cloud.revision(1, 2, &["user:201"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    eventually("the deletion enforced", || {
        check(&api, "201")["success"] == false
    });

    // SIGTERM: a clean stop.
    let exit = hub.terminate(Duration::from_secs(20)).expect("hub exited");
    assert!(exit.success(), "{exit:?}");
}

/// `hubctl snapshot` of the example data set as revision 1, then waits
/// until the hub grants Ann (user 201) at the front door.
fn snapshot_enforced(cloud: &Cloud, api: &str) {
    let site = repo_root().join("hub/examples/data/site.json");
    let (code, lines, err) = hubctl(
        cloud,
        &[
            "snapshot",
            "--file",
            site.to_str().unwrap(),
            "--revision",
            "1",
        ],
    );
    assert_eq!(code, Some(0), "{lines:?} {err}");
    eventually("the snapshot enforced", || {
        check(api, "201")["success"] == true
    });
}

/// `hubctl ARGS` through the test's cloud: (exit code, JSON lines, log).
fn hubctl(cloud: &Cloud, args: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let out = cloud.run(args);
    (out.code, out.lines, out.stderr)
}

/// One door on a simulated bus (a virtual reader, no serial port).
const SIM_DOOR: &str = r#"
[[bus]]
name = "sim"
port = "sim:"

[[reader]]
name = "front-in"
bus = "sim"
address = 1
security = "clear"

[[door]]
id = "front"
entry_reader = "front-in"
strike = { reader = "front-in", output = 0 }
pulse_s = 3
"#;

/// The result line of a `hubctl command` run.
fn result_of(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|l| l["topic"] == "result")
        .unwrap_or_else(|| panic!("no result: {lines:?}"))
}

fn stop(hub: e2e::JsonProc) {
    let status = Command::new("kill")
        .args(["-TERM", &hub.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = hub.close(Duration::from_secs(20)).expect("hub exited");
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn cloud_commands_reach_the_doors_once_and_lockdown_survives_a_restart() {
    let tmp = TempDir::new("hub-cloud-cmd");
    let (_broker, cloud) = Cloud::start(tmp.path(), TENANT, HUB);
    let config = write_config_with(tmp.path(), &cloud, SIM_DOOR);
    let (hub, api) = hub_daemon(&config);
    snapshot_enforced(&cloud, &api);

    // Momentary unlock: OK, carried out by the site.
    let unlock = [
        "command",
        "--correlation-id",
        "unlock-1",
        "unlock",
        "--door",
        "front",
    ];
    let (code, lines, err) = hubctl(&cloud, &unlock);
    assert_eq!(code, Some(0), "{lines:?} {err}");
    let r = result_of(&lines);
    assert_eq!(r["code"], "RESULT_CODE_OK", "{r}");
    assert_eq!(r["correlation_id"], "unlock-1");
    // QoS 1 may deliver it again: the same answer, not a second unlock.
    let (code, again, err) = hubctl(&cloud, &unlock);
    assert_eq!(code, Some(0), "{again:?} {err}");
    assert_eq!(result_of(&again)["message"], r["message"]);

    // An unknown door: refused, nothing done.
    let (code, lines, _) = hubctl(
        &cloud,
        &[
            "command",
            "--correlation-id",
            "unlock-2",
            "unlock",
            "--door",
            "garage",
        ],
    );
    assert_eq!(code, Some(1));
    assert_eq!(result_of(&lines)["code"], "RESULT_CODE_UNKNOWN_TARGET");

    // The unlock reached the cloud as an action event naming the cloud and
    // the correlation id, once.
    let (code, lines, err) = hubctl(&cloud, &["tail", "--ack", "--for-s", "4"]);
    assert_eq!(code, Some(0), "{err}");
    let actions: Vec<&Value> = lines
        .iter()
        .filter(|l| l["topic"] == "events")
        .flat_map(|l| l["events"].as_array().unwrap())
        .filter(|e| e["kind"] == "EVENT_KIND_ACTION")
        .collect();
    let unlocks: Vec<&&Value> = actions
        .iter()
        .filter(|e| e["message"].as_str().unwrap().contains("unlock-1"))
        .collect();
    assert_eq!(unlocks.len(), 1, "one unlock event: {actions:?}");
    let e = unlocks[0];
    assert_eq!(e["door"], "front", "{e}");
    assert_eq!(e["reason_key"], "unlock", "{e}");
    assert!(e["message"].as_str().unwrap().contains("cloud"), "{e}");

    // Reader output on the (virtual) reader once it is online; an unknown
    // reader is refused.
    let led = |id: &str, reader: &str| {
        hubctl(
            &cloud,
            &[
                "command",
                "--correlation-id",
                id,
                "reader",
                "--reader",
                reader,
                "--led",
                "red",
                "--beeps",
                "1",
            ],
        )
    };
    let mut n = 0;
    eventually("reader output OK", || {
        n += 1;
        led(&format!("led-{n}"), "front-in").0 == Some(0)
    });
    let (code, lines, _) = led("led-x", "back-in");
    assert_eq!(code, Some(1));
    assert_eq!(result_of(&lines)["code"], "RESULT_CODE_UNKNOWN_TARGET");
    // Door mode unlocked: health shows the strike released; normal again.
    let mode = |id: &str, mode: &str| {
        hubctl(
            &cloud,
            &[
                "command",
                "--correlation-id",
                id,
                "door-mode",
                "--door",
                "front",
                "--mode",
                mode,
            ],
        )
    };
    let (code, lines, err) = mode("mode-1", "unlocked");
    assert_eq!(code, Some(0), "{lines:?} {err}");
    let (_, lines, _) = hubctl(
        &cloud,
        &["command", "--correlation-id", "status-0", "status"],
    );
    let health = lines.iter().rev().find(|l| l["topic"] == "health").unwrap();
    assert_eq!(health["doors"][0]["unlocked"], true, "{health}");
    let (code, lines, err) = mode("mode-2", "normal");
    assert_eq!(code, Some(0), "{lines:?} {err}");

    // Site lockdown: Ann is refused at once, with the lockdown reason.
    let (code, lines, err) = hubctl(
        &cloud,
        &["command", "--correlation-id", "lock-1", "lockdown"],
    );
    assert_eq!(code, Some(0), "{lines:?} {err}");
    let denied = check(&api, "201");
    assert_eq!(denied["success"], false, "{denied}");
    assert_eq!(denied["reason"], "site_lockdown", "{denied}");
    // In lockdown a momentary unlock fails: tried, not done.
    let (code, lines, _) = hubctl(
        &cloud,
        &[
            "command",
            "--correlation-id",
            "unlock-3",
            "unlock",
            "--door",
            "front",
        ],
    );
    assert_eq!(code, Some(1));
    assert_eq!(result_of(&lines)["code"], "RESULT_CODE_FAILED");

    // Health shows the door in lockdown and the reader.
    let (code, lines, err) = hubctl(
        &cloud,
        &["command", "--correlation-id", "status-1", "status"],
    );
    assert_eq!(code, Some(0), "{lines:?} {err}");
    // The last one: the first may be the retained one from the connection.
    let health = lines
        .iter()
        .rev()
        .find(|l| l["topic"] == "health")
        .unwrap_or_else(|| panic!("no health: {lines:?}"));
    let doors = health["doors"].as_array().unwrap();
    assert_eq!(doors.len(), 1, "{health}");
    assert_eq!(doors[0]["id"], "front");
    assert_eq!(doors[0]["lockdown"], true, "{health}");
    assert_eq!(health["readers"][0]["id"], "front-in", "{health}");

    // The lockdown survives a restart.
    stop(hub);
    let (hub, api) = hub_daemon(&config);
    let denied = check(&api, "201");
    assert_eq!(denied["reason"], "site_lockdown", "{denied}");
    // Lifted: Ann gets in again; then a door lockdown names the door.
    let (code, lines, err) = hubctl(
        &cloud,
        &["command", "--correlation-id", "lock-2", "lockdown", "--off"],
    );
    assert_eq!(code, Some(0), "{lines:?} {err}");
    assert_eq!(check(&api, "201")["success"], true);
    let (code, lines, err) = hubctl(
        &cloud,
        &[
            "command",
            "--correlation-id",
            "lock-3",
            "lockdown",
            "--door",
            "front",
        ],
    );
    assert_eq!(code, Some(0), "{lines:?} {err}");
    assert_eq!(check(&api, "201")["reason"], "door_lockdown");
    stop(hub);
}

/// The technician's page on its own listener (the hash of "pw").
const WEB: &str = r#"
[web]
listen = "127.0.0.1:0"
user = "admin"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$rN1/KvHYctnDCl0Em5fDGg$VhOMKcpGHmFYxzAqxVtgUiZGSTe9nre8dUp61U/1OG0"
"#;

/// `hub run` that reports both listeners: (process, api, web).
fn hub_with_web(config: &Path) -> (e2e::JsonProc, String, String) {
    let mut cmd = Command::new(e2e::hub_bin());
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn");
    let mut p = e2e::JsonProc::spawn("hub-run", cmd);
    let ready = p.wait_for("ready line", Duration::from_secs(30), |v| {
        e2e::is(v, "event", json!("ready"))
    });
    let addr = |k: &str| ready[k].as_str().unwrap().to_owned();
    let (api, web) = (addr("api"), addr("web"));
    (p, api, web)
}

/// One sample of the hub's `/metrics`.
fn metric(web: &str, series: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(web).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn sync_state_and_the_outbox_alarm_are_shown_and_sent() {
    let tmp = TempDir::new("hub-cloud-outbox");
    let (_broker, cloud) = Cloud::start(tmp.path(), TENANT, HUB);
    let config = write_config_with(tmp.path(), &cloud, WEB);
    // The smallest outbox bound: the alarm level is 80 % of 64 KiB.
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "path = \"store\"",
        "path = \"store\"\noutbox_alarm_bytes = 65536",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let (hub, api, web) = hub_with_web(&config);

    // The page's sync state is the driver's: connected, with a last contact.
    eventually("connected on /metrics", || {
        metric(&web, "hub_sync_connected") == Some(1.0)
    });
    let contact = metric(&web, "hub_sync_last_contact_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - contact).abs() < 60.0, "{contact} vs {now}");
    assert_eq!(metric(&web, "hub_outbox_alarm"), Some(0.0));

    snapshot_enforced(&cloud, &api);

    // Nobody acknowledges: entries pile up past the alarm level. Paced so
    // the page (refreshed each second) sees the alarm long before the hard
    // limit (twice the bound) refuses entries.
    let mut entries = 0;
    while metric(&web, "hub_outbox_alarm") != Some(1.0) {
        for _ in 0..10 {
            check(&api, "201");
            std::thread::sleep(Duration::from_millis(10));
        }
        entries += 10;
        assert!(entries < 5000, "no outbox alarm after {entries} entries");
    }
    let raised: Vec<Value> = hub_events(&api, API_KEY)
        .into_iter()
        .filter(|e| e["reason"] == "outbox_high")
        .collect();
    assert_eq!(raised.len(), 1, "raised once: {raised:?}");
    assert_eq!(raised[0]["kind"], "alarm_raised");
    // Still stored past the alarm: the entries keep their numbers.
    let more = check(&api, "201");
    assert!(more["entry_seq"].as_u64().is_some(), "{more}");
    // Health names it.
    let (code, lines, err) = hubctl(&cloud, &["command", "--correlation-id", "st-1", "status"]);
    assert_eq!(code, Some(0), "{lines:?} {err}");
    let health = lines
        .iter()
        .rev()
        .find(|l| l["topic"] == "health")
        .unwrap_or_else(|| panic!("no health: {lines:?}"));
    assert!(
        health["alarms"]
            .as_array()
            .unwrap()
            .contains(&json!("outbox_high")),
        "{health}"
    );

    // The cloud takes everything: the alarm clears, once, and the cloud
    // gets both edges (once each, by seq).
    let mut alarms = std::collections::BTreeMap::new();
    let mut tail = |secs: &str| {
        let (code, lines, err) = hubctl(&cloud, &["tail", "--ack", "--for-s", secs]);
        assert_eq!(code, Some(0), "{err}");
        for e in lines
            .iter()
            .filter(|l| l["topic"] == "events")
            .flat_map(|l| l["events"].as_array().unwrap())
            .filter(|e| e["kind"] == "EVENT_KIND_ALARM")
        {
            alarms.insert(
                e["seq"].as_u64().unwrap(),
                e["reason_key"].as_str().unwrap().to_owned(),
            );
        }
    };
    tail("8");
    eventually("the alarm cleared", || {
        metric(&web, "hub_outbox_alarm") == Some(0.0)
    });
    tail("3");
    let keys: Vec<&str> = alarms.values().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec!["outbox_high:raised", "outbox_high:cleared"],
        "{alarms:?}"
    );
    stop(hub);
}

#[test]
fn the_demo_given_a_broker_url_syncs_as_well() {
    // `hub demo --mqtt URL`: the README's demo, its cards going up to a
    // cloud through a (plain, local) broker.
    let broker = e2e::broker::Mosquitto::start(e2e::broker::MosquittoOpts::plain());
    let port = broker.plain_port().to_string();
    let mut cmd = Command::new(e2e::hub_bin());
    cmd.args(["demo", "--listen", "127.0.0.1:0", "--card-every", "1"])
        .args(["--mqtt", &format!("mqtt://127.0.0.1:{port}")])
        .args(["--tenant", TENANT, "--hub-id", "demo-hub"])
        .env("RUST_LOG", "warn");
    let mut demo = e2e::JsonProc::spawn("hub-demo", cmd);
    let first = demo.wait_for("the demo line", Duration::from_secs(60), |v| {
        e2e::is(v, "event", json!("demo"))
    });
    assert_eq!(first["mqtt"], format!("mqtt://127.0.0.1:{port}"));

    // The cloud's side: every event the demo sends, acknowledged.
    let out = Command::new(e2e::hubctl_bin())
        .args(["--host", "127.0.0.1", "--port", &port])
        .args(["--tenant", TENANT, "--hub", "demo-hub"])
        .args(["tail", "--ack", "--for-s", "10"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run hubctl");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line from hubctl"))
        .collect();
    let events = events_of(&lines);
    let granted: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "EVENT_KIND_ACCESS" && e["granted"] == true)
        .collect();
    assert!(
        !granted.is_empty(),
        "a granted card of the demo reached the cloud: {lines:?}"
    );
    let ann = granted[0];
    assert_eq!(ann["hub_id"], "demo-hub", "{ann}");
    assert_eq!(ann["door"], "front", "{ann}");
    assert_eq!(ann["credential"], "****67", "{ann}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("34567"),
        "the card number never leaves the hub unmasked"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["topic"] == "presence" && l["state"] == "PRESENCE_STATE_ONLINE"),
        "{lines:?}"
    );
    drop(demo);
}
