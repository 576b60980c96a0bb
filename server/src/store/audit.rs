//! The audit chain at the storage level: every audit event is appended in
//! the same transaction as the change it describes, with a gapless sequence
//! number and a SHA-256 hash over the previous entry's hash, its sequence
//! number and its body. The body is an encoded audit event (its fields are
//! the services' business); this layer only orders and chains.

use prost::Message;

use super::StoreError;

/// The key of the chain's head (sequence number and hash of the last
/// entry) in the Meta keyspace.
pub const HEAD_KEY: &[u8] = b"audit-head";

/// The hash before the first entry.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// One stored entry of the chain.
#[derive(Clone, PartialEq, Message)]
pub struct AuditEntry {
    /// Its sequence number, from 1, gapless.
    #[prost(uint64, tag = "1")]
    pub sequence: u64,
    /// The previous entry's hash ([`GENESIS`] for the first).
    #[prost(bytes = "vec", tag = "2")]
    pub previous_hash: Vec<u8>,
    /// SHA-256(previous_hash ‖ sequence (8 bytes, big-endian) ‖ body).
    #[prost(bytes = "vec", tag = "3")]
    pub hash: Vec<u8>,
    /// The encoded audit event.
    #[prost(bytes = "vec", tag = "4")]
    pub body: Vec<u8>,
}

/// The hash of an entry.
pub fn chain_hash(previous: &[u8], sequence: u64, body: &[u8]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(previous);
    context.update(&sequence.to_be_bytes());
    context.update(body);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(context.finish().as_ref());
    hash
}

/// The chain's head: the last sequence number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The last sequence number (0 before the first entry).
    pub sequence: u64,
    /// The last hash ([`GENESIS`] before the first entry).
    pub hash: [u8; 32],
}

impl Head {
    /// Decodes a stored head; `None` (nothing stored) is the empty chain.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a head that is not 40 bytes.
    pub fn decode(raw: Option<&[u8]>) -> Result<Self, StoreError> {
        let Some(raw) = raw else {
            return Ok(Head {
                sequence: 0,
                hash: GENESIS,
            });
        };
        let corrupt = || StoreError::Corrupt {
            space: super::Keyspace::Meta,
            reason: "audit head is not 40 bytes".into(),
        };
        let sequence = raw
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(corrupt)?;
        let hash = raw
            .get(8..40)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(corrupt)?;
        Ok(Head { sequence, hash })
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        [self.sequence.to_be_bytes().as_slice(), &self.hash].concat()
    }

    /// Appends `body`: the entry to store and the new head.
    pub fn append(&self, body: Vec<u8>) -> (AuditEntry, Head) {
        let sequence = self.sequence + 1;
        let hash = chain_hash(&self.hash, sequence, &body);
        let entry = AuditEntry {
            sequence,
            previous_hash: self.hash.to_vec(),
            hash: hash.to_vec(),
            body,
        };
        (entry, Head { sequence, hash })
    }
}

/// Checks a run of entries, in order, starting after `from` (the head
/// before the first of them). Returns the sequence number of the first
/// entry that does not fit, if any.
pub fn first_broken(from: Head, entries: &[AuditEntry]) -> Option<u64> {
    let mut head = from;
    for entry in entries {
        let expected = head.sequence + 1;
        let fits = entry.sequence == expected
            && entry.previous_hash == head.hash
            && entry.hash == chain_hash(&head.hash, expected, &entry.body);
        if !fits {
            return Some(expected);
        }
        head.sequence = expected;
        head.hash.copy_from_slice(&entry.hash);
    }
    None
}
