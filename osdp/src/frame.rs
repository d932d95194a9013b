//! OSDP packet framing: building packets and finding them in a byte stream.
//!
//! A packet on the wire is
//!
//! ```text
//! [MARK 0xFF] SOM 0x53 | ADDR | LEN_LSB LEN_MSB | CTRL | [SCB] | CODE | DATA.. | [MAC 4] | CRC 2 or CKSUM 1
//! ```
//!
//! `LEN` counts every byte from SOM to the end of the check field; the mark
//! byte is outside the packet. [`PacketBuilder`] writes packets (the secure
//! channel computes the MAC over the bytes it is handed), [`Decoder`] accepts
//! arbitrary chunks of bus bytes and yields validated [`Packet`]s, skipping
//! noise, truncated frames and stray `0x53` bytes inside data.

use crc::{Crc, CRC_16_SPI_FUJITSU};
use thiserror::Error;

/// Mark byte sent before SOM (OSDP 2.2); optional on receive.
pub const MARK: u8 = 0xFF;
/// Start of message.
pub const SOM: u8 = 0x53;
/// Broadcast address (configuration address).
pub const ADDR_BROADCAST: u8 = 0x7F;
/// Address bit set on every PD reply.
pub const ADDR_REPLY_BIT: u8 = 0x80;

/// CTRL: sequence number mask.
pub const CTRL_SQN: u8 = 0x03;
/// CTRL: 16-bit CRC in use (clear: 8-bit checksum).
pub const CTRL_CRC: u8 = 0x04;
/// CTRL: a security control block follows the header.
pub const CTRL_SCB: u8 = 0x08;
/// CTRL: multi-part message (not used by OSDP 2.2 messages we send).
pub const CTRL_MULTI: u8 = 0x80;

/// Header length: SOM, ADDR, LEN (2), CTRL.
pub const HEADER_LEN: usize = 5;
/// The smallest packet: header, code and checksum.
pub const MIN_PACKET_LEN: usize = HEADER_LEN + 1 + 1;
/// The smallest receive buffer a device may declare.
pub const MIN_MAX_PACKET_LEN: usize = 128;
/// The largest packet this crate handles.
pub const MAX_PACKET_LEN: usize = 1440;
/// Length of the truncated MAC carried in a secure packet.
pub const MAC_LEN: usize = 4;

/// SCB type: CP begins a handshake (osdp_CHLNG).
pub const SCS_11: u8 = 0x11;
/// SCB type: PD answers the challenge (osdp_CCRYPT).
pub const SCS_12: u8 = 0x12;
/// SCB type: CP sends its cryptogram (osdp_SCRYPT).
pub const SCS_13: u8 = 0x13;
/// SCB type: PD sends the initial R-MAC (osdp_RMAC_I).
pub const SCS_14: u8 = 0x14;
/// SCB type: command with MAC, data in clear.
pub const SCS_15: u8 = 0x15;
/// SCB type: reply with MAC, data in clear.
pub const SCS_16: u8 = 0x16;
/// SCB type: command with MAC, data encrypted.
pub const SCS_17: u8 = 0x17;
/// SCB type: reply with MAC, data encrypted.
pub const SCS_18: u8 = 0x18;

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_SPI_FUJITSU);

/// CRC-16 of OSDP: polynomial 0x1021, initial value 0x1D0F, no reflection.
pub fn crc16(bytes: &[u8]) -> u16 {
    CRC16.checksum(bytes)
}

/// The 8-bit checksum: two's complement of the byte sum.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// Which integrity check closes a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// One byte, two's complement sum.
    Checksum,
    /// Two bytes, CRC-16, least significant byte first.
    Crc16,
}

impl Check {
    /// Bytes the check takes on the wire.
    pub const fn wire_len(self) -> usize {
        match self {
            Check::Checksum => 1,
            Check::Crc16 => 2,
        }
    }
}

/// Why bytes on the bus were not a packet, or a packet could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The length field is below the minimum or above the receive limit.
    #[error("length field {0} out of range")]
    BadLength(usize),
    /// The CRC or checksum does not match the bytes.
    #[error("integrity check failed")]
    BadCheck,
    /// The security control block is malformed or overruns the packet.
    #[error("malformed security control block")]
    BadSecurityBlock,
    /// A secure packet is too short to hold its MAC.
    #[error("secure packet too short for its MAC")]
    MissingMac,
    /// The packet to build would exceed the maximum packet size.
    #[error("packet of {0} bytes exceeds the maximum")]
    TooLong(usize),
    /// Address above 0x7F.
    #[error("address {0:#04x} out of range")]
    BadAddress(u8),
}

/// Whether an SCB type carries a MAC after the data.
pub const fn scb_has_mac(kind: u8) -> bool {
    matches!(kind, SCS_15..=SCS_18)
}

/// Whether an SCB type carries encrypted data.
pub const fn scb_is_encrypted(kind: u8) -> bool {
    matches!(kind, SCS_17 | SCS_18)
}

/// A structurally valid packet: length, integrity check and security block
/// shape have been verified. MAC and decryption are the secure channel's job.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    /// SOM through the integrity check (mark byte excluded).
    bytes: Vec<u8>,
    /// Whether a mark byte preceded the packet.
    marked: bool,
    /// Offset of the command or reply code.
    code_at: usize,
    /// Offset one past the last data byte.
    data_end: usize,
}

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Data may be a card number or a key: only its length is shown.
        f.debug_struct("Packet")
            .field("addr", &self.address())
            .field("reply", &self.is_reply())
            .field("seq", &self.sequence())
            .field("scb", &self.security_block().map(|s| s.kind))
            .field("code", &format_args!("{:#04x}", self.code()))
            .field("data_len", &self.data().len())
            .finish()
    }
}

/// A security control block as found in a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityBlock<'a> {
    /// SCS_11..SCS_18.
    pub kind: u8,
    /// Bytes after the type byte (for example the key selector in SCS_11).
    pub data: &'a [u8],
}

impl Packet {
    /// Parses one complete packet (without mark byte). `bytes.len()` must equal
    /// the length field.
    pub fn parse(bytes: Vec<u8>, marked: bool) -> Result<Packet, FrameError> {
        let len = bytes.len();
        if len < MIN_PACKET_LEN || bytes[0] != SOM {
            return Err(FrameError::BadLength(len));
        }
        let declared = usize::from(u16::from_le_bytes([bytes[2], bytes[3]]));
        if declared != len {
            return Err(FrameError::BadLength(declared));
        }
        let ctrl = bytes[4];
        let check = if ctrl & CTRL_CRC != 0 {
            Check::Crc16
        } else {
            Check::Checksum
        };
        let body_end = len - check.wire_len();
        match check {
            Check::Crc16 => {
                let got = u16::from_le_bytes([bytes[body_end], bytes[body_end + 1]]);
                if crc16(&bytes[..body_end]) != got {
                    return Err(FrameError::BadCheck);
                }
            }
            Check::Checksum => {
                if checksum(&bytes[..body_end]) != bytes[body_end] {
                    return Err(FrameError::BadCheck);
                }
            }
        }
        let mut code_at = HEADER_LEN;
        let mut data_end = body_end;
        if ctrl & CTRL_SCB != 0 {
            let scb_len = usize::from(bytes[HEADER_LEN]);
            // Length byte and type byte at least, and room left for the code.
            if scb_len < 2 || HEADER_LEN + scb_len >= body_end {
                return Err(FrameError::BadSecurityBlock);
            }
            let kind = bytes[HEADER_LEN + 1];
            if !(SCS_11..=SCS_18).contains(&kind) {
                return Err(FrameError::BadSecurityBlock);
            }
            code_at = HEADER_LEN + scb_len;
            if scb_has_mac(kind) {
                if data_end < code_at + 1 + MAC_LEN {
                    return Err(FrameError::MissingMac);
                }
                data_end -= MAC_LEN;
            }
        }
        if code_at >= data_end {
            return Err(FrameError::BadLength(len));
        }
        Ok(Packet {
            bytes,
            marked,
            code_at,
            data_end,
        })
    }

    /// Address without the reply bit.
    pub fn address(&self) -> u8 {
        self.bytes[1] & !ADDR_REPLY_BIT
    }

    /// Whether the reply bit is set (a PD sent it).
    pub fn is_reply(&self) -> bool {
        self.bytes[1] & ADDR_REPLY_BIT != 0
    }

    /// Sequence number 0..=3.
    pub fn sequence(&self) -> u8 {
        self.bytes[4] & CTRL_SQN
    }

    /// Integrity check in use.
    pub fn check(&self) -> Check {
        if self.bytes[4] & CTRL_CRC != 0 {
            Check::Crc16
        } else {
            Check::Checksum
        }
    }

    /// Whether a mark byte preceded the packet on the wire.
    pub fn marked(&self) -> bool {
        self.marked
    }

    /// The security control block, if the packet has one.
    pub fn security_block(&self) -> Option<SecurityBlock<'_>> {
        if self.bytes[4] & CTRL_SCB == 0 {
            return None;
        }
        Some(SecurityBlock {
            kind: self.bytes[HEADER_LEN + 1],
            data: &self.bytes[HEADER_LEN + 2..self.code_at],
        })
    }

    /// Command or reply code.
    pub fn code(&self) -> u8 {
        self.bytes[self.code_at]
    }

    /// Data after the code, as on the wire (encrypted under SCS_17/SCS_18).
    pub fn data(&self) -> &[u8] {
        &self.bytes[self.code_at + 1..self.data_end]
    }

    /// The 4 MAC bytes of a secure packet.
    pub fn mac(&self) -> Option<[u8; MAC_LEN]> {
        let scb = self.security_block()?;
        if !scb_has_mac(scb.kind) {
            return None;
        }
        let m = &self.bytes[self.data_end..self.data_end + MAC_LEN];
        Some([m[0], m[1], m[2], m[3]])
    }

    /// The bytes the MAC covers: SOM through the last data byte.
    pub fn mac_input(&self) -> &[u8] {
        &self.bytes[..self.data_end]
    }

    /// The packet as received, SOM through the check (mark excluded).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Computes the 4 MAC bytes over SOM..data of a packet being built.
pub type MacFn<'f> = &'f mut dyn FnMut(&[u8]) -> [u8; MAC_LEN];

/// Everything needed to write one packet.
#[derive(Debug, Clone, Copy)]
pub struct PacketBuilder<'a> {
    /// Address 0..=0x7F.
    pub address: u8,
    /// Set the reply bit (PD to CP).
    pub reply: bool,
    /// Sequence number 0..=3.
    pub sequence: u8,
    /// Integrity check to append.
    pub check: Check,
    /// Send the 0xFF mark byte first.
    pub mark: bool,
    /// Security block type and its data bytes.
    pub scb: Option<(u8, &'a [u8])>,
    /// Command or reply code.
    pub code: u8,
    /// Data as it goes on the wire (already encrypted when the SCB says so).
    pub data: &'a [u8],
}

impl PacketBuilder<'_> {
    /// Appends the encoded packet to `out`. When the security block type
    /// carries a MAC, `mac` is called with SOM..data (the length field
    /// already counting MAC and check) and must return the 4 MAC bytes.
    pub fn encode(&self, out: &mut Vec<u8>, mac: Option<MacFn<'_>>) -> Result<(), FrameError> {
        if self.address > ADDR_BROADCAST {
            return Err(FrameError::BadAddress(self.address));
        }
        let scb_len = self.scb.map_or(0, |(_, d)| 2 + d.len());
        let has_mac = self.scb.is_some_and(|(k, _)| scb_has_mac(k));
        let total = HEADER_LEN
            + scb_len
            + 1
            + self.data.len()
            + if has_mac { MAC_LEN } else { 0 }
            + self.check.wire_len();
        if total > MAX_PACKET_LEN || scb_len > usize::from(u8::MAX) {
            return Err(FrameError::TooLong(total));
        }
        if self.mark {
            out.push(MARK);
        }
        let start = out.len();
        let addr = self.address | if self.reply { ADDR_REPLY_BIT } else { 0 };
        let mut ctrl = self.sequence & CTRL_SQN;
        if self.check == Check::Crc16 {
            ctrl |= CTRL_CRC;
        }
        if self.scb.is_some() {
            ctrl |= CTRL_SCB;
        }
        let [len_lo, len_hi] = (total as u16).to_le_bytes();
        out.extend_from_slice(&[SOM, addr, len_lo, len_hi, ctrl]);
        if let Some((kind, data)) = self.scb {
            out.push(scb_len as u8);
            out.push(kind);
            out.extend_from_slice(data);
        }
        out.push(self.code);
        out.extend_from_slice(self.data);
        if has_mac {
            let m = match mac {
                Some(f) => f(&out[start..]),
                None => return Err(FrameError::MissingMac),
            };
            out.extend_from_slice(&m);
        }
        match self.check {
            Check::Crc16 => {
                let c = crc16(&out[start..]);
                out.extend_from_slice(&c.to_le_bytes());
            }
            Check::Checksum => {
                let c = checksum(&out[start..]);
                out.push(c);
            }
        }
        Ok(())
    }
}

/// What the decoder found in the stream besides packets; counted, not fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecoderStats {
    /// Bytes skipped while looking for SOM.
    pub skipped_bytes: u64,
    /// Candidate packets rejected (bad length, check or security block).
    pub rejected: u64,
}

/// Incremental packet finder. Feed it whatever the port returned; take
/// packets out with [`Decoder::next_packet`]. Never panics on any input.
#[derive(Debug, Clone)]
pub struct Decoder {
    buf: Vec<u8>,
    max_len: usize,
    stats: DecoderStats,
    last_error: Option<FrameError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(MAX_PACKET_LEN)
    }
}

impl Decoder {
    /// A decoder accepting packets up to `max_len` bytes (clamped to
    /// 128..=1440, the range OSDP devices declare).
    pub fn new(max_len: usize) -> Decoder {
        Decoder {
            buf: Vec::with_capacity(MAX_PACKET_LEN * 2),
            max_len: max_len.clamp(MIN_MAX_PACKET_LEN, MAX_PACKET_LEN),
            stats: DecoderStats::default(),
            last_error: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        // Bound memory under a flood of noise: anything beyond two maximal
        // packets cannot all be useful, keep the newest bytes.
        self.buf.extend_from_slice(bytes);
        let cap = self.max_len * 4;
        if self.buf.len() > cap {
            let excess = self.buf.len() - cap;
            self.stats.skipped_bytes += excess as u64;
            self.buf.drain(..excess);
        }
    }

    /// Drops everything buffered (a new transaction starts).
    pub fn clear(&mut self) {
        self.stats.skipped_bytes += self.buf.len() as u64;
        self.buf.clear();
    }

    /// Bytes waiting for more input.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Counters of skipped noise and rejected candidates.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Why the most recent candidate was rejected, if one was.
    pub fn take_last_error(&mut self) -> Option<FrameError> {
        self.last_error.take()
    }

    /// The next complete valid packet, or `None` until more bytes arrive.
    pub fn next_packet(&mut self) -> Option<Packet> {
        loop {
            let Some(som) = self.buf.iter().position(|&b| b == SOM) else {
                // Keep nothing: no SOM, so no packet can start here. A
                // trailing mark byte is harmless to drop.
                self.stats.skipped_bytes += self.buf.len() as u64;
                self.buf.clear();
                return None;
            };
            let marked = som > 0 && self.buf[som - 1] == MARK;
            let noise = som - usize::from(marked);
            let noise_count = self.buf[..noise].iter().filter(|&&b| b != MARK).count();
            self.stats.skipped_bytes += noise_count as u64;
            self.buf.drain(..noise);
            let som = usize::from(marked);
            if self.buf.len() < som + 4 {
                return None;
            }
            let declared = usize::from(u16::from_le_bytes([self.buf[som + 2], self.buf[som + 3]]));
            if !(MIN_PACKET_LEN..=self.max_len).contains(&declared) {
                self.reject(som, FrameError::BadLength(declared));
                continue;
            }
            if self.buf.len() < som + declared {
                return None;
            }
            let bytes = self.buf[som..som + declared].to_vec();
            match Packet::parse(bytes, marked) {
                Ok(p) => {
                    self.buf.drain(..som + declared);
                    return Some(p);
                }
                Err(e) => self.reject(som, e),
            }
        }
    }

    /// The SOM at `som` did not start a packet: drop it and rescan, so a
    /// 0x53 inside data or noise never hides the real packet after it.
    fn reject(&mut self, som: usize, err: FrameError) {
        self.stats.rejected += 1;
        self.last_error = Some(err);
        self.buf.drain(..=som);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(b: PacketBuilder<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        b.encode(&mut out, None).unwrap();
        out
    }

    fn poll(addr: u8, seq: u8, check: Check) -> PacketBuilder<'static> {
        PacketBuilder {
            address: addr,
            reply: false,
            sequence: seq,
            check,
            mark: false,
            scb: None,
            code: 0x60,
            data: &[],
        }
    }

    #[test]
    fn crc_matches_annex_e_examples() {
        // Annex E, CRC examples: CRC appended LSB first.
        let msg1 = [
            0x53, 0x7F, 0x0D, 0x00, 0x04, 0x6E, 0x00, 0x80, 0x25, 0x00, 0x00,
        ];
        assert_eq!(crc16(&msg1).to_le_bytes(), [0x6E, 0x38]);
        let msg2 = [0x53, 0x00, 0x09, 0x00, 0x04, 0x61, 0x00];
        assert_eq!(crc16(&msg2).to_le_bytes(), [0xC0, 0x66]);
    }

    #[test]
    fn checksum_matches_annex_e_examples() {
        let msg1 = [
            0x53, 0x7F, 0x0C, 0x00, 0x00, 0x6E, 0x00, 0x80, 0x25, 0x00, 0x00,
        ];
        assert_eq!(checksum(&msg1), 0x0F);
        let msg2 = [0x53, 0x00, 0x08, 0x00, 0x00, 0x61, 0x00];
        assert_eq!(checksum(&msg2), 0x44);
    }

    #[test]
    fn builder_reproduces_annex_e_id_command() {
        let b = PacketBuilder {
            code: 0x61,
            data: &[0x00],
            ..poll(0, 0, Check::Crc16)
        };
        assert_eq!(
            build(b),
            [0x53, 0x00, 0x09, 0x00, 0x04, 0x61, 0x00, 0xC0, 0x66]
        );
        let b = PacketBuilder {
            code: 0x61,
            data: &[0x00],
            ..poll(0, 0, Check::Checksum)
        };
        assert_eq!(build(b), [0x53, 0x00, 0x08, 0x00, 0x00, 0x61, 0x00, 0x44]);
    }

    #[test]
    fn round_trip_with_mark_and_both_checks() {
        for check in [Check::Crc16, Check::Checksum] {
            let data = [1, 2, 3, SOM, 5];
            let b = PacketBuilder {
                address: 0x25,
                reply: true,
                sequence: 2,
                check,
                mark: true,
                scb: None,
                code: 0x50,
                data: &data,
            };
            let bytes = build(b);
            assert_eq!(bytes[0], MARK);
            let mut d = Decoder::default();
            d.push(&bytes);
            let p = d.next_packet().unwrap();
            assert_eq!(p.address(), 0x25);
            assert!(p.is_reply());
            assert_eq!(p.sequence(), 2);
            assert_eq!(p.check(), check);
            assert!(p.marked());
            assert_eq!(p.code(), 0x50);
            assert_eq!(p.data(), &data);
            assert!(d.next_packet().is_none());
        }
    }

    #[test]
    fn secure_packet_exposes_scb_mac_and_mac_input() {
        let data = [9u8; 16];
        let b = PacketBuilder {
            scb: Some((SCS_17, &[])),
            code: 0x6A,
            data: &data,
            ..poll(3, 1, Check::Crc16)
        };
        let mut out = Vec::new();
        let mut seen_len = 0;
        let mut mac = |bytes: &[u8]| {
            seen_len = bytes.len();
            [0xA1, 0xA2, 0xA3, 0xA4]
        };
        b.encode(&mut out, Some(&mut mac)).unwrap();
        let mut d = Decoder::default();
        d.push(&out);
        let p = d.next_packet().unwrap();
        let scb = p.security_block().unwrap();
        assert_eq!(scb.kind, SCS_17);
        assert!(scb.data.is_empty());
        assert_eq!(p.code(), 0x6A);
        assert_eq!(p.data(), &data);
        assert_eq!(p.mac(), Some([0xA1, 0xA2, 0xA3, 0xA4]));
        assert_eq!(p.mac_input().len(), seen_len);
        // The length field was final before the MAC was computed.
        assert_eq!(usize::from(p.mac_input()[2]), out.len());
    }

    #[test]
    fn secure_type_without_mac_closure_is_an_error() {
        let b = PacketBuilder {
            scb: Some((SCS_15, &[])),
            ..poll(1, 1, Check::Crc16)
        };
        assert_eq!(b.encode(&mut Vec::new(), None), Err(FrameError::MissingMac));
    }

    #[test]
    fn resynchronises_after_garbage_and_split_frames() {
        let p1 = build(poll(1, 1, Check::Crc16));
        let p2 = build(poll(2, 2, Check::Checksum));
        let mut stream = vec![0x00, 0x53, 0x53, 0xFF, 0x12, 0x53, 0x99, 0x05];
        stream.extend_from_slice(&p1);
        stream.extend_from_slice(&[0xFF, 0xFF, 0xAB]);
        stream.extend_from_slice(&p2);
        let mut d = Decoder::default();
        let mut got = Vec::new();
        // Feed one byte at a time: every split point is exercised.
        for b in &stream {
            d.push(std::slice::from_ref(b));
            while let Some(p) = d.next_packet() {
                got.push(p.address());
            }
        }
        assert_eq!(got, vec![1, 2]);
        assert!(d.stats().rejected > 0);
    }

    #[test]
    fn truncated_frame_followed_by_valid_frame_is_recovered() {
        let p1 = build(poll(1, 1, Check::Crc16));
        let mut stream = p1[..p1.len() - 3].to_vec();
        stream.extend_from_slice(&p1);
        let mut d = Decoder::default();
        d.push(&stream);
        let p = d.next_packet().unwrap();
        assert_eq!(p.address(), 1);
        assert!(d.next_packet().is_none());
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn corrupted_check_is_rejected() {
        let mut p1 = build(poll(1, 1, Check::Crc16));
        let n = p1.len();
        p1[n - 1] ^= 0xFF;
        let mut d = Decoder::default();
        d.push(&p1);
        assert!(d.next_packet().is_none());
        assert_eq!(d.take_last_error(), Some(FrameError::BadCheck));
    }

    #[test]
    fn oversized_length_field_is_rejected_without_waiting() {
        let mut d = Decoder::new(128);
        d.push(&[SOM, 0x01, 0xFF, 0x0F, 0x04]);
        assert!(d.next_packet().is_none());
        assert_eq!(d.take_last_error(), Some(FrameError::BadLength(0x0FFF)));
        // The false SOM was dropped and nothing after it starts a packet.
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn builder_rejects_bad_address_and_oversize() {
        let b = poll(0x80, 0, Check::Crc16);
        assert_eq!(
            b.encode(&mut Vec::new(), None),
            Err(FrameError::BadAddress(0x80))
        );
        let big = vec![0u8; MAX_PACKET_LEN];
        let b = PacketBuilder {
            data: &big,
            ..poll(1, 0, Check::Crc16)
        };
        assert!(matches!(
            b.encode(&mut Vec::new(), None),
            Err(FrameError::TooLong(_))
        ));
    }

    #[test]
    fn noise_flood_is_bounded() {
        let mut d = Decoder::new(128);
        for _ in 0..100 {
            d.push(&[SOM; 64]);
            let _ = d.next_packet();
        }
        assert!(d.pending() <= 128 * 4);
    }
}
