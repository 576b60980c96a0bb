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

/// The consult vocabulary (`text::vocabulary`, shared with the command
/// line), as the ES module `/words.js` the page imports.
fn words() -> String {
    format!(
        "// The consult vocabulary, from the command line's own words.\nexport const words = {};\n",
        crate::text::vocabulary()
    )
}

/// A route for each file and for `/words.js` (and an empty answer where
/// browsers look for an icon).
pub(crate) fn routes() -> Router<Arc<Web>> {
    let icon = get(|| async { axum::http::StatusCode::NO_CONTENT });
    let words = axum::body::Bytes::from(words());
    let words = get(move || async move {
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            words,
        )
            .into_response()
    });
    FILES.iter().fold(
        Router::new()
            .route("/favicon.ico", icon)
            .route("/words.js", words),
        |router, &(path, kind, body)| {
            router.route(
                path,
                get(move || async move { ([(header::CONTENT_TYPE, kind)], body).into_response() }),
            )
        },
    )
}
