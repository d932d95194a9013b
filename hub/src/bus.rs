//! The bus driver: one tokio task per serial port runs one
//! [`osdp::cp::ControlPanel`] against the real wire.
//!
//! [`spawn`] opens the port (so a missing device or a refused RS-485 setting
//! is reported at once, as a [`BusError`]) and starts the task. The returned
//! [`BusHandle`] submits commands ([`BusHandle::submit`]), reads device
//! snapshots ([`BusHandle::status`]) and receives everything that happens on
//! the bus in [`BusHandle::events`]. Several buses run side by side: call
//! [`spawn`] once per port, from inside a tokio runtime.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hub::bus::BusError> {
//! use hub::bus::{self, BusConfig, BusEvent};
//! use osdp::command::Command;
//! use osdp::cp::{Event, PdConfig, Security};
//!
//! let pds = vec![PdConfig { address: 1, security: Security::Clear }];
//! let mut bus = bus::spawn(BusConfig::new("/dev/ttyUSB0", 9600, pds))?;
//! while let Some(event) = bus.events.recv().await {
//!     if let BusEvent::Osdp(Event::Online { pd, .. }) = event {
//!         bus.submit(pd, Command::LocalStatus).await?;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The task loop, as the sans-IO core asks for it:
//!
//! 1. write `cp.poll_transmit(now)` to the port,
//! 2. forward `cp.poll_event()` (and port events) to the event channel,
//! 3. wait for whichever comes first: bytes from the port
//!    (`cp.handle_input`), the core's deadline `cp.poll_timeout()`
//!    (`cp.handle_timeout`), or an application request.
//!
//! The core retries timed-out requests itself; the driver never does. When
//! the port fails (a USB adapter unplugged, a PTY whose other end closed, a
//! write that does not complete) the driver reports [`BusEvent::PortLost`],
//! keeps running the core's timers with nothing on the wire (so devices go
//! offline through the core's own offline timeout), and reopens the port every
//! [`BusConfig::reopen_delay`], doubling after each failed attempt up to
//! [`MAX_REOPEN_DELAY`], until it is back ([`BusEvent::PortReopened`]).
//! [`spawn_retrying`] does the same for a port that cannot be opened at
//! start (the daemon uses it: one missing adapter must not stop the hub).
//!
//! Kernel RS-485 mode (`TIOCSRS485`, the UART driver toggling RTS around each
//! transmission) is set only when [`BusConfig::rs485`] asks for it. USB
//! RS-485 adapters switch direction in hardware and PTYs have no RS-485 at
//! all: on those the ioctl fails and [`spawn`] says so.
//!
//! The event channel is bounded ([`BusConfig::event_capacity`]): a consumer
//! that stops reading eventually stalls its bus, which then misses replies.
//! Keep draining `events`.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use osdp::command::Command;
use osdp::cp::{
    wire_time, CommandId, ConfigError, ControlPanel, CpConfig, CpStats, Event, PdConfig, PdStatus,
    SubmitError,
};
use osdp::reply::Reply;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_serial::{SerialPortBuilderExt, SerialStream};
use tracing::{debug, info, warn};

pub mod sim;

/// Kernel RS-485 settings (`struct serial_rs485`), applied with `TIOCSRS485`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rs485Config {
    /// RTS is high (driver enabled) while sending; otherwise low.
    pub rts_on_send: bool,
    /// RTS level after sending; usually the opposite of `rts_on_send`.
    pub rts_after_send: bool,
    /// Keep the receiver on while sending (hear our own echo).
    pub rx_during_tx: bool,
    /// Delay between raising RTS and the first bit, in milliseconds.
    pub delay_before_send_ms: u32,
    /// Delay between the last bit and dropping RTS, in milliseconds.
    pub delay_after_send_ms: u32,
}

impl Default for Rs485Config {
    fn default() -> Self {
        Rs485Config {
            rts_on_send: true,
            rts_after_send: false,
            rx_during_tx: false,
            delay_before_send_ms: 0,
            delay_after_send_ms: 0,
        }
    }
}

/// How to run one bus.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Serial device, e.g. `/dev/ttyUSB0`, `/dev/ttyAMA0` or `/dev/pts/3`.
    pub port: String,
    /// Line speed. Also copied into the core's [`CpConfig::baud`].
    pub baud: u32,
    /// Kernel RS-485 mode; `None` leaves the port's setting alone.
    pub rs485: Option<Rs485Config>,
    /// Pause between attempts to reopen a port that failed.
    pub reopen_delay: Duration,
    /// A write that takes longer than this (plus the packet's wire time)
    /// counts as a port failure.
    pub write_timeout: Duration,
    /// Events buffered for the application before the bus waits for it.
    pub event_capacity: usize,
    /// Control panel settings (timeouts, poll interval, CRC).
    pub cp: CpConfig,
    /// The devices on this bus.
    pub pds: Vec<PdConfig>,
}

impl BusConfig {
    /// A bus on `port` at `baud` with default timings.
    pub fn new(port: impl Into<String>, baud: u32, pds: Vec<PdConfig>) -> Self {
        BusConfig {
            port: port.into(),
            baud,
            rs485: None,
            reopen_delay: Duration::from_secs(2),
            write_timeout: Duration::from_secs(1),
            event_capacity: 1024,
            cp: CpConfig::default(),
            pds,
        }
    }
}

/// Something that happened on a bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// An event of the OSDP control panel (device online, card read, ...).
    Osdp(Event),
    /// The port failed; the driver will try to reopen it.
    PortLost {
        /// Serial device path.
        port: String,
        /// What failed.
        error: String,
    },
    /// The port was reopened after a failure.
    PortReopened {
        /// Serial device path.
        port: String,
    },
}

/// Errors of the bus driver.
#[derive(Debug, Error)]
pub enum BusError {
    /// The serial port could not be opened or configured.
    #[error("cannot open serial port {port}: {source}")]
    Open {
        /// Serial device path.
        port: String,
        /// What the OS said.
        #[source]
        source: tokio_serial::Error,
    },
    /// `TIOCSRS485` was refused.
    #[error(
        "cannot enable kernel RS-485 mode on {port} (ioctl TIOCSRS485): {source}; \
         this port's driver has no RS-485 support (PTYs and most USB adapters do not: \
         USB RS-485 adapters switch direction in hardware, run without RS-485 mode)"
    )]
    Rs485 {
        /// Serial device path.
        port: String,
        /// The ioctl's error.
        #[source]
        source: io::Error,
    },
    /// The device list or timings were refused by the control panel.
    #[error("bad bus configuration: {0}")]
    Config(#[from] ConfigError),
    /// The control panel did not queue the command.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The bus task is gone (it was shut down, or it panicked).
    #[error("the bus task for {0} has stopped")]
    Stopped(String),
    /// A card or keys can only be presented at a simulated bus's readers.
    #[error("{0} is a real bus: cards are presented at the reader, not by the hub")]
    NotSimulated(String),
    /// No virtual reader has this address on the simulated bus.
    #[error("no virtual reader at address {0}")]
    NoSuchReader(u8),
}

/// A request from the application to the bus task.
enum Request {
    Submit {
        addr: u8,
        command: Command,
        reply: oneshot::Sender<Result<CommandId, SubmitError>>,
    },
    Status {
        reply: oneshot::Sender<Vec<PdStatus>>,
    },
    Stats {
        reply: oneshot::Sender<CpStats>,
    },
    /// Simulated buses only: a virtual reader reports this on its next poll.
    Present {
        addr: u8,
        report: Reply,
        reply: oneshot::Sender<Result<(), BusError>>,
    },
    Shutdown,
}

/// A cloneable sender of requests to one bus (for code that must submit
/// while something else owns the [`BusHandle`] and its events).
#[derive(Clone, Debug)]
pub struct BusClient {
    port: Arc<str>,
    requests: mpsc::Sender<Request>,
}

impl BusClient {
    /// The serial device this bus runs on.
    pub fn port(&self) -> &str {
        &self.port
    }

    fn stopped(&self) -> BusError {
        BusError::Stopped(self.port.to_string())
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, BusError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(make(tx))
            .await
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())
    }

    /// Queues `command` for device `addr`. Completion is reported later as
    /// [`Event::CommandDone`] or [`Event::CommandFailed`] with the same id.
    pub async fn submit(&self, addr: u8, command: Command) -> Result<CommandId, BusError> {
        let result = self
            .ask(|reply| Request::Submit {
                addr,
                command,
                reply,
            })
            .await?;
        Ok(result?)
    }

    /// A snapshot of every device on the bus.
    pub async fn status(&self) -> Result<Vec<PdStatus>, BusError> {
        self.ask(|reply| Request::Status { reply }).await
    }

    /// The control panel's counters (packets, timeouts, retries).
    pub async fn stats(&self) -> Result<CpStats, BusError> {
        self.ask(|reply| Request::Stats { reply }).await
    }

    /// Simulated buses ([`SIM_PORT`]) only: the virtual reader at `addr`
    /// reports `report` (a card read, keypad keys) on its next poll, as if
    /// a person had used it. A real bus answers [`BusError::NotSimulated`].
    pub async fn present(&self, addr: u8, report: Reply) -> Result<(), BusError> {
        self.ask(|reply| Request::Present {
            addr,
            report,
            reply,
        })
        .await?
    }
}

/// The application's side of one running bus.
#[derive(Debug)]
pub struct BusHandle {
    client: BusClient,
    /// Everything the bus reports, in order.
    pub events: mpsc::Receiver<BusEvent>,
    task: Option<JoinHandle<()>>,
}

impl BusHandle {
    /// The serial device this bus runs on.
    pub fn port(&self) -> &str {
        self.client.port()
    }

    /// A cloneable request sender for this bus.
    pub fn client(&self) -> BusClient {
        self.client.clone()
    }

    /// See [`BusClient::submit`].
    pub async fn submit(&self, addr: u8, command: Command) -> Result<CommandId, BusError> {
        self.client.submit(addr, command).await
    }

    /// See [`BusClient::status`].
    pub async fn status(&self) -> Result<Vec<PdStatus>, BusError> {
        self.client.status().await
    }

    /// See [`BusClient::stats`].
    pub async fn stats(&self) -> Result<CpStats, BusError> {
        self.client.stats().await
    }

    /// Stops the bus task and waits for it; the port is closed.
    pub async fn shutdown(mut self) {
        // A full queue or a finished task both end in the task being gone.
        let _ = self.client.requests.send(Request::Shutdown).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for BusHandle {
    fn drop(&mut self) {
        // Nobody can read the events any more: stop driving the bus.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The port name of a simulated bus: no serial port, virtual readers (see
/// [`sim`]).
pub const SIM_PORT: &str = "sim:";

impl BusConfig {
    /// This bus is simulated ([`SIM_PORT`]).
    pub fn is_simulated(&self) -> bool {
        self.port == SIM_PORT
    }
}

/// Opens the port, builds the control panel and starts the bus task. Must be
/// called from within a tokio runtime. A [`SIM_PORT`] bus runs on
/// [`sim`]'s virtual readers instead of a port.
pub fn spawn(config: BusConfig) -> Result<BusHandle, BusError> {
    start(config, false)
}

/// Longest pause between two attempts to reopen a port.
pub const MAX_REOPEN_DELAY: Duration = Duration::from_secs(30);

/// [`spawn`], except that a port that cannot be opened
/// ([`BusError::Open`]: missing, busy, no permission) starts the bus
/// without it: the first event is [`BusEvent::PortLost`] with the reason,
/// its devices stay offline, and the driver keeps trying to open it (with
/// backoff) until [`BusEvent::PortReopened`]. A bad device list or a
/// refused RS-485 setting is still an error: retrying cannot fix those.
pub fn spawn_retrying(config: BusConfig) -> Result<BusHandle, BusError> {
    start(config, true)
}

fn start(mut config: BusConfig, retry: bool) -> Result<BusHandle, BusError> {
    config.cp.baud = config.baud;
    let cp = ControlPanel::new(config.cp.clone(), config.pds.clone(), Instant::now())?;
    if config.is_simulated() {
        return Ok(sim::spawn(config, cp));
    }
    let mut pending = VecDeque::new();
    let mut reopen_at = None;
    let port = match open_port(&config.port, config.baud, config.rs485.as_ref()) {
        Ok(port) => Some(port),
        Err(e @ BusError::Open { .. }) if retry => {
            warn!(port = %config.port, error = %e, "serial port not available; will keep trying");
            reopen_at = Some(Instant::now() + config.reopen_delay);
            pending.push_back(BusEvent::PortLost {
                port: config.port.clone(),
                error: e.to_string(),
            });
            None
        }
        Err(e) => return Err(e),
    };
    info!(port = %config.port, baud = config.baud, devices = config.pds.len(), "bus started");
    let (req_tx, req_rx) = mpsc::channel(64);
    let (ev_tx, ev_rx) = mpsc::channel(config.event_capacity.max(1));
    let client = BusClient {
        port: Arc::from(config.port.as_str()),
        requests: req_tx,
    };
    let driver = Driver {
        backoff: config.reopen_delay,
        config,
        cp,
        port,
        reopen_at,
        requests: req_rx,
        events: ev_tx,
        pending,
    };
    let task = tokio::spawn(driver.run());
    Ok(BusHandle {
        client,
        events: ev_rx,
        task: Some(task),
    })
}

/// Opens `path` at `baud`, 8N1, no flow control, raw mode, and applies the
/// kernel RS-485 setting when one is given. Works on PTYs (without RS-485).
pub fn open_port(
    path: &str,
    baud: u32,
    rs485: Option<&Rs485Config>,
) -> Result<SerialStream, BusError> {
    let port = tokio_serial::new(path, baud)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(tokio_serial::FlowControl::None)
        .open_native_async()
        .map_err(|source| BusError::Open {
            port: path.to_owned(),
            source,
        })?;
    // serialport has already put the line in raw mode (cfmakeraw). Stale
    // bytes from before we opened are noise; PTYs may refuse the flush.
    if let Err(e) = tokio_serial::SerialPort::clear(&port, tokio_serial::ClearBuffer::All) {
        debug!(port = path, error = %e, "could not flush the port buffers (ignored)");
    }
    if let Some(rs) = rs485 {
        use std::os::fd::AsRawFd;
        set_rs485(port.as_raw_fd(), rs).map_err(|source| BusError::Rs485 {
            port: path.to_owned(),
            source,
        })?;
    }
    Ok(port)
}

/// The kernel's `struct serial_rs485` (include/uapi/linux/serial.h).
#[repr(C)]
#[derive(Default)]
struct SerialRs485 {
    flags: u32,
    delay_rts_before_send: u32,
    delay_rts_after_send: u32,
    padding: [u32; 5],
}

const SER_RS485_ENABLED: u32 = 1 << 0;
const SER_RS485_RTS_ON_SEND: u32 = 1 << 1;
const SER_RS485_RTS_AFTER_SEND: u32 = 1 << 2;
const SER_RS485_RX_DURING_TX: u32 = 1 << 4;

fn rs485_struct(rs: &Rs485Config) -> SerialRs485 {
    let mut flags = SER_RS485_ENABLED;
    if rs.rts_on_send {
        flags |= SER_RS485_RTS_ON_SEND;
    }
    if rs.rts_after_send {
        flags |= SER_RS485_RTS_AFTER_SEND;
    }
    if rs.rx_during_tx {
        flags |= SER_RS485_RX_DURING_TX;
    }
    SerialRs485 {
        flags,
        delay_rts_before_send: rs.delay_before_send_ms,
        delay_rts_after_send: rs.delay_after_send_ms,
        padding: [0; 5],
    }
}

/// Enables kernel RS-485 mode on `fd` with `TIOCSRS485`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_rs485(fd: std::os::fd::RawFd, rs: &Rs485Config) -> io::Result<()> {
    let conf = rs485_struct(rs);
    // SAFETY: `fd` is the open descriptor of the port we own for the whole
    // call; TIOCSRS485 reads exactly one `struct serial_rs485`, which
    // `SerialRs485` mirrors field for field (#[repr(C)], 32 bytes), and the
    // pointer is valid and aligned for the duration of the call. The kernel
    // does not keep the pointer.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSRS485, &conf as *const SerialRs485) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_rs485(_fd: std::os::fd::RawFd, _rs: &Rs485Config) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "kernel RS-485 mode is Linux only",
    ))
}

/// Read buffer size; OSDP packets are at most 1440 bytes.
const READ_BUF: usize = 2048;

/// Never sleep less than this when the core says work is already due but
/// produced nothing to send, so a confused core cannot spin the task.
const MIN_SLEEP: Duration = Duration::from_millis(1);

/// State owned by the bus task.
struct Driver {
    config: BusConfig,
    cp: ControlPanel,
    port: Option<SerialStream>,
    reopen_at: Option<Instant>,
    /// The pause before the next reopen attempt: doubles after each failure.
    backoff: Duration,
    requests: mpsc::Receiver<Request>,
    events: mpsc::Sender<BusEvent>,
    /// Port events waiting to be forwarded.
    pending: VecDeque<BusEvent>,
}

impl Driver {
    async fn run(mut self) {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            let now = Instant::now();
            let sent = match self.cp.poll_transmit(now) {
                Some(bytes) => {
                    self.transmit(&bytes).await;
                    true
                }
                None => false,
            };
            self.forward_events().await;

            let now = Instant::now();
            let mut wake = self
                .cp
                .poll_timeout()
                .unwrap_or(now + Duration::from_secs(3600));
            if let Some(at) = self.reopen_at {
                wake = wake.min(at);
            }
            if !sent {
                wake = wake.max(now + MIN_SLEEP);
            }
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(wake));

            tokio::select! {
                read = read_some(&mut self.port, &mut buf) => match read {
                    Ok(0) => self.lost("end of file (device gone?)".to_owned()),
                    Ok(n) => self.cp.handle_input(&buf[..n], Instant::now()),
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                    Err(e) => self.lost(format!("read failed: {e}")),
                },
                () = sleep => {
                    let now = Instant::now();
                    if self.reopen_at.is_some_and(|at| now >= at) {
                        self.try_reopen(now);
                    }
                    self.cp.handle_timeout(now);
                }
                request = self.requests.recv() => match request {
                    Some(Request::Submit { addr, command, reply }) => {
                        debug!(port = %self.config.port, pd = addr, command = command.name(), "submit");
                        let _ = reply.send(self.cp.submit(addr, command));
                    }
                    Some(Request::Status { reply }) => {
                        let _ = reply.send(self.cp.status());
                    }
                    Some(Request::Stats { reply }) => {
                        let _ = reply.send(self.cp.stats());
                    }
                    Some(Request::Present { reply, .. }) => {
                        let _ = reply.send(Err(BusError::NotSimulated(self.config.port.clone())));
                    }
                    Some(Request::Shutdown) | None => {
                        info!(port = %self.config.port, "bus stopped");
                        return;
                    }
                },
            }
        }
    }

    /// Writes one packet; a failure or a stuck write takes the port down.
    ///
    /// No `flush`: on tokio-serial it is `tcdrain`, which would block a
    /// runtime worker for the packet's wire time. Nothing needs it: the core
    /// adds the wire time to its reply deadline, and in kernel RS-485 mode
    /// the UART driver releases RTS after the last bit on its own.
    async fn transmit(&mut self, bytes: &[u8]) {
        let Some(port) = self.port.as_mut() else {
            // The port is down: the request is lost on the floor and the
            // core times it out like a silent device.
            return;
        };
        let limit = self.config.write_timeout + wire_time(bytes.len(), self.config.baud);
        let write = port.write_all(bytes);
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.lost(format!("write failed: {e}")),
            Err(_) => self.lost(format!("write did not complete within {limit:?}")),
        }
    }

    fn lost(&mut self, error: String) {
        warn!(port = %self.config.port, %error, "serial port lost; will reopen");
        self.port = None;
        self.backoff = self.config.reopen_delay;
        self.reopen_at = Some(Instant::now() + self.backoff);
        self.pending.push_back(BusEvent::PortLost {
            port: self.config.port.clone(),
            error,
        });
    }

    fn try_reopen(&mut self, now: Instant) {
        match open_port(
            &self.config.port,
            self.config.baud,
            self.config.rs485.as_ref(),
        ) {
            Ok(port) => {
                info!(port = %self.config.port, "serial port reopened");
                self.port = Some(port);
                self.reopen_at = None;
                self.backoff = self.config.reopen_delay;
                self.pending.push_back(BusEvent::PortReopened {
                    port: self.config.port.clone(),
                });
            }
            Err(e) => {
                self.backoff =
                    (self.backoff * 2).min(MAX_REOPEN_DELAY.max(self.config.reopen_delay));
                debug!(port = %self.config.port, error = %e, retry_in = ?self.backoff, "reopen failed; retrying");
                self.reopen_at = Some(now + self.backoff);
            }
        }
    }

    async fn forward_events(&mut self) {
        let cp = &mut self.cp;
        let port_events = self.pending.drain(..);
        let osdp_events = std::iter::from_fn(|| cp.poll_event()).map(BusEvent::Osdp);
        let all: Vec<BusEvent> = port_events.chain(osdp_events).collect();
        for event in all {
            // A dropped receiver means nobody listens; the bus still runs
            // for submitters until it is shut down.
            let _ = self.events.send(event).await;
        }
    }
}

/// Reads from the port, or waits forever while there is none.
async fn read_some(port: &mut Option<SerialStream>, buf: &mut [u8]) -> io::Result<usize> {
    match port {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rs485_struct_matches_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<SerialRs485>(), 32);
        let s = rs485_struct(&Rs485Config::default());
        assert_eq!(s.flags, SER_RS485_ENABLED | SER_RS485_RTS_ON_SEND);
        let s = rs485_struct(&Rs485Config {
            rts_on_send: false,
            rts_after_send: true,
            rx_during_tx: true,
            delay_before_send_ms: 2,
            delay_after_send_ms: 3,
        });
        assert_eq!(
            s.flags,
            SER_RS485_ENABLED | SER_RS485_RTS_AFTER_SEND | SER_RS485_RX_DURING_TX
        );
        assert_eq!((s.delay_rts_before_send, s.delay_rts_after_send), (2, 3));
        assert_eq!(s.padding, [0; 5]);
        assert!(SerialRs485::default().flags == 0);
    }

    #[tokio::test]
    async fn missing_port_is_a_clear_error() {
        let config = BusConfig::new("/dev/does-not-exist-osdp", 9600, Vec::new());
        let err = spawn(config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("cannot open serial port /dev/does-not-exist-osdp:"),
            "{err}"
        );
    }

    use crate::test_pty::{open_pty, VirtualPd};
    use osdp::command::{OutputControl, OutputControlCode};
    use osdp::cp::Security;
    use osdp::reply::{
        Capability, CapabilityFunction, LocalStatus, PdId, RawCard, RawFormat, Reply,
    };

    fn device(address: u8, scbk: Option<osdp::sc::Key>) -> osdp::pd::PdConfig {
        let cap = |function, num_items| Capability {
            function,
            compliance: 1,
            num_items,
        };
        osdp::pd::PdConfig {
            address,
            id: PdId {
                vendor_code: [0x0A, 0x0B, 0x0C],
                model: 1,
                version: 2,
                serial: 0x0102_0304,
                firmware_major: 1,
                firmware_minor: 2,
                firmware_build: 3,
            },
            caps: vec![
                cap(CapabilityFunction::ContactStatusMonitoring, 2),
                cap(CapabilityFunction::OutputControl, 1),
                cap(CapabilityFunction::ReaderLedControl, 1),
                cap(CapabilityFunction::CommunicationSecurity, 1),
            ],
            require_secure: scbk.is_some(),
            scbk,
            install_mode: false,
            inputs: 2,
            outputs: 1,
        }
    }

    fn quick(config: &mut BusConfig) {
        config.cp.reply_timeout = Duration::from_millis(100);
        config.cp.poll_interval = Duration::from_millis(20);
        config.reopen_delay = Duration::from_millis(100);
    }

    /// The next event matching `want`, skipping others; fails after 5 s.
    async fn wait_for(bus: &mut BusHandle, mut want: impl FnMut(&BusEvent) -> bool) -> BusEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let event = tokio::time::timeout_at(deadline, bus.events.recv())
                .await
                .expect("timed out waiting for a bus event")
                .expect("bus task ended");
            if want(&event) {
                return event;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_buses_run_in_parallel() {
        // One bus task per port: both ports are served at once, each with
        // its own devices and secure channel state.
        let key = osdp::sc::Key::new([0x5C; 16]);
        let mut pd_a = VirtualPd::start(device(1, None)).unwrap();
        let mut pd_b = VirtualPd::start(device(1, Some(key.clone()))).unwrap();
        let mut a = BusConfig::new(
            pd_a.path.clone(),
            9600,
            vec![PdConfig {
                address: 1,
                security: Security::Clear,
            }],
        );
        let mut b = BusConfig::new(
            pd_b.path.clone(),
            9600,
            vec![PdConfig {
                address: 1,
                security: Security::Secure(key),
            }],
        );
        quick(&mut a);
        quick(&mut b);
        let mut bus_a = spawn(a).unwrap();
        let mut bus_b = spawn(b).unwrap();
        drop(pd_a.slave.take());
        drop(pd_b.slave.take());
        let online = |secure: bool| move |e: &BusEvent| matches!(e, BusEvent::Osdp(Event::Online { pd: 1, secure: s, .. }) if *s == secure);
        let (ea, eb) = tokio::join!(
            wait_for(&mut bus_a, online(false)),
            wait_for(&mut bus_b, online(true))
        );
        assert!(matches!(ea, BusEvent::Osdp(Event::Online { .. })));
        assert!(matches!(eb, BusEvent::Osdp(Event::Online { .. })));
        // A card on bus B arrives on bus B only.
        let card = RawCard {
            reader: 0,
            format: RawFormat::Wiegand,
            bit_count: 26,
            data: vec![0x01, 0x02, 0x03, 0x40],
        };
        pd_b.device
            .lock()
            .unwrap()
            .queue_report(Reply::Raw(card.clone()));
        let got = wait_for(&mut bus_b, |e| {
            matches!(
                e,
                BusEvent::Osdp(Event::Reply {
                    reply: Reply::Raw(_),
                    ..
                })
            )
        })
        .await;
        assert_eq!(
            got,
            BusEvent::Osdp(Event::Reply {
                pd: 1,
                reply: Reply::Raw(card)
            })
        );
        assert!(bus_a.stats().await.unwrap().polls > 0);
        assert!(bus_b.status().await.unwrap()[0].secure);
        while let Ok(e) = bus_a.events.try_recv() {
            assert!(
                !matches!(
                    e,
                    BusEvent::Osdp(Event::Reply {
                        reply: Reply::Raw(_),
                        ..
                    })
                ),
                "bus A saw bus B's card"
            );
        }
    }

    #[tokio::test]
    async fn drives_a_device_over_a_pty() {
        let mut pd = VirtualPd::start(device(1, None)).unwrap();
        let pds = vec![PdConfig {
            address: 1,
            security: Security::Clear,
        }];
        let mut config = BusConfig::new(pd.path.clone(), 9600, pds);
        quick(&mut config);
        let mut bus = spawn(config).unwrap();
        drop(pd.slave.take());

        let id = wait_for(&mut bus, |e| {
            matches!(e, BusEvent::Osdp(Event::Identity { pd: 1, .. }))
        })
        .await;
        let BusEvent::Osdp(Event::Identity { id, .. }) = id else {
            unreachable!()
        };
        assert_eq!(id.serial, 0x0102_0304);
        wait_for(&mut bus, |e| {
            matches!(
                e,
                BusEvent::Osdp(Event::Online {
                    pd: 1,
                    secure: false,
                    ..
                })
            )
        })
        .await;

        // A command goes out and completes.
        let out = Command::Output(vec![OutputControl {
            output: 0,
            control: OutputControlCode::PermanentOnAbortTimed,
            timer: 0,
        }]);
        let cid = bus.submit(1, out).await.unwrap();
        wait_for(
            &mut bus,
            |e| matches!(e, BusEvent::Osdp(Event::CommandDone { pd: 1, id }) if *id == cid),
        )
        .await;
        assert_eq!(pd.device.lock().unwrap().outputs(), [1]);

        // A card read comes back through a poll.
        let card = RawCard {
            reader: 0,
            format: RawFormat::Wiegand,
            bit_count: 26,
            data: vec![0xBD, 0x88, 0xEB, 0x80],
        };
        pd.device
            .lock()
            .unwrap()
            .queue_report(Reply::Raw(card.clone()));
        let got = wait_for(&mut bus, |e| {
            matches!(
                e,
                BusEvent::Osdp(Event::Reply {
                    pd: 1,
                    reply: Reply::Raw(_)
                })
            )
        })
        .await;
        assert_eq!(
            got,
            BusEvent::Osdp(Event::Reply {
                pd: 1,
                reply: Reply::Raw(card)
            })
        );

        let status = bus.status().await.unwrap();
        assert_eq!(status.len(), 1);
        assert!(status[0].online && !status[0].secure);
        assert!(bus.stats().await.unwrap().polls > 0);
        assert!(matches!(
            bus.submit(9, Command::LocalStatus).await,
            Err(BusError::Submit(SubmitError::UnknownDevice(9)))
        ));
        bus.shutdown().await;
    }

    #[tokio::test]
    async fn secure_channel_over_a_pty() {
        let key = osdp::sc::Key::new([0x42; 16]);
        let mut pd = VirtualPd::start(device(5, Some(key.clone()))).unwrap();
        let pds = vec![PdConfig {
            address: 5,
            security: Security::Secure(key),
        }];
        let mut config = BusConfig::new(pd.path.clone(), 115_200, pds);
        quick(&mut config);
        let mut bus = spawn(config).unwrap();
        drop(pd.slave.take());
        wait_for(&mut bus, |e| {
            matches!(
                e,
                BusEvent::Osdp(Event::Online {
                    pd: 5,
                    secure: true,
                    default_key: false
                })
            )
        })
        .await;
        pd.device.lock().unwrap().set_local_status(true, false);
        bus.submit(5, Command::LocalStatus).await.unwrap();
        let got = wait_for(&mut bus, |e| {
            matches!(
                e,
                BusEvent::Osdp(Event::Reply {
                    reply: Reply::LocalStatus(_),
                    ..
                }) | BusEvent::Osdp(Event::CommandFailed { .. })
            )
        })
        .await;
        assert_eq!(
            got,
            BusEvent::Osdp(Event::Reply {
                pd: 5,
                reply: Reply::LocalStatus(LocalStatus {
                    tamper: 1,
                    power: 0
                })
            })
        );
        bus.shutdown().await;
    }

    #[tokio::test]
    async fn wrong_key_is_reported_not_fallen_back_from() {
        let mut pd = VirtualPd::start(device(5, Some(osdp::sc::Key::new([0x42; 16])))).unwrap();
        let pds = vec![PdConfig {
            address: 5,
            security: Security::Secure(osdp::sc::Key::new([0x43; 16])),
        }];
        let mut config = BusConfig::new(pd.path.clone(), 9600, pds);
        quick(&mut config);
        let mut bus = spawn(config).unwrap();
        drop(pd.slave.take());
        let got = wait_for(&mut bus, |e| {
            matches!(
                e,
                BusEvent::Osdp(Event::SecureChannelFailed { .. } | Event::Online { .. })
            )
        })
        .await;
        assert!(
            matches!(
                got,
                BusEvent::Osdp(Event::SecureChannelFailed { pd: 5, .. })
            ),
            "{got:?}"
        );
        bus.shutdown().await;
    }

    #[tokio::test]
    async fn rs485_mode_on_a_pty_is_a_clear_error() {
        let (_master, _slave, path) = open_pty().unwrap();
        let mut config = BusConfig::new(path.clone(), 9600, Vec::new());
        config.rs485 = Some(Rs485Config::default());
        let err = spawn(config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with(&format!(
                "cannot enable kernel RS-485 mode on {path} (ioctl TIOCSRS485):"
            )),
            "{err}"
        );
        assert!(err.contains("no RS-485 support"), "{err}");
    }

    #[tokio::test]
    async fn a_vanished_port_is_reported() {
        let (master, slave, path) = open_pty().unwrap();
        let pds = vec![PdConfig {
            address: 1,
            security: Security::Clear,
        }];
        let mut config = BusConfig::new(path, 9600, pds);
        quick(&mut config);
        let mut bus = spawn(config).unwrap();
        // Hang up the line: the PTY disappears, as an unplugged adapter does.
        drop(slave);
        drop(master);
        let got = wait_for(&mut bus, |e| matches!(e, BusEvent::PortLost { .. })).await;
        let BusEvent::PortLost { error, .. } = got else {
            unreachable!()
        };
        assert!(!error.is_empty());
        // The bus keeps serving requests while it waits to reopen.
        assert_eq!(bus.status().await.unwrap().len(), 1);
        bus.shutdown().await;
    }

    #[tokio::test]
    async fn a_port_missing_at_start_is_opened_once_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("ttyOSDP0");
        let pds = vec![PdConfig {
            address: 1,
            security: Security::Clear,
        }];
        let mut config = BusConfig::new(link.to_str().unwrap(), 9600, pds);
        quick(&mut config);
        // Plain spawn refuses it...
        assert!(matches!(
            spawn(config.clone()).err(),
            Some(BusError::Open { .. })
        ));
        // ...the retrying one runs without it and says why.
        let mut bus = spawn_retrying(config).unwrap();
        let got = wait_for(&mut bus, |e| matches!(e, BusEvent::PortLost { .. })).await;
        let BusEvent::PortLost { error, .. } = got else {
            unreachable!()
        };
        assert!(error.contains("cannot open serial port"), "{error}");
        let status = bus.status().await.unwrap();
        assert!(!status[0].online, "its device is offline");
        // The adapter is plugged in: the bus opens it.
        let (_master, _slave, path) = open_pty().unwrap();
        std::os::unix::fs::symlink(&path, &link).unwrap();
        wait_for(&mut bus, |e| matches!(e, BusEvent::PortReopened { .. })).await;
        bus.shutdown().await;
    }

    #[tokio::test]
    async fn bad_device_list_is_refused_before_opening() {
        let pds = vec![
            PdConfig {
                address: 1,
                security: osdp::cp::Security::Clear,
            },
            PdConfig {
                address: 1,
                security: osdp::cp::Security::Clear,
            },
        ];
        let err = spawn(BusConfig::new("/dev/does-not-exist-osdp", 9600, pds)).err();
        assert!(
            matches!(
                err,
                Some(BusError::Config(ConfigError::DuplicateAddress(1)))
            ),
            "{err:?}"
        );
    }
}
