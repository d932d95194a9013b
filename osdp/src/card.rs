//! Card formats: turning the bits of a card read into a facility code and a
//! card number, checking their parity, and building card bits for a reader to
//! present.
//!
//! A reader reports a card in an `osdp_RAW` reply (0x50) as a bit count and
//! the bits themselves: the first bit on the wire is the most significant bit
//! of the first byte, and the last byte is padded with zeros, so `n` bits take
//! `ceil(n / 8)` bytes. [`CardBits`] is a checked view of such a read.
//!
//! What the bits mean is a *card format*. Formats are plain data
//! ([`CardFormatSpec`]: a bit length, a facility code field, a card number
//! field and a list of [`ParityCheck`]s) so a site can describe its own in
//! configuration; [`CardFormat::new`] validates a spec once, and decoding then
//! needs no further checks. Bit positions are counted from 0 at the first
//! (leftmost) bit on the wire; HID's format documents count from 1.
//!
//! [`CardFormatTable::builtin`] knows HID H10301 (26-bit), H10306 (34-bit),
//! Corporate 1000 35-bit, H10302 and H10304 (37-bit), Corporate 1000 48-bit,
//! and raw card serial numbers of 32 and 56 bits (no parity). Site formats
//! added with [`CardFormatTable::add`] are tried before the built-ins. When
//! several formats have the card's bit length, the first whose parity holds
//! wins; if none holds, the card is reported against the first one with
//! [`ParityStatus::Failed`], so a misread never passes as a valid card.
//!
//! H10302 and H10304 have the same length and the same parity bits, so the
//! bits cannot tell them apart: the built-in table lists H10302 first and
//! always picks it. A site that issues H10304 cards adds
//! [`CardFormat::h10304`] to its table, which puts it ahead of the built-ins.
//!
//! ```
//! use osdp::card::{encode, CardFormat, CardFormatTable, ParityStatus};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let table = CardFormatTable::builtin();
//!
//! // What a virtual reader presents: H10301, facility 123, card 4567.
//! let (bits, data) = encode(&CardFormat::h10301(), Some(123), 4567)?;
//! assert_eq!((bits, data.as_slice()), (26, &[0xBD, 0x88, 0xEB, 0x80][..]));
//!
//! // What the hub does with an osdp_RAW reply.
//! let card = table.decode(bits, &data)?;
//! assert_eq!(card.format, Some("H10301"));
//! assert_eq!((card.facility, card.number), (Some(123), 4567));
//! assert_eq!(card.parity, ParityStatus::Ok);
//! # Ok(())
//! # }
//! ```

use std::ops::RangeInclusive;

use thiserror::Error;

/// Name of HID H10301, the 26-bit format (8-bit facility, 16-bit card).
pub const H10301: &str = "H10301";
/// Name of HID H10306, 34-bit (16-bit facility, 16-bit card).
pub const H10306: &str = "H10306";
/// Name of HID Corporate 1000 35-bit (12-bit company ID, 20-bit card).
pub const C1000_35: &str = "C1000-35";
/// Name of HID H10302, 37-bit (35-bit card number, no facility).
pub const H10302: &str = "H10302";
/// Name of HID H10304, 37-bit (16-bit facility, 19-bit card).
pub const H10304: &str = "H10304";
/// Name of HID Corporate 1000 48-bit (22-bit company ID, 23-bit card).
pub const C1000_48: &str = "C1000-48";
/// Name of a raw 32-bit card serial number (e.g. a MIFARE 4-byte UID).
pub const CSN_32: &str = "CSN-32";
/// Name of a raw 56-bit card serial number (e.g. a MIFARE 7-byte UID).
pub const CSN_56: &str = "CSN-56";

/// Widest facility code or card number field, in bits.
pub const MAX_FIELD_BITS: u8 = 64;

/// Corporate 1000 35-bit, bit 1: even parity over bits 2-3, 5-6, .., 32-33
/// (every bit from 2 to 33 except 4, 7, .., 31), as a mask over the card bits.
const C1000_35_EVEN_MASK: [u8; 5] = [0x36, 0xDB, 0x6D, 0xB6, 0xC0];
/// Corporate 1000 35-bit, bit 34: odd parity over bits 1-2, 4-5, .., 31-32
/// (every bit from 1 to 32 except 3, 6, .., 30). It covers parity bit 1.
const C1000_35_ODD_MASK: [u8; 5] = [0x6D, 0xB6, 0xDB, 0x6D, 0x80];
/// Corporate 1000 48-bit, bit 1: even parity over bits 3-4, 6-7, .., 45-46
/// (every bit from 3 to 46 except 5, 8, .., 44).
const C1000_48_EVEN_MASK: [u8; 6] = [0x1B, 0x6D, 0xB6, 0xDB, 0x6D, 0xB6];
/// Corporate 1000 48-bit, bit 47: odd parity over bits 2-3, 5-6, .., 44-45
/// (every bit from 2 to 45 except 4, 7, .., 43).
const C1000_48_ODD_MASK: [u8; 6] = [0x36, 0xDB, 0x6D, 0xB6, 0xDB, 0x6C];

/// Bytes that carry `bits` bits, left-justified.
fn byte_len(bits: u16) -> usize {
    usize::from(bits).div_ceil(8)
}

/// Mask selecting bit `pos` (counted from the MSB) within its byte.
fn bit_mask(pos: u16) -> u8 {
    0x80 >> (pos % 8)
}

/// A card read as reported in `osdp_RAW`: `bit_count` bits, left-justified
/// (first bit in the MSB of the first byte) in exactly `ceil(bit_count / 8)`
/// bytes. Padding bits after the last card bit are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardBits<'a> {
    bit_count: u16,
    data: &'a [u8],
}

impl<'a> CardBits<'a> {
    /// Checks that `data` is exactly as long as `bit_count` bits need.
    pub fn new(bit_count: u16, data: &'a [u8]) -> Result<Self, CardError> {
        if bit_count == 0 {
            return Err(CardError::Empty);
        }
        let expected = byte_len(bit_count);
        if data.len() != expected {
            return Err(CardError::LengthMismatch {
                bit_count,
                expected,
                actual: data.len(),
            });
        }
        Ok(Self { bit_count, data })
    }

    /// Number of card bits.
    pub fn bit_count(&self) -> u16 {
        self.bit_count
    }

    /// The bytes holding the bits, padding included.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Bit `pos` (0 = first on the wire), or `None` past the last card bit.
    pub fn bit(&self, pos: u16) -> Option<bool> {
        if pos >= self.bit_count {
            return None;
        }
        let byte = self.data.get(usize::from(pos / 8))?;
        Some(byte & bit_mask(pos) != 0)
    }

    /// `len` bits starting at `start`, first bit most significant; `None`
    /// if `len` is 0 or above 64, or the range runs past the last card bit.
    pub fn read(&self, start: u16, len: u8) -> Option<u64> {
        if len == 0 || len > MAX_FIELD_BITS {
            return None;
        }
        let mut pos = usize::from(start);
        let end = pos + usize::from(len);
        if end > usize::from(self.bit_count) {
            return None;
        }
        let mut acc = 0u64;
        while pos < end {
            let byte = *self.data.get(pos / 8)?;
            let offset = pos % 8;
            let take = (8 - offset).min(end - pos);
            // Drop the bits before `pos`, then keep the top `take` bits.
            let chunk = (byte << offset) >> (8 - take);
            acc = (acc << take) | u64::from(chunk);
            pos += take;
        }
        Some(acc)
    }

    /// The value of `field`, as [`CardBits::read`].
    pub fn field(&self, field: BitField) -> Option<u64> {
        self.read(field.start, field.len)
    }
}

/// A run of bits holding a number, first bit most significant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BitField {
    /// Position of the first (most significant) bit.
    pub start: u16,
    /// Width in bits, 1 to 64.
    pub len: u8,
}

impl BitField {
    /// A field of `len` bits starting at bit `start`.
    pub const fn new(start: u16, len: u8) -> Self {
        Self { start, len }
    }

    /// One past the last bit of the field.
    pub fn end(&self) -> u32 {
        u32::from(self.start) + u32::from(self.len)
    }

    /// Whether bit `pos` lies inside the field.
    pub fn contains(&self, pos: u16) -> bool {
        pos >= self.start && u32::from(pos) < self.end()
    }

    fn overlaps(&self, other: &BitField) -> bool {
        u32::from(self.start) < other.end() && u32::from(other.start) < self.end()
    }
}

/// Whether a parity bit makes the number of ones even or odd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Parity {
    /// The parity bit and the bits it covers hold an even number of ones.
    Even,
    /// The parity bit and the bits it covers hold an odd number of ones.
    Odd,
}

/// One parity bit and the set of bits it covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParityCheck {
    /// Position of the parity bit.
    pub bit: u16,
    /// Even or odd.
    pub parity: Parity,
    /// Positions of the covered bits, in any order, each once. They may
    /// include other checks' parity bits (Corporate 1000 does).
    pub covers: Vec<u16>,
}

impl ParityCheck {
    /// A check at `bit` over the contiguous bits `covers` (both ends included,
    /// as format documents write them).
    pub fn over_range(bit: u16, parity: Parity, covers: RangeInclusive<u16>) -> Self {
        Self {
            bit,
            parity,
            covers: covers.collect(),
        }
    }

    /// A check at `bit` over an arbitrary set of bit positions.
    pub fn over_bits(bit: u16, parity: Parity, covers: impl IntoIterator<Item = u16>) -> Self {
        Self {
            bit,
            parity,
            covers: covers.into_iter().collect(),
        }
    }

    /// A check at `bit` over the bits set in `mask`, laid out like the card
    /// data (bit 0 is the MSB of the first byte).
    pub fn over_mask(bit: u16, parity: Parity, mask: &[u8]) -> Self {
        let covers = mask
            .iter()
            .enumerate()
            .flat_map(|(index, byte)| {
                (0..8usize)
                    .filter(move |k| byte & (0x80 >> k) != 0)
                    // A position past u16 cannot be a card bit; u16::MAX
                    // makes validation reject it rather than drop it.
                    .map(move |k| u16::try_from(index * 8 + k).unwrap_or(u16::MAX))
            })
            .collect();
        Self {
            bit,
            parity,
            covers,
        }
    }

    /// Whether the check holds for `bits` (bits past the end count as zero).
    fn holds(&self, bits: &CardBits<'_>) -> bool {
        let odd = self
            .covers
            .iter()
            .fold(bits.bit(self.bit) == Some(true), |odd, &pos| {
                odd ^ (bits.bit(pos) == Some(true))
            });
        match self.parity {
            Parity::Even => !odd,
            Parity::Odd => odd,
        }
    }
}

/// A card format as plain data, e.g. as read from site configuration; turn it
/// into a usable [`CardFormat`] with [`CardFormat::new`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CardFormatSpec {
    /// Name reported with decoded cards.
    pub name: String,
    /// Number of bits on the wire.
    pub bit_length: u16,
    /// Facility code (site code, company ID) field, if the format has one.
    pub facility: Option<BitField>,
    /// Card number field.
    pub card_number: BitField,
    /// Parity checks; empty for formats without parity.
    pub parity: Vec<ParityCheck>,
}

/// A validated card format: fields and parity bits lie within its length,
/// fields are at most 64 bits and do not overlap each other or a parity bit,
/// and the parity bits can be computed in some order when encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardFormat {
    spec: CardFormatSpec,
    /// Indices into `spec.parity`, each check after those whose parity bits
    /// it covers.
    encode_order: Vec<usize>,
}

impl TryFrom<CardFormatSpec> for CardFormat {
    type Error = FormatError;

    fn try_from(spec: CardFormatSpec) -> Result<Self, FormatError> {
        Self::new(spec)
    }
}

impl CardFormat {
    /// Validates `spec`.
    pub fn new(spec: CardFormatSpec) -> Result<Self, FormatError> {
        let encode_order = validate(&spec)?;
        Ok(Self { spec, encode_order })
    }

    /// A built-in format whose checks are listed in encoding order; the
    /// tests check every built-in against [`CardFormat::new`].
    fn trusted(spec: CardFormatSpec) -> Self {
        let encode_order = (0..spec.parity.len()).collect();
        Self { spec, encode_order }
    }

    /// The format's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Number of bits on the wire.
    pub fn bit_length(&self) -> u16 {
        self.spec.bit_length
    }

    /// The facility code field, if any.
    pub fn facility(&self) -> Option<BitField> {
        self.spec.facility
    }

    /// The card number field.
    pub fn card_number(&self) -> BitField {
        self.spec.card_number
    }

    /// The parity checks, in the order given in the spec.
    pub fn parity_checks(&self) -> &[ParityCheck] {
        &self.spec.parity
    }

    /// The plain-data description of the format.
    pub fn spec(&self) -> &CardFormatSpec {
        &self.spec
    }

    /// Parity of `bits`, which must be of this format's length.
    fn parity_status(&self, bits: &CardBits<'_>) -> ParityStatus {
        if self.spec.parity.is_empty() {
            return ParityStatus::NotApplicable;
        }
        match self
            .spec
            .parity
            .iter()
            .enumerate()
            .find(|(_, check)| !check.holds(bits))
        {
            Some((index, check)) => ParityStatus::Failed {
                check: index,
                bit: check.bit,
            },
            None => ParityStatus::Ok,
        }
    }

    /// Reads `bits` as this format; `None` if the bit count differs.
    pub fn decode<'t>(&'t self, bits: &CardBits<'_>) -> Option<DecodedCard<'t>> {
        if bits.bit_count() != self.bit_length() {
            return None;
        }
        let facility = match self.spec.facility {
            Some(field) => Some(bits.field(field)?),
            None => None,
        };
        Some(DecodedCard {
            format: Some(self.name()),
            bit_count: bits.bit_count(),
            facility,
            number: bits.field(self.spec.card_number)?,
            parity: self.parity_status(bits),
        })
    }

    /// Builds the card bits for `facility` and `number`, parity included, as
    /// `(bit_count, left-justified bytes)`. `facility` must be `Some` exactly
    /// when the format has a facility field; bits outside every field and
    /// parity bit are zero.
    pub fn encode(&self, facility: Option<u64>, number: u64) -> Result<(u16, Vec<u8>), CardError> {
        let mut data = vec![0u8; byte_len(self.bit_length())];
        match (self.spec.facility, facility) {
            (Some(field), Some(value)) => write_field(&mut data, field, value, "facility code")?,
            (Some(_), None) => return Err(CardError::MissingFacility),
            (None, Some(_)) => return Err(CardError::UnexpectedFacility),
            (None, None) => {}
        }
        write_field(&mut data, self.spec.card_number, number, "card number")?;
        for check in self
            .encode_order
            .iter()
            .filter_map(|&i| self.spec.parity.get(i))
        {
            let odd = check
                .covers
                .iter()
                .fold(false, |odd, &pos| odd ^ get_bit(&data, pos));
            let set = match check.parity {
                Parity::Even => odd,
                Parity::Odd => !odd,
            };
            set_bit(&mut data, check.bit, set);
        }
        Ok((self.bit_length(), data))
    }

    /// HID H10301, 26 bits: `E FFFFFFFF CCCCCCCCCCCCCCCC O`. Bit 0 is even
    /// parity over bits 1-12, bit 25 odd parity over bits 13-24.
    pub fn h10301() -> Self {
        Self::trusted(CardFormatSpec {
            name: H10301.to_owned(),
            bit_length: 26,
            facility: Some(BitField::new(1, 8)),
            card_number: BitField::new(9, 16),
            parity: vec![
                ParityCheck::over_range(0, Parity::Even, 1..=12),
                ParityCheck::over_range(25, Parity::Odd, 13..=24),
            ],
        })
    }

    /// HID H10306, 34 bits: even parity bit, 16-bit facility, 16-bit card,
    /// odd parity bit. Bit 0 is even over bits 1-16, bit 33 odd over 17-32.
    pub fn h10306() -> Self {
        Self::trusted(CardFormatSpec {
            name: H10306.to_owned(),
            bit_length: 34,
            facility: Some(BitField::new(1, 16)),
            card_number: BitField::new(17, 16),
            parity: vec![
                ParityCheck::over_range(0, Parity::Even, 1..=16),
                ParityCheck::over_range(33, Parity::Odd, 17..=32),
            ],
        })
    }

    /// HID Corporate 1000 35-bit: `O E` + 12-bit company ID (bits 2-13) +
    /// 20-bit card (bits 14-33) + `O`. Bit 1 is even parity over bits 2-3,
    /// 5-6, .., 32-33; bit 34 odd over bits 1-2, 4-5, .., 31-32; bit 0 odd
    /// over all of bits 1-34.
    pub fn corporate_1000_35() -> Self {
        Self::trusted(CardFormatSpec {
            name: C1000_35.to_owned(),
            bit_length: 35,
            facility: Some(BitField::new(2, 12)),
            card_number: BitField::new(14, 20),
            parity: vec![
                ParityCheck::over_mask(1, Parity::Even, &C1000_35_EVEN_MASK),
                ParityCheck::over_mask(34, Parity::Odd, &C1000_35_ODD_MASK),
                ParityCheck::over_range(0, Parity::Odd, 1..=34),
            ],
        })
    }

    /// HID H10302, 37 bits: even parity bit, 35-bit card number, odd parity
    /// bit. Bit 0 is even over bits 1-18, bit 36 odd over bits 18-35 (bit 18
    /// is in both).
    pub fn h10302() -> Self {
        Self::trusted(CardFormatSpec {
            name: H10302.to_owned(),
            bit_length: 37,
            facility: None,
            card_number: BitField::new(1, 35),
            parity: vec![
                ParityCheck::over_range(0, Parity::Even, 1..=18),
                ParityCheck::over_range(36, Parity::Odd, 18..=35),
            ],
        })
    }

    /// HID H10304, 37 bits: even parity bit, 16-bit facility, 19-bit card,
    /// odd parity bit; the same parity bits as [`CardFormat::h10302`].
    pub fn h10304() -> Self {
        Self::trusted(CardFormatSpec {
            name: H10304.to_owned(),
            bit_length: 37,
            facility: Some(BitField::new(1, 16)),
            card_number: BitField::new(17, 19),
            parity: vec![
                ParityCheck::over_range(0, Parity::Even, 1..=18),
                ParityCheck::over_range(36, Parity::Odd, 18..=35),
            ],
        })
    }

    /// HID Corporate 1000 48-bit: `O E` + 22-bit company ID (bits 2-23) +
    /// 23-bit card (bits 24-46) + `O`. Bit 1 is even parity over bits 3-4,
    /// 6-7, .., 45-46; bit 47 odd over bits 2-3, 5-6, .., 44-45; bit 0 odd
    /// over all of bits 1-47.
    pub fn corporate_1000_48() -> Self {
        Self::trusted(CardFormatSpec {
            name: C1000_48.to_owned(),
            bit_length: 48,
            facility: Some(BitField::new(2, 22)),
            card_number: BitField::new(24, 23),
            parity: vec![
                ParityCheck::over_mask(1, Parity::Even, &C1000_48_EVEN_MASK),
                ParityCheck::over_mask(47, Parity::Odd, &C1000_48_ODD_MASK),
                ParityCheck::over_range(0, Parity::Odd, 1..=47),
            ],
        })
    }

    /// A raw 32-bit card serial number: the whole payload, no parity.
    pub fn csn_32() -> Self {
        Self::raw(CSN_32, 32)
    }

    /// A raw 56-bit card serial number: the whole payload, no parity.
    pub fn csn_56() -> Self {
        Self::raw(CSN_56, 56)
    }

    fn raw(name: &str, len: u8) -> Self {
        Self::trusted(CardFormatSpec {
            name: name.to_owned(),
            bit_length: u16::from(len),
            facility: None,
            card_number: BitField::new(0, len),
            parity: Vec::new(),
        })
    }
}

/// Builds card bits for `format`; see [`CardFormat::encode`].
pub fn encode(
    format: &CardFormat,
    facility: Option<u64>,
    number: u64,
) -> Result<(u16, Vec<u8>), CardError> {
    format.encode(facility, number)
}

fn get_bit(data: &[u8], pos: u16) -> bool {
    data.get(usize::from(pos / 8))
        .is_some_and(|byte| byte & bit_mask(pos) != 0)
}

fn set_bit(data: &mut [u8], pos: u16, value: bool) {
    if let Some(byte) = data.get_mut(usize::from(pos / 8)) {
        if value {
            *byte |= bit_mask(pos);
        } else {
            *byte &= !bit_mask(pos);
        }
    }
}

fn write_field(
    data: &mut [u8],
    field: BitField,
    value: u64,
    name: &'static str,
) -> Result<(), CardError> {
    if field.len < MAX_FIELD_BITS && value >> field.len != 0 {
        return Err(CardError::ValueTooWide {
            field: name,
            value,
            width: field.len,
        });
    }
    for i in 0..field.len {
        let shift = field.len - 1 - i;
        set_bit(data, field.start + u16::from(i), (value >> shift) & 1 != 0);
    }
    Ok(())
}

fn check_field(field: BitField, name: &'static str, bit_length: u16) -> Result<(), FormatError> {
    if field.len == 0 || field.len > MAX_FIELD_BITS {
        return Err(FormatError::FieldWidth {
            field: name,
            len: field.len,
        });
    }
    if field.end() > u32::from(bit_length) {
        return Err(FormatError::FieldOutOfRange {
            field: name,
            start: field.start,
            len: field.len,
            bit_length,
        });
    }
    Ok(())
}

/// Checks `spec` and returns the order in which to compute its parity bits.
fn validate(spec: &CardFormatSpec) -> Result<Vec<usize>, FormatError> {
    if spec.name.trim().is_empty() {
        return Err(FormatError::EmptyName);
    }
    let length = spec.bit_length;
    if length == 0 {
        return Err(FormatError::ZeroLength);
    }
    if let Some(facility) = spec.facility {
        check_field(facility, "facility code", length)?;
        if facility.overlaps(&spec.card_number) {
            return Err(FormatError::FieldsOverlap);
        }
    }
    check_field(spec.card_number, "card number", length)?;

    let in_field =
        |pos: u16| spec.card_number.contains(pos) || spec.facility.is_some_and(|f| f.contains(pos));
    let mut seen = vec![false; usize::from(length)];
    for (index, check) in spec.parity.iter().enumerate() {
        let bit = check.bit;
        if bit >= length {
            return Err(FormatError::ParityBitOutOfRange { check: index, bit });
        }
        if in_field(bit) {
            return Err(FormatError::ParityBitInField { check: index, bit });
        }
        if spec.parity[..index].iter().any(|other| other.bit == bit) {
            return Err(FormatError::DuplicateParityBit { bit });
        }
        if check.covers.is_empty() {
            return Err(FormatError::EmptyCoverage { check: index });
        }
        seen.fill(false);
        for &pos in &check.covers {
            if pos >= length {
                return Err(FormatError::CoveredBitOutOfRange {
                    check: index,
                    bit: pos,
                });
            }
            if pos == bit {
                return Err(FormatError::ParityCoversItself { check: index, bit });
            }
            let Some(slot) = seen.get_mut(usize::from(pos)) else {
                continue;
            };
            if *slot {
                return Err(FormatError::DuplicateCoveredBit {
                    check: index,
                    bit: pos,
                });
            }
            *slot = true;
        }
    }

    // A check that covers another check's parity bit must be computed after
    // it: order the checks so that holds, refusing cycles.
    let owner = |pos: u16| spec.parity.iter().position(|c| c.bit == pos);
    let mut done = vec![false; spec.parity.len()];
    let mut order = Vec::with_capacity(spec.parity.len());
    while order.len() < spec.parity.len() {
        let before = order.len();
        for (index, check) in spec.parity.iter().enumerate() {
            if done[index] {
                continue;
            }
            let ready = check
                .covers
                .iter()
                .all(|&pos| owner(pos).is_none_or(|other| done[other]));
            if ready {
                done[index] = true;
                order.push(index);
            }
        }
        if order.len() == before {
            let check = done.iter().position(|d| !d).unwrap_or(0);
            return Err(FormatError::ParityCycle { check });
        }
    }
    Ok(order)
}

/// Outcome of a card's parity checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParityStatus {
    /// Every parity check of the format holds.
    Ok,
    /// A parity check fails: the card was misread or is not of this format.
    Failed {
        /// Index of the first failing check in [`CardFormat::parity_checks`].
        check: usize,
        /// Position of that check's parity bit.
        bit: u16,
    },
    /// The format has no parity (raw serial numbers, unknown formats).
    NotApplicable,
}

impl ParityStatus {
    /// Whether the card may be trusted: parity holds or does not apply.
    pub fn passed(&self) -> bool {
        !matches!(self, ParityStatus::Failed { .. })
    }
}

/// A decoded card read. Borrows the format name from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecodedCard<'t> {
    /// Name of the matched format; `None` when no format has this bit count.
    pub format: Option<&'t str>,
    /// Number of bits read.
    pub bit_count: u16,
    /// Facility code, for formats that have one.
    pub facility: Option<u64>,
    /// Card number; for an unknown format, all the bits as one number.
    pub number: u64,
    /// Parity outcome.
    pub parity: ParityStatus,
}

/// An ordered set of card formats: site formats first, then built-ins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardFormatTable {
    formats: Vec<CardFormat>,
    /// How many of `formats` (at the front) are site formats.
    site: usize,
}

impl Default for CardFormatTable {
    fn default() -> Self {
        Self::builtin()
    }
}

impl CardFormatTable {
    /// A table with no formats: every card decodes as unknown.
    pub fn empty() -> Self {
        Self {
            formats: Vec::new(),
            site: 0,
        }
    }

    /// The built-in formats: H10301, H10306, Corporate 1000 35-bit, H10302,
    /// H10304, Corporate 1000 48-bit, CSN 32 and CSN 56.
    pub fn builtin() -> Self {
        Self {
            formats: vec![
                CardFormat::h10301(),
                CardFormat::h10306(),
                CardFormat::corporate_1000_35(),
                CardFormat::h10302(),
                CardFormat::h10304(),
                CardFormat::corporate_1000_48(),
                CardFormat::csn_32(),
                CardFormat::csn_56(),
            ],
            site: 0,
        }
    }

    /// Adds a site format, tried after earlier site formats and before every
    /// built-in one.
    pub fn add(&mut self, format: CardFormat) {
        let at = self.site.min(self.formats.len());
        self.formats.insert(at, format);
        self.site = at + 1;
    }

    /// The formats, in the order they are tried.
    pub fn formats(&self) -> &[CardFormat] {
        &self.formats
    }

    /// The first format called `name`.
    pub fn get(&self, name: &str) -> Option<&CardFormat> {
        self.formats.iter().find(|f| f.name() == name)
    }

    /// Decodes an `osdp_RAW` card read. Of the formats with this bit count,
    /// the first whose parity holds wins; failing that, the first one is
    /// reported with [`ParityStatus::Failed`]. A card no format matches comes
    /// back with `format: None` and all its bits as the number, or as
    /// [`CardError::Unrecognized`] if it is longer than 64 bits.
    pub fn decode(&self, bit_count: u16, data: &[u8]) -> Result<DecodedCard<'_>, CardError> {
        let bits = CardBits::new(bit_count, data)?;
        let mut first_failed = None;
        for format in &self.formats {
            let Some(card) = format.decode(&bits) else {
                continue;
            };
            if card.parity.passed() {
                return Ok(card);
            }
            first_failed.get_or_insert(card);
        }
        if let Some(card) = first_failed {
            return Ok(card);
        }
        let number = u8::try_from(bit_count)
            .ok()
            .and_then(|len| bits.read(0, len))
            .ok_or(CardError::Unrecognized { bit_count })?;
        Ok(DecodedCard {
            format: None,
            bit_count,
            facility: None,
            number,
            parity: ParityStatus::NotApplicable,
        })
    }
}

/// Why a card format description was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    /// The name is empty or blank.
    #[error("card format name is empty")]
    EmptyName,
    /// The bit length is zero.
    #[error("card format is zero bits long")]
    ZeroLength,
    /// A field is zero bits wide or wider than 64 bits.
    #[error("{field} field is {len} bits wide, must be 1 to 64")]
    FieldWidth {
        /// Which field.
        field: &'static str,
        /// Its width.
        len: u8,
    },
    /// A field runs past the last bit of the format.
    #[error("{field} field (bits {start}+{len}) runs past the format's {bit_length} bits")]
    FieldOutOfRange {
        /// Which field.
        field: &'static str,
        /// Its first bit.
        start: u16,
        /// Its width.
        len: u8,
        /// The format's length.
        bit_length: u16,
    },
    /// The facility code and card number fields share bits.
    #[error("facility code and card number fields overlap")]
    FieldsOverlap,
    /// A parity bit lies past the last bit of the format.
    #[error("parity check {check}: parity bit {bit} is past the end of the format")]
    ParityBitOutOfRange {
        /// Index of the check.
        check: usize,
        /// Its parity bit.
        bit: u16,
    },
    /// A parity bit lies inside the facility code or card number field.
    #[error("parity check {check}: parity bit {bit} lies inside a field")]
    ParityBitInField {
        /// Index of the check.
        check: usize,
        /// Its parity bit.
        bit: u16,
    },
    /// Two parity checks use the same parity bit.
    #[error("two parity checks use bit {bit}")]
    DuplicateParityBit {
        /// The shared parity bit.
        bit: u16,
    },
    /// A parity check covers no bits.
    #[error("parity check {check} covers no bits")]
    EmptyCoverage {
        /// Index of the check.
        check: usize,
    },
    /// A covered bit lies past the last bit of the format.
    #[error("parity check {check}: covered bit {bit} is past the end of the format")]
    CoveredBitOutOfRange {
        /// Index of the check.
        check: usize,
        /// The covered bit.
        bit: u16,
    },
    /// A parity check covers its own parity bit.
    #[error("parity check {check} covers its own parity bit {bit}")]
    ParityCoversItself {
        /// Index of the check.
        check: usize,
        /// Its parity bit.
        bit: u16,
    },
    /// A parity check lists a covered bit twice.
    #[error("parity check {check} covers bit {bit} twice")]
    DuplicateCoveredBit {
        /// Index of the check.
        check: usize,
        /// The repeated bit.
        bit: u16,
    },
    /// Parity checks cover each other's parity bits in a cycle, so no order
    /// of computing them works.
    #[error("parity check {check} is part of a cycle of checks covering each other's parity bits")]
    ParityCycle {
        /// Index of a check in the cycle.
        check: usize,
    },
}

/// Why card bits could not be decoded or built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CardError {
    /// The reader reported zero bits.
    #[error("card read has no bits")]
    Empty,
    /// The data is not exactly as long as the bit count needs.
    #[error("{bit_count} card bits need {expected} bytes, got {actual}")]
    LengthMismatch {
        /// Bits reported.
        bit_count: u16,
        /// Bytes those bits take.
        expected: usize,
        /// Bytes received.
        actual: usize,
    },
    /// No format has this bit count and the card is too long to report as
    /// one number.
    #[error("no card format for {bit_count} bits")]
    Unrecognized {
        /// Bits reported.
        bit_count: u16,
    },
    /// A value does not fit in its field.
    #[error("{field} {value} does not fit in {width} bits")]
    ValueTooWide {
        /// Which field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The field's width.
        width: u8,
    },
    /// The format has a facility code but none was given.
    #[error("format needs a facility code")]
    MissingFacility,
    /// A facility code was given for a format without one.
    #[error("format has no facility code")]
    UnexpectedFacility,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Left-justifies the low `bits` bits of `value`, as osdp_RAW carries them.
    fn left_justify(value: u64, bits: u16) -> Vec<u8> {
        let bytes = byte_len(bits);
        let shifted = u128::from(value) << (bytes * 8 - usize::from(bits));
        shifted.to_be_bytes()[16 - bytes..].to_vec()
    }

    fn all_builtins() -> Vec<CardFormat> {
        CardFormatTable::builtin().formats().to_vec()
    }

    fn flip(data: &[u8], pos: u16) -> Vec<u8> {
        let mut out = data.to_vec();
        out[usize::from(pos / 8)] ^= bit_mask(pos);
        out
    }

    #[test]
    fn builtins_pass_validation_with_their_encode_order() {
        for format in all_builtins() {
            let checked = CardFormat::new(format.spec().clone()).unwrap();
            assert_eq!(checked, format, "{}", format.name());
        }
    }

    #[test]
    fn builtin_table_lists_the_issue_formats_in_order() {
        let names: Vec<_> = all_builtins().iter().map(|f| f.name().to_owned()).collect();
        assert_eq!(
            names,
            [H10301, H10306, C1000_35, H10302, H10304, C1000_48, CSN_32, CSN_56]
        );
        let lengths: Vec<_> = all_builtins().iter().map(CardFormat::bit_length).collect();
        assert_eq!(lengths, [26, 34, 35, 37, 37, 48, 32, 56]);
    }

    #[test]
    fn corporate_1000_masks_follow_the_every_third_bit_rule() {
        // HID's description, 0-based: 35-bit even over 2..=33 except 4, 7, ..;
        // odd over 1..=32 except 3, 6, ..; 48-bit even over 3..=46 except
        // 5, 8, ..; odd over 2..=45 except 4, 7, ...
        let sorted = |c: &ParityCheck| {
            let mut v = c.covers.clone();
            v.sort_unstable();
            v
        };
        let c35 = CardFormat::corporate_1000_35();
        let p = c35.parity_checks();
        assert_eq!((p[0].bit, p[0].parity), (1, Parity::Even));
        assert_eq!(
            sorted(&p[0]),
            (2..=33).filter(|b| b % 3 != 1).collect::<Vec<u16>>()
        );
        assert_eq!((p[1].bit, p[1].parity), (34, Parity::Odd));
        assert_eq!(
            sorted(&p[1]),
            (1..=32).filter(|b| b % 3 != 0).collect::<Vec<u16>>()
        );
        assert_eq!((p[2].bit, p[2].parity), (0, Parity::Odd));
        assert_eq!(sorted(&p[2]), (1..=34).collect::<Vec<u16>>());

        let c48 = CardFormat::corporate_1000_48();
        let p = c48.parity_checks();
        assert_eq!((p[0].bit, p[0].parity), (1, Parity::Even));
        assert_eq!(
            sorted(&p[0]),
            (3..=46).filter(|b| b % 3 != 2).collect::<Vec<u16>>()
        );
        assert_eq!((p[1].bit, p[1].parity), (47, Parity::Odd));
        assert_eq!(
            sorted(&p[1]),
            (2..=45).filter(|b| b % 3 != 1).collect::<Vec<u16>>()
        );
        assert_eq!((p[2].bit, p[2].parity), (0, Parity::Odd));
        assert_eq!(sorted(&p[2]), (1..=47).collect::<Vec<u16>>());
    }

    /// Published card values. HID Prox hex carries a preamble and a sentinel
    /// bit above the card bits; masking to the bit length strips them.
    #[test]
    fn published_examples_decode_and_encode() {
        let cases: [(&str, u64, u16, Option<u64>, u64); 7] = [
            // Proxmark3 `wiegand decode --raw 2006f623ae` (and `--new
            // 06BD88EB80`, the same 26 bits left-justified): FC 123, CN 4567.
            (H10301, 0x20_06F6_23AE, 26, Some(123), 4567),
            // Proxmark3 `lf hid clone -r 2006ec0c86`, given there as the same
            // card as `-w H10301 --fc 118 --cn 1603`.
            (H10301, 0x20_06EC_0C86, 26, Some(118), 1603),
            // Proxmark3 client test fixture: H10301 FC 31 CN 337 is the
            // sentinel-marked block 0x063E02A3.
            (H10301, 0x063E_02A3, 26, Some(31), 337),
            // jessety/wiegand-encoder README: FC 90, CN 324 is
            // 00101101000000001010001000.
            (H10301, 0b00101101000000001010001000, 26, Some(90), 324),
            // Doppelganger log line: C1k35s, Hex_Value 2D4A64FB8E,
            // Facility_Code 2643, Card_Number 163271.
            (C1000_35, 0x2D_4A64_FB8E, 35, Some(2643), 163_271),
            // Proxmark3 `lf hid clone -r 2e0ec00c87` ("HID Corporate 35
            // bit"); its parity holds and it reads FC 118, CN 1603.
            (C1000_35, 0x2E_0EC0_0C87, 35, Some(118), 1603),
            // Proxmark3 `lf hid clone -r 01400076000c86` ("HID Corporate 48
            // bit"); its parity holds and it reads FC 118, CN 1603.
            (C1000_48, 0x01_4000_7600_0C86, 48, Some(118), 1603),
        ];
        let table = CardFormatTable::builtin();
        for (name, raw, bits, facility, number) in cases {
            let value = raw & ((1u64 << bits) - 1);
            let data = left_justify(value, bits);
            let card = table.decode(bits, &data).unwrap();
            assert_eq!(card.format, Some(name), "{raw:#x}");
            assert_eq!(card.facility, facility, "{raw:#x}");
            assert_eq!(card.number, number, "{raw:#x}");
            assert_eq!(card.parity, ParityStatus::Ok, "{raw:#x}");
            let format = table.get(name).unwrap();
            assert_eq!(encode(format, facility, number).unwrap(), (bits, data));
        }
        // The left-justified form Proxmark3 shows for FC 123, CN 4567.
        assert_eq!(
            left_justify(0x20_06F6_23AE & 0x3FF_FFFF, 26),
            [0xBD, 0x88, 0xEB, 0x80]
        );
    }

    #[test]
    fn every_format_round_trips() {
        for format in all_builtins() {
            let cn_max = u64::MAX >> (64 - u32::from(format.card_number().len));
            let fc_max = format
                .facility()
                .map(|f| u64::MAX >> (64 - u32::from(f.len)));
            for (fc, cn) in [
                (fc_max.map(|_| 0), 0),
                (fc_max.map(|_| 1), 1),
                (fc_max, cn_max),
                (fc_max.map(|m| m / 3), cn_max / 5),
                (
                    fc_max.map(|m| m & 0x5A5A_5A5A),
                    cn_max & 0x0123_4567_89AB_CDEF,
                ),
            ] {
                let (bits, data) = encode(&format, fc, cn).unwrap();
                let view = CardBits::new(bits, &data).unwrap();
                let card = format.decode(&view).unwrap();
                assert_eq!(card.format, Some(format.name()));
                assert_eq!((card.facility, card.number), (fc, cn), "{}", format.name());
                let expected = if format.parity_checks().is_empty() {
                    ParityStatus::NotApplicable
                } else {
                    ParityStatus::Ok
                };
                assert_eq!(card.parity, expected, "{}", format.name());
                // Padding bits stay zero.
                let pad = data.len() * 8 - usize::from(bits);
                assert_eq!(data.last().unwrap() & ((1u16 << pad) - 1) as u8, 0);
            }
        }
    }

    #[test]
    fn flipping_any_single_bit_fails_parity() {
        let table = CardFormatTable::builtin();
        for format in all_builtins()
            .into_iter()
            .filter(|f| !f.parity_checks().is_empty())
        {
            let fc = format.facility().map(|_| 0x2B);
            let (bits, data) = encode(&format, fc, 0x1234).unwrap();
            for pos in 0..bits {
                let bad = flip(&data, pos);
                let view = CardBits::new(bits, &bad).unwrap();
                let card = format.decode(&view).unwrap();
                assert!(
                    matches!(card.parity, ParityStatus::Failed { .. }),
                    "{} bit {pos}",
                    format.name()
                );
                let from_table = table.decode(bits, &bad).unwrap();
                assert!(!from_table.parity.passed(), "{} bit {pos}", format.name());
            }
        }
    }

    #[test]
    fn failed_parity_names_the_first_failing_check() {
        let table = CardFormatTable::builtin();
        let (bits, data) = encode(&CardFormat::h10301(), Some(1), 1).unwrap();
        let card = table.decode(bits, &flip(&data, 20)).unwrap();
        assert_eq!(card.format, Some(H10301));
        assert_eq!(card.parity, ParityStatus::Failed { check: 1, bit: 25 });
        // Bit 1 of Corporate 1000 35 is covered by the odd check at bit 34
        // and the overall check at bit 0, and is the even parity bit.
        let (bits, data) = encode(&CardFormat::corporate_1000_35(), Some(7), 9).unwrap();
        let card = table.decode(bits, &flip(&data, 1)).unwrap();
        assert_eq!(card.parity, ParityStatus::Failed { check: 0, bit: 1 });
    }

    #[test]
    fn h10302_and_h10304_share_parity_so_the_first_listed_wins() {
        let h10304 = CardFormat::h10304();
        let (bits, data) = encode(&h10304, Some(0x1234), 0x5_4321).unwrap();
        let builtin = CardFormatTable::builtin();
        let card = builtin.decode(bits, &data).unwrap();
        assert_eq!(card.format, Some(H10302));
        assert_eq!(card.number, (0x1234 << 19) | 0x5_4321);
        assert_eq!(card.parity, ParityStatus::Ok);

        let mut site = CardFormatTable::builtin();
        site.add(h10304);
        let card = site.decode(bits, &data).unwrap();
        assert_eq!(card.format, Some(H10304));
        assert_eq!((card.facility, card.number), (Some(0x1234), 0x5_4321));

        // Parity fails for both: reported against the first (H10302).
        let card = builtin.decode(bits, &flip(&data, 18)).unwrap();
        assert_eq!(card.format, Some(H10302));
        assert_eq!(card.parity, ParityStatus::Failed { check: 0, bit: 0 });
    }

    /// A 26-bit site format with 12-bit facility and 12-bit card, its parity
    /// bits swapped relative to H10301 (odd first, even last).
    fn site_26() -> CardFormat {
        CardFormat::new(CardFormatSpec {
            name: "SITE-26".to_owned(),
            bit_length: 26,
            facility: Some(BitField::new(1, 12)),
            card_number: BitField::new(13, 12),
            parity: vec![
                ParityCheck::over_range(0, Parity::Odd, 1..=12),
                ParityCheck::over_range(25, Parity::Even, 13..=24),
            ],
        })
        .unwrap()
    }

    #[test]
    fn site_formats_are_tried_before_builtins() {
        let mut table = CardFormatTable::builtin();
        table.add(site_26());
        assert_eq!(table.formats()[0].name(), "SITE-26");
        assert_eq!(table.formats()[1].name(), H10301);

        // A site card passes the site format first.
        let (bits, data) = encode(&site_26(), Some(0xABC), 0x123).unwrap();
        let card = table.decode(bits, &data).unwrap();
        assert_eq!(card.format, Some("SITE-26"));
        assert_eq!((card.facility, card.number), (Some(0xABC), 0x123));

        // An H10301 card fails the site parity and falls through to H10301.
        let (bits, data) = encode(&CardFormat::h10301(), Some(0x12), 0x3456).unwrap();
        let card = table.decode(bits, &data).unwrap();
        assert_eq!(card.format, Some(H10301));
        assert_eq!(card.parity, ParityStatus::Ok);

        // A second site format goes after the first, still before built-ins.
        let mut second = site_26().spec().clone();
        second.name = "SITE-26B".to_owned();
        table.add(CardFormat::new(second).unwrap());
        let names: Vec<_> = table
            .formats()
            .iter()
            .take(3)
            .map(CardFormat::name)
            .collect();
        assert_eq!(names, ["SITE-26", "SITE-26B", H10301]);
    }

    #[test]
    fn raw_serial_numbers_have_no_parity() {
        let table = CardFormatTable::builtin();
        let card = table.decode(32, &[0x04, 0xA1, 0xB2, 0xC3]).unwrap();
        assert_eq!(card.format, Some(CSN_32));
        assert_eq!((card.facility, card.number), (None, 0x04A1_B2C3));
        assert_eq!(card.parity, ParityStatus::NotApplicable);

        let uid = [0x04, 0x5E, 0x6F, 0x7A, 0x8B, 0x9C, 0x80];
        let card = table.decode(56, &uid).unwrap();
        assert_eq!(card.format, Some(CSN_56));
        assert_eq!(card.number, 0x04_5E6F_7A8B_9C80);
        assert_eq!(card.parity, ParityStatus::NotApplicable);
    }

    #[test]
    fn unknown_lengths_come_back_raw_up_to_64_bits() {
        let table = CardFormatTable::builtin();
        let card = table.decode(12, &[0xAB, 0xC0]).unwrap();
        assert_eq!(card.format, None);
        assert_eq!((card.facility, card.number), (None, 0xABC));
        assert_eq!(card.parity, ParityStatus::NotApplicable);

        let card = table.decode(64, &[0xFF; 8]).unwrap();
        assert_eq!(card.number, u64::MAX);

        assert_eq!(
            table.decode(65, &[0; 9]),
            Err(CardError::Unrecognized { bit_count: 65 })
        );
        assert_eq!(
            CardFormatTable::empty().decode(26, &[0; 4]).unwrap().format,
            None
        );
    }

    #[test]
    fn length_mismatch_and_empty_reads_are_errors() {
        let table = CardFormatTable::builtin();
        assert_eq!(
            table.decode(26, &[0; 3]),
            Err(CardError::LengthMismatch {
                bit_count: 26,
                expected: 4,
                actual: 3
            })
        );
        assert_eq!(
            table.decode(26, &[0; 5]),
            Err(CardError::LengthMismatch {
                bit_count: 26,
                expected: 4,
                actual: 5
            })
        );
        assert_eq!(table.decode(0, &[]), Err(CardError::Empty));
        assert_eq!(
            table.decode(u16::MAX, &[0; 3]),
            Err(CardError::LengthMismatch {
                bit_count: u16::MAX,
                expected: 8192,
                actual: 3
            })
        );
    }

    #[test]
    fn padding_bits_are_ignored() {
        let (bits, mut data) = encode(&CardFormat::h10301(), Some(5), 6).unwrap();
        *data.last_mut().unwrap() |= 0x3F;
        let table = CardFormatTable::builtin();
        let card = table.decode(bits, &data).unwrap();
        assert_eq!((card.facility, card.number), (Some(5), 6));
        assert_eq!(card.parity, ParityStatus::Ok);
    }

    #[test]
    fn card_bits_reads_ranges_across_bytes() {
        let data = [0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0, 0x80];
        let bits = CardBits::new(65, &data).unwrap();
        assert_eq!(bits.read(0, 8), Some(0x12));
        assert_eq!(bits.read(4, 8), Some(0x23));
        assert_eq!(bits.read(4, 12), Some(0x234));
        assert_eq!(bits.read(3, 1), Some(1));
        assert_eq!(bits.read(0, 64), Some(0x1234_5678_9ABC_DEF0));
        assert_eq!(bits.read(1, 64), Some(0x2468_ACF1_3579_BDE1));
        assert_eq!(bits.read(64, 1), Some(1));
        assert_eq!(bits.read(64, 2), None);
        assert_eq!(bits.read(2, 65), None);
        assert_eq!(bits.read(2, 0), None);
        assert_eq!(bits.read(u16::MAX, 64), None);
        assert_eq!(bits.bit(3), Some(true));
        assert_eq!(bits.bit(0), Some(false));
        assert_eq!(bits.bit(64), Some(true));
        assert_eq!(bits.bit(65), None);
        assert_eq!(bits.field(BitField::new(8, 16)), Some(0x3456));
    }

    #[test]
    fn over_mask_and_over_bits_list_positions() {
        let check = ParityCheck::over_mask(0, Parity::Even, &[0x41, 0x80]);
        assert_eq!(check.covers, [1, 7, 8]);
        let check = ParityCheck::over_bits(9, Parity::Odd, [3, 1, 2]);
        assert_eq!(check.covers, [3, 1, 2]);
        let check = ParityCheck::over_range(0, Parity::Odd, 4..=6);
        assert_eq!(check.covers, [4, 5, 6]);
    }

    #[test]
    fn encode_refuses_values_that_do_not_fit() {
        let h10301 = CardFormat::h10301();
        assert_eq!(
            encode(&h10301, Some(0x100), 1),
            Err(CardError::ValueTooWide {
                field: "facility code",
                value: 0x100,
                width: 8
            })
        );
        assert_eq!(
            encode(&h10301, Some(1), 0x1_0000),
            Err(CardError::ValueTooWide {
                field: "card number",
                value: 0x1_0000,
                width: 16
            })
        );
        assert_eq!(encode(&h10301, None, 1), Err(CardError::MissingFacility));
        assert_eq!(
            encode(&CardFormat::h10302(), Some(1), 1),
            Err(CardError::UnexpectedFacility)
        );
        assert!(encode(&CardFormat::h10302(), None, (1 << 35) - 1).is_ok());
        assert!(encode(&CardFormat::h10302(), None, 1 << 35).is_err());
    }

    fn spec_26() -> CardFormatSpec {
        CardFormat::h10301().spec().clone()
    }

    #[test]
    fn validation_rejects_bad_specs() {
        let check = |edit: &dyn Fn(&mut CardFormatSpec), want: FormatError| {
            let mut spec = spec_26();
            edit(&mut spec);
            assert_eq!(CardFormat::new(spec), Err(want));
        };
        check(&|s| s.name = " ".to_owned(), FormatError::EmptyName);
        check(
            &|s| {
                s.bit_length = 0;
            },
            FormatError::ZeroLength,
        );
        check(
            &|s| s.card_number = BitField::new(9, 0),
            FormatError::FieldWidth {
                field: "card number",
                len: 0,
            },
        );
        check(
            &|s| {
                s.bit_length = 100;
                s.card_number = BitField::new(30, 65);
            },
            FormatError::FieldWidth {
                field: "card number",
                len: 65,
            },
        );
        check(
            &|s| s.card_number = BitField::new(9, 18),
            FormatError::FieldOutOfRange {
                field: "card number",
                start: 9,
                len: 18,
                bit_length: 26,
            },
        );
        check(
            &|s| s.facility = Some(BitField::new(u16::MAX, 8)),
            FormatError::FieldOutOfRange {
                field: "facility code",
                start: u16::MAX,
                len: 8,
                bit_length: 26,
            },
        );
        check(
            &|s| s.facility = Some(BitField::new(1, 9)),
            FormatError::FieldsOverlap,
        );
        check(
            &|s| s.parity[1].bit = 26,
            FormatError::ParityBitOutOfRange { check: 1, bit: 26 },
        );
        check(
            &|s| s.parity[0].bit = 5,
            FormatError::ParityBitInField { check: 0, bit: 5 },
        );
        check(
            &|s| s.parity[1].bit = 0,
            FormatError::DuplicateParityBit { bit: 0 },
        );
        check(
            &|s| s.parity[0].covers.clear(),
            FormatError::EmptyCoverage { check: 0 },
        );
        check(
            &|s| s.parity[1].covers.push(26),
            FormatError::CoveredBitOutOfRange { check: 1, bit: 26 },
        );
        check(
            &|s| s.parity[1].covers.push(25),
            FormatError::ParityCoversItself { check: 1, bit: 25 },
        );
        check(
            &|s| s.parity[0].covers.push(3),
            FormatError::DuplicateCoveredBit { check: 0, bit: 3 },
        );
        check(
            &|s| {
                s.parity[0].covers.push(25);
                s.parity[1].covers.push(0);
            },
            FormatError::ParityCycle { check: 0 },
        );
    }

    #[test]
    fn a_huge_mask_is_rejected_not_truncated() {
        let mut spec = spec_26();
        spec.bit_length = u16::MAX;
        let mut mask = vec![0u8; 8193];
        mask[8192] = 0x80; // position 65536, past u16
        spec.parity[0] = ParityCheck::over_mask(0, Parity::Even, &mask);
        assert_eq!(
            CardFormat::new(spec),
            Err(FormatError::CoveredBitOutOfRange {
                check: 0,
                bit: u16::MAX
            })
        );
    }

    #[test]
    fn encode_orders_checks_that_cover_later_parity_bits() {
        // The overall check is listed first but covers the other two parity
        // bits, so it has to be computed last.
        let mut spec = CardFormat::corporate_1000_35().spec().clone();
        spec.parity.rotate_right(1);
        let reordered = CardFormat::new(spec).unwrap();
        let (bits, data) = encode(&reordered, Some(2643), 163_271).unwrap();
        assert_eq!(data, left_justify(0x5_4A64_FB8E, 35));
        let card = reordered
            .decode(&CardBits::new(bits, &data).unwrap())
            .unwrap();
        assert_eq!(card.parity, ParityStatus::Ok);
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut table = CardFormatTable::builtin();
        table.add(site_26());
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut buf = [0u8; 12];
        for _ in 0..20_000 {
            let bits = (next() % 100) as u16;
            let len = (next() % 13) as usize;
            for b in buf.iter_mut() {
                *b = next() as u8;
            }
            let data = &buf[..len];
            let well_formed = bits > 0 && data.len() == byte_len(bits);
            match table.decode(bits, data) {
                Ok(card) => assert!(well_formed && card.bit_count == bits),
                Err(CardError::Unrecognized { bit_count }) => {
                    assert!(well_formed && bit_count > 64)
                }
                Err(error) => assert!(
                    !well_formed
                        && matches!(error, CardError::LengthMismatch { .. } | CardError::Empty),
                    "{error:?}"
                ),
            }
        }
    }
}
