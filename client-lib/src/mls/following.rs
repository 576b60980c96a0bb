//! Following: the device's live event stream, and the membership work a
//! consult event gives this device.

use samenop_proto::v1;
use uuid::Uuid;

use super::{Messenger, membership::MembershipChange};
use crate::{ClientError, Result};

/// An event delivered to this device.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Where to resume after this event.
    pub cursor: String,
    /// What happened.
    pub kind: EventKind,
    /// The event as the server sent it.
    wire: v1::SubscribeResponse,
}

impl Event {
    /// The event as the server sent it, for relaying it on unchanged (the
    /// agent passes consult events to its callers so).
    pub fn wire(&self) -> &v1::SubscribeResponse {
        &self.wire
    }
}

/// What an [`Event`] carries.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// A message was stored in a thread this device takes part in; apply it
    /// with [`Messenger::apply`].
    ThreadEntry(v1::ThreadEntry),
    /// This device was added to a consult's group.
    Welcome {
        /// The consult.
        consult: Uuid,
        /// The commit that added it.
        commit_sequence: u64,
    },
    /// A consult changed (or a request arrived).
    Consult(crate::consult::ConsultEvent),
    /// An event this version of the library does not know (a newer
    /// server's): skip it and go on; [`Event::wire`] holds it as sent.
    Unknown,
}

/// A device's live event stream.
pub struct Events {
    /// The server stream.
    stream: tonic::Streaming<v1::SubscribeResponse>,
}

impl Events {
    /// The next event; `None` when the server ended the stream.
    ///
    /// # Errors
    /// [`ClientError`] when the stream broke (resume from the last cursor).
    pub async fn next(&mut self) -> Result<Option<Event>> {
        let Some(message) = self.stream.message().await? else {
            return Ok(None);
        };
        let wire = message.clone();
        let kind = match message.event {
            Some(v1::subscribe_response::Event::ThreadEntry(entry)) => {
                EventKind::ThreadEntry(entry)
            }
            Some(v1::subscribe_response::Event::Welcome(welcome)) => EventKind::Welcome {
                consult: crate::types::uuid("consult_id", &welcome.consult_id)?,
                commit_sequence: welcome.commit_sequence,
            },
            Some(v1::subscribe_response::Event::Consult(change)) => match change.try_into() {
                Ok(change) => EventKind::Consult(change),
                // A change or state a newer server added.
                Err(err) => {
                    tracing::warn!(error = %err, "a consult event this version does not know");
                    EventKind::Unknown
                }
            },
            // A kind of event a newer server added.
            None => EventKind::Unknown,
        };
        Ok(Some(Event {
            cursor: message.cursor,
            kind,
            wire,
        }))
    }
}

impl Messenger {
    /// Keeps a consult's group in line with what a consult event says
    /// changed, when this device is the one to do it; returns what it
    /// changed, or `None` when it had nothing to do.
    ///
    /// The owner's devices add a specialist who accepted and remove one who
    /// left or was removed. When the consult's basis ends (suspended) or the
    /// consult is closed, they remove every device but the owner's, so no
    /// one whose basis ended reads anything sent later (a new basis adds
    /// the specialists again, with a new Welcome). After a handover the new
    /// owner is not in the group yet, so the specialists' devices remove the
    /// previous owner's devices and add the new owner's (whoever commits
    /// first does it; the others find nothing left to do).
    ///
    /// # Errors
    /// As [`Messenger::sync_members`].
    pub async fn follow(
        &self,
        event: &crate::consult::ConsultEvent,
    ) -> Result<Option<MembershipChange>> {
        use crate::consult::{ConsultChange as C, ConsultState as S};
        let Some(view) = &event.view else {
            return Ok(None);
        };
        let me = self
            .client
            .professional()
            .ok_or(ClientError::NoProfessional)?;
        let open = matches!(view.state, S::Requested | S::Accepted);
        let duty = match event.change {
            C::Accepted | C::ParticipantLeft | C::ParticipantRemoved | C::LegalBasisChanged => {
                view.owner == me && open
            }
            // The basis ended, or the consult did: the owner's devices take
            // everyone else out.
            C::Suspended | C::Closed => view.owner == me && !open,
            C::OwnerChanged => open,
            _ => false,
        };
        if !duty || !self.joined(event.consult).await? {
            return Ok(None);
        }
        self.sync_members(event.consult).await.map(Some)
    }

    /// Subscribes to this device's events after `cursor` (from the oldest
    /// kept when `None`).
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a cursor of another device.
    pub async fn subscribe(&self, cursor: Option<&str>) -> Result<Events> {
        let request = v1::SubscribeRequest {
            device_id: self.device.to_string(),
            cursor: cursor.unwrap_or_default().to_owned(),
        };
        let stream = self
            .threads()
            .subscribe(self.client.request(request)?)
            .await?
            .into_inner();
        Ok(Events { stream })
    }
}
