//! Per-reader credential input: turns what a reader reports (card reads,
//! keypad keys) into complete credential presentations for the decision
//! engine, and tells the reader what to show (LED, beeper).
//!
//! [`ReaderInput`] is a sans-IO state machine for one reader, driven like the
//! state machines of the `osdp` crate: the caller feeds it events with the
//! current time and drains its outputs. It never reads a clock and spawns
//! nothing, so tests run in virtual time.
//!
//! ```text
//! on osdp_RAW        -> input.handle_card(&raw, formats.decode(..), now)
//! on osdp_KEYPAD     -> input.handle_keys(&keypad.digits, now)
//! at poll_timeout()  -> input.handle_timeout(now)
//! after each call    -> while let Some(p) = input.poll_presentation() { engine.decide(p) }
//!                       while let Some(f) = input.poll_feedback() { drive the reader's LED/beeper }
//! after a decision on a presentation with a PIN
//!                    -> input.report_outcome(pin_was_wrong, now)
//! ```
//!
//! [`InputStates`] holds one [`ReaderInput`] per reader (by default keyed by
//! [`ReaderId`]: bus, device address, reader number) with one queue of
//! outputs and one combined [`InputStates::poll_timeout`].
//!
//! # Rules
//!
//! - **Keys.** `osdp_KEYPAD` codes: ASCII `'0'..='9'` and, as libosdp devices
//!   send them, raw `0x00..=0x09` are digits; `0x7F` or `'*'` clears; `0x0D`
//!   or `'#'` submits. Other codes (function keys `'A'..='H'`) are ignored.
//! - **PIN entry.** Digits are buffered until `#`. `*` clears the buffer
//!   (and always answers [`Feedback::Cleared`]). Each digit restarts the
//!   inter-digit timeout ([`InputConfig::inter_digit_timeout`], 5 s); when it
//!   runs out the entry is **discarded** ([`Feedback::EntryTimeout`]), as
//!   most panels do. [`InputConfig::submit_on_digit_timeout`] submits it
//!   instead, if it has at least [`InputConfig::min_pin_len`] digits.
//!   Submitting fewer than `min_pin_len` digits (4) rejects the entry
//!   ([`EntryError::TooShort`]); a `#` with nothing typed is ignored. A digit
//!   past [`InputConfig::max_pin_len`] (12) rejects the whole entry
//!   ([`EntryError::TooLong`]) and the keys that follow are swallowed until
//!   `#`, `*` or the inter-digit timeout, so the tail of an overlong entry
//!   never becomes a PIN of its own.
//! - **Modes** ([`InputMode`]). Card only: cards are presented, keys are
//!   ignored (no beeps, nothing buffered). PIN only: PINs are presented, a
//!   card is presented as [`Presentation::Rejected`]. Card or PIN: each is
//!   presented on its own; a card does not disturb a PIN being typed. Card
//!   and PIN: a card opens a window ([`InputConfig::pin_window`], 10 s) and
//!   asks for the PIN ([`Feedback::PromptPin`]); a PIN submitted in the
//!   window is presented with the card as [`Presentation::CardAndPin`]. The
//!   window is a hard deadline for *submitting* the PIN (it is not extended
//!   by typing). When it ends the card is presented as
//!   [`Presentation::PinTimeout`] and any digits typed are discarded. A
//!   second card during the window replaces the first, restarts the window
//!   and discards digits typed so far. A PIN with no card waiting is
//!   presented as [`Presentation::Rejected`] ([`RejectReason::PinWithoutCard`]).
//!   A `*` clears the digits but keeps the card waiting; a rejected (too
//!   short or too long) entry can be retried within the window.
//! - **Bad reads.** A card whose parity fails, or whose bits cannot be
//!   decoded at all, is presented as [`Presentation::BadRead`] (with
//!   [`Feedback::BadRead`]) in every mode: never dropped silently, and never
//!   taken as a card. It leaves a PIN entry and a waiting card alone.
//! - **Wrong-PIN lockout.** The caller reports the outcome of every decision
//!   on a presentation that carried a PIN ([`ReaderInput::report_outcome`]).
//!   After [`InputConfig::lockout_threshold`] (5) wrong PINs within
//!   [`InputConfig::lockout_window`] (5 min) the reader is locked for
//!   [`InputConfig::lockout_duration`] (60 s) and [`Feedback::LockedOut`] is
//!   emitted. Input still works while locked, but every credential
//!   presentation carries the [`Lockout`] (its end and the count of wrong
//!   PINs), so the engine denies with "PIN locked after 5 wrong tries";
//!   reports made while locked are ignored. A correct PIN resets the count;
//!   so does the end of a lockout ([`Feedback::LockoutEnded`]).
//!
//! # Secrets
//!
//! A [`Pin`] lives in a fixed-size heap buffer that is never reallocated
//! (moving a `Pin` moves a pointer, not the digits) and is zeroized when it
//! is cleared or dropped: on `*`, on a timeout, on a rejected entry, and
//! when the decision engine drops the presentation. `Debug` and `Display`
//! never show PIN digits, nor more than the last four digits of a card
//! number (see [`Card::masked_number`]); raw card bits are never shown.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use osdp::card::{CardError, CardFormatTable, DecodedCard, ParityStatus};
use osdp::reply::{RawCard, Reply};
use thiserror::Error;

pub use crate::access::model::Pin;

/// Capacity of a [`Pin`]: the largest [`InputConfig::max_pin_len`].
pub const MAX_PIN_DIGITS: usize = crate::access::model::PIN_MAX_DIGITS;

/// Longest timeout or window an [`InputConfig`] accepts.
pub const MAX_INPUT_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Which credentials a reader takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InputMode {
    /// Cards only; keypad keys are ignored. The default: readers without a
    /// keypad never send keys, and a PIN alone is the weakest credential.
    #[default]
    CardOnly,
    /// PINs only; a card is presented as [`Presentation::Rejected`].
    PinOnly,
    /// A card or a PIN, each presented on its own.
    CardOrPin,
    /// A card followed by a PIN within [`InputConfig::pin_window`].
    CardAndPin,
}

impl InputMode {
    /// Whether keypad input is buffered (every mode but [`InputMode::CardOnly`]).
    pub fn takes_keys(self) -> bool {
        self != InputMode::CardOnly
    }
}

/// Settings of one reader's input. [`InputConfig::validate`] lists the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputConfig {
    /// Which credentials the reader takes.
    pub mode: InputMode,
    /// Time allowed between two keys of a PIN entry (default 5 s).
    pub inter_digit_timeout: Duration,
    /// On the inter-digit timeout, submit an entry of at least
    /// `min_pin_len` digits instead of discarding it (default `false`:
    /// discard, as most panels do).
    pub submit_on_digit_timeout: bool,
    /// Fewest digits a submitted PIN may have (default 4).
    pub min_pin_len: usize,
    /// Most digits a PIN may have (default 12, at most [`MAX_PIN_DIGITS`]).
    pub max_pin_len: usize,
    /// Card and PIN mode: time from the card read to the PIN's `#`
    /// (default 10 s).
    pub pin_window: Duration,
    /// Wrong PINs within `lockout_window` that lock the reader (default 5;
    /// 0 disables the lockout).
    pub lockout_threshold: u32,
    /// Span in which wrong PINs are counted (default 5 min).
    pub lockout_window: Duration,
    /// How long a lockout lasts (default 60 s).
    pub lockout_duration: Duration,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            mode: InputMode::default(),
            inter_digit_timeout: Duration::from_secs(5),
            submit_on_digit_timeout: false,
            min_pin_len: 4,
            max_pin_len: 12,
            pin_window: Duration::from_secs(10),
            lockout_threshold: 5,
            lockout_window: Duration::from_secs(5 * 60),
            lockout_duration: Duration::from_secs(60),
        }
    }
}

impl InputConfig {
    /// The default settings with `mode`.
    pub fn with_mode(mode: InputMode) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }

    /// Checks the limits: `1 <= min_pin_len <= max_pin_len <=`
    /// [`MAX_PIN_DIGITS`]; the inter-digit timeout and PIN window (and, when
    /// the lockout is enabled, its window and duration) are non-zero and at
    /// most [`MAX_INPUT_DURATION`].
    pub fn validate(&self) -> Result<(), InputConfigError> {
        if self.min_pin_len == 0
            || self.min_pin_len > self.max_pin_len
            || self.max_pin_len > MAX_PIN_DIGITS
        {
            return Err(InputConfigError::PinLength {
                min: self.min_pin_len,
                max: self.max_pin_len,
            });
        }
        let mut durations = vec![
            ("inter_digit_timeout", self.inter_digit_timeout),
            ("pin_window", self.pin_window),
        ];
        if self.lockout_threshold > 0 {
            durations.push(("lockout_window", self.lockout_window));
            durations.push(("lockout_duration", self.lockout_duration));
        }
        for (field, value) in durations {
            if value.is_zero() || value > MAX_INPUT_DURATION {
                return Err(InputConfigError::Duration { field, value });
            }
        }
        Ok(())
    }
}

/// Why an [`InputConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InputConfigError {
    /// The PIN length limits are out of order or out of range.
    #[error("PIN length limits {min}..={max} must satisfy 1 <= min <= max <= {MAX_PIN_DIGITS}")]
    PinLength {
        /// `min_pin_len` as given.
        min: usize,
        /// `max_pin_len` as given.
        max: usize,
    },
    /// A timeout or window is zero or longer than [`MAX_INPUT_DURATION`].
    #[error("{field} is {value:?}, must be more than zero and at most 24 h")]
    Duration {
        /// Name of the setting.
        field: &'static str,
        /// Its value.
        value: Duration,
    },
}

/// A card read, decoded. Owns what the decision engine needs; `Debug` and
/// `Display` show the card number masked and never the raw bits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Card {
    /// Name of the matched format; `None` when no format has this bit count.
    pub format: Option<String>,
    /// Number of bits read.
    pub bit_count: u16,
    /// Facility code, for formats that have one.
    pub facility: Option<u64>,
    /// Card number; for an unknown format, all the bits as one number.
    pub number: u64,
    /// Parity outcome: [`ParityStatus::Ok`] or [`ParityStatus::NotApplicable`]
    /// for a card presented as a card, [`ParityStatus::Failed`] only inside
    /// a [`BadReadReason::Parity`].
    pub parity: ParityStatus,
    /// The bits as the reader sent them (left-justified).
    pub data: Vec<u8>,
}

impl Card {
    /// Builds a card from an `osdp_RAW` reply and its decoding.
    pub fn from_decoded(raw: &RawCard, decoded: &DecodedCard<'_>) -> Self {
        Self {
            format: decoded.format.map(str::to_owned),
            bit_count: decoded.bit_count,
            facility: decoded.facility,
            number: decoded.number,
            parity: decoded.parity,
            data: raw.data.clone(),
        }
    }

    /// The card number for logs: `..` and its last four decimal digits,
    /// zero-padded (`4567` and `1234567` give `..4567`, `12` gives `..0012`),
    /// so neither the number nor its length shows.
    pub fn masked_number(&self) -> String {
        format!("..{:04}", self.number % 10_000)
    }
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Card")
            .field("format", &self.format)
            .field("bit_count", &self.bit_count)
            .field("facility", &self.facility)
            .field("number", &self.masked_number())
            .field("parity", &self.parity)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.format {
            Some(format) => write!(f, "{format} card ")?,
            None => write!(f, "{}-bit card ", self.bit_count)?,
        }
        if let Some(facility) = self.facility {
            write!(f, "{facility}:")?;
        }
        f.write_str(&self.masked_number())
    }
}

/// An active wrong-PIN lockout. `Display` gives the deny message ("PIN
/// locked after 5 wrong tries").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lockout {
    /// When the reader takes PINs again.
    pub until: Instant,
    /// Wrong PINs that caused the lockout.
    pub wrong_pins: u32,
}

impl fmt::Display for Lockout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PIN locked after {} wrong tries", self.wrong_pins)
    }
}

/// Why a credential was refused by the reader's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// A card at a PIN-only reader.
    CardNotAccepted,
    /// Card and PIN mode: a PIN with no card waiting for it.
    PinWithoutCard,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectReason::CardNotAccepted => "card not accepted at a PIN-only reader",
            RejectReason::PinWithoutCard => "PIN without a card",
        })
    }
}

/// Why a card read is not a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadReadReason {
    /// A parity check of the matched format fails: a misread, or a card of
    /// another format. The decoded values are untrustworthy.
    Parity {
        /// The card as decoded despite the failure.
        card: Card,
        /// Index of the first failing check in the format.
        check: usize,
        /// Position of that check's parity bit.
        bit: u16,
    },
    /// The bits could not be decoded (length mismatch, no bits, too long
    /// for any format).
    Undecodable(CardError),
}

/// A complete credential presentation (or a failed one) for the decision
/// engine. Every variant is final: the engine decides on it and, if it
/// carried a PIN, reports the outcome with [`ReaderInput::report_outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presentation {
    /// A card (card only, card or PIN modes).
    Card {
        /// The card.
        card: Card,
        /// Set while the reader is locked after wrong PINs.
        lockout: Option<Lockout>,
    },
    /// A PIN alone (PIN only, card or PIN modes).
    Pin {
        /// The PIN.
        pin: Pin,
        /// Set while the reader is locked after wrong PINs: deny.
        lockout: Option<Lockout>,
    },
    /// A card and the PIN entered within the window after it.
    CardAndPin {
        /// The card.
        card: Card,
        /// The PIN.
        pin: Pin,
        /// Set while the reader is locked after wrong PINs: deny.
        lockout: Option<Lockout>,
    },
    /// Card and PIN mode: a card whose PIN did not come within the window.
    PinTimeout {
        /// The card.
        card: Card,
    },
    /// A card read that failed parity or could not be decoded.
    BadRead {
        /// Bits the reader reported.
        bit_count: u16,
        /// What was wrong.
        reason: BadReadReason,
    },
    /// A credential the reader's mode does not take.
    Rejected {
        /// Which rule refused it.
        reason: RejectReason,
        /// The card, when a card was refused.
        card: Option<Card>,
    },
}

impl Presentation {
    /// The lockout a credential presentation carries.
    pub fn lockout(&self) -> Option<Lockout> {
        match self {
            Presentation::Card { lockout, .. }
            | Presentation::Pin { lockout, .. }
            | Presentation::CardAndPin { lockout, .. } => *lockout,
            _ => None,
        }
    }

    /// The PIN, for presentations that carry one.
    pub fn pin(&self) -> Option<&Pin> {
        match self {
            Presentation::Pin { pin, .. } | Presentation::CardAndPin { pin, .. } => Some(pin),
            _ => None,
        }
    }

    /// The card, for presentations that carry one (a bad read's card only
    /// for a parity failure, and it is not to be trusted).
    pub fn card(&self) -> Option<&Card> {
        match self {
            Presentation::Card { card, .. }
            | Presentation::CardAndPin { card, .. }
            | Presentation::PinTimeout { card }
            | Presentation::BadRead {
                reason: BadReadReason::Parity { card, .. },
                ..
            } => Some(card),
            Presentation::Rejected { card, .. } => card.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for Presentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Presentation::Card { card, .. } => write!(f, "{card}")?,
            Presentation::Pin { pin, .. } => write!(f, "PIN {pin}")?,
            Presentation::CardAndPin { card, pin, .. } => write!(f, "{card} with PIN {pin}")?,
            Presentation::PinTimeout { card } => write!(f, "{card}, no PIN in time")?,
            Presentation::BadRead {
                bit_count,
                reason: BadReadReason::Parity { check, .. },
            } => write!(f, "bad {bit_count}-bit read: parity check {check} failed")?,
            Presentation::BadRead {
                reason: BadReadReason::Undecodable(error),
                ..
            } => write!(f, "bad read: {error}")?,
            Presentation::Rejected { reason, card } => match card {
                Some(card) => write!(f, "{card}: {reason}")?,
                None => write!(f, "{reason}")?,
            },
        }
        match self.lockout() {
            Some(lockout) => write!(f, " ({lockout})"),
            None => Ok(()),
        }
    }
}

/// Why a PIN entry was thrown away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryError {
    /// Submitted with fewer than [`InputConfig::min_pin_len`] digits.
    TooShort,
    /// More than [`InputConfig::max_pin_len`] digits typed.
    TooLong,
}

/// What the reader should show. Suggested signals in the variants' docs;
/// grant and deny signals come from the decision engine, not from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feedback {
    /// Card and PIN mode: a card was read, ask for the PIN until `until`
    /// (e.g. amber LED for the window).
    PromptPin {
        /// End of the window.
        until: Instant,
    },
    /// A digit was buffered (short beep).
    DigitAccepted,
    /// `*` cleared the entry (short double beep).
    Cleared,
    /// The inter-digit timeout discarded the entry (error beep).
    EntryTimeout,
    /// Card and PIN mode: no PIN within the window (amber off, error beep).
    PinTimeout,
    /// The entry was thrown away (error beep).
    EntryRejected(EntryError),
    /// A card read failed (error beep).
    BadRead,
    /// Too many wrong PINs: the reader is locked (e.g. red LED until `until`).
    LockedOut {
        /// End of the lockout.
        until: Instant,
        /// Wrong PINs that caused it.
        wrong_pins: u32,
    },
    /// The lockout ended.
    LockoutEnded,
}

/// A PIN entry in progress.
#[derive(Debug)]
enum Entry {
    /// Nothing typed.
    Idle,
    /// Digits typed; the entry is dropped or submitted at `deadline`.
    Digits { pin: Pin, deadline: Instant },
    /// Too many digits: keys are swallowed until `#`, `*` or `deadline`.
    Overflow { deadline: Instant },
}

impl Entry {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Entry::Idle => None,
            Entry::Digits { deadline, .. } | Entry::Overflow { deadline } => Some(*deadline),
        }
    }
}

/// Card and PIN mode: a card waiting for its PIN.
#[derive(Debug)]
struct PendingCard {
    card: Card,
    until: Instant,
}

/// The timers of a reader, in the order they fire when due at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Window,
    Entry,
    Lockout,
}

/// A keypad key.
enum Key {
    /// An ASCII digit.
    Digit(u8),
    Clear,
    Submit,
    Other,
}

fn classify(code: u8) -> Key {
    match code {
        b'0'..=b'9' => Key::Digit(code),
        // libosdp sends digits as their values.
        0x00..=0x09 => Key::Digit(b'0' + code),
        0x7F | b'*' => Key::Clear,
        0x0D | b'#' => Key::Submit,
        _ => Key::Other,
    }
}

/// `now + duration`; durations are validated (at most a day), so the sum
/// always fits.
fn after(now: Instant, duration: Duration) -> Instant {
    now.checked_add(duration).unwrap_or(now)
}

/// The credential input state machine of one reader. See the
/// [module documentation](self) for the rules.
#[derive(Debug)]
pub struct ReaderInput {
    config: InputConfig,
    entry: Entry,
    pending: Option<PendingCard>,
    /// Times of wrong PINs within the lockout window, oldest first.
    wrong_pins: VecDeque<Instant>,
    lockout: Option<Lockout>,
    presentations: VecDeque<Presentation>,
    feedback: VecDeque<Feedback>,
}

impl ReaderInput {
    /// A reader with `config`, idle.
    pub fn new(config: InputConfig) -> Result<Self, InputConfigError> {
        config.validate()?;
        Ok(Self::with_valid(config))
    }

    fn with_valid(config: InputConfig) -> Self {
        Self {
            config,
            entry: Entry::Idle,
            pending: None,
            wrong_pins: VecDeque::new(),
            lockout: None,
            presentations: VecDeque::new(),
            feedback: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &InputConfig {
        &self.config
    }

    /// Changes the settings. A PIN entry and a waiting card are discarded;
    /// the wrong-PIN count and a lockout are kept.
    pub fn set_config(&mut self, config: InputConfig) -> Result<(), InputConfigError> {
        config.validate()?;
        self.config = config;
        self.reset();
        Ok(())
    }

    /// Discards a PIN entry and a waiting card without any output (e.g. when
    /// the reader goes offline). The wrong-PIN count and a lockout are kept.
    pub fn reset(&mut self) {
        self.entry = Entry::Idle;
        self.pending = None;
    }

    /// The active lockout, if any.
    pub fn lockout(&self) -> Option<Lockout> {
        self.lockout
    }

    /// Wrong PINs counted towards a lockout (those within the window as of
    /// the last call that took the time).
    pub fn wrong_pin_count(&self) -> usize {
        self.wrong_pins.len()
    }

    /// Whether digits are being typed.
    pub fn is_entering_pin(&self) -> bool {
        !matches!(self.entry, Entry::Idle)
    }

    /// Card and PIN mode: the end of the window of a card waiting for its PIN.
    pub fn awaiting_pin_until(&self) -> Option<Instant> {
        self.pending.as_ref().map(|pending| pending.until)
    }

    /// A card read: the `osdp_RAW` reply and its decoding by
    /// [`CardFormatTable::decode`]. A decoding error or failed parity gives
    /// a [`Presentation::BadRead`].
    pub fn handle_card(
        &mut self,
        raw: &RawCard,
        decoded: Result<DecodedCard<'_>, CardError>,
        now: Instant,
    ) {
        self.handle_timeout(now);
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(error) => {
                self.bad_read(raw.bit_count, BadReadReason::Undecodable(error));
                return;
            }
        };
        let card = Card::from_decoded(raw, &decoded);
        if let ParityStatus::Failed { check, bit } = decoded.parity {
            self.bad_read(
                decoded.bit_count,
                BadReadReason::Parity { card, check, bit },
            );
            return;
        }
        match self.config.mode {
            InputMode::CardOnly | InputMode::CardOrPin => {
                let lockout = self.active_lockout(now);
                self.presentations
                    .push_back(Presentation::Card { card, lockout });
            }
            InputMode::PinOnly => self.presentations.push_back(Presentation::Rejected {
                reason: RejectReason::CardNotAccepted,
                card: Some(card),
            }),
            InputMode::CardAndPin => {
                // A new card (replacing a waiting one or not) starts over.
                self.entry = Entry::Idle;
                let until = after(now, self.config.pin_window);
                self.pending = Some(PendingCard { card, until });
                self.feedback.push_back(Feedback::PromptPin { until });
            }
        }
    }

    /// A card read, decoded here with `formats`; see [`ReaderInput::handle_card`].
    pub fn handle_raw_card(&mut self, raw: &RawCard, formats: &CardFormatTable, now: Instant) {
        self.handle_card(raw, formats.decode(raw.bit_count, &raw.data), now);
    }

    fn bad_read(&mut self, bit_count: u16, reason: BadReadReason) {
        self.presentations
            .push_back(Presentation::BadRead { bit_count, reason });
        self.feedback.push_back(Feedback::BadRead);
    }

    /// Keypad keys (the codes of an `osdp_KEYPAD` reply), in order.
    pub fn handle_keys(&mut self, keys: &[u8], now: Instant) {
        self.handle_timeout(now);
        if !self.config.mode.takes_keys() {
            return;
        }
        for &code in keys {
            self.key(code, now);
        }
    }

    fn key(&mut self, code: u8, now: Instant) {
        let deadline = after(now, self.config.inter_digit_timeout);
        match classify(code) {
            Key::Digit(digit) => self.digit(digit, deadline),
            Key::Clear => {
                self.entry = Entry::Idle;
                self.feedback.push_back(Feedback::Cleared);
            }
            Key::Submit => match std::mem::replace(&mut self.entry, Entry::Idle) {
                Entry::Digits { pin, .. } => self.submit(pin, now),
                // A stray `#`, or the end of an overlong entry (already
                // signalled).
                Entry::Idle | Entry::Overflow { .. } => {}
            },
            Key::Other => {}
        }
    }

    fn digit(&mut self, digit: u8, deadline: Instant) {
        let max = self.config.max_pin_len;
        match &mut self.entry {
            Entry::Idle => {
                let mut pin = Pin::empty();
                if pin.push(digit) {
                    self.entry = Entry::Digits { pin, deadline };
                    self.feedback.push_back(Feedback::DigitAccepted);
                }
            }
            Entry::Digits {
                pin,
                deadline: current,
            } => {
                if pin.len() < max && pin.push(digit) {
                    *current = deadline;
                    self.feedback.push_back(Feedback::DigitAccepted);
                } else {
                    // Dropping the old entry zeroizes its digits.
                    self.entry = Entry::Overflow { deadline };
                    self.feedback
                        .push_back(Feedback::EntryRejected(EntryError::TooLong));
                }
            }
            Entry::Overflow { deadline: current } => *current = deadline,
        }
    }

    fn submit(&mut self, pin: Pin, now: Instant) {
        if pin.len() < self.config.min_pin_len {
            self.feedback
                .push_back(Feedback::EntryRejected(EntryError::TooShort));
            return;
        }
        let lockout = self.active_lockout(now);
        let presentation = match self.config.mode {
            // Keys are ignored in this mode; nothing to submit.
            InputMode::CardOnly => return,
            InputMode::PinOnly | InputMode::CardOrPin => Presentation::Pin { pin, lockout },
            InputMode::CardAndPin => match self.pending.take() {
                Some(PendingCard { card, .. }) => Presentation::CardAndPin { card, pin, lockout },
                None => Presentation::Rejected {
                    reason: RejectReason::PinWithoutCard,
                    card: None,
                },
            },
        };
        self.presentations.push_back(presentation);
    }

    fn active_lockout(&self, now: Instant) -> Option<Lockout> {
        self.lockout.filter(|lockout| lockout.until > now)
    }

    /// The decision on a presentation that carried a PIN: `pin_was_wrong`
    /// counts towards a lockout, a correct PIN resets the count. Ignored
    /// while the reader is locked (the engine does not check PINs then).
    pub fn report_outcome(&mut self, pin_was_wrong: bool, now: Instant) {
        self.handle_timeout(now);
        if self.lockout.is_some() {
            return;
        }
        if !pin_was_wrong {
            self.wrong_pins.clear();
            return;
        }
        if self.config.lockout_threshold == 0 {
            return;
        }
        let window = self.config.lockout_window;
        while self
            .wrong_pins
            .front()
            .is_some_and(|&at| after(at, window) <= now)
        {
            self.wrong_pins.pop_front();
        }
        self.wrong_pins.push_back(now);
        let count = u32::try_from(self.wrong_pins.len()).unwrap_or(u32::MAX);
        if count >= self.config.lockout_threshold {
            let until = after(now, self.config.lockout_duration);
            self.lockout = Some(Lockout {
                until,
                wrong_pins: count,
            });
            self.wrong_pins.clear();
            self.feedback.push_back(Feedback::LockedOut {
                until,
                wrong_pins: count,
            });
        }
    }

    /// Runs the timers due at `now` (inter-digit timeout, card and PIN
    /// window, end of a lockout), earliest first. Every `handle_*` call does
    /// this first, so a late call still sees events in the right order.
    pub fn handle_timeout(&mut self, now: Instant) {
        loop {
            let due = [
                (self.awaiting_pin_until(), Timer::Window),
                (self.entry.deadline(), Timer::Entry),
                (self.lockout.map(|lockout| lockout.until), Timer::Lockout),
            ]
            .into_iter()
            .filter_map(|(at, timer)| at.filter(|&at| at <= now).map(|at| (at, timer)))
            .min();
            let Some((_, timer)) = due else {
                return;
            };
            match timer {
                Timer::Window => {
                    self.entry = Entry::Idle;
                    if let Some(PendingCard { card, .. }) = self.pending.take() {
                        self.presentations
                            .push_back(Presentation::PinTimeout { card });
                        self.feedback.push_back(Feedback::PinTimeout);
                    }
                }
                Timer::Entry => match std::mem::replace(&mut self.entry, Entry::Idle) {
                    Entry::Digits { pin, .. }
                        if self.config.submit_on_digit_timeout
                            && pin.len() >= self.config.min_pin_len =>
                    {
                        self.submit(pin, now);
                    }
                    Entry::Digits { .. } => self.feedback.push_back(Feedback::EntryTimeout),
                    Entry::Idle | Entry::Overflow { .. } => {}
                },
                Timer::Lockout => {
                    self.lockout = None;
                    self.wrong_pins.clear();
                    self.feedback.push_back(Feedback::LockoutEnded);
                }
            }
        }
    }

    /// When [`ReaderInput::handle_timeout`] is next due, if anything is
    /// pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.awaiting_pin_until(),
            self.entry.deadline(),
            self.lockout.map(|lockout| lockout.until),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next presentation for the decision engine.
    pub fn poll_presentation(&mut self) -> Option<Presentation> {
        self.presentations.pop_front()
    }

    /// The next signal for the reader.
    pub fn poll_feedback(&mut self) -> Option<Feedback> {
        self.feedback.pop_front()
    }
}

/// A reader on the hub: bus, OSDP device address, reader number on the
/// device (0 for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReaderId {
    /// Bus index.
    pub bus: u16,
    /// OSDP address of the device.
    pub pd: u8,
    /// Reader number on the device (`reader` of `osdp_RAW` / `osdp_KEYPAD`).
    pub reader: u8,
}

impl ReaderId {
    /// Reader `reader` of device `pd` on bus `bus`.
    pub fn new(bus: u16, pd: u8, reader: u8) -> Self {
        Self { bus, pd, reader }
    }
}

impl fmt::Display for ReaderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bus {} pd {} reader {}", self.bus, self.pd, self.reader)
    }
}

/// One [`ReaderInput`] per reader, keyed by `K` ([`ReaderId`] by default),
/// with one output queue for all readers (in the order things happened) and
/// a combined [`InputStates::poll_timeout`]. A reader first heard of gets
/// the default settings.
#[derive(Debug)]
pub struct InputStates<K = ReaderId> {
    default: InputConfig,
    readers: BTreeMap<K, ReaderInput>,
    presentations: VecDeque<(K, Presentation)>,
    feedback: VecDeque<(K, Feedback)>,
}

impl<K: Ord + Clone> InputStates<K> {
    /// No readers yet; readers not configured get `default`.
    pub fn new(default: InputConfig) -> Result<Self, InputConfigError> {
        default.validate()?;
        Ok(Self {
            default,
            readers: BTreeMap::new(),
            presentations: VecDeque::new(),
            feedback: VecDeque::new(),
        })
    }

    /// Sets a reader's settings (see [`ReaderInput::set_config`]).
    pub fn configure(&mut self, key: K, config: InputConfig) -> Result<(), InputConfigError> {
        match self.readers.get_mut(&key) {
            Some(reader) => reader.set_config(config),
            None => {
                self.readers.insert(key, ReaderInput::new(config)?);
                Ok(())
            }
        }
    }

    /// A reader's state.
    pub fn reader(&self, key: &K) -> Option<&ReaderInput> {
        self.readers.get(key)
    }

    /// All readers, in key order.
    pub fn readers(&self) -> impl Iterator<Item = (&K, &ReaderInput)> {
        self.readers.iter()
    }

    /// Forgets a reader (its queued outputs stay queued).
    pub fn remove(&mut self, key: &K) -> Option<ReaderInput> {
        self.readers.remove(key)
    }

    /// Runs `f` on the reader (created with the default settings if new)
    /// and queues its outputs.
    fn with_reader(&mut self, key: K, f: impl FnOnce(&mut ReaderInput)) {
        let default = &self.default;
        let reader = self
            .readers
            .entry(key.clone())
            .or_insert_with(|| ReaderInput::with_valid(default.clone()));
        f(reader);
        drain(&key, reader, &mut self.presentations, &mut self.feedback);
    }

    /// [`ReaderInput::handle_card`] for reader `key`.
    pub fn handle_card(
        &mut self,
        key: K,
        raw: &RawCard,
        decoded: Result<DecodedCard<'_>, CardError>,
        now: Instant,
    ) {
        self.with_reader(key, |reader| reader.handle_card(raw, decoded, now));
    }

    /// [`ReaderInput::handle_raw_card`] for reader `key`.
    pub fn handle_raw_card(
        &mut self,
        key: K,
        raw: &RawCard,
        formats: &CardFormatTable,
        now: Instant,
    ) {
        self.with_reader(key, |reader| reader.handle_raw_card(raw, formats, now));
    }

    /// [`ReaderInput::handle_keys`] for reader `key`.
    pub fn handle_keys(&mut self, key: K, keys: &[u8], now: Instant) {
        self.with_reader(key, |reader| reader.handle_keys(keys, now));
    }

    /// [`ReaderInput::report_outcome`] for reader `key`; ignored for an
    /// unknown reader.
    pub fn report_outcome(&mut self, key: &K, pin_was_wrong: bool, now: Instant) {
        if let Some(reader) = self.readers.get_mut(key) {
            reader.report_outcome(pin_was_wrong, now);
            drain(key, reader, &mut self.presentations, &mut self.feedback);
        }
    }

    /// [`ReaderInput::reset`] for reader `key`.
    pub fn reset(&mut self, key: &K) {
        if let Some(reader) = self.readers.get_mut(key) {
            reader.reset();
        }
    }

    /// Runs every reader's due timers, readers in key order.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (key, reader) in &mut self.readers {
            reader.handle_timeout(now);
            drain(key, reader, &mut self.presentations, &mut self.feedback);
        }
    }

    /// The earliest timer of all readers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.readers
            .values()
            .filter_map(ReaderInput::poll_timeout)
            .min()
    }

    /// The next presentation, with its reader.
    pub fn poll_presentation(&mut self) -> Option<(K, Presentation)> {
        self.presentations.pop_front()
    }

    /// The next signal, with the reader to show it on.
    pub fn poll_feedback(&mut self) -> Option<(K, Feedback)> {
        self.feedback.pop_front()
    }
}

impl InputStates<ReaderId> {
    /// Routes a reply of device `pd` on bus `bus` (as in
    /// [`osdp::cp::Event::Reply`]): `osdp_RAW` and `osdp_KEYPAD` go to their
    /// reader; `false` for any other reply.
    pub fn handle_reply(
        &mut self,
        bus: u16,
        pd: u8,
        reply: &Reply,
        formats: &CardFormatTable,
        now: Instant,
    ) -> bool {
        match reply {
            Reply::Raw(raw) => {
                self.handle_raw_card(ReaderId::new(bus, pd, raw.reader), raw, formats, now);
                true
            }
            Reply::Keypad(keypad) => {
                self.handle_keys(ReaderId::new(bus, pd, keypad.reader), &keypad.digits, now);
                true
            }
            _ => false,
        }
    }
}

fn drain<K: Clone>(
    key: &K,
    reader: &mut ReaderInput,
    presentations: &mut VecDeque<(K, Presentation)>,
    feedback: &mut VecDeque<(K, Feedback)>,
) {
    while let Some(presentation) = reader.poll_presentation() {
        presentations.push_back((key.clone(), presentation));
    }
    while let Some(signal) = reader.poll_feedback() {
        feedback.push_back((key.clone(), signal));
    }
}

#[cfg(test)]
mod tests {
    //! Every rule, in virtual time.

    use super::*;
    use osdp::card::{encode, CardFormat};
    use osdp::reply::{Keypad, RawFormat};

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn reader(mode: InputMode) -> ReaderInput {
        ReaderInput::new(InputConfig::with_mode(mode)).unwrap()
    }

    fn raw_card(facility: u64, number: u64) -> RawCard {
        let (bit_count, data) = encode(&CardFormat::h10301(), Some(facility), number).unwrap();
        RawCard {
            reader: 0,
            format: RawFormat::Wiegand,
            bit_count,
            data,
        }
    }

    fn present(input: &mut ReaderInput, raw: &RawCard, now: Instant) {
        input.handle_raw_card(raw, &CardFormatTable::builtin(), now);
    }

    fn presentations(input: &mut ReaderInput) -> Vec<Presentation> {
        std::iter::from_fn(|| input.poll_presentation()).collect()
    }

    fn feedback(input: &mut ReaderInput) -> Vec<Feedback> {
        std::iter::from_fn(|| input.poll_feedback()).collect()
    }

    fn pin(digits: &str) -> Pin {
        Pin::from_digits(digits.as_bytes()).unwrap()
    }

    /// The one presentation queued, which must be a PIN; returns its digits.
    fn single_pin(input: &mut ReaderInput) -> (String, Option<Lockout>) {
        match presentations(input).as_slice() {
            [Presentation::Pin { pin, lockout }] => (
                String::from_utf8(pin.as_bytes().to_vec()).unwrap(),
                *lockout,
            ),
            other => panic!("expected one PIN, got {other:?}"),
        }
    }

    #[test]
    fn digits_then_hash_submit_a_pin() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::PinOnly);
        input.handle_keys(b"12", t0);
        assert!(input.is_entering_pin());
        input.handle_keys(b"34#", at(t0, 1000));
        assert_eq!(single_pin(&mut input), ("1234".into(), None));
        assert_eq!(feedback(&mut input), [Feedback::DigitAccepted; 4]);
        assert!(!input.is_entering_pin());
        assert_eq!(input.poll_timeout(), None);

        // 0x0D is `#` as OSDP sends it.
        input.handle_keys(b"98765\x0d", at(t0, 2000));
        assert_eq!(single_pin(&mut input).0, "98765");
    }

    #[test]
    fn star_clears_mid_entry() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::PinOnly);
        input.handle_keys(b"12*", t0);
        assert!(!input.is_entering_pin());
        assert_eq!(input.poll_timeout(), None);
        input.handle_keys(b"5678#", t0);
        assert_eq!(single_pin(&mut input).0, "5678");
        let signals = feedback(&mut input);
        assert_eq!(signals[2], Feedback::Cleared);
        assert_eq!(signals.len(), 7);

        // 0x7F is `*` as OSDP sends it; a `*` with nothing typed still answers.
        input.handle_keys(b"99\x7f\x7f1111#", t0);
        assert_eq!(single_pin(&mut input).0, "1111");
        assert_eq!(
            feedback(&mut input)[2..4],
            [Feedback::Cleared, Feedback::Cleared]
        );
    }

    #[test]
    fn inter_digit_timeout_discards_the_entry() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::PinOnly);
        input.handle_keys(b"12", t0);
        assert_eq!(input.poll_timeout(), Some(at(t0, 5000)));
        // Each digit restarts the timer.
        input.handle_keys(b"3", at(t0, 4000));
        assert_eq!(input.poll_timeout(), Some(at(t0, 9000)));
        input.handle_timeout(at(t0, 8999));
        assert!(input.is_entering_pin());
        input.handle_timeout(at(t0, 9000));
        assert!(!input.is_entering_pin());
        assert!(presentations(&mut input).is_empty());
        assert_eq!(feedback(&mut input).last(), Some(&Feedback::EntryTimeout));
        assert_eq!(input.poll_timeout(), None);

        // A fresh entry after the timeout.
        input.handle_keys(b"4321#", at(t0, 10_000));
        assert_eq!(single_pin(&mut input).0, "4321");
    }

    #[test]
    fn a_late_key_starts_a_new_entry_even_without_handle_timeout() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::PinOnly);
        input.handle_keys(b"1234", t0);
        // The caller never ran the timer; the old digits must not be used.
        input.handle_keys(b"56#", at(t0, 6000));
        assert!(presentations(&mut input).is_empty());
        assert_eq!(
            feedback(&mut input)[4..],
            [
                Feedback::EntryTimeout,
                Feedback::DigitAccepted,
                Feedback::DigitAccepted,
                Feedback::EntryRejected(EntryError::TooShort)
            ]
        );
    }

    #[test]
    fn inter_digit_timeout_can_submit_instead() {
        let t0 = Instant::now();
        let config = InputConfig {
            submit_on_digit_timeout: true,
            ..InputConfig::with_mode(InputMode::PinOnly)
        };
        let mut input = ReaderInput::new(config).unwrap();
        input.handle_keys(b"2468", t0);
        input.handle_timeout(at(t0, 5000));
        assert_eq!(single_pin(&mut input).0, "2468");
        // Too short to submit: discarded as usual.
        input.handle_keys(b"12", at(t0, 6000));
        input.handle_timeout(at(t0, 11_000));
        assert!(presentations(&mut input).is_empty());
        assert_eq!(feedback(&mut input).last(), Some(&Feedback::EntryTimeout));
    }

    #[test]
    fn too_short_pin_is_rejected_and_a_stray_hash_ignored() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::PinOnly);
        input.handle_keys(b"#", t0);
        assert!(feedback(&mut input).is_empty());
        input.handle_keys(b"123#", t0);
        assert!(presentations(&mut input).is_empty());
        assert_eq!(
            feedback(&mut input).last(),
            Some(&Feedback::EntryRejected(EntryError::TooShort))
        );
        assert_eq!(input.poll_timeout(), None);
    }

    #[test]
    fn too_long_pin_rejects_the_whole_entry() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::PinOnly);
        // 12 digits are fine.
        input.handle_keys(b"123456789012#", t0);
        assert_eq!(single_pin(&mut input).0, "123456789012");
        feedback(&mut input);

        // The 13th digit rejects the entry; the rest is swallowed up to `#`.
        input.handle_keys(b"1234567890123", t0);
        assert_eq!(
            feedback(&mut input).last(),
            Some(&Feedback::EntryRejected(EntryError::TooLong))
        );
        input.handle_keys(b"4567#", at(t0, 1000));
        assert!(presentations(&mut input).is_empty());
        assert!(feedback(&mut input).is_empty());
        assert!(!input.is_entering_pin());

        // Swallowing also ends with `*` or the inter-digit timeout.
        input.handle_keys(b"12345678901234", at(t0, 2000));
        assert_eq!(input.poll_timeout(), Some(at(t0, 7000)));
        input.handle_timeout(at(t0, 7000));
        assert!(!input.is_entering_pin());
        input.handle_keys(b"1111#", at(t0, 8000));
        assert_eq!(single_pin(&mut input).0, "1111");
    }

    #[test]
    fn libosdp_raw_digits_and_function_keys() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::PinOnly);
        input.handle_keys(&[0x01, 0x02, 0x00, 0x09, 0x0D], t0);
        assert_eq!(single_pin(&mut input).0, "1209");
        // Function keys and unknown codes are ignored; mixed encodings work.
        input.handle_keys(&[b'A', 0x05, b'7', 0x20, 0x03, b'H', b'3', b'#'], t0);
        assert_eq!(single_pin(&mut input).0, "5733");
        // The osdp crate's Keypad carries the codes as sent.
        let keypad = Keypad {
            reader: 0,
            digits: vec![0x04, 0x04, 0x7F, b'8', b'8', b'8', b'8', 0x0D],
        };
        input.handle_keys(&keypad.digits, t0);
        assert_eq!(single_pin(&mut input).0, "8888");
    }

    #[test]
    fn card_only_mode_presents_cards_and_ignores_keys() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::CardOnly);
        present(&mut input, &raw_card(123, 4567), t0);
        let presented = presentations(&mut input);
        let [Presentation::Card { card, lockout }] = presented.as_slice() else {
            panic!("{presented:?}");
        };
        assert_eq!(card.format.as_deref(), Some("H10301"));
        assert_eq!((card.facility, card.number), (Some(123), 4567));
        assert_eq!(card.parity, ParityStatus::Ok);
        assert_eq!(card.data, raw_card(123, 4567).data);
        assert_eq!(*lockout, None);
        assert!(feedback(&mut input).is_empty());

        input.handle_keys(b"1234#", t0);
        assert!(presentations(&mut input).is_empty());
        assert!(feedback(&mut input).is_empty());
        assert_eq!(input.poll_timeout(), None);
    }

    #[test]
    fn pin_only_mode_rejects_cards() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::PinOnly);
        present(&mut input, &raw_card(1, 42), t0);
        let presented = presentations(&mut input);
        let [Presentation::Rejected {
            reason: RejectReason::CardNotAccepted,
            card: Some(card),
        }] = presented.as_slice()
        else {
            panic!("{presented:?}");
        };
        assert_eq!(card.number, 42);
        input.handle_keys(b"1234#", t0);
        assert_eq!(single_pin(&mut input).0, "1234");
    }

    #[test]
    fn card_or_pin_mode_takes_each_alone() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::CardOrPin);
        input.handle_keys(b"12", t0);
        // A card does not disturb the PIN being typed.
        present(&mut input, &raw_card(7, 777), at(t0, 500));
        assert!(matches!(
            presentations(&mut input).as_slice(),
            [Presentation::Card { card, lockout: None }] if card.number == 777
        ));
        input.handle_keys(b"34#", at(t0, 1000));
        assert_eq!(single_pin(&mut input).0, "1234");
        assert_eq!(input.poll_timeout(), None);
    }

    #[test]
    fn card_and_pin_mode_pairs_a_card_with_the_next_pin() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::CardAndPin);
        present(&mut input, &raw_card(9, 1001), t0);
        assert!(presentations(&mut input).is_empty());
        assert_eq!(
            feedback(&mut input),
            [Feedback::PromptPin {
                until: at(t0, 10_000)
            }]
        );
        assert_eq!(input.awaiting_pin_until(), Some(at(t0, 10_000)));
        assert_eq!(input.poll_timeout(), Some(at(t0, 10_000)));

        // `*` clears the digits but keeps the card; a too-short PIN can be
        // retried within the window.
        input.handle_keys(b"55*", at(t0, 1000));
        input.handle_keys(b"12#", at(t0, 2000));
        assert!(presentations(&mut input).is_empty());
        input.handle_keys(b"2580#", at(t0, 9000));
        let presented = presentations(&mut input);
        let [Presentation::CardAndPin { card, pin, lockout }] = presented.as_slice() else {
            panic!("{presented:?}");
        };
        assert_eq!((card.facility, card.number), (Some(9), 1001));
        assert_eq!(pin.as_bytes(), b"2580");
        assert_eq!(*lockout, None);
        assert_eq!(input.awaiting_pin_until(), None);
        assert_eq!(input.poll_timeout(), None);

        // A PIN with no card waiting.
        input.handle_keys(b"2580#", at(t0, 9500));
        assert_eq!(
            presentations(&mut input),
            [Presentation::Rejected {
                reason: RejectReason::PinWithoutCard,
                card: None
            }]
        );
    }

    #[test]
    fn card_and_pin_window_expires() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::CardAndPin);
        present(&mut input, &raw_card(9, 1001), t0);
        input.handle_keys(b"12", at(t0, 8000));
        // The inter-digit timer (13 s) is later; the window comes first.
        assert_eq!(input.poll_timeout(), Some(at(t0, 10_000)));
        input.handle_timeout(at(t0, 9999));
        assert!(presentations(&mut input).is_empty());
        input.handle_timeout(at(t0, 10_000));
        let presented = presentations(&mut input);
        assert!(
            matches!(presented.as_slice(), [Presentation::PinTimeout { card }] if card.number == 1001),
            "{presented:?}"
        );
        assert_eq!(feedback(&mut input).last(), Some(&Feedback::PinTimeout));
        // The digits went with the card.
        assert!(!input.is_entering_pin());
        assert_eq!(input.poll_timeout(), None);
    }

    #[test]
    fn card_and_pin_window_is_a_hard_deadline_even_mid_entry() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::CardAndPin);
        present(&mut input, &raw_card(9, 1001), t0);
        input.handle_keys(b"123", at(t0, 9000));
        // `#` after the window, with no handle_timeout in between.
        input.handle_keys(b"4#", at(t0, 10_500));
        let presented = presentations(&mut input);
        assert!(
            matches!(presented.as_slice(), [Presentation::PinTimeout { .. }]),
            "{presented:?}"
        );
        // "4" alone is then too short.
        assert_eq!(
            feedback(&mut input).last(),
            Some(&Feedback::EntryRejected(EntryError::TooShort))
        );
    }

    #[test]
    fn a_second_card_replaces_the_first() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::CardAndPin);
        present(&mut input, &raw_card(1, 1111), t0);
        input.handle_keys(b"99", at(t0, 1000));
        present(&mut input, &raw_card(2, 2222), at(t0, 8000));
        assert_eq!(
            feedback(&mut input).last(),
            Some(&Feedback::PromptPin {
                until: at(t0, 18_000)
            })
        );
        // Digits typed for the first card are gone.
        assert!(!input.is_entering_pin());
        // Past the first card's window, within the second's.
        input.handle_timeout(at(t0, 12_000));
        assert!(presentations(&mut input).is_empty());
        input.handle_keys(b"4321#", at(t0, 15_000));
        let presented = presentations(&mut input);
        let [Presentation::CardAndPin { card, pin, .. }] = presented.as_slice() else {
            panic!("{presented:?}");
        };
        assert_eq!(card.number, 2222);
        assert_eq!(pin.as_bytes(), b"4321");
    }

    #[test]
    fn a_bad_read_in_the_window_keeps_the_card_waiting() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::CardAndPin);
        present(&mut input, &raw_card(1, 1111), t0);
        let mut bad = raw_card(2, 2222);
        bad.data[3] ^= 0x40; // the odd parity bit (bit 25)
        present(&mut input, &bad, at(t0, 1000));
        assert!(matches!(
            presentations(&mut input).as_slice(),
            [Presentation::BadRead { .. }]
        ));
        input.handle_keys(b"1234#", at(t0, 2000));
        assert!(matches!(
            presentations(&mut input).as_slice(),
            [Presentation::CardAndPin { card, .. }] if card.number == 1111
        ));
    }

    #[test]
    fn parity_failure_is_a_bad_read() {
        let t0 = Instant::now();
        for mode in [
            InputMode::CardOnly,
            InputMode::PinOnly,
            InputMode::CardOrPin,
            InputMode::CardAndPin,
        ] {
            let mut input = reader(mode);
            let mut raw = raw_card(123, 4567);
            raw.data[3] ^= 0x40; // flip the odd parity bit (bit 25)
            present(&mut input, &raw, t0);
            let presented = presentations(&mut input);
            let [Presentation::BadRead {
                bit_count: 26,
                reason: BadReadReason::Parity { card, check, bit },
            }] = presented.as_slice()
            else {
                panic!("{mode:?}: {presented:?}");
            };
            assert_eq!((*check, *bit), (1, 25));
            assert_eq!(card.number, 4567);
            assert!(!card.parity.passed());
            assert_eq!(feedback(&mut input), [Feedback::BadRead]);
            assert_eq!(input.awaiting_pin_until(), None);
        }
    }

    #[test]
    fn undecodable_reads_are_bad_reads() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::CardOnly);
        let raw = RawCard {
            reader: 0,
            format: RawFormat::Wiegand,
            bit_count: 26,
            data: vec![0; 3],
        };
        present(&mut input, &raw, t0);
        let presented = presentations(&mut input);
        assert!(
            matches!(
                presented.as_slice(),
                [Presentation::BadRead {
                    bit_count: 26,
                    reason: BadReadReason::Undecodable(CardError::LengthMismatch { .. })
                }]
            ),
            "{presented:?}"
        );
        assert_eq!(feedback(&mut input), [Feedback::BadRead]);
        // A decoding passed in by the caller is used as is.
        input.handle_card(&raw, Err(CardError::Unrecognized { bit_count: 26 }), t0);
        assert!(matches!(
            presentations(&mut input).as_slice(),
            [Presentation::BadRead {
                reason: BadReadReason::Undecodable(CardError::Unrecognized { .. }),
                ..
            }]
        ));
    }

    #[test]
    fn cards_without_parity_are_cards() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::CardOnly);
        let raw = RawCard {
            reader: 0,
            format: RawFormat::Unspecified,
            bit_count: 32,
            data: vec![0x04, 0xA1, 0xB2, 0xC3],
        };
        present(&mut input, &raw, t0);
        assert!(matches!(
            presentations(&mut input).as_slice(),
            [Presentation::Card { card, .. }]
                if card.number == 0x04A1_B2C3 && card.parity == ParityStatus::NotApplicable
        ));
    }

    /// Enters PIN `digits` and reports it wrong or right; returns the
    /// lockout the presentation carried.
    fn try_pin(
        input: &mut ReaderInput,
        digits: &[u8],
        wrong: bool,
        now: Instant,
    ) -> Option<Lockout> {
        input.handle_keys(digits, now);
        input.handle_keys(b"#", now);
        let (_, lockout) = single_pin(input);
        input.report_outcome(wrong, now);
        lockout
    }

    #[test]
    fn five_wrong_pins_lock_the_reader() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::CardOrPin);
        for i in 0..4 {
            assert_eq!(try_pin(&mut input, b"0000", true, at(t0, i * 1000)), None);
        }
        assert_eq!(input.wrong_pin_count(), 4);
        assert_eq!(input.lockout(), None);
        feedback(&mut input);
        assert_eq!(try_pin(&mut input, b"0000", true, at(t0, 4000)), None);
        let lockout = Lockout {
            until: at(t0, 64_000),
            wrong_pins: 5,
        };
        assert_eq!(input.lockout(), Some(lockout));
        assert_eq!(
            feedback(&mut input).last(),
            Some(&Feedback::LockedOut {
                until: at(t0, 64_000),
                wrong_pins: 5
            })
        );
        assert_eq!(lockout.to_string(), "PIN locked after 5 wrong tries");
        assert_eq!(input.poll_timeout(), Some(at(t0, 64_000)));

        // While locked every credential carries the lockout...
        assert_eq!(
            try_pin(&mut input, b"1234", false, at(t0, 5000)),
            Some(lockout)
        );
        present(&mut input, &raw_card(1, 2), at(t0, 6000));
        let presented = presentations(&mut input);
        assert_eq!(presented[0].lockout(), Some(lockout));
        assert!(presented[0]
            .to_string()
            .ends_with("(PIN locked after 5 wrong tries)"));
        // ...and reports change nothing (the correct one above did not
        // unlock).
        input.report_outcome(true, at(t0, 7000));
        assert_eq!(input.lockout(), Some(lockout));
    }

    #[test]
    fn card_and_pin_presentations_carry_the_lockout() {
        let t0 = Instant::now();
        let config = InputConfig {
            lockout_threshold: 2,
            ..InputConfig::with_mode(InputMode::CardAndPin)
        };
        let mut input = ReaderInput::new(config).unwrap();
        for i in 0..2 {
            present(&mut input, &raw_card(1, 2), at(t0, i * 1000));
            input.handle_keys(b"0000#", at(t0, i * 1000));
            assert_eq!(presentations(&mut input)[0].lockout(), None);
            input.report_outcome(true, at(t0, i * 1000));
        }
        present(&mut input, &raw_card(1, 2), at(t0, 3000));
        input.handle_keys(b"1234#", at(t0, 3000));
        let presented = presentations(&mut input);
        assert_eq!(
            presented[0].lockout(),
            Some(Lockout {
                until: at(t0, 61_000),
                wrong_pins: 2
            })
        );
        assert!(presented[0].pin().is_some() && presented[0].card().is_some());
    }

    #[test]
    fn lockout_expires_and_the_count_starts_over() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::PinOnly);
        for i in 0..5 {
            try_pin(&mut input, b"0000", true, at(t0, i * 1000));
        }
        assert!(input.lockout().is_some());
        feedback(&mut input);
        input.handle_timeout(at(t0, 63_999));
        assert!(input.lockout().is_some());
        input.handle_timeout(at(t0, 64_000));
        assert_eq!(input.lockout(), None);
        assert_eq!(feedback(&mut input), [Feedback::LockoutEnded]);
        assert_eq!(input.poll_timeout(), None);
        assert_eq!(try_pin(&mut input, b"1234", true, at(t0, 65_000)), None);
        assert_eq!(input.wrong_pin_count(), 1);
        for i in 0..3 {
            try_pin(&mut input, b"0000", true, at(t0, 66_000 + i * 1000));
        }
        assert_eq!(input.lockout(), None);
        try_pin(&mut input, b"0000", true, at(t0, 70_000));
        assert_eq!(input.lockout().map(|l| l.wrong_pins), Some(5));
    }

    #[test]
    fn lockout_expiry_runs_before_a_late_pin() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::PinOnly);
        for i in 0..5 {
            try_pin(&mut input, b"0000", true, at(t0, i * 1000));
        }
        // No handle_timeout call: the next PIN still sees the lockout over.
        assert_eq!(try_pin(&mut input, b"1234", false, at(t0, 70_000)), None);
    }

    #[test]
    fn a_correct_pin_resets_the_count() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::PinOnly);
        for i in 0..4 {
            try_pin(&mut input, b"0000", true, at(t0, i * 1000));
        }
        try_pin(&mut input, b"1234", false, at(t0, 4000));
        assert_eq!(input.wrong_pin_count(), 0);
        for i in 0..4 {
            try_pin(&mut input, b"0000", true, at(t0, 5000 + i * 1000));
        }
        assert_eq!(input.lockout(), None);
        try_pin(&mut input, b"0000", true, at(t0, 9000));
        assert!(input.lockout().is_some());
    }

    #[test]
    fn wrong_pins_outside_the_window_do_not_count() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::PinOnly);
        for i in 0..4 {
            try_pin(&mut input, b"0000", true, at(t0, i * 1000));
        }
        // The lockout window is 5 min: at 301 s the first two have aged out.
        try_pin(&mut input, b"0000", true, at(t0, 301_000));
        assert_eq!(input.lockout(), None);
        assert_eq!(input.wrong_pin_count(), 3);
    }

    #[test]
    fn lockout_can_be_disabled() {
        let t0 = Instant::now();
        let config = InputConfig {
            lockout_threshold: 0,
            lockout_duration: Duration::ZERO,
            ..InputConfig::with_mode(InputMode::PinOnly)
        };
        let mut input = ReaderInput::new(config).unwrap();
        for i in 0..20 {
            try_pin(&mut input, b"0000", true, at(t0, i * 1000));
        }
        assert_eq!(input.lockout(), None);
    }

    /// `text` without the `Instant { .. }` values of its `Debug` output.
    fn without_instants(mut text: String) -> String {
        while let Some(start) = text.find("Instant {") {
            let end = text[start..]
                .find('}')
                .map_or(text.len(), |i| start + i + 1);
            text.replace_range(start..end, "Instant");
        }
        text
    }

    #[test]
    fn secrets_are_masked_in_debug_and_display() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::CardAndPin);
        present(&mut input, &raw_card(200, 54_321), t0);
        input.handle_keys(b"97531", t0);
        feedback(&mut input);
        // Mid-entry state (its Instants could hold any digits: left out).
        for text in [format!("{input:?}"), format!("{input:#?}")].map(without_instants) {
            assert!(!text.contains("97531") && !text.contains("54321"), "{text}");
            assert!(text.contains("..4321"), "{text}");
        }
        input.handle_keys(b"#", t0);
        let presented = presentations(&mut input).remove(0);
        assert_eq!(presented.pin().map(Pin::as_bytes), Some(&b"97531"[..]));
        for text in [
            format!("{presented:?}"),
            format!("{presented:#?}"),
            presented.to_string(),
        ] {
            assert!(!text.contains("97531"), "{text}");
            assert!(
                !text.contains("54321") && !text.contains("54_321"),
                "{text}"
            );
            assert!(text.contains("..4321"), "{text}");
            // Nor the raw bits.
            assert!(!text.contains("data"), "{text}");
        }
        assert_eq!(
            presented.to_string(),
            "H10301 card 200:..4321 with PIN ****"
        );

        let secret = pin("1234");
        assert_eq!(format!("{secret:?}"), "Pin(****)");
        assert_eq!(secret.to_string(), "****");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(Pin(****))");

        let card = Card {
            format: None,
            bit_count: 12,
            facility: None,
            number: 12,
            parity: ParityStatus::NotApplicable,
            data: vec![0x00, 0xC0],
        };
        assert_eq!(card.masked_number(), "..0012");
        assert_eq!(card.to_string(), "12-bit card ..0012");
        assert!(!format!("{card:?}").contains("data"));
    }

    #[test]
    fn star_drops_the_digit_buffer() {
        // The buffer is a `Pin`, which zeroizes on drop (tested in
        // access::model); `*` drops it.
        let t0 = Instant::now();
        let mut input = reader(InputMode::PinOnly);
        input.handle_keys(b"1234", t0);
        let Entry::Digits { pin: buffer, .. } = &input.entry else {
            panic!("no entry");
        };
        assert_eq!(buffer.as_bytes(), b"1234");
        input.handle_keys(b"*", t0);
        assert!(matches!(input.entry, Entry::Idle));
    }

    #[test]
    fn config_is_validated() {
        assert_eq!(InputConfig::default().validate(), Ok(()));
        let bad = |edit: &dyn Fn(&mut InputConfig)| {
            let mut config = InputConfig::default();
            edit(&mut config);
            ReaderInput::new(config).unwrap_err()
        };
        assert_eq!(
            bad(&|c| c.min_pin_len = 0),
            InputConfigError::PinLength { min: 0, max: 12 }
        );
        assert_eq!(
            bad(&|c| c.min_pin_len = 13),
            InputConfigError::PinLength { min: 13, max: 12 }
        );
        assert_eq!(
            bad(&|c| c.max_pin_len = MAX_PIN_DIGITS + 1),
            InputConfigError::PinLength { min: 4, max: 17 }
        );
        assert!(matches!(
            bad(&|c| c.inter_digit_timeout = Duration::ZERO),
            InputConfigError::Duration {
                field: "inter_digit_timeout",
                ..
            }
        ));
        assert!(matches!(
            bad(&|c| c.pin_window = MAX_INPUT_DURATION + Duration::from_secs(1)),
            InputConfigError::Duration {
                field: "pin_window",
                ..
            }
        ));
        assert!(matches!(
            bad(&|c| c.lockout_duration = Duration::ZERO),
            InputConfigError::Duration {
                field: "lockout_duration",
                ..
            }
        ));
        let mut input = reader(InputMode::PinOnly);
        assert!(input
            .set_config(InputConfig {
                max_pin_len: 0,
                ..InputConfig::default()
            })
            .is_err());
        assert_eq!(input.config().mode, InputMode::PinOnly);
        assert!(InputStates::<ReaderId>::new(InputConfig {
            min_pin_len: 0,
            ..InputConfig::default()
        })
        .is_err());
    }

    #[test]
    fn set_config_and_reset_keep_the_lockout() {
        let t0 = Instant::now();
        let mut input = reader(InputMode::CardAndPin);
        present(&mut input, &raw_card(1, 2), t0);
        input.handle_keys(b"12", t0);
        input.reset();
        assert!(!input.is_entering_pin() && input.awaiting_pin_until().is_none());
        input
            .set_config(InputConfig::with_mode(InputMode::PinOnly))
            .unwrap();
        for i in 0..5 {
            try_pin(&mut input, b"0000", true, at(t0, i * 1000));
        }
        input
            .set_config(InputConfig::with_mode(InputMode::CardOrPin))
            .unwrap();
        assert!(input.lockout().is_some());
    }

    #[test]
    fn input_states_keep_readers_apart() {
        let t0 = Instant::now();
        let mut states = InputStates::new(InputConfig::with_mode(InputMode::PinOnly)).unwrap();
        let formats = CardFormatTable::builtin();
        let door = ReaderId::new(0, 1, 0);
        let gate = ReaderId::new(1, 1, 0);
        states
            .configure(gate, InputConfig::with_mode(InputMode::CardAndPin))
            .unwrap();
        assert_eq!(states.poll_timeout(), None);

        // Interleaved keys on two readers.
        states.handle_keys(door, b"12", t0);
        states.handle_raw_card(gate, &raw_card(3, 333), &formats, at(t0, 1000));
        states.handle_keys(gate, b"99", at(t0, 2000));
        assert_eq!(states.poll_timeout(), Some(at(t0, 5000)));
        states.handle_keys(door, b"34#", at(t0, 3000));
        states.handle_keys(gate, b"88#", at(t0, 4000));
        let (key, presented) = states.poll_presentation().unwrap();
        assert_eq!(key, door);
        assert_eq!(presented.pin().map(Pin::as_bytes), Some(&b"1234"[..]));
        let (key, presented) = states.poll_presentation().unwrap();
        assert_eq!(key, gate);
        assert!(
            matches!(&presented, Presentation::CardAndPin { card, pin, .. }
                if card.number == 333 && pin.as_bytes() == b"9988")
        );
        assert!(states.poll_presentation().is_none());
        let signals: Vec<_> = std::iter::from_fn(|| states.poll_feedback()).collect();
        assert_eq!(
            signals[2],
            (
                gate,
                Feedback::PromptPin {
                    until: at(t0, 11_000)
                }
            )
        );
        assert_eq!(signals.len(), 9);

        // The combined timer and per-reader timeouts.
        states.handle_keys(door, b"5", at(t0, 10_000));
        states.handle_raw_card(gate, &raw_card(3, 444), &formats, at(t0, 11_000));
        assert_eq!(states.poll_timeout(), Some(at(t0, 15_000)));
        states.handle_timeout(at(t0, 15_000));
        assert!(states.poll_presentation().is_none());
        assert_eq!(states.poll_timeout(), Some(at(t0, 21_000)));
        states.handle_timeout(at(t0, 21_000));
        assert!(matches!(
            states.poll_presentation(),
            Some((key, Presentation::PinTimeout { card })) if key == gate && card.number == 444
        ));
        assert_eq!(states.poll_timeout(), None);

        // Lockout is per reader.
        for i in 0..5 {
            states.handle_keys(door, b"0000#", at(t0, 30_000 + i));
            states.poll_presentation();
            states.report_outcome(&door, true, at(t0, 30_000 + i));
        }
        assert!(states.reader(&door).unwrap().lockout().is_some());
        assert!(states.reader(&gate).unwrap().lockout().is_none());
        assert_eq!(states.poll_timeout(), Some(at(t0, 90_004)));
        // Unknown readers are ignored by report_outcome.
        states.report_outcome(&ReaderId::new(9, 9, 9), true, t0);
        assert!(states.reader(&ReaderId::new(9, 9, 9)).is_none());
        assert_eq!(states.readers().count(), 2);
        states.reset(&door);
        assert!(states.remove(&gate).is_some());
        assert_eq!(states.readers().count(), 1);
    }

    #[test]
    fn input_states_route_osdp_replies() {
        let t0 = Instant::now();
        let mut states = InputStates::new(InputConfig::with_mode(InputMode::CardOrPin)).unwrap();
        let formats = CardFormatTable::builtin();
        let mut raw = raw_card(5, 5555);
        raw.reader = 1;
        assert!(states.handle_reply(2, 7, &Reply::Raw(raw), &formats, t0));
        let keypad = Keypad {
            reader: 0,
            digits: vec![0x01, 0x02, 0x03, 0x04, 0x0D],
        };
        assert!(states.handle_reply(2, 7, &Reply::Keypad(keypad), &formats, t0));
        assert!(!states.handle_reply(2, 7, &Reply::Ack, &formats, t0));
        assert!(matches!(
            states.poll_presentation(),
            Some((ReaderId { bus: 2, pd: 7, reader: 1 }, Presentation::Card { card, .. }))
                if card.number == 5555
        ));
        assert!(matches!(
            states.poll_presentation(),
            Some((ReaderId { bus: 2, pd: 7, reader: 0 }, Presentation::Pin { pin, .. }))
                if pin.as_bytes() == b"1234"
        ));
        assert_eq!(ReaderId::new(2, 7, 0).to_string(), "bus 2 pd 7 reader 0");
    }

    #[test]
    fn input_states_with_another_key_type() {
        let t0 = Instant::now();
        let mut states: InputStates<(String, u8)> =
            InputStates::new(InputConfig::with_mode(InputMode::PinOnly)).unwrap();
        let key = ("/dev/ttyUSB0".to_owned(), 3);
        states.handle_keys(key.clone(), b"1234#", t0);
        assert!(matches!(states.poll_presentation(), Some((k, _)) if k == key));
    }
}
