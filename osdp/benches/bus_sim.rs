//! Bus benchmark: polls per second and card-to-strike latency on a simulated
//! RS-485 bus, against the limits the wire itself sets.
//!
//! The bus delays every transmission by its wire time (10 bits a byte); the
//! real CPU time our control panel and peripheral devices spend is added to
//! the virtual clock, so the figures include our processing cost.
//!
//! Run: `cargo bench -p osdp --bench bus_sim` (add `-- --quick` for a short run).

// A benchmark harness: a broken setup should stop it loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use osdp::command::{Command, OutputControl, OutputControlCode};
use osdp::cp::{wire_time, ControlPanel, CpConfig, Event, PdConfig, RandomSource, Security};
use osdp::pd::{PdConfig as VirtualPd, PdEvent, PeripheralDevice};
use osdp::reply::{Capability, CapabilityFunction, PdId, RawCard, RawFormat, Reply};
use osdp::sc::Key;
use osdp::sim::{Sender, SimBus};

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

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn reader(addr: u8, key: Option<Key>) -> PeripheralDevice {
    PeripheralDevice::with_rng(
        VirtualPd {
            address: addr,
            id: PdId {
                vendor_code: [1, 2, 3],
                model: 1,
                version: 1,
                serial: u32::from(addr),
                firmware_major: 1,
                firmware_minor: 0,
                firmware_build: 0,
            },
            caps: vec![Capability {
                function: CapabilityFunction::OutputControl,
                compliance: 1,
                num_items: 1,
            }],
            require_secure: key.is_some(),
            scbk: key,
            install_mode: false,
            inputs: 1,
            outputs: 1,
        },
        rng(u64::from(addr) + 7),
    )
}

fn bus(baud: u32, pds: u8, secure: bool) -> SimBus {
    let start = Instant::now();
    let cfg = CpConfig {
        baud,
        poll_interval: Duration::ZERO,
        ..CpConfig::default()
    };
    let key = |a: u8| Key::new([a; 16]);
    let pd_cfg = (1..=pds)
        .map(|a| PdConfig {
            address: a,
            security: if secure {
                Security::Secure(key(a))
            } else {
                Security::Clear
            },
        })
        .collect();
    let cp = ControlPanel::with_rng(cfg, pd_cfg, start, rng(99)).expect("valid config");
    let devices = (1..=pds)
        .map(|a| reader(a, secure.then(|| key(a))))
        .collect();
    let mut bus = SimBus::new(cp, devices, baud, start);
    bus.turnaround = Duration::ZERO;
    bus.cpu_clock = Some(Instant::now);
    bus.record_wire = true;
    let deadline = bus.now() + Duration::from_secs(30);
    let all = usize::from(pds);
    let up = bus.run_until(
        |b| b.cp.status().iter().filter(|s| s.online).count() == all,
        deadline,
    );
    assert!(up, "devices did not come online");
    bus
}

/// Wire length of the first packet matching `code` sent by `from`.
fn packet_len(bus: &SimBus, cp_side: bool, code: u8) -> usize {
    bus.wire
        .iter()
        .filter(|r| (r.from == Sender::Cp) == cp_side)
        .find(|r| r.packets().first().is_some_and(|p| p.code() == code))
        .map(|r| r.bytes.len())
        .expect("packet seen")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Row {
    baud: u32,
    pds: u8,
    secure: bool,
    polls_per_s: f64,
    max_polls_per_s: f64,
    p50: Duration,
    p99: Duration,
    floor50: Duration,
    floor99: Duration,
    samples: usize,
}

fn run(baud: u32, pds: u8, secure: bool, cards: usize) -> Row {
    let mut bus = bus(baud, pds, secure);
    // Throughput: nothing but polls.
    bus.record_wire = true;
    bus.run_for(Duration::from_millis(300));
    let poll_len = packet_len(&bus, true, osdp::command::code::POLL);
    let ack_len = packet_len(&bus, false, osdp::reply::code::ACK);
    bus.record_wire = false;
    bus.wire.clear();
    let polls0 = bus.cp.stats().polls;
    let t0 = bus.now();
    let span = Duration::from_secs(20);
    bus.run_for(span);
    let polls = bus.cp.stats().polls - polls0;
    let elapsed = bus.now() - t0;
    let polls_per_s = polls as f64 / elapsed.as_secs_f64();
    let t_poll = wire_time(poll_len, baud);
    let t_ack = wire_time(ack_len, baud);
    let max_polls_per_s = 1.0 / (t_poll + t_ack).as_secs_f64();

    // Latency: a card appears at a random moment at a random reader; the
    // application answers its event with OUT at once; measured until the
    // OUT command has arrived at that reader.
    let mut r = Lcg(12345);
    let cycle = (t_poll + t_ack) * u32::from(pds);
    let mut lat = Vec::with_capacity(cards);
    let out = Command::Output(vec![OutputControl {
        output: 0,
        control: OutputControlCode::TemporaryOnThenOff,
        timer: 30,
    }]);
    let card = Reply::Raw(RawCard {
        reader: 0,
        format: RawFormat::Wiegand,
        bit_count: 26,
        data: vec![0x12, 0x34, 0x56, 0x40],
    });
    let mut raw_len = 0;
    let mut out_len = 0;
    bus.record_wire = true;
    for n in 0..cards {
        let gap = Duration::from_micros(r.below(cycle.as_micros() as u64 * 2));
        bus.run_for(gap);
        let idx = r.below(u64::from(pds)) as usize;
        let addr = idx as u8 + 1;
        let before = bus.pds[idx].events.len();
        bus.wire.clear();
        bus.cp_events.clear();
        bus.pds[idx].pd.queue_report(card.clone());
        let appeared = bus.now();
        let mut answered = false;
        let deadline = appeared + Duration::from_secs(10);
        loop {
            assert!(bus.now() < deadline, "no OUT after a card");
            bus.step();
            if !answered
                && bus.cp_events.iter().any(
                    |(_, e)| matches!(e, Event::Reply { pd, reply: Reply::Raw(_) } if *pd == addr),
                )
            {
                bus.cp.submit(addr, out.clone()).expect("queued");
                answered = true;
            }
            let got = bus.pds[idx].events[before..]
                .iter()
                .find(|(_, e)| matches!(e, PdEvent::Command(Command::Output(_))));
            if let Some((t, _)) = got {
                lat.push(*t - appeared);
                break;
            }
        }
        if n == 0 {
            raw_len = packet_len(&bus, false, osdp::reply::code::RAW);
            out_len = packet_len(&bus, true, osdp::command::code::OUT);
        }
    }
    lat.sort();
    // The physical floor: a perfect round-robin CP with zero processing and
    // zero turnaround collects the card with the first poll that reaches the
    // reader after it appeared (uniform over one polling cycle), then the
    // RAW reply and the OUT command occupy the wire back to back.
    let fixed = wire_time(raw_len, baud) + wire_time(out_len, baud);
    Row {
        baud,
        pds,
        secure,
        polls_per_s,
        max_polls_per_s,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        floor50: cycle.mul_f64(0.5) + fixed,
        floor99: cycle.mul_f64(0.99) + fixed,
        samples: lat.len(),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let cards = if quick { 200 } else { 2000 };
    println!(
        "| baud | PDs | SC | polls/s | wire max | % of max | card→OUT p50 | floor p50 | ratio | p99 | floor p99 | ratio | samples |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for baud in [9600, 115_200] {
        for pds in [1u8, 4, 8] {
            for secure in [false, true] {
                let r = run(baud, pds, secure, cards);
                println!(
                    "| {} | {} | {} | {:.1} | {:.1} | {:.1} % | {:.2} ms | {:.2} ms | {:.2}x | {:.2} ms | {:.2} ms | {:.2}x | {} |",
                    r.baud,
                    r.pds,
                    if r.secure { "on" } else { "off" },
                    r.polls_per_s,
                    r.max_polls_per_s,
                    100.0 * r.polls_per_s / r.max_polls_per_s,
                    ms(r.p50),
                    ms(r.floor50),
                    ms(r.p50) / ms(r.floor50),
                    ms(r.p99),
                    ms(r.floor99),
                    ms(r.p99) / ms(r.floor99),
                    r.samples,
                );
            }
        }
    }
}
