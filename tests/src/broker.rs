//! Real MQTT brokers for the end-to-end tests, each a child process on free
//! ports of 127.0.0.1 with its own temporary directory, plus the certificates
//! and test clients that talk to them.
//!
//! - [`Certs::generate`] makes, in Rust with `rcgen` (no `openssl` binary), a
//!   test CA, a server certificate for `localhost` / `127.0.0.1`, and client
//!   certificates whose CN is the MQTT identity (`hub-1`, `hub-2`, `cloud` by
//!   default), written as PEM files. A second, unrelated CA signs a server
//!   certificate and the same client names again, for negative tests (a client
//!   or a broker with a certificate from the wrong CA must be refused).
//! - [`Mosquitto::start`] runs `mosquitto -c <conf>` with the listeners of
//!   [`MosquittoOpts`]: plain, TLS with `require_certificate true` and
//!   `use_identity_as_username true` (the client certificate's CN is the
//!   username, so ACL `pattern` lines can use `%u`), persistence, an ACL file
//!   (content given by the test; [`hub_acl`] is the hub/cloud layout).
//! - [`NatsMqtt::start`] runs `nats-server` with JetStream and its MQTT
//!   listener: a second, independent MQTT implementation for contract tests.
//! - Both implement [`Broker`]: `url()`, `stop()` (SIGTERM, waits for exit),
//!   `start_again()` (same ports, same data directory), `kill()` (SIGKILL).
//!   Drop kills the broker and removes its directory; when the test is
//!   panicking, the end of the broker's log is printed first.
//! - [`TestClient`] is a `rumqttc` client whose event loop runs in a tokio
//!   task and reports every event, for tests that play a hub or the cloud;
//!   [`rustls_client_config`] builds the TLS configuration (pinned CA, optional
//!   client certificate) with the ring provider.
//!
//! Ports: a free port is found by binding port 0 and releasing it; when the
//! broker then fails with "address already in use" (another test took the
//! port in between) new ports are picked, up to five times. A broker is ready
//! when its plain port answers an MQTT CONNECT with a CONNACK (a TLS-only
//! port: when it accepts TCP connections).
//!
//! # Mosquitto notes (2.0.11 here)
//!
//! - Started as root without a `user` line, mosquitto 2.x drops privileges to
//!   the `mosquitto` user, who cannot write into our root-owned temp dir: it
//!   runs, but saving the persistence file fails with "Permission denied"
//!   (and a key file readable by root only would not load). The config
//!   therefore says `user root` when we are root (checked through the owner
//!   of `/proc/self`); started as any other user it stays that user (checked
//!   as `nobody`). It still logs "Mosquitto should not be run as root".
//! - Authentication and ACL settings are global (`per_listener_settings` is
//!   left off): `allow_anonymous true`, so plain clients get in without a
//!   username; TLS clients are named by their certificate's CN. With an ACL,
//!   anonymous clients only get the `topic` lines placed before the first
//!   `user` line, `pattern` lines apply to everyone with a username, and
//!   `user NAME` starts a block of `topic` lines for that user. A publish the
//!   ACL denies is acknowledged (PUBACK) and silently dropped. A subscription
//!   outside the ACL is granted (SUBACK success: 2.0's default ACL check does
//!   not look at SUBSCRIBE) and the messages are filtered on delivery, so
//!   "hub-1 cannot read hub-2's topics" means "receives nothing", not "gets
//!   a SUBACK failure".
//! - TLS: OpenSSL's defaults, TLS 1.2 and 1.3 ([`TlsListener::tls_version`]
//!   pins one). With TLS 1.3 a refused client certificate is not a handshake
//!   failure on the client side: the client's handshake completes, the server
//!   then sends an alert, and the client sees the error when it reads the
//!   CONNACK. Tests must therefore check "no CONNACK", not "connect failed".
//! - Persistence: saved on a graceful stop (SIGTERM, [`Broker::stop`]) and,
//!   as configured here (`autosave_on_changes true`, `autosave_interval 1`),
//!   after every change, but only when the main loop next wakes, up to about
//!   a second later: a [`Broker::kill`] within that second loses the change
//!   (typically a QoS 1 message just queued for an offline client). Wait
//!   1.5 s before killing when the test needs it kept. Persistent sessions
//!   and their queued QoS 1 messages survive a restart.
//!
//! # NATS MQTT notes (nats-server 2.9.10 here)
//!
//! - Needs JetStream and a `server_name`; sessions, retained messages and
//!   QoS 1 messages live in JetStream file streams in the broker's store
//!   directory, so they survive [`Broker::stop`] / [`Broker::start_again`],
//!   and also an immediate [`Broker::kill`] (written through at once).
//! - MQTT 3.1.1 only (no MQTT 5). QoS 0 and 1: yes. Retained messages: yes.
//!   Will messages: yes. Persistent sessions (clean session = false): yes.
//!   QoS 2: no in 2.9 (a QoS 2 subscription is granted QoS 1; a QoS 2 PUBLISH
//!   closes the connection, "publish QoS=2 not supported" in its log); newer
//!   releases support it. The hub uses QoS 0/1 only, so this is enough for
//!   the contract tests.
//! - Topic names are mapped to NATS subjects: `/` becomes `.`, so a topic
//!   level may not contain `.` nor spaces; `$`-prefixed topics are reserved.
//! - No TLS listener here (contract tests run on the plain port).
//!
//! The binaries are `$MOSQUITTO_BIN` / `$NATS_SERVER_BIN` when set, else found
//! on `PATH` or in `/usr/sbin`; `scripts/test-env.sh` installs both.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rumqttc::{
    AsyncClient, ConnAck, ConnectionError, Event, MqttOptions, Outgoing, Packet, Publish, QoS,
    SubAck, TlsConfiguration, Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The address every test broker listens on.
pub const HOST: &str = "127.0.0.1";

/// How long a broker may take to start accepting connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

// ---- temporary directories -----------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop (kept, and
/// its path printed, when `E2E_KEEP_TMP` is set).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/e2e-<what>-<pid>-<n>`.
    pub fn new(what: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("e2e-{what}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        TempDir(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("E2E_KEEP_TMP").is_some() {
            eprintln!("E2E_KEEP_TMP: keeping {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

// ---- certificates -------------------------------------------------------------------

/// A certificate and its private key, PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8, ECDSA P-256).
    pub key: PathBuf,
}

/// Test PKI: see the module doc. Every file is PEM under [`Certs::dir`]:
/// `ca.pem`, `server.pem`/`.key`, `clients/<cn>.pem`/`.key`, and for the
/// wrong CA `wrong-ca.pem`, `wrong-server.pem`/`.key`, `wrong-clients/<cn>.*`.
#[derive(Clone, Debug)]
pub struct Certs {
    /// Where the files are.
    pub dir: PathBuf,
    /// The test CA's certificate: the one to pin, and mosquitto's `cafile`.
    pub ca: PathBuf,
    /// Server certificate for `localhost` and `127.0.0.1`, signed by `ca`.
    pub server: CertFiles,
    /// An unrelated CA.
    pub wrong_ca: PathBuf,
    /// The same server names, signed by `wrong_ca` (a broker the hub must
    /// refuse).
    pub wrong_server: CertFiles,
    clients: BTreeMap<String, CertFiles>,
    wrong_clients: BTreeMap<String, CertFiles>,
}

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate CA key");
        let cert = p.self_signed(&key).expect("self-sign CA");
        Ca { cert, key }
    }

    fn sign(
        &self,
        cn: &str,
        sans: Vec<SanType>,
        eku: ExtendedKeyUsagePurpose,
    ) -> (Certificate, KeyPair) {
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(cn);
        p.subject_alt_names = sans;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![eku];
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate key");
        let cert = p
            .signed_by(&key, &self.cert, &self.key)
            .unwrap_or_else(|e| panic!("sign {cn}: {e}"));
        (cert, key)
    }

    fn server(&self) -> (Certificate, KeyPair) {
        self.sign(
            "localhost",
            vec![
                SanType::DnsName("localhost".try_into().expect("ia5 name")),
                SanType::IpAddress(Ipv4Addr::LOCALHOST.into()),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client(&self, cn: &str) -> (Certificate, KeyPair) {
        self.sign(cn, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d
}

fn write(path: &Path, content: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn write_pair(dir: &Path, name: &str, (cert, key): (Certificate, KeyPair)) -> CertFiles {
    let files = CertFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    write(&files.cert, &cert.pem());
    write(&files.key, &key.serialize_pem());
    files
}

impl Certs {
    /// The client names [`Certs::generate`] makes certificates for.
    pub const DEFAULT_CLIENTS: &'static [&'static str] = &["hub-1", "hub-2", "cloud"];

    /// CA, server and clients `hub-1`, `hub-2`, `cloud` (each also signed by
    /// the wrong CA), written under `dir`.
    pub fn generate(dir: &Path) -> Certs {
        Certs::generate_for(dir, Certs::DEFAULT_CLIENTS)
    }

    /// As [`Certs::generate`] with the given client names (certificate CNs).
    pub fn generate_for(dir: &Path, clients: &[&str]) -> Certs {
        let ca = Ca::new("e2e test CA");
        let wrong = Ca::new("e2e wrong CA");
        let ca_pem = dir.join("ca.pem");
        let wrong_pem = dir.join("wrong-ca.pem");
        write(&ca_pem, &ca.cert.pem());
        write(&dir.join("ca.key"), &ca.key.serialize_pem());
        write(&wrong_pem, &wrong.cert.pem());
        let mut certs = Certs {
            dir: dir.to_path_buf(),
            ca: ca_pem,
            server: write_pair(dir, "server", ca.server()),
            wrong_ca: wrong_pem,
            wrong_server: write_pair(dir, "wrong-server", wrong.server()),
            clients: BTreeMap::new(),
            wrong_clients: BTreeMap::new(),
        };
        for cn in clients {
            let files = write_pair(&dir.join("clients"), cn, ca.client(cn));
            certs.clients.insert(cn.to_string(), files);
            let files = write_pair(&dir.join("wrong-clients"), cn, wrong.client(cn));
            certs.wrong_clients.insert(cn.to_string(), files);
        }
        certs
    }

    /// The client certificate with CN `cn`, signed by the test CA.
    pub fn client(&self, cn: &str) -> &CertFiles {
        self.clients
            .get(cn)
            .unwrap_or_else(|| panic!("no client certificate {cn:?}; have {:?}", self.names()))
    }

    /// A certificate with CN `cn` signed by the wrong CA.
    pub fn wrong_ca_client(&self, cn: &str) -> &CertFiles {
        self.wrong_clients
            .get(cn)
            .unwrap_or_else(|| panic!("no client certificate {cn:?}; have {:?}", self.names()))
    }

    fn names(&self) -> Vec<&String> {
        self.clients.keys().collect()
    }

    /// rustls configuration pinning the test CA, with client `cn`'s
    /// certificate (or none).
    pub fn rustls_config(&self, cn: Option<&str>) -> Arc<rustls::ClientConfig> {
        rustls_client_config(&self.ca, cn.map(|cn| self.client(cn)))
    }
}

/// A rustls client configuration (ring provider, TLS 1.2 and 1.3) trusting
/// only the CA certificates in `ca_pem`, presenting `client` when given.
pub fn rustls_client_config(
    ca_pem: &Path,
    client: Option<&CertFiles>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem)
        .unwrap_or_else(|e| panic!("read {}: {e}", ca_pem.display()))
    {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let chain = CertificateDer::pem_file_iter(&files.cert)
                .unwrap_or_else(|e| panic!("read {}: {e}", files.cert.display()))
                .collect::<Result<Vec<_>, _>>()
                .expect("client certificate PEM");
            let key = PrivateKeyDer::from_pem_file(&files.key)
                .unwrap_or_else(|e| panic!("read {}: {e}", files.key.display()));
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate and key")
        }
    };
    Arc::new(config)
}

// ---- processes ----------------------------------------------------------------------

/// What the tests need from a broker, whichever implementation it is.
pub trait Broker {
    /// "mosquitto" or "nats".
    fn kind(&self) -> &'static str;
    /// The plain MQTT port on [`HOST`].
    fn port(&self) -> u16;
    /// `mqtt://127.0.0.1:<port>`.
    fn url(&self) -> String {
        format!("mqtt://{HOST}:{}", self.port())
    }
    /// Stops it gracefully (SIGTERM, waits for the exit; SIGKILL after 5 s).
    fn stop(&mut self);
    /// Starts it again on the same ports with the same data directory.
    fn start_again(&mut self);
    /// Kills it with SIGKILL.
    fn kill(&mut self);
    /// Whether the process is running.
    fn is_running(&mut self) -> bool;
    /// Its log so far (stdout and stderr, every run).
    fn log(&self) -> String;
}

/// How to tell a port is ready.
#[derive(Clone, Copy, Debug)]
enum Probe {
    /// Accepts TCP connections.
    Tcp,
    /// Answers an MQTT 3.1.1 CONNECT with a successful CONNACK.
    Mqtt,
}

/// A broker process: program, arguments, log file, ports to probe.
#[derive(Debug)]
struct Daemon {
    kind: &'static str,
    program: PathBuf,
    args: Vec<OsString>,
    log: PathBuf,
    ports: Vec<(u16, Probe)>,
    child: Option<Child>,
}

enum StartError {
    /// The process exited during start-up; its output of this run.
    Exited(String),
    /// Running, but a port did not get ready in time.
    Timeout(String),
}

impl Daemon {
    /// Spawns the process and waits for every port.
    fn spawn(&mut self) -> Result<(), StartError> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log.display()));
        let from = log.seek(SeekFrom::End(0)).unwrap_or(0);
        let _ = writeln!(log, "==== e2e: starting {} ====", self.kind);
        let err = log.try_clone().expect("clone log handle");
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        for &(port, probe) in &self.ports {
            loop {
                if let Some(child) = self.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        self.child = None;
                        return Err(StartError::Exited(format!(
                            "{}\n({status})",
                            read_from(&self.log, from)
                        )));
                    }
                }
                if probe_port(port, probe) {
                    break;
                }
                if Instant::now() > deadline {
                    self.kill();
                    return Err(StartError::Timeout(format!(
                        "port {port} not ready within {START_TIMEOUT:?}\n{}",
                        read_from(&self.log, from)
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let termed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if termed {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            eprintln!(
                "{} did not stop within 5 s of SIGTERM; killing it",
                self.kind
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    fn log(&self) -> String {
        read_from(&self.log, 0)
    }

    /// Restart on the same ports; retries for a while when a port is still
    /// (or again) taken.
    fn start_again(&mut self) {
        assert!(!self.is_running(), "{} is still running", self.kind);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(StartError::Exited(out)) if addr_in_use(&out) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(StartError::Exited(out) | StartError::Timeout(out)) => {
                    panic!("{} did not start again: {out}", self.kind)
                }
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- {} log (last {} lines) ----", self.kind, tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

fn read_from(path: &Path, from: u64) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.seek(SeekFrom::Start(from));
        let _ = f.read_to_string(&mut s);
    }
    s
}

fn addr_in_use(out: &str) -> bool {
    out.to_ascii_lowercase().contains("address already in use")
}

/// `n` distinct ports that were free a moment ago.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((HOST, 0)).expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

fn probe_port(port: u16, probe: Probe) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    match probe {
        Probe::Tcp => true,
        Probe::Mqtt => mqtt_ping(&mut s).unwrap_or(false),
    }
}

/// CONNECT (3.1.1, clean session) then DISCONNECT; true on CONNACK accepted.
fn mqtt_ping(s: &mut TcpStream) -> std::io::Result<bool> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let id = format!("e2e-probe-{}", std::process::id());
    let mut var = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10];
    var.extend_from_slice(&u16::try_from(id.len()).unwrap_or(0).to_be_bytes());
    var.extend_from_slice(id.as_bytes());
    let mut pkt = vec![0x10, u8::try_from(var.len()).unwrap_or(0)];
    pkt.extend_from_slice(&var);
    s.write_all(&pkt)?;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack)?;
    let ok = ack == [0x20, 0x02, ack[2], 0x00];
    let _ = s.write_all(&[0xe0, 0x00]);
    Ok(ok)
}

/// `$env` if set, else `name` on PATH, else the first existing fallback.
fn find_program(env: &str, name: &str, fallbacks: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    on_path
        .or_else(|| fallbacks.iter().map(PathBuf::from).find(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!("{name} not found (PATH, {fallbacks:?}, ${env}): run scripts/test-env.sh")
        })
}

/// Starts a daemon on fresh ports, picking new ones when a port was taken
/// between choosing and binding. `setup` writes the config for the ports and
/// returns the arguments and the probes.
fn launch(
    kind: &'static str,
    program: PathBuf,
    dir: &Path,
    n_ports: usize,
    setup: impl Fn(&[u16]) -> (Vec<OsString>, Vec<(u16, Probe)>),
) -> (Daemon, Vec<u16>) {
    let mut last = String::new();
    for _ in 0..5 {
        let ports = free_ports(n_ports);
        let (args, probes) = setup(&ports);
        let mut d = Daemon {
            kind,
            program: program.clone(),
            args,
            log: dir.join(format!("{kind}.log")),
            ports: probes,
            child: None,
        };
        match d.spawn() {
            Ok(()) => return (d, ports),
            Err(StartError::Exited(out)) if addr_in_use(&out) => last = out,
            Err(StartError::Exited(out) | StartError::Timeout(out)) => {
                panic!("{kind} did not start: {out}")
            }
        }
    }
    panic!("{kind}: no free ports after 5 tries; last output:\n{last}")
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

// ---- mosquitto ------------------------------------------------------------------------

/// The TLS listener: server certificate and the CA client certificates must
/// chain to. Clients must present a certificate; its CN is their username.
#[derive(Clone, Debug)]
pub struct TlsListener {
    /// `cafile`: the CA client certificates must be signed by.
    pub ca: PathBuf,
    /// `certfile` / `keyfile`.
    pub server: CertFiles,
    /// `tls_version` (`tlsv1.2` or `tlsv1.3`); None allows both.
    pub tls_version: Option<String>,
}

impl TlsListener {
    /// The test CA and its server certificate.
    pub fn new(certs: &Certs) -> TlsListener {
        TlsListener {
            ca: certs.ca.clone(),
            server: certs.server.clone(),
            tls_version: None,
        }
    }
}

/// What [`Mosquitto::start`] configures.
#[derive(Clone, Debug)]
pub struct MosquittoOpts {
    /// A plain listener on 127.0.0.1 (anonymous clients allowed).
    pub plain: bool,
    /// A TLS listener on 127.0.0.1 with client certificates.
    pub tls: Option<TlsListener>,
    /// Persistent sessions and queued messages survive a restart.
    pub persistence: bool,
    /// The ACL file's content (None: no ACL, everyone may do anything).
    pub acl: Option<String>,
    /// More lines for mosquitto.conf (global section, before the listeners).
    pub extra_conf: String,
}

impl Default for MosquittoOpts {
    fn default() -> Self {
        MosquittoOpts {
            plain: true,
            tls: None,
            persistence: false,
            acl: None,
            extra_conf: String::new(),
        }
    }
}

impl MosquittoOpts {
    /// Plain listener only, no persistence, no ACL.
    pub fn plain() -> MosquittoOpts {
        MosquittoOpts::default()
    }

    /// Adds the TLS listener with the test CA and server certificate.
    pub fn with_tls(mut self, certs: &Certs) -> MosquittoOpts {
        self.tls = Some(TlsListener::new(certs));
        self
    }

    /// Turns persistence on or off.
    pub fn persistence(mut self, on: bool) -> MosquittoOpts {
        self.persistence = on;
        self
    }

    /// Sets the ACL file's content.
    pub fn acl(mut self, content: impl Into<String>) -> MosquittoOpts {
        self.acl = Some(content.into());
        self
    }

    /// Drops the plain listener (TLS only).
    pub fn without_plain(mut self) -> MosquittoOpts {
        self.plain = false;
        self
    }
}

/// The hub/cloud topic layout as a mosquitto ACL: each hub (username = its
/// certificate CN) may read and write `hub/<its id>/#` only; `cloud` may read
/// and write every hub's topics. Anonymous clients get nothing.
pub fn hub_acl() -> String {
    "# each hub only under its own id\n\
     pattern readwrite hub/%u/#\n\
     \n\
     user cloud\n\
     topic readwrite hub/#\n"
        .to_string()
}

/// The MQTT contract's ACL (docs/mqtt-api.md) for `tenant`: each hub
/// (username = its certificate CN) reads only its own down topics and
/// writes only its own up topics; `cloud` may do everything.
pub fn contract_acl(tenant: &str) -> String {
    let mut acl = String::from("# each hub only under its own id\n");
    for down in ["desired", "snapshot", "cmd", "ack"] {
        acl.push_str(&format!("pattern read t/{tenant}/h/%u/{down}\n"));
    }
    for up in ["events", "status", "resync", "result", "presence", "health"] {
        acl.push_str(&format!("pattern write t/{tenant}/h/%u/{up}\n"));
    }
    acl.push_str("\nuser cloud\ntopic readwrite t/#\n");
    acl
}

/// A mosquitto broker; see the module doc.
#[derive(Debug)]
pub struct Mosquitto {
    daemon: Daemon,
    plain_port: Option<u16>,
    tls_port: Option<u16>,
    // Last: removed after the daemon is dead.
    dir: TempDir,
}

impl Mosquitto {
    /// Writes the config, starts mosquitto and waits until every listener
    /// accepts connections.
    pub fn start(opts: MosquittoOpts) -> Mosquitto {
        assert!(
            opts.plain || opts.tls.is_some(),
            "mosquitto needs a listener"
        );
        let dir = TempDir::new("mosquitto");
        let n = usize::from(opts.plain) + usize::from(opts.tls.is_some());
        let root = dir.path().to_path_buf();
        let program = find_program("MOSQUITTO_BIN", "mosquitto", &["/usr/sbin/mosquitto"]);
        let (daemon, ports) = launch("mosquitto", program, &root, n, |ports| {
            let mut it = ports.iter().copied();
            let plain = opts.plain.then(|| it.next()).flatten();
            let tls = opts.tls.as_ref().and_then(|_| it.next());
            let conf = root.join("mosquitto.conf");
            write(&conf, &mosquitto_conf(&opts, &root, plain, tls));
            let mut probes = Vec::new();
            if let Some(p) = plain {
                probes.push((p, Probe::Mqtt));
            }
            if let Some(p) = tls {
                probes.push((p, Probe::Tcp));
            }
            (vec!["-c".into(), conf.into()], probes)
        });
        let mut it = ports.into_iter();
        let plain_port = opts.plain.then(|| it.next()).flatten();
        let tls_port = opts.tls.as_ref().and_then(|_| it.next());
        Mosquitto {
            daemon,
            plain_port,
            tls_port,
            dir,
        }
    }

    /// The plain listener's port (panics without one).
    pub fn plain_port(&self) -> u16 {
        self.plain_port
            .expect("this mosquitto has no plain listener")
    }

    /// The TLS listener's port (panics without one).
    pub fn tls_port(&self) -> u16 {
        self.tls_port.expect("this mosquitto has no TLS listener")
    }

    /// `mqtts://127.0.0.1:<tls port>`.
    pub fn tls_url(&self) -> String {
        format!("mqtts://{HOST}:{}", self.tls_port())
    }

    /// The broker's directory (config, ACL, log, persistence).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn mosquitto_conf(
    opts: &MosquittoOpts,
    dir: &Path,
    plain: Option<u16>,
    tls: Option<u16>,
) -> String {
    let mut c = String::from("# written by e2e::broker::Mosquitto\n");
    if running_as_root() {
        // Else mosquitto 2.x switches to the `mosquitto` user, who cannot
        // read our files.
        c.push_str("user root\n");
    }
    c.push_str("log_dest stderr\nlog_timestamp_format %H:%M:%S\nallow_anonymous true\n");
    if opts.persistence {
        let data = dir.join("data");
        fs::create_dir_all(&data).unwrap_or_else(|e| panic!("mkdir {}: {e}", data.display()));
        // persistence_location needs the trailing slash.
        c.push_str(&format!(
            "persistence true\npersistence_location {}/\nautosave_on_changes true\nautosave_interval 1\n",
            data.display()
        ));
    } else {
        c.push_str("persistence false\n");
    }
    if let Some(acl) = &opts.acl {
        let path = dir.join("acl");
        write(&path, acl);
        c.push_str(&format!("acl_file {}\n", path.display()));
    }
    c.push_str(&opts.extra_conf);
    c.push('\n');
    if let Some(port) = plain {
        c.push_str(&format!("\nlistener {port} {HOST}\n"));
    }
    if let (Some(port), Some(t)) = (tls, &opts.tls) {
        c.push_str(&format!(
            "\nlistener {port} {HOST}\ncafile {}\ncertfile {}\nkeyfile {}\n\
             require_certificate true\nuse_identity_as_username true\n",
            t.ca.display(),
            t.server.cert.display(),
            t.server.key.display()
        ));
        if let Some(v) = &t.tls_version {
            c.push_str(&format!("tls_version {v}\n"));
        }
    }
    c
}

impl Broker for Mosquitto {
    fn kind(&self) -> &'static str {
        "mosquitto"
    }
    fn port(&self) -> u16 {
        self.plain_port()
    }
    fn stop(&mut self) {
        self.daemon.stop();
    }
    fn start_again(&mut self) {
        self.daemon.start_again();
    }
    fn kill(&mut self) {
        self.daemon.kill();
    }
    fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }
    fn log(&self) -> String {
        self.daemon.log()
    }
}

// ---- NATS -------------------------------------------------------------------------

/// nats-server with JetStream and its MQTT listener; see the module doc.
#[derive(Debug)]
pub struct NatsMqtt {
    daemon: Daemon,
    mqtt_port: u16,
    nats_port: u16,
    // Last: removed after the daemon is dead.
    dir: TempDir,
}

impl NatsMqtt {
    /// Writes the config, starts nats-server and waits until its MQTT port
    /// answers a CONNECT.
    pub fn start() -> NatsMqtt {
        let dir = TempDir::new("nats");
        let root = dir.path().to_path_buf();
        let program = find_program(
            "NATS_SERVER_BIN",
            "nats-server",
            &["/usr/sbin/nats-server", "/usr/bin/nats-server"],
        );
        let (daemon, ports) = launch("nats", program, &root, 2, |ports| {
            let (mqtt, nats) = (ports[0], ports[1]);
            let conf = root.join("nats.conf");
            write(
                &conf,
                &format!(
                    "# written by e2e::broker::NatsMqtt\n\
                     server_name: e2e_nats_{mqtt}\n\
                     listen: \"{HOST}:{nats}\"\n\
                     jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 64MB\n  max_file_store: 256MB\n}}\n\
                     mqtt {{\n  listen: \"{HOST}:{mqtt}\"\n}}\n",
                    root.join("js").display()
                ),
            );
            (vec!["-c".into(), conf.into()], vec![(mqtt, Probe::Mqtt)])
        });
        NatsMqtt {
            daemon,
            mqtt_port: ports[0],
            nats_port: ports[1],
            dir,
        }
    }

    /// The NATS client port (for `nats` CLI debugging).
    pub fn nats_port(&self) -> u16 {
        self.nats_port
    }

    /// The server's directory (config, JetStream store, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Broker for NatsMqtt {
    fn kind(&self) -> &'static str {
        "nats"
    }
    fn port(&self) -> u16 {
        self.mqtt_port
    }
    fn stop(&mut self) {
        self.daemon.stop();
    }
    fn start_again(&mut self) {
        self.daemon.start_again();
    }
    fn kill(&mut self) {
        self.daemon.kill();
    }
    fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }
    fn log(&self) -> String {
        self.daemon.log()
    }
}

// ---- MQTT test client ----------------------------------------------------------------

/// MQTT 3.1.1 options for `client_id` at [`HOST`]:`port`, keep-alive 5 s.
pub fn mqtt_options(client_id: &str, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, HOST, port);
    o.set_keep_alive(Duration::from_secs(5));
    o
}

/// As [`mqtt_options`] over TLS with `tls` (see [`rustls_client_config`]).
pub fn mqtt_tls_options(client_id: &str, port: u16, tls: Arc<rustls::ClientConfig>) -> MqttOptions {
    let mut o = mqtt_options(client_id, port);
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    o
}

/// A `rumqttc` client whose event loop runs in a tokio task (call from
/// inside a runtime). Every event, and every connection error, is queued
/// for the `wait_*` methods; after an error the loop pauses 100 ms and polls
/// again, which reconnects. It ends after sending a DISCONNECT; dropping the
/// client aborts it.
pub struct TestClient {
    /// Send requests (subscribe, publish, disconnect) through this.
    pub client: AsyncClient,
    events: tokio::sync::mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
    pending: VecDeque<Packet>,
    task: tokio::task::JoinHandle<()>,
}

impl TestClient {
    /// Starts the event loop; the connection is made on its first poll.
    pub fn connect(opts: MqttOptions) -> TestClient {
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let ev = eventloop.poll().await;
                let failed = ev.is_err();
                // Polling after our DISCONNECT would connect again.
                let done = matches!(ev, Ok(Event::Outgoing(Outgoing::Disconnect)));
                if tx.send(ev).is_err() || done {
                    return;
                }
                if failed {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        TestClient {
            client,
            events,
            pending: VecDeque::new(),
            task,
        }
    }

    /// The next event or error, or None after `timeout` (bypasses the
    /// packets kept by [`TestClient::wait_packet`]).
    pub async fn next(&mut self, timeout: Duration) -> Option<Result<Event, ConnectionError>> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for the first incoming packet `pick` accepts. Packets it does
    /// not accept are kept for later waits (a PUBLISH that arrives while
    /// waiting for a PUBACK is not lost). Err: the first connection error,
    /// or "timeout".
    pub async fn wait_packet<T>(
        &mut self,
        timeout: Duration,
        pick: impl Fn(&Packet) -> Option<T>,
    ) -> Result<T, String> {
        if let Some(i) = self.pending.iter().position(|p| pick(p).is_some()) {
            if let Some(t) = self.pending.remove(i).and_then(|p| pick(&p)) {
                return Ok(t);
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                None => return Err(format!("timeout after {timeout:?}")),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(Event::Incoming(p))) => match pick(&p) {
                    Some(t) => return Ok(t),
                    None => self.pending.push_back(p),
                },
                Some(Ok(Event::Outgoing(_))) => {}
            }
        }
    }

    /// Waits for the CONNACK, skipping connection errors (the broker may be
    /// coming up) until `timeout`; Err lists the errors seen.
    pub async fn wait_connected(&mut self, timeout: Duration) -> Result<ConnAck, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut errors = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                None => return Err(format!("no CONNACK within {timeout:?}; errors: {errors:?}")),
                Some(Err(e)) => errors.push(e.to_string()),
                Some(Ok(Event::Incoming(Packet::ConnAck(ack)))) => return Ok(ack),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Waits for a CONNACK or the first connection error.
    pub async fn wait_connack(&mut self, timeout: Duration) -> Result<ConnAck, String> {
        self.wait_packet(timeout, |p| match p {
            Packet::ConnAck(a) => Some(a.clone()),
            _ => None,
        })
        .await
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS, timeout: Duration) -> SubAck {
        self.client
            .subscribe(filter, qos)
            .await
            .expect("queue SUBSCRIBE");
        self.wait_packet(timeout, |p| match p {
            Packet::SubAck(a) => Some(a.clone()),
            _ => None,
        })
        .await
        .unwrap_or_else(|e| panic!("SUBACK for {filter}: {e}"))
    }

    /// Publishes and, for QoS 1, waits for the PUBACK.
    pub async fn publish(&mut self, topic: &str, qos: QoS, payload: &[u8], timeout: Duration) {
        self.client
            .publish(topic, qos, false, payload.to_vec())
            .await
            .expect("queue PUBLISH");
        if qos == QoS::AtLeastOnce {
            self.wait_packet(timeout, |p| matches!(p, Packet::PubAck(_)).then_some(()))
                .await
                .unwrap_or_else(|e| panic!("PUBACK for {topic}: {e}"));
        }
    }

    /// The next PUBLISH received, or Err on timeout or connection error.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Publish, String> {
        self.wait_packet(timeout, |p| match p {
            Packet::Publish(m) => Some(m.clone()),
            _ => None,
        })
        .await
    }

    /// Sends DISCONNECT and waits (up to 2 s) until it is on the wire.
    pub async fn disconnect(mut self) {
        let _ = self.client.disconnect().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Some(ev) = self
            .next(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            match ev {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}
