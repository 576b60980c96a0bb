//! The local web server's defences. A server on 127.0.0.1 is reachable by
//! every page the browser opens, so nothing is answered on trust:
//!
//! - the exact `Host` of the launch (`127.0.0.1:PORT`): a page that rebinds
//!   its own name to 127.0.0.1 (DNS rebinding) sends its own name and is
//!   refused;
//! - the exact `Origin` of the launch wherever a browser sends one, and on
//!   every request that changes something (a cross-site form or fetch
//!   carries its own origin); `Sec-Fetch-Site`, where sent, must be
//!   same-origin (or none: the address typed or opened from the terminal);
//! - the session cookie (HttpOnly, SameSite=Strict, this launch only), which
//!   the launch token is exchanged for once, on every request but the
//!   launch itself;
//! - the CSRF token, which only a same-origin script can read, on every
//!   request that changes something;
//! - a strict Content-Security-Policy (only this server's own scripts and
//!   styles, no inline script, no frames) and no CORS headers at all, so
//!   no other origin can read an answer.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::Web;

/// The policy of every answer: this server's own files, nothing inline,
/// nothing from anywhere else, never framed.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; font-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The session cookie's name.
pub(crate) const COOKIE: &str = "samenop_session";

/// The header a changing request carries the CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Whether `a` and `b` are equal, compared by their SHA-256 digests: how
/// long the comparison takes tells nothing about where a guess of a token
/// differs from it.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let digest = |bytes| ring::digest::digest(&ring::digest::SHA256, bytes);
    digest(a).as_ref() == digest(b).as_ref()
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, why).into_response()
}

/// The session cookie's value in `headers`, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether the request holds this launch's session.
pub(crate) fn has_session(web: &Web, headers: &HeaderMap) -> bool {
    session_cookie(headers).is_some_and(|value| same(value.as_bytes(), web.session.as_bytes()))
}

/// Checks every request (see the module's text) and adds the security
/// headers to every answer.
pub(crate) async fn check(State(web): State<Arc<Web>>, request: Request, next: Next) -> Response {
    let mut answer = admit(&web, &request).unwrap_or_else(|| Box::pin(next.run(request)));
    let mut response = answer.as_mut().await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

type Answer = std::pin::Pin<Box<dyn Future<Output = Response> + Send>>;

/// `None` when `request` may go on; else the refusal.
fn admit(web: &Web, request: &Request) -> Option<Answer> {
    let refused = |status, why| -> Option<Answer> {
        let response = refuse(status, why);
        Some(Box::pin(async move { response }))
    };
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if host != Some(web.host.as_str()) {
        return refused(
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers only at the address samenop printed",
        );
    }
    let origin = headers.get(header::ORIGIN).map(HeaderValue::as_bytes);
    if origin.is_some_and(|o| o != web.origin.as_bytes()) {
        return refused(
            StatusCode::FORBIDDEN,
            "requests from other sites are refused",
        );
    }
    let site = headers
        .get(header::HeaderName::from_static("sec-fetch-site"))
        .map(HeaderValue::as_bytes);
    if site.is_some_and(|s| s != b"same-origin" && s != b"none") {
        return refused(
            StatusCode::FORBIDDEN,
            "requests from other sites are refused",
        );
    }
    if request.uri().path() == "/launch" && request.method() == Method::GET {
        return None;
    }
    if !has_session(web, headers) {
        return refused(
            StatusCode::UNAUTHORIZED,
            "no session: open the address `samenop inbox --web` printed",
        );
    }
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes {
        if origin.is_none() {
            return refused(StatusCode::FORBIDDEN, "a change needs the page's origin");
        }
        let token = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes);
        if !token.is_some_and(|t| same(t, web.csrf.as_bytes())) {
            return refused(
                StatusCode::FORBIDDEN,
                "a change needs the page's CSRF token",
            );
        }
    }
    None
}
