//! The topic scheme: every topic of one hub lives under
//! `t/{tenant}/h/{hub}/`, one level per message type.
//!
//! | topic | direction | message | QoS | retained |
//! |---|---|---|---|---|
//! | `desired` | cloud → hub | `Revision` | 1 | no |
//! | `snapshot` | cloud → hub | `SnapshotChunk` | 1 | no |
//! | `cmd` | cloud → hub | `Command` | 1 | no |
//! | `ack` | cloud → hub | `Ack` | 1 | no |
//! | `events` | hub → cloud | `EventBatch` | 1 | no |
//! | `status` | hub → cloud | `StatusReport` | 1 | no |
//! | `resync` | hub → cloud | `ResyncRequest` | 1 | no |
//! | `result` | hub → cloud | `CommandResult` | 1 | no |
//! | `presence` | hub → cloud | `Presence` | 1 | yes (and last will) |
//! | `health` | hub → cloud | `Health` | 0 | yes |
//!
//! Tenant and hub ids are one topic level each: 1 to 64 bytes of ASCII
//! letters, digits, `-` and `_` (no `/`, `+`, `#`, `.` or spaces, so they
//! also map onto NATS subjects). Every topic has 4 slashes and stays far
//! below 256 bytes.

use std::fmt;

use thiserror::Error;

/// Longest tenant or hub id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why a tenant or hub id cannot be a topic level.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    /// The id is empty.
    #[error("{what} id is empty")]
    Empty {
        /// "tenant" or "hub".
        what: &'static str,
    },
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("{what} id is longer than {MAX_ID_LEN} bytes")]
    TooLong {
        /// "tenant" or "hub".
        what: &'static str,
    },
    /// The id has a character other than ASCII letters, digits, `-`, `_`.
    #[error("{what} id {id:?} may only have ASCII letters, digits, '-' and '_'")]
    BadChar {
        /// "tenant" or "hub".
        what: &'static str,
        /// The id given.
        id: String,
    },
}

/// A message type, one per topic level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Cloud → hub: `Revision`.
    Desired,
    /// Cloud → hub: `SnapshotChunk`.
    Snapshot,
    /// Cloud → hub: `Command`.
    Cmd,
    /// Cloud → hub: `Ack`.
    Ack,
    /// Hub → cloud: `EventBatch`.
    Events,
    /// Hub → cloud: `StatusReport`.
    Status,
    /// Hub → cloud: `ResyncRequest`.
    Resync,
    /// Hub → cloud: `CommandResult`.
    Result,
    /// Hub → cloud: `Presence` (retained, last will).
    Presence,
    /// Hub → cloud: `Health` (retained).
    Health,
}

impl Kind {
    /// Every kind the cloud sends (the hub subscribes to these).
    pub const DOWN: [Kind; 4] = [Kind::Desired, Kind::Snapshot, Kind::Cmd, Kind::Ack];
    /// Every kind the hub sends (the cloud subscribes to these).
    pub const UP: [Kind; 6] = [
        Kind::Events,
        Kind::Status,
        Kind::Resync,
        Kind::Result,
        Kind::Presence,
        Kind::Health,
    ];

    /// The topic level.
    pub fn level(self) -> &'static str {
        match self {
            Kind::Desired => "desired",
            Kind::Snapshot => "snapshot",
            Kind::Cmd => "cmd",
            Kind::Ack => "ack",
            Kind::Events => "events",
            Kind::Status => "status",
            Kind::Resync => "resync",
            Kind::Result => "result",
            Kind::Presence => "presence",
            Kind::Health => "health",
        }
    }

    /// The kind of a topic level.
    pub fn from_level(level: &str) -> Option<Kind> {
        Kind::DOWN
            .into_iter()
            .chain(Kind::UP)
            .find(|k| k.level() == level)
    }

    /// Whether the hub publishes it retained.
    pub fn retained(self) -> bool {
        matches!(self, Kind::Presence | Kind::Health)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.level())
    }
}

/// The topics of one hub: `t/{tenant}/h/{hub}/{kind}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
    hub: String,
}

fn check_id(what: &'static str, id: &str) -> Result<(), TopicError> {
    if id.is_empty() {
        return Err(TopicError::Empty { what });
    }
    if id.len() > MAX_ID_LEN {
        return Err(TopicError::TooLong { what });
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(TopicError::BadChar {
            what,
            id: id.to_owned(),
        });
    }
    Ok(())
}

impl Topics {
    /// The topics of hub `hub` of tenant `tenant`.
    pub fn new(tenant: &str, hub: &str) -> Result<Topics, TopicError> {
        check_id("tenant", tenant)?;
        check_id("hub", hub)?;
        Ok(Topics {
            prefix: format!("t/{tenant}/h/{hub}/"),
            hub: hub.to_owned(),
        })
    }

    /// The hub's id.
    pub fn hub_id(&self) -> &str {
        &self.hub
    }

    /// The topic of a message kind.
    pub fn topic(&self, kind: Kind) -> String {
        format!("{}{}", self.prefix, kind.level())
    }

    /// The kind of one of this hub's topics; `None` for any other topic
    /// (another hub's, another tenant's, an unknown level).
    pub fn parse(&self, topic: &str) -> Option<Kind> {
        Kind::from_level(topic.strip_prefix(&self.prefix)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_of_a_hub() {
        let t = Topics::new("acme", "hub-1").unwrap();
        assert_eq!(t.topic(Kind::Desired), "t/acme/h/hub-1/desired");
        assert_eq!(t.parse("t/acme/h/hub-1/ack"), Some(Kind::Ack));
        assert_eq!(t.parse("t/acme/h/hub-2/ack"), None);
        assert_eq!(t.parse("t/other/h/hub-1/ack"), None);
        assert_eq!(t.parse("t/acme/h/hub-1/ack/x"), None);
        assert_eq!(t.parse("t/acme/h/hub-1/"), None);
        for k in Kind::DOWN.into_iter().chain(Kind::UP) {
            let topic = t.topic(k);
            assert_eq!(t.parse(&topic), Some(k));
            assert!(topic.matches('/').count() <= 7 && topic.len() <= 256);
        }
        let long = "x".repeat(MAX_ID_LEN);
        let t = Topics::new(&long, &long).unwrap();
        assert!(t.topic(Kind::Presence).len() <= 256);
    }

    #[test]
    fn ids_must_be_one_safe_level() {
        assert_eq!(
            Topics::new("", "h"),
            Err(TopicError::Empty { what: "tenant" })
        );
        for bad in ["a/b", "+", "#", "a.b", "a b", "é"] {
            assert!(
                matches!(Topics::new("t", bad), Err(TopicError::BadChar { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            Topics::new("t", &"x".repeat(65)),
            Err(TopicError::TooLong { what: "hub" })
        );
    }
}
