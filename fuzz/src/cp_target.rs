//! `control_panel`: a `ControlPanel` with three devices (clear, own key,
//! install mode) driven by a fuzzed program of operations at advancing
//! virtual instants.
//!
//! Honest `PeripheralDevice`s with matching configuration sit on the
//! simulated bus, so a short program (a few [`OP_EXCHANGE`]s) brings every
//! device online, through the secure channel handshake where configured;
//! the fuzzer then mixes raw bytes, forged and corrupted replies, timeouts
//! and submitted commands into that conversation.
//!
//! Input: one configuration byte (bit 0: checksum instead of CRC, bit 1: no
//! mark byte), then operations, each an op byte (`byte % OPS`) and its
//! operands.
//!
//! Properties beyond "never panics": every transmission is one well-formed
//! packet carrying a well-formed command; at most one request is in flight;
//! a device configured with a key is never sent anything but osdp_ID,
//! osdp_CAP and the handshake in clear, and osdp_KEYSET only encrypted; such
//! a device never comes online without a secure channel; its data replies
//! are delivered only while its secure channel is up.

use std::time::{Duration, Instant};

use osdp::command::{self, Command};
use osdp::cp::{wire_time, ControlPanel, CpConfig, Event, PdConfig, Security, SubmitError};
use osdp::frame::{self, scb_has_mac, CTRL_CRC};
use osdp::pd::{self, PeripheralDevice};
use osdp::reply::{Capability, CapabilityFunction, PdId};
use osdp::sc::Key;

use crate::{build, counter_rng, single_packet, Header, Reader, FIXED_KEY, MAX_OPS};

/// Number of operations.
pub const OPS: u8 = 9;
/// `len, bytes`: bytes from the bus into `handle_input`.
pub const OP_RAW: u8 = 0;
/// `u16 ms`: advance time and call `handle_timeout`.
pub const OP_ADVANCE: u8 = 1;
/// `poll_transmit`; the bytes are kept for [`OP_ANSWER`] / [`OP_CORRUPT`].
pub const OP_TRANSMIT: u8 = 2;
/// `split`: the devices answer the kept transmission; each answer reaches
/// the CP in two chunks cut at `split`.
pub const OP_ANSWER: u8 = 3;
/// `flags, flags2, code, len, data, [kind, len, scb data, mac4]`: a reply
/// forged for the request in flight (address and sequence), check correct.
pub const OP_FORGE: u8 = 4;
/// `u16 pos, xor, fix`: like [`OP_ANSWER`] with one byte of each answer
/// changed, the check recomputed when `fix` is odd.
pub const OP_CORRUPT: u8 = 5;
/// `device, code, len, data`: submit the parsed command.
pub const OP_SUBMIT: u8 = 6;
/// `n`: `n % 32 + 1` honest bus steps (transmit, answer, or sleep until the
/// next timeout).
pub const OP_EXCHANGE: u8 = 7;
/// Check `status`, `stats` and `poll_timeout`.
pub const OP_STATUS: u8 = 8;

/// Upper bound on honest bus steps per input, to keep executions fast.
pub const MAX_STEPS: usize = 400;

/// Device addresses: clear, own key, install mode.
pub const ADDRS: [u8; 3] = [0x00, 0x01, 0x05];

fn secure_addr(addr: u8) -> bool {
    addr != ADDRS[0]
}

/// The identity the simulated devices report.
pub fn pd_id(address: u8) -> PdId {
    PdId {
        vendor_code: [0x5C, 0x26, 0x23],
        model: 0x19,
        version: 0x02,
        serial: 0x1000_0000 | u32::from(address),
        firmware_major: 1,
        firmware_minor: 2,
        firmware_build: 3,
    }
}

/// The capabilities the simulated devices report.
pub fn pd_caps() -> Vec<Capability> {
    vec![
        Capability {
            function: CapabilityFunction::CommunicationSecurity,
            compliance: 1,
            num_items: 1,
        },
        Capability {
            function: CapabilityFunction::CheckCharacterSupport,
            compliance: 1,
            num_items: 0,
        },
        Capability {
            function: CapabilityFunction::Readers,
            compliance: 0,
            num_items: 1,
        },
    ]
}

struct Bus {
    cp: ControlPanel,
    pds: Vec<PeripheralDevice>,
    now: Instant,
    baud: u32,
    kept: Option<Vec<u8>>,
    /// (address, sequence) of the last request the CP sent.
    last_request: Option<(u8, u8)>,
}

/// The harness entry point.
pub fn run(data: &[u8]) {
    let mut r = Reader::new(data);
    let cfg = r.u8();
    let start = Instant::now();
    let config = CpConfig {
        use_crc: cfg & 1 == 0,
        send_mark: cfg & 2 == 0,
        ..CpConfig::default()
    };
    let baud = config.baud;
    let key = Key::new(FIXED_KEY);
    let cp = ControlPanel::with_rng(
        config,
        vec![
            PdConfig {
                address: ADDRS[0],
                security: Security::Clear,
            },
            PdConfig {
                address: ADDRS[1],
                security: Security::Secure(key.clone()),
            },
            PdConfig {
                address: ADDRS[2],
                security: Security::Install,
            },
        ],
        start,
        counter_rng(1),
    )
    .expect("valid configuration");
    let device = |address: u8, scbk: Option<Key>, install_mode: bool, require_secure: bool| {
        PeripheralDevice::with_rng(
            pd::PdConfig {
                address,
                id: pd_id(address),
                caps: pd_caps(),
                scbk,
                install_mode,
                require_secure,
                inputs: 2,
                outputs: 2,
            },
            counter_rng(address.wrapping_add(7)),
        )
    };
    let mut bus = Bus {
        cp,
        pds: vec![
            device(ADDRS[0], None, false, false),
            device(ADDRS[1], Some(key), false, true),
            device(ADDRS[2], None, true, false),
        ],
        now: start,
        baud,
        kept: None,
        last_request: None,
    };

    let mut ops = 0;
    let mut steps = 0;
    while let Some(op) = r.try_u8() {
        ops += 1;
        if ops > MAX_OPS {
            break;
        }
        match op % OPS {
            OP_RAW => {
                let bytes = r.prefixed();
                bus.input(bytes);
            }
            OP_ADVANCE => {
                bus.now += Duration::from_millis(u64::from(r.u16()));
                bus.cp.handle_timeout(bus.now);
                bus.events();
            }
            OP_TRANSMIT => {
                if let Some(tx) = bus.transmit() {
                    bus.kept = Some(tx);
                }
            }
            OP_ANSWER => {
                let split = r.u8();
                if let Some(tx) = bus.kept.take() {
                    bus.deliver(&tx, None, split);
                }
            }
            OP_FORGE => bus.forge(&mut r),
            OP_CORRUPT => {
                let pos = r.u16();
                let xor = r.u8() | 1;
                let fix = r.u8() & 1 != 0;
                if let Some(tx) = bus.kept.take() {
                    bus.deliver(&tx, Some((pos, xor, fix)), 0);
                }
            }
            OP_SUBMIT => bus.submit(&mut r),
            OP_EXCHANGE => {
                let n = usize::from(r.u8() % 32) + 1;
                for _ in 0..n {
                    if steps >= MAX_STEPS || !bus.step() {
                        break;
                    }
                    steps += 1;
                }
            }
            _ => bus.status(),
        }
    }
    bus.status();
}

impl Bus {
    fn input(&mut self, bytes: &[u8]) {
        self.cp.handle_input(bytes, self.now);
        self.events();
    }

    /// `poll_transmit` with the transmission checks.
    fn transmit(&mut self) -> Option<Vec<u8>> {
        let tx = self.cp.poll_transmit(self.now);
        self.events();
        let tx = tx?;
        let p = single_packet(&tx);
        assert!(!p.is_reply(), "CP set the reply bit");
        let addr = p.address();
        assert!(
            ADDRS.contains(&addr),
            "CP sent to unconfigured address {addr:#04x}"
        );
        let scb = p.security_block().map(|s| s.kind);
        let secured = scb.is_some_and(scb_has_mac);
        let code = p.code();
        if secure_addr(addr) && !secured {
            let allowed = match code {
                command::code::ID | command::code::CAP => scb.is_none(),
                command::code::CHLNG => scb == Some(frame::SCS_11),
                command::code::SCRYPT => scb == Some(frame::SCS_13),
                _ => false,
            };
            assert!(
                allowed,
                "CP sent {code:#04x} (SCB {scb:?}) in clear to a secured device"
            );
        }
        if code == command::code::KEYSET {
            assert_eq!(scb, Some(frame::SCS_17), "osdp_KEYSET not encrypted");
        }
        if !secured {
            if let Err(e) = Command::parse(code, p.data()) {
                panic!("CP sent a malformed command: {e}");
            }
        }
        // One request at a time.
        assert!(
            self.cp.poll_transmit(self.now).is_none(),
            "a second request while one is in flight"
        );
        self.last_request = Some((addr, p.sequence()));
        Some(tx)
    }

    /// The devices hear `tx` and their answers go back to the CP.
    fn deliver(&mut self, tx: &[u8], corrupt: Option<(u16, u8, bool)>, split: u8) {
        self.now += wire_time(tx.len(), self.baud);
        let mut answers = Vec::new();
        for pd in &mut self.pds {
            pd.handle_input(tx, self.now);
            while pd.poll_event().is_some() {}
            while let Some(b) = pd.poll_transmit() {
                answers.push(b);
            }
        }
        self.now += Duration::from_micros(200);
        for mut a in answers {
            let p = single_packet(&a);
            assert!(p.is_reply());
            if let Some((pos, xor, fix)) = corrupt {
                let skip = usize::from(p.marked());
                let len = a.len() - skip;
                let at = skip + usize::from(pos) % len;
                a[at] ^= xor;
                if fix {
                    let crc = a[skip + 4] & CTRL_CRC != 0;
                    let end = a.len() - if crc { 2 } else { 1 };
                    if crc {
                        let c = frame::crc16(&a[skip..end]).to_le_bytes();
                        a[end..].copy_from_slice(&c);
                    } else {
                        a[end] = frame::checksum(&a[skip..end]);
                    }
                }
            }
            let cut = usize::from(split) % (a.len() + 1);
            self.input(&a[..cut]);
            self.input(&a[cut..]);
            self.now += wire_time(a.len(), self.baud);
        }
    }

    /// One honest step; false when nothing is scheduled.
    fn step(&mut self) -> bool {
        if let Some(tx) = self.transmit() {
            self.deliver(&tx, None, 0);
            return true;
        }
        match self.cp.poll_timeout() {
            Some(t) => {
                self.now = self.now.max(t);
                self.cp.handle_timeout(self.now);
                self.events();
                true
            }
            None => false,
        }
    }

    fn forge(&mut self, r: &mut Reader<'_>) {
        let flags = r.u8();
        let flags2 = r.u8();
        let code = r.u8();
        let data = r.prefixed();
        let scb = if flags & 0x08 != 0 {
            let kind = frame::SCS_11 + r.u8() % 8;
            Some((kind, r.prefixed()))
        } else {
            None
        };
        let mac: [u8; 4] = if scb.is_some() { r.array() } else { [0; 4] };
        let (mut addr, mut seq) = self.last_request.unwrap_or((ADDRS[1], 0));
        if flags & 0x04 != 0 {
            seq = (flags >> 4) & 3;
        }
        match (flags2 >> 1) & 3 {
            0 => {}
            n => addr = ADDRS[usize::from(n - 1)],
        }
        let hdr = Header {
            sequence: seq,
            ..Header::from_flags(addr, flags)
        };
        if let Some(bytes) = build(hdr, flags2 & 1 == 0, scb, code, data, mac) {
            self.input(&bytes);
        }
    }

    fn submit(&mut self, r: &mut Reader<'_>) {
        let which = r.u8();
        let code = r.u8();
        let data = r.prefixed();
        let Ok(cmd) = Command::parse(code, data) else {
            return;
        };
        let addr = match which % 4 {
            3 => 0x33,
            n => ADDRS[usize::from(n)],
        };
        let is_keyset = matches!(cmd, Command::KeySet(_));
        let reserved = matches!(
            cmd,
            Command::Poll | Command::Challenge(_) | Command::ServerCryptogram(_)
        );
        let status = self.cp.status();
        let st = status.iter().find(|s| s.address == addr);
        match self.cp.submit(addr, cmd) {
            Ok(_) => {
                let st = st.expect("accepted for a configured device");
                assert!(st.online, "accepted for an offline device");
                assert!(!reserved, "accepted a reserved command");
                if is_keyset {
                    assert!(st.secure, "KEYSET accepted without secure channel");
                }
            }
            Err(SubmitError::UnknownDevice(a)) => assert!(a == addr && st.is_none()),
            Err(e) => {
                let _ = e.to_string();
            }
        }
        self.events();
    }

    fn status(&mut self) {
        let status = self.cp.status();
        assert_eq!(status.len(), ADDRS.len());
        for s in &status {
            if s.secure {
                assert!(s.online, "secure but not online");
                assert!(secure_addr(s.address), "clear device reports secure");
            }
            if s.online && secure_addr(s.address) {
                assert!(s.secure, "device {:#04x} online in clear", s.address);
            }
            if s.default_key {
                assert!(s.secure);
            }
        }
        let stats = self.cp.stats();
        assert!(stats.timeouts <= stats.sent);
        assert!(stats.retries <= stats.timeouts);
        assert!(stats.polls <= stats.sent);
        let _ = self.cp.poll_timeout();
        let _ = self.cp.config();
        self.events();
    }

    fn events(&mut self) {
        while let Some(e) = self.cp.poll_event() {
            let _ = format!("{e:?}");
            match e {
                Event::Online {
                    pd,
                    secure,
                    default_key,
                } => {
                    assert_eq!(
                        secure,
                        secure_addr(pd),
                        "device {pd:#04x} online, secure={secure}"
                    );
                    if default_key {
                        assert!(secure && pd == ADDRS[2], "SCBK-D session for {pd:#04x}");
                    }
                }
                Event::Reply { pd, .. } if secure_addr(pd) => {
                    let secure = self.cp.status().iter().any(|s| s.address == pd && s.secure);
                    assert!(
                        secure,
                        "data from {pd:#04x} delivered without secure channel"
                    );
                }
                _ => {}
            }
        }
    }
}
