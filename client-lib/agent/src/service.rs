//! `samenop.agent.v1.AgentService`: encrypted threads in plain calls, on
//! the professional's device at this agent.

use std::{pin::Pin, sync::Arc};

use samenop_client::{ClientError, mls::NewAttachment};
use samenop_proto::agent::v1::{self as agent, agent_service_server::AgentService};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::{
    devices::{Device, Devices},
    status::{from_client, id, message, professional},
};

/// The most text one message carries.
const MAX_TEXT: usize = 64 * 1024;
/// The largest page of ReadThread.
const MAX_PAGE: usize = 1000;
/// The page of ReadThread when none is asked.
const DEFAULT_PAGE: usize = 100;
/// The size of the chunks DownloadAttachment sends.
const CHUNK: usize = 256 * 1024;
/// Events read from the log at a time for Watch.
const WATCH_BATCH: usize = 100;

/// The service.
pub(crate) struct Agent {
    devices: Arc<Devices>,
    /// The largest attachment taken, in bytes.
    max_attachment: u64,
    /// Turns true at shutdown: every Watch ends.
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Agent {
    /// Serves the devices of `devices`.
    pub(crate) fn new(
        devices: Arc<Devices>,
        max_attachment: u64,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Agent {
            devices,
            max_attachment,
            stop,
        }
    }

    /// The device of the professional `request` acts for.
    async fn device<T>(&self, request: &Request<T>) -> Result<Arc<Device>, Status> {
        self.devices.get(professional(request)?).await
    }
}

/// Brings the device in line with the consult's thread before it writes:
/// the owner's device makes the thread when it has none yet and adds the
/// devices of specialists who accepted; every device reads what it missed.
async fn ready_to_write(device: &Device, consult: Uuid) -> Result<(), Status> {
    let messenger = &device.messenger;
    let client_consult = device.client.consult(consult).await.map_err(from_client)?;
    if client_consult.owner == device.professional {
        if !messenger.joined(consult).await.map_err(from_client)? {
            match messenger.create_thread(consult).await {
                Ok(()) | Err(ClientError::FailedPrecondition(_)) => {}
                Err(err) => return Err(from_client(err)),
            }
        }
        if let Err(err) = messenger.sync_members(consult).await {
            tracing::warn!(%consult, error = %err, "the thread's members are not in line yet");
        }
    }
    messenger.catch_up(consult).await.map_err(from_client)?;
    Ok(())
}

/// A send's failure, saying what became of the message.
async fn send_failure(device: &Device, consult: Uuid, err: ClientError) -> Status {
    // Whatever went wrong, a message still in the outbox goes first with
    // the next send: the caller must know, or a retry would post it twice.
    let waiting = device.messenger.pending(consult).await.unwrap_or(false);
    let status = from_client(err);
    if waiting {
        Status::new(
            status.code(),
            format!(
                "{}; the message waits on this device and goes first with the next send to this \
                 consult (do not send it again)",
                status.message()
            ),
        )
    } else {
        status
    }
}

fn check_text(text: &str) -> Result<(), Status> {
    if text.len() > MAX_TEXT {
        return Err(Status::invalid_argument(format!(
            "text is {} bytes; at most {MAX_TEXT}",
            text.len()
        )));
    }
    Ok(())
}

type Stream2<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for Agent {
    async fn send_message(
        &self,
        request: Request<agent::SendMessageRequest>,
    ) -> Result<Response<agent::SendMessageResponse>, Status> {
        let device = self.device(&request).await?;
        let request = request.into_inner();
        let consult = id("consult_id", &request.consult_id)?;
        if request.text.trim().is_empty() {
            return Err(Status::invalid_argument("text must not be empty"));
        }
        check_text(&request.text)?;
        ready_to_write(&device, consult).await?;
        let reply_to = (request.reply_to_sequence != 0).then_some(request.reply_to_sequence);
        match device
            .messenger
            .send(consult, &request.text, reply_to)
            .await
        {
            Ok(sequence) => Ok(Response::new(agent::SendMessageResponse { sequence })),
            Err(err) => Err(send_failure(&device, consult, err).await),
        }
    }

    async fn send_attachment(
        &self,
        request: Request<Streaming<agent::SendAttachmentRequest>>,
    ) -> Result<Response<agent::SendAttachmentResponse>, Status> {
        use agent::send_attachment_request::Part;
        let device = self.device(&request).await?;
        let mut stream = request.into_inner();
        let start = match stream.message().await? {
            Some(agent::SendAttachmentRequest {
                part: Some(Part::Start(start)),
            }) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "the stream must begin with the start (consult, name, media type, size)",
                ));
            }
        };
        let consult = id("start.consult_id", &start.consult_id)?;
        check_text(&start.text)?;
        if start.name.is_empty() || start.name.chars().count() > 255 {
            return Err(Status::invalid_argument(
                "start.name must be 1 to 255 characters",
            ));
        }
        if start.size_bytes > self.max_attachment {
            return Err(Status::resource_exhausted(format!(
                "the attachment is {} bytes; at most {} are taken",
                start.size_bytes, self.max_attachment
            )));
        }
        // Grown as chunks come, not reserved on the start's word.
        let mut bytes =
            Vec::with_capacity(usize::try_from(start.size_bytes.min(1 << 20)).unwrap_or(0));
        while let Some(part) = stream.message().await? {
            match part.part {
                Some(Part::Chunk(chunk)) => {
                    if (bytes.len() + chunk.len()) as u64 > start.size_bytes {
                        return Err(Status::invalid_argument(format!(
                            "the chunks are more than the {} bytes the start announced",
                            start.size_bytes
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                _ => {
                    return Err(Status::invalid_argument(
                        "after the start only chunks follow",
                    ));
                }
            }
        }
        if bytes.len() as u64 != start.size_bytes {
            return Err(Status::invalid_argument(format!(
                "the chunks add up to {} bytes; the start announced {}",
                bytes.len(),
                start.size_bytes
            )));
        }
        ready_to_write(&device, consult).await?;
        let reply_to = (start.reply_to_sequence != 0).then_some(start.reply_to_sequence);
        let sent = device
            .messenger
            .send_with(
                consult,
                &start.text,
                reply_to,
                &[NewAttachment {
                    name: &start.name,
                    media_type: if start.media_type.is_empty() {
                        "application/octet-stream"
                    } else {
                        &start.media_type
                    },
                    bytes: &bytes,
                }],
            )
            .await;
        let sequence = match sent {
            Ok(sequence) => sequence,
            Err(err) => return Err(send_failure(&device, consult, err).await),
        };
        // The message as stored (it may lie beyond entries the device has
        // not read yet, so not from a page).
        let stored = device
            .messenger
            .messages(consult)
            .await
            .map_err(from_client)?;
        let attachment_id = stored
            .iter()
            .find(|m| m.sequence == sequence)
            .and_then(|m| m.attachments.first())
            .map(|a| a.id.to_string())
            .unwrap_or_default();
        Ok(Response::new(agent::SendAttachmentResponse {
            sequence,
            attachment_id,
        }))
    }

    async fn read_thread(
        &self,
        request: Request<agent::ReadThreadRequest>,
    ) -> Result<Response<agent::ReadThreadResponse>, Status> {
        let device = self.device(&request).await?;
        let request = request.into_inner();
        let consult = id("consult_id", &request.consult_id)?;
        let page = match usize::try_from(request.page_size).unwrap_or(MAX_PAGE) {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        device
            .messenger
            .catch_up(consult)
            .await
            .map_err(from_client)?;
        let mut messages = device
            .messenger
            .messages_after(consult, request.after_sequence, page + 1)
            .await
            .map_err(from_client)?;
        let more = messages.len() > page;
        messages.truncate(page);
        Ok(Response::new(agent::ReadThreadResponse {
            messages: messages.iter().map(message).collect(),
            more,
        }))
    }

    async fn download_attachment(
        &self,
        request: Request<agent::DownloadAttachmentRequest>,
    ) -> Result<Response<Stream2<agent::DownloadAttachmentResponse>>, Status> {
        use agent::download_attachment_response::Part;
        let device = self.device(&request).await?;
        let request = request.into_inner();
        let consult = id("consult_id", &request.consult_id)?;
        let wanted = id("attachment_id", &request.attachment_id)?;
        device
            .messenger
            .catch_up(consult)
            .await
            .map_err(from_client)?;
        let found = device
            .messenger
            .messages(consult)
            .await
            .map_err(from_client)?
            .into_iter()
            .flat_map(|m| m.attachments)
            .find(|a| a.id == wanted)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no attachment {wanted} in the thread of consult {consult} as this device reads it"
                ))
            })?;
        let content = device
            .messenger
            .open_attachment(consult, &found)
            .await
            .map_err(from_client)?;
        let mut parts = vec![Ok(agent::DownloadAttachmentResponse {
            part: Some(Part::Attachment(agent::Attachment {
                attachment_id: found.id.to_string(),
                name: found.name.clone(),
                media_type: found.media_type.clone(),
                size_bytes: found.size,
            })),
        })];
        parts.extend(content.chunks(CHUNK).map(|chunk| {
            Ok(agent::DownloadAttachmentResponse {
                part: Some(Part::Chunk(chunk.to_vec())),
            })
        }));
        Ok(Response::new(Box::pin(tokio_stream::iter(parts))))
    }

    async fn watch(
        &self,
        request: Request<agent::WatchRequest>,
    ) -> Result<Response<Stream2<agent::WatchResponse>>, Status> {
        let device = self.device(&request).await?;
        // The server decides whether the professional may still read: one
        // call to it (audited) before the log is replayed.
        device
            .client
            .professional_with_devices(device.professional)
            .await
            .map_err(from_client)?;
        let cursor = request.into_inner().cursor;
        let mut after: u64 = if cursor.is_empty() {
            0
        } else {
            cursor.parse().map_err(|_| {
                Status::invalid_argument(format!(
                    "cursor {cursor:?} is not one this agent gave (pass a WatchResponse.cursor, or none)"
                ))
            })?
        };
        let log = Arc::clone(&self.devices.log);
        let last = log
            .last(device.professional)
            .map_err(|e| Status::internal(e.to_string()))?;
        if after > last {
            return Err(Status::invalid_argument(format!(
                "cursor {after} is past the last event this agent gave for this professional ({last})"
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BATCH);
        let mut latest = device.latest.subscribe();
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let events = match log.read(device.professional, after, WATCH_BATCH) {
                    Ok(events) => events,
                    Err(err) => {
                        let _ = tx.send(Err(Status::internal(err.to_string()))).await;
                        return;
                    }
                };
                if events.is_empty() {
                    tokio::select! {
                        changed = latest.changed() => if changed.is_err() { return },
                        () = tx.closed() => return,
                        _ = stop.changed() => {
                            let _ = tx.send(Err(Status::unavailable(
                                "the agent is stopping; watch again from your last cursor",
                            ))).await;
                            return;
                        }
                    }
                    continue;
                }
                for event in events {
                    after = event.cursor.parse().unwrap_or(after);
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
