//! `card_decode`: `CardFormatTable::decode(bit_count, data)` on fuzzed bits.
//!
//! Input: a flags byte, then either the data (flag bit 7: the bit count is
//! derived from the data length, `8 * len - (flags & 7)`, so lengths always
//! match) or a little-endian bit count followed by the data.
//!
//! Properties: the decoded card is consistent with its format (fields read
//! at the format's positions, a failed parity names one of its checks), the
//! first-passing-format rule holds, re-encoding a decoded card decodes to
//! the same facility and number with good parity, an unknown length is
//! reported with all its bits, and `CardBits::read` agrees with reading bit
//! by bit.

use osdp::card::{CardBits, CardError, CardFormat, CardFormatTable, DecodedCard, ParityStatus};

use crate::Reader;

/// The harness entry point.
pub fn run(input: &[u8]) {
    let mut r = Reader::new(input);
    let flags = r.u8();
    let (bits, data) = if flags & 0x80 != 0 {
        let data = r.rest();
        let n = (data.len() * 8).saturating_sub(usize::from(flags & 7));
        (u16::try_from(n).unwrap_or(u16::MAX), data)
    } else {
        let bits = r.u16();
        (bits, r.rest())
    };

    let builtin = CardFormatTable::builtin();
    check_table(&builtin, bits, data);

    let mut site = CardFormatTable::builtin();
    site.add(CardFormat::h10304());
    let card = check_table(&site, bits, data);
    if let Some(card) = card {
        if bits == 37 {
            // The site format goes ahead of H10302, which has the same parity.
            assert_eq!(card.format, Some(osdp::card::H10304));
        }
    }

    if let Ok(cb) = CardBits::new(bits, data) {
        check_read(&cb, data);
    }
}

fn check_table<'t>(table: &'t CardFormatTable, bits: u16, data: &[u8]) -> Option<DecodedCard<'t>> {
    let expected_len = usize::from(bits).div_ceil(8);
    let same_length: Vec<&CardFormat> = table
        .formats()
        .iter()
        .filter(|f| f.bit_length() == bits)
        .collect();
    let card = match table.decode(bits, data) {
        Ok(card) => card,
        Err(e) => {
            let _ = e.to_string();
            match e {
                CardError::Empty => assert_eq!(bits, 0),
                CardError::LengthMismatch {
                    bit_count,
                    expected,
                    actual,
                } => {
                    assert_eq!(
                        (bit_count, expected, actual),
                        (bits, expected_len, data.len())
                    );
                    assert_ne!(expected, actual);
                }
                CardError::Unrecognized { bit_count } => {
                    assert_eq!(bit_count, bits);
                    assert!(bits > 64 && same_length.is_empty());
                }
                other => panic!("decode returned an encoding error: {other:?}"),
            }
            return None;
        }
    };
    assert!(bits > 0 && data.len() == expected_len);
    assert_eq!(card.bit_count, bits);
    let _ = format!("{card:?}");
    let cb = CardBits::new(bits, data).expect("decoded bits must be valid");

    let Some(name) = card.format else {
        assert!(same_length.is_empty(), "known length decoded as unknown");
        assert!(bits <= 64);
        assert_eq!(Some(card.number), cb.read(0, bits as u8));
        assert_eq!(card.facility, None);
        assert_eq!(card.parity, ParityStatus::NotApplicable);
        return Some(card);
    };

    // Which format must have won: the first passing one, else the first.
    let decoded: Vec<DecodedCard<'_>> = same_length
        .iter()
        .map(|f| f.decode(&cb).expect("format of this length must decode"))
        .collect();
    let winner = decoded
        .iter()
        .find(|c| c.parity.passed())
        .or(decoded.first())
        .expect("a named format has this length");
    assert_eq!(&card, winner, "first-passing-format rule violated");

    let format = same_length
        .iter()
        .find(|f| f.name() == name)
        .expect("decoded format is in the table");
    assert_eq!(card.facility.is_some(), format.facility().is_some());
    assert_eq!(Some(card.number), cb.field(format.card_number()));
    if let Some(f) = format.facility() {
        assert_eq!(card.facility, cb.field(f));
    }
    match card.parity {
        ParityStatus::Failed { check, bit } => {
            assert_eq!(format.parity_checks().get(check).map(|c| c.bit), Some(bit));
        }
        ParityStatus::Ok => assert!(!format.parity_checks().is_empty()),
        ParityStatus::NotApplicable => assert!(format.parity_checks().is_empty()),
    }

    // Re-encode the decoded values: same length, same values, good parity.
    let (bits2, data2) = match format.encode(card.facility, card.number) {
        Ok(v) => v,
        Err(e) => panic!("decoded card does not re-encode: {e}"),
    };
    assert_eq!(bits2, bits);
    let cb2 = CardBits::new(bits2, &data2).expect("encoder output must be valid bits");
    let again = format.decode(&cb2).expect("re-encoded card must decode");
    assert_eq!((again.facility, again.number), (card.facility, card.number));
    assert!(again.parity.passed(), "encoder wrote bad parity");
    if card.parity == ParityStatus::Ok {
        // Parity held on the read, so the parity bits match the encoder's.
        for check in format.parity_checks() {
            assert_eq!(
                cb.bit(check.bit),
                cb2.bit(check.bit),
                "parity bit {}",
                check.bit
            );
        }
    }
    Some(card)
}

fn check_read(cb: &CardBits<'_>, data: &[u8]) {
    let bits = cb.bit_count();
    let start = (u32::from(data.first().copied().unwrap_or(0)) % (u32::from(bits) + 1)) as u16;
    let len = data.get(1).copied().unwrap_or(1) % 66;
    let manual = || {
        if len == 0 || len > 64 || u32::from(start) + u32::from(len) > u32::from(bits) {
            return None;
        }
        let mut acc = 0u64;
        for pos in start..start + u16::from(len) {
            acc = (acc << 1) | u64::from(cb.bit(pos)?);
        }
        Some(acc)
    };
    assert_eq!(
        cb.read(start, len),
        manual(),
        "read({start}, {len}) of {bits} bits"
    );
    assert_eq!(cb.bit(bits), None);
    for pos in 0..bits.min(64) {
        let byte = data[usize::from(pos / 8)];
        assert_eq!(cb.bit(pos), Some(byte & (0x80 >> (pos % 8)) != 0));
    }
}
