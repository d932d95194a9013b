//! Seed inputs for every target, written by `cargo run --example gen_seeds`
//! into `fuzz/seeds/<target>/`. They are valid packets and programs (POLL,
//! ID, a secured command sealed by the deterministic session pair, a full
//! handshake...) so fuzzing starts from deep inside each parser.

use osdp::card::{encode, CardFormatTable};
use osdp::command::{self, Command};
use osdp::frame::{Check, PacketBuilder};
use osdp::reply::{self, Reply};
use osdp::sc::{CpChallenge, Direction, Key, PdChallenge};

use crate::{
    cp_target as cp, fixed_pair, pd_target as pd, put_prefixed, sc_target as sc, seal, Header,
};
use crate::{FIXED_KEY, FIXED_RND_A, FIXED_RND_B};

/// One seed file: target, file name, contents.
pub type Seed = (&'static str, String, Vec<u8>);

/// Valid command payloads: code and data.
pub fn command_payloads() -> Vec<(u8, Vec<u8>)> {
    use command::code::*;
    vec![
        (POLL, vec![]),
        (ID, vec![0x00]),
        (CAP, vec![0x00]),
        (LSTAT, vec![]),
        (OUT, vec![0x00, 0x05, 0x32, 0x00]),
        (LED, vec![0, 0, 2, 5, 5, 1, 0, 30, 0, 1, 0, 0, 2, 0]),
        (BUZ, vec![0, 2, 5, 5, 2]),
        (TEXT, [&[0u8, 1, 0, 1, 1, 5][..], b"HELLO"].concat()),
        (COMSET, vec![0x02, 0x80, 0x25, 0x00, 0x00]),
        (KEYSET, [&[0x01u8, 0x10][..], &[0x42; 16]].concat()),
        (CHLNG, FIXED_RND_A.to_vec()),
        (SCRYPT, vec![0x5A; 16]),
        (ACURXSIZE, vec![0x00, 0x04]),
        (KEEPACTIVE, vec![0xE8, 0x03]),
        (MFG, vec![0x5C, 0x26, 0x23, 0x01, 0x02]),
        (BIOREAD, vec![0, 1, 2, 50]),
        (BIOMATCH, vec![0, 1, 2, 50, 3, 0, 9, 8, 7]),
    ]
}

/// Valid reply payloads: code and data.
pub fn reply_payloads() -> Vec<(u8, Vec<u8>)> {
    use reply::code::*;
    vec![
        (ACK, vec![]),
        (NAK, vec![0x05, 0x17]),
        (
            PDID,
            vec![
                0x5C, 0x26, 0x23, 0x19, 0x02, 0xBE, 0xBA, 0xFE, 0xCA, 3, 1, 40,
            ],
        ),
        (PDCAP, vec![9, 1, 1, 8, 1, 0, 10, 0x00, 0x04]),
        (LSTATR, vec![0, 1]),
        (ISTATR, vec![0, 1, 0, 0]),
        (RAW, vec![0x00, 0x01, 26, 0x00, 0xBD, 0x88, 0xEB, 0x80]),
        (FMT, [&[0u8, 0, 6][..], b"123456"].concat()),
        (KEYPAD, vec![0, 4, b'1', b'2', b'3', b'#']),
        (COM, vec![0x02, 0x00, 0xC2, 0x01, 0x00]),
        (BIOREADR, vec![0, 0, 1, 80, 2, 0, 0xAA, 0xBB]),
        (BIOMATCHR, vec![0, 1, 99]),
        (CCRYPT, vec![0x11; 32]),
        (RMAC_I, vec![0x22; 16]),
        (BUSY, vec![]),
        (MFGREP, vec![0x5C, 0x26, 0x23, 0xFF]),
    ]
}

fn packet(hdr: Header, reply: bool, scb: Option<(u8, &[u8])>, code: u8, data: &[u8]) -> Vec<u8> {
    crate::build(hdr, reply, scb, code, data, [0; 4]).expect("seed packet builds")
}

fn hdr(address: u8, sequence: u8, check: Check, mark: bool) -> Header {
    Header {
        address,
        sequence,
        check,
        mark,
    }
}

/// Wire packets used by several targets.
pub fn wire_packets() -> Vec<(&'static str, Vec<u8>)> {
    let led = &command_payloads()[5].1;
    let (mut cp_s, mut pd_s) = fixed_pair();
    let secure_cmd = seal(
        &mut cp_s,
        Direction::Command,
        hdr(1, 1, Check::Crc16, true),
        command::code::LED,
        led,
    )
    .expect("seal");
    let secure_poll = {
        let (mut c, _) = fixed_pair();
        seal(
            &mut c,
            Direction::Command,
            hdr(1, 2, Check::Crc16, true),
            command::code::POLL,
            &[],
        )
        .expect("seal")
    };
    let card = &reply_payloads()[6].1;
    let secure_reply = seal(
        &mut pd_s,
        Direction::Reply,
        hdr(1, 1, Check::Crc16, true),
        reply::code::RAW,
        card,
    )
    .expect("seal");
    vec![
        (
            "poll",
            packet(
                hdr(1, 1, Check::Crc16, true),
                false,
                None,
                command::code::POLL,
                &[],
            ),
        ),
        (
            "id",
            packet(
                hdr(0, 0, Check::Checksum, false),
                false,
                None,
                command::code::ID,
                &[0],
            ),
        ),
        (
            "chlng",
            packet(
                hdr(1, 2, Check::Crc16, true),
                false,
                Some((osdp::frame::SCS_11, &[0x01])),
                command::code::CHLNG,
                &FIXED_RND_A,
            ),
        ),
        ("secure_led", secure_cmd),
        ("secure_poll", secure_poll),
        ("secure_raw_reply", secure_reply),
        (
            "pdid_reply",
            packet(
                hdr(0, 0, Check::Crc16, true),
                true,
                None,
                reply::code::PDID,
                &reply_payloads()[2].1,
            ),
        ),
    ]
}

/// Every seed.
pub fn all() -> Vec<Seed> {
    let mut out: Vec<Seed> = Vec::new();
    let wire = wire_packets();

    // frame_decoder: packets as on the wire, and a noisy stream.
    for (name, bytes) in &wire {
        out.push(("frame_decoder", format!("{name}.bin"), bytes.clone()));
    }
    let mut stream = vec![0x00, 0x53, 0x53, 0xFF, 0x12];
    stream.extend_from_slice(&wire[0].1);
    stream.extend_from_slice(&[0xFF, 0xFF, 0xAB]);
    stream.extend_from_slice(&wire[1].1);
    stream.extend_from_slice(&wire[3].1[..7]);
    out.push(("frame_decoder", "noisy_stream.bin".into(), stream));

    // payload_parse: code byte then data.
    for (code, data) in command_payloads() {
        let name = command::code_name(code)
            .unwrap_or("cmd")
            .to_ascii_lowercase();
        out.push((
            "payload_parse",
            format!("cmd_{name}.bin"),
            [&[code][..], &data].concat(),
        ));
    }
    for (code, data) in reply_payloads() {
        let name = reply::code_name(code)
            .unwrap_or("reply")
            .to_ascii_lowercase();
        out.push((
            "payload_parse",
            format!("reply_{name}.bin"),
            [&[code][..], &data].concat(),
        ));
    }

    // secure_channel.
    for (name, bytes) in &wire {
        out.push((
            "secure_channel",
            format!("raw_{name}.bin"),
            [&[sc::MODE_RAW][..], bytes].concat(),
        ));
    }
    // Built: valid MAC (flag 0x20), CRC, mark; SCS_17; LED code; fake MAC.
    let mut built = vec![sc::MODE_BUILT, 0x23, 0x17 - 0x11, 0];
    built.push(command::code::LED);
    built.extend_from_slice(&[0; 4]);
    built.extend_from_slice(&[0x33; 16]);
    out.push(("secure_channel", "built_scs17.bin".into(), built));
    let mut built = vec![
        sc::MODE_BUILT,
        0x33,
        0x16 - 0x11,
        0,
        reply::code::ACK,
        1,
        2,
        3,
        4,
    ];
    built.extend_from_slice(&[]);
    out.push(("secure_channel", "built_scs16_reply.bin".into(), built));
    let mut conv = vec![sc::MODE_CONVERSATION];
    for (i, (code, data)) in command_payloads().into_iter().take(6).enumerate() {
        conv.push(0x04 | ((i as u8 % 3 + 1) << 4));
        conv.push(code);
        put_prefixed(&mut conv, &data);
        conv.push(0x05 | ((i as u8 % 3 + 1) << 4));
        conv.push(reply::code::ACK);
        put_prefixed(&mut conv, &[]);
    }
    conv.extend_from_slice(&[0x06, command::code::POLL, 0, 9, 0, 0x40]);
    out.push(("secure_channel", "conversation.bin".into(), conv));
    {
        let key = Key::new(FIXED_KEY);
        let pd_c = PdChallenge::new(&key, false, FIXED_RND_A, FIXED_RND_B);
        let (rnd_b, client) = pd_c.client_cryptogram();
        let pending = CpChallenge::new(&key, false, FIXED_RND_A)
            .verify(&rnd_b, &client)
            .expect("honest");
        let scrypt = pending.server_cryptogram();
        let (_, rmac) = PdChallenge::new(&key, false, FIXED_RND_A, FIXED_RND_B)
            .verify(&scrypt)
            .expect("honest");
        let mut hs = vec![sc::MODE_HANDSHAKE];
        hs.extend_from_slice(&FIXED_KEY);
        hs.extend_from_slice(&FIXED_RND_A);
        hs.extend_from_slice(&FIXED_RND_B);
        hs.push(0x00);
        hs.extend_from_slice(&[0x5C, 0x26, 0x19, 0x02, 0, 0, 0, 0x10]);
        hs.extend_from_slice(&rnd_b);
        hs.extend_from_slice(&client);
        hs.extend_from_slice(&scrypt);
        hs.extend_from_slice(&rmac);
        hs.extend_from_slice(b"card 0123456789");
        out.push(("secure_channel", "handshake.bin".into(), hs));
    }
    out.push((
        "secure_channel",
        "key_hex.bin".into(),
        [&[sc::MODE_KEY][..], b"000102030405060708090a0b0c0d0e0f"].concat(),
    ));

    // control_panel.
    let online = [
        cp::OP_EXCHANGE,
        31,
        cp::OP_EXCHANGE,
        31,
        cp::OP_EXCHANGE,
        31,
        cp::OP_STATUS,
    ];
    out.push((
        "control_panel",
        "bring_online.bin".into(),
        [&[0x00][..], &online].concat(),
    ));
    out.push((
        "control_panel",
        "bring_online_checksum.bin".into(),
        [&[0x03][..], &online].concat(),
    ));
    let mut prog = vec![0x00];
    prog.extend_from_slice(&online);
    for (code, data) in command_payloads().into_iter().filter(|(c, _)| {
        matches!(
            *c,
            command::code::LED | command::code::OUT | command::code::BUZ | command::code::TEXT
        )
    }) {
        prog.extend_from_slice(&[cp::OP_SUBMIT, 1, code]);
        put_prefixed(&mut prog, &data);
    }
    prog.extend_from_slice(&[
        cp::OP_EXCHANGE,
        16,
        cp::OP_ADVANCE,
        0xE8,
        0x03,
        cp::OP_EXCHANGE,
        16,
    ]);
    out.push(("control_panel", "submit_commands.bin".into(), prog));
    let mut prog = vec![0x00];
    prog.extend_from_slice(&online);
    prog.extend_from_slice(&[cp::OP_SUBMIT, 2, command::code::KEYSET]);
    put_prefixed(&mut prog, &command_payloads()[9].1);
    prog.extend_from_slice(&[cp::OP_EXCHANGE, 31, cp::OP_EXCHANGE, 31, cp::OP_STATUS]);
    out.push(("control_panel", "keyset_install.bin".into(), prog));
    let pdid = &wire[6].1;
    let mut prog = vec![0x00, cp::OP_TRANSMIT, cp::OP_RAW];
    put_prefixed(&mut prog, pdid);
    prog.extend_from_slice(&[cp::OP_EXCHANGE, 8]);
    out.push(("control_panel", "raw_pdid.bin".into(), prog));
    let mut prog = vec![
        0x00,
        cp::OP_EXCHANGE,
        20,
        cp::OP_TRANSMIT,
        cp::OP_CORRUPT,
        9,
        0,
        0x10,
        1,
    ];
    prog.extend_from_slice(&[cp::OP_TRANSMIT, cp::OP_ANSWER, 5, cp::OP_TRANSMIT]);
    prog.extend_from_slice(&[cp::OP_FORGE, 0x01, 0x00, reply::code::RAW]);
    put_prefixed(&mut prog, &reply_payloads()[6].1);
    prog.extend_from_slice(&[cp::OP_ADVANCE, 0x10, 0x27, cp::OP_EXCHANGE, 31]);
    out.push(("control_panel", "corrupt_forge.bin".into(), prog));

    // peripheral.
    let led = &command_payloads()[5].1;
    let mut prog = vec![0x00];
    prog.extend_from_slice(&[pd::OP_CLEAR, 0x11, 0, command::code::ID, 1, 0]);
    prog.extend_from_slice(&[pd::OP_CLEAR, 0x11, 0, command::code::POLL, 0]);
    prog.extend_from_slice(&[pd::OP_CLEAR, 0x11, 1, command::code::LED]);
    put_prefixed(&mut prog, led);
    prog.push(pd::OP_RETRY);
    out.push(("peripheral", "clear_commands.bin".into(), prog));
    let mut prog = vec![0x02, pd::OP_HANDSHAKE, 0x00];
    prog.extend_from_slice(&FIXED_RND_A);
    prog.extend_from_slice(&[pd::OP_SEALED, 0x01, command::code::LED]);
    put_prefixed(&mut prog, led);
    prog.extend_from_slice(&[pd::OP_REPORT, 0, reply::code::RAW]);
    put_prefixed(&mut prog, &reply_payloads()[6].1);
    prog.extend_from_slice(&[pd::OP_SEALED, 0x01, command::code::POLL, 0]);
    prog.extend_from_slice(&[pd::OP_SEALED, 0x01, command::code::POLL, 0, pd::OP_RETRY]);
    prog.extend_from_slice(&[pd::OP_CIPHERTEXT, 0x01, command::code::OUT, 16]);
    prog.extend_from_slice(&[0x44; 16]);
    out.push(("peripheral", "secure_session.bin".into(), prog));
    let mut prog = vec![0x05, pd::OP_HANDSHAKE, 0x01];
    prog.extend_from_slice(&FIXED_RND_B);
    prog.extend_from_slice(&[pd::OP_SEALED, 0x01, command::code::KEYSET]);
    put_prefixed(&mut prog, &command_payloads()[9].1);
    prog.extend_from_slice(&[pd::OP_HANDSHAKE, 0x00]);
    prog.extend_from_slice(&FIXED_RND_A);
    prog.extend_from_slice(&[pd::OP_SEALED, 0x01, command::code::ISTAT, 0]);
    prog.extend_from_slice(&[
        pd::OP_ADVANCE,
        0x40,
        0x1F,
        pd::OP_SEALED,
        0x01,
        command::code::POLL,
        0,
    ]);
    out.push(("peripheral", "install_keyset.bin".into(), prog));
    let mut prog = vec![0x00, pd::OP_RAW];
    put_prefixed(&mut prog, &retarget(&wire[0].1, 0x11));
    out.push(("peripheral", "raw_poll.bin".into(), prog));

    // card_decode: every built-in format, and an unknown length.
    let table = CardFormatTable::builtin();
    for f in table.formats() {
        let facility = f.facility().map(|_| 123);
        let (bits, data) = encode(f, facility, 4567).expect("encodes");
        let name = f.name().to_ascii_lowercase().replace('-', "_");
        let [lo, hi] = bits.to_le_bytes();
        out.push((
            "card_decode",
            format!("{name}.bin"),
            [&[0x00, lo, hi][..], &data].concat(),
        ));
    }
    out.push((
        "card_decode",
        "unknown_40.bin".into(),
        vec![0x80, 1, 2, 3, 4, 5],
    ));
    out.push((
        "card_decode",
        "h10301_parity_error.bin".into(),
        vec![0x00, 26, 0, 0xBD, 0x88, 0xEB, 0xC0],
    ));

    out
}

/// The same packet addressed to `address` (check recomputed).
fn retarget(wire: &[u8], address: u8) -> Vec<u8> {
    let p = &crate::decode_all(wire)[0];
    let b = PacketBuilder {
        address,
        reply: p.is_reply(),
        sequence: p.sequence(),
        check: p.check(),
        mark: p.marked(),
        scb: None,
        code: p.code(),
        data: p.data(),
    };
    let mut out = Vec::new();
    b.encode(&mut out, None).expect("retarget");
    out
}

/// Checks that the payload seeds parse (used by the generator).
pub fn self_check() {
    for (code, data) in command_payloads() {
        if let Err(e) = Command::parse(code, &data) {
            panic!("command seed {code:#04x}: {e}");
        }
    }
    for (code, data) in reply_payloads() {
        if let Err(e) = Reply::parse(code, &data) {
            panic!("reply seed {code:#04x}: {e}");
        }
    }
}
