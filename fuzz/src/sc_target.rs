//! `secure_channel`: fuzzed packets into `Session::open` and fuzzed handshake
//! messages into `CpChallenge::verify`, `CpPending::establish` and
//! `PdChallenge::verify`.
//!
//! Sessions come from the public handshake API with a fixed key and fixed
//! randoms ([`crate::fixed_pair`]), so a seed sealed by that pair carries a
//! MAC that verifies and the fuzzer starts past the MAC check.
//!
//! The first input byte selects a mode (`byte % MODES`):
//!
//! - [`MODE_RAW`]: the rest is bus bytes; every packet found (and the rest
//!   parsed as one packet) is opened by both sessions in both directions.
//! - [`MODE_BUILT`]: a packet built from fuzzed fields (flags, SCB type and
//!   data, code, MAC, data). Flag bit 5 replaces the fuzzed MAC with the
//!   correct one, so the data (ciphertext) is what gets tested.
//! - [`MODE_CONVERSATION`]: a sequence of honest messages in either
//!   direction, some tampered with; honest ones must open to their
//!   plaintext, tampered ones must be refused.
//! - [`MODE_HANDSHAKE`]: fuzzed key and randoms for an honest handshake
//!   (which must succeed and interoperate), and fuzzed osdp_CCRYPT,
//!   osdp_SCRYPT and osdp_RMAC_I payloads (which must be refused unless they
//!   are the correct values).
//! - [`MODE_KEY`]: key parsing from hex and bytes.

use osdp::frame::{self, scb_has_mac, scb_is_encrypted, Check, Packet, MARK};
use osdp::reply::{self, Reply};
use osdp::sc::{CpChallenge, Direction, Key, PdChallenge, ScError, Session, BLOCK};

use crate::{build, decode_all, fixed_pair, handshake, seal, Header, Reader, MAX_OPS};

/// Number of modes.
pub const MODES: u8 = 5;
/// Raw bus bytes.
pub const MODE_RAW: u8 = 0;
/// A packet built from fuzzed fields.
pub const MODE_BUILT: u8 = 1;
/// Honest and tampered messages.
pub const MODE_CONVERSATION: u8 = 2;
/// Handshake inputs.
pub const MODE_HANDSHAKE: u8 = 3;
/// Key parsing.
pub const MODE_KEY: u8 = 4;

/// The harness entry point.
pub fn run(data: &[u8]) {
    let mut r = Reader::new(data);
    let Some(mode) = r.try_u8() else {
        return;
    };
    match mode % MODES {
        MODE_RAW => raw(r.rest()),
        MODE_BUILT => built(&mut r),
        MODE_CONVERSATION => conversation(&mut r),
        MODE_HANDSHAKE => handshake_inputs(&mut r),
        _ => key_parsing(r.rest()),
    }
}

fn open(session: Session, dir: Direction, p: &Packet) -> Result<Vec<u8>, ScError> {
    session.open(dir, p).map(|(_, plain)| plain)
}

/// Checks what any successful open must satisfy.
fn check_opened(p: &Packet, result: &Result<Vec<u8>, ScError>) {
    let Ok(plain) = result else {
        return;
    };
    let scb = p.security_block().expect("opened a packet without SCB");
    assert!(scb_has_mac(scb.kind), "opened a packet without MAC");
    if !scb_is_encrypted(scb.kind) {
        assert_eq!(plain.as_slice(), p.data());
    } else if !p.data().is_empty() {
        assert_eq!(p.data().len() % BLOCK, 0);
        assert!(plain.len() < p.data().len(), "padding must be removed");
    }
}

fn raw(bytes: &[u8]) {
    let mut packets = decode_all(bytes);
    packets.truncate(4);
    if let Ok(p) = Packet::parse(bytes.to_vec(), false) {
        packets.push(p);
    }
    if let [MARK, rest @ ..] = bytes {
        if let Ok(p) = Packet::parse(rest.to_vec(), true) {
            packets.push(p);
        }
    }
    for p in &packets {
        for dir in [Direction::Command, Direction::Reply] {
            let (cp, pd) = fixed_pair();
            let a = open(cp, dir, p);
            check_opened(p, &a);
            let b = open(pd, dir, p);
            check_opened(p, &b);
            // Both ends of a fresh pair share one chain state: they agree.
            assert_eq!(a, b, "CP and PD sessions disagree on {dir:?}");
        }
    }
}

fn built(r: &mut Reader<'_>) {
    let flags = r.u8();
    let kind = frame::SCS_11 + r.u8() % 8;
    let scb_data = r.prefixed();
    let code = r.u8();
    let fuzz_mac: [u8; 4] = r.array();
    let data = r.take(frame::MAX_PACKET_LEN);
    let dir = if flags & 0x10 != 0 {
        Direction::Reply
    } else {
        Direction::Command
    };
    let valid_mac = flags & 0x20 != 0;
    let hdr = Header::from_flags(r.u8(), flags);

    let (mut cp, mut pd) = fixed_pair();
    // The honest MAC over these bytes, from the sending side.
    let sender = match dir {
        Direction::Command => &mut cp,
        Direction::Reply => &mut pd,
    };
    let mut true_mac = None;
    let scb = Some((kind, scb_data));
    let bytes = if valid_mac {
        let b = frame::PacketBuilder {
            address: hdr.address,
            reply: dir == Direction::Reply,
            sequence: hdr.sequence,
            check: hdr.check,
            mark: hdr.mark,
            scb,
            code,
            data,
        };
        let mut out = Vec::new();
        let signed = b.encode(
            &mut out,
            Some(&mut |m: &[u8]| {
                let mac = sender.sign(dir, m);
                true_mac = Some(mac);
                mac
            }),
        );
        signed.ok().map(|()| out)
    } else {
        build(hdr, dir == Direction::Reply, scb, code, data, fuzz_mac)
    };
    let Some(bytes) = bytes else {
        return;
    };
    let p = crate::single_packet(&bytes);

    let receiver = match dir {
        Direction::Command => pd,
        Direction::Reply => cp,
    };
    let result = open(receiver, dir, &p);
    check_opened(&p, &result);

    if !scb_has_mac(kind) {
        assert_eq!(result, Err(ScError::NotSecured));
    } else if valid_mac {
        assert_ne!(result, Err(ScError::BadMac), "correct MAC refused");
        assert_ne!(result, Err(ScError::NotSecured));
        if !scb_is_encrypted(kind) || data.is_empty() {
            assert!(
                result.is_ok(),
                "MAC-only packet with a good MAC refused: {result:?}"
            );
        } else if !data.len().is_multiple_of(BLOCK) {
            assert_eq!(result, Err(ScError::BadCiphertext));
        }
    } else if result.is_ok() {
        // The fuzzed MAC verified: it must be the real one.
        let (mut cp2, mut pd2) = fixed_pair();
        let honest = match dir {
            Direction::Command => cp2.sign(dir, p.mac_input()),
            Direction::Reply => pd2.sign(dir, p.mac_input()),
        };
        assert_eq!(Some(honest), p.mac(), "a wrong MAC was accepted");
    }

    // The same packet never verifies in the other direction of a fresh
    // pair: command and reply chains start from different values.
    if valid_mac && true_mac.is_some() {
        let other = match dir {
            Direction::Command => Direction::Reply,
            Direction::Reply => Direction::Command,
        };
        let (cp3, pd3) = fixed_pair();
        assert!(
            open(cp3, other, &p).is_err(),
            "MAC verified in the wrong direction"
        );
        assert!(
            open(pd3, other, &p).is_err(),
            "MAC verified in the wrong direction"
        );
    }
}

fn conversation(r: &mut Reader<'_>) {
    let (mut cp, mut pd) = fixed_pair();
    let mut ops = 0;
    while let Some(flags) = r.try_u8() {
        ops += 1;
        if ops > MAX_OPS {
            break;
        }
        let dir = if flags & 1 != 0 {
            Direction::Reply
        } else {
            Direction::Command
        };
        let tamper = flags & 2 != 0;
        let hdr = Header {
            address: 1,
            sequence: (flags >> 4) & 3,
            check: if flags & 4 != 0 {
                Check::Crc16
            } else {
                Check::Checksum
            },
            mark: flags & 8 != 0,
        };
        let code = r.u8();
        let plain = r.prefixed();
        let (pos, xor) = if tamper {
            (r.u16(), r.u8() | 1)
        } else {
            (0, 0)
        };

        let (sender, receiver) = match dir {
            Direction::Command => (&mut cp, &mut pd),
            Direction::Reply => (&mut pd, &mut cp),
        };
        let Some(mut bytes) = seal(sender, dir, hdr, code, plain) else {
            continue;
        };
        let skip = usize::from(hdr.mark);
        let p = crate::single_packet(&bytes);
        assert_eq!(p.code(), code);
        let expected_kind = match (dir, plain.is_empty()) {
            (Direction::Command, true) => frame::SCS_15,
            (Direction::Command, false) => frame::SCS_17,
            (Direction::Reply, true) => frame::SCS_16,
            (Direction::Reply, false) => frame::SCS_18,
        };
        assert_eq!(p.security_block().map(|s| s.kind), Some(expected_kind));
        if !plain.is_empty() && plain.len() >= 4 {
            assert!(
                !p.data().windows(plain.len()).any(|w| w == plain),
                "plaintext travels in clear"
            );
        }

        let check_len = hdr.check.wire_len();
        let body_len = bytes.len() - skip - check_len;
        let packet = if tamper {
            let at = skip + usize::from(pos) % body_len;
            bytes[at] ^= xor;
            let end = bytes.len() - check_len;
            match hdr.check {
                Check::Crc16 => {
                    let c = frame::crc16(&bytes[skip..end]).to_le_bytes();
                    bytes[end..].copy_from_slice(&c);
                }
                Check::Checksum => bytes[end] = frame::checksum(&bytes[skip..end]),
            }
            Packet::parse(bytes[skip..].to_vec(), hdr.mark).ok()
        } else {
            Some(p)
        };

        let session = std::mem::replace(receiver, fixed_pair().0);
        let result = packet.as_ref().map(|p| session.open(dir, p));
        match (tamper, result) {
            (false, Some(Ok((s, got)))) => {
                assert_eq!(got, plain, "opened plaintext differs");
                *receiver = s;
            }
            (false, Some(Err(e))) => panic!("honest {dir:?} refused: {e}"),
            (false, None) => unreachable!(),
            (true, Some(Ok(_))) => panic!("tampered {dir:?} accepted"),
            (true, _) => {
                // The chain is broken: handshake again.
                (cp, pd) = fixed_pair();
            }
        }
    }
}

fn handshake_inputs(r: &mut Reader<'_>) {
    let key = Key::new(r.array());
    let rnd_a: [u8; 8] = r.array();
    let rnd_b: [u8; 8] = r.array();
    let flags = r.u8();
    let default_key = flags & 1 != 0;
    let ccrypt = r.take(32);
    let scrypt: [u8; 16] = r.array();
    let rmac: [u8; 16] = r.array();
    let plain = r.take(512);

    // Honest handshake with fuzzed key and randoms: must work and the two
    // sessions must understand each other.
    let (mut cp, mut pd) = handshake(&key, default_key, rnd_a, rnd_b);
    let hdr = Header::from_flags(1, flags >> 1);
    if let Some(bytes) = seal(&mut cp, Direction::Command, hdr, 0x6B, plain) {
        let p = crate::single_packet(&bytes);
        match pd.open(Direction::Command, &p) {
            Ok((s, got)) => {
                assert_eq!(got, plain);
                pd = s;
            }
            Err(e) => panic!("honest command refused: {e}"),
        }
        if let Some(bytes) = seal(&mut pd, Direction::Reply, hdr, 0x40, plain) {
            let p = crate::single_packet(&bytes);
            match cp.open(Direction::Reply, &p) {
                Ok((_, got)) => assert_eq!(got, plain),
                Err(e) => panic!("honest reply refused: {e}"),
            }
        }
    }

    // Fuzzed osdp_CCRYPT into the CP.
    let ccrypt_rnd_b;
    let pending = match Reply::parse(reply::code::CCRYPT, ccrypt) {
        Ok(Reply::ClientCryptogram(c)) => {
            ccrypt_rnd_b = c.rnd_b;
            let truth = PdChallenge::new(&key, default_key, rnd_a, c.rnd_b)
                .client_cryptogram()
                .1;
            let cryptogram = if flags & 0x40 != 0 {
                truth
            } else {
                c.cryptogram
            };
            let result = CpChallenge::new(&key, default_key, rnd_a).verify(&c.rnd_b, &cryptogram);
            assert_eq!(result.is_ok(), cryptogram == truth, "CCRYPT check is wrong");
            result.ok()
        }
        Ok(other) => panic!("CCRYPT parsed as {other:?}"),
        Err(_) => {
            assert_ne!(ccrypt.len(), 32, "a 32-byte CCRYPT must parse");
            ccrypt_rnd_b = rnd_b;
            None
        }
    };

    // Fuzzed osdp_RMAC_I into a pending CP.
    if let Some(pending) = pending {
        let pd_side = PdChallenge::new(&key, default_key, rnd_a, ccrypt_rnd_b);
        let (_, truth) = match pd_side.verify(&pending.server_cryptogram()) {
            Ok(v) => v,
            Err(e) => panic!("server cryptogram of a verified CCRYPT refused: {e}"),
        };
        let rmac_i = match Reply::parse(reply::code::RMAC_I, &rmac) {
            Ok(Reply::InitialRmac(m)) => m,
            other => panic!("16-byte RMAC_I did not parse: {other:?}"),
        };
        let rmac_i = if flags & 0x80 != 0 { truth } else { rmac_i };
        let result = pending.establish(&rmac_i);
        assert_eq!(result.is_ok(), rmac_i == truth, "RMAC_I check is wrong");
        if let Err(e) = result {
            assert_eq!(e, ScError::BadInitialRmac);
        }
    }

    // Fuzzed osdp_SCRYPT into the PD.
    let cp_side = CpChallenge::new(&key, default_key, rnd_a);
    let pd_side = PdChallenge::new(&key, default_key, rnd_a, rnd_b);
    let (rb, client) = pd_side.client_cryptogram();
    let truth = match cp_side.verify(&rb, &client) {
        Ok(p) => p.server_cryptogram(),
        Err(e) => panic!("honest client cryptogram refused: {e}"),
    };
    let result = pd_side.verify(&scrypt);
    assert_eq!(result.is_ok(), scrypt == truth, "SCRYPT check is wrong");
    if let Err(e) = result {
        assert_eq!(e, ScError::BadCryptogram);
    }
}

fn key_parsing(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(k) = Key::from_hex(&text) {
        let hex: String = k.expose().iter().map(|b| format!("{b:02x}")).collect();
        // Known finding `sc-key-hex-plus`: "+f" is accepted as a digit pair.
        if !(text.contains('+') && crate::tolerate("sc-key-hex-plus")) {
            assert_eq!(text.trim().to_ascii_lowercase(), hex, "not 32 hex digits");
        }
        assert_eq!(Key::from_hex(&hex).ok(), Some(k.clone()));
        assert_eq!(format!("{k:?}"), "Key(<redacted>)");
        assert_eq!(k.is_default(), k == Key::DEFAULT);
    }
    match Key::from_slice(bytes) {
        Ok(k) => {
            assert_eq!(bytes.len(), 16);
            assert_eq!(k.expose().as_slice(), bytes);
        }
        Err(e) => {
            assert_ne!(bytes.len(), 16);
            assert_eq!(e, ScError::BadKeyFormat);
        }
    }
}
