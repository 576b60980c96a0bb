//! One audit event for every call of `samenop.v1`, allowed or denied.
//!
//! [`AuditLayer`] wraps every service. For each call it starts a
//! [`CallAudit`]: the action (the gRPC method), the request id, the network
//! address and the purpose, put into the request's extensions. The handler
//! adds what it learns on the way — the organisation and certificate, the
//! acting professional, the role it was authorised under, the objects it
//! touched, the legal basis — through [`crate::auth::Caller::audit`].
//!
//! A handler that changes something puts the ALLOWED event into the very
//! batch of its change ([`CallAudit::allowed`]), so the change and its
//! account are one durable step. For every other call — a read, a refusal, a
//! failure — the layer commits the event on its own once the handler has
//! answered, and only then lets the answer go: nothing is shown that is not
//! accounted for. If that commit fails, the caller gets INTERNAL instead.
//!
//! Health checks and reflection are not audited: they touch no one's data.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::SystemTime,
};

use http::HeaderName;
use samenop_proto::{PROFESSIONAL_METADATA_KEY, v1};
use tonic::{
    Code, Status,
    metadata::MetadataValue,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tower::{Layer, Service};

use crate::{
    auth::Fingerprint,
    clock::{Clock, now_ms},
    domain::{Oin, ProfessionalId, Role, consult::LegalBasis},
    store::{Batch, Store},
};

/// The response header by which a handler marks a refusal for want of a
/// legal basis (a FAILED_PRECONDITION that is a denial, not a state error).
/// The layer reads and removes it; it never reaches the caller.
pub const DENIED_HEADER: &str = "x-samenop-audit-denied";

/// The response header by which a handler gives the audit a reason of its
/// own instead of the status message, when that message tells the caller
/// something about a family (an age band) that the trail must not keep.
/// Read and removed by the layer, like [`DENIED_HEADER`].
pub const REASON_HEADER: &str = "x-samenop-audit-reason";

/// The longest outcome reason kept, in characters.
const REASON_MAX_CHARS: usize = 300;

/// What is known of one call's audit event so far.
#[derive(Clone)]
pub struct CallAudit {
    /// The event being filled in, and whether it went into a batch.
    draft: Arc<Mutex<Draft>>,
    /// The fingerprint of the connection's client certificate, when it has
    /// one (taken once, by the layer).
    certificate: Option<Fingerprint>,
    /// The server's clock, for the event's time.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for CallAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let draft = self.draft.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("CallAudit")
            .field("action", &draft.event.action)
            .field("request_id", &draft.event.request_id)
            .finish_non_exhaustive()
    }
}

/// The event being filled in.
struct Draft {
    /// The event so far (no outcome, sequence or hashes yet).
    event: v1::AuditEvent,
    /// Whether an ALLOWED event was handed to a batch.
    in_batch: bool,
}

impl CallAudit {
    /// Starts the audit of a call of `action` (the full method name).
    fn start(
        action: &str,
        request_id: String,
        remote: Option<SocketAddr>,
        certificate: Option<Fingerprint>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let event = v1::AuditEvent {
            action: action.to_owned(),
            purpose: purpose_of(action) as i32,
            request_id,
            actor: Some(v1::AuditActor {
                network_address: remote.map(|a| a.to_string()).unwrap_or_default(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let audit = CallAudit {
            draft: Arc::new(Mutex::new(Draft {
                event,
                in_batch: false,
            })),
            certificate,
            clock,
        };
        if let Some(certificate) = certificate {
            // Known from the connection, so even a call refused before
            // authentication names its certificate.
            audit.peer(None, &certificate);
        }
        audit
    }

    /// The fingerprint of the connection's client certificate, when the
    /// layer saw one.
    pub fn certificate(&self) -> Option<Fingerprint> {
        self.certificate
    }

    /// The audit of the call `request` belongs to.
    ///
    /// Every `samenop.v1` call passes [`AuditLayer`], which puts it there; a
    /// request without one (a handler driven directly) gets a detached audit
    /// that records nothing.
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        request
            .extensions()
            .get::<CallAudit>()
            .cloned()
            .unwrap_or_else(|| {
                tracing::error!("call without an audit record: not passed through the audit layer");
                CallAudit::start(
                    "detached",
                    String::new(),
                    None,
                    None,
                    Arc::new(crate::clock::SystemClock),
                )
            })
    }

    /// Changes the draft.
    fn edit(&self, change: impl FnOnce(&mut v1::AuditEvent)) {
        let mut draft = self.draft.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut draft.event);
    }

    /// Changes the draft's actor.
    fn edit_actor(&self, change: impl FnOnce(&mut v1::AuditActor)) {
        self.edit(|event| change(event.actor.get_or_insert_with(Default::default)));
    }

    /// Records the calling organisation and its certificate.
    pub fn peer(&self, organisation: Option<&Oin>, certificate: &Fingerprint) {
        let same = self.certificate.as_ref() == Some(certificate);
        self.edit_actor(|actor| {
            actor.organisation_oin = organisation.map(ToString::to_string).unwrap_or_default();
            if !same || actor.certificate_fingerprint.is_empty() {
                actor.certificate_fingerprint = certificate.to_string();
            }
        });
    }

    /// Records the organisation of the certificate `leaf` and the
    /// professional `named` in the metadata, when no handler did: the call
    /// never reached one.
    fn identify_if_unknown(&self, leaf: Option<&[u8]>, named: Option<&http::HeaderValue>) {
        self.edit_actor(|actor| {
            if !actor.organisation_oin.is_empty() {
                return;
            }
            if let Some(oin) = leaf.and_then(|der| crate::auth::oin_of(der).ok()) {
                actor.organisation_oin = oin.to_string();
            }
            let professional = named
                .and_then(|value| value.to_str().ok())
                .and_then(|text| ProfessionalId::parse(PROFESSIONAL_METADATA_KEY, text).ok());
            if let Some(id) = professional
                && actor.professional_id.is_empty()
            {
                actor.professional_id = id.to_string();
            }
        });
    }

    /// Records the acting professional, as named in the metadata.
    pub fn professional(&self, id: ProfessionalId) {
        self.edit_actor(|actor| actor.professional_id = id.to_string());
    }

    /// Records the role the call was authorised under.
    pub fn role(&self, role: Role) {
        self.edit_actor(|actor| actor.role = role.to_proto() as i32);
    }

    /// Records the professional on whose behalf the actor acted.
    pub fn on_behalf_of(&self, id: ProfessionalId) {
        self.edit_actor(|actor| actor.on_behalf_of_professional_id = id.to_string());
    }

    /// Records an object the call concerns (once each).
    pub fn object(&self, object_type: v1::AuditObjectType, id: impl std::fmt::Display) {
        let object = v1::AuditObject {
            object_type: object_type as i32,
            object_id: id.to_string(),
        };
        self.edit(|event| {
            if !event.objects.contains(&object) {
                event.objects.push(object);
            }
        });
    }

    /// Records the legal basis the action rests on (never its
    /// justification text).
    pub fn basis(&self, basis: &LegalBasis) {
        self.edit(|event| event.legal_basis = Some(basis.to_proto(false)));
    }

    /// Records a short detail (never message content or family data).
    pub fn detail(&self, detail: impl Into<String>) {
        let detail = detail.into();
        self.edit(|event| event.detail = detail);
    }

    /// The ALLOWED event, to put into the batch of the call's change: it
    /// is committed with the change or not at all.
    pub fn allowed(&self) -> v1::AuditEvent {
        let mut draft = self.draft.lock().unwrap_or_else(PoisonError::into_inner);
        draft.in_batch = true;
        self.finished(&draft.event, Code::Ok, "", false)
    }

    /// Whether an ALLOWED event went into a batch.
    fn in_batch(&self) -> bool {
        self.draft
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .in_batch
    }

    /// The event of the call's answer.
    fn finish(&self, code: Code, message: &str, denied: bool) -> v1::AuditEvent {
        let draft = self.draft.lock().unwrap_or_else(PoisonError::into_inner);
        self.finished(&draft.event, code, message, denied)
    }

    /// `draft` completed with the outcome of `code`.
    fn finished(
        &self,
        draft: &v1::AuditEvent,
        code: Code,
        message: &str,
        denied: bool,
    ) -> v1::AuditEvent {
        let outcome = match code {
            Code::Ok => v1::AuditOutcome::Allowed,
            Code::Unauthenticated | Code::PermissionDenied | Code::NotFound => {
                v1::AuditOutcome::Denied
            }
            _ if denied => v1::AuditOutcome::Denied,
            _ => v1::AuditOutcome::Failed,
        };
        let mut event = draft.clone();
        event.event_id = uuid::Uuid::now_v7().to_string();
        event.occurred_at = Some(prost_types::Timestamp::from(now_ms(self.clock.as_ref())));
        event.outcome = outcome as i32;
        event.status_code = code_name(code).to_owned();
        event.outcome_reason = message.chars().take(REASON_MAX_CHARS).collect();
        event
    }
}

/// An ALLOWED event of an action the server takes by itself (`action` is
/// "server/" and a name), at `now`; the caller adds purpose and objects.
pub fn server_event(action: &str, now: SystemTime) -> v1::AuditEvent {
    v1::AuditEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        action: action.to_owned(),
        occurred_at: Some(prost_types::Timestamp::from(now)),
        outcome: v1::AuditOutcome::Allowed as i32,
        status_code: code_name(Code::Ok).to_owned(),
        actor: Some(v1::AuditActor {
            by_server: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Why information is processed, by the service called.
fn purpose_of(action: &str) -> v1::Purpose {
    let service = action.split('/').next().unwrap_or_default();
    match service {
        "samenop.v1.DirectoryService" => v1::Purpose::NetworkAdministration,
        "samenop.v1.FamilyService" => v1::Purpose::FamilyAdministration,
        "samenop.v1.AuditService" => match action.rsplit('/').next() {
            Some("GetFamilyTransparency" | "ExportFamilyData" | "EraseFamily") => {
                v1::Purpose::DataSubjectRights
            }
            _ => v1::Purpose::Accountability,
        },
        _ if action.ends_with("/GetConsultReport") => v1::Purpose::Accountability,
        _ => v1::Purpose::Consultation,
    }
}

/// The protocol's name of a status code ("OK", "PERMISSION_DENIED", …).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The request id of a call: the caller's `x-request-id` when it is a
/// short printable token, else `None`.
pub fn caller_request_id<B>(request: &http::Request<B>) -> Option<&str> {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
}

/// Audits every `samenop.v1` call; see the module documentation.
#[derive(Clone)]
pub struct AuditLayer {
    /// Where audit-only events are committed.
    store: Arc<dyn Store>,
    /// The server's clock.
    clock: Arc<dyn Clock>,
}

impl AuditLayer {
    /// The layer writing to `store`, timed by `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        AuditLayer { store, clock }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audited {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`AuditLayer`].
#[derive(Clone)]
pub struct Audited<S> {
    /// The wrapped service.
    inner: S,
    /// The store and clock.
    layer: AuditLayer,
}

impl<S, B> Service<http::Request<B>> for Audited<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let Some(action) = path
            .strip_prefix('/')
            .filter(|p| p.starts_with("samenop.v1."))
            .map(|p| {
                // The path is the caller's text: keep it only when it has the
                // form of a method name.
                let method_like = p.len() <= 128
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/' || b == b'_');
                if method_like {
                    p.to_owned()
                } else {
                    "samenop.v1/not-a-method".to_owned()
                }
            })
        else {
            return Box::pin(self.inner.call(request));
        };
        let request_id = match caller_request_id(&request) {
            Some(id) => id.to_owned(),
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                tracing::Span::current().record("request_id", tracing::field::display(&id));
                id
            }
        };
        let connection = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
        let remote = connection.and_then(|info| info.get_ref().remote_addr());
        let certs = connection.and_then(TlsConnectInfo::peer_certs);
        let certificate = certs
            .as_ref()
            .and_then(|certs| certs.first())
            .map(|leaf| Fingerprint::of(leaf.as_ref()));
        let audit = CallAudit::start(
            &action,
            request_id,
            remote,
            certificate,
            self.layer.clock.clone(),
        );
        let named = request.headers().get(PROFESSIONAL_METADATA_KEY).cloned();
        request.extensions_mut().insert(audit.clone());
        let future = self.inner.call(request);
        let store = self.layer.store.clone();
        let mut unanswered = Unanswered {
            audit: Some(audit),
            store: store.clone(),
        };
        Box::pin(async move {
            let mut response = future.await?;
            let Some(audit) = unanswered.audit.take() else {
                return Ok(response);
            };
            let headers = response.headers_mut();
            let denied = headers
                .remove(HeaderName::from_static(DENIED_HEADER))
                .is_some();
            let reason = headers
                .remove(HeaderName::from_static(REASON_HEADER))
                .and_then(|v| v.to_str().ok().map(str::to_owned));
            let status = Status::from_header_map(response.headers());
            let (code, message) = status
                .as_ref()
                .map_or((Code::Ok, ""), |s| (s.code(), s.message()));
            let message = reason.as_deref().unwrap_or(message);
            if code == Code::Ok && audit.in_batch() {
                return Ok(response);
            }
            // A request that never reached its handler (it did not decode)
            // is recorded with the organisation and the professional named,
            // like any other refusal, so its organisation's privacy officer
            // sees it.
            let leaf = certs.as_ref().and_then(|certs| certs.first());
            audit.identify_if_unknown(leaf.map(AsRef::as_ref), named.as_ref());
            let mut batch = Batch::new();
            batch.audit(audit.finish(code, message, denied));
            if let Err(cause) = store.commit(batch).await {
                tracing::error!(cause = %cause, "the audit event cannot be written; the call is answered INTERNAL");
                return Ok(Status::internal("internal error").into_http());
            }
            Ok(response)
        })
    }
}

/// Writes the event of a call whose future was dropped before it answered
/// (the client's deadline passed, or it went away), so that such a call is
/// accounted for too.
struct Unanswered {
    /// The call's audit, taken when the call answers.
    audit: Option<CallAudit>,
    /// Where the event goes.
    store: Arc<dyn Store>,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let Some(audit) = self.audit.take() else {
            return;
        };
        // A change's event is in the change's batch: exactly as durable as
        // the change, whether or not that commit finished.
        if audit.in_batch() {
            return;
        }
        let event = audit.finish(
            Code::Cancelled,
            "the call ended before it was answered (deadline passed or cancelled)",
            false,
        );
        let store = self.store.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut batch = Batch::new();
                batch.audit(event);
                if let Err(cause) = store.commit(batch).await {
                    tracing::error!(cause = %cause, "the audit event of a cancelled call cannot be written");
                }
            });
        }
    }
}

/// Records `reason` in the audit instead of `status`'s message (see
/// [`REASON_HEADER`]).
pub fn with_reason(mut status: Status, reason: &'static str) -> Status {
    status
        .metadata_mut()
        .insert(REASON_HEADER, MetadataValue::from_static(reason));
    status
}

/// Marks `status` as a refusal for want of a legal basis, for the audit
/// layer (see [`DENIED_HEADER`]).
pub fn mark_denied(mut status: Status) -> Status {
    status
        .metadata_mut()
        .insert(DENIED_HEADER, MetadataValue::from_static("1"));
    status
}
