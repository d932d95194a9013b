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
use std::time::Duration;

use e2e::broker::TempDir;
use e2e::cloud::{events_of, Cloud};
use e2e::{http, hub_daemon, hub_events, repo_root, write_secret};
use serde_json::{json, Value};

const TENANT: &str = "acme";
const HUB: &str = "hub-1";
const API_KEY: &str = "cloud-test-key";

fn write_config(dir: &Path, cloud: &Cloud) -> std::path::PathBuf {
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
{}"#,
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
