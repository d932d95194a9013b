//! The thin tokio driver: one `rumqttc` connection (MQTT 3.1.1) feeding a
//! [`SyncCore`], with the hub's [`LocalState`].
//!
//! - [`spawn`] starts the engine in a tokio task and returns a
//!   [`SyncHandle`]: [`SyncHandle::outbox_changed`] after appending events,
//!   [`SyncHandle::events`] to watch what happens, [`SyncHandle::link`] for
//!   the connection state (connected, last contact) a status page shows,
//!   [`SyncHandle::shutdown`]
//!   to stop (presence OFFLINE, DISCONNECT) and get the [`LocalState`] back,
//!   [`SyncHandle::abort`] to stop like a crash (the broker then publishes
//!   the last will).
//! - The session is persistent (clean session off, client id = hub id): the
//!   broker keeps QoS 1 messages for the hub while it is offline. Presence
//!   ONLINE is published retained on every connection, and OFFLINE is the
//!   last will.
//! - [`tls_config`] builds the rustls configuration: the hub's client
//!   certificate and key, and only the given CA as trust anchor (no web PKI
//!   roots), with the ring provider.
//! - Nothing here blocks the doors: when the broker is unreachable the task
//!   retries every [`MqttSettings::reconnect_delay`]; events wait in the
//!   store's outbox.
//!
//! The rumqttc event loop runs in its own task and forwards its events over
//! a channel, so the engine's `select!` only waits on cancel-safe futures.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{
    AsyncClient, ClientError, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration,
    Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::core::{Publish, Qos, SyncConfig, SyncCore, SyncEvent};
use crate::local::LocalState;

/// Errors of setting up the connection.
#[derive(Debug, Error)]
pub enum DriverError {
    /// A PEM file could not be read or has no usable item.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificates or key.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The topics could not be made from the tenant and hub ids.
    #[error(transparent)]
    Topics(#[from] crate::topics::TopicError),
}

/// PEM files for mTLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the broker's certificate (the only trust anchor).
    pub ca: PathBuf,
    /// The hub's certificate (chain), PEM.
    pub cert: PathBuf,
    /// The hub's private key, PEM.
    pub key: PathBuf,
}

fn pem_err(path: &std::path::Path, reason: impl ToString) -> DriverError {
    DriverError::Pem {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// A rustls client configuration for mTLS: trusts `files.ca` only,
/// presents `files.cert` with `files.key`; ring provider, TLS 1.2 and 1.3.
pub fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>, DriverError> {
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&files.ca).map_err(|e| pem_err(&files.ca, e))?;
    for cert in cas {
        roots.add(cert.map_err(|e| pem_err(&files.ca, e))?)?;
    }
    if roots.is_empty() {
        return Err(pem_err(&files.ca, "no CA certificate in the file"));
    }
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| pem_err(&files.cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(&files.cert, e))?;
    if chain.is_empty() {
        return Err(pem_err(&files.cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| pem_err(&files.key, e))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Where and how to connect.
#[derive(Clone)]
pub struct MqttSettings {
    /// Broker host name (checked against its certificate with TLS).
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT client id (the hub id; the session is kept under it).
    pub client_id: String,
    /// mTLS configuration; `None` connects without TLS (tests only).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// MQTT keep-alive. Default 30 s.
    pub keep_alive: Duration,
    /// Pause after a failed connection. Default 2 s.
    pub reconnect_delay: Duration,
    /// Largest incoming MQTT packet; a larger one drops the connection, so
    /// this is far above the contract's 128 KiB (those between are rejected
    /// with a status). Default 16 MiB.
    pub max_incoming_packet: usize,
}

impl std::fmt::Debug for MqttSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl MqttSettings {
    /// mTLS to `host:port`.
    pub fn tls(
        host: impl Into<String>,
        port: u16,
        client_id: impl Into<String>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        Self {
            tls: Some(tls),
            ..Self::plain(host, port, client_id)
        }
    }

    /// No TLS (test brokers only).
    pub fn plain(host: impl Into<String>, port: u16, client_id: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port,
            client_id: client_id.into(),
            tls: None,
            keep_alive: Duration::from_secs(30),
            reconnect_delay: Duration::from_secs(2),
            max_incoming_packet: 16 * 1024 * 1024,
        }
    }
}

/// The state of the connection with the broker, shared with the driver
/// task: lock-free reads for status pages and metrics.
#[derive(Debug, Default)]
pub struct LinkState {
    connected: AtomicBool,
    /// Unix milliseconds of the last packet from the broker; 0: never.
    last_contact_ms: AtomicI64,
}

impl LinkState {
    /// Connected to the broker and subscribed now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// When the last packet from the broker arrived (a message, an ack, a
    /// ping response), wall clock; `None` before the first.
    pub fn last_contact(&self) -> Option<SystemTime> {
        let ms = self.last_contact_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs()))
    }

    fn touch(&self) {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.last_contact_ms.store(ms, Ordering::Relaxed);
    }
}

/// Controls a running engine.
pub struct SyncHandle<L> {
    notify: Arc<Notify>,
    link: Arc<LinkState>,
    stop: watch::Sender<bool>,
    events: broadcast::Sender<SyncEvent>,
    task: JoinHandle<L>,
}

impl<L> std::fmt::Debug for SyncHandle<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHandle").finish_non_exhaustive()
    }
}

impl<L> SyncHandle<L> {
    /// Events were appended to the outbox: send them soon.
    pub fn outbox_changed(&self) {
        self.notify.notify_one();
    }

    /// The signal behind [`SyncHandle::outbox_changed`], for code that
    /// appends events without holding the handle.
    pub fn outbox_notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.notify)
    }

    /// The connection state, kept current by the driver.
    pub fn link(&self) -> Arc<LinkState> {
        Arc::clone(&self.link)
    }

    /// What the engine does from now on (a lagging receiver loses the
    /// oldest).
    pub fn events(&self) -> broadcast::Receiver<SyncEvent> {
        self.events.subscribe()
    }

    /// Publishes presence OFFLINE, disconnects and returns the local state.
    /// `None` if the task had panicked or was aborted.
    pub async fn shutdown(self) -> Option<L> {
        let _ = self.stop.send(true);
        self.task.await.ok()
    }

    /// Stops at once, without a DISCONNECT (like a crash: the broker sends
    /// the last will once it notices).
    pub fn abort(self) {
        self.task.abort();
    }
}

fn qos(q: Qos) -> QoS {
    match q {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    }
}

/// Starts the engine in a tokio task (call inside a runtime).
pub fn spawn<L: LocalState + Send + 'static>(
    cfg: SyncConfig,
    mqtt: MqttSettings,
    local: L,
) -> SyncHandle<L> {
    let notify = Arc::new(Notify::new());
    let (stop, stop_rx) = watch::channel(false);
    let (events, _) = broadcast::channel(1024);
    let link = Arc::new(LinkState::default());
    let task = tokio::spawn(run(
        cfg,
        mqtt,
        local,
        notify.clone(),
        Arc::clone(&link),
        stop_rx,
        events.clone(),
    ));
    SyncHandle {
        notify,
        link,
        stop,
        events,
        task,
    }
}

enum Loop {
    Connected,
    Message(String, Vec<u8>),
    Down(String),
}

async fn run<L: LocalState>(
    cfg: SyncConfig,
    mqtt: MqttSettings,
    mut local: L,
    notify: Arc<Notify>,
    link: Arc<LinkState>,
    mut stop: watch::Receiver<bool>,
    events: broadcast::Sender<SyncEvent>,
) -> L {
    let mut core = SyncCore::new(cfg);
    let will = core.last_will(&local);
    let mut opts = MqttOptions::new(mqtt.client_id.clone(), mqtt.host.clone(), mqtt.port);
    opts.set_keep_alive(mqtt.keep_alive.max(Duration::from_secs(1)))
        .set_clean_session(mqtt.client_id.is_empty())
        .set_max_packet_size(mqtt.max_incoming_packet, crate::MAX_PAYLOAD + 4 * 1024)
        .set_last_will(LastWill::new(
            will.topic,
            will.payload,
            qos(will.qos),
            will.retain,
        ));
    if let Some(tls) = &mqtt.tls {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    let (tx, mut rx) = mpsc::channel::<Loop>(256);
    let delay = mqtt.reconnect_delay;
    let contact = Arc::clone(&link);
    let poller = tokio::spawn(async move {
        loop {
            let polled = eventloop.poll().await;
            if let Ok(Event::Incoming(_)) = &polled {
                contact.touch();
            }
            let item = match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => Loop::Connected,
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    Loop::Message(p.topic, p.payload.to_vec())
                }
                Ok(_) => continue,
                Err(e) => {
                    let gone = tx.send(Loop::Down(e.to_string())).await.is_err();
                    if gone {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    // Aborted with this future too (a `SyncHandle::abort` must drop the
    // connection, as a crash would).
    let _poller = AbortOnDrop(poller);
    let mut pending: std::collections::VecDeque<Publish> = Default::default();
    let mut connected = false;
    loop {
        while let Some(p) = core.poll_publish() {
            pending.push_back(p);
        }
        while let Some(e) = core.poll_event() {
            match &e {
                SyncEvent::Rejected { .. } => tracing::warn!(?e, "sync"),
                _ => tracing::debug!(?e, "sync"),
            }
            let _ = events.send(e);
        }
        while let Some(p) = pending.front() {
            match client.try_publish(p.topic.clone(), qos(p.qos), p.retain, p.payload.clone()) {
                Ok(()) => {
                    pending.pop_front();
                }
                Err(ClientError::TryRequest(_)) | Err(ClientError::Request(_)) => break,
            }
        }
        let wake = core.poll_timeout();
        let retry = (!pending.is_empty()).then(|| Instant::now() + Duration::from_millis(10));
        let wake = match (wake.map(Instant::from_std), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            _ = stop.changed() => break,
            _ = notify.notified() => {
                core.handle_outbox_changed(&mut local, std::time::Instant::now());
            }
            _ = async { match wake { Some(w) => tokio::time::sleep_until(w).await, None => std::future::pending().await } } => {
                core.handle_timeout(&mut local, std::time::Instant::now());
            }
            item = rx.recv() => match item {
                Some(Loop::Connected) => {
                    for topic in core.subscriptions() {
                        if let Err(e) = client.try_subscribe(topic, QoS::AtLeastOnce) {
                            tracing::warn!("subscribe failed: {e}");
                        }
                    }
                    // What was queued for the old connection: rumqttc
                    // resends its own unacknowledged publishes; the engine
                    // resends events from the outbox.
                    pending.clear();
                    connected = true;
                    link.connected.store(true, Ordering::Relaxed);
                    tracing::info!("connected to the MQTT broker");
                    core.handle_connected(&mut local, std::time::Instant::now());
                }
                Some(Loop::Message(topic, payload)) => {
                    core.handle_message(&mut local, &topic, &payload, std::time::Instant::now());
                }
                Some(Loop::Down(e)) => {
                    link.connected.store(false, Ordering::Relaxed);
                    if connected {
                        tracing::warn!("MQTT connection lost: {e}");
                        connected = false;
                    } else {
                        tracing::debug!("MQTT connection failed: {e}");
                    }
                    if core.is_connected() {
                        core.handle_disconnected(std::time::Instant::now());
                    }
                }
                None => break,
            },
        }
    }
    // Graceful stop: say offline, then disconnect.
    link.connected.store(false, Ordering::Relaxed);
    if connected {
        let p = core.last_will(&local);
        let _ = client.try_publish(p.topic, qos(p.qos), p.retain, p.payload);
        let _ = client.try_disconnect();
        // Let the event loop send both.
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Ok(Some(item)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            if let Loop::Down(_) = item {
                break;
            }
        }
    }
    local
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
