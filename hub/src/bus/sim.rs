//! A simulated bus: our [`ControlPanel`] and one virtual reader
//! ([`osdp::pd::PeripheralDevice`]) per configured device on an
//! [`osdp::sim::SimBus`], paced against the wall clock so wire times at the
//! bus's baud rate are real.
//!
//! [`super::spawn`] starts it for a bus whose port is [`super::SIM_PORT`];
//! the application gets the same [`BusHandle`] as for a serial port, so the
//! daemon drives it like any other bus. The extra request
//! [`super::BusClient::present`] makes a virtual reader report a card read
//! or keypad keys, as if a person had used it (`hub demo`).
//!
//! Each virtual reader uses the security its [`PdConfig`] asks the control
//! panel for (its own key, install mode or clear), so the secure channel is
//! set up exactly as with a real reader. It has two inputs and one output
//! (the strike relay).

use std::sync::Arc;
use std::time::{Duration, Instant};

use osdp::command::Command;
use osdp::cp::{ControlPanel, PdConfig, Security};
use osdp::pd::{self, PeripheralDevice};
use osdp::reply::{Capability, CapabilityFunction, PdId};
use osdp::sim::SimBus;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::{BusClient, BusConfig, BusError, BusEvent, BusHandle, Request};

/// Longest sleep of the task: virtual time catches up with the wall clock
/// at least this often, which bounds the extra latency of a reply.
const MAX_SLEEP: Duration = Duration::from_millis(10);

/// The virtual reader for the control panel's view of a device.
fn virtual_reader(pd: &PdConfig) -> PeripheralDevice {
    let (scbk, install_mode, require_secure) = match &pd.security {
        Security::Secure(key) => (Some(key.clone()), false, true),
        Security::Install => (None, true, false),
        Security::Clear => (None, false, false),
    };
    let cap = |function, num_items| Capability {
        function,
        compliance: 1,
        num_items,
    };
    PeripheralDevice::new(pd::PdConfig {
        address: pd.address,
        id: PdId {
            vendor_code: [0x00, 0x0E, 0xDB],
            model: 1,
            version: 1,
            serial: u32::from(pd.address),
            firmware_major: 0,
            firmware_minor: 1,
            firmware_build: 0,
        },
        caps: vec![
            cap(CapabilityFunction::ContactStatusMonitoring, 2),
            cap(CapabilityFunction::OutputControl, 1),
            cap(CapabilityFunction::CardDataFormat, 1),
            cap(CapabilityFunction::ReaderLedControl, 1),
            cap(CapabilityFunction::ReaderAudibleOutput, 1),
            cap(CapabilityFunction::ReaderTextOutput, 1),
            cap(CapabilityFunction::CheckCharacterSupport, 1),
            cap(CapabilityFunction::CommunicationSecurity, 1),
            cap(CapabilityFunction::Readers, 1),
        ],
        scbk,
        install_mode,
        require_secure,
        inputs: 2,
        outputs: 1,
    })
}

/// Starts the simulated bus task with `cp` (already built from `config`).
pub(super) fn spawn(config: BusConfig, cp: ControlPanel) -> BusHandle {
    let readers: Vec<PeripheralDevice> = config.pds.iter().map(virtual_reader).collect();
    let addresses: Vec<u8> = config.pds.iter().map(|p| p.address).collect();
    info!(
        port = %config.port,
        baud = config.baud,
        devices = readers.len(),
        "simulated bus started (virtual readers)"
    );
    let bus = SimBus::new(cp, readers, config.baud, Instant::now());
    let (req_tx, req_rx) = mpsc::channel(64);
    let (ev_tx, ev_rx) = mpsc::channel(config.event_capacity.max(1));
    let client = BusClient {
        port: Arc::from(config.port.as_str()),
        requests: req_tx,
    };
    let task = tokio::spawn(run(bus, addresses, req_rx, ev_tx));
    BusHandle {
        client,
        events: ev_rx,
        task: Some(task),
    }
}

async fn run(
    mut bus: SimBus,
    addresses: Vec<u8>,
    mut requests: mpsc::Receiver<Request>,
    events: mpsc::Sender<BusEvent>,
) {
    bus.record_wire = false;
    loop {
        // Virtual time catches up with the wall clock.
        let now = Instant::now();
        bus.run_until(|_| false, now);
        for (_, event) in std::mem::take(&mut bus.cp_events) {
            // Nobody listening is fine: the bus keeps running for submitters.
            let _ = events.send(BusEvent::Osdp(event)).await;
        }
        for (i, reader) in bus.pds.iter_mut().enumerate() {
            for (_, event) in reader.events.drain(..) {
                if let pd::PdEvent::Command(command) = event {
                    log_at_reader(addresses.get(i).copied().unwrap_or(0), &command);
                }
            }
        }
        let wake = bus
            .cp
            .poll_timeout()
            .map_or(now + MAX_SLEEP, |t| t.min(now + MAX_SLEEP))
            .max(now + Duration::from_millis(1));
        tokio::select! {
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            request = requests.recv() => match request {
                Some(Request::Submit { addr, command, reply }) => {
                    let _ = reply.send(bus.cp.submit(addr, command));
                }
                Some(Request::Status { reply }) => {
                    let _ = reply.send(bus.cp.status());
                }
                Some(Request::Stats { reply }) => {
                    let _ = reply.send(bus.cp.stats());
                }
                Some(Request::Present { addr, report, reply }) => {
                    let answer = match addresses.iter().position(|&a| a == addr) {
                        Some(i) => {
                            bus.pds[i].pd.queue_report(report);
                            Ok(())
                        }
                        None => Err(BusError::NoSuchReader(addr)),
                    };
                    let _ = reply.send(answer);
                }
                Some(Request::Shutdown) | None => {
                    info!("simulated bus stopped");
                    return;
                }
            },
        }
    }
}

/// What a virtual reader was told to do, for people watching the demo.
fn log_at_reader(addr: u8, command: &Command) {
    match command {
        Command::Output(outputs) => {
            for o in outputs {
                info!(reader = addr, output = o.output, control = ?o.control, "virtual reader: output");
            }
        }
        other => debug!(
            reader = addr,
            command = other.name(),
            "virtual reader: command"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osdp::card::{CardFormatTable, H10301};
    use osdp::cp::Event;
    use osdp::reply::{RawCard, RawFormat, Reply};
    use osdp::sc::Key;

    #[tokio::test]
    async fn virtual_readers_come_online_securely_and_report_a_presented_card() {
        let key = Key::new([7; 16]);
        let pds = vec![PdConfig {
            address: 1,
            security: Security::Secure(key),
        }];
        let mut handle = super::super::spawn(BusConfig::new(super::super::SIM_PORT, 115_200, pds))
            .expect("a simulated bus needs no port");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        async fn next_in(h: &mut BusHandle, deadline: tokio::time::Instant) -> Option<BusEvent> {
            tokio::time::timeout_at(deadline, h.events.recv())
                .await
                .ok()
                .flatten()
        }
        loop {
            match next_in(&mut handle, deadline).await {
                Some(BusEvent::Osdp(Event::Online { pd: 1, secure, .. })) => {
                    assert!(secure, "the virtual reader uses the configured key");
                    break;
                }
                Some(_) => {}
                None => panic!("the virtual reader did not come online"),
            }
        }
        let status = handle.status().await.unwrap();
        assert!(status[0].online && status[0].secure && !status[0].default_key);
        assert_eq!(status[0].id.as_ref().map(|id| id.serial), Some(1));

        let formats = CardFormatTable::builtin();
        let (bits, data) = formats
            .get(H10301)
            .unwrap()
            .encode(Some(12), 34567)
            .unwrap();
        let card = RawCard {
            reader: 0,
            format: RawFormat::Wiegand,
            bit_count: bits,
            data: data.clone(),
        };
        handle.client().present(1, Reply::Raw(card)).await.unwrap();
        loop {
            match next_in(&mut handle, deadline).await {
                Some(BusEvent::Osdp(Event::Reply {
                    pd: 1,
                    reply: Reply::Raw(c),
                })) => {
                    assert_eq!((c.bit_count, c.data), (bits, data));
                    break;
                }
                Some(_) => {}
                None => panic!("the presented card never reached the control panel"),
            }
        }
        let err = handle
            .client()
            .present(
                9,
                Reply::Raw(RawCard {
                    reader: 0,
                    format: RawFormat::Wiegand,
                    bit_count: 0,
                    data: Vec::new(),
                }),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::NoSuchReader(9)), "{err}");
        handle.shutdown().await;
    }
}
