//! `hub osdp pd`: a virtual OSDP reader on a serial port.
//!
//! Runs [`osdp::pd::PeripheralDevice`] (card reader, keypad, inputs, outputs,
//! LED, buzzer, text, secure channel) on a port, for bench tests of a control
//! panel (ours or a third party's) without a real reader. Requests on stdin,
//! one JSON object per line:
//!
//! ```text
//! {"card":{"bits":26,"hex":"02004047"}}               raw bits as a reader sends them
//! {"card":{"format":"H10301","facility":1,"number":42}} encoded with parity
//! {"keys":"1234#"}                                     keypad ('*' and '#' included)
//! {"input":{"no":0,"active":true}}                     an input changes
//! {"tamper":true}  {"power_failure":true}              local status
//! ```
//!
//! Events on stdout: `started`, `sc` (secure channel up or down), `led`,
//! `buzzer`, `output`, `text`, `comset`, `key_installed`, `command` (others),
//! and `queued` / `error` answers to requests. Keys never appear on stdout;
//! a key installed by osdp_KEYSET is written to `--key-file` when given.
//!
//! The task owns the port: bytes in go to `handle_input`, bytes out come from
//! `poll_transmit`; the device's session timeout runs on `poll_timeout`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use osdp::card::{CardFormatTable, H10301};
use osdp::command::{Command, LedColor, OutputControlCode, TemporaryLedCode, TextControl};
use osdp::pd::{PdConfig, PdEvent, PeripheralDevice};
use osdp::reply::{Capability, CapabilityFunction, Keypad, PdId, RawCard, RawFormat, Reply};
use osdp::sc::Key;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bus::open_port;
use crate::osdp_cli::{
    error_json, hex, io_err, parse_address, spawn_stdin_reader, CliError, Input, LineSink, Stdout,
};

/// `hub osdp pd`.
#[derive(Debug, Args)]
pub struct PdArgs {
    /// Serial device to answer on.
    #[arg(long, value_name = "PATH")]
    pub port: String,

    /// Line speed.
    #[arg(long, default_value_t = 9600)]
    pub baud: u32,

    /// The reader's address, 0-126.
    #[arg(long, default_value = "1")]
    pub address: String,

    /// Secure channel base key: 32 hex digits or @FILE. Without it the
    /// reader runs in install mode (accepts SCBK-D and a first KEYSET).
    #[arg(long, value_name = "SCBK|@FILE")]
    pub scbk: Option<String>,

    /// Accept clear-text commands too (otherwise a keyed reader refuses
    /// everything but ID, CAP and the handshake outside a secure channel).
    #[arg(long)]
    pub allow_clear: bool,

    /// Where to save a key installed by osdp_KEYSET (written 0600).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// Number of inputs (door contact, REX...).
    #[arg(long, default_value_t = 2)]
    pub inputs: usize,

    /// Number of outputs (relays).
    #[arg(long, default_value_t = 1)]
    pub outputs: usize,

    /// Serial number reported in osdp_PDID.
    #[arg(long, default_value_t = 1)]
    pub serial: u32,
}

fn read_key(spec: &str) -> Result<Key, CliError> {
    let text = match spec.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(io_err(format!("reading key file {path}")))?
        }
        None => spec.to_string(),
    };
    Key::from_hex(text.trim())
        .map_err(|_| CliError::Usage("the secure channel key must be 32 hex digits".into()))
}

/// The reader's configuration from the arguments.
pub fn device_config(args: &PdArgs) -> Result<PdConfig, CliError> {
    let address = parse_address(&args.address).map_err(CliError::Usage)?;
    let scbk = args.scbk.as_deref().map(read_key).transpose()?;
    let cap = |function, num_items| Capability {
        function,
        compliance: 1,
        num_items,
    };
    let items = |n: usize| u8::try_from(n).unwrap_or(u8::MAX);
    Ok(PdConfig {
        address,
        id: PdId {
            vendor_code: [0x00, 0x0E, 0xDB],
            model: 1,
            version: 1,
            serial: args.serial,
            firmware_major: 0,
            firmware_minor: 1,
            firmware_build: 0,
        },
        caps: vec![
            cap(
                CapabilityFunction::ContactStatusMonitoring,
                items(args.inputs),
            ),
            cap(CapabilityFunction::OutputControl, items(args.outputs)),
            cap(CapabilityFunction::CardDataFormat, 1),
            cap(CapabilityFunction::ReaderLedControl, 1),
            cap(CapabilityFunction::ReaderAudibleOutput, 1),
            cap(CapabilityFunction::ReaderTextOutput, 1),
            cap(CapabilityFunction::CheckCharacterSupport, 1),
            cap(CapabilityFunction::CommunicationSecurity, 1),
            cap(CapabilityFunction::Readers, 1),
        ],
        require_secure: scbk.is_some() && !args.allow_clear,
        install_mode: scbk.is_none(),
        scbk,
        inputs: args.inputs,
        outputs: args.outputs,
    })
}

/// What a request line asks the reader to do.
#[derive(Debug, PartialEq, Eq)]
pub enum PdRequest {
    /// Queue a report for the next poll.
    Report(Reply),
    /// Change an input.
    Input {
        /// Input index.
        no: usize,
        /// New state.
        active: bool,
    },
    /// Change tamper / power state.
    Local {
        /// Tamper switch open.
        tamper: Option<bool>,
        /// Mains power lost.
        power_failure: Option<bool>,
    },
}

fn keypad_code(c: char) -> Result<u8, String> {
    match c {
        '0'..='9' => Ok(c as u8),
        '*' => Ok(0x7F),
        '#' => Ok(0x0D),
        other => Err(format!("keypad has no key {other:?}")),
    }
}

fn from_hex(text: &str) -> Result<Vec<u8>, String> {
    let t = text.trim();
    if t.len() % 2 != 0 || !t.is_ascii() {
        return Err("hex must have an even number of hex digits".into());
    }
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&t[i..i + 2], 16).map_err(|_| "bad hex digit".to_string()))
        .collect()
}

fn card_request(v: &Value, formats: &CardFormatTable) -> Result<Reply, String> {
    let obj = v.as_object().ok_or("card must be an object")?;
    let (bits, data) = if let Some(h) = obj.get("hex") {
        let data = from_hex(h.as_str().ok_or("card.hex must be a string")?)?;
        let bits = obj
            .get("bits")
            .and_then(Value::as_u64)
            .ok_or("card.bits is required with card.hex")?;
        let bits = u16::try_from(bits).map_err(|_| "card.bits too large")?;
        if data.len() != usize::from(bits).div_ceil(8) || bits == 0 {
            return Err(format!(
                "{bits} bits need {} bytes of hex",
                usize::from(bits).div_ceil(8)
            ));
        }
        (bits, data)
    } else {
        let name = obj.get("format").and_then(Value::as_str).unwrap_or(H10301);
        let format = formats
            .get(name)
            .ok_or_else(|| format!("unknown card format {name:?}"))?;
        let number = obj
            .get("number")
            .and_then(Value::as_u64)
            .ok_or("card.number is required")?;
        let facility = obj.get("facility").and_then(Value::as_u64);
        format
            .encode(facility, number)
            .map_err(|e| format!("cannot encode card: {e}"))?
    };
    Ok(Reply::Raw(RawCard {
        reader: 0,
        format: RawFormat::Wiegand,
        bit_count: bits,
        data,
    }))
}

/// Parses one request line. Errors say what is wrong; nothing changes.
pub fn parse_pd_request(line: &str, formats: &CardFormatTable) -> Result<PdRequest, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("a request is a JSON object")?;
    if let Some(card) = obj.get("card") {
        return card_request(card, formats).map(PdRequest::Report);
    }
    if let Some(keys) = obj.get("keys") {
        let text = keys.as_str().ok_or("keys must be a string")?;
        if text.is_empty() || text.len() > 255 {
            return Err("keys must have 1 to 255 keys".into());
        }
        let digits = text
            .chars()
            .map(keypad_code)
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(PdRequest::Report(Reply::Keypad(Keypad {
            reader: 0,
            digits,
        })));
    }
    if let Some(input) = obj.get("input") {
        let no = input
            .get("no")
            .and_then(Value::as_u64)
            .ok_or("input.no is required")?;
        let active = input
            .get("active")
            .and_then(Value::as_bool)
            .ok_or("input.active (true/false) is required")?;
        return Ok(PdRequest::Input {
            no: usize::try_from(no).map_err(|_| "input.no too large")?,
            active,
        });
    }
    let tamper = obj
        .get("tamper")
        .map(|t| t.as_bool().ok_or("tamper must be true or false"));
    let power = obj
        .get("power_failure")
        .map(|t| t.as_bool().ok_or("power_failure must be true or false"));
    if tamper.is_some() || power.is_some() {
        return Ok(PdRequest::Local {
            tamper: tamper.transpose()?,
            power_failure: power.transpose()?,
        });
    }
    Err("expected one of card, keys, input, tamper, power_failure".into())
}

fn color_name(c: LedColor) -> &'static str {
    match c {
        LedColor::Black => "black",
        LedColor::Red => "red",
        LedColor::Green => "green",
        LedColor::Amber => "amber",
        LedColor::Blue => "blue",
        LedColor::Magenta => "magenta",
        LedColor::Cyan => "cyan",
        LedColor::White => "white",
    }
}

fn event(name: &str, fields: Value) -> Value {
    let mut m = Map::new();
    m.insert("event".into(), json!(name));
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    Value::Object(m)
}

/// JSON lines for what a command asks of the reader.
pub fn command_json(cmd: &Command) -> Vec<Value> {
    match cmd {
        Command::Led(records) => records
            .iter()
            .map(|r| {
                let temporary = r.temporary.control == TemporaryLedCode::Set;
                let (color, ms) = if temporary {
                    (r.temporary.on_color, u64::from(r.temporary.timer) * 100)
                } else {
                    (r.permanent.on_color, 0)
                };
                event(
                    "led",
                    json!({"reader": r.reader, "led": r.led, "color": color_name(color),
                           "temporary": temporary, "ms": ms}),
                )
            })
            .collect(),
        Command::Buzzer(b) => vec![event(
            "buzzer",
            json!({"reader": b.reader, "ms": u64::from(b.on_time) * 100, "count": b.count}),
        )],
        Command::Output(records) => records
            .iter()
            .map(|r| {
                let state = match r.control {
                    OutputControlCode::PermanentOnAbortTimed
                    | OutputControlCode::PermanentOnAllowTimed => "on",
                    OutputControlCode::PermanentOffAbortTimed
                    | OutputControlCode::PermanentOffAllowTimed => "off",
                    OutputControlCode::TemporaryOnThenOff => "pulse",
                    OutputControlCode::TemporaryOffThenOn => "off_pulse",
                    OutputControlCode::Nop => "unchanged",
                };
                event(
                    "output",
                    json!({"no": r.output, "state": state, "ms": u64::from(r.timer) * 100}),
                )
            })
            .collect(),
        Command::Text(TextControl { reader, text, .. }) => vec![event(
            "text",
            json!({"reader": reader, "text": String::from_utf8_lossy(text)}),
        )],
        other => vec![event("command", json!({"name": other.name()}))],
    }
}

fn save_key(path: &PathBuf, key: &Key) -> Result<(), std::io::Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{}", hex(key.expose()))
}

/// Runs the virtual reader until SIGINT/SIGTERM or the port fails.
pub async fn run(args: &PdArgs) -> Result<(), CliError> {
    use tokio::signal::unix::{signal, SignalKind};

    let config = device_config(args)?;
    let formats = CardFormatTable::builtin();
    let mut port = open_port(&args.port, args.baud, None)?;
    let mut out = Stdout;
    out.line(&event(
        "started",
        json!({"port": args.port, "address": config.address,
               "security": if config.scbk.is_some() { "secure" } else { "install" }}),
    ))?;
    let mut pd = PeripheralDevice::new(config);
    let mut requests = spawn_stdin_reader();
    let mut stdin_open = true;
    let mut term = signal(SignalKind::terminate()).map_err(io_err("installing SIGTERM handler"))?;
    let mut buf = [0u8; 512];
    loop {
        while let Some(bytes) = pd.poll_transmit() {
            port.write_all(&bytes)
                .await
                .map_err(io_err(format!("writing to {}", args.port)))?;
        }
        while let Some(e) = pd.poll_event() {
            let lines = match e {
                PdEvent::Command(cmd) => command_json(&cmd),
                PdEvent::SecureChannel { default_key } => {
                    vec![event(
                        "sc",
                        json!({"active": true, "default_key": default_key}),
                    )]
                }
                PdEvent::SecureChannelLost => vec![event("sc", json!({"active": false}))],
                PdEvent::ComSet { address, baud } => {
                    vec![event("comset", json!({"address": address, "baud": baud}))]
                }
                PdEvent::KeyInstalled(key) => {
                    let saved = match &args.key_file {
                        Some(path) => match save_key(path, &key) {
                            Ok(()) => json!(path.display().to_string()),
                            Err(e) => {
                                out.line(&error_json(None, &format!("cannot save key: {e}")))?;
                                Value::Null
                            }
                        },
                        None => Value::Null,
                    };
                    vec![event("key_installed", json!({"saved": saved}))]
                }
            };
            for l in lines {
                out.line(&l)?;
            }
        }
        let timeout = pd.poll_timeout();
        tokio::select! {
            read = port.read(&mut buf) => {
                let n = read.map_err(io_err(format!("reading from {}", args.port)))?;
                if n == 0 {
                    return Err(CliError::Usage(format!("{} closed", args.port)));
                }
                pd.handle_input(&buf[..n], Instant::now());
            }
            () = async {
                match timeout {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            } => pd.handle_timeout(Instant::now()),
            input = requests.recv(), if stdin_open => match input {
                Some(Input::Line(line)) if line.trim().is_empty() => {}
                Some(Input::Line(line)) => match parse_pd_request(&line, &formats) {
                    Ok(PdRequest::Report(r)) => {
                        pd.queue_report(r);
                        out.line(&event("queued", json!({})))?;
                    }
                    Ok(PdRequest::Input { no, active }) => {
                        if no >= args.inputs {
                            out.line(&error_json(None, &format!("no input {no} (the reader has {})", args.inputs)))?;
                        } else {
                            pd.set_input(no, active);
                            out.line(&event("queued", json!({})))?;
                        }
                    }
                    Ok(PdRequest::Local { tamper, power_failure }) => {
                        pd.set_local_status(tamper.unwrap_or(false), power_failure.unwrap_or(false));
                        out.line(&event("queued", json!({})))?;
                    }
                    Err(e) => out.line(&error_json(None, &e))?,
                },
                Some(Input::TooLong) => out.line(&error_json(None, "request line too long"))?,
                Some(Input::Failed(e)) => {
                    out.line(&error_json(None, &format!("stdin: {e}")))?;
                    stdin_open = false;
                }
                None => stdin_open = false,
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<PdRequest, String> {
        parse_pd_request(line, &CardFormatTable::builtin())
    }

    #[test]
    fn card_requests_give_raw_reports() {
        let r = parse(r#"{"card":{"bits":26,"hex":"02004047"}}"#).unwrap();
        assert_eq!(
            r,
            PdRequest::Report(Reply::Raw(RawCard {
                reader: 0,
                format: RawFormat::Wiegand,
                bit_count: 26,
                data: vec![0x02, 0x00, 0x40, 0x47],
            }))
        );
        // Encoded from facility and number, it decodes back with parity ok.
        let PdRequest::Report(Reply::Raw(card)) =
            parse(r#"{"card":{"format":"H10301","facility":123,"number":4567}}"#).unwrap()
        else {
            panic!("not a card");
        };
        let table = CardFormatTable::builtin();
        let decoded = table.decode(card.bit_count, &card.data).unwrap();
        assert_eq!((decoded.facility, decoded.number), (Some(123), 4567));
        assert!(decoded.parity.passed());
    }

    #[test]
    fn keypad_maps_star_and_hash() {
        let r = parse(r#"{"keys":"12*#"}"#).unwrap();
        assert_eq!(
            r,
            PdRequest::Report(Reply::Keypad(Keypad {
                reader: 0,
                digits: vec![b'1', b'2', 0x7F, 0x0D],
            }))
        );
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        for (line, want) in [
            ("nope", "not JSON"),
            ("[1]", "object"),
            (r#"{"card":{"bits":26,"hex":"0200"}}"#, "need 4 bytes"),
            (r#"{"card":{"bits":26,"hex":"zz004047"}}"#, "hex"),
            (
                r#"{"card":{"format":"nope","number":1}}"#,
                "unknown card format",
            ),
            (
                r#"{"card":{"format":"H10301","facility":999,"number":1}}"#,
                "encode",
            ),
            (r#"{"keys":"12a"}"#, "no key"),
            (r#"{"keys":""}"#, "1 to 255"),
            (r#"{"input":{"no":0}}"#, "input.active"),
            (r#"{"tamper":"yes"}"#, "tamper"),
            (r#"{"hello":1}"#, "expected one of"),
        ] {
            let err = parse(line).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn commands_become_events_without_secrets() {
        use osdp::command::{KeySet, OutputControl};
        let out = command_json(&Command::Output(vec![OutputControl {
            output: 0,
            control: OutputControlCode::TemporaryOnThenOff,
            timer: 30,
        }]));
        assert_eq!(
            out,
            vec![json!({"event":"output","no":0,"state":"pulse","ms":3000})]
        );
        let ks = command_json(&Command::KeySet(KeySet::scbk([0xAB; 16])));
        assert!(!ks[0].to_string().contains("abab"));
    }

    #[test]
    fn arguments_make_a_secure_or_install_mode_reader() {
        let mut args = PdArgs {
            port: "/dev/null".into(),
            baud: 9600,
            address: "9".into(),
            scbk: Some("00112233445566778899aabbccddeeff".into()),
            allow_clear: false,
            key_file: None,
            inputs: 2,
            outputs: 1,
            serial: 7,
        };
        let c = device_config(&args).unwrap();
        assert!(c.require_secure && !c.install_mode && c.scbk.is_some());
        assert_eq!(c.address, 9);
        args.scbk = None;
        let c = device_config(&args).unwrap();
        assert!(c.install_mode && !c.require_secure);
        args.address = "200".into();
        assert!(device_config(&args).is_err());
        args.address = "1".into();
        args.scbk = Some("short".into());
        let err = device_config(&args).unwrap_err().to_string();
        assert!(
            !err.contains("short"),
            "errors never echo key material: {err}"
        );
    }
}
