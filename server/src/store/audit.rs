//! The audit chain at the storage level: every audit event is appended in
//! the same transaction as the change it describes, with a gapless sequence
//! number and the previous event's hash written into the event itself, and a
//! SHA-256 hash over the previous hash followed by the event's protobuf
//! encoding (with its hash left empty). An exported event can therefore be
//! checked on its own, exactly as `samenop.v1.AuditEvent` documents.
//!
//! This layer orders, chains and verifies; what an event says is the
//! services' business.

use prost::Message;
use samenop_proto::v1;

use super::StoreError;

/// The key of the chain's head (sequence number and hash of the last
/// entry) in the Meta keyspace.
pub const HEAD_KEY: &[u8] = b"audit-head";

/// The hash before the first entry.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// The key of the newest checkpoint (encoded) in the Meta keyspace.
pub const LATEST_CHECKPOINT_KEY: &[u8] = b"audit-latest-checkpoint";

/// The key of the chain's base in the Meta keyspace: the sequence and hash
/// of the last event removed by retention (absent: nothing removed). The
/// chain is verified from there, and a signed checkpoint must name it.
pub const BASE_KEY: &[u8] = b"audit-base";

/// One stored entry of the chain, under its sequence number (8 bytes,
/// big-endian) in the Audit keyspace.
#[derive(Clone, PartialEq, Message)]
pub struct AuditEntry {
    /// SHA-256(previous hash ‖ body).
    #[prost(bytes = "vec", tag = "1")]
    pub hash: Vec<u8>,
    /// The encoded `v1::AuditEvent`, with its sequence and previous hash
    /// set and its hash left empty: exactly the bytes hashed.
    #[prost(bytes = "vec", tag = "2")]
    pub body: Vec<u8>,
}

impl AuditEntry {
    /// The event as exported: decoded, with its hash filled in.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the body is not an event.
    pub fn event(&self) -> Result<v1::AuditEvent, StoreError> {
        let mut event =
            v1::AuditEvent::decode(self.body.as_slice()).map_err(|e| StoreError::Corrupt {
                space: super::Keyspace::Audit,
                reason: format!("audit event: {e}"),
            })?;
        event.hash.clone_from(&self.hash);
        Ok(event)
    }
}

/// The event of a stored entry (its raw value), as exported.
///
/// # Errors
/// [`StoreError::Corrupt`] when the entry or its event cannot be decoded.
pub fn stored_event(raw: &[u8]) -> Result<v1::AuditEvent, StoreError> {
    AuditEntry::decode(raw)
        .map_err(|e| StoreError::Corrupt {
            space: super::Keyspace::Audit,
            reason: format!("audit entry: {e}"),
        })?
        .event()
}

/// The hash of an entry: SHA-256 over the previous hash and the body.
pub fn chain_hash(previous: &[u8], body: &[u8]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(previous);
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
    /// The head of the empty chain.
    pub const EMPTY: Head = Head {
        sequence: 0,
        hash: GENESIS,
    };

    /// Decodes a stored head; `None` (nothing stored) is the empty chain.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a head that is not 40 bytes.
    pub fn decode(raw: Option<&[u8]>) -> Result<Self, StoreError> {
        let Some(raw) = raw else {
            return Ok(Head::EMPTY);
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

    /// Appends `event`: sets its sequence and previous hash, and returns
    /// the sequence number, the entry to store and the new head.
    pub fn append(&self, mut event: v1::AuditEvent) -> (u64, AuditEntry, Head) {
        let sequence = self.sequence + 1;
        event.sequence = sequence;
        event.previous_hash = self.hash.to_vec();
        event.hash = Vec::new();
        let body = event.encode_to_vec();
        let hash = chain_hash(&self.hash, &body);
        let entry = AuditEntry {
            hash: hash.to_vec(),
            body,
        };
        (sequence, entry, Head { sequence, hash })
    }
}

/// What is wrong with the first broken entry of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The entry's body does not hash to its stored hash.
    HashMismatch,
    /// The event's previous hash is not the previous entry's hash.
    PreviousHashMismatch,
    /// A sequence number is missing or repeated.
    SequenceGap,
    /// The entry or its event cannot be decoded.
    Unreadable,
    /// The chain ends before the last sequence the store recorded (or a
    /// checkpoint covers): entries were removed from its end.
    Truncated,
    /// A checkpoint's signature does not verify with the audit key.
    CheckpointSignature,
    /// A checkpoint names another hash than the event at its sequence has
    /// (or the chain's base is not a signed checkpoint).
    CheckpointMismatch,
}

impl Fault {
    /// The wire enum.
    pub fn to_proto(self) -> v1::AuditChainFault {
        match self {
            Fault::HashMismatch => v1::AuditChainFault::HashMismatch,
            Fault::PreviousHashMismatch => v1::AuditChainFault::PreviousHashMismatch,
            Fault::SequenceGap => v1::AuditChainFault::SequenceGap,
            Fault::Unreadable => v1::AuditChainFault::Unreadable,
            Fault::Truncated => v1::AuditChainFault::Truncated,
            Fault::CheckpointSignature => v1::AuditChainFault::CheckpointSignature,
            Fault::CheckpointMismatch => v1::AuditChainFault::CheckpointMismatch,
        }
    }

    /// What it means, in words.
    pub fn explain(self) -> &'static str {
        match self {
            Fault::HashMismatch => "the stored event does not hash to its recorded hash",
            Fault::PreviousHashMismatch => "the event does not name the previous event's hash",
            Fault::SequenceGap => "a sequence number is missing or repeated",
            Fault::Unreadable => "the stored event cannot be decoded",
            Fault::Truncated => "events at the end of the chain are missing",
            Fault::CheckpointSignature => {
                "a checkpoint's signature does not verify with the audit key"
            }
            Fault::CheckpointMismatch => {
                "a signed checkpoint names another hash for this event than the chain has"
            }
        }
    }
}

/// The first broken entry: where, and what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken {
    /// The sequence number of the first broken (or missing) entry.
    pub sequence: u64,
    /// What is wrong with it.
    pub fault: Fault,
}

/// Checks a chain entry by entry, in order, from its start: the same check
/// for the online verify call and the offline `audit verify`.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The head of the entries checked so far.
    head: Head,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier { head: Head::EMPTY }
    }
}

impl Verifier {
    /// A verifier that starts after `base` (the last event removed by
    /// retention, or [`Head::EMPTY`]).
    pub fn from_base(base: Head) -> Self {
        Verifier { head: base }
    }

    /// The head of what has been checked: sequence and hash of the last
    /// good entry.
    pub fn head(&self) -> Head {
        self.head
    }

    /// Checks the entry stored under `key` (its raw value `raw`), and
    /// returns its event.
    ///
    /// # Errors
    /// The first fault found; the verifier stays at the previous entry.
    pub fn check(&mut self, key: &[u8], raw: &[u8]) -> Result<v1::AuditEvent, Broken> {
        let expected = self.head.sequence + 1;
        let broken = |fault| Broken {
            sequence: expected,
            fault,
        };
        let at = <[u8; 8]>::try_from(key)
            .map(u64::from_be_bytes)
            .map_err(|_| broken(Fault::Unreadable))?;
        if at != expected {
            return Err(broken(Fault::SequenceGap));
        }
        let entry = AuditEntry::decode(raw).map_err(|_| broken(Fault::Unreadable))?;
        // The hash first, over the stored bytes: any changed byte of the
        // event shows as a hash mismatch, whichever field it is in, even one
        // that leaves the bytes undecodable.
        let hash = chain_hash(&self.head.hash, &entry.body);
        if entry.hash != hash {
            // A well-formed event hashed over another previous hash is one
            // taken from elsewhere, or the chain was spliced before it.
            let spliced = entry.event().is_ok_and(|event| {
                event.previous_hash != self.head.hash
                    && entry.hash == chain_hash(&event.previous_hash, &entry.body)
            });
            return Err(broken(if spliced {
                Fault::PreviousHashMismatch
            } else {
                Fault::HashMismatch
            }));
        }
        let event = entry.event().map_err(|_| broken(Fault::Unreadable))?;
        if event.sequence != expected {
            return Err(broken(Fault::SequenceGap));
        }
        if event.previous_hash != self.head.hash {
            return Err(broken(Fault::PreviousHashMismatch));
        }
        self.head = Head {
            sequence: expected,
            hash,
        };
        Ok(event)
    }

    /// Checks that the chain, ended after the entries checked, reaches
    /// `recorded` (the head the store or a checkpoint recorded).
    ///
    /// # Errors
    /// [`Fault::Truncated`] at the first missing sequence, or
    /// [`Fault::HashMismatch`] at the recorded sequence when the chain
    /// reaches it with another hash.
    pub fn finish(&self, recorded: Head) -> Result<(), Broken> {
        if self.head.sequence < recorded.sequence {
            return Err(Broken {
                sequence: self.head.sequence + 1,
                fault: Fault::Truncated,
            });
        }
        if self.head.sequence == recorded.sequence && self.head.hash != recorded.hash {
            return Err(Broken {
                sequence: recorded.sequence,
                fault: Fault::HashMismatch,
            });
        }
        Ok(())
    }
}

/// Reads the stored chain.
#[derive(Clone)]
pub struct Trail {
    /// Where the chain is stored.
    pub(super) store: std::sync::Arc<dyn super::Store>,
}

impl Trail {
    /// The chain in `store`.
    pub fn new(store: std::sync::Arc<dyn super::Store>) -> Self {
        Trail { store }
    }

    /// Appends `event` to the chain on its own.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    pub async fn record(&self, event: v1::AuditEvent) -> Result<(), StoreError> {
        let mut batch = super::Batch::new();
        batch.audit(event);
        self.store.commit(batch).await
    }

    /// The head the store recorded with the last append.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the head is corrupt.
    pub async fn head(&self) -> Result<Head, StoreError> {
        let raw = self.store.get(super::Keyspace::Meta, HEAD_KEY).await?;
        Head::decode(raw.as_deref())
    }

    /// Up to `limit` stored entries (key, raw value) with a sequence above
    /// `after`, in order.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    pub async fn entries(&self, after: u64, limit: usize) -> Result<Vec<super::Entry>, StoreError> {
        let from = after.to_be_bytes();
        let after = (after > 0).then_some(from.as_slice());
        self.store
            .scan(super::Keyspace::Audit, b"", after, limit)
            .await
    }

    /// The chain's base: after the last event removed by retention.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the base is corrupt.
    pub async fn base(&self) -> Result<Head, StoreError> {
        let raw = self.store.get(super::Keyspace::Meta, BASE_KEY).await?;
        Head::decode(raw.as_deref())
    }

    /// The newest checkpoint, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the record is corrupt.
    pub async fn latest_checkpoint(&self) -> Result<Option<v1::AuditCheckpoint>, StoreError> {
        self.store
            .get(super::Keyspace::Meta, LATEST_CHECKPOINT_KEY)
            .await?
            .map(|raw| {
                v1::AuditCheckpoint::decode(raw.as_slice()).map_err(|e| StoreError::Corrupt {
                    space: super::Keyspace::Meta,
                    reason: format!("latest audit checkpoint: {e}"),
                })
            })
            .transpose()
    }

    /// Signs and stores a checkpoint of the chain's head, unless the newest
    /// checkpoint already covers it; returns the new one.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails; a conflict means another
    /// checkpoint landed first.
    pub async fn checkpoint(
        &self,
        key: &crate::audit_key::AuditKey,
        at: std::time::SystemTime,
    ) -> Result<Option<v1::AuditCheckpoint>, StoreError> {
        let head = self.head().await?;
        let latest_raw = self
            .store
            .get(super::Keyspace::Meta, LATEST_CHECKPOINT_KEY)
            .await?;
        let latest = latest_raw
            .as_deref()
            .and_then(|raw| v1::AuditCheckpoint::decode(raw).ok());
        if head.sequence == 0 || latest.is_some_and(|l| l.sequence >= head.sequence) {
            return Ok(None);
        }
        let checkpoint = key.sign(head, at);
        let encoded = checkpoint.encode_to_vec();
        let mut batch = super::Batch::new();
        batch.expect(super::Keyspace::Meta, LATEST_CHECKPOINT_KEY, latest_raw);
        batch.put(
            super::Keyspace::AuditCheckpoints,
            head.sequence.to_be_bytes().to_vec(),
            encoded.clone(),
        );
        batch.put(super::Keyspace::Meta, LATEST_CHECKPOINT_KEY, encoded);
        self.store.commit(batch).await?;
        Ok(Some(checkpoint))
    }

    /// Removes the events older than `cutoff` up to the oldest signed
    /// checkpoint among them past the current base, which becomes the
    /// chain's base (so the rest still verifies, from a signed point):
    /// one checkpoint's span per call, so one batch stays the size of what
    /// was appended between two checkpoints; the caller calls again while
    /// it returns `Some`. `purge_event` (the purge's own account) is
    /// appended in the same transaction, its detail completed with how far
    /// the purge went. The events' index entries go with them, and so do
    /// the consult-family links of consults left with no event and no
    /// record. Returns the new base's sequence, or `None` when nothing was
    /// due.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails; a conflict means another
    /// purge ran meanwhile.
    pub async fn purge_before(
        &self,
        cutoff: std::time::SystemTime,
        mut purge_event: v1::AuditEvent,
    ) -> Result<Option<u64>, StoreError> {
        let base_raw = self.store.get(super::Keyspace::Meta, BASE_KEY).await?;
        let base = Head::decode(base_raw.as_deref())?;
        let checkpoints = self.checkpoints().await?;
        let mut chosen = None;
        for (sequence, checkpoint) in &checkpoints {
            if *sequence <= base.sequence {
                continue;
            }
            let Some(checkpoint) = checkpoint else {
                continue;
            };
            let Some((_, raw)) = self.entries(sequence - 1, 1).await?.into_iter().next() else {
                continue;
            };
            let at = stored_event(&raw)?
                .occurred_at
                .and_then(|t| std::time::SystemTime::try_from(t).ok());
            if at.is_some_and(|at| at < cutoff) {
                chosen = Some(checkpoint.clone());
            }
            // The oldest checkpoint past the base decides: it is due, or
            // nothing later is.
            break;
        }
        let Some(anchor) = chosen else {
            return Ok(None);
        };
        let hash: [u8; 32] =
            anchor
                .hash
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt {
                    space: super::Keyspace::AuditCheckpoints,
                    reason: "checkpoint hash is not 32 bytes".into(),
                })?;
        let mut batch = super::Batch::new();
        batch.expect(super::Keyspace::Meta, BASE_KEY, base_raw);
        let mut consults = std::collections::BTreeSet::new();
        let mut after = base.sequence;
        'events: while after < anchor.sequence {
            let entries = self.entries(after, 1024).await?;
            if entries.is_empty() {
                break;
            }
            for (key, raw) in entries {
                let Some(sequence) = <[u8; 8]>::try_from(key.as_slice())
                    .ok()
                    .map(u64::from_be_bytes)
                else {
                    // Not a key the chain writes: left for verification to
                    // report.
                    continue;
                };
                if sequence > anchor.sequence {
                    break 'events;
                }
                // The event's index entries go with it; one that no longer
                // decodes is removed all the same.
                if let Ok(named) = super::audit_index::stage_unindex(&mut batch, &raw) {
                    consults.extend(named);
                }
                batch.delete(super::Keyspace::Audit, key);
                after = sequence;
            }
        }
        for (sequence, _) in &checkpoints {
            if *sequence < anchor.sequence {
                batch.delete(
                    super::Keyspace::AuditCheckpoints,
                    sequence.to_be_bytes().to_vec(),
                );
            }
        }
        let new_base = Head {
            sequence: anchor.sequence,
            hash,
        };
        batch.put(super::Keyspace::Meta, BASE_KEY, new_base.encode());
        purge_event.detail = format!(
            "audit events {} to {} removed after the retention period",
            base.sequence + 1,
            anchor.sequence
        );
        self.stage_forget_links(&mut batch, consults, anchor.sequence)
            .await?;
        batch.audit(purge_event);
        self.store.commit(batch).await?;
        Ok(Some(anchor.sequence))
    }

    /// Every stored checkpoint, in order: its sequence, and the checkpoint
    /// when it decodes.
    async fn checkpoints(&self) -> Result<Vec<(u64, Option<v1::AuditCheckpoint>)>, StoreError> {
        const STEP: usize = 1024;
        let mut all = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let entries = self
                .store
                .scan(
                    super::Keyspace::AuditCheckpoints,
                    b"",
                    after.as_deref(),
                    STEP,
                )
                .await?;
            let done = entries.len() < STEP;
            for (key, raw) in entries {
                let sequence = <[u8; 8]>::try_from(key.as_slice())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                let checkpoint = v1::AuditCheckpoint::decode(raw.as_slice())
                    .ok()
                    .filter(|c| c.sequence == sequence);
                all.push((sequence, checkpoint));
                after = Some(key);
            }
            if done {
                return Ok(all);
            }
        }
    }

    /// Checks the whole chain, from its base, against the recorded head and
    /// the signed checkpoints. Every checkpoint must verify with
    /// `public_key` (when `None`: with the key of the first checkpoint, so
    /// all were signed by one key).
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    pub async fn verify(&self, public_key: Option<&[u8]>) -> Result<Verification, StoreError> {
        // The chain is read in pages, not in one snapshot: a retention purge
        // that moves the base meanwhile removes entries the walk has not
        // reached, which would look like a gap. A fault seen while the base
        // moved is checked again from the new base.
        let mut attempts = 0;
        loop {
            let base = self.base().await?;
            let verification = self.verify_from(base, public_key).await?;
            attempts += 1;
            if verification.broken.is_none() || attempts == 5 || self.base().await? == base {
                return Ok(verification);
            }
        }
    }

    /// One walk of [`Trail::verify`], from `base` as read before it.
    async fn verify_from(
        &self,
        base: Head,
        public_key: Option<&[u8]>,
    ) -> Result<Verification, StoreError> {
        const STEP: usize = 1024;
        let recorded = self.head().await?;
        let mut faults: Vec<Broken> = Vec::new();
        let mut signed: std::collections::BTreeMap<u64, Vec<u8>> = Default::default();
        let stored = self.checkpoints().await?;
        let key = public_key.map(<[u8]>::to_vec).or_else(|| {
            stored
                .iter()
                .find_map(|(_, c)| c.as_ref().map(|c| c.public_key.clone()))
        });
        let mut latest = None;
        for (sequence, checkpoint) in &stored {
            match checkpoint {
                Some(c)
                    if Some(&c.public_key) == key.as_ref()
                        && crate::audit_key::signature_holds(c) =>
                {
                    signed.insert(*sequence, c.hash.clone());
                    latest = Some(c.clone());
                }
                _ => faults.push(Broken {
                    sequence: *sequence,
                    fault: Fault::CheckpointSignature,
                }),
            }
        }
        if base.sequence > 0 && signed.get(&base.sequence) != Some(&base.hash.to_vec()) {
            faults.push(Broken {
                sequence: base.sequence,
                fault: Fault::CheckpointMismatch,
            });
        }
        let mut verifier = Verifier::from_base(base);
        'chain: loop {
            let entries = self.entries(verifier.head().sequence, STEP).await?;
            let done = entries.len() < STEP;
            for (key, raw) in &entries {
                if let Err(broken) = verifier.check(key, raw) {
                    faults.push(broken);
                    break 'chain;
                }
                let head = verifier.head();
                if signed
                    .get(&head.sequence)
                    .is_some_and(|hash| hash.as_slice() != head.hash)
                {
                    faults.push(Broken {
                        sequence: head.sequence,
                        fault: Fault::CheckpointMismatch,
                    });
                    break 'chain;
                }
            }
            if done {
                break;
            }
        }
        let checked = verifier.head();
        if let Some((&covered, _)) = signed.last_key_value()
            && covered > checked.sequence
        {
            faults.push(Broken {
                sequence: checked.sequence + 1,
                fault: Fault::Truncated,
            });
        }
        if let Err(broken) = verifier.finish(recorded) {
            faults.push(broken);
        }
        Ok(Verification {
            checked,
            recorded,
            broken: faults.into_iter().min_by_key(|b| b.sequence),
            checkpoints_checked: stored.len() as u64,
            latest_checkpoint: latest,
        })
    }
}

/// The result of checking a whole chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    /// The head of the entries that verified.
    pub checked: Head,
    /// The head the store recorded.
    pub recorded: Head,
    /// The first broken entry, if any.
    pub broken: Option<Broken>,
    /// How many checkpoints were checked.
    pub checkpoints_checked: u64,
    /// The newest checkpoint that verified.
    pub latest_checkpoint: Option<v1::AuditCheckpoint>,
}
