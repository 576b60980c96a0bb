//! Storage: the [`Store`] trait that every backend implements, and the typed
//! record layer on top of it.
//!
//! A backend is an ordered key-value store split into [`Keyspace`]s. A change
//! is one [`Batch`]: its preconditions are checked and its writes applied
//! atomically, and [`Store::commit`] returns only once the batch is durable.
//! Records are protobuf messages with a schema version ([`records`]); the
//! typed operations that keep records and their indexes together live in
//! [`directory`]. The contract tests in `contract` run against every backend.

mod apply;
pub mod attachments;
pub mod audit;
pub mod audit_index;
pub mod consults;
pub mod directory;
pub mod families;
pub mod postgres;
pub mod records;
pub mod redb;
pub mod threads;

#[cfg(test)]
mod contract;

use async_trait::async_trait;

/// A separate key range of the store. Keys of different keyspaces never meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Keyspace {
    /// Professionals by id.
    Professionals,
    /// Index: organisation OIN + professional id → nothing.
    ProfessionalsByOrganisation,
    /// Index: professional id of every specialist → nothing.
    Specialists,
    /// Index: expertise code + professional id → nothing.
    SpecialistsByExpertise,
    /// Devices by id.
    Devices,
    /// Index: professional id + device id → nothing.
    DevicesByProfessional,
    /// Professional id → version of their device set (u64, big-endian),
    /// bumped by every device registration and checked by deactivation.
    DeviceSets,
    /// Families by id.
    Families,
    /// Consents by id.
    Consents,
    /// Index: family id + consent id → nothing.
    ConsentsByFamily,
    /// Consults by id (UUIDv7 of the request time: a scan is by time).
    Consults,
    /// Index: owner id + consult id → nothing.
    ConsultsByOwner,
    /// Index: family id + consult id → nothing.
    ConsultsByFamily,
    /// Index: specialist id + consult id → nothing, for every specialist
    /// ever invited to, addressed by, or taking part in a consult.
    ConsultsBySpecialist,
    /// Index: expertise code + consult id → nothing, for pool requests
    /// still REQUESTED.
    PoolRequests,
    /// Index: consent id + consult id → nothing.
    ConsultsByConsent,
    /// The audit chain: sequence number (8 bytes, big-endian) → entry.
    Audit,
    /// Thread heads: consult id → epoch + last sequence (8 + 8 bytes).
    Threads,
    /// Thread messages: consult id + sequence (8 bytes, big-endian) → entry.
    ThreadEntries,
    /// Answers of accepted posts: consult id + request id → epoch + sequence.
    ThreadRequests,
    /// Welcome messages: consult id + device id → the Welcome that added it.
    Welcomes,
    /// One-time MLS key packages: device id + UUIDv7 → key package.
    KeyPackages,
    /// Last-resort MLS key packages: device id → key package.
    LastResortKeyPackages,
    /// Device event logs: device id + number (8 bytes, big-endian) → event.
    Events,
    /// Device event-log heads: device id → last number (8 bytes).
    EventHeads,
    /// Index: respond-by time (ms, 8 bytes, big-endian) + consult id →
    /// nothing, for consults still REQUESTED: what the expiry sweep reads.
    ConsultDeadlines,
    /// Index: valid-until time (ms, 8 bytes, big-endian) + consent id →
    /// nothing, for consents not revoked and not yet swept: the sweep
    /// suspends the consults resting on each once it has passed.
    ConsentDeadlines,
    /// Thread attachments: consult id + attachment id → record.
    Attachments,
    /// Encrypted attachment bytes: attachment id + chunk index (8 bytes,
    /// big-endian) → bytes.
    AttachmentChunks,
    /// Signed audit checkpoints: sequence (8 bytes, big-endian) → encoded
    /// `v1::AuditCheckpoint`.
    AuditCheckpoints,
    /// Index of the audit chain: kind (1 byte: [`audit_index::IndexKind`]) + id
    /// (16 bytes) + sequence (8 bytes, big-endian) → nothing, for every
    /// family, consult and professional an event names (the acting
    /// professional too). Written with the event, removed with it by
    /// retention, so a filtered query reads only the events it returns.
    AuditIndex,
    /// Consult id → family id, for every family consult ever opened: whose
    /// events a consult's events are, kept as long as the audit trail
    /// (a consult's record goes before its events do).
    AuditConsultFamily,
    /// Index: family id + consult id → nothing, the same links the other
    /// way: the consults whose events belong to a family's history.
    AuditFamilyConsults,
    /// Uploads in progress: start time (ms, 8 bytes, big-endian) +
    /// attachment id → consult id. Written before an upload's first chunk,
    /// removed with its record or its failure; what a crash leaves behind is
    /// found by time and its chunks purged.
    Uploads,
    /// Device id → the number up to which the device's event log was
    /// trimmed (8 bytes, big-endian).
    EventTrims,
    /// Store metadata (schema version).
    Meta,
}

impl Keyspace {
    /// Every keyspace, in declaration order.
    pub const ALL: [Keyspace; 36] = [
        Keyspace::Professionals,
        Keyspace::ProfessionalsByOrganisation,
        Keyspace::Specialists,
        Keyspace::SpecialistsByExpertise,
        Keyspace::Devices,
        Keyspace::DevicesByProfessional,
        Keyspace::DeviceSets,
        Keyspace::Families,
        Keyspace::Consents,
        Keyspace::ConsentsByFamily,
        Keyspace::Consults,
        Keyspace::ConsultsByOwner,
        Keyspace::ConsultsByFamily,
        Keyspace::ConsultsBySpecialist,
        Keyspace::PoolRequests,
        Keyspace::ConsultsByConsent,
        Keyspace::Audit,
        Keyspace::Threads,
        Keyspace::ThreadEntries,
        Keyspace::ThreadRequests,
        Keyspace::Welcomes,
        Keyspace::KeyPackages,
        Keyspace::LastResortKeyPackages,
        Keyspace::Events,
        Keyspace::EventHeads,
        Keyspace::ConsultDeadlines,
        Keyspace::ConsentDeadlines,
        Keyspace::Attachments,
        Keyspace::AttachmentChunks,
        Keyspace::AuditCheckpoints,
        Keyspace::AuditIndex,
        Keyspace::AuditConsultFamily,
        Keyspace::AuditFamilyConsults,
        Keyspace::Uploads,
        Keyspace::EventTrims,
        Keyspace::Meta,
    ];

    /// The keyspace's name in snake case: a PostgreSQL table's name.
    pub fn name(self) -> &'static str {
        match self {
            Keyspace::Professionals => "professionals",
            Keyspace::ProfessionalsByOrganisation => "professionals_by_organisation",
            Keyspace::Specialists => "specialists",
            Keyspace::SpecialistsByExpertise => "specialists_by_expertise",
            Keyspace::Devices => "devices",
            Keyspace::DevicesByProfessional => "devices_by_professional",
            Keyspace::DeviceSets => "device_sets",
            Keyspace::Families => "families",
            Keyspace::Consents => "consents",
            Keyspace::ConsentsByFamily => "consents_by_family",
            Keyspace::Consults => "consults",
            Keyspace::ConsultsByOwner => "consults_by_owner",
            Keyspace::ConsultsByFamily => "consults_by_family",
            Keyspace::ConsultsBySpecialist => "consults_by_specialist",
            Keyspace::PoolRequests => "pool_requests",
            Keyspace::ConsultsByConsent => "consults_by_consent",
            Keyspace::Audit => "audit",
            Keyspace::Threads => "threads",
            Keyspace::ThreadEntries => "thread_entries",
            Keyspace::ThreadRequests => "thread_requests",
            Keyspace::Welcomes => "welcomes",
            Keyspace::KeyPackages => "key_packages",
            Keyspace::LastResortKeyPackages => "last_resort_key_packages",
            Keyspace::Events => "events",
            Keyspace::EventHeads => "event_heads",
            Keyspace::ConsultDeadlines => "consult_deadlines",
            Keyspace::ConsentDeadlines => "consent_deadlines",
            Keyspace::Attachments => "attachments",
            Keyspace::AttachmentChunks => "attachment_chunks",
            Keyspace::AuditCheckpoints => "audit_checkpoints",
            Keyspace::AuditIndex => "audit_index",
            Keyspace::AuditConsultFamily => "audit_consult_family",
            Keyspace::AuditFamilyConsults => "audit_family_consults",
            Keyspace::Uploads => "uploads",
            Keyspace::EventTrims => "event_trims",
            Keyspace::Meta => "meta",
        }
    }

    /// The byte that prefixes every key of the keyspace in a single-tree backend.
    pub fn tag(self) -> u8 {
        match self {
            Keyspace::Meta => 0,
            Keyspace::Professionals => 1,
            Keyspace::ProfessionalsByOrganisation => 2,
            Keyspace::Specialists => 3,
            Keyspace::SpecialistsByExpertise => 4,
            Keyspace::Devices => 5,
            Keyspace::DevicesByProfessional => 6,
            Keyspace::DeviceSets => 7,
            Keyspace::Families => 8,
            Keyspace::Consents => 9,
            Keyspace::ConsentsByFamily => 10,
            Keyspace::Consults => 11,
            Keyspace::ConsultsByOwner => 12,
            Keyspace::ConsultsByFamily => 13,
            Keyspace::ConsultsBySpecialist => 14,
            Keyspace::PoolRequests => 15,
            Keyspace::ConsultsByConsent => 16,
            Keyspace::Audit => 17,
            Keyspace::Threads => 18,
            Keyspace::ThreadEntries => 19,
            Keyspace::ThreadRequests => 20,
            Keyspace::Welcomes => 21,
            Keyspace::KeyPackages => 22,
            Keyspace::LastResortKeyPackages => 23,
            Keyspace::Events => 24,
            Keyspace::EventHeads => 25,
            Keyspace::ConsultDeadlines => 26,
            Keyspace::ConsentDeadlines => 27,
            Keyspace::Attachments => 28,
            Keyspace::AttachmentChunks => 29,
            Keyspace::AuditCheckpoints => 30,
            Keyspace::AuditIndex => 31,
            Keyspace::AuditConsultFamily => 32,
            Keyspace::AuditFamilyConsults => 33,
            Keyspace::Uploads => 34,
            Keyspace::EventTrims => 35,
        }
    }
}

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Sets `key` to `value`.
    Put {
        /// The keyspace.
        space: Keyspace,
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Removes `key` (no effect when absent).
    Delete {
        /// The keyspace.
        space: Keyspace,
        /// The key.
        key: Vec<u8>,
    },
}

/// A precondition of a batch: `key` holds exactly `value` (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The keyspace.
    pub space: Keyspace,
    /// The key.
    pub key: Vec<u8>,
    /// The value the key must hold when the batch applies.
    pub value: Option<Vec<u8>>,
}

/// An atomic change: every precondition holds and every write applies, or
/// nothing happens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Checked first, all together with the writes.
    pub expects: Vec<Expect>,
    /// Applied in order.
    pub writes: Vec<Write>,
    /// Audit events, appended to the audit chain in the same transaction,
    /// in order (their sequence and hashes are set then).
    pub audit: Vec<samenop_proto::v1::AuditEvent>,
    /// Events appended to device logs, numbered in the same transaction
    /// after each log's head as it is then: appends never conflict, so
    /// changes that reach the same devices (a specialist's device is in
    /// every consult it takes part in) commit side by side.
    pub logs: Vec<LogAppend>,
}

/// Events for the end of one device's event log (keyspaces
/// [`Keyspace::Events`] and [`Keyspace::EventHeads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogAppend {
    /// The device (its id's bytes).
    pub device: [u8; 16],
    /// The encoded events, in order.
    pub events: Vec<Vec<u8>>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, space: Keyspace, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.writes.push(Write::Put {
            space,
            key: key.into(),
            value,
        });
    }

    /// Adds a delete.
    pub fn delete(&mut self, space: Keyspace, key: impl Into<Vec<u8>>) {
        self.writes.push(Write::Delete {
            space,
            key: key.into(),
        });
    }

    /// Adds an audit event, appended to the chain with the batch.
    pub fn audit(&mut self, event: samenop_proto::v1::AuditEvent) {
        self.audit.push(event);
    }

    /// Adds events to the end of `device`'s log; their numbers are given
    /// when the batch commits (see [`Store::commit_logged`]).
    pub fn append_log(&mut self, device: [u8; 16], events: Vec<Vec<u8>>) {
        self.logs.push(LogAppend { device, events });
    }

    /// Whether every precondition outside `ignore` still holds in `store`:
    /// after a [`StoreError::Conflict`], tells a moved record the caller
    /// read apart from a moved head it can simply read again.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the backend fails.
    pub async fn holds_apart_from(
        &self,
        store: &dyn Store,
        ignore: Keyspace,
    ) -> Result<bool, StoreError> {
        for expect in self.expects.iter().filter(|e| e.space != ignore) {
            if store.get(expect.space, &expect.key).await? != expect.value {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Adds a precondition.
    pub fn expect(&mut self, space: Keyspace, key: impl Into<Vec<u8>>, value: Option<Vec<u8>>) {
        self.expects.push(Expect {
            space,
            key: key.into(),
            value,
        });
    }
}

/// What a backend's writer measures, under the same names for every
/// backend: each write transaction's time to durable commit, how many
/// batches it carried (the group commit's group), and how many it made
/// durable.
#[derive(Clone)]
pub(crate) struct CommitMetrics {
    /// Seconds from the transaction's start to its commit's return.
    pub(crate) commit_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Batches per transaction.
    pub(crate) group_size: prometheus_client::metrics::histogram::Histogram,
    /// Transactions committed durably (each one `fdatasync` or more).
    pub(crate) syncs: prometheus_client::metrics::counter::Counter,
}

impl CommitMetrics {
    pub(crate) fn new() -> Self {
        use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
        CommitMetrics {
            // 20 µs to about 20 s.
            commit_seconds: Histogram::new(exponential_buckets(0.000_02, 2.0, 21)),
            group_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            syncs: prometheus_client::metrics::counter::Counter::default(),
        }
    }

    /// Registers the three series in `registry`.
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "samenop_store_commit_seconds",
            "Time of one write transaction of the store, from its start to its durable commit",
            self.commit_seconds.clone(),
        );
        registry.register(
            "samenop_store_commit_batches",
            "Batches carried by one write transaction (group commit)",
            self.group_size.clone(),
        );
        registry.register(
            "samenop_store_syncs",
            "Write transactions committed durably (each one fdatasync at least)",
            self.syncs.clone(),
        );
    }
}

/// Every entry under `prefix` in `space`, read in steps (for erasure and
/// retention, which must see all of them).
///
/// # Errors
/// [`StoreError::Backend`] when the backend fails.
pub async fn scan_all(
    store: &dyn Store,
    space: Keyspace,
    prefix: &[u8],
) -> Result<Vec<Entry>, StoreError> {
    const STEP: usize = 1024;
    let mut all: Vec<Entry> = Vec::new();
    loop {
        let after = all.last().map(|(key, _)| key.clone());
        let entries = store.scan(space, prefix, after.as_deref(), STEP).await?;
        let done = entries.len() < STEP;
        all.extend(entries);
        if done {
            return Ok(all);
        }
    }
}

/// Copies every entry of every keyspace of `from` into `to`, which must be
/// empty: how a deployment moves from one backend to another (with the
/// server stopped). Answers how many entries each keyspace had.
///
/// # Errors
/// [`StoreError::Backend`] when `to` is not empty or either store fails.
pub async fn copy_all(
    from: &dyn Store,
    to: &dyn Store,
) -> Result<Vec<(Keyspace, u64)>, StoreError> {
    // Pages stay small: an attachment's chunks are large.
    const PAGE: usize = 64;
    for space in Keyspace::ALL {
        if !to.scan(space, b"", None, 1).await?.is_empty() {
            return Err(StoreError::Backend(format!(
                "the target store is not empty ({} has entries): copy into an empty one",
                space.name()
            )));
        }
    }
    let mut counts = Vec::with_capacity(Keyspace::ALL.len());
    for space in Keyspace::ALL {
        let mut copied = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = from.scan(space, b"", after.as_deref(), PAGE).await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.clone());
            let full = page.len() == PAGE;
            copied += page.len() as u64;
            let mut batch = Batch::new();
            for (key, value) in page {
                batch.put(space, key, value);
            }
            to.commit(batch).await?;
            if !full {
                break;
            }
        }
        counts.push((space, copied));
    }
    Ok(counts)
}

/// A key and its value, as a scan returns them.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A precondition of the batch did not hold; nothing was written.
    #[error("a precondition of the change did not hold")]
    Conflict,
    /// A stored record could not be decoded.
    #[error("stored record in {space:?} is corrupt: {reason}")]
    Corrupt {
        /// Where the record is.
        space: Keyspace,
        /// What is wrong.
        reason: String,
    },
    /// The backend failed (I/O, database).
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// The backend cannot be reached now (a database restarting, a lost
    /// connection); nothing of the call was written, and it may be retried.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// An ordered, durable key-value store with atomic, conditional batches.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the backend fails.
    async fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Reads up to `limit` entries whose key starts with `prefix`, in key
    /// order, beginning after `after` (a full key) when given.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the backend fails.
    async fn scan(
        &self,
        space: Keyspace,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// Applies a batch atomically and returns once it is durable. Its audit
    /// bodies are appended to the audit chain in the same transaction.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a precondition fails (nothing written),
    /// [`StoreError::Backend`] when the backend fails.
    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.commit_logged(batch).await.map(drop)
    }

    /// Like [`Store::commit`], answering the number of the last event of
    /// each log append of the batch, in the order of [`Batch::logs`].
    ///
    /// # Errors
    /// As [`Store::commit`].
    async fn commit_logged(&self, batch: Batch) -> Result<Vec<u64>, StoreError>;

    /// Makes everything committed so far durable (used at shutdown).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the backend fails.
    async fn flush(&self) -> Result<(), StoreError>;

    /// Reads several keys of one keyspace: each one's value, in order.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the backend fails.
    async fn get_many(
        &self,
        space: Keyspace,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(space, key).await?);
        }
        Ok(values)
    }

    /// Whether this process should do the periodic work `name` now: true
    /// for at most one process sharing the store per `period`. A store only
    /// one process writes always says true.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`] when the
    /// backend cannot be asked.
    async fn lease(&self, name: &str, period: std::time::Duration) -> Result<bool, StoreError> {
        let _ = (name, period);
        Ok(true)
    }

    /// Changes whenever another process sharing the store may have appended
    /// to device logs (and at least every few seconds, so a lost wake-up
    /// only delays); `None` for a store only this process writes.
    fn others_appended(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Registers the backend's own metrics (commit latency, group sizes,
    /// syncs) in `registry`; none by default.
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let _ = registry;
    }
}
