//! The technician login: one user whose Argon2id password hash is in the
//! config, sessions in memory behind an unguessable cookie, and a throttle
//! against password guessing.
//!
//! [`Credentials::verify`] is slow on purpose (Argon2id, tens of
//! milliseconds on a Pi): callers run it on a blocking thread.
//! [`Sessions`] hands out 256-bit random tokens that expire after
//! [`SESSION_TTL`]; a restart logs everybody out.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// Failed logins allowed in [`FAILURE_WINDOW`] before logins pause.
pub const MAX_FAILURES: usize = 5;

/// The window in which failures are counted.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// How long logins pause after too many failures.
pub const LOCKOUT: Duration = Duration::from_secs(60);

/// A problem with the configured login.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthConfigError {
    /// The user name is empty.
    #[error("the web user name is empty")]
    EmptyUser,
    /// The password hash is not a PHC string Argon2 can check.
    #[error("the web password hash is not an Argon2 PHC string (make one with `hub hash-password`): {0}")]
    BadHash(String),
    /// Hashing a new password failed.
    #[error("hashing the password failed: {0}")]
    Hashing(String),
}

/// The configured technician login.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    /// A PHC string (`$argon2id$v=19$m=...`), checked when built.
    hash: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("hash", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// A login from the config's user name and PHC hash.
    pub fn new(user: &str, phc_hash: &str) -> Result<Self, AuthConfigError> {
        if user.trim().is_empty() {
            return Err(AuthConfigError::EmptyUser);
        }
        let parsed =
            PasswordHash::new(phc_hash).map_err(|e| AuthConfigError::BadHash(e.to_string()))?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            return Err(AuthConfigError::BadHash(format!(
                "algorithm {} is not argon2",
                parsed.algorithm
            )));
        }
        Ok(Self {
            user: user.to_owned(),
            hash: phc_hash.to_owned(),
        })
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether `user` and `password` match. Slow (Argon2id): call it from a
    /// blocking thread.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        // Always hash, even for a wrong user name, so timing does not tell
        // which of the two was wrong.
        let user_ok: bool = user.as_bytes().ct_eq(self.user.as_bytes()).into();
        let password_ok = PasswordHash::new(&self.hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        user_ok && password_ok
    }
}

/// An Argon2id PHC string for `password` with a fresh random salt (what
/// `hub hash-password` prints for the config).
pub fn hash_password(password: &str) -> Result<String, AuthConfigError> {
    let mut salt_bytes = Zeroizing::new([0u8; 16]);
    getrandom::getrandom(salt_bytes.as_mut_slice())
        .map_err(|e| AuthConfigError::Hashing(e.to_string()))?;
    let salt = SaltString::encode_b64(salt_bytes.as_slice())
        .map_err(|e| AuthConfigError::Hashing(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthConfigError::Hashing(e.to_string()))
}

/// Logged-in sessions and the login throttle.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<SessionTable>,
}

#[derive(Debug, Default)]
struct SessionTable {
    /// Token (hex) → (user, expiry).
    live: HashMap<String, (String, Instant)>,
    /// Times of recent failed logins.
    failures: Vec<Instant>,
    /// Logins refused until then.
    locked_until: Option<Instant>,
}

/// Why a login attempt may not even be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginPaused {
    /// Seconds until logins are accepted again.
    pub retry_after_s: u64,
}

impl Sessions {
    /// Whether a login may be attempted now.
    pub fn may_attempt(&self, now: Instant) -> Result<(), LoginPaused> {
        let table = self.lock();
        match table.locked_until {
            Some(until) if until > now => Err(LoginPaused {
                retry_after_s: until.duration_since(now).as_secs().max(1),
            }),
            _ => Ok(()),
        }
    }

    /// Records a failed login; too many in the window pause logins.
    pub fn failed(&self, now: Instant) {
        let mut table = self.lock();
        table
            .failures
            .retain(|t| now.saturating_duration_since(*t) < FAILURE_WINDOW);
        table.failures.push(now);
        if table.failures.len() >= MAX_FAILURES {
            table.locked_until = Some(now + LOCKOUT);
            table.failures.clear();
        }
    }

    /// Opens a session for `user`; returns the cookie token.
    pub fn open(&self, user: &str, now: Instant) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes)?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut table = self.lock();
        table.live.retain(|_, (_, expires)| *expires > now);
        table
            .live
            .insert(token.clone(), (user.to_owned(), now + SESSION_TTL));
        table.failures.clear();
        Ok(token)
    }

    /// The user of a live session.
    pub fn user(&self, token: &str, now: Instant) -> Option<String> {
        let table = self.lock();
        match table.live.get(token) {
            Some((user, expires)) if *expires > now => Some(user.clone()),
            _ => None,
        }
    }

    /// Ends a session.
    pub fn close(&self, token: &str) {
        self.lock().live.remove(token);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SessionTable> {
        // A panic while holding the lock cannot leave the table
        // inconsistent (each change is one statement): keep using it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_password_verifies_and_wrong_ones_do_not() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let creds = Credentials::new("tech", &hash).unwrap();
        assert!(creds.verify("tech", "correct horse"));
        assert!(!creds.verify("tech", "correct horse "));
        assert!(!creds.verify("admin", "correct horse"));
        assert!(!format!("{creds:?}").contains("argon2"));
        // Two hashes of one password differ (random salt).
        assert_ne!(hash, hash_password("correct horse").unwrap());
    }

    #[test]
    fn bad_configs_are_refused() {
        assert_eq!(
            Credentials::new(" ", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA").unwrap_err(),
            AuthConfigError::EmptyUser
        );
        assert!(matches!(
            Credentials::new("tech", "plaintext-password"),
            Err(AuthConfigError::BadHash(_))
        ));
        assert!(matches!(
            Credentials::new("tech", "$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA"),
            Err(AuthConfigError::BadHash(_))
        ));
    }

    #[test]
    fn sessions_expire_and_close() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let token = sessions.open("tech", t0).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(sessions.user(&token, t0).as_deref(), Some("tech"));
        assert_eq!(sessions.user("not-a-token", t0), None);
        assert_eq!(sessions.user(&token, t0 + SESSION_TTL), None);
        let other = sessions.open("tech", t0).unwrap();
        assert_ne!(token, other);
        sessions.close(&other);
        assert_eq!(sessions.user(&other, t0), None);
    }

    #[test]
    fn too_many_failures_pause_logins() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES - 1 {
            sessions.failed(t0 + Duration::from_secs(i as u64));
            assert!(sessions.may_attempt(t0).is_ok());
        }
        sessions.failed(t0 + Duration::from_secs(10));
        let paused = sessions
            .may_attempt(t0 + Duration::from_secs(11))
            .unwrap_err();
        assert!(paused.retry_after_s > 0 && paused.retry_after_s <= LOCKOUT.as_secs());
        assert!(sessions
            .may_attempt(t0 + Duration::from_secs(10) + LOCKOUT)
            .is_ok());
        // Failures spread beyond the window do not add up.
        let spread = Sessions::default();
        for i in 0..MAX_FAILURES as u64 * 2 {
            spread.failed(t0 + FAILURE_WINDOW * i as u32);
        }
        assert!(spread.may_attempt(t0 + FAILURE_WINDOW * 20).is_ok());
    }
}
