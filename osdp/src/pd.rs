//! The peripheral device (PD) role: a virtual card reader with keypad,
//! inputs, outputs, LEDs, buzzer, text and secure channel.
//!
//! The demo's virtual readers and the benchmarks run on it, and it is what a
//! foreign control panel (libosdp's, in the interop tests) talks to. Drive it
//! like the control panel:
//!
//! ```text
//! pd.handle_input(&bytes_from_bus, now);
//! while let Some(bytes) = pd.poll_transmit() { bus.write(&bytes) }
//! while let Some(event) = pd.poll_event() { ... }   // LED, buzzer, output, text, new key...
//! pd.queue_report(Reply::Raw(card));                 // sent in answer to the next osdp_POLL
//! ```
//!
//! The device answers every command addressed to it (or to 0x7F), repeats
//! its last reply bit for bit when the CP repeats a sequence number, and on a
//! device with `require_secure` refuses everything but osdp_ID, osdp_CAP and
//! the handshake in clear text.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::command::{Command, KeySet, OutputControl};
use crate::cp::RandomSource;
use crate::frame::{self, Decoder, Packet, PacketBuilder};
use crate::reply::{Capability, Ccrypt, LocalStatus, Nak, NakCode, PdId, Reply};
use crate::sc::{Direction, Key, PdChallenge, Session, KEY_SELECT_DEFAULT, KEY_SELECT_SCBK};

/// How long a session survives without a valid command (OSDP: 8 s).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(8);

/// Reports waiting for polls beyond this are dropped oldest first.
pub const REPORT_QUEUE: usize = 64;

/// What the device is and how it is secured.
#[derive(Debug, Clone)]
pub struct PdConfig {
    /// Address 0..=0x7E.
    pub address: u8,
    /// Answer to osdp_ID.
    pub id: PdId,
    /// Answer to osdp_CAP.
    pub caps: Vec<Capability>,
    /// The installed SCBK, if any.
    pub scbk: Option<Key>,
    /// Accept a handshake on SCBK-D (and so a first KEYSET).
    pub install_mode: bool,
    /// Refuse application commands outside a secure channel.
    pub require_secure: bool,
    /// Number of inputs reported by osdp_ISTATR.
    pub inputs: usize,
    /// Number of outputs reported by osdp_OSTATR.
    pub outputs: usize,
}

/// What the device tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PdEvent {
    /// An application command arrived (LED, buzzer, output, text, MFG...).
    Command(Command),
    /// A new SCBK was installed by osdp_KEYSET: persist it.
    KeyInstalled(Key),
    /// The secure channel was established.
    SecureChannel {
        /// Whether SCBK-D was used.
        default_key: bool,
    },
    /// The secure channel was dropped (MAC failure, timeout, reset).
    SecureChannelLost,
    /// osdp_COMSET: the device answers on a new address and baud rate.
    ComSet {
        /// New address.
        address: u8,
        /// New baud rate.
        baud: u32,
    },
}

enum Security {
    Clear,
    Challenged(PdChallenge),
    Active(Session),
}

/// The last reply, kept to answer an exact retry of its request.
struct Cached {
    /// The request packet as received (a retry repeats it bit for bit).
    request: Vec<u8>,
    bytes: Vec<u8>,
}

/// The peripheral device state machine.
pub struct PeripheralDevice {
    config: PdConfig,
    decoder: Decoder,
    security: Security,
    last_seq: Option<u8>,
    last_reply: Option<Cached>,
    last_command_at: Option<Instant>,
    reports: VecDeque<Reply>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<PdEvent>,
    inputs: Vec<u8>,
    outputs: Vec<u8>,
    local: LocalStatus,
    rng: RandomSource,
}

impl PeripheralDevice {
    /// A device with OS randomness for RND.B.
    pub fn new(config: PdConfig) -> PeripheralDevice {
        Self::with_rng(
            config,
            Box::new(|b: &mut [u8]| {
                if getrandom::getrandom(b).is_err() {
                    b.fill(0);
                }
            }),
        )
    }

    /// A device with a caller-supplied random source.
    pub fn with_rng(config: PdConfig, rng: RandomSource) -> PeripheralDevice {
        let inputs = vec![0; config.inputs];
        let outputs = vec![0; config.outputs];
        PeripheralDevice {
            config,
            decoder: Decoder::default(),
            security: Security::Clear,
            last_seq: None,
            last_reply: None,
            last_command_at: None,
            reports: VecDeque::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            inputs,
            outputs,
            local: LocalStatus {
                tamper: 0,
                power: 0,
            },
            rng,
        }
    }

    /// Current address (changes after osdp_COMSET).
    pub fn address(&self) -> u8 {
        self.config.address
    }

    /// Whether a secure channel is established.
    pub fn is_secure(&self) -> bool {
        matches!(self.security, Security::Active(_))
    }

    /// Output states as last set by osdp_OUT.
    pub fn outputs(&self) -> &[u8] {
        &self.outputs
    }

    /// Queues a report (card read, keypad, status) for the next osdp_POLL.
    pub fn queue_report(&mut self, reply: Reply) {
        if self.reports.len() >= REPORT_QUEUE {
            self.reports.pop_front();
        }
        self.reports.push_back(reply);
    }

    /// Sets an input and reports the change with osdp_ISTATR.
    pub fn set_input(&mut self, index: usize, active: bool) {
        if let Some(v) = self.inputs.get_mut(index) {
            *v = u8::from(active);
            let all = self.inputs.clone();
            self.queue_report(Reply::InputStatus(all));
        }
    }

    /// Sets tamper and power state and reports it with osdp_LSTATR.
    pub fn set_local_status(&mut self, tamper: bool, power_failure: bool) {
        self.local = LocalStatus {
            tamper: u8::from(tamper),
            power: u8::from(power_failure),
        };
        self.queue_report(Reply::LocalStatus(self.local));
    }

    /// Bytes to write to the bus.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next application event.
    pub fn poll_event(&mut self) -> Option<PdEvent> {
        self.events.pop_front()
    }

    /// When the session times out, if one is open.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (&self.security, self.last_command_at) {
            (Security::Active(_), Some(t)) => Some(t + SESSION_TIMEOUT),
            _ => None,
        }
    }

    /// Drops a session that saw no command for [`SESSION_TIMEOUT`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(t) = self.poll_timeout() {
            if now >= t {
                self.drop_session();
            }
        }
    }

    /// Feeds bytes read from the bus.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        self.handle_timeout(now);
        self.decoder.push(bytes);
        while let Some(packet) = self.decoder.next_packet() {
            if packet.is_reply() {
                continue; // another device's reply on the shared bus
            }
            if packet.sequence() != 0 {
                if let Some(c) = &self.last_reply {
                    if c.request == packet.as_bytes() {
                        // An exact retry: repeat the reply bit for bit, as the
                        // MAC chain has already moved on. Checked before the
                        // address, so a retried osdp_COMSET is answered even
                        // though the device now has its new address. Only an
                        // identical request counts: nothing else can fish a
                        // cached answer out.
                        self.transmit.push_back(c.bytes.clone());
                        continue;
                    }
                }
            }
            let addr = packet.address();
            if addr != self.config.address && addr != frame::ADDR_BROADCAST {
                continue;
            }
            self.on_command(packet, now);
        }
    }

    fn drop_session(&mut self) {
        if matches!(self.security, Security::Active(_)) {
            self.events.push_back(PdEvent::SecureChannelLost);
        }
        self.security = Security::Clear;
    }

    fn on_command(&mut self, packet: Packet, now: Instant) {
        let seq = packet.sequence();
        if seq == 0 {
            // The CP restarts the conversation: forget session and cache.
            self.drop_session();
            self.last_reply = None;
        } else if Some(seq) != self.last_seq {
            // (The same sequence with different bytes is processed as a new
            // command: exact retries were answered from the cache already.)
            let expected = match self.last_seq {
                None => 0,
                Some(0) | Some(3) => 1,
                Some(n) => n + 1,
            };
            if seq != expected && self.last_seq.is_some() {
                self.respond(
                    &packet,
                    Reply::Nak(Nak::new(NakCode::UnexpectedSequence)),
                    false,
                );
                return;
            }
        }
        self.last_seq = Some(seq);
        self.last_command_at = Some(now);

        let scb = packet.security_block();
        let code = packet.code();
        let nak = |this: &mut Self, code| this.respond(&packet, Reply::Nak(Nak::new(code)), false);
        // `authenticated`: the packet was opened (MAC verified) by the
        // session. Only such packets may act as secure, and only their
        // replies are sealed.
        let (plain, authenticated) = match scb.map(|s| s.kind) {
            // The handshake blocks belong to their own commands only; on
            // anything else they would smuggle a clear command past the
            // secure channel.
            Some(frame::SCS_11) if code == crate::command::code::CHLNG => {
                (packet.data().to_vec(), false)
            }
            Some(frame::SCS_13) if code == crate::command::code::SCRYPT => {
                (packet.data().to_vec(), false)
            }
            Some(frame::SCS_15..=frame::SCS_18) => {
                let security = std::mem::replace(&mut self.security, Security::Clear);
                let Security::Active(session) = security else {
                    self.security = security;
                    nak(self, NakCode::UnsupportedSecurityBlock);
                    return;
                };
                match session.open(Direction::Command, &packet) {
                    Ok((s, plain)) => {
                        self.security = Security::Active(s);
                        (plain, true)
                    }
                    Err(_) => {
                        self.events.push_back(PdEvent::SecureChannelLost);
                        nak(self, NakCode::EncryptionRequired);
                        return;
                    }
                }
            }
            Some(_) => {
                nak(self, NakCode::UnsupportedSecurityBlock);
                return;
            }
            None => {
                if matches!(
                    code,
                    crate::command::code::CHLNG | crate::command::code::SCRYPT
                ) {
                    // A handshake step without its security block.
                    nak(self, NakCode::UnsupportedSecurityBlock);
                    return;
                }
                let allowed_clear =
                    matches!(code, crate::command::code::ID | crate::command::code::CAP);
                if self.is_secure() {
                    // Clear text inside a session: the session is over.
                    self.drop_session();
                }
                if self.config.require_secure && !allowed_clear {
                    nak(self, NakCode::EncryptionRequired);
                    return;
                }
                (packet.data().to_vec(), false)
            }
        };
        let command = match Command::parse(code, &plain) {
            Ok(c) => c,
            Err(e) => {
                let nak = if matches!(e, crate::command::CommandError::UnknownCode(_)) {
                    NakCode::UnknownCommand
                } else {
                    NakCode::CommandLength
                };
                self.respond(&packet, Reply::Nak(Nak::new(nak)), authenticated);
                return;
            }
        };
        self.execute(&packet, command, authenticated);
    }

    /// Carries out a parsed command. `secure`: the command was authenticated
    /// by the session, so it may change keys and its reply is sealed.
    fn execute(&mut self, packet: &Packet, command: Command, secure: bool) {
        match command {
            Command::Challenge(rnd_a) => {
                let select = packet
                    .security_block()
                    .and_then(|s| s.data.first().copied());
                let key = match select {
                    Some(KEY_SELECT_DEFAULT) if self.config.install_mode => (Key::DEFAULT, true),
                    Some(KEY_SELECT_SCBK) => match &self.config.scbk {
                        Some(k) => (k.clone(), false),
                        None => {
                            self.respond(
                                packet,
                                Reply::Nak(Nak::new(NakCode::UnsupportedSecurityBlock)),
                                false,
                            );
                            return;
                        }
                    },
                    _ => {
                        self.respond(
                            packet,
                            Reply::Nak(Nak::new(NakCode::UnsupportedSecurityBlock)),
                            false,
                        );
                        return;
                    }
                };
                let mut rnd_b = [0u8; 8];
                (self.rng)(&mut rnd_b);
                let ch = PdChallenge::new(&key.0, key.1, rnd_a, rnd_b);
                let (rnd_b, cryptogram) = ch.client_cryptogram();
                let id = &self.config.id;
                let serial = id.serial.to_le_bytes();
                let cuid = [
                    id.vendor_code[0],
                    id.vendor_code[1],
                    id.model,
                    id.version,
                    serial[0],
                    serial[1],
                    serial[2],
                    serial[3],
                ];
                self.security = Security::Challenged(ch);
                let sel = if key.1 {
                    KEY_SELECT_DEFAULT
                } else {
                    KEY_SELECT_SCBK
                };
                let reply = Reply::ClientCryptogram(Ccrypt {
                    client_uid: cuid,
                    rnd_b,
                    cryptogram,
                });
                self.respond_handshake(packet, reply, frame::SCS_12, sel);
            }
            Command::ServerCryptogram(server) => {
                let security = std::mem::replace(&mut self.security, Security::Clear);
                let Security::Challenged(ch) = security else {
                    self.respond(
                        packet,
                        Reply::Nak(Nak::new(NakCode::UnsupportedSecurityBlock)),
                        false,
                    );
                    return;
                };
                match ch.verify(&server) {
                    Ok((session, rmac)) => {
                        let default_key = session.uses_default_key();
                        self.respond_handshake(
                            packet,
                            Reply::InitialRmac(rmac),
                            frame::SCS_14,
                            0x01,
                        );
                        self.security = Security::Active(session);
                        self.events
                            .push_back(PdEvent::SecureChannel { default_key });
                    }
                    Err(_) => {
                        self.respond(
                            packet,
                            Reply::Nak(Nak::new(NakCode::UnsupportedSecurityBlock)),
                            false,
                        );
                    }
                }
            }
            Command::Poll => {
                let reply = self.reports.pop_front().unwrap_or(Reply::Ack);
                self.respond(packet, reply, secure);
            }
            Command::Id => {
                let r = Reply::PdId(self.config.id);
                self.respond(packet, r, secure);
            }
            Command::Cap => {
                let r = Reply::PdCap(self.config.caps.clone());
                self.respond(packet, r, secure);
            }
            Command::LocalStatus => {
                let r = Reply::LocalStatus(self.local);
                self.respond(packet, r, secure);
            }
            Command::InputStatus => {
                let r = Reply::InputStatus(self.inputs.clone());
                self.respond(packet, r, secure);
            }
            Command::OutputStatus => {
                let r = Reply::OutputStatus(self.outputs.clone());
                self.respond(packet, r, secure);
            }
            Command::ReaderStatus => self.respond(packet, Reply::ReaderStatus(vec![0]), secure),
            Command::KeySet(KeySet { key, .. }) => {
                if !secure {
                    self.respond(
                        packet,
                        Reply::Nak(Nak::new(NakCode::EncryptionRequired)),
                        false,
                    );
                    return;
                }
                // ACK under the old session, then switch keys.
                self.respond(packet, Reply::Ack, true);
                self.config.scbk = Some(key.clone());
                self.config.install_mode = false;
                self.events.push_back(PdEvent::KeyInstalled(key));
                self.drop_session();
            }
            Command::ComSet(c) => {
                self.respond(packet, Reply::Com(c), secure);
                if c.address <= crate::cp::MAX_ADDRESS {
                    self.config.address = c.address;
                }
                self.events.push_back(PdEvent::ComSet {
                    address: c.address,
                    baud: c.baud_rate,
                });
            }
            Command::Output(records) => {
                for r in &records {
                    if let Some(o) = self.outputs.get_mut(usize::from(r.output)) {
                        *o = u8::from(output_is_on(r));
                    }
                }
                self.respond(packet, Reply::Ack, secure);
                self.events
                    .push_back(PdEvent::Command(Command::Output(records)));
            }
            Command::BioRead(_) | Command::BioMatch(_) => {
                self.respond(
                    packet,
                    Reply::Nak(Nak::new(NakCode::BioTypeNotSupported)),
                    secure,
                );
            }
            other => {
                self.respond(packet, Reply::Ack, secure);
                self.events.push_back(PdEvent::Command(other));
            }
        }
    }

    fn reply_builder<'a>(&self, packet: &Packet, code: u8, data: &'a [u8]) -> PacketBuilder<'a> {
        PacketBuilder {
            address: packet.address(),
            reply: true,
            sequence: packet.sequence(),
            check: packet.check(),
            mark: packet.marked(),
            scb: None,
            code,
            data,
        }
    }

    /// Encodes and queues a reply, secured when `secure` and a session is up.
    fn respond(&mut self, packet: &Packet, reply: Reply, secure: bool) {
        let mut data = Vec::new();
        reply.encode_data(&mut data);
        let base = self.reply_builder(packet, reply.code(), &[]);
        let mut out = Vec::new();
        let ok = match (&mut self.security, secure) {
            (Security::Active(session), true) => {
                session.seal(Direction::Reply, base, &data, &mut out)
            }
            _ => PacketBuilder {
                data: &data,
                ..base
            }
            .encode(&mut out, None),
        };
        if ok.is_ok() {
            self.cache_and_send(packet, out);
        }
    }

    fn respond_handshake(&mut self, packet: &Packet, reply: Reply, kind: u8, select: u8) {
        let mut data = Vec::new();
        reply.encode_data(&mut data);
        let sel = [select];
        let b = PacketBuilder {
            scb: Some((kind, &sel)),
            ..self.reply_builder(packet, reply.code(), &data)
        };
        let mut out = Vec::new();
        if b.encode(&mut out, None).is_ok() {
            self.cache_and_send(packet, out);
        }
    }

    fn cache_and_send(&mut self, packet: &Packet, bytes: Vec<u8>) {
        self.last_reply = Some(Cached {
            request: packet.as_bytes().to_vec(),
            bytes: bytes.clone(),
        });
        self.transmit.push_back(bytes);
    }
}

fn output_is_on(r: &OutputControl) -> bool {
    use crate::command::OutputControlCode::*;
    matches!(
        r.control,
        PermanentOnAbortTimed | PermanentOnAllowTimed | TemporaryOnThenOff
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Check;
    use crate::reply::CapabilityFunction;
    use crate::sc::CpChallenge;

    const KEY: [u8; 16] = [0x11; 16];

    fn device(require_secure: bool) -> PeripheralDevice {
        let mut n = 0u8;
        PeripheralDevice::with_rng(
            PdConfig {
                address: 0x11,
                id: PdId {
                    vendor_code: [1, 2, 3],
                    model: 1,
                    version: 1,
                    serial: 9,
                    firmware_major: 1,
                    firmware_minor: 0,
                    firmware_build: 0,
                },
                caps: vec![Capability {
                    function: CapabilityFunction::OutputControl,
                    compliance: 1,
                    num_items: 1,
                }],
                scbk: Some(Key::new(KEY)),
                install_mode: false,
                require_secure,
                inputs: 1,
                outputs: 1,
            },
            Box::new(move |b: &mut [u8]| {
                for x in b {
                    n = n.wrapping_add(1);
                    *x = n;
                }
            }),
        )
    }

    fn packet(bytes: &[u8]) -> Packet {
        let mut d = Decoder::default();
        d.push(bytes);
        d.next_packet().expect("a valid frame")
    }

    fn exchange(pd: &mut PeripheralDevice, bytes: &[u8]) -> Packet {
        pd.handle_input(bytes, Instant::now());
        packet(&pd.poll_transmit().expect("a reply"))
    }

    fn build(seq: u8, scb: Option<(u8, &[u8])>, code: u8, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder {
            address: 0x11,
            reply: false,
            sequence: seq,
            check: Check::Crc16,
            mark: false,
            scb,
            code,
            data,
        }
        .encode(&mut out, None)
        .unwrap();
        out
    }

    /// Runs the real handshake; returns the CP's session.
    fn handshake(pd: &mut PeripheralDevice) -> Session {
        let rnd_a = [0xA0; 8];
        let ch = CpChallenge::new(&Key::new(KEY), false, rnd_a);
        let r = exchange(pd, &build(0, Some((frame::SCS_11, &[1])), 0x76, &rnd_a));
        let Ok(Reply::ClientCryptogram(c)) = Reply::parse(r.code(), r.data()) else {
            panic!("no CCRYPT: {r:?}");
        };
        let pending = ch.verify(&c.rnd_b, &c.cryptogram).unwrap();
        let scrypt = pending.server_cryptogram();
        let r = exchange(pd, &build(1, Some((frame::SCS_13, &[1])), 0x77, &scrypt));
        let Ok(Reply::InitialRmac(rmac)) = Reply::parse(r.code(), r.data()) else {
            panic!("no RMAC_I: {r:?}");
        };
        assert!(pd.is_secure());
        pending.establish(&rmac).unwrap()
    }

    #[test]
    fn handshake_block_on_another_command_is_refused() {
        // Found by fuzzing: POLL and OUT carrying an SCS_11 block were run
        // as clear commands past `require_secure` (OUT switched the strike).
        let mut pd = device(true);
        let poll = [0x53, 0x11, 0x09, 0x00, 0x08, 0x02, 0x11, 0x60, 0x18];
        let r = exchange(&mut pd, &poll);
        assert_eq!(
            Reply::parse(r.code(), r.data()).unwrap(),
            Reply::Nak(Nak::new(NakCode::UnsupportedSecurityBlock))
        );
        let out = [
            0x53, 0x11, 0x0e, 0x00, 0x0e, 0x02, 0x11, 0x68, 0x00, 0x02, 0x00, 0x00, 0x22, 0x26,
        ];
        let r = exchange(&mut pd, &out);
        assert_eq!(r.code(), crate::reply::code::NAK);
        assert_eq!(pd.outputs(), &[0], "the strike must not move");
        assert!(pd.poll_event().is_none());
    }

    #[test]
    fn clear_keyset_inside_a_session_installs_nothing() {
        let mut pd = device(false);
        let _cp = handshake(&mut pd);
        while pd.poll_event().is_some() {}
        // KEYSET in clear behind an SCS_11 block, then plainly in clear.
        let mut ks = vec![0x01, 0x10];
        ks.extend_from_slice(&[0x66; 16]);
        for scb in [Some((frame::SCS_11, &[1u8][..])), None] {
            let r = exchange(&mut pd, &build(2, scb, 0x75, &ks));
            assert_eq!(r.code(), crate::reply::code::NAK, "{scb:?}");
            assert!(r.security_block().is_none());
        }
        while let Some(e) = pd.poll_event() {
            assert!(!matches!(e, PdEvent::KeyInstalled(_)), "key taken over");
        }
    }

    #[test]
    fn secured_keyset_installs_the_key_and_ends_the_session() {
        let mut pd = device(true);
        let mut cp = handshake(&mut pd);
        let mut data = Vec::new();
        Command::KeySet(KeySet::scbk([0x42; 16])).encode_data(&mut data);
        let mut out = Vec::new();
        cp.seal(
            Direction::Command,
            PacketBuilder {
                address: 0x11,
                reply: false,
                sequence: 2,
                check: Check::Crc16,
                mark: false,
                scb: None,
                code: 0x75,
                data: &[],
            },
            &data,
            &mut out,
        )
        .unwrap();
        let r = exchange(&mut pd, &out);
        let (_, plain) = cp.open(Direction::Reply, &r).unwrap();
        assert_eq!(Reply::parse(r.code(), &plain).unwrap(), Reply::Ack);
        assert!(!pd.is_secure());
        let mut installed = false;
        while let Some(e) = pd.poll_event() {
            installed |= matches!(e, PdEvent::KeyInstalled(k) if k == Key::new([0x42; 16]));
        }
        assert!(installed);
    }

    #[test]
    fn a_retried_comset_is_answered_from_the_old_address() {
        // Found by fuzzing: after osdp_COMSET the device had its new address
        // and ignored the CP's retry when the COM reply was lost.
        let mut pd = device(false);
        let comset = build(1, None, 0x6E, &[0x22, 0x80, 0x25, 0x00, 0x00]);
        let first = exchange(&mut pd, &comset);
        assert_eq!(first.code(), crate::reply::code::COM);
        assert_eq!(pd.address(), 0x22);
        let again = exchange(&mut pd, &comset);
        assert_eq!(first.as_bytes(), again.as_bytes());
        // A different command to the old address is not for it any more.
        pd.handle_input(&build(2, None, 0x61, &[0]), Instant::now());
        assert!(pd.poll_transmit().is_none());
    }

    #[test]
    fn only_an_identical_retry_gets_the_cached_reply() {
        let mut pd = device(false);
        let id = build(1, None, 0x61, &[0]);
        let first = exchange(&mut pd, &id);
        let again = exchange(&mut pd, &id);
        assert_eq!(first.as_bytes(), again.as_bytes());
        // Same sequence and code, different bytes: processed, not replayed.
        let cap = build(2, None, 0x62, &[0]);
        exchange(&mut pd, &cap);
        let other = build(2, None, 0x62, &[1]);
        let r = exchange(&mut pd, &other);
        assert_eq!(r.code(), crate::reply::code::NAK);
    }
}
