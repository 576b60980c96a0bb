//! ThreadService's attachment calls: encrypted bytes in, encrypted bytes
//! out. The client encrypts each attachment with a fresh key that travels
//! only inside the MLS message referring to it; the server checks size and
//! SHA-256 and stores chunks it cannot read.

use ring::digest;
use samenop_proto::v1::{self, AuditObjectType as Object, upload_attachment_request::Part};
use tonic::{Request, Status, Streaming, codegen::BoxStream};

use super::{
    consult::ConsultApi,
    thread::{own_device, participating, refuses_posts},
};
use crate::{
    auth::Caller,
    domain::{InvalidInput, consult::ConsultId, parse_uuid},
    error::{ServiceError, ServiceResult},
    store::{
        Batch,
        attachments::{AttachmentRecord, Attachments},
        records::to_millis,
    },
};

/// The most bytes one upload chunk may carry (the protocol's limit).
const CHUNK_MAX: usize = 1024 * 1024;
/// The size of stored (and downloaded) chunks.
const STORED_CHUNK: usize = 256 * 1024;
/// Download chunks held in the outgoing channel at most.
const DOWNLOAD_BUFFER: usize = 4;

fn bad(field: &'static str, problem: &'static str) -> ServiceError {
    ServiceError::Invalid(InvalidInput::Malformed { field, problem })
}

/// An upload's checked header.
struct Header {
    consult: ConsultId,
    device: crate::domain::Device,
    size: usize,
    sha256: Vec<u8>,
}

/// Reads and checks an upload's header: the caller's own device, an active
/// participant of a consult that accepts posts, a size within the limit.
async fn header(
    consults: &ConsultApi,
    caller: &Caller,
    stream: &mut Streaming<v1::UploadAttachmentRequest>,
    max_bytes: usize,
) -> ServiceResult<(Header, super::consult::Loaded)> {
    let first = stream.message().await.map_err(ServiceError::Stream)?;
    let Some(v1::UploadAttachmentRequest {
        part: Some(Part::Header(header)),
    }) = first
    else {
        return Err(bad("header", "must come first, once"));
    };
    let consult =
        ConsultId::parse("header.consult_id", &header.consult_id).map_err(ServiceError::Invalid)?;
    caller.audit.object(Object::Consult, consult);
    let ctx = consults.context();
    let device = own_device(ctx, caller, &header.device_id).await?;
    let loaded = participating(consults, caller, consult).await?;
    if let Some(reason) = refuses_posts(consult, loaded.now.state) {
        return Err(ServiceError::FailedPrecondition(reason));
    }
    if header.size_bytes == 0 {
        return Err(ServiceError::Invalid(InvalidInput::Missing {
            field: "header.size_bytes",
        }));
    }
    let size = usize::try_from(header.size_bytes).unwrap_or(usize::MAX);
    if size > max_bytes {
        return Err(ServiceError::ResourceExhausted(format!(
            "the attachment is {} bytes; the limit is {max_bytes} bytes",
            header.size_bytes
        )));
    }
    if header.sha256.len() != digest::SHA256_OUTPUT_LEN {
        return Err(bad("header.sha256", "is not 32 bytes"));
    }
    Ok((
        Header {
            consult,
            device,
            size,
            sha256: header.sha256,
        },
        loaded,
    ))
}

/// Receives the chunks after the header and stores them in stored-chunk
/// pieces under `attachment`; returns how many pieces it stored (also when
/// it fails, so they can be removed).
async fn receive(
    attachments: &Attachments,
    stream: &mut Streaming<v1::UploadAttachmentRequest>,
    attachment: uuid::Uuid,
    header: &Header,
    stored: &mut u64,
) -> ServiceResult<()> {
    let mut hash = digest::Context::new(&digest::SHA256);
    let mut received = 0usize;
    let mut pending: Vec<u8> = Vec::with_capacity(STORED_CHUNK);
    while let Some(part) = stream.message().await.map_err(ServiceError::Stream)? {
        let chunk = match part.part {
            Some(Part::Chunk(chunk)) if !chunk.is_empty() => chunk,
            Some(Part::Chunk(_)) => return Err(bad("chunk", "is empty")),
            Some(Part::Header(_)) => return Err(bad("header", "must come first, once")),
            None => return Err(bad("part", "is neither header nor chunk")),
        };
        if chunk.len() > CHUNK_MAX {
            return Err(ServiceError::ResourceExhausted(format!(
                "a chunk is {} bytes; the limit is {CHUNK_MAX} bytes",
                chunk.len()
            )));
        }
        received += chunk.len();
        if received > header.size {
            return Err(bad(
                "chunk",
                "brings more bytes than the header's size_bytes",
            ));
        }
        hash.update(&chunk);
        pending.extend_from_slice(&chunk);
        while pending.len() >= STORED_CHUNK {
            let rest = pending.split_off(STORED_CHUNK);
            let piece = std::mem::replace(&mut pending, rest);
            attachments.put_chunk(attachment, *stored, piece).await?;
            *stored += 1;
        }
    }
    if received != header.size {
        return Err(bad("chunk", "the bytes received are fewer than size_bytes"));
    }
    if hash.finish().as_ref() != header.sha256.as_slice() {
        return Err(bad(
            "header.sha256",
            "differs from the SHA-256 of the bytes received",
        ));
    }
    if !pending.is_empty() {
        attachments.put_chunk(attachment, *stored, pending).await?;
        *stored += 1;
    }
    Ok(())
}

/// UploadAttachment: header, then chunks; the record lands with the
/// consult as read as its precondition, so nothing is attached to a consult
/// closed or suspended meanwhile.
pub(super) async fn upload(
    consults: &ConsultApi,
    max_bytes: usize,
    request: Request<Streaming<v1::UploadAttachmentRequest>>,
) -> ServiceResult<v1::UploadAttachmentResponse> {
    let ctx = consults.context();
    let caller = ctx.auth.caller(&request).await?;
    let mut stream = request.into_inner();
    let (header, _) = header(consults, &caller, &mut stream, max_bytes).await?;
    let attachment = uuid::Uuid::now_v7();
    caller.audit.object(Object::Attachment, attachment);
    // Marked in progress first: a crash from here on leaves chunks the
    // purge finds by the mark's age.
    let mark = ctx
        .attachments
        .begin_upload(attachment, header.consult, ctx.now())
        .await?;
    let mut stored = 0;
    let received = receive(
        &ctx.attachments,
        &mut stream,
        attachment,
        &header,
        &mut stored,
    )
    .await;
    let landed = match received {
        Ok(()) => land(consults, &caller, &header, attachment, &mark).await,
        Err(err) => Err(err),
    };
    if let Err(err) = landed {
        if let Err(cleanup) = ctx.attachments.drop_chunks(attachment, stored, &mark).await {
            tracing::warn!(error = %cleanup, "could not remove a failed upload's chunks");
        }
        return Err(err);
    }
    tracing::info!(consult = %header.consult, %attachment, "attachment uploaded");
    Ok(v1::UploadAttachmentResponse {
        attachment_id: attachment.to_string(),
        size_bytes: header.size as u64,
    })
}

/// Writes an uploaded attachment's record, with the call's audit event, if
/// the consult still accepts posts from the caller.
async fn land(
    consults: &ConsultApi,
    caller: &Caller,
    header: &Header,
    attachment: uuid::Uuid,
    mark: &[u8],
) -> ServiceResult<()> {
    let ctx = consults.context();
    let loaded = participating(consults, caller, header.consult).await?;
    if let Some(reason) = refuses_posts(header.consult, loaded.now.state) {
        return Err(ServiceError::FailedPrecondition(reason));
    }
    let mut batch = Batch::new();
    ctx.consults.stage_unchanged(&mut batch, &loaded.stored);
    ctx.attachments.stage_record(
        &mut batch,
        header.consult,
        attachment,
        &AttachmentRecord {
            version: 0,
            size_bytes: header.size as u64,
            sha256: header.sha256.clone(),
            device: header.device.id.as_bytes().to_vec(),
            professional: caller.professional.id.as_bytes().to_vec(),
            uploaded_at_ms: to_millis(ctx.now()),
            chunk_bytes: STORED_CHUNK as u32,
        },
    );
    ctx.attachments.stage_upload_done(&mut batch, mark);
    batch.audit(caller.audit.allowed());
    ctx.consults.commit(batch).await?;
    Ok(())
}

/// DownloadAttachment: the encrypted bytes from an offset, in chunks.
pub(super) async fn download(
    consults: &ConsultApi,
    request: Request<v1::DownloadAttachmentRequest>,
) -> ServiceResult<BoxStream<v1::DownloadAttachmentResponse>> {
    let ctx = consults.context().clone();
    let caller = ctx.auth.caller(&request).await?;
    let req = request.get_ref();
    let consult = ConsultId::parse("consult_id", &req.consult_id).map_err(ServiceError::Invalid)?;
    caller.audit.object(Object::Consult, consult);
    let attachment =
        parse_uuid("attachment_id", &req.attachment_id).map_err(ServiceError::Invalid)?;
    caller.audit.object(Object::Attachment, attachment);
    own_device(&ctx, &caller, &req.device_id).await?;
    participating(consults, &caller, consult).await?;
    let record = ctx
        .attachments
        .record(consult, attachment)
        .await?
        .ok_or_else(|| {
            ServiceError::NotFound(format!("no attachment {attachment} in consult {consult}"))
        })?;
    if req.offset > record.size_bytes {
        return Err(bad("offset", "is past the attachment's end"));
    }
    let piece = u64::from(record.chunk_bytes.max(1));
    let (tx, rx) = tokio::sync::mpsc::channel(DOWNLOAD_BUFFER);
    let mut offset = req.offset;
    tokio::spawn(async move {
        while offset < record.size_bytes {
            let index = offset / piece;
            let chunk = match ctx.attachments.chunk(attachment, index).await {
                Ok(bytes) => bytes,
                Err(err) => {
                    let _ = tx.send(Err(ServiceError::from(err).into())).await;
                    return;
                }
            };
            let skip = usize::try_from(offset - index * piece).unwrap_or(usize::MAX);
            let Some(part) = chunk.get(skip..).filter(|p| !p.is_empty()) else {
                let _ = tx
                    .send(Err(Status::internal(
                        "internal error: an attachment is short",
                    )))
                    .await;
                return;
            };
            let answer = v1::DownloadAttachmentResponse {
                size_bytes: record.size_bytes,
                offset,
                chunk: part.to_vec(),
                sha256: record.sha256.clone(),
            };
            offset += part.len() as u64;
            if tx.send(Ok(answer)).await.is_err() {
                return;
            }
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}
