//! A door's reader played by a libosdp PD ([`crate::libosdp_pd`]): the card
//! bits a test presents, what the hub tells the PD (strike relay, LEDs), and
//! the data set the door tests enforce.
//!
//! Present a card with `peer.send(json!({"do": "card", "addr": 1, "bits": 26,
//! "hex": h10301(12, 34567)}))`, then wait for the hub's answer at the PD
//! with [`command_at_pd`], e.g. `is_cmd(c, "output") && c["control_code"] ==
//! json!(OUT_ON)` for the strike release.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use crate::{is, json, JsonProc, Value};

/// OSDP output control code "permanent on, abort timed" (strike released).
pub const OUT_ON: u64 = 2;
/// OSDP output control code "permanent off, abort timed" (locked again).
pub const OUT_OFF: u64 = 1;
/// LED colour red as the harness reports it (denied).
pub const RED: u64 = 1;
/// LED colour green as the harness reports it (granted).
pub const GREEN: u64 = 2;

/// Ann's card, H10301 facility 12 number 34567 (`"12:34567"` in the data
/// set): `(facility, number)`.
pub const ANN_CARD: (u32, u32) = (12, 34567);
/// Ann's PIN.
pub const ANN_PIN: &str = "4321";

/// Ann (user 201) has card 12:34567 and PIN 4321 and a membership for the
/// front and the back door. A courier has the one-time access code 8642 at
/// the front door.
pub const DATA_SET: &str = r#"{
  "site": {"id": "e2e-site", "name": "E2E", "time_zone": "UTC"},
  "doors": [{"id": "front", "name": "Front Door", "membership_type_ids": [1]},
            {"id": "back", "name": "Back Door", "membership_type_ids": [1]}],
  "users": [{
    "id": "201", "first_name": "Ann", "last_name": "Lee",
    "door_access_id": "12:34567",
    "memberships": [{"id": 1, "type_id": 1, "type_name": "Monthly",
                     "expires": "2099-01-01T00:00:00Z", "door_ids": ["front", "back"]}]
  }],
  "credentials": [
    {"id": "c-ann-pin", "user": "201", "access_method": "code", "code": "4321"}
  ],
  "access_codes": [
    {"id": "code-courier", "door": "front", "name": "Courier", "code": "8642",
     "one_time_use": true, "created_at": "2026-01-01T00:00:00Z"}
  ]
}"#;

/// H10301 (26-bit Wiegand) bits for facility and number, left-justified in
/// four bytes, as hex.
pub fn h10301(facility: u32, number: u32) -> String {
    let data = (facility & 0xFF) << 16 | (number & 0xFFFF);
    let even = (data >> 12).count_ones() % 2; // makes the first half even
    let odd = 1 - (data & 0xFFF).count_ones() % 2; // makes the second half odd
    let bits = even << 25 | data << 1 | odd;
    format!("{:08x}", bits << 6)
}

/// The harness line that presents `card` (facility, number) at the PD at
/// address 1.
pub fn card(card: (u32, u32)) -> Value {
    json!({"do": "card", "addr": 1, "bits": 26, "hex": h10301(card.0, card.1)})
}

/// Waits (up to 15 s) for a command to the PD at address 1 that satisfies
/// `pred`, not returned by an earlier wait; returns the command.
pub fn command_at_pd(peer: &mut JsonProc, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let v = peer.wait_for(what, Duration::from_secs(15), |v| {
        is(v, "pd", json!(1)) && v.get("command").is_some() && pred(&v["command"])
    });
    v["command"].clone()
}

/// Whether a reported command is `cmd` (`output`, `led`, `buzzer`...).
pub fn is_cmd(c: &Value, cmd: &str) -> bool {
    c["cmd"] == json!(cmd)
}

/// Whether a reported command releases strike output `output_no`.
pub fn is_release(c: &Value, output_no: u64) -> bool {
    is_cmd(c, "output") && c["control_code"] == json!(OUT_ON) && c["output_no"] == json!(output_no)
}

/// Whether a reported command turns the LED `color`.
pub fn is_led(c: &Value, color: u64) -> bool {
    is_cmd(c, "led") && c["on_color"] == json!(color)
}
