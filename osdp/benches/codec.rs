//! Micro-benchmarks of the per-packet work: framing, secure channel, card
//! decoding. Run: `cargo bench -p osdp --bench codec`.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use osdp::card::CardFormatTable;
use osdp::frame::{Check, Decoder, PacketBuilder};
use osdp::sc::{CpChallenge, Direction, Key, PdChallenge, Session};

fn sessions() -> (Session, Session) {
    let key = Key::new([7; 16]);
    let pd = PdChallenge::new(&key, false, [1; 8], [2; 8]);
    let (rnd_b, client) = pd.client_cryptogram();
    let pending = CpChallenge::new(&key, false, [1; 8])
        .verify(&rnd_b, &client)
        .unwrap();
    let (pd_session, rmac) = pd.verify(&pending.server_cryptogram()).unwrap();
    (pending.establish(&rmac).unwrap(), pd_session)
}

fn poll_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder {
        address: 1,
        reply: false,
        sequence: 1,
        check: Check::Crc16,
        mark: true,
        scb: None,
        code: 0x60,
        data: &[],
    }
    .encode(&mut out, None)
    .unwrap();
    out
}

fn bench(c: &mut Criterion) {
    let poll = poll_bytes();
    c.bench_function("frame: decode POLL", |b| {
        let mut d = Decoder::default();
        b.iter(|| {
            d.push(black_box(&poll));
            black_box(d.next_packet().unwrap());
        })
    });
    c.bench_function("frame: encode POLL", |b| {
        let mut out = Vec::with_capacity(64);
        b.iter(|| {
            out.clear();
            PacketBuilder {
                address: 1,
                reply: false,
                sequence: 1,
                check: Check::Crc16,
                mark: true,
                scb: None,
                code: 0x60,
                data: &[],
            }
            .encode(&mut out, None)
            .unwrap();
            black_box(&out);
        })
    });
    c.bench_function("sc: handshake (both sides)", |b| {
        b.iter(|| black_box(sessions()))
    });

    let (c0, p0) = sessions();
    let (mut cp, mut pd) = (Some(c0), Some(p0));
    let card = [0u8, 1, 26, 0, 0x12, 0x34, 0x56, 0x40];
    c.bench_function("sc: seal + open a secured RAW-sized command", |b| {
        b.iter(|| {
            let mut c = cp.take().unwrap();
            let p = pd.take().unwrap();
            let mut out = Vec::with_capacity(64);
            let base = PacketBuilder {
                address: 1,
                reply: false,
                sequence: 1,
                check: Check::Crc16,
                mark: true,
                scb: None,
                code: 0x68,
                data: &[],
            };
            c.seal(Direction::Command, base, black_box(&card), &mut out)
                .unwrap();
            let mut d = Decoder::default();
            d.push(&out);
            let packet = d.next_packet().unwrap();
            let (p, plain) = p.open(Direction::Command, &packet).unwrap();
            black_box(plain);
            // No reply moves the chain, so each round verifies like a retry.
            cp = Some(c);
            pd = Some(p);
        })
    });

    let table = CardFormatTable::builtin();
    let h10301 = [0x02u8, 0x00, 0x40, 0x3F];
    c.bench_function("card: decode 26-bit", |b| {
        b.iter(|| black_box(table.decode(26, black_box(&h10301))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
