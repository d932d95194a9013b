//! Fuzz harnesses for the `osdp` crate.
//!
//! Each libFuzzer target in `fuzz_targets/` is a one-line call into a module
//! here, so the same harness code can replay seeds and regressions from an
//! ordinary build (`cargo run --example replay`) and the seed generator
//! (`cargo run --example gen_seeds`) can share the input formats.
//!
//! Conventions: a harness never returns an error; it either returns normally
//! or panics (`assert!`), which libFuzzer reports as a crash. Every `assert!`
//! here states a property the `osdp` crate promises, not a harness detail.

pub mod card_target;
pub mod cp_target;
pub mod frame_target;
pub mod payload_target;
pub mod pd_target;
pub mod replay;
pub mod sc_target;
pub mod seeds;

use osdp::frame::{Check, Decoder, Packet, PacketBuilder};
use osdp::sc::{CpChallenge, Direction, Key, PdChallenge, Session};

/// The fixed secure channel base key the harnesses use.
pub const FIXED_KEY: [u8; 16] = [
    0x0F, 0x1E, 0x2D, 0x3C, 0x4B, 0x5A, 0x69, 0x78, 0x87, 0x96, 0xA5, 0xB4, 0xC3, 0xD2, 0xE1, 0xF0,
];
/// The fixed RND.A of the deterministic session pair.
pub const FIXED_RND_A: [u8; 8] = [0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7];
/// The fixed RND.B of the deterministic session pair.
pub const FIXED_RND_B: [u8; 8] = [0xB0, 0xB1, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7];

/// Upper bound on operations one input may drive, to keep executions fast.
pub const MAX_OPS: usize = 200;

/// Reads fuzz input front to back; missing bytes read as zero, so every
/// input is a valid program.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Wraps the input.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, `None` at the end.
    pub fn try_u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    /// The next byte, 0 at the end.
    pub fn u8(&mut self) -> u8 {
        self.try_u8().unwrap_or(0)
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A length byte and up to that many bytes.
    pub fn prefixed(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.take(n)
    }

    /// `N` bytes, zero-padded at the end of the input.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let got = self.take(N);
        out[..got.len()].copy_from_slice(got);
        out
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let r = self.data;
        self.data = &[];
        r
    }
}

/// Appends a length-prefixed field as [`Reader::prefixed`] reads it.
pub fn put_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len().min(255);
    out.push(n as u8);
    out.extend_from_slice(&bytes[..n]);
}

/// Runs the honest four-step handshake and returns (CP session, PD session).
/// With honest inputs every step must succeed, whatever the key and randoms.
pub fn handshake(
    key: &Key,
    default_key: bool,
    rnd_a: [u8; 8],
    rnd_b: [u8; 8],
) -> (Session, Session) {
    let pd = PdChallenge::new(key, default_key, rnd_a, rnd_b);
    let (rb, client) = pd.client_cryptogram();
    assert_eq!(rb, rnd_b, "osdp_CCRYPT must carry the PD's RND.B");
    let cp = CpChallenge::new(key, default_key, rnd_a);
    assert_eq!(cp.rnd_a(), rnd_a);
    let pending = match cp.verify(&rb, &client) {
        Ok(p) => p,
        Err(e) => panic!("honest client cryptogram rejected: {e}"),
    };
    let (pd_session, rmac) = match pd.verify(&pending.server_cryptogram()) {
        Ok(v) => v,
        Err(e) => panic!("honest server cryptogram rejected: {e}"),
    };
    let cp_session = match pending.establish(&rmac) {
        Ok(s) => s,
        Err(e) => panic!("honest initial R-MAC rejected: {e}"),
    };
    assert_eq!(cp_session.uses_default_key(), default_key);
    assert_eq!(pd_session.uses_default_key(), default_key);
    (cp_session, pd_session)
}

/// The deterministic session pair (fixed key and randoms).
pub fn fixed_pair() -> (Session, Session) {
    handshake(&Key::new(FIXED_KEY), false, FIXED_RND_A, FIXED_RND_B)
}

/// Header fields of a packet to build.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// Address 0..=0x7F.
    pub address: u8,
    /// Sequence number.
    pub sequence: u8,
    /// Integrity check.
    pub check: Check,
    /// Send the mark byte.
    pub mark: bool,
}

impl Header {
    /// Header from a flags byte: bit 0 CRC, bit 1 mark, bits 2-3 sequence.
    pub fn from_flags(address: u8, flags: u8) -> Header {
        Header {
            address: address & 0x7F,
            sequence: (flags >> 2) & 3,
            check: if flags & 1 != 0 {
                Check::Crc16
            } else {
                Check::Checksum
            },
            mark: flags & 2 != 0,
        }
    }
}

/// Seals `plain` under `session` as a packet in `dir` (`None` if it would
/// exceed the maximum packet size; the chain is then left untouched).
pub fn seal(
    session: &mut Session,
    dir: Direction,
    hdr: Header,
    code: u8,
    plain: &[u8],
) -> Option<Vec<u8>> {
    let (kind, data) = session.encrypt(dir, plain);
    let b = PacketBuilder {
        address: hdr.address,
        reply: dir == Direction::Reply,
        sequence: hdr.sequence,
        check: hdr.check,
        mark: hdr.mark,
        scb: Some((kind, &[])),
        code,
        data: &data,
    };
    let mut out = Vec::new();
    b.encode(&mut out, Some(&mut |m: &[u8]| session.sign(dir, m)))
        .ok()?;
    Some(out)
}

/// Builds a clear packet (or one with an arbitrary SCB and a given MAC).
pub fn build(
    hdr: Header,
    reply: bool,
    scb: Option<(u8, &[u8])>,
    code: u8,
    data: &[u8],
    mac: [u8; 4],
) -> Option<Vec<u8>> {
    let b = PacketBuilder {
        address: hdr.address,
        reply,
        sequence: hdr.sequence,
        check: hdr.check,
        mark: hdr.mark,
        scb,
        code,
        data,
    };
    let mut out = Vec::new();
    b.encode(&mut out, Some(&mut |_: &[u8]| mac)).ok()?;
    Some(out)
}

/// Every packet in `bytes`.
pub fn decode_all(bytes: &[u8]) -> Vec<Packet> {
    let mut d = Decoder::default();
    d.push(bytes);
    std::iter::from_fn(|| d.next_packet()).collect()
}

/// Asserts that bytes a state machine put on the wire are exactly one
/// well-formed packet, and returns it.
pub fn single_packet(bytes: &[u8]) -> Packet {
    let packets = decode_all(bytes);
    assert_eq!(
        packets.len(),
        1,
        "a transmission must be exactly one packet: {bytes:02x?}"
    );
    let p = &packets[0];
    let skip = usize::from(p.marked());
    assert_eq!(&bytes[skip..], p.as_bytes(), "transmission has stray bytes");
    frame_target::check_packet(p, osdp::frame::MAX_PACKET_LEN);
    p.clone()
}

/// Whether the known finding `id` is listed in `OSDP_FUZZ_TOLERATE`
/// (comma-separated), so that fuzzing can go on past it until it is fixed.
/// Unset, every finding is a crash.
pub fn tolerate(id: &str) -> bool {
    static LIST: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        std::env::var("OSDP_FUZZ_TOLERATE")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    })
    .iter()
    .any(|t| t == id)
}

/// A deterministic random source for CP and PD state machines.
pub fn counter_rng(seed: u8) -> osdp::cp::RandomSource {
    let mut state = u32::from(seed).wrapping_mul(0x9E37_79B9) | 1;
    Box::new(move |buf: &mut [u8]| {
        for b in buf {
            // xorshift32
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *b = state as u8;
        }
    })
}
