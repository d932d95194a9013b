//! Dispatch by target name, for the examples.

/// Every target.
pub const TARGETS: [&str; 6] = [
    "frame_decoder",
    "payload_parse",
    "secure_channel",
    "control_panel",
    "peripheral",
    "card_decode",
];

/// Runs `data` through the harness of `target`.
pub fn run_target(target: &str, data: &[u8]) {
    match target {
        "frame_decoder" => crate::frame_target::run(data),
        "payload_parse" => crate::payload_target::run(data),
        "secure_channel" => crate::sc_target::run(data),
        "control_panel" => crate::cp_target::run(data),
        "peripheral" => crate::pd_target::run(data),
        "card_decode" => crate::card_target::run(data),
        other => panic!("unknown target {other}; known: {TARGETS:?}"),
    }
}
