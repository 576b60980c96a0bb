//! Reading: a thread's entries applied strictly in the server's order,
//! each message checked (signature, sender, sender's count) and kept, and
//! the thread read back from the device's state.

use std::collections::{BTreeMap, BTreeSet};

use openmls::prelude::{MlsMessageIn, ProcessedMessageContent, tls_codec::DeserializeBytes};
use openmls_traits::OpenMlsProvider;
use prost::Message as _;
use samenop_proto::v1;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ClientError, Result};

use super::{
    Attachment, CONTENT_VERSION, Inner, Messenger, from_json, json, local, member_device,
    membership::Roster, message_key, not_member, rejected,
};

/// A message of a thread, decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadMessage {
    /// The consult.
    pub consult: Uuid,
    /// Its place in the thread.
    pub sequence: u64,
    /// The device that sent it.
    pub sender_device: Uuid,
    /// The professional who sent it.
    pub sender_professional: Uuid,
    /// The text.
    pub text: String,
    /// The sequence of the message it answers.
    pub reply_to: Option<u64>,
    /// Its attachments; open each with [`Messenger::open_attachment`].
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Whether this device sent it.
    pub own: bool,
    /// When the server stored it (from the thread entry; for this
    /// device's own messages, when the server answered).
    #[serde(default)]
    pub posted_at: Option<std::time::SystemTime>,
}

impl Messenger {
    /// Reads what is new in a consult's thread (joining its group first when
    /// a Welcome waits), applies it in order and returns the new messages of
    /// others.
    ///
    /// # Errors
    /// [`ClientError::Rejected`] for a message that fails decryption or
    /// verification; the thread stays at that message.
    pub async fn catch_up(&self, consult: Uuid) -> Result<Vec<ThreadMessage>> {
        let mut received = Vec::new();
        loop {
            let (from, standing) = {
                let mut inner = self.inner.lock().await;
                let thread = inner.thread(consult)?;
                let standing = inner
                    .group(consult)?
                    .map(|group| group.is_active() && !thread.removed);
                (thread.next_sequence, standing)
            };
            let page = self.fetch(consult, from).await?;
            // Not in the group, or added again after a removal (seen or
            // not): the Welcome that added this device (again) is where it
            // starts. The Welcome of the current membership lies behind.
            let welcome = match standing {
                None => page.welcomes.first(),
                Some(_) => page.welcomes.first().filter(|w| w.commit_sequence >= from),
            };
            if let Some(welcome) = welcome {
                self.join(consult, welcome).await?;
                continue;
            }
            if standing.is_none() {
                return Ok(received);
            }
            if standing == Some(true)
                && let Some(first) = page.entries.first()
                && first.sequence > from
            {
                return Err(ClientError::FailedPrecondition(format!(
                    "consult {consult}'s thread is not available to this device from sequence \
                     {from}; the consult's owner must add it again"
                )));
            }
            let done = page.next_sequence > page.latest_sequence || page.entries.is_empty();
            received.extend(self.apply(consult, page.entries).await?);
            if done {
                return Ok(received);
            }
        }
    }

    /// Applies thread entries (from [`Messenger::catch_up`] or from
    /// [`Event`](super::Event)s) in order; entries already applied are skipped, and a gap
    /// before them is fetched first. Returns the new messages of others.
    ///
    /// # Errors
    /// [`ClientError::Rejected`] for a message that fails decryption or
    /// verification, or that is out of its sender's order.
    pub async fn apply(
        &self,
        consult: Uuid,
        entries: Vec<v1::ThreadEntry>,
    ) -> Result<Vec<ThreadMessage>> {
        let applied = self.apply_entries(consult, entries).await;
        // Each entry was written without waiting for the disk; one sync
        // makes them all durable (and whatever another task of this device
        // applied meanwhile) before any of them is handed out. A crash
        // before it loses only what nobody was given: the device reads it
        // again, with the keys it then still holds. A refusal of an entry
        // is reported as it is, whatever the sync says.
        let synced = self.inner.lock().await.state.sync();
        let received = applied?;
        synced?;
        Ok(received)
    }

    /// The work of [`Messenger::apply`], each entry written lazily.
    async fn apply_entries(
        &self,
        consult: Uuid,
        entries: Vec<v1::ThreadEntry>,
    ) -> Result<Vec<ThreadMessage>> {
        let mut received = Vec::new();
        for entry in entries {
            let next = self.inner.lock().await.thread(consult)?.next_sequence;
            if entry.sequence < next {
                continue;
            }
            if entry.sequence > next {
                received.extend(Box::pin(self.catch_up(consult)).await?);
                continue;
            }
            if entry.consult_id != consult.to_string() {
                return Err(rejected(
                    consult,
                    entry.sequence,
                    "an entry of another thread",
                ));
            }
            let sender = crate::types::uuid("sender_device_id", &entry.sender_device_id)?;
            let committed_by_other =
                entry.kind == v1::ThreadEntryKind::Commit as i32 && sender != self.device;
            // A sender's professional is checked against the directory the
            // first time this device reads that sender in this thread.
            let unknown_sender = sender != self.device
                && !self
                    .inner
                    .lock()
                    .await
                    .thread(consult)?
                    .senders
                    .contains_key(&sender);
            // Who may join is read before the commit is applied. A device
            // no longer allowed to read the consult cannot read it; a commit
            // that removes it still applies (and ends its membership).
            let listed = if committed_by_other || unknown_sender {
                match self.roster(consult).await {
                    Ok(listed) => Some(listed),
                    Err(ClientError::NotFound(_)) => None,
                    Err(other) => return Err(other),
                }
            } else {
                None
            };
            let mut inner = self.inner.lock().await;
            // Another task of this device may have applied it (or more)
            // while the lock was free: its keys are gone, so it must not be
            // decrypted twice.
            let next = inner.thread(consult)?.next_sequence;
            if entry.sequence != next {
                drop(inner);
                if entry.sequence > next {
                    received.extend(Box::pin(self.catch_up(consult)).await?);
                }
                continue;
            }
            let result = self.apply_one(&mut inner, consult, &entry, listed.as_ref());
            match result {
                Ok(message) => received.extend(message),
                Err(err) => {
                    inner.roll_back();
                    return Err(err);
                }
            }
        }
        Ok(received)
    }

    fn apply_one(
        &self,
        inner: &mut Inner,
        consult: Uuid,
        entry: &v1::ThreadEntry,
        listed: Option<&Roster>,
    ) -> Result<Option<ThreadMessage>> {
        let sequence = entry.sequence;
        let mut thread = inner.thread(consult)?;
        let mut group = inner
            .take_group(consult)?
            .ok_or_else(|| not_member(consult))?;
        if thread.removed || !group.is_active() {
            return Err(ClientError::FailedPrecondition(format!(
                "this device was removed from consult {consult}'s group"
            )));
        }
        let sender = crate::types::uuid("sender_device_id", &entry.sender_device_id)?;
        let sender_professional =
            crate::types::uuid("sender_professional_id", &entry.sender_professional_id)?;
        if sender == self.device {
            // The message in the outbox, stored although its answer was
            // lost (or a power cut took what the answer wrote): kept as
            // this device's own now, as the answer would have.
            if entry.kind == v1::ThreadEntryKind::Application as i32
                && let Some(outbox) = thread
                    .outbox
                    .clone()
                    .filter(|o| o.sealed.as_deref() == Some(entry.mls_message.as_slice()))
            {
                let (thread, extra) = self.posted(inner, consult, thread, outbox, sequence)?;
                inner.persist_lazily(consult, &thread, extra)?;
                inner.keep_group(consult, group);
                return Ok(None);
            }
            // Our own message or commit: a commit still pending (posted
            // before a crash) is merged now.
            if entry.kind == v1::ThreadEntryKind::Commit as i32 {
                if group.pending_commit().is_none() {
                    // Posted, given up on, and stored after all: this device
                    // no longer holds what the commit moved the group to.
                    return Err(rejected(
                        consult,
                        sequence,
                        "it is this device's own commit, which it had given up on; the \
                         consult's owner must remove this device and add it again",
                    ));
                }
                group
                    .merge_pending_commit(inner.state.provider())
                    .map_err(|e| rejected(consult, sequence, e))?;
            }
            thread.next_sequence += 1;
            inner.persist_lazily(consult, &thread, Vec::new())?;
            inner.keep_group(consult, group);
            return Ok(None);
        }
        let message = MlsMessageIn::tls_deserialize_exact_bytes(&entry.mls_message)
            .map_err(|e| rejected(consult, sequence, e))?;
        let protocol = message
            .try_into_protocol_message()
            .map_err(|e| rejected(consult, sequence, e))?;
        // Another member's commit won the epoch: ours, if pending, is void.
        if entry.kind == v1::ThreadEntryKind::Commit as i32 && group.pending_commit().is_some() {
            group
                .clear_pending_commit(inner.state.provider().storage())
                .map_err(|e| local("cannot drop a pending commit", e))?;
        }
        let processed = group
            .process_message(inner.state.provider(), protocol)
            .map_err(|e| rejected(consult, sequence, e))?;
        if member_device(processed.credential()) != Some(sender) {
            return Err(rejected(
                consult,
                sequence,
                "it was signed by another device than the one it names",
            ));
        }
        // The device is proven by its signature; whose device it is comes
        // from the directory, not from the server's entry.
        let owner_of_device = thread
            .senders
            .get(&sender)
            .copied()
            .or_else(|| listed.and_then(|r| r.known.get(&sender)).map(|(p, _)| *p));
        match owner_of_device {
            Some(professional) if professional == sender_professional => {
                thread.senders.insert(sender, professional);
            }
            Some(_) => {
                return Err(rejected(
                    consult,
                    sequence,
                    "it names another professional than the one its device belongs to",
                ));
            }
            // A commit read by a device that lost access to the consult
            // (it removes this device): its effect is what matters.
            None if listed.is_none() && entry.kind == v1::ThreadEntryKind::Commit as i32 => {}
            None => {
                return Err(rejected(
                    consult,
                    sequence,
                    "its device is not a listed device of a participant",
                ));
            }
        }
        let mut out = None;
        let mut extra = Vec::new();
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(application) => {
                let content = v1::ThreadContent::decode(application.into_bytes().as_slice())
                    .map_err(|e| rejected(consult, sequence, e))?;
                if content.version != CONTENT_VERSION {
                    return Err(rejected(
                        consult,
                        sequence,
                        format!("content version {} is not known", content.version),
                    ));
                }
                let seen = thread.received.get(&sender).copied();
                let last = seen.unwrap_or(0);
                let in_order = match seen {
                    Some(last) => content.sender_counter == last + 1,
                    None if thread.from_start => content.sender_counter == 1,
                    // Joined mid-thread: what the sender sent before is
                    // not this device's to read.
                    None => content.sender_counter >= 1,
                };
                if !in_order {
                    return Err(rejected(
                        consult,
                        sequence,
                        format!(
                            "it is out of its sender's order (count {} after {last}): replayed, \
                             moved or a message before it was dropped",
                            content.sender_counter
                        ),
                    ));
                }
                thread.received.insert(sender, content.sender_counter);
                let attachments = content
                    .attachments
                    .into_iter()
                    .map(Attachment::from_reference)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|why| rejected(consult, sequence, why))?;
                let message = ThreadMessage {
                    consult,
                    sequence,
                    sender_device: sender,
                    sender_professional,
                    text: content.text,
                    reply_to: (content.reply_to_sequence != 0).then_some(content.reply_to_sequence),
                    attachments,
                    own: false,
                    posted_at: entry
                        .posted_at
                        .and_then(|t| std::time::SystemTime::try_from(t).ok()),
                };
                extra.push((message_key(consult, sequence), Some(json(&message)?)));
                out = Some(message);
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let before: BTreeMap<Vec<u8>, Option<Uuid>> = group
                    .members()
                    .map(|m| (m.signature_key, member_device(&m.credential)))
                    .collect();
                group
                    .merge_staged_commit(inner.state.provider(), *staged)
                    .map_err(|e| rejected(consult, sequence, e))?;
                if group.is_active() {
                    let roster = listed.ok_or_else(|| {
                        ClientError::GroupMismatch(format!(
                            "consult {consult}'s group changed, but the server no longer shows \
                             this professional the consult's participants to check it"
                        ))
                    })?;
                    let known: BTreeSet<Vec<u8>> = before.keys().cloned().collect();
                    Self::check_new_members(consult, &group, &known, &roster.known)?;
                    Self::check_removals(consult, &group, &before, sender, roster)?;
                } else {
                    thread.removed = true;
                }
            }
            ProcessedMessageContent::ProposalMessage(_)
            | ProcessedMessageContent::ExternalJoinProposalMessage(_) => {
                return Err(rejected(
                    consult,
                    sequence,
                    "stand-alone proposals are not used",
                ));
            }
            ProcessedMessageContent::OwnPendingCommit
            | ProcessedMessageContent::OwnPrivateMessage => {
                return Err(rejected(
                    consult,
                    sequence,
                    "it is this device's own but names another sender",
                ));
            }
        }
        thread.next_sequence += 1;
        inner.persist_lazily(consult, &thread, extra)?;
        inner.keep_group(consult, group);
        Ok(out)
    }

    /// Every message of a consult's thread this device has read or sent, in
    /// order.
    ///
    /// # Errors
    /// [`ClientError::LocalState`] when the state cannot be read.
    pub async fn messages(&self, consult: Uuid) -> Result<Vec<ThreadMessage>> {
        let mut inner = self.inner.lock().await;
        // What another task applied is handed out only once durable.
        inner.state.sync()?;
        inner
            .state
            .scan(&format!("message/{consult}/"))?
            .into_iter()
            .map(|(_, raw)| from_json(&raw))
            .collect()
    }

    /// At most `limit` messages of a consult's thread this device has read
    /// or sent, after the sequence `after`, in order, up to where the
    /// device has applied the thread: its own message stored at a sequence
    /// beyond entries it has not read yet waits until they are read, so a
    /// reader paging on never skips a message of others.
    ///
    /// # Errors
    /// [`ClientError::LocalState`] when the state cannot be read.
    pub async fn messages_after(
        &self,
        consult: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ThreadMessage>> {
        let mut inner = self.inner.lock().await;
        // What another task applied is handed out only once durable.
        inner.state.sync()?;
        let applied = inner.thread(consult)?.next_sequence;
        let mut messages = Vec::new();
        for (_, raw) in inner.state.scan_from(
            &format!("message/{consult}/"),
            &message_key(consult, after.saturating_add(1)),
            limit,
        )? {
            let message: ThreadMessage = from_json(&raw)?;
            if message.sequence >= applied {
                break;
            }
            messages.push(message);
        }
        Ok(messages)
    }

    /// The group's current epoch, or `None` when this device is not in it.
    ///
    /// # Errors
    /// [`ClientError::LocalState`] when the state cannot be read.
    pub async fn epoch(&self, consult: Uuid) -> Result<Option<u64>> {
        let mut inner = self.inner.lock().await;
        Ok(inner.group(consult)?.map(|g| g.epoch().as_u64()))
    }
}
