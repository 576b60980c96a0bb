//! The audit trail's indexes, beside the chain (which they never change):
//!
//! - [`Keyspace::AuditIndex`]: kind + id + sequence for every family,
//!   consult and professional an event names, the acting professional
//!   included. Every backend writes it in the transaction that appends the
//!   event ([`index_keys`]), and retention removes it with the event, so a
//!   query filtered by family, consult or professional reads only the
//!   events it returns, however long the trail has grown.
//! - [`Keyspace::AuditConsultFamily`] and [`Keyspace::AuditFamilyConsults`]:
//!   which family each family consult belongs to, written when the consult
//!   is opened and kept as long as the trail. An event concerns a family
//!   when it names the family or one of its consults (ARCHITECTURE decision
//!   17); a denied probe of a consult names only the consult, and the
//!   consult's record may be gone (erased, or purged by retention) long
//!   before its events are.
//!
//! A store written before these existed is brought up to date at start by
//! [`upgrade`], before anything is served.

use std::collections::BTreeSet;

use samenop_proto::v1::{self, AuditObjectType as Object};
use uuid::Uuid;

use super::{Batch, Keyspace, Store, StoreError, audit::stored_event, scan_all};
use crate::domain::{
    consult::{ConsultId, Subject},
    family::FamilyId,
};

/// The Meta key of the store's layout version (4 bytes, big-endian).
pub const SCHEMA_KEY: &[u8] = b"schema-version";

/// The layout this server writes: 1 adds the audit indexes.
pub const SCHEMA_VERSION: u32 = 1;

/// What the id of an index entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexKind {
    /// A family an event names.
    Family,
    /// A consult an event names.
    Consult,
    /// A professional an event names, or who acted.
    Professional,
}

impl IndexKind {
    fn tag(self) -> u8 {
        match self {
            IndexKind::Family => 1,
            IndexKind::Consult => 2,
            IndexKind::Professional => 3,
        }
    }
}

/// The index prefix of the id whose bytes are `id`, as `kind`.
pub fn prefix(kind: IndexKind, id: &[u8; 16]) -> Vec<u8> {
    [[kind.tag()].as_slice(), id].concat()
}

/// The [`Keyspace::AuditIndex`] keys of `event`, appended as `sequence`.
/// Ids that are not UUIDs name nothing and are not indexed.
pub fn index_keys(event: &v1::AuditEvent, sequence: u64) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let mut add = |kind: IndexKind, id: &str| {
        if let Ok(id) = Uuid::try_parse(id) {
            let key = [prefix(kind, id.as_bytes()), sequence.to_be_bytes().to_vec()].concat();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    };
    for object in &event.objects {
        match Object::try_from(object.object_type) {
            Ok(Object::Family) => add(IndexKind::Family, &object.object_id),
            Ok(Object::Consult) => add(IndexKind::Consult, &object.object_id),
            Ok(Object::Professional) => add(IndexKind::Professional, &object.object_id),
            _ => {}
        }
    }
    if let Some(actor) = &event.actor {
        add(IndexKind::Professional, &actor.professional_id);
    }
    keys
}

/// Adds to `batch` the link of family consult `consult` to `family`.
pub fn stage_link(batch: &mut Batch, consult: ConsultId, family: FamilyId) {
    batch.put(
        Keyspace::AuditConsultFamily,
        consult.as_bytes().to_vec(),
        family.as_bytes().to_vec(),
    );
    batch.put(
        Keyspace::AuditFamilyConsults,
        [family.as_bytes().as_slice(), consult.as_bytes()].concat(),
        Vec::new(),
    );
}

/// The family of `consult`, when it was opened as a family consult.
///
/// # Errors
/// [`StoreError`] when the backend fails or the link is corrupt.
pub async fn family_of(
    store: &dyn Store,
    consult: ConsultId,
) -> Result<Option<FamilyId>, StoreError> {
    store
        .get(Keyspace::AuditConsultFamily, consult.as_bytes())
        .await?
        .map(|raw| {
            <[u8; 16]>::try_from(raw.as_slice())
                .map(FamilyId::from_bytes)
                .map_err(|_| StoreError::Corrupt {
                    space: Keyspace::AuditConsultFamily,
                    reason: "a family id is not 16 bytes".into(),
                })
        })
        .transpose()
}

/// Every consult ever opened for `family`.
///
/// # Errors
/// [`StoreError`] when the backend fails or a link is corrupt.
pub async fn consults_of(
    store: &dyn Store,
    family: FamilyId,
) -> Result<Vec<ConsultId>, StoreError> {
    scan_all(store, Keyspace::AuditFamilyConsults, family.as_bytes())
        .await?
        .iter()
        .map(|(key, _)| {
            key.get(16..)
                .and_then(|id| <[u8; 16]>::try_from(id).ok())
                .map(ConsultId::from_bytes)
                .ok_or_else(|| StoreError::Corrupt {
                    space: Keyspace::AuditFamilyConsults,
                    reason: "a key is not family id + consult id".into(),
                })
        })
        .collect()
}

/// Up to `limit` sequences above `after` of the events indexed under any of
/// `prefixes`, in order.
///
/// # Errors
/// [`StoreError`] when the backend fails or an index key is corrupt.
pub async fn sequences(
    store: &dyn Store,
    prefixes: &[Vec<u8>],
    after: u64,
    limit: usize,
) -> Result<Vec<u64>, StoreError> {
    let mut found = BTreeSet::new();
    for prefix in prefixes {
        let from = [prefix.as_slice(), &after.to_be_bytes()].concat();
        for (key, _) in store
            .scan(Keyspace::AuditIndex, prefix, Some(&from), limit)
            .await?
        {
            let sequence = key
                .get(17..)
                .and_then(|raw| <[u8; 8]>::try_from(raw).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt {
                    space: Keyspace::AuditIndex,
                    reason: "a key is not kind + id + sequence".into(),
                })?;
            found.insert(sequence);
        }
    }
    Ok(found.into_iter().take(limit).collect())
}

/// How many index entries a walk reads from one prefix at a time.
const WALK_STEP: usize = 128;

/// A walk through the audit index under several prefixes at once (a
/// family and its consults), in sequence order, each event once. Each
/// prefix is read in steps of its own and the steps are merged, so a walk
/// costs what it returns plus a read per prefix and step, however many
/// prefixes it has.
#[derive(Debug)]
pub struct IndexWalk {
    /// Per prefix: read but not yet returned, where reading goes on, and
    /// whether the prefix has no more.
    sources: Vec<(Vec<u8>, std::collections::VecDeque<u64>, u64, bool)>,
    /// The last sequence returned (or the walk's start).
    last: u64,
}

impl IndexWalk {
    /// A walk under `prefixes` (see [`prefix`]) through the events after
    /// sequence `after`.
    pub fn new(prefixes: &[Vec<u8>], after: u64) -> Self {
        IndexWalk {
            sources: prefixes
                .iter()
                .map(|p| (p.clone(), Default::default(), after, false))
                .collect(),
            last: after,
        }
    }

    /// Up to `limit` more sequences, in order, each once.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or an index key is corrupt.
    pub async fn next(&mut self, store: &dyn Store, limit: usize) -> Result<Vec<u64>, StoreError> {
        let mut found = Vec::new();
        while found.len() < limit {
            // Every prefix has its next sequence at hand, or has no more:
            // the smallest of them is the walk's next.
            for (prefix, pending, after, done) in &mut self.sources {
                if pending.is_empty() && !*done {
                    let step =
                        sequences(store, std::slice::from_ref(prefix), *after, WALK_STEP).await?;
                    *done = step.len() < WALK_STEP;
                    *after = step.last().copied().unwrap_or(*after);
                    pending.extend(step);
                }
            }
            let next = self
                .sources
                .iter_mut()
                .filter(|source| !source.1.is_empty())
                .min_by_key(|source| source.1.front().copied());
            let Some(sequence) = next.and_then(|source| source.1.pop_front()) else {
                break;
            };
            // An event named under two prefixes comes once.
            if sequence > self.last {
                self.last = sequence;
                found.push(sequence);
            }
        }
        Ok(found)
    }
}

/// Adds to `batch` the removal of the index entries of the stored event
/// `raw` (for retention, which removes the event); returns the consults it
/// named.
///
/// # Errors
/// [`StoreError::Corrupt`] when the entry cannot be read.
pub fn stage_unindex(batch: &mut Batch, raw: &[u8]) -> Result<Vec<ConsultId>, StoreError> {
    let event = stored_event(raw)?;
    let mut consults = Vec::new();
    for key in index_keys(&event, event.sequence) {
        if key.first() == Some(&IndexKind::Consult.tag())
            && let Some(id) = key.get(1..17).and_then(|id| <[u8; 16]>::try_from(id).ok())
        {
            consults.push(ConsultId::from_bytes(id));
        }
        batch.delete(Keyspace::AuditIndex, key);
    }
    Ok(consults)
}

/// The consult and family of an allowed OpenConsult's event: how a store
/// written before the links knows the family of a consult whose record is
/// gone (erased or purged) while its events remain.
fn opened(event: &v1::AuditEvent) -> Option<(ConsultId, FamilyId)> {
    if event.action != "samenop.v1.ConsultService/OpenConsult"
        || event.outcome != v1::AuditOutcome::Allowed as i32
    {
        return None;
    }
    let only = |kind: Object| {
        let mut named = event
            .objects
            .iter()
            .filter(|o| o.object_type == kind as i32);
        let first = named.next()?;
        named
            .next()
            .is_none()
            .then(|| Uuid::try_parse(&first.object_id).ok())?
    };
    let consult = ConsultId::from_bytes(*only(Object::Consult)?.as_bytes());
    let family = FamilyId::from_bytes(*only(Object::Family)?.as_bytes());
    Some((consult, family))
}

/// Brings a store written by an older server up to [`SCHEMA_VERSION`]:
/// indexes every event of the chain and links every family consult, from
/// its record or, when that is gone, from the event of its opening.
/// Idempotent; returns whether there was anything to do.
///
/// # Errors
/// [`StoreError`] when the backend fails or a record is corrupt.
pub async fn upgrade(store: &std::sync::Arc<dyn Store>) -> Result<bool, StoreError> {
    const STEP: usize = 1000;
    let current = store.get(Keyspace::Meta, SCHEMA_KEY).await?;
    let version = current
        .as_deref()
        .and_then(|raw| <[u8; 4]>::try_from(raw).ok())
        .map_or(0, u32::from_be_bytes);
    if version >= SCHEMA_VERSION {
        return Ok(false);
    }
    let mut after: Option<Vec<u8>> = None;
    loop {
        let entries = store
            .scan(Keyspace::Audit, b"", after.as_deref(), STEP)
            .await?;
        let done = entries.len() < STEP;
        let mut batch = Batch::new();
        for (key, raw) in &entries {
            after = Some(key.clone());
            // An entry that does not decode is for verification to report;
            // it must not keep the server from starting.
            let Ok(event) = stored_event(raw) else {
                tracing::warn!("an audit entry does not decode; it is left unindexed");
                continue;
            };
            for index in index_keys(&event, event.sequence) {
                batch.put(Keyspace::AuditIndex, index, Vec::new());
            }
            if let Some((consult, family)) = opened(&event) {
                stage_link(&mut batch, consult, family);
            }
        }
        store.commit(batch).await?;
        if done {
            break;
        }
    }
    let mut batch = Batch::new();
    for consult in super::consults::Consults::new(store.clone()).all().await? {
        if let Subject::Family { family, .. } = consult.subject {
            stage_link(&mut batch, consult.id, family);
        }
    }
    batch.expect(Keyspace::Meta, SCHEMA_KEY, current);
    batch.put(
        Keyspace::Meta,
        SCHEMA_KEY,
        SCHEMA_VERSION.to_be_bytes().to_vec(),
    );
    store.commit(batch).await?;
    Ok(true)
}

/// What a filtered reader gets from one step through the index.
#[derive(Debug, Default)]
pub struct Step {
    /// The events found, in order.
    pub events: Vec<v1::AuditEvent>,
    /// The last sequence read: where the next step starts.
    pub after: u64,
    /// Whether nothing is left after this step.
    pub done: bool,
}

impl super::audit::Trail {
    /// The stored event `sequence`, when it is still there.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the entry is corrupt.
    pub async fn event(&self, sequence: u64) -> Result<Option<v1::AuditEvent>, StoreError> {
        self.store
            .get(Keyspace::Audit, &sequence.to_be_bytes())
            .await?
            .map(|raw| stored_event(&raw))
            .transpose()
    }

    /// Up to `limit` more events of `walk`, in order.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a record is corrupt.
    pub async fn indexed(&self, walk: &mut IndexWalk, limit: usize) -> Result<Step, StoreError> {
        let found = walk.next(self.store.as_ref(), limit).await?;
        let mut step = Step {
            after: walk.last,
            done: found.len() < limit,
            events: Vec::with_capacity(found.len()),
        };
        for sequence in found {
            // An entry removed by retention in the meantime is simply gone.
            if let Some(event) = self.event(sequence).await? {
                step.events.push(event);
            }
        }
        Ok(step)
    }

    /// The index prefixes of a family's events: the family and every
    /// consult ever opened for it.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a link is corrupt.
    pub async fn family_prefixes(
        &self,
        family: FamilyId,
    ) -> Result<(Vec<Vec<u8>>, Vec<ConsultId>), StoreError> {
        let consults = consults_of(self.store.as_ref(), family).await?;
        let prefixes = std::iter::once(prefix(IndexKind::Family, family.as_bytes()))
            .chain(
                consults
                    .iter()
                    .map(|c| prefix(IndexKind::Consult, c.as_bytes())),
            )
            .collect();
        Ok((prefixes, consults))
    }

    /// Adds to `batch` the removal of the family links of those of
    /// `consults` that no event after `base` names and whose record is
    /// gone: the last trace of which family they belonged to, for a
    /// retention purge that removes the events up to `base`.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a link is corrupt.
    pub(super) async fn stage_forget_links(
        &self,
        batch: &mut Batch,
        consults: std::collections::BTreeSet<ConsultId>,
        base: u64,
    ) -> Result<(), StoreError> {
        for consult in consults {
            let named = prefix(IndexKind::Consult, consult.as_bytes());
            if !sequences(self.store.as_ref(), &[named], base, 1)
                .await?
                .is_empty()
                || self
                    .store
                    .get(Keyspace::Consults, consult.as_bytes())
                    .await?
                    .is_some()
            {
                continue;
            }
            if let Some(family) = family_of(self.store.as_ref(), consult).await? {
                batch.delete(Keyspace::AuditConsultFamily, consult.as_bytes().to_vec());
                batch.delete(
                    Keyspace::AuditFamilyConsults,
                    [family.as_bytes().as_slice(), consult.as_bytes()].concat(),
                );
            }
        }
        Ok(())
    }

    /// The family consult `consult` was opened for, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the link is corrupt.
    pub async fn family_of(&self, consult: ConsultId) -> Result<Option<FamilyId>, StoreError> {
        family_of(self.store.as_ref(), consult).await
    }
}
