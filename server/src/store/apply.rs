//! What one batch does to the store, shared by every backend: its
//! preconditions checked, its writes applied, its log appends numbered and
//! its audit events chained, against a [`View`] of the store inside the
//! backend's write transaction. A backend supplies the view (redb its table;
//! PostgreSQL an overlay over the rows it read under its commit lock), so
//! every backend gives a batch exactly the same meaning.

use super::{Batch, Keyspace, StoreError, Write, audit, audit_index};

/// The store as one write transaction sees it.
pub(crate) trait View {
    /// The value of `key` in `space` as this transaction sees it.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the storage fails.
    fn get(&mut self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets `key` in `space`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the storage fails.
    fn put(&mut self, space: Keyspace, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key` from `space`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the storage fails.
    fn delete(&mut self, space: Keyspace, key: &[u8]) -> Result<(), StoreError>;
}

/// The keys [`apply`] reads of `batch` (besides what it wrote itself): its
/// preconditions, the audit head when it carries audit events, and the
/// head of each log it appends to. A backend that reads ahead reads these.
pub(crate) fn reads(batch: &Batch) -> Vec<(Keyspace, Vec<u8>)> {
    let mut keys: Vec<(Keyspace, Vec<u8>)> = batch
        .expects
        .iter()
        .map(|e| (e.space, e.key.clone()))
        .collect();
    if !batch.audit.is_empty() {
        keys.push((Keyspace::Meta, audit::HEAD_KEY.to_vec()));
    }
    keys.extend(
        batch
            .logs
            .iter()
            .map(|a| (Keyspace::EventHeads, a.device.to_vec())),
    );
    keys
}

/// Applies one batch to `view`: `Ok(Err(..))` when a precondition does not
/// hold or a head is unreadable (nothing of the batch written), `Err` when
/// the storage fails (the whole transaction is lost). On success, the
/// number of the last event of each log append, in order.
pub(crate) fn apply(
    view: &mut impl View,
    batch: &Batch,
) -> Result<Result<Vec<u64>, StoreError>, StoreError> {
    for expect in &batch.expects {
        if view.get(expect.space, &expect.key)? != expect.value {
            return Ok(Err(StoreError::Conflict));
        }
    }
    // The head is read before anything is written, so a corrupt head
    // leaves the batch unwritten.
    let mut head = if batch.audit.is_empty() {
        None
    } else {
        let stored = view.get(Keyspace::Meta, audit::HEAD_KEY)?;
        match audit::Head::decode(stored.as_deref()) {
            Ok(head) => Some(head),
            Err(corrupt) => return Ok(Err(corrupt)),
        }
    };
    // The log heads too are read before anything is written; a device
    // appended to twice in one batch goes on after its first append.
    let mut starts: Vec<u64> = Vec::with_capacity(batch.logs.len());
    for (n, append) in batch.logs.iter().enumerate() {
        let earlier = batch.logs[..n]
            .iter()
            .zip(&starts)
            .rev()
            .find(|(a, _)| a.device == append.device)
            .map(|(a, start)| start + a.events.len() as u64);
        if let Some(start) = earlier {
            starts.push(start);
            continue;
        }
        let last = match view.get(Keyspace::EventHeads, &append.device)? {
            None => 0,
            Some(raw) => match <[u8; 8]>::try_from(raw.as_slice()) {
                Ok(bytes) => u64::from_be_bytes(bytes),
                Err(_) => {
                    return Ok(Err(StoreError::Corrupt {
                        space: Keyspace::EventHeads,
                        reason: "not 8 bytes".into(),
                    }));
                }
            },
        };
        starts.push(last);
    }
    for write in &batch.writes {
        match write {
            Write::Put { space, key, value } => view.put(*space, key, value)?,
            Write::Delete { space, key } => view.delete(*space, key)?,
        }
    }
    let mut lasts = Vec::with_capacity(starts.len());
    for (append, mut last) in batch.logs.iter().zip(starts) {
        for event in &append.events {
            last += 1;
            let key = [append.device.as_slice(), &last.to_be_bytes()].concat();
            view.put(Keyspace::Events, &key, event)?;
        }
        view.put(Keyspace::EventHeads, &append.device, &last.to_be_bytes())?;
        lasts.push(last);
    }
    if let Some(head) = head.as_mut() {
        for event in &batch.audit {
            let (sequence, entry, next) = head.append(event.clone());
            view.put(
                Keyspace::Audit,
                &sequence.to_be_bytes(),
                &prost::Message::encode_to_vec(&entry),
            )?;
            for index in audit_index::index_keys(event, sequence) {
                view.put(Keyspace::AuditIndex, &index, &[])?;
            }
            *head = next;
        }
        view.put(Keyspace::Meta, audit::HEAD_KEY, &head.encode())?;
    }
    Ok(Ok(lasts))
}
