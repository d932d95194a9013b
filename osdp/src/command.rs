//! Typed OSDP v2.2 commands, sent by the control panel (CP) to a peripheral
//! device (PD).
//!
//! The frame layer delivers a command code and the data bytes after it
//! ([`crate::frame::Packet::code`] and [`crate::frame::Packet::data`], after
//! decryption when the secure channel is on). [`Command::parse`] turns that
//! pair into a [`Command`]; [`Command::code`] and [`Command::encode_data`] turn
//! it back into the code byte and data bytes to hand to
//! [`crate::frame::PacketBuilder`].
//!
//! Parsing is strict: every fixed layout must have exactly its length, every
//! length field must match the bytes that follow it, and enumerated fields
//! must hold a value the specification defines. It never panics, whatever
//! the input.
//!
//! Encoding cannot fail. Where a field is wider than the wire allows (a text
//! longer than 255 bytes, a biometric template longer than 65535 bytes) the
//! encoder writes only what the length field can describe, so the output is
//! always a well-formed command.
//!
//! Secrets stay out of logs: the key carried by `osdp_KEYSET` lives in a
//! [`Key`] that is wiped on drop and prints as `<redacted>`, and
//! biometric templates print only their length.

use std::fmt;

use thiserror::Error;

pub use crate::sc::Key;

/// Command codes, named after the specification (`osdp_POLL` is [`code::POLL`]).
pub mod code {
    /// osdp_POLL: poll for events; the PD answers ACK or a pending report.
    pub const POLL: u8 = 0x60;
    /// osdp_ID: ID report request (answered by osdp_PDID).
    pub const ID: u8 = 0x61;
    /// osdp_CAP: capabilities request (answered by osdp_PDCAP).
    pub const CAP: u8 = 0x62;
    /// osdp_LSTAT: local (tamper and power) status request.
    pub const LSTAT: u8 = 0x64;
    /// osdp_ISTAT: input status request.
    pub const ISTAT: u8 = 0x65;
    /// osdp_OSTAT: output status request.
    pub const OSTAT: u8 = 0x66;
    /// osdp_RSTAT: reader (tamper) status request.
    pub const RSTAT: u8 = 0x67;
    /// osdp_OUT: output control.
    pub const OUT: u8 = 0x68;
    /// osdp_LED: reader LED control.
    pub const LED: u8 = 0x69;
    /// osdp_BUZ: reader buzzer control.
    pub const BUZ: u8 = 0x6A;
    /// osdp_TEXT: reader text output.
    pub const TEXT: u8 = 0x6B;
    /// osdp_COMSET: set address and baud rate.
    pub const COMSET: u8 = 0x6E;
    /// osdp_BIOREAD: scan and send biometric data.
    pub const BIOREAD: u8 = 0x73;
    /// osdp_BIOMATCH: scan and match against a biometric template.
    pub const BIOMATCH: u8 = 0x74;
    /// osdp_KEYSET: load a new secure channel base key.
    pub const KEYSET: u8 = 0x75;
    /// osdp_CHLNG: secure channel challenge (RND.A).
    pub const CHLNG: u8 = 0x76;
    /// osdp_SCRYPT: secure channel server cryptogram.
    pub const SCRYPT: u8 = 0x77;
    /// osdp_ACURXSIZE: the largest reply the CP accepts.
    pub const ACURXSIZE: u8 = 0x7B;
    /// osdp_MFG: manufacturer specific command.
    pub const MFG: u8 = 0x80;
    /// osdp_ABORT: abort the current PD operation.
    pub const ABORT: u8 = 0xA2;
    /// osdp_KEEPACTIVE: keep the reader active for a while.
    pub const KEEPACTIVE: u8 = 0xA7;
}

/// The short specification name of a command code (`0x60` is `"POLL"`), or
/// `None` for a code this module does not implement.
pub fn code_name(code: u8) -> Option<&'static str> {
    Some(match code {
        code::POLL => "POLL",
        code::ID => "ID",
        code::CAP => "CAP",
        code::LSTAT => "LSTAT",
        code::ISTAT => "ISTAT",
        code::OSTAT => "OSTAT",
        code::RSTAT => "RSTAT",
        code::OUT => "OUT",
        code::LED => "LED",
        code::BUZ => "BUZ",
        code::TEXT => "TEXT",
        code::COMSET => "COMSET",
        code::BIOREAD => "BIOREAD",
        code::BIOMATCH => "BIOMATCH",
        code::KEYSET => "KEYSET",
        code::CHLNG => "CHLNG",
        code::SCRYPT => "SCRYPT",
        code::ACURXSIZE => "ACURXSIZE",
        code::MFG => "MFG",
        code::ABORT => "ABORT",
        code::KEEPACTIVE => "KEEPACTIVE",
        _ => return None,
    })
}

/// The data length a layout requires, as reported in length errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Exactly this many bytes.
    Exactly(usize),
    /// At least this many bytes (a header before variable data).
    AtLeast(usize),
    /// A non-zero whole number of records of this size.
    MultipleOf(usize),
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Exactly(n) => write!(f, "exactly {n}"),
            Expected::AtLeast(n) => write!(f, "at least {n}"),
            Expected::MultipleOf(n) => write!(f, "a non-zero multiple of {n}"),
        }
    }
}

/// Prints a code as `NAME (0xNN)` or just `0xNN`.
pub(crate) struct CodeLabel(pub(crate) u8, pub(crate) Option<&'static str>);

impl fmt::Display for CodeLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(name) => write!(f, "{name} ({:#04x})", self.0),
            None => write!(f, "{:#04x}", self.0),
        }
    }
}

fn label(code: &u8) -> CodeLabel {
    CodeLabel(*code, code_name(*code))
}

/// Why a code and data block are not a valid command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// The code is not an OSDP 2.2 command this module implements.
    #[error("unknown command code {0:#04x}")]
    UnknownCode(u8),
    /// The data block does not have the length the command's layout requires.
    #[error("{}: data length {got}, expected {expected}", label(.code))]
    BadLength {
        /// Command code.
        code: u8,
        /// What the layout requires.
        expected: Expected,
        /// Data bytes received.
        got: usize,
    },
    /// A field holds a value the specification does not define.
    #[error("{}: invalid {field} {value:#04x}", label(.code))]
    InvalidField {
        /// Command code.
        code: u8,
        /// Which field.
        field: &'static str,
        /// The value found.
        value: u32,
    },
}

/// What an `osdp_OUT` record does to its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputControlCode {
    /// 0x00: do not alter this output.
    Nop,
    /// 0x01: permanent state off, abort any timed operation.
    PermanentOffAbortTimed,
    /// 0x02: permanent state on, abort any timed operation.
    PermanentOnAbortTimed,
    /// 0x03: permanent state off, let a timed operation complete.
    PermanentOffAllowTimed,
    /// 0x04: permanent state on, let a timed operation complete.
    PermanentOnAllowTimed,
    /// 0x05: temporarily on for the timer, then back to the permanent state.
    TemporaryOnThenOff,
    /// 0x06: temporarily off for the timer, then back to the permanent state.
    TemporaryOffThenOn,
}

impl OutputControlCode {
    /// The code for a wire byte, if the specification defines one.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x00 => Self::Nop,
            0x01 => Self::PermanentOffAbortTimed,
            0x02 => Self::PermanentOnAbortTimed,
            0x03 => Self::PermanentOffAllowTimed,
            0x04 => Self::PermanentOnAllowTimed,
            0x05 => Self::TemporaryOnThenOff,
            0x06 => Self::TemporaryOffThenOn,
            _ => return None,
        })
    }

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Nop => 0x00,
            Self::PermanentOffAbortTimed => 0x01,
            Self::PermanentOnAbortTimed => 0x02,
            Self::PermanentOffAllowTimed => 0x03,
            Self::PermanentOnAllowTimed => 0x04,
            Self::TemporaryOnThenOff => 0x05,
            Self::TemporaryOffThenOn => 0x06,
        }
    }
}

/// One 4-byte `osdp_OUT` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutputControl {
    /// Output number, 0 for the first output.
    pub output: u8,
    /// What to do.
    pub control: OutputControlCode,
    /// Timer for the temporary codes, in units of 100 ms.
    pub timer: u16,
}

impl OutputControl {
    /// Bytes per record on the wire.
    pub const LEN: usize = 4;

    fn encode(&self, out: &mut Vec<u8>) {
        let [lo, hi] = self.timer.to_le_bytes();
        out.extend_from_slice(&[self.output, self.control.as_u8(), lo, hi]);
    }

    fn parse(rec: &[u8]) -> Result<Self, CommandError> {
        let &[output, control, lo, hi] = rec else {
            return Err(CommandError::BadLength {
                code: code::OUT,
                expected: Expected::Exactly(Self::LEN),
                got: rec.len(),
            });
        };
        Ok(OutputControl {
            output,
            control: OutputControlCode::from_u8(control)
                .ok_or_else(|| invalid(code::OUT, "output control code", control))?,
            timer: u16::from_le_bytes([lo, hi]),
        })
    }
}

/// An LED color (`osdp_LED` on and off colors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedColor {
    /// 0: off (black).
    Black,
    /// 1: red.
    Red,
    /// 2: green.
    Green,
    /// 3: amber.
    Amber,
    /// 4: blue.
    Blue,
    /// 5: magenta.
    Magenta,
    /// 6: cyan.
    Cyan,
    /// 7: white.
    White,
}

impl LedColor {
    /// The color for a wire byte, if the specification defines one.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::Black,
            1 => Self::Red,
            2 => Self::Green,
            3 => Self::Amber,
            4 => Self::Blue,
            5 => Self::Magenta,
            6 => Self::Cyan,
            7 => Self::White,
            _ => return None,
        })
    }

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Black => 0,
            Self::Red => 1,
            Self::Green => 2,
            Self::Amber => 3,
            Self::Blue => 4,
            Self::Magenta => 5,
            Self::Cyan => 6,
            Self::White => 7,
        }
    }
}

/// Control code of the temporary half of an LED record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemporaryLedCode {
    /// 0x00: do not alter the temporary settings.
    Nop,
    /// 0x01: cancel any temporary operation and show the permanent state.
    Cancel,
    /// 0x02: set the temporary state and start the timer now.
    Set,
}

impl TemporaryLedCode {
    /// The code for a wire byte, if the specification defines one.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x00 => Self::Nop,
            0x01 => Self::Cancel,
            0x02 => Self::Set,
            _ => return None,
        })
    }

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Nop => 0x00,
            Self::Cancel => 0x01,
            Self::Set => 0x02,
        }
    }
}

/// Control code of the permanent half of an LED record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermanentLedCode {
    /// 0x00: do not alter the permanent settings.
    Nop,
    /// 0x01: set the permanent state.
    Set,
}

impl PermanentLedCode {
    /// The code for a wire byte, if the specification defines one.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x00 => Self::Nop,
            0x01 => Self::Set,
            _ => return None,
        })
    }

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Nop => 0x00,
            Self::Set => 0x01,
        }
    }
}

/// The temporary (timed) LED state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemporaryLed {
    /// What to do with the temporary state.
    pub control: TemporaryLedCode,
    /// On time of a flash, in units of 100 ms.
    pub on_time: u8,
    /// Off time of a flash, in units of 100 ms.
    pub off_time: u8,
    /// Color during the on time.
    pub on_color: LedColor,
    /// Color during the off time.
    pub off_color: LedColor,
    /// How long the temporary state lasts, in units of 100 ms.
    pub timer: u16,
}

/// The permanent LED state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PermanentLed {
    /// What to do with the permanent state.
    pub control: PermanentLedCode,
    /// On time of a flash, in units of 100 ms.
    pub on_time: u8,
    /// Off time of a flash, in units of 100 ms.
    pub off_time: u8,
    /// Color during the on time.
    pub on_color: LedColor,
    /// Color during the off time.
    pub off_color: LedColor,
}

/// One 14-byte `osdp_LED` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LedControl {
    /// Reader number, 0 for the first reader.
    pub reader: u8,
    /// LED number, 0 for the first LED.
    pub led: u8,
    /// Temporary state.
    pub temporary: TemporaryLed,
    /// Permanent state.
    pub permanent: PermanentLed,
}

impl LedControl {
    /// Bytes per record on the wire.
    pub const LEN: usize = 14;

    /// LED 0 of reader 0 steady in `color` for `tenths` x 100 ms, then back
    /// to its permanent state (which this leaves alone). On and off times
    /// are non-zero where readers insist on it (libosdp NAKs all-zero times).
    pub fn temporary(color: LedColor, tenths: u16) -> LedControl {
        LedControl {
            reader: 0,
            led: 0,
            temporary: TemporaryLed {
                control: TemporaryLedCode::Set,
                on_time: 10,
                off_time: 0,
                on_color: color,
                off_color: color,
                timer: tenths,
            },
            permanent: PermanentLed {
                control: PermanentLedCode::Nop,
                on_time: 1,
                off_time: 0,
                on_color: LedColor::Black,
                off_color: LedColor::Black,
            },
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let t = &self.temporary;
        let p = &self.permanent;
        let [lo, hi] = t.timer.to_le_bytes();
        out.extend_from_slice(&[
            self.reader,
            self.led,
            t.control.as_u8(),
            t.on_time,
            t.off_time,
            t.on_color.as_u8(),
            t.off_color.as_u8(),
            lo,
            hi,
            p.control.as_u8(),
            p.on_time,
            p.off_time,
            p.on_color.as_u8(),
            p.off_color.as_u8(),
        ]);
    }

    fn parse(rec: &[u8]) -> Result<Self, CommandError> {
        let &[reader, led, t_ctl, t_on, t_off, t_on_c, t_off_c, lo, hi, p_ctl, p_on, p_off, p_on_c, p_off_c] =
            rec
        else {
            return Err(CommandError::BadLength {
                code: code::LED,
                expected: Expected::Exactly(Self::LEN),
                got: rec.len(),
            });
        };
        let color = |field, v| LedColor::from_u8(v).ok_or_else(|| invalid(code::LED, field, v));
        Ok(LedControl {
            reader,
            led,
            temporary: TemporaryLed {
                control: TemporaryLedCode::from_u8(t_ctl)
                    .ok_or_else(|| invalid(code::LED, "temporary control code", t_ctl))?,
                on_time: t_on,
                off_time: t_off,
                on_color: color("temporary on color", t_on_c)?,
                off_color: color("temporary off color", t_off_c)?,
                timer: u16::from_le_bytes([lo, hi]),
            },
            permanent: PermanentLed {
                control: PermanentLedCode::from_u8(p_ctl)
                    .ok_or_else(|| invalid(code::LED, "permanent control code", p_ctl))?,
                on_time: p_on,
                off_time: p_off,
                on_color: color("permanent on color", p_on_c)?,
                off_color: color("permanent off color", p_off_c)?,
            },
        })
    }
}

/// Tone code of an `osdp_BUZ` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToneCode {
    /// 0x00: no tone.
    None,
    /// 0x01: buzzer off.
    Off,
    /// 0x02: the default tone.
    Default,
}

impl ToneCode {
    /// The code for a wire byte, if the specification defines one.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x00 => Self::None,
            0x01 => Self::Off,
            0x02 => Self::Default,
            _ => return None,
        })
    }

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::None => 0x00,
            Self::Off => 0x01,
            Self::Default => 0x02,
        }
    }
}

/// The 5-byte `osdp_BUZ` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BuzzerControl {
    /// Reader number, 0 for the first reader.
    pub reader: u8,
    /// Tone to play.
    pub tone: ToneCode,
    /// On time, in units of 100 ms.
    pub on_time: u8,
    /// Off time, in units of 100 ms.
    pub off_time: u8,
    /// Number of on/off cycles; 0 repeats until told otherwise.
    pub count: u8,
}

impl BuzzerControl {
    /// Bytes on the wire.
    pub const LEN: usize = 5;
}

/// Text command of an `osdp_TEXT` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextCommand {
    /// 0x01: permanent text, no wrap.
    PermanentNoWrap,
    /// 0x02: permanent text, with wrap.
    PermanentWrap,
    /// 0x03: temporary text, no wrap.
    TemporaryNoWrap,
    /// 0x04: temporary text, with wrap.
    TemporaryWrap,
}

impl TextCommand {
    /// The command for a wire byte, if the specification defines one.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x01 => Self::PermanentNoWrap,
            0x02 => Self::PermanentWrap,
            0x03 => Self::TemporaryNoWrap,
            0x04 => Self::TemporaryWrap,
            _ => return None,
        })
    }

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::PermanentNoWrap => 0x01,
            Self::PermanentWrap => 0x02,
            Self::TemporaryNoWrap => 0x03,
            Self::TemporaryWrap => 0x04,
        }
    }
}

/// The `osdp_TEXT` command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TextControl {
    /// Reader number, 0 for the first reader.
    pub reader: u8,
    /// How to show the text.
    pub command: TextCommand,
    /// How long temporary text stays, in seconds.
    pub temp_time: u8,
    /// Row of the first character (1 is the top row).
    pub row: u8,
    /// Column of the first character (1 is the leftmost column).
    pub column: u8,
    /// The characters; at most 255 are sent.
    pub text: Vec<u8>,
}

impl TextControl {
    /// Bytes before the text.
    pub const HEADER_LEN: usize = 6;
}

/// The `osdp_COMSET` command and the `osdp_COM` reply: address and baud rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ComSet {
    /// Address, 0..=0x7E (0x7F is the broadcast address).
    pub address: u8,
    /// Baud rate, for example 9600 or 115200.
    pub baud_rate: u32,
}

impl ComSet {
    /// Bytes on the wire.
    pub const LEN: usize = 5;
    /// The largest address a device may take.
    pub const MAX_ADDRESS: u8 = 0x7E;

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.address);
        out.extend_from_slice(&self.baud_rate.to_le_bytes());
    }

    /// Parses the 5-byte layout; `None` when the length is wrong, `Err(v)`
    /// with the address when it is out of range.
    pub(crate) fn parse(data: &[u8]) -> Option<Result<Self, u8>> {
        let &[address, b0, b1, b2, b3] = data else {
            return None;
        };
        if address > Self::MAX_ADDRESS {
            return Some(Err(address));
        }
        Some(Ok(ComSet {
            address,
            baud_rate: u32::from_le_bytes([b0, b1, b2, b3]),
        }))
    }
}

/// The `osdp_KEYSET` command: a new secure channel base key (key type 0x01,
/// the only type OSDP 2.2 defines, 16 bytes).
///
/// Encoding writes the key in clear into the output buffer; the caller sends
/// it only under the secure channel and should wipe the buffer afterwards.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeySet {
    /// The new base key (SCBK).
    pub key: Key,
}

impl KeySet {
    /// Key type byte for the secure channel base key.
    pub const KEY_TYPE_SCBK: u8 = 0x01;
    /// Bytes on the wire: type, length, key.
    pub const LEN: usize = 2 + crate::sc::BLOCK;

    /// A KEYSET carrying `key` as the new SCBK.
    pub fn scbk(key: [u8; 16]) -> Self {
        KeySet { key: Key::new(key) }
    }
}

/// `osdp_MFG` command and `osdp_MFGREP` reply: vendor code and free data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mfg {
    /// IEEE OUI of the vendor, in wire order.
    pub vendor_code: [u8; 3],
    /// Vendor defined bytes.
    pub data: Vec<u8>,
}

impl Mfg {
    /// Bytes before the vendor data.
    pub const HEADER_LEN: usize = 3;

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.vendor_code);
        out.extend_from_slice(&self.data);
    }

    pub(crate) fn parse(data: &[u8]) -> Option<Self> {
        let &[a, b, c, ref rest @ ..] = data else {
            return None;
        };
        Some(Mfg {
            vendor_code: [a, b, c],
            data: rest.to_vec(),
        })
    }
}

/// The 4-byte `osdp_BIOREAD` command: scan and send back biometric data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BioRead {
    /// Reader number, 0 for the first reader.
    pub reader: u8,
    /// Biometric type (0x00 not specified, 0x01 right thumb, .. see the spec).
    pub bio_type: u8,
    /// Data format (0x00 not specified, 0x01 raw PGM, 0x02 ANSI/INCITS 378).
    pub format: u8,
    /// Requested quality.
    pub quality: u8,
}

impl BioRead {
    /// Bytes on the wire.
    pub const LEN: usize = 4;
}

/// The `osdp_BIOMATCH` command: scan and match against a template. The
/// template is biometric data: `Debug` prints only its length.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BioMatch {
    /// Reader number, 0 for the first reader.
    pub reader: u8,
    /// Biometric type.
    pub bio_type: u8,
    /// Template format.
    pub format: u8,
    /// Quality threshold for a match.
    pub quality: u8,
    /// The template; at most 65535 bytes are sent.
    pub template: Vec<u8>,
}

impl BioMatch {
    /// Bytes before the template.
    pub const HEADER_LEN: usize = 6;
}

impl fmt::Debug for BioMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BioMatch")
            .field("reader", &self.reader)
            .field("bio_type", &self.bio_type)
            .field("format", &self.format)
            .field("quality", &self.quality)
            .field("template_len", &self.template.len())
            .finish()
    }
}

/// An OSDP command (CP to PD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// osdp_POLL.
    Poll,
    /// osdp_ID (reply type 0x00, standard PDID).
    Id,
    /// osdp_CAP (reply type 0x00, standard PDCAP).
    Cap,
    /// osdp_LSTAT.
    LocalStatus,
    /// osdp_ISTAT.
    InputStatus,
    /// osdp_OSTAT.
    OutputStatus,
    /// osdp_RSTAT.
    ReaderStatus,
    /// osdp_OUT: one or more output records.
    Output(Vec<OutputControl>),
    /// osdp_LED: one or more LED records.
    Led(Vec<LedControl>),
    /// osdp_BUZ.
    Buzzer(BuzzerControl),
    /// osdp_TEXT.
    Text(TextControl),
    /// osdp_COMSET.
    ComSet(ComSet),
    /// osdp_KEYSET.
    KeySet(KeySet),
    /// osdp_CHLNG: the CP's random number RND.A.
    Challenge([u8; 8]),
    /// osdp_SCRYPT: the server cryptogram.
    ServerCryptogram([u8; 16]),
    /// osdp_ACURXSIZE: the largest reply the CP accepts, in bytes.
    AcuRxSize(u16),
    /// osdp_KEEPACTIVE: keep the reader active, in milliseconds.
    KeepActive(u16),
    /// osdp_ABORT.
    Abort,
    /// osdp_MFG.
    Mfg(Mfg),
    /// osdp_BIOREAD.
    BioRead(BioRead),
    /// osdp_BIOMATCH.
    BioMatch(BioMatch),
}

fn invalid(code: u8, field: &'static str, value: u8) -> CommandError {
    CommandError::InvalidField {
        code,
        field,
        value: u32::from(value),
    }
}

/// Appends a one-byte length and at most 255 bytes of `bytes`.
pub(crate) fn put_u8_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len().min(usize::from(u8::MAX));
    out.push(n as u8);
    out.extend_from_slice(bytes.get(..n).unwrap_or_default());
}

/// Appends a two-byte little-endian length and at most 65535 bytes of `bytes`.
pub(crate) fn put_u16_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(bytes.get(..n).unwrap_or_default());
}

impl Command {
    /// The command code.
    pub fn code(&self) -> u8 {
        match self {
            Command::Poll => code::POLL,
            Command::Id => code::ID,
            Command::Cap => code::CAP,
            Command::LocalStatus => code::LSTAT,
            Command::InputStatus => code::ISTAT,
            Command::OutputStatus => code::OSTAT,
            Command::ReaderStatus => code::RSTAT,
            Command::Output(_) => code::OUT,
            Command::Led(_) => code::LED,
            Command::Buzzer(_) => code::BUZ,
            Command::Text(_) => code::TEXT,
            Command::ComSet(_) => code::COMSET,
            Command::KeySet(_) => code::KEYSET,
            Command::Challenge(_) => code::CHLNG,
            Command::ServerCryptogram(_) => code::SCRYPT,
            Command::AcuRxSize(_) => code::ACURXSIZE,
            Command::KeepActive(_) => code::KEEPACTIVE,
            Command::Abort => code::ABORT,
            Command::Mfg(_) => code::MFG,
            Command::BioRead(_) => code::BIOREAD,
            Command::BioMatch(_) => code::BIOMATCH,
        }
    }

    /// The short specification name (`"POLL"` for osdp_POLL).
    pub fn name(&self) -> &'static str {
        code_name(self.code()).unwrap_or("UNKNOWN")
    }

    /// Appends the data block (everything after the code byte) to `out`.
    pub fn encode_data(&self, out: &mut Vec<u8>) {
        match self {
            Command::Poll
            | Command::LocalStatus
            | Command::InputStatus
            | Command::OutputStatus
            | Command::ReaderStatus
            | Command::Abort => {}
            // Reply type 0x00: the standard report.
            Command::Id | Command::Cap => out.push(0x00),
            Command::Output(records) => records.iter().for_each(|r| r.encode(out)),
            Command::Led(records) => records.iter().for_each(|r| r.encode(out)),
            Command::Buzzer(b) => {
                out.extend_from_slice(&[b.reader, b.tone.as_u8(), b.on_time, b.off_time, b.count])
            }
            Command::Text(t) => {
                out.extend_from_slice(&[t.reader, t.command.as_u8(), t.temp_time, t.row, t.column]);
                put_u8_prefixed(out, &t.text);
            }
            Command::ComSet(c) => c.encode(out),
            Command::KeySet(k) => {
                out.push(KeySet::KEY_TYPE_SCBK);
                out.push(crate::sc::BLOCK as u8);
                out.extend_from_slice(k.key.expose());
            }
            Command::Challenge(rnd) => out.extend_from_slice(rnd),
            Command::ServerCryptogram(c) => out.extend_from_slice(c),
            Command::AcuRxSize(n) | Command::KeepActive(n) => {
                out.extend_from_slice(&n.to_le_bytes())
            }
            Command::Mfg(m) => m.encode(out),
            Command::BioRead(b) => {
                out.extend_from_slice(&[b.reader, b.bio_type, b.format, b.quality])
            }
            Command::BioMatch(b) => {
                out.extend_from_slice(&[b.reader, b.bio_type, b.format, b.quality]);
                put_u16_prefixed(out, &b.template);
            }
        }
    }

    /// The data block as a new vector.
    pub fn to_data(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_data(&mut out);
        out
    }

    /// Parses a command code and its data block.
    pub fn parse(code: u8, data: &[u8]) -> Result<Command, CommandError> {
        let got = data.len();
        let bad_len = |expected| CommandError::BadLength {
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
        let records = |size: usize| {
            if got == 0 || got % size != 0 {
                Err(bad_len(Expected::MultipleOf(size)))
            } else {
                Ok(data.chunks_exact(size))
            }
        };
        match code {
            code::POLL => exactly(0).map(|()| Command::Poll),
            code::LSTAT => exactly(0).map(|()| Command::LocalStatus),
            code::ISTAT => exactly(0).map(|()| Command::InputStatus),
            code::OSTAT => exactly(0).map(|()| Command::OutputStatus),
            code::RSTAT => exactly(0).map(|()| Command::ReaderStatus),
            code::ABORT => exactly(0).map(|()| Command::Abort),
            code::ID | code::CAP => {
                let &[reply_type] = data else {
                    return Err(bad_len(Expected::Exactly(1)));
                };
                if reply_type != 0x00 {
                    return Err(invalid(code, "reply type", reply_type));
                }
                Ok(if code == code::ID {
                    Command::Id
                } else {
                    Command::Cap
                })
            }
            code::OUT => records(OutputControl::LEN)?
                .map(OutputControl::parse)
                .collect::<Result<_, _>>()
                .map(Command::Output),
            code::LED => records(LedControl::LEN)?
                .map(LedControl::parse)
                .collect::<Result<_, _>>()
                .map(Command::Led),
            code::BUZ => {
                let &[reader, tone, on_time, off_time, count] = data else {
                    return Err(bad_len(Expected::Exactly(BuzzerControl::LEN)));
                };
                Ok(Command::Buzzer(BuzzerControl {
                    reader,
                    tone: ToneCode::from_u8(tone)
                        .ok_or_else(|| invalid(code, "tone code", tone))?,
                    on_time,
                    off_time,
                    count,
                }))
            }
            code::TEXT => {
                let &[reader, command, temp_time, row, column, len, ref text @ ..] = data else {
                    return Err(bad_len(Expected::AtLeast(TextControl::HEADER_LEN)));
                };
                exactly(TextControl::HEADER_LEN + usize::from(len))?;
                Ok(Command::Text(TextControl {
                    reader,
                    command: TextCommand::from_u8(command)
                        .ok_or_else(|| invalid(code, "text command", command))?,
                    temp_time,
                    row,
                    column,
                    text: text.to_vec(),
                }))
            }
            code::COMSET => match ComSet::parse(data) {
                None => Err(bad_len(Expected::Exactly(ComSet::LEN))),
                Some(Err(addr)) => Err(invalid(code, "address", addr)),
                Some(Ok(c)) => Ok(Command::ComSet(c)),
            },
            code::KEYSET => {
                let &[key_type, key_len, ref key @ ..] = data else {
                    return Err(bad_len(Expected::AtLeast(2)));
                };
                exactly(2 + usize::from(key_len))?;
                if key_type != KeySet::KEY_TYPE_SCBK {
                    return Err(invalid(code, "key type", key_type));
                }
                let key: [u8; 16] = key
                    .try_into()
                    .map_err(|_| invalid(code, "key length", key_len))?;
                Ok(Command::KeySet(KeySet::scbk(key)))
            }
            code::CHLNG => data
                .try_into()
                .map(Command::Challenge)
                .map_err(|_| bad_len(Expected::Exactly(8))),
            code::SCRYPT => data
                .try_into()
                .map(Command::ServerCryptogram)
                .map_err(|_| bad_len(Expected::Exactly(16))),
            code::ACURXSIZE | code::KEEPACTIVE => {
                let &[lo, hi] = data else {
                    return Err(bad_len(Expected::Exactly(2)));
                };
                let n = u16::from_le_bytes([lo, hi]);
                Ok(if code == code::ACURXSIZE {
                    Command::AcuRxSize(n)
                } else {
                    Command::KeepActive(n)
                })
            }
            code::MFG => Mfg::parse(data)
                .map(Command::Mfg)
                .ok_or_else(|| bad_len(Expected::AtLeast(Mfg::HEADER_LEN))),
            code::BIOREAD => {
                let &[reader, bio_type, format, quality] = data else {
                    return Err(bad_len(Expected::Exactly(BioRead::LEN)));
                };
                Ok(Command::BioRead(BioRead {
                    reader,
                    bio_type,
                    format,
                    quality,
                }))
            }
            code::BIOMATCH => {
                let &[reader, bio_type, format, quality, lo, hi, ref template @ ..] = data else {
                    return Err(bad_len(Expected::AtLeast(BioMatch::HEADER_LEN)));
                };
                exactly(BioMatch::HEADER_LEN + usize::from(u16::from_le_bytes([lo, hi])))?;
                Ok(Command::BioMatch(BioMatch {
                    reader,
                    bio_type,
                    format,
                    quality,
                    template: template.to_vec(),
                }))
            }
            other => Err(CommandError::UnknownCode(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), CommandError>;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap_or_default())
            .collect()
    }

    fn led_record() -> LedControl {
        LedControl {
            reader: 0,
            led: 1,
            temporary: TemporaryLed {
                control: TemporaryLedCode::Set,
                on_time: 5,
                off_time: 5,
                on_color: LedColor::Red,
                off_color: LedColor::Black,
                timer: 0x012C,
            },
            permanent: PermanentLed {
                control: PermanentLedCode::Set,
                on_time: 1,
                off_time: 0,
                on_color: LedColor::Green,
                off_color: LedColor::Black,
            },
        }
    }

    fn all_commands() -> Vec<Command> {
        vec![
            Command::Poll,
            Command::Id,
            Command::Cap,
            Command::LocalStatus,
            Command::InputStatus,
            Command::OutputStatus,
            Command::ReaderStatus,
            Command::Output(vec![
                OutputControl {
                    output: 0,
                    control: OutputControlCode::TemporaryOnThenOff,
                    timer: 50,
                },
                OutputControl {
                    output: 3,
                    control: OutputControlCode::PermanentOffAbortTimed,
                    timer: 0,
                },
            ]),
            Command::Led(vec![
                led_record(),
                LedControl {
                    led: 0,
                    ..led_record()
                },
            ]),
            Command::Buzzer(BuzzerControl {
                reader: 0,
                tone: ToneCode::Default,
                on_time: 2,
                off_time: 1,
                count: 3,
            }),
            Command::Text(TextControl {
                reader: 0,
                command: TextCommand::TemporaryWrap,
                temp_time: 5,
                row: 1,
                column: 1,
                text: b"Welcome".to_vec(),
            }),
            Command::ComSet(ComSet {
                address: 0x12,
                baud_rate: 115_200,
            }),
            Command::KeySet(KeySet::scbk([0xA5; 16])),
            Command::Challenge([1, 2, 3, 4, 5, 6, 7, 8]),
            Command::ServerCryptogram([0x5A; 16]),
            Command::AcuRxSize(1024),
            Command::KeepActive(3000),
            Command::Abort,
            Command::Mfg(Mfg {
                vendor_code: [0x00, 0x0A, 0xEB],
                data: vec![0x10, 0x20],
            }),
            Command::BioRead(BioRead {
                reader: 0,
                bio_type: 0x02,
                format: 0x02,
                quality: 0x50,
            }),
            Command::BioMatch(BioMatch {
                reader: 1,
                bio_type: 0x07,
                format: 0x02,
                quality: 0x60,
                template: vec![0xB1, 0x0C, 0xDA],
            }),
        ]
    }

    #[test]
    fn every_variant_round_trips() -> TestResult {
        let all = all_commands();
        assert_eq!(all.len(), 21, "one of each variant");
        for cmd in all {
            let data = cmd.to_data();
            let back = Command::parse(cmd.code(), &data)?;
            assert_eq!(back, cmd, "{}", cmd.name());
            assert_eq!(code_name(cmd.code()), Some(cmd.name()));
        }
        Ok(())
    }

    #[test]
    fn empty_variants_have_the_documented_data() {
        assert!(Command::Poll.to_data().is_empty());
        assert!(Command::Abort.to_data().is_empty());
        assert_eq!(Command::Id.to_data(), [0x00]);
        assert_eq!(Command::Cap.to_data(), [0x00]);
    }

    #[test]
    fn out_record_matches_spec_layout() -> TestResult {
        // Output 1, temporary on then off, 2.5 s (25 x 100 ms = 0x0019).
        let cmd = Command::Output(vec![OutputControl {
            output: 1,
            control: OutputControlCode::TemporaryOnThenOff,
            timer: 25,
        }]);
        assert_eq!(cmd.code(), 0x68);
        assert_eq!(cmd.to_data(), hex("01 05 19 00"));
        assert_eq!(Command::parse(0x68, &hex("01 05 19 00"))?, cmd);
        Ok(())
    }

    #[test]
    fn led_record_matches_spec_layout() -> TestResult {
        let cmd = Command::Led(vec![led_record()]);
        // reader, led, temp: ctl on off on_c off_c timer(LE), perm: ctl on off on_c off_c
        let wire = hex("00 01 02 05 05 01 00 2C 01 01 01 00 02 00");
        assert_eq!(cmd.code(), 0x69);
        assert_eq!(cmd.to_data(), wire);
        assert_eq!(Command::parse(0x69, &wire)?, cmd);
        Ok(())
    }

    #[test]
    fn buz_matches_spec_layout() -> TestResult {
        let cmd = Command::Buzzer(BuzzerControl {
            reader: 0,
            tone: ToneCode::Default,
            on_time: 5,
            off_time: 5,
            count: 2,
        });
        assert_eq!(cmd.code(), 0x6A);
        assert_eq!(cmd.to_data(), hex("00 02 05 05 02"));
        assert_eq!(Command::parse(0x6A, &hex("00 02 05 05 02"))?, cmd);
        Ok(())
    }

    #[test]
    fn comset_matches_annex_e_example() -> TestResult {
        // Annex E: osdp_COMSET to address 0 at 9600 baud: 6E 00 80 25 00 00.
        let cmd = Command::parse(0x6E, &hex("00 80 25 00 00"))?;
        assert_eq!(
            cmd,
            Command::ComSet(ComSet {
                address: 0,
                baud_rate: 9600
            })
        );
        assert_eq!(cmd.to_data(), hex("00 80 25 00 00"));
        Ok(())
    }

    #[test]
    fn text_and_keyset_layouts() {
        let text = Command::Text(TextControl {
            reader: 0,
            command: TextCommand::PermanentNoWrap,
            temp_time: 0,
            row: 1,
            column: 2,
            text: b"Hi".to_vec(),
        });
        assert_eq!(text.to_data(), hex("00 01 00 01 02 02 48 69"));
        let mut key = [0u8; 16];
        key.iter_mut().zip(0u8..).for_each(|(k, i)| *k = i);
        let data = Command::KeySet(KeySet::scbk(key)).to_data();
        assert_eq!(data.get(..2), Some(&[0x01, 0x10][..]));
        assert_eq!(data.get(2..), Some(&key[..]));
    }

    #[test]
    fn wrong_lengths_are_rejected() {
        let cases: &[(u8, &[u8], Expected)] = &[
            (code::POLL, &[0], Expected::Exactly(0)),
            (code::ID, &[], Expected::Exactly(1)),
            (code::CAP, &[0, 0], Expected::Exactly(1)),
            (code::OUT, &[], Expected::MultipleOf(4)),
            (code::OUT, &[1, 1, 0, 0, 2], Expected::MultipleOf(4)),
            (code::LED, &[0; 13], Expected::MultipleOf(14)),
            (code::BUZ, &[0, 2, 1, 1], Expected::Exactly(5)),
            (
                code::BUZ,
                &[0, 2, 1, 1, 1, 0, 2, 1, 1, 1],
                Expected::Exactly(5),
            ),
            (code::TEXT, &[0, 1, 0, 1, 1], Expected::AtLeast(6)),
            (
                code::TEXT,
                &[0, 1, 0, 1, 1, 3, b'a', b'b'],
                Expected::Exactly(9),
            ),
            (code::COMSET, &[0, 0x80, 0x25, 0], Expected::Exactly(5)),
            (code::KEYSET, &[1], Expected::AtLeast(2)),
            (code::KEYSET, &[1, 16, 0, 0], Expected::Exactly(18)),
            (code::CHLNG, &[0; 7], Expected::Exactly(8)),
            (code::SCRYPT, &[0; 17], Expected::Exactly(16)),
            (code::ACURXSIZE, &[0], Expected::Exactly(2)),
            (code::KEEPACTIVE, &[0, 0, 0], Expected::Exactly(2)),
            (code::MFG, &[0, 0], Expected::AtLeast(3)),
            (code::BIOREAD, &[0; 5], Expected::Exactly(4)),
            (code::BIOMATCH, &[0, 0, 0, 0, 2, 0, 9], Expected::Exactly(8)),
        ];
        for &(code, data, expected) in cases {
            assert_eq!(
                Command::parse(code, data),
                Err(CommandError::BadLength {
                    code,
                    expected,
                    got: data.len()
                }),
                "{code:#04x} {data:02x?}"
            );
        }
    }

    #[test]
    fn invalid_fields_are_rejected() {
        let cases: &[(u8, &[u8], &str)] = &[
            (code::ID, &[1], "reply type"),
            (code::OUT, &[0, 7, 0, 0], "output control code"),
            (code::BUZ, &[0, 3, 1, 1, 1], "tone code"),
            (code::TEXT, &[0, 5, 0, 1, 1, 0], "text command"),
            (code::COMSET, &[0x7F, 0x80, 0x25, 0, 0], "address"),
            (code::KEYSET, &[2, 1, 0], "key type"),
            (code::KEYSET, &[1, 2, 0, 0], "key length"),
        ];
        for &(code, data, field) in cases {
            assert!(
                matches!(Command::parse(code, data), Err(CommandError::InvalidField { field: f, .. }) if f == field),
                "{code:#04x} {data:02x?}"
            );
        }
        let mut bad_color = hex("00 01 02 05 05 01 00 2C 01 01 01 00 02 00");
        if let Some(b) = bad_color.get_mut(5) {
            *b = 8;
        }
        assert!(matches!(
            Command::parse(code::LED, &bad_color),
            Err(CommandError::InvalidField {
                field: "temporary on color",
                value: 8,
                ..
            })
        ));
    }

    #[test]
    fn unknown_codes_are_errors() {
        for code in [0x00, 0x40, 0x63, 0x6C, 0x7C, 0xA1, 0xFF] {
            assert_eq!(
                Command::parse(code, &[]),
                Err(CommandError::UnknownCode(code))
            );
        }
    }

    #[test]
    fn parse_never_panics_and_accepted_input_re_encodes_identically() {
        let mut accepted = 0;
        for (code, data) in crate::testutil::payloads(0x2545_F491_4F6C_DD1Du64) {
            if let Ok(cmd) = Command::parse(code, &data) {
                accepted += 1;
                assert_eq!(cmd.code(), code);
                assert_eq!(cmd.to_data(), data, "{}", cmd.name());
            }
        }
        assert!(accepted > 0);
    }

    #[test]
    fn debug_does_not_leak_the_key_or_template() {
        let key = [0xC3u8; 16];
        let cmd = Command::KeySet(KeySet::scbk(key));
        let text = format!("{cmd:?} {cmd:#?}");
        assert!(text.contains("<redacted>"));
        assert!(!text.contains("195"), "{text}");
        assert!(!text.to_lowercase().contains("c3"), "{text}");
        let bio = Command::BioMatch(BioMatch {
            reader: 0,
            bio_type: 0,
            format: 0,
            quality: 0,
            template: vec![0xDE, 0xAD, 0xBE, 0xEF],
        });
        let text = format!("{bio:?}");
        assert!(text.contains("template_len: 4"), "{text}");
        assert!(
            !text.contains("222") && !text.contains("173") && !text.to_lowercase().contains("dead"),
            "{text}"
        );
    }

    #[test]
    fn secret_key_compares_by_value() {
        assert_eq!(Key::new([1; 16]), Key::new([1; 16]));
        assert_ne!(Key::new([1; 16]), Key::new([2; 16]));
    }

    #[test]
    fn oversized_fields_are_clamped_to_a_valid_encoding() -> TestResult {
        let cmd = Command::Text(TextControl {
            reader: 0,
            command: TextCommand::PermanentWrap,
            temp_time: 0,
            row: 1,
            column: 1,
            text: vec![b'x'; 300],
        });
        let data = cmd.to_data();
        assert_eq!(data.len(), TextControl::HEADER_LEN + 255);
        assert!(
            matches!(Command::parse(code::TEXT, &data)?, Command::Text(t) if t.text.len() == 255)
        );
        Ok(())
    }

    #[test]
    fn errors_name_the_command() {
        let err = Command::parse(code::LED, &[0; 3]).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg,
            "LED (0x69): data length 3, expected a non-zero multiple of 14"
        );
    }
}
