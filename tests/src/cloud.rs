//! The reference cloud (`hubctl`, built from `hub/src/bin/hubctl.rs`) for
//! one hub, against a test broker with mutual TLS, and the hub's `[mqtt]`
//! config section that points it at the same broker.
//!
//! ```no_run
//! # use e2e::broker::TempDir;
//! # use e2e::cloud::Cloud;
//! let tmp = TempDir::new("doc");
//! // Certificates for hub-1 and the cloud, Mosquitto with mTLS and the ACL.
//! let (_broker, cloud) = Cloud::start(tmp.path(), "acme", "hub-1");
//! let mqtt_toml = cloud.mqtt_section(tmp.path()); // append to the hub's config
//! let out = cloud.run(&["snapshot", "--file", "site.json", "--revision", "1"]);
//! assert_eq!(out.code, Some(0), "{out:?}");
//! let mut tail = cloud.tail(); // `hubctl tail --ack` until dropped
//! ```
//!
//! The cloud's certificate is `certs.client("cloud")`, the hub's
//! `certs.client(hub_id)`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use crate::broker::{contract_acl, Certs, Mosquitto, MosquittoOpts, HOST};
use crate::{hubctl_bin, write_secret, JsonProc, Value};

/// How long one `hubctl` run waits for the hub's answer, seconds.
const HUBCTL_TIMEOUT_S: &str = "20";

/// `hubctl` for one tenant and hub at a broker's TLS port.
#[derive(Debug, Clone)]
pub struct Cloud {
    certs: Certs,
    port: u16,
    tenant: String,
    hub: String,
}

/// What one `hubctl` run printed.
#[derive(Debug, Clone)]
pub struct HubctlOutput {
    /// Exit code (0 done, 1 the hub rejected it, 2 usage or connection).
    pub code: Option<i32>,
    /// Its stdout, one JSON value a line.
    pub lines: Vec<Value>,
    /// Its stderr (the log).
    pub stderr: String,
}

impl Cloud {
    /// The cloud for `hub` of `tenant` at the broker's TLS `port`.
    pub fn new(certs: &Certs, port: u16, tenant: &str, hub: &str) -> Cloud {
        Cloud {
            certs: certs.clone(),
            port,
            tenant: tenant.to_string(),
            hub: hub.to_string(),
        }
    }

    /// Certificates for `hub` and the cloud under `dir/certs`, and a
    /// Mosquitto with only a TLS listener (client certificates required)
    /// and the contract's ACL for `tenant`; returns the broker (stopped on
    /// drop) and the cloud for `hub` at it.
    pub fn start(dir: &Path, tenant: &str, hub: &str) -> (Mosquitto, Cloud) {
        let certs = Certs::generate_for(&dir.join("certs"), &[hub, "cloud"]);
        let broker = Mosquitto::start(
            MosquittoOpts::plain()
                .without_plain()
                .with_tls(&certs)
                .acl(contract_acl(tenant)),
        );
        let cloud = Cloud::new(&certs, broker.tls_port(), tenant, hub);
        (broker, cloud)
    }

    /// `hubctl` with the connection arguments, then `args`.
    fn command(&self, args: &[&str]) -> Command {
        let cloud = self.certs.client("cloud");
        let mut cmd = Command::new(hubctl_bin());
        cmd.args(["--host", HOST, "--port", &self.port.to_string()])
            .arg("--ca")
            .arg(&self.certs.ca)
            .arg("--cert")
            .arg(&cloud.cert)
            .arg("--key")
            .arg(&cloud.key)
            .args(["--tenant", &self.tenant, "--hub", &self.hub])
            .args(["--timeout-s", HUBCTL_TIMEOUT_S])
            .args(args)
            .env("RUST_LOG", "warn");
        cmd
    }

    /// Runs `hubctl ARGS` to the end.
    pub fn run(&self, args: &[&str]) -> HubctlOutput {
        let out = self.command(args).output().expect("run hubctl");
        HubctlOutput {
            code: out.status.code(),
            lines: String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line from hubctl"))
                .collect(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `hubctl revision --base BASE --revision REVISION` deleting the
    /// records `delete` (`kind:id`).
    pub fn revision(&self, base: u64, revision: u64, delete: &[&str]) -> HubctlOutput {
        let (base, revision) = (base.to_string(), revision.to_string());
        let mut args = vec!["revision", "--base", &base, "--revision", &revision];
        for key in delete {
            args.extend(["--delete", key]);
        }
        self.run(&args)
    }

    /// Starts `hubctl tail --ack`: every message the hub publishes, one JSON
    /// line each, acknowledging events as they arrive; killed on drop.
    pub fn tail(&self) -> JsonProc {
        JsonProc::spawn("hubctl-tail", self.command(&["tail", "--ack"]))
    }

    /// Writes the hub's client key into `dir` (mode 600, as the hub
    /// requires) and returns the `[mqtt]` section for the hub's config.
    pub fn mqtt_section(&self, dir: &Path) -> String {
        let hub_cert = self.certs.client(&self.hub);
        let key = dir.join(format!("{}.key", self.hub));
        write_secret(&key, &std::fs::read_to_string(&hub_cert.key).unwrap());
        format!(
            r#"
[mqtt]
url = "mqtts://{HOST}:{port}"
tenant = "{tenant}"
hub_id = "{hub}"
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"
keepalive_s = 5
"#,
            port = self.port,
            tenant = self.tenant,
            hub = self.hub,
            ca = self.certs.ca.display(),
            cert = hub_cert.cert.display(),
            key = key.display(),
        )
    }
}

/// The events of `hubctl` output lines (`{"topic": "events", "events":
/// [...]}`), in the order they arrived, each with its batch's `hub_id`
/// added.
pub fn events_of(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["topic"] == "events")
        .flat_map(|l| {
            let hub_id = l["hub_id"].clone();
            l["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |mut e| {
                    e["hub_id"] = hub_id.clone();
                    e
                })
        })
        .collect()
}
