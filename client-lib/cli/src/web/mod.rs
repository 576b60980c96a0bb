//! `samenop inbox --web`: the specialist's inbox in the browser, served by
//! this process on 127.0.0.1 for this launch only.
//!
//! The process owns the profile's device (its keys and MLS state) for as
//! long as it runs; the page never sees a key: it asks this process, which
//! talks MLS to the server. The page's files are in the binary (`assets/`:
//! HTML, CSS and ES modules, no build step). The address printed carries a
//! fresh random launch token, exchanged once for a session cookie; every
//! request is checked as `guard` says. The process follows the device's
//! subscription (as `samenop watch` does, with the same cursor) and tells
//! the page what changed over Server-Sent Events; the page then asks again.
//! Nothing of a message, a question or a family is logged.

mod api;
mod assets;
mod guard;

use std::{
    convert::Infallible,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{
    Router,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Redirect, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
    routing::get,
};
use samenop_client::{
    ClientError,
    mls::{EventKind, Messenger},
};
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::{context::Ctx, error::Result};

/// What the page is told changed.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// A consult (or a request in the inbox) changed.
    Consult(uuid::Uuid),
    /// A consult's thread has new messages.
    Thread(uuid::Uuid),
}

/// The server's state for one launch.
pub(crate) struct Web {
    /// The profile, its connection and printer.
    ctx: Ctx,
    /// The profile's device, held for as long as this runs.
    device: Messenger,
    /// `127.0.0.1:PORT`, the one `Host` answered.
    host: String,
    /// `http://127.0.0.1:PORT`, the one `Origin` answered.
    origin: String,
    /// The launch token, until it is exchanged.
    launch: Mutex<Option<String>>,
    /// The session cookie's value.
    session: String,
    /// The CSRF token.
    csrf: String,
    /// Changes, for the page's event stream.
    changes: broadcast::Sender<Change>,
    /// Names of the professionals shown, asked of the server once each
    /// (every ask is an audited call).
    people: Mutex<std::collections::HashMap<uuid::Uuid, Person>>,
}

/// A professional as the page names them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Person {
    /// Their name; empty when the server could not be asked.
    pub(crate) name: String,
    /// Their organisation's name, or its OIN when the server has none.
    pub(crate) organisation: String,
}

impl Web {
    /// The name of `professional` and of their organisation.
    pub(crate) async fn person(&self, professional: uuid::Uuid) -> Person {
        let known = self
            .people
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&professional)
            .cloned();
        if let Some(known) = known {
            return known;
        }
        match self
            .ctx
            .client
            .professional_with_devices(professional)
            .await
        {
            Ok((p, _)) => {
                let person = Person {
                    name: p.display_name,
                    organisation: if p.organisation_name.is_empty() {
                        p.organisation_oin
                    } else {
                        p.organisation_name
                    },
                };
                self.people
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(professional, person.clone());
                person
            }
            // Not kept: asked again next time.
            Err(_) => Person::default(),
        }
    }
}

/// 32 random bytes, hex: a token no one can guess.
fn token() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| crate::error::CliError::failure("no randomness for a session token"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Serves the inbox until Ctrl-C; opens the browser at it when `open`.
///
/// # Errors
/// When the device cannot be opened or the port cannot be bound.
pub(crate) async fn serve(ctx: Ctx, open: bool) -> Result<()> {
    let device = crate::context::open_device(&ctx.client, &ctx.profile.state, &ctx.name).await?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .map_err(|e| crate::error::CliError::failure(format!("cannot listen on 127.0.0.1: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| crate::error::CliError::failure(e.to_string()))?
        .port();
    let host = format!("127.0.0.1:{port}");
    let launch = token()?;
    let address = format!("http://{host}/launch?token={launch}");
    let web = Arc::new(Web {
        origin: format!("http://{host}"),
        host,
        launch: Mutex::new(Some(launch)),
        session: token()?,
        csrf: token()?,
        changes: broadcast::channel(64).0,
        people: Mutex::default(),
        device,
        ctx,
    });
    let app = Router::new()
        .route("/launch", get(launch_page))
        .route("/events", get(events))
        .merge(api::routes())
        .merge(assets::routes())
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            guard::check,
        ))
        .with_state(web.clone());
    // The address, with its token, goes to the terminal only.
    println!("{address}");
    if !web.ctx.out.json() {
        eprintln!("{}", crate::text::WEB_SERVING);
    }
    if open {
        open_browser(&address);
    }
    let follower = tokio::spawn(follow(web.clone()));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    follower.abort();
    served.map_err(|e| crate::error::CliError::failure(e.to_string()))
}

/// Opens the system's browser at `address` (best effort: the address is
/// printed either way).
fn open_browser(address: &str) {
    let command = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if let Err(err) = std::process::Command::new(command)
        .arg(address)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        eprintln!("{}: {err}", crate::text::WEB_NO_BROWSER);
    }
}

#[derive(Deserialize)]
struct Launch {
    token: Option<String>,
}

/// Exchanges the launch token for the session cookie, once, and sends the
/// browser on to the inbox without the token in its address bar.
async fn launch_page(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(launch): Query<Launch>,
) -> Response {
    let exchanged = {
        let mut kept = web.launch.lock().unwrap_or_else(PoisonError::into_inner);
        let matches = kept
            .as_deref()
            .zip(launch.token.as_deref())
            .is_some_and(|(kept, given)| guard::same(kept.as_bytes(), given.as_bytes()));
        if matches {
            *kept = None;
        }
        matches
    };
    if !exchanged {
        // A browser that exchanged it already just goes on.
        if guard::has_session(&web, &headers) {
            return Redirect::to("/").into_response();
        }
        return (StatusCode::FORBIDDEN, crate::text::WEB_LAUNCH_USED).into_response();
    }
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/",
        guard::COOKIE,
        web.session
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The page's event stream: `consult` and `thread` events naming the
/// consult that changed.
async fn events(
    State(web): State<Arc<Web>>,
) -> Sse<impl tokio_stream::Stream<Item = std::result::Result<SseEvent, Infallible>>> {
    let changes = tokio_stream::wrappers::BroadcastStream::new(web.changes.subscribe());
    let stream = tokio_stream::StreamExt::map(changes, |change| {
        Ok(match change {
            Ok(Change::Consult(consult)) => SseEvent::default()
                .event("consult")
                .data(consult.to_string()),
            Ok(Change::Thread(consult)) => SseEvent::default()
                .event("thread")
                .data(consult.to_string()),
            // The page fell behind: it reads everything again.
            Err(_) => SseEvent::default().event("reload").data(""),
        })
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Follows the device's subscription for as long as this runs: keeps the
/// threads' groups in line, applies what arrives, keeps the cursor, and
/// tells the page.
async fn follow(web: Arc<Web>) {
    let cursor_file = crate::cmd::WATCH_CURSOR;
    let mut cursor = std::fs::read_to_string(web.ctx.state_file(cursor_file))
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let mut backoff = Duration::from_millis(250);
    loop {
        let mut events = match web.device.subscribe(cursor.as_deref()).await {
            Ok(events) => events,
            Err(ClientError::OutOfRange(_)) => {
                cursor = None;
                continue;
            }
            Err(err) => {
                notice(&web, &err);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        loop {
            match events.next().await {
                Ok(Some(event)) => {
                    backoff = Duration::from_millis(250);
                    let change = match &event.kind {
                        // What fails here is tried again when the consult is
                        // next shown (its thread is caught up then); the
                        // terminal says so.
                        EventKind::Consult(change) => {
                            if let Err(err) = web.device.follow(change).await {
                                lagging(&web, &err);
                            }
                            Some(Change::Consult(change.consult))
                        }
                        EventKind::ThreadEntry(entry) => {
                            match uuid::Uuid::try_parse(&entry.consult_id) {
                                Ok(consult) => {
                                    if let Err(err) =
                                        web.device.apply(consult, vec![entry.clone()]).await
                                    {
                                        lagging(&web, &err);
                                    }
                                    Some(Change::Thread(consult))
                                }
                                Err(_) => None,
                            }
                        }
                        EventKind::Welcome { consult, .. } => {
                            if let Err(err) = web.device.catch_up(*consult).await {
                                lagging(&web, &err);
                            }
                            Some(Change::Thread(*consult))
                        }
                        _ => None,
                    };
                    let _ = web.ctx.write_state(cursor_file, event.cursor.as_bytes());
                    cursor = Some(event.cursor);
                    if let Some(change) = change {
                        let _ = web.changes.send(change);
                    }
                }
                Ok(None) | Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    break;
                }
            }
        }
    }
}

/// Says on the terminal that a thread is not in line yet (the error's kind
/// only).
fn lagging(web: &Web, err: &ClientError) {
    if !web.ctx.out.json() {
        eprintln!("{}: {err}", crate::text::WEB_THREAD_LAGS);
    }
}

/// Says on the terminal that following stopped for a moment (the error's
/// kind only: it names no content).
fn notice(web: &Web, err: &ClientError) {
    if !web.ctx.out.json() {
        eprintln!("{}: {err}", crate::text::WEB_FOLLOW_RETRY);
    }
}
