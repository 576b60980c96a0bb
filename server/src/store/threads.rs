//! Typed storage of threads, key packages and per-device event logs.
//!
//! A thread is the ordered list of a consult's MLS messages: its head
//! (current epoch and last sequence) is the precondition of every append, so
//! sequences stay gapless and a commit lands only on the epoch it was made
//! for. Every stored message and Welcome also appends an event to the log of
//! each device that should see it, in the same batch, under a precondition on
//! that device's log head: a subscriber reading the log after its cursor
//! never misses an event that commits later with a smaller number.
//!
//! Values hold only what the server may know: TLS-serialised MLS messages are
//! opaque bytes, and events refer to thread entries instead of copying them.

use std::sync::Arc;

use prost::Message;
use samenop_proto::v1;

use super::{Batch, Entry, Keyspace, Store, StoreError, records::corrupt};
use crate::domain::{DeviceId, consult::ConsultId};

/// The head of a thread: its epoch and its last sequence (0: empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadHead {
    /// The group's current epoch, as the server accepted commits.
    pub epoch: u64,
    /// The sequence of the last stored message.
    pub last_sequence: u64,
}

impl ThreadHead {
    fn encode(self) -> Vec<u8> {
        [self.epoch.to_be_bytes(), self.last_sequence.to_be_bytes()].concat()
    }

    fn decode(raw: &[u8]) -> Result<Self, StoreError> {
        let bad = || corrupt(Keyspace::Threads, "thread head is not 16 bytes");
        let epoch = raw.get(..8).ok_or_else(bad)?;
        let last = raw.get(8..16).ok_or_else(bad)?;
        Ok(ThreadHead {
            epoch: u64_be(epoch).ok_or_else(bad)?,
            last_sequence: u64_be(last).ok_or_else(bad)?,
        })
    }
}

fn u64_be(raw: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(raw).ok().map(u64::from_be_bytes)
}

/// What is held of one thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadSummary {
    /// Messages (commits and application messages).
    pub messages: u64,
    /// Their stored bytes.
    pub bytes: u64,
    /// When the first was posted.
    pub first_posted_at: Option<prost_types::Timestamp>,
    /// When the last was posted.
    pub last_posted_at: Option<prost_types::Timestamp>,
}

/// A thread's head as read: the precondition of the next append.
#[derive(Debug, Clone)]
pub struct ReadHead {
    /// The consult.
    consult: ConsultId,
    /// The stored bytes (`None` for a thread never written).
    raw: Option<Vec<u8>>,
    /// The decoded head.
    pub head: ThreadHead,
}

/// What an accepted post answered: kept under its request id so a repeated
/// post returns the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The stored message's sequence.
    pub sequence: u64,
    /// The epoch it was accepted in (for a commit: the epoch after it).
    pub epoch: u64,
}

/// An event of a device's log as stored: a [`v1::SubscribeResponse`]
/// without its cursor, whose thread entry carries only consult id and
/// sequence (the message is read from the thread at delivery).
pub type StoredEvent = v1::SubscribeResponse;

/// A device's event-log head as read.
#[derive(Debug, Clone)]
pub struct LogHead {
    /// The device.
    pub device: DeviceId,
    /// The number of the last event (0: none).
    pub last: u64,
}

/// The most one-time key packages the server holds per device.
pub const KEY_PACKAGES_MAX: usize = 100;

/// Thread, key package and event storage over any [`Store`].
#[derive(Clone)]
pub struct Threads {
    /// The backend.
    store: Arc<dyn Store>,
}

fn seq_key(consult: ConsultId, sequence: u64) -> Vec<u8> {
    [consult.as_bytes().as_slice(), &sequence.to_be_bytes()].concat()
}

fn pair_key(first: &[u8; 16], second: &[u8; 16]) -> Vec<u8> {
    [first.as_slice(), second.as_slice()].concat()
}

impl Threads {
    /// Thread storage on `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Threads { store }
    }

    /// Reads a thread's head.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the head is corrupt.
    pub async fn head(&self, consult: ConsultId) -> Result<ReadHead, StoreError> {
        let raw = self
            .store
            .get(Keyspace::Threads, consult.as_bytes())
            .await?;
        let head = match &raw {
            Some(raw) => ThreadHead::decode(raw)?,
            None => ThreadHead::default(),
        };
        Ok(ReadHead { consult, raw, head })
    }

    /// The answer given to an earlier post with `request_id`, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the record is corrupt.
    pub async fn accepted(
        &self,
        consult: ConsultId,
        request_id: &uuid::Uuid,
    ) -> Result<Option<Accepted>, StoreError> {
        let key = pair_key(consult.as_bytes(), request_id.as_bytes());
        let Some(raw) = self.store.get(Keyspace::ThreadRequests, &key).await? else {
            return Ok(None);
        };
        let head = ThreadHead::decode(&raw)
            .map_err(|_| corrupt(Keyspace::ThreadRequests, "answer is not 16 bytes"))?;
        Ok(Some(Accepted {
            epoch: head.epoch,
            sequence: head.last_sequence,
        }))
    }

    /// Adds to `batch` the append of `entry` (its sequence and epoch already
    /// set) on top of `read`, moving the thread to `epoch_after`, and records
    /// the answer under `request_id`. Conflicts when the head moved or the
    /// request id was used meanwhile.
    pub fn stage_append(
        &self,
        batch: &mut Batch,
        read: &ReadHead,
        entry: &v1::ThreadEntry,
        epoch_after: u64,
        request_id: &uuid::Uuid,
    ) {
        let head_key = read.consult.as_bytes().to_vec();
        batch.expect(Keyspace::Threads, head_key.clone(), read.raw.clone());
        let new = ThreadHead {
            epoch: epoch_after,
            last_sequence: entry.sequence,
        };
        batch.put(Keyspace::Threads, head_key, new.encode());
        batch.put(
            Keyspace::ThreadEntries,
            seq_key(read.consult, entry.sequence),
            entry.encode_to_vec(),
        );
        let request_key = pair_key(read.consult.as_bytes(), request_id.as_bytes());
        batch.expect(Keyspace::ThreadRequests, request_key.clone(), None);
        batch.put(Keyspace::ThreadRequests, request_key, new.encode());
    }

    /// Up to `limit` entries of a thread from sequence `from` on, in order.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or an entry is corrupt.
    pub async fn entries(
        &self,
        consult: ConsultId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<v1::ThreadEntry>, StoreError> {
        let after = from.checked_sub(1).map(|before| seq_key(consult, before));
        let raw = self
            .store
            .scan(
                Keyspace::ThreadEntries,
                consult.as_bytes(),
                after.as_deref(),
                limit,
            )
            .await?;
        raw.into_iter()
            .map(|(_, value)| {
                v1::ThreadEntry::decode(value.as_slice())
                    .map_err(|e| corrupt(Keyspace::ThreadEntries, e.to_string()))
            })
            .collect()
    }

    /// One entry of a thread.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the entry is corrupt.
    pub async fn entry(
        &self,
        consult: ConsultId,
        sequence: u64,
    ) -> Result<Option<v1::ThreadEntry>, StoreError> {
        let Some(raw) = self
            .store
            .get(Keyspace::ThreadEntries, &seq_key(consult, sequence))
            .await?
        else {
            return Ok(None);
        };
        v1::ThreadEntry::decode(raw.as_slice())
            .map(Some)
            .map_err(|e| corrupt(Keyspace::ThreadEntries, e.to_string()))
    }

    /// Adds to `batch` a Welcome for one device (replacing an older one of
    /// the same thread, from before the device was removed and added again).
    pub fn stage_welcome(
        &self,
        batch: &mut Batch,
        consult: ConsultId,
        welcome: &v1::WelcomeMessage,
        device: DeviceId,
    ) {
        batch.put(
            Keyspace::Welcomes,
            pair_key(consult.as_bytes(), device.as_bytes()),
            welcome.encode_to_vec(),
        );
    }

    /// Adds to `batch` that `device` no longer has a Welcome to a thread:
    /// its professional stopped taking part, and a later return starts
    /// from the Welcome that adds it again.
    pub fn stage_forget_welcome(&self, batch: &mut Batch, consult: ConsultId, device: DeviceId) {
        batch.delete(
            Keyspace::Welcomes,
            pair_key(consult.as_bytes(), device.as_bytes()),
        );
    }

    /// The Welcome that added `device` to a thread's group, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the record is corrupt.
    pub async fn welcome(
        &self,
        consult: ConsultId,
        device: DeviceId,
    ) -> Result<Option<v1::WelcomeMessage>, StoreError> {
        let key = pair_key(consult.as_bytes(), device.as_bytes());
        let Some(raw) = self.store.get(Keyspace::Welcomes, &key).await? else {
            return Ok(None);
        };
        v1::WelcomeMessage::decode(raw.as_slice())
            .map(Some)
            .map_err(|e| corrupt(Keyspace::Welcomes, e.to_string()))
    }

    /// The one-time key packages held for a device, oldest first (at most
    /// `limit`).
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    pub async fn key_packages(
        &self,
        device: DeviceId,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.store
            .scan(Keyspace::KeyPackages, device.as_bytes(), None, limit)
            .await
    }

    /// A device's last-resort key package, if it uploaded one.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    pub async fn last_resort(&self, device: DeviceId) -> Result<Option<Vec<u8>>, StoreError> {
        self.store
            .get(Keyspace::LastResortKeyPackages, device.as_bytes())
            .await
    }

    /// Adds to `batch` new one-time key packages for a device (in order) and
    /// optionally its new last-resort one.
    pub fn stage_key_packages(
        &self,
        batch: &mut Batch,
        device: DeviceId,
        one_time: &[Vec<u8>],
        last_resort: Option<&[u8]>,
    ) {
        for package in one_time {
            let id = uuid::Uuid::now_v7();
            batch.put(
                Keyspace::KeyPackages,
                pair_key(device.as_bytes(), id.as_bytes()),
                package.clone(),
            );
        }
        if let Some(package) = last_resort {
            batch.put(
                Keyspace::LastResortKeyPackages,
                device.as_bytes().to_vec(),
                package.to_vec(),
            );
        }
    }

    /// Adds to `batch` the removal of a claimed one-time key package (as
    /// read, so two claims never hand out the same one).
    pub fn stage_claim(&self, batch: &mut Batch, claimed: &Entry) {
        let (key, value) = claimed;
        batch.expect(Keyspace::KeyPackages, key.clone(), Some(value.clone()));
        batch.delete(Keyspace::KeyPackages, key.clone());
    }

    /// Adds to `batch` the removal of every key package of a revoked device.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    pub async fn stage_drop_key_packages(
        &self,
        batch: &mut Batch,
        device: DeviceId,
    ) -> Result<(), StoreError> {
        for (key, _) in self.key_packages(device, KEY_PACKAGES_MAX * 2).await? {
            batch.delete(Keyspace::KeyPackages, key);
        }
        batch.delete(Keyspace::LastResortKeyPackages, device.as_bytes().to_vec());
        Ok(())
    }

    /// Reads a device's event-log head.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the head is corrupt.
    pub async fn log_head(&self, device: DeviceId) -> Result<LogHead, StoreError> {
        let raw = self
            .store
            .get(Keyspace::EventHeads, device.as_bytes())
            .await?;
        let last = match &raw {
            Some(raw) => u64_be(raw).ok_or_else(|| corrupt(Keyspace::EventHeads, "not 8 bytes"))?,
            None => 0,
        };
        Ok(LogHead { device, last })
    }

    /// Adds to `batch` events appended to the end of `device`'s log, as it
    /// is when the batch commits (see [`Threads::commit_logged`]).
    /// `encoded` holds each event's [`StoredEvent`] encoding, in order.
    pub fn stage_events(&self, batch: &mut Batch, device: DeviceId, encoded: Vec<Vec<u8>>) {
        batch.append_log(*device.as_bytes(), encoded);
    }

    /// The number up to which a device's log was trimmed (0: never).
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the record is corrupt.
    pub async fn trimmed(&self, device: DeviceId) -> Result<u64, StoreError> {
        Ok(self.trim_mark(device).await?.1)
    }

    async fn trim_mark(&self, device: DeviceId) -> Result<(Option<Vec<u8>>, u64), StoreError> {
        let raw = self
            .store
            .get(Keyspace::EventTrims, device.as_bytes())
            .await?;
        let through = match &raw {
            Some(raw) => u64_be(raw).ok_or_else(|| corrupt(Keyspace::EventTrims, "not 8 bytes"))?,
            None => 0,
        };
        Ok((raw, through))
    }

    /// Removes a device's events up to number `through` (what its
    /// subscription has passed, or what is older than the retention
    /// allows), in steps; returns how many it removed. Best effort: a
    /// concurrent trim of the same log makes this one stop.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or an event is corrupt.
    pub async fn trim_log(&self, device: DeviceId, through: u64) -> Result<u64, StoreError> {
        const STEP: usize = 1024;
        let mut removed = 0;
        loop {
            let (raw, trimmed) = self.trim_mark(device).await?;
            if trimmed >= through {
                return Ok(removed);
            }
            let step = self.events_after(device, trimmed, STEP).await?;
            let reach = step
                .iter()
                .map(|(number, _)| *number)
                .take_while(|number| *number <= through)
                .last()
                .filter(|_| step.len() == STEP)
                .unwrap_or(through);
            let mut batch = Batch::new();
            batch.expect(Keyspace::EventTrims, device.as_bytes().to_vec(), raw);
            for (number, _) in step.iter().filter(|(number, _)| *number <= reach) {
                batch.delete(
                    Keyspace::Events,
                    [device.as_bytes().as_slice(), &number.to_be_bytes()].concat(),
                );
                removed += 1;
            }
            batch.put(
                Keyspace::EventTrims,
                device.as_bytes().to_vec(),
                reach.to_be_bytes().to_vec(),
            );
            match self.store.commit(batch).await {
                Ok(()) => {}
                Err(StoreError::Conflict) => return Ok(removed),
                Err(other) => return Err(other),
            }
        }
    }

    /// The number of the last event of a device's log that occurred
    /// before `before` (0 when none): how far time alone trims it.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or an event is corrupt.
    pub async fn last_before(
        &self,
        device: DeviceId,
        before: std::time::SystemTime,
    ) -> Result<u64, StoreError> {
        const STEP: usize = 256;
        let mut last = self.trimmed(device).await?;
        loop {
            let step = self.events_after(device, last, STEP).await?;
            for (number, event) in &step {
                let at = event
                    .occurred_at
                    .and_then(|t| std::time::SystemTime::try_from(t).ok());
                if at.is_none_or(|at| at >= before) {
                    return Ok(last);
                }
                last = *number;
            }
            if step.len() < STEP {
                return Ok(last);
            }
        }
    }

    /// Every device that has an event log.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or a key is corrupt.
    pub async fn logged_devices(&self) -> Result<Vec<DeviceId>, StoreError> {
        super::scan_all(self.store.as_ref(), Keyspace::EventHeads, b"")
            .await?
            .iter()
            .map(|(key, _)| {
                <[u8; 16]>::try_from(key.as_slice())
                    .map(DeviceId::from_bytes)
                    .map_err(|_| corrupt(Keyspace::EventHeads, "key is not a device id"))
            })
            .collect()
    }

    /// Up to `limit` events of a device's log after number `after`, with
    /// their numbers.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or an event is corrupt.
    pub async fn events_after(
        &self,
        device: DeviceId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, StoredEvent)>, StoreError> {
        let start = [device.as_bytes().as_slice(), &after.to_be_bytes()].concat();
        let raw = self
            .store
            .scan(Keyspace::Events, device.as_bytes(), Some(&start), limit)
            .await?;
        raw.into_iter()
            .map(|(key, value)| {
                let number = key
                    .get(16..)
                    .and_then(u64_be)
                    .ok_or_else(|| corrupt(Keyspace::Events, "key is not device + number"))?;
                let event = StoredEvent::decode(value.as_slice())
                    .map_err(|e| corrupt(Keyspace::Events, e.to_string()))?;
                Ok((number, event))
            })
            .collect()
    }

    /// The events of `device`'s log numbered `after + 1` to `last`, read
    /// by their keys (a new event is in memory, where a range read would
    /// also look through the store's file), or `None` when one of them is
    /// not there (trimmed, or not yet visible): then read the range.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or an event is corrupt.
    pub async fn events_numbered(
        &self,
        device: DeviceId,
        after: u64,
        last: u64,
    ) -> Result<Option<Vec<(u64, StoredEvent)>>, StoreError> {
        let keys: Vec<Vec<u8>> = (after + 1..=last)
            .map(|n| [device.as_bytes().as_slice(), &n.to_be_bytes()].concat())
            .collect();
        let values = self.store.get_many(Keyspace::Events, &keys).await?;
        let mut events = Vec::with_capacity(values.len());
        for (number, value) in (after + 1..=last).zip(values) {
            let Some(value) = value else {
                return Ok(None);
            };
            let event = StoredEvent::decode(value.as_slice())
                .map_err(|e| corrupt(Keyspace::Events, e.to_string()))?;
            events.push((number, event));
        }
        Ok(Some(events))
    }

    /// Whether every precondition of `batch` outside `ignore` still holds
    /// (see [`Batch::holds_apart_from`]).
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    pub async fn holds_apart_from(
        &self,
        batch: &Batch,
        ignore: Keyspace,
    ) -> Result<bool, StoreError> {
        batch.holds_apart_from(self.store.as_ref(), ignore).await
    }

    /// What is held of a consult's thread: how many messages, their bytes,
    /// and when the first and last were posted.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or an entry is corrupt.
    pub async fn summary(&self, consult: ConsultId) -> Result<ThreadSummary, StoreError> {
        let mut summary = ThreadSummary::default();
        for (_, raw) in super::scan_all(
            self.store.as_ref(),
            Keyspace::ThreadEntries,
            consult.as_bytes(),
        )
        .await?
        {
            let entry = v1::ThreadEntry::decode(raw.as_slice())
                .map_err(|e| corrupt(Keyspace::ThreadEntries, e.to_string()))?;
            summary.messages += 1;
            summary.bytes += entry.mls_message.len() as u64;
            summary.first_posted_at = summary.first_posted_at.or(entry.posted_at);
            summary.last_posted_at = entry.posted_at;
        }
        Ok(summary)
    }

    /// Adds to `batch` the removal of everything a consult's thread holds:
    /// its head, its messages, the answers kept for retried posts and its
    /// Welcomes. Returns how many messages it removes (0: nothing was left).
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails.
    pub async fn stage_erase(
        &self,
        batch: &mut Batch,
        consult: ConsultId,
    ) -> Result<u64, StoreError> {
        let store = self.store.as_ref();
        let mut messages = 0;
        for (key, _) in super::scan_all(store, Keyspace::ThreadEntries, consult.as_bytes()).await? {
            batch.delete(Keyspace::ThreadEntries, key);
            messages += 1;
        }
        for space in [Keyspace::ThreadRequests, Keyspace::Welcomes] {
            for (key, _) in super::scan_all(store, space, consult.as_bytes()).await? {
                batch.delete(space, key);
            }
        }
        batch.delete(Keyspace::Threads, consult.as_bytes().to_vec());
        Ok(messages)
    }

    /// Commits a batch built with the `stage_*` calls.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when a head moved since it was read.
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.store.commit(batch).await
    }

    /// Like [`Threads::commit`], answering the last event number of each
    /// device log the batch appended to, in the order they were staged.
    ///
    /// # Errors
    /// As [`Threads::commit`].
    pub async fn commit_logged(&self, batch: Batch) -> Result<Vec<u64>, StoreError> {
        self.store.commit_logged(batch).await
    }
}
