//! One test per kind of config error, plus the full example files.

use super::*;
use std::os::unix::fs::PermissionsExt;

const KEY_HEX: &str = "00112233445566778899aabbccddeeff";

/// A directory with a secure-channel key, an API key and an MQTT key, all
/// mode 600, and a data set file.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("front.key", KEY_HEX),
            ("api.key", "s3cret-api-key\n"),
            ("mqtt.key", "-----BEGIN PRIVATE KEY-----\n"),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(dir.path().join("ca.pem"), "ca").unwrap();
        std::fs::write(dir.path().join("cert.pem"), "cert").unwrap();
        std::fs::write(dir.path().join("site.json"), "{}").unwrap();
        Files { dir }
    }

    fn parse(&self, text: &str) -> Result<Config, Vec<ConfigError>> {
        parse(text, self.dir.path())
    }

    /// The single error of `text`.
    fn error(&self, text: &str) -> ConfigError {
        let mut errors = self.parse(text).expect_err("should fail");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.remove(0)
    }
}

/// A valid config: one bus, two readers, one door. Line numbers below count
/// from the first line of this text.
const GOOD: &str = r#"[site]
id = "demo-site"
time_zone = "Europe/Berlin"
dataset_file = "site.json"

[[bus]]
name = "main"
port = "/dev/ttyUSB0"
baud = 9600
reply_timeout_ms = 200

[[reader]]
name = "front-in"
bus = "main"
address = 1
key_file = "front.key"
mode = "card_or_pin"

[[reader]]
name = "front-out"
bus = "main"
address = 2
security = "clear"

[[door]]
id = "front"
entry_reader = "front-in"
exit_reader = "front-out"
strike = { reader = "front-in", output = 0 }
position = { reader = "front-in", input = 0 }
rex = { reader = "front-out", input = 1 }
pulse_s = 4
held_open_s = 20

[storage]
path = "store"

[api]
listen = "127.0.0.1:8080"
api_key_file = "api.key"

[mqtt]
url = "mqtts://broker.example:8883"
tenant = "acme"
hub_id = "hub-1"
ca_file = "ca.pem"
cert_file = "cert.pem"
key_file = "mqtt.key"

[web]
listen = "0.0.0.0:8443"
user = "admin"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$rN1/KvHYctnDCl0Em5fDGg$VhOMKcpGHmFYxzAqxVtgUiZGSTe9nre8dUp61U/1OG0"
"#;

fn with(replace: &str, by: &str) -> String {
    assert!(GOOD.contains(replace), "{replace}");
    GOOD.replacen(replace, by, 1)
}

#[test]
fn a_good_config_is_fully_resolved() {
    let f = Files::new();
    let c = f.parse(GOOD).unwrap();
    assert_eq!(c.site.time_zone, "Europe/Berlin");
    assert_eq!(c.site.dataset_file, Some(f.dir.path().join("site.json")));
    assert_eq!(c.buses.len(), 1);
    let bus = &c.buses[0].config;
    assert_eq!(bus.port, "/dev/ttyUSB0");
    assert_eq!(bus.cp.reply_timeout, Duration::from_millis(200));
    assert!(bus.rs485.is_none());
    let pds: Vec<_> = bus.pds.iter().map(|p| (p.address, &p.security)).collect();
    let want = Key::from_hex(KEY_HEX).unwrap();
    assert!(matches!(pds[0], (1, Security::Secure(k)) if k.expose() == want.expose()));
    assert!(matches!(pds[1], (2, Security::Clear)));
    assert_eq!(c.readers[0].input.mode, InputMode::CardOrPin);
    assert_eq!(c.readers[1].input.mode, InputMode::CardOnly);
    let door = &c.doors[0];
    assert_eq!(door.door, "front");
    assert_eq!(door.entry, ReaderId::new(0, 1, 0));
    assert_eq!(door.exit, Some(ReaderId::new(0, 2, 0)));
    assert_eq!(
        door.strike,
        Point {
            bus: 0,
            pd: 1,
            no: 0
        }
    );
    assert_eq!(
        door.rex,
        Some(Point {
            bus: 0,
            pd: 2,
            no: 1
        })
    );
    assert_eq!(door.config.pulse, Duration::from_secs(4));
    assert_eq!(door.config.held_open_after, Duration::from_secs(20));
    assert!(door.config.has_position_switch);
    assert_eq!(c.storage.path, f.dir.path().join("store"));
    let api = c.api.as_ref().unwrap();
    assert!(api.api_key.matches(b"s3cret-api-key"));
    assert_eq!(c.mqtt.as_ref().unwrap().keepalive, Duration::from_secs(30));
    assert_eq!(c.web.as_ref().unwrap().user, "admin");
    assert_eq!(c.reader_name(&ReaderId::new(0, 2, 0)), Some("front-out"));
}

#[test]
fn the_shipped_examples_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for name in ["hub.toml", "hub-demo.toml"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        // The example's key files live on the hub; here, check everything
        // else by pointing them at readable copies.
        let f = Files::new();
        let text = text
            .replace("/etc/hub/keys/", "")
            .replace("/etc/hub/", "")
            .replace("examples/data/site.json", "site.json")
            .replace("data/site.json", "site.json")
            .replace("/tmp/hub-api.key", "api.key");
        for name in ["front-in.key", "front-out.key", "back.key"] {
            let p = f.dir.path().join(name);
            std::fs::write(&p, KEY_HEX).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        for name in ["mqtt-ca.pem", "hub-cert.pem"] {
            std::fs::write(f.dir.path().join(name), "pem").unwrap();
        }
        let p = f.dir.path().join("hub-key.pem");
        std::fs::write(&p, "pem").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Err(e) = f.parse(&text) {
            panic!("{name}: {e:#?}");
        }
    }
}

#[test]
fn the_packaged_default_config_is_valid() {
    // systemd/hub.toml is /etc/hub/hub.toml in the Debian package: a fresh
    // install must pass `hub check-config` (the unit's ExecStartPre).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/hub.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let c = Files::new().parse(&text).unwrap();
    assert_eq!(c.storage.path, Path::new("/var/lib/hub/store"));
    assert_eq!(c.readers.len(), 1);
    assert!(c.web.is_none() && c.api.is_none() && c.mqtt.is_none());
}

#[test]
fn syntax_errors_name_the_line() {
    let f = Files::new();
    let e = f.error(&with("baud = 9600", "baud = 9600 9600"));
    assert!(matches!(e, ConfigError::Syntax { line: 9, .. }), "{e}");
    // A wrong type and an unknown key are shape errors with their line.
    let e = f.error(&with("baud = 9600", "baud = \"fast\""));
    assert!(matches!(e, ConfigError::Syntax { line: 9, .. }), "{e}");
    let e = f.error(&with("baud = 9600", "baud = 9600\nparity = \"even\""));
    assert!(
        matches!(&e, ConfigError::Syntax { line: 10, message } if message.contains("parity")),
        "{e}"
    );
    // A missing key is named.
    let e = f.error(&with("port = \"/dev/ttyUSB0\"\n", ""));
    assert!(
        matches!(&e, ConfigError::Syntax { message, .. } if message.contains("port")),
        "{e}"
    );
}

#[test]
fn bad_time_zone() {
    let f = Files::new();
    let e = f.error(&with("Europe/Berlin", "Europe/Gotham"));
    assert!(
        matches!(&e, ConfigError::TimeZone { line: 3, name, .. } if name == "Europe/Gotham"),
        "{e}"
    );
    assert_eq!(e.key(), Some("site.time_zone"));
}

#[test]
fn unknown_bus_in_a_reader() {
    let f = Files::new();
    let e = f.error(&with(
        "bus = \"main\"\naddress = 1",
        "bus = \"side\"\naddress = 1",
    ));
    assert!(
        matches!(&e, ConfigError::Unknown { line: 14, kind: "bus", name, .. } if name == "side"),
        "{e}"
    );
    assert_eq!(e.key(), Some("reader.bus"));
}

#[test]
fn unknown_reader_in_a_door() {
    let f = Files::new();
    let e = f.error(&with(
        "exit_reader = \"front-out\"",
        "exit_reader = \"lobby\"",
    ));
    assert!(
        matches!(&e, ConfigError::Unknown { line: 28, kind: "reader", name, .. } if name == "lobby"),
        "{e}"
    );
    let e = f.error(&with(
        "rex = { reader = \"front-out\"",
        "rex = { reader = \"side\"",
    ));
    assert!(
        matches!(
            &e,
            ConfigError::Unknown {
                line: 31,
                kind: "reader",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.key(), Some("door.rex.reader"));
}

#[test]
fn duplicate_address_on_a_bus() {
    let f = Files::new();
    let e = f.error(&with("address = 2", "address = 1"));
    assert!(
        matches!(&e, ConfigError::DuplicateAddress { line: 22, address: 1, other, first_line: 13, .. } if other == "front-in"),
        "{e}"
    );
}

#[test]
fn duplicate_names() {
    let f = Files::new();
    // The door's "front-out" is then unknown too: two errors.
    let errors = f
        .parse(&with("name = \"front-out\"", "name = \"front-in\""))
        .unwrap_err();
    assert!(
        errors.iter().any(|e| matches!(
            e,
            ConfigError::Duplicate {
                line: 20,
                kind: "reader",
                first_line: 13,
                ..
            }
        )),
        "{errors:#?}"
    );
    let two_buses = with(
        "[[reader]]\nname = \"front-in\"",
        "[[bus]]\nname = \"main\"\nport = \"/dev/ttyUSB1\"\n\n[[reader]]\nname = \"front-in\"",
    );
    let e = f.error(&two_buses);
    assert!(
        matches!(
            e,
            ConfigError::Duplicate {
                line: 13,
                kind: "bus",
                first_line: 7,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_reader_wired_to_two_doors() {
    let f = Files::new();
    let text = format!(
        "{GOOD}\n[[door]]\nid = \"back\"\nentry_reader = \"front-in\"\nstrike = {{ reader = \"front-in\", output = 1 }}\n"
    );
    let e = f.error(&text);
    let line = GOOD.lines().count() + 4;
    assert!(
        matches!(&e, ConfigError::ReaderTwice { line: l, door, .. } if *l == line && door == "front"),
        "{e}"
    );
}

#[test]
fn unreadable_or_bad_key_files() {
    let f = Files::new();
    let e = f.error(&with(
        "key_file = \"front.key\"",
        "key_file = \"missing.key\"",
    ));
    assert!(
        matches!(&e, ConfigError::File { line: 16, problem, .. } if problem.contains("cannot read")),
        "{e}"
    );
    // Not a key: the message does not repeat the file's contents.
    std::fs::write(f.dir.path().join("front.key"), "not-a-key-zzzz").unwrap();
    let e = f.error(GOOD);
    assert!(
        matches!(&e, ConfigError::File { line: 16, problem, .. } if problem.contains("32 hex")),
        "{e}"
    );
    assert!(!e.to_string().contains("zzzz"));
    // Readable by others.
    std::fs::write(f.dir.path().join("front.key"), KEY_HEX).unwrap();
    std::fs::set_permissions(
        f.dir.path().join("front.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let e = f.error(GOOD);
    assert!(
        matches!(&e, ConfigError::File { problem, .. } if problem.contains("chmod 600")),
        "{e}"
    );
    assert!(!e.to_string().contains(KEY_HEX));
}

#[test]
fn api_key_file_problems() {
    let f = Files::new();
    std::fs::write(f.dir.path().join("api.key"), "  \n").unwrap();
    let e = f.error(GOOD);
    assert!(
        matches!(&e, ConfigError::File { key, line: 40, .. } if key == "api.api_key_file"),
        "{e}"
    );
}

#[test]
fn reader_security_must_be_chosen() {
    let f = Files::new();
    let e = f.error(&with("security = \"clear\"", "security = \"open\""));
    assert!(
        matches!(&e, ConfigError::Invalid { line: 23, key, .. } if key == "reader.security"),
        "{e}"
    );
    let e = f.error(&with("security = \"clear\"\n", ""));
    assert!(matches!(&e, ConfigError::Invalid { line: 20, .. }), "{e}");
    let e = f.error(&with("mode = \"card_or_pin\"", "security = \"clear\""));
    assert!(matches!(&e, ConfigError::Invalid { line: 17, .. }), "{e}");
}

#[test]
fn out_of_range_values() {
    let f = Files::new();
    for (from, to, key, line) in [
        ("address = 1", "address = 127", "reader.address", 15),
        ("baud = 9600", "baud = 0", "bus.baud", 9),
        (
            "reply_timeout_ms = 200",
            "reply_timeout_ms = 0",
            "bus.reply_timeout_ms",
            10,
        ),
        ("pulse_s = 4", "pulse_s = -1", "door.pulse_s", 32),
        (
            "held_open_s = 20",
            "held_open_s = 7200",
            "door.held_open_s",
            33,
        ),
        (
            "mode = \"card_or_pin\"",
            "mode = \"face\"",
            "reader.mode",
            17,
        ),
        (
            "listen = \"127.0.0.1:8080\"",
            "listen = \"localhost\"",
            "api.listen",
            39,
        ),
        (
            "url = \"mqtts://broker.example:8883\"",
            "url = \"https://x\"",
            "mqtt.url",
            43,
        ),
        (
            "hub_id = \"hub-1\"",
            "hub_id = \"hub/1\"",
            "mqtt.hub_id",
            45,
        ),
        (
            "password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$rN1/KvHYctnDCl0Em5fDGg$VhOMKcpGHmFYxzAqxVtgUiZGSTe9nre8dUp61U/1OG0\"",
            "password_hash = \"hunter2\"",
            "web.password_hash",
            53,
        ),
        (
            "path = \"store\"",
            "path = \"store\"\noutbox_alarm_bytes = 10",
            "storage.outbox_alarm_bytes",
            37,
        ),
    ] {
        let e = f.error(&with(from, to));
        assert!(
            matches!(&e, ConfigError::Invalid { key: k, line: l, .. } if k == key && *l == line),
            "{from} -> {to}: {e}"
        );
    }
    // RS-485 options need rs485 = true.
    let e = f.error(&with("baud = 9600", "baud = 9600\nrs485_rts_low = true"));
    assert!(matches!(&e, ConfigError::Invalid { line: 10, .. }), "{e}");
    let c = f
        .parse(&with(
            "baud = 9600",
            "baud = 9600\nrs485 = true\nrs485_rts_low = true\nrs485_delay_after_ms = 2",
        ))
        .unwrap();
    let rs = c.buses[0].config.rs485.unwrap();
    assert!(!rs.rts_on_send && rs.rts_after_send);
    assert_eq!(rs.delay_after_send_ms, 2);
}

#[test]
fn every_error_is_reported_at_once() {
    let f = Files::new();
    let text = with("Europe/Berlin", "Mars/Olympus").replace("address = 2", "address = 1");
    let errors = f.parse(&text).unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].line() < errors[1].line());
    let shown = ConfigErrors {
        path: "hub.toml".into(),
        errors,
    }
    .to_string();
    assert!(
        shown.starts_with("hub.toml: line 3: site.time_zone"),
        "{shown}"
    );
}

#[test]
fn a_missing_file_is_a_read_error() {
    let e = load("/nonexistent/hub.toml").unwrap_err();
    assert!(matches!(e.errors[..], [ConfigError::Read { .. }]));
}
