//! ThreadService: the MLS delivery service of consult threads, and live
//! delivery of every device's events.
//!
//! The server reads only the clear header of an MLS message (group id, epoch,
//! content type) and never holds a key that decrypts it. Appends are
//! compare-and-set on the thread's head: a commit lands only on the epoch it
//! was made for, an application message only in the current epoch, and of two
//! racing commits exactly one wins (the other gets ABORTED). Each accepted
//! message is added, in the same batch, to the event log of every active
//! device of the consult's active participants.

use std::{collections::BTreeSet, time::Duration};

use openmls::prelude::{
    ContentType, MlsMessageBodyIn, MlsMessageIn, ProtocolMessage, tls_codec::DeserializeBytes,
};
use samenop_proto::v1::{self, AuditObjectType as Object, thread_service_server::ThreadService};
use tonic::{Request, Response, Status, codegen::BoxStream};

use super::{Context, consult::ConsultApi, notices::Fanout, timestamp};
use crate::{
    auth::Caller,
    delivery::{Stamp, Wake},
    domain::{
        Device, DeviceId, InvalidInput, ProfessionalId,
        consult::{Consult, ConsultId, Standing, State, SuspensionReason},
        parse_uuid,
    },
    error::{ServiceError, ServiceResult},
    store::{Batch, StoreError, threads::StoredEvent},
};

/// How often an append is retried when a concurrent one moved a head it
/// read (the thread's, a device log's or the consult's).
const APPEND_ATTEMPTS: usize = 16;
/// Messages per FetchThread page by default, and at most.
const PAGE_DEFAULT: usize = 100;
const PAGE_MAX: usize = 500;
/// The most bytes of MLS messages one FetchThread page returns (the first
/// message always fits: it is at most the MLS limit).
const PAGE_BYTES: usize = 2 * 1024 * 1024;
/// Thread entries read from the store at a time by FetchThread.
const FETCH_READ: usize = 8;
/// Events read from a device's log at a time, and held by a subscription
/// at most.
const EVENTS_PER_READ: usize = 32;
/// Backoff between append attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(2);

/// The ThreadService implementation.
#[derive(Clone)]
pub struct ThreadApi {
    /// Shared service state.
    ctx: Context,
    /// Loads and settles consults as the consult service does.
    consults: ConsultApi,
    /// The largest MLS message stored.
    max_mls_bytes: usize,
    /// The largest attachment stored.
    max_attachment_bytes: usize,
}

/// A post's checked input.
struct Post<'a> {
    consult: ConsultId,
    device: Device,
    request_id: uuid::Uuid,
    mls: &'a [u8],
    /// The consult as read when the caller's participation was checked,
    /// for the first attempt of the append.
    loaded: super::consult::Loaded,
}

fn no_consult(id: ConsultId) -> ServiceError {
    ServiceError::NotFound(format!("no consult {id}"))
}

fn invalid(e: InvalidInput) -> ServiceError {
    ServiceError::Invalid(e)
}

fn bad_field(field: &'static str, problem: &'static str) -> ServiceError {
    ServiceError::Invalid(InvalidInput::Malformed { field, problem })
}

/// Why a consult in `state` refuses posts, or `None` when it accepts them.
pub(super) fn refuses_posts(id: ConsultId, state: State) -> Option<String> {
    match state {
        State::Requested | State::Accepted => None,
        State::Suspended { reason, .. } => Some(format!(
            "consult {id} is suspended because {}; the contact person must record another \
             legal basis or close it",
            match reason {
                SuspensionReason::ConsentRevoked => "its consent was revoked",
                SuspensionReason::ConsentExpired => "its consent expired",
            }
        )),
        State::Closed(_) => Some(format!("consult {id} is closed")),
        State::Declined => Some(format!("consult {id} was declined")),
        State::Expired => Some(format!("consult {id} expired unaccepted")),
    }
}

/// The consult's active participants: its owner and its active specialists.
pub(super) fn active_participants(c: &Consult) -> BTreeSet<ProfessionalId> {
    let mut who: BTreeSet<ProfessionalId> = c
        .participants
        .iter()
        .filter(|p| p.standing == Standing::Active)
        .map(|p| p.professional)
        .collect();
    who.insert(c.owner);
    who
}

/// The clear header of an MLS message for consult `consult`: checks that it
/// is a handshake or application message of that group and of `kind`.
fn header(
    consult: ConsultId,
    field: &'static str,
    raw: &[u8],
    kind: ContentType,
) -> ServiceResult<ProtocolMessage> {
    let message = MlsMessageIn::tls_deserialize_exact_bytes(raw)
        .map_err(|_| bad_field(field, "is not a TLS-serialised MLS message"))?;
    let protocol = message
        .try_into_protocol_message()
        .map_err(|_| bad_field(field, "is not an MLS handshake or application message"))?;
    if protocol.group_id().as_slice() != consult.to_string().as_bytes() {
        return Err(bad_field(field, "belongs to another consult's group"));
    }
    if protocol.content_type() != kind {
        return Err(bad_field(
            field,
            match kind {
                ContentType::Commit => "is not a commit",
                _ => "is not an application message",
            },
        ));
    }
    Ok(protocol)
}

/// The cursor text of event `number` of `device`'s log (made for every
/// delivery: the id is written without the formatting machinery).
fn cursor(device: DeviceId, number: u64) -> String {
    use std::fmt::Write as _;
    let mut id = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::from_bytes(*device.as_bytes())
        .hyphenated()
        .encode_lower(&mut id);
    let mut text = String::with_capacity(id.len() + 21);
    text.push_str(id);
    text.push('.');
    let _ = write!(text, "{number}");
    text
}

/// The event number a cursor names, checked to be of `device`.
fn parse_cursor(device: DeviceId, raw: &str) -> ServiceResult<u64> {
    if raw.is_empty() {
        return Ok(0);
    }
    let bad = || bad_field("cursor", "is not a cursor this server gave to this device");
    let (of, number) = raw.split_once('.').ok_or_else(bad)?;
    if DeviceId::parse("cursor", of).ok() != Some(device) {
        return Err(bad());
    }
    number.parse::<u64>().map_err(|_| bad())
}

/// The caller's own active device `raw` (NOT_FOUND for any other).
pub(super) async fn own_device(ctx: &Context, caller: &Caller, raw: &str) -> ServiceResult<Device> {
    let id = DeviceId::parse("device_id", raw).map_err(invalid)?;
    caller.audit.object(Object::Device, id);
    match ctx.directory.device(id).await? {
        Some(device)
            if device.professional == caller.professional.id && device.revoked_at.is_none() =>
        {
            Ok(device.into_value())
        }
        _ => Err(ServiceError::NotFound(format!(
            "no active device {id} of yours"
        ))),
    }
}

/// Loads a consult the caller actively takes part in, as stored and
/// settled now (NOT_FOUND for everyone else).
pub(super) async fn participating(
    consults: &ConsultApi,
    caller: &Caller,
    id: ConsultId,
) -> ServiceResult<super::consult::Loaded> {
    caller.audit.object(Object::Consult, id);
    let loaded = consults.load(id).await?;
    if active_participants(&loaded.now).contains(&caller.professional.id) {
        super::consult::note_access(caller, &loaded.now);
        Ok(loaded)
    } else {
        Err(no_consult(id))
    }
}

impl ThreadApi {
    /// The service over `ctx`.
    pub fn new(ctx: Context, limits: &crate::config::Limits) -> Self {
        ThreadApi {
            consults: ConsultApi::new(ctx.clone()),
            ctx,
            max_mls_bytes: limits.max_mls_message_bytes,
            max_attachment_bytes: limits.max_attachment_bytes,
        }
    }

    fn check_size(&self, field: &'static str, raw: &[u8]) -> ServiceResult<()> {
        if raw.is_empty() {
            return Err(ServiceError::Invalid(InvalidInput::Missing { field }));
        }
        if raw.len() > self.max_mls_bytes {
            return Err(ServiceError::ResourceExhausted(format!(
                "{field} is {} bytes; the limit is {} bytes",
                raw.len(),
                self.max_mls_bytes
            )));
        }
        Ok(())
    }

    /// The active devices of the consult's active participants.
    async fn member_devices(&self, c: &Consult) -> ServiceResult<Vec<DeviceId>> {
        let mut devices = Vec::new();
        for professional in active_participants(c) {
            devices.extend(
                self.ctx
                    .directory
                    .active_device_ids_of(professional)
                    .await?,
            );
        }
        Ok(devices)
    }

    /// Checks a post's common input.
    async fn post_input<'a>(
        &self,
        caller: &Caller,
        consult: &str,
        device: &str,
        request_id: &str,
        mls: &'a [u8],
        field: &'static str,
    ) -> ServiceResult<Post<'a>> {
        let consult = ConsultId::parse("consult_id", consult).map_err(invalid)?;
        caller.audit.object(Object::Consult, consult);
        let request_id = parse_uuid("request_id", request_id).map_err(invalid)?;
        self.check_size(field, mls)?;
        let device = own_device(&self.ctx, caller, device).await?;
        // Strangers are refused before anything they sent is looked at.
        let loaded = participating(&self.consults, caller, consult).await?;
        Ok(Post {
            consult,
            device,
            request_id,
            mls,
            loaded,
        })
    }

    /// Appends one message (and the Welcomes of a commit) to a thread, with
    /// its fan-out, retrying when a concurrent append moved a head. `epoch`
    /// checks the message's epoch against the thread's: `Err` refuses.
    async fn append(
        &self,
        caller: &Caller,
        post: &Post<'_>,
        kind: v1::ThreadEntryKind,
        message_epoch: u64,
        welcomes: &[v1::WelcomeDelivery],
    ) -> ServiceResult<(u64, u64)> {
        for attempt in 0..APPEND_ATTEMPTS {
            let loaded = if attempt == 0 {
                post.loaded.clone()
            } else {
                participating(&self.consults, caller, post.consult).await?
            };
            // A post stored before gets its answer again, whatever changed
            // since: the sender must learn that it landed.
            if let Some(earlier) = self
                .ctx
                .threads
                .accepted(post.consult, &post.request_id)
                .await?
            {
                return Ok((earlier.sequence, earlier.epoch));
            }
            // A consult whose basis ended, or that was closed, takes no
            // content; only its owner's commits that add no one (they carry
            // no Welcome), so the owner can take everyone else out.
            let owner_pruning = kind == v1::ThreadEntryKind::Commit
                && welcomes.is_empty()
                && loaded.now.owner == caller.professional.id
                && matches!(loaded.now.state, State::Suspended { .. } | State::Closed(_));
            if let Some(reason) = refuses_posts(post.consult, loaded.now.state)
                && !owner_pruning
            {
                return Err(ServiceError::FailedPrecondition(reason));
            }
            // Checked against the consult as this attempt read it, so no
            // Welcome reaches a device that stopped taking part meanwhile.
            let welcomes = self.welcome_targets(&loaded.now, welcomes).await?;
            let read = self.ctx.threads.head(post.consult).await?;
            if message_epoch != read.head.epoch {
                return Err(ServiceError::Aborted(format!(
                    "the message was made for epoch {message_epoch} but the thread is at epoch \
                     {}; fetch the thread from sequence {}, apply it and make the message again",
                    read.head.epoch,
                    read.head.last_sequence + 1
                )));
            }
            let commit = kind == v1::ThreadEntryKind::Commit;
            let epoch_after = read.head.epoch + u64::from(commit);
            let now = self.ctx.now();
            let entry = v1::ThreadEntry {
                consult_id: post.consult.to_string(),
                sequence: read.head.last_sequence + 1,
                kind: kind.into(),
                epoch: read.head.epoch,
                sender_device_id: post.device.id.to_string(),
                sender_professional_id: caller.professional.id.to_string(),
                mls_message: post.mls.to_vec(),
                posted_at: Some(timestamp(now)),
            };
            let mut batch = Batch::new();
            self.ctx
                .threads
                .stage_append(&mut batch, &read, &entry, epoch_after, &post.request_id);
            // A consult that changed meanwhile (closed, suspended, someone
            // removed) is read again: the post must see its latest state.
            let first_answer = caller.professional.id != loaded.now.owner
                && kind == v1::ThreadEntryKind::Application
                && loaded.now.first_answer_at.is_none();
            if first_answer {
                let mut answered = loaded.now.clone();
                answered.first_answer_at = Some(now);
                self.ctx
                    .consults
                    .stage(&mut batch, Some(&loaded.stored), &answered);
            } else {
                self.ctx
                    .consults
                    .stage_unchanged(&mut batch, &loaded.stored);
            }
            let mut fanout = Fanout::default();
            for (welcome, devices) in &welcomes {
                for device in devices {
                    let message = v1::WelcomeMessage {
                        consult_id: post.consult.to_string(),
                        commit_sequence: entry.sequence,
                        epoch: epoch_after,
                        device_id: device.id.to_string(),
                        welcome: welcome.clone(),
                    };
                    self.ctx
                        .threads
                        .stage_welcome(&mut batch, post.consult, &message, device.id);
                    fanout.add(
                        device.id,
                        StoredEvent {
                            occurred_at: Some(timestamp(now)),
                            event: Some(v1::subscribe_response::Event::Welcome(message)),
                            ..Default::default()
                        },
                    );
                }
            }
            // The log keeps only where the entry is; delivery reads it.
            let reference = v1::ThreadEntry {
                consult_id: entry.consult_id.clone(),
                sequence: entry.sequence,
                ..Default::default()
            };
            fanout.add_to_each(
                self.member_devices(&loaded.now).await?,
                StoredEvent {
                    occurred_at: Some(timestamp(now)),
                    event: Some(v1::subscribe_response::Event::ThreadEntry(reference)),
                    ..Default::default()
                },
            );
            fanout.stage(&self.ctx, &mut batch);
            fanout.delivering(StoredEvent {
                occurred_at: Some(timestamp(now)),
                event: Some(v1::subscribe_response::Event::ThreadEntry(entry.clone())),
                ..Default::default()
            });
            batch.audit(caller.audit.allowed());
            match fanout.commit(&self.ctx, batch).await {
                Ok(()) => return Ok((entry.sequence, epoch_after)),
                Err(StoreError::Conflict) => tokio::time::sleep(RETRY_PAUSE).await,
                Err(other) => return Err(other.into()),
            }
        }
        Err(ServiceError::Aborted(
            "the thread is too busy right now; post again".into(),
        ))
    }

    /// The Welcome deliveries of a commit, checked: each parses as an MLS
    /// Welcome within the size limit and names only active devices of the
    /// consult's active participants, each once.
    async fn welcome_targets(
        &self,
        c: &Consult,
        deliveries: &[v1::WelcomeDelivery],
    ) -> ServiceResult<Vec<(Vec<u8>, Vec<Device>)>> {
        let consult = c.id;
        let members = active_participants(c);
        let mut seen = BTreeSet::new();
        let mut targets = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            self.check_size("welcomes.welcome", &delivery.welcome)?;
            let message =
                MlsMessageIn::tls_deserialize_exact_bytes(&delivery.welcome).map_err(|_| {
                    bad_field("welcomes.welcome", "is not a TLS-serialised MLS message")
                })?;
            if !matches!(message.extract(), MlsMessageBodyIn::Welcome(_)) {
                return Err(bad_field("welcomes.welcome", "is not an MLS Welcome"));
            }
            if delivery.device_ids.is_empty() {
                return Err(ServiceError::Invalid(InvalidInput::Missing {
                    field: "welcomes.device_ids",
                }));
            }
            let mut devices = Vec::with_capacity(delivery.device_ids.len());
            for raw in &delivery.device_ids {
                let id = DeviceId::parse("welcomes.device_ids", raw).map_err(invalid)?;
                if !seen.insert(id) {
                    return Err(bad_field("welcomes.device_ids", "names a device twice"));
                }
                let device = self.ctx.directory.device(id).await?;
                match device {
                    Some(device)
                        if device.revoked_at.is_none()
                            && members.contains(&device.professional) =>
                    {
                        devices.push(device.into_value());
                    }
                    _ => {
                        return Err(ServiceError::PermissionDenied(format!(
                            "device {id} is not an active device of a participant of consult \
                             {consult}"
                        )));
                    }
                }
            }
            targets.push((delivery.welcome.clone(), devices));
        }
        Ok(targets)
    }

    /// Fills a stored event for delivery: its cursor, and a thread entry's
    /// message read from the thread, unless it came in full from the hub
    /// (`handed`, see [`crate::delivery`]).
    async fn deliverable(
        &self,
        viewer: ProfessionalId,
        device: DeviceId,
        number: u64,
        mut event: StoredEvent,
        handed: bool,
    ) -> ServiceResult<v1::SubscribeResponse> {
        event.cursor = cursor(device, number);
        if let Some(v1::subscribe_response::Event::Consult(change)) = &mut event.event {
            if let Some(viewer) = self.ctx.directory.professional(viewer).await? {
                super::notices::fill(&self.consults, &viewer, change).await?;
            }
        } else if let Some(v1::subscribe_response::Event::ThreadEntry(reference)) = &mut event.event
            && !handed
        {
            let consult = ConsultId::parse("consult_id", &reference.consult_id).map_err(|_| {
                StoreError::Corrupt {
                    space: crate::store::Keyspace::Events,
                    reason: "event names no consult".into(),
                }
            })?;
            if let Some(entry) = self.ctx.threads.entry(consult, reference.sequence).await? {
                *reference = entry;
            }
        }
        Ok(event)
    }
}

#[tonic::async_trait]
impl ThreadService for ThreadApi {
    async fn post_commit(
        &self,
        request: Request<v1::PostCommitRequest>,
    ) -> Result<Response<v1::PostCommitResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let post = self
            .post_input(
                &caller,
                &req.consult_id,
                &req.device_id,
                &req.request_id,
                &req.commit,
                "commit",
            )
            .await?;
        let message = header(post.consult, "commit", post.mls, ContentType::Commit)?;
        if message.epoch().as_u64() != req.epoch {
            return Err(bad_field("epoch", "differs from the commit's own epoch").into());
        }
        let (sequence, epoch) = self
            .append(
                &caller,
                &post,
                v1::ThreadEntryKind::Commit,
                req.epoch,
                &req.welcomes,
            )
            .await?;
        Ok(Response::new(v1::PostCommitResponse { sequence, epoch }))
    }

    async fn post_message(
        &self,
        request: Request<v1::PostMessageRequest>,
    ) -> Result<Response<v1::PostMessageResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let post = self
            .post_input(
                &caller,
                &req.consult_id,
                &req.device_id,
                &req.request_id,
                &req.mls_message,
                "mls_message",
            )
            .await?;
        let message = header(
            post.consult,
            "mls_message",
            post.mls,
            ContentType::Application,
        )?;
        if !matches!(message, ProtocolMessage::PrivateMessage(_)) {
            return Err(bad_field("mls_message", "is not encrypted (not a PrivateMessage)").into());
        }
        let (sequence, epoch) = self
            .append(
                &caller,
                &post,
                v1::ThreadEntryKind::Application,
                message.epoch().as_u64(),
                &[],
            )
            .await?;
        Ok(Response::new(v1::PostMessageResponse { sequence, epoch }))
    }

    async fn fetch_thread(
        &self,
        request: Request<v1::FetchThreadRequest>,
    ) -> Result<Response<v1::FetchThreadResponse>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let consult = ConsultId::parse("consult_id", &req.consult_id).map_err(invalid)?;
        caller.audit.object(Object::Consult, consult);
        let size = match usize::try_from(req.page_size).unwrap_or(usize::MAX) {
            0 => PAGE_DEFAULT,
            n if n <= PAGE_MAX => n,
            _ => {
                return Err(bad_field("page_size", "is over 500").into());
            }
        };
        let device = own_device(&self.ctx, &caller, &req.device_id).await?;
        let loaded = participating(&self.consults, &caller, consult).await?;
        let head = self.ctx.threads.head(consult).await?.head;
        let welcome = self.ctx.threads.welcome(consult, device.id).await?;
        // The owner reads the whole thread; a specialist's device from the
        // commit that added it on, and nothing before it has a Welcome.
        let first = if loaded.now.owner == caller.professional.id {
            1
        } else {
            welcome
                .as_ref()
                .map_or(head.last_sequence + 1, |w| w.commit_sequence)
        };
        let from = req.from_sequence.max(first).max(1);
        let mut entries: Vec<v1::ThreadEntry> = Vec::new();
        let mut bytes = 0;
        // Read a few at a time, so a page never holds much more than its
        // byte limit in memory, however large the messages.
        'page: while entries.len() < size {
            let next = entries.last().map_or(from, |e| e.sequence + 1);
            if next > head.last_sequence {
                break;
            }
            let want = (size - entries.len()).min(FETCH_READ);
            let read = self.ctx.threads.entries(consult, next, want).await?;
            let exhausted = read.len() < want;
            for entry in read {
                bytes += entry.mls_message.len();
                if bytes > PAGE_BYTES && !entries.is_empty() {
                    break 'page;
                }
                entries.push(entry);
            }
            if exhausted {
                break;
            }
        }
        let next_sequence = entries.last().map_or(from, |e| e.sequence + 1);
        Ok(Response::new(v1::FetchThreadResponse {
            next_sequence,
            entries,
            latest_sequence: head.last_sequence,
            epoch: head.epoch,
            welcomes: welcome.into_iter().collect(),
            consult_state: crate::store::consults::state_to_proto(loaded.now.state)
                .0
                .into(),
        }))
    }

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<BoxStream<v1::SubscribeResponse>>, Status> {
        let caller = self.ctx.auth.caller(&request).await?;
        let req = request.get_ref();
        let device = own_device(&self.ctx, &caller, &req.device_id).await?;
        let mut after = parse_cursor(device.id, &req.cursor)?;
        let last = self.ctx.threads.log_head(device.id).await?.last;
        if after > last {
            return Err(bad_field("cursor", "is past the end of this device's events").into());
        }
        // What the device read past is trimmed; a cursor before that would
        // resume with a gap, so it is refused, and no cursor starts at the
        // oldest event kept.
        let trimmed = self.ctx.threads.trimmed(device.id).await?;
        if req.cursor.is_empty() {
            after = trimmed;
        } else if after < trimmed {
            return Err(ServiceError::OutOfRange(format!(
                "this device's events up to {trimmed} are no longer kept (it read past them, or \
                 they passed the retention period): subscribe without a cursor to start at the \
                 oldest kept, and catch up with ListConsults and FetchThread"
            ))
            .into());
        } else if after > trimmed {
            // The device has everything up to its cursor: that much of its
            // log is no longer needed.
            let threads = self.ctx.threads.clone();
            let (id, through) = (device.id, after);
            tokio::spawn(async move {
                if let Err(err) = threads.trim_log(id, through).await {
                    tracing::warn!(error = %err, "a device's event log was not trimmed");
                }
            });
        }
        // Subscribed before the first read: growth after it wakes us.
        let subscription = self.ctx.hub.subscribe(device.id);
        let following = Following {
            api: self.clone(),
            device,
            after,
            subscription,
            ready: std::collections::VecDeque::new(),
            caught_up: false,
            ended: false,
        };
        // Read as its HTTP/2 stream asks for more (decision 41): no task or
        // channel of its own, and a slow subscriber is simply not asked.
        let stream = futures_util::stream::unfold(following, |mut following| async move {
            let item = following.next().await?;
            Some((item, following))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn upload_attachment(
        &self,
        request: Request<tonic::Streaming<v1::UploadAttachmentRequest>>,
    ) -> Result<Response<v1::UploadAttachmentResponse>, Status> {
        let answer =
            super::attachments::upload(&self.consults, self.max_attachment_bytes, request).await?;
        Ok(Response::new(answer))
    }

    async fn download_attachment(
        &self,
        request: Request<v1::DownloadAttachmentRequest>,
    ) -> Result<Response<BoxStream<v1::DownloadAttachmentResponse>>, Status> {
        let stream = super::attachments::download(&self.consults, request).await?;
        Ok(Response::new(stream))
    }
}

/// An event about to be delivered, and whether it goes as it was handed
/// over (decision 54), without reading anything of it back. A thread entry
/// (handed over only in full) goes so while fresh; after an erasure, or a
/// long wait, it is made back into what the device's log keeps of it
/// (where it is) and read again, as one read from the log is. Other events
/// are what the log holds. Not in the async `next`, whose state would then
/// keep a copy of the event.
fn settled(
    subscription: &crate::delivery::Subscription,
    mut event: StoredEvent,
    handed: Option<Stamp>,
) -> (StoredEvent, bool) {
    let Some(stamp) = handed else {
        return (event, false);
    };
    let Some(v1::subscribe_response::Event::ThreadEntry(entry)) = &mut event.event else {
        return (event, true);
    };
    if subscription.fresh(stamp) {
        return (event, true);
    }
    *entry = v1::ThreadEntry {
        consult_id: std::mem::take(&mut entry.consult_id),
        sequence: entry.sequence,
        ..Default::default()
    };
    (event, false)
}

/// A device's subscription: what it read of the device's log and has not
/// delivered yet, and where it is.
struct Following {
    api: ThreadApi,
    device: Device,
    /// The number of the last event delivered (or the cursor resumed from).
    after: u64,
    subscription: crate::delivery::Subscription,
    /// Events read, or handed over (decision 54) when they were, and not
    /// yet delivered, in order.
    ready: std::collections::VecDeque<(u64, StoredEvent, Option<Stamp>)>,
    /// Whether the last read reached the end of the log: wait for growth
    /// before reading again.
    caught_up: bool,
    /// Set once an error was delivered: the stream ends after it.
    ended: bool,
}

impl Following {
    /// The subscription's next item: an event, or the error that ends it;
    /// `None` once ended.
    async fn next(&mut self) -> Option<Result<v1::SubscribeResponse, Status>> {
        if self.ended {
            return None;
        }
        loop {
            if let Some((number, event, handed)) = self.ready.pop_front() {
                let (event, handed) = settled(&self.subscription, event, handed);
                let item = self
                    .api
                    .deliverable(
                        self.device.professional,
                        self.device.id,
                        number,
                        event,
                        handed,
                    )
                    .await
                    .map_err(Status::from);
                match item {
                    Ok(_) => {
                        self.after = number;
                        self.api.ctx.hub.delivered(handed);
                    }
                    Err(_) => self.ended = true,
                }
                return Some(item);
            }
            if self.caught_up {
                let ended = match self.subscription.wait().await {
                    Wake::Grew => None,
                    Wake::Replaced => Some(Status::cancelled(
                        "a newer subscription for this device started",
                    )),
                    Wake::Closing => Some(Status::unavailable(
                        "the server is shutting down; subscribe again from your last cursor",
                    )),
                };
                if let Some(status) = ended {
                    self.ended = true;
                    return Some(Err(status));
                }
            }
            if let Err(status) = self.read().await {
                self.ended = true;
                return Some(Err(status));
            }
        }
    }

    /// Checks the device again and reads the next events of its log.
    async fn read(&mut self) -> Result<(), Status> {
        let ctx = &self.api.ctx;
        let id = self.device.id;
        // A device revoked (or whose professional was deactivated) while
        // subscribed hears nothing more.
        match ctx.directory.device_active(id).await {
            Ok(true) => {}
            Ok(false) => return Err(Status::not_found(format!("no active device {id} of yours"))),
            Err(err) => return Err(ServiceError::from(err).into()),
        }
        let known = self.subscription.known();
        let after = self.after;
        // Woken for events committed here: take them as they were handed
        // over, when they are all there.
        if let Some(handed) = self.subscription.handed(after, known) {
            self.caught_up = true;
            self.ready
                .extend(handed.into_iter().map(|(number, event, stamp)| {
                    (number, std::sync::Arc::unwrap_or_clone(event), Some(stamp))
                }));
            return Ok(());
        }
        // Woken for a few new events: read them by their numbers.
        let numbered = if known > after && known - after <= EVENTS_PER_READ as u64 {
            ctx.threads.events_numbered(id, after, known).await
        } else {
            Ok(None)
        };
        let events = match numbered {
            Ok(Some(events)) => events,
            Ok(None) => ctx.threads.events_after(id, after, EVENTS_PER_READ).await?,
            Err(err) => return Err(ServiceError::from(err).into()),
        };
        self.caught_up = events.len() < EVENTS_PER_READ;
        self.ready.extend(
            events
                .into_iter()
                .map(|(number, event)| (number, event, None)),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_the_device_and_the_number_and_reads_back() {
        let device = DeviceId::from_bytes(*uuid::Uuid::now_v7().as_bytes());
        for number in [0, 7, u64::MAX] {
            let text = cursor(device, number);
            assert_eq!(text, format!("{device}.{number}"));
            assert_eq!(parse_cursor(device, &text).ok(), Some(number));
        }
    }
}
