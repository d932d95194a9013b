//! `frame_decoder`: arbitrary bus bytes into `frame::Decoder` and
//! `Packet::parse`.
//!
//! The input is the byte stream itself (so a seed is simply packets as they
//! appear on the wire). It is pushed into decoders three ways: in chunks split
//! at data-derived points, all at once, and one byte at a time. Every packet
//! yielded has all its accessors called and its invariants checked; the
//! three decoders must find the same packets (framing must not depend on how
//! the port happened to split the bytes).

use osdp::frame::{
    self, scb_has_mac, Check, Decoder, Packet, PacketBuilder, CTRL_CRC, CTRL_SCB, CTRL_SQN,
    HEADER_LEN, MAC_LEN, MARK, MAX_PACKET_LEN, MIN_MAX_PACKET_LEN, MIN_PACKET_LEN, SOM,
};

/// The harness entry point.
pub fn run(data: &[u8]) {
    // Packet::parse on the raw input, as the whole packet.
    if let Ok(p) = Packet::parse(data.to_vec(), false) {
        assert_eq!(p.as_bytes(), data);
        check_packet(&p, usize::from(u16::MAX));
    }
    if let [MARK, rest @ ..] = data {
        if let Ok(p) = Packet::parse(rest.to_vec(), true) {
            assert!(p.marked());
            check_packet(&p, usize::from(u16::MAX));
        }
    }

    let max_len = match data.len() % 3 {
        0 => MAX_PACKET_LEN,
        1 => MIN_MAX_PACKET_LEN,
        _ => 256,
    };

    // Chunks split at data-derived points.
    let modulus = 2 + (data.len() % 7) as u8;
    let mut chunked = Decoder::new(max_len);
    let mut from_chunks = Vec::new();
    let mut start = 0;
    let mut last_stats = chunked.stats();
    for (i, &b) in data.iter().enumerate() {
        let boundary = (b ^ i as u8).is_multiple_of(modulus) || i + 1 == data.len();
        if boundary {
            chunked.push(&data[start..=i]);
            drain(&mut chunked, max_len, &mut from_chunks);
            let s = chunked.stats();
            assert!(s.skipped_bytes >= last_stats.skipped_bytes);
            assert!(s.rejected >= last_stats.rejected);
            last_stats = s;
            start = i + 1;
        }
    }

    // All at once.
    let mut whole = Decoder::new(max_len);
    whole.push(data);
    let mut from_whole = Vec::new();
    drain(&mut whole, max_len, &mut from_whole);

    // One byte at a time.
    let mut bytewise = Decoder::new(max_len);
    let mut from_bytes = Vec::new();
    for b in data {
        bytewise.push(std::slice::from_ref(b));
        drain(&mut bytewise, max_len, &mut from_bytes);
    }

    // Packets are never invented: each one (with its mark byte, if it says
    // it had one) is in the input, in order.
    let mut at = 0;
    for p in &from_whole {
        let needle = if p.marked() {
            [&[MARK][..], p.as_bytes()].concat()
        } else {
            p.as_bytes().to_vec()
        };
        let found = data
            .get(at..)
            .unwrap_or_default()
            .windows(needle.len())
            .position(|w| w == needle.as_slice());
        match found {
            Some(off) => at += off + needle.len(),
            None => {
                // Only possible if the noise bound dropped bytes.
                assert!(data.len() > max_len * 4, "packet not found in the input");
                break;
            }
        }
    }

    // Without the noise bound kicking in, how the bytes were split must not
    // change which packets are found. (The `marked` flag may differ: a mark
    // byte that ends a chunk is dropped before the SOM arrives.)
    if data.len() <= max_len * 4 {
        let bytes = |v: &Vec<Packet>| v.iter().map(|p| p.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(bytes(&from_chunks), bytes(&from_whole), "chunked vs whole");
        assert_eq!(bytes(&from_bytes), bytes(&from_whole), "bytewise vs whole");
    }

    // clear() drops everything.
    chunked.clear();
    assert_eq!(chunked.pending(), 0);
    assert!(chunked.next_packet().is_none());
}

fn drain(d: &mut Decoder, max_len: usize, out: &mut Vec<Packet>) {
    while let Some(p) = d.next_packet() {
        check_packet(&p, max_len);
        out.push(p);
    }
    assert!(d.pending() <= max_len * 4, "decoder buffer above its bound");
    if let Some(e) = d.take_last_error() {
        let _ = e.to_string();
    }
    assert!(d.take_last_error().is_none());
}

/// Calls every accessor of `p` and checks the invariants a valid packet must
/// satisfy; `max_len` is the largest length the producer accepts.
pub fn check_packet(p: &Packet, max_len: usize) {
    let b = p.as_bytes();
    let len = b.len();
    assert!(
        len >= MIN_PACKET_LEN && len <= max_len,
        "length {len} out of range"
    );
    assert_eq!(b[0], SOM);
    assert_eq!(usize::from(u16::from_le_bytes([b[2], b[3]])), len);
    let ctrl = b[4];

    assert!(p.address() <= frame::ADDR_BROADCAST);
    assert_eq!(p.is_reply(), b[1] & frame::ADDR_REPLY_BIT != 0);
    assert_eq!(p.address() | if p.is_reply() { 0x80 } else { 0 }, b[1]);
    assert_eq!(p.sequence(), ctrl & CTRL_SQN);
    let check = p.check();
    assert_eq!(check == Check::Crc16, ctrl & CTRL_CRC != 0);
    let check_len = check.wire_len();

    // The data slice lies inside the packet, after the code, before MAC/check.
    let data = p.data();
    let base = b.as_ptr() as usize;
    let off = data.as_ptr() as usize - base;
    assert!(off > HEADER_LEN, "data starts inside the header");
    assert!(
        off + data.len() <= len - check_len,
        "data overruns the check"
    );
    assert_eq!(p.code(), b[off - 1], "code is not the byte before the data");

    let mac_input = p.mac_input();
    assert_eq!(mac_input.as_ptr(), b.as_ptr());
    assert_eq!(
        mac_input.len(),
        off + data.len(),
        "MAC input ends after the data"
    );

    let scb = p.security_block();
    assert_eq!(scb.is_some(), ctrl & CTRL_SCB != 0);
    let mut mac_len = 0;
    match scb {
        Some(s) => {
            assert!((frame::SCS_11..=frame::SCS_18).contains(&s.kind));
            assert_eq!(b[HEADER_LEN + 1], s.kind);
            assert_eq!(usize::from(b[HEADER_LEN]), 2 + s.data.len());
            assert_eq!(
                HEADER_LEN + 2 + s.data.len(),
                off - 1,
                "SCB must end at the code"
            );
            match p.mac() {
                Some(m) => {
                    assert!(scb_has_mac(s.kind));
                    assert_eq!(&b[mac_input.len()..mac_input.len() + MAC_LEN], &m);
                    mac_len = MAC_LEN;
                }
                None => assert!(!scb_has_mac(s.kind)),
            }
        }
        None => {
            assert!(p.mac().is_none());
            assert_eq!(off - 1, HEADER_LEN);
        }
    }
    assert_eq!(
        mac_input.len() + mac_len + check_len,
        len,
        "bytes unaccounted for"
    );
    match check {
        Check::Crc16 => {
            let c = frame::crc16(&b[..len - 2]).to_le_bytes();
            assert_eq!(&b[len - 2..], &c);
        }
        Check::Checksum => assert_eq!(frame::checksum(&b[..len - 1]), b[len - 1]),
    }
    let _ = format!("{p:?}");

    // A packet yielded re-parses identically.
    let again = Packet::parse(b.to_vec(), p.marked());
    assert_eq!(again.as_ref(), Ok(p), "re-parse differs");

    // And the builder writes the same bytes back (reserved CTRL bits are
    // accepted on receive but never sent, so those packets cannot match).
    if ctrl & !(CTRL_SQN | CTRL_CRC | CTRL_SCB) == 0 && len <= MAX_PACKET_LEN {
        let builder = PacketBuilder {
            address: p.address(),
            reply: p.is_reply(),
            sequence: p.sequence(),
            check,
            mark: p.marked(),
            scb: scb.map(|s| (s.kind, s.data)),
            code: p.code(),
            data,
        };
        let mac = p.mac().unwrap_or([0; 4]);
        let mut out = Vec::new();
        let r = builder.encode(&mut out, Some(&mut |_: &[u8]| mac));
        assert_eq!(r, Ok(()), "builder refused a packet the parser accepted");
        let skip = usize::from(p.marked());
        if p.marked() {
            assert_eq!(out[0], MARK);
        }
        assert_eq!(
            &out[skip..],
            b,
            "builder output differs from the parsed packet"
        );
    }
}
