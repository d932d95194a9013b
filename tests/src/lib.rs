//! Support for the end-to-end tests in `tests/tests/`: real peers as child
//! processes speaking JSON lines.
//!
//! - [`JsonProc`] starts a program, sends JSON lines to its stdin and waits
//!   (with a timeout) for stdout lines matching a predicate, keeping every line
//!   seen for later assertions. The child is killed on drop.
//! - [`libosdp_pd`] / [`libosdp_cp`] start `tests/peers/libosdp_peer.py`
//!   (libosdp 3.2.9) in the PD or CP role on a fresh PTY.
//! - [`hub()`] starts the real `hub` binary, built on first use
//!   ([`hub_release_bin`]: the release build, for benches);
//!   [`hub_daemon`] starts `hub run --config` and waits for its ready line;
//!   [`http_request`] / [`http`] talk to its HTTP listeners.
//! - [`reader`]: what a door's libosdp reader is shown and told (H10301
//!   card bits, the strike and LED commands), and the data set the door
//!   tests share.
//! - [`cloud`]: the reference cloud (`hubctl`) against a test broker, and
//!   the hub's `[mqtt]` config section for it.
//! - [`web`]: a technician's login session on the hub's web page.
//! - [`broker`]: real MQTT brokers (Mosquitto, NATS's MQTT listener) on free
//!   ports, stoppable and restartable, with a test PKI ([`Certs`]) and a
//!   `rumqttc` test client ([`TestClient`]).
//!
//! The Python interpreter is `$HUB_TEST_PYTHON` or `<repo>/.venv/bin/python`,
//! which `scripts/test-env.sh` creates.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub use serde_json::{json, Value};

pub mod broker;
pub mod cloud;
pub mod reader;
pub mod web;
pub use broker::{
    hub_acl, mqtt_options, mqtt_tls_options, rustls_client_config, Broker, CertFiles, Certs,
    Mosquitto, MosquittoOpts, NatsMqtt, TempDir, TestClient, TlsListener,
};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The Python with libosdp installed.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("HUB_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test-env.sh (or scripts/test.sh) first",
        p.display()
    );
    p
}

/// A child process that speaks JSON lines.
pub struct JsonProc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    /// Every stdout line received so far, in order.
    pub seen: Vec<Value>,
    /// Lines already returned by a wait (each line matches one wait only).
    consumed: Vec<bool>,
}

impl JsonProc {
    /// Starts `cmd` with piped stdin/stdout; stderr is inherited so its log
    /// shows up in the test output.
    pub fn spawn(name: &str, mut cmd: Command) -> JsonProc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, rx) = channel();
        let tag = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("[{tag}] non-JSON line: {line}"),
                }
            }
        });
        JsonProc {
            name: name.to_string(),
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
            consumed: Vec::new(),
        }
    }

    /// Sends one JSON line.
    pub fn send(&mut self, v: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{v}").expect("write to child");
        stdin.flush().expect("flush child stdin");
    }

    /// Sends a raw line (for malformed-input tests).
    pub fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush child stdin");
    }

    fn pull(&mut self, timeout: Duration) -> bool {
        match self.lines.recv_timeout(timeout) {
            Ok(v) => {
                self.seen.push(v);
                self.consumed.push(false);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(timeout.min(Duration::from_millis(50)));
                false
            }
        }
    }

    /// Waits for the first line not returned by an earlier wait that
    /// satisfies `pred`, and marks it returned.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.try_wait_for(timeout, pred).unwrap_or_else(|| {
            panic!(
                "[{}] no {what} within {timeout:?}; seen: {:#?}",
                self.name,
                self.recent()
            )
        })
    }

    /// As [`JsonProc::wait_for`] but returns `None` on timeout.
    pub fn try_wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let mut scanned = 0;
        loop {
            while scanned < self.seen.len() {
                let i = scanned;
                scanned += 1;
                if !self.consumed[i] && pred(&self.seen[i]) {
                    self.consumed[i] = true;
                    return Some(self.seen[i].clone());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.pull(left.min(Duration::from_millis(100)));
        }
    }

    /// Collects lines for `d` and returns all seen so far.
    pub fn drain_for(&mut self, d: Duration) -> &[Value] {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            self.pull(Duration::from_millis(20));
        }
        &self.seen
    }

    /// The last lines seen (for failure messages).
    fn recent(&self) -> Vec<&Value> {
        let from = self.seen.len().saturating_sub(30);
        self.seen[from..].iter().collect()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Closes stdin and waits up to `timeout` for exit; kills it after that.
    pub fn close(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.stdin.take();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Process id (to send signals).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (a clean stop), then waits up to `timeout` for the
    /// exit status; `None` if it is still running by then.
    pub fn terminate(self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {} failed", self.id());
        self.close(timeout)
    }
}

impl Drop for JsonProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A libosdp harness in the PD role with the given PD specs; returns it with
/// the bus (PTY path) it printed.
pub fn libosdp_pd(pds: &[Value], trace: bool) -> (JsonProc, String) {
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("tests/peers/libosdp_peer.py"))
        .args(["--role", "pd"]);
    if trace {
        cmd.arg("--trace");
    }
    for pd in pds {
        cmd.arg("--pd").arg(pd.to_string());
    }
    let mut p = JsonProc::spawn("libosdp-pd", cmd);
    let first = p.wait_for("bus line", Duration::from_secs(20), |v| {
        v.get("bus").is_some()
    });
    let bus = first["bus"].as_str().expect("bus path").to_string();
    (p, bus)
}

/// A libosdp harness in the CP role.
pub fn libosdp_cp(pds: &[Value]) -> (JsonProc, String) {
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("tests/peers/libosdp_peer.py"))
        .args(["--role", "cp"]);
    for pd in pds {
        cmd.arg("--pd").arg(pd.to_string());
    }
    let mut p = JsonProc::spawn("libosdp-cp", cmd);
    let first = p.wait_for("bus line", Duration::from_secs(20), |v| {
        v.get("bus").is_some()
    });
    let bus = first["bus"].as_str().expect("bus path").to_string();
    (p, bus)
}

/// Serialises tests that run libosdp peers: libosdp's Python devices miss
/// polls under CPU contention (see tests/peers/README.md), and two buses with
/// Python peers at once on a two-core machine is enough contention. Hold the
/// guard for the whole test.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Path of the `hub` binary, built once per test process.
pub fn hub_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("hub", "HUB_BIN")).clone()
}

/// Path of the `hubctl` binary (the reference cloud), built once per test
/// process (`$HUBCTL_BIN` when set).
pub fn hubctl_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("hubctl", "HUBCTL_BIN"))
        .clone()
}

/// Path of the `hub` binary built with `--release`, for benchmarks
/// (`$HUB_RELEASE_BIN` when set).
pub fn hub_release_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_profile_bin("hub", "HUB_RELEASE_BIN", true))
        .clone()
}

fn build_bin(name: &str, env: &str) -> PathBuf {
    build_profile_bin(name, env, false)
}

fn build_profile_bin(name: &str, env: &str, release: bool) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet", "-p", "hub", "--bin", name])
        .current_dir(repo_root());
    if release {
        cargo.arg("--release");
    }
    // `cargo test` gives this process the e2e package's variables; ring's
    // build script reruns when CARGO_MANIFEST_DIR changes, so passing them
    // on would rebuild ring and all above it here, and again at the next
    // `cargo` run from a shell (about a minute each on two cores).
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || matches!(
                &*key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cargo.env_remove(&*key);
        }
    }
    let status = cargo.status().expect("run cargo build");
    assert!(status.success(), "building the {name} binary failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    target
        .join(if release { "release" } else { "debug" })
        .join(name)
}

/// Starts `hub` with `args`.
pub fn hub(args: &[&str]) -> JsonProc {
    let mut cmd = Command::new(hub_bin());
    cmd.args(args).env("RUST_LOG", "warn");
    JsonProc::spawn("hub", cmd)
}

/// Whether `v[key]` equals `want`.
pub fn is(v: &Value, key: &str, want: Value) -> bool {
    v.get(key) == Some(&want)
}

/// An HTTP response, read to the end.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header lines as (lower-case name, value).
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl HttpResponse {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 request to `addr` (`127.0.0.1:PORT`) on a fresh connection
/// (`Connection: close`) with extra header lines and an optional body
/// `(content type, text)`. `Err` when the connection fails or is cut (the
/// server died).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> std::io::Result<HttpResponse> {
    use std::io::Read;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let (content_type, text) = body.unwrap_or(("text/plain", ""));
    if body.is_some() {
        request.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{text}", text.len()));
    s.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no complete response")
    })?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_string(),
    })
}

/// One HTTP/1.1 request to the hub's `[api]` at `addr` with `X-API-Key:
/// key` and an optional JSON body; returns the status and the JSON body
/// (`Value::Null` if it is not JSON). `Err` when the connection fails or is
/// cut (the server died).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let body = body.map(|b| b.to_string());
    let r = http_request(
        addr,
        method,
        path,
        &[("X-API-Key", key)],
        Some(("application/json", body.as_deref().unwrap_or_default())),
    )?;
    Ok((r.status, r.json()))
}

/// Starts `hub run --config CONFIG` and waits for its ready line; returns
/// the process and the API address it listens on (`[api] listen` may use
/// port 0).
pub fn hub_daemon(config: &Path) -> (JsonProc, String) {
    hub_daemon_with(&hub_bin(), config)
}

/// As [`hub_daemon`] with another `hub` binary (e.g. [`hub_release_bin`]).
pub fn hub_daemon_with(bin: &Path, config: &Path) -> (JsonProc, String) {
    let (p, ready) = hub_daemon_ready_with(bin, config);
    let api = ready["api"].as_str().unwrap_or_default().to_string();
    (p, api)
}

/// As [`hub_daemon`], returning the whole ready line (`api`, `web`: the
/// addresses of the listeners configured).
pub fn hub_daemon_ready(config: &Path) -> (JsonProc, Value) {
    hub_daemon_ready_with(&hub_bin(), config)
}

/// As [`hub_daemon_ready`] with another `hub` binary.
pub fn hub_daemon_ready_with(bin: &Path, config: &Path) -> (JsonProc, Value) {
    let mut cmd = Command::new(bin);
    cmd.arg("run").arg("--config").arg(config).env(
        "RUST_LOG",
        std::env::var("HUB_LOG").unwrap_or_else(|_| "warn".into()),
    );
    let mut p = JsonProc::spawn("hub-run", cmd);
    let ready = p.wait_for("ready line", Duration::from_secs(30), |v| {
        is(v, "event", json!("ready"))
    });
    (p, ready)
}

/// Every event the hub lists at `GET /api/v1/events`, paging through.
pub fn hub_events(api: &str, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let (status, page) = http(
            api,
            "GET",
            &format!("/api/v1/events?after={after}&limit=1000"),
            key,
            None,
        )
        .expect("GET /api/v1/events");
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().expect("events").clone();
        if events.is_empty() {
            return out;
        }
        after = page["next_after"].as_u64().expect("next_after");
        out.extend(events);
    }
}

/// Waits (up to 15 s) until the hub lists an event satisfying `pred` at
/// `GET /api/v1/events`, and returns it.
pub fn wait_event(api: &str, key: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let events = hub_events(api, key);
        if let Some(e) = events.iter().find(|e| pred(e)) {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in the hub's events: {events:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` every 100 ms until it holds; panics naming `what` after
/// `timeout` (for things the hub does asynchronously).
pub fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes a secret file readable by its owner only (mode 600).
pub fn write_secret(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}
