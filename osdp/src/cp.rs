//! The control panel (CP): one half-duplex bus, up to 126 peripheral devices.
//!
//! [`ControlPanel`] is a deterministic state machine. The task that owns the
//! serial port drives it:
//!
//! ```text
//! loop {
//!     if let Some(bytes) = cp.poll_transmit(now) { port.write_all(&bytes) }
//!     while let Some(event) = cp.poll_event() { ... }
//!     wait for: bytes from the port   -> cp.handle_input(&bytes, now)
//!               cp.poll_timeout()     -> cp.handle_timeout(now)
//!               an application order  -> cp.submit(addr, command)
//! }
//! ```
//!
//! Exactly one request is in flight on the bus. A device that comes up is
//! asked for its ID and capabilities, then (if it has a key) the secure
//! channel is set up, then it is polled. Queued commands go before polls.
//! A request that times out is retried with the same sequence number on the
//! device's next turn; the driver never retries. A device with no valid reply
//! for `offline_timeout` is offline and is probed again with backoff.
//!
//! A device configured with a key is never sent anything but osdp_ID,
//! osdp_CAP, osdp_COMSET and the handshake in clear text: there is no silent
//! fallback. A secure-channel failure is reported and the connection restarts.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::command::{Command, KeySet};
use crate::frame::{self, Check, Decoder, Packet, PacketBuilder};
use crate::reply::{Capability, Nak, NakCode, PdId, Reply};
use crate::sc::{CpChallenge, CpPending, Direction, Key, ScError, Session};

/// Highest unicast address.
pub const MAX_ADDRESS: u8 = 0x7E;

/// Bus-wide settings. Defaults follow common practice and the issue's
/// requirements (200 ms reply timeout, offline after 8 s).
#[derive(Debug, Clone)]
pub struct CpConfig {
    /// Time to wait for a reply after the command left the wire.
    pub reply_timeout: Duration,
    /// Without a valid reply for this long an online device goes offline.
    pub offline_timeout: Duration,
    /// Minimum time between two polls of the same device.
    pub poll_interval: Duration,
    /// First delay before probing an offline device again; doubles per miss.
    pub reconnect_min: Duration,
    /// Upper bound of the reconnect backoff.
    pub reconnect_max: Duration,
    /// Delay before repeating a command the device answered osdp_BUSY to.
    pub busy_retry: Duration,
    /// Line speed, to account for the time a command takes on the wire.
    pub baud: u32,
    /// Send CRC-16 (otherwise the 8-bit checksum).
    pub use_crc: bool,
    /// Send the 0xFF mark byte before each packet.
    pub send_mark: bool,
    /// Queued application commands per device.
    pub queue_depth: usize,
    /// After a reply with device data (card, keypad, input), keep the bus
    /// idle this long unless a command is queued, so the application's
    /// answer (strike, LED) goes out before the next poll.
    pub event_hold: Duration,
}

impl Default for CpConfig {
    fn default() -> Self {
        CpConfig {
            reply_timeout: Duration::from_millis(200),
            offline_timeout: Duration::from_secs(8),
            poll_interval: Duration::from_millis(50),
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(8),
            busy_retry: Duration::from_millis(50),
            baud: 9600,
            use_crc: true,
            send_mark: true,
            queue_depth: 32,
            event_hold: Duration::from_millis(5),
        }
    }
}

/// Time a packet of `len` bytes occupies the wire (10 bits a byte).
pub fn wire_time(len: usize, baud: u32) -> Duration {
    let baud = u64::from(baud.max(1));
    Duration::from_nanos((len as u64) * 10 * 1_000_000_000 / baud)
}

/// How a device is secured.
#[derive(Clone, PartialEq, Eq)]
pub enum Security {
    /// No secure channel (plain readers).
    Clear,
    /// Secure channel with this device's own SCBK; required, never clear.
    Secure(Key),
    /// Install mode: secure channel on SCBK-D, ready for osdp_KEYSET.
    Install,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Security::Clear => f.write_str("Clear"),
            Security::Secure(_) => f.write_str("Secure(<key>)"),
            Security::Install => f.write_str("Install"),
        }
    }
}

/// One device on the bus.
#[derive(Debug, Clone)]
pub struct PdConfig {
    /// Address 0..=0x7E.
    pub address: u8,
    /// Secure channel use.
    pub security: Security,
}

/// Problems with the bus or device configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// Address above 0x7E (0x7F is broadcast).
    #[error("address {0} out of range 0..=126")]
    BadAddress(u8),
    /// The same address twice on one bus.
    #[error("address {0} configured twice")]
    DuplicateAddress(u8),
    /// A timeout or rate of zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

/// Identifies a submitted command in later completion events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u64);

/// Why a command could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubmitError {
    /// No device with that address on this bus.
    #[error("no device {0} on this bus")]
    UnknownDevice(u8),
    /// The device is not online.
    #[error("device {0} is offline")]
    Offline(u8),
    /// Too many commands waiting for this device.
    #[error("command queue of device {0} is full")]
    QueueFull(u8),
    /// Handshake and session commands are the control panel's own.
    #[error("{0} is sent by the control panel itself")]
    Reserved(&'static str),
    /// osdp_KEYSET needs an established secure channel.
    #[error("device {0} has no secure channel for KEYSET")]
    NotSecure(u8),
}

/// Why a submitted command did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandFailure {
    /// The device answered osdp_NAK (a device reply, not a transport error).
    Nak(NakCode),
    /// The device went offline before answering.
    Offline,
    /// The secure channel broke while the command was pending.
    SecureChannelLost,
    /// The device answered with a reply that does not fit the command.
    UnexpectedReply(u8),
}

/// Why a secure channel could not be set up or was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScFailure {
    /// Handshake cryptogram or MAC check failed: the keys differ.
    Crypto(ScError),
    /// The device refused the handshake.
    Nak(NakCode),
    /// The device sent clear text where a secure packet was required.
    ClearTextRefused,
    /// The device answered the handshake with something else.
    Unexpected(u8),
}

/// What the control panel reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The device answers and is ready (with or without secure channel).
    Online {
        /// Device address.
        pd: u8,
        /// Secure channel established.
        secure: bool,
        /// The channel runs on SCBK-D (install mode).
        default_key: bool,
    },
    /// No valid reply for the offline timeout, or the link was reset.
    Offline {
        /// Device address.
        pd: u8,
    },
    /// The secure channel could not be established or was lost.
    SecureChannelFailed {
        /// Device address.
        pd: u8,
        /// What went wrong.
        reason: ScFailure,
    },
    /// osdp_PDID received.
    Identity {
        /// Device address.
        pd: u8,
        /// Vendor, model, serial, firmware.
        id: PdId,
    },
    /// osdp_PDCAP received.
    Capabilities {
        /// Device address.
        pd: u8,
        /// Function capability records.
        caps: Vec<Capability>,
    },
    /// A reply carrying device data (card, keypad, status, biometrics...),
    /// solicited by a poll or a status command.
    Reply {
        /// Device address.
        pd: u8,
        /// The typed reply.
        reply: Reply,
    },
    /// A submitted command was acknowledged (or answered with data).
    CommandDone {
        /// Device address.
        pd: u8,
        /// As returned by [`ControlPanel::submit`].
        id: CommandId,
    },
    /// A submitted command failed.
    CommandFailed {
        /// Device address.
        pd: u8,
        /// As returned by [`ControlPanel::submit`].
        id: CommandId,
        /// Device reply or transport outcome.
        reason: CommandFailure,
    },
    /// osdp_KEYSET was acknowledged: the device now uses the new key, and
    /// the control panel reconnects with it. The key itself is not repeated.
    KeyChanged {
        /// Device address.
        pd: u8,
    },
}

/// A snapshot of one device for status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdStatus {
    /// Device address.
    pub address: u8,
    /// Answering and ready.
    pub online: bool,
    /// Secure channel established.
    pub secure: bool,
    /// Secure channel on SCBK-D.
    pub default_key: bool,
    /// Last osdp_PDID.
    pub id: Option<PdId>,
    /// Last osdp_PDCAP.
    pub caps: Vec<Capability>,
    /// Time of the last valid reply.
    pub last_reply: Option<Instant>,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpStats {
    /// Packets sent (retries included).
    pub sent: u64,
    /// Valid replies received.
    pub received: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Retransmissions with the same sequence number.
    pub retries: u64,
    /// osdp_POLL sent.
    pub polls: u64,
    /// Bytes skipped or frames rejected by the decoder.
    pub rejected_frames: u64,
}

/// Source of randomness for RND.A (tests pass a deterministic one).
pub type RandomSource = Box<dyn FnMut(&mut [u8]) + Send>;

fn os_random() -> RandomSource {
    Box::new(|buf: &mut [u8]| {
        // getrandom only fails when the OS has no entropy source at all;
        // a zero challenge would then still fail verification on any
        // device that checks it, never weaken it silently.
        if getrandom::getrandom(buf).is_err() {
            buf.fill(0);
        }
    })
}

/// What the control panel waits for after a request.
enum Expect {
    Id,
    Cap,
    Ccrypt(CpChallenge),
    RmacI(CpPending),
    Poll,
    User { id: CommandId, keyset: Option<Key> },
}

/// The request on the bus.
struct InFlight {
    slot: usize,
    bytes: Vec<u8>,
    seq: u8,
    expect: Expect,
    deadline: Instant,
}

/// A request that timed out, to be sent again with the same sequence.
struct Parked {
    bytes: Vec<u8>,
    seq: u8,
    expect: Expect,
}

/// What to send next while connecting.
enum Step {
    Id,
    Cap,
    Challenge,
    Scrypt(Box<CpPending>),
}

/// Connection state of one device; transitions consume the old state.
// Online (with its session keys) is the state devices live in; boxing it
// would add a heap hop to every packet to save a few hundred bytes a device.
#[allow(clippy::large_enum_variant)]
enum Link {
    Offline {
        retry_at: Instant,
    },
    /// `next` is `None` while the step's request is in flight or parked.
    Connecting {
        next: Option<Step>,
    },
    Online {
        session: Option<Session>,
    },
}

struct Slot {
    address: u8,
    security: Security,
    link: Link,
    /// Delay before the next probe if this connection attempt fails.
    backoff: Duration,
    was_online: bool,
    last_seq: Option<u8>,
    last_reply: Option<Instant>,
    connect_started: Instant,
    next_poll: Instant,
    busy_until: Option<Instant>,
    queue: VecDeque<(CommandId, Command)>,
    parked: Option<Parked>,
    id: Option<PdId>,
    caps: Vec<Capability>,
}

impl Slot {
    fn next_seq(&mut self) -> u8 {
        let seq = match self.last_seq {
            None => 0,
            Some(0) | Some(3) => 1,
            Some(n) => n + 1,
        };
        self.last_seq = Some(seq);
        seq
    }

    fn session(&self) -> Option<&Session> {
        match &self.link {
            Link::Online { session } => session.as_ref(),
            _ => None,
        }
    }

    fn wants_secure(&self) -> bool {
        !matches!(self.security, Security::Clear)
    }

    /// Online with an application command waiting (queued or to retry).
    fn has_user_work(&self) -> bool {
        matches!(self.link, Link::Online { .. })
            && (!self.queue.is_empty()
                || matches!(
                    self.parked,
                    Some(Parked {
                        expect: Expect::User { .. },
                        ..
                    })
                ))
    }

    fn urgent(&self, now: Instant) -> bool {
        self.busy_until.is_none_or(|b| b <= now) && self.has_user_work()
    }
}

/// The control panel state machine for one bus.
pub struct ControlPanel {
    config: CpConfig,
    slots: Vec<Slot>,
    in_flight: Option<InFlight>,
    decoder: Decoder,
    events: VecDeque<Event>,
    cursor: usize,
    next_command: u64,
    rng: RandomSource,
    stats: CpStats,
    hold_until: Option<Instant>,
}

impl ControlPanel {
    /// A control panel for `pds`, using OS randomness for challenges.
    pub fn new(config: CpConfig, pds: Vec<PdConfig>, now: Instant) -> Result<Self, ConfigError> {
        Self::with_rng(config, pds, now, os_random())
    }

    /// As [`ControlPanel::new`] with a caller-supplied random source.
    pub fn with_rng(
        config: CpConfig,
        pds: Vec<PdConfig>,
        now: Instant,
        rng: RandomSource,
    ) -> Result<Self, ConfigError> {
        for (name, d) in [
            ("reply_timeout", config.reply_timeout),
            ("offline_timeout", config.offline_timeout),
            ("reconnect_min", config.reconnect_min),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        if config.baud == 0 {
            return Err(ConfigError::Zero("baud"));
        }
        let mut slots: Vec<Slot> = Vec::with_capacity(pds.len());
        for pd in pds {
            if pd.address > MAX_ADDRESS {
                return Err(ConfigError::BadAddress(pd.address));
            }
            if slots.iter().any(|s| s.address == pd.address) {
                return Err(ConfigError::DuplicateAddress(pd.address));
            }
            slots.push(Slot {
                address: pd.address,
                security: pd.security,
                link: Link::Offline { retry_at: now },
                backoff: config.reconnect_min,
                was_online: false,
                last_seq: None,
                last_reply: None,
                connect_started: now,
                next_poll: now,
                busy_until: None,
                queue: VecDeque::new(),
                parked: None,
                id: None,
                caps: Vec::new(),
            });
        }
        Ok(ControlPanel {
            config,
            slots,
            in_flight: None,
            decoder: Decoder::default(),
            events: VecDeque::new(),
            cursor: 0,
            next_command: 1,
            rng,
            stats: CpStats::default(),
            hold_until: None,
        })
    }

    /// The bus configuration.
    pub fn config(&self) -> &CpConfig {
        &self.config
    }

    /// Counters since start.
    pub fn stats(&self) -> CpStats {
        let mut s = self.stats;
        s.rejected_frames = self.decoder.stats().rejected;
        s
    }

    /// A snapshot of every device.
    pub fn status(&self) -> Vec<PdStatus> {
        self.slots
            .iter()
            .map(|s| PdStatus {
                address: s.address,
                online: matches!(s.link, Link::Online { .. }),
                secure: s.session().is_some(),
                default_key: s.session().is_some_and(Session::uses_default_key),
                id: s.id,
                caps: s.caps.clone(),
                last_reply: s.last_reply,
            })
            .collect()
    }

    /// Queues a command for device `addr`; it goes before the next poll.
    pub fn submit(&mut self, addr: u8, command: Command) -> Result<CommandId, SubmitError> {
        match command {
            Command::Challenge(_) => return Err(SubmitError::Reserved("osdp_CHLNG")),
            Command::ServerCryptogram(_) => return Err(SubmitError::Reserved("osdp_SCRYPT")),
            Command::Poll => return Err(SubmitError::Reserved("osdp_POLL")),
            _ => {}
        }
        let depth = self.config.queue_depth;
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.address == addr)
            .ok_or(SubmitError::UnknownDevice(addr))?;
        if !matches!(slot.link, Link::Online { .. }) {
            return Err(SubmitError::Offline(addr));
        }
        if matches!(command, Command::KeySet(_)) && slot.session().is_none() {
            return Err(SubmitError::NotSecure(addr));
        }
        if slot.queue.len() >= depth {
            return Err(SubmitError::QueueFull(addr));
        }
        let id = CommandId(self.next_command);
        self.next_command += 1;
        slot.queue.push_back((id, command));
        Ok(id)
    }

    /// The next application event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`ControlPanel::handle_timeout`] or [`ControlPanel::poll_transmit`]
    /// next has work. An instant in the past means "now".
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(f) = &self.in_flight {
            return Some(f.deadline);
        }
        let due = self.slots.iter().filter_map(Slot::due_at).min()?;
        Some(match self.hold_until {
            Some(h) if !self.any_urgent() => due.max(h),
            _ => due,
        })
    }

    /// Bytes to write to the bus, if a request is due and none is in flight.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.handle_timeout(now);
        if self.in_flight.is_some() || self.slots.is_empty() {
            return None;
        }
        if self.hold_until.is_some_and(|h| now < h) && !self.any_urgent() {
            return None;
        }
        self.hold_until = None;
        let slot = self.pick(now)?;
        let (bytes, seq, expect) = self.build_request(slot, now)?;
        let deadline = now + wire_time(bytes.len(), self.config.baud) + self.config.reply_timeout;
        self.stats.sent += 1;
        // Anything half-received belongs to an earlier exchange.
        self.decoder.clear();
        self.in_flight = Some(InFlight {
            slot,
            bytes: bytes.clone(),
            seq,
            expect,
            deadline,
        });
        Some(bytes)
    }

    /// Processes expired deadlines: reply timeouts and offline detection.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired = self.in_flight.as_ref().is_some_and(|f| now >= f.deadline);
        if !expired {
            return;
        }
        let Some(f) = self.in_flight.take() else {
            return;
        };
        self.stats.timeouts += 1;
        let slot = f.slot;
        let probe = matches!(f.expect, Expect::Id)
            && matches!(self.slots[slot].link, Link::Connecting { .. })
            && self.slots[slot]
                .last_reply
                .is_none_or(|t| t < self.slots[slot].connect_started);
        if probe {
            // An offline device did not answer the probe: back off.
            self.go_offline(slot, now, false);
            return;
        }
        let silent_since = self.slots[slot]
            .last_reply
            .unwrap_or(self.slots[slot].connect_started)
            .max(self.slots[slot].connect_started);
        if now.saturating_duration_since(silent_since) >= self.config.offline_timeout {
            self.go_offline(slot, now, true);
            return;
        }
        self.stats.retries += 1;
        self.slots[slot].parked = Some(Parked {
            bytes: f.bytes,
            seq: f.seq,
            expect: f.expect,
        });
        self.advance_cursor(slot);
    }

    /// Feeds bytes read from the bus.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        self.decoder.push(bytes);
        while let Some(packet) = self.decoder.next_packet() {
            // Our own echo on a two-wire bus, or another master: not a reply.
            if !packet.is_reply() {
                continue;
            }
            let Some(f) = self.in_flight.as_ref() else {
                continue;
            };
            if packet.address() != self.slots[f.slot].address {
                continue;
            }
            let is_busy =
                packet.code() == crate::reply::code::BUSY && packet.security_block().is_none();
            if packet.sequence() != f.seq && !is_busy {
                continue;
            }
            let Some(f) = self.in_flight.take() else {
                continue;
            };
            self.on_reply(f, packet, now);
        }
    }

    /// Whether a command waits that should go before any poll.
    fn any_urgent(&self) -> bool {
        self.slots.iter().any(Slot::has_user_work)
    }

    fn advance_cursor(&mut self, served: usize) {
        self.cursor = (served + 1) % self.slots.len().max(1);
    }

    /// Chooses the device to serve: queued commands first, then round robin.
    fn pick(&mut self, now: Instant) -> Option<usize> {
        let n = self.slots.len();
        let order = (0..n).map(|i| (self.cursor + i) % n);
        let chosen = order
            .clone()
            .find(|&i| self.slots[i].urgent(now))
            .or_else(|| {
                order
                    .clone()
                    .find(|&i| self.slots[i].due_at().is_some_and(|t| t <= now))
            })?;
        self.advance_cursor(chosen);
        Some(chosen)
    }

    fn build_request(&mut self, i: usize, now: Instant) -> Option<(Vec<u8>, u8, Expect)> {
        if let Some(p) = self.slots[i].parked.take() {
            return Some((p.bytes, p.seq, p.expect));
        }
        self.slots[i].busy_until = None;
        let link = std::mem::replace(&mut self.slots[i].link, Link::Connecting { next: None });
        match link {
            Link::Offline { .. } => {
                // Probe: sequence 0 restarts the device's session.
                let s = &mut self.slots[i];
                s.last_seq = None;
                s.connect_started = now;
                s.link = Link::Connecting { next: None };
                self.build(i, &Command::Id, Expect::Id, false)
            }
            Link::Connecting { next: Some(step) } => match step {
                Step::Id => self.build(i, &Command::Id, Expect::Id, false),
                Step::Cap => self.build(i, &Command::Cap, Expect::Cap, false),
                Step::Challenge => {
                    let mut rnd_a = [0u8; 8];
                    (self.rng)(&mut rnd_a);
                    let (key, default) = match &self.slots[i].security {
                        Security::Secure(k) => (k.clone(), false),
                        _ => (Key::DEFAULT, true),
                    };
                    let ch = CpChallenge::new(&key, default, rnd_a);
                    let select = ch.key_select();
                    self.build_handshake(
                        i,
                        &Command::Challenge(rnd_a),
                        frame::SCS_11,
                        select,
                        Expect::Ccrypt(ch),
                    )
                }
                Step::Scrypt(pending) => {
                    let cmd = Command::ServerCryptogram(pending.server_cryptogram());
                    let select = pending.key_select();
                    self.build_handshake(i, &cmd, frame::SCS_13, select, Expect::RmacI(*pending))
                }
            },
            Link::Connecting { next: None } => {
                self.slots[i].link = Link::Connecting { next: None };
                None
            }
            Link::Online { session } => {
                self.slots[i].link = Link::Online { session };
                if let Some((id, cmd)) = self.slots[i].queue.pop_front() {
                    let keyset = match &cmd {
                        Command::KeySet(KeySet { key, .. }) => Some(key.clone()),
                        _ => None,
                    };
                    let secure = self.slots[i].session().is_some();
                    self.build(i, &cmd, Expect::User { id, keyset }, secure)
                } else {
                    self.stats.polls += 1;
                    self.slots[i].next_poll = now + self.config.poll_interval;
                    let secure = self.slots[i].session().is_some();
                    self.build(i, &Command::Poll, Expect::Poll, secure)
                }
            }
        }
    }

    fn builder<'a>(&self, i: usize, seq: u8, code: u8, data: &'a [u8]) -> PacketBuilder<'a> {
        PacketBuilder {
            address: self.slots[i].address,
            reply: false,
            sequence: seq,
            check: if self.config.use_crc {
                Check::Crc16
            } else {
                Check::Checksum
            },
            mark: self.config.send_mark,
            scb: None,
            code,
            data,
        }
    }

    fn build(
        &mut self,
        i: usize,
        cmd: &Command,
        expect: Expect,
        secure: bool,
    ) -> Option<(Vec<u8>, u8, Expect)> {
        let seq = self.slots[i].next_seq();
        let mut data = Vec::new();
        cmd.encode_data(&mut data);
        let base = self.builder(i, seq, cmd.code(), &[]);
        let mut out = Vec::with_capacity(data.len() + 32);
        let result = if secure {
            let Link::Online {
                session: Some(session),
            } = &mut self.slots[i].link
            else {
                return None;
            };
            session.seal(Direction::Command, base, &data, &mut out)
        } else {
            PacketBuilder {
                data: &data,
                ..base
            }
            .encode(&mut out, None)
        };
        // Commands are typed values within protocol limits, so encoding
        // cannot fail short of a bug; nothing is sent if it does.
        result.ok()?;
        Some((out, seq, expect))
    }

    fn build_handshake(
        &mut self,
        i: usize,
        cmd: &Command,
        kind: u8,
        select: u8,
        expect: Expect,
    ) -> Option<(Vec<u8>, u8, Expect)> {
        let seq = self.slots[i].next_seq();
        let mut data = Vec::new();
        cmd.encode_data(&mut data);
        let sel = [select];
        let b = PacketBuilder {
            scb: Some((kind, &sel)),
            ..self.builder(i, seq, cmd.code(), &data)
        };
        let mut out = Vec::new();
        b.encode(&mut out, None).ok()?;
        Some((out, seq, expect))
    }

    fn on_reply(&mut self, f: InFlight, packet: Packet, now: Instant) {
        let i = f.slot;
        let pd = self.slots[i].address;
        // Unseal: a secure link accepts only secured replies, except a NAK
        // (devices drop the session and NAK in clear) and a clear ACK to
        // osdp_KEYSET (devices that switch keys before answering).
        let secured = packet
            .security_block()
            .is_some_and(|s| frame::scb_has_mac(s.kind));
        let has_session = self.slots[i].session().is_some();
        let plain = if has_session && secured {
            let Link::Online { session } = &mut self.slots[i].link else {
                return;
            };
            let Some(s) = session.take() else {
                return;
            };
            match s.open(Direction::Reply, &packet) {
                Ok((s, plain)) => {
                    *session = Some(s);
                    plain
                }
                Err(e) => {
                    self.sc_failed(i, f.expect, ScFailure::Crypto(e), now);
                    return;
                }
            }
        } else if has_session {
            let keyset_ack = matches!(
                f.expect,
                Expect::User {
                    keyset: Some(_),
                    ..
                }
            ) && packet.code() == crate::reply::code::ACK;
            let nak = packet.code() == crate::reply::code::NAK;
            if !(keyset_ack || nak) {
                self.sc_failed(i, f.expect, ScFailure::ClearTextRefused, now);
                return;
            }
            packet.data().to_vec()
        } else if secured {
            // A MAC without a session cannot be checked: refuse it.
            self.sc_failed(i, f.expect, ScFailure::ClearTextRefused, now);
            return;
        } else {
            packet.data().to_vec()
        };
        let reply = match Reply::parse(packet.code(), &plain) {
            Ok(r) => r,
            Err(_) => {
                // Malformed reply: treat like no reply; the retry follows.
                self.in_flight = Some(f);
                return;
            }
        };
        self.stats.received += 1;
        self.slots[i].last_reply = Some(now);
        if let Reply::Busy = reply {
            self.slots[i].busy_until = Some(now + self.config.busy_retry);
            self.slots[i].parked = Some(Parked {
                bytes: f.bytes,
                seq: f.seq,
                expect: f.expect,
            });
            return;
        }
        match f.expect {
            Expect::Id => match reply {
                Reply::PdId(id) => {
                    self.slots[i].id = Some(id);
                    self.events.push_back(Event::Identity { pd, id });
                    self.slots[i].link = Link::Connecting {
                        next: Some(Step::Cap),
                    };
                }
                other => self.connect_unexpected(i, other, now),
            },
            Expect::Cap => match reply {
                Reply::PdCap(caps) => {
                    self.slots[i].caps = caps.clone();
                    self.events.push_back(Event::Capabilities { pd, caps });
                    if self.slots[i].wants_secure() {
                        self.slots[i].link = Link::Connecting {
                            next: Some(Step::Challenge),
                        };
                    } else {
                        self.go_online(i, None, now);
                    }
                }
                other => self.connect_unexpected(i, other, now),
            },
            Expect::Ccrypt(challenge) => match reply {
                Reply::ClientCryptogram(c) => match challenge.verify(&c.rnd_b, &c.cryptogram) {
                    Ok(pending) => {
                        self.slots[i].link = Link::Connecting {
                            next: Some(Step::Scrypt(Box::new(pending))),
                        };
                    }
                    Err(e) => self.sc_failed(i, Expect::Poll, ScFailure::Crypto(e), now),
                },
                Reply::Nak(n) => self.sc_failed(i, Expect::Poll, ScFailure::Nak(n.code), now),
                other => self.sc_failed(i, Expect::Poll, ScFailure::Unexpected(other.code()), now),
            },
            Expect::RmacI(pending) => match reply {
                Reply::InitialRmac(rmac) => match pending.establish(&rmac) {
                    Ok(session) => self.go_online(i, Some(session), now),
                    Err(e) => self.sc_failed(i, Expect::Poll, ScFailure::Crypto(e), now),
                },
                Reply::Nak(n) => self.sc_failed(i, Expect::Poll, ScFailure::Nak(n.code), now),
                other => self.sc_failed(i, Expect::Poll, ScFailure::Unexpected(other.code()), now),
            },
            Expect::Poll => match reply {
                Reply::Ack => {}
                Reply::Nak(n) => self.on_nak(i, n, now),
                other => {
                    self.hold_until = Some(now + self.config.event_hold);
                    self.events.push_back(Event::Reply { pd, reply: other });
                }
            },
            Expect::User { id, keyset } => match reply {
                Reply::Ack => {
                    self.events.push_back(Event::CommandDone { pd, id });
                    if let Some(key) = keyset {
                        self.slots[i].security = Security::Secure(key);
                        self.events.push_back(Event::KeyChanged { pd });
                        // Reconnect under the new key, from sequence 0.
                        self.restart(i, now);
                    }
                }
                Reply::Nak(n) => {
                    self.events.push_back(Event::CommandFailed {
                        pd,
                        id,
                        reason: CommandFailure::Nak(n.code),
                    });
                    self.on_nak(i, n, now);
                }
                other => {
                    self.events.push_back(Event::Reply { pd, reply: other });
                    self.events.push_back(Event::CommandDone { pd, id });
                }
            },
        }
    }

    fn on_nak(&mut self, i: usize, nak: Nak, now: Instant) {
        match nak.code {
            // Lost sequence or security state: start over from sequence 0.
            NakCode::UnexpectedSequence
            | NakCode::UnsupportedSecurityBlock
            | NakCode::EncryptionRequired => {
                if self.slots[i].wants_secure() && !matches!(nak.code, NakCode::UnexpectedSequence)
                {
                    let pd = self.slots[i].address;
                    self.events.push_back(Event::SecureChannelFailed {
                        pd,
                        reason: ScFailure::Nak(nak.code),
                    });
                }
                self.restart(i, now);
            }
            _ => {}
        }
    }

    fn connect_unexpected(&mut self, i: usize, reply: Reply, now: Instant) {
        // A NAK to ID/CAP (for example a sequence complaint) or junk: retry
        // the whole connection after the backoff.
        let _ = reply;
        self.go_offline(i, now, false);
    }

    fn go_online(&mut self, i: usize, session: Option<Session>, now: Instant) {
        let secure = session.is_some();
        let default_key = session.as_ref().is_some_and(Session::uses_default_key);
        let s = &mut self.slots[i];
        s.link = Link::Online { session };
        s.was_online = true;
        s.backoff = self.config.reconnect_min;
        s.next_poll = now;
        self.events.push_back(Event::Online {
            pd: s.address,
            secure,
            default_key,
        });
    }

    /// Drops the link and connects again at once (no backoff).
    fn restart(&mut self, i: usize, now: Instant) {
        self.fail_pending(i, CommandFailure::SecureChannelLost);
        let s = &mut self.slots[i];
        if matches!(s.link, Link::Online { .. }) {
            self.events.push_back(Event::Offline { pd: s.address });
        }
        s.last_seq = None;
        s.parked = None;
        s.connect_started = now;
        s.link = Link::Connecting {
            next: Some(Step::Id),
        };
    }

    fn sc_failed(&mut self, i: usize, expect: Expect, reason: ScFailure, now: Instant) {
        let pd = self.slots[i].address;
        if let Expect::User { id, .. } = expect {
            self.events.push_back(Event::CommandFailed {
                pd,
                id,
                reason: CommandFailure::SecureChannelLost,
            });
        }
        self.events
            .push_back(Event::SecureChannelFailed { pd, reason });
        self.go_offline(i, now, false);
    }

    /// Marks the device offline and schedules a probe with backoff.
    fn go_offline(&mut self, i: usize, now: Instant, reset_backoff: bool) {
        self.fail_pending(i, CommandFailure::Offline);
        let min = self.config.reconnect_min;
        let max = self.config.reconnect_max;
        let s = &mut self.slots[i];
        // A device that was serving gets probed soon; one that keeps failing
        // to connect gets probed less and less often.
        let delay = if reset_backoff { min } else { s.backoff };
        s.backoff = (delay * 2).min(max);
        let previous = std::mem::replace(
            &mut s.link,
            Link::Offline {
                retry_at: now + delay,
            },
        );
        if matches!(previous, Link::Online { .. }) {
            self.events.push_back(Event::Offline { pd: s.address });
        }
        s.parked = None;
        s.busy_until = None;
        s.last_seq = None;
    }

    fn fail_pending(&mut self, i: usize, reason: CommandFailure) {
        let pd = self.slots[i].address;
        if let Some(Parked {
            expect: Expect::User { id, .. },
            ..
        }) = self.slots[i].parked.take()
        {
            self.events.push_back(Event::CommandFailed {
                pd,
                id,
                reason: reason.clone(),
            });
        }
        while let Some((id, _)) = self.slots[i].queue.pop_front() {
            self.events.push_back(Event::CommandFailed {
                pd,
                id,
                reason: reason.clone(),
            });
        }
    }
}

impl Slot {
    /// When this device next has something to send. Work that is due at once
    /// is dated at the connection start, which is never in the future.
    fn due_at(&self) -> Option<Instant> {
        if let Some(b) = self.busy_until {
            return Some(b);
        }
        if self.parked.is_some() {
            return Some(self.connect_started);
        }
        match &self.link {
            Link::Offline { retry_at, .. } => Some(*retry_at),
            Link::Connecting { next: Some(_) } => Some(self.connect_started),
            Link::Connecting { next: None } => None,
            Link::Online { .. } if !self.queue.is_empty() => Some(self.connect_started),
            Link::Online { .. } => Some(self.next_poll),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Control panel against virtual readers on the simulated bus, in
    //! virtual time: handshakes, retries, offline, noise, key changes.

    use super::*;
    use crate::command::{
        BuzzerControl, LedColor, LedControl, OutputControl, OutputControlCode, TextCommand,
        TextControl, ToneCode,
    };
    use crate::pd::{PdConfig as VirtualPd, PdEvent, PeripheralDevice};
    use crate::reply::{CapabilityFunction, Keypad, RawCard, RawFormat};
    use crate::sim::{Sender, SimBus};

    fn rng(seed: u64) -> RandomSource {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        Box::new(move |buf: &mut [u8]| {
            for b in buf {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
        })
    }

    fn key(n: u8) -> Key {
        Key::new([n; 16])
    }

    fn reader(addr: u8, scbk: Option<Key>, install: bool) -> PeripheralDevice {
        let require_secure = scbk.is_some();
        let cap = |function, compliance, num_items| Capability {
            function,
            compliance,
            num_items,
        };
        PeripheralDevice::with_rng(
            VirtualPd {
                address: addr,
                id: PdId {
                    vendor_code: [0x0A, 0x0B, 0x0C],
                    model: 2,
                    version: 1,
                    serial: 0x1000 + u32::from(addr),
                    firmware_major: 1,
                    firmware_minor: 2,
                    firmware_build: 3,
                },
                caps: vec![
                    cap(CapabilityFunction::ContactStatusMonitoring, 1, 2),
                    cap(CapabilityFunction::OutputControl, 1, 1),
                    cap(CapabilityFunction::ReaderLedControl, 1, 1),
                    cap(CapabilityFunction::CommunicationSecurity, 1, 1),
                ],
                scbk,
                install_mode: install,
                require_secure,
                inputs: 2,
                outputs: 1,
            },
            rng(u64::from(addr) + 100),
        )
    }

    fn config() -> CpConfig {
        CpConfig {
            baud: 115_200,
            ..CpConfig::default()
        }
    }

    fn sim(cfg: CpConfig, devices: Vec<(Security, PeripheralDevice)>) -> SimBus {
        let start = Instant::now();
        let pds = devices
            .iter()
            .map(|(s, pd)| PdConfig {
                address: pd.address(),
                security: s.clone(),
            })
            .collect();
        let baud = cfg.baud;
        let cp = ControlPanel::with_rng(cfg, pds, start, rng(1)).unwrap();
        SimBus::new(
            cp,
            devices.into_iter().map(|(_, p)| p).collect(),
            baud,
            start,
        )
    }

    fn secure_trio() -> SimBus {
        sim(
            config(),
            vec![
                (Security::Secure(key(1)), reader(1, Some(key(1)), false)),
                (Security::Secure(key(2)), reader(2, Some(key(2)), false)),
                (Security::Secure(key(3)), reader(3, Some(key(3)), false)),
            ],
        )
    }

    fn online(bus: &SimBus, pd: u8) -> bool {
        bus.cp.status().iter().any(|s| s.address == pd && s.online)
    }

    fn wait_online(bus: &mut SimBus, pds: &[u8]) {
        let deadline = bus.now() + Duration::from_secs(5);
        let ok = bus.run_until(|b| pds.iter().all(|&p| online(b, p)), deadline);
        assert!(ok, "not all of {pds:?} came online: {:?}", bus.cp.status());
    }

    fn replies(bus: &SimBus) -> Vec<(u8, Reply)> {
        bus.cp_events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Reply { pd, reply } => Some((*pd, reply.clone())),
                _ => None,
            })
            .collect()
    }

    fn card(bits: u16, data: &[u8]) -> Reply {
        Reply::Raw(RawCard {
            reader: 0,
            format: RawFormat::Wiegand,
            bit_count: bits,
            data: data.to_vec(),
        })
    }

    fn commands_at(bus: &SimBus, index: usize) -> Vec<Command> {
        bus.pds[index]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                PdEvent::Command(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn three_secure_readers_come_online_and_report_to_the_right_pd() {
        let mut bus = secure_trio();
        wait_online(&mut bus, &[1, 2, 3]);
        for s in bus.cp.status() {
            assert!(s.secure && !s.default_key, "{s:?}");
            assert_eq!(s.id.as_ref().unwrap().serial, 0x1000 + u32::from(s.address));
        }
        let online: Vec<_> = bus
            .cp_events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Online { pd, secure, .. } => Some((*pd, *secure)),
                _ => None,
            })
            .collect();
        assert_eq!(online.len(), 3);
        assert!(online.iter().all(|(_, secure)| *secure));

        bus.pds[1]
            .pd
            .queue_report(card(26, &[0x02, 0x00, 0x40, 0x3F]));
        bus.pds[2].pd.queue_report(Reply::Keypad(Keypad {
            reader: 0,
            digits: b"1234#".to_vec(),
        }));
        bus.pds[0].pd.set_input(1, true);
        bus.pds[2].pd.set_local_status(true, false);
        bus.run_for(Duration::from_millis(500));
        let got = replies(&bus);
        assert!(
            got.contains(&(2, card(26, &[0x02, 0x00, 0x40, 0x3F]))),
            "{got:?}"
        );
        assert!(got
            .iter()
            .any(|(pd, r)| *pd == 3 && matches!(r, Reply::Keypad(k) if k.digits == b"1234#")));
        assert!(got.contains(&(1, Reply::InputStatus(vec![0, 1]))));
        assert!(got
            .iter()
            .any(|(pd, r)| *pd == 3 && matches!(r, Reply::LocalStatus(l) if l.tamper == 1)));
        // No device's data was attributed to another.
        assert_eq!(got.len(), 4);
        // Card and keypad data travelled encrypted (the code byte is clear
        // in OSDP; the data block is not).
        let mut seen = 0;
        for rec in &bus.wire {
            for p in rec.packets() {
                if p.code() == crate::reply::code::RAW || p.code() == crate::reply::code::KEYPAD {
                    assert_eq!(p.security_block().map(|s| s.kind), Some(frame::SCS_18));
                    assert!(!p
                        .data()
                        .windows(3)
                        .any(|w| w == [0x02, 0x00, 0x40] || w == b"123"));
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, 2);
    }

    #[test]
    fn output_led_buzzer_and_text_reach_the_right_reader() {
        let mut bus = secure_trio();
        wait_online(&mut bus, &[1, 2, 3]);
        let out = Command::Output(vec![OutputControl {
            output: 0,
            control: OutputControlCode::TemporaryOnThenOff,
            timer: 30,
        }]);
        let led = Command::Led(vec![LedControl::temporary(LedColor::Green, 10)]);
        let buz = Command::Buzzer(BuzzerControl {
            reader: 0,
            tone: ToneCode::Default,
            on_time: 2,
            off_time: 0,
            count: 1,
        });
        let text = Command::Text(TextControl {
            reader: 0,
            command: TextCommand::PermanentNoWrap,
            temp_time: 0,
            row: 1,
            column: 1,
            text: b"Welcome".to_vec(),
        });
        let ids = [
            bus.cp.submit(2, out.clone()).unwrap(),
            bus.cp.submit(1, led.clone()).unwrap(),
            bus.cp.submit(3, buz.clone()).unwrap(),
            bus.cp.submit(3, text.clone()).unwrap(),
        ];
        bus.run_for(Duration::from_millis(200));
        assert_eq!(commands_at(&bus, 1), vec![out]);
        assert_eq!(commands_at(&bus, 0), vec![led]);
        assert_eq!(commands_at(&bus, 2), vec![buz, text]);
        assert_eq!(bus.pds[1].pd.outputs(), &[1]);
        let done: Vec<_> = bus
            .cp_events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::CommandDone { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(done.len(), 4);
        assert!(ids.iter().all(|id| done.contains(id)));
    }

    #[test]
    fn queued_command_goes_before_pending_polls() {
        let mut bus = secure_trio();
        wait_online(&mut bus, &[1, 2, 3]);
        bus.run_for(Duration::from_millis(100));
        let before = bus.wire.len();
        bus.cp.submit(3, Command::OutputStatus).unwrap();
        bus.run_for(Duration::from_millis(100));
        // At most the request already on the wire precedes it.
        let next_cp: Vec<_> = bus.wire[before..]
            .iter()
            .filter(|r| r.from == Sender::Cp)
            .take(2)
            .collect();
        let pos = next_cp.iter().position(|r| {
            r.packets()[0].address() == 3 && r.packets()[0].code() != crate::command::code::POLL
        });
        assert!(
            matches!(pos, Some(0) | Some(1)),
            "command was not sent next"
        );
    }

    #[test]
    fn answer_to_a_card_goes_out_before_the_next_poll() {
        let mut bus = secure_trio();
        wait_online(&mut bus, &[1, 2, 3]);
        bus.pds[0].pd.queue_report(card(26, &[5, 5, 5, 0xC0]));
        let deadline = bus.now() + Duration::from_secs(1);
        while replies(&bus).is_empty() && bus.now() < deadline {
            bus.step();
        }
        assert_eq!(replies(&bus).len(), 1);
        // Where the card reply went over the wire.
        let seen = bus
            .wire
            .iter()
            .rposition(|r| r.from == Sender::Pd(0))
            .unwrap();
        // The application decides (virtually instantly) and opens the door.
        let out = Command::Output(vec![OutputControl {
            output: 0,
            control: OutputControlCode::TemporaryOnThenOff,
            timer: 50,
        }]);
        bus.cp.submit(1, out.clone()).unwrap();
        bus.run_for(Duration::from_millis(50));
        let next = bus.wire[seen..]
            .iter()
            .find(|r| r.from == Sender::Cp)
            .expect("CP sent nothing");
        assert_eq!(next.packets()[0].address(), 1);
        assert_eq!(next.packets()[0].code(), crate::command::code::OUT);
        assert_eq!(commands_at(&bus, 0), vec![out]);
    }

    #[test]
    fn without_an_answer_polling_resumes_after_the_hold() {
        let mut bus = secure_trio();
        wait_online(&mut bus, &[1, 2, 3]);
        bus.pds[0].pd.queue_report(card(26, &[5, 5, 5, 0xC0]));
        let deadline = bus.now() + Duration::from_secs(1);
        while replies(&bus).is_empty() && bus.now() < deadline {
            bus.step();
        }
        let at = bus.now();
        let seen = bus.wire.len();
        bus.run_for(Duration::from_millis(50));
        let next = bus.wire[seen..]
            .iter()
            .find(|r| r.from == Sender::Cp)
            .unwrap();
        assert!(next.at >= at + config().event_hold);
        assert!(next.at <= at + config().event_hold + Duration::from_millis(1));
    }

    #[test]
    fn clear_text_reader_works_without_secure_channel() {
        let mut bus = sim(config(), vec![(Security::Clear, reader(5, None, false))]);
        wait_online(&mut bus, &[5]);
        assert!(bus.cp_events.iter().any(|(_, e)| matches!(
            e,
            Event::Online {
                pd: 5,
                secure: false,
                ..
            }
        )));
        bus.pds[0].pd.queue_report(card(26, &[1, 2, 3, 0xC0]));
        bus.run_for(Duration::from_millis(200));
        assert!(replies(&bus).contains(&(5, card(26, &[1, 2, 3, 0xC0]))));
    }

    #[test]
    fn install_mode_keyset_moves_reader_to_the_new_key() {
        let mut bus = sim(config(), vec![(Security::Install, reader(7, None, true))]);
        wait_online(&mut bus, &[7]);
        let st = &bus.cp.status()[0];
        assert!(st.secure && st.default_key);
        let new_key = key(0x42);
        bus.cp
            .submit(
                7,
                Command::KeySet(KeySet {
                    key: new_key.clone(),
                }),
            )
            .unwrap();
        let deadline = bus.now() + Duration::from_secs(3);
        let ok = bus.run_until(
            |b| {
                b.cp_events
                    .iter()
                    .any(|(_, e)| matches!(e, Event::KeyChanged { pd: 7 }))
                    && b.cp.status()[0].online
                    && !b.cp.status()[0].default_key
            },
            deadline,
        );
        assert!(ok, "{:?}", bus.cp_events);
        assert!(bus.cp.status()[0].secure);
        assert!(bus.pds[0]
            .events
            .iter()
            .any(|(_, e)| matches!(e, PdEvent::KeyInstalled(k) if *k == new_key)));

        // Both restart: the reader with the installed key, the CP configured
        // with it; they come up secure on the new key.
        let mut bus = sim(
            config(),
            vec![(
                Security::Secure(new_key.clone()),
                reader(7, Some(new_key), false),
            )],
        );
        wait_online(&mut bus, &[7]);
        assert!(bus.cp.status()[0].secure && !bus.cp.status()[0].default_key);
    }

    #[test]
    fn reader_that_acks_keyset_in_clear_is_tolerated() {
        let mut bus = sim(config(), vec![(Security::Install, reader(7, None, true))]);
        wait_online(&mut bus, &[7]);
        let new_key = key(0x24);
        // The reader's own (secured) ACK is lost; it answers in clear instead,
        // as some readers do once they have switched keys.
        bus.drop_reply_to(crate::command::code::KEYSET);
        bus.cp
            .submit(
                7,
                Command::KeySet(KeySet {
                    key: new_key.clone(),
                }),
            )
            .unwrap();
        let deadline = bus.now() + Duration::from_secs(1);
        let installed = |b: &SimBus| {
            b.pds[0]
                .events
                .iter()
                .any(|(_, e)| matches!(e, PdEvent::KeyInstalled(_)))
        };
        assert!(bus.run_until(installed, deadline));
        let keyset = bus
            .wire
            .iter()
            .rev()
            .find(|r| r.from == Sender::Cp)
            .and_then(|r| r.packets().first().cloned())
            .unwrap();
        assert_eq!(keyset.code(), crate::command::code::KEYSET);
        let mut ack = Vec::new();
        PacketBuilder {
            address: 7,
            reply: true,
            sequence: keyset.sequence(),
            check: Check::Crc16,
            mark: false,
            scb: None,
            code: crate::reply::code::ACK,
            data: &[],
        }
        .encode(&mut ack, None)
        .unwrap();
        bus.inject_noise(&ack);
        let deadline = bus.now() + Duration::from_secs(3);
        let ok = bus.run_until(
            |b| {
                b.cp_events
                    .iter()
                    .any(|(_, e)| matches!(e, Event::KeyChanged { pd: 7 }))
                    && b.cp.status()[0].online
                    && b.cp.status()[0].secure
                    && !b.cp.status()[0].default_key
            },
            deadline,
        );
        assert!(ok, "{:?}", bus.cp_events);
        assert!(!bus.cp_events.iter().any(|(_, e)| matches!(
            e,
            Event::SecureChannelFailed {
                reason: ScFailure::ClearTextRefused,
                ..
            }
        )));
    }

    #[test]
    fn wrong_key_is_reported_and_nothing_but_handshake_goes_in_clear() {
        let mut bus = sim(
            config(),
            vec![(Security::Secure(key(9)), reader(4, Some(key(8)), false))],
        );
        bus.pds[0].pd.queue_report(card(26, &[9, 9, 9, 0xC0]));
        bus.run_for(Duration::from_secs(3));
        assert!(!online(&bus, 4));
        let failures = bus
            .cp_events
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e,
                    Event::SecureChannelFailed {
                        pd: 4,
                        reason: ScFailure::Crypto(ScError::BadCryptogram)
                    }
                )
            })
            .count();
        assert!(failures >= 2, "retried with backoff: {:?}", bus.cp_events);
        assert!(replies(&bus).is_empty());
        use crate::command::code as c;
        for rec in &bus.wire {
            for p in rec.packets() {
                if rec.from == Sender::Cp {
                    assert!(
                        matches!(p.code(), c::ID | c::CAP | c::CHLNG | c::SCRYPT),
                        "CP sent {p:?} in clear to a keyed reader"
                    );
                } else {
                    assert_ne!(p.code(), crate::reply::code::RAW);
                }
            }
        }
    }

    #[test]
    fn unplugged_reader_goes_offline_in_time_and_comes_back() {
        let mut bus = secure_trio();
        wait_online(&mut bus, &[1, 2, 3]);
        let unplugged = bus.now();
        bus.pds[1].connected = false;
        let deadline = unplugged + Duration::from_secs(10);
        assert!(bus.run_until(|b| !online(b, 2), deadline));
        let took = bus.now() - unplugged;
        let cfg = config();
        assert!(took >= cfg.offline_timeout - cfg.poll_interval, "{took:?}");
        assert!(
            took <= cfg.offline_timeout + cfg.reply_timeout * 2,
            "{took:?}"
        );
        assert!(bus
            .cp_events
            .iter()
            .any(|(_, e)| matches!(e, Event::Offline { pd: 2 })));
        // The others kept being served meanwhile.
        assert!(online(&bus, 1) && online(&bus, 3));
        bus.pds[0].pd.queue_report(card(26, &[7, 7, 7, 0xC0]));
        bus.run_for(Duration::from_millis(500));
        assert!(replies(&bus).contains(&(1, card(26, &[7, 7, 7, 0xC0]))));

        // Plugged back (a restarted reader starts from scratch).
        bus.pds[1].pd = reader(2, Some(key(2)), false);
        bus.pds[1].connected = true;
        let deadline = bus.now() + cfg.reconnect_max * 2;
        assert!(bus.run_until(|b| online(b, 2), deadline));
        assert!(bus.cp.status()[1].secure);
    }

    #[test]
    fn probes_of_a_missing_reader_back_off_to_the_maximum() {
        let cfg = config();
        let mut bus = sim(cfg.clone(), vec![(Security::Clear, reader(4, None, false))]);
        bus.pds[0].connected = false;
        bus.run_for(Duration::from_secs(60));
        let probes: Vec<Instant> = bus
            .wire
            .iter()
            .filter(|r| r.from == Sender::Cp)
            .map(|r| r.at)
            .collect();
        let gaps: Vec<Duration> = probes.windows(2).map(|w| w[1] - w[0]).collect();
        // Each gap is the backoff plus one reply timeout (and wire time).
        let expect = |backoff: Duration| {
            move |g: &Duration| {
                *g >= backoff + cfg.reply_timeout && *g < backoff + cfg.reply_timeout * 2
            }
        };
        assert!(gaps.len() >= 6, "{gaps:?}");
        assert!(expect(cfg.reconnect_min)(&gaps[0]), "{gaps:?}");
        assert!(expect(cfg.reconnect_min * 2)(&gaps[1]), "{gaps:?}");
        assert!(expect(cfg.reconnect_min * 4)(&gaps[2]), "{gaps:?}");
        assert!(gaps[3..]
            .iter()
            .all(|g| *g < cfg.reconnect_max + cfg.reply_timeout * 2));
        assert!(expect(cfg.reconnect_max)(gaps.last().unwrap()), "{gaps:?}");
        // Plugged in: found at the next probe, and the backoff starts over.
        bus.pds[0].connected = true;
        let deadline = bus.now() + cfg.reconnect_max + Duration::from_secs(1);
        assert!(bus.run_until(|b| online(b, 4), deadline));
    }

    #[test]
    fn lost_reply_is_retried_with_the_same_sequence_and_bytes() {
        let mut bus = sim(
            config(),
            vec![(Security::Secure(key(1)), reader(1, Some(key(1)), false))],
        );
        wait_online(&mut bus, &[1]);
        bus.run_for(Duration::from_millis(120));
        bus.pds[0].pd.queue_report(card(26, &[1, 1, 1, 0x40]));
        // Let the CP send its next poll, then lose the card reply.
        let n = bus.wire.len();
        bus.run_until(|b| b.wire.len() > n, bus.now() + Duration::from_secs(1));
        bus.drop_next(1);
        bus.run_for(Duration::from_millis(600));
        let cp_sent: Vec<_> = bus.wire[n..]
            .iter()
            .filter(|r| r.from == Sender::Cp)
            .collect();
        assert!(cp_sent.len() >= 2);
        assert_eq!(
            cp_sent[0].bytes, cp_sent[1].bytes,
            "retry must repeat the request"
        );
        // The PD repeated its cached reply; the card arrives exactly once.
        let cards = replies(&bus)
            .into_iter()
            .filter(|(_, r)| matches!(r, Reply::Raw(_)))
            .count();
        assert_eq!(cards, 1);
        assert!(bus.cp.stats().retries >= 1);
        assert!(online(&bus, 1));
    }

    #[test]
    fn noise_and_truncated_frames_do_not_stop_polling() {
        let mut bus = secure_trio();
        wait_online(&mut bus, &[1, 2, 3]);
        let polls_before = bus.cp.stats().polls;
        for i in 0..50u8 {
            bus.inject_noise(&[0x53, 0xFF, i, 0x53, 0x00, 0x53, 0x81, 0x09, 0x00]);
            bus.run_for(Duration::from_millis(7));
        }
        bus.run_for(Duration::from_millis(300));
        assert!(bus.cp.stats().polls > polls_before + 20);
        assert!([1, 2, 3].iter().all(|&p| online(&bus, p)));
        bus.pds[2].pd.queue_report(card(26, &[3, 3, 3, 0xC0]));
        bus.run_for(Duration::from_millis(300));
        assert!(replies(&bus).contains(&(3, card(26, &[3, 3, 3, 0xC0]))));
    }

    #[test]
    fn busy_reply_repeats_the_same_request_later() {
        let start = Instant::now();
        let cfg = config();
        let mut cp = ControlPanel::with_rng(
            cfg.clone(),
            vec![PdConfig {
                address: 1,
                security: Security::Clear,
            }],
            start,
            rng(3),
        )
        .unwrap();
        let first = cp.poll_transmit(start).unwrap();
        let busy = {
            let b = PacketBuilder {
                address: 1,
                reply: true,
                sequence: 0,
                check: Check::Crc16,
                mark: false,
                scb: None,
                code: crate::reply::code::BUSY,
                data: &[],
            };
            let mut out = Vec::new();
            b.encode(&mut out, None).unwrap();
            out
        };
        let t = start + Duration::from_millis(5);
        cp.handle_input(&busy, t);
        assert!(cp.poll_transmit(t).is_none(), "must wait before repeating");
        let later = t + cfg.busy_retry;
        assert_eq!(cp.poll_timeout(), Some(later));
        assert_eq!(cp.poll_transmit(later), Some(first));
    }

    #[test]
    fn submit_rejects_what_it_cannot_do() {
        let mut bus = sim(config(), vec![(Security::Clear, reader(5, None, false))]);
        assert_eq!(
            bus.cp.submit(5, Command::Poll),
            Err(SubmitError::Reserved("osdp_POLL"))
        );
        assert_eq!(
            bus.cp.submit(5, Command::Id),
            Err(SubmitError::Offline(5)),
            "not online yet"
        );
        wait_online(&mut bus, &[5]);
        assert_eq!(
            bus.cp.submit(9, Command::Id),
            Err(SubmitError::UnknownDevice(9))
        );
        assert_eq!(
            bus.cp.submit(5, Command::KeySet(KeySet { key: key(1) })),
            Err(SubmitError::NotSecure(5))
        );
        assert_eq!(
            bus.cp.submit(5, Command::Challenge([0; 8])),
            Err(SubmitError::Reserved("osdp_CHLNG"))
        );
        for _ in 0..config().queue_depth {
            bus.cp.submit(5, Command::LocalStatus).unwrap();
        }
        assert_eq!(
            bus.cp.submit(5, Command::LocalStatus),
            Err(SubmitError::QueueFull(5))
        );
    }

    #[test]
    fn bad_configuration_is_refused() {
        let now = Instant::now();
        let pd = |address| PdConfig {
            address,
            security: Security::Clear,
        };
        assert!(matches!(
            ControlPanel::new(CpConfig::default(), vec![pd(0x7F)], now),
            Err(ConfigError::BadAddress(0x7F))
        ));
        assert!(matches!(
            ControlPanel::new(CpConfig::default(), vec![pd(1), pd(1)], now),
            Err(ConfigError::DuplicateAddress(1))
        ));
        let cfg = CpConfig {
            reply_timeout: Duration::ZERO,
            ..CpConfig::default()
        };
        assert!(matches!(
            ControlPanel::new(cfg, vec![pd(1)], now),
            Err(ConfigError::Zero("reply_timeout"))
        ));
    }

    #[test]
    fn commands_to_an_unplugged_reader_fail_when_it_goes_offline() {
        let mut bus = sim(
            config(),
            vec![(Security::Secure(key(1)), reader(1, Some(key(1)), false))],
        );
        wait_online(&mut bus, &[1]);
        bus.pds[0].connected = false;
        let id = bus.cp.submit(1, Command::LocalStatus).unwrap();
        bus.run_for(Duration::from_secs(10));
        assert!(bus.cp_events.iter().any(|(_, e)| matches!(
            e,
            Event::CommandFailed {
                id: i,
                reason: CommandFailure::Offline,
                ..
            } if *i == id
        )));
    }

    #[test]
    fn wire_time_is_ten_bits_a_byte() {
        assert_eq!(wire_time(96, 9600), Duration::from_millis(100));
        assert_eq!(wire_time(0, 9600), Duration::ZERO);
        assert_eq!(wire_time(10, 0), Duration::from_secs(100));
    }
}
