//! Sans-IO implementation of OSDP v2.2 (Open Supervised Device Protocol), the
//! RS-485 protocol between an access-control panel (CP) and its card readers,
//! keypads and I/O modules (PDs).
//!
//! Nothing here touches a serial port, a clock or a thread. The caller owns
//! the bus and drives the state machines:
//!
//! - feed received bytes with `handle_input(bytes, now)`,
//! - drain bytes to send with `poll_transmit(now)`,
//! - drain application events with `poll_event()`,
//! - sleep until `poll_timeout()` and then call `handle_timeout(now)`.
//!
//! Modules:
//! - [`frame`]: packet framing, CRC-16 and checksum, resynchronising decoder.
//! - [`command`] and [`reply`]: typed OSDP commands and replies.
//! - [`sc`]: the secure channel (AES-128 session keys, cryptograms, MAC chain).
//! - [`card`]: table-driven Wiegand card formats with parity checks.

pub mod card;
pub mod command;
pub mod cp;
pub mod frame;
pub mod pd;
pub mod reply;
pub mod sc;
pub mod sim;
#[cfg(test)]
mod testutil;
