//! Optional tokens: a read token for the API and dashboard, a write token for direct writes
//! (it reads too). Sent as `Authorization: Bearer <token>`; the dashboard's browser sends the
//! `datacat_token` cookie that `/login` sets. Tokens are compared in constant time.
//! `/health`, `/metrics` and `/login` stay open.

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

pub const COOKIE: &str = "datacat_token";

#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub read: Option<String>,
    pub write: Option<String>,
}

/// What a presented token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Grant {
    None,
    Read,
    Write,
}

fn same(presented: &str, expected: &str) -> bool {
    bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

impl Tokens {
    fn grant(&self, presented: Option<&str>) -> Grant {
        let Some(presented) = presented else {
            return Grant::None;
        };
        if self.write.as_deref().is_some_and(|t| same(presented, t)) {
            Grant::Write
        } else if self.read.as_deref().is_some_and(|t| same(presented, t)) {
            Grant::Read
        } else {
            Grant::None
        }
    }

    /// Checks a request needing `write` (or read) access. `Err` says why not.
    fn check(&self, presented: Option<&str>, write: bool) -> Result<(), ApiError> {
        let needed = match (write, &self.read, &self.write) {
            (true, _, Some(_)) => Grant::Write,
            (false, Some(_), _) => Grant::Read,
            // Reads are protected only by a read token; without one they are open.
            (false, None, _) => return Ok(()),
            (true, _, None) => return Ok(()),
        };
        let grant = self.grant(presented);
        if grant >= needed {
            return Ok(());
        }
        match (presented, grant) {
            (None, _) => Err(ApiError::Unauthorized(
                "this endpoint needs a token: send Authorization: Bearer <token>".into(),
            )),
            (Some(_), Grant::None) => Err(ApiError::Unauthorized("the token is not valid".into())),
            _ => Err(ApiError::Forbidden(
                "the read token cannot write; use the write token".into(),
            )),
        }
    }
}

/// The token a request carries: the bearer header, else the dashboard cookie.
fn presented(request: &Request) -> Option<String> {
    let headers = request.headers();
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return Some(
            value
                .strip_prefix("Bearer ")
                .unwrap_or(value)
                .trim()
                .to_string(),
        );
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .map(datacat_api::query::decode)
}

pub async fn require(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if matches!(path, "/health" | "/metrics" | "/login") {
        return next.run(request).await;
    }
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let token = presented(&request);
    match state.tokens.check(token.as_deref(), write) {
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

/// `POST /login`: a valid token becomes an HttpOnly cookie; then on to the dashboard.
#[utoipa::path(post, path = "/login", tag = "service",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed in; to the dashboard"),
              (status = 401, body = datacat_api::answers::ErrorBody)))]
pub async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    if state.tokens.grant(Some(&form.token)) == Grant::None {
        return ApiError::Unauthorized("the token is not valid".into()).into_response();
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        datacat_api::query::encode(&form.token)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(read: Option<&str>, write: Option<&str>) -> Tokens {
        Tokens {
            read: read.map(str::to_string),
            write: write.map(str::to_string),
        }
    }

    #[test]
    fn without_tokens_everything_is_open() {
        let open = tokens(None, None);
        assert!(open.check(None, false).is_ok());
        assert!(open.check(None, true).is_ok());
    }

    #[test]
    fn read_and_write_tokens_grant_what_they_say() {
        let both = tokens(Some("r"), Some("w"));
        assert!(matches!(
            both.check(None, false),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            both.check(Some("x"), false),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(both.check(Some("r"), false).is_ok());
        assert!(
            both.check(Some("w"), false).is_ok(),
            "the write token reads too"
        );
        assert!(matches!(
            both.check(Some("r"), true),
            Err(ApiError::Forbidden(_))
        ));
        assert!(both.check(Some("w"), true).is_ok());
        let write_only = tokens(None, Some("w"));
        assert!(
            write_only.check(None, false).is_ok(),
            "reads open without a read token"
        );
        assert!(matches!(
            write_only.check(None, true),
            Err(ApiError::Unauthorized(_))
        ));
    }
}
