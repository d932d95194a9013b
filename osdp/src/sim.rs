//! A deterministic simulated RS-485 bus in virtual time.
//!
//! One [`ControlPanel`] and any number of [`PeripheralDevice`]s share a
//! half-duplex line. Every packet occupies the wire for its wire time (10 bits
//! a byte at the configured baud rate) and every device hears every byte, as
//! on a real multi-drop bus. Time only moves when [`SimBus::step`] or
//! [`SimBus::run_for`] is called, so retries, offline detection and
//! handshakes are tested in milliseconds of real time and always the same way.
//!
//! Faults can be injected: a device can be unplugged, noise written onto the
//! line, and the next frames dropped. Everything on the wire is recorded in
//! [`SimBus::wire`] for assertions (for example, that no card data ever
//! travels in clear text).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::cp::{wire_time, ControlPanel, Event};
use crate::frame::{Decoder, Packet};
use crate::pd::{PdEvent, PeripheralDevice};

/// Who put bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// The control panel.
    Cp,
    /// Peripheral device at this index.
    Pd(usize),
    /// Injected noise.
    Noise,
}

/// One transmission, as recorded.
#[derive(Debug, Clone)]
pub struct WireRecord {
    /// When the first byte went out.
    pub at: Instant,
    /// Who sent it.
    pub from: Sender,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl WireRecord {
    /// The packets in this transmission.
    pub fn packets(&self) -> Vec<Packet> {
        let mut d = Decoder::default();
        d.push(&self.bytes);
        std::iter::from_fn(|| d.next_packet()).collect()
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Delivery {
    at: Instant,
    order: u64,
    to_cp: bool,
    bytes: Vec<u8>,
}

/// A device on the simulated bus.
pub struct SimPd {
    /// The device state machine.
    pub pd: PeripheralDevice,
    /// Whether it is powered and connected.
    pub connected: bool,
    /// Events it reported, with the virtual time they happened.
    pub events: Vec<(Instant, PdEvent)>,
}

/// The simulated bus.
pub struct SimBus {
    /// The control panel under test.
    pub cp: ControlPanel,
    /// The devices.
    pub pds: Vec<SimPd>,
    /// Events the control panel reported, with their time.
    pub cp_events: Vec<(Instant, Event)>,
    /// Everything sent, in order.
    pub wire: Vec<WireRecord>,
    /// Keep [`SimBus::wire`] (off for long benchmarks).
    pub record_wire: bool,
    /// Time a device takes to start answering.
    pub turnaround: Duration,
    /// When set, the real processing time of every control panel and device
    /// call, read from this clock, is added to virtual time before the bytes
    /// it produced go out (benchmarks: wire time simulated, CPU time real).
    pub cpu_clock: Option<fn() -> Instant>,
    cp_ready_at: Instant,
    baud: u32,
    now: Instant,
    queue: BinaryHeap<Reverse<Delivery>>,
    order: u64,
    drop_next: usize,
    drop_reply_to: Option<u8>,
    drop_armed: bool,
}

impl SimBus {
    /// A bus at `baud` starting at `start`; devices answer after
    /// `turnaround`.
    pub fn new(cp: ControlPanel, pds: Vec<PeripheralDevice>, baud: u32, start: Instant) -> SimBus {
        SimBus {
            cp,
            pds: pds
                .into_iter()
                .map(|pd| SimPd {
                    pd,
                    connected: true,
                    events: Vec::new(),
                })
                .collect(),
            cp_events: Vec::new(),
            wire: Vec::new(),
            record_wire: true,
            turnaround: Duration::from_micros(200),
            cpu_clock: None,
            cp_ready_at: start,
            baud,
            now: start,
            queue: BinaryHeap::new(),
            order: 0,
            drop_next: 0,
            drop_reply_to: None,
            drop_armed: false,
        }
    }

    /// Current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Drops the next `n` transmissions (any sender) as if garbled.
    pub fn drop_next(&mut self, n: usize) {
        self.drop_next = n;
    }

    /// Drops the device reply to the next command with this code the control
    /// panel sends (as if garbled), once.
    pub fn drop_reply_to(&mut self, command_code: u8) {
        self.drop_reply_to = Some(command_code);
    }

    /// Writes noise onto the line toward the control panel now.
    pub fn inject_noise(&mut self, bytes: &[u8]) {
        self.send(Sender::Noise, bytes.to_vec(), self.now);
    }

    fn send(&mut self, from: Sender, bytes: Vec<u8>, at: Instant) {
        if self.record_wire {
            self.wire.push(WireRecord {
                at,
                from,
                bytes: bytes.clone(),
            });
        }
        if self.drop_next > 0 {
            self.drop_next -= 1;
            return;
        }
        if from == Sender::Cp {
            if let Some(code) = self.drop_reply_to {
                let mut d = Decoder::default();
                d.push(&bytes);
                if d.next_packet().is_some_and(|p| p.code() == code) {
                    self.drop_reply_to = None;
                    self.drop_armed = true;
                }
            }
        } else if matches!(from, Sender::Pd(_)) && self.drop_armed {
            self.drop_armed = false;
            return;
        }
        let arrive = at + wire_time(bytes.len(), self.baud);
        self.order += 1;
        self.queue.push(Reverse(Delivery {
            at: arrive,
            order: self.order,
            to_cp: from != Sender::Cp,
            bytes,
        }));
    }

    /// Runs the control panel's transmit side and collects events.
    fn service_cp(&mut self) {
        loop {
            let now = self.now.max(self.cp_ready_at);
            let clock = self.cpu_clock;
            let t0 = clock.map(|c| c());
            let Some(bytes) = self.cp.poll_transmit(now) else {
                break;
            };
            let spent = match (clock, t0) {
                (Some(c), Some(t0)) => c().saturating_duration_since(t0),
                _ => Duration::ZERO,
            };
            self.send(Sender::Cp, bytes, now + spent);
        }
        while let Some(e) = self.cp.poll_event() {
            self.cp_events.push((self.now, e));
        }
    }

    /// Advances to the next thing that happens; returns false when nothing
    /// is scheduled at all.
    pub fn step(&mut self) -> bool {
        self.service_cp();
        let next_delivery = self.queue.peek().map(|Reverse(d)| d.at);
        let next_timer = self.cp.poll_timeout().map(|t| t.max(self.now));
        let Some(next) = [next_delivery, next_timer].into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(next);
        while self.queue.peek().is_some_and(|Reverse(d)| d.at <= self.now) {
            let Some(Reverse(d)) = self.queue.pop() else {
                break;
            };
            if d.to_cp {
                let now = self.now;
                let cp = &mut self.cp;
                let clock = self.cpu_clock;
                let t0 = clock.map(|c| c());
                cp.handle_input(&d.bytes, now);
                if let (Some(c), Some(t0)) = (clock, t0) {
                    self.cp_ready_at = now + c().saturating_duration_since(t0);
                }
            } else {
                let now = self.now;
                let turnaround = self.turnaround;
                let clock = self.cpu_clock;
                let mut replies = Vec::new();
                for (i, p) in self.pds.iter_mut().enumerate() {
                    if !p.connected {
                        continue;
                    }
                    let t0 = clock.map(|c| c());
                    p.pd.handle_input(&d.bytes, now);
                    let mut out = Vec::new();
                    while let Some(bytes) = p.pd.poll_transmit() {
                        out.push(bytes);
                    }
                    let spent = match (clock, t0) {
                        (Some(c), Some(t0)) => c().saturating_duration_since(t0),
                        _ => Duration::ZERO,
                    };
                    while let Some(e) = p.pd.poll_event() {
                        p.events.push((now, e));
                    }
                    for bytes in out {
                        replies.push((i, bytes, now + turnaround + spent));
                    }
                }
                for (i, bytes, at) in replies {
                    self.send(Sender::Pd(i), bytes, at);
                }
            }
        }
        self.cp.handle_timeout(self.now);
        self.service_cp();
        true
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(|_| false, end);
    }

    /// Runs until `done` returns true or virtual time reaches `deadline`;
    /// returns whether `done` became true.
    pub fn run_until(&mut self, mut done: impl FnMut(&SimBus) -> bool, deadline: Instant) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self.now >= deadline {
                return false;
            }
            let next_delivery = self.queue.peek().map(|Reverse(d)| d.at);
            let next_timer = self.cp.poll_timeout();
            let next = [next_delivery, next_timer].into_iter().flatten().min();
            match next {
                Some(t) if t > deadline => {
                    self.now = deadline;
                    return done(self);
                }
                None => {
                    self.now = deadline;
                    return done(self);
                }
                _ => {
                    self.step();
                }
            }
        }
    }
}
