//! The hub's side of the cloud sync over MQTT (the contract is
//! `docs/mqtt-api.md`, the messages are in `hub-proto`).
//!
//! - [`topics`]: the topic scheme `t/{tenant}/h/{hub}/{kind}`.
//! - [`SyncCore`]: the sans-IO state machine. Feed it connection changes,
//!   incoming messages and timeouts (`handle_*`, with the time passed in);
//!   take what it wants published from [`SyncCore::poll_publish`] and when it
//!   wants to be woken from [`SyncCore::poll_timeout`]. It reaches the hub's
//!   data set, outbox and doors through the [`LocalState`] trait.
//! - [`driver`]: the thin tokio driver over `rumqttc` (MQTT 3.1.1, QoS 0/1,
//!   persistent session, presence as last will) with rustls mTLS: a client
//!   certificate and a pinned CA, no web PKI roots ([`driver::tls_config`]).
//!
//! Driving it:
//!
//! ```no_run
//! # async fn demo(local: impl hub_sync::LocalState + Send + 'static)
//! #     -> Result<(), hub_sync::driver::DriverError> {
//! use hub_sync::driver::{self, MqttSettings, TlsFiles};
//! use hub_sync::{SyncConfig, Topics};
//!
//! let topics = Topics::new("acme", "hub-1")?;
//! let tls = driver::tls_config(&TlsFiles {
//!     ca: "/etc/hub/ca.pem".into(),
//!     cert: "/etc/hub/hub.pem".into(),
//!     key: "/etc/hub/hub.key".into(),
//! })?;
//! let mqtt = MqttSettings::tls("broker.example", 8883, "hub-1", tls);
//! let handle = driver::spawn(SyncConfig::new(topics), mqtt, local);
//! handle.outbox_changed(); // after appending events
//! handle.shutdown().await;
//! # Ok(()) }
//! ```

pub mod core;
pub mod driver;
pub mod local;
pub mod topics;

pub use crate::core::{
    Publish, Qos, SyncConfig, SyncCore, SyncEvent, MAX_PAYLOAD, RECENT_COMMANDS,
};
pub use driver::LinkState;
pub use local::{entity_key, LocalError, LocalState};
pub use topics::{Kind, TopicError, Topics};

pub use hub_proto::v1 as proto;
