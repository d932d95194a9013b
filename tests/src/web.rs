//! A technician on the hub's web page (`[web]`, docs/web.md) over plain
//! HTTP: [`hash_password`] makes the config's hash with `hub
//! hash-password`, [`WebSession::login`] posts the login form as a browser
//! does and keeps the session cookie, then [`WebSession::status`] reads the
//! JSON the page shows.
//!
//! (`tests/tests/web_page.rs` drives the same page in headless Chromium.)

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};

use crate::{http_request, hub_bin, HttpResponse, Value};

/// The hub's session cookie.
pub const SESSION_COOKIE: &str = "hub_session";

/// The Argon2 PHC hash of `password`, from `hub hash-password` (the way an
/// installer makes it).
pub fn hash_password(password: &str) -> String {
    let mut child = Command::new(hub_bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run hub hash-password");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "hub hash-password failed");
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2"), "not a PHC string: {hash}");
    hash
}

/// `application/x-www-form-urlencoded` for one value: unreserved
/// characters as they are, every other byte as `%XX`.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A logged-in session on the web page at `addr`.
#[derive(Debug, Clone)]
pub struct WebSession {
    addr: String,
    cookie: String,
}

impl WebSession {
    /// Posts the login form. `Ok`: logged in (a 303 to `/` with the
    /// session cookie); `Err`: the hub's answer otherwise (a refused login
    /// is a 303 back to `/login?failed=...` without a cookie).
    pub fn login(addr: &str, user: &str, password: &str) -> Result<WebSession, HttpResponse> {
        let form = format!(
            "user={}&password={}",
            form_encode(user),
            form_encode(password)
        );
        let r = http_request(
            addr,
            "POST",
            "/login",
            &[],
            Some(("application/x-www-form-urlencoded", &form)),
        )
        .expect("POST /login");
        let cookie = r
            .headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .filter_map(|(_, v)| v.split(';').next())
            .find(|pair| {
                pair.split_once('=')
                    .is_some_and(|(n, v)| n == SESSION_COOKIE && !v.is_empty())
            })
            .map(str::to_string);
        match cookie {
            Some(cookie) if r.status == 303 && r.header("location") == Some("/") => {
                Ok(WebSession {
                    addr: addr.to_string(),
                    cookie,
                })
            }
            _ => Err(r),
        }
    }

    /// `GET path` with the session cookie.
    pub fn get(&self, path: &str) -> HttpResponse {
        http_request(&self.addr, "GET", path, &[("Cookie", &self.cookie)], None)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `GET /api/v1/status`: the status the page shows (asserts a 200).
    pub fn status(&self) -> Value {
        let r = self.get("/api/v1/status");
        assert_eq!(r.status, 200, "GET /api/v1/status: {r:?}");
        r.json()
    }
}
