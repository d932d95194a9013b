//! `payload_parse`: the first byte is a command/reply code, the rest its
//! data block, fed to `Command::parse` and `Reply::parse`.
//!
//! Properties: parsing never panics; a parsed value re-encodes to data that
//! parses back to an equal value with the same code; because both parsers
//! are documented as strict (exact lengths, matching length fields), the
//! re-encoded data is byte-for-byte the input; an `UnknownCode` error is
//! returned exactly for the codes `code_name` does not know.

use osdp::command::{self, Command, CommandError};
use osdp::frame::{Check, PacketBuilder, MAX_PACKET_LEN};
use osdp::reply::{self, Reply, ReplyError};

/// The harness entry point.
pub fn run(data: &[u8]) {
    let Some((&code, body)) = data.split_first() else {
        return;
    };

    match Command::parse(code, body) {
        Ok(c) => {
            assert_eq!(c.code(), code, "parsed command has another code");
            assert!(command::code_name(code).is_some());
            assert_eq!(Some(c.name()), command::code_name(code));
            let _ = format!("{c:?}");
            let enc = c.to_data();
            let again = Command::parse(code, &enc);
            assert_eq!(again.as_ref(), Ok(&c), "command does not round-trip");
            assert_eq!(
                enc, body,
                "strict command parser accepted a non-canonical encoding"
            );
            fits_a_packet(code, &enc);
        }
        Err(e) => {
            let _ = e.to_string();
            let unknown = matches!(e, CommandError::UnknownCode(c) if c == code);
            assert_eq!(
                unknown,
                command::code_name(code).is_none(),
                "UnknownCode mismatch: {e}"
            );
        }
    }

    match Reply::parse(code, body) {
        Ok(r) => {
            assert_eq!(r.code(), code, "parsed reply has another code");
            assert!(reply::code_name(code).is_some());
            assert_eq!(Some(r.name()), reply::code_name(code));
            let _ = format!("{r:?}");
            let enc = r.to_data();
            let again = Reply::parse(code, &enc);
            assert_eq!(again.as_ref(), Ok(&r), "reply does not round-trip");
            assert_eq!(
                enc, body,
                "strict reply parser accepted a non-canonical encoding"
            );
            fits_a_packet(code, &enc);
        }
        Err(e) => {
            let _ = e.to_string();
            let unknown = matches!(e, ReplyError::UnknownCode(c) if c == code);
            assert_eq!(
                unknown,
                reply::code_name(code).is_none(),
                "UnknownCode mismatch: {e}"
            );
        }
    }
}

/// Encoded data short enough for one packet must frame without error.
fn fits_a_packet(code: u8, data: &[u8]) {
    if data.len() + 8 > MAX_PACKET_LEN {
        return;
    }
    let b = PacketBuilder {
        address: 1,
        reply: false,
        sequence: 1,
        check: Check::Crc16,
        mark: false,
        scb: None,
        code,
        data,
    };
    let mut out = Vec::new();
    assert_eq!(b.encode(&mut out, None), Ok(()));
    let p = crate::single_packet(&out);
    assert_eq!(p.code(), code);
    assert_eq!(p.data(), data);
}
