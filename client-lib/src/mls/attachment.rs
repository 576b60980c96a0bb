//! Thread attachments. Each is encrypted on the sending device with a fresh
//! ChaCha20-Poly1305 key (ring), bound to its consult; the key travels only
//! inside the MLS message that refers to the attachment, so the server stores
//! bytes it cannot read. Uploads go in chunks; a download is checked against
//! the size and SHA-256 the sender put in the message before it is decrypted.

use ring::{
    aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    digest,
    rand::{SecureRandom, SystemRandom},
};
use samenop_proto::v1;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Messenger, local};
use crate::{ClientError, Result};

/// Bytes per upload chunk (the protocol allows up to 1 MiB).
const CHUNK: usize = 256 * 1024;
/// The longest file name and media type carried, in characters.
const NAME_MAX: usize = 255;
const MEDIA_TYPE_MAX: usize = 127;
/// How often a broken download resumes from where it broke.
const DOWNLOAD_ATTEMPTS: usize = 3;

/// Told how an upload goes: bytes handed to the connection so far, and in
/// all (the encrypted size).
pub type Progress = std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>;

/// The upload's chunks, telling `progress` as each is handed on. A free
/// function, so the closure's type carries no lifetime of the caller (a
/// closure inside an async method would, and its future's `Send` would
/// then have to hold for every lifetime).
fn told(
    chunks: Vec<v1::UploadAttachmentRequest>,
    progress: Option<Progress>,
    total: u64,
) -> impl Iterator<Item = v1::UploadAttachmentRequest> + Send + 'static {
    use v1::upload_attachment_request::Part;
    let mut sent = 0u64;
    chunks.into_iter().inspect(move |part| {
        if let (Some(progress), Some(Part::Chunk(chunk))) = (&progress, &part.part) {
            sent += chunk.len() as u64;
            progress(sent, total);
        }
    })
}

/// An attachment to send: the plaintext and how to present it.
#[derive(Clone, Copy)]
pub struct NewAttachment<'a> {
    /// The file name shown to the other participants.
    pub name: &'a str,
    /// The media type, e.g. "application/pdf".
    pub media_type: &'a str,
    /// The content.
    pub bytes: &'a [u8],
}

impl std::fmt::Debug for NewAttachment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAttachment")
            .field("size", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// An attachment of a thread message: where it is and how to open it
/// ([`Messenger::open_attachment`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The server's id of the encrypted bytes.
    pub id: Uuid,
    /// The decryption key (32 bytes); never leaves the MLS message and this
    /// device's state.
    key: Vec<u8>,
    /// The SHA-256 of the encrypted bytes.
    pub sha256: Vec<u8>,
    /// The size of the content, in bytes.
    pub size: u64,
    /// The file name the sender gave it.
    pub name: String,
    /// Its media type.
    pub media_type: String,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("id", &self.id)
            .field("key", &"***")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Attachment {
    /// The reference that goes into the MLS message.
    pub(super) fn to_reference(&self) -> v1::AttachmentReference {
        v1::AttachmentReference {
            attachment_id: self.id.to_string(),
            key: self.key.clone(),
            sha256: self.sha256.clone(),
            size_bytes: self.size,
            name: self.name.clone(),
            media_type: self.media_type.clone(),
        }
    }

    /// Reads a reference from a decrypted message; `Err` names what is
    /// wrong with it.
    pub(super) fn from_reference(
        raw: v1::AttachmentReference,
    ) -> std::result::Result<Self, String> {
        let id = Uuid::try_parse(&raw.attachment_id)
            .map_err(|_| "an attachment reference has no valid id".to_owned())?;
        if raw.key.len() != 32 || raw.sha256.len() != digest::SHA256_OUTPUT_LEN {
            return Err("an attachment reference has a malformed key or hash".into());
        }
        if raw.name.chars().count() > NAME_MAX || raw.media_type.chars().count() > MEDIA_TYPE_MAX {
            return Err("an attachment reference's name or media type is too long".into());
        }
        Ok(Attachment {
            id,
            key: raw.key,
            sha256: raw.sha256,
            size: raw.size_bytes,
            name: raw.name,
            media_type: raw.media_type,
        })
    }
}

/// The AEAD key of an attachment. Each key encrypts exactly one attachment,
/// so the all-zero nonce is never used twice with one key.
fn aead(key: &[u8]) -> Result<(LessSafeKey, Nonce)> {
    let key = UnboundKey::new(&CHACHA20_POLY1305, key)
        .map_err(|_| local("attachment key", "not a ChaCha20-Poly1305 key"))?;
    Ok((
        LessSafeKey::new(key),
        Nonce::assume_unique_for_key([0; NONCE_LEN]),
    ))
}

/// Encrypts `content` for consult `consult` with a fresh key; returns key
/// and ciphertext (content and tag).
fn seal(consult: Uuid, content: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut key = vec![0; 32];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| local("attachment key", "the system's random source failed"))?;
    let (sealing, nonce) = aead(&key)?;
    let mut bytes = content.to_vec();
    sealing
        .seal_in_place_append_tag(nonce, Aad::from(consult.as_bytes()), &mut bytes)
        .map_err(|_| local("attachment", "cannot encrypt"))?;
    Ok((key, bytes))
}

fn attachment_rejected(attachment: Uuid, why: &str) -> ClientError {
    ClientError::Rejected(format!("attachment {attachment} was rejected: {why}"))
}

impl Messenger {
    /// Encrypts and uploads `attachments` for a message in `consult`'s
    /// thread; returns what the message refers to.
    pub(super) async fn upload_attachments(
        &self,
        consult: Uuid,
        attachments: &[NewAttachment<'_>],
        progress: Option<Progress>,
    ) -> Result<Vec<Attachment>> {
        let mut uploaded = Vec::with_capacity(attachments.len());
        for new in attachments {
            if new.name.chars().count() > NAME_MAX
                || new.media_type.chars().count() > MEDIA_TYPE_MAX
            {
                return Err(ClientError::InvalidInput(format!(
                    "an attachment's name is at most {NAME_MAX} and its media type at most \
                     {MEDIA_TYPE_MAX} characters"
                )));
            }
            let (key, sealed) = seal(consult, new.bytes)?;
            let sha256 = digest::digest(&digest::SHA256, &sealed).as_ref().to_vec();
            let id = self
                .upload(consult, sealed, sha256.clone(), progress.clone())
                .await?;
            uploaded.push(Attachment {
                id,
                key,
                sha256,
                size: new.bytes.len() as u64,
                name: new.name.to_owned(),
                media_type: new.media_type.to_owned(),
            });
        }
        Ok(uploaded)
    }

    /// Uploads encrypted bytes in chunks; returns the server's id.
    async fn upload(
        &self,
        consult: Uuid,
        sealed: Vec<u8>,
        sha256: Vec<u8>,
        progress: Option<Progress>,
    ) -> Result<Uuid> {
        use v1::upload_attachment_request::Part;
        let header = v1::UploadAttachmentRequest {
            part: Some(Part::Header(v1::AttachmentHeader {
                consult_id: consult.to_string(),
                device_id: self.device.to_string(),
                size_bytes: sealed.len() as u64,
                sha256,
            })),
        };
        let total = sealed.len() as u64;
        let chunks: Vec<_> = sealed
            .chunks(CHUNK)
            .map(|chunk| v1::UploadAttachmentRequest {
                part: Some(Part::Chunk(chunk.to_vec())),
            })
            .collect();
        let parts =
            tokio_stream::iter(std::iter::once(header).chain(told(chunks, progress, total)));
        let answer = self
            .threads()
            .upload_attachment(self.client.request(parts)?)
            .await?
            .into_inner();
        Uuid::try_parse(&answer.attachment_id)
            .map_err(|_| ClientError::Protocol("the attachment id is not a UUID".into()))
    }

    /// Downloads an attachment of a message in `consult`'s thread, checks
    /// it against its reference and decrypts it.
    ///
    /// # Errors
    /// [`ClientError::Rejected`] when the bytes differ from what the sender
    /// put in the message (size, hash or authentication tag); NotFound once
    /// it was purged.
    pub async fn open_attachment(&self, consult: Uuid, attachment: &Attachment) -> Result<Vec<u8>> {
        let expected = usize::try_from(attachment.size)
            .ok()
            .and_then(|size| size.checked_add(CHACHA20_POLY1305.tag_len()))
            .ok_or_else(|| attachment_rejected(attachment.id, "its size is impossible"))?;
        let mut sealed: Vec<u8> = Vec::new();
        let mut attempts = 0;
        while sealed.len() < expected {
            attempts += 1;
            match self
                .download(consult, attachment, &mut sealed, expected)
                .await
            {
                Ok(()) => break,
                Err(ClientError::Unavailable(_)) if attempts < DOWNLOAD_ATTEMPTS => {}
                Err(err) => return Err(err),
            }
        }
        if sealed.len() != expected {
            return Err(attachment_rejected(
                attachment.id,
                "it is shorter than its sender said",
            ));
        }
        if digest::digest(&digest::SHA256, &sealed).as_ref() != attachment.sha256.as_slice() {
            return Err(attachment_rejected(
                attachment.id,
                "its hash differs from the message's",
            ));
        }
        let (opening, nonce) = aead(&attachment.key)?;
        let content = opening
            .open_in_place(nonce, Aad::from(consult.as_bytes()), &mut sealed)
            .map_err(|_| attachment_rejected(attachment.id, "it does not decrypt"))?;
        Ok(content.to_vec())
    }

    /// Appends the encrypted bytes from `sealed.len()` on, at most
    /// `expected` in all.
    async fn download(
        &self,
        consult: Uuid,
        attachment: &Attachment,
        sealed: &mut Vec<u8>,
        expected: usize,
    ) -> Result<()> {
        let request = v1::DownloadAttachmentRequest {
            consult_id: consult.to_string(),
            attachment_id: attachment.id.to_string(),
            device_id: self.device.to_string(),
            offset: sealed.len() as u64,
        };
        let mut stream = self
            .threads()
            .download_attachment(self.client.request(request)?)
            .await?
            .into_inner();
        while let Some(part) = stream.message().await? {
            if part.offset != sealed.len() as u64 {
                return Err(ClientError::Protocol(
                    "a download chunk is out of place".into(),
                ));
            }
            if sealed.len() + part.chunk.len() > expected {
                return Err(attachment_rejected(
                    attachment.id,
                    "it is longer than its sender said",
                ));
            }
            sealed.extend_from_slice(&part.chunk);
        }
        Ok(())
    }
}
