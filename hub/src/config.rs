//! The hub's configuration file (TOML), parsed once into a checked
//! [`Config`].
//!
//! `hub run --config FILE` and `hub check-config --config FILE` call
//! [`load`]: it reads the file, parses it into raw serde structs (with the
//! byte span of every value that can be wrong) and then validates everything
//! at once — time zone, names and references, addresses, durations, key
//! files — into [`Config`], whose types can no longer be wrong: buses are
//! [`BusConfig`]s with their devices and keys loaded, doors are
//! [`DoorWiring`]s, storage is a [`StoreConfig`]. Each problem is one
//! [`ConfigError`] naming the key and the line; [`ConfigErrors`] carries all
//! of them, so a technician fixes the file in one round.
//!
//! Relative paths in the file are relative to the file's own directory.
//! Secret files (secure channel keys, the API key, the MQTT client key) must
//! not be readable by group or others; their contents never appear in an
//! error. The sections and every key are described in `docs/config.md`;
//! `hub/examples/hub.toml` is a complete commented example.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use osdp::cp::{CpConfig, PdConfig, Security, MAX_ADDRESS};
use osdp::sc::Key;
use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use crate::access_input::{InputConfig, InputMode, ReaderId};
use crate::bus::{BusConfig, Rs485Config, SIM_PORT};
use crate::check_api::ApiKey;
use crate::door::DoorConfig;
use crate::site::{DoorWiring, Point};
use crate::store::StoreConfig;
use crate::web::auth::Credentials;

/// Longest door pulse, held-open time or PIN timeout accepted (1 hour).
pub const MAX_DOOR_TIME: Duration = Duration::from_secs(3600);

/// One problem in the config file. Every variant but [`ConfigError::Read`]
/// names the line (1-based) and, for semantic problems, the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read the config file: {source}")]
    Read {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or a key that is unknown, missing or of the wrong
    /// type (the message names it).
    #[error("line {line}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// What the parser says.
        message: String,
    },
    /// A value out of range or malformed.
    #[error("line {line}: {key}: {message}")]
    Invalid {
        /// The key, as `section.key`.
        key: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A reference to a bus or reader that is not defined.
    #[error("line {line}: {key}: no {kind} named {name:?}")]
    Unknown {
        /// The key holding the reference.
        key: String,
        /// 1-based line.
        line: usize,
        /// `bus` or `reader`.
        kind: &'static str,
        /// The name referenced.
        name: String,
    },
    /// A bus, reader or door name used twice.
    #[error("line {line}: {key}: {kind} {name:?} is already defined at line {first_line}")]
    Duplicate {
        /// The key holding the name.
        key: String,
        /// 1-based line of the second definition.
        line: usize,
        /// `bus`, `reader` or `door`.
        kind: &'static str,
        /// The name.
        name: String,
        /// Line of the first definition.
        first_line: usize,
    },
    /// Two readers with the same address on one bus.
    #[error(
        "line {line}: {key}: address {address} on bus {bus:?} is already used by reader \
         {other:?} (line {first_line})"
    )]
    DuplicateAddress {
        /// The key (`reader.address`).
        key: String,
        /// 1-based line.
        line: usize,
        /// The bus's name.
        bus: String,
        /// The address.
        address: u8,
        /// The reader that has it first.
        other: String,
        /// That reader's line.
        first_line: usize,
    },
    /// A reader is the entry or exit reader of more than one door.
    #[error("line {line}: {key}: reader {reader:?} is already wired to door {door:?}")]
    ReaderTwice {
        /// The key (`door.entry_reader` or `door.exit_reader`).
        key: String,
        /// 1-based line.
        line: usize,
        /// The reader's name.
        reader: String,
        /// The door it is already wired to.
        door: String,
    },
    /// Not an IANA time zone name known to this hub.
    #[error("line {line}: {key}: unknown time zone {name:?} (expected an IANA name such as Europe/Berlin)")]
    TimeZone {
        /// The key (`site.time_zone`).
        key: String,
        /// 1-based line.
        line: usize,
        /// The name given.
        name: String,
    },
    /// A file the config names is missing, unreadable, malformed or, for a
    /// secret, readable by others. Never shows the file's contents.
    #[error("line {line}: {key}: {path}: {problem}")]
    File {
        /// The key naming the file.
        key: String,
        /// 1-based line.
        line: usize,
        /// The path (resolved against the config file's directory).
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

impl ConfigError {
    /// The line the problem is on (`None` for [`ConfigError::Read`]).
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { line, .. }
            | ConfigError::Invalid { line, .. }
            | ConfigError::Unknown { line, .. }
            | ConfigError::Duplicate { line, .. }
            | ConfigError::DuplicateAddress { line, .. }
            | ConfigError::ReaderTwice { line, .. }
            | ConfigError::TimeZone { line, .. }
            | ConfigError::File { line, .. } => Some(*line),
        }
    }

    /// The key the problem is about (`None` for read and syntax errors).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
            ConfigError::Invalid { key, .. }
            | ConfigError::Unknown { key, .. }
            | ConfigError::Duplicate { key, .. }
            | ConfigError::DuplicateAddress { key, .. }
            | ConfigError::ReaderTwice { key, .. }
            | ConfigError::TimeZone { key, .. }
            | ConfigError::File { key, .. } => Some(key),
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Error)]
pub struct ConfigErrors {
    /// The config file.
    pub path: PathBuf,
    /// The problems, in the order of the file.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    /// One line per problem: `hub.toml: line 12: reader.bus: no bus named "b2"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {e}", self.path.display())?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The checked configuration
// ---------------------------------------------------------------------------

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[site]`.
    pub site: SiteSettings,
    /// `[[bus]]`, in file order; a bus's index is its bus number in
    /// [`ReaderId::bus`] and [`Point::bus`].
    pub buses: Vec<BusSettings>,
    /// `[[reader]]`.
    pub readers: Vec<ReaderSettings>,
    /// `[[door]]`, wired to readers and points.
    pub doors: Vec<DoorWiring>,
    /// `[storage]`.
    pub storage: StoreConfig,
    /// `[api]`: the HTTP check and events endpoints (absent: not served).
    pub api: Option<ApiSettings>,
    /// `[mqtt]`: the cloud sync's broker and identity (none: no sync).
    pub mqtt: Option<MqttSettings>,
    /// `[web]`: the technician's web page (absent: not served).
    pub web: Option<WebSettings>,
}

/// `[site]`.
#[derive(Debug, Clone)]
pub struct SiteSettings {
    /// The site's id (the data set's `site.id` should match).
    pub id: String,
    /// IANA time zone, known to exist.
    pub time_zone: String,
    /// JSON data set that seeds an empty store.
    pub dataset_file: Option<PathBuf>,
}

/// One `[[bus]]`.
#[derive(Debug, Clone)]
pub struct BusSettings {
    /// Its name (readers refer to it).
    pub name: String,
    /// Port, speed, RS-485, timings and the devices (keys loaded).
    pub config: BusConfig,
}

/// One `[[reader]]`.
#[derive(Debug, Clone)]
pub struct ReaderSettings {
    /// Its name (doors refer to it; events show it).
    pub name: String,
    /// Where it is: bus number, device address, reader number.
    pub id: ReaderId,
    /// Which credentials it takes.
    pub input: InputConfig,
}

/// `[api]`.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Address to listen on (port 0: any free port, reported at start).
    pub listen: SocketAddr,
    /// The key clients must send in `X-API-Key`.
    pub api_key: ApiKey,
}

/// `[mqtt]` (for the coming cloud sync).
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// `mqtt://host[:port]` or `mqtts://host[:port]`.
    pub url: String,
    /// Tenant (topic prefix).
    pub tenant: String,
    /// This hub's id (topic level, client id).
    pub hub_id: String,
    /// CA certificate(s) to trust, PEM.
    pub ca_file: Option<PathBuf>,
    /// Client certificate, PEM.
    pub cert_file: Option<PathBuf>,
    /// Client key, PEM (a secret).
    pub key_file: Option<PathBuf>,
    /// MQTT keepalive.
    pub keepalive: Duration,
}

/// `[web]`: the technician's web page ([`crate::web`]).
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Login name.
    pub user: String,
    /// PHC password hash (`$argon2id$...`); `Debug` shows it, it is not the
    /// password.
    pub password_hash: String,
    /// The login built from `user` and `password_hash` (checked).
    pub credentials: Credentials,
}

impl Config {
    /// The name of the reader at `id`, if one is configured.
    pub fn reader_name(&self, id: &ReaderId) -> Option<&str> {
        self.readers
            .iter()
            .find(|r| r.id == *id)
            .map(|r| r.name.as_str())
    }
}

// ---------------------------------------------------------------------------
// Raw serde form
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    site: RawSite,
    #[serde(default)]
    bus: Vec<Spanned<RawBus>>,
    #[serde(default)]
    reader: Vec<Spanned<RawReader>>,
    #[serde(default)]
    door: Vec<Spanned<RawDoor>>,
    storage: RawStorage,
    api: Option<RawApi>,
    mqtt: Option<RawMqtt>,
    web: Option<RawWeb>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    id: Spanned<String>,
    time_zone: Spanned<String>,
    dataset_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBus {
    name: Spanned<String>,
    port: Spanned<String>,
    #[serde(default = "default_baud")]
    baud: Spanned<u32>,
    #[serde(default)]
    rs485: bool,
    rs485_rts_low: Option<Spanned<bool>>,
    rs485_rx_during_tx: Option<Spanned<bool>>,
    rs485_delay_before_ms: Option<Spanned<u32>>,
    rs485_delay_after_ms: Option<Spanned<u32>>,
    reply_timeout_ms: Option<Spanned<u64>>,
    offline_timeout_ms: Option<Spanned<u64>>,
    poll_interval_ms: Option<Spanned<u64>>,
}

fn default_baud() -> Spanned<u32> {
    Spanned::new(0..0, 9600)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReader {
    name: Spanned<String>,
    bus: Spanned<String>,
    address: Spanned<i64>,
    #[serde(default)]
    reader_no: u8,
    key_file: Option<Spanned<String>>,
    security: Option<Spanned<String>>,
    #[serde(default)]
    mode: Option<Spanned<String>>,
    min_pin_len: Option<usize>,
    max_pin_len: Option<usize>,
    inter_digit_timeout_s: Option<f64>,
    pin_window_s: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoint {
    reader: Spanned<String>,
    output: Option<u8>,
    input: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoor {
    id: Spanned<String>,
    entry_reader: Spanned<String>,
    exit_reader: Option<Spanned<String>>,
    strike: Spanned<RawPoint>,
    position: Option<Spanned<RawPoint>>,
    rex: Option<Spanned<RawPoint>>,
    pulse_s: Option<Spanned<f64>>,
    extended_pulse_s: Option<Spanned<f64>>,
    held_open_s: Option<Spanned<f64>>,
    #[serde(default = "yes")]
    rex_releases_strike: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: Spanned<String>,
    cache_mb: Option<Spanned<u64>>,
    outbox_alarm_bytes: Option<Spanned<u64>>,
    outbox_max_bytes: Option<Spanned<u64>>,
    flush_interval_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Spanned<String>,
    api_key_file: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    url: Spanned<String>,
    tenant: Spanned<String>,
    hub_id: Spanned<String>,
    ca_file: Option<Spanned<String>>,
    cert_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    keepalive_s: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    listen: Spanned<String>,
    user: Spanned<String>,
    password_hash: Spanned<String>,
}

// ---------------------------------------------------------------------------
// Loading and checking
// ---------------------------------------------------------------------------

/// Reads and checks the config file at `path`.
pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigErrors {
        path: path.to_owned(),
        errors: vec![ConfigError::Read { source }],
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|errors| ConfigErrors {
        path: path.to_owned(),
        errors,
    })
}

/// Parses and checks config text; relative paths resolve against `base`.
pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<ConfigError>> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        vec![ConfigError::Syntax {
            line,
            message: e.message().trim().to_owned(),
        }]
    })?;
    let mut c = Checker {
        text,
        base,
        errors: Vec::new(),
    };
    let config = c.check(raw);
    if c.errors.is_empty() {
        Ok(config)
    } else {
        c.errors.sort_by_key(|e| e.line().unwrap_or(0));
        Err(c.errors)
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Items with the line they are defined on (for "already defined at").
type Lined<T> = Vec<(usize, T)>;

struct Checker<'a> {
    text: &'a str,
    base: &'a Path,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    fn invalid(&mut self, key: &str, span: Range<usize>, message: impl Into<String>) {
        let line = self.line(span);
        self.errors.push(ConfigError::Invalid {
            key: key.into(),
            line,
            message: message.into(),
        });
    }

    fn file_error(&mut self, key: &str, span: Range<usize>, path: &Path, problem: String) {
        let line = self.line(span);
        self.errors.push(ConfigError::File {
            key: key.into(),
            line,
            path: path.to_owned(),
            problem,
        });
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    fn name(&mut self, key: &str, name: &Spanned<String>) -> String {
        let n = name.get_ref().trim();
        if n.is_empty() {
            self.invalid(key, name.span(), "must not be empty");
        }
        n.to_owned()
    }

    /// Seconds as a duration in (0, [`MAX_DOOR_TIME`]].
    fn seconds(&mut self, key: &str, value: Option<&Spanned<f64>>, default: Duration) -> Duration {
        let Some(v) = value else { return default };
        let s = *v.get_ref();
        if !(s.is_finite() && s > 0.0 && s <= MAX_DOOR_TIME.as_secs_f64()) {
            self.invalid(
                key,
                v.span(),
                "must be more than 0 and at most 3600 seconds",
            );
            return default;
        }
        Duration::from_secs_f64(s)
    }

    fn millis(
        &mut self,
        key: &str,
        value: Option<&Spanned<u64>>,
        range: Range<u64>,
        default: Duration,
    ) -> Duration {
        let Some(v) = value else { return default };
        let ms = *v.get_ref();
        if !range.contains(&ms) {
            self.invalid(
                key,
                v.span(),
                format!("must be {} to {} ms", range.start, range.end - 1),
            );
            return default;
        }
        Duration::from_millis(ms)
    }

    /// Reads a file the config names; for secrets, refuses a file readable
    /// by group or others.
    fn read_file(&mut self, key: &str, spanned: &Spanned<String>, secret: bool) -> Option<String> {
        let path = self.path(spanned.get_ref());
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => zeroize::Zeroizing::new(t),
            Err(e) => {
                self.file_error(key, spanned.span(), &path, format!("cannot read: {e}"));
                return None;
            }
        };
        if secret {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(meta) = std::fs::metadata(&path) {
                    let mode = meta.permissions().mode() & 0o777;
                    if mode & 0o077 != 0 {
                        self.file_error(
                            key,
                            spanned.span(),
                            &path,
                            format!(
                                "holds a secret but is readable by others (mode {mode:03o}); \
                                 chmod 600 it"
                            ),
                        );
                        return None;
                    }
                }
            }
        }
        Some(text.to_string())
    }

    /// Checks a file exists and is readable, without keeping its contents.
    fn readable(&mut self, key: &str, spanned: &Spanned<String>, secret: bool) -> PathBuf {
        let path = self.path(spanned.get_ref());
        if let Some(text) = self.read_file(key, spanned, secret) {
            // A secret only passes through here.
            drop(zeroize::Zeroizing::new(text));
        }
        path
    }

    fn listen(&mut self, key: &str, value: &Spanned<String>) -> Option<SocketAddr> {
        match value.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.invalid(
                    key,
                    value.span(),
                    format!(
                        "{:?} is not an address and port such as 127.0.0.1:8080",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn check(&mut self, raw: RawConfig) -> Config {
        let site = self.site(&raw.site);
        let buses = self.buses(&raw.bus);
        let (readers, buses) = self.readers(&raw.reader, buses);
        let doors = self.doors(&raw.door, &raw.reader, &readers);
        let storage = self.storage(&raw.storage);
        let api = raw.api.as_ref().and_then(|a| self.api(a));
        let mqtt = raw.mqtt.as_ref().and_then(|m| self.mqtt(m));
        let web = raw.web.as_ref().and_then(|w| self.web(w));
        Config {
            site,
            buses: buses.into_iter().map(|(_, b)| b).collect(),
            readers: readers.into_iter().map(|(_, r)| r).collect(),
            doors,
            storage,
            api,
            mqtt,
            web,
        }
    }

    fn site(&mut self, raw: &RawSite) -> SiteSettings {
        let id = self.name("site.id", &raw.id);
        let tz = raw.time_zone.get_ref().trim().to_owned();
        if jiff::tz::TimeZone::get(&tz).is_err() {
            let line = self.line(raw.time_zone.span());
            self.errors.push(ConfigError::TimeZone {
                key: "site.time_zone".into(),
                line,
                name: tz.clone(),
            });
        }
        let dataset_file = raw
            .dataset_file
            .as_ref()
            .map(|f| self.readable("site.dataset_file", f, false));
        SiteSettings {
            id,
            time_zone: tz,
            dataset_file,
        }
    }

    /// Buses with the line of their name; devices are added by `readers`.
    fn buses(&mut self, raw: &[Spanned<RawBus>]) -> Lined<BusSettings> {
        let mut out: Lined<BusSettings> = Vec::new();
        for b in raw {
            let b = b.get_ref();
            let name = self.name("bus.name", &b.name);
            let line = self.line(b.name.span());
            if let Some((first_line, _)) = out.iter().find(|(_, o)| o.name == name) {
                self.errors.push(ConfigError::Duplicate {
                    key: "bus.name".into(),
                    line,
                    kind: "bus",
                    name: name.clone(),
                    first_line: *first_line,
                });
            }
            let port = b.port.get_ref().trim().to_owned();
            if port.is_empty() {
                self.invalid("bus.port", b.port.span(), "must not be empty");
            }
            let baud = *b.baud.get_ref();
            if !(1200..=1_000_000).contains(&baud) {
                self.invalid("bus.baud", b.baud.span(), "must be 1200 to 1000000");
            }
            let options = [
                (
                    "bus.rs485_rts_low",
                    b.rs485_rts_low.as_ref().map(|s| s.span()),
                ),
                (
                    "bus.rs485_rx_during_tx",
                    b.rs485_rx_during_tx.as_ref().map(|s| s.span()),
                ),
                (
                    "bus.rs485_delay_before_ms",
                    b.rs485_delay_before_ms.as_ref().map(|s| s.span()),
                ),
                (
                    "bus.rs485_delay_after_ms",
                    b.rs485_delay_after_ms.as_ref().map(|s| s.span()),
                ),
            ];
            if b.rs485 && port == SIM_PORT {
                self.invalid(
                    "bus.rs485",
                    b.port.span(),
                    "a simulated bus (port = \"sim:\") has no RS-485 settings",
                );
            }
            if !b.rs485 {
                for (key, span) in options {
                    if let Some(span) = span {
                        self.invalid(key, span, "needs rs485 = true");
                    }
                }
            }
            let rts_low = b.rs485_rts_low.as_ref().is_some_and(|v| *v.get_ref());
            let rs485 = b.rs485.then(|| Rs485Config {
                rts_on_send: !rts_low,
                rts_after_send: rts_low,
                rx_during_tx: b.rs485_rx_during_tx.as_ref().is_some_and(|v| *v.get_ref()),
                delay_before_send_ms: b.rs485_delay_before_ms.as_ref().map_or(0, |v| *v.get_ref()),
                delay_after_send_ms: b.rs485_delay_after_ms.as_ref().map_or(0, |v| *v.get_ref()),
            });
            let defaults = CpConfig::default();
            let cp = CpConfig {
                reply_timeout: self.millis(
                    "bus.reply_timeout_ms",
                    b.reply_timeout_ms.as_ref(),
                    10..10_001,
                    defaults.reply_timeout,
                ),
                offline_timeout: self.millis(
                    "bus.offline_timeout_ms",
                    b.offline_timeout_ms.as_ref(),
                    500..600_001,
                    defaults.offline_timeout,
                ),
                poll_interval: self.millis(
                    "bus.poll_interval_ms",
                    b.poll_interval_ms.as_ref(),
                    1..10_001,
                    defaults.poll_interval,
                ),
                baud,
                ..defaults
            };
            let mut config = BusConfig::new(port, baud, Vec::new());
            config.rs485 = rs485;
            config.cp = cp;
            out.push((line, BusSettings { name, config }));
        }
        out
    }

    fn readers(
        &mut self,
        raw: &[Spanned<RawReader>],
        mut buses: Lined<BusSettings>,
    ) -> (Lined<ReaderSettings>, Lined<BusSettings>) {
        let mut out: Vec<(usize, ReaderSettings)> = Vec::new();
        // (bus, address) -> (reader name, line)
        let mut addresses: HashMap<(u16, u8), (String, usize)> = HashMap::new();
        for r in raw {
            let r = r.get_ref();
            let name = self.name("reader.name", &r.name);
            let line = self.line(r.name.span());
            if let Some((first_line, _)) = out.iter().find(|(_, o)| o.name == name) {
                self.errors.push(ConfigError::Duplicate {
                    key: "reader.name".into(),
                    line,
                    kind: "reader",
                    name: name.clone(),
                    first_line: *first_line,
                });
            }
            let bus_name = r.bus.get_ref().trim();
            let bus = buses.iter().position(|(_, b)| b.name == bus_name);
            if bus.is_none() {
                let line = self.line(r.bus.span());
                self.errors.push(ConfigError::Unknown {
                    key: "reader.bus".into(),
                    line,
                    kind: "bus",
                    name: bus_name.to_owned(),
                });
            }
            let address = match u8::try_from(*r.address.get_ref()) {
                Ok(a) if a <= MAX_ADDRESS => Some(a),
                _ => {
                    self.invalid(
                        "reader.address",
                        r.address.span(),
                        format!("{} is not a device address (0 to 126)", r.address.get_ref()),
                    );
                    None
                }
            };
            let security = self.security(r);
            let input = self.input(r);
            let (Some(bus), Some(address)) = (bus, address) else {
                continue;
            };
            let bus_no = u16::try_from(bus).unwrap_or(u16::MAX);
            if let Some((other, first_line)) = addresses.get(&(bus_no, address)) {
                let line = self.line(r.address.span());
                self.errors.push(ConfigError::DuplicateAddress {
                    key: "reader.address".into(),
                    line,
                    bus: bus_name.to_owned(),
                    address,
                    other: other.clone(),
                    first_line: *first_line,
                });
                continue;
            }
            addresses.insert((bus_no, address), (name.clone(), line));
            if let Some(security) = security {
                buses[bus].1.config.pds.push(PdConfig { address, security });
            }
            out.push((
                line,
                ReaderSettings {
                    name,
                    id: ReaderId::new(bus_no, address, r.reader_no),
                    input,
                },
            ));
        }
        (out, buses)
    }

    fn security(&mut self, r: &RawReader) -> Option<Security> {
        match (&r.key_file, &r.security) {
            (Some(file), None) => {
                let text = self.read_file("reader.key_file", file, true)?;
                let text = zeroize::Zeroizing::new(text);
                match Key::from_hex(text.trim()) {
                    Ok(key) => Some(Security::Secure(key)),
                    Err(_) => {
                        let path = self.path(file.get_ref());
                        self.file_error(
                            "reader.key_file",
                            file.span(),
                            &path,
                            "must hold the secure channel key as 32 hex digits".into(),
                        );
                        None
                    }
                }
            }
            (None, Some(s)) => match s.get_ref().as_str() {
                "clear" => Some(Security::Clear),
                "install" => Some(Security::Install),
                other => {
                    self.invalid(
                        "reader.security",
                        s.span(),
                        format!(
                            "{other:?}: expected \"clear\" or \"install\" (a secure reader \
                             names its key_file instead)"
                        ),
                    );
                    None
                }
            },
            (Some(_), Some(s)) => {
                self.invalid(
                    "reader.security",
                    s.span(),
                    "give either key_file (secure channel) or security, not both",
                );
                None
            }
            (None, None) => {
                self.invalid(
                    "reader.name",
                    r.name.span(),
                    "needs key_file (secure channel) or security = \"clear\" / \"install\"",
                );
                None
            }
        }
    }

    fn input(&mut self, r: &RawReader) -> InputConfig {
        let mode = match r.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("card", _)) => InputMode::CardOnly,
            Some(("pin", _)) => InputMode::PinOnly,
            Some(("card_or_pin", _)) => InputMode::CardOrPin,
            Some(("card_and_pin", _)) => InputMode::CardAndPin,
            Some((other, span)) => {
                self.invalid(
                    "reader.mode",
                    span,
                    format!(
                        "{other:?}: expected \"card\", \"pin\", \"card_or_pin\" or \"card_and_pin\""
                    ),
                );
                InputMode::CardOnly
            }
        };
        let mut input = InputConfig::with_mode(mode);
        if let Some(n) = r.min_pin_len {
            input.min_pin_len = n;
        }
        if let Some(n) = r.max_pin_len {
            input.max_pin_len = n;
        }
        let secs = |s: Option<f64>, default: Duration| {
            s.filter(|s| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
                .map_or(default, Duration::from_secs_f64)
        };
        if let Some(s) = r.inter_digit_timeout_s {
            input.inter_digit_timeout = secs(Some(s), Duration::ZERO);
        }
        if let Some(s) = r.pin_window_s {
            input.pin_window = secs(Some(s), Duration::ZERO);
        }
        if let Err(e) = input.validate() {
            self.invalid("reader", r.name.span(), e.to_string());
        }
        input
    }

    fn doors(
        &mut self,
        raw: &[Spanned<RawDoor>],
        raw_readers: &[Spanned<RawReader>],
        readers: &[(usize, ReaderSettings)],
    ) -> Vec<DoorWiring> {
        let mut out: Vec<(usize, DoorWiring)> = Vec::new();
        // reader name -> door id
        let mut wired: HashMap<String, String> = HashMap::new();
        let find = |name: &str| readers.iter().find(|(_, r)| r.name == name).map(|(_, r)| r);
        // A reader that failed its own checks is not "unknown".
        let defined = |name: &str| {
            raw_readers
                .iter()
                .any(|r| r.get_ref().name.get_ref().trim() == name)
        };
        for d in raw {
            let d = d.get_ref();
            let id = self.name("door.id", &d.id);
            let line = self.line(d.id.span());
            if let Some((first_line, _)) = out.iter().find(|(_, o)| o.door == id) {
                self.errors.push(ConfigError::Duplicate {
                    key: "door.id".into(),
                    line,
                    kind: "door",
                    name: id.clone(),
                    first_line: *first_line,
                });
            }
            let reader = |c: &mut Self, key: &str, name: &Spanned<String>| {
                let n = name.get_ref().trim();
                let found = find(n).map(|r| r.id);
                if found.is_none() && !defined(n) {
                    let line = c.line(name.span());
                    c.errors.push(ConfigError::Unknown {
                        key: key.into(),
                        line,
                        kind: "reader",
                        name: n.to_owned(),
                    });
                }
                found
            };
            let mut wire = |c: &mut Self, key: &str, name: &Spanned<String>| {
                let r = reader(c, key, name);
                let n = name.get_ref().trim().to_owned();
                if r.is_some() {
                    if let Some(door) = wired.get(&n) {
                        let line = c.line(name.span());
                        c.errors.push(ConfigError::ReaderTwice {
                            key: key.into(),
                            line,
                            reader: n,
                            door: door.clone(),
                        });
                    } else {
                        wired.insert(n, id.clone());
                    }
                }
                r
            };
            let entry = wire(self, "door.entry_reader", &d.entry_reader);
            let exit = d
                .exit_reader
                .as_ref()
                .map(|e| wire(self, "door.exit_reader", e));
            let point = |c: &mut Self, key: &str, p: &Spanned<RawPoint>, output: bool| {
                let raw = p.get_ref();
                let r = reader(c, &format!("{key}.reader"), &raw.reader);
                let (no, other) = if output {
                    (raw.output, raw.input.map(|_| "input"))
                } else {
                    (raw.input, raw.output.map(|_| "output"))
                };
                if let Some(other) = other {
                    c.invalid(key, p.span(), format!("takes no {other} number"));
                }
                let Some(no) = no else {
                    let want = if output { "output" } else { "input" };
                    c.invalid(key, p.span(), format!("needs {want} = N"));
                    return None;
                };
                r.map(|r| Point {
                    bus: r.bus,
                    pd: r.pd,
                    no,
                })
            };
            let strike = point(self, "door.strike", &d.strike, true);
            let position = d
                .position
                .as_ref()
                .map(|p| point(self, "door.position", p, false));
            let rex = d.rex.as_ref().map(|p| point(self, "door.rex", p, false));
            let defaults = DoorConfig::default();
            let config = DoorConfig {
                pulse: self.seconds("door.pulse_s", d.pulse_s.as_ref(), defaults.pulse),
                extended_pulse: self.seconds(
                    "door.extended_pulse_s",
                    d.extended_pulse_s.as_ref(),
                    defaults.extended_pulse,
                ),
                held_open_after: self.seconds(
                    "door.held_open_s",
                    d.held_open_s.as_ref(),
                    defaults.held_open_after,
                ),
                rex_releases_strike: d.rex_releases_strike,
                has_position_switch: d.position.is_some(),
            };
            let (Some(entry), Some(strike)) = (entry, strike) else {
                continue;
            };
            let (Some(exit), Some(position), Some(rex)) = (
                exit.map_or(Some(None), |e| e.map(Some)),
                position.map_or(Some(None), |p| p.map(Some)),
                rex.map_or(Some(None), |p| p.map(Some)),
            ) else {
                continue;
            };
            out.push((
                line,
                DoorWiring {
                    door: id,
                    entry,
                    exit,
                    strike,
                    position,
                    rex,
                    config,
                },
            ));
        }
        out.into_iter().map(|(_, d)| d).collect()
    }

    fn storage(&mut self, raw: &RawStorage) -> StoreConfig {
        let path = raw.path.get_ref().trim();
        if path.is_empty() {
            self.invalid("storage.path", raw.path.span(), "must not be empty");
        }
        let mut config = StoreConfig::new(self.path(path));
        if let Some(mb) = &raw.cache_mb {
            if (1..=4096).contains(mb.get_ref()) {
                config.cache_capacity = mb.get_ref() * 1024 * 1024;
            } else {
                self.invalid("storage.cache_mb", mb.span(), "must be 1 to 4096");
            }
        }
        config.flush_interval = self.millis(
            "storage.flush_interval_ms",
            raw.flush_interval_ms.as_ref(),
            1..1001,
            config.flush_interval,
        );
        const MIN: u64 = 64 * 1024;
        if let Some(v) = &raw.outbox_alarm_bytes {
            if *v.get_ref() < MIN {
                self.invalid(
                    "storage.outbox_alarm_bytes",
                    v.span(),
                    "must be at least 65536",
                );
            } else {
                config.outbox_limit_bytes = *v.get_ref();
                config.outbox_hard_limit_bytes = config.outbox_limit_bytes.saturating_mul(2);
            }
        }
        if let Some(v) = &raw.outbox_max_bytes {
            if *v.get_ref() < config.outbox_limit_bytes {
                self.invalid(
                    "storage.outbox_max_bytes",
                    v.span(),
                    format!(
                        "must be at least outbox_alarm_bytes ({})",
                        config.outbox_limit_bytes
                    ),
                );
            } else {
                config.outbox_hard_limit_bytes = *v.get_ref();
            }
        }
        config
    }

    fn api(&mut self, raw: &RawApi) -> Option<ApiSettings> {
        let listen = self.listen("api.listen", &raw.listen);
        let text = self.read_file("api.api_key_file", &raw.api_key_file, true)?;
        let text = zeroize::Zeroizing::new(text);
        let api_key = match ApiKey::new(&text) {
            Ok(k) => k,
            Err(e) => {
                let path = self.path(raw.api_key_file.get_ref());
                self.file_error(
                    "api.api_key_file",
                    raw.api_key_file.span(),
                    &path,
                    e.to_string(),
                );
                return None;
            }
        };
        Some(ApiSettings {
            listen: listen?,
            api_key,
        })
    }

    fn mqtt(&mut self, raw: &RawMqtt) -> Option<MqttSettings> {
        let url = raw.url.get_ref().trim().to_owned();
        let host = url
            .strip_prefix("mqtts://")
            .or_else(|| url.strip_prefix("mqtt://"));
        match host {
            Some(h) if !h.is_empty() && !h.starts_with(':') && !h.contains('/') => {}
            _ => self.invalid(
                "mqtt.url",
                raw.url.span(),
                "expected mqtts://host[:port] or mqtt://host[:port]",
            ),
        }
        let topic_level = |c: &mut Self, key: &str, v: &Spanned<String>| {
            let s = v.get_ref().trim().to_owned();
            if s.is_empty() || s.contains(['/', '+', '#']) || s.chars().any(char::is_whitespace) {
                c.invalid(
                    key,
                    v.span(),
                    "must be non-empty, without '/', '+', '#' or spaces (it is an MQTT topic level)",
                );
            }
            s
        };
        let tenant = topic_level(self, "mqtt.tenant", &raw.tenant);
        let hub_id = topic_level(self, "mqtt.hub_id", &raw.hub_id);
        let ca_file = raw
            .ca_file
            .as_ref()
            .map(|f| self.readable("mqtt.ca_file", f, false));
        let cert_file = raw
            .cert_file
            .as_ref()
            .map(|f| self.readable("mqtt.cert_file", f, false));
        let key_file = raw
            .key_file
            .as_ref()
            .map(|f| self.readable("mqtt.key_file", f, true));
        if url.starts_with("mqtts://")
            && (ca_file.is_none() || cert_file.is_none() || key_file.is_none())
        {
            self.invalid(
                "mqtt.url",
                raw.url.span(),
                "mqtts needs ca_file, cert_file and key_file (mutual TLS with a pinned CA)",
            );
        }
        if cert_file.is_some() != key_file.is_some() {
            self.invalid(
                "mqtt.cert_file",
                raw.url.span(),
                "cert_file and key_file go together (client certificate)",
            );
        }
        let keepalive = match &raw.keepalive_s {
            None => Duration::from_secs(30),
            Some(v) if (5..=3600).contains(v.get_ref()) => Duration::from_secs(*v.get_ref()),
            Some(v) => {
                self.invalid("mqtt.keepalive_s", v.span(), "must be 5 to 3600");
                Duration::from_secs(30)
            }
        };
        Some(MqttSettings {
            url,
            tenant,
            hub_id,
            ca_file,
            cert_file,
            key_file,
            keepalive,
        })
    }

    fn web(&mut self, raw: &RawWeb) -> Option<WebSettings> {
        let listen = self.listen("web.listen", &raw.listen);
        let user = self.name("web.user", &raw.user);
        let hash = raw.password_hash.get_ref().trim().to_owned();
        // A PHC string Argon2 can check ($argon2id$v=19$...), never a clear
        // password: the same check the login uses, so a bad hash is found
        // here, with its line, and not at the first login.
        let credentials = match Credentials::new(&user, &hash) {
            Ok(c) => Some(c),
            Err(e) => {
                self.invalid("web.password_hash", raw.password_hash.span(), e.to_string());
                None
            }
        };
        Some(WebSettings {
            listen: listen?,
            user,
            password_hash: hash,
            credentials: credentials?,
        })
    }
}

#[cfg(test)]
mod tests;
