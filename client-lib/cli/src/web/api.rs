//! What the page asks this process, as JSON: the session, the inbox, a
//! consult with its thread decrypted, and the specialist's answers
//! (accept, decline, send, availability). Consults are shaped as the
//! command line's `--json` shapes them (`cmd::json`). An error answers
//! `{"error": …}` with the status that fits, in the server's own words,
//! which name no content.

use std::{sync::Arc, time::SystemTime};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use samenop_client::{
    Availability, ClientError,
    consult::{ConsultState, DeclineReason, ListScope, Urgency},
    mls::NewAttachment,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Web;
use crate::{cmd::json, text};

/// The routes under `/api`.
pub(crate) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/session", get(session))
        .route("/api/inbox", get(inbox))
        .route("/api/consults", get(consults))
        .route("/api/consults/{consult}", get(consult))
        .route("/api/consults/{consult}/accept", post(accept))
        .route("/api/consults/{consult}/decline", post(decline))
        .route("/api/consults/{consult}/messages", post(send))
        .route(
            "/api/consults/{consult}/attachments",
            // The server's own limit (25 MiB by default) refuses what is
            // larger; this only keeps a runaway body out of memory.
            post(attach).layer(DefaultBodyLimit::max(ATTACHMENT_LIMIT)),
        )
        .route(
            "/api/consults/{consult}/attachments/{attachment}",
            get(download),
        )
        .route("/api/consults/{consult}/leave", post(leave))
        .route("/api/consults/{consult}/invite", post(invite))
        .route("/api/consults/{consult}/close", post(close))
        .route("/api/specialists", get(specialists))
        .route("/api/availability", put(availability))
}

/// The largest upload this process takes in (above the server's default
/// limit of 25 MiB, which decides).
const ATTACHMENT_LIMIT: usize = 64 * 1024 * 1024;

/// An answer that went wrong, as the page shows it.
struct Failed(StatusCode, String);

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<ClientError> for Failed {
    fn from(err: ClientError) -> Self {
        use ClientError as E;
        let status = match &err {
            E::InvalidArgument(_) | E::InvalidInput(_) => StatusCode::BAD_REQUEST,
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::PermissionDenied(_) | E::Unauthenticated(_) => StatusCode::FORBIDDEN,
            E::FailedPrecondition(_) | E::Aborted(_) | E::AlreadyExists(_) => StatusCode::CONFLICT,
            E::ResourceExhausted(_) => StatusCode::PAYLOAD_TOO_LARGE,
            E::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failed(status, err.to_string())
    }
}

type Answer = std::result::Result<Json<Value>, Failed>;

fn consult_id(given: &str) -> std::result::Result<Uuid, Failed> {
    Uuid::try_parse(given).map_err(|_| Failed(StatusCode::BAD_REQUEST, "not a consult id".into()))
}

/// Who is signed in, and the token changes must carry.
async fn session(State(web): State<Arc<Web>>) -> Answer {
    let me = web.ctx.me();
    let (professional, _) = web.ctx.client.professional_with_devices(me).await?;
    Ok(Json(json!({
        "csrf": web.csrf,
        "me": json::professional(&professional),
    })))
}

/// The rank of an urgency: most urgent first.
fn rank(urgency: Urgency) -> u8 {
    match urgency {
        Urgency::Acute => 0,
        Urgency::Soon => 1,
        Urgency::Normal => 2,
    }
}

/// A consult as the page shows it: the command line's shape, with whether
/// it is past respond-by, whom it is addressed to, and who takes part by
/// name and organisation (the asking one's too; never the family).
async fn shown(web: &Web, c: &samenop_client::consult::Consult, now: SystemTime) -> Value {
    let mut value = json::consult(c);
    let owner = web.person(c.owner).await;
    let mut participants = Vec::new();
    for p in &c.participants {
        let person = web.person(p.professional).await;
        participants.push(json!({
            "professional_id": p.professional.to_string(),
            "name": person.name,
            "organisation": person.organisation,
            "owner": p.owner,
            "status": text::status_name(p.status),
            "me": p.professional == web.ctx.me(),
        }));
    }
    if let Value::Object(map) = &mut value {
        map.insert(
            "past_respond_by".into(),
            json!(c.respond_by.is_some_and(|by| by < now) && c.state == ConsultState::Requested),
        );
        map.insert(
            "addressed_to".into(),
            json!(if c.addressed == Some(web.ctx.me()) {
                "me"
            } else {
                "pool"
            }),
        );
        map.insert("own".into(), json!(c.owner == web.ctx.me()));
        map.insert("owner_name".into(), json!(owner.name));
        map.insert("asking_organisation".into(), json!(owner.organisation));
        map.insert("participants".into(), Value::Array(participants));
    }
    value
}

/// Each of `consults` as the page shows it.
async fn all_shown(web: &Web, consults: &[samenop_client::consult::Consult]) -> Vec<Value> {
    let now = SystemTime::now();
    let mut shown_all = Vec::with_capacity(consults.len());
    for c in consults {
        shown_all.push(shown(web, c, now).await);
    }
    shown_all
}

/// The requests waiting for me and my pools: most urgent first, then the
/// one to answer soonest.
async fn inbox(State(web): State<Arc<Web>>) -> Answer {
    let mut requests = web.ctx.client.list_consults(ListScope::Inbox).await?;
    requests.sort_by_key(|c| (rank(c.urgency), c.respond_by));
    Ok(Json(
        json!({ "requests": all_shown(&web, &requests).await }),
    ))
}

/// The consults I own or take part in, newest first.
async fn consults(State(web): State<Arc<Web>>) -> Answer {
    let mut all = web.ctx.client.list_consults(ListScope::Owned).await?;
    all.extend(
        web.ctx
            .client
            .list_consults(ListScope::Participating)
            .await?,
    );
    all.sort_by_key(|c| std::cmp::Reverse(c.id));
    all.dedup_by_key(|c| c.id);
    Ok(Json(json!({ "consults": all_shown(&web, &all).await })))
}

/// A consult, and its thread as far as this device can read it.
async fn consult(State(web): State<Arc<Web>>, Path(given): Path<String>) -> Answer {
    let id = consult_id(&given)?;
    let c = web.ctx.client.consult(id).await?;
    // What arrived while nobody looked is read now (joining the thread if
    // a Welcome waits); a message that cannot be read stops the thread
    // there, and the page says so. A request has no thread to read yet.
    let readable = c.state == ConsultState::Requested
        || !matches!(
            web.device.catch_up(id).await,
            Err(ClientError::Rejected(_) | ClientError::GroupMismatch(_))
        );
    let joined = web.device.joined(id).await?;
    let thread = if joined {
        web.device.messages(id).await?
    } else {
        Vec::new()
    };
    let mut messages = Vec::with_capacity(thread.len());
    for m in &thread {
        let mut value = json::message(m);
        if let Value::Object(map) = &mut value {
            map.insert(
                "sender_name".into(),
                json!(web.person(m.sender_professional).await.name),
            );
        }
        messages.push(value);
    }
    Ok(Json(json!({
        "consult": shown(&web, &c, SystemTime::now()).await,
        "joined": joined,
        "readable": readable,
        "messages": messages,
    })))
}

/// Accepts a request: the consult's owner then adds this device.
async fn accept(State(web): State<Arc<Web>>, Path(given): Path<String>) -> Answer {
    let id = consult_id(&given)?;
    let c = web.ctx.client.accept_consult(id).await?;
    let _ = web.changes.send(super::Change::Consult(id));
    Ok(Json(shown(&web, &c, SystemTime::now()).await))
}

#[derive(Deserialize)]
struct Decline {
    reason: String,
    #[serde(default)]
    note: String,
}

/// Declines a request, with a reason (and a note for `other`).
async fn decline(
    State(web): State<Arc<Web>>,
    Path(given): Path<String>,
    Json(decline): Json<Decline>,
) -> Answer {
    let id = consult_id(&given)?;
    let reason = text::decline_from(&decline.reason)
        .ok_or_else(|| Failed(StatusCode::BAD_REQUEST, "not a decline reason".into()))?;
    if reason == DeclineReason::Other && decline.note.trim().is_empty() {
        return Err(Failed(
            StatusCode::BAD_REQUEST,
            "a decline for another reason needs a note".into(),
        ));
    }
    web.ctx
        .client
        .decline_consult(id, reason, decline.note.trim())
        .await?;
    let _ = web.changes.send(super::Change::Consult(id));
    Ok(Json(json!({ "declined": id.to_string() })))
}

#[derive(Deserialize)]
struct Send {
    text: String,
}

/// Sends a message in a consult's thread, encrypted on this device.
async fn send(
    State(web): State<Arc<Web>>,
    Path(given): Path<String>,
    Json(message): Json<Send>,
) -> Answer {
    let id = consult_id(&given)?;
    if message.text.trim().is_empty() {
        return Err(Failed(
            StatusCode::BAD_REQUEST,
            "the message is empty".into(),
        ));
    }
    let sequence = web.device.send(id, &message.text, None).await?;
    let _ = web.changes.send(super::Change::Thread(id));
    Ok(Json(json!({ "sequence": sequence })))
}

#[derive(Deserialize)]
struct Attach {
    /// The file's name.
    name: String,
    /// The message that goes with it.
    #[serde(default)]
    text: String,
}

/// Sends a message with one attachment: the request's body is the file,
/// its Content-Type the media type, `?name=` its name. The file is
/// encrypted on this device with a key of its own before it is uploaded.
async fn attach(
    State(web): State<Arc<Web>>,
    Path(given): Path<String>,
    Query(attach): Query<Attach>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let id = consult_id(&given)?;
    let name = attach.name.trim();
    if name.is_empty() || body.is_empty() {
        return Err(Failed(
            StatusCode::BAD_REQUEST,
            "an attachment needs a name and content".into(),
        ));
    }
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("application/octet-stream");
    let file = NewAttachment {
        name,
        media_type,
        bytes: &body,
    };
    let sequence = web
        .device
        .send_with(id, &attach.text, None, &[file])
        .await?;
    let _ = web.changes.send(super::Change::Thread(id));
    Ok(Json(json!({ "sequence": sequence })))
}

/// An attachment of the thread, decrypted, as a download: never shown in
/// the page's origin (its type is the sender's to say, and HTML from a
/// sender must not run here), always saved.
async fn download(
    State(web): State<Arc<Web>>,
    Path((given, attachment)): Path<(String, String)>,
) -> std::result::Result<Response, Failed> {
    let id = consult_id(&given)?;
    let wanted = Uuid::try_parse(&attachment)
        .map_err(|_| Failed(StatusCode::BAD_REQUEST, "not an attachment id".into()))?;
    let found = web
        .device
        .messages(id)
        .await?
        .into_iter()
        .flat_map(|m| m.attachments)
        .find(|a| a.id == wanted)
        .ok_or_else(|| {
            Failed(
                StatusCode::NOT_FOUND,
                "no such attachment in this thread".into(),
            )
        })?;
    let bytes = web.device.open_attachment(id, &found).await?;
    // The name as an RFC 6266 filename*: percent-encoded UTF-8.
    let encoded: String = found
        .name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let disposition = HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}"))
        .unwrap_or(HeaderValue::from_static("attachment"));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

/// Leaves a consult: this specialist takes no further part.
async fn leave(State(web): State<Arc<Web>>, Path(given): Path<String>) -> Answer {
    let id = consult_id(&given)?;
    web.ctx.client.leave_consult(id).await?;
    let _ = web.changes.send(super::Change::Consult(id));
    Ok(Json(json!({ "left": id.to_string() })))
}

#[derive(Deserialize)]
struct SetAvailability {
    availability: String,
}

/// Sets my availability: away takes me out of pool routing.
async fn availability(State(web): State<Arc<Web>>, Json(set): Json<SetAvailability>) -> Answer {
    let availability = match set.availability.as_str() {
        "available" => Availability::Available,
        "away" => Availability::Away,
        _ => {
            return Err(Failed(
                StatusCode::BAD_REQUEST,
                "availability is available or away".into(),
            ));
        }
    };
    let professional = web.ctx.client.set_availability(availability).await?;
    Ok(Json(json::professional(&professional)))
}

#[derive(Deserialize)]
struct Specialists {
    /// An expertise's name, as `--json` gives it.
    expertise: String,
}

/// The network's active specialists of one expertise, to invite: the
/// available ones first.
async fn specialists(State(web): State<Arc<Web>>, Query(wanted): Query<Specialists>) -> Answer {
    let expertise = text::expertise_from(&wanted.expertise)
        .ok_or_else(|| Failed(StatusCode::BAD_REQUEST, "not an expertise".into()))?;
    let mut found = web
        .ctx
        .client
        .list_specialists(Some(expertise), false)
        .await?;
    found.retain(|p| p.id != web.ctx.me());
    found.sort_by_key(|p| {
        (
            p.availability != Some(Availability::Available),
            p.display_name.clone(),
        )
    });
    Ok(Json(json!({
        "specialists": found.iter().map(json::professional).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct Invite {
    specialist: String,
    expertise: String,
}

/// Invites a further specialist to a consult I own.
async fn invite(
    State(web): State<Arc<Web>>,
    Path(given): Path<String>,
    Json(invite): Json<Invite>,
) -> Answer {
    let id = consult_id(&given)?;
    let specialist = Uuid::try_parse(&invite.specialist)
        .map_err(|_| Failed(StatusCode::BAD_REQUEST, "not a specialist id".into()))?;
    let expertise = text::expertise_from(&invite.expertise)
        .ok_or_else(|| Failed(StatusCode::BAD_REQUEST, "not an expertise".into()))?;
    let c = web
        .ctx
        .client
        .invite_specialist(id, specialist, expertise)
        .await?;
    let _ = web.changes.send(super::Change::Consult(id));
    Ok(Json(shown(&web, &c, SystemTime::now()).await))
}

#[derive(Deserialize)]
struct Close {
    outcome: String,
}

/// Closes a consult I own, with its outcome.
async fn close(
    State(web): State<Arc<Web>>,
    Path(given): Path<String>,
    Json(close): Json<Close>,
) -> Answer {
    let id = consult_id(&given)?;
    let outcome = text::outcome_from(&close.outcome)
        .ok_or_else(|| Failed(StatusCode::BAD_REQUEST, "not an outcome".into()))?;
    let c = web.ctx.client.close_consult(id, outcome).await?;
    let _ = web.changes.send(super::Change::Consult(id));
    Ok(Json(shown(&web, &c, SystemTime::now()).await))
}
