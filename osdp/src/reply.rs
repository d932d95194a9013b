//! Typed OSDP v2.2 replies, sent by a peripheral device (PD) to the control
//! panel (CP).
//!
//! The counterpart of [`crate::command`]: [`Reply::parse`] turns a reply code
//! and data block into a [`Reply`], [`Reply::code`] and [`Reply::encode_data`]
//! turn it back. The same rules hold: strict lengths, no panics on any input,
//! encoders that always produce a well-formed reply.
//!
//! An `osdp_NAK` is a reply like any other ([`Reply::Nak`]): the device
//! answered and said no. [`ReplyError`] is for bytes that are not a valid
//! reply at all.
//!
//! Card numbers, keypad entries (PINs) and biometric data are masked in
//! `Debug` output so that logging a reply does not leak credentials.

use std::fmt;

use thiserror::Error;

use crate::command::{put_u16_prefixed, put_u8_prefixed, CodeLabel, ComSet, Expected, Mfg};

/// Reply codes, named after the specification (`osdp_ACK` is [`code::ACK`]).
pub mod code {
    /// osdp_ACK: command accepted, nothing to report.
    pub const ACK: u8 = 0x40;
    /// osdp_NAK: command not processed.
    pub const NAK: u8 = 0x41;
    /// osdp_PDID: device identification.
    pub const PDID: u8 = 0x45;
    /// osdp_PDCAP: device capabilities.
    pub const PDCAP: u8 = 0x46;
    /// osdp_LSTATR: local (tamper and power) status.
    pub const LSTATR: u8 = 0x48;
    /// osdp_ISTATR: input status.
    pub const ISTATR: u8 = 0x49;
    /// osdp_OSTATR: output status.
    pub const OSTATR: u8 = 0x4A;
    /// osdp_RSTATR: reader (tamper) status.
    pub const RSTATR: u8 = 0x4B;
    /// osdp_RAW: card data as a raw bit array.
    pub const RAW: u8 = 0x50;
    /// osdp_FMT: card data as characters.
    pub const FMT: u8 = 0x51;
    /// osdp_KEYPAD: keypad data.
    pub const KEYPAD: u8 = 0x53;
    /// osdp_COM: communication configuration report.
    pub const COM: u8 = 0x54;
    /// osdp_BIOREADR: biometric scan result.
    pub const BIOREADR: u8 = 0x57;
    /// osdp_BIOMATCHR: biometric match result.
    pub const BIOMATCHR: u8 = 0x58;
    /// osdp_CCRYPT: client cryptogram (secure channel handshake).
    pub const CCRYPT: u8 = 0x76;
    /// osdp_RMAC_I: initial R-MAC (secure channel handshake).
    pub const RMAC_I: u8 = 0x78;
    /// osdp_BUSY: the PD is busy; repeat the command later.
    pub const BUSY: u8 = 0x79;
    /// osdp_MFGREP: manufacturer specific reply.
    pub const MFGREP: u8 = 0x90;
}

/// The short specification name of a reply code (`0x40` is `"ACK"`), or
/// `None` for a code this module does not implement.
pub fn code_name(code: u8) -> Option<&'static str> {
    Some(match code {
        code::ACK => "ACK",
        code::NAK => "NAK",
        code::PDID => "PDID",
        code::PDCAP => "PDCAP",
        code::LSTATR => "LSTATR",
        code::ISTATR => "ISTATR",
        code::OSTATR => "OSTATR",
        code::RSTATR => "RSTATR",
        code::RAW => "RAW",
        code::FMT => "FMT",
        code::KEYPAD => "KEYPAD",
        code::COM => "COM",
        code::BIOREADR => "BIOREADR",
        code::BIOMATCHR => "BIOMATCHR",
        code::CCRYPT => "CCRYPT",
        code::RMAC_I => "RMAC_I",
        code::BUSY => "BUSY",
        code::MFGREP => "MFGREP",
        _ => return None,
    })
}

fn label(code: &u8) -> CodeLabel {
    CodeLabel(*code, code_name(*code))
}

/// Why a code and data block are not a valid reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplyError {
    /// The code is not an OSDP 2.2 reply this module implements.
    #[error("unknown reply code {0:#04x}")]
    UnknownCode(u8),
    /// The data block does not have the length the reply's layout requires.
    #[error("{}: data length {got}, expected {expected}", label(.code))]
    BadLength {
        /// Reply code.
        code: u8,
        /// What the layout requires.
        expected: Expected,
        /// Data bytes received.
        got: usize,
    },
    /// A field holds a value the specification does not define.
    #[error("{}: invalid {field} {value:#04x}", label(.code))]
    InvalidField {
        /// Reply code.
        code: u8,
        /// Which field.
        field: &'static str,
        /// The value found.
        value: u32,
    },
}

/// The error code of an `osdp_NAK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NakCode {
    /// 0x00: no error.
    NoError,
    /// 0x01: message check character (checksum or CRC) error.
    MessageCheck,
    /// 0x02: command length error.
    CommandLength,
    /// 0x03: unknown command code (not implemented by the PD).
    UnknownCommand,
    /// 0x04: unexpected sequence number in the header.
    UnexpectedSequence,
    /// 0x05: the PD does not support the security block received.
    UnsupportedSecurityBlock,
    /// 0x06: communication security conditions not met (encryption required).
    EncryptionRequired,
    /// 0x07: BIO_TYPE not supported.
    BioTypeNotSupported,
    /// 0x08: BIO_FORMAT not supported.
    BioFormatNotSupported,
    /// 0x09: unable to process the command record.
    UnableToProcess,
    /// Any other code (vendor specific or from a later revision).
    Other(u8),
}

impl NakCode {
    /// The code for a wire byte; never fails (unknown values are `Other`).
    pub fn from_u8(value: u8) -> Self {
        match value {
            0x00 => Self::NoError,
            0x01 => Self::MessageCheck,
            0x02 => Self::CommandLength,
            0x03 => Self::UnknownCommand,
            0x04 => Self::UnexpectedSequence,
            0x05 => Self::UnsupportedSecurityBlock,
            0x06 => Self::EncryptionRequired,
            0x07 => Self::BioTypeNotSupported,
            0x08 => Self::BioFormatNotSupported,
            0x09 => Self::UnableToProcess,
            other => Self::Other(other),
        }
    }

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::NoError => 0x00,
            Self::MessageCheck => 0x01,
            Self::CommandLength => 0x02,
            Self::UnknownCommand => 0x03,
            Self::UnexpectedSequence => 0x04,
            Self::UnsupportedSecurityBlock => 0x05,
            Self::EncryptionRequired => 0x06,
            Self::BioTypeNotSupported => 0x07,
            Self::BioFormatNotSupported => 0x08,
            Self::UnableToProcess => 0x09,
            Self::Other(v) => v,
        }
    }
}

/// An `osdp_NAK`: an error code and optional detail bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nak {
    /// Why the command was refused.
    pub code: NakCode,
    /// Extra detail some codes carry (for example the unsupported
    /// security block); usually empty.
    pub detail: Vec<u8>,
}

impl Nak {
    /// A NAK with no detail bytes.
    pub fn new(code: NakCode) -> Self {
        Nak {
            code,
            detail: Vec::new(),
        }
    }
}

/// The 12-byte `osdp_PDID` device identification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PdId {
    /// IEEE OUI of the vendor, in wire order.
    pub vendor_code: [u8; 3],
    /// Manufacturer's model number.
    pub model: u8,
    /// Manufacturer's version (hardware revision) number.
    pub version: u8,
    /// Serial number.
    pub serial: u32,
    /// Firmware major version.
    pub firmware_major: u8,
    /// Firmware minor version.
    pub firmware_minor: u8,
    /// Firmware build number.
    pub firmware_build: u8,
}

impl PdId {
    /// Bytes on the wire.
    pub const LEN: usize = 12;
}

/// `osdp_PDCAP` function codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapabilityFunction {
    /// 1: contact status monitoring (inputs).
    ContactStatusMonitoring,
    /// 2: output control.
    OutputControl,
    /// 3: card data format.
    CardDataFormat,
    /// 4: reader LED control.
    ReaderLedControl,
    /// 5: reader audible output.
    ReaderAudibleOutput,
    /// 6: reader text output.
    ReaderTextOutput,
    /// 7: time keeping.
    TimeKeeping,
    /// 8: check character support (compliance 1: CRC-16).
    CheckCharacterSupport,
    /// 9: communication security (compliance bit 0: AES-128).
    CommunicationSecurity,
    /// 10: receive buffer size (compliance is the LSB, items the MSB).
    ReceiveBufferSize,
    /// 11: largest combined message size (compliance LSB, items MSB).
    LargestCombinedMessageSize,
    /// 12: smart card support.
    SmartCardSupport,
    /// 13: readers.
    Readers,
    /// 14: biometrics.
    Biometrics,
    /// 15: secure PIN entry.
    SecurePinEntry,
    /// 16: OSDP version (compliance 2: SIA OSDP 2.2).
    OsdpVersion,
    /// Any other function code.
    Other(u8),
}

impl CapabilityFunction {
    /// The function for a wire byte; never fails (unknown values are `Other`).
    pub fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::ContactStatusMonitoring,
            2 => Self::OutputControl,
            3 => Self::CardDataFormat,
            4 => Self::ReaderLedControl,
            5 => Self::ReaderAudibleOutput,
            6 => Self::ReaderTextOutput,
            7 => Self::TimeKeeping,
            8 => Self::CheckCharacterSupport,
            9 => Self::CommunicationSecurity,
            10 => Self::ReceiveBufferSize,
            11 => Self::LargestCombinedMessageSize,
            12 => Self::SmartCardSupport,
            13 => Self::Readers,
            14 => Self::Biometrics,
            15 => Self::SecurePinEntry,
            16 => Self::OsdpVersion,
            other => Self::Other(other),
        }
    }

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::ContactStatusMonitoring => 1,
            Self::OutputControl => 2,
            Self::CardDataFormat => 3,
            Self::ReaderLedControl => 4,
            Self::ReaderAudibleOutput => 5,
            Self::ReaderTextOutput => 6,
            Self::TimeKeeping => 7,
            Self::CheckCharacterSupport => 8,
            Self::CommunicationSecurity => 9,
            Self::ReceiveBufferSize => 10,
            Self::LargestCombinedMessageSize => 11,
            Self::SmartCardSupport => 12,
            Self::Readers => 13,
            Self::Biometrics => 14,
            Self::SecurePinEntry => 15,
            Self::OsdpVersion => 16,
            Self::Other(v) => v,
        }
    }
}

/// One 3-byte `osdp_PDCAP` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capability {
    /// Which function.
    pub function: CapabilityFunction,
    /// Compliance level (meaning depends on the function).
    pub compliance: u8,
    /// Number of items (meaning depends on the function).
    pub num_items: u8,
}

impl Capability {
    /// Bytes per record on the wire.
    pub const LEN: usize = 3;

    /// The 16-bit value of the size functions (receive buffer size, largest
    /// combined message size): compliance is the LSB, number of items the MSB.
    pub fn size_value(&self) -> u16 {
        u16::from_le_bytes([self.compliance, self.num_items])
    }
}

/// The 2-byte `osdp_LSTATR` local status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalStatus {
    /// Tamper status: 0 normal, 1 tamper.
    pub tamper: u8,
    /// Power status: 0 normal, 1 power failure.
    pub power: u8,
}

impl LocalStatus {
    /// Bytes on the wire.
    pub const LEN: usize = 2;
}

/// Format code of an `osdp_RAW` card report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawFormat {
    /// 0x00: raw bit array, format not specified.
    Unspecified,
    /// 0x01: raw Wiegand bits (with parity).
    Wiegand,
    /// Any other code; kept so a card read is never lost over it.
    Other(u8),
}

impl RawFormat {
    /// The format for a wire byte; never fails (unknown values are `Other`).
    pub fn from_u8(value: u8) -> Self {
        match value {
            0x00 => Self::Unspecified,
            0x01 => Self::Wiegand,
            other => Self::Other(other),
        }
    }

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Unspecified => 0x00,
            Self::Wiegand => 0x01,
            Self::Other(v) => v,
        }
    }
}

/// Shows at most the last two bytes of sensitive data, and only when it is
/// long enough that they are not most of it.
struct Masked<'a>(&'a [u8]);

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [.., a, b] if self.0.len() >= 4 => write!(f, "\"..{a:02X}{b:02X}\""),
            _ => f.write_str("<redacted>"),
        }
    }
}

/// An `osdp_RAW` card read: a left-justified bit array. `Debug` shows the bit
/// count and at most the last four hex digits of the data.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RawCard {
    /// Reader number, 0 for the first reader.
    pub reader: u8,
    /// Format of the bits.
    pub format: RawFormat,
    /// Number of valid bits.
    pub bit_count: u16,
    /// The bits, first bit in the MSB of the first byte; `ceil(bit_count / 8)`
    /// bytes. The encoder pads with zeros or truncates to that length.
    pub data: Vec<u8>,
}

impl RawCard {
    /// Bytes before the card data.
    pub const HEADER_LEN: usize = 4;

    /// Bytes needed for `bit_count` bits.
    pub fn data_len(bit_count: u16) -> usize {
        usize::from(bit_count).div_ceil(8)
    }
}

impl fmt::Debug for RawCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawCard")
            .field("reader", &self.reader)
            .field("format", &self.format)
            .field("bit_count", &self.bit_count)
            .field("data", &Masked(&self.data))
            .finish()
    }
}

/// An `osdp_FMT` card read: card data as characters. `Debug` masks the data.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FmtCard {
    /// Reader number, 0 for the first reader.
    pub reader: u8,
    /// Read direction: 0 forward, 1 reverse.
    pub direction: u8,
    /// The characters; at most 255 are sent.
    pub data: Vec<u8>,
}

impl FmtCard {
    /// Bytes before the characters.
    pub const HEADER_LEN: usize = 3;
}

impl fmt::Debug for FmtCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FmtCard")
            .field("reader", &self.reader)
            .field("direction", &self.direction)
            .field("len", &self.data.len())
            .field("data", &Masked(&self.data))
            .finish()
    }
}

/// An `osdp_KEYPAD` report. The digits may be a PIN: `Debug` prints only how
/// many there are, and they are wiped from memory on drop.
#[derive(Clone, PartialEq, Eq, Hash, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct Keypad {
    /// Reader number, 0 for the first reader.
    pub reader: u8,
    /// Key codes as sent: ASCII `'0'..='9'`, 0x7F for `*`, 0x0D for `#`,
    /// `'A'..='H'` for function keys. At most 255 are sent.
    pub digits: Vec<u8>,
}

impl Keypad {
    /// Bytes before the digits.
    pub const HEADER_LEN: usize = 2;

    /// The character a key code stands for: digits and letters as ASCII,
    /// 0x7F (DEL) as `'*'`, 0x0D (CR) as `'#'`. The literal ASCII `'*'` and
    /// `'#'` some readers send are accepted too. Other codes give `None`.
    pub fn key_char(code: u8) -> Option<char> {
        match code {
            0x7F | b'*' => Some('*'),
            0x0D | b'#' => Some('#'),
            b'0'..=b'9' | b'A'..=b'H' => Some(char::from(code)),
            _ => None,
        }
    }

    /// The keys as characters (see [`Keypad::key_char`]); `None` if any code
    /// is not a known key.
    pub fn to_chars(&self) -> Option<String> {
        self.digits.iter().map(|&c| Self::key_char(c)).collect()
    }
}

impl fmt::Debug for Keypad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypad")
            .field("reader", &self.reader)
            .field("digit_count", &self.digits.len())
            .finish_non_exhaustive()
    }
}

/// An `osdp_BIOREADR` result. `Debug` prints only the template length.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BioReadResult {
    /// Reader number, 0 for the first reader.
    pub reader: u8,
    /// Status: 0x00 success, 0x01 timeout, 0xFF unknown error.
    pub status: u8,
    /// Biometric type scanned.
    pub bio_type: u8,
    /// Scan quality.
    pub quality: u8,
    /// The template; empty on failure; at most 65535 bytes are sent.
    pub data: Vec<u8>,
}

impl BioReadResult {
    /// Bytes before the template.
    pub const HEADER_LEN: usize = 6;
}

impl fmt::Debug for BioReadResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BioReadResult")
            .field("reader", &self.reader)
            .field("status", &self.status)
            .field("bio_type", &self.bio_type)
            .field("quality", &self.quality)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// The 3-byte `osdp_BIOMATCHR` result: reader, status, score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BioMatchResult {
    /// Reader number, 0 for the first reader.
    pub reader: u8,
    /// Status: 0x00 success, 0x01 timeout, 0xFF unknown error.
    pub status: u8,
    /// Score: 0x00 no match up to 0xFF best match.
    pub score: u8,
}

impl BioMatchResult {
    /// Bytes on the wire.
    pub const LEN: usize = 3;
}

/// The 32-byte `osdp_CCRYPT` secure channel handshake reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ccrypt {
    /// The PD's client UID (cUID).
    pub client_uid: [u8; 8],
    /// The PD's random number RND.B.
    pub rnd_b: [u8; 8],
    /// The client cryptogram.
    pub cryptogram: [u8; 16],
}

impl Ccrypt {
    /// Bytes on the wire.
    pub const LEN: usize = 32;
}

/// An OSDP reply (PD to CP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// osdp_ACK.
    Ack,
    /// osdp_NAK: the device refused the command.
    Nak(Nak),
    /// osdp_PDID.
    PdId(PdId),
    /// osdp_PDCAP.
    PdCap(Vec<Capability>),
    /// osdp_LSTATR.
    LocalStatus(LocalStatus),
    /// osdp_ISTATR: one status byte per input (0 inactive, 1 active).
    InputStatus(Vec<u8>),
    /// osdp_OSTATR: one status byte per output (0 inactive, 1 active).
    OutputStatus(Vec<u8>),
    /// osdp_RSTATR: one byte per reader (0 normal, 1 not connected, 2 tamper).
    ReaderStatus(Vec<u8>),
    /// osdp_RAW.
    Raw(RawCard),
    /// osdp_FMT.
    Fmt(FmtCard),
    /// osdp_KEYPAD.
    Keypad(Keypad),
    /// osdp_COM: the address and baud rate the PD now uses.
    Com(ComSet),
    /// osdp_BIOREADR.
    BioReadResult(BioReadResult),
    /// osdp_BIOMATCHR.
    BioMatchResult(BioMatchResult),
    /// osdp_CCRYPT.
    ClientCryptogram(Ccrypt),
    /// osdp_RMAC_I: the initial R-MAC.
    InitialRmac([u8; 16]),
    /// osdp_BUSY.
    Busy,
    /// osdp_MFGREP.
    MfgReply(Mfg),
}

fn invalid(code: u8, field: &'static str, value: u8) -> ReplyError {
    ReplyError::InvalidField {
        code,
        field,
        value: u32::from(value),
    }
}

impl Reply {
    /// The reply code.
    pub fn code(&self) -> u8 {
        match self {
            Reply::Ack => code::ACK,
            Reply::Nak(_) => code::NAK,
            Reply::PdId(_) => code::PDID,
            Reply::PdCap(_) => code::PDCAP,
            Reply::LocalStatus(_) => code::LSTATR,
            Reply::InputStatus(_) => code::ISTATR,
            Reply::OutputStatus(_) => code::OSTATR,
            Reply::ReaderStatus(_) => code::RSTATR,
            Reply::Raw(_) => code::RAW,
            Reply::Fmt(_) => code::FMT,
            Reply::Keypad(_) => code::KEYPAD,
            Reply::Com(_) => code::COM,
            Reply::BioReadResult(_) => code::BIOREADR,
            Reply::BioMatchResult(_) => code::BIOMATCHR,
            Reply::ClientCryptogram(_) => code::CCRYPT,
            Reply::InitialRmac(_) => code::RMAC_I,
            Reply::Busy => code::BUSY,
            Reply::MfgReply(_) => code::MFGREP,
        }
    }

    /// The short specification name (`"ACK"` for osdp_ACK).
    pub fn name(&self) -> &'static str {
        code_name(self.code()).unwrap_or("UNKNOWN")
    }

    /// Appends the data block (everything after the code byte) to `out`.
    pub fn encode_data(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Ack | Reply::Busy => {}
            Reply::Nak(n) => {
                out.push(n.code.as_u8());
                out.extend_from_slice(&n.detail);
            }
            Reply::PdId(id) => {
                out.extend_from_slice(&id.vendor_code);
                out.extend_from_slice(&[id.model, id.version]);
                out.extend_from_slice(&id.serial.to_le_bytes());
                out.extend_from_slice(&[id.firmware_major, id.firmware_minor, id.firmware_build]);
            }
            Reply::PdCap(caps) => {
                for c in caps {
                    out.extend_from_slice(&[c.function.as_u8(), c.compliance, c.num_items]);
                }
            }
            Reply::LocalStatus(s) => out.extend_from_slice(&[s.tamper, s.power]),
            Reply::InputStatus(v) | Reply::OutputStatus(v) | Reply::ReaderStatus(v) => {
                out.extend_from_slice(v)
            }
            Reply::Raw(r) => {
                out.extend_from_slice(&[r.reader, r.format.as_u8()]);
                out.extend_from_slice(&r.bit_count.to_le_bytes());
                let n = RawCard::data_len(r.bit_count);
                let have = r.data.get(..n).unwrap_or(&r.data);
                out.extend_from_slice(have);
                out.resize(out.len() + (n - have.len()), 0);
            }
            Reply::Fmt(c) => {
                out.extend_from_slice(&[c.reader, c.direction]);
                put_u8_prefixed(out, &c.data);
            }
            Reply::Keypad(k) => {
                out.push(k.reader);
                put_u8_prefixed(out, &k.digits);
            }
            Reply::Com(c) => c.encode(out),
            Reply::BioReadResult(b) => {
                out.extend_from_slice(&[b.reader, b.status, b.bio_type, b.quality]);
                put_u16_prefixed(out, &b.data);
            }
            Reply::BioMatchResult(b) => out.extend_from_slice(&[b.reader, b.status, b.score]),
            Reply::ClientCryptogram(c) => {
                out.extend_from_slice(&c.client_uid);
                out.extend_from_slice(&c.rnd_b);
                out.extend_from_slice(&c.cryptogram);
            }
            Reply::InitialRmac(m) => out.extend_from_slice(m),
            Reply::MfgReply(m) => m.encode(out),
        }
    }

    /// The data block as a new vector.
    pub fn to_data(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_data(&mut out);
        out
    }

    /// Parses a reply code and its data block.
    pub fn parse(code: u8, data: &[u8]) -> Result<Reply, ReplyError> {
        let got = data.len();
        let bad_len = |expected| ReplyError::BadLength {
            code,
            expected,
            got,
        };
        let exactly = |n| {
            if got == n {
                Ok(())
            } else {
                Err(bad_len(Expected::Exactly(n)))
            }
        };
        match code {
            code::ACK => exactly(0).map(|()| Reply::Ack),
            code::BUSY => exactly(0).map(|()| Reply::Busy),
            code::NAK => {
                let &[nak, ref detail @ ..] = data else {
                    return Err(bad_len(Expected::AtLeast(1)));
                };
                Ok(Reply::Nak(Nak {
                    code: NakCode::from_u8(nak),
                    detail: detail.to_vec(),
                }))
            }
            code::PDID => {
                let &[v0, v1, v2, model, version, s0, s1, s2, s3, major, minor, build] = data
                else {
                    return Err(bad_len(Expected::Exactly(PdId::LEN)));
                };
                Ok(Reply::PdId(PdId {
                    vendor_code: [v0, v1, v2],
                    model,
                    version,
                    serial: u32::from_le_bytes([s0, s1, s2, s3]),
                    firmware_major: major,
                    firmware_minor: minor,
                    firmware_build: build,
                }))
            }
            code::PDCAP => {
                // A device with nothing to declare may send no records.
                if got % Capability::LEN != 0 {
                    return Err(bad_len(Expected::MultipleOf(Capability::LEN)));
                }
                let caps = data
                    .chunks_exact(Capability::LEN)
                    .filter_map(|rec| match *rec {
                        [function, compliance, num_items] => Some(Capability {
                            function: CapabilityFunction::from_u8(function),
                            compliance,
                            num_items,
                        }),
                        _ => None,
                    })
                    .collect();
                Ok(Reply::PdCap(caps))
            }
            code::LSTATR => {
                let &[tamper, power] = data else {
                    return Err(bad_len(Expected::Exactly(LocalStatus::LEN)));
                };
                Ok(Reply::LocalStatus(LocalStatus { tamper, power }))
            }
            code::ISTATR => Ok(Reply::InputStatus(data.to_vec())),
            code::OSTATR => Ok(Reply::OutputStatus(data.to_vec())),
            code::RSTATR => Ok(Reply::ReaderStatus(data.to_vec())),
            code::RAW => {
                let &[reader, format, lo, hi, ref bits @ ..] = data else {
                    return Err(bad_len(Expected::AtLeast(RawCard::HEADER_LEN)));
                };
                let bit_count = u16::from_le_bytes([lo, hi]);
                exactly(RawCard::HEADER_LEN + RawCard::data_len(bit_count))?;
                Ok(Reply::Raw(RawCard {
                    reader,
                    format: RawFormat::from_u8(format),
                    bit_count,
                    data: bits.to_vec(),
                }))
            }
            code::FMT => {
                let &[reader, direction, len, ref chars @ ..] = data else {
                    return Err(bad_len(Expected::AtLeast(FmtCard::HEADER_LEN)));
                };
                exactly(FmtCard::HEADER_LEN + usize::from(len))?;
                if direction > 1 {
                    return Err(invalid(code, "read direction", direction));
                }
                Ok(Reply::Fmt(FmtCard {
                    reader,
                    direction,
                    data: chars.to_vec(),
                }))
            }
            code::KEYPAD => {
                let &[reader, count, ref digits @ ..] = data else {
                    return Err(bad_len(Expected::AtLeast(Keypad::HEADER_LEN)));
                };
                exactly(Keypad::HEADER_LEN + usize::from(count))?;
                Ok(Reply::Keypad(Keypad {
                    reader,
                    digits: digits.to_vec(),
                }))
            }
            code::COM => match ComSet::parse(data) {
                None => Err(bad_len(Expected::Exactly(ComSet::LEN))),
                Some(Err(addr)) => Err(invalid(code, "address", addr)),
                Some(Ok(c)) => Ok(Reply::Com(c)),
            },
            code::BIOREADR => {
                let &[reader, status, bio_type, quality, lo, hi, ref template @ ..] = data else {
                    return Err(bad_len(Expected::AtLeast(BioReadResult::HEADER_LEN)));
                };
                exactly(BioReadResult::HEADER_LEN + usize::from(u16::from_le_bytes([lo, hi])))?;
                Ok(Reply::BioReadResult(BioReadResult {
                    reader,
                    status,
                    bio_type,
                    quality,
                    data: template.to_vec(),
                }))
            }
            code::BIOMATCHR => {
                let &[reader, status, score] = data else {
                    return Err(bad_len(Expected::Exactly(BioMatchResult::LEN)));
                };
                Ok(Reply::BioMatchResult(BioMatchResult {
                    reader,
                    status,
                    score,
                }))
            }
            code::CCRYPT => {
                if got != Ccrypt::LEN {
                    return Err(bad_len(Expected::Exactly(Ccrypt::LEN)));
                }
                let (uid, rest) = data.split_at_checked(8).unwrap_or_default();
                let (rnd, crypt) = rest.split_at_checked(8).unwrap_or_default();
                match (uid.try_into(), rnd.try_into(), crypt.try_into()) {
                    (Ok(client_uid), Ok(rnd_b), Ok(cryptogram)) => {
                        Ok(Reply::ClientCryptogram(Ccrypt {
                            client_uid,
                            rnd_b,
                            cryptogram,
                        }))
                    }
                    _ => Err(bad_len(Expected::Exactly(Ccrypt::LEN))),
                }
            }
            code::RMAC_I => data
                .try_into()
                .map(Reply::InitialRmac)
                .map_err(|_| bad_len(Expected::Exactly(16))),
            code::MFGREP => Mfg::parse(data)
                .map(Reply::MfgReply)
                .ok_or_else(|| bad_len(Expected::AtLeast(Mfg::HEADER_LEN))),
            other => Err(ReplyError::UnknownCode(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), ReplyError>;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap_or_default())
            .collect()
    }

    fn all_replies() -> Vec<Reply> {
        vec![
            Reply::Ack,
            Reply::Nak(Nak {
                code: NakCode::UnsupportedSecurityBlock,
                detail: vec![0x17],
            }),
            Reply::PdId(PdId {
                vendor_code: [0x5C, 0x26, 0x23],
                model: 0x19,
                version: 0x02,
                serial: 0xCAFE_BABE,
                firmware_major: 3,
                firmware_minor: 1,
                firmware_build: 40,
            }),
            Reply::PdCap(vec![
                Capability {
                    function: CapabilityFunction::CommunicationSecurity,
                    compliance: 1,
                    num_items: 1,
                },
                Capability {
                    function: CapabilityFunction::ReceiveBufferSize,
                    compliance: 0x00,
                    num_items: 0x04,
                },
                Capability {
                    function: CapabilityFunction::Other(42),
                    compliance: 0,
                    num_items: 0,
                },
            ]),
            Reply::LocalStatus(LocalStatus {
                tamper: 1,
                power: 0,
            }),
            Reply::InputStatus(vec![0, 1, 0, 0]),
            Reply::OutputStatus(vec![1, 0]),
            Reply::ReaderStatus(vec![2]),
            Reply::Raw(RawCard {
                reader: 0,
                format: RawFormat::Wiegand,
                bit_count: 26,
                data: vec![0x12, 0x34, 0x56, 0x40],
            }),
            Reply::Fmt(FmtCard {
                reader: 0,
                direction: 1,
                data: b"12345678".to_vec(),
            }),
            Reply::Keypad(Keypad {
                reader: 0,
                digits: vec![b'1', b'2', 0x7F, 0x0D],
            }),
            Reply::Com(ComSet {
                address: 5,
                baud_rate: 38_400,
            }),
            Reply::BioReadResult(BioReadResult {
                reader: 0,
                status: 0,
                bio_type: 2,
                quality: 0x80,
                data: vec![9, 8, 7],
            }),
            Reply::BioMatchResult(BioMatchResult {
                reader: 0,
                status: 0,
                score: 0xF0,
            }),
            Reply::ClientCryptogram(Ccrypt {
                client_uid: [1; 8],
                rnd_b: [2; 8],
                cryptogram: [3; 16],
            }),
            Reply::InitialRmac([4; 16]),
            Reply::Busy,
            Reply::MfgReply(Mfg {
                vendor_code: [0x00, 0x0A, 0xEB],
                data: vec![],
            }),
        ]
    }

    #[test]
    fn every_variant_round_trips() -> TestResult {
        let all = all_replies();
        assert_eq!(all.len(), 18, "one of each variant");
        for reply in all {
            let data = reply.to_data();
            let back = Reply::parse(reply.code(), &data)?;
            assert_eq!(back, reply, "{}", reply.name());
            assert_eq!(code_name(reply.code()), Some(reply.name()));
        }
        Ok(())
    }

    #[test]
    fn every_nak_code_round_trips() -> TestResult {
        for byte in 0..=u8::MAX {
            let reply = Reply::parse(code::NAK, &[byte])?;
            assert_eq!(reply.to_data(), [byte]);
            let Reply::Nak(nak) = reply else {
                return Err(ReplyError::UnknownCode(byte));
            };
            assert_eq!(nak.code.as_u8(), byte);
            assert_eq!(matches!(nak.code, NakCode::Other(_)), byte > 0x09);
        }
        assert_eq!(NakCode::from_u8(0x06), NakCode::EncryptionRequired);
        assert_eq!(NakCode::from_u8(0x09), NakCode::UnableToProcess);
        Ok(())
    }

    #[test]
    fn nak_keeps_detail_bytes() -> TestResult {
        let reply = Reply::parse(code::NAK, &hex("05 11 12"))?;
        assert_eq!(
            reply,
            Reply::Nak(Nak {
                code: NakCode::UnsupportedSecurityBlock,
                detail: vec![0x11, 0x12]
            })
        );
        Ok(())
    }

    #[test]
    fn pdid_matches_spec_layout() -> TestResult {
        let wire = hex("5C 26 23 19 02 BE BA FE CA 03 01 28");
        let Reply::PdId(id) = Reply::parse(code::PDID, &wire)? else {
            return Err(ReplyError::UnknownCode(0));
        };
        assert_eq!(id.vendor_code, [0x5C, 0x26, 0x23]);
        assert_eq!(id.serial, 0xCAFE_BABE);
        assert_eq!(
            (id.firmware_major, id.firmware_minor, id.firmware_build),
            (3, 1, 40)
        );
        assert_eq!(Reply::PdId(id).to_data(), wire);
        Ok(())
    }

    #[test]
    fn pdcap_functions_and_sizes() -> TestResult {
        for f in 1..=16u8 {
            let func = CapabilityFunction::from_u8(f);
            assert!(!matches!(func, CapabilityFunction::Other(_)));
            assert_eq!(func.as_u8(), f);
        }
        assert_eq!(CapabilityFunction::from_u8(0), CapabilityFunction::Other(0));
        let Reply::PdCap(caps) = Reply::parse(code::PDCAP, &hex("0A 00 04 10 02 00"))? else {
            return Err(ReplyError::UnknownCode(0));
        };
        assert_eq!(caps.len(), 2);
        assert_eq!(caps.first().map(Capability::size_value), Some(1024));
        assert_eq!(
            caps.get(1).map(|c| c.function),
            Some(CapabilityFunction::OsdpVersion)
        );
        assert_eq!(Reply::parse(code::PDCAP, &[])?, Reply::PdCap(vec![]));
        Ok(())
    }

    #[test]
    fn raw_matches_spec_layout() -> TestResult {
        // 26-bit Wiegand on reader 0: bit count 0x001A, four bytes.
        let wire = hex("00 01 1A 00 12 34 56 40");
        let reply = Reply::parse(code::RAW, &wire)?;
        assert_eq!(
            reply,
            Reply::Raw(RawCard {
                reader: 0,
                format: RawFormat::Wiegand,
                bit_count: 26,
                data: vec![0x12, 0x34, 0x56, 0x40],
            })
        );
        assert_eq!(reply.to_data(), wire);
        Ok(())
    }

    #[test]
    fn raw_encoder_pads_or_truncates_to_the_bit_count() {
        let short = Reply::Raw(RawCard {
            reader: 0,
            format: RawFormat::Unspecified,
            bit_count: 12,
            data: vec![0xAB],
        });
        assert_eq!(short.to_data(), hex("00 00 0C 00 AB 00"));
        let long = Reply::Raw(RawCard {
            reader: 0,
            format: RawFormat::Unspecified,
            bit_count: 8,
            data: vec![0xAB, 0xCD],
        });
        assert_eq!(long.to_data(), hex("00 00 08 00 AB"));
    }

    #[test]
    fn keypad_maps_star_and_hash() -> TestResult {
        let Reply::Keypad(k) = Reply::parse(code::KEYPAD, &hex("00 05 31 32 33 7F 0D"))? else {
            return Err(ReplyError::UnknownCode(0));
        };
        assert_eq!(k.to_chars().as_deref(), Some("123*#"));
        assert_eq!(Keypad::key_char(b'*'), Some('*'));
        assert_eq!(Keypad::key_char(b'#'), Some('#'));
        // Binary digit values (not ASCII) are not keys.
        assert_eq!(Keypad::key_char(0x01), None);
        Ok(())
    }

    #[test]
    fn wrong_lengths_are_rejected() {
        let cases: &[(u8, &[u8], Expected)] = &[
            (code::ACK, &[0], Expected::Exactly(0)),
            (code::BUSY, &[0], Expected::Exactly(0)),
            (code::NAK, &[], Expected::AtLeast(1)),
            (code::PDID, &[0; 11], Expected::Exactly(12)),
            (code::PDCAP, &[1, 1], Expected::MultipleOf(3)),
            (code::LSTATR, &[0], Expected::Exactly(2)),
            (code::RAW, &[0, 1, 26], Expected::AtLeast(4)),
            (code::RAW, &[0, 1, 26, 0, 1, 2, 3], Expected::Exactly(8)),
            (code::RAW, &[0, 1, 8, 0, 1, 2], Expected::Exactly(5)),
            (code::FMT, &[0, 0], Expected::AtLeast(3)),
            (code::FMT, &[0, 0, 2, b'1'], Expected::Exactly(5)),
            (code::KEYPAD, &[0], Expected::AtLeast(2)),
            (code::KEYPAD, &[0, 1], Expected::Exactly(3)),
            (code::COM, &[0; 6], Expected::Exactly(5)),
            (code::BIOREADR, &[0; 5], Expected::AtLeast(6)),
            (code::BIOREADR, &[0, 0, 0, 0, 1, 0], Expected::Exactly(7)),
            (code::BIOMATCHR, &[0; 4], Expected::Exactly(3)),
            (code::CCRYPT, &[0; 31], Expected::Exactly(32)),
            (code::RMAC_I, &[0; 17], Expected::Exactly(16)),
            (code::MFGREP, &[0, 0], Expected::AtLeast(3)),
        ];
        for &(code, data, expected) in cases {
            assert_eq!(
                Reply::parse(code, data),
                Err(ReplyError::BadLength {
                    code,
                    expected,
                    got: data.len()
                }),
                "{code:#04x} {data:02x?}"
            );
        }
    }

    #[test]
    fn invalid_fields_and_unknown_codes_are_errors() {
        assert!(matches!(
            Reply::parse(code::COM, &hex("80 80 25 00 00")),
            Err(ReplyError::InvalidField {
                field: "address",
                ..
            })
        ));
        assert!(matches!(
            Reply::parse(code::FMT, &hex("00 02 00")),
            Err(ReplyError::InvalidField {
                field: "read direction",
                ..
            })
        ));
        for code in [0x00, 0x42, 0x52, 0x7A, 0x80, 0xB1, 0xFF] {
            assert_eq!(Reply::parse(code, &[]), Err(ReplyError::UnknownCode(code)));
        }
    }

    #[test]
    fn parse_never_panics_and_accepted_input_re_encodes_identically() {
        let mut accepted = 0;
        for (code, data) in crate::testutil::payloads(0x9E37_79B9_7F4A_7C15u64) {
            if let Ok(reply) = Reply::parse(code, &data) {
                accepted += 1;
                assert_eq!(reply.code(), code);
                assert_eq!(reply.to_data(), data, "{}", reply.name());
            }
        }
        assert!(accepted > 0);
    }

    #[test]
    fn debug_masks_card_keypad_and_biometric_data() {
        let card = Reply::Raw(RawCard {
            reader: 0,
            format: RawFormat::Wiegand,
            bit_count: 34,
            data: vec![0x9A, 0x7B, 0x3C, 0x4D, 0xC0],
        });
        let text = format!("{card:?} {card:#?}");
        assert!(text.contains("bit_count: 34"), "{text}");
        assert!(text.contains("..4DC0"), "{text}");
        for leak in ["9A", "7B", "3C", "154", "123"] {
            assert!(!text.to_uppercase().contains(leak), "{leak} in {text}");
        }
        // Too short to show any of it.
        let short = format!(
            "{:?}",
            RawCard {
                reader: 0,
                format: RawFormat::Unspecified,
                bit_count: 16,
                data: vec![0xE5, 0xF6],
            }
        );
        assert!(
            short.contains("<redacted>") && !short.contains("E5"),
            "{short}"
        );

        let pin = Reply::Keypad(Keypad {
            reader: 0,
            digits: b"4711".to_vec(),
        });
        let text = format!("{pin:?} {pin:#?}");
        assert!(text.contains("digit_count: 4"), "{text}");
        assert!(!text.contains("4711") && !text.contains("52"), "{text}");

        let fmt = Reply::Fmt(FmtCard {
            reader: 0,
            direction: 0,
            data: b"98765432".to_vec(),
        });
        let text = format!("{fmt:?}");
        assert!(!text.contains("98765") && !text.contains("57"), "{text}");

        let bio = Reply::BioReadResult(BioReadResult {
            reader: 0,
            status: 0,
            bio_type: 0,
            quality: 0,
            data: vec![0xAB; 3],
        });
        let text = format!("{bio:?}");
        assert!(
            text.contains("data_len: 3") && !text.contains("171"),
            "{text}"
        );
    }
}
