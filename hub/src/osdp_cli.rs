//! `hub osdp`: the technician's tool for one OSDP bus.
//!
//! Two modes, both printing one JSON object per line on stdout (flushed line
//! by line, so a script or test can follow along) and logging to stderr:
//!
//! - `hub osdp --port PATH --pd ADDR[:KEY] ...` runs a control panel on the
//!   bus ([`crate::bus`]) and prints every event ([`event_json`]): devices
//!   coming online, cards, keypad entries, status reports, command results.
//!   It reads requests from stdin, one JSON object per line
//!   ([`parse_request`]): outputs, LEDs, buzzer, text, KEYSET and status
//!   queries. Every accepted line is answered with
//!   `{"pd":N,"event":"queued","id":ID}`, every bad one with
//!   `{"error":"..."}`. It runs until SIGINT or SIGTERM (or, with
//!   `--exit-on-eof`, until stdin ends).
//! - `hub osdp scan --port PATH` finds devices: it sends osdp_ID to every
//!   address at every baud rate and prints what answers ([`id_probe`],
//!   [`ProbeMatcher`]).
//!
//! The request parser and the event formatter are pure functions; only
//! [`run`] touches the port, stdin and stdout. docs/osdp-cli.md describes
//! every line shape.
//!
//! Secrets: keys given with `--pd` or in a `keyset` request are never printed
//! or logged, and error messages about them do not repeat them. Card numbers
//! and keypad digits *are* printed: showing them on the technician's own
//! terminal is what the tool is for.

use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use osdp::card::{CardFormatTable, ParityStatus};
use osdp::command::{
    BuzzerControl, Command, KeySet, LedColor, LedControl, OutputControl, OutputControlCode,
    PermanentLed, PermanentLedCode, TemporaryLed, TemporaryLedCode, TextCommand, TextControl,
    ToneCode,
};
use osdp::cp::{
    wire_time, CommandFailure, CpConfig, Event, PdConfig, PdStatus, ScFailure, Security,
    MAX_ADDRESS,
};
use osdp::frame::{Check, Decoder, FrameError, Packet, PacketBuilder, ADDR_BROADCAST};
use osdp::reply::{Capability, CapabilityFunction, NakCode, PdId, RawCard, RawFormat, Reply};
use osdp::sc::Key;
use serde_json::{json, Map, Value};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::bus::{self, BusConfig, BusError, BusEvent, BusHandle, Rs485Config};

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// `hub osdp`: run a control panel on one bus, or scan it.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct OsdpArgs {
    /// Other modes.
    #[command(subcommand)]
    pub command: Option<OsdpCommand>,

    /// Serial device, e.g. /dev/ttyUSB0, /dev/ttyAMA0, /dev/pts/3.
    #[arg(long, value_name = "PATH", required = true)]
    pub port: Option<String>,

    /// Line speed.
    #[arg(long, default_value_t = 9600)]
    pub baud: u32,

    /// A device on the bus, repeatable: ADDR (clear text), ADDR:SCBK (secure
    /// channel, 32 hex digits), ADDR:install (secure channel on SCBK-D, ready
    /// for a first KEYSET) or ADDR:@FILE (SCBK read from FILE, so it does not
    /// show in the process list).
    #[arg(
        long = "pd",
        value_name = "ADDR[:SCBK|:install|:@FILE]",
        required_unless_present = "install"
    )]
    pub pds: Vec<String>,

    /// A device in install mode; same as --pd ADDR:install. Repeatable.
    #[arg(long = "install", value_name = "ADDR")]
    pub install: Vec<String>,

    /// Time to wait for a reply, in milliseconds.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    pub reply_timeout_ms: u64,

    /// A device silent for this long is offline, in milliseconds.
    #[arg(long, default_value_t = 8000, value_name = "MS")]
    pub offline_timeout_ms: u64,

    /// Minimum time between two polls of one device, in milliseconds.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub poll_interval_ms: u64,

    /// Send the 8-bit checksum instead of CRC-16.
    #[arg(long)]
    pub checksum: bool,

    /// Exit when stdin ends. Without it the tool runs until SIGINT/SIGTERM.
    #[arg(long)]
    pub exit_on_eof: bool,

    /// Kernel RS-485 settings.
    #[command(flatten)]
    pub rs485: Rs485Args,
}

/// Subcommands of `hub osdp`.
#[derive(Debug, Subcommand)]
pub enum OsdpCommand {
    /// Find devices: send osdp_ID to every address at every baud rate.
    Scan(ScanArgs),
    /// Be a virtual reader (peripheral device) on the port, for testing a
    /// control panel without hardware.
    Pd(crate::virtual_pd::PdArgs),
}

/// `hub osdp scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Serial device.
    #[arg(long, value_name = "PATH")]
    pub port: String,

    /// Baud rates to try, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "9600,19200,38400,57600,115200,230400",
        value_name = "LIST"
    )]
    pub bauds: Vec<u32>,

    /// Addresses to probe: ranges and single addresses, e.g. 0-126 or
    /// 1,5,10-12. 127 is the broadcast address (only one device may answer).
    #[arg(long, default_value = "0-126", value_name = "LIST")]
    pub addresses: String,

    /// Time to wait for an answer after each probe left the wire, in ms.
    #[arg(long, default_value_t = 60, value_name = "MS")]
    pub timeout_ms: u64,

    /// Kernel RS-485 settings.
    #[command(flatten)]
    pub rs485: Rs485Args,
}

/// Kernel RS-485 mode options (shared by both modes).
#[derive(Debug, Clone, Default, Args)]
pub struct Rs485Args {
    /// Enable kernel RS-485 mode (ioctl TIOCSRS485): the UART driver raises
    /// RTS while sending. For on-board UARTs wired to a transceiver's DE pin;
    /// not for USB RS-485 adapters (they switch in hardware) or PTYs.
    #[arg(long)]
    pub rs485: bool,

    /// In RS-485 mode, drive RTS low (not high) while sending.
    #[arg(long, requires = "rs485")]
    pub rs485_rts_low: bool,

    /// In RS-485 mode, keep the receiver on while sending.
    #[arg(long, requires = "rs485")]
    pub rs485_rx_during_tx: bool,

    /// In RS-485 mode, delay between raising RTS and sending, in ms.
    #[arg(long, requires = "rs485", value_name = "MS")]
    pub rs485_delay_before_ms: Option<u32>,

    /// In RS-485 mode, delay between the last bit and dropping RTS, in ms.
    #[arg(long, requires = "rs485", value_name = "MS")]
    pub rs485_delay_after_ms: Option<u32>,
}

impl Rs485Args {
    /// The driver setting, `None` when RS-485 mode is not asked for.
    pub fn config(&self) -> Option<Rs485Config> {
        self.rs485.then(|| Rs485Config {
            rts_on_send: !self.rs485_rts_low,
            rts_after_send: self.rs485_rts_low,
            rx_during_tx: self.rs485_rx_during_tx,
            delay_before_send_ms: self.rs485_delay_before_ms.unwrap_or(0),
            delay_after_send_ms: self.rs485_delay_after_ms.unwrap_or(0),
        })
    }
}

/// Why `hub osdp` stopped with an error.
#[derive(Debug, Error)]
pub enum CliError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The bus could not start or stopped.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// stdout, stdin or the port failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> CliError {
    let context = context.into();
    move |source| CliError::Io { context, source }
}

// ---------------------------------------------------------------------------
// Device specifications (--pd)
// ---------------------------------------------------------------------------

/// How a `--pd` argument secures its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PdSecuritySpec {
    /// No secure channel.
    Clear,
    /// Secure channel with this SCBK.
    Key(Key),
    /// Secure channel with the SCBK in this file (32 hex digits).
    KeyFile(PathBuf),
    /// Install mode (SCBK-D).
    Install,
}

/// Parses a device address: decimal or `0x` hexadecimal, 0..=126.
pub fn parse_address(text: &str) -> Result<u8, String> {
    let t = text.trim();
    let value = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => t.parse::<u32>(),
    }
    .map_err(|_| format!("{t:?} is not a device address (0-126)"))?;
    u8::try_from(value)
        .ok()
        .filter(|&a| a <= MAX_ADDRESS)
        .ok_or_else(|| format!("address {value} out of range 0-126"))
}

/// Parses `ADDR`, `ADDR:install`, `ADDR:@FILE` or `ADDR:SCBK`. Error messages
/// never contain the key.
pub fn parse_pd_spec(spec: &str) -> Result<(u8, PdSecuritySpec), String> {
    let (addr, rest) = match spec.split_once(':') {
        Some((a, r)) => (a, Some(r)),
        None => (spec, None),
    };
    let address = parse_address(addr)?;
    let security = match rest {
        None => PdSecuritySpec::Clear,
        Some(r) if r.eq_ignore_ascii_case("install") => PdSecuritySpec::Install,
        Some(r) if r.starts_with('@') => {
            let path = r.get(1..).unwrap_or_default();
            if path.is_empty() {
                return Err(format!("device {address}: @ needs a key file path"));
            }
            PdSecuritySpec::KeyFile(PathBuf::from(path))
        }
        Some(r) => PdSecuritySpec::Key(Key::from_hex(r).map_err(|_| {
            format!(
                "device {address}: the secure channel key must be 32 hex digits \
                 (or 'install', or @FILE)"
            )
        })?),
    };
    Ok((address, security))
}

/// Turns `--pd` and `--install` arguments into device configurations,
/// reading key files. Refuses duplicates.
pub fn device_configs(pds: &[String], install: &[String]) -> Result<Vec<PdConfig>, String> {
    let mut out: Vec<PdConfig> = Vec::new();
    let specs = pds.iter().map(|s| parse_pd_spec(s)).chain(
        install
            .iter()
            .map(|a| Ok((parse_address(a)?, PdSecuritySpec::Install))),
    );
    for spec in specs {
        let (address, security) = spec?;
        if out.iter().any(|p| p.address == address) {
            return Err(format!("device {address} is given twice"));
        }
        let security = match security {
            PdSecuritySpec::Clear => Security::Clear,
            PdSecuritySpec::Install => Security::Install,
            PdSecuritySpec::Key(key) => Security::Secure(key),
            PdSecuritySpec::KeyFile(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!(
                        "device {address}: cannot read key file {}: {e}",
                        path.display()
                    )
                })?;
                Security::Secure(Key::from_hex(text.trim()).map_err(|_| {
                    format!(
                        "device {address}: key file {} must hold 32 hex digits",
                        path.display()
                    )
                })?)
            }
        };
        if let Security::Secure(key) = &security {
            if key.is_default() {
                warn!(
                    pd = address,
                    "the key given is SCBK-D; use ADDR:install for install mode"
                );
            }
        }
        out.push(PdConfig { address, security });
    }
    Ok(out)
}

fn security_name(security: &Security) -> &'static str {
    match security {
        Security::Clear => "clear",
        Security::Secure(_) => "secure",
        Security::Install => "install",
    }
}

// ---------------------------------------------------------------------------
// Requests (stdin)
// ---------------------------------------------------------------------------

/// One parsed stdin line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Queue a command for a device.
    Submit {
        /// Device address.
        pd: u8,
        /// The command.
        command: Command,
    },
    /// Print the control panel's view of every device (or of one).
    BusStatus {
        /// Only this device.
        pd: Option<u8>,
    },
}

const ACTIONS: [&str; 6] = ["output", "led", "buzzer", "text", "keyset", "status"];

/// Parses one request line. The error is meant for `{"error": ...}` and
/// never repeats a key.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| format!("request is not valid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("a request is a JSON object, e.g. {\"pd\":1,\"status\":\"local\"}".into());
    };
    if let Some(key) = map
        .keys()
        .find(|k| *k != "pd" && !ACTIONS.contains(&k.as_str()))
    {
        return Err(format!(
            "unknown field {key:?}; a request has \"pd\" and one of {}",
            ACTIONS.join(", ")
        ));
    }
    let actions: Vec<&str> = ACTIONS
        .into_iter()
        .filter(|a| map.contains_key(*a))
        .collect();
    let action = match actions.as_slice() {
        [one] => *one,
        [] => return Err(format!("no action: give one of {}", ACTIONS.join(", "))),
        many => return Err(format!("one action per request, got {}", many.join(", "))),
    };
    let body = map.get(action).unwrap_or(&Value::Null);
    if action == "status" && body.as_str() == Some("bus") {
        let pd = match map.get("pd") {
            None => None,
            Some(v) => Some(pd_field(v)?),
        };
        return Ok(Request::BusStatus { pd });
    }
    let pd = pd_field(map.get("pd").ok_or("missing \"pd\" (device address)")?)?;
    let command = match action {
        "output" => output_command(body)?,
        "led" => led_command(body)?,
        "buzzer" => buzzer_command(body)?,
        "text" => text_command(body)?,
        "keyset" => keyset_command(body)?,
        _ => status_command(body)?,
    };
    Ok(Request::Submit { pd, command })
}

fn pd_field(v: &Value) -> Result<u8, String> {
    v.as_u64()
        .and_then(|n| u8::try_from(n).ok())
        .filter(|&a| a <= MAX_ADDRESS)
        .ok_or_else(|| "\"pd\" must be a device address 0-126".to_owned())
}

fn object<'a>(
    v: &'a Value,
    ctx: &str,
    allowed: &[&str],
    example: &str,
) -> Result<&'a Map<String, Value>, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("{ctx} must be an object, e.g. {example}"))?;
    if let Some(key) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "{ctx}: unknown field {key:?} (known: {})",
            allowed.join(", ")
        ));
    }
    Ok(obj)
}

fn get_u64(obj: &Map<String, Value>, ctx: &str, key: &str) -> Result<Option<u64>, String> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{ctx}.{key} must be a non-negative integer")),
    }
}

fn get_u8(obj: &Map<String, Value>, ctx: &str, key: &str) -> Result<Option<u8>, String> {
    get_u64(obj, ctx, key)?
        .map(|n| u8::try_from(n).map_err(|_| format!("{ctx}.{key} must be 0-255")))
        .transpose()
}

fn get_bool(obj: &Map<String, Value>, ctx: &str, key: &str) -> Result<Option<bool>, String> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| format!("{ctx}.{key} must be true or false")),
    }
}

/// Milliseconds to 100 ms units, rounded up, for a 16-bit timer.
fn units_u16(ms: u64, what: &str) -> Result<u16, String> {
    u16::try_from(ms.div_ceil(100))
        .map_err(|_| format!("{what} too long: at most {} ms", u64::from(u16::MAX) * 100))
}

/// Milliseconds to 100 ms units, rounded up, for an 8-bit time.
fn units_u8(ms: u64, what: &str) -> Result<u8, String> {
    u8::try_from(ms.div_ceil(100))
        .map_err(|_| format!("{what} too long: at most {} ms", u64::from(u8::MAX) * 100))
}

/// `{"no":0,"ms":3000}` (temporarily on), `{"no":0,"ms":0}` or
/// `{"no":0,"on":true}` (permanently on), `{"no":0,"on":false}` (off),
/// `{"no":0,"ms":3000,"on":false}` (temporarily off).
fn output_command(v: &Value) -> Result<Command, String> {
    let obj = object(v, "output", &["no", "ms", "on"], r#"{"no":0,"ms":3000}"#)?;
    let output = get_u8(obj, "output", "no")?.unwrap_or(0);
    let ms = get_u64(obj, "output", "ms")?;
    let on = get_bool(obj, "output", "on")?;
    let (control, timer) = match (ms, on) {
        (None, None) => {
            return Err("output needs \"ms\" (temporary, 0 for permanent) or \"on\"".into())
        }
        (Some(ms), on) if ms > 0 => {
            let timer = units_u16(ms, "output.ms")?;
            if on == Some(false) {
                (OutputControlCode::TemporaryOffThenOn, timer)
            } else {
                (OutputControlCode::TemporaryOnThenOff, timer)
            }
        }
        (_, Some(false)) => (OutputControlCode::PermanentOffAbortTimed, 0),
        (_, _) => (OutputControlCode::PermanentOnAbortTimed, 0),
    };
    Ok(Command::Output(vec![OutputControl {
        output,
        control,
        timer,
    }]))
}

/// A color name (`black`/`off`, `red`, `green`, `amber`, `blue`, `magenta`,
/// `cyan`, `white`) or number 0-7.
pub fn parse_color(v: &Value) -> Result<LedColor, String> {
    let bad = || {
        "LED color must be one of black (off), red, green, amber, blue, magenta, cyan, white or 0-7"
            .to_owned()
    };
    if let Some(n) = v.as_u64() {
        return u8::try_from(n)
            .ok()
            .and_then(LedColor::from_u8)
            .ok_or_else(bad);
    }
    let name = v.as_str().ok_or_else(bad)?.to_ascii_lowercase();
    Ok(match name.as_str() {
        "black" | "off" => LedColor::Black,
        "red" => LedColor::Red,
        "green" => LedColor::Green,
        "amber" => LedColor::Amber,
        "blue" => LedColor::Blue,
        "magenta" => LedColor::Magenta,
        "cyan" => LedColor::Cyan,
        "white" => LedColor::White,
        _ => return Err(bad()),
    })
}

/// The unused half of an LED record. Some devices (libosdp) refuse on and
/// off times that are both zero even in a half marked NOP, so it carries a
/// steady "on" time.
const IDLE_ON_TIME: u8 = 1;

/// `{"color":"green","ms":1000}` (temporary), without `ms` or with 0 the
/// permanent state; `off_color`, `on_ms`/`off_ms` (flashing), `reader`,
/// `led`.
fn led_command(v: &Value) -> Result<Command, String> {
    let obj = object(
        v,
        "led",
        &[
            "color",
            "off_color",
            "ms",
            "on_ms",
            "off_ms",
            "reader",
            "led",
        ],
        r#"{"color":"green","ms":1000}"#,
    )?;
    let on_color = parse_color(obj.get("color").ok_or("led needs \"color\"")?)?;
    let off_color = match obj.get("off_color") {
        Some(c) => parse_color(c)?,
        None => LedColor::Black,
    };
    let reader = get_u8(obj, "led", "reader")?.unwrap_or(0);
    let led = get_u8(obj, "led", "led")?.unwrap_or(0);
    // Steady unless a flash is asked for: a non-zero on time and no off
    // time (devices refuse both zero).
    let on_time = match get_u64(obj, "led", "on_ms")? {
        Some(ms) => units_u8(ms, "led.on_ms")?,
        None => IDLE_ON_TIME,
    };
    let off_time = match get_u64(obj, "led", "off_ms")? {
        Some(ms) => units_u8(ms, "led.off_ms")?,
        None => 0,
    };
    if on_time == 0 && off_time == 0 {
        return Err("led: on_ms and off_ms cannot both be 0".into());
    }
    let ms = get_u64(obj, "led", "ms")?.unwrap_or(0);
    let (temporary, permanent) = if ms > 0 {
        (
            TemporaryLed {
                control: TemporaryLedCode::Set,
                on_time,
                off_time,
                on_color,
                off_color,
                timer: units_u16(ms, "led.ms")?,
            },
            PermanentLed {
                control: PermanentLedCode::Nop,
                on_time: IDLE_ON_TIME,
                off_time: 0,
                on_color: LedColor::Black,
                off_color: LedColor::Black,
            },
        )
    } else {
        (
            // Show the new permanent state at once.
            TemporaryLed {
                control: TemporaryLedCode::Cancel,
                on_time: IDLE_ON_TIME,
                off_time: 0,
                on_color: LedColor::Black,
                off_color: LedColor::Black,
                timer: 0,
            },
            PermanentLed {
                control: PermanentLedCode::Set,
                on_time,
                off_time,
                on_color,
                off_color,
            },
        )
    };
    Ok(Command::Led(vec![LedControl {
        reader,
        led,
        temporary,
        permanent,
    }]))
}

/// `{"ms":200}` beeps once; `off_ms` (default: same as `ms`), `count`
/// (default 1, 0 = until stopped), `reader`; `{"off":true}` stops it.
fn buzzer_command(v: &Value) -> Result<Command, String> {
    let obj = object(
        v,
        "buzzer",
        &["ms", "off_ms", "count", "reader", "off"],
        r#"{"ms":200}"#,
    )?;
    let reader = get_u8(obj, "buzzer", "reader")?.unwrap_or(0);
    if get_bool(obj, "buzzer", "off")? == Some(true) {
        // Devices refuse an on time of 0 even when switching off.
        return Ok(Command::Buzzer(BuzzerControl {
            reader,
            tone: ToneCode::Off,
            on_time: 1,
            off_time: 0,
            count: 1,
        }));
    }
    let ms = get_u64(obj, "buzzer", "ms")?.ok_or("buzzer needs \"ms\" (or \"off\":true)")?;
    if ms == 0 {
        return Err("buzzer.ms must be greater than 0 (use \"off\":true to stop it)".into());
    }
    let on_time = units_u8(ms, "buzzer.ms")?;
    let off_time = match get_u64(obj, "buzzer", "off_ms")? {
        Some(off) => units_u8(off, "buzzer.off_ms")?,
        None => on_time,
    };
    let count = get_u8(obj, "buzzer", "count")?.unwrap_or(1);
    Ok(Command::Buzzer(BuzzerControl {
        reader,
        tone: ToneCode::Default,
        on_time,
        off_time,
        count,
    }))
}

/// `"Hello"` (permanent, row 1, column 1) or
/// `{"text":"Hello","row":1,"col":1,"reader":0,"temp_s":5,"wrap":true}`.
fn text_command(v: &Value) -> Result<Command, String> {
    let (text, obj) = match v {
        Value::String(s) => (s.as_str(), None),
        Value::Object(_) => {
            let obj = object(
                v,
                "text",
                &["text", "row", "col", "reader", "temp_s", "wrap"],
                r#"{"text":"Hello","row":1,"col":1}"#,
            )?;
            let text = obj
                .get("text")
                .and_then(Value::as_str)
                .ok_or("text.text must be a string")?;
            (text, Some(obj))
        }
        _ => return Err("text must be a string or an object with \"text\"".into()),
    };
    if !text.bytes().all(|b| (0x20..=0x7E).contains(&b)) {
        return Err("text must be printable ASCII".into());
    }
    if text.len() > usize::from(u8::MAX) {
        return Err("text is longer than 255 characters".into());
    }
    let empty = Map::new();
    let obj = obj.unwrap_or(&empty);
    let temp_s = get_u8(obj, "text", "temp_s")?.unwrap_or(0);
    let wrap = get_bool(obj, "text", "wrap")?.unwrap_or(false);
    let command = match (temp_s > 0, wrap) {
        (false, false) => TextCommand::PermanentNoWrap,
        (false, true) => TextCommand::PermanentWrap,
        (true, false) => TextCommand::TemporaryNoWrap,
        (true, true) => TextCommand::TemporaryWrap,
    };
    Ok(Command::Text(TextControl {
        reader: get_u8(obj, "text", "reader")?.unwrap_or(0),
        command,
        temp_time: temp_s,
        row: get_u8(obj, "text", "row")?.unwrap_or(1),
        column: get_u8(obj, "text", "col")?.unwrap_or(1),
        text: text.as_bytes().to_vec(),
    }))
}

/// `"00112233445566778899aabbccddeeff"`: the device's new SCBK. Errors never
/// repeat the value.
fn keyset_command(v: &Value) -> Result<Command, String> {
    const FORMAT: &str = "keyset must be a string of 32 hex digits (the new SCBK)";
    let hex = v.as_str().ok_or(FORMAT)?;
    let key = Key::from_hex(hex).map_err(|_| FORMAT.to_owned())?;
    if key.is_default() {
        return Err("keyset: refusing to install SCBK-D as the device key".into());
    }
    Ok(Command::KeySet(KeySet { key }))
}

/// `"input"`, `"output"`, `"local"` or `"reader"`.
fn status_command(v: &Value) -> Result<Command, String> {
    match v.as_str() {
        Some("input") => Ok(Command::InputStatus),
        Some("output") => Ok(Command::OutputStatus),
        Some("local") => Ok(Command::LocalStatus),
        Some("reader") => Ok(Command::ReaderStatus),
        _ => Err("status must be \"input\", \"output\", \"local\", \"reader\" or \"bus\"".into()),
    }
}

// ---------------------------------------------------------------------------
// Events (stdout)
// ---------------------------------------------------------------------------

/// The character a keypad code stands for: ASCII digits as they are, binary
/// digits 0x00-0x09 as '0'-'9' (libosdp devices send those), 0x7F or '*' as
/// '*', 0x0D or '#' as '#', 'A'-'H' (function keys) as they are, anything
/// else as '?'.
pub fn keypad_char(code: u8) -> char {
    match code {
        b'0'..=b'9' | b'A'..=b'H' => char::from(code),
        0x00..=0x09 => char::from(b'0' + code),
        0x7F | b'*' => '*',
        0x0D | b'#' => '#',
        _ => '?',
    }
}

/// The keys of an osdp_KEYPAD report as a string (see [`keypad_char`]).
pub fn keypad_string(digits: &[u8]) -> String {
    digits.iter().map(|&c| keypad_char(c)).collect()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `nak 0x03 unknown command code`.
pub fn nak_text(code: NakCode) -> String {
    let what = match code {
        NakCode::NoError => "no error",
        NakCode::MessageCheck => "message check (CRC/checksum) error",
        NakCode::CommandLength => "command length error",
        NakCode::UnknownCommand => "unknown command code",
        NakCode::UnexpectedSequence => "unexpected sequence number",
        NakCode::UnsupportedSecurityBlock => "security block not supported",
        NakCode::EncryptionRequired => "encryption required",
        NakCode::BioTypeNotSupported => "BIO_TYPE not supported",
        NakCode::BioFormatNotSupported => "BIO_FORMAT not supported",
        NakCode::UnableToProcess => "unable to process command record",
        NakCode::Other(_) => "vendor specific or unknown error",
    };
    format!("nak {:#04x} {what}", code.as_u8())
}

fn reply_label(code: u8) -> String {
    match osdp::reply::code_name(code) {
        Some(name) => format!("{name} ({code:#04x})"),
        None => format!("{code:#04x}"),
    }
}

fn sc_failure(reason: &ScFailure) -> (&'static str, String) {
    match reason {
        ScFailure::Crypto(e) => ("crypto", e.to_string()),
        ScFailure::Nak(code) => ("nak", nak_text(*code)),
        ScFailure::ClearTextRefused => (
            "clear_text",
            "device sent clear text where the secure channel is required".to_owned(),
        ),
        ScFailure::Unexpected(code) => (
            "unexpected",
            format!(
                "unexpected reply {} during the handshake",
                reply_label(*code)
            ),
        ),
    }
}

fn command_failure(reason: &CommandFailure) -> String {
    match reason {
        CommandFailure::Nak(code) => nak_text(*code),
        CommandFailure::Offline => "device went offline".to_owned(),
        CommandFailure::SecureChannelLost => "secure channel lost".to_owned(),
        CommandFailure::UnexpectedReply(code) => {
            format!("unexpected reply {}", reply_label(*code))
        }
    }
}

/// The PDID fields shared by `pdid` events and scan results.
pub fn pdid_fields(id: &PdId) -> Map<String, Value> {
    let [a, b, c] = id.vendor_code;
    let mut m = Map::new();
    m.insert("vendor".into(), json!(hex(&id.vendor_code)));
    // libosdp's numeric vendor_code: the three wire bytes, little-endian.
    m.insert(
        "vendor_code".into(),
        json!(u32::from_le_bytes([a, b, c, 0])),
    );
    m.insert("model".into(), json!(id.model));
    m.insert("version".into(), json!(id.version));
    m.insert("serial".into(), json!(id.serial));
    m.insert("serial_hex".into(), json!(format!("{:08x}", id.serial)));
    m.insert(
        "firmware".into(),
        json!(format!(
            "{}.{}.{}",
            id.firmware_major, id.firmware_minor, id.firmware_build
        )),
    );
    m
}

fn capability_name(f: CapabilityFunction) -> String {
    match f {
        CapabilityFunction::ContactStatusMonitoring => "contact_status_monitoring".into(),
        CapabilityFunction::OutputControl => "output_control".into(),
        CapabilityFunction::CardDataFormat => "card_data_format".into(),
        CapabilityFunction::ReaderLedControl => "reader_led_control".into(),
        CapabilityFunction::ReaderAudibleOutput => "reader_audible_output".into(),
        CapabilityFunction::ReaderTextOutput => "reader_text_output".into(),
        CapabilityFunction::TimeKeeping => "time_keeping".into(),
        CapabilityFunction::CheckCharacterSupport => "check_character_support".into(),
        CapabilityFunction::CommunicationSecurity => "communication_security".into(),
        CapabilityFunction::ReceiveBufferSize => "receive_buffer_size".into(),
        CapabilityFunction::LargestCombinedMessageSize => "largest_combined_message_size".into(),
        CapabilityFunction::SmartCardSupport => "smart_card_support".into(),
        CapabilityFunction::Readers => "readers".into(),
        CapabilityFunction::Biometrics => "biometrics".into(),
        CapabilityFunction::SecurePinEntry => "secure_pin_entry".into(),
        CapabilityFunction::OsdpVersion => "osdp_version".into(),
        CapabilityFunction::Other(n) => format!("function_{n}"),
    }
}

fn caps_json(caps: &[Capability]) -> Value {
    Value::Array(
        caps.iter()
            .map(|c| {
                json!({
                    "function": capability_name(c.function),
                    "code": c.function.as_u8(),
                    "compliance": c.compliance,
                    "items": c.num_items,
                })
            })
            .collect(),
    )
}

/// `{"pd":N,"event":NAME}` to add fields to.
fn base(pd: u8, event: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("pd".into(), json!(pd));
    m.insert("event".into(), json!(event));
    m
}

fn with(mut m: Map<String, Value>, fields: Value) -> Value {
    if let Value::Object(extra) = fields {
        m.extend(extra);
    }
    Value::Object(m)
}

fn card_json(pd: u8, card: &RawCard, formats: &CardFormatTable) -> Value {
    let raw_format = match card.format {
        RawFormat::Unspecified => json!("unspecified"),
        RawFormat::Wiegand => json!("wiegand"),
        RawFormat::Other(n) => json!(format!("{n:#04x}")),
    };
    let mut m = base(pd, "card");
    m.insert("reader".into(), json!(card.reader));
    m.insert("bits".into(), json!(card.bit_count));
    m.insert("hex".into(), json!(hex(&card.data)));
    m.insert("raw_format".into(), raw_format);
    match formats.decode(card.bit_count, &card.data) {
        Ok(decoded) => {
            m.insert("format".into(), json!(decoded.format));
            m.insert("facility".into(), json!(decoded.facility));
            m.insert("number".into(), json!(decoded.number));
            let parity = match decoded.parity {
                ParityStatus::Ok => "ok",
                ParityStatus::Failed { .. } => "failed",
                ParityStatus::NotApplicable => "none",
            };
            m.insert("parity".into(), json!(parity));
            if let ParityStatus::Failed { bit, .. } = decoded.parity {
                m.insert("parity_failed_bit".into(), json!(bit));
            }
        }
        Err(e) => {
            m.insert("format".into(), Value::Null);
            m.insert("decode_error".into(), json!(e.to_string()));
        }
    }
    Value::Object(m)
}

fn reply_json(pd: u8, reply: &Reply, formats: &CardFormatTable) -> Value {
    match reply {
        Reply::Raw(card) => card_json(pd, card, formats),
        Reply::Fmt(card) => with(
            base(pd, "card_fmt"),
            json!({
                "reader": card.reader,
                "direction": card.direction,
                "chars": String::from_utf8_lossy(&card.data),
            }),
        ),
        Reply::Keypad(k) => with(
            base(pd, "keypad"),
            json!({"reader": k.reader, "keys": keypad_string(&k.digits)}),
        ),
        Reply::LocalStatus(s) => with(
            base(pd, "tamper"),
            json!({"tamper": s.tamper != 0, "power": s.power != 0}),
        ),
        Reply::InputStatus(v) => with(base(pd, "input"), json!({ "inputs": v })),
        Reply::OutputStatus(v) => with(base(pd, "output"), json!({ "outputs": v })),
        Reply::ReaderStatus(v) => with(
            base(pd, "reader_tamper"),
            json!({"readers": v, "tamper": v.contains(&2)}),
        ),
        Reply::PdId(id) => with(base(pd, "pdid"), Value::Object(pdid_fields(id))),
        Reply::PdCap(caps) => with(base(pd, "pdcap"), json!({ "caps": caps_json(caps) })),
        Reply::Com(c) => with(
            base(pd, "com"),
            json!({"address": c.address, "baud": c.baud_rate}),
        ),
        Reply::BioReadResult(b) => with(
            base(pd, "bioread"),
            json!({
                "reader": b.reader, "status": b.status, "bio_type": b.bio_type,
                "quality": b.quality, "len": b.data.len(),
            }),
        ),
        Reply::BioMatchResult(b) => with(
            base(pd, "biomatch"),
            json!({"reader": b.reader, "status": b.status, "score": b.score}),
        ),
        Reply::MfgReply(m) => with(
            base(pd, "mfgrep"),
            json!({"vendor": hex(&m.vendor_code), "hex": hex(&m.data)}),
        ),
        Reply::Nak(n) => with(base(pd, "nak"), json!({ "reason": nak_text(n.code) })),
        other => with(
            base(pd, "reply"),
            json!({"code": format!("{:#04x}", other.code()), "name": other.name()}),
        ),
    }
}

/// The stdout line for one bus event.
pub fn event_json(event: &BusEvent, formats: &CardFormatTable) -> Value {
    match event {
        BusEvent::PortLost { port, error } => {
            json!({"event": "port_lost", "port": port, "error": error})
        }
        BusEvent::PortReopened { port } => json!({"event": "port_reopened", "port": port}),
        BusEvent::Osdp(event) => osdp_event_json(event, formats),
    }
}

fn osdp_event_json(event: &Event, formats: &CardFormatTable) -> Value {
    match event {
        Event::Online {
            pd,
            secure,
            default_key,
        } => with(
            base(*pd, "online"),
            json!({"sc": secure, "default_key": default_key}),
        ),
        Event::Offline { pd } => Value::Object(base(*pd, "offline")),
        Event::SecureChannelFailed { pd, reason } => {
            let (kind, text) = sc_failure(reason);
            with(
                base(*pd, "sc_failed"),
                json!({"reason": text, "kind": kind}),
            )
        }
        Event::Identity { pd, id } => with(base(*pd, "pdid"), Value::Object(pdid_fields(id))),
        Event::Capabilities { pd, caps } => {
            with(base(*pd, "pdcap"), json!({ "caps": caps_json(caps) }))
        }
        Event::Reply { pd, reply } => reply_json(*pd, reply, formats),
        Event::CommandDone { pd, id } => with(base(*pd, "done"), json!({ "id": id.0 })),
        Event::CommandFailed { pd, id, reason } => {
            let mut fields = json!({"id": id.0, "reason": command_failure(reason)});
            if let (CommandFailure::Nak(code), Value::Object(m)) = (reason, &mut fields) {
                m.insert("nak".into(), json!(code.as_u8()));
            }
            with(base(*pd, "failed"), fields)
        }
        Event::KeyChanged { pd } => Value::Object(base(*pd, "key_changed")),
    }
}

/// The lines answering `{"status":"bus"}`: one per device.
pub fn status_json(status: &[PdStatus], only: Option<u8>, now: Instant) -> Vec<Value> {
    status
        .iter()
        .filter(|s| only.is_none_or(|pd| pd == s.address))
        .map(|s| {
            let last = s
                .last_reply
                .map(|t| now.saturating_duration_since(t).as_millis());
            with(
                base(s.address, "status"),
                json!({
                    "online": s.online,
                    "sc": s.secure,
                    "default_key": s.default_key,
                    "last_reply_ms_ago": last,
                    "pdid": s.id.as_ref().map(|id| Value::Object(pdid_fields(id))),
                }),
            )
        })
        .collect()
}

pub(crate) fn error_json(pd: Option<u8>, error: &str) -> Value {
    let mut m = Map::new();
    if let Some(pd) = pd {
        m.insert("pd".into(), json!(pd));
    }
    m.insert("error".into(), json!(error));
    Value::Object(m)
}

// ---------------------------------------------------------------------------
// Scan (sans-IO part)
// ---------------------------------------------------------------------------

/// Parses an address list such as `0-126` or `1,5,10-12` (127, the
/// broadcast address, is allowed). Duplicates are dropped, order is kept.
pub fn parse_addresses(list: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let one = |s: &str| -> Result<u8, String> {
        s.trim()
            .parse::<u8>()
            .ok()
            .filter(|&a| a <= ADDR_BROADCAST)
            .ok_or_else(|| format!("{:?} is not an address 0-127", s.trim()))
    };
    for part in list.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (one(a)?, one(b)?),
            None => {
                let a = one(part)?;
                (a, a)
            }
        };
        if lo > hi {
            return Err(format!("address range {lo}-{hi} is backwards"));
        }
        for a in lo..=hi {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// The osdp_ID probe for `address`: sequence 0 (which also restarts a
/// device's sequence), clear text, CRC-16, with the mark byte.
pub fn id_probe(address: u8) -> Result<Vec<u8>, FrameError> {
    let data = Command::Id.to_data();
    let mut out = Vec::new();
    PacketBuilder {
        address,
        reply: false,
        sequence: 0,
        check: Check::Crc16,
        mark: true,
        scb: None,
        code: Command::Id.code(),
        data: &data,
    }
    .encode(&mut out, None)?;
    Ok(out)
}

/// What answered a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// The device identified itself.
    Id {
        /// Its address (from the reply).
        address: u8,
        /// osdp_PDID.
        id: PdId,
    },
    /// A device answered, but not with osdp_PDID (a NAK, a secured packet).
    Other {
        /// Its address (from the reply).
        address: u8,
        /// What it sent.
        detail: String,
    },
}

/// Decides whether `packet` answers a probe sent to `target`.
pub fn match_probe_reply(target: u8, packet: &Packet) -> Option<ProbeAnswer> {
    // Our own probe echoed by a two-wire adapter is not an answer.
    if !packet.is_reply() {
        return None;
    }
    let address = packet.address();
    if target != ADDR_BROADCAST && address != target {
        return None;
    }
    if packet.security_block().is_some() {
        return Some(ProbeAnswer::Other {
            address,
            detail: format!("secured reply {}", reply_label(packet.code())),
        });
    }
    Some(match Reply::parse(packet.code(), packet.data()) {
        Ok(Reply::PdId(id)) => ProbeAnswer::Id { address, id },
        Ok(Reply::Nak(n)) => ProbeAnswer::Other {
            address,
            detail: nak_text(n.code),
        },
        Ok(other) => ProbeAnswer::Other {
            address,
            detail: format!("unexpected reply {}", reply_label(other.code())),
        },
        Err(e) => ProbeAnswer::Other {
            address,
            detail: format!("malformed reply: {e}"),
        },
    })
}

/// Collects bytes after one probe until they hold an answer.
#[derive(Debug)]
pub struct ProbeMatcher {
    target: u8,
    decoder: Decoder,
}

impl ProbeMatcher {
    /// A matcher for a probe sent to `target`.
    pub fn new(target: u8) -> Self {
        ProbeMatcher {
            target,
            decoder: Decoder::default(),
        }
    }

    /// Feeds received bytes; returns the answer once one is complete.
    pub fn push(&mut self, bytes: &[u8]) -> Option<ProbeAnswer> {
        self.decoder.push(bytes);
        while let Some(packet) = self.decoder.next_packet() {
            if let Some(answer) = match_probe_reply(self.target, &packet) {
                return Some(answer);
            }
        }
        None
    }

    /// Whether bytes of an incomplete packet are buffered.
    pub fn pending(&self) -> bool {
        self.decoder.pending() > 0
    }
}

/// The stdout line for one scan result.
pub fn scan_json(baud: u32, answer: &ProbeAnswer) -> Value {
    let mut m = Map::new();
    m.insert("event".into(), json!("found"));
    m.insert("baud".into(), json!(baud));
    match answer {
        ProbeAnswer::Id { address, id } => {
            m.insert("pd".into(), json!(address));
            m.extend(pdid_fields(id));
        }
        ProbeAnswer::Other { address, detail } => {
            m.insert("pd".into(), json!(address));
            m.insert("answer".into(), json!(detail));
        }
    }
    Value::Object(m)
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

/// Where JSON lines go: stdout in the tool, a vector in tests.
pub trait LineSink {
    /// Writes one line.
    fn line(&mut self, value: &Value) -> Result<(), CliError>;
}

/// stdout, flushed after every line.
pub(crate) struct Stdout;

impl LineSink for Stdout {
    fn line(&mut self, value: &Value) -> Result<(), CliError> {
        let mut text = value.to_string();
        text.push('\n');
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(io_err("writing to stdout"))
    }
}

impl LineSink for Vec<Value> {
    fn line(&mut self, value: &Value) -> Result<(), CliError> {
        self.push(value.clone());
        Ok(())
    }
}

/// Runs `hub osdp` (either mode) until it is done or stopped.
pub async fn run(args: OsdpArgs) -> Result<(), CliError> {
    let result = match &args.command {
        Some(OsdpCommand::Scan(scan)) => run_scan(scan, &mut Stdout).await,
        Some(OsdpCommand::Pd(pd)) => crate::virtual_pd::run(pd).await,
        None => run_monitor(&args).await,
    };
    match result {
        // Whoever read our output has gone (`| head`): a normal end.
        Err(CliError::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
            info!("stdout closed; exiting");
            Ok(())
        }
        other => other,
    }
}

fn bus_config(args: &OsdpArgs) -> Result<BusConfig, CliError> {
    let port = args
        .port
        .clone()
        .ok_or_else(|| CliError::Usage("--port is required".into()))?;
    let pds = device_configs(&args.pds, &args.install).map_err(CliError::Usage)?;
    if args.baud == 0 {
        return Err(CliError::Usage("--baud must be greater than 0".into()));
    }
    let mut config = BusConfig::new(port, args.baud, pds);
    config.rs485 = args.rs485.config();
    config.cp = CpConfig {
        reply_timeout: Duration::from_millis(args.reply_timeout_ms),
        offline_timeout: Duration::from_millis(args.offline_timeout_ms),
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        use_crc: !args.checksum,
        ..CpConfig::default()
    };
    Ok(config)
}

/// What the stdin thread hands over.
pub(crate) enum Input {
    Line(String),
    TooLong,
    Failed(String),
}

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// Reads stdin lines on a plain thread (tokio's stdin cannot be cancelled
/// and would hold up shutdown); the channel closes at end of input.
pub(crate) fn spawn_stdin_reader() -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(64);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let stdin = io::stdin();
            let mut reader = stdin.lock();
            loop {
                let mut buf = Vec::new();
                let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 1;
                let read = (&mut reader).take(limit).read_until(b'\n', &mut buf);
                let input = match read {
                    Ok(0) => return,
                    Ok(_) if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') => {
                        // Skip the rest of the oversized line.
                        let mut rest = Vec::new();
                        loop {
                            rest.clear();
                            match (&mut reader).take(limit).read_until(b'\n', &mut rest) {
                                Ok(0) | Err(_) => break,
                                Ok(_) if rest.last() == Some(&b'\n') => break,
                                Ok(_) => {}
                            }
                        }
                        Input::TooLong
                    }
                    Ok(_) => Input::Line(String::from_utf8_lossy(&buf).into_owned()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.blocking_send(Input::Failed(e.to_string()));
                        return;
                    }
                };
                if tx.blocking_send(input).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the stdin reader; requests are disabled");
    }
    rx
}

async fn run_monitor(args: &OsdpArgs) -> Result<(), CliError> {
    use tokio::signal::unix::{signal, SignalKind};

    let config = bus_config(args)?;
    let started = json!({
        "event": "started",
        "port": config.port,
        "baud": config.baud,
        "pds": config.pds.iter().map(|p| json!({
            "pd": p.address,
            "security": security_name(&p.security),
        })).collect::<Vec<_>>(),
    });
    let mut bus = bus::spawn(config)?;
    let mut out = Stdout;
    out.line(&started)?;

    let formats = CardFormatTable::builtin();
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(io_err("installing SIGINT handler"))?;
    let mut terminate =
        signal(SignalKind::terminate()).map_err(io_err("installing SIGTERM handler"))?;
    let mut stdin = spawn_stdin_reader();
    let mut stdin_open = true;

    let result = loop {
        tokio::select! {
            event = bus.events.recv() => match event {
                Some(event) => {
                    debug!(?event, "bus event");
                    if let Err(e) = out.line(&event_json(&event, &formats)) {
                        break Err(e);
                    }
                }
                None => break Err(BusError::Stopped(bus.port().to_owned()).into()),
            },
            input = stdin.recv(), if stdin_open => match input {
                Some(input) => {
                    if let Err(e) = handle_input(&bus, input, &mut out).await {
                        break Err(e);
                    }
                }
                None => {
                    stdin_open = false;
                    if args.exit_on_eof {
                        info!("stdin closed; exiting");
                        break Ok(());
                    }
                    debug!("stdin closed; running until SIGINT/SIGTERM");
                }
            },
            _ = interrupt.recv() => {
                info!("SIGINT; exiting");
                break Ok(());
            }
            _ = terminate.recv() => {
                info!("SIGTERM; exiting");
                break Ok(());
            }
        }
    };
    bus.shutdown().await;
    result
}

async fn handle_input(
    bus: &BusHandle,
    input: Input,
    out: &mut dyn LineSink,
) -> Result<(), CliError> {
    let line = match input {
        Input::Line(line) => line,
        Input::TooLong => {
            return out.line(&error_json(
                None,
                &format!("request line longer than {MAX_LINE} bytes"),
            ))
        }
        Input::Failed(e) => {
            warn!(error = %e, "reading stdin failed; requests are disabled");
            return out.line(&error_json(None, &format!("reading stdin failed: {e}")));
        }
    };
    handle_line(bus, &line, out).await
}

/// Answers one request line: `queued`, `error` or `status` lines go to
/// `out`; only a stopped bus or a failing `out` is an error.
pub async fn handle_line(
    bus: &BusHandle,
    line: &str,
    out: &mut dyn LineSink,
) -> Result<(), CliError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(());
    }
    // The line itself is never logged: it may carry a key.
    match parse_request(line) {
        Err(e) => out.line(&error_json(None, &e)),
        Ok(Request::BusStatus { pd }) => {
            let status = bus.status().await?;
            for value in status_json(&status, pd, Instant::now()) {
                out.line(&value)?;
            }
            Ok(())
        }
        Ok(Request::Submit { pd, command }) => {
            let name = command.name();
            match bus.submit(pd, command).await {
                Ok(id) => {
                    debug!(pd, command = name, id = id.0, "queued");
                    out.line(&with(base(pd, "queued"), json!({ "id": id.0 })))
                }
                Err(BusError::Submit(e)) => out.line(&error_json(Some(pd), &e.to_string())),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Runs `hub osdp scan`, writing one line per answer and a summary.
pub async fn run_scan(args: &ScanArgs, out: &mut dyn LineSink) -> Result<(), CliError> {
    use tokio_serial::SerialPort as _;

    let addresses = parse_addresses(&args.addresses).map_err(CliError::Usage)?;
    if args.bauds.is_empty() || args.bauds.contains(&0) {
        return Err(CliError::Usage(
            "--bauds needs baud rates greater than 0".into(),
        ));
    }
    let rs485 = args.rs485.config();
    let timeout = Duration::from_millis(args.timeout_ms);
    let started = Instant::now();
    let mut found = 0usize;
    let mut buf = vec![0u8; 2048];

    let first = args.bauds.first().copied().unwrap_or(9600);
    let mut port = bus::open_port(&args.port, first, rs485.as_ref())?;
    for &baud in &args.bauds {
        if let Err(e) = port.set_baud_rate(baud) {
            debug!(baud, error = %e, "cannot change baud rate in place; reopening");
            drop(port);
            port = bus::open_port(&args.port, baud, rs485.as_ref())?;
        }
        info!(port = %args.port, baud, addresses = addresses.len(), "scanning");
        for &address in &addresses {
            let probe = id_probe(address)
                .map_err(|e| CliError::Usage(format!("cannot build probe: {e}")))?;
            // Whatever is left from the previous probe is not an answer.
            let _ = port.clear(tokio_serial::ClearBuffer::Input);
            AsyncWriteExt::write_all(&mut port, &probe)
                .await
                .map_err(io_err(format!("writing to {}", args.port)))?;
            AsyncWriteExt::flush(&mut port)
                .await
                .map_err(io_err(format!("writing to {}", args.port)))?;
            let mut deadline = Instant::now() + wire_time(probe.len(), baud) + timeout;
            let mut matcher = ProbeMatcher::new(address);
            let answer = loop {
                let wait = tokio::time::Instant::from_std(deadline);
                match tokio::time::timeout_at(wait, AsyncReadExt::read(&mut port, &mut buf)).await {
                    Err(_elapsed) => break None,
                    Ok(Ok(0)) => {
                        return Err(CliError::Io {
                            context: format!("reading from {}", args.port),
                            source: io::Error::new(io::ErrorKind::UnexpectedEof, "port closed"),
                        })
                    }
                    Ok(Ok(n)) => {
                        if let Some(answer) = matcher.push(buf.get(..n).unwrap_or_default()) {
                            break Some(answer);
                        }
                        // A reply is arriving: give it time to finish.
                        if matcher.pending() {
                            deadline = deadline.max(Instant::now() + wire_time(64, baud));
                        }
                    }
                    Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Ok(Err(e)) => {
                        return Err(CliError::Io {
                            context: format!("reading from {}", args.port),
                            source: e,
                        })
                    }
                }
            };
            if let Some(answer) = answer {
                found += 1;
                out.line(&scan_json(baud, &answer))?;
            }
        }
    }
    out.line(&json!({
        "event": "scan_done",
        "found": found,
        "bauds": args.bauds,
        "addresses": addresses.len(),
        "elapsed_ms": started.elapsed().as_millis(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use osdp::command::code;
    use osdp::cp::CommandId;
    use osdp::reply::{Keypad, LocalStatus};

    fn submit(line: &str) -> Result<(u8, Command), String> {
        match parse_request(line)? {
            Request::Submit { pd, command } => Ok((pd, command)),
            other => Err(format!("not a submit: {other:?}")),
        }
    }

    fn err(line: &str) -> String {
        parse_request(line).err().unwrap_or_default()
    }

    #[test]
    fn output_requests() {
        assert_eq!(
            submit(r#"{"pd":3,"output":{"no":0,"ms":3000}}"#),
            Ok((
                3,
                Command::Output(vec![OutputControl {
                    output: 0,
                    control: OutputControlCode::TemporaryOnThenOff,
                    timer: 30,
                }])
            ))
        );
        // Rounded up to the next 100 ms.
        let Ok((_, Command::Output(recs))) = submit(r#"{"pd":3,"output":{"no":1,"ms":50}}"#) else {
            panic!("output")
        };
        assert_eq!((recs[0].output, recs[0].timer), (1, 1));
        for (line, control) in [
            (
                r#"{"pd":3,"output":{"no":0,"ms":0}}"#,
                OutputControlCode::PermanentOnAbortTimed,
            ),
            (
                r#"{"pd":3,"output":{"no":0,"on":true}}"#,
                OutputControlCode::PermanentOnAbortTimed,
            ),
            (
                r#"{"pd":3,"output":{"no":0,"on":false}}"#,
                OutputControlCode::PermanentOffAbortTimed,
            ),
            (
                r#"{"pd":3,"output":{"no":0,"ms":500,"on":false}}"#,
                OutputControlCode::TemporaryOffThenOn,
            ),
        ] {
            let Ok((_, Command::Output(recs))) = submit(line) else {
                panic!("{line}")
            };
            assert_eq!(recs[0].control, control, "{line}");
        }
        assert!(err(r#"{"pd":3,"output":{"no":0}}"#).contains("needs"));
        assert!(err(r#"{"pd":3,"output":{"no":0,"ms":-1}}"#).contains("non-negative"));
        assert!(err(r#"{"pd":3,"output":{"no":300,"ms":1}}"#).contains("0-255"));
        assert!(err(r#"{"pd":3,"output":{"no":0,"ms":99999999}}"#).contains("too long"));
        assert!(err(r#"{"pd":3,"output":{"no":0,"msec":1}}"#).contains("unknown field"));
        assert!(err(r#"{"pd":3,"output":5}"#).contains("must be an object"));
    }

    #[test]
    fn led_requests_never_have_zero_on_and_off_times() {
        let Ok((2, Command::Led(recs))) = submit(r#"{"pd":2,"led":{"color":"green","ms":1000}}"#)
        else {
            panic!("led")
        };
        let r = recs[0];
        assert_eq!((r.reader, r.led), (0, 0));
        assert_eq!(r.temporary.control, TemporaryLedCode::Set);
        assert_eq!(r.temporary.on_color, LedColor::Green);
        assert_eq!(r.temporary.off_color, LedColor::Black);
        assert_eq!(r.temporary.timer, 10);
        assert!(r.temporary.on_time > 0 && r.temporary.off_time == 0);
        assert_eq!(r.permanent.control, PermanentLedCode::Nop);
        assert!(r.permanent.on_time > 0);

        // Permanent, flashing, named fields.
        let Ok((_, Command::Led(recs))) = submit(
            r#"{"pd":2,"led":{"color":"RED","off_color":"blue","on_ms":500,"off_ms":500,"reader":1,"led":2}}"#,
        ) else {
            panic!("led")
        };
        let r = recs[0];
        assert_eq!((r.reader, r.led), (1, 2));
        assert_eq!(r.permanent.control, PermanentLedCode::Set);
        assert_eq!((r.permanent.on_time, r.permanent.off_time), (5, 5));
        assert_eq!(
            (r.permanent.on_color, r.permanent.off_color),
            (LedColor::Red, LedColor::Blue)
        );
        assert_eq!(r.temporary.control, TemporaryLedCode::Cancel);
        assert!(r.temporary.on_time > 0);

        // Colors by number; "off" is black.
        assert!(submit(r#"{"pd":2,"led":{"color":7}}"#).is_ok());
        assert!(submit(r#"{"pd":2,"led":{"color":"off"}}"#).is_ok());
        assert!(err(r#"{"pd":2,"led":{"color":"pink"}}"#).contains("color"));
        assert!(err(r#"{"pd":2,"led":{"color":8}}"#).contains("color"));
        assert!(err(r#"{"pd":2,"led":{"ms":100}}"#).contains("needs \"color\""));
        assert!(
            err(r#"{"pd":2,"led":{"color":"red","on_ms":0,"off_ms":0}}"#).contains("both be 0")
        );
    }

    #[test]
    fn buzzer_requests() {
        assert_eq!(
            submit(r#"{"pd":1,"buzzer":{"ms":200}}"#),
            Ok((
                1,
                Command::Buzzer(BuzzerControl {
                    reader: 0,
                    tone: ToneCode::Default,
                    on_time: 2,
                    off_time: 2,
                    count: 1,
                })
            ))
        );
        let Ok((_, Command::Buzzer(b))) =
            submit(r#"{"pd":1,"buzzer":{"ms":100,"off_ms":300,"count":3}}"#)
        else {
            panic!("buzzer")
        };
        assert_eq!((b.on_time, b.off_time, b.count), (1, 3, 3));
        let Ok((_, Command::Buzzer(b))) = submit(r#"{"pd":1,"buzzer":{"off":true}}"#) else {
            panic!("buzzer off")
        };
        assert_eq!(b.tone, ToneCode::Off);
        assert!(b.on_time > 0, "libosdp refuses an on time of 0");
        assert!(err(r#"{"pd":1,"buzzer":{"ms":0}}"#).contains("greater than 0"));
        assert!(err(r#"{"pd":1,"buzzer":{}}"#).contains("needs"));
        assert!(err(r#"{"pd":1,"buzzer":{"ms":30000}}"#).contains("too long"));
    }

    #[test]
    fn text_requests() {
        assert_eq!(
            submit(r#"{"pd":1,"text":"Hello"}"#),
            Ok((
                1,
                Command::Text(TextControl {
                    reader: 0,
                    command: TextCommand::PermanentNoWrap,
                    temp_time: 0,
                    row: 1,
                    column: 1,
                    text: b"Hello".to_vec(),
                })
            ))
        );
        let Ok((_, Command::Text(t))) =
            submit(r#"{"pd":1,"text":{"text":"Hi","row":2,"col":3,"temp_s":5,"wrap":true}}"#)
        else {
            panic!("text")
        };
        assert_eq!(
            (t.command, t.temp_time, t.row, t.column),
            (TextCommand::TemporaryWrap, 5, 2, 3)
        );
        assert!(err(r#"{"pd":1,"text":"Grüße"}"#).contains("ASCII"));
        assert!(err(r#"{"pd":1,"text":7}"#).contains("string"));
        let long = format!(r#"{{"pd":1,"text":"{}"}}"#, "x".repeat(256));
        assert!(err(&long).contains("255"));
    }

    #[test]
    fn keyset_requests_never_echo_the_key() {
        let key = "00112233445566778899aabbccddeeff";
        let Ok((4, Command::KeySet(k))) = submit(&format!(r#"{{"pd":4,"keyset":"{key}"}}"#)) else {
            panic!("keyset")
        };
        assert_eq!(hex(k.key.expose()), key);
        for bad in [
            r#"{"pd":4,"keyset":"00112233445566778899aabbccddee"}"#,
            r#"{"pd":4,"keyset":"zz112233445566778899aabbccddeeff"}"#,
            r#"{"pd":4,"keyset":["0011"]}"#,
        ] {
            let e = err(bad);
            assert!(e.contains("32 hex digits"), "{e}");
            assert!(!e.contains("0011") && !e.contains("zz11"), "{e}");
        }
        assert!(err(r#"{"pd":4,"keyset":"303132333435363738393a3b3c3d3e3f"}"#).contains("SCBK-D"));
    }

    #[test]
    fn status_requests() {
        for (word, cmd) in [
            ("input", Command::InputStatus),
            ("output", Command::OutputStatus),
            ("local", Command::LocalStatus),
            ("reader", Command::ReaderStatus),
        ] {
            assert_eq!(
                submit(&format!(r#"{{"pd":9,"status":"{word}"}}"#)),
                Ok((9, cmd))
            );
        }
        assert_eq!(
            parse_request(r#"{"status":"bus"}"#),
            Ok(Request::BusStatus { pd: None })
        );
        assert_eq!(
            parse_request(r#"{"pd":2,"status":"bus"}"#),
            Ok(Request::BusStatus { pd: Some(2) })
        );
        assert!(err(r#"{"pd":9,"status":"everything"}"#).contains("status must be"));
    }

    #[test]
    fn malformed_requests_are_errors() {
        for (line, needle) in [
            ("", "not valid JSON"),
            ("{", "not valid JSON"),
            ("[1,2]", "JSON object"),
            ("42", "JSON object"),
            (r#"{"pd":1}"#, "no action"),
            (
                r#"{"pd":1,"led":{"color":"red"},"buzzer":{"ms":1}}"#,
                "one action",
            ),
            (r#"{"pd":1,"reboot":true}"#, "unknown field"),
            (r#"{"led":{"color":"red"}}"#, "missing \"pd\""),
            (r#"{"pd":127,"status":"local"}"#, "0-126"),
            (r#"{"pd":-1,"status":"local"}"#, "0-126"),
            (r#"{"pd":"3","status":"local"}"#, "0-126"),
            (r#"{"pd":1.5,"status":"local"}"#, "0-126"),
        ] {
            let e = err(line);
            assert!(e.contains(needle), "{line}: {e}");
        }
    }

    #[test]
    fn keypad_mapping() {
        assert_eq!(keypad_string(b"1234#"), "1234#");
        assert_eq!(keypad_string(&[0x31, 0x32, 0x7F, 0x0D]), "12*#");
        assert_eq!(keypad_string(&[0x00, 0x01, 0x09, b'*']), "019*");
        assert_eq!(keypad_string(&[b'A', b'H', 0x1B, b'z']), "AH??");
        for d in 0..=9u8 {
            assert_eq!(keypad_char(d), keypad_char(b'0' + d));
        }
    }

    #[test]
    fn pd_specs() {
        assert_eq!(parse_pd_spec("3"), Ok((3, PdSecuritySpec::Clear)));
        assert_eq!(parse_pd_spec("0x10"), Ok((16, PdSecuritySpec::Clear)));
        assert_eq!(parse_pd_spec("5:install"), Ok((5, PdSecuritySpec::Install)));
        assert_eq!(
            parse_pd_spec("5:@/etc/hub/pd5.key"),
            Ok((5, PdSecuritySpec::KeyFile("/etc/hub/pd5.key".into())))
        );
        let key = "000102030405060708090a0b0c0d0e0f";
        let Ok((7, PdSecuritySpec::Key(k))) = parse_pd_spec(&format!("7:{key}")) else {
            panic!("key spec")
        };
        assert_eq!(hex(k.expose()), key);
        let e = parse_pd_spec("7:000102030405060708090a0b0c0d0e")
            .err()
            .unwrap_or_default();
        assert!(e.contains("32 hex digits") && !e.contains("0001"), "{e}");
        assert!(parse_pd_spec("127").is_err());
        assert!(parse_pd_spec("x").is_err());
        assert!(parse_pd_spec("3:@").is_err());

        let pds = device_configs(&["1".into(), format!("2:{key}")], &["3".into()]);
        let pds = pds.unwrap_or_default();
        let kinds: Vec<_> = pds
            .iter()
            .map(|p| (p.address, security_name(&p.security)))
            .collect();
        assert_eq!(kinds, [(1, "clear"), (2, "secure"), (3, "install")]);
        assert!(device_configs(&["1".into()], &["1".into()])
            .err()
            .unwrap_or_default()
            .contains("twice"));
        assert!(device_configs(&["1:@/nonexistent/key".into()], &[])
            .err()
            .unwrap_or_default()
            .contains("cannot read key file"));
    }

    fn osdp(event: Event) -> Value {
        event_json(&BusEvent::Osdp(event), &CardFormatTable::builtin())
    }

    #[test]
    fn card_events_carry_raw_bits_and_the_decoded_format() {
        // H10301, facility 123, card 4567.
        let (bits, data) = osdp::card::encode(&osdp::card::CardFormat::h10301(), Some(123), 4567)
            .unwrap_or_default();
        let v = osdp(Event::Reply {
            pd: 3,
            reply: Reply::Raw(RawCard {
                reader: 0,
                format: RawFormat::Wiegand,
                bit_count: bits,
                data: data.clone(),
            }),
        });
        assert_eq!(
            v,
            json!({"pd":3,"event":"card","reader":0,"bits":26,"hex":"bd88eb80",
                   "raw_format":"wiegand","format":"H10301","facility":123,"number":4567,
                   "parity":"ok"})
        );
        // Key order: pd and event first.
        assert!(v.to_string().starts_with(r#"{"pd":3,"event":"card","#));

        // A flipped bit fails parity.
        let mut bad = data;
        bad[1] ^= 0x01;
        let v = osdp(Event::Reply {
            pd: 3,
            reply: Reply::Raw(RawCard {
                reader: 0,
                format: RawFormat::Wiegand,
                bit_count: 26,
                data: bad,
            }),
        });
        assert_eq!(v["parity"], "failed");
        assert_eq!(v["format"], "H10301");
        assert_eq!(v["hex"], "bd89eb80");
        assert_eq!(v["number"], 5079);
        assert_eq!(v["parity_failed_bit"], 25);

        // No format has 12 bits: the bits as one number.
        let v = osdp(Event::Reply {
            pd: 3,
            reply: Reply::Raw(RawCard {
                reader: 1,
                format: RawFormat::Unspecified,
                bit_count: 12,
                data: vec![0xAB, 0xC0],
            }),
        });
        assert_eq!(v["format"], Value::Null);
        assert_eq!(v["number"], 0xABC);
        assert_eq!(v["parity"], "none");
        assert_eq!(v["hex"], "abc0");
        assert_eq!(v["raw_format"], "unspecified");
    }

    #[test]
    fn status_and_keypad_events() {
        assert_eq!(
            osdp(Event::Reply {
                pd: 1,
                reply: Reply::Keypad(Keypad {
                    reader: 0,
                    digits: vec![1, 2, 3, 4, 0x0D],
                }),
            }),
            json!({"pd":1,"event":"keypad","reader":0,"keys":"1234#"})
        );
        assert_eq!(
            osdp(Event::Reply {
                pd: 1,
                reply: Reply::LocalStatus(LocalStatus {
                    tamper: 1,
                    power: 0
                }),
            }),
            json!({"pd":1,"event":"tamper","tamper":true,"power":false})
        );
        assert_eq!(
            osdp(Event::Reply {
                pd: 1,
                reply: Reply::InputStatus(vec![0, 1]),
            }),
            json!({"pd":1,"event":"input","inputs":[0,1]})
        );
        assert_eq!(
            osdp(Event::Reply {
                pd: 1,
                reply: Reply::OutputStatus(vec![1]),
            }),
            json!({"pd":1,"event":"output","outputs":[1]})
        );
        assert_eq!(
            osdp(Event::Reply {
                pd: 1,
                reply: Reply::ReaderStatus(vec![0, 2]),
            }),
            json!({"pd":1,"event":"reader_tamper","readers":[0,2],"tamper":true})
        );
    }

    #[test]
    fn lifecycle_events() {
        assert_eq!(
            osdp(Event::Online {
                pd: 3,
                secure: true,
                default_key: false
            }),
            json!({"pd":3,"event":"online","sc":true,"default_key":false})
        );
        assert_eq!(
            osdp(Event::Offline { pd: 3 }),
            json!({"pd":3,"event":"offline"})
        );
        assert_eq!(
            osdp(Event::KeyChanged { pd: 3 }),
            json!({"pd":3,"event":"key_changed"})
        );
        assert_eq!(
            osdp(Event::CommandDone {
                pd: 3,
                id: CommandId(7)
            }),
            json!({"pd":3,"event":"done","id":7})
        );
        assert_eq!(
            osdp(Event::CommandFailed {
                pd: 3,
                id: CommandId(8),
                reason: CommandFailure::Nak(NakCode::UnknownCommand),
            }),
            json!({"pd":3,"event":"failed","id":8,"reason":"nak 0x03 unknown command code","nak":3})
        );
        assert_eq!(
            osdp(Event::CommandFailed {
                pd: 3,
                id: CommandId(9),
                reason: CommandFailure::Offline,
            })["reason"],
            "device went offline"
        );
        let v = osdp(Event::SecureChannelFailed {
            pd: 3,
            reason: ScFailure::Crypto(osdp::sc::ScError::BadCryptogram),
        });
        assert_eq!(v["event"], "sc_failed");
        assert_eq!(v["kind"], "crypto");
        assert!(v["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("wrong secure channel key"));
        let v = osdp(Event::SecureChannelFailed {
            pd: 3,
            reason: ScFailure::Nak(NakCode::UnsupportedSecurityBlock),
        });
        assert_eq!(v["reason"], "nak 0x05 security block not supported");
        assert_eq!(
            event_json(
                &BusEvent::PortLost {
                    port: "/dev/ttyUSB0".into(),
                    error: "read failed: EIO".into()
                },
                &CardFormatTable::builtin()
            ),
            json!({"event":"port_lost","port":"/dev/ttyUSB0","error":"read failed: EIO"})
        );
    }

    fn sample_id() -> PdId {
        PdId {
            vendor_code: [0x5C, 0x26, 0x23],
            model: 25,
            version: 2,
            serial: 0xCAFE_BABE,
            firmware_major: 3,
            firmware_minor: 1,
            firmware_build: 40,
        }
    }

    #[test]
    fn identity_and_capability_events() {
        assert_eq!(
            osdp(Event::Identity {
                pd: 1,
                id: sample_id()
            }),
            json!({"pd":1,"event":"pdid","vendor":"5c2623","vendor_code":0x23265C,
                   "model":25,"version":2,"serial":0xCAFE_BABEu32,"serial_hex":"cafebabe",
                   "firmware":"3.1.40"})
        );
        assert_eq!(
            osdp(Event::Capabilities {
                pd: 1,
                caps: vec![Capability {
                    function: CapabilityFunction::OutputControl,
                    compliance: 1,
                    num_items: 4,
                }],
            }),
            json!({"pd":1,"event":"pdcap","caps":[
                {"function":"output_control","code":2,"compliance":1,"items":4}]})
        );
    }

    #[test]
    fn bus_status_lines() {
        let now = Instant::now();
        let status = vec![
            PdStatus {
                address: 1,
                online: true,
                secure: true,
                default_key: false,
                id: Some(sample_id()),
                caps: vec![],
                last_reply: now.checked_sub(Duration::from_millis(40)),
            },
            PdStatus {
                address: 2,
                online: false,
                secure: false,
                default_key: false,
                id: None,
                caps: vec![],
                last_reply: None,
            },
        ];
        let lines = status_json(&status, None, now);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "status");
        assert_eq!(lines[0]["online"], true);
        assert_eq!(lines[0]["last_reply_ms_ago"], 40);
        assert_eq!(lines[0]["pdid"]["serial_hex"], "cafebabe");
        assert_eq!(lines[1]["last_reply_ms_ago"], Value::Null);
        assert_eq!(status_json(&status, Some(2), now).len(), 1);
    }

    #[test]
    fn address_lists() {
        assert_eq!(parse_addresses("0-126").map(|v| v.len()), Ok(127));
        assert_eq!(parse_addresses("1,5,10-12,5"), Ok(vec![1, 5, 10, 11, 12]));
        assert_eq!(parse_addresses("127"), Ok(vec![127]));
        assert!(parse_addresses("5-1").is_err());
        assert!(parse_addresses("0-128").is_err());
        assert!(parse_addresses("a").is_err());
        assert!(parse_addresses("").is_err());
    }

    fn pd_reply(address: u8, code: u8, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let built = PacketBuilder {
            address,
            reply: true,
            sequence: 0,
            check: Check::Crc16,
            mark: true,
            scb: None,
            code,
            data,
        }
        .encode(&mut out, None);
        assert!(built.is_ok());
        out
    }

    #[test]
    fn probe_is_an_osdp_id_with_sequence_zero() {
        let probe = id_probe(5).unwrap_or_default();
        let mut d = Decoder::default();
        d.push(&probe);
        let Some(p) = d.next_packet() else {
            panic!("probe does not decode")
        };
        assert_eq!(probe.first(), Some(&0xFF), "mark byte");
        assert!(!p.is_reply());
        assert_eq!((p.address(), p.sequence(), p.code()), (5, 0, code::ID));
        assert_eq!(p.data(), [0x00]);
        assert_eq!(p.check(), Check::Crc16);
        assert!(id_probe(0x7F).is_ok());
        assert!(id_probe(0x80).is_err());
    }

    #[test]
    fn probe_matcher_finds_the_pdid_among_noise_and_echo() {
        let id = sample_id();
        let pdid = Reply::PdId(id).to_data();
        let mut m = ProbeMatcher::new(5);
        // Our own echo, then noise, then another device, then the answer
        // split in two chunks.
        assert_eq!(m.push(&id_probe(5).unwrap_or_default()), None);
        assert_eq!(m.push(&[0x00, 0x53, 0x12]), None);
        assert_eq!(m.push(&pd_reply(6, osdp::reply::code::PDID, &pdid)), None);
        let answer = pd_reply(5, osdp::reply::code::PDID, &pdid);
        let (a, b) = answer.split_at(7);
        assert_eq!(m.push(a), None);
        assert!(m.pending());
        assert_eq!(m.push(b), Some(ProbeAnswer::Id { address: 5, id }));

        let line = scan_json(9600, &ProbeAnswer::Id { address: 5, id });
        assert_eq!(line["baud"], 9600);
        assert_eq!(line["pd"], 5);
        assert_eq!(line["vendor"], "5c2623");
        assert_eq!(line["serial"], 0xCAFE_BABEu32);
        assert_eq!(line["firmware"], "3.1.40");
    }

    #[test]
    fn probe_matcher_reports_other_answers() {
        let mut m = ProbeMatcher::new(5);
        let nak = pd_reply(5, osdp::reply::code::NAK, &[0x06]);
        assert_eq!(
            m.push(&nak),
            Some(ProbeAnswer::Other {
                address: 5,
                detail: "nak 0x06 encryption required".into()
            })
        );
        // Broadcast probes accept any address and report the device's own.
        let mut m = ProbeMatcher::new(0x7F);
        let pdid = Reply::PdId(sample_id()).to_data();
        let got = m.push(&pd_reply(9, osdp::reply::code::PDID, &pdid));
        assert!(
            matches!(got, Some(ProbeAnswer::Id { address: 9, .. })),
            "{got:?}"
        );
        // A corrupted reply is skipped, not reported.
        let mut bad = pd_reply(5, osdp::reply::code::PDID, &pdid);
        if let Some(last) = bad.last_mut() {
            *last ^= 0xFF;
        }
        assert_eq!(ProbeMatcher::new(5).push(&bad), None);
    }

    fn virtual_device(address: u8) -> crate::test_pty::VirtualPd {
        crate::test_pty::VirtualPd::start(osdp::pd::PdConfig {
            address,
            id: sample_id(),
            caps: vec![Capability {
                function: CapabilityFunction::OutputControl,
                compliance: 1,
                num_items: 1,
            }],
            scbk: None,
            install_mode: false,
            require_secure: false,
            inputs: 1,
            outputs: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn scan_finds_a_device_on_a_pty() {
        let mut pd = virtual_device(2);
        let args = ScanArgs {
            port: pd.path.clone(),
            bauds: vec![9600, 38400],
            addresses: "0-3".into(),
            timeout_ms: 50,
            rs485: Rs485Args::default(),
        };
        let mut lines: Vec<Value> = Vec::new();
        let scan = run_scan(&args, &mut lines);
        // Let the scanner open the port before the test's slave fd goes.
        let (result, ()) = tokio::join!(scan, async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(pd.slave.take());
        });
        result.unwrap();
        // A PTY has no baud rate: the device answers at both.
        let found: Vec<_> = lines.iter().filter(|l| l["event"] == "found").collect();
        assert_eq!(found.len(), 2, "{lines:?}");
        for (line, baud) in found.iter().zip([9600, 38400]) {
            assert_eq!(line["pd"], 2);
            assert_eq!(line["baud"], baud);
            assert_eq!(line["serial_hex"], "cafebabe");
            assert_eq!(line["firmware"], "3.1.40");
        }
        let summary = lines.last().unwrap();
        assert_eq!(summary["event"], "scan_done");
        assert_eq!(summary["found"], 2);
        assert_eq!(summary["addresses"], 4);
    }

    #[tokio::test]
    async fn request_lines_drive_a_device_on_a_pty() {
        let mut pd = virtual_device(1);
        let mut config = BusConfig::new(
            pd.path.clone(),
            9600,
            device_configs(&["1".into()], &[]).unwrap(),
        );
        config.cp.poll_interval = Duration::from_millis(20);
        let mut bus = bus::spawn(config).unwrap();
        drop(pd.slave.take());
        let formats = CardFormatTable::builtin();
        let next_line = async |bus: &mut BusHandle| {
            let event = tokio::time::timeout(Duration::from_secs(5), bus.events.recv())
                .await
                .unwrap()
                .unwrap();
            event_json(&event, &formats)
        };
        loop {
            if next_line(&mut bus).await["event"] == "online" {
                break;
            }
        }

        let mut out: Vec<Value> = Vec::new();
        handle_line(&bus, r#" {"pd":1,"output":{"no":0,"on":true}} "#, &mut out)
            .await
            .unwrap();
        assert_eq!(out[0]["event"], "queued");
        let id = out[0]["id"].clone();
        loop {
            let line = next_line(&mut bus).await;
            if line["event"] == "done" {
                assert_eq!(line["id"], id);
                break;
            }
        }
        assert_eq!(pd.device.lock().unwrap().outputs(), [1]);

        out.clear();
        handle_line(&bus, "", &mut out).await.unwrap();
        handle_line(&bus, "not json", &mut out).await.unwrap();
        handle_line(
            &bus,
            r#"{"pd":1,"keyset":"00112233445566778899aabbccddeeff"}"#,
            &mut out,
        )
        .await
        .unwrap();
        handle_line(&bus, r#"{"pd":7,"status":"local"}"#, &mut out)
            .await
            .unwrap();
        handle_line(&bus, r#"{"status":"bus"}"#, &mut out)
            .await
            .unwrap();
        assert_eq!(out.len(), 4, "{out:?}");
        assert!(out[0]["error"].as_str().unwrap().contains("not valid JSON"));
        assert_eq!(
            out[1],
            json!({"pd":1,"error":"device 1 has no secure channel for KEYSET"})
        );
        assert!(!out[1].to_string().contains("0011"));
        assert_eq!(out[2], json!({"pd":7,"error":"no device 7 on this bus"}));
        assert_eq!(out[3]["event"], "status");
        assert_eq!(out[3]["online"], true);

        // A status query's answer arrives as an event.
        out.clear();
        handle_line(&bus, r#"{"pd":1,"status":"input"}"#, &mut out)
            .await
            .unwrap();
        assert_eq!(out[0]["event"], "queued");
        loop {
            let line = next_line(&mut bus).await;
            if line["event"] == "input" {
                assert_eq!(line, json!({"pd":1,"event":"input","inputs":[0]}));
                break;
            }
        }
        bus.shutdown().await;
    }
}
