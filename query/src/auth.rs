//! Who may do what. Optional tokens: a read token for the API and dashboard, a write token
//! for direct writes (it reads too), sent as `Authorization: Bearer <token>`. A browser signs
//! in at `/login` with a token and gets a session cookie: a signed, expiring value naming the
//! grant, never the token itself (`datacat_session`, `HttpOnly`, `SameSite=Strict`, `Secure`
//! when served over TLS); `/logout` ends it. Sign-in attempts are rate-limited per address.
//! Tokens are compared through their SHA-256 digests in constant time, so neither their
//! content nor their length leaks. Changing a token ends every session signed with it.
//!
//! The dashboard's socket (`/live/ws`) takes no `Origin` but the service's own (and an
//! allow-list): without a read token any web page could otherwise open it and read the
//! dashboard. `/health`, `/metrics`, `/login` and `/logout` stay open.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

/// The dashboard's session cookie.
pub const COOKIE: &str = "datacat_session";

/// How long a sign-in lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Failed sign-ins one address may make per [`LOGIN_WINDOW`] before it must wait.
pub const LOGIN_ATTEMPTS: u32 = 5;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// What the service was told about access (`--read-token`, `--write-token`,
/// `--allowed-origins`, `--secure-cookies`), and what it keeps of sign-ins.
pub struct Access {
    read: Option<[u8; 32]>,
    write: Option<[u8; 32]>,
    /// Signs session cookies: from the service's session secret and the tokens, so changing
    /// a token ends its sessions, and a cookie says nothing about a token (no guessing one
    /// offline from a cookie's signature).
    session_key: [u8; 32],
    /// Origins the dashboard's socket takes besides the service's own (`scheme://host:port`).
    allowed_origins: Vec<String>,
    /// Cookies are `Secure` even without `X-Forwarded-Proto: https`.
    secure_cookies: bool,
    failed_logins: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// What a presented credential allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Grant {
    None,
    Read,
    Write,
}

impl Grant {
    fn letter(self) -> &'static str {
        match self {
            Grant::Write => "w",
            _ => "r",
        }
    }
}

/// A credential a request carries.
enum Credential {
    Bearer(String),
    Session(String),
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Access {
    pub fn new(
        read: Option<&str>,
        write: Option<&str>,
        session_secret: &str,
        allowed_origins: Vec<String>,
        secure_cookies: bool,
    ) -> Self {
        let (read, write) = (
            read.filter(|t| !t.is_empty()),
            write.filter(|t| !t.is_empty()),
        );
        let mut key = Sha256::new();
        key.update(b"datacat session key v2");
        for token in [Some(session_secret), read, write] {
            let token = token.unwrap_or_default();
            key.update((token.len() as u64).to_le_bytes());
            key.update(token.as_bytes());
        }
        Self {
            read: read.map(digest),
            write: write.map(digest),
            session_key: key.finalize().into(),
            allowed_origins: allowed_origins
                .into_iter()
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            secure_cookies,
            failed_logins: Mutex::new(HashMap::new()),
        }
    }

    /// Reads are open (no read token) while writes need a token: worth a loud warning.
    pub fn reads_open_writes_closed(&self) -> bool {
        self.read.is_none() && self.write.is_some()
    }

    /// Writes are open while reads need a token.
    pub fn writes_open_reads_closed(&self) -> bool {
        self.read.is_some() && self.write.is_none()
    }

    fn token_grant(&self, presented: &str) -> Grant {
        let presented = digest(presented);
        let matches =
            |expected: &Option<[u8; 32]>| expected.is_some_and(|e| bool::from(presented.ct_eq(&e)));
        if matches(&self.write) {
            Grant::Write
        } else if matches(&self.read) {
            Grant::Read
        } else {
            Grant::None
        }
    }

    fn mac(&self, payload: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.session_key).expect("HMAC takes any key");
        mac.update(payload.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// A session value for `grant`, good until `expires` (Unix seconds).
    fn session_value(&self, grant: Grant, expires: u64) -> String {
        let payload = format!("{}.{expires}", grant.letter());
        format!("{payload}.{}", self.mac(&payload))
    }

    /// What a session value allows at `now`: nothing if forged, altered or expired.
    fn session_grant(&self, value: &str, now: u64) -> Grant {
        let Some((payload, mac)) = value.rsplit_once('.') else {
            return Grant::None;
        };
        if !bool::from(self.mac(payload).as_bytes().ct_eq(mac.as_bytes())) {
            return Grant::None;
        }
        let Some((letter, expires)) = payload.split_once('.') else {
            return Grant::None;
        };
        match (letter, expires.parse::<u64>()) {
            (_, Ok(expires)) if expires <= now => Grant::None,
            ("w", Ok(_)) => Grant::Write,
            ("r", Ok(_)) => Grant::Read,
            _ => Grant::None,
        }
    }

    fn grant(&self, credential: Option<&Credential>) -> Grant {
        match credential {
            None => Grant::None,
            Some(Credential::Bearer(token)) => self.token_grant(token),
            Some(Credential::Session(value)) => self.session_grant(value, now_secs()),
        }
    }

    /// Checks a request needing `write` (or read) access. `Err` says why not.
    fn check(&self, credential: Option<&Credential>, write: bool) -> Result<(), ApiError> {
        let needed = match (write, &self.read, &self.write) {
            (true, _, Some(_)) => Grant::Write,
            (false, Some(_), _) => Grant::Read,
            // Reads are protected only by a read token; without one they are open.
            (false, None, _) => return Ok(()),
            (true, _, None) => return Ok(()),
        };
        let grant = self.grant(credential);
        if grant >= needed {
            return Ok(());
        }
        match (credential, grant) {
            (None, _) => Err(ApiError::Unauthorized(
                "this endpoint needs a token: send Authorization: Bearer <token>".into(),
            )),
            (Some(Credential::Session(_)), Grant::None) => Err(ApiError::Unauthorized(
                "the sign-in has expired or is not valid; sign in again".into(),
            )),
            (Some(_), Grant::None) => Err(ApiError::Unauthorized("the token is not valid".into())),
            _ => Err(ApiError::Forbidden(
                "the read token cannot write; use the write token".into(),
            )),
        }
    }

    /// Whether `origin` may open the dashboard's socket of a service reached as `host`.
    fn origin_allowed(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            // Not a browser (browsers always send it on a WebSocket handshake).
            return true;
        };
        // Host names are case-insensitive.
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let host = host.map(str::to_ascii_lowercase);
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        authority.is_some_and(|authority| host.as_deref() == Some(authority))
            || self
                .allowed_origins
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(&origin))
    }

    /// Counts a failed sign-in from `address`; whether it may try again now.
    fn login_allowed(&self, address: IpAddr) -> bool {
        let failures = self
            .failed_logins
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match failures.get(&address) {
            Some((count, since)) => *count < LOGIN_ATTEMPTS || since.elapsed() >= LOGIN_WINDOW,
            None => true,
        }
    }

    fn login_failed(&self, address: IpAddr) {
        let mut failures = self
            .failed_logins
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Forget old windows, so the map cannot grow without bound.
        if failures.len() > 10_000 {
            failures.retain(|_, (_, since)| since.elapsed() < LOGIN_WINDOW);
        }
        let entry = failures.entry(address).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= LOGIN_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// The session cookie for `grant`, `Secure` when the request came over TLS.
    fn cookie(&self, value: &str, max_age: u64, headers: &HeaderMap) -> String {
        let tls = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
        let secure = if self.secure_cookies || tls {
            "; Secure"
        } else {
            ""
        };
        format!("{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
    }
}

/// The credential a request carries: the bearer header, else the dashboard's cookie.
fn presented(headers: &HeaderMap) -> Option<Credential> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
        return Some(Credential::Bearer(token.to_string()));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .map(|value| Credential::Session(value.to_string()))
}

pub async fn require(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if matches!(path, "/health" | "/metrics" | "/login" | "/logout") {
        return next.run(request).await;
    }
    let headers = request.headers();
    if path == "/live/ws" {
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        if !state
            .access
            .origin_allowed(text(header::ORIGIN), text(header::HOST))
        {
            return ApiError::Forbidden(
                "the dashboard's socket takes only its own pages (or --allowed-origins)".into(),
            )
            .into_response();
        }
    }
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let credential = presented(headers);
    match state.access.check(credential.as_ref(), write) {
        Ok(()) => next.run(request).await,
        // A browser on a dashboard page is sent to the login form instead of a JSON error.
        Err(ApiError::Unauthorized(_)) if !path.starts_with("/api/") && !write => {
            Redirect::to("/login").into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// `GET /login`: a form asking for the token.
#[utoipa::path(get, path = "/login", tag = "service",
    responses((status = 200, description = "The sign-in form", content_type = "text/html", body = String)))]
pub async fn login_form() -> Html<&'static str> {
    Html(
        "<!doctype html><html><head><title>DataCat: sign in</title></head><body \
         style=\"font-family:sans-serif;margin:3em\"><h1>DataCat</h1><form method=\"post\" \
         action=\"/login\"><label>Token <input type=\"password\" name=\"token\" \
         autofocus></label> <button type=\"submit\">Sign in</button></form></body></html>",
    )
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
pub struct LoginForm {
    token: String,
}

/// `POST /login`: a valid token gets a signed session cookie (12 h); then on to the
/// dashboard. After 5 failures from one address in a minute, that address waits.
#[utoipa::path(post, path = "/login", tag = "service",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed in; to the dashboard"),
              (status = 401, body = datacat_api::answers::ErrorBody),
              (status = 429, body = datacat_api::answers::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let access = &state.access;
    if !access.login_allowed(peer.ip()) {
        return ApiError::TooManyRequests(format!(
            "too many failed sign-ins from this address: wait {} s",
            LOGIN_WINDOW.as_secs()
        ))
        .into_response();
    }
    let grant = access.token_grant(&form.token);
    if grant == Grant::None {
        access.login_failed(peer.ip());
        return ApiError::Unauthorized("the token is not valid".into()).into_response();
    }
    let lifetime = SESSION_LIFETIME.as_secs();
    let value = access.session_value(grant, now_secs() + lifetime);
    let cookie = access.cookie(&value, lifetime, &headers);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// `GET|POST /logout`: the session cookie is cleared; on to the sign-in form.
#[utoipa::path(post, path = "/logout", tag = "service",
    responses((status = 303, description = "Signed out; to the sign-in form")))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let cookie = state.access.cookie("", 0, &headers);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(read: Option<&str>, write: Option<&str>) -> Access {
        Access::new(
            read,
            write,
            "secret",
            vec!["https://grafana.example".into()],
            false,
        )
    }

    fn bearer(token: &str) -> Option<Credential> {
        Some(Credential::Bearer(token.into()))
    }

    #[test]
    fn without_tokens_everything_is_open() {
        let open = access(None, None);
        assert!(open.check(None, false).is_ok());
        assert!(open.check(None, true).is_ok());
    }

    #[test]
    fn read_and_write_tokens_grant_what_they_say() {
        let both = access(Some("r"), Some("w"));
        let check = |c: Option<Credential>, write| both.check(c.as_ref(), write);
        assert!(matches!(check(None, false), Err(ApiError::Unauthorized(_))));
        assert!(matches!(
            check(bearer("x"), false),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(check(bearer("r"), false).is_ok());
        assert!(
            check(bearer("w"), false).is_ok(),
            "the write token reads too"
        );
        assert!(matches!(
            check(bearer("r"), true),
            Err(ApiError::Forbidden(_))
        ));
        assert!(check(bearer("w"), true).is_ok());
        let write_only = access(None, Some("w"));
        assert!(
            write_only.check(None, false).is_ok(),
            "reads open without a read token"
        );
        assert!(matches!(
            write_only.check(None, true),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(write_only.reads_open_writes_closed());
        assert!(access(Some("r"), None).writes_open_reads_closed());
    }

    #[test]
    fn sessions_are_signed_expire_and_end_with_their_token() {
        let both = access(Some("r"), Some("w"));
        let now = now_secs();
        let read = both.session_value(Grant::Read, now + 60);
        assert_eq!(both.session_grant(&read, now), Grant::Read);
        assert_eq!(both.session_grant(&read, now + 61), Grant::None, "expired");
        let forged = read.replacen("r.", "w.", 1);
        assert_eq!(both.session_grant(&forged, now), Grant::None, "altered");
        let later = read.replacen(&format!("{}", now + 60), &format!("{}", now + 9999), 1);
        assert_eq!(both.session_grant(&later, now), Grant::None, "extended");
        assert_eq!(both.session_grant("r.1.00", now), Grant::None);
        let rotated = access(Some("r2"), Some("w"));
        assert_eq!(
            rotated.session_grant(&read, now),
            Grant::None,
            "a new token ends it"
        );
        let restarted = Access::new(Some("r"), Some("w"), "another secret", vec![], false);
        assert_eq!(
            restarted.session_grant(&read, now),
            Grant::None,
            "and a new secret"
        );
        let write = both.session_value(Grant::Write, now + 60);
        let session = Some(Credential::Session(write));
        assert!(both.check(session.as_ref(), true).is_ok());
    }

    #[test]
    fn the_socket_takes_its_own_origin_and_the_allowed_ones() {
        let open = access(None, None);
        let host = Some("127.0.0.1:8080");
        assert!(open.origin_allowed(Some("http://127.0.0.1:8080"), host));
        assert!(open.origin_allowed(Some("http://DataCat.example"), Some("datacat.EXAMPLE")));
        assert!(open.origin_allowed(None, host), "not a browser");
        assert!(open.origin_allowed(Some("https://grafana.example/"), host));
        assert!(!open.origin_allowed(Some("http://evil.example"), host));
        assert!(!open.origin_allowed(Some("http://127.0.0.1:8080.evil.example"), host));
        assert!(!open.origin_allowed(Some("null"), host));
    }

    #[test]
    fn failed_sign_ins_are_limited_per_address() {
        let both = access(Some("r"), None);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..LOGIN_ATTEMPTS {
            assert!(both.login_allowed(a));
            both.login_failed(a);
        }
        assert!(!both.login_allowed(a));
        assert!(both.login_allowed(b), "another address is not held up");
    }

    #[test]
    fn cookies_are_secure_over_tls() {
        let both = access(Some("r"), None);
        let mut headers = HeaderMap::new();
        let plain = both.cookie("v", 60, &headers);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(plain.contains("Max-Age=60") && !plain.contains("Secure"));
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(both.cookie("v", 60, &headers).ends_with("; Secure"));
    }
}
