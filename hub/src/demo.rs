//! `hub demo`: the hub's OSDP side with no hardware: our control panel and
//! virtual secure readers on a simulated RS-485 bus running in real time.
//!
//! The readers come online over the secure channel; a card is presented every
//! few seconds (or when you type `card 1 4567` or `keys 2 1234#` on stdin);
//! the control panel receives it, decodes the card format and answers at that
//! reader with a green LED and a beep. Everything is printed as JSON lines
//! with the card number masked. Access decisions (who may open which door)
//! come with the decision engine; this demo acknowledges every read.
//!
//! Virtual time of [`osdp::sim::SimBus`] is paced against the wall clock, so
//! wire times at the chosen baud rate are real.

use std::time::{Duration, Instant};

use clap::Args;
use osdp::card::{CardFormatTable, H10301};
use osdp::command::{BuzzerControl, Command, LedColor, LedControl, ToneCode};
use osdp::cp::{ControlPanel, CpConfig, Event, PdConfig, Security};
use osdp::reply::{Keypad, RawCard, RawFormat, Reply};
use osdp::sc::Key;
use osdp::sim::SimBus;
use serde_json::{json, Value};

use crate::osdp_cli::{spawn_stdin_reader, CliError, Input, LineSink, Stdout};
use crate::virtual_pd::{device_config, PdArgs};

/// `hub demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of virtual readers (addresses 1..=N).
    #[arg(long, default_value_t = 2)]
    pub readers: u8,

    /// Line speed of the simulated bus.
    #[arg(long, default_value_t = 9600)]
    pub baud: u32,

    /// Present a card at a random reader this often (seconds; 0: never).
    #[arg(long, default_value_t = 4)]
    pub card_every: u64,

    /// Stop after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,
}

/// A card number with all but the last two digits hidden.
pub fn mask_number(number: u64) -> String {
    let s = number.to_string();
    let keep = s.len().min(2);
    format!("{}{}", "*".repeat(s.len() - keep), &s[s.len() - keep..])
}

fn ack_commands() -> [Command; 2] {
    let led = Command::Led(vec![LedControl::temporary(LedColor::Green, 10)]);
    let beep = Command::Buzzer(BuzzerControl {
        reader: 0,
        tone: ToneCode::Default,
        on_time: 2,
        off_time: 0,
        count: 1,
    });
    [led, beep]
}

/// What a stdin line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum DemoRequest {
    /// Present an H10301 card (facility 1) at a reader.
    Card {
        /// Reader address.
        reader: u8,
        /// Card number.
        number: u64,
    },
    /// Type keys at a reader.
    Keys {
        /// Reader address.
        reader: u8,
        /// Keys.
        keys: String,
    },
}

/// Parses `card READER NUMBER` or `keys READER DIGITS`.
pub fn parse_demo_line(line: &str) -> Result<DemoRequest, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let usage = "type: card READER NUMBER | keys READER DIGITS";
    let [verb, reader, arg] = words[..] else {
        return Err(usage.into());
    };
    let reader: u8 = reader
        .parse()
        .map_err(|_| format!("bad reader {reader:?}"))?;
    match verb {
        "card" => Ok(DemoRequest::Card {
            reader,
            number: arg
                .parse()
                .map_err(|_| format!("bad card number {arg:?}"))?,
        }),
        "keys"
            if arg
                .chars()
                .all(|c| c.is_ascii_digit() || c == '*' || c == '#') =>
        {
            Ok(DemoRequest::Keys {
                reader,
                keys: arg.to_string(),
            })
        }
        "keys" => Err(format!("bad keys {arg:?}")),
        _ => Err(usage.into()),
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        return 4242;
    }
    u64::from_le_bytes(b)
}

/// Runs the demo.
pub async fn run(args: &DemoArgs) -> Result<(), CliError> {
    if args.readers == 0 || args.readers > 126 {
        return Err(CliError::Usage("--readers must be 1..=126".into()));
    }
    let mut out = Stdout;
    let formats = CardFormatTable::builtin();
    let h10301 = formats
        .get(H10301)
        .ok_or_else(|| CliError::Usage("built-in H10301 format missing".into()))?
        .clone();
    let start = Instant::now();
    let mut pds = Vec::new();
    let mut devices = Vec::new();
    for addr in 1..=args.readers {
        let mut key = [0u8; 16];
        if getrandom::getrandom(&mut key).is_err() {
            key = [addr; 16];
        }
        let key = Key::new(key);
        let pd_args = PdArgs {
            port: String::new(),
            baud: args.baud,
            address: addr.to_string(),
            scbk: Some(crate::osdp_cli::hex(key.expose())),
            allow_clear: false,
            key_file: None,
            inputs: 2,
            outputs: 1,
            serial: u32::from(addr),
        };
        devices.push(osdp::pd::PeripheralDevice::new(device_config(&pd_args)?));
        pds.push(PdConfig {
            address: addr,
            security: Security::Secure(key),
        });
    }
    let cp = ControlPanel::new(
        CpConfig {
            baud: args.baud,
            ..CpConfig::default()
        },
        pds,
        start,
    )
    .map_err(|e| CliError::Usage(e.to_string()))?;
    let mut bus = SimBus::new(cp, devices, args.baud, start);
    bus.record_wire = false;
    out.line(
        &json!({"event": "demo", "readers": args.readers, "baud": args.baud,
        "note": "virtual secure readers on a simulated bus; type 'card 1 4567' or 'keys 2 1234#'"}),
    )?;

    let mut stdin = spawn_stdin_reader();
    let mut stdin_open = true;
    let mut next_card = start + Duration::from_secs(args.card_every.max(1));
    let mut presented: Vec<(u8, Instant)> = Vec::new();
    let end = (args.seconds > 0).then(|| start + Duration::from_secs(args.seconds));
    let mut seen_at_reader = vec![0usize; usize::from(args.readers)];
    loop {
        // Pace virtual time against the wall clock.
        let now = Instant::now();
        if end.is_some_and(|e| now >= e) {
            return Ok(());
        }
        bus.run_until(|_| false, now);
        for (at, e) in std::mem::take(&mut bus.cp_events) {
            let line: Value = match e {
                Event::Online { pd, secure, .. } => {
                    json!({"event":"online","reader":pd,"sc":secure})
                }
                Event::Offline { pd } => json!({"event":"offline","reader":pd}),
                Event::Reply {
                    pd,
                    reply: Reply::Raw(card),
                } => {
                    for cmd in ack_commands() {
                        let _ = bus.cp.submit(pd, cmd);
                    }
                    let decoded = formats.decode(card.bit_count, &card.data).ok();
                    let took = presented
                        .iter()
                        .position(|(r, _)| *r == pd)
                        .map(|i| presented.remove(i).1)
                        .map(|t| at.saturating_duration_since(t).as_millis());
                    json!({"event":"card","reader":pd,"bits":card.bit_count,
                        "format": decoded.as_ref().and_then(|d| d.format),
                        "number": decoded.as_ref().map(|d| mask_number(d.number)),
                        "parity": decoded.as_ref().map(|d| d.parity.passed()),
                        "read_to_cp_ms": took})
                }
                Event::Reply {
                    pd,
                    reply: Reply::Keypad(k),
                } => {
                    json!({"event":"keypad","reader":pd,"keys": "*".repeat(k.digits.len())})
                }
                Event::SecureChannelFailed { pd, .. } => json!({"event":"sc_failed","reader":pd}),
                _ => continue,
            };
            out.line(&line)?;
        }
        // What the readers themselves received (LED, buzzer...).
        for (i, p) in bus.pds.iter().enumerate() {
            for (_, e) in &p.events[seen_at_reader[i]..] {
                if let osdp::pd::PdEvent::Command(cmd) = e {
                    for mut l in crate::virtual_pd::command_json(cmd) {
                        l["reader"] = json!(i + 1);
                        l["at"] = json!("reader");
                        out.line(&l)?;
                    }
                }
            }
            seen_at_reader[i] = p.events.len();
        }
        if args.card_every > 0 && now >= next_card {
            next_card = now + Duration::from_secs(args.card_every);
            let reader = (random_u64() % u64::from(args.readers)) as u8 + 1;
            let number = random_u64() % 60_000 + 1_000;
            present(&mut bus, &h10301, reader, number, &mut presented, &mut out)?;
        }
        let sleep_to = [
            bus.cp.poll_timeout(),
            Some(next_card),
            Some(now + Duration::from_millis(20)),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now)
        .max(now + Duration::from_millis(1));
        tokio::select! {
            () = tokio::time::sleep_until(sleep_to.into()) => {}
            input = stdin.recv(), if stdin_open => match input {
                Some(Input::Line(l)) if l.trim().is_empty() => {}
                Some(Input::Line(l)) => match parse_demo_line(&l) {
                    Ok(DemoRequest::Card { reader, number }) if (1..=args.readers).contains(&reader) => {
                        present(&mut bus, &h10301, reader, number, &mut presented, &mut out)?;
                    }
                    Ok(DemoRequest::Keys { reader, keys }) if (1..=args.readers).contains(&reader) => {
                        let digits = keys.bytes().map(|b| match b { b'*' => 0x7F, b'#' => 0x0D, d => d }).collect();
                        bus.pds[usize::from(reader - 1)].pd.queue_report(Reply::Keypad(Keypad { reader: 0, digits }));
                    }
                    Ok(_) => out.line(&json!({"error": "no such reader"}))?,
                    Err(e) => out.line(&json!({"error": e}))?,
                },
                _ => stdin_open = false,
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn present(
    bus: &mut SimBus,
    format: &osdp::card::CardFormat,
    reader: u8,
    number: u64,
    presented: &mut Vec<(u8, Instant)>,
    out: &mut Stdout,
) -> Result<(), CliError> {
    let (bits, data) = match format.encode(Some(1), number) {
        Ok(x) => x,
        Err(e) => return out.line(&json!({"error": format!("cannot encode card: {e}")})),
    };
    bus.pds[usize::from(reader - 1)]
        .pd
        .queue_report(Reply::Raw(RawCard {
            reader: 0,
            format: RawFormat::Wiegand,
            bit_count: bits,
            data,
        }));
    presented.push((reader, Instant::now()));
    out.line(&json!({"event":"presented","reader":reader,"number":mask_number(number)}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_all_but_the_last_two_digits() {
        assert_eq!(mask_number(4567), "**67");
        assert_eq!(mask_number(7), "7");
        assert_eq!(mask_number(1234567890), "********90");
    }

    #[test]
    fn parses_demo_lines() {
        assert_eq!(
            parse_demo_line("card 1 4567"),
            Ok(DemoRequest::Card {
                reader: 1,
                number: 4567
            })
        );
        assert_eq!(
            parse_demo_line(" keys 2 12*# "),
            Ok(DemoRequest::Keys {
                reader: 2,
                keys: "12*#".into()
            })
        );
        assert!(parse_demo_line("card one 1").is_err());
        assert!(parse_demo_line("keys 1 12a").is_err());
        assert!(parse_demo_line("open sesame").is_err());
        assert!(parse_demo_line("").is_err());
    }
}
