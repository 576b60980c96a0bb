//! Sending: the outbox, one durable write per message before its
//! ciphertext leaves, and one queue per consult that keeps a consult's
//! sends and commits in order while other consults' go on.

use std::sync::{Arc, PoisonError};

use prost::Message as _;
use samenop_proto::v1;
use uuid::Uuid;

use super::{
    Attachment, CONTENT_VERSION, Inner, Messenger, NewAttachment, Outbox, POST_ATTEMPTS, Progress,
    Records, ThreadMessage, ThreadRecord, json, local, message_key, not_member, serialize,
};
use crate::{ClientError, Result};

/// A message a send puts into the outbox.
struct NewMessage<'a> {
    /// Its text.
    text: &'a str,
    /// The sequence it answers.
    reply_to: Option<u64>,
    /// Its attachments, uploaded.
    attachments: &'a [Attachment],
}

/// Whether a post refused with `code` was certainly not stored (a post that
/// was stored always gets its answer again, whatever changed since).
fn not_stored(code: tonic::Code) -> bool {
    use tonic::Code as C;
    matches!(
        code,
        C::InvalidArgument
            | C::FailedPrecondition
            | C::NotFound
            | C::PermissionDenied
            | C::ResourceExhausted
            | C::Unauthenticated
            | C::OutOfRange
            | C::Unimplemented
    )
}

impl Messenger {
    /// Encrypts and posts a message; returns its sequence. Catches up and
    /// encrypts again when the thread moved to a newer epoch meanwhile.
    ///
    /// # Errors
    /// [`ClientError::FailedPrecondition`] when the consult refuses posts
    /// (suspended or closed: the message says why).
    pub async fn send(&self, consult: Uuid, text: &str, reply_to: Option<u64>) -> Result<u64> {
        self.send_with(consult, text, reply_to, &[]).await
    }

    /// Like [`Messenger::send`], with attachments: each is encrypted with a
    /// fresh key and uploaded first, and the message carries the keys.
    ///
    /// # Errors
    /// As [`Messenger::send`]; ResourceExhausted for an attachment over the
    /// server's limit.
    pub async fn send_with(
        &self,
        consult: Uuid,
        text: &str,
        reply_to: Option<u64>,
        attachments: &[NewAttachment<'_>],
    ) -> Result<u64> {
        self.send_reporting(consult, text, reply_to, attachments, None)
            .await
    }

    /// Like [`Messenger::send_with`], telling `progress` how each
    /// attachment's upload goes.
    ///
    /// # Errors
    /// As [`Messenger::send_with`].
    pub async fn send_reporting(
        &self,
        consult: Uuid,
        text: &str,
        reply_to: Option<u64>,
        attachments: &[NewAttachment<'_>],
        progress: Option<Progress>,
    ) -> Result<u64> {
        let queue = self.send_queue(consult);
        let _turn = queue.lock().await;
        {
            let mut inner = self.inner.lock().await;
            let active = inner
                .group(consult)?
                .ok_or_else(|| not_member(consult))?
                .is_active();
            if inner.thread(consult)?.removed || !active {
                return Err(ClientError::FailedPrecondition(format!(
                    "this device was removed from consult {consult}'s group"
                )));
            }
        }
        // A message whose answer was lost goes first, under its own id. If
        // the server now refuses it for good (the outbox is empty again),
        // this message may still go; any other failure stops it here.
        if let Err(err) = self.deliver_outbox(consult).await {
            if self.inner.lock().await.thread(consult)?.outbox.is_some() {
                return Err(err);
            }
            tracing::warn!(error = %err, "an earlier message whose answer was lost was refused");
        }
        let attachments = self
            .upload_attachments(consult, attachments, progress)
            .await?;
        let message = NewMessage {
            text,
            reply_to,
            attachments: &attachments,
        };
        // Only a send holding this consult's queue fills or empties the
        // outbox, so the message delivered here is this send's own.
        self.deliver_outbox_with(consult, Some(message))
            .await?
            .ok_or_else(|| local("the message to send", "it left the outbox unsent"))
    }

    /// Posts the message a failed send left in `consult`'s outbox (the
    /// server could not be reached, or its answer was lost) under the
    /// request id it was first sent with, so the server stores it once
    /// however often this is tried; returns its sequence, or `None` when no
    /// message waits.
    ///
    /// # Errors
    /// As [`Messenger::send`]; the message stays in the outbox unless the
    /// server refused it for good.
    pub async fn deliver_pending(&self, consult: Uuid) -> Result<Option<u64>> {
        let queue = self.send_queue(consult);
        let _turn = queue.lock().await;
        self.deliver_outbox(consult).await
    }

    /// Whether a message waits in `consult`'s outbox for
    /// [`Messenger::deliver_pending`] (or the next send, which delivers it
    /// first).
    ///
    /// # Errors
    /// [`ClientError::LocalState`] when the device's state cannot be read.
    pub async fn pending(&self, consult: Uuid) -> Result<bool> {
        let queue = self.send_queue(consult);
        let _turn = queue.lock().await;
        Ok(self.inner.lock().await.thread(consult)?.outbox.is_some())
    }

    /// `texts` encrypted as application messages of `consult`'s group at
    /// its current epoch, in the thread's content layout, and not posted:
    /// for a load generator that posts ciphertexts made before it starts
    /// timing, so that it measures the server's cost and not its own
    /// (samenop-bench). The ratchet steps are on disk when this returns, as
    /// for a send, in one write. The device never learns what becomes of
    /// them: use a device made for the load, not one whose thread is read.
    /// They take the device's next sender counts, so other members read
    /// them as its messages when they are posted in the order given.
    ///
    /// # Errors
    /// NotFound when this device is not in the group;
    /// [`ClientError::LocalState`] when its state cannot be read or written.
    pub async fn seal_unsent(&self, consult: Uuid, texts: &[&str]) -> Result<Vec<Vec<u8>>> {
        let queue = self.send_queue(consult);
        let _turn = queue.lock().await;
        let mut inner = self.inner.lock().await;
        let mut thread = inner.thread(consult)?;
        let mut group = inner
            .take_group(consult)?
            .ok_or_else(|| not_member(consult))?;
        let mut sealed = Vec::with_capacity(texts.len());
        for text in texts {
            thread.sent += 1;
            let content = v1::ThreadContent {
                version: CONTENT_VERSION,
                sender_counter: thread.sent,
                text: (*text).to_owned(),
                ..v1::ThreadContent::default()
            };
            let encrypted = group
                .create_message(
                    inner.state.provider(),
                    &inner.signer,
                    &content.encode_to_vec(),
                )
                .map_err(|e| local("cannot encrypt the message", e))?;
            sealed.push(serialize(&encrypted)?);
        }
        inner.persist(consult, &thread, Vec::new())?;
        inner.keep_group(consult, group);
        Ok(sealed)
    }

    /// The send queue of `consult` (see the `sending` field).
    pub(super) fn send_queue(&self, consult: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut queues = self.sending.lock().unwrap_or_else(PoisonError::into_inner);
        // Queues no send holds or waits for are dropped, so the map holds
        // only the consults being sent to now.
        queues.retain(|_, queue| Arc::strong_count(queue) > 1);
        queues.entry(consult).or_default().clone()
    }

    /// Posts the message waiting in a thread's outbox, if any; returns its
    /// sequence (see [`Messenger::deliver_outbox_with`]).
    async fn deliver_outbox(&self, consult: Uuid) -> Result<Option<u64>> {
        self.deliver_outbox_with(consult, None).await
    }

    /// Posts the message waiting in a thread's outbox (first putting
    /// `message` there, when given), catching up and encrypting it again
    /// when the thread moved to a newer epoch; returns its sequence. A
    /// refusal that certainly stored nothing empties the outbox; any other
    /// failure leaves it for the next send.
    ///
    /// One durable write per attempt: the outbox with the message's
    /// ciphertext and the ratchet step that made it, before the ciphertext
    /// leaves. What the answer changes (the outbox emptied, the message
    /// kept as the device's own) is written without waiting for the disk:
    /// the next durable write carries it, and if a power cut takes it
    /// first, the outbox still holds the ciphertext under its request id,
    /// which the server answers with the same sequence when it is posted
    /// again, or which reading the thread finds stored (see `apply_one`).
    /// The device's lock is not held while the server answers, so sends to
    /// other consults go on meanwhile; this consult's queue keeps its own
    /// sends in order.
    async fn deliver_outbox_with(
        &self,
        consult: Uuid,
        mut message: Option<NewMessage<'_>>,
    ) -> Result<Option<u64>> {
        // Whether the server refused the last ciphertext for a newer epoch.
        let mut stale = false;
        // Whether the waiting message was posted before this call (its
        // answer lost, or a crash took what the answer wrote): it may be
        // stored, whatever the server says now.
        let mut posted_before = None;
        for attempt in 0..POST_ATTEMPTS {
            if attempt > 0 {
                self.catch_up(consult).await?;
            }
            let (request, request_id) = {
                let mut inner = self.inner.lock().await;
                let mut thread = inner.thread(consult)?;
                if let Some(new) = message.take() {
                    let content = v1::ThreadContent {
                        version: CONTENT_VERSION,
                        sender_counter: thread.sent + 1,
                        text: new.text.to_owned(),
                        reply_to_sequence: new.reply_to.unwrap_or(0),
                        attachments: new
                            .attachments
                            .iter()
                            .map(Attachment::to_reference)
                            .collect(),
                    };
                    thread.outbox = Some(Outbox {
                        request_id: Uuid::new_v4(),
                        content: content.encode_to_vec(),
                        sealed: None,
                    });
                }
                let Some(mut outbox) = thread.outbox.clone() else {
                    return Ok(None);
                };
                posted_before.get_or_insert(outbox.sealed.is_some());
                let sealed = match outbox.sealed.take() {
                    Some(sealed) if !stale => sealed,
                    _ => {
                        let mut group = inner
                            .take_group(consult)?
                            .ok_or_else(|| not_member(consult))?;
                        let encrypted = group
                            .create_message(inner.state.provider(), &inner.signer, &outbox.content)
                            .map_err(|e| local("cannot encrypt the message", e))?;
                        let sealed = serialize(&encrypted)?;
                        outbox.sealed = Some(sealed.clone());
                        thread.outbox = Some(outbox.clone());
                        // The ratchet's step is on disk before the
                        // ciphertext leaves.
                        inner.persist(consult, &thread, Vec::new())?;
                        inner.keep_group(consult, group);
                        sealed
                    }
                };
                let request = v1::PostMessageRequest {
                    consult_id: consult.to_string(),
                    device_id: self.device.to_string(),
                    mls_message: sealed,
                    request_id: outbox.request_id.to_string(),
                };
                (self.client.request(request)?, outbox.request_id)
            };
            match self.threads().post_message(request).await {
                Ok(answer) => {
                    let sequence = answer.into_inner().sequence;
                    let mut inner = self.inner.lock().await;
                    let mut thread = inner.thread(consult)?;
                    return match thread.outbox.take() {
                        Some(outbox) if outbox.request_id == request_id => {
                            let (thread, extra) =
                                self.posted(&inner, consult, thread, outbox, sequence)?;
                            inner.persist_lazily(consult, &thread, extra)?;
                            Ok(Some(sequence))
                        }
                        // Reading the thread found it stored meanwhile and
                        // completed it.
                        _ => Ok(Some(sequence)),
                    };
                }
                Err(status) if status.code() == tonic::Code::Aborted => stale = true,
                Err(status) if not_stored(status.code()) => {
                    // A message posted before and refused now for who the
                    // caller is (the device revoked, its professional no
                    // longer taking part) may be stored all the same: the
                    // server checks the caller before the request id. It
                    // stays in the outbox rather than be forgotten.
                    let who = matches!(
                        status.code(),
                        tonic::Code::NotFound
                            | tonic::Code::PermissionDenied
                            | tonic::Code::FailedPrecondition
                            | tonic::Code::Unauthenticated
                    );
                    if posted_before == Some(true) && who {
                        return Err(status.into());
                    }
                    let mut inner = self.inner.lock().await;
                    let mut thread = inner.thread(consult)?;
                    if thread
                        .outbox
                        .as_ref()
                        .is_some_and(|o| o.request_id == request_id)
                    {
                        thread.outbox = None;
                        inner.persist(consult, &thread, Vec::new())?;
                    }
                    return Err(status.into());
                }
                Err(status) => return Err(status.into()),
            }
        }
        Err(ClientError::Aborted(format!(
            "the thread of consult {consult} kept moving; send again"
        )))
    }

    /// `thread` once `outbox`'s message is stored at `sequence`: the
    /// outbox emptied, the sender count moved on, and the message's record
    /// as this device's own, to be written with it.
    pub(super) fn posted(
        &self,
        inner: &Inner,
        consult: Uuid,
        mut thread: ThreadRecord,
        outbox: Outbox,
        sequence: u64,
    ) -> Result<(ThreadRecord, Records)> {
        let content = v1::ThreadContent::decode(outbox.content.as_slice())
            .map_err(|e| local("the outbox", e))?;
        thread.sent = thread.sent.max(content.sender_counter);
        thread.outbox = None;
        if sequence == thread.next_sequence {
            thread.next_sequence += 1;
        }
        let attachments = content
            .attachments
            .into_iter()
            .map(Attachment::from_reference)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| local("the outbox", e))?;
        let message = ThreadMessage {
            consult,
            sequence,
            sender_device: self.device,
            sender_professional: inner.device.professional,
            text: content.text,
            reply_to: (content.reply_to_sequence != 0).then_some(content.reply_to_sequence),
            attachments,
            own: true,
            posted_at: Some(std::time::SystemTime::now()),
        };
        Ok((
            thread,
            vec![(message_key(consult, sequence), Some(json(&message)?))],
        ))
    }
}
