//! The page's files, in the binary: `cargo build` needs nothing but Rust.

use std::sync::Arc;

use axum::{Router, http::header, response::IntoResponse, routing::get};

use super::Web;

/// Each file: path, content type, content.
const FILES: [(&str, &str, &str); 4] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "/strings.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/strings.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
];

/// A route for each file (and an empty answer where browsers look for an
/// icon).
pub(crate) fn routes() -> Router<Arc<Web>> {
    let icon = get(|| async { axum::http::StatusCode::NO_CONTENT });
    FILES.iter().fold(
        Router::new().route("/favicon.ico", icon),
        |router, &(path, kind, body)| {
            router.route(
                path,
                get(move || async move { ([(header::CONTENT_TYPE, kind)], body).into_response() }),
            )
        },
    )
}
