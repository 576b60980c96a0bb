//! Typed storage of thread attachments: encrypted bytes the server cannot
//! read, in fixed-size chunks, and one record per attachment.
//!
//! An upload marks itself in progress, writes its chunks, each in its own
//! batch, and the record last, in the batch that carries the upload's audit
//! event and removes the mark: an attachment exists (can be downloaded, is
//! referred to) only once its record does. A failed upload removes its
//! chunks and its mark; the chunks of an upload cut off by a crash are found
//! by their mark's age and purged (`retention`).

use std::sync::Arc;

use prost::Message;

use super::{
    Batch, Keyspace, Store, StoreError,
    records::{SCHEMA_VERSION, corrupt, decode_versioned},
};
use crate::domain::consult::ConsultId;

/// A stored attachment.
#[derive(Clone, PartialEq, Message)]
pub struct AttachmentRecord {
    /// Schema version of the record.
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// The size of the encrypted bytes.
    #[prost(uint64, tag = "2")]
    pub size_bytes: u64,
    /// Their SHA-256 (32 bytes), checked at upload.
    #[prost(bytes = "vec", tag = "3")]
    pub sha256: Vec<u8>,
    /// The uploading device (16 bytes).
    #[prost(bytes = "vec", tag = "4")]
    pub device: Vec<u8>,
    /// The uploading professional (16 bytes).
    #[prost(bytes = "vec", tag = "5")]
    pub professional: Vec<u8>,
    /// Upload time, ms since the Unix epoch.
    #[prost(int64, tag = "6")]
    pub uploaded_at_ms: i64,
    /// The size of every stored chunk but the last.
    #[prost(uint32, tag = "7")]
    pub chunk_bytes: u32,
}

/// Attachment storage over any [`Store`].
#[derive(Clone)]
pub struct Attachments {
    /// The backend.
    store: Arc<dyn Store>,
}

fn upload_key(at: std::time::SystemTime, attachment: uuid::Uuid) -> Vec<u8> {
    [
        super::records::to_millis(at).to_be_bytes().as_slice(),
        attachment.as_bytes(),
    ]
    .concat()
}

fn chunk_key(attachment: uuid::Uuid, index: u64) -> Vec<u8> {
    [attachment.as_bytes().as_slice(), &index.to_be_bytes()].concat()
}

fn record_key(consult: ConsultId, attachment: uuid::Uuid) -> Vec<u8> {
    [consult.as_bytes().as_slice(), attachment.as_bytes()].concat()
}

impl Attachments {
    /// Attachment storage on `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Attachments { store }
    }

    /// Marks the upload of `attachment` to `consult` as begun at `at`;
    /// returns the mark, to remove when the upload lands or fails.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    pub async fn begin_upload(
        &self,
        attachment: uuid::Uuid,
        consult: ConsultId,
        at: std::time::SystemTime,
    ) -> Result<Vec<u8>, StoreError> {
        let mark = upload_key(at, attachment);
        let mut batch = Batch::new();
        batch.put(Keyspace::Uploads, mark.clone(), consult.as_bytes().to_vec());
        self.store.commit(batch).await?;
        Ok(mark)
    }

    /// Adds to `batch` the removal of an upload's mark (it landed).
    pub fn stage_upload_done(&self, batch: &mut Batch, mark: &[u8]) {
        batch.delete(Keyspace::Uploads, mark.to_vec());
    }

    /// Uploads begun before `before` and still marked in progress: mark,
    /// attachment and consult, oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a mark is corrupt.
    pub async fn abandoned(
        &self,
        before: std::time::SystemTime,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, uuid::Uuid, ConsultId)>, StoreError> {
        let cutoff = super::records::to_millis(before).to_be_bytes();
        let mut found = Vec::new();
        for (key, consult) in self.store.scan(Keyspace::Uploads, b"", None, limit).await? {
            if key.get(..8).is_none_or(|at| at >= cutoff.as_slice()) {
                break;
            }
            let attachment = key
                .get(8..)
                .and_then(|id| uuid::Uuid::from_slice(id).ok())
                .ok_or_else(|| corrupt(Keyspace::Uploads, "key is not time + attachment"))?;
            let consult = <[u8; 16]>::try_from(consult.as_slice())
                .map(ConsultId::from_bytes)
                .map_err(|_| corrupt(Keyspace::Uploads, "not a consult id"))?;
            found.push((key, attachment, consult));
        }
        Ok(found)
    }

    /// Adds to `batch` the removal of an abandoned upload: its mark and
    /// every chunk it stored; returns how many chunks.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    pub async fn stage_abandon(
        &self,
        batch: &mut Batch,
        mark: &[u8],
        attachment: uuid::Uuid,
    ) -> Result<usize, StoreError> {
        batch.delete(Keyspace::Uploads, mark.to_vec());
        let chunks = super::scan_all(
            self.store.as_ref(),
            Keyspace::AttachmentChunks,
            attachment.as_bytes(),
        )
        .await?;
        for (key, _) in &chunks {
            batch.delete(Keyspace::AttachmentChunks, key.clone());
        }
        Ok(chunks.len())
    }

    /// Stores chunk `index` of an upload in progress, durably.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    pub async fn put_chunk(
        &self,
        attachment: uuid::Uuid,
        index: u64,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.put(
            Keyspace::AttachmentChunks,
            chunk_key(attachment, index),
            bytes,
        );
        self.store.commit(batch).await
    }

    /// Removes the first `count` chunks of a failed upload, and its mark.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    pub async fn drop_chunks(
        &self,
        attachment: uuid::Uuid,
        count: u64,
        mark: &[u8],
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        for index in 0..count {
            batch.delete(Keyspace::AttachmentChunks, chunk_key(attachment, index));
        }
        batch.delete(Keyspace::Uploads, mark.to_vec());
        self.store.commit(batch).await
    }

    /// Adds to `batch` the record that makes an uploaded attachment exist.
    pub fn stage_record(
        &self,
        batch: &mut Batch,
        consult: ConsultId,
        attachment: uuid::Uuid,
        record: &AttachmentRecord,
    ) {
        let key = record_key(consult, attachment);
        batch.expect(Keyspace::Attachments, key.clone(), None);
        batch.put(
            Keyspace::Attachments,
            key,
            AttachmentRecord {
                version: SCHEMA_VERSION,
                ..record.clone()
            }
            .encode_to_vec(),
        );
    }

    /// Reads the record of an attachment of `consult`.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the record is corrupt.
    pub async fn record(
        &self,
        consult: ConsultId,
        attachment: uuid::Uuid,
    ) -> Result<Option<AttachmentRecord>, StoreError> {
        self.store
            .get(Keyspace::Attachments, &record_key(consult, attachment))
            .await?
            .map(|raw| {
                decode_versioned(Keyspace::Attachments, &raw, |r: &AttachmentRecord| {
                    r.version
                })
            })
            .transpose()
    }

    /// Every attachment of a consult, with its record.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a record is corrupt.
    pub async fn of_consult(
        &self,
        consult: ConsultId,
    ) -> Result<Vec<(uuid::Uuid, AttachmentRecord)>, StoreError> {
        super::scan_all(
            self.store.as_ref(),
            Keyspace::Attachments,
            consult.as_bytes(),
        )
        .await?
        .into_iter()
        .map(|(key, raw)| {
            let id = key
                .get(16..)
                .and_then(|id| uuid::Uuid::from_slice(id).ok())
                .ok_or_else(|| corrupt(Keyspace::Attachments, "key is not consult + id"))?;
            let record = decode_versioned(Keyspace::Attachments, &raw, |r: &AttachmentRecord| {
                r.version
            })?;
            Ok((id, record))
        })
        .collect()
    }

    /// Adds to `batch` the removal of every attachment of a consult, record
    /// and bytes; returns how many.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a record is corrupt.
    pub async fn stage_erase(
        &self,
        batch: &mut Batch,
        consult: ConsultId,
    ) -> Result<u32, StoreError> {
        let all = self.of_consult(consult).await?;
        for (id, _) in &all {
            batch.delete(Keyspace::Attachments, record_key(consult, *id));
            for (key, _) in super::scan_all(
                self.store.as_ref(),
                Keyspace::AttachmentChunks,
                id.as_bytes(),
            )
            .await?
            {
                batch.delete(Keyspace::AttachmentChunks, key);
            }
        }
        Ok(u32::try_from(all.len()).unwrap_or(u32::MAX))
    }

    /// Reads chunk `index` of a stored attachment.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails, or [`StoreError::Corrupt`]
    /// when a chunk its record promises is missing.
    pub async fn chunk(&self, attachment: uuid::Uuid, index: u64) -> Result<Vec<u8>, StoreError> {
        self.store
            .get(Keyspace::AttachmentChunks, &chunk_key(attachment, index))
            .await?
            .ok_or_else(|| corrupt(Keyspace::AttachmentChunks, "a chunk is missing"))
    }
}
