//! `hub demo`: the hub daemon itself ([`crate::daemon`]) on a simulated bus,
//! with no hardware and no broker.
//!
//! [`run`] writes a built-in config into a fresh temporary directory: one
//! simulated bus (`port = "sim:"`, see [`crate::bus::sim`]) with three
//! virtual secure readers (`front-in`, `front-out`, `back`, each with its
//! own random key), the doors `front` and `back`, the sample data set
//! (`hub/examples/data/site.json`), a store, and the technician's web page
//! on `--listen` (default `127.0.0.1:8080`) with the user `demo` and a
//! random password printed once on start. Then it runs the daemon until
//! Ctrl-C (or `--seconds`) and removes the directory.
//!
//! Cards and keys reach the virtual readers three ways, all as the web
//! page's `present` action, so a person sees the strike open, the LED and
//! the event on the page and in the log:
//!
//! - the page's "Demo: present at a reader" form;
//! - stdin lines `card READER NUMBER` (`NUMBER` or `FACILITY:NUMBER`, a bare
//!   number has facility 1) and `keys READER DIGITS`, where `READER` is the
//!   reader's address 1..=3 ([`parse_demo_line`]);
//! - every `--card-every` seconds a card, in turn Ann's (granted at the
//!   front door), Bob's and an unknown one.
//!
//! Stdout carries JSON lines: the `demo` banner (URL, user, password), the
//! daemon's `ready` line and the outcome of each typed line. Card numbers
//! are masked everywhere; PINs are never shown.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::daemon::{self, RunOptions};
use crate::osdp_cli::{io_err, spawn_stdin_reader, CliError, Input};
use crate::web::{auth, Action, ActionRequest, PinDigits};

/// The demo's login name.
pub const DEMO_USER: &str = "demo";

/// The sample data set: Ann (card 12:34567) may use the front door.
const SAMPLE_DATA_SET: &str = include_str!("../examples/data/site.json");

/// The virtual readers: address, name.
const READERS: [(u8, &str); 3] = [(1, "front-in"), (2, "front-out"), (3, "back")];

/// `hub demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Line speed of the simulated bus.
    #[arg(long, default_value_t = 9600)]
    pub baud: u32,

    /// Present a card at a reader this often (seconds; 0: never).
    #[arg(long, default_value_t = 4)]
    pub card_every: u64,

    /// Stop after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,

    /// Address of the web page (port 0: any free port, printed in the
    /// ready line).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Sync with a cloud through this MQTT broker as well:
    /// `mqtt://host[:port]`, or `mqtts://host[:port]` with `--mqtt-ca`,
    /// `--mqtt-cert` and `--mqtt-key` (docs/config.md, `[mqtt]`).
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,

    /// Tenant id for the sync (a topic level).
    #[arg(long, default_value = "demo", requires = "mqtt")]
    pub tenant: String,

    /// Hub id for the sync (a topic level and the MQTT client id).
    #[arg(long, default_value = "demo-hub", requires = "mqtt")]
    pub hub_id: String,

    /// CA certificate (PEM) of the broker, for `mqtts://`.
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    pub mqtt_ca: Option<PathBuf>,

    /// The hub's client certificate (PEM), for `mqtts://`.
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    pub mqtt_cert: Option<PathBuf>,

    /// The hub's client key (PEM, chmod 600), for `mqtts://`.
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    pub mqtt_key: Option<PathBuf>,
}

/// A TOML basic string for `s`. JSON's string escapes (`\"`, `\\`, `\n`,
/// `\uXXXX`...) are all valid TOML escapes.
fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The `[mqtt]` section for `--mqtt` (empty without it). Relative paths
/// are made absolute: the config lives in the demo's own directory.
fn mqtt_section(args: &DemoArgs) -> Result<String, CliError> {
    let Some(url) = &args.mqtt else {
        return Ok(String::new());
    };
    let mut section = format!(
        "\n[mqtt]\nurl = {}\ntenant = {}\nhub_id = {}\n",
        toml_str(url),
        toml_str(&args.tenant),
        toml_str(&args.hub_id)
    );
    for (key, file) in [
        ("ca_file", &args.mqtt_ca),
        ("cert_file", &args.mqtt_cert),
        ("key_file", &args.mqtt_key),
    ] {
        if let Some(file) = file {
            let file = std::path::absolute(file)
                .map_err(io_err(format!("resolving {}", file.display())))?;
            let file = file.to_str().ok_or_else(|| {
                CliError::Usage(format!("{key}: {} is not UTF-8", file.display()))
            })?;
            section.push_str(&format!("{key} = {}\n", toml_str(file)));
        }
    }
    Ok(section)
}

/// A card number with all but the last two digits hidden.
pub fn mask_number(number: u64) -> String {
    let s = number.to_string();
    let keep = s.len().min(2);
    format!("{}{}", "*".repeat(s.len() - keep), &s[s.len() - keep..])
}

/// What a stdin line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum DemoRequest {
    /// Present an H10301 card at a reader.
    Card {
        /// Reader address.
        reader: u8,
        /// Facility code (1 when the line gives none).
        facility: u64,
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

/// Parses `card READER NUMBER`, `card READER FACILITY:NUMBER` or
/// `keys READER DIGITS`.
pub fn parse_demo_line(line: &str) -> Result<DemoRequest, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let usage = "type: card READER NUMBER | card READER FACILITY:NUMBER | keys READER DIGITS";
    let [verb, reader, arg] = words[..] else {
        return Err(usage.into());
    };
    let reader: u8 = reader
        .parse()
        .map_err(|_| format!("bad reader {reader:?}"))?;
    match verb {
        "card" => {
            let bad = || format!("bad card number {arg:?}");
            let (facility, number) = match arg.split_once(':') {
                Some((f, n)) => (f.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?),
                None => (1, arg.parse().map_err(|_| bad())?),
            };
            Ok(DemoRequest::Card {
                reader,
                facility,
                number,
            })
        }
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

/// The web page's action for a typed line, or why there is none.
fn line_action(request: DemoRequest) -> Result<Action, String> {
    let address = match &request {
        DemoRequest::Card { reader, .. } | DemoRequest::Keys { reader, .. } => *reader,
    };
    let Some((_, name)) = READERS.iter().find(|(a, _)| *a == address) else {
        return Err(format!(
            "no reader {address}: the demo has readers 1, 2 and 3"
        ));
    };
    let reader = (*name).to_owned();
    Ok(match request {
        DemoRequest::Card {
            facility, number, ..
        } => Action::Present {
            reader,
            card: Some(format!("{facility}:{number}")),
            pin: None,
        },
        DemoRequest::Keys { keys, .. } => Action::Present {
            reader,
            card: None,
            pin: Some(PinDigits(Zeroizing::new(keys))),
        },
    })
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::getrandom(&mut b).is_err() {
        // Without an OS random source the demo still runs; its keys and
        // password are then predictable, which a demo can live with.
        b.iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = i as u8 ^ 0x5A);
    }
    b
}

/// A random password of 12 letters and digits (no look-alikes).
fn random_password() -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes: [u8; 12] = random_bytes();
    Zeroizing::new(
        bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
            .collect(),
    )
}

/// A directory removed when dropped.
struct DemoDir(PathBuf);

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    if secret {
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(io_err(format!("writing {}", path.display())))
}

/// The built-in config (TOML) for the files in the demo directory.
fn demo_config(baud: u32, listen: SocketAddr, password_hash: &str) -> String {
    let readers: String = READERS
        .iter()
        .map(|(address, name)| {
            let mode = match *name {
                "front-in" => "card_or_pin",
                "back" => "card_and_pin",
                _ => "card",
            };
            format!(
                "[[reader]]\nname = \"{name}\"\nbus = \"sim\"\naddress = {address}\n\
                 key_file = \"keys/{name}.key\"\nmode = \"{mode}\"\n\n"
            )
        })
        .collect();
    format!(
        r#"# hub demo: written by `hub demo`, removed when it stops.
[site]
id = "demo-site"
time_zone = "Europe/Berlin"
dataset_file = "site.json"

[[bus]]
name = "sim"
port = "sim:"
baud = {baud}

{readers}[[door]]
id = "front"
entry_reader = "front-in"
exit_reader = "front-out"
strike = {{ reader = "front-in", output = 0 }}
pulse_s = 5

[[door]]
id = "back"
entry_reader = "back"
strike = {{ reader = "back", output = 0 }}
pulse_s = 5

[storage]
path = "store"

[web]
listen = "{listen}"
user = "{DEMO_USER}"
password_hash = "{password_hash}"
"#
    )
}

/// Writes the demo directory: config, keys, data set.
fn prepare(args: &DemoArgs, password: &str) -> Result<(DemoDir, PathBuf), CliError> {
    let suffix: [u8; 6] = random_bytes();
    let name: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("hub-demo-{}-{name}", std::process::id()));
    std::fs::create_dir_all(dir.join("keys"))
        .map_err(io_err(format!("creating {}", dir.display())))?;
    let dir = DemoDir(dir);
    for (_, reader) in READERS {
        let key: [u8; 16] = random_bytes();
        let hex: Zeroizing<String> =
            Zeroizing::new(key.iter().map(|b| format!("{b:02x}")).collect());
        write_file(&dir.0.join(format!("keys/{reader}.key")), &hex, true)?;
    }
    write_file(&dir.0.join("site.json"), SAMPLE_DATA_SET, false)?;
    let hash = auth::hash_password(password).map_err(|e| CliError::Usage(e.to_string()))?;
    let path = dir.0.join("hub.toml");
    let config = demo_config(args.baud, args.listen, &hash) + &mqtt_section(args)?;
    write_file(&path, &config, false)?;
    Ok((dir, path))
}

fn print(line: &serde_json::Value) {
    // A closed stdout (piped into `head`) must not stop the doors.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Sends typed lines to the daemon as `present` actions and prints the
/// outcomes.
async fn typed_lines(actions: mpsc::Sender<ActionRequest>) {
    let mut stdin = spawn_stdin_reader();
    while let Some(input) = stdin.recv().await {
        let Input::Line(line) = input else { continue };
        if line.trim().is_empty() {
            continue;
        }
        let action = match parse_demo_line(&line).and_then(line_action) {
            Ok(action) => action,
            Err(e) => {
                print(&json!({ "error": e }));
                continue;
            }
        };
        let (reply, answer) = oneshot::channel();
        let request = ActionRequest {
            action,
            by: "stdin".into(),
            reply,
        };
        if actions.send(request).await.is_err() {
            return;
        }
        if let Ok(outcome) = answer.await {
            print(&json!({"event": "action", "ok": outcome.ok, "message": outcome.message}));
        }
    }
}

/// Presents a card every `every`: Ann's at the front door, Bob's at the
/// back door, an unknown card at the front door, in turn.
async fn automatic_cards(actions: mpsc::Sender<ActionRequest>, every: Duration) {
    let mut turn = 0u64;
    loop {
        tokio::time::sleep(every).await;
        let (reader, card) = match turn % 3 {
            0 => ("front-in", "12:34567".to_owned()),
            1 => ("back", "7:1001".to_owned()),
            _ => {
                let [a, b]: [u8; 2] = random_bytes();
                (
                    "front-in",
                    format!("1:{}", 1000 + u16::from_le_bytes([a, b]) % 60_000),
                )
            }
        };
        turn += 1;
        let (reply, _) = oneshot::channel();
        let request = ActionRequest {
            action: Action::Present {
                reader: reader.to_owned(),
                card: Some(card),
                pin: None,
            },
            by: "demo".into(),
            reply,
        };
        if actions.send(request).await.is_err() {
            return;
        }
    }
}

/// Runs the demo.
pub async fn run(args: &DemoArgs) -> Result<(), CliError> {
    let password = random_password();
    let (dir, config_path) = prepare(args, &password)?;
    let config = crate::config::load(&config_path).map_err(|e| CliError::Usage(e.to_string()))?;
    print(&json!({
        "event": "demo",
        "web": format!("http://{}/", args.listen),
        "user": DEMO_USER,
        "password": password.as_str(),
        "mqtt": args.mqtt,
        "note": "virtual secure readers 1 front-in, 2 front-out, 3 back on a simulated bus; \
                 log in to the web page, or type 'card 1 12:34567' (Ann, granted at the front door) \
                 or 'keys 3 4321'",
    }));
    drop(password);
    let (tx, rx) = mpsc::channel(16);
    let typed = tokio::spawn(typed_lines(tx.clone()));
    let cards = (args.card_every > 0)
        .then(|| tokio::spawn(automatic_cards(tx, Duration::from_secs(args.card_every))));
    let options = RunOptions {
        actions: Some(rx),
        stop_after: (args.seconds > 0).then(|| Duration::from_secs(args.seconds)),
    };
    let result = daemon::run_with(config, options).await;
    typed.abort();
    if let Some(cards) = cards {
        cards.abort();
    }
    drop(dir);
    result.map_err(|e| CliError::Usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(mqtt: Option<&str>, tenant: &str) -> DemoArgs {
        DemoArgs {
            baud: 9600,
            card_every: 0,
            seconds: 0,
            listen: "127.0.0.1:0".parse().unwrap(),
            mqtt: mqtt.map(str::to_owned),
            tenant: tenant.to_owned(),
            hub_id: "demo-hub".to_owned(),
            mqtt_ca: None,
            mqtt_cert: None,
            mqtt_key: None,
        }
    }

    #[test]
    fn a_broker_url_adds_the_sync_to_the_demo_config() {
        let (_dir, path) = prepare(&args(None, "demo"), "pw").unwrap();
        let config = crate::config::load(&path).unwrap();
        assert!(config.mqtt.is_none(), "no broker, no sync");

        let (_dir, path) = prepare(&args(Some("mqtt://127.0.0.1:1883"), "acme"), "pw").unwrap();
        let config = crate::config::load(&path).unwrap();
        let mqtt = config.mqtt.expect("[mqtt] from --mqtt");
        assert_eq!(mqtt.url, "mqtt://127.0.0.1:1883");
        assert_eq!(
            (mqtt.tenant.as_str(), mqtt.hub_id.as_str()),
            ("acme", "demo-hub")
        );

        // A value cannot break out of its TOML string: a tenant with a
        // quote is one (invalid) tenant, refused by the config's check.
        let (_dir, path) = prepare(
            &args(
                Some("mqtt://127.0.0.1"),
                "a\"\n[web]\nlisten = \"0.0.0.0:1\"",
            ),
            "pw",
        )
        .unwrap();
        let err = crate::config::load(&path).unwrap_err().to_string();
        assert!(err.contains("tenant"), "{err}");
    }

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
                facility: 1,
                number: 4567
            })
        );
        assert_eq!(
            parse_demo_line("card 1 12:34567"),
            Ok(DemoRequest::Card {
                reader: 1,
                facility: 12,
                number: 34567
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
        assert!(parse_demo_line("card 1 12:x").is_err());
        assert!(parse_demo_line("keys 1 12a").is_err());
        assert!(parse_demo_line("open sesame").is_err());
        assert!(parse_demo_line("").is_err());
    }

    #[test]
    fn typed_lines_become_present_actions_at_the_named_reader() {
        let action = line_action(DemoRequest::Card {
            reader: 1,
            facility: 12,
            number: 34567,
        });
        assert_eq!(
            action,
            Ok(Action::Present {
                reader: "front-in".into(),
                card: Some("12:34567".into()),
                pin: None
            })
        );
        assert!(line_action(DemoRequest::Keys {
            reader: 9,
            keys: "1".into()
        })
        .is_err());
    }

    #[test]
    fn the_built_in_config_is_valid_and_serves_the_web_page() {
        let (demo_dir, path) = prepare(&args(None, "demo"), "pw").unwrap();
        let config = crate::config::load(&path).unwrap();
        assert!(config.buses[0].config.is_simulated());
        assert_eq!(config.readers.len(), 3);
        assert_eq!(config.doors.len(), 2);
        let web = config.web.unwrap();
        assert_eq!(web.user, DEMO_USER);
        assert!(web.credentials.verify(DEMO_USER, "pw"));
        let held = demo_dir.0.clone();
        drop(demo_dir);
        assert!(!held.exists(), "the demo directory is removed");
    }
}
