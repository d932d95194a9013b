//! `peripheral`: a `PeripheralDevice` fed fuzzed commands.
//!
//! The harness plays the control panel: besides raw bus bytes it can frame
//! fuzzed commands correctly, run the secure channel handshake through the
//! public API, and seal fuzzed commands in the resulting session, so the
//! fuzzer reaches the device's secure command handling.
//!
//! Input: one configuration byte (bit 0 install mode, bit 1 require secure
//! channel, bit 2 no SCBK installed), then operations, each an op byte
//! (`byte % OPS`) and its operands.
//!
//! Properties beyond "never panics": every transmission is one well-formed
//! reply packet; a device that requires the secure channel answers in clear
//! only with osdp_NAK, osdp_PDID and osdp_PDCAP (plus the handshake replies
//! under SCS_12/SCS_14); when the device answers CCRYPT the client
//! cryptogram verifies under the key the harness knows it has, and its
//! RMAC_I verifies; in an undisturbed session every secured reply verifies
//! and parses; a retried command gets the previous reply bit for bit; a new
//! key is only installed from inside a secure channel.

use std::time::{Duration, Instant};

use osdp::command::{self, Command};
use osdp::frame::{self, scb_has_mac, Packet};
use osdp::pd::{PdConfig, PdEvent, PeripheralDevice};
use osdp::reply::{self, Reply};
use osdp::sc::{CpChallenge, Direction, Key, Session, KEY_SELECT_DEFAULT, KEY_SELECT_SCBK};

use crate::cp_target::{pd_caps, pd_id};
use crate::{
    build, counter_rng, fixed_pair, seal, single_packet, Header, Reader, FIXED_KEY, MAX_OPS,
};

/// Number of operations.
pub const OPS: u8 = 8;
/// `len, bytes`: bytes from the bus into `handle_input`.
pub const OP_RAW: u8 = 0;
/// `u16 ms`: advance time and call `handle_timeout`.
pub const OP_ADVANCE: u8 = 1;
/// `flags, addr, code, len, data, [kind, len, scb data, mac4]`: a framed
/// command (flags bit 0 CRC, 1 mark, 2-3 sequence, 4 use the next
/// sequence instead, 5 with SCB; `addr % 3`: own, broadcast, raw value).
pub const OP_CLEAR: u8 = 2;
/// `flags, rnd_a[8]`: handshake from sequence 0 (flags bit 0: SCBK-D,
/// bit 1: corrupt the server cryptogram, bit 2: continue the sequence).
pub const OP_HANDSHAKE: u8 = 3;
/// `flags, code, len, data`: a command sealed in the harness session (a
/// stale session when there is none); flags bits 2-3 give the sequence when
/// bit 4 is set, else the next one is used.
pub const OP_SEALED: u8 = 4;
/// `flags, kind, code, len, wire data`: a secure packet with the correct
/// MAC over fuzzed wire data (flags bit 0: SCS_17 instead of SCS_15).
pub const OP_CIPHERTEXT: u8 = 5;
/// `kind, code, len, data / index, value`: queue a report, set an input
/// or the local status.
pub const OP_REPORT: u8 = 6;
/// Send the last harness packet again (a retry).
pub const OP_RETRY: u8 = 7;

const ADDRESS: u8 = 0x11;

struct Harness {
    pd: PeripheralDevice,
    now: Instant,
    require_secure: bool,
    /// Address the device answers on (follows osdp_COMSET).
    address: u8,
    /// What the harness knows of the device's keys.
    scbk: Option<Key>,
    install_mode: bool,
    session: Option<Session>,
    /// No raw, forged or stale traffic since the handshake.
    clean: bool,
    last_seq: u8,
    /// The last harness packet, the answers it got, and whether a retry of
    /// it must get the same answers, for [`OP_RETRY`].
    last_exchange: Option<(Vec<u8>, Vec<Vec<u8>>, bool)>,
    /// Raw bytes may have left a partial packet in the device's decoder,
    /// which would swallow the start of the next packet.
    dirty: bool,
    /// The current op sends raw bytes.
    op_is_raw: bool,
    /// The current op sends only packets MACed in the harness session.
    authenticated: bool,
    /// The current op sent a handshake security block (SCS_11/SCS_13) on a
    /// command other than CHLNG/SCRYPT: known finding `pd-scs11-bypass`.
    scb_misuse: bool,
    /// Answers produced by such commands: the device's retry cache may send
    /// them again later, to a well-formed command.
    tainted: Vec<Vec<u8>>,
}

/// The harness entry point.
pub fn run(data: &[u8]) {
    let mut r = Reader::new(data);
    let cfg = r.u8();
    let install_mode = cfg & 1 != 0;
    let require_secure = cfg & 2 != 0;
    let scbk = (cfg & 4 == 0).then(|| Key::new(FIXED_KEY));
    let pd = PeripheralDevice::with_rng(
        PdConfig {
            address: ADDRESS,
            id: pd_id(ADDRESS),
            caps: pd_caps(),
            scbk: scbk.clone(),
            install_mode,
            require_secure,
            inputs: 4,
            outputs: 4,
        },
        counter_rng(cfg),
    );
    let mut h = Harness {
        pd,
        now: Instant::now(),
        require_secure,
        address: ADDRESS,
        scbk,
        install_mode,
        session: None,
        clean: false,
        last_seq: 0,
        last_exchange: None,
        dirty: false,
        op_is_raw: false,
        authenticated: false,
        scb_misuse: false,
        tainted: Vec::new(),
    };
    let mut ops = 0;
    while let Some(op) = r.try_u8() {
        ops += 1;
        if ops > MAX_OPS {
            break;
        }
        let op = op % OPS;
        h.authenticated = matches!(op, OP_SEALED | OP_CIPHERTEXT);
        h.op_is_raw = op == OP_RAW;
        h.scb_misuse = false;
        if op != OP_RETRY {
            // Only a retry right after an exchange is checked.
            h.last_exchange = None;
        }
        match op {
            OP_RAW => {
                h.clean = false;
                let bytes = r.prefixed();
                h.send(bytes);
                h.dirty = true;
            }
            OP_ADVANCE => {
                h.now += Duration::from_millis(u64::from(r.u16()));
                let secure = h.pd.is_secure();
                h.pd.handle_timeout(h.now);
                h.events(secure);
                if !h.pd.is_secure() {
                    h.session = None;
                }
            }
            OP_CLEAR => h.clear(&mut r),
            OP_HANDSHAKE => h.handshake(&mut r),
            OP_SEALED => h.sealed(&mut r),
            OP_CIPHERTEXT => h.ciphertext(&mut r),
            OP_REPORT => h.report(&mut r),
            _ => h.retry(),
        }
        let _ = h.pd.poll_timeout();
        let _ = h.pd.outputs();
        let _ = h.pd.address();
    }
}

impl Harness {
    fn next_seq(&mut self) -> u8 {
        self.last_seq = match self.last_seq {
            0 | 3 => 1,
            n => n + 1,
        };
        self.last_seq
    }

    fn header(&self, flags: u8, seq: u8) -> Header {
        Header {
            sequence: seq,
            ..Header::from_flags(self.address, flags)
        }
    }

    /// Sends bytes, returns the device's answers (all checked).
    fn send(&mut self, bytes: &[u8]) -> Vec<Packet> {
        self.note_misuse(bytes);
        let secure = self.pd.is_secure();
        self.pd.handle_input(bytes, self.now);
        let mut out = Vec::new();
        let mut raw = Vec::new();
        while let Some(tx) = self.pd.poll_transmit() {
            let p = single_packet(&tx);
            self.check_reply(&p);
            raw.push(tx);
            out.push(p);
        }
        self.events(secure);
        self.taint(&out);
        let checkable = !self.dirty && !self.op_is_raw;
        self.last_exchange = Some((bytes.to_vec(), raw, checkable));
        out
    }

    /// Empties the device's decoder: one push of more than its bound
    /// (4 maximal packets) keeps only the newest bytes, here all zeros, and
    /// zeros hold no SOM. No packet is processed.
    fn flush(&mut self) {
        if self.dirty {
            let zeros = vec![0u8; 4 * frame::MAX_PACKET_LEN + 1];
            self.pd.handle_input(&zeros, self.now);
            assert!(self.pd.poll_transmit().is_none(), "device answered a flush");
            self.dirty = false;
        }
    }

    /// Records whether `bytes` carry a handshake SCB on another command.
    fn note_misuse(&mut self, bytes: &[u8]) {
        self.scb_misuse |= crate::decode_all(bytes).iter().any(|p| {
            matches!(
                p.security_block().map(|s| s.kind),
                Some(frame::SCS_11 | frame::SCS_13)
            ) && !matches!(p.code(), command::code::CHLNG | command::code::SCRYPT)
        });
    }

    /// Whether a violation is the known finding `pd-scs11-bypass` and
    /// `OSDP_FUZZ_TOLERATE` asks to keep fuzzing past it.
    fn tolerated(&self) -> bool {
        self.scb_misuse && crate::tolerate("pd-scs11-bypass")
    }

    /// Whether `p` is (a repeat of) an answer to a tolerated command.
    fn tolerated_answer(&self, p: &Packet) -> bool {
        self.tolerated() || self.tainted.iter().any(|t| t == p.as_bytes())
    }

    fn taint(&mut self, answers: &[Packet]) {
        if self.tolerated() {
            self.tainted
                .extend(answers.iter().map(|p| p.as_bytes().to_vec()));
            let excess = self.tainted.len().saturating_sub(32);
            self.tainted.drain(..excess);
        }
    }

    fn check_reply(&self, p: &Packet) {
        assert!(p.is_reply(), "device sent without the reply bit");
        let scb = p.security_block().map(|s| s.kind);
        let code = p.code();
        match scb {
            None => {
                if self.require_secure && !self.tolerated_answer(p) {
                    assert!(
                        matches!(
                            code,
                            reply::code::NAK | reply::code::PDID | reply::code::PDCAP
                        ),
                        "secure-only device answered {code:#04x} in clear"
                    );
                }
                if let Err(e) = Reply::parse(code, p.data()) {
                    panic!("device sent a malformed reply: {e}");
                }
            }
            Some(frame::SCS_12) => assert_eq!(code, reply::code::CCRYPT),
            Some(frame::SCS_14) => assert_eq!(code, reply::code::RMAC_I),
            Some(k) => assert!(
                matches!(k, frame::SCS_16 | frame::SCS_18),
                "device answered under SCB {k:#04x}"
            ),
        }
    }

    /// Drains device events. `was_secure`: a session was up before the op.
    ///
    /// Executing a command is only allowed for authenticated commands while
    /// a session is up (a clear command must end the session first), and on
    /// a device that requires the secure channel only for authenticated
    /// commands at all; a new key only ever comes from an authenticated
    /// osdp_KEYSET.
    fn events(&mut self, was_secure: bool) {
        let tolerated = self.tolerated();
        while let Some(e) = self.pd.poll_event() {
            let _ = format!("{e:?}");
            let executed = match &e {
                PdEvent::KeyInstalled(_) => {
                    assert!(was_secure, "key installed outside a secure channel");
                    assert!(
                        self.authenticated || tolerated,
                        "key installed by an unauthenticated command"
                    );
                    Some("KEYSET")
                }
                PdEvent::ComSet { .. } => Some("COMSET"),
                PdEvent::Command(c) => Some(c.name()),
                _ => None,
            };
            if let Some(name) = executed {
                if !self.authenticated && !tolerated {
                    assert!(
                        !self.require_secure,
                        "{name} executed outside the secure channel"
                    );
                    assert!(
                        !self.pd.is_secure(),
                        "unauthenticated {name} executed while the session stays up"
                    );
                }
            }
            match e {
                PdEvent::KeyInstalled(k) => {
                    self.scbk = Some(k);
                    self.install_mode = false;
                    self.session = None;
                }
                PdEvent::ComSet { address, .. } if address <= osdp::cp::MAX_ADDRESS => {
                    self.address = address;
                }
                PdEvent::SecureChannelLost => self.session = None,
                _ => {}
            }
        }
    }

    fn clear(&mut self, r: &mut Reader<'_>) {
        self.clean = false;
        let flags = r.u8();
        let addr_sel = r.u8();
        let code = r.u8();
        let data = r.prefixed();
        let scb = if flags & 0x20 != 0 {
            let kind = frame::SCS_11 + r.u8() % 8;
            Some((kind, r.prefixed()))
        } else {
            None
        };
        let mac: [u8; 4] = if scb.is_some() { r.array() } else { [0; 4] };
        let seq = if flags & 0x10 != 0 {
            self.next_seq()
        } else {
            (flags >> 2) & 3
        };
        let mut hdr = self.header(flags, seq);
        hdr.address = match addr_sel % 3 {
            0 => self.address,
            1 => frame::ADDR_BROADCAST,
            _ => addr_sel & 0x7F,
        };
        if let Some(bytes) = build(hdr, false, scb, code, data, mac) {
            self.send(&bytes);
        }
    }

    fn handshake(&mut self, r: &mut Reader<'_>) {
        let flags = r.u8();
        let rnd_a: [u8; 8] = r.array();
        self.session = None;
        let default_key = flags & 1 != 0;
        // From sequence 0 on an empty decoder the device cannot answer from
        // its retry cache or an earlier packet, so its answers are to this
        // handshake and must verify.
        let strict = flags & 4 == 0;
        if strict {
            self.flush();
        }
        let key = match (default_key, &self.scbk) {
            (true, _) => Key::DEFAULT,
            (false, Some(k)) => k.clone(),
            (false, None) => Key::new([0xEE; 16]),
        };
        let device_has_key = if default_key {
            self.install_mode
        } else {
            self.scbk.is_some()
        };
        let ch = CpChallenge::new(&key, default_key, rnd_a);
        let select = ch.key_select();
        assert_eq!(
            select,
            if default_key {
                KEY_SELECT_DEFAULT
            } else {
                KEY_SELECT_SCBK
            }
        );
        if flags & 4 == 0 {
            self.last_seq = 0;
        } else {
            self.next_seq();
        }
        let hdr = self.header(0x01, self.last_seq);
        let chlng = Command::Challenge(rnd_a).to_data();
        let Some(bytes) = build(
            hdr,
            false,
            Some((frame::SCS_11, &[select])),
            command::code::CHLNG,
            &chlng,
            [0; 4],
        ) else {
            return;
        };
        let answers = self.send(&bytes);
        let Some(ccrypt) = answers
            .iter()
            .find_map(|p| match Reply::parse(p.code(), p.data()) {
                Ok(Reply::ClientCryptogram(c)) => Some(c),
                _ => None,
            })
        else {
            self.clean = false;
            return;
        };
        if strict {
            assert!(device_has_key, "CCRYPT from a device without that key");
        }
        let pending = match ch.verify(&ccrypt.rnd_b, &ccrypt.cryptogram) {
            Ok(p) => p,
            Err(e) if strict => panic!("device's client cryptogram refused: {e}"),
            Err(_) => {
                self.clean = false;
                return;
            }
        };
        let mut server = pending.server_cryptogram();
        let corrupt = flags & 2 != 0;
        if corrupt {
            server[usize::from(flags >> 4)] ^= 0x01;
        }
        let seq = self.next_seq();
        let hdr = self.header(0x01, seq);
        let scrypt = Command::ServerCryptogram(server).to_data();
        let Some(bytes) = build(
            hdr,
            false,
            Some((frame::SCS_13, &[pending.key_select()])),
            command::code::SCRYPT,
            &scrypt,
            [0; 4],
        ) else {
            return;
        };
        let answers = self.send(&bytes);
        let rmac = answers
            .iter()
            .find_map(|p| match Reply::parse(p.code(), p.data()) {
                Ok(Reply::InitialRmac(m)) => Some(m),
                _ => None,
            });
        match (corrupt, rmac) {
            (false, Some(m)) => match pending.establish(&m) {
                Ok(s) => {
                    assert!(self.pd.is_secure(), "device sent RMAC_I without a session");
                    assert_eq!(s.uses_default_key(), default_key);
                    self.session = Some(s);
                    self.clean = true;
                }
                Err(e) => {
                    assert!(!strict, "device's initial R-MAC refused: {e}");
                    self.clean = false;
                }
            },
            (false, None) => {
                assert!(!strict, "honest SCRYPT not answered with RMAC_I");
                self.clean = false;
            }
            (true, Some(_)) => assert!(!strict, "corrupted SCRYPT answered with RMAC_I"),
            (true, None) => {
                if strict {
                    assert!(!self.pd.is_secure());
                }
                self.clean = false;
            }
        }
    }

    fn sealed(&mut self, r: &mut Reader<'_>) {
        let flags = r.u8();
        let code = r.u8();
        let data = r.prefixed();
        let fresh = flags & 0x10 == 0;
        let seq = if fresh {
            self.next_seq()
        } else {
            (flags >> 2) & 3
        };
        let hdr = self.header(flags, seq);
        let stale = self.session.is_none();
        let mut session = self.session.take().unwrap_or_else(|| fixed_pair().0);
        let Some(bytes) = seal(&mut session, Direction::Command, hdr, code, data) else {
            self.session = (!stale).then_some(session);
            return;
        };
        let keyset = code == command::code::KEYSET;
        let checked = self.clean && !self.dirty && fresh && !stale;
        let answers = self.send(&bytes);
        if !fresh || stale {
            self.clean = false;
        }
        let mut session = Some(session);
        for p in &answers {
            let secured = p.security_block().is_some_and(|s| scb_has_mac(s.kind));
            let Some(s) = session.take() else {
                break;
            };
            if !secured {
                // The device dropped the session.
                continue;
            }
            match s.open(Direction::Reply, p) {
                Ok((s, plain)) => {
                    if let Err(e) = Reply::parse(p.code(), &plain) {
                        panic!("secured reply does not parse: {e}");
                    }
                    session = Some(s);
                }
                Err(e) => {
                    assert!(
                        !checked,
                        "secured reply in an undisturbed session refused: {e}"
                    );
                }
            }
        }
        if keyset || !self.pd.is_secure() || stale {
            session = None;
        }
        if session.is_none() {
            self.clean = false;
        }
        self.session = session;
    }

    fn ciphertext(&mut self, r: &mut Reader<'_>) {
        self.clean = false;
        let flags = r.u8();
        let code = r.u8();
        let wire = r.prefixed();
        let kind = if flags & 1 != 0 {
            frame::SCS_17
        } else {
            frame::SCS_15
        };
        let seq = self.next_seq();
        let hdr = self.header(flags >> 1, seq);
        let mut session = self.session.take().unwrap_or_else(|| fixed_pair().0);
        let b = frame::PacketBuilder {
            address: hdr.address,
            reply: false,
            sequence: hdr.sequence,
            check: hdr.check,
            mark: hdr.mark,
            scb: Some((kind, &[])),
            code,
            data: wire,
        };
        let mut out = Vec::new();
        if b.encode(
            &mut out,
            Some(&mut |m: &[u8]| session.sign(Direction::Command, m)),
        )
        .is_ok()
        {
            self.send(&out);
        }
        // The session state is no longer known for sure: handshake again.
        self.session = None;
    }

    fn report(&mut self, r: &mut Reader<'_>) {
        let kind = r.u8();
        match kind % 3 {
            0 => {
                let code = r.u8();
                let data = r.prefixed();
                if let Ok(reply) = Reply::parse(code, data) {
                    self.pd.queue_report(reply);
                }
            }
            1 => {
                let index = r.u8();
                self.pd.set_input(usize::from(index % 8), kind & 0x80 != 0);
            }
            _ => self.pd.set_local_status(kind & 0x40 != 0, kind & 0x80 != 0),
        }
    }

    fn retry(&mut self) {
        let Some((bytes, before, checkable)) = self.last_exchange.take() else {
            return;
        };
        let seq = decode_seq(&bytes);
        self.note_misuse(&bytes);
        let secure = self.pd.is_secure();
        self.pd.handle_input(&bytes, self.now);
        let mut after = Vec::new();
        let mut packets = Vec::new();
        while let Some(tx) = self.pd.poll_transmit() {
            let p = single_packet(&tx);
            self.check_reply(&p);
            after.push(tx);
            packets.push(p);
        }
        self.events(secure);
        self.taint(&packets);
        // Sequence 0 restarts the conversation; otherwise a repeated command
        // gets the cached answer, bit for bit.
        if checkable && seq.is_some_and(|s| s != 0) && before.len() == 1 {
            assert_eq!(after, before, "retry not answered with the same bytes");
        }
        if !checkable {
            // Raw bytes again, or sent on a dirty decoder.
            self.dirty = true;
        }
        self.last_exchange = Some((bytes, after, checkable));
        self.clean = false;
        self.session = None;
    }
}

/// The sequence number of the single command packet in `bytes`, if any.
fn decode_seq(bytes: &[u8]) -> Option<u8> {
    match crate::decode_all(bytes).as_slice() {
        [p] if !p.is_reply() => Some(p.sequence()),
        _ => None,
    }
}
